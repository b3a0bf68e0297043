//! A new, empty database for a tool or a test run: the bench, the soak and the integration
//! tests each work on their own, never on one that holds anything.

/// Creates a database named `kycdesk_<label>_<random>` on the PostgreSQL server of
/// `server_url` and returns its URL (the same server, user and options).
pub async fn create_postgres(server_url: &str, label: &str) -> Result<String, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let name = format!("kycdesk_{label}_{}", fresh_suffix());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(server_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let mut url = url::Url::parse(server_url).map_err(|e| sqlx::Error::Configuration(e.into()))?;
    url.set_path(&name);
    Ok(url.to_string())
}

/// A fresh database next to `url`: for SQLite a file `<label>.db` in a new folder
/// `kyc-<label>-<random>` under the temporary folder (kept afterwards, for a look), for
/// PostgreSQL a new database on the same server (see [`create_postgres`]).
pub async fn next_to(url: &str, label: &str) -> Result<String, sqlx::Error> {
    if url.starts_with("sqlite:") {
        let dir = std::env::temp_dir().join(format!("kyc-{label}-{}", fresh_suffix()));
        std::fs::create_dir_all(&dir)?;
        Ok(format!("sqlite://{}/{label}.db", dir.display()))
    } else {
        create_postgres(url, label).await
    }
}

/// A random name part of 32 letters (a UUID's hex digits, with 0–9 written as g–p): no run of
/// digits, so a database or folder name that reaches an audit row (the anchor file's path)
/// never reads as a phone or Aadhaar number to the suite's audit scan.
fn fresh_suffix() -> String {
    uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .map(|c| match c.to_digit(10) {
            Some(digit) => char::from(b'g' + digit as u8),
            None => c,
        })
        .collect()
}

/// The audit anchor file a tool or test run uses with `database_url`: `None` on SQLite (the
/// default beside the database file serves), on PostgreSQL a file named after the database in
/// the temporary folder, so every process on one test database shares one anchor file.
pub fn anchor_file_for(database_url: &str) -> Option<String> {
    if database_url.starts_with("sqlite:") {
        return None;
    }
    let name = url::Url::parse(database_url)
        .ok()
        .map(|url| url.path().trim_start_matches('/').to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "postgres".into());
    Some(
        std::env::temp_dir()
            .join("kyc-desk-anchors")
            .join(format!("{name}.jsonl"))
            .display()
            .to_string(),
    )
}
