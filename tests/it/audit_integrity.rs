//! The audit trail cannot be cut short or forged with an old key: checkpoints of the chain in
//! the anchor file, key epochs across rotations, and the least-privilege PostgreSQL layout.

use crate::audit::{append_events, drop_triggers};
use crate::common;

use common::TestApp;
use kyc_desk::server::audit::anchor::Checkpoint;
use kyc_desk::server::audit::{
    AuditLog, Break, RequestMeta, VerifyReport, open_epoch_key, row_mac,
};
use kyc_desk::server::db::{self, Db, audit::AuditRow, audit::EpochRow};
use kyc_desk::server::vault::MasterKey;
use kyc_desk::types::Role;
use reqwest::StatusCode;
use std::path::PathBuf;

async fn verify(app: &TestApp) -> VerifyReport {
    app.state.audit.verify(&app.state.db).await.unwrap()
}

fn anchor_file(app: &TestApp) -> PathBuf {
    app.state
        .audit
        .anchor_file()
        .expect("every app keeps an anchor file")
        .to_path_buf()
}

async fn head(db: &Db) -> (i64, String) {
    db::audit::head_of(&db.pool).await.unwrap().unwrap()
}

async fn checkpoint(app: &TestApp) -> Checkpoint {
    app.state
        .audit
        .checkpoint(&app.state.db)
        .await
        .unwrap()
        .expect("a checkpoint is written")
}

async fn epochs(db: &Db) -> Vec<EpochRow> {
    let mut conn = db.pool.acquire().await.unwrap();
    db::audit::epochs(&mut conn).await.unwrap()
}

async fn delete_from(db: &Db, first_seq: i64) {
    sqlx::query("DELETE FROM audit_log WHERE seq >= $1")
        .bind(first_seq)
        .execute(&db.pool)
        .await
        .unwrap();
}

/// [`delete_from`] as someone who can edit the database does it thoroughly: the chain's head
/// row is set back to the last row left too, so new rows chain on from the cut.
async fn cut_back_to(db: &Db, first_seq: i64) {
    delete_from(db, first_seq).await;
    sqlx::query(
        "UPDATE audit_chain_head SET \
         seq = COALESCE((SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1), 0), \
         mac = (SELECT mac FROM audit_log ORDER BY seq DESC LIMIT 1) WHERE id = 1",
    )
    .execute(&db.pool)
    .await
    .unwrap();
}

both_backends!(
    deleting_the_newest_rows_is_found_against_the_checkpoint,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("auditor@example.com", Role::Auditor).await;
        let auditor = app.signed_in("auditor@example.com").await;
        append_events(&app, 10).await;
        let written = checkpoint(&app).await;
        let (seq, mac) = head(&app.state.db).await;
        assert_eq!((written.seq, written.mac.clone()), (seq, mac));
        let report = verify(&app).await;
        assert!(report.broken.is_none(), "{}", report.summary());
        assert!(
            report.summary().contains(&format!(
                "reaches the checkpoint of {} (seq {seq})",
                written.time
            )),
            "{}",
            report.summary()
        );

        // The newest three rows go.
        drop_triggers(&app.state.db).await;
        delete_from(&app.state.db, seq - 2).await;
        let missing = format!("rows after seq {} are missing", seq - 3);
        let report = verify(&app).await;
        assert_eq!(
            report.broken,
            Some((
                seq - 2,
                Break::Truncated {
                    after: seq - 3,
                    checkpoint_seq: seq,
                    time: written.time.clone(),
                }
            )),
            "{}",
            report.summary()
        );
        assert!(report.summary().contains(&missing), "{}", report.summary());
        assert!(report.summary().starts_with("Verification FAILED"));

        // The Verify button says the same.
        let (status, body) = app.call(&auditor, "verify_audit", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["intact"], false, "{body}");
        let summary = body["summary"].as_str().unwrap();
        assert!(summary.contains(&missing), "{summary}");

        // Every row gone: the checkpoint still tells.
        delete_from(&app.state.db, 1).await;
        let report = verify(&app).await;
        assert_eq!(report.rows, 0);
        assert!(
            report.summary().contains("rows after seq 0 are missing"),
            "{}",
            report.summary()
        );
    }
);

both_backends!(
    rows_cut_off_behind_the_logs_back_show_at_the_next_append,
    |backend| async move {
        // No checkpoint here: what the database alone tells. The newest rows removed (with the
        // log's own triggers dropped first, as only the tables' owner can), the next append
        // still goes on from where the chain was, so the cut shows as a gap instead of being
        // closed over by a chain that starts again from the shorter tail.
        let app = TestApp::start(backend).await;
        append_events(&app, 10).await;
        let (seq, mac) = head(&app.state.db).await;
        drop_triggers(&app.state.db).await;
        delete_from(&app.state.db, seq - 2).await;
        append_events(&app, 1).await;
        let (new_seq, _) = head(&app.state.db).await;
        assert_eq!(
            new_seq,
            seq + 1,
            "the append continued from the head it had"
        );
        let newest: String = sqlx::query_scalar("SELECT prev_mac FROM audit_log WHERE seq = $1")
            .bind(new_seq)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(newest, mac, "the new row links to the removed head");
        let report = verify(&app).await;
        assert_eq!(
            report.broken,
            Some((seq - 2, Break::Gap { found: seq + 1 })),
            "{}",
            report.summary()
        );
    }
);

both_backends!(
    an_intact_chain_with_checkpoints_verifies_and_a_forged_line_does_not,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let path = anchor_file(&app);
        // No checkpoint yet: the chain verifies, and says nothing about a checkpoint.
        append_events(&app, 3).await;
        let report = verify(&app).await;
        assert!(report.broken.is_none(), "{}", report.summary());
        assert_eq!(report.checkpoint, None);

        let first = checkpoint(&app).await;
        // Nothing new since: no second line.
        assert_eq!(
            app.state.audit.checkpoint(&app.state.db).await.unwrap(),
            None
        );
        append_events(&app, 4).await;
        let second = checkpoint(&app).await;
        assert!(second.seq > first.seq);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let report = verify(&app).await;
        assert!(report.broken.is_none(), "{}", report.summary());
        assert_eq!(report.head_seq, second.seq);
        assert_eq!(report.checkpoint, Some(second.describe()));

        // A line moved forward without the key, as if to hide nothing or frame a deletion.
        let forged = Checkpoint {
            seq: second.seq + 5,
            ..second.clone()
        };
        std::fs::write(&path, format!("{text}{}\n", forged.line())).unwrap();
        let report = verify(&app).await;
        assert_eq!(
            report.broken.as_ref().map(|b| &b.1),
            Some(&Break::ForgedCheckpoint { line: 3 }),
            "{}",
            report.summary()
        );
        assert!(
            report.summary().contains(
                "line 3 of the anchor file is not a checkpoint signed with the audit key"
            ),
            "{}",
            report.summary()
        );
        // A line that is not a checkpoint at all is reported the same way.
        std::fs::write(&path, format!("{text}garbage\n")).unwrap();
        let report = verify(&app).await;
        assert_eq!(
            report.broken.map(|b| b.1),
            Some(Break::ForgedCheckpoint { line: 3 })
        );
        std::fs::write(&path, &text).unwrap();
        assert!(verify(&app).await.broken.is_none());
    }
);

both_backends!(
    a_tail_rewritten_after_a_checkpoint_is_found,
    |backend| async move {
        let app = TestApp::start(backend).await;
        append_events(&app, 5).await;
        let written = checkpoint(&app).await;
        drop_triggers(&app.state.db).await;
        cut_back_to(&app.state.db, written.seq - 1).await;
        // New rows chain on from the cut and pass the checkpoint's seq again.
        append_events(&app, 4).await;
        let report = verify(&app).await;
        assert_eq!(
            report.broken,
            Some((written.seq, Break::CheckpointMismatch { line: 1 })),
            "{}",
            report.summary()
        );
    }
);

both_backends!(
    a_removed_anchor_file_is_reported_once_checkpoints_began,
    |backend| async move {
        let app = TestApp::start(backend).await;
        append_events(&app, 2).await;
        checkpoint(&app).await;
        let start = crate::audit::rows_of(&app, "audit.anchor_start").await;
        assert_eq!(
            start.len(),
            1,
            "the first checkpoint is announced in the chain"
        );
        let path = anchor_file(&app);
        assert_eq!(start[0].object_id, path.display().to_string());
        std::fs::remove_file(&path).unwrap();
        let report = verify(&app).await;
        assert_eq!(
            report.broken,
            Some((
                start[0].seq,
                Break::AnchorMissing {
                    path: path.display().to_string(),
                    since_seq: start[0].seq,
                }
            )),
            "{}",
            report.summary()
        );
        assert!(report.summary().contains("is missing or empty"));
    }
);

/// A row at the head of the chain signed with `key` and claiming `epoch`.
async fn forged_row(db: &Db, key: &[u8; 32], epoch: i64) -> AuditRow {
    let (seq, prev_mac) = head(db).await;
    let mut row = AuditRow {
        seq: seq + 1,
        at_ms: chrono::Utc::now().timestamp_millis(),
        actor_id: None,
        actor_email: String::new(),
        actor_role: "system".into(),
        ip: String::new(),
        request_id: "forged".into(),
        action: "test.forged".into(),
        object_type: String::new(),
        object_id: String::new(),
        outcome: "success".into(),
        reason: "nothing to see".into(),
        detail: "{}".into(),
        prev_mac,
        mac: String::new(),
        key_epoch: epoch,
    };
    row.mac = row_mac(key, &row.prev_mac, &row);
    let mut conn = db.pool.acquire().await.unwrap();
    db::audit::insert(&mut conn, &row).await.unwrap();
    row
}

/// Inserts the forged row, checks how verification names it, and takes it out again.
async fn assert_forgery_found(app: &TestApp, key: &[u8; 32], epoch: i64, expected: Break) {
    let row = forged_row(&app.state.db, key, epoch).await;
    let report = verify(app).await;
    assert_eq!(
        report.broken,
        Some((row.seq, expected)),
        "{}",
        report.summary()
    );
    cut_back_to(&app.state.db, row.seq).await;
    let report = verify(app).await;
    assert!(report.broken.is_none(), "{}", report.summary());
}

both_backends!(
    rotations_start_new_epochs_and_retired_keys_cannot_sign,
    |backend| async move {
        let first_master = MasterKey::generate().to_base64().to_string();
        let app = TestApp::start_with(backend, &[("KYC_DESK_MASTER_KEY", &first_master)]).await;
        append_events(&app, 3).await;
        let stored = epochs(&app.state.db).await;
        assert_eq!(stored.len(), 1);
        // Someone keeps the first master key and a copy of the database from now.
        let old_vault = app.state.vault.clone();
        let epoch_1_key = *open_epoch_key(&old_vault, &stored[0]).unwrap();

        // rotate-audit-key: epoch 2 from the next row on.
        let epoch = app
            .state
            .audit
            .rotate_key(&app.state.db, &RequestMeta::cli())
            .await
            .unwrap();
        assert_eq!(epoch, 2);
        append_events(&app, 2).await;
        let rows = crate::audit::all_rows(&app.state.db).await;
        let rotated = rows
            .iter()
            .find(|r| r.action == "audit.key_rotate")
            .unwrap();
        assert!(
            rows.iter()
                .all(|r| r.key_epoch == if r.seq < rotated.seq { 1 } else { 2 })
        );
        let report = verify(&app).await;
        assert!(report.broken.is_none(), "{}", report.summary());
        drop_triggers(&app.state.db).await;
        // A row signed with the retired key but claiming the new epoch, and one claiming the
        // old epoch after it ended.
        assert_forgery_found(&app, &epoch_1_key, 2, Break::MacMismatch).await;
        assert_forgery_found(
            &app,
            &epoch_1_key,
            1,
            Break::WrongEpoch {
                claimed: 1,
                expected: 2,
            },
        )
        .await;
        let epoch_2_key = *open_epoch_key(&old_vault, &epochs(&app.state.db).await[1]).unwrap();

        // rotate-master-key: every epoch re-sealed under the new key, and epoch 3 begins.
        let second_master = MasterKey::generate();
        let second_text = second_master.to_base64().to_string();
        kyc_desk::server::credentials::rotate_master_key(&app.state, second_master)
            .await
            .unwrap();
        let stored = epochs(&app.state.db).await;
        assert_eq!(
            stored.iter().map(|e| e.epoch).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(
            open_epoch_key(&old_vault, &stored[2]).is_err(),
            "the old master key opens no epoch after the rotation"
        );
        let restarted = TestApp::start_on(
            &app.database_url,
            None,
            &[("KYC_DESK_MASTER_KEY", &second_text)],
        )
        .await;
        append_events(&restarted, 2).await;
        let rows = crate::audit::all_rows(&restarted.state.db).await;
        let rotation = rows
            .iter()
            .find(|r| r.action == "vault.master_key_rotate")
            .unwrap();
        assert_eq!(rotation.key_epoch, 3);
        assert!(
            rows.iter()
                .filter(|r| r.seq >= rotation.seq)
                .all(|r| r.key_epoch == 3)
        );
        // Old rows still verify, under keys the new master key opens.
        let report = verify(&restarted).await;
        assert!(report.broken.is_none(), "{}", report.summary());
        assert_eq!(report.rows as usize, rows.len());
        // The leaked keys of epochs 1 and 2 sign nothing that verifies any more.
        for (key, epoch, expected) in [
            (&epoch_2_key, 3, Break::MacMismatch),
            (
                &epoch_2_key,
                2,
                Break::WrongEpoch {
                    claimed: 2,
                    expected: 3,
                },
            ),
            (
                &epoch_1_key,
                1,
                Break::WrongEpoch {
                    claimed: 1,
                    expected: 3,
                },
            ),
        ] {
            assert_forgery_found(&restarted, key, epoch, expected).await;
        }
        // A log over a key it was not given verifies nothing.
        let stranger = AuditLog::with_key([1u8; 32]);
        assert!(stranger.verify(&restarted.state.db).await.is_err());
    }
);

/// A fresh role name, unique per test run.
fn role_name() -> String {
    format!(
        "kyc_app_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_app_role_can_add_to_the_audit_log_but_not_erase_it() {
    let (owner_url, _) = common::fresh_database(common::Backend::Postgres).await;
    let owner = Db::connect(&owner_url).await.unwrap();
    let role = role_name();
    sqlx::query(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'app-role-password'"
    ))
    .execute(&owner.pool)
    .await
    .unwrap();
    let mut app_url = url::Url::parse(&owner_url).unwrap();
    app_url.set_username(&role).unwrap();
    app_url.set_password(Some("app-role-password")).unwrap();
    let app_url = app_url.to_string();

    // KYC Desk runs as the role; the owner migrates and grants through its own URL.
    let app = TestApp::start_on(
        &app_url,
        None,
        &[("KYC_DESK_MIGRATE_DATABASE_URL", owner_url.as_str())],
    )
    .await;
    let pool = &app.state.db.pool;
    let who: String = sqlx::query_scalar("SELECT CAST(current_user AS TEXT)")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(who, role);
    // INSERT and SELECT work: the app records and verifies.
    app.user("admin@example.com", Role::Admin).await;
    append_events(&app, 3).await;
    checkpoint(&app).await;
    let report = verify(&app).await;
    assert!(report.broken.is_none(), "{}", report.summary());
    assert!(report.rows >= 4);

    // Nothing that would erase or rewrite the trail is allowed to the role.
    for sql in [
        "DELETE FROM audit_log WHERE seq = 1",
        "UPDATE audit_log SET reason = 'edited' WHERE seq = 1",
        "TRUNCATE audit_log",
        "DROP TRIGGER audit_log_no_update ON audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update",
        "DROP TABLE audit_log",
        "DELETE FROM audit_key_epochs",
        "TRUNCATE audit_key_epochs",
    ] {
        let error = sqlx::query(sql)
            .execute(pool)
            .await
            .expect_err(&format!("{sql} must be refused to the app role"));
        let text = error.to_string();
        assert!(
            text.contains("permission denied") || text.contains("must be owner"),
            "{sql}: {text}"
        );
    }
    assert!(verify(&app).await.broken.is_none());

    // The role goes again (roles are shared by every database of the server).
    app.state.db.pool.close().await;
    for sql in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
        let _ = sqlx::query(&sql).execute(&owner.pool).await;
    }
}

both_backends!(
    serve_writes_a_checkpoint_at_start_and_at_shutdown,
    |backend| async move {
        let (url, _dir) = common::fresh_database(backend).await;
        let logs = tempfile::tempdir().unwrap();
        let mut server = common::process::ServerProcess::spawn(&url, logs.path(), "anchor", &[]);
        server.wait_ready().await;
        let mut vars = vec![
            ("DATABASE_URL".to_string(), url.clone()),
            ("KYC_DESK_MASTER_KEY".to_string(), common::test_master_key()),
        ];
        if let Some(anchor) = kyc_desk::server::fresh_database::anchor_file_for(&url) {
            vars.push(("KYC_DESK_AUDIT_ANCHOR_FILE".to_string(), anchor));
        }
        let path = kyc_desk::server::startup::config_from(vars)
            .unwrap()
            .audit_anchor_file;
        // The first checkpoint is written as the server starts.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let first = loop {
            if let Some(first) = kyc_desk::server::audit::anchor::last(&path).unwrap() {
                break first;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint at start:\n{}",
                server.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        // A new row (a refused sign-in), then a graceful stop.
        let response = reqwest::Client::new()
            .post(format!("{}/api/login", server.base))
            .header("origin", &server.base)
            .form(&[
                ("email", "nobody@example.com"),
                ("password", "wrong password 123"),
            ])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
        // Refusals counted in memory (the first of the minute is a row, its repeats wait for
        // the minute's summary): a graceful stop writes the summary before the checkpoint.
        const FOREIGN_POSTS: u64 = 5;
        for _ in 0..FOREIGN_POSTS {
            let response = reqwest::Client::new()
                .post(format!("{}/api/logout", server.base))
                .header("origin", "https://evil.example")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
        let pid = server.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = server.0.child.wait().unwrap();
        assert!(exit.success(), "{exit}:\n{}", server.log());

        let db = Db::connect(&url).await.unwrap();
        let (seq, mac) = head(&db).await;
        assert!(seq > first.seq, "the sign-in left no row");
        let last = kyc_desk::server::audit::anchor::last(&path)
            .unwrap()
            .unwrap();
        assert_eq!((last.seq, last.mac), (seq, mac), "{}", server.log());
        let denied: Vec<AuditRow> = crate::audit::all_rows(&db)
            .await
            .into_iter()
            .filter(|row| row.action == "access.denied")
            .collect();
        assert_eq!(
            crate::audit::events_counted(&denied),
            FOREIGN_POSTS,
            "every refusal counted by the time the server stopped: {denied:?}"
        );
        db.pool.close().await;
    }
);

both_backends!(
    a_log_written_before_epochs_keeps_verifying_as_epoch_1,
    |backend| async move {
        use kyc_desk::server::vault::{SecretSlot, Vault};
        use secrecy::SecretString;
        let (url, dir) = common::fresh_database(backend).await;
        // The schema as it was before key epochs (every migration before 0009).
        let folder = match backend {
            common::Backend::Sqlite => "sqlite",
            common::Backend::Postgres => "postgres",
        };
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(folder);
        let before = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&source).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name[..4].parse::<u32>().unwrap() < 9 {
                std::fs::copy(&path, before.path().join(&name)).unwrap();
            }
        }
        let db = Db::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(before.path())
            .await
            .unwrap()
            .run(&db.pool)
            .await
            .unwrap();
        // As the earlier release kept it: the key derived from the master key, sealed under it
        // in `audit_key`, and rows signed with it.
        let master = MasterKey::from_base64(&common::test_master_key(), "test").unwrap();
        let derived = master.derive("audit");
        let vault = Vault::new(master, 1);
        let sealed = vault.seal(
            SecretSlot {
                credential_id: 0,
                field: "audit-key",
                version: 0,
            },
            &SecretString::from(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                derived.as_ref(),
            )),
        );
        let b64 = |bytes: &[u8]| {
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
        };
        sqlx::query(
            "INSERT INTO audit_key (id, ciphertext, nonce, key_version, created_at) VALUES (1, $1, $2, 1, 0)",
        )
        .bind(b64(&sealed.ciphertext))
        .bind(b64(&sealed.nonce))
        .execute(&db.pool)
        .await
        .unwrap();
        let mut prev = kyc_desk::server::audit::GENESIS_MAC.to_string();
        for seq in 1..=3i64 {
            let mut row = AuditRow {
                seq,
                at_ms: 1_700_000_000_000 + seq,
                actor_id: None,
                actor_email: String::new(),
                actor_role: "system".into(),
                ip: String::new(),
                request_id: format!("old-{seq}"),
                action: "test.old".into(),
                object_type: String::new(),
                object_id: String::new(),
                outcome: "success".into(),
                reason: String::new(),
                detail: "{}".into(),
                prev_mac: prev.clone(),
                mac: String::new(),
                key_epoch: 1,
            };
            row.mac = row_mac(&derived, &row.prev_mac, &row);
            sqlx::query(
                "INSERT INTO audit_log (seq, at_ms, actor_id, actor_email, actor_role, ip, request_id, \
                 action, object_type, object_id, outcome, reason, detail, prev_mac, mac) \
                 VALUES ($1, $2, NULL, '', 'system', '', $3, 'test.old', '', '', 'success', '', '{}', $4, $5)",
            )
            .bind(row.seq)
            .bind(row.at_ms)
            .bind(&row.request_id)
            .bind(&row.prev_mac)
            .bind(&row.mac)
            .execute(&db.pool)
            .await
            .unwrap();
            prev = row.mac;
        }
        db.pool.close().await;

        // The new release migrates: the key becomes epoch 1, the rows keep verifying, and new
        // rows chain on in epoch 1 until a rotation.
        let app = TestApp::start_on(&url, dir, &[]).await;
        let stored = epochs(&app.state.db).await;
        assert_eq!(stored.len(), 1);
        assert_eq!((stored[0].epoch, stored[0].first_seq), (1, 1));
        assert_eq!(
            *open_epoch_key(&app.state.vault, &stored[0]).unwrap(),
            *derived
        );
        append_events(&app, 2).await;
        let report = verify(&app).await;
        assert!(report.broken.is_none(), "{}", report.summary());
        assert_eq!(report.rows, 5);
        assert!(
            crate::audit::all_rows(&app.state.db)
                .await
                .iter()
                .all(|r| r.key_epoch == 1)
        );
    }
);
