//! A database that cannot be written (read-only, full disk) stops the start with advice.

use super::*;

/// Applies the first `count` embedded migrations (through the product's own pool, so an
/// SQLite file is in WAL mode like a real one), leaving the later ones for the binary.
async fn migrate_first(backend: Backend, database_url: &str, count: usize) {
    let db = kyc_desk::server::db::Db::connect(database_url)
        .await
        .expect("open the database");
    let mut migrator = migrations_of(backend).await;
    migrator.migrations = std::borrow::Cow::Owned(migrator.migrations[..count].to_vec());
    migrator
        .run(&db.pool)
        .await
        .expect("apply the first migrations");
    db.pool.close().await;
}

async fn migrations_of(backend: Backend) -> sqlx::migrate::Migrator {
    let folder = match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    };
    let migrator = sqlx::migrate::Migrator::new(Path::new(folder))
        .await
        .expect("read the migrations");
    assert!(
        migrator.migrations.len() > 1,
        "a later migration is left to apply"
    );
    migrator
}

/// The applied migration versions and the schema objects of a database, read without
/// writing anything.
async fn schema_of(backend: Backend, database_url: &str) -> (Vec<i64>, Vec<String>) {
    let url = match backend {
        Backend::Sqlite => format!("{database_url}?mode=ro"),
        Backend::Postgres => database_url.to_string(),
    };
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("open the database to read its schema");
    let versions = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let objects = match backend {
        Backend::Sqlite => {
            sqlx::query_scalar("SELECT type || ' ' || name FROM sqlite_master ORDER BY type, name")
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
        Backend::Postgres => sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY table_name",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap(),
    };
    (versions, objects)
}

/// `kyc-desk serve` on `database_url`, expected to fail before it serves.
fn failing_start(database_url: &str, cwd: &Path) -> Command {
    failing_start_of(Path::new(env!("CARGO_BIN_EXE_kyc-desk")), database_url, cwd)
}

/// [`failing_start`] of the binary at `program`.
fn failing_start_of(program: &Path, database_url: &str, cwd: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .envs(
            kyc_desk::server::fresh_database::anchor_file_for(database_url)
                .map(|anchor| ("KYC_DESK_AUDIT_ANCHOR_FILE", anchor)),
        )
        .env("KYC_DESK_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("KYC_DESK_MASTER_KEY", test_master_key())
        .env("RUST_LOG", "warn")
        // Away from the repository, so no `.env` there is read.
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `command` to its end (killing it if it is still up after 30 s, which means it
/// started serving instead of refusing); returns the exit code and standard error.
fn run_to_exit(mut command: Command) -> (Option<i32>, String) {
    // A freshly copied server (see `failing_start_without_root`) can be "busy" for a moment:
    // another test's process, forked while the copy was being written, still holds it open.
    let mut attempts = 0;
    let mut child = loop {
        match command.spawn() {
            Err(error)
                if error.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 =>
            {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            spawned => break spawned.expect("start kyc-desk"),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "kyc-desk did not stop although it cannot use its database:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status, status);
    (
        status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of `nobody`.
fn nobody() -> (u32, u32) {
    let name = std::ffi::CString::new("nobody").unwrap();
    // SAFETY: getpwnam takes a NUL-terminated name; the returned record is read at once,
    // before any other call could reuse its static storage.
    unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        assert!(!entry.is_null(), "this machine has a `nobody` user");
        ((*entry).pw_uid, (*entry).pw_gid)
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A failing start as a user without root's right to write anywhere: when the tests run as
/// root, a copy of the server run as `nobody` (the checkout may sit in a folder only root may
/// enter, such as /root); otherwise the server as it is.
fn failing_start_without_root(database_url: &str, cwd: &Path) -> Command {
    if !is_root() {
        return failing_start(database_url, cwd);
    }
    use std::os::unix::process::CommandExt as _;
    let program = cwd.join("kyc-desk");
    std::fs::copy(env!("CARGO_BIN_EXE_kyc-desk"), &program).unwrap();
    set_mode(&program, 0o755);
    let mut command = failing_start_of(&program, database_url, cwd);
    let (uid, gid) = nobody();
    command.uid(uid).gid(gid);
    command
}

/// An SQLite database file the server may write, in a folder it may not (where SQLite must
/// create its `-wal` and `-shm` files): the start is refused at once, naming the folder and
/// saying what to do, and the schema is as it was.
#[tokio::test]
async fn a_read_only_sqlite_folder_stops_the_start() {
    let (database_url, dir) = fresh_database(Backend::Sqlite).await;
    migrate_first(Backend::Sqlite, &database_url, 1).await;
    let before = schema_of(Backend::Sqlite, &database_url).await;
    let dir = dir.unwrap();
    let cwd = tempfile::tempdir().unwrap();
    set_mode(cwd.path(), 0o755);
    // SQLite removed its -wal and -shm files as the last connection closed; the file itself
    // stays writable by anyone.
    set_mode(&dir.path().join("kyc-desk.db"), 0o666);
    set_mode(dir.path(), 0o555);
    let (code, stderr) = run_to_exit(failing_start_without_root(&database_url, cwd.path()));
    set_mode(dir.path(), 0o755);
    assert!(
        code.is_some_and(|code| code != 0),
        "exit {code:?}: {stderr}"
    );
    assert!(stderr.contains("cannot start"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the SQLite database at {} is read-only",
            dir.path().display()
        )),
        "the message names the folder: {stderr}"
    );
    assert!(
        stderr.contains("give that user write access to the file and to its folder"),
        "the message says what to do: {stderr}"
    );
    assert_eq!(schema_of(Backend::Sqlite, &database_url).await, before);
}

/// The database cannot be written at start (an SQLite file the server's user may only read;
/// a PostgreSQL database set read-only): the server refuses to start with an error naming the
/// problem, and the schema is exactly as it was (no migration half-applied, none recorded).
async fn read_only_start(backend: Backend) {
    let (database_url, dir) = fresh_database(backend).await;
    migrate_first(backend, &database_url, 1).await;
    let before = schema_of(backend, &database_url).await;
    assert_eq!(before.0, [1]);
    let cwd = tempfile::tempdir().unwrap();
    set_mode(cwd.path(), 0o755);
    let mut command = failing_start(&database_url, cwd.path());
    match backend {
        Backend::Sqlite => {
            let dir = dir.as_ref().unwrap().path();
            // Readable by everyone, writable only by its owner (root), like a data folder
            // left behind by a first run as root. Root ignores modes, so the server runs as
            // `nobody` when the tests run as root.
            set_mode(dir, 0o755);
            set_mode(&dir.join("kyc-desk.db"), 0o444);
            command = failing_start_without_root(&database_url, cwd.path());
        }
        Backend::Postgres => {
            let name = url::Url::parse(&database_url).unwrap().path()[1..].to_string();
            let admin = std::env::var("TEST_POSTGRES_URL").unwrap();
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                .await
                .unwrap();
            sqlx::query(&format!(
                "ALTER DATABASE {name} SET default_transaction_read_only = on"
            ))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    let (code, stderr) = run_to_exit(command);
    eprintln!("{backend:?}, read-only database: exit {code:?}: {stderr}");
    assert!(
        code.is_some_and(|code| code != 0),
        "exit {code:?}: {stderr}"
    );
    let lower = stderr.to_lowercase();
    assert!(lower.contains("cannot start"), "{stderr}");
    assert!(
        lower.contains("read-only") || lower.contains("readonly"),
        "the message names the problem: {stderr}"
    );
    let advice = match backend {
        Backend::Sqlite => "give that user write access to the file and to its folder",
        Backend::Postgres => "point DATABASE_URL at a writable primary",
    };
    assert!(
        stderr.contains(advice),
        "the message says what to do: {stderr}"
    );
    assert_eq!(schema_of(backend, &database_url).await, before);
}

both_backends!(a_read_only_database_stops_the_start, |backend| async move {
    read_only_start(backend).await;
});

/// The disk fills up while the server migrates an SQLite database at start (simulated with a
/// file-size limit, so writes fail with EFBIG), first before any pending migration can be
/// written, then after some could: the server refuses to start with an error saying what to
/// check, and every migration is either wholly applied and recorded or not there at all (the
/// schema equals that of a database migrated exactly as far). (PostgreSQL's disk belongs to
/// its server; there is nothing of ours to fill there.)
#[tokio::test]
async fn a_full_disk_stops_the_start() {
    let all = migrations_of(Backend::Sqlite).await.migrations.len();
    // 36 KiB leaves room for SQLite's 32 KiB shared-memory index but not for the write-ahead
    // log of the second migration; 64 KiB lets the second one through and stops a later one.
    for limit_kib in [36, 64] {
        let (database_url, dir) = fresh_database(Backend::Sqlite).await;
        migrate_first(Backend::Sqlite, &database_url, 1).await;
        let before = schema_of(Backend::Sqlite, &database_url).await;
        assert_eq!(before.0, [1]);
        let dir = dir.unwrap();
        let mut command = failing_start(&database_url, dir.path());
        let limit: libc::rlim_t = limit_kib * 1024;
        {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: between fork and exec only async-signal-safe calls (signal, setrlimit).
            unsafe {
                command.pre_exec(move || {
                    // Ignored, SIGXFSZ lets an oversized write fail with EFBIG instead of
                    // killing the process.
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let limit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let (code, stderr) = run_to_exit(command);
        eprintln!("full disk at {limit_kib} KiB: exit {code:?}: {stderr}");
        assert!(
            code.is_some_and(|code| code != 0),
            "exit {code:?}: {stderr}"
        );
        assert!(stderr.contains("cannot start"), "{stderr}");
        assert!(
            stderr.contains("check that its disk is not full"),
            "the message names the problem: {stderr}"
        );
        let after = schema_of(Backend::Sqlite, &database_url).await;
        let applied = after.0.len();
        assert!(applied < all, "the start failed, so a migration is missing");
        let versions: Vec<i64> = (1..=applied as i64).collect();
        assert_eq!(after.0, versions, "applied in order, without gaps");
        let (reference_url, _reference_dir) = fresh_database(Backend::Sqlite).await;
        migrate_first(Backend::Sqlite, &reference_url, applied).await;
        assert_eq!(
            after,
            schema_of(Backend::Sqlite, &reference_url).await,
            "no half-applied migration at {limit_kib} KiB"
        );
        if limit_kib == 36 {
            assert_eq!(after, before, "nothing could be written");
        } else {
            assert!(applied > 1, "the limit let a migration through: {after:?}");
        }
    }
}
