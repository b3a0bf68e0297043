//! The browser half of passkeys: hands the server's WebAuthn options (JSON, binary fields in
//! base64url) to `navigator.credentials.create` / `get` and turns the answer back into the JSON
//! the server verifies. No secret passes here: the private key never leaves the authenticator.

/// Why the browser could not make or use a passkey, in plain words.
pub type BrowserError = String;

/// Asks the browser to make a passkey with `options` (the server's creation options, JSON);
/// answers the registration response as JSON.
pub async fn create(options: &str) -> Result<String, BrowserError> {
    imp::ceremony(options, true).await
}

/// Asks the browser to use a passkey with `options` (the server's request options, JSON);
/// answers the assertion as JSON.
pub async fn get(options: &str) -> Result<String, BrowserError> {
    imp::ceremony(options, false).await
}

#[cfg(feature = "hydrate")]
mod imp {
    use super::BrowserError;
    use base64::Engine as _;
    use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
    use js_sys::{Array, JSON, Object, Reflect, Uint8Array};
    use wasm_bindgen::{JsCast, JsValue};

    fn get(target: &JsValue, key: &str) -> JsValue {
        Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    }

    fn set(target: &JsValue, key: &str, value: &JsValue) {
        let _ = Reflect::set(target, &JsValue::from_str(key), value);
    }

    /// Replaces the base64url string at `key` of `target` by its bytes.
    fn to_bytes(target: &JsValue, key: &str) -> Result<(), BrowserError> {
        let value = get(target, key);
        let Some(text) = value.as_string() else {
            return Ok(());
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .or_else(|_| URL_SAFE.decode(&text))
            .map_err(|_| format!("the server sent an unreadable {key}"))?;
        set(target, key, &Uint8Array::from(bytes.as_slice()).into());
        Ok(())
    }

    fn encode(buffer: &JsValue) -> JsValue {
        if buffer.is_null() || buffer.is_undefined() {
            return JsValue::NULL;
        }
        let bytes = Uint8Array::new(buffer).to_vec();
        JsValue::from_str(&URL_SAFE_NO_PAD.encode(bytes))
    }

    fn explain(error: JsValue) -> BrowserError {
        let name = get(&error, "name").as_string().unwrap_or_default();
        match name.as_str() {
            "NotAllowedError" => "The passkey request was cancelled or timed out. Try again.".into(),
            "InvalidStateError" => "This device already holds a passkey for your account.".into(),
            "NotSupportedError" => "This browser or device cannot make passkeys.".into(),
            "SecurityError" => {
                "The browser refused passkeys for this address (it must be the console's own domain).".into()
            }
            _ => format!(
                "The browser could not use a passkey ({}).",
                get(&error, "message").as_string().unwrap_or(name)
            ),
        }
    }

    pub async fn ceremony(options: &str, create: bool) -> Result<String, BrowserError> {
        let parsed = JSON::parse(options).map_err(|_| "the server's options are unreadable")?;
        let public_key = get(&parsed, "publicKey");
        to_bytes(&public_key, "challenge")?;
        if create {
            to_bytes(&get(&public_key, "user"), "id")?;
        }
        let list = if create {
            "excludeCredentials"
        } else {
            "allowCredentials"
        };
        let credentials = get(&public_key, list);
        if Array::is_array(&credentials) {
            for credential in Array::from(&credentials).iter() {
                to_bytes(&credential, "id")?;
            }
        }
        let request = Object::new();
        set(&request, "publicKey", &public_key);
        let window: JsValue = leptos::prelude::window().into();
        let container = get(&get(&window, "navigator"), "credentials");
        let method = get(&container, if create { "create" } else { "get" });
        let method: js_sys::Function = method
            .dyn_into()
            .map_err(|_| "This browser cannot use passkeys.".to_string())?;
        let promise: js_sys::Promise = method
            .call1(&container, &request)
            .map_err(explain)?
            .dyn_into()
            .map_err(|_| "This browser cannot use passkeys.".to_string())?;
        let credential = wasm_bindgen_futures::JsFuture::from(promise)
            .await
            .map_err(explain)?;
        if credential.is_null() {
            return Err("No passkey was chosen.".into());
        }
        let response = get(&credential, "response");
        let answer = Object::new();
        set(&answer, "id", &get(&credential, "id"));
        set(&answer, "rawId", &encode(&get(&credential, "rawId")));
        set(&answer, "type", &get(&credential, "type"));
        set(&answer, "extensions", &Object::new());
        let reply = Object::new();
        set(
            &reply,
            "clientDataJSON",
            &encode(&get(&response, "clientDataJSON")),
        );
        if create {
            set(
                &reply,
                "attestationObject",
                &encode(&get(&response, "attestationObject")),
            );
        } else {
            set(
                &reply,
                "authenticatorData",
                &encode(&get(&response, "authenticatorData")),
            );
            set(&reply, "signature", &encode(&get(&response, "signature")));
            set(&reply, "userHandle", &encode(&get(&response, "userHandle")));
        }
        set(&answer, "response", &reply);
        JSON::stringify(&answer)
            .ok()
            .and_then(|text| text.as_string())
            .ok_or_else(|| "the browser's answer could not be read".into())
    }
}

#[cfg(not(feature = "hydrate"))]
mod imp {
    use super::BrowserError;

    /// The server never runs a ceremony: it only renders the page.
    pub async fn ceremony(_options: &str, _create: bool) -> Result<String, BrowserError> {
        Err("Passkeys work in the browser only.".into())
    }
}
