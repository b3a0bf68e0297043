//! Benchmarks for BENCHMARKS.md (not tests: they measure, they do not assert).
//!
//! ```text
//! cargo run --release --features ssr --bin kyc-bench -- audit-append --database-url URL
//! cargo run --release --features ssr --bin kyc-bench -- audit-verify --database-url URL --rows 1000000
//! cargo run --release --features ssr --bin kyc-bench -- links --database-url URL --seconds 30
//! ```
//! Each run creates its own fresh database (a SQLite file, or a new PostgreSQL database next
//! to the one in the URL) and drops nothing the app uses.

use clap::{Parser, Subcommand};
use kyc_desk::server::audit::{
    Actor, AuditEvent, AuditLog, GENESIS_MAC, Outcome, RequestMeta, row_mac,
};
use kyc_desk::server::db::{Db, audit::AuditRow};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "KYC Desk benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Audit appends per second with concurrent writers.
    AuditAppend {
        /// sqlite://path or postgres://... (a fresh database is made next to it).
        #[arg(long)]
        database_url: String,
        /// Concurrent writers.
        #[arg(long, default_value_t = 16)]
        writers: usize,
        /// Appends per writer.
        #[arg(long, default_value_t = 500)]
        per_writer: usize,
    },
    /// Time to verify a chain of N rows.
    AuditVerify {
        /// sqlite://path or postgres://...
        #[arg(long)]
        database_url: String,
        /// Rows to write before verifying.
        #[arg(long, default_value_t = 1_000_000)]
        rows: i64,
    },
}

/// A fresh database for one benchmark run.
async fn fresh(url: &str) -> String {
    if url.starts_with("sqlite:") {
        let dir = std::env::temp_dir().join(format!("kyc-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        format!("sqlite://{}/bench.db", dir.display())
    } else {
        sqlx::any::install_default_drivers();
        let name = format!("kycdesk_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
            .await
            .expect("connect");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        let mut parsed = url::Url::parse(url).unwrap();
        parsed.set_path(&name);
        parsed.to_string()
    }
}

async fn open(url: &str) -> Db {
    let db = Db::connect(url).await.expect("open database");
    db.migrate().await.expect("migrate");
    db
}

fn key() -> [u8; 32] {
    [42u8; 32]
}

async fn audit_append(url: &str, writers: usize, per_writer: usize) {
    let url = fresh(url).await;
    let db = open(&url).await;
    let log = AuditLog::with_key(key());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let db = db.clone();
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_writer);
            for i in 0..per_writer {
                let t = Instant::now();
                log.try_record(
                    &db,
                    &RequestMeta::system(),
                    &AuditEvent::new(Actor::System, "bench.append", Outcome::Success)
                        .object("writer", writer)
                        .detail(serde_json::json!({ "i": i })),
                )
                .await
                .expect("append");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let total = writers * per_writer;
    let report = log.verify(&db).await.unwrap();
    println!(
        "audit-append backend={} writers={writers} appends={total} seconds={:.2} appends_per_second={:.0} p50_ms={:.2} p99_ms={:.2} chain_ok={} rows={}",
        if url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        },
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        latencies[latencies.len() / 2].as_secs_f64() * 1000.0,
        latencies[latencies.len() * 99 / 100].as_secs_f64() * 1000.0,
        report.broken.is_none(),
        report.rows,
    );
}

async fn audit_verify(url: &str, rows: i64) {
    let url = fresh(url).await;
    let db = open(&url).await;
    let key = key();
    // Realistic rows, written in large batches (the chain is computed here exactly as the
    // app computes it; only the batching differs).
    let started = Instant::now();
    let mut prev = GENESIS_MAC.to_string();
    let batch = 500i64;
    let mut seq = 1i64;
    while seq <= rows {
        let mut tx = db.pool.begin().await.unwrap();
        let end = (seq + batch - 1).min(rows);
        let mut sql = String::from(
            "INSERT INTO audit_log (seq, at_ms, actor_id, actor_email, actor_role, ip, request_id, action, \
             object_type, object_id, outcome, reason, detail, prev_mac, mac) VALUES ",
        );
        let mut batch_rows = Vec::new();
        for s in seq..=end {
            let mut row = AuditRow {
                seq: s,
                at_ms: 1_790_000_000_000 + s * 37,
                actor_id: Some(s % 40 + 1),
                actor_email: format!("operator{}@bank.example", s % 40),
                actor_role: "operator".into(),
                ip: "10.1.2.3".into(),
                request_id: uuid::Uuid::new_v4().to_string(),
                action: "link.create".into(),
                object_type: "kyc_session".into(),
                object_id: uuid::Uuid::new_v4().simple().to_string(),
                outcome: "success".into(),
                reason: String::new(),
                detail: format!(
                    "{{\"environment\":\"uat\",\"flow\":\"digilocker\",\"phone\":\"+91******{:04}\",\"provider\":\"eko\",\"sandbox\":false}}",
                    s % 10_000
                ),
                prev_mac: prev.clone(),
                mac: String::new(),
            };
            row.mac = row_mac(&key, &row.prev_mac, &row);
            prev = row.mac.clone();
            batch_rows.push(row);
        }
        let mut n = 0;
        for (i, _) in batch_rows.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..15 {
                if c > 0 {
                    sql.push(',');
                }
                n += 1;
                sql.push_str(&format!("${n}"));
            }
            sql.push(')');
        }
        let mut query = sqlx::query(&sql);
        for row in &batch_rows {
            query = query
                .bind(row.seq)
                .bind(row.at_ms)
                .bind(row.actor_id)
                .bind(row.actor_email.clone())
                .bind(row.actor_role.clone())
                .bind(row.ip.clone())
                .bind(row.request_id.clone())
                .bind(row.action.clone())
                .bind(row.object_type.clone())
                .bind(row.object_id.clone())
                .bind(row.outcome.clone())
                .bind(row.reason.clone())
                .bind(row.detail.clone())
                .bind(row.prev_mac.clone())
                .bind(row.mac.clone());
        }
        query.execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        seq = end + 1;
    }
    println!(
        "wrote {rows} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let log = AuditLog::with_key(key);
    let mut best = Duration::MAX;
    for run in 1..=3 {
        let started = Instant::now();
        let report = log.verify(&db).await.unwrap();
        let elapsed = started.elapsed();
        best = best.min(elapsed);
        println!(
            "audit-verify backend={} run={run} rows={} seconds={:.2} ok={}",
            if url.starts_with("sqlite") {
                "sqlite"
            } else {
                "postgres"
            },
            report.rows,
            elapsed.as_secs_f64(),
            report.broken.is_none()
        );
    }
    println!("audit-verify best_seconds={:.2}", best.as_secs_f64());
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::AuditAppend {
            database_url,
            writers,
            per_writer,
        } => audit_append(&database_url, writers, per_writer).await,
        Command::AuditVerify { database_url, rows } => audit_verify(&database_url, rows).await,
    }
}
