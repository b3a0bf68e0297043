//! The least-privilege PostgreSQL layout: what the role KYC Desk runs as may do, granted by
//! the tables' owner (`KYC_DESK_MIGRATE_DATABASE_URL`) after it migrates. The app role reads
//! and writes the tables it needs, may only add to and read `audit_log`, and, not owning any
//! table, cannot drop or disable the triggers that keep the audit log append-only.

use super::{Backend, Db};

/// The grants, `{role}` standing for the app role's quoted name. Run in one transaction at
/// each start, so tables that later migrations add are covered too.
pub const GRANTS: &str = "\
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role};
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM {role};
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {role};
REVOKE DELETE, TRUNCATE ON audit_key_epochs FROM {role};
";

/// `name` as a PostgreSQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Grants the role of `app` what the layout allows, through the owner's connection `owner`.
/// Nothing to do on SQLite, or when both connect as the same role (then there is no second
/// role to restrict, which is logged).
pub async fn grant(owner: &Db, app: &Db) -> Result<(), sqlx::Error> {
    if owner.backend != Backend::Postgres {
        return Ok(());
    }
    let app_role: String = sqlx::query_scalar("SELECT CAST(current_user AS TEXT)")
        .fetch_one(&app.pool)
        .await?;
    let owner_role: String = sqlx::query_scalar("SELECT CAST(current_user AS TEXT)")
        .fetch_one(&owner.pool)
        .await?;
    if app_role == owner_role {
        tracing::warn!(
            role = %app_role,
            "KYC_DESK_MIGRATE_DATABASE_URL connects as the same role as DATABASE_URL: the app \
             role owns the tables and could drop the audit log's triggers"
        );
        return Ok(());
    }
    let sql = format!(
        "BEGIN;\n{}COMMIT;",
        GRANTS.replace("{role}", &quote(&app_role))
    );
    sqlx::raw_sql(&sql).execute(&owner.pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn role_names_are_quoted() {
        assert_eq!(super::quote("kyc_app"), "\"kyc_app\"");
        assert_eq!(super::quote("a\"b"), "\"a\"\"b\"");
    }
}
