//! The `/kyc/return` query sanitiser on any query string, split into pairs the way the return
//! handlers in `src/server/web.rs` split it (form-urlencoded, at most 200 pairs): no panic;
//! at most 20 pairs; every name and value at most 100 characters, without control characters
//! or a run of 10 or more digits; values of secret-looking names hidden.
#![no_main]

use kyc_desk::server::links::jobs::{MAX_RETURN_PARAMS, MAX_RETURN_VALUE, sanitize_return_params};
use libfuzzer_sys::fuzz_target;

fn longest_digit_run(text: &str) -> usize {
    text.split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

fuzz_target!(|query: &[u8]| {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .take(200)
        .collect();
    let clean = sanitize_return_params(&pairs);
    assert_eq!(clean.len(), pairs.len().min(MAX_RETURN_PARAMS));
    for (name, value) in &clean {
        for text in [name, value] {
            assert!(text.chars().count() <= MAX_RETURN_VALUE, "{text:?}");
            assert!(!text.chars().any(char::is_control), "{text:?}");
            assert!(longest_digit_run(text) < 10, "{text:?}");
        }
        let lower = name.to_lowercase();
        if ["token", "key", "secret", "password", "auth"]
            .iter()
            .any(|s| lower.contains(s))
        {
            assert_eq!(value, "[hidden]", "value of {name:?} not hidden");
        }
    }
});
