//! The one shared state of the server.

use crate::access::AccessTable;
use crate::server::audit::{AuditLog, Noise};
use crate::server::auth::password::{HashError, Passwords};
use crate::server::auth::throttle::InFlight;
use crate::server::config::Config;
use crate::server::credentials;
use crate::server::db::{Db, DbError};
use crate::server::providers::ProviderHttp;
use crate::server::vault::{self, Vault};
use crate::server::web::assets::AssetNames;
use crate::server::web::dictionary::BundleDictionary;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::sync::Arc;

/// Shared by every request handler and server function.
#[derive(Clone)]
pub struct AppState {
    /// Configuration loaded at start.
    pub config: Arc<Config>,
    /// The database.
    pub db: Db,
    /// Password hashing.
    pub passwords: Passwords,
    /// Leptos rendering options.
    pub leptos_options: LeptosOptions,
    /// The credential vault. A state cannot be opened without the master key, so every
    /// state (server, command, test, tool) has one.
    pub vault: Arc<Vault>,
    /// The tamper-evident audit log.
    pub audit: AuditLog,
    /// Records refusals anyone can provoke, one row per client, kind and minute.
    pub audit_noise: Noise,
    /// Password checks in flight, per account and per client address.
    pub sign_ins: Arc<InFlight>,
    /// The one HTTP client for provider calls.
    pub providers: ProviderHttp,
    /// Who may pass which door: the standard table ([`AccessTable::standard`]); tests swap in a
    /// changed one to show that the table alone decides.
    pub access: Arc<AccessTable>,
    /// The names of this build's bundle files and how long browsers may keep them.
    pub assets: Arc<AssetNames>,
    /// The split bundle's frame as the dictionary of its parts (`None` for any other build).
    pub bundle_dictionary: Option<Arc<BundleDictionary>>,
    /// The WebAuthn relying party (passkeys), for the public URL's host; `None` when that host
    /// cannot be one (browsers refuse passkeys for an IP address).
    pub webauthn: Option<Arc<webauthn_rs::Webauthn>>,
    /// Single sign-on's discovered identity provider and its HTTP client.
    pub sso: Arc<crate::server::auth::single_sign_on::SsoDirectory>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Database could not be opened or migrated.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Password hashing could not be prepared.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The bundle's hash file exists but names no file.
    #[error("browser bundle: {0}")]
    Bundle(String),
    /// The provider HTTP client could not be built.
    #[error("provider HTTP client: {0}")]
    Providers(String),
    /// The master key is unusable or does not match the stored credentials.
    #[error("master key: {0}")]
    MasterKey(String),
}

impl AppState {
    /// Opens and migrates the database and prepares the services.
    pub async fn open(config: Config) -> Result<Self, StartError> {
        let db = Db::connect(&config.database_url).await?;
        match &config.migrate_database_url {
            // The least-privilege layout: the tables' owner migrates, then goes away; the
            // role KYC Desk runs as cannot change the schema (nor drop audit_log's triggers).
            Some(owner_url) => {
                let owner = Db::connect(owner_url).await?;
                owner.migrate().await?;
                crate::server::db::app_role::grant(&owner, &db)
                    .await
                    .map_err(DbError::from)?;
                owner.pool.close().await;
            }
            None => db.migrate().await?,
        }
        let indexed = crate::server::db::links::backfill_search_terms(&db)
            .await
            .map_err(DbError::from)?;
        if indexed > 0 {
            tracing::info!(
                sessions = indexed,
                "indexed the search terms of existing sessions"
            );
        }
        let key = vault::load_key(&config.master_key)
            .map_err(|e| StartError::MasterKey(e.to_string()))?;
        let Some(key) = key else {
            return Err(StartError::MasterKey(
                "no master key is configured. Set KYC_DESK_MASTER_KEY (base64 of 32 random bytes) or \
                 KYC_DESK_MASTER_KEY_FILE: stored credentials are encrypted and the audit log is signed \
                 with keys derived from it. On a development machine, KYC_DESK_DEV_GENERATE_MASTER_KEY=true \
                 with KYC_DESK_MASTER_KEY_FILE creates one."
                    .into(),
            ));
        };
        let vault = credentials::open_vault(&db, Some(key), &config.master_key.to_string())
            .await
            .map_err(StartError::MasterKey)?
            .map(Arc::new)
            .ok_or_else(|| StartError::MasterKey("the master key could not be opened".into()))?;
        let audit = AuditLog::open(&db, &vault)
            .await
            .map_err(|e| StartError::MasterKey(e.to_string()))?
            .anchored(Some(config.audit_anchor_file.clone()));
        let audit_noise = Noise::new(db.clone(), audit.clone());
        let passwords = Passwords::with_max_wait(config.password_check_wait).await?;
        let providers = ProviderHttp::new(
            config.provider_connect_timeout,
            config.provider_request_timeout,
        )
        .map_err(|e| StartError::Providers(e.to_string()))?;
        let sso = crate::server::auth::single_sign_on::SsoDirectory::new(
            config.provider_connect_timeout,
            config.provider_request_timeout,
        )
        .map_err(StartError::Providers)?;
        let assets = match &config.bundle_hash_file {
            Some(path) => {
                AssetNames::load(path, &config.site_root.join("pkg")).map_err(StartError::Bundle)?
            }
            None => AssetNames::unhashed(),
        };
        crate::server::web::assets::remember_stylesheet(&assets);
        let bundle_dictionary =
            BundleDictionary::for_bundle(&assets, &config.site_root.join("pkg")).map(Arc::new);
        let leptos_options = LeptosOptions::builder()
            .output_name(crate::server::web::assets::OUTPUT_NAME)
            .site_root(config.site_root.to_string_lossy().to_string())
            .site_pkg_dir("pkg")
            .site_addr(config.addr)
            // Leptos joins this to the binary's folder; an absolute path stands for itself.
            .hash_files(assets.is_hashed())
            .hash_file(
                assets
                    .hash_file
                    .as_ref()
                    .map(|path| Arc::<str>::from(path.to_string_lossy().as_ref()))
                    .unwrap_or_else(|| Arc::from("hash.txt")),
            )
            .build();
        let config_public_url = config.public_url.clone();
        Ok(AppState {
            config: Arc::new(config),
            db,
            passwords,
            leptos_options,
            vault,
            audit,
            audit_noise,
            sign_ins: InFlight::new(),
            providers,
            access: Arc::new(AccessTable::standard()),
            assets: Arc::new(assets),
            bundle_dictionary,
            webauthn: crate::server::auth::passkeys::relying_party(&config_public_url),
            sso: Arc::new(sso),
        })
    }
}
