//! The built-in provider sandbox over real HTTP: header and signature checks, the documented
//! error shapes, the customer journey and the SMS / WhatsApp sink.
//!
//! The Eko signature is computed here from the documented recipe, independently of the
//! provider clients, so the sandbox is checked against the documentation, not against the
//! code it is meant to exercise.

use axum::Router;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use kyc_desk::server::sandbox::{MessageChannel, Sandbox, SandboxConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

const MC_KEY: &str = "mc-sandbox-key-Q7x2";
const COMPANY: &str = "Acme Ltd";
const FLOW_BASIC: &str = "flow-basic-01";
const FLOW_PREMIUM: &str = "flow-premium-01";
/// Eko's documented public UAT credentials (not secrets).
const EKO_DEVELOPER_KEY: &str = "becbbce45f79c6f5109f848acd540567";
const EKO_ACCESS_KEY: &str = "d2fe1d99-6298-4af2-8cc5-d97dcf46df30";
const EKO_INITIATOR: &str = "9962981729";
const EKO_USER_CODE: &str = "20810200";
const SMS_CUSTOMER: &str = "C-ACME-01";
const SMS_PASSWORD: &str = "sms-pass+word/42";

struct Server {
    base: String,
    sandbox: Sandbox,
    /// Never follows redirects, so the 303s can be inspected.
    client: reqwest::Client,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}/sandbox{path}", self.base)
    }

    /// A customer return address of the console the sandbox belongs to.
    fn app_return(&self) -> String {
        format!("{}/kyc/return/abc", self.base)
    }
}

async fn start() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = Sandbox::new(SandboxConfig {
        mc_api_key: MC_KEY.into(),
        mc_company_name: COMPANY.into(),
        mc_flow_ids: vec![FLOW_BASIC.into(), FLOW_PREMIUM.into()],
        eko_developer_key: EKO_DEVELOPER_KEY.into(),
        eko_access_key: EKO_ACCESS_KEY.into(),
        sms_customer_id: SMS_CUSTOMER.into(),
        sms_password: SMS_PASSWORD.into(),
        public_base: base.clone(),
    });
    let app = Router::new().nest("/sandbox", sandbox.router());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Server {
        base,
        sandbox,
        client,
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The documented recipe: HMAC-SHA256 keyed with the base64 *text* of the access key.
fn eko_signature(access_key: &str, timestamp: &str) -> String {
    let key = STANDARD.encode(access_key);
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn signed(
    request: reqwest::RequestBuilder,
    access_key: &str,
    at_ms: u128,
) -> reqwest::RequestBuilder {
    let timestamp = at_ms.to_string();
    request
        .header("developer_key", EKO_DEVELOPER_KEY)
        .header("secret-key", eko_signature(access_key, &timestamp))
        .header("secret-key-timestamp", timestamp)
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json().await.unwrap();
    (status, body)
}

fn longest_digit_run(text: &str) -> usize {
    text.split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

// ---------------------------------------------------------------- Message Central e-KYC

async fn mc_generate(
    server: &Server,
    api_key: Option<&str>,
    flow_id: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = server
        .client
        .post(server.url("/message-central/ekyc/api/v1/redirection/generate-url"));
    if let Some(key) = api_key {
        request = request.header("api_key", key);
    }
    if let Some(flow) = flow_id {
        request = request.header("flow_id", flow);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    json_of(request.send().await.unwrap()).await
}

#[tokio::test]
async fn message_central_generates_a_link() {
    let server = start().await;
    let bearer = format!("Bearer {MC_KEY}");
    let (status, body) = mc_generate(
        &server,
        Some(&bearer),
        Some(FLOW_BASIC),
        Some(json!({"company_name": COMPANY})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap();
    assert!(token.len() >= 32);
    assert_eq!(
        body["url"],
        format!("{}/sandbox/journey/{token}", server.base)
    );
    let journey = body["journey_id"].as_str().unwrap();
    assert!(journey.starts_with('M') && journey[1..].bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(body["expires_in_minutes"], 30);
    assert!(body["message"].is_string());

    // The form encoding the guide's cURL sample suggests works too, for the other flow.
    let response = server
        .client
        .post(server.url("/message-central/ekyc/api/v1/redirection/generate-url"))
        .header("api_key", &bearer)
        .header("flow_id", FLOW_PREMIUM)
        .form(&[("company_name", COMPANY)])
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["token"].as_str().unwrap(), token);

    // The journey page names the provider and flow.
    let page = server
        .client
        .get(body["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Message Central") && html.contains(FLOW_PREMIUM),
        "{html}"
    );
}

#[tokio::test]
async fn message_central_refuses_with_the_documented_details() {
    let server = start().await;
    let bearer = format!("Bearer {MC_KEY}");
    let company = || Some(json!({"company_name": COMPANY}));
    let cases = [
        (
            mc_generate(&server, Some(MC_KEY), Some(FLOW_BASIC), company()).await,
            "API Key must be 'Bearer '",
        ),
        (
            mc_generate(&server, None, Some(FLOW_BASIC), company()).await,
            "API Key must be 'Bearer '",
        ),
        (
            mc_generate(&server, Some(&bearer), None, company()).await,
            "Missing flow_id header/query.",
        ),
        (
            mc_generate(&server, Some(&bearer), Some(FLOW_BASIC), None).await,
            "Missing company name in Header",
        ),
        (
            mc_generate(&server, Some(&bearer), Some(FLOW_BASIC), Some(json!({}))).await,
            "Missing company name in Header",
        ),
    ];
    for ((status, body), detail) in cases {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body, json!({ "detail": detail }));
    }

    let (status, body) = mc_generate(
        &server,
        Some("Bearer wrong-key"),
        Some(FLOW_BASIC),
        company(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"detail": "Invalid API key"}));

    let (status, body) = mc_generate(&server, Some(&bearer), Some("flow-unknown"), company()).await;
    assert!(matches!(status.as_u16(), 400 | 401), "{status}");
    assert!(
        body["detail"].as_str().unwrap().contains("flow_id"),
        "{body}"
    );

    let (status, body) = mc_generate(
        &server,
        Some(&bearer),
        Some(FLOW_BASIC),
        Some(json!({"company_name": "Someone Else"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["detail"].as_str().unwrap().contains("company"),
        "{body}"
    );
}

#[tokio::test]
async fn message_central_journey_redirects_back() {
    let server = start().await;
    let bearer = format!("Bearer {MC_KEY}");
    let link = |body: Value| {
        let bearer = bearer.clone();
        let server = &server;
        async move {
            let (status, body) =
                mc_generate(server, Some(&bearer), Some(FLOW_BASIC), Some(body)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };

    let approved =
        link(json!({"company_name": COMPANY, "redirect_url": server.app_return()})).await;
    let response = server
        .client
        .post(approved["url"].as_str().unwrap())
        .form(&[("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap();
    let journey = approved["journey_id"].as_str().unwrap();
    assert_eq!(
        location,
        format!(
            "{}?journey_id={journey}&status=approved",
            server.app_return()
        )
    );

    let denied = link(json!({"company_name": COMPANY, "redirect_url": server.app_return()})).await;
    let response = server
        .client
        .post(denied["url"].as_str().unwrap())
        .form(&[("decision", "deny")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(&server.app_return()) && location.ends_with("status=denied"));

    // Without a redirect the customer is told to close the window.
    let plain = link(json!({"company_name": COMPANY})).await;
    let response = server
        .client
        .post(plain["url"].as_str().unwrap())
        .form(&[("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("close this window"));
}

// ---------------------------------------------------------------- Eko DigiLocker

fn create_body(server: &Server, client_ref_id: &str) -> Value {
    json!({
        "initiator_id": EKO_INITIATOR,
        "user_code": EKO_USER_CODE,
        "client_ref_id": client_ref_id,
        "document_requested": ["AADHAAR"],
        "redirect_url": server.app_return(),
    })
}

async fn eko_create(server: &Server, body: &Value) -> (StatusCode, Value) {
    let request = server
        .client
        .post(server.url("/eko/tools/kyc/digilocker"))
        .json(body);
    json_of(
        signed(request, EKO_ACCESS_KEY, now_ms())
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn eko_status(server: &Server, reference_id: &str) -> (StatusCode, String) {
    let request = server
        .client
        .get(server.url("/eko/tools/kyc/digilocker/status"))
        .query(&[
            ("initiator_id", EKO_INITIATOR),
            ("reference_id", reference_id),
        ]);
    let response = signed(request, EKO_ACCESS_KEY, now_ms())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

async fn eko_document(
    server: &Server,
    reference_id: &Value,
    verification_id: Option<&str>,
) -> Value {
    let mut body = json!({
        "initiator_id": EKO_INITIATOR,
        "user_code": EKO_USER_CODE,
        "document_type": ["AADHAAR"],
        "reference_id": reference_id,
    });
    if let Some(id) = verification_id {
        body["verification_id"] = json!(id);
    }
    let request = server
        .client
        .post(server.url("/eko/tools/kyc/digilocker/document"))
        .json(&body);
    let (status, body) = json_of(
        signed(request, EKO_ACCESS_KEY, now_ms())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn decide(server: &Server, url: &str, decision: &str) -> reqwest::Response {
    server
        .client
        .post(url)
        .form(&[("decision", decision)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn eko_checks_the_signature() {
    let server = start().await;
    let (status, body) = eko_create(&server, &create_body(&server, "KDSIG0001")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["status"].as_i64(), body["response_status_id"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(body["data"]["reference_id"].is_u64(), "{body}");
    assert_eq!(body["data"]["redirect_url"], server.app_return());
    assert_eq!(body["data"]["document_requested"], json!(["AADHAAR"]));
    assert!(
        body["data"]["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/sandbox/journey/", server.base))
    );

    let url = server.url("/eko/tools/kyc/digilocker");
    // Signed with another access key.
    let wrong = signed(
        server
            .client
            .post(&url)
            .json(&create_body(&server, "KDSIG0002")),
        "some-other-access-key",
        now_ms(),
    );
    assert_eq!(wrong.send().await.unwrap().status(), StatusCode::FORBIDDEN);
    // Signed with the decoded key bytes instead of the base64 text (the classic mistake).
    let timestamp = now_ms().to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(EKO_ACCESS_KEY.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    let decoded = server
        .client
        .post(&url)
        .json(&create_body(&server, "KDSIG0003"))
        .header("developer_key", EKO_DEVELOPER_KEY)
        .header("secret-key", STANDARD.encode(mac.finalize().into_bytes()))
        .header("secret-key-timestamp", &timestamp);
    assert_eq!(
        decoded.send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // Correctly signed, but six minutes old.
    let stale = signed(
        server
            .client
            .post(&url)
            .json(&create_body(&server, "KDSIG0004")),
        EKO_ACCESS_KEY,
        now_ms() - 6 * 60 * 1000,
    );
    assert_eq!(stale.send().await.unwrap().status(), StatusCode::FORBIDDEN);
    // Wrong developer key.
    let timestamp = now_ms().to_string();
    let developer = server
        .client
        .post(&url)
        .json(&create_body(&server, "KDSIG0005"))
        .header("developer_key", "not-the-developer-key")
        .header("secret-key", eko_signature(EKO_ACCESS_KEY, &timestamp))
        .header("secret-key-timestamp", &timestamp);
    assert_eq!(
        developer.send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // No signature at all, on the status call too.
    let bare = server
        .client
        .get(server.url("/eko/tools/kyc/digilocker/status"))
        .query(&[("initiator_id", EKO_INITIATOR), ("reference_id", "1")]);
    assert_eq!(bare.send().await.unwrap().status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn eko_reports_validation_and_business_errors() {
    let server = start().await;
    let (status, body) = eko_create(&server, &create_body(&server, "KD123456789012345678X")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response_status_id"], 1);
    assert_eq!(body["response_type_id"], -1);
    assert_ne!(body["status"], 0);
    assert!(
        body["invalid_params"]["client_ref_id"].is_string(),
        "{body}"
    );

    // Twenty characters is fine, and a client_ref_id is good for one call only.
    let (_, body) = eko_create(&server, &create_body(&server, "KD123456789012345678")).await;
    assert_eq!(body["status"], 0, "{body}");
    let (_, body) = eko_create(&server, &create_body(&server, "KD123456789012345678")).await;
    assert!(
        body["invalid_params"]["client_ref_id"].is_string(),
        "{body}"
    );

    let (status, text) = eko_status(&server, "424242").await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (body["status"].as_i64(), body["response_status_id"].as_i64()),
        (Some(463), Some(463))
    );
    assert_eq!(body["message"], "reference not found");
}

#[tokio::test]
async fn eko_full_journey_approved() {
    let server = start().await;
    let (_, created) = eko_create(&server, &create_body(&server, "KDJOURNEY0001")).await;
    let reference = created["data"]["reference_id"].clone();
    let reference_text = reference.to_string();
    let url = created["data"]["url"].as_str().unwrap().to_string();

    // Before the customer acts: pending, with empty details and a PENDING document.
    let (_, text) = eko_status(&server, &reference_text).await;
    let pending: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(pending["status"], 0, "{pending}");
    assert_eq!(pending["data"]["user_details"], json!({}));
    let document = eko_document(&server, &reference, None).await;
    assert_eq!(
        document["data"]["verification_status"], "PENDING",
        "{document}"
    );

    // The journey page offers the three choices, under the sandbox title, without scripts
    // or inline styles (the app's CSP forbids both).
    let page = server.client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>KYC Desk sandbox — customer journey</title>"));
    for choice in ["approve", "deny", "abandon"] {
        assert!(
            html.contains(&format!("name=\"decision\" value=\"{choice}\"")),
            "{html}"
        );
    }
    assert!(html.contains("<form method=\"post\""));
    assert!(!html.contains("<script") && !html.contains("style=") && !html.contains("<style"));

    let response = decide(&server, &url, "approve").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let prefix = format!("{}?verification_id=", server.app_return());
    assert!(location.starts_with(&prefix), "{location}");
    let verification_id = &location[prefix.len()..];
    assert!(!verification_id.is_empty());

    let (status, text) = eko_status(&server, &reference_text).await;
    assert_eq!(status, StatusCode::OK);
    let done: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(done["status"], 0, "{done}");
    let user = &done["data"]["user_details"];
    assert_eq!(user["eaadhaar"], "XXXX-XXXX-2345");
    for field in ["name", "dob", "gender", "mobile"] {
        assert!(
            user[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {done}"
        );
    }
    assert_eq!(done["data"]["document_consent"], "Y");
    assert_eq!(done["data"]["document_requested"], json!(["AADHAAR"]));
    assert!(
        longest_digit_run(&text) < 12,
        "an Aadhaar-length number leaked: {text}"
    );

    let document = eko_document(&server, &reference, Some(verification_id)).await;
    assert_eq!(document["status"], 0, "{document}");
    assert_eq!(document["data"]["verification_status"], "SUCCESS");
    let aadhaar = &document["data"]["documents"][0];
    assert_eq!(aadhaar["document_type"], "AADHAAR");
    assert_eq!(aadhaar["masked_aadhaar"], "XXXX-XXXX-2345");
    let dob = aadhaar["dob"].as_str().unwrap();
    assert!(
        dob.len() == 10 && &dob[2..3] == "-" && &dob[5..6] == "-",
        "{dob}"
    );
    assert!(aadhaar["address"]["city"].is_string() && aadhaar["address"]["state"].is_string());
    assert!(longest_digit_run(&document.to_string()) < 12, "{document}");

    // A verification id from another journey is refused.
    let other = eko_document(&server, &reference, Some("SBVnot-this-one")).await;
    assert!(
        other["invalid_params"]["verification_id"].is_string(),
        "{other}"
    );

    // One decision per link: both the page and a second decision now answer 409.
    assert_eq!(
        decide(&server, &url, "deny").await.status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        server.client.get(&url).send().await.unwrap().status(),
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn eko_journey_denied_and_abandoned() {
    let server = start().await;
    let (_, created) = eko_create(&server, &create_body(&server, "KDDENY0001")).await;
    let reference = created["data"]["reference_id"].clone();
    let url = created["data"]["url"].as_str().unwrap();
    let response = decide(&server, url, "deny").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(&format!("{}?verification_id=", server.app_return()))
    );
    let (_, text) = eko_status(&server, &reference.to_string()).await;
    let denied: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(denied["status"], 0, "{denied}");
    assert_eq!(denied["data"]["document_consent"], "N");
    assert_eq!(denied["data"]["user_details"], json!({}));
    let document = eko_document(&server, &reference, None).await;
    assert_ne!(document["data"]["verification_status"], "SUCCESS");
    assert_eq!(
        decide(&server, url, "approve").await.status(),
        StatusCode::CONFLICT
    );

    let (_, created) = eko_create(&server, &create_body(&server, "KDLEFT0001")).await;
    let url = created["data"]["url"].as_str().unwrap();
    let response = decide(&server, url, "abandon").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("location").is_none());
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("You left the verification")
    );
    let (_, text) = eko_status(&server, &created["data"]["reference_id"].to_string()).await;
    let left: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(left["data"]["user_details"], json!({}), "{left}");

    // Unknown tokens and nonsense decisions.
    let unknown = server.url("/journey/not-a-real-token");
    assert_eq!(
        server.client.get(&unknown).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        decide(&server, &unknown, "approve").await.status(),
        StatusCode::NOT_FOUND
    );
    let (_, created) = eko_create(&server, &create_body(&server, "KDODD0001")).await;
    let url = created["data"]["url"].as_str().unwrap();
    assert_eq!(
        decide(&server, url, "maybe").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        server.client.get(url).send().await.unwrap().status(),
        StatusCode::OK
    );
}

// ---------------------------------------------------------------- SMS / WhatsApp sink

async fn sms_token(server: &Server, customer: &str, password: &str) -> (StatusCode, Value) {
    let key = STANDARD.encode(password);
    let response = server
        .client
        .get(server.url("/message-central/auth/v1/authentication/token"))
        .query(&[
            ("customerId", customer),
            ("key", key.as_str()),
            ("scope", "NEW"),
            ("country", "91"),
            ("email", "ops@example.com"),
        ])
        .send()
        .await
        .unwrap();
    json_of(response).await
}

async fn sms_send(server: &Server, token: &str, flow: &str, text: &str) -> (StatusCode, Value) {
    let response = server
        .client
        .post(server.url("/message-central/verification/v3/send"))
        .query(&[
            ("countryCode", "91"),
            ("customerId", SMS_CUSTOMER),
            ("senderId", "KYCDSK"),
            ("type", "SMS"),
            ("flowType", flow),
            ("mobileNumber", "9876543210"),
            ("message", text),
        ])
        .header("authToken", token)
        .send()
        .await
        .unwrap();
    json_of(response).await
}

#[tokio::test]
async fn sms_sink_records_what_was_sent() {
    let server = start().await;
    let (status, body) = sms_token(&server, SMS_CUSTOMER, "wrong-password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["status"], 401);
    assert!(body.get("token").is_none());
    let (status, _) = sms_token(&server, "C-SOMEONE-ELSE", SMS_PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = sms_token(&server, SMS_CUSTOMER, SMS_PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], 200);
    let token = body["token"].as_str().unwrap().to_string();

    let (status, body) = sms_send(&server, "not-a-token", "SMS", "Hello").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["responseCode"], 401);
    assert!(server.sandbox.sent_messages().is_empty());

    let text = "Verify your identity: https://kyc.example/j/abc & reply STOP";
    let (status, body) = sms_send(&server, &token, "SMS", text).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["responseCode"], 200);
    assert_eq!(body["message"], "SUCCESS");
    assert_eq!(body["data"]["mobileNumber"], "9876543210");
    assert!(body["data"]["verificationId"].is_string());
    assert!(body["data"]["transactionId"].is_string());
    let (status, _) = sms_send(&server, &token, "WHATSAPP", "On WhatsApp").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = sms_send(&server, &token, "PIGEON", "By bird").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let sent = server.sandbox.sent_messages();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].channel, MessageChannel::Sms);
    assert_eq!(sent[0].text, text);
    assert_eq!(sent[0].mobile, "9876543210");
    assert_eq!(sent[0].country_code, "91");
    assert_eq!(sent[0].sender_id.as_deref(), Some("KYCDSK"));
    assert_eq!(sent[1].channel, MessageChannel::WhatsApp);
    assert_eq!(sent[1].text, "On WhatsApp");
    assert!(sent[0].sent_at <= sent[1].sent_at);
}

/// A sandbox journey sends the browser only to the console's own return address: any other
/// `redirect_url` would make the console's domain an open redirect (and a phishing page).
#[tokio::test]
async fn journeys_redirect_only_to_the_consoles_return_address() {
    let server = start().await;
    let bearer = format!("Bearer {MC_KEY}");
    for foreign in [
        "https://phish.example/kyc/return/abc".to_string(),
        format!("{}/login", server.base),
        format!("{}/kyc/return/", server.base),
    ] {
        let (status, body) = mc_generate(
            &server,
            Some(&bearer),
            Some(FLOW_BASIC),
            Some(json!({"company_name": COMPANY, "redirect_url": foreign})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{foreign}: {body}");
        assert!(body["detail"].as_str().unwrap().contains("/kyc/return/"));

        let mut body = create_body(&server, "KDFOREIGN01");
        body["redirect_url"] = json!(foreign);
        let (status, answer) = eko_create(&server, &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["response_status_id"], 1, "{foreign}: {answer}");
        assert!(
            answer["data"].is_null() || answer["data"]["url"].is_null(),
            "{answer}"
        );
        assert!(
            answer["invalid_params"]["redirect_url"].is_string(),
            "{answer}"
        );
    }
}
