//! The tamper-evident audit log: what is recorded for each action, the append-only
//! triggers, tamper detection, concurrent appends, the auditor's page and the export.

use crate::common;

use common::{PASSWORD, TestApp};
use kyc_desk::server::audit::{AuditEvent, AuditLog, Break, Outcome, RequestMeta};
use kyc_desk::server::db::{self, Db, audit::AuditRow};
use kyc_desk::types::Role;
use reqwest::StatusCode;
use serde_json::Value;

/// Every row of the log, in chain order.
pub async fn all_rows(db: &Db) -> Vec<AuditRow> {
    sqlx::query_as::<_, AuditRow>(
        "SELECT seq, at_ms, actor_id, actor_email, actor_role, ip, request_id, action, \
         object_type, object_id, outcome, reason, detail, prev_mac, mac, key_epoch FROM audit_log ORDER BY seq",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// The rows of one action.
pub async fn rows_of(app: &TestApp, action: &str) -> Vec<AuditRow> {
    all_rows(&app.state.db)
        .await
        .into_iter()
        .filter(|r| r.action == action)
        .collect()
}

/// How many events `rows` stand for: a row written for the first refusal of its kind from a
/// client in a minute stands for one, the summary row of its repeats for their count.
pub fn events_counted(rows: &[AuditRow]) -> u64 {
    rows.iter()
        .map(|row| {
            serde_json::from_str::<serde_json::Value>(&row.detail)
                .ok()
                .and_then(|detail| detail["repeats"].as_u64())
                .unwrap_or(1)
        })
        .sum()
}

/// Asserts exactly one row of `action` with this actor, object and outcome; returns it.
pub async fn one_row(
    app: &TestApp,
    action: &str,
    actor_role: &str,
    actor_email: &str,
    object: (&str, &str),
    outcome: &str,
) -> AuditRow {
    let rows = rows_of(app, action).await;
    assert_eq!(rows.len(), 1, "expected one {action} row, got {rows:#?}");
    let row = rows.into_iter().next().unwrap();
    assert_eq!(row.actor_role, actor_role, "{row:#?}");
    assert_eq!(row.actor_email, actor_email, "{row:#?}");
    assert_eq!(
        (row.object_type.as_str(), row.object_id.as_str()),
        object,
        "{row:#?}"
    );
    assert_eq!(row.outcome, outcome, "{row:#?}");
    assert!(!row.request_id.is_empty());
    row
}

async fn verify(app: &TestApp) -> kyc_desk::server::audit::VerifyReport {
    app.state.audit.verify(&app.state.db).await.unwrap()
}

/// Drops the append-only triggers, as someone with the owner's rights could.
pub async fn drop_triggers(db: &Db) {
    match db.backend {
        db::Backend::Sqlite => {
            sqlx::query("DROP TRIGGER audit_log_no_update")
                .execute(&db.pool)
                .await
                .unwrap();
            sqlx::query("DROP TRIGGER audit_log_no_delete")
                .execute(&db.pool)
                .await
                .unwrap();
        }
        db::Backend::Postgres => {
            sqlx::query("DROP TRIGGER audit_log_no_update ON audit_log")
                .execute(&db.pool)
                .await
                .unwrap();
        }
    }
}

/// Records `n` system events.
pub async fn append_events(app: &TestApp, n: usize) {
    for i in 0..n {
        app.state
            .audit
            .record(
                &app.state.db,
                &RequestMeta::system(),
                &AuditEvent::new(
                    kyc_desk::server::audit::Actor::System,
                    "test.event",
                    Outcome::Success,
                )
                .object("thing", i)
                .reason(format!("event {i}"))
                .detail(serde_json::json!({ "i": i })),
            )
            .await;
    }
}

both_backends!(
    the_database_refuses_to_change_or_delete_rows,
    |backend| async move {
        let app = TestApp::start(backend).await;
        append_events(&app, 3).await;
        let pool = &app.state.db.pool;
        let update = sqlx::query("UPDATE audit_log SET reason = 'edited' WHERE seq = 2")
            .execute(pool)
            .await
            .expect_err("UPDATE must be refused");
        assert!(update.to_string().contains("append-only"), "{update}");
        let delete = sqlx::query("DELETE FROM audit_log WHERE seq = 1")
            .execute(pool)
            .await
            .expect_err("DELETE must be refused");
        assert!(delete.to_string().contains("append-only"), "{delete}");
        if backend == common::Backend::Postgres {
            let truncate = sqlx::query("TRUNCATE audit_log")
                .execute(pool)
                .await
                .expect_err("TRUNCATE must be refused");
            assert!(truncate.to_string().contains("append-only"), "{truncate}");
        }
        let report = verify(&app).await;
        assert!(report.broken.is_none(), "{}", report.summary());
        assert_eq!(report.rows, 3);
    }
);

both_backends!(
    tampering_with_any_field_names_the_row,
    |backend| async move {
        let app = TestApp::start(backend).await;
        append_events(&app, 12).await;
        drop_triggers(&app.state.db).await;
        let pool = &app.state.db.pool;
        let edits: [(&str, &str); 14] = [
            ("at_ms", "at_ms = at_ms + 1"),
            ("actor_id", "actor_id = 99"),
            ("actor_email", "actor_email = 'mallory@example.com'"),
            ("actor_role", "actor_role = 'admin'"),
            ("ip", "ip = '10.9.9.9'"),
            ("request_id", "request_id = 'forged'"),
            ("action", "action = 'test.other'"),
            ("object_type", "object_type = 'user'"),
            ("object_id", "object_id = '999'"),
            ("outcome", "outcome = 'failure'"),
            ("reason", "reason = 'nothing happened'"),
            ("detail", "detail = '{\"i\":1000}'"),
            ("prev_mac", "prev_mac = mac"),
            ("mac", "mac = prev_mac"),
        ];
        for (index, (field, assignment)) in edits.iter().enumerate() {
            let seq = (index % 12) as i64 + 1;
            let original = all_rows(&app.state.db).await[(seq - 1) as usize].clone();
            sqlx::query(&format!("UPDATE audit_log SET {assignment} WHERE seq = $1"))
                .bind(seq)
                .execute(pool)
                .await
                .unwrap();
            let report = verify(&app).await;
            let (broken_seq, why) = report
                .broken
                .clone()
                .unwrap_or_else(|| panic!("changing {field} of seq {seq} was not detected"));
            assert_eq!(broken_seq, seq, "{field}: {}", report.summary());
            let expected = if *field == "prev_mac" {
                Break::BrokenLink
            } else {
                Break::MacMismatch
            };
            assert_eq!(why, expected, "{field}");
            assert_eq!(report.rows, (seq - 1) as u64);
            assert!(report.summary().contains(&format!("seq {seq}")));
            // Put the row back exactly; the chain verifies again.
            sqlx::query(
                "UPDATE audit_log SET at_ms = $1, actor_id = $2, actor_email = $3, actor_role = $4, ip = $5, \
                 request_id = $6, action = $7, object_type = $8, object_id = $9, outcome = $10, reason = $11, \
                 detail = $12, prev_mac = $13, mac = $14 WHERE seq = $15",
            )
            .bind(original.at_ms)
            .bind(original.actor_id)
            .bind(&original.actor_email)
            .bind(&original.actor_role)
            .bind(&original.ip)
            .bind(&original.request_id)
            .bind(&original.action)
            .bind(&original.object_type)
            .bind(&original.object_id)
            .bind(&original.outcome)
            .bind(&original.reason)
            .bind(&original.detail)
            .bind(&original.prev_mac)
            .bind(&original.mac)
            .bind(seq)
            .execute(pool)
            .await
            .unwrap();
            assert!(verify(&app).await.broken.is_none(), "restoring {field}");
        }

        // Reordering: rows 4 and 5 swap places.
        for sql in [
            "UPDATE audit_log SET seq = -1 WHERE seq = 4",
            "UPDATE audit_log SET seq = 4 WHERE seq = 5",
            "UPDATE audit_log SET seq = 5 WHERE seq = -1",
        ] {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        let report = verify(&app).await;
        assert_eq!(
            report.broken.as_ref().map(|b| b.0),
            Some(4),
            "{}",
            report.summary()
        );
        for sql in [
            "UPDATE audit_log SET seq = -1 WHERE seq = 4",
            "UPDATE audit_log SET seq = 4 WHERE seq = 5",
            "UPDATE audit_log SET seq = 5 WHERE seq = -1",
        ] {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        assert!(verify(&app).await.broken.is_none());

        // Deleting a row leaves a gap.
        sqlx::query("DELETE FROM audit_log WHERE seq = 7")
            .execute(pool)
            .await
            .unwrap();
        let report = verify(&app).await;
        assert_eq!(report.broken, Some((7, Break::Gap { found: 8 })));
        assert_eq!(report.rows, 6);
        assert!(report.summary().contains("gap in seq"));

        // A row forged with the right shape but without the key does not verify either.
        let forged_key = AuditLog::with_key([1u8; 32]);
        let report = forged_key.verify(&app.state.db).await.unwrap();
        assert_eq!(report.broken.map(|b| b.0), Some(1));
    }
);

both_backends!(
    concurrent_appends_make_one_gap_free_chain,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let before = db::audit::count(&app.state.db.pool).await.unwrap();
        // On PostgreSQL a second pool with its own audit handle stands in for a second
        // instance of KYC Desk on the same database.
        let second = match backend {
            common::Backend::Postgres => {
                let db = Db::connect(&app.database_url).await.unwrap();
                let vault = app.state.vault.clone();
                let audit = AuditLog::open(&db, &vault).await.unwrap();
                Some((db, audit))
            }
            common::Backend::Sqlite => None,
        };
        let mut tasks = Vec::new();
        for task in 0..16 {
            let (db, audit) = match (&second, task % 2) {
                (Some((db, audit)), 1) => (db.clone(), audit.clone()),
                _ => (app.state.db.clone(), app.state.audit.clone()),
            };
            tasks.push(tokio::spawn(async move {
                for i in 0..125 {
                    audit
                        .try_record(
                            &db,
                            &RequestMeta::system(),
                            &AuditEvent::new(
                                kyc_desk::server::audit::Actor::System,
                                "test.concurrent",
                                Outcome::Success,
                            )
                            .object("task", task)
                            .detail(serde_json::json!({ "i": i })),
                        )
                        .await
                        .expect("append");
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let rows = all_rows(&app.state.db).await;
        assert_eq!(rows.len() as i64, before + 2000);
        for (index, row) in rows.iter().enumerate() {
            assert_eq!(row.seq, index as i64 + 1, "seq gap");
        }
        let report = verify(&app).await;
        assert!(report.broken.is_none(), "{}", report.summary());
        assert_eq!(report.rows as i64, before + 2000);
    }
);

both_backends!(
    auth_and_user_actions_write_exactly_one_row_each,
    |backend| async move {
        let app = TestApp::start(backend).await;

        // First-admin setup.
        let token = kyc_desk::server::auth::accounts::issue_setup_token(&app.state)
            .await
            .unwrap()
            .unwrap();
        let admin = app.client();
        let (status, _) = app
            .call(
                &admin,
                "create_first_admin",
                &[
                    ("token", &token),
                    ("email", "root@example.com"),
                    ("display_name", "Root"),
                    ("password", PASSWORD),
                    ("password_confirm", PASSWORD),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let root = one_row(
            &app,
            "setup.first_admin",
            "admin",
            "root@example.com",
            ("user", "1"),
            "success",
        )
        .await;
        assert_eq!(root.actor_id, Some(1));

        // The sensitive changes below need a step-up: one row.
        let (status, body) = app.call(&admin, "step_up", &[("secret", PASSWORD)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        one_row(
            &app,
            "auth.step_up",
            "admin",
            "root@example.com",
            ("user", "1"),
            "success",
        )
        .await;

        // User management by the admin.
        let (status, body) = app
            .call(
                &admin,
                "create_user",
                &[
                    ("email", "olga@example.com"),
                    ("display_name", "Olga"),
                    ("role", "operator"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let olga = body["id"].as_i64().unwrap().to_string();
        let created = one_row(
            &app,
            "user.create",
            "admin",
            "root@example.com",
            ("user", &olga),
            "success",
        )
        .await;
        assert!(!created.detail.contains(PASSWORD));
        app.call(
            &admin,
            "set_user_role",
            &[("user_id", &olga), ("role", "auditor")],
        )
        .await;
        one_row(
            &app,
            "user.role_change",
            "admin",
            "root@example.com",
            ("user", &olga),
            "success",
        )
        .await;
        app.call(
            &admin,
            "set_user_role",
            &[("user_id", &olga), ("role", "operator")],
        )
        .await;
        app.call(
            &admin,
            "set_user_disabled",
            &[("user_id", &olga), ("disabled", "true")],
        )
        .await;
        one_row(
            &app,
            "user.disable",
            "admin",
            "root@example.com",
            ("user", &olga),
            "success",
        )
        .await;
        app.call(
            &admin,
            "set_user_disabled",
            &[("user_id", &olga), ("disabled", "false")],
        )
        .await;
        one_row(
            &app,
            "user.enable",
            "admin",
            "root@example.com",
            ("user", &olga),
            "success",
        )
        .await;
        let new_password = "another long passphrase 7";
        let (status, body) = app
            .call(
                &admin,
                "reset_user_password",
                &[("user_id", &olga), ("password", new_password)],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        one_row(
            &app,
            "user.password_reset",
            "admin",
            "root@example.com",
            ("user", &olga),
            "success",
        )
        .await;

        // Sign-in failure, success, password change, sign-out.
        let operator = app.client();
        let (status, _) = app
            .call(
                &operator,
                "login",
                &[
                    ("email", "olga@example.com"),
                    ("password", "wrong password 123"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let failed = one_row(&app, "auth.sign_in", "anonymous", "", ("", ""), "failure").await;
        assert!(
            failed.detail.contains("o***@example.com"),
            "{}",
            failed.detail
        );
        assert!(
            !failed.detail.contains("olga@"),
            "full email in {}",
            failed.detail
        );
        let (status, _) = app
            .call(
                &operator,
                "login",
                &[("email", "olga@example.com"), ("password", new_password)],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let signed_in: Vec<_> = rows_of(&app, "auth.sign_in")
            .await
            .into_iter()
            .filter(|r| r.outcome == "success" && r.actor_email == "olga@example.com")
            .collect();
        assert_eq!(signed_in.len(), 1);
        let (status, body) = app
            .call(
                &operator,
                "change_password",
                &[
                    ("current_password", new_password),
                    ("new_password", PASSWORD),
                    ("confirm_password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        one_row(
            &app,
            "auth.password_change",
            "operator",
            "olga@example.com",
            ("user", &olga),
            "success",
        )
        .await;

        // A role check refusal is recorded as denied, with the caller.
        let (status, _) = app.call(&operator, "list_users", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = app.get(&operator, "/audit").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app.call(&operator, "list_audit", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // The second refused server function is a repeat within the minute: counted, and
        // written out as a summary row once the minute is over (here: at once).
        app.state.audit_noise.flush().await;
        let denied = rows_of(&app, "access.denied").await;
        assert_eq!(denied.len(), 3, "{denied:#?}");
        assert!(
            denied
                .iter()
                .all(|r| r.actor_email == "olga@example.com" && r.outcome == "denied")
        );

        // The origin check refuses a cross-site call before it runs, and records it.
        let (status, _) = {
            let response = operator
                .post(format!("{}/api/logout", app.base))
                .header("origin", "https://evil.example")
                .send()
                .await
                .unwrap();
            (response.status(), ())
        };
        assert_eq!(status, StatusCode::FORBIDDEN);
        let denied = rows_of(&app, "access.denied").await;
        assert_eq!(denied.len(), 4);
        assert!(denied[3].reason.contains("cross-origin"));

        app.call(&operator, "logout", &[]).await;
        one_row(
            &app,
            "auth.sign_out",
            "operator",
            "olga@example.com",
            ("user", &olga),
            "success",
        )
        .await;

        // Throttling: the sixth attempt on one account is refused and recorded as denied.
        for _ in 0..5 {
            app.call(
                &operator,
                "login",
                &[
                    ("email", "olga@example.com"),
                    ("password", "wrong password 123"),
                ],
            )
            .await;
        }
        let (status, _) = app
            .call(
                &operator,
                "login",
                &[
                    ("email", "olga@example.com"),
                    ("password", "wrong password 123"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let throttled: Vec<_> = rows_of(&app, "auth.sign_in")
            .await
            .into_iter()
            .filter(|r| r.outcome == "denied")
            .collect();
        assert_eq!(throttled.len(), 1, "{throttled:#?}");
        assert_eq!(throttled[0].reason, "throttled");

        let report = verify(&app).await;
        assert!(report.broken.is_none(), "{}", report.summary());
    }
);

both_backends!(
    session_timeout_is_recorded_by_the_system,
    |backend| async move {
        let app = TestApp::start_with(backend, &[("KYC_DESK_SESSION_IDLE_TIMEOUT", "1s")]).await;
        // (The absolute timeout stays at its default, so the store still holds the session
        // and KYC Desk itself sees, ends and records the idle timeout.)
        let user = app.user("ivan@example.com", Role::Operator).await;
        let client = app.signed_in("ivan@example.com").await;
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(app.whoami(&client).await, Value::Null);
        one_row(
            &app,
            "auth.session_timeout",
            "system",
            "",
            ("user", &user.id.to_string()),
            "success",
        )
        .await;
    }
);

fn audit_args(filter: &[(&str, &str)]) -> Vec<(String, String)> {
    filter
        .iter()
        .map(|(k, v)| (format!("filter[{k}]"), v.to_string()))
        .collect()
}

both_backends!(
    the_auditor_page_filters_pages_exports_and_verifies,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("root@example.com", Role::Admin).await;
        app.user("ada@example.com", Role::Auditor).await;
        app.user("olga@example.com", Role::Operator).await;
        let admin = app.signed_in("root@example.com").await;
        for i in 0..60 {
            let (status, _) = app
                .call(
                    &admin,
                    "create_user",
                    &[
                        ("email", &format!("staff{i}@example.com")),
                        ("display_name", &format!("Staff {i}")),
                        ("role", "operator"),
                        ("password", PASSWORD),
                    ],
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        let auditor = app.signed_in("ada@example.com").await;

        let call = |args: Vec<(String, String)>| {
            let app = &app;
            let auditor = auditor.clone();
            async move {
                let args: Vec<(&str, &str)> =
                    args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                app.call(&auditor, "list_audit", &args).await
            }
        };
        // Filter to the admin's user creations: 60 rows, in pages of 50, newest first.
        let (status, page) =
            call(audit_args(&[("actor", "root@"), ("action", "user.create")])).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let entries = page["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 50);
        assert!(
            entries
                .iter()
                .all(|e| e["action"] == "user.create" && e["actor_email"] == "root@example.com")
        );
        let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first");
        let before = page["next_before"].as_i64().expect("a next page");
        let (_, page2) = call(audit_args(&[
            ("actor", "root@"),
            ("action", "user.create"),
            ("before", &before.to_string()),
        ]))
        .await;
        let entries2 = page2["entries"].as_array().unwrap();
        assert_eq!(entries2.len(), 10);
        assert!(page2["next_before"].is_null());
        assert!(entries2.iter().all(|e| e["seq"].as_i64().unwrap() < before));

        // A family filter, outcome, full text and an object filter.
        let (_, page) = call(audit_args(&[("action", "auth."), ("outcome", "success")])).await;
        let entries = page["entries"].as_array().unwrap();
        assert!(!entries.is_empty());
        assert!(entries.iter().all(
            |e| e["action"].as_str().unwrap().starts_with("auth.") && e["outcome"] == "success"
        ));
        let (_, page) = call(audit_args(&[("q", "\"role\": \"operator\"")])).await;
        assert!(
            page["entries"].as_array().unwrap().is_empty(),
            "pretty JSON is not what is stored"
        );
        let (_, page) = call(audit_args(&[("q", "\"role\":\"operator\"")])).await;
        assert_eq!(page["entries"].as_array().unwrap().len(), 50);
        let (_, page) = call(audit_args(&[("object", "user:5")])).await;
        let entries = page["entries"].as_array().unwrap();
        assert!(!entries.is_empty());
        assert!(
            entries
                .iter()
                .all(|e| e["object_type"] == "user" && e["object_id"] == "5")
        );

        // Bad filters get field-level messages.
        let (status, body) = call(audit_args(&[("from", "yesterday"), ("outcome", "maybe")])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let fields = body["Validation"]["fields"].as_array().unwrap();
        let names: Vec<&str> = fields
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"from") && names.contains(&"outcome"),
            "{body}"
        );

        // Opening the log was recorded, once per successful open.
        let views = rows_of(&app, "audit.view").await;
        assert_eq!(views.len(), 6, "{views:#?}");
        assert!(views.iter().all(|v| v.actor_email == "ada@example.com"));

        // CSV export: filtered rows, quoted, with the chain head as the last line.
        let response = auditor
            .get(format!("{}/audit/export.csv?action=user.create", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let csv = response.text().await.unwrap();
        let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!(lines[0].starts_with("\"seq\",\"time_utc\""));
        assert!(lines[0].ends_with("\"mac\",\"key_epoch\""), "{}", lines[0]);
        assert_eq!(
            lines.len(),
            1 + 63 + 1,
            "header, 63 user.create rows (60 + 3 by the command line), trailer"
        );
        let head = kyc_desk::server::db::audit::head_of(&app.state.db.pool)
            .await
            .unwrap()
            .unwrap();
        let trailer = lines.last().unwrap();
        assert!(trailer.contains("# chain head"));
        // The export row itself is the head now; the trailer names the head before it.
        assert!(
            trailer.contains(&format!("seq={}", head.0 - 1)),
            "{trailer} vs {head:?}"
        );
        one_row(
            &app,
            "audit.export",
            "auditor",
            "ada@example.com",
            ("", ""),
            "success",
        )
        .await;
        let operator = app.signed_in("olga@example.com").await;
        let response = operator
            .get(format!("{}/audit/export.csv", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(!response.text().await.unwrap().contains("user.create"));

        // Verification from the page.
        let (status, body) = app.call(&auditor, "verify_audit", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["intact"], true);
        assert!(body["summary"].as_str().unwrap().contains("rows verified"));
        one_row(
            &app,
            "audit.verify",
            "auditor",
            "ada@example.com",
            ("", ""),
            "success",
        )
        .await;
        let (status, _) = app.call(&operator, "verify_audit", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
);

both_backends!(
    verification_survives_master_key_rotation_and_restart,
    |backend| async move {
        let app = TestApp::start(backend).await;
        append_events(&app, 5).await;
        let new_key = kyc_desk::server::vault::MasterKey::generate();
        let new_key_text = new_key.to_base64().to_string();
        kyc_desk::server::credentials::rotate_master_key(&app.state, new_key)
            .await
            .unwrap();
        assert_eq!(rows_of(&app, "vault.master_key_rotate").await.len(), 1);
        // A new instance with the new key opens the same audit key: the old rows verify.
        let second = TestApp::start_on(
            &app.database_url,
            None,
            &[("KYC_DESK_MASTER_KEY", &new_key_text)],
        )
        .await;
        let report = verify(&second).await;
        assert!(report.broken.is_none(), "{}", report.summary());
        assert_eq!(report.rows, 6);
        append_events(&second, 1).await;
        assert_eq!(verify(&second).await.rows, 7);
    }
);

both_backends!(
    credential_changes_and_tests_write_exactly_one_row_each,
    |backend| async move {
        let app = TestApp::start_with(backend, &[("KYC_DESK_SANDBOX", "true")]).await;
        let admin_row = app.user("root@example.com", Role::Admin).await;
        let admin = app.signed_in("root@example.com").await;
        let actor = kyc_desk::server::audit::Actor::User {
            id: admin_row.id,
            email: "root@example.com".into(),
            role: Role::Admin,
        };
        let base = format!("{}/sandbox/eko", app.base);
        let input = |access_key: &str| kyc_desk::credential_kinds::CredentialInput {
            kind: "eko_digilocker".into(),
            environment: "uat".into(),
            settings: [
                ("base_url", base.clone()),
                (
                    "initiator_id",
                    kyc_desk::server::sandbox::seed::EKO_INITIATOR_ID.to_string(),
                ),
                (
                    "user_code",
                    kyc_desk::server::sandbox::seed::EKO_USER_CODE.to_string(),
                ),
                ("documents", "AADHAAR".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            secrets: [
                (
                    "developer_key",
                    kyc_desk::server::sandbox::seed::EKO_DEVELOPER_KEY,
                ),
                ("access_key", access_key),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        let canary = "canary-audit-access-key-0001";
        kyc_desk::server::credentials::save(
            &app.state,
            &RequestMeta::cli(),
            actor.clone(),
            "root@example.com",
            &input(canary),
            true,
        )
        .await
        .unwrap();
        one_row(
            &app,
            "credential.create",
            "admin",
            "root@example.com",
            ("credential", "eko_digilocker/uat"),
            "success",
        )
        .await;
        kyc_desk::server::credentials::save(
            &app.state,
            &RequestMeta::cli(),
            actor,
            "root@example.com",
            &input(kyc_desk::server::sandbox::seed::EKO_ACCESS_KEY),
            true,
        )
        .await
        .unwrap();
        let rotated = one_row(
            &app,
            "credential.rotate",
            "admin",
            "root@example.com",
            ("credential", "eko_digilocker/uat"),
            "success",
        )
        .await;
        assert!(
            rotated.detail.contains("old_fingerprints")
                && rotated.detail.contains("new_fingerprints"),
            "{}",
            rotated.detail
        );
        assert!(!rotated.detail.contains(canary));
        let (status, body) = app
            .call(
                &admin,
                "test_credential",
                &[("kind", "eko_digilocker"), ("environment", "uat")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        one_row(
            &app,
            "credential.test",
            "admin",
            "root@example.com",
            ("credential", "eko_digilocker/uat"),
            "success",
        )
        .await;
        for row in all_rows(&app.state.db).await {
            assert!(
                !format!("{row:?}").contains(canary),
                "secret in audit row {}",
                row.seq
            );
        }
    }
);

// Issue 18 §4: an audit search for a phone or Aadhaar number, however it is written
// (spaces, dashes, dots), is recorded in the `audit.view` row with the number masked; the
// row holds the filter as typed, not URL-encoded (`98765%2043210` escaped the old scrub).
both_backends!(
    audit_searches_for_numbers_are_recorded_masked,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("ada@example.com", Role::Auditor).await;
        let auditor = app.signed_in("ada@example.com").await;
        let searches = [
            ("98765 43210", "***** *3210"),
            ("98765-43210", "*****-*3210"),
            ("987.654.3210", "***.***.3210"),
            ("+91 98765 43210", "+** ***** *3210"),
            ("1234 5678 9012", "**** **** 9012"),
            ("1234-5678-9012", "****-****-9012"),
        ];
        for (q, _) in searches {
            let args = audit_args(&[("q", q)]);
            let args: Vec<(&str, &str)> =
                args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (status, page) = app.call(&auditor, "list_audit", &args).await;
            assert_eq!(status, StatusCode::OK, "{page}");
        }
        let views = rows_of(&app, "audit.view").await;
        assert_eq!(views.len(), searches.len());
        for (row, (typed, masked)) in views.iter().zip(searches) {
            let detail: Value = serde_json::from_str(&row.detail).unwrap();
            assert_eq!(detail["filter"]["q"], masked, "{typed}: {}", row.detail);
            let digits: String = row.detail.chars().filter(char::is_ascii_digit).collect();
            for full in ["9876543210", "123456789012", "98765", "12345678"] {
                assert!(!digits.contains(full), "{typed}: {}", row.detail);
            }
        }
    }
);
