//! The provider wire clients against wiremock: the exact requests they send (method, path,
//! every header, body, Eko signature) and how every documented answer is read.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use kyc_desk::server::providers::eko::{self, EkoCredentials};
use kyc_desk::server::providers::message_central::{self as mc, BodyEncoding, McCredentials};
use kyc_desk::server::providers::{ProviderError, ProviderHttp, mask_aadhaar};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const MC_KEY: &str = "mc-test-key-Zx81";
const FLOW_ID: &str = "flow-basic-01";
/// Eko's documented public UAT credentials (not secrets).
const EKO_DEVELOPER_KEY: &str = "becbbce45f79c6f5109f848acd540567";
const EKO_ACCESS_KEY: &str = "d2fe1d99-6298-4af2-8cc5-d97dcf46df30";
const EKO_INITIATOR: &str = "9962981729";
const EKO_USER_CODE: &str = "20810200";
/// An Aadhaar-shaped number used in provider answers; it must never come out unmasked.
const FULL_AADHAAR: &str = "987654322345";

fn user_agent() -> String {
    format!("KYC-Desk/{}", env!("CARGO_PKG_VERSION"))
}

fn http() -> ProviderHttp {
    http_with_timeout(Duration::from_secs(10))
}

fn http_with_timeout(request_timeout: Duration) -> ProviderHttp {
    ProviderHttp::new(Duration::from_secs(2), request_timeout)
        .unwrap()
        .with_poll_retry_delays(vec![Duration::from_millis(1), Duration::from_millis(1)])
}

fn mc_creds(server: &MockServer, encoding: BodyEncoding) -> McCredentials {
    McCredentials {
        base_url: format!("{}/", server.uri()),
        company_name: "Acme Ltd".into(),
        api_key: SecretString::from(MC_KEY),
        encoding,
    }
}

fn eko_creds(server: &MockServer) -> EkoCredentials {
    EkoCredentials {
        base_url: server.uri(),
        developer_key: SecretString::from(EKO_DEVELOPER_KEY),
        access_key: SecretString::from(EKO_ACCESS_KEY),
        initiator_id: EKO_INITIATOR.into(),
        user_code: EKO_USER_CODE.into(),
    }
}

fn header<'a>(request: &'a Request, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing"))
        .to_str()
        .unwrap()
}

fn header_names(request: &Request) -> BTreeSet<String> {
    request
        .headers
        .keys()
        .map(|k| k.as_str().to_string())
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "exactly one request expected");
    requests.remove(0)
}

/// No Aadhaar-shaped number in `text` (masking it would change nothing).
fn assert_no_full_aadhaar(text: &str) {
    assert!(!text.contains(FULL_AADHAAR), "full Aadhaar in: {text}");
    assert_eq!(mask_aadhaar(text), text, "Aadhaar-shaped number in: {text}");
}

fn assert_result_clean<T: std::fmt::Debug + serde::Serialize>(result: &T) {
    assert_no_full_aadhaar(&format!("{result:?}"));
    assert_no_full_aadhaar(&serde_json::to_string(result).unwrap());
}

// ---------------------------------------------------------------- Message Central

const MC_PATH: &str = "/ekyc/api/v1/redirection/generate-url";

fn mc_success() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "url": "https://ekyc.example/journey/abc",
        "token": "tok-123",
        "journey_id": "M1768000001",
        "expires_in_minutes": 30,
        "message": "URL generated"
    }))
}

async fn mc_server(response: ResponseTemplate, times: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MC_PATH))
        .respond_with(response)
        .expect(times)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn mc_generate_url_sends_the_documented_json_request() {
    let server = mc_server(mc_success(), 1).await;
    let link = mc::generate_url(&http(), &mc_creds(&server, BodyEncoding::Json), FLOW_ID)
        .await
        .unwrap();

    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), MC_PATH);
    assert_eq!(request.url.query(), None);
    assert_eq!(
        header_names(&request),
        names(&[
            "accept",
            "api_key",
            "content-length",
            "content-type",
            "flow_id",
            "host",
            "user-agent"
        ])
    );
    assert_eq!(header(&request, "flow_id"), FLOW_ID);
    assert_eq!(header(&request, "api_key"), format!("Bearer {MC_KEY}"));
    assert_eq!(header(&request, "content-type"), "application/json");
    assert_eq!(header(&request, "accept"), "*/*");
    assert_eq!(header(&request, "user-agent"), user_agent());
    assert_eq!(
        request.body_json::<Value>().unwrap(),
        json!({"company_name": "Acme Ltd"})
    );

    assert_eq!(link.url, "https://ekyc.example/journey/abc");
    assert_eq!(link.token.as_deref(), Some("tok-123"));
    assert_eq!(link.journey_id.as_deref(), Some("M1768000001"));
    assert_eq!(link.expires_in_minutes, 30);
    assert_eq!(link.message.as_deref(), Some("URL generated"));
    assert!(link.redacted_body.get("token").is_none());
    assert_result_clean(&link);
}

#[tokio::test]
async fn mc_form_encoding_sends_a_form_field() {
    let server = mc_server(mc_success(), 1).await;
    mc::generate_url(&http(), &mc_creds(&server, BodyEncoding::Form), FLOW_ID)
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(
        header(&request, "content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(request.body, b"company_name=Acme+Ltd");
    assert_eq!(header(&request, "flow_id"), FLOW_ID);
    assert_eq!(header(&request, "api_key"), format!("Bearer {MC_KEY}"));
}

#[tokio::test]
async fn mc_key_pasted_with_its_prefix_is_sent_once_prefixed() {
    let server = mc_server(mc_success(), 1).await;
    let mut creds = mc_creds(&server, BodyEncoding::Json);
    creds.api_key = SecretString::from(format!("  Bearer {MC_KEY} "));
    mc::generate_url(&http(), &creds, FLOW_ID).await.unwrap();
    let request = only_request(&server).await;
    assert_eq!(header(&request, "api_key"), format!("Bearer {MC_KEY}"));
}

#[tokio::test]
async fn mc_401_details_map_to_operator_messages() {
    let cases = [
        (
            "API Key must be 'Bearer '",
            "The Message Central API key is malformed — an admin must re-enter it on the Credentials page.",
        ),
        ("Missing company name in Header", "company name"),
        ("Missing flow_id header/query.", "flow ID"),
    ];
    for (detail, words) in cases {
        let server = mc_server(
            ResponseTemplate::new(401).set_body_json(json!({ "detail": detail })),
            1,
        )
        .await;
        let error = mc::generate_url(&http(), &mc_creds(&server, BodyEncoding::Json), FLOW_ID)
            .await
            .unwrap_err();
        assert_eq!(
            error,
            ProviderError::Unauthorized {
                detail: Some(detail.to_string())
            }
        );
        assert!(
            error.operator_message().contains(words),
            "{detail}: {}",
            error.operator_message()
        );
        assert!(error.may_have_reached_provider());
    }
}

#[tokio::test]
async fn mc_rate_limit_and_server_error_are_not_retried() {
    let server = mc_server(ResponseTemplate::new(429), 1).await;
    let error = mc::generate_url(&http(), &mc_creds(&server, BodyEncoding::Json), FLOW_ID)
        .await
        .unwrap_err();
    assert_eq!(error, ProviderError::RateLimited);

    let server = mc_server(
        ResponseTemplate::new(500).set_body_json(json!({"detail": "Internal error"})),
        1,
    )
    .await;
    let error = mc::generate_url(&http(), &mc_creds(&server, BodyEncoding::Json), FLOW_ID)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ProviderError::Http {
            status: 500,
            detail: Some("Internal error".into())
        }
    );
    assert!(error.may_have_reached_provider());
}

#[tokio::test]
async fn mc_malformed_answers() {
    let truncated = ResponseTemplate::new(200)
        .set_body_raw(r#"{"url": "https://ekyc.example/jou"#, "application/json");
    let server = mc_server(truncated, 1).await;
    let error = mc::generate_url(&http(), &mc_creds(&server, BodyEncoding::Json), FLOW_ID)
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Malformed(_)), "{error:?}");
    assert!(error.may_have_reached_provider());

    let no_url = ResponseTemplate::new(200)
        .set_body_json(json!({"token": "t", "journey_id": "M1", "expires_in_minutes": 30}));
    let server = mc_server(no_url, 1).await;
    let error = mc::generate_url(&http(), &mc_creds(&server, BodyEncoding::Json), FLOW_ID)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ProviderError::Malformed("the answer has no `url`".into())
    );
}

#[tokio::test]
async fn mc_timeout_is_reported_once_and_may_have_reached() {
    let server = mc_server(mc_success().set_delay(Duration::from_secs(3)), 1).await;
    let http = http_with_timeout(Duration::from_millis(300));
    let error = mc::generate_url(&http, &mc_creds(&server, BodyEncoding::Json), FLOW_ID)
        .await
        .unwrap_err();
    assert_eq!(error, ProviderError::Timeout);
    assert!(error.may_have_reached_provider());
}

#[tokio::test]
async fn mc_connection_refused_never_reached() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let creds = McCredentials {
        base_url: format!("http://{address}"),
        company_name: "Acme Ltd".into(),
        api_key: SecretString::from(MC_KEY),
        encoding: BodyEncoding::Json,
    };
    let error = mc::generate_url(&http(), &creds, FLOW_ID)
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Connect(_)), "{error:?}");
    assert!(!error.may_have_reached_provider());
    assert!(!error.to_string().contains(MC_KEY));
}

#[tokio::test]
async fn mc_unusable_settings_send_nothing() {
    let server = mc_server(mc_success(), 0).await;
    let mut creds = mc_creds(&server, BodyEncoding::Json);
    creds.api_key = SecretString::from("  ");
    let error = mc::generate_url(&http(), &creds, FLOW_ID)
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Config(_)));
    let creds = mc_creds(&server, BodyEncoding::Json);
    let error = mc::generate_url(&http(), &creds, " ").await.unwrap_err();
    assert!(matches!(error, ProviderError::Config(_)));
    assert!(!error.may_have_reached_provider());
}

#[tokio::test]
async fn redirects_are_not_followed_so_keys_stay_home() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(mc_success())
        .expect(0)
        .mount(&elsewhere)
        .await;
    Mock::given(method("GET"))
        .respond_with(mc_success())
        .expect(0)
        .mount(&elsewhere)
        .await;
    let redirect = ResponseTemplate::new(307).insert_header("location", elsewhere.uri().as_str());
    let server = mc_server(redirect, 1).await;
    let error = mc::generate_url(&http(), &mc_creds(&server, BodyEncoding::Json), FLOW_ID)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Http { status: 307, .. }),
        "{error:?}"
    );
}

// ---------------------------------------------------------------- Eko

const EKO_CREATE: &str = "/tools/kyc/digilocker";
const EKO_STATUS: &str = "/tools/kyc/digilocker/status";
const EKO_DOCUMENT: &str = "/tools/kyc/digilocker/document";
const CLIENT_REF: &str = "KDTESTREF0000000001";
const REDIRECT: &str = "https://desk.example/kyc/return/abc";

/// Checks the three signing headers: the developer key, a fresh millisecond timestamp, and
/// a `secret-key` recomputed here (independently of the client) from that timestamp.
fn assert_signed(request: &Request) {
    assert_eq!(header(request, "developer_key"), EKO_DEVELOPER_KEY);
    let timestamp = header(request, "secret-key-timestamp");
    let millis: u128 = timestamp
        .parse()
        .expect("timestamp is decimal milliseconds");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(
        now.abs_diff(millis) < 60_000,
        "timestamp {millis} is not now ({now})"
    );
    let key = STANDARD.encode(EKO_ACCESS_KEY);
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(header(request, "secret-key"), expected);
    assert_eq!(header(request, "user-agent"), user_agent());
}

fn eko_post_headers() -> BTreeSet<String> {
    names(&[
        "accept",
        "content-length",
        "content-type",
        "developer_key",
        "host",
        "secret-key",
        "secret-key-timestamp",
        "user-agent",
    ])
}

fn eko_get_headers() -> BTreeSet<String> {
    names(&[
        "accept",
        "developer_key",
        "host",
        "secret-key",
        "secret-key-timestamp",
        "user-agent",
    ])
}

async fn eko_server(verb: &str, at: &str, response: ResponseTemplate, times: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method(verb))
        .and(path(at))
        .respond_with(response)
        .expect(times)
        .mount(&server)
        .await;
    server
}

fn create_success(reference_id: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "status": 0,
        "message": "DigiLocker URL created",
        "response_status_id": 0,
        "response_type_id": 1500,
        "data": {
            "reference_id": reference_id,
            "url": "https://verify.digilocker.example/start/xyz",
            "document_requested": ["AADHAAR"],
            "redirect_url": REDIRECT
        }
    }))
}

async fn create(server: &MockServer) -> Result<eko::EkoLink, ProviderError> {
    eko::create_digilocker_url(
        &http(),
        &eko_creds(server),
        CLIENT_REF,
        &["AADHAAR".to_string()],
        REDIRECT,
    )
    .await
}

#[tokio::test]
async fn eko_create_sends_a_signed_documented_request() {
    let server = eko_server("POST", EKO_CREATE, create_success(json!(1234567)), 1).await;
    let link = create(&server).await.unwrap();

    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), EKO_CREATE);
    assert_eq!(request.url.query(), None);
    assert_eq!(header_names(&request), eko_post_headers());
    assert_signed(&request);
    assert_eq!(header(&request, "content-type"), "application/json");
    assert_eq!(
        request.body_json::<Value>().unwrap(),
        json!({
            "initiator_id": EKO_INITIATOR,
            "user_code": EKO_USER_CODE,
            "client_ref_id": CLIENT_REF,
            "document_requested": ["AADHAAR"],
            "redirect_url": REDIRECT
        })
    );
    assert_eq!(link.reference_id, "1234567");
    assert_eq!(link.url, "https://verify.digilocker.example/start/xyz");
    assert_result_clean(&link);
}

#[tokio::test]
async fn eko_create_accepts_a_text_reference_and_defaults_documents() {
    let server = eko_server("POST", EKO_CREATE, create_success(json!("REF-889")), 1).await;
    let link = eko::create_digilocker_url(&http(), &eko_creds(&server), CLIENT_REF, &[], REDIRECT)
        .await
        .unwrap();
    assert_eq!(link.reference_id, "REF-889");
    let request = only_request(&server).await;
    assert_eq!(
        request.body_json::<Value>().unwrap()["document_requested"],
        json!(["AADHAAR"])
    );
}

#[tokio::test]
async fn eko_create_403_is_a_signature_rejection_and_not_retried() {
    let server = eko_server("POST", EKO_CREATE, ResponseTemplate::new(403), 1).await;
    let error = create(&server).await.unwrap_err();
    assert_eq!(error, ProviderError::SignatureRejected);
    assert_eq!(
        error.operator_message(),
        "Eko refused the request signature: the access key or developer key is wrong, or the server clock is off."
    );
}

#[tokio::test]
async fn eko_create_business_error_in_http_200() {
    let answer = ResponseTemplate::new(200).set_body_json(json!({
        "status": 463,
        "response_status_id": 1,
        "response_type_id": 463,
        "message": "User not found",
        "data": {}
    }));
    let server = eko_server("POST", EKO_CREATE, answer, 1).await;
    let error = create(&server).await.unwrap_err();
    assert_eq!(
        error,
        ProviderError::Business {
            code: 463,
            message: "User not found".into()
        }
    );
    assert_eq!(
        error.operator_message(),
        "Eko does not know this reference."
    );

    // `status` 0 but `response_status_id` non-zero is an error too.
    let answer = ResponseTemplate::new(200).set_body_json(json!({
        "status": 0, "response_status_id": 1, "response_type_id": 347,
        "message": "Insufficient balance"
    }));
    let server = eko_server("POST", EKO_CREATE, answer, 1).await;
    let error = create(&server).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Business { code: 347, .. }),
        "{error:?}"
    );
    assert!(error.operator_message().contains("balance"));
}

#[tokio::test]
async fn eko_create_validation_error() {
    let answer = ResponseTemplate::new(200).set_body_json(json!({
        "response_status_id": 1,
        "response_type_id": -1,
        "message": "Invalid parameters",
        "invalid_params": {"redirect_url": "Invalid URL", "user_code": "User code is required"}
    }));
    let server = eko_server("POST", EKO_CREATE, answer, 1).await;
    let error = create(&server).await.unwrap_err();
    assert_eq!(
        error,
        ProviderError::Validation {
            fields: vec![
                ("redirect_url".into(), "Invalid URL".into()),
                ("user_code".into(), "User code is required".into()),
            ]
        }
    );
    assert!(
        error
            .operator_message()
            .contains("user_code: User code is required")
    );
}

#[tokio::test]
async fn eko_create_never_retries_server_errors_or_timeouts() {
    let server = eko_server("POST", EKO_CREATE, ResponseTemplate::new(500), 1).await;
    let error = create(&server).await.unwrap_err();
    assert_eq!(
        error,
        ProviderError::Http {
            status: 500,
            detail: None
        }
    );

    let slow = create_success(json!(1)).set_delay(Duration::from_secs(3));
    let server = eko_server("POST", EKO_CREATE, slow, 1).await;
    let error = eko::create_digilocker_url(
        &http_with_timeout(Duration::from_millis(300)),
        &eko_creds(&server),
        CLIENT_REF,
        &[],
        REDIRECT,
    )
    .await
    .unwrap_err();
    assert_eq!(error, ProviderError::Timeout);
    assert!(error.may_have_reached_provider());
}

#[tokio::test]
async fn eko_create_refuses_a_long_client_ref_id_without_sending() {
    let server = eko_server("POST", EKO_CREATE, create_success(json!(1)), 0).await;
    let error = eko::create_digilocker_url(
        &http(),
        &eko_creds(&server),
        "KD-this-is-too-long-for-eko",
        &[],
        REDIRECT,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ProviderError::Config(_)));
}

fn status_answer(user_details: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "status": 0,
        "response_status_id": 0,
        "message": "Success",
        "data": {
            "user_details": user_details,
            "document_requested": ["AADHAAR"],
            "document_consent": ["AADHAAR"]
        }
    }))
}

fn completed_user() -> Value {
    json!({
        "name": "Asha Rao",
        "dob": "01-02-1990",
        "gender": "F",
        "eaadhaar": FULL_AADHAAR,
        "mobile": "9876543210"
    })
}

#[tokio::test]
async fn eko_status_pending_sends_the_documented_query() {
    let server = eko_server("GET", EKO_STATUS, status_answer(json!({})), 1).await;
    let status = eko::get_status(&http(), &eko_creds(&server), "1234567", Some(CLIENT_REF))
        .await
        .unwrap();
    assert!(!status.completed);
    assert_eq!(status.user, None);

    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "GET");
    assert_eq!(request.url.path(), EKO_STATUS);
    let query: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
    assert_eq!(
        query,
        vec![
            ("initiator_id".to_string(), EKO_INITIATOR.to_string()),
            ("reference_id".to_string(), "1234567".to_string()),
            ("client_ref_id".to_string(), CLIENT_REF.to_string()),
        ]
    );
    assert_eq!(header_names(&request), eko_get_headers());
    assert_signed(&request);
    assert!(request.body.is_empty());
}

#[tokio::test]
async fn eko_status_completed_masks_the_aadhaar_number() {
    let server = eko_server("GET", EKO_STATUS, status_answer(completed_user()), 1).await;
    let status = eko::get_status(&http(), &eko_creds(&server), "1234567", None)
        .await
        .unwrap();
    assert!(status.completed);
    let user = status.user.clone().unwrap();
    assert_eq!(user.name.as_deref(), Some("Asha Rao"));
    assert_eq!(user.dob.as_deref(), Some("01-02-1990"));
    assert_eq!(user.gender.as_deref(), Some("F"));
    assert_eq!(user.masked_aadhaar.as_deref(), Some("XXXX-XXXX-2345"));
    assert_eq!(user.mobile_last4.as_deref(), Some("3210"));
    assert_eq!(status.document_consent.as_deref(), Some("AADHAAR"));
    assert_eq!(status.document_requested, vec!["AADHAAR".to_string()]);
    assert_result_clean(&status);

    let request = only_request(&server).await;
    let query: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
    assert_eq!(
        query,
        vec![
            ("initiator_id".to_string(), EKO_INITIATOR.to_string()),
            ("reference_id".to_string(), "1234567".to_string()),
        ]
    );
}

#[tokio::test]
async fn eko_status_pending_code_327_is_not_an_error() {
    let answer = ResponseTemplate::new(200).set_body_json(json!({
        "status": 327, "response_status_id": 1, "message": "Consent pending"
    }));
    let server = eko_server("GET", EKO_STATUS, answer, 1).await;
    let status = eko::get_status(&http(), &eko_creds(&server), "1234567", None)
        .await
        .unwrap();
    assert!(!status.completed);
}

#[tokio::test]
async fn eko_status_poll_retries_a_500_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EKO_STATUS))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(EKO_STATUS))
        .respond_with(status_answer(completed_user()))
        .expect(1)
        .mount(&server)
        .await;
    let status = eko::get_status(&http(), &eko_creds(&server), "1234567", None)
        .await
        .unwrap();
    assert!(status.completed);
    // Each attempt is signed afresh and correctly.
    for request in server.received_requests().await.unwrap() {
        assert_signed(&request);
    }
}

#[tokio::test]
async fn eko_status_poll_retries_429_and_timeouts() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EKO_STATUS))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(EKO_STATUS))
        .respond_with(status_answer(json!({})).set_delay(Duration::from_secs(3)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(EKO_STATUS))
        .respond_with(status_answer(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    let http = http_with_timeout(Duration::from_millis(300));
    let status = eko::get_status(&http, &eko_creds(&server), "1234567", None)
        .await
        .unwrap();
    assert!(!status.completed);
}

#[tokio::test]
async fn eko_status_poll_gives_up_after_three_attempts() {
    let server = eko_server("GET", EKO_STATUS, ResponseTemplate::new(502), 3).await;
    let error = eko::get_status(&http(), &eko_creds(&server), "1234567", None)
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Http { status: 502, .. }));
}

#[tokio::test]
async fn eko_status_does_not_retry_refusals() {
    let server = eko_server("GET", EKO_STATUS, ResponseTemplate::new(403), 1).await;
    let error = eko::get_status(&http(), &eko_creds(&server), "1234567", None)
        .await
        .unwrap_err();
    assert_eq!(error, ProviderError::SignatureRejected);

    let answer = ResponseTemplate::new(200)
        .set_body_json(json!({"status": 463, "message": "Reference not found"}));
    let server = eko_server("GET", EKO_STATUS, answer, 1).await;
    let error = eko::get_status(&http(), &eko_creds(&server), "999", None)
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Business { code: 463, .. }));
}

#[tokio::test]
async fn eko_document_newer_shape() {
    let answer = ResponseTemplate::new(200).set_body_json(json!({
        "status": 0,
        "response_status_id": 0,
        "message": "Success",
        "data": {
            "verification_status": "SUCCESS",
            "reference_id": 1234567,
            "documents": [{
                "document_type": "AADHAAR",
                "name": "Asha Rao",
                "dob": "01-02-1990",
                "gender": "F",
                "masked_aadhaar": "XXXX-XXXX-2345",
                "address": {"house": "12", "city": "Pune", "state": "Maharashtra", "pincode": "411001"},
                "photo": "/9j/4AAQSkZJRgABAQAAAQABAAD",
                "issue_date": "01-01-2020"
            }]
        }
    }));
    let server = eko_server("POST", EKO_DOCUMENT, answer, 1).await;
    let document = eko::get_document(
        &http(),
        &eko_creds(&server),
        "1234567",
        Some(CLIENT_REF),
        Some("ver-77"),
        "AADHAAR",
    )
    .await
    .unwrap();

    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), EKO_DOCUMENT);
    assert_eq!(header_names(&request), eko_post_headers());
    assert_signed(&request);
    assert_eq!(header(&request, "content-type"), "application/json");
    assert_eq!(
        request.body_json::<Value>().unwrap(),
        json!({
            "initiator_id": EKO_INITIATOR,
            "user_code": EKO_USER_CODE,
            "client_ref_id": CLIENT_REF,
            "document_type": ["AADHAAR"],
            "verification_id": "ver-77",
            "reference_id": 1234567
        })
    );

    assert!(document.is_verified());
    assert_eq!(document.document_type, "AADHAAR");
    assert_eq!(document.name.as_deref(), Some("Asha Rao"));
    assert_eq!(document.dob.as_deref(), Some("01-02-1990"));
    assert_eq!(document.gender.as_deref(), Some("F"));
    assert_eq!(document.masked_aadhaar.as_deref(), Some("XXXX-XXXX-2345"));
    assert_eq!(document.city.as_deref(), Some("Pune"));
    assert_eq!(document.state.as_deref(), Some("Maharashtra"));
    assert!(!document.redacted_body.to_string().contains("/9j/"));
    assert_result_clean(&document);
}

#[tokio::test]
async fn eko_document_older_shape_masks_the_uid() {
    let answer = ResponseTemplate::new(200).set_body_json(json!({
        "status": 0,
        "data": {
            "care_of": "S/O Mohan Rao",
            "dob": "1990-02-01",
            "gender": "M",
            "name": "Ravi Rao",
            "photo_link": "https://digilocker.example/photo/1.jpg",
            "split_address": {"dist": "Pune", "state": "Maharashtra", "vtc": "Aundh"},
            "uid": FULL_AADHAAR,
            "reference_id": 1234567
        }
    }));
    let server = eko_server("POST", EKO_DOCUMENT, answer, 1).await;
    let document = eko::get_document(
        &http(),
        &eko_creds(&server),
        "1234567",
        None,
        None,
        "AADHAAR",
    )
    .await
    .unwrap();
    assert_eq!(document.verification_status, "SUCCESS");
    assert_eq!(document.name.as_deref(), Some("Ravi Rao"));
    assert_eq!(document.masked_aadhaar.as_deref(), Some("XXXX-XXXX-2345"));
    assert_eq!(document.city.as_deref(), Some("Pune"));
    assert_eq!(document.state.as_deref(), Some("Maharashtra"));
    assert!(!document.redacted_body.to_string().contains("photo"));
    assert_result_clean(&document);

    // Optional fields left out of the request when not known.
    let request = only_request(&server).await;
    assert_eq!(
        request.body_json::<Value>().unwrap(),
        json!({
            "initiator_id": EKO_INITIATOR,
            "user_code": EKO_USER_CODE,
            "document_type": ["AADHAAR"],
            "reference_id": 1234567
        })
    );
}

#[tokio::test]
async fn eko_document_retries_a_503_then_reads_pending() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EKO_DOCUMENT))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(EKO_DOCUMENT))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": 0, "data": {"verification_status": "PENDING", "documents": []}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let document = eko::get_document(
        &http(),
        &eko_creds(&server),
        "1234567",
        None,
        None,
        "AADHAAR",
    )
    .await
    .unwrap();
    assert_eq!(document.verification_status, "PENDING");
    assert!(!document.is_verified());
    assert_eq!(document.masked_aadhaar, None);
}

#[tokio::test]
async fn errors_never_show_credentials() {
    let server = eko_server("POST", EKO_CREATE, ResponseTemplate::new(403), 1).await;
    let creds = eko_creds(&server);
    let error = create(&server).await.unwrap_err();
    for text in [
        format!("{error:?}"),
        error.to_string(),
        error.operator_message(),
        format!("{creds:?}"),
    ] {
        assert!(!text.contains(EKO_DEVELOPER_KEY), "{text}");
        assert!(!text.contains(EKO_ACCESS_KEY), "{text}");
    }
}

fn older_document_answer() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "status": 0,
        "data": {
            "care_of": "S/O Mohan Rao", "dob": "1990-02-01", "gender": "M", "name": "Ravi Rao",
            "uid": FULL_AADHAAR, "split_address": {"dist": "Pune", "state": "Maharashtra"},
            "reference_id": 1234567
        }
    }))
}

#[tokio::test]
async fn eko_document_falls_back_to_the_older_get_shape_and_remembers_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EKO_DOCUMENT))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{EKO_DOCUMENT}/AADHAAR")))
        .respond_with(older_document_answer())
        .expect(2)
        .mount(&server)
        .await;
    let http = http();
    let creds = eko_creds(&server);
    let fetched = eko::fetch_document(&http, &creds, "1234567", Some(CLIENT_REF), None, "AADHAAR")
        .await
        .unwrap();
    assert_eq!(fetched.shape, eko::DocumentShape::GetByType);
    assert_eq!(fetched.document.name.as_deref(), Some("Ravi Rao"));
    assert_eq!(
        fetched.document.masked_aadhaar.as_deref(),
        Some("XXXX-XXXX-2345")
    );
    let first = fetched.fell_back_from.unwrap();
    assert_eq!(first.form, "POST …/tools/kyc/digilocker/document");
    assert!(matches!(
        first.error,
        ProviderError::Http { status: 404, .. }
    ));

    // The older call as documented: GET …/document/{type}?initiator_id&client_ref_id&reference_id.
    let requests = server.received_requests().await.unwrap();
    let get = &requests[1];
    assert_eq!(get.method.as_str(), "GET");
    let query: Vec<(String, String)> = get.url.query_pairs().into_owned().collect();
    assert_eq!(
        query,
        vec![
            ("initiator_id".to_string(), EKO_INITIATOR.to_string()),
            ("client_ref_id".to_string(), CLIENT_REF.to_string()),
            ("reference_id".to_string(), "1234567".to_string()),
        ]
    );
    assert_eq!(header_names(get), eko_get_headers());
    assert_signed(get);
    assert!(get.body.is_empty());

    // The next fetch goes straight to the shape that worked.
    let again = eko::fetch_document(&http, &creds, "1234567", None, None, "AADHAAR")
        .await
        .unwrap();
    assert_eq!(again.shape, eko::DocumentShape::GetByType);
    assert!(again.fell_back_from.is_none());
}

#[tokio::test]
async fn eko_document_failures_name_every_form_tried_and_only_404_405_fall_back() {
    // Neither shape known: both forms named, in order.
    let server = MockServer::start().await;
    let attempts = eko::fetch_document(&http(), &eko_creds(&server), "1234567", None, None, "")
        .await
        .unwrap_err();
    let forms: Vec<&str> = attempts.iter().map(|a| a.form.as_str()).collect();
    assert_eq!(
        forms,
        [
            "POST …/tools/kyc/digilocker/document",
            "GET …/tools/kyc/digilocker/document/AADHAAR"
        ]
    );
    let note = eko::failure_note("document", &attempts);
    assert!(
        note.starts_with(
            "Eko document call failed (POST …/tools/kyc/digilocker/document answered HTTP 404, \
             then GET …/tools/kyc/digilocker/document/AADHAAR answered HTTP 404). "
        ),
        "{note}"
    );

    // A server error is not an unknown address: retried, but no other shape is tried.
    let server = eko_server("POST", EKO_DOCUMENT, ResponseTemplate::new(503), 3).await;
    let attempts = eko::fetch_document(&http(), &eko_creds(&server), "1234567", None, None, "")
        .await
        .unwrap_err();
    assert_eq!(attempts.len(), 1);
    assert!(matches!(
        attempts[0].error,
        ProviderError::Http { status: 503, .. }
    ));
}
