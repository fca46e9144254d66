//! Database URLs as a log or an error message may show them: every secret replaced by `***`.
//! The server's launch and the command line show the site's database URL through here.

/// `url` with every secret in it replaced by `***`: what may go into a log or an error
/// message. The one redaction every URL goes through before it is shown.
///
/// - The password of the user info (`redis://:secret@host` → `redis://:***@host`), even when
///   it holds a raw `@`, `/`, `?` or `#` (which a URL parser takes for the end of the user
///   info or the host): the user info ends at the URL's last `@`. A `@` in the query then hides
///   more than the password, never less. Without `//` (`postgres:u:pw@host`), everything from
///   the scheme's `:` to the last `@`.
/// - The value of a parameter that names a secret (`password`, `sslpassword`, `secret`,
///   `token`, `pass`, `pwd`, in any case, percent-encoded or not), in a query
///   (`?password=secret` → `?password=***`) or in a libpq keyword string
///   (`host=db password=secret`).
///
/// Whatever the scheme: an unsupported URL is shown redacted too.
pub fn redact_password(url: &str) -> String {
    redaction(url).0
}

/// `text` (a driver's error message, say) with `url` redacted wherever it appears, and every
/// secret of `url` wherever it appears on its own (a driver may quote part of a malformed URL).
pub fn redact_in(text: &str, url: &str) -> String {
    let (redacted, mut secrets) = redaction(url);
    let mut text = text.replace(url, &redacted);
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    for secret in secrets.iter().filter(|secret| secret.len() >= 2) {
        text = text.replace(secret.as_str(), "***");
    }
    text
}

/// `url` redacted, and the secrets it held.
fn redaction(url: &str) -> (String, Vec<String>) {
    let mut secrets = Vec::new();
    let mut redacted = String::with_capacity(url.len());
    let mut tail = url;
    if let Some(at) = url.rfind('@') {
        let (head, rest) = url.split_at(at);
        // After `scheme://`, the user's `:`; without `//`, the scheme's own `:`.
        let colon = match head.find("://") {
            Some(sep) => head[sep + 3..].find(':').map(|c| sep + 3 + c),
            None => head.find(':'),
        };
        if let Some(colon) = colon {
            redacted.push_str(&head[..=colon]);
            redacted.push_str("***");
            let hidden = &head[colon + 1..];
            secrets.push(hidden.to_owned());
            // Without `//`, what is hidden may be `user:password`: the password on its own too.
            if let Some((_, password)) = hidden.split_once(':') {
                secrets.push(password.to_owned());
            }
            tail = rest;
        }
    }
    // Parameters: split at the separators of queries and keyword strings, keeping them.
    let mut rest = tail;
    loop {
        let end = rest
            .find([' ', '\t', '&', '?', ';', '#'])
            .unwrap_or(rest.len());
        let (pair, after) = rest.split_at(end);
        match pair.split_once('=') {
            Some((name, value)) if names_a_secret(name) => {
                redacted.push_str(name);
                redacted.push_str("=***");
                secrets.push(value.to_owned());
            }
            _ => redacted.push_str(pair),
        }
        let Some(separator) = after.chars().next() else {
            break;
        };
        redacted.push(separator);
        rest = &after[separator.len_utf8()..];
    }
    (redacted, secrets)
}

/// Whether a parameter's name (percent-encoded or not) says its value is a secret.
fn names_a_secret(name: &str) -> bool {
    let bytes = name.as_bytes();
    let hex = |i: usize| bytes.get(i).and_then(|b| char::from(*b).to_digit(16));
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    let name = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    ["password", "secret", "token"]
        .iter()
        .any(|word| name.contains(word))
        || name == "pass"
        || name == "pwd"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        for (url, redacted) in [
            (
                "redis://:pw@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            (
                "postgres://u:p@ss@db/x?sslmode=off",
                "postgres://u:***@db/x?sslmode=off",
            ),
            ("postgres://u:pa/ss@db/x", "postgres://u:***@db/x"),
            ("postgres://u:pa?ss@db/x", "postgres://u:***@db/x"),
            ("postgres://u:pa#ss@db/x", "postgres://u:***@db/x"),
            (
                "postgres://u:a/b?c#d@e@db:5432/x",
                "postgres://u:***@db:5432/x",
            ),
            (
                "postgres://db/x?user=u&password=pw&sslmode=off",
                "postgres://db/x?user=u&password=***&sslmode=off",
            ),
            (
                "postgres://db/x?PASSWORD=pw#frag",
                "postgres://db/x?PASSWORD=***#frag",
            ),
            (
                "postgres://db/x?sslpassword=pw",
                "postgres://db/x?sslpassword=***",
            ),
            (
                "postgresql+psycopg://u:pw@db/x",
                "postgresql+psycopg://u:***@db/x",
            ),
            ("postgress://u:pw@db/x", "postgress://u:***@db/x"),
            ("mysql://u:pw@db/x?pwd=pw2", "mysql://u:***@db/x?pwd=***"),
            // A `@` in the query hides more than the password, never less.
            (
                "postgres://u:pw@db/x?application_name=a@b",
                "postgres://u:***@b",
            ),
            ("postgres:/u:pw@db/x", "postgres:***@db/x"),
            ("postgres:u:pw@db/x", "postgres:***@db/x"),
            (
                "host=db user=u password=pw dbname=x",
                "host=db user=u password=*** dbname=x",
            ),
            (
                "postgres://db/x?pass%77ord=pw",
                "postgres://db/x?pass%77ord=***",
            ),
        ] {
            assert_eq!(redact_password(url), redacted, "{url}");
        }
        for unchanged in [
            "postgres://u@db/x",
            "sqlite://a.sqlite3?mode=rwc",
            "redis://h/0",
            "x",
            "postgres://db:5432/x?sslmode=require",
        ] {
            assert_eq!(redact_password(unchanged), unchanged);
        }
    }

    #[test]
    fn secrets_are_redacted_from_what_a_driver_says_of_a_url() {
        let url = "postgres:/u:hunter2@db/x";
        let said = format!("database \"u:hunter2@db/x\" does not exist (url {url})");
        let shown = redact_in(&said, url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres:***@db/x"), "{shown}");
    }
}
