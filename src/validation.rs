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

#[cfg(test)]
mod tests {
    use super::*;

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
