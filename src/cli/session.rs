//! `rango session show KEY` and `rango session stats`: what the book does in `manage.py shell`
//! (`Session.objects.get(session_key=...).get_decoded()`), without a shell.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::{Context, Error, Result};
use rocket_server_sessions::store::SessionKey;

/// Prints the session whose cookie value is `key`: its expiry date, whether it ends at browser
/// close, and its data as pretty JSON.
///
/// The store keeps only the SHA-256 of each key, so the session is found by the digest of
/// `key`; the key itself is never printed.
///
/// # Errors
/// [`Error::MalformedKey`], [`Error::NoSuchSession`] or [`Error::Expired`]; or the store
/// cannot be reached.
pub async fn show(context: &Context, key: &str) -> Result {
    let config = context.session_config()?;
    let store = context.store(&config).await?.store;
    let inspected = match store.census() {
        Some(census) => census.inspect(key).await?,
        None => store.load(key).await?,
    };
    let Some(record) = inspected else {
        return Err(match SessionKey::parse(key) {
            Some(_) => Error::NoSuchSession,
            None => Error::MalformedKey(config.cookie_name),
        });
    };
    let now = OffsetDateTime::now_utc();
    let expires = rfc3339(record.expires);
    if record.expires <= now {
        return Err(Error::Expired(expires));
    }
    let at_browser_close = record.expiry().at_browser_close(&config);
    let data = serde_json::to_string_pretty(&*record.data)?;
    println!(
        "expires: {expires} (in {})",
        approximately(record.expires - now)
    );
    println!(
        "expires at browser close: {}",
        if at_browser_close { "yes" } else { "no" }
    );
    // JSON escapes the C0 controls in strings, not DEL, the C1 controls or bidirectional
    // overrides, and a visitor's `User-Agent` is in the data: escaped as every user text is.
    let data: Vec<_> = data.lines().map(super::shown).collect();
    println!("data: {}", data.join("\n"));
    Ok(())
}

/// Prints how many sessions are live and how many expired but not yet cleared.
///
/// # Errors
/// The store cannot be reached.
pub async fn stats(context: &Context) -> Result {
    let config = context.session_config()?;
    let store = context.store(&config).await?.store;
    let Some(census) = store.census() else {
        return Err(Error::CannotCount(config.backend));
    };
    let counts = census.count().await?;
    println!("live: {}", counts.live);
    println!("expired: {} (not yet cleared)", counts.expired);
    Ok(())
}

fn rfc3339(date: OffsetDateTime) -> String {
    date.format(&Rfc3339)
        .unwrap_or_else(|_| date.unix_timestamp().to_string())
}

/// A positive duration in its two largest units: "13d 23h", "5m 2s".
fn approximately(duration: Duration) -> String {
    let seconds = duration.whole_seconds().max(0);
    let (days, hours, minutes, seconds) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_in_their_two_largest_units() {
        assert_eq!(approximately(Duration::seconds(5)), "5s");
        assert_eq!(approximately(Duration::seconds(302)), "5m 2s");
        assert_eq!(approximately(Duration::seconds(3 * 3600 + 60)), "3h 1m");
        assert_eq!(approximately(Duration::seconds(1_209_599)), "13d 23h");
        assert_eq!(approximately(Duration::seconds(-4)), "0s");
    }
}
