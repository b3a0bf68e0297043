//! `normalize_email`, `optional_email` and `mask_email` on any text: no panic; an accepted
//! address is trimmed, lower-case, within the length limit, free of spaces and control
//! characters, accepted again unchanged, and masks to its first character and domain.
#![no_main]

use kyc_desk::validation::{EMAIL_MAX_CHARS, mask_email, normalize_email, optional_email};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let _ = mask_email(input);
    let Ok(email) = normalize_email(input) else {
        if input.trim().is_empty() {
            assert_eq!(optional_email(input), Ok(None));
        } else {
            assert!(optional_email(input).is_err());
        }
        return;
    };
    assert_eq!(email.trim(), email);
    assert_eq!(email.to_lowercase(), email);
    assert!(email.chars().count() <= EMAIL_MAX_CHARS);
    assert!(
        !email.chars().any(|c| c.is_whitespace() || c.is_control()),
        "{email:?}"
    );
    assert_eq!(
        normalize_email(&email).as_deref(),
        Ok(email.as_str()),
        "a normalised address must normalise to itself"
    );
    assert_eq!(optional_email(input), Ok(Some(email.clone())));

    let (local, domain) = email
        .rsplit_once('@')
        .expect("an accepted address has an @");
    assert!(!local.is_empty() && !domain.is_empty(), "{email:?}");
    let masked = mask_email(&email);
    let first: String = local.chars().take(1).collect();
    assert_eq!(masked, format!("{first}***@{domain}"));
});
