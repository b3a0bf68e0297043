//! Stored provider credentials: saving (create, settings edit, rotation), the masked view,
//! decryption for provider calls, and master-key rotation. Secret values exist in plain text
//! only inside `SecretString`s on their way into or out of the vault.

use crate::credential_kinds::{
    CheckedCredential, CredentialInput, CredentialKind, CredentialView, MaskedSecret,
    check_credential,
};
use crate::server::audit::{Actor, AuditEvent, Outcome, RequestMeta};
use crate::server::db::{self, credentials as repo};
use crate::server::destination;
use crate::server::providers::ProviderError;
use crate::server::state::AppState;
use crate::server::vault::{self, MasterKey, Sealed, SecretSlot, Vault, VaultError};
use crate::types::AppError;
use base64::Engine as _;
use secrecy::SecretString;
use std::collections::BTreeMap;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What a save did.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveOutcome {
    /// The active version afterwards (masked).
    pub view: CredentialView,
    /// Corrections made on the operator's behalf.
    pub notices: Vec<String>,
    /// `created`, `rotated` or `updated`.
    pub change: &'static str,
}

fn vault_error(error: VaultError) -> AppError {
    crate::server::web::internal_error(&error, false)
}

fn secret_row(
    vault: &Vault,
    credential_id: i64,
    version: i64,
    field: &str,
    value: &SecretString,
) -> repo::SecretRow {
    let sealed = vault.seal(
        SecretSlot {
            credential_id,
            field,
            version,
        },
        value,
    );
    repo::SecretRow {
        credential_id,
        field: field.to_string(),
        ciphertext: Some(B64.encode(&sealed.ciphertext)),
        nonce: Some(B64.encode(&sealed.nonce)),
        key_version: Some(sealed.key_version),
        last4: vault::last_four(value),
        fingerprint: vault.fingerprint(value),
    }
}

fn open_row(
    vault: &Vault,
    row: &repo::SecretRow,
    version: i64,
) -> Result<SecretString, VaultError> {
    let (Some(ciphertext), Some(nonce), Some(key_version)) =
        (&row.ciphertext, &row.nonce, row.key_version)
    else {
        return Err(VaultError::Decrypt);
    };
    let sealed = Sealed {
        ciphertext: B64.decode(ciphertext).map_err(|_| VaultError::Decrypt)?,
        nonce: B64.decode(nonce).map_err(|_| VaultError::Decrypt)?,
        key_version,
    };
    vault.open(
        SecretSlot {
            credential_id: row.credential_id,
            field: &row.field,
            version,
        },
        &sealed,
    )
}

fn view_of(
    config: &crate::server::config::Config,
    row: &repo::CredentialRow,
    secrets: &[repo::SecretRow],
) -> Option<CredentialView> {
    let kind = CredentialKind::parse(&row.kind)?;
    let settings: BTreeMap<String, String> =
        serde_json::from_str(&row.settings).unwrap_or_default();
    let has_password = secrets.iter().any(|s| s.field == "password");
    Some(CredentialView {
        switched_off: destination::switched_off(
            config,
            kind,
            &row.saved_by,
            &settings,
            has_password,
        ),
        id: row.id,
        kind,
        environment: row.environment.clone(),
        version: row.version,
        settings,
        secrets: secrets
            .iter()
            .map(|s| MaskedSecret {
                field: s.field.clone(),
                last4: s.last4.clone(),
                fingerprint: s.fingerprint.clone(),
            })
            .collect(),
        saved_by: row.saved_by.clone(),
        saved_at: db::format_time(row.saved_at),
        trial_links_used: row.trial_links_used,
        last_test: row.last_test_at.map(|at| {
            format!(
                "{} at {}: {}",
                if row.last_test_ok == Some(1) {
                    "Passed"
                } else {
                    "Failed"
                },
                db::format_time(at),
                row.last_test_message.clone().unwrap_or_default()
            )
        }),
    })
}

/// Saves a credential set: the first save creates version 1; a save with any secret value, or
/// one that changes where or how the secrets are sent ([`destination::changes_destination`]),
/// is a rotation (new version, old one retired and its ciphertext wiped) and needs
/// `reauthenticated` (the console's `save_credential` door opens only after a step-up; the
/// command line is trusted); any other save edits the settings of the active version. A destination
/// the rules refuse ([`destination::destination_problem`]) is refused.
pub async fn save(
    state: &AppState,
    meta: &RequestMeta,
    actor: Actor,
    saved_by: &str,
    input: &CredentialInput,
    reauthenticated: bool,
) -> Result<SaveOutcome, AppError> {
    let vault: &Vault = &state.vault;
    let mut tx = state.db.begin().await?;
    db::lock(&mut tx, "credentials").await?;
    let kind_text = input.kind.trim().to_string();
    let environment = input.environment.trim().to_lowercase();
    let existing = repo::active(&mut tx, &kind_text, &environment).await?;
    let checked: CheckedCredential =
        check_credential(input, existing.is_none()).map_err(|fields| {
            AppError::from_fields(fields).unwrap_or(AppError::Request("Invalid credential.".into()))
        })?;
    let settings = serde_json::to_string(&checked.settings).unwrap_or_else(|_| "{}".into());
    let kind = checked.kind.as_str();
    let stored_password = match &existing {
        Some(old) => repo::secrets_of(&mut tx, old.id)
            .await?
            .iter()
            .any(|row| row.field == "password"),
        None => false,
    };
    if let Some((field, problem)) = destination::destination_problem(
        &state.config,
        checked.kind,
        &checked.settings,
        stored_password || checked.secrets.contains_key("password"),
    ) {
        return Err(AppError::field(field, problem));
    }
    let moves_secrets = existing.as_ref().is_some_and(|old| {
        destination::changes_destination(
            checked.kind,
            &serde_json::from_str(&old.settings).unwrap_or_default(),
            &checked.settings,
        )
    });

    let (id, change, detail) = match existing {
        None => {
            let id = repo::insert(
                &mut tx,
                kind,
                &checked.environment,
                1,
                &settings,
                saved_by,
                0,
            )
            .await?;
            let mut fingerprints = BTreeMap::new();
            for (field, value) in &checked.secrets {
                let row = secret_row(vault, id, 1, field, &SecretString::from(value.clone()));
                fingerprints.insert(field.clone(), row.fingerprint.clone());
                repo::put_secret(&mut tx, &row).await?;
            }
            (
                id,
                "created",
                serde_json::json!({ "version": 1, "fingerprints": fingerprints }),
            )
        }
        Some(old) if !checked.secrets.is_empty() || moves_secrets => {
            if !reauthenticated {
                return Err(AppError::field(
                    "reauth_password",
                    "A rotation, or a change of where the stored secrets are sent, must be confirmed by the person making it.",
                ));
            }
            let version = old.version + 1;
            let old_secrets = repo::secrets_of(&mut tx, old.id).await?;
            let mut old_fingerprints = BTreeMap::new();
            for old_row in &old_secrets {
                old_fingerprints.insert(old_row.field.clone(), old_row.fingerprint.clone());
            }
            // Every secret of the new version: re-entered ones, and the others carried over
            // from the old version (decrypted before the old ciphertext is wiped).
            let mut values = Vec::new();
            for spec in checked.kind.fields().iter().filter(|f| f.secret) {
                let value = match checked.secrets.get(spec.name) {
                    Some(value) => SecretString::from(value.clone()),
                    None => match old_secrets.iter().find(|r| r.field == spec.name) {
                        Some(row) => open_row(vault, row, old.version).map_err(vault_error)?,
                        None => continue,
                    },
                };
                values.push((spec.name, value));
            }
            // Retire first: only one version per kind and environment may be active.
            repo::retire(&mut tx, old.id).await?;
            let id = repo::insert(
                &mut tx,
                kind,
                &checked.environment,
                version,
                &settings,
                saved_by,
                old.trial_links_used,
            )
            .await?;
            let mut new_fingerprints = BTreeMap::new();
            for (field, value) in &values {
                let row = secret_row(vault, id, version, field, value);
                new_fingerprints.insert(field.to_string(), row.fingerprint.clone());
                repo::put_secret(&mut tx, &row).await?;
            }
            (
                id,
                "rotated",
                serde_json::json!({
                    "from_version": old.version, "to_version": version,
                    "old_fingerprints": old_fingerprints, "new_fingerprints": new_fingerprints,
                    "destination_changed": moves_secrets,
                }),
            )
        }
        Some(old) => {
            repo::update_settings(&mut tx, old.id, &settings, saved_by).await?;
            (
                old.id,
                "updated",
                serde_json::json!({ "version": old.version }),
            )
        }
    };
    let row = repo::active(&mut tx, kind, &checked.environment)
        .await?
        .ok_or_else(|| AppError::NotFound("The saved credential vanished.".into()))?;
    let secrets = repo::secrets_of(&mut tx, id).await?;
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(
                actor,
                match change {
                    "created" => "credential.create",
                    "rotated" => "credential.rotate",
                    _ => "credential.update",
                },
                Outcome::Success,
            )
            .object("credential", checked.kind.name(&checked.environment))
            .detail(detail),
        )
        .await?;
    tx.commit().await?;
    Ok(SaveOutcome {
        view: view_of(&state.config, &row, &secrets)
            .ok_or_else(|| AppError::NotFound("Unknown credential kind.".into()))?,
        notices: checked.notices,
        change,
    })
}

/// Every active credential, masked.
pub async fn list(state: &AppState) -> Result<Vec<CredentialView>, AppError> {
    let rows = repo::list_active(&state.db.pool).await?;
    let mut conn = state.db.pool.acquire().await?;
    let mut views = Vec::new();
    for row in rows {
        let secrets = repo::secrets_of(&mut conn, row.id).await?;
        if let Some(view) = view_of(&state.config, &row, &secrets) {
            views.push(view);
        }
    }
    Ok(views)
}

/// Which stored credential to open.
#[derive(Clone, Copy)]
pub enum CredentialRef<'a> {
    /// The active version of a kind in an environment (it may not exist).
    Active(CredentialKind, &'a str),
    /// A given version, such as the one a session was made with.
    Version(&'a repo::CredentialRow),
}

/// A stored credential version opened for use: its row, settings and decrypted secrets.
/// No `Debug`: it holds secrets.
pub struct Opened {
    /// The version's row.
    pub row: repo::CredentialRow,
    /// Its settings.
    pub settings: BTreeMap<String, String>,
    /// Its secrets in plain text, by field name.
    pub secrets: BTreeMap<String, SecretString>,
}

/// Opens a stored credential: reads the row (for [`CredentialRef::Active`]) and decrypts its
/// secrets. `None` when there is no active version of that kind and environment. The one way
/// every caller (provider calls, connection tests, sending, the poller) unlocks a credential.
pub async fn open(state: &AppState, which: CredentialRef<'_>) -> Result<Option<Opened>, AppError> {
    let mut conn = state.db.pool.acquire().await?;
    let row = match which {
        CredentialRef::Version(row) => row.clone(),
        CredentialRef::Active(kind, environment) => {
            match repo::active(&mut conn, kind.as_str(), environment).await? {
                Some(row) => row,
                None => return Ok(None),
            }
        }
    };
    let stored = repo::secrets_of(&mut conn, row.id).await?;
    drop(conn);
    unseal(state, row, stored).map(Some)
}

/// The rest of [`open`] for a credential whose row and sealed secrets (`stored`, read by
/// [`sealed_secrets`]) were read already: the running configuration's rules, then the secrets
/// decrypted.
pub fn unseal(
    state: &AppState,
    row: repo::CredentialRow,
    stored: Vec<repo::SecretRow>,
) -> Result<Opened, AppError> {
    let vault: &Vault = &state.vault;
    // The rules of the running configuration apply to what was stored under another: a sandbox
    // credential with the sandbox off, or a host no longer allowed, is not used.
    if let Some(kind) = CredentialKind::parse(&row.kind)
        && let Some(reason) = destination::switched_off(
            &state.config,
            kind,
            &row.saved_by,
            &serde_json::from_str(&row.settings).unwrap_or_default(),
            stored.iter().any(|s| s.field == "password"),
        )
    {
        return Err(AppError::Conflict(format!(
            "The {} credential ({}) is not used. {reason}",
            kind.label(),
            row.environment
        )));
    }
    let mut secrets = BTreeMap::new();
    for secret in stored {
        let value = open_row(vault, &secret, row.version).map_err(vault_error)?;
        secrets.insert(secret.field.clone(), value);
    }
    Ok(Opened {
        settings: serde_json::from_str(&row.settings).unwrap_or_default(),
        row,
        secrets,
    })
}

/// The sealed secrets of credential version `id`, for [`unseal`].
pub async fn sealed_secrets(state: &AppState, id: i64) -> Result<Vec<repo::SecretRow>, AppError> {
    let mut conn = state.db.pool.acquire().await?;
    Ok(repo::secrets_of(&mut conn, id).await?)
}

/// [`open`] for a provider call: a credential that cannot be read is the call's configuration
/// error.
pub async fn open_for_call(
    state: &AppState,
    which: CredentialRef<'_>,
) -> Result<Option<Opened>, ProviderError> {
    open(state, which).await.map_err(unreadable)
}

/// [`unseal`] for a provider call (as [`open_for_call`]).
pub fn unseal_for_call(
    state: &AppState,
    row: repo::CredentialRow,
    stored: Vec<repo::SecretRow>,
) -> Result<Option<Opened>, ProviderError> {
    unseal(state, row, stored).map(Some).map_err(unreadable)
}

/// A credential that cannot be read, as the provider call's configuration error.
fn unreadable(error: AppError) -> ProviderError {
    ProviderError::Config(format!("the credential could not be read ({error})"))
}

/// The active credential of a kind and environment, opened ([`open`] as a tuple of row,
/// settings and secrets). `None` when there is no such credential.
pub async fn unlock(
    state: &AppState,
    kind: CredentialKind,
    environment: &str,
) -> Result<
    Option<(
        repo::CredentialRow,
        BTreeMap<String, String>,
        BTreeMap<String, SecretString>,
    )>,
    AppError,
> {
    Ok(open(state, CredentialRef::Active(kind, environment))
        .await?
        .map(|opened| (opened.row, opened.settings, opened.secrets)))
}

/// Takes one of a Message Central trial account's links before a call that may spend it, in
/// one statement, so concurrent callers cannot overspend them; false when none is left.
pub async fn reserve_trial_link(
    state: &AppState,
    row: &repo::CredentialRow,
) -> Result<bool, AppError> {
    Ok(repo::reserve_trial_link(&state.db, row.id, crate::credential_kinds::TRIAL_LINKS).await?)
}

/// Gives back a reserved trial link whose call provably never reached the provider.
pub async fn give_back_trial_link(
    state: &AppState,
    row: &repo::CredentialRow,
) -> Result<(), AppError> {
    Ok(repo::release_trial_link(&state.db, row.id).await?)
}

/// Master-key rotation failures.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// No current key.
    #[error(
        "no master key is configured; set KYC_DESK_MASTER_KEY or KYC_DESK_MASTER_KEY_FILE to the current key"
    )]
    NoCurrentKey,
    /// The new key equals the current one.
    #[error("the new master key is the same as the current one")]
    SameKey,
    /// A stored secret did not decrypt under the current key.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Database failure (the transaction was rolled back: nothing changed).
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// An authenticator seed could not be moved to the new master key (nothing changed).
    #[error(transparent)]
    Factor(#[from] crate::server::auth::second_factor::FactorError),
    /// The audit keys could not be moved to the new master key (nothing changed).
    #[error(transparent)]
    Audit(#[from] crate::server::audit::AuditLogError),
}

/// Re-encrypts every stored secret under `new_key` in one transaction and records the new key
/// version. Returns the number of secrets re-encrypted. Afterwards nothing is encrypted under
/// the old key; the server must be restarted with the new key.
pub async fn rotate_master_key(
    state: &AppState,
    new_key: MasterKey,
) -> Result<usize, RotationError> {
    let old: &Vault = &state.vault;
    if old.master_key().check_value() == new_key.check_value() {
        return Err(RotationError::SameKey);
    }
    let mut tx = state.db.begin().await?;
    db::lock(&mut tx, "credentials").await?;
    let new_version = old.key_version() + 1;
    repo::insert_master_key(&mut tx, new_version, &new_key.check_value()).await?;
    let new = std::sync::Arc::new(Vault::new(new_key, new_version));
    let sealed = repo::all_sealed(&mut tx).await?;
    for (row, version) in &sealed {
        let value = open_row(old, row, *version)?;
        let resealed = secret_row(&new, row.credential_id, *version, &row.field, &value);
        repo::put_secret(&mut tx, &resealed).await?;
    }
    // Authenticator seeds are sealed by the same vault and move with it.
    crate::server::auth::second_factor::reseal_all(&mut tx, old, &new).await?;
    // Every audit key epoch moves to the new master key in the same transaction, so old rows
    // keep verifying after the old key is gone, and a new epoch begins whose key the old
    // master key never sealed: a leaked old key (with an old backup) cannot sign new rows.
    let audit = state.audit.start_epoch(&mut tx, &new).await?;
    audit
        .append(
            &mut tx,
            &RequestMeta::cli(),
            &AuditEvent::new(Actor::Cli, "vault.master_key_rotate", Outcome::Success).detail(
                serde_json::json!({ "from_version": old.key_version(), "to_version": new_version, "secrets": sealed.len() }),
            ),
        )
        .await?;
    tx.commit().await?;
    Ok(sealed.len())
}

/// Checks the configured master key against the database at start: a wrong key, or no key
/// while encrypted secrets exist, stops the start; a first key is recorded as version 1.
pub async fn open_vault(
    db: &db::Db,
    key: Option<MasterKey>,
    source: &str,
) -> Result<Option<Vault>, String> {
    let latest = repo::latest_master_key(&db.pool)
        .await
        .map_err(|e| e.to_string())?;
    match (key, latest) {
        (None, None) => Ok(None),
        (None, Some(_)) => {
            let sealed = repo::count_sealed(&db.pool)
                .await
                .map_err(|e| e.to_string())?;
            if sealed > 0 {
                Err(format!(
                    "{sealed} stored credential secrets are encrypted, but no master key is configured. \
                     Set KYC_DESK_MASTER_KEY or KYC_DESK_MASTER_KEY_FILE to the key they were encrypted with."
                ))
            } else {
                Ok(None)
            }
        }
        (Some(key), None) => {
            let mut conn = db.pool.acquire().await.map_err(|e| e.to_string())?;
            if let Err(error) = repo::insert_master_key(&mut conn, 1, &key.check_value()).await {
                // Another instance may have recorded the same key at the same moment.
                match repo::latest_master_key(&db.pool).await {
                    Ok(Some((_, check))) if check == key.check_value() => {}
                    _ => return Err(error.to_string()),
                }
            }
            Ok(Some(Vault::new(key, 1)))
        }
        (Some(key), Some((version, check))) => {
            if key.check_value() == check {
                Ok(Some(Vault::new(key, version)))
            } else {
                Err(format!(
                    "{source} is not the master key the stored credentials are encrypted with (key version {version}). \
                     Nothing was changed; start again with the right key."
                ))
            }
        }
    }
}

/// Runs the connection test of the active credential of `kind` in `environment`; returns
/// whether it passed and what it found, in plain words. The outcome is stored with the
/// credential.
pub async fn test_connection(
    state: &AppState,
    kind: CredentialKind,
    environment: &str,
    confirm_generation: bool,
) -> Result<(bool, String), AppError> {
    use crate::server::providers::{eko, message_central};
    let environment = environment.trim().to_lowercase();
    let Some(Opened {
        row,
        settings,
        mut secrets,
    }) = open(state, CredentialRef::Active(kind, &environment)).await?
    else {
        return Err(AppError::NotFound(format!(
            "There is no active {} credential for {environment}.",
            kind.label()
        )));
    };
    let setting = |name: &str| settings.get(name).cloned().unwrap_or_default();
    let (ok, message) = match kind {
        CredentialKind::EkoDigilocker => {
            let creds = eko::EkoCredentials::from_stored(&settings, &mut secrets);
            // A status query for a reference that cannot exist: "not found" proves Eko
            // accepted our signature without creating anything.
            match eko::get_status(&state.providers, &creds, "0", None).await {
                Err(ProviderError::Business { code: 463, .. }) | Ok(_) => (
                    true,
                    "Eko accepted the signature and keys (it answered a status query for a test reference).".to_string(),
                ),
                Err(error) => (false, error.operator_message()),
            }
        }
        CredentialKind::MessageCentralEkyc => {
            let trial = environment == "trial";
            let remaining = crate::credential_kinds::TRIAL_LINKS - row.trial_links_used;
            if trial && remaining <= 0 {
                return Err(AppError::Conflict(format!(
                    "{} A test would fail.",
                    crate::credential_kinds::trial_links_used_up()
                )));
            }
            if !confirm_generation {
                return Err(AppError::Conflict(if trial {
                    format!(
                        "Message Central has no harmless test call: a test generates one real link and uses one of the {remaining} trial links left. Confirm to go ahead."
                    )
                } else {
                    "Message Central has no harmless test call: a test generates one real (billable) link. Confirm to go ahead.".to_string()
                }));
            }
            let flow = [setting("basic_flow_id"), setting("premium_flow_id")]
                .into_iter()
                .find(|f| !f.is_empty())
                .unwrap_or_default();
            let creds = message_central::McCredentials::from_stored(&settings, &mut secrets);
            if trial && !reserve_trial_link(state, &row).await? {
                return Err(AppError::Conflict(format!(
                    "{} A test would fail.",
                    crate::credential_kinds::trial_links_used_up()
                )));
            }
            let result = message_central::generate_url(&state.providers, &creds, &flow).await;
            if trial
                && result
                    .as_ref()
                    .is_err_and(|error| !error.may_have_reached_provider())
            {
                give_back_trial_link(state, &row).await?;
            }
            match result {
                Ok(link) => (
                    true,
                    format!(
                        "Message Central generated a test link (journey {}); it expires unused.",
                        link.journey_id.unwrap_or_else(|| "without id".into())
                    ),
                ),
                Err(error) => (false, error.operator_message()),
            }
        }
        CredentialKind::Smtp => {
            match crate::server::notify::email::check_smtp(&settings, secrets.remove("password"))
                .await
            {
                Ok(message) => (true, message),
                Err(message) => (false, message),
            }
        }
        CredentialKind::SingleSignOn => {
            match crate::server::auth::single_sign_on::test_settings(state).await {
                Ok(message) => (true, message),
                Err(message) => (false, message),
            }
        }
        CredentialKind::MessageCentralSms => {
            match crate::server::notify::sms::check_sms(
                &state.providers,
                &settings,
                secrets.remove("password"),
            )
            .await
            {
                Ok(message) => (true, message),
                Err(message) => (false, message),
            }
        }
    };
    repo::record_test(&state.db.pool, row.id, ok, &message).await?;
    Ok((ok, message))
}

/// Runs [`test_connection`] for `actor` and records its outcome in the audit log (a test that
/// could not run, such as one awaiting confirmation, records nothing). The credentials page
/// and `kyc-desk credentials test` both come here.
pub async fn test_and_record(
    state: &AppState,
    meta: &RequestMeta,
    actor: Actor,
    kind: CredentialKind,
    environment: &str,
    confirm_generation: bool,
) -> Result<(bool, String), AppError> {
    let (ok, message) = test_connection(state, kind, environment, confirm_generation).await?;
    state
        .audit
        .record(
            &state.db,
            meta,
            &AuditEvent::new(
                actor,
                "credential.test",
                if ok {
                    Outcome::Success
                } else {
                    Outcome::Failure
                },
            )
            .object("credential", kind.name(environment))
            .reason(message.clone()),
        )
        .await;
    Ok((ok, message))
}
