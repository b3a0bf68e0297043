//! Which commits wait for the disk. A transaction begun for an unflushed commit (request
//! limits, a Start's consent) switches PostgreSQL's `synchronous_commit` off with its own
//! `BEGIN`, saving the round trip a separate `SET LOCAL` took; every other transaction, and a
//! plain commit of such a one, waits for the write-ahead log's flush as before.

use crate::common::{Backend, TestApp};
use kyc_desk::server::db::{self, throttle};

/// What `synchronous_commit` is inside the transaction `tx` (PostgreSQL only).
async fn synchronous_commit(tx: &mut db::WriteTx) -> String {
    sqlx::query_scalar::<_, String>("SELECT current_setting('synchronous_commit')")
        .fetch_one(&mut **tx)
        .await
        .unwrap()
}

/// Writes a counter row named `key` in the transaction `tx`.
async fn write_row(tx: &mut db::WriteTx, key: &str) {
    sqlx::query(
        "INSERT INTO sign_in_throttle (key, failures, window_started_at, locked_until) \
         VALUES ($1, 1, 0, 0)",
    )
    .bind(key)
    .execute(&mut **tx)
    .await
    .unwrap();
}

both_backends!(
    an_unflushed_transaction_is_one_from_its_begin,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let db = &app.state.db;

        // The limits' counter, written through an unflushed transaction, counts and is seen.
        let now = db::now();
        let first = throttle::count_attempts(db, &["durability:a"], now, 60)
            .await
            .unwrap();
        let second = throttle::count_attempts(db, &["durability:a"], now, 60)
            .await
            .unwrap();
        assert_eq!((first[0].failures, second[0].failures), (1, 2));

        // Dropped uncommitted, it leaves nothing behind.
        let mut tx = db.begin_unflushed().await.unwrap();
        write_row(&mut tx, "durability:dropped").await;
        drop(tx);
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sign_in_throttle WHERE key = 'durability:dropped'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(left, 0, "a dropped transaction is rolled back");

        if backend == Backend::Postgres {
            let mut unflushed = db.begin_unflushed().await.unwrap();
            assert_eq!(synchronous_commit(&mut unflushed).await, "off");
            unflushed.commit_unflushed().await.unwrap();

            let mut flushed = db.begin().await.unwrap();
            assert_eq!(synchronous_commit(&mut flushed).await, "on");
            flushed.commit().await.unwrap();

            // A plain commit of an unflushed transaction waits for the flush: once it has
            // returned, the log is on disk at least up to the commit's record.
            let mut tx = db.begin_unflushed().await.unwrap();
            write_row(&mut tx, "durability:flushed").await;
            let written: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let flushed_up_to_it: bool =
                sqlx::query_scalar("SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn")
                    .bind(&written)
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            assert!(flushed_up_to_it, "the commit waited for the flush");
        }
    }
);
