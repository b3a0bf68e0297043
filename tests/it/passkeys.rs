//! Passkeys end to end against the server, with a software authenticator written here (a P-256
//! key, "none" attestation, as a phone or laptop would answer): adding one, signing in with it
//! after the password and on its own, a step-up with it, a replayed answer refused, the last factor of a role that must have one
//! kept, an admin's reset removing them, and a clear refusal on an IP address.

use crate::common::{self, PASSWORD, TestApp};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use kyc_desk::types::Role;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::Private;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A minimal CBOR writer: the few shapes an authenticator's answer needs.
mod cbor {
    fn head(major: u8, n: u64, out: &mut Vec<u8>) {
        let m = major << 5;
        match n {
            0..=23 => out.push(m | n as u8),
            24..=255 => out.extend([m | 24, n as u8]),
            256..=65535 => {
                out.push(m | 25);
                out.extend((n as u16).to_be_bytes());
            }
            _ => {
                out.push(m | 26);
                out.extend((n as u32).to_be_bytes());
            }
        }
    }
    pub fn int(v: i64, out: &mut Vec<u8>) {
        if v >= 0 {
            head(0, v as u64, out)
        } else {
            head(1, (-1 - v) as u64, out)
        }
    }
    pub fn bytes(b: &[u8], out: &mut Vec<u8>) {
        head(2, b.len() as u64, out);
        out.extend_from_slice(b);
    }
    pub fn text(s: &str, out: &mut Vec<u8>) {
        head(3, s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }
    pub fn map(n: u64, out: &mut Vec<u8>) {
        head(5, n, out)
    }
}

/// A passkey held in software, for one relying party.
struct SoftPasskey {
    key: EcKey<Private>,
    id: Vec<u8>,
    counter: u32,
    origin: String,
    user_handle: Vec<u8>,
}

impl SoftPasskey {
    fn new(origin: &str) -> Self {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let mut id = vec![0u8; 16];
        openssl::rand::rand_bytes(&mut id).unwrap();
        SoftPasskey {
            key: EcKey::generate(&group).unwrap(),
            id,
            counter: 0,
            origin: origin.to_string(),
            user_handle: Vec::new(),
        }
    }

    fn cose_key(&self) -> Vec<u8> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        self.key
            .public_key()
            .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
            .unwrap();
        let mut out = Vec::new();
        cbor::map(5, &mut out);
        cbor::int(1, &mut out);
        cbor::int(2, &mut out); // kty: EC2
        cbor::int(3, &mut out);
        cbor::int(-7, &mut out); // alg: ES256
        cbor::int(-1, &mut out);
        cbor::int(1, &mut out); // crv: P-256
        cbor::int(-2, &mut out);
        cbor::bytes(&x.to_vec_padded(32).unwrap(), &mut out);
        cbor::int(-3, &mut out);
        cbor::bytes(&y.to_vec_padded(32).unwrap(), &mut out);
        out
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        json!({ "type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false })
            .to_string()
            .into_bytes()
    }

    fn auth_data(&mut self, rp_id: &str, attested: bool) -> Vec<u8> {
        self.counter += 1;
        let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
        // User present, user verified, and (when registering) attested credential data.
        data.push(if attested { 0x45 } else { 0x05 });
        data.extend(self.counter.to_be_bytes());
        if attested {
            data.extend([0u8; 16]); // AAGUID
            data.extend((self.id.len() as u16).to_be_bytes());
            data.extend(&self.id);
            data.extend(self.cose_key());
        }
        data
    }

    /// The answer to the server's creation options (JSON text).
    fn register(&mut self, options: &str) -> String {
        let options: Value = serde_json::from_str(options).unwrap();
        let public_key = &options["publicKey"];
        let rp_id = public_key["rp"]["id"].as_str().unwrap();
        self.user_handle = B64
            .decode(public_key["user"]["id"].as_str().unwrap())
            .unwrap();
        let client_data =
            self.client_data("webauthn.create", public_key["challenge"].as_str().unwrap());
        let auth_data = self.auth_data(rp_id, true);
        let mut attestation = Vec::new();
        cbor::map(3, &mut attestation);
        cbor::text("fmt", &mut attestation);
        cbor::text("none", &mut attestation);
        cbor::text("attStmt", &mut attestation);
        cbor::map(0, &mut attestation);
        cbor::text("authData", &mut attestation);
        cbor::bytes(&auth_data, &mut attestation);
        json!({
            "id": B64.encode(&self.id),
            "rawId": B64.encode(&self.id),
            "type": "public-key",
            "extensions": {},
            "response": {
                "attestationObject": B64.encode(attestation),
                "clientDataJSON": B64.encode(client_data),
            },
        })
        .to_string()
    }

    /// The answer to the server's request options (JSON text).
    fn assert(&mut self, options: &str) -> String {
        let options: Value = serde_json::from_str(options).unwrap();
        let public_key = &options["publicKey"];
        let rp_id = public_key["rpId"].as_str().unwrap();
        let client_data =
            self.client_data("webauthn.get", public_key["challenge"].as_str().unwrap());
        let auth_data = self.auth_data(rp_id, false);
        let mut signed = auth_data.clone();
        signed.extend(Sha256::digest(&client_data));
        let signature = EcdsaSig::sign(&Sha256::digest(&signed), &self.key)
            .unwrap()
            .to_der()
            .unwrap();
        json!({
            "id": B64.encode(&self.id),
            "rawId": B64.encode(&self.id),
            "type": "public-key",
            "extensions": {},
            "response": {
                "authenticatorData": B64.encode(auth_data),
                "clientDataJSON": B64.encode(client_data),
                "signature": B64.encode(signature),
                "userHandle": B64.encode(&self.user_handle),
            },
        })
        .to_string()
    }
}

/// A server reached as http://localhost:PORT, where passkeys work.
async fn localhost_app(backend: common::Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("KYC_DESK_PUBLIC_URL", "http://localhost")];
    vars.extend_from_slice(extra);
    TestApp::start_with(backend, &vars).await
}

/// Adds a passkey named `name` for the user signed in on `client`; the recovery codes answered.
async fn add_passkey(
    app: &TestApp,
    client: &reqwest::Client,
    key: &mut SoftPasskey,
    name: &str,
) -> Value {
    let (status, options) = app
        .call(client, "begin_passkey_registration", &[("name", name)])
        .await;
    assert_eq!(status, StatusCode::OK, "{options}");
    let answer = key.register(options.as_str().unwrap());
    let (status, body) = app
        .call(
            client,
            "finish_passkey_registration",
            &[("credential", &answer)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

both_backends!(
    a_passkey_signs_in_and_confirms_a_step_up,
    |backend| async move {
        let app = localhost_app(backend, &[("KYC_DESK_STEP_UP_WINDOW", "2s")]).await;
        app.user("ops@example.com", Role::Operator).await;
        let client = app.signed_in("ops@example.com").await;
        let mut key = SoftPasskey::new(&app.base);

        // A name is needed; then the first second factor brings the recovery codes.
        let (status, body) = app
            .call(&client, "begin_passkey_registration", &[("name", " ")])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.to_string().contains("name"), "{body}");
        let (status, options) = app
            .call(
                &client,
                "begin_passkey_registration",
                &[("name", "Work laptop")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{options}");
        let answer = key.register(options.as_str().unwrap());
        let (status, added) = app
            .call(
                &client,
                "finish_passkey_registration",
                &[("credential", &answer)],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{added}");
        assert_eq!(added["codes"].as_array().unwrap().len(), 10, "{added}");
        let (_, listed) = app.call(&client, "list_passkeys", &[]).await;
        assert_eq!(listed[0]["name"], "Work laptop", "{listed}");
        // The same answer again: the ceremony was used up.
        let (status, body) = app
            .call(
                &client,
                "finish_passkey_registration",
                &[("credential", &answer)],
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");

        // Signing in: the password, then the passkey.
        let (half, body) = app.password_given("ops@example.com").await;
        assert!(
            body["redirect_to"]
                .as_str()
                .unwrap()
                .starts_with("/login/code")
        );
        let (_, choices) = app.call(&half, "second_step_options", &[]).await;
        assert_eq!(choices, json!({ "code": false, "passkey": true }));
        let (status, options) = app.call(&half, "begin_passkey_sign_in", &[]).await;
        assert_eq!(status, StatusCode::OK, "{options}");
        let used = key.assert(options.as_str().unwrap());
        let (status, body) = app
            .call(
                &half,
                "finish_passkey_sign_in",
                &[("credential", &used), ("next", "/sessions")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["redirect_to"], "/sessions");
        assert_eq!(app.whoami(&half).await["email"], "ops@example.com");

        // A replayed answer does not open another session: its challenge was used.
        let other = app.client();
        app.call(
            &other,
            "login",
            &[("email", "ops@example.com"), ("password", PASSWORD)],
        )
        .await;
        let (status, _) = app.call(&other, "begin_passkey_sign_in", &[]).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = app
            .call(&other, "finish_passkey_sign_in", &[("credential", &used)])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(app.whoami(&other).await, Value::Null);

        // The passkey alone signs in (it holds the user handle; user verification is the
        // second factor): no email, no password.
        let alone = app.client();
        let (status, options) = app.call(&alone, "begin_passkey_login", &[]).await;
        assert_eq!(status, StatusCode::OK, "{options}");
        let options_text = options.as_str().unwrap();
        assert!(options_text.contains("\"challenge\""), "{options_text}");
        let answer = key.assert(options_text);
        let (status, body) = app
            .call(
                &alone,
                "finish_passkey_login",
                &[("credential", &answer), ("next", "/links")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["redirect_to"], "/links");
        assert_eq!(app.whoami(&alone).await["email"], "ops@example.com");
        // A passkey of no account here is refused, and signs nobody in.
        let stranger_client = app.client();
        let mut stranger = SoftPasskey::new(&app.base);
        let (_, options) = app.call(&stranger_client, "begin_passkey_login", &[]).await;
        let answer = stranger.assert(options.as_str().unwrap());
        let (status, body) = app
            .call(
                &stranger_client,
                "finish_passkey_login",
                &[("credential", &answer)],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(app.whoami(&stranger_client).await, Value::Null);

        // A step-up with the passkey (a password is not enough for a user who has one).
        tokio::time::sleep(std::time::Duration::from_millis(2_300)).await;
        let (status, body) = app.call(&half, "new_recovery_codes", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["StepUpRequired"]["method"], "Passkey", "{body}");
        let (status, body) = app.call(&half, "step_up", &[("secret", PASSWORD)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (_, options) = app.call(&half, "begin_passkey_step_up", &[]).await;
        let answer = key.assert(options.as_str().unwrap());
        let (status, body) = app
            .call(&half, "finish_passkey_step_up", &[("credential", &answer)])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = app.call(&half, "new_recovery_codes", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // The stored counter follows the authenticator's.
        let (_, listed) = app.call(&half, "list_passkeys", &[]).await;
        assert!(listed[0]["last_used"].is_string(), "{listed}");
        let audit = app.audit_text().await;
        for expected in [
            "\"auth.passkey_added\", \"success\"",
            "\"auth.second_factor\", \"success\"",
            "\"auth.second_factor\", \"failure\"",
            "\"auth.step_up\", \"success\"",
            "\"auth.sign_in\", \"failure\"",
        ] {
            assert!(audit.contains(expected), "{expected} in {audit}");
        }
    }
);

both_backends!(
    a_required_roles_last_passkey_stays_and_a_reset_removes_them,
    |backend| async move {
        let app = localhost_app(backend, &[("KYC_DESK_SECOND_FACTOR_ROLES", "auditor")]).await;
        app.user("root@example.com", Role::Admin).await;
        let auditor_row = app.user("audit@example.com", Role::Auditor).await;
        let auditor = app.signed_in("audit@example.com").await;
        assert_eq!(app.whoami(&auditor).await["must_enrol"], true);

        // Enrolment with a passkey: no step-up for the first factor.
        let mut laptop = SoftPasskey::new(&app.base);
        add_passkey(&app, &auditor, &mut laptop, "Laptop").await;
        assert_eq!(app.whoami(&auditor).await["must_enrol"], false);
        let (_, listed) = app.call(&auditor, "list_passkeys", &[]).await;
        let first_id = listed[0]["id"].as_i64().unwrap().to_string();
        let (status, body) = app
            .call(&auditor, "remove_passkey", &[("id", &first_id)])
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "the only factor: {body}");

        // A second one (within the step-up the first one gave), then the first can go.
        let mut phone = SoftPasskey::new(&app.base);
        let added = add_passkey(&app, &auditor, &mut phone, "Phone").await;
        assert!(added["codes"].as_array().unwrap().is_empty(), "{added}");
        let (status, body) = app
            .call(&auditor, "remove_passkey", &[("id", &first_id)])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, listed) = app.call(&auditor, "list_passkeys", &[]).await;
        assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(listed[0]["name"], "Phone");

        // An admin's reset removes the passkeys and ends the sessions.
        let admin = app.signed_in("root@example.com").await;
        let (status, body) = app
            .call(
                &admin,
                "reset_user_factors",
                &[("user_id", &auditor_row.id.to_string())],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(app.whoami(&auditor).await, Value::Null);
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM passkeys")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(left, 0);
        assert!(app.audit_text().await.contains("\\\"passkeys\\\":1"));
    }
);

both_backends!(
    passkeys_are_refused_clearly_on_an_ip_address,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("ops@example.com", Role::Operator).await;
        let client = app.signed_in("ops@example.com").await;
        let (status, body) = app
            .call(&client, "begin_passkey_registration", &[("name", "Laptop")])
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body.to_string().contains("domain name"), "{body}");
    }
);
