//! The command line of the `kyc-desk` binary.

use crate::common;

use common::fresh_database;
use std::io::Write;
use std::process::{Command, Stdio};

fn kyc_desk(database_url: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    let key = common::test_master_key();
    kyc_desk_with(database_url, &[("KYC_DESK_MASTER_KEY", &key)], args, stdin)
}

fn kyc_desk_with(
    database_url: &str,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kyc-desk"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .envs(
            kyc_desk::server::fresh_database::anchor_file_for(database_url)
                .map(|anchor| ("KYC_DESK_AUDIT_ANCHOR_FILE", anchor)),
        )
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kyc-desk");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

both_backends!(
    create_user_reads_the_password_from_stdin,
    |backend| async move {
        let (url, _dir) = fresh_database(backend).await;
        let (code, stdout, stderr) = kyc_desk(
            &url,
            &[
                "create-user",
                "--email",
                "Root@Example.com",
                "--role",
                "admin",
            ],
            "a long admin passphrase\n",
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("Created root@example.com (admin)"),
            "{stdout}"
        );

        // The same rules as the users page: a weak password and a duplicate are refused.
        let (code, _, stderr) = kyc_desk(
            &url,
            &[
                "create-user",
                "--email",
                "b@example.com",
                "--role",
                "operator",
            ],
            "short\n",
        );
        assert_eq!(code, 1);
        assert!(
            stderr.contains("password: Use at least 12 characters"),
            "{stderr}"
        );
        let (code, _, stderr) = kyc_desk(
            &url,
            &[
                "create-user",
                "--email",
                "root@example.com",
                "--role",
                "operator",
            ],
            "another long phrase\n",
        );
        assert_eq!(code, 1);
        assert!(stderr.contains("already exists"), "{stderr}");
        let (code, _, stderr) = kyc_desk(
            &url,
            &[
                "create-user",
                "--email",
                "c@example.com",
                "--role",
                "superuser",
            ],
            "another long phrase\n",
        );
        assert_eq!(code, 1);
        assert!(
            stderr.contains("role: Choose operator, admin or auditor"),
            "{stderr}"
        );
        let (code, _, stderr) = kyc_desk(
            &url,
            &[
                "create-user",
                "--email",
                "c@example.com",
                "--role",
                "operator",
            ],
            "",
        );
        assert_eq!(code, 2);
        assert!(stderr.contains("no password on standard input"), "{stderr}");

        // There is no way to pass the password as an argument.
        let (code, _, stderr) = kyc_desk(
            &url,
            &[
                "create-user",
                "--email",
                "d@example.com",
                "--role",
                "operator",
                "--password",
                "x",
            ],
            "",
        );
        assert_eq!(code, 2);
        assert!(stderr.contains("unexpected argument"), "{stderr}");
    }
);

#[test]
fn help_lists_the_commands() {
    let (code, stdout, _) = kyc_desk("sqlite::memory:", &["--help"], "");
    assert_eq!(code, 0);
    for command in ["serve", "create-user"] {
        assert!(
            stdout.contains(command),
            "{command} missing from:\n{stdout}"
        );
    }
}

#[test]
fn bad_configuration_stops_the_start_naming_the_variable() {
    let (code, _, stderr) = kyc_desk("mysql://nope", &["serve"], "");
    assert_eq!(code, 2);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[test]
fn an_unwritable_database_location_stops_the_start_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let url = format!("sqlite://{}/sub/kyc.db", blocker.display());
    let (code, _, stderr) = kyc_desk(&url, &["serve"], "");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot create the database folder"),
        "{stderr}"
    );
}

both_backends!(
    credentials_import_list_and_master_key_rotation,
    |backend| async move {
        let (url, _dir) = fresh_database(backend).await;
        let keys = tempfile::tempdir().unwrap();
        let key = kyc_desk::server::vault::MasterKey::generate()
            .to_base64()
            .to_string();
        let with_key = [("KYC_DESK_MASTER_KEY", key.as_str())];
        let json = r#"{"kind": "message_central_ekyc", "environment": "trial",
        "settings": {"company_name": "Acme Bank", "basic_flow_id": "FLOW-1"},
        "secrets": {"api_key": "Bearer canary-cli-key-123456"}}"#;
        let (code, stdout, stderr) =
            kyc_desk_with(&url, &with_key, &["credentials", "import"], json);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("note: The API key was pasted with its 'Bearer ' prefix"),
            "{stdout}"
        );
        assert!(
            stdout.contains("created message_central_ekyc/trial version 1"),
            "{stdout}"
        );

        let (code, stdout, _) = kyc_desk_with(&url, &with_key, &["credentials", "list"], "");
        assert_eq!(code, 0);
        assert!(stdout.contains("api_key: •••• 3456"), "{stdout}");
        assert!(!stdout.contains("canary-cli-key"), "{stdout}");

        let bad = json.replace("Acme Bank", &"A".repeat(201));
        let (code, _, stderr) = kyc_desk_with(&url, &with_key, &["credentials", "import"], &bad);
        assert_eq!(code, 1);
        assert!(
            stderr.contains("company_name: At most 200 characters"),
            "{stderr}"
        );
        let (code, _, stderr) =
            kyc_desk_with(&url, &with_key, &["credentials", "import"], "{not json");
        assert_eq!(code, 2);
        assert!(stderr.contains("not a credential set in JSON"), "{stderr}");

        let new_key = keys.path().join("new.key");
        let new_key = new_key.to_str().unwrap();
        let (code, stdout, stderr) = kyc_desk_with(
            &url,
            &with_key,
            &["rotate-master-key", "--new-key-file", new_key],
            "",
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("Re-encrypted 1 secrets"), "{stdout}");
        let (code, _, stderr) = kyc_desk_with(&url, &with_key, &["credentials", "list"], "");
        assert_eq!(code, 1, "the old key is refused after rotation");
        assert!(stderr.contains("is not the master key"), "{stderr}");
        let (code, stdout, stderr) = kyc_desk_with(
            &url,
            &[("KYC_DESK_MASTER_KEY_FILE", new_key)],
            &["credentials", "list"],
            "",
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("•••• 3456"));
    }
);

both_backends!(
    verify_audit_reports_rows_or_the_first_break,
    |backend| async move {
        let (url, _dir) = fresh_database(backend).await;
        let (code, _, stderr) = kyc_desk(
            &url,
            &[
                "create-user",
                "--email",
                "root@example.com",
                "--role",
                "admin",
            ],
            "a long admin passphrase\n",
        );
        assert_eq!(code, 0, "{stderr}");
        let (code, stdout, stderr) = kyc_desk(&url, &["verify-audit"], "");
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("1 rows verified"), "{stdout}");

        // Tamper with the row (the trigger dropped, as only a database owner could).
        let app = common::TestApp::start_on(&url, None, &[]).await;
        let pool = &app.state.db.pool;
        let drop = match backend {
            common::Backend::Sqlite => "DROP TRIGGER audit_log_no_update",
            common::Backend::Postgres => "DROP TRIGGER audit_log_no_update ON audit_log",
        };
        sqlx::query(drop).execute(pool).await.unwrap();
        sqlx::query("UPDATE audit_log SET actor_role = 'admin' WHERE seq = 1")
            .execute(pool)
            .await
            .unwrap();
        let (code, stdout, _) = kyc_desk(&url, &["verify-audit"], "");
        assert_eq!(code, 1);
        assert!(stdout.contains("FAILED at seq 1: mac mismatch"), "{stdout}");

        let (code, _, stderr) = kyc_desk(&url, &["verify-audit", "--from-checkpoint", "x"], "");
        assert_eq!(code, 2);
        assert!(stderr.contains("SEQ:MAC"), "{stderr}");
    }
);

#[tokio::test]
async fn a_closed_output_pipe_ends_the_command_quietly() {
    let (url, _dir) = fresh_database(common::Backend::Sqlite).await;
    // The reading end is gone before the command prints, as with `kyc-desk … | head -0`.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_kyc-desk"))
        .args(["credentials", "list"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .env("KYC_DESK_MASTER_KEY", common::test_master_key())
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The key epoch of every audit row of the database at `url`, in seq order.
async fn row_epochs(url: &str) -> Vec<(String, i64)> {
    let db = kyc_desk::server::db::Db::connect(url).await.unwrap();
    let rows = sqlx::query_as("SELECT action, key_epoch FROM audit_log ORDER BY seq")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    db.pool.close().await;
    rows
}

both_backends!(
    verify_audit_reports_rows_deleted_after_the_newest_checkpoint,
    |backend| async move {
        let (url, _dir) = fresh_database(backend).await;
        let app = common::TestApp::start_on(&url, None, &[]).await;
        crate::audit::append_events(&app, 6).await;
        let checkpoint = app
            .state
            .audit
            .checkpoint(&app.state.db)
            .await
            .unwrap()
            .unwrap();
        let (code, stdout, stderr) = kyc_desk(&url, &["verify-audit"], "");
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains(&format!("(seq {})", checkpoint.seq)),
            "{stdout}"
        );

        crate::audit::drop_triggers(&app.state.db).await;
        sqlx::query("DELETE FROM audit_log WHERE seq > $1")
            .bind(checkpoint.seq - 2)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        let (code, stdout, _) = kyc_desk(&url, &["verify-audit"], "");
        assert_eq!(code, 1, "{stdout}");
        assert!(
            stdout.contains(&format!(
                "rows after seq {} are missing: the checkpoint of {} records the chain up to seq {}",
                checkpoint.seq - 2,
                checkpoint.time,
                checkpoint.seq
            )),
            "{stdout}"
        );
    }
);

both_backends!(
    rotate_audit_key_and_rotate_master_key_start_new_epochs,
    |backend| async move {
        let (url, _dir) = fresh_database(backend).await;
        let create = |email: &str| {
            let (code, _, stderr) = kyc_desk(
                &url,
                &["create-user", "--email", email, "--role", "admin"],
                "a long admin passphrase\n",
            );
            assert_eq!(code, 0, "{stderr}");
        };
        create("one@example.com");
        let (code, stdout, stderr) = kyc_desk(&url, &["rotate-audit-key"], "");
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("Started audit key epoch 2"), "{stdout}");
        create("two@example.com");
        assert_eq!(
            row_epochs(&url).await,
            [
                ("user.create".to_string(), 1),
                ("audit.key_rotate".to_string(), 2),
                ("user.create".to_string(), 2),
            ]
        );

        let keys = tempfile::tempdir().unwrap();
        let new_key = keys.path().join("new-master.key");
        let (code, _, stderr) = kyc_desk(
            &url,
            &[
                "rotate-master-key",
                "--new-key-file",
                new_key.to_str().unwrap(),
            ],
            "",
        );
        assert_eq!(code, 0, "{stderr}");
        let with_new_key = [("KYC_DESK_MASTER_KEY_FILE", new_key.to_str().unwrap())];
        let (code, _, stderr) = kyc_desk_with(
            &url,
            &with_new_key,
            &[
                "create-user",
                "--email",
                "three@example.com",
                "--role",
                "admin",
            ],
            "a long admin passphrase\n",
        );
        assert_eq!(code, 0, "{stderr}");
        let epochs: Vec<i64> = row_epochs(&url).await.into_iter().map(|(_, e)| e).collect();
        assert_eq!(epochs, [1, 2, 2, 3, 3]);
        let (code, stdout, stderr) = kyc_desk_with(&url, &with_new_key, &["verify-audit"], "");
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("5 rows verified"), "{stdout}");
    }
);
