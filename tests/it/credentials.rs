//! The credential store: encryption at rest, rotation, the start-up key check and master-key
//! rotation, on SQLite and PostgreSQL.

use crate::common;

use common::TestApp;
use kyc_desk::credential_kinds::{CredentialInput, CredentialKind};
use kyc_desk::server::audit::{Actor, RequestMeta};
use kyc_desk::server::credentials;
use kyc_desk::server::startup;
use kyc_desk::server::state::AppState;
use kyc_desk::server::vault::MasterKey;
use kyc_desk::types::AppError;
use secrecy::ExposeSecret;

const CANARY_DEV: &str = "canary-developer-key-7f3a9c";
const CANARY_ACCESS: &str = "canary-access-key-1b2c3d4e";
const CANARY_ACCESS_2: &str = "canary-access-key-rotated-99";

fn eko(access_key: Option<&str>, developer_key: Option<&str>) -> CredentialInput {
    let mut input = CredentialInput {
        kind: "eko_digilocker".into(),
        environment: "uat".into(),
        ..Default::default()
    };
    for (k, v) in [
        ("initiator_id", "9962981729"),
        ("user_code", "20810200"),
        ("documents", "AADHAAR"),
    ] {
        input.settings.insert(k.into(), v.into());
    }
    if let Some(key) = access_key {
        input.secrets.insert("access_key".into(), key.into());
    }
    if let Some(key) = developer_key {
        input.secrets.insert("developer_key".into(), key.into());
    }
    input
}

async fn start_with_key(backend: common::Backend, key: &str) -> TestApp {
    TestApp::start_with(backend, &[("KYC_DESK_MASTER_KEY", key)]).await
}

async fn reopen(database_url: &str, key: Option<&str>) -> Result<AppState, String> {
    let anchor = kyc_desk::server::fresh_database::anchor_file_for(database_url);
    let mut vars = vec![("DATABASE_URL", database_url)];
    if let Some(anchor) = &anchor {
        vars.push(("KYC_DESK_AUDIT_ANCHOR_FILE", anchor));
    }
    if let Some(key) = key {
        vars.push(("KYC_DESK_MASTER_KEY", key));
    }
    let config = startup::config_from(vars).unwrap();
    startup::open(config).await.map_err(|e| e.to_string())
}

async fn raw_dump(app: &TestApp) -> String {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT settings, saved_by FROM credentials")
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
    let secrets: Vec<(Option<String>, String, String)> =
        sqlx::query_as("SELECT ciphertext, last4, fingerprint FROM credential_secrets")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
    format!("{rows:?}{secrets:?}")
}

both_backends!(
    secrets_are_encrypted_masked_and_rotated,
    |backend| async move {
        let key = MasterKey::generate().to_base64().to_string();
        let app = start_with_key(backend, &key).await;
        let meta = RequestMeta::cli();

        // A first save needs every secret.
        let error = credentials::save(
            &app.state,
            &meta,
            Actor::Cli,
            "cli",
            &eko(Some(CANARY_ACCESS), None),
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.field_message("developer_key").as_deref(),
            Some("Enter the developer key.")
        );

        let saved = credentials::save(
            &app.state,
            &meta,
            Actor::Cli,
            "cli",
            &eko(Some(CANARY_ACCESS), Some(CANARY_DEV)),
            false,
        )
        .await
        .unwrap();
        assert_eq!(saved.change, "created");
        assert_eq!(saved.view.version, 1);
        let view_json = serde_json::to_string(&saved.view).unwrap();
        assert!(
            !view_json.contains(CANARY_ACCESS) && !view_json.contains(CANARY_DEV),
            "{view_json}"
        );
        let access = saved
            .view
            .secrets
            .iter()
            .find(|s| s.field == "access_key")
            .unwrap();
        assert_eq!(access.last4, "3d4e");
        assert_eq!(access.fingerprint.len(), 12);
        assert!(
            !raw_dump(&app).await.contains("canary-"),
            "no plain secret in the database"
        );

        // Settings-only edits keep the version and the secrets.
        let mut edit = eko(None, None);
        edit.settings
            .insert("documents".into(), "AADHAAR,PAN".into());
        let updated = credentials::save(&app.state, &meta, Actor::Cli, "cli", &edit, false)
            .await
            .unwrap();
        assert_eq!((updated.change, updated.view.version), ("updated", 1));
        assert_eq!(updated.view.settings["documents"], "AADHAAR,PAN");

        // A new secret value is a rotation: refused without re-authentication ...
        let refused = credentials::save(
            &app.state,
            &meta,
            Actor::Cli,
            "cli",
            &eko(Some(CANARY_ACCESS_2), None),
            false,
        )
        .await
        .unwrap_err();
        assert!(refused.field_message("reauth_password").is_some());
        // ... and with it: version 2, the untouched developer key carried over, v1 wiped.
        let rotated = credentials::save(
            &app.state,
            &meta,
            Actor::Cli,
            "cli",
            &eko(Some(CANARY_ACCESS_2), None),
            true,
        )
        .await
        .unwrap();
        assert_eq!((rotated.change, rotated.view.version), ("rotated", 2));
        let (_, settings, secrets) =
            credentials::unlock(&app.state, CredentialKind::EkoDigilocker, "uat")
                .await
                .unwrap()
                .unwrap();
        assert_eq!(
            settings["documents"], "AADHAAR",
            "a rotation saves the settings submitted with it"
        );
        assert_eq!(secrets["access_key"].expose_secret(), CANARY_ACCESS_2);
        assert_eq!(secrets["developer_key"].expose_secret(), CANARY_DEV);
        let retired: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT c.status, s.ciphertext FROM credentials c JOIN credential_secrets s ON s.credential_id = c.id WHERE c.version = 1",
    )
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
        assert_eq!(retired.len(), 2);
        assert!(
            retired
                .iter()
                .all(|(status, ciphertext)| status == "retired" && ciphertext.is_none())
        );
        assert_eq!(credentials::list(&app.state).await.unwrap().len(), 1);
    }
);

both_backends!(
    a_ciphertext_copied_to_another_field_does_not_decrypt,
    |backend| async move {
        let key = MasterKey::generate().to_base64().to_string();
        let app = start_with_key(backend, &key).await;
        credentials::save(
            &app.state,
            &RequestMeta::cli(),
            Actor::Cli,
            "cli",
            &eko(Some(CANARY_ACCESS), Some(CANARY_DEV)),
            false,
        )
        .await
        .unwrap();
        sqlx::query(
        "UPDATE credential_secrets SET ciphertext = (SELECT ciphertext FROM credential_secrets WHERE field = 'developer_key'), \
         nonce = (SELECT nonce FROM credential_secrets WHERE field = 'developer_key') WHERE field = 'access_key'",
    )
    .execute(&app.state.db.pool)
    .await
    .unwrap();
        let error = credentials::unlock(&app.state, CredentialKind::EkoDigilocker, "uat")
            .await
            .unwrap_err();
        assert!(matches!(error, AppError::Internal { .. }), "{error:?}");
        assert!(!error.to_string().contains("canary"));
    }
);

both_backends!(start_refuses_a_wrong_or_missing_key, |backend| async move {
    let key = MasterKey::generate().to_base64().to_string();
    let app = start_with_key(backend, &key).await;
    credentials::save(
        &app.state,
        &RequestMeta::cli(),
        Actor::Cli,
        "cli",
        &eko(Some(CANARY_ACCESS), Some(CANARY_DEV)),
        false,
    )
    .await
    .unwrap();
    let other = MasterKey::generate().to_base64().to_string();
    let wrong = reopen(&app.database_url, Some(&other))
        .await
        .err()
        .expect("a wrong key must stop the start");
    assert!(wrong.contains("is not the master key"), "{wrong}");
    let missing = reopen(&app.database_url, None)
        .await
        .err()
        .expect("a missing key must stop the start");
    assert!(missing.contains("no master key is configured"), "{missing}");
    assert!(reopen(&app.database_url, Some(&key)).await.is_ok());
});

both_backends!(
    master_key_rotation_reencrypts_everything,
    |backend| async move {
        let old_key = MasterKey::generate().to_base64().to_string();
        let app = start_with_key(backend, &old_key).await;
        let meta = RequestMeta::cli();
        credentials::save(
            &app.state,
            &meta,
            Actor::Cli,
            "cli",
            &eko(Some(CANARY_ACCESS), Some(CANARY_DEV)),
            false,
        )
        .await
        .unwrap();
        let mut mc = CredentialInput {
            kind: "message_central_ekyc".into(),
            environment: "trial".into(),
            ..Default::default()
        };
        mc.settings
            .insert("company_name".into(), "Acme Bank".into());
        mc.settings.insert("basic_flow_id".into(), "FLOW-1".into());
        mc.secrets
            .insert("api_key".into(), "Bearer canary-mc-api-key-0001".into());
        let saved = credentials::save(&app.state, &meta, Actor::Cli, "cli", &mc, false)
            .await
            .unwrap();
        assert_eq!(
            saved.notices.len(),
            1,
            "the Bearer prefix was stripped and reported"
        );

        let new_key = MasterKey::generate();
        let new_text = new_key.to_base64().to_string();
        let count = credentials::rotate_master_key(&app.state, new_key)
            .await
            .unwrap();
        assert_eq!(count, 3);

        // The old key no longer opens anything: the start refuses it; the new key opens all.
        let old = reopen(&app.database_url, Some(&old_key))
            .await
            .err()
            .expect("old key refused");
        assert!(old.contains("key version 2"), "{old}");
        let state = reopen(&app.database_url, Some(&new_text)).await.unwrap();
        let (_, _, secrets) = credentials::unlock(&state, CredentialKind::EkoDigilocker, "uat")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(secrets["access_key"].expose_secret(), CANARY_ACCESS);
        let (_, _, secrets) =
            credentials::unlock(&state, CredentialKind::MessageCentralEkyc, "trial")
                .await
                .unwrap()
                .unwrap();
        assert_eq!(secrets["api_key"].expose_secret(), "canary-mc-api-key-0001");
        let versions: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT key_version FROM credential_secrets WHERE ciphertext IS NOT NULL",
        )
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
        assert_eq!(versions, vec![2]);
    }
);
