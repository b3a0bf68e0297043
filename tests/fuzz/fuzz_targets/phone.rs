//! `normalize_phone` and `mask_phone` on any text: no panic; an accepted number is E.164, is
//! accepted again unchanged, and masks to the country code and last four digits.
#![no_main]

use kyc_desk::validation::{mask_phone, normalize_phone};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let _ = mask_phone(input);
    let Ok(phone) = normalize_phone(input) else {
        return;
    };
    let digits = phone
        .strip_prefix('+')
        .unwrap_or_else(|| panic!("{phone:?} does not start with +"));
    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{phone:?}");
    assert!((8..=15).contains(&digits.len()), "{phone:?}");
    assert!(!digits.starts_with('0'), "{phone:?}");
    if let Some(national) = digits.strip_prefix("91") {
        assert_eq!(national.len(), 10, "{phone:?}");
        assert!(national.starts_with(['6', '7', '8', '9']), "{phone:?}");
    }
    assert_eq!(
        normalize_phone(&phone).as_deref(),
        Ok(phone.as_str()),
        "a normalised number must normalise to itself"
    );

    let masked = mask_phone(&phone);
    assert_eq!(masked.len(), phone.len(), "{masked:?}");
    assert!(masked.ends_with(&phone[phone.len() - 4..]), "{masked:?}");
    assert_ne!(masked, phone, "the mask hides nothing");
    let shown = masked.bytes().filter(u8::is_ascii_digit).count();
    assert!(
        shown <= 6,
        "{masked:?} shows more than the country code and last four"
    );
});
