//! The `users` table.

use crate::types::{Role, UserRow};
use sqlx::{AnyConnection, AnyPool};

/// A user as stored. Holds the password hash, so it derives neither `Serialize` nor `Debug`.
#[derive(sqlx::FromRow, Clone)]
pub struct UserRecord {
    /// Database id.
    pub id: i64,
    /// Lower-case email.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Stored role spelling.
    pub role: String,
    /// PHC-format argon2 hash.
    pub password_hash: String,
    /// 1 while an initial or reset password must be replaced.
    pub must_change_password: i64,
    /// 1 when disabled.
    pub disabled: i64,
    /// Bumped whenever all of the user's sessions must end.
    pub session_epoch: i64,
    /// Last successful sign-in (Unix seconds).
    pub last_sign_in_at: Option<i64>,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// 1 when the user signs in only through single sign-on: the password is never checked.
    pub sso_only: i64,
}

impl UserRecord {
    /// The role; an unknown stored value (impossible under the CHECK constraint) reads as the
    /// least privileged role.
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Auditor)
    }

    /// The users-page view of this row.
    pub fn to_row(&self) -> UserRow {
        UserRow {
            id: self.id,
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            role: self.role(),
            disabled: self.disabled != 0,
            must_change_password: self.must_change_password != 0,
            second_factor: false,
            sso_only: self.sso_only != 0,
            sso_linked: false,
            last_sign_in: self.last_sign_in_at.map(super::format_time),
            created: super::format_time(self.created_at),
        }
    }
}

const COLUMNS: &str = "id, email, display_name, role, password_hash, must_change_password, \
                       disabled, session_epoch, last_sign_in_at, created_at, sso_only";

/// Number of users, of any state.
pub async fn count(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await
}

/// Same as [`count`], inside a transaction.
pub async fn count_in(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(conn)
        .await
}

/// The user with this (already lower-cased) email.
pub async fn find_by_email(pool: &AnyPool, email: &str) -> Result<Option<UserRecord>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
        .bind(email)
        .fetch_optional(pool)
        .await
}

/// The user with this id.
pub async fn find_by_id(pool: &AnyPool, id: i64) -> Result<Option<UserRecord>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Same as [`find_by_id`], inside a transaction.
pub async fn find_by_id_in(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<Option<UserRecord>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Every user, admins first, then by email.
pub async fn list(pool: &AnyPool) -> Result<Vec<UserRecord>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users ORDER BY disabled, CASE role WHEN 'admin' THEN 0 WHEN 'operator' THEN 1 ELSE 2 END, email"
    ))
    .fetch_all(pool)
    .await
}

/// Fields of a new user.
pub struct NewUser<'a> {
    /// Lower-case email.
    pub email: &'a str,
    /// Display name.
    pub display_name: &'a str,
    /// Role.
    pub role: Role,
    /// Argon2 hash of the initial password.
    pub password_hash: &'a str,
    /// Whether the password must be changed at first sign-in.
    pub must_change_password: bool,
    /// Signs in only through single sign-on (`password_hash` is then a hash of a random
    /// password nobody knows).
    pub sso_only: bool,
}

/// Inserts a user and returns its id. A duplicate email is a unique-constraint error.
pub async fn insert(conn: &mut AnyConnection, user: &NewUser<'_>) -> Result<i64, sqlx::Error> {
    let now = super::now();
    sqlx::query_scalar(
        "INSERT INTO users (email, display_name, role, password_hash, must_change_password, \
         password_changed_at, created_at, updated_at, sso_only) VALUES ($1, $2, $3, $4, $5, $6, $6, $6, $7) RETURNING id",
    )
    .bind(user.email)
    .bind(user.display_name)
    .bind(user.role.as_str())
    .bind(user.password_hash)
    .bind(i64::from(user.must_change_password))
    .bind(now)
    .bind(i64::from(user.sso_only))
    .fetch_one(conn)
    .await
}

/// Number of enabled admins other than `except_id`.
pub async fn count_other_active_admins(
    conn: &mut AnyConnection,
    except_id: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND id <> $1",
    )
    .bind(except_id)
    .fetch_one(conn)
    .await
}

/// Sets the role.
pub async fn set_role(conn: &mut AnyConnection, id: i64, role: Role) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET role = $1, updated_at = $2 WHERE id = $3")
        .bind(role.as_str())
        .bind(super::now())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Disables or enables; disabling also ends every session of the user (epoch bump).
pub async fn set_disabled(
    conn: &mut AnyConnection,
    id: i64,
    disabled: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET disabled = $1, session_epoch = session_epoch + $2, updated_at = $3 WHERE id = $4",
    )
    .bind(i64::from(disabled))
    .bind(i64::from(disabled))
    .bind(super::now())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends every session of the user (epoch bump).
pub async fn end_sessions(conn: &mut AnyConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET session_epoch = session_epoch + 1, updated_at = $1 WHERE id = $2",
    )
    .bind(super::now())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the password and ends every session of the user (epoch bump). Returns the new epoch.
pub async fn set_password(
    conn: &mut AnyConnection,
    id: i64,
    password_hash: &str,
    must_change_password: bool,
) -> Result<i64, sqlx::Error> {
    let now = super::now();
    sqlx::query_scalar(
        "UPDATE users SET password_hash = $1, must_change_password = $2, password_changed_at = $3, \
         session_epoch = session_epoch + 1, updated_at = $3 WHERE id = $4 RETURNING session_epoch",
    )
    .bind(password_hash)
    .bind(i64::from(must_change_password))
    .bind(now)
    .bind(id)
    .fetch_one(conn)
    .await
}

/// Makes the user SSO-only (`password_hash`: a hash of a random password nobody knows) or lets
/// them use a password again (an admin then sets a temporary one); either way every session of
/// the user ends (epoch bump).
pub async fn set_sso_only(
    conn: &mut AnyConnection,
    id: i64,
    sso_only: bool,
    password_hash: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET sso_only = $1, password_hash = COALESCE($2, password_hash), \
         must_change_password = CASE WHEN $1 = 1 THEN 0 ELSE must_change_password END, \
         session_epoch = session_epoch + 1, updated_at = $3 WHERE id = $4",
    )
    .bind(i64::from(sso_only))
    .bind(password_hash)
    .bind(super::now())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores a stronger hash of the same password (parameter upgrade); sessions are unaffected.
pub async fn upgrade_hash(pool: &AnyPool, id: i64, password_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(password_hash)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Records a successful sign-in.
pub async fn touch_sign_in(pool: &AnyPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET last_sign_in_at = $1 WHERE id = $2")
        .bind(super::now())
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Whether a driver error is a unique-constraint violation (e.g. a duplicate email).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
