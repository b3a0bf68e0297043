//! Eko DigiLocker: create a consent URL, poll its status, fetch the document (newer
//! `POST .../document` shape).
//!
//! Every call is signed; the gateway answers a bad developer key, signature or stale
//! timestamp with HTTP 403 before reading the body. Everything past the gateway answers
//! HTTP 200, with business and validation errors in the body, as Eko does.

use super::{
    Decision, Link, LinkKind, Sandbox, SandboxError, SandboxPerson, header_text, param, query_map,
    random_token, same_secret,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use std::time::Instant;

/// How far `secret-key-timestamp` may be from the sandbox's clock. Eko publishes no figure;
/// five minutes is the usual gateway allowance.
pub const TIMESTAMP_TOLERANCE_MS: i64 = 5 * 60 * 1000;
/// Longest `client_ref_id` accepted.
const MAX_CLIENT_REF_ID_LEN: usize = 20;
/// Eko's "user / reference not found" code.
const CODE_NOT_FOUND: i64 = 463;

/// The expected `secret-key`: `base64(HMAC-SHA256(key = base64(access_key) as text,
/// message = timestamp))`. Written out here rather than borrowed from the client so that a
/// mistake in one is caught by the other.
fn signature(access_key: &str, timestamp: &str) -> String {
    let key = STANDARD.encode(access_key.as_bytes());
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The gateway check: developer key, a timestamp within [`TIMESTAMP_TOLERANCE_MS`], and the
/// signature over exactly that timestamp text.
fn check_signature(sandbox: &Sandbox, headers: &HeaderMap) -> Result<(), SandboxError> {
    let config = sandbox.config();
    let (Some(developer_key), Some(timestamp), Some(secret_key)) = (
        header_text(headers, "developer_key"),
        header_text(headers, "secret-key-timestamp"),
        header_text(headers, "secret-key"),
    ) else {
        return Err(SandboxError::EkoForbidden);
    };
    let fresh = timestamp.bytes().all(|b| b.is_ascii_digit())
        && timestamp.parse::<i64>().is_ok_and(|ms| {
            (chrono::Utc::now().timestamp_millis() - ms).abs() <= TIMESTAMP_TOLERANCE_MS
        });
    let expected = signature(config.eko_access_key.trim(), timestamp);
    // `&`, not `&&`: both secrets are compared whatever the first result.
    let authentic = same_secret(developer_key, config.eko_developer_key.trim())
        & same_secret(secret_key, &expected);
    if fresh && authentic {
        Ok(())
    } else {
        Err(SandboxError::EkoForbidden)
    }
}

/// The JSON object body of a POST; anything but `application/json` is a 415 like the
/// gateway's.
fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, SandboxError> {
    let is_json = header_text(headers, header::CONTENT_TYPE.as_str())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"));
    if !is_json {
        return Err(SandboxError::UnsupportedMediaType);
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(SandboxError::BadRequest("the body is not a JSON object")),
    }
}

/// A non-empty text from a string or number field.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Document types from an array of strings (or one string); `None` when malformed.
fn document_types(value: Option<&Value>) -> Option<Vec<String>> {
    let items = match value {
        None | Some(Value::Null) => return Some(vec!["AADHAAR".to_string()]),
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(items)) => items.iter().map(Value::as_str).collect::<Option<_>>()?,
        Some(_) => return None,
    };
    let types: Vec<String> = items
        .iter()
        .map(|t| t.trim().to_ascii_uppercase())
        .filter(|t| !t.is_empty())
        .collect();
    (!types.is_empty()).then_some(types)
}

fn answer(value: Value) -> Result<Response, SandboxError> {
    Ok(Json(value).into_response())
}

/// A validation error: HTTP 200, `response_status_id` 1, `response_type_id` -1 and the
/// offending fields in `invalid_params`.
fn invalid(params: Map<String, Value>) -> Result<Response, SandboxError> {
    answer(json!({
        "status": 1,
        "response_status_id": 1,
        "response_type_id": -1,
        "message": "Invalid parameters",
        "invalid_params": params,
        "data": null,
    }))
}

fn invalid_one(field: &str, message: &str) -> Result<Response, SandboxError> {
    let mut params = Map::new();
    params.insert(field.to_string(), json!(message));
    invalid(params)
}

fn not_found() -> Result<Response, SandboxError> {
    answer(json!({
        "status": CODE_NOT_FOUND,
        "response_status_id": CODE_NOT_FOUND,
        "response_type_id": CODE_NOT_FOUND,
        "message": "reference not found",
        "data": null,
    }))
}

fn success(message: &str, data: Value) -> Result<Response, SandboxError> {
    answer(json!({
        "status": 0,
        "response_status_id": 0,
        "response_type_id": 0,
        "message": message,
        "data": data,
    }))
}

/// A JSON object, as the sandbox reads bodies and collects problems.
type Object = Map<String, Value>;

/// What every signed JSON call checks, as Eko does: the signature, a JSON body, an
/// `initiator_id` and a `user_code`. The body, the initiator and the problems found so far.
fn signed_json(
    sandbox: &Sandbox,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Object, Option<String>, Object), SandboxError> {
    check_signature(sandbox, headers)?;
    let body = json_body(headers, body)?;
    let mut problems = Map::new();
    let initiator_id = text(body.get("initiator_id"));
    if initiator_id.is_none() {
        problems.insert("initiator_id".into(), json!("initiator_id is required"));
    }
    if text(body.get("user_code")).is_none() {
        problems.insert("user_code".into(), json!("user_code is required"));
    }
    Ok((body, initiator_id, problems))
}

/// `POST /tools/kyc/digilocker`: checks the body like Eko (initiator, user code,
/// `client_ref_id` at most 20 characters and unused, documents, redirect URL) and makes a
/// journey link with a numeric `reference_id`.
pub(super) async fn create(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SandboxError> {
    let (body, initiator_id, mut problems) = signed_json(&sandbox, &headers, &body)?;
    let client_ref_id = text(body.get("client_ref_id"));
    if client_ref_id
        .as_ref()
        .is_some_and(|id| id.chars().count() > MAX_CLIENT_REF_ID_LEN)
    {
        problems.insert(
            "client_ref_id".into(),
            json!(format!(
                "client_ref_id must be at most {MAX_CLIENT_REF_ID_LEN} characters"
            )),
        );
    }
    let documents = document_types(body.get("document_requested"));
    if documents.is_none() {
        problems.insert(
            "document_requested".into(),
            json!("document_requested must be a list of document types"),
        );
    }
    let redirect_url = text(body.get("redirect_url")).filter(|url| sandbox.is_return_url(url));
    if redirect_url.is_none() {
        problems.insert("redirect_url".into(), json!(super::RETURN_URL_RULE));
    }
    let (Some(initiator_id), Some(documents), Some(redirect_url), true) =
        (initiator_id, documents, redirect_url, problems.is_empty())
    else {
        return invalid(problems);
    };

    let token = random_token(32);
    let reference_id = {
        let now = Instant::now();
        let mut state = sandbox.lock();
        if !state.make_room(now) {
            return Err(SandboxError::TooMany);
        }
        // Eko wants a client_ref_id unique per call; a repeat is the caller's bug.
        let repeated = client_ref_id.as_ref().is_some_and(|wanted| {
            state.links.values().any(|link| {
                matches!(&link.kind, LinkKind::Eko { client_ref_id: Some(id), .. } if id == wanted)
            })
        });
        if repeated {
            drop(state);
            return invalid_one("client_ref_id", "client_ref_id has already been used");
        }
        let reference_id = state.next_reference;
        state.next_reference += 1;
        state.eko_references.insert(reference_id, token.clone());
        state.links.insert(
            token.clone(),
            Link {
                created: now,
                decision: None,
                kind: LinkKind::Eko {
                    reference_id,
                    initiator_id,
                    client_ref_id: client_ref_id.clone(),
                    documents: documents.clone(),
                    redirect_url: redirect_url.clone(),
                    verification_id: None,
                },
            },
        );
        reference_id
    };
    tracing::info!(reference_id, "sandbox: DigiLocker link created");
    success(
        "DigiLocker URL generated successfully (KYC Desk sandbox)",
        json!({
            "reference_id": reference_id,
            "client_ref_id": client_ref_id,
            "url": sandbox.journey_url(&token),
            "document_requested": documents,
            "redirect_url": redirect_url,
        }),
    )
}

/// What a status or document call needs to know about a link, copied out of the lock.
struct Found {
    reference_id: u64,
    client_ref_id: Option<String>,
    documents: Vec<String>,
    decision: Option<Decision>,
    verification_id: Option<String>,
}

/// Looks a reference up for the caller. Another initiator's reference, or one whose
/// `client_ref_id` differs from the one given, is "not found" just like an unknown one.
fn find(
    sandbox: &Sandbox,
    reference: Option<&str>,
    initiator_id: &str,
    client_ref_id: Option<&str>,
) -> Option<Found> {
    let reference: u64 = reference?.trim().parse().ok()?;
    let state = sandbox.lock();
    let token = state.eko_references.get(&reference)?;
    let link = state.links.get(token)?;
    let LinkKind::Eko {
        reference_id,
        initiator_id: owner,
        client_ref_id: stored_ref,
        documents,
        verification_id,
        ..
    } = &link.kind
    else {
        return None;
    };
    if owner != initiator_id
        || client_ref_id.is_some_and(|given| stored_ref.as_deref() != Some(given))
    {
        return None;
    }
    Some(Found {
        reference_id: *reference_id,
        client_ref_id: stored_ref.clone(),
        documents: documents.clone(),
        decision: link.decision,
        verification_id: verification_id.clone(),
    })
}

/// `GET /tools/kyc/digilocker/status`: empty `user_details` until the customer approves
/// (denying shows `document_consent: "N"`); an unknown reference is business error 463.
pub(super) async fn status(
    State(sandbox): State<Sandbox>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, SandboxError> {
    check_signature(&sandbox, &headers)?;
    let query = query_map(query.as_deref());
    let Some(initiator_id) = param(&query, "initiator_id") else {
        return invalid_one("initiator_id", "initiator_id is required");
    };
    let Some(reference) = param(&query, "reference_id") else {
        return invalid_one("reference_id", "reference_id is required");
    };
    let Some(found) = find(
        &sandbox,
        Some(reference),
        initiator_id,
        param(&query, "client_ref_id"),
    ) else {
        return not_found();
    };
    let mut data = json!({
        "reference_id": found.reference_id,
        "client_ref_id": found.client_ref_id,
        "document_requested": found.documents,
        "user_details": {},
    });
    match found.decision {
        Some(Decision::Approve) => {
            data["user_details"] = json!({
                "name": SandboxPerson::NAME,
                "dob": SandboxPerson::DOB,
                "gender": SandboxPerson::GENDER,
                "eaadhaar": SandboxPerson::MASKED_AADHAAR,
                "mobile": SandboxPerson::MOBILE,
            });
            data["document_consent"] = json!("Y");
            data["verification_id"] = json!(found.verification_id);
        }
        Some(Decision::Deny) => {
            data["document_consent"] = json!("N");
            data["verification_id"] = json!(found.verification_id);
        }
        // Not finished (or walked away): Eko reports that as empty details, not an error.
        None | Some(Decision::Abandon) => {}
    }
    success("Success", data)
}

/// `POST /tools/kyc/digilocker/document` (newer shape): `verification_status` `SUCCESS`
/// with `documents[]` once approved, `PENDING` before, `FAILED` after a denial.
pub(super) async fn document(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SandboxError> {
    let (body, initiator_id, mut problems) = signed_json(&sandbox, &headers, &body)?;
    let reference = text(body.get("reference_id"));
    if reference.is_none() {
        problems.insert("reference_id".into(), json!("reference_id is required"));
    }
    let wanted = document_types(body.get("document_type"));
    if wanted.is_none() {
        problems.insert(
            "document_type".into(),
            json!("document_type must be a list of document types"),
        );
    }
    let (Some(initiator_id), Some(wanted), true) = (initiator_id, wanted, problems.is_empty())
    else {
        return invalid(problems);
    };
    let client_ref_id = text(body.get("client_ref_id"));
    let Some(found) = find(
        &sandbox,
        reference.as_deref(),
        &initiator_id,
        client_ref_id.as_deref(),
    ) else {
        return not_found();
    };
    if let Some(given) = text(body.get("verification_id"))
        && found.verification_id.as_deref() != Some(given.as_str())
    {
        return invalid_one(
            "verification_id",
            "verification_id does not belong to this reference",
        );
    }
    let shared: Vec<&String> = wanted
        .iter()
        .filter(|t| found.documents.contains(t))
        .collect();
    if shared.is_empty() {
        return invalid_one(
            "document_type",
            "none of these documents was requested for this reference",
        );
    }
    let (status, documents) = match found.decision {
        Some(Decision::Approve) => (
            "SUCCESS",
            shared.iter().map(|t| sample_document(t)).collect(),
        ),
        Some(Decision::Deny) => ("FAILED", Vec::new()),
        None | Some(Decision::Abandon) => ("PENDING", Vec::new()),
    };
    success(
        "Success",
        json!({
            "reference_id": found.reference_id,
            "client_ref_id": found.client_ref_id,
            "verification_id": found.verification_id,
            "verification_status": status,
            "documents": documents,
        }),
    )
}

/// The made-up person's document of type `document_type`; no photo, and numbers masked.
fn sample_document(document_type: &str) -> Value {
    let mut document = json!({
        "document_type": document_type,
        "name": SandboxPerson::NAME,
        "dob": SandboxPerson::DOB,
        "gender": SandboxPerson::GENDER,
        "issue_date": SandboxPerson::ISSUE_DATE,
    });
    if document_type == "AADHAAR" {
        document["care_of"] = json!(SandboxPerson::CARE_OF);
        document["masked_aadhaar"] = json!(SandboxPerson::MASKED_AADHAAR);
        document["address"] = json!({
            "house": SandboxPerson::HOUSE,
            "locality": SandboxPerson::LOCALITY,
            "city": SandboxPerson::CITY,
            "district": SandboxPerson::DISTRICT,
            "state": SandboxPerson::STATE,
            "pincode": SandboxPerson::PINCODE,
            "country": SandboxPerson::COUNTRY,
        });
    } else {
        document["document_number"] = json!("XXXXXX2345");
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_documented_vectors() {
        assert_eq!(
            signature("TEST_ACCESS_KEY_DO_NOT_USE", "1700000000000"),
            "u30ak/iOGwKCaspqCeiYng8fd98QDx7kF3DBBOadQHk="
        );
        assert_eq!(
            signature("test-access-key-123", "1700000000000"),
            "88lqTf9ew69XbVbeczjxVL8/B4vibfp1MvTi1mIj2Xo="
        );
    }

    #[test]
    fn document_types_default_and_normalise() {
        assert_eq!(document_types(None), Some(vec!["AADHAAR".to_string()]));
        assert_eq!(
            document_types(Some(&json!(["aadhaar", " PAN "]))),
            Some(vec!["AADHAAR".to_string(), "PAN".to_string()])
        );
        assert_eq!(
            document_types(Some(&json!("pan"))),
            Some(vec!["PAN".to_string()])
        );
        assert_eq!(document_types(Some(&json!([]))), None);
        assert_eq!(document_types(Some(&json!([1]))), None);
        assert_eq!(document_types(Some(&json!({}))), None);
    }

    #[test]
    fn sample_documents_hold_no_full_number() {
        for kind in ["AADHAAR", "PAN"] {
            let text = sample_document(kind).to_string();
            let longest_digit_run = text
                .split(|c: char| !c.is_ascii_digit())
                .map(str::len)
                .max()
                .unwrap_or(0);
            assert!(longest_digit_run < 12, "{text}");
        }
    }
}
