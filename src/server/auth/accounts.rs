//! Staff account management: first-run setup, creating users, roles, disabling, password
//! resets and changes. Shared by the server functions and the command line.

use super::{AuthError, AuthUser, start_session};
use crate::server::audit::{Actor, AuditEvent, Outcome, RequestMeta};
use crate::server::db::{self, auth_sessions, setup, users};
use crate::server::state::AppState;
use crate::types::{AppError, FieldError, Role, SetupLinkState, UserRow};
use crate::validation;
use base64::Engine as _;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tower_sessions::Session;

fn push(fields: &mut Vec<FieldError>, field: &str, message: impl Into<String>) {
    fields.push(FieldError {
        field: field.into(),
        message: message.into(),
    });
}

fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// If no user exists yet, issues a one-time setup token and returns it (to be printed as a
/// link); `None` once any user exists.
pub async fn issue_setup_token(state: &AppState) -> Result<Option<String>, sqlx::Error> {
    if users::count(&state.db.pool).await? > 0 {
        return Ok(None);
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    setup::insert(&state.db.pool, &hash_token(&token)).await?;
    Ok(Some(token))
}

/// Whether a setup link still works.
pub async fn setup_link_state(
    state: &AppState,
    token: &str,
) -> Result<SetupLinkState, sqlx::Error> {
    if users::count(&state.db.pool).await? > 0 {
        return Ok(SetupLinkState::AlreadySetUp);
    }
    if token.len() > 200 || !setup::exists(&state.db.pool, &hash_token(token)).await? {
        return Ok(SetupLinkState::Unknown);
    }
    Ok(SetupLinkState::Usable)
}

/// The fields of a new account, as submitted.
pub struct NewAccount {
    /// Email as typed.
    pub email: String,
    /// Display name as typed.
    pub display_name: String,
    /// Role as submitted.
    pub role: String,
    /// Initial password.
    pub password: SecretString,
    /// Password repeated, when the form asks for it.
    pub password_confirm: Option<SecretString>,
}

struct ValidAccount {
    email: String,
    display_name: String,
    role: Role,
}

fn validate_account(input: &NewAccount) -> Result<ValidAccount, AppError> {
    let mut fields = Vec::new();
    let email = validation::normalize_email(&input.email)
        .map_err(|m| push(&mut fields, "email", m))
        .ok();
    let display_name = validation::normalize_display_name(&input.display_name)
        .map_err(|m| push(&mut fields, "display_name", m))
        .ok();
    let role = Role::parse(&input.role);
    if role.is_none() {
        push(&mut fields, "role", "Choose operator, admin or auditor.");
    }
    if let Some(problem) = validation::password_problem(
        input.password.expose_secret(),
        email.as_deref().unwrap_or(""),
    ) {
        push(&mut fields, "password", problem);
    }
    if let Some(confirm) = &input.password_confirm
        && confirm.expose_secret() != input.password.expose_secret()
    {
        push(
            &mut fields,
            "password_confirm",
            "The two passwords do not match.",
        );
    }
    if let Some(error) = AppError::from_fields(fields) {
        return Err(error);
    }
    Ok(ValidAccount {
        email: email.unwrap_or_default(),
        display_name: display_name.unwrap_or_default(),
        role: role.unwrap_or(Role::Operator),
    })
}

fn duplicate_email() -> AppError {
    AppError::field("email", "A user with this email address already exists.")
}

fn already_set_up() -> AppError {
    AppError::Conflict(
        "KYC Desk is already set up: this link no longer works. Sign in instead.".into(),
    )
}

fn invalid_setup_link() -> AppError {
    AppError::Forbidden(
        "This setup link is not valid. Use the link printed in the server log.".into(),
    )
}

fn unknown_setup_token() -> AuditEvent {
    AuditEvent::new(Actor::Anonymous, "setup.first_admin", Outcome::Denied)
        .reason("unknown setup token")
}

/// Creates the first admin through a setup link and signs the session in as them.
pub async fn create_first_admin(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    token: &str,
    mut input: NewAccount,
) -> Result<AuthUser, AppError> {
    input.role = Role::Admin.as_str().into();
    let valid = validate_account(&input)?;
    // Anyone can call this: refuse a setup that cannot happen before spending an argon2 run
    // on it (both are checked again under the lock below).
    if users::count(&state.db.pool).await? > 0 {
        return Err(already_set_up());
    }
    if !setup::exists(&state.db.pool, &hash_token(token)).await? {
        // Anyone can send this: repeats are counted, not each appended.
        state.audit_noise.record(meta, &unknown_setup_token()).await;
        return Err(invalid_setup_link());
    }
    let hash = state
        .passwords
        .hash(SecretString::from(
            input.password.expose_secret().to_owned(),
        ))
        .await
        .map_err(AuthError::from)?;
    let mut tx = state.db.begin().await?;
    db::lock(&mut tx, "users").await?;
    if users::count_in(&mut tx).await? > 0 {
        return Err(already_set_up());
    }
    if !setup::exists_in(&mut tx, &hash_token(token)).await? {
        // Recorded in this transaction: it holds the users lock (on SQLite, the write lock).
        state
            .audit
            .append(&mut tx, meta, &unknown_setup_token())
            .await?;
        tx.commit().await?;
        return Err(invalid_setup_link());
    }
    let id = users::insert(
        &mut tx,
        &users::NewUser {
            email: &valid.email,
            display_name: &valid.display_name,
            role: Role::Admin,
            password_hash: &hash,
            must_change_password: false,
            sso_only: false,
        },
    )
    .await?;
    setup::delete_all(&mut tx).await?;
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(
                Actor::User {
                    id,
                    email: valid.email.clone(),
                    role: Role::Admin,
                },
                "setup.first_admin",
                Outcome::Success,
            )
            .object("user", id),
        )
        .await?;
    tx.commit().await?;
    start_session(session, id, 0).await?;
    let admin = AuthUser {
        id,
        email: valid.email,
        display_name: valid.display_name,
        role: Role::Admin,
        must_change_password: false,
        second_factor_pending: false,
        must_enrol: super::must_have_factor(state, Role::Admin),
        stepped_up_at_ms: None,
        notice: None,
        sso_only: false,
        single_sign_on: false,
    };
    Ok(admin)
}

/// Creates a user. From the users page the initial password must be changed at first
/// sign-in; the command line may choose.
pub async fn create_user(
    state: &AppState,
    meta: &RequestMeta,
    actor: Actor,
    mut input: NewAccount,
    must_change_password: bool,
    sso_only: bool,
) -> Result<UserRow, AppError> {
    if sso_only {
        // No password: one nobody knows is hashed, so the column is never empty.
        input.password = random_password();
        input.password_confirm = None;
    }
    let valid = validate_account(&input)?;
    if users::find_by_email(&state.db.pool, &valid.email)
        .await?
        .is_some()
    {
        return Err(duplicate_email());
    }
    let hash = state
        .passwords
        .hash(input.password)
        .await
        .map_err(AuthError::from)?;
    let mut tx = state.db.begin().await?;
    let inserted = users::insert(
        &mut tx,
        &users::NewUser {
            email: &valid.email,
            display_name: &valid.display_name,
            role: valid.role,
            password_hash: &hash,
            must_change_password: must_change_password && !sso_only,
            sso_only,
        },
    )
    .await;
    let id = match inserted {
        Ok(id) => id,
        Err(error) if users::is_unique_violation(&error) => return Err(duplicate_email()),
        Err(error) => return Err(error.into()),
    };
    let created = users::find_by_id_in(&mut tx, id)
        .await?
        .ok_or_else(|| AppError::NotFound("The new user vanished.".into()))?;
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(actor, "user.create", Outcome::Success)
                .object("user", id)
                .detail(serde_json::json!({ "role": valid.role.as_str(), "sso_only": sso_only })),
        )
        .await?;
    tx.commit().await?;
    Ok(created.to_row())
}

/// Refuses `action` (`user.role_change`, `user.disable`) on the last active admin: records the
/// refusal in the audit log, commits that record, and returns what the admin is told.
async fn refuse_last_admin(
    state: &AppState,
    mut tx: db::WriteTx,
    meta: &RequestMeta,
    admin: &AuthUser,
    action: &'static str,
    target: &users::UserRecord,
    verb: &str,
) -> AppError {
    let event = AuditEvent::new(admin.actor(), action, Outcome::Failure)
        .object("user", target.id)
        .reason("last active admin");
    if let Err(error) = state.audit.append(&mut tx, meta, &event).await {
        return error.into();
    }
    if let Err(error) = tx.commit().await {
        return error.into();
    }
    AppError::Conflict(format!(
        "{} is the last active admin and cannot be {verb}. Make another user an admin first.",
        target.display_name
    ))
}

/// Ends an admin's change of user `user_id`: appends `event` (about that user) in the
/// change's transaction, commits, and returns the user as changed.
async fn finish_user_change(
    state: &AppState,
    mut tx: db::WriteTx,
    meta: &RequestMeta,
    user_id: i64,
    event: AuditEvent,
) -> Result<UserRow, AppError> {
    let updated = target_user(&mut tx, user_id).await?;
    state
        .audit
        .append(&mut tx, meta, &event.object("user", user_id))
        .await?;
    tx.commit().await?;
    let mut row = updated.to_row();
    row.second_factor = super::second_factor::has_factor(state, user_id).await?;
    row.sso_linked = db::identities::linked_users(&state.db.pool)
        .await?
        .contains(&user_id);
    Ok(row)
}

async fn target_user(
    tx: &mut sqlx::AnyConnection,
    user_id: i64,
) -> Result<users::UserRecord, AppError> {
    users::find_by_id_in(tx, user_id)
        .await?
        .ok_or_else(|| AppError::NotFound("No such user. Reload the page.".into()))
}

/// Changes a user's role; the last active admin cannot be demoted.
pub async fn set_role(
    state: &AppState,
    meta: &RequestMeta,
    admin: &AuthUser,
    user_id: i64,
    role: &str,
) -> Result<UserRow, AppError> {
    let role = Role::parse(role)
        .ok_or_else(|| AppError::field("role", "Choose operator, admin or auditor."))?;
    let mut tx = state.db.begin().await?;
    db::lock(&mut tx, "users").await?;
    let target = target_user(&mut tx, user_id).await?;
    let old_role = target.role();
    if old_role == Role::Admin
        && role != Role::Admin
        && target.disabled == 0
        && users::count_other_active_admins(&mut tx, user_id).await? == 0
    {
        return Err(refuse_last_admin(
            state,
            tx,
            meta,
            admin,
            "user.role_change",
            &target,
            "demoted",
        )
        .await);
    }
    users::set_role(&mut tx, user_id, role).await?;
    let event = AuditEvent::new(admin.actor(), "user.role_change", Outcome::Success)
        .detail(serde_json::json!({ "from": old_role.as_str(), "to": role.as_str() }));
    finish_user_change(state, tx, meta, user_id, event).await
}

/// Disables (ending all of the user's sessions at once) or enables a user.
pub async fn set_disabled(
    state: &AppState,
    meta: &RequestMeta,
    admin: &AuthUser,
    user_id: i64,
    disabled: bool,
) -> Result<UserRow, AppError> {
    if disabled && user_id == admin.id {
        return Err(AppError::Conflict(
            "You cannot disable your own account.".into(),
        ));
    }
    let mut tx = state.db.begin().await?;
    db::lock(&mut tx, "users").await?;
    let target = target_user(&mut tx, user_id).await?;
    if disabled
        && target.role() == Role::Admin
        && users::count_other_active_admins(&mut tx, user_id).await? == 0
    {
        return Err(
            refuse_last_admin(state, tx, meta, admin, "user.disable", &target, "disabled").await,
        );
    }
    users::set_disabled(&mut tx, user_id, disabled).await?;
    let ended = if disabled {
        auth_sessions::delete_for_user(&mut tx, user_id).await?
    } else {
        0
    };
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    let event = AuditEvent::new(admin.actor(), action, Outcome::Success)
        .detail(serde_json::json!({ "sessions_ended": ended }));
    finish_user_change(state, tx, meta, user_id, event).await
}

/// Gives a user a new temporary password (to be changed at next sign-in) and ends all of
/// their sessions.
pub async fn reset_password(
    state: &AppState,
    meta: &RequestMeta,
    admin: &AuthUser,
    user_id: i64,
    new_password: SecretString,
) -> Result<UserRow, AppError> {
    if user_id == admin.id {
        return Err(AppError::Conflict(
            "Use “Change password” to change your own password.".into(),
        ));
    }
    let target = users::find_by_id(&state.db.pool, user_id)
        .await?
        .ok_or_else(|| AppError::NotFound("No such user. Reload the page.".into()))?;
    if target.sso_only != 0 {
        return Err(AppError::Conflict(format!(
            "{} signs in with single sign-on only and has no password. Choose “Allow a password” first.",
            target.email
        )));
    }
    if let Some(problem) = validation::password_problem(new_password.expose_secret(), &target.email)
    {
        return Err(AppError::field("password", problem));
    }
    let hash = state
        .passwords
        .hash(new_password)
        .await
        .map_err(AuthError::from)?;
    let mut tx = state.db.begin().await?;
    users::set_password(&mut tx, user_id, &hash, true).await?;
    let ended = auth_sessions::delete_for_user(&mut tx, user_id).await?;
    let event = AuditEvent::new(admin.actor(), "user.password_reset", Outcome::Success)
        .detail(serde_json::json!({ "sessions_ended": ended }));
    finish_user_change(state, tx, meta, user_id, event).await
}

/// Changes the caller's own password; every other session of theirs ends, this one
/// continues under a new id.
pub async fn change_own_password(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    user: &AuthUser,
    current: SecretString,
    new_password: SecretString,
    confirm: SecretString,
) -> Result<(), AppError> {
    let mut fields = Vec::new();
    if let Some(problem) = validation::password_problem(new_password.expose_secret(), &user.email) {
        push(&mut fields, "new_password", problem);
    } else if new_password.expose_secret() == current.expose_secret() {
        push(
            &mut fields,
            "new_password",
            "The new password must differ from the current one.",
        );
    }
    if confirm.expose_secret() != new_password.expose_secret() {
        push(
            &mut fields,
            "confirm_password",
            "The two new passwords do not match.",
        );
    }
    // Guessing the current password from a stolen session is throttled like signing in (and
    // locks signing in too: the same account counter), counted before argon2 runs.
    let right = match super::check_own_password(state, meta, user, current, "auth.password_change")
        .await?
    {
        Ok(right) => right,
        Err(refusal) => {
            let wait = super::throttle::human_wait(refusal.retry_after_secs);
            let message = match refusal.scope {
                super::throttle::Scope::InFlight => refusal.message(),
                _ => format!("Too many wrong current passwords. Try again in {wait}."),
            };
            return Err(AppError::TooManyRequests {
                message,
                retry_after_secs: refusal.retry_after_secs,
            });
        }
    };
    if !right {
        push(
            &mut fields,
            "current_password",
            "This is not your current password.",
        );
        state
            .audit
            .record(
                &state.db,
                meta,
                &AuditEvent::new(user.actor(), "auth.password_change", Outcome::Failure)
                    .object("user", user.id)
                    .reason("wrong current password"),
            )
            .await;
    }
    if let Some(error) = AppError::from_fields(fields) {
        return Err(error);
    }
    let hash = state
        .passwords
        .hash(new_password)
        .await
        .map_err(AuthError::from)?;
    let mut tx = state.db.begin().await?;
    let epoch = users::set_password(&mut tx, user.id, &hash, false).await?;
    let ended = auth_sessions::delete_for_user(&mut tx, user.id).await?;
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(user.actor(), "auth.password_change", Outcome::Success)
                .object("user", user.id)
                .detail(serde_json::json!({ "other_sessions_ended": ended.saturating_sub(1) })),
        )
        .await?;
    tx.commit().await?;
    start_session(session, user.id, epoch).await?;
    Ok(())
}

/// Every user, for the users page.
pub async fn list(state: &AppState) -> Result<Vec<UserRow>, AppError> {
    let mut enrolled = db::second_factors::enrolled_users(&state.db.pool).await?;
    enrolled.extend(db::passkeys::users_with_passkeys(&state.db.pool).await?);
    let linked = db::identities::linked_users(&state.db.pool).await?;
    Ok(users::list(&state.db.pool)
        .await?
        .iter()
        .map(|record| {
            let mut row = record.to_row();
            row.second_factor = enrolled.contains(&record.id);
            row.sso_linked = linked.contains(&record.id);
            row
        })
        .collect())
}

/// Resets a user's second factor (authenticator and recovery codes), as when they lost their
/// phone: every session of theirs ends, and a role that must have one sets up a new one at the
/// next sign-in. An admin's own factor is reset by another admin (or removed on their own
/// account page where their role allows it).
pub async fn reset_factors(
    state: &AppState,
    meta: &RequestMeta,
    admin: &AuthUser,
    user_id: i64,
) -> Result<UserRow, AppError> {
    if user_id == admin.id {
        return Err(AppError::Conflict(
            "You cannot reset your own second factor here: ask another admin, or remove it on My account → Authenticator app if your role allows.".into(),
        ));
    }
    let mut tx = state.db.begin().await?;
    db::lock(&mut tx, "users").await?;
    let target = target_user(&mut tx, user_id).await?;
    let removed_authenticator = db::second_factors::remove_all(&mut tx, user_id).await?;
    let removed_passkeys = db::passkeys::remove_all(&mut tx, user_id).await?;
    if !removed_authenticator && removed_passkeys == 0 {
        return Err(AppError::Conflict(format!(
            "{} has no second factor to reset.",
            target.email
        )));
    }
    users::end_sessions(&mut tx, user_id).await?;
    let ended = auth_sessions::delete_for_user(&mut tx, user_id).await?;
    let event = AuditEvent::new(admin.actor(), "user.second_factor_reset", Outcome::Success)
        .detail(serde_json::json!({
            "sessions_ended": ended,
            "authenticator": removed_authenticator,
            "passkeys": removed_passkeys,
        }));
    finish_user_change(state, tx, meta, user_id, event).await
}

/// A password nobody knows (48 random bytes): what an SSO-only user's hash is made from.
fn random_password() -> SecretString {
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// How an admin changes the way a user signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignOnChange {
    /// Single sign-on only: the password stops working (replaced by one nobody knows).
    SsoOnly,
    /// A password may be used again (the admin then sets a temporary one with a reset).
    AllowPassword,
    /// Forget the linked identity: the next sign-on links the account by email again.
    Unlink,
}

impl SignOnChange {
    /// Parses the form's value.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "sso_only" => Some(SignOnChange::SsoOnly),
            "allow_password" => Some(SignOnChange::AllowPassword),
            "unlink" => Some(SignOnChange::Unlink),
            _ => None,
        }
    }
}

/// Changes how user `user_id` signs in; every change ends that user's sessions. Not one's own
/// (an admin could lock themselves out).
pub async fn set_sign_on(
    state: &AppState,
    meta: &RequestMeta,
    admin: &AuthUser,
    user_id: i64,
    change: SignOnChange,
) -> Result<UserRow, AppError> {
    if user_id == admin.id {
        return Err(AppError::Conflict(
            "You cannot change how you sign in yourself; ask another admin.".into(),
        ));
    }
    let hash = match change {
        SignOnChange::SsoOnly => Some(
            state
                .passwords
                .hash(random_password())
                .await
                .map_err(AuthError::from)?,
        ),
        _ => None,
    };
    let mut tx = state.db.begin().await?;
    db::lock(&mut tx, "users").await?;
    let target = target_user(&mut tx, user_id).await?;
    let (action, detail) = match change {
        SignOnChange::SsoOnly | SignOnChange::AllowPassword => {
            let sso_only = change == SignOnChange::SsoOnly;
            if (target.sso_only != 0) == sso_only {
                return Err(AppError::Conflict(format!(
                    "{} {} already.",
                    target.email,
                    if sso_only {
                        "signs in with single sign-on only"
                    } else {
                        "may use a password"
                    }
                )));
            }
            users::set_sso_only(&mut tx, user_id, sso_only, hash.as_deref()).await?;
            (
                if sso_only {
                    "user.sso_only"
                } else {
                    "user.password_allowed"
                },
                serde_json::json!({}),
            )
        }
        SignOnChange::Unlink => {
            let removed = db::identities::unlink_all(&mut tx, user_id).await?;
            if removed == 0 {
                return Err(AppError::Conflict(format!(
                    "{} has not signed in with single sign-on yet; there is nothing to unlink.",
                    target.email
                )));
            }
            users::end_sessions(&mut tx, user_id).await?;
            (
                "user.sso_unlinked",
                serde_json::json!({ "identities": removed }),
            )
        }
    };
    let ended = auth_sessions::delete_for_user(&mut tx, user_id).await?;
    let mut detail = detail;
    detail["sessions_ended"] = serde_json::json!(ended);
    let event = AuditEvent::new(admin.actor(), action, Outcome::Success).detail(detail);
    finish_user_change(state, tx, meta, user_id, event).await
}
