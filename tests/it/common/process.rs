//! A real `kyc-desk serve` process for the tests that need one (kills, restarts): the test
//! configuration around the one child-process harness of `kyc_desk::server::serve_process`.

use super::test_master_key;
pub use kyc_desk::server::serve_process::free_port;
use kyc_desk::server::serve_process::{self, NotReady, ServeProcess};
use std::path::Path;
use std::time::Duration;

/// A `kyc-desk serve` process on its own port, logging to a file; SIGKILLed when dropped.
pub struct ServerProcess(pub ServeProcess);

impl std::ops::Deref for ServerProcess {
    type Target = ServeProcess;
    fn deref(&self) -> &ServeProcess {
        &self.0
    }
}

impl std::ops::DerefMut for ServerProcess {
    fn deref_mut(&mut self) -> &mut ServeProcess {
        &mut self.0
    }
}

impl ServerProcess {
    /// Starts the built binary on `database_url` with the test master key, its log in
    /// `log_dir/<name>.log`; `extra` variables override the defaults.
    pub fn spawn(database_url: &str, log_dir: &Path, name: &str, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut env: Vec<(&str, String)> = vec![
            ("DATABASE_URL", database_url.to_string()),
            ("KYC_DESK_ADDR", format!("127.0.0.1:{port}")),
            ("KYC_DESK_MASTER_KEY", test_master_key()),
            ("KYC_DESK_SITE_ROOT", "target/site".into()),
            ("RUST_LOG", "warn".into()),
            // The fake providers listen on this machine (see `TestApp`).
            (
                "KYC_DESK_EXTRA_PROVIDER_HOSTS",
                "127.0.0.1,localhost".into(),
            ),
        ];
        if let Some(anchor) = kyc_desk::server::fresh_database::anchor_file_for(database_url) {
            env.push(("KYC_DESK_AUDIT_ANCHOR_FILE", anchor));
        }
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let command = serve_process::command(
            Path::new(env!("CARGO_BIN_EXE_kyc-desk")),
            Path::new(env!("CARGO_MANIFEST_DIR")),
            env,
        );
        let log = log_dir.join(format!("{name}.log"));
        ServerProcess(ServeProcess::spawn(command, port, log).expect("start kyc-desk serve"))
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        self.0.log_text()
    }

    /// Waits until `/readyz` answers 200; panics with the log when it does not.
    pub async fn wait_ready(&mut self) {
        match self.0.wait_ready(Duration::from_secs(30)).await {
            Ok(()) => {}
            Err(NotReady::Exited(status)) => {
                panic!("kyc-desk exited early ({status}):\n{}", self.log())
            }
            Err(NotReady::TimedOut) => panic!("kyc-desk did not become ready:\n{}", self.log()),
        }
    }
}
