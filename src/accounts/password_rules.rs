//! Django's default password validators (`AUTH_PASSWORD_VALIDATORS` in a new project), each
//! with Django's message: a minimum length, not a common password, not entirely numeric, not
//! too similar to the username or the e-mail address.
//!
//! The common passwords come from the `passwords` crate's list (its `common-password`
//! feature), not a list copied here by hand.

/// The fewest characters a password may have (Django's `MinimumLengthValidator`).
pub const MIN_LEN: usize = 8;

/// How similar (difflib's quick ratio, 0 to 1) a password may be to the username or e-mail
/// before it is refused (Django's `UserAttributeSimilarityValidator`).
const MAX_SIMILARITY: f64 = 0.7;

/// Why `password` is refused for the user `username` with the address `email`: every rule it
/// breaks, in Django's order; empty when it is fine.
pub fn problems(password: &str, username: &str, email: &str) -> Vec<&'static str> {
    if password.is_empty() {
        return vec!["This field is required."];
    }
    let mut problems = Vec::new();
    for (value, name) in [
        (username, "The password is too similar to the username."),
        (email, "The password is too similar to the email address."),
    ] {
        if too_similar(password, value) {
            problems.push(name);
        }
    }
    if password.chars().count() < MIN_LEN {
        problems.push("This password is too short. It must contain at least 8 characters.");
    }
    if passwords::analyzer::is_common_password(password.trim().to_lowercase()) {
        problems.push("This password is too common.");
    }
    if password.chars().all(|c| c.is_ascii_digit()) {
        problems.push("This password is entirely numeric.");
    }
    problems
}

/// Django's similarity rule: the password against the value and each of its parts (split on
/// what is not a letter, digit or `_`), in lower case; a part too short beside a long password
/// is skipped.
fn too_similar(password: &str, value: &str) -> bool {
    let password = password.to_lowercase();
    let value = value.to_lowercase();
    if value.is_empty() {
        return false;
    }
    let parts = value
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .chain(std::iter::once(value.as_str()));
    let password_len = password.chars().count();
    for part in parts {
        let part_len = part.chars().count();
        let bound = MAX_SIMILARITY / 2.0 * password_len as f64;
        if password_len >= 10 * part_len && (part_len as f64) < bound {
            continue;
        }
        if quick_ratio(&password, part) >= MAX_SIMILARITY {
            return true;
        }
    }
    false
}

/// difflib's `SequenceMatcher.quick_ratio`: twice the characters the two have in common
/// (as multisets) over their total length.
fn quick_ratio(a: &str, b: &str) -> f64 {
    let total = a.chars().count() + b.chars().count();
    if total == 0 {
        return 1.0;
    }
    let mut left: std::collections::HashMap<char, usize> = std::collections::HashMap::new();
    for c in b.chars() {
        *left.entry(c).or_default() += 1;
    }
    let mut matches = 0;
    for c in a.chars() {
        if let Some(n) = left.get_mut(&c).filter(|n| **n > 0) {
            *n -= 1;
            matches += 1;
        }
    }
    2.0 * matches as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn djangos_rules_with_djangos_messages() {
        let refused =
            |password: &str, username: &str, email: &str| problems(password, username, email);
        assert!(refused("correct horse battery", "ann", "ann@example.com").is_empty());
        assert_eq!(
            refused("12345678", "ann", "ann@example.com"),
            [
                "This password is too common.",
                "This password is entirely numeric."
            ]
        );
        assert_eq!(
            refused("97531864", "ann", "a@example.com"),
            ["This password is entirely numeric."]
        );
        assert_eq!(
            refused("password", "ann", "a@example.com"),
            ["This password is too common."]
        );
        assert!(refused("short", "ann", "a@example.com")
            .contains(&"This password is too short. It must contain at least 8 characters."));
        assert_eq!(
            refused("margaretta1", "margaretta", "m@example.com"),
            ["The password is too similar to the username."]
        );
        assert_eq!(
            refused("smithanns", "ann", "ann.smith@example.com"),
            ["The password is too similar to the email address."]
        );
        assert_eq!(
            refused("", "ann", "a@example.com"),
            ["This field is required."]
        );
    }

    #[test]
    fn quick_ratio_is_difflibs() {
        // difflib.SequenceMatcher(a="abcd", b="bcde").quick_ratio() == 0.75
        assert!((quick_ratio("abcd", "bcde") - 0.75).abs() < 1e-9);
        assert!((quick_ratio("aab", "abb") - 2.0 * 2.0 / 6.0).abs() < 1e-9);
        assert_eq!(quick_ratio("", ""), 1.0);
    }
}
