//! Upgrading a database written by an older release: sessions made before customer links
//! (`created`, `sent`) keep working as `started` after migration 0016, other states stay, their
//! timelines and deliveries still belong to them, and the first privacy notice exists.

use crate::common;

use common::{Backend, fresh_database};
use kyc_desk::server::db::Db;

both_backends!(
    sessions_of_an_older_release_keep_working_after_the_customer_link_migration,
    |backend| async move {
        let (url, _dir) = fresh_database(backend).await;
        let db = Db::connect(&url).await.unwrap();
        db.migrate_up_to(15).await.unwrap();
        let pool = &db.pool;
        sqlx::query(
            "INSERT INTO users (email, display_name, role, password_hash, password_changed_at, \
             created_at, updated_at) VALUES ('old@example.com', 'Old', 'operator', 'x', 0, 0, 0)",
        )
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO credentials (kind, environment, version, status, settings, saved_by, saved_at) \
             VALUES ('eko_digilocker', 'uat', 1, 'active', '{}', 'old@example.com', 0)",
        )
        .execute(pool)
        .await
        .unwrap();
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
