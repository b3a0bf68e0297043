//! A `kyc-desk serve` child process, for the tools and tests that need the real binary (the
//! soak, process kills, several instances on one database): started with exactly the
//! environment given, logging to a file, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `kyc-desk serve`.
pub struct ServeProcess {
    /// The child process.
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its standard output and error.
    pub log: PathBuf,
}

/// Why a server never answered `/readyz`.
#[derive(Debug)]
pub enum NotReady {
    /// The process ended first.
    Exited(std::process::ExitStatus),
    /// It still ran, but did not answer in time.
    TimedOut,
}

/// A `binary` command that sees only `PATH` and `env` of the environment, run in `cwd`
/// (so no `.env` of another folder is read).
pub fn command<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
    binary: &Path,
    cwd: &Path,
    env: impl IntoIterator<Item = (K, V)>,
) -> Command {
    let mut command = Command::new(binary);
    command
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env);
    command
}

/// A port nothing listens on (bound once, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl ServeProcess {
    /// Starts `command serve` on `port` (its environment must name that port), its output
    /// going to `log`. Does not wait: see [`ServeProcess::wait_ready`].
    pub fn spawn(mut command: Command, port: u16, log: PathBuf) -> std::io::Result<ServeProcess> {
        let file = std::fs::File::create(&log)?;
        let child = command
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        Ok(ServeProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        })
    }

    /// Waits until `/readyz` answers 200, or the process ends, or `limit` passes.
    pub async fn wait_ready(&mut self, limit: Duration) -> Result<(), NotReady> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(NotReady::Exited(status));
            }
            if let Ok(response) = http.get(format!("{}/readyz", self.base)).send().await
                && response.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NotReady::TimedOut);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown handler runs, nothing is flushed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
