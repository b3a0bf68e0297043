//! Upgrading a database written by an older release: sessions made before customer links
//! (`created`, `sent`) keep working as `started` after migration 0016, other states stay, their
//! timelines and deliveries still belong to them, and the first privacy notice exists; an audit
//! chain written before migration 0018 goes on from its last row; a return for a link made
//! before the mint table (0016) is still matched after 0019.

use crate::common;

use common::{Backend, fresh_database};
use kyc_desk::server::audit::{
    Actor, AuditEvent, AuditLog, GENESIS_MAC, Outcome, RequestMeta, row_mac,
};
use kyc_desk::server::db::{Db, audit::AuditRow};

/// A database as the release before customer links left it (migrated up to 0015), with one
/// operator and one active credential of `kind` in `environment`: what an older session row
/// refers to.
async fn before_customer_links(
    backend: Backend,
    kind: &str,
    environment: &str,
) -> (Db, Option<tempfile::TempDir>) {
    let (url, dir) = fresh_database(backend).await;
    let db = Db::connect(&url).await.unwrap();
    db.migrate_up_to(15).await.unwrap();
    sqlx::query(
        "INSERT INTO users (email, display_name, role, password_hash, password_changed_at, \
         created_at, updated_at) VALUES ('old@example.com', 'Old', 'operator', 'x', 0, 0, 0)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO credentials (kind, environment, version, status, settings, saved_by, saved_at) \
         VALUES ($1, $2, 1, 'active', '{}', 'old@example.com', 0)",
    )
    .bind(kind)
    .bind(environment)
    .execute(&db.pool)
    .await
    .unwrap();
    (db, dir)
}

both_backends!(
    sessions_of_an_older_release_keep_working_after_the_customer_link_migration,
    |backend| async move {
        let (db, _dir) = before_customer_links(backend, "eko_digilocker", "uat").await;
        let pool = &db.pool;
        for (n, status) in ["created", "sent", "returned", "completed", "expired"]
            .iter()
            .enumerate()
        {
            sqlx::query(&format!(
                "INSERT INTO kyc_sessions (public_id, idempotency_key, provider, flow, environment, \
                 credential_id, customer_name, phone, consent_note, status, link_url, expires_at, \
                 created_by, created_at, updated_at) VALUES ('old{n}', 'key{n}', 'eko', 'digilocker', \
                 'uat', (SELECT MIN(id) FROM credentials), 'Old Customer', '+919876543210', 'ok', \
                 '{status}', 'https://provider.example/{n}', 4102444800, (SELECT MIN(id) FROM users), 0, 0)"
            ))
            .execute(pool)
            .await
            .unwrap();
            sqlx::query(&format!(
                "INSERT INTO kyc_events (session_id, at, kind, actor, detail) \
                 SELECT id, 0, '{status}', 'old', 'before the upgrade' FROM kyc_sessions WHERE public_id = 'old{n}'"
            ))
            .execute(pool)
            .await
            .unwrap();
        }

        db.migrate().await.unwrap();
        let statuses: Vec<(String, String)> =
            sqlx::query_as("SELECT public_id, status FROM kyc_sessions ORDER BY public_id")
                .fetch_all(pool)
                .await
                .unwrap();
        let expected = [
            ("old0", "started"),
            ("old1", "started"),
            ("old2", "returned"),
            ("old3", "completed"),
            ("old4", "expired"),
        ];
        assert_eq!(
            statuses,
            expected
                .iter()
                .map(|(id, status)| (id.to_string(), status.to_string()))
                .collect::<Vec<_>>()
        );
        // Their provider URLs, timelines and the new columns' defaults.
        let (links, events, codes, mints): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM kyc_sessions WHERE link_url IS NOT NULL), \
             (SELECT COUNT(*) FROM kyc_events e JOIN kyc_sessions s ON s.id = e.session_id), \
             (SELECT COUNT(*) FROM kyc_sessions WHERE customer_code IS NOT NULL), \
             (SELECT SUM(mint_count) FROM kyc_sessions)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!((links, events, codes, mints), (5, 5, 0, 0));
        // The new states are accepted, a made-up one still refused.
        sqlx::query("UPDATE kyc_sessions SET status = 'withdrawn' WHERE public_id = 'old0'")
            .execute(pool)
            .await
            .unwrap();
        assert!(
            sqlx::query("UPDATE kyc_sessions SET status = 'created' WHERE public_id = 'old1'")
                .execute(pool)
                .await
                .is_err(),
            "the old state is gone from the check"
        );
        let notices: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM privacy_notices")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(notices, 1);
        if backend == Backend::Sqlite {
            let broken: Vec<(String,)> =
                sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                    .fetch_all(pool)
                    .await
                    .unwrap();
            assert!(broken.is_empty(), "{broken:?}");
        }
    }
);

both_backends!(
    a_return_for_a_link_made_before_the_mint_table_still_finds_its_session,
    |backend| async move {
        // Before 0016 a session's provider ids were only on its row; 0019 gives such a session
        // a mint row (returns are matched through `link_mints` from then on).
        let (db, _dir) = before_customer_links(backend, "message_central", "production").await;
        let pool = &db.pool;
        for (n, journey, token) in [
            (0, Some("J-OLD-0"), Some("T-OLD-0")),
            (1, None, Some("T-OLD-1")),
            (2, None, None),
        ] {
            sqlx::query(
                "INSERT INTO kyc_sessions (public_id, idempotency_key, provider, flow, environment, \
                 credential_id, customer_name, phone, consent_note, status, link_url, expires_at, \
                 journey_id, provider_token, created_by, created_at, updated_at) VALUES ($1, $2, \
                 'message_central', 'basic', 'production', (SELECT MIN(id) FROM credentials), \
                 'Old Customer', '+919876543210', 'ok', 'sent', 'https://provider.example/', \
                 4102444800, $3, $4, (SELECT MIN(id) FROM users), 7, 7)",
            )
            .bind(format!("old{n}"))
            .bind(format!("key{n}"))
            .bind(journey)
            .bind(token)
            .execute(pool)
            .await
            .unwrap();
        }
        db.migrate().await.unwrap();
        let found = |journey: Option<&'static str>, token: Option<&'static str>| async move {
            kyc_desk::server::db::links::find_by_journey(pool, journey, token)
                .await
                .unwrap()
                .map(|row| row.public_id)
        };
        assert_eq!(found(Some("J-OLD-0"), None).await.as_deref(), Some("old0"));
        assert_eq!(found(None, Some("T-OLD-0")).await.as_deref(), Some("old0"));
        assert_eq!(
            found(Some("J-UNKNOWN"), Some("T-OLD-1")).await.as_deref(),
            Some("old1")
        );
        assert_eq!(found(Some("J-UNKNOWN"), Some("T-UNKNOWN")).await, None);
        assert_eq!(found(None, None).await, None);
        // One mint row each for the two that had a URL's ids, none for the third; the row's
        // time is the session's creation (no mint time was kept then).
        let mints: Vec<(String, i64, Option<String>)> = sqlx::query_as(
            "SELECT s.public_id, m.minted_at, m.token FROM link_mints m \
             JOIN kyc_sessions s ON s.id = m.session_id ORDER BY s.public_id",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(
            mints,
            [
                ("old0".to_string(), 7, Some("T-OLD-0".to_string())),
                ("old1".to_string(), 7, Some("T-OLD-1".to_string())),
            ]
        );
    }
);

both_backends!(
    an_audit_chain_written_before_the_head_row_goes_on_from_its_last_row,
    |backend| async move {
        let (url, _dir) = fresh_database(backend).await;
        let db = Db::connect(&url).await.unwrap();
        db.migrate_up_to(17).await.unwrap();
        // Three rows as an older release wrote them (its appends read the head from the log).
        let key = [7u8; 32];
        let mut prev_mac = GENESIS_MAC.to_string();
        for seq in 1..=3 {
            let mut row = AuditRow {
                seq,
                at_ms: 1_790_000_000_000 + seq,
                actor_id: None,
                actor_email: String::new(),
                actor_role: "system".into(),
                ip: String::new(),
                request_id: format!("before-{seq}"),
                action: "test.before_upgrade".into(),
                object_type: String::new(),
                object_id: String::new(),
                outcome: "success".into(),
                reason: String::new(),
                detail: "{}".into(),
                prev_mac: prev_mac.clone(),
                mac: String::new(),
                key_epoch: 1,
            };
            row.mac = row_mac(&key, &row.prev_mac, &row);
            let mut conn = db.pool.acquire().await.unwrap();
            kyc_desk::server::db::audit::insert(&mut conn, &row)
                .await
                .unwrap();
            prev_mac = row.mac;
        }

        db.migrate().await.unwrap();
        let log = AuditLog::with_key(key);
        let event = AuditEvent::new(Actor::System, "test.after_upgrade", Outcome::Success);
        let seq = log
            .try_record(&db, &RequestMeta::system(), &event)
            .await
            .unwrap();
        assert_eq!(
            seq, 4,
            "the first row after the upgrade follows the last one before"
        );
        let report = log.verify(&db).await.unwrap();
        assert!(report.broken.is_none(), "{}", report.summary());
        assert_eq!(report.rows, 4);
    }
);
