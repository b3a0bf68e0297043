//! Input rules shared by the browser (as-you-type hints) and the server (the authority).

/// Shortest password accepted.
pub const PASSWORD_MIN_CHARS: usize = 12;
/// Longest password accepted (argon2 cost does not depend on it, but a bound keeps requests sane).
pub const PASSWORD_MAX_CHARS: usize = 128;
/// Longest display name accepted.
pub const DISPLAY_NAME_MAX_CHARS: usize = 100;
/// Longest email accepted (RFC 5321 path limit).
pub const EMAIL_MAX_CHARS: usize = 254;

/// Passwords seen at the top of breach lists (all at least 12 characters, so the length rule
/// alone would let them through). Compared case-insensitively.
const COMMON_PASSWORDS: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "123123123123",
    "111111111111",
    "000000000000",
    "qwertyuiop12",
    "qwertyuiopasdf",
    "qwerty123456",
    "qwertyqwerty",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "zaq12wsxcde3",
    "asdfghjkl123",
    "password1234",
    "password12345",
    "password123456",
    "passwordpassword",
    "password!123",
    "p@ssw0rd1234",
    "p@ssword1234",
    "iloveyou1234",
    "welcome12345",
    "welcome@1234",
    "letmein12345",
    "changeme1234",
    "changeme123!",
    "administrator",
    "admin1234567",
    "adminadmin12",
    "administrator1",
    "trustno1trustno1",
    "football1234",
    "baseball1234",
    "monkey123456",
    "sunshine1234",
    "princess1234",
    "dragon123456",
    "master123456",
    "superman1234",
    "abcdefghijkl",
    "abc123abc123",
    "abcd1234abcd",
    "aaaaaaaaaaaa",
    "india@123456",
    "india1234567",
    "kycdesk12345",
    "kyc-desk-admin",
    "correcthorsebatterystaple",
];

/// Lower-cases and trims an email; `Err` says what is wrong with it.
pub fn normalize_email(input: &str) -> Result<String, String> {
    let email = input.trim().to_lowercase();
    if email.is_empty() {
        return Err("Enter an email address.".into());
    }
    if email.chars().count() > EMAIL_MAX_CHARS {
        return Err(format!(
            "An email address has at most {EMAIL_MAX_CHARS} characters."
        ));
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err("An email address needs an @, like name@example.com.".into());
    };
    let bad_char = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '<' | '>' | '"' | ',' | ';' | '(' | ')' | '[' | ']' | '\\'
            )
    };
    if local.is_empty()
        || domain.is_empty()
        || local.contains('@')
        || email.chars().any(bad_char)
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err("This is not a valid email address (expected name@example.com).".into());
    }
    Ok(email)
}

/// Whether `c` is an invisible character that changes how the text around it is shown
/// (bidirectional overrides and isolates, direction marks, zero-width spaces, byte-order
/// marks, soft hyphens): in a name or reference it can make `Mallory` read as another name on
/// screen or in a spreadsheet. The zero-width joiner and non-joiner are allowed (Indic scripts
/// need them).
pub fn is_hidden_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

const HIDDEN_FORMAT_MESSAGE: &str =
    "Remove invisible formatting characters (text-direction marks or zero-width spaces).";

/// Trims a display name; `Err` says what is wrong with it.
pub fn normalize_display_name(input: &str) -> Result<String, String> {
    let name = input.trim().to_string();
    if name.is_empty() {
        return Err("Enter a display name.".into());
    }
    if name.chars().count() > DISPLAY_NAME_MAX_CHARS {
        return Err(format!(
            "A display name has at most {DISPLAY_NAME_MAX_CHARS} characters."
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("A display name cannot contain control characters.".into());
    }
    if name.chars().any(is_hidden_format) {
        return Err(HIDDEN_FORMAT_MESSAGE.into());
    }
    Ok(name)
}

/// What is wrong with `password` as a new password for the account `email`, if anything.
pub fn password_problem(password: &str, email: &str) -> Option<String> {
    let length = password.chars().count();
    if length < PASSWORD_MIN_CHARS {
        return Some(format!(
            "Use at least {PASSWORD_MIN_CHARS} characters ({length} so far)."
        ));
    }
    if length > PASSWORD_MAX_CHARS {
        return Some(format!(
            "Use at most {PASSWORD_MAX_CHARS} characters ({length} given)."
        ));
    }
    let lowered = password.to_lowercase();
    let email = email.trim().to_lowercase();
    if !email.is_empty()
        && (lowered == email
            || email
                .split('@')
                .next()
                .is_some_and(|local| lowered == local))
    {
        return Some("The password cannot be your email address.".into());
    }
    if COMMON_PASSWORDS.contains(&lowered.as_str()) {
        return Some(
            "This password is on a list of commonly used passwords; choose another.".into(),
        );
    }
    if password
        .chars()
        .all(|c| c == password.chars().next().unwrap_or(' '))
    {
        return Some("A password cannot be one repeated character.".into());
    }
    None
}

/// Masks an email for logs and screens: `jane@example.com` becomes `j***@example.com`.
pub fn mask_email(email: &str) -> String {
    match email.trim().rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        _ => "***".into(),
    }
}

/// Normalises a mobile number to E.164: an Indian 10-digit number (optionally with a leading
/// 0 or 91) becomes `+91XXXXXXXXXX`; anything starting with `+` must be a valid E.164
/// number. Spaces, dashes, dots and brackets are ignored.
pub fn normalize_phone(input: &str) -> Result<String, String> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err("Enter the customer's mobile number.".into());
    }
    let plus = trimmed.starts_with('+');
    let mut digits = String::new();
    for (index, c) in trimmed.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if index == 0 => {}
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => {
                return Err(
                    "Use digits only: a 10-digit Indian mobile number, or +country code and number.".into(),
                );
            }
        }
    }
    if plus {
        if let Some(national) = digits.strip_prefix("91")
            && (national.len() != 10 || !national.starts_with(['6', '7', '8', '9']))
        {
            return Err(
                "An Indian mobile number has 10 digits and starts with 6, 7, 8 or 9.".into(),
            );
        }
        if digits.starts_with('0') || !(8..=15).contains(&digits.len()) {
            return Err(
                "An international number is + then 8 to 15 digits, without a leading 0.".into(),
            );
        }
        return Ok(format!("+{digits}"));
    }
    let national = match digits.len() {
        10 => digits.as_str(),
        11 if digits.starts_with('0') => &digits[1..],
        12 if digits.starts_with("91") => &digits[2..],
        _ => {
            return Err(
                "Enter a 10-digit Indian mobile number, or an international number starting with +.".into(),
            );
        }
    };
    if !national.starts_with(['6', '7', '8', '9']) {
        return Err("An Indian mobile number starts with 6, 7, 8 or 9.".into());
    }
    Ok(format!("+91{national}"))
}

/// Masks an E.164 number for screens, logs and audit rows: `+919876541234` becomes
/// `+91******1234` (country code and last four digits kept).
pub fn mask_phone(e164: &str) -> String {
    let digits: Vec<char> = e164.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 6 {
        return "***".into();
    }
    let country = if e164.starts_with("+91") {
        2
    } else {
        1.min(digits.len())
    };
    let last: String = digits[digits.len() - 4..].iter().collect();
    let head: String = digits[..country].iter().collect();
    format!("+{head}{}{last}", "*".repeat(digits.len() - country - 4))
}

/// Checks an optional customer email; `Ok(None)` when empty.
pub fn optional_email(input: &str) -> Result<Option<String>, String> {
    if input.trim().is_empty() {
        return Ok(None);
    }
    normalize_email(input).map(Some)
}

/// Checks a customer's full name: 2 to 100 characters, letters required, no control or
/// markup characters.
pub fn customer_name_problem(name: &str) -> Option<String> {
    let name = name.trim();
    let count = name.chars().count();
    if count == 0 {
        return Some("Enter the customer's full name.".into());
    }
    if count < 2 {
        return Some("Enter the full name (at least 2 characters).".into());
    }
    if count > 100 {
        return Some("Use at most 100 characters.".into());
    }
    if !name.chars().any(char::is_alphabetic) {
        return Some("A name needs letters.".into());
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '<' | '>' | '{' | '}'))
    {
        return Some("Remove the characters < > { } and line breaks.".into());
    }
    if name.chars().any(is_hidden_format) {
        return Some(HIDDEN_FORMAT_MESSAGE.into());
    }
    None
}

/// Checks an internal reference: optional, at most 64 characters, printable.
pub fn internal_reference_problem(reference: &str) -> Option<String> {
    let reference = reference.trim();
    if reference.chars().count() > 64 {
        return Some("Use at most 64 characters.".into());
    }
    if reference.chars().any(char::is_control) {
        return Some("Remove line breaks and control characters.".into());
    }
    if reference.chars().any(is_hidden_format) {
        return Some(HIDDEN_FORMAT_MESSAGE.into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_direction_and_zero_width_characters_are_refused() {
        assert!(customer_name_problem("Meera Iyer").is_none());
        // Malayalam and Devanagari names keep their joiners.
        assert!(customer_name_problem("ന്\u{200D}മേര").is_none());
        assert!(customer_name_problem("क्\u{200C}ष").is_none());
        for hidden in ['\u{202E}', '\u{2066}', '\u{200B}', '\u{FEFF}', '\u{200F}'] {
            let name = format!("Meera{hidden} Iyer");
            assert_eq!(
                customer_name_problem(&name).as_deref(),
                Some(HIDDEN_FORMAT_MESSAGE),
                "{hidden:?}"
            );
            assert!(internal_reference_problem(&format!("REF{hidden}1")).is_some());
            assert!(normalize_display_name(&name).is_err());
        }
    }

    #[test]
    fn phones_are_normalised_to_e164_and_masked() {
        assert_eq!(normalize_phone("98765 43210").unwrap(), "+919876543210");
        assert_eq!(normalize_phone("09876543210").unwrap(), "+919876543210");
        assert_eq!(normalize_phone("919876543210").unwrap(), "+919876543210");
        assert_eq!(normalize_phone("+91 98765-43210").unwrap(), "+919876543210");
        assert_eq!(normalize_phone("+44 7700 900123").unwrap(), "+447700900123");
        assert!(normalize_phone("").is_err());
        assert!(normalize_phone("12345").is_err());
        assert!(normalize_phone("5876543210").is_err());
        assert!(normalize_phone("+91 12345").is_err());
        assert!(normalize_phone("98765x43210").is_err());
        assert!(normalize_phone("+0123456789").is_err());
        assert_eq!(mask_phone("+919876541234"), "+91******1234");
        assert_eq!(mask_phone("+447700900123"), "+4*******0123");
    }

    #[test]
    fn customer_fields_are_checked() {
        assert!(customer_name_problem("Asha Rao").is_none());
        assert!(customer_name_problem(" ").is_some());
        assert!(customer_name_problem("<script>").is_some());
        assert!(customer_name_problem(&"a".repeat(101)).is_some());
        assert!(internal_reference_problem(&"r".repeat(64)).is_none());
        assert!(internal_reference_problem(&"r".repeat(65)).is_some());
        assert_eq!(optional_email("").unwrap(), None);
        assert!(optional_email("nope").is_err());
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalize_email("  Asha@Example.COM ").unwrap(),
            "asha@example.com"
        );
        for bad in [
            "",
            "asha",
            "asha@",
            "@example.com",
            "asha@example",
            "a b@example.com",
            "a@b@example.com",
            "asha@example..com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn password_rules() {
        assert!(
            password_problem("short", "a@example.com")
                .unwrap()
                .contains("at least 12")
        );
        assert!(
            password_problem(&"x".repeat(129), "a@example.com")
                .unwrap()
                .contains("at most 128")
        );
        assert!(password_problem("long-enough-and-unusual", "a@example.com").is_none());
        assert!(
            password_problem(&"Ab1!".repeat(32), "a@example.com").is_none(),
            "128 is allowed"
        );
        assert!(
            password_problem("asha.k@example.com", "Asha.K@example.com")
                .unwrap()
                .contains("email")
        );
        assert!(
            password_problem("Password1234", "a@example.com")
                .unwrap()
                .contains("commonly used")
        );
        assert!(password_problem("zzzzzzzzzzzzzz", "a@example.com").is_some());
        // Length is counted in characters, not bytes.
        assert!(password_problem("ääääääääääääb", "a@example.com").is_none());
    }

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("jane@example.com"), "j***@example.com");
        assert_eq!(mask_email("nonsense"), "***");
        assert_eq!(mask_email("@x.com"), "***");
    }

    #[test]
    fn display_names() {
        assert_eq!(normalize_display_name("  Asha K ").unwrap(), "Asha K");
        assert!(normalize_display_name(" ").is_err());
        assert!(normalize_display_name(&"n".repeat(101)).is_err());
        assert!(normalize_display_name("bad\u{7}").is_err());
    }
}
