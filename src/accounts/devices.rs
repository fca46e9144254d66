//! "Your sessions": a user's signed-in sessions as the store lists them, and ending them.
//!
//! A store that keeps an index from users to their sessions lists and deletes them
//! (its `UserIndex`: `user_sessions`, `end_user_session`, `trim_user_sessions`); the page names
//! each by the store's handle (the digest of its key, which grants nothing), never its key, and
//! ends one by its handle directly. A user has at most `rango.max_sessions_per_user` sessions:
//! a login beyond it ends those that would end first ([`make_room`]), and a listing reads at
//! most that many. A store that cannot list them (the sealed-cookie store) still signs out
//! every other session: the user's session generation goes up, and every session holding the
//! old one is flushed on its next request (`auth.rs`).

use rocket_server_sessions::store::{Record, SessionStore, StoreError};
use rocket_server_sessions::{Expiry, SessionConfig};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::auth::{HASH_KEY, STARTED_KEY, USER_AGENT_KEY};
use super::users::User;

/// A signed-in session as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    /// The store's handle of the session (in the page's URLs): the digest of its key, which
    /// grants nothing on its own.
    pub id: String,
    /// When it signed in (RFC 3339).
    pub started: String,
    /// When it was last saved (RFC 3339): updated only when the session is saved anyway (a
    /// visit counted, a form, a sliding renewal), never by a write of its own. Empty when the
    /// session ends at a fixed date, which hides it.
    pub last_active: String,
    /// Its browser and version, from its `User-Agent`.
    pub browser: String,
    /// Its operating system.
    pub system: String,
    /// Whether it is the session of the request.
    pub current: bool,
}

/// The browser and the system a `User-Agent` names ("Unknown" for what it does not).
pub fn browser_and_system(user_agent: &str) -> (String, String) {
    let unknown = || "Unknown".to_owned();
    let Some(found) = woothee::parser::Parser::new().parse(user_agent) else {
        return (unknown(), unknown());
    };
    let known = |value: &str| value != woothee::woothee::VALUE_UNKNOWN && !value.is_empty();
    let browser = match (known(found.name), known(found.version)) {
        (true, true) => {
            let major = found.version.split('.').next().unwrap_or(found.version);
            format!("{} {major}", found.name)
        }
        (true, false) => found.name.to_owned(),
        _ => unknown(),
    };
    let system = if known(found.os) {
        found.os.to_owned()
    } else {
        unknown()
    };
    (browser, system)
}

/// When a session was last saved: its expiry date less the age it was saved with.
fn last_saved(
    record: &Record,
    config: &SessionConfig,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    match record.expiry() {
        Expiry::At(_) => None,
        expiry => Some(record.expires - expiry.age(config, now)),
    }
}

/// The device of a listed session; `None` for one that does not hold `auth_hash`, the user's
/// hash now (it is signed out, and goes on its next request). `current` is the handle of the
/// request's session.
fn device(
    auth_hash: &str,
    handle: String,
    record: &Record,
    config: &SessionConfig,
    current: Option<&str>,
    now: OffsetDateTime,
) -> Option<Device> {
    let text = |key: &str| {
        record
            .data
            .get(key)
            .and_then(|value| value.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    if text(HASH_KEY) != auth_hash {
        return None;
    }
    let (browser, system) = browser_and_system(&text(USER_AGENT_KEY));
    Some(Device {
        current: current == Some(handle.as_str()),
        id: handle,
        started: text(STARTED_KEY),
        last_active: last_saved(record, config, now)
            .and_then(|at| at.format(&Rfc3339).ok())
            .unwrap_or_default(),
        browser,
        system,
    })
}

/// The user's signed-in sessions (at most `limit`), newest first, or `None` when the store
/// cannot list them. `current` is the handle of the request's session.
///
/// # Errors
/// The store fails.
pub async fn devices(
    store: &dyn SessionStore,
    config: &SessionConfig,
    user: &User,
    current: Option<&str>,
    limit: usize,
) -> Result<Option<Vec<Device>>, StoreError> {
    let Some(index) = store.user_index() else {
        return Ok(None);
    };
    let sessions = index.user_sessions(&user.key(), limit).await?;
    let now = OffsetDateTime::now_utc();
    let auth_hash = user.session_auth_hash();
    let mut devices: Vec<Device> = sessions
        .into_iter()
        .filter_map(|session| {
            device(
                &auth_hash,
                session.handle,
                &session.record,
                config,
                current,
                now,
            )
        })
        .collect();
    devices.sort_by_cached_key(|device| {
        std::cmp::Reverse(OffsetDateTime::parse(&device.started, &Rfc3339).ok())
    });
    Ok(Some(devices))
}

/// Ends the listed sessions of `user` (at most `limit`) but the one with the handle `keep`;
/// says how many. Any beyond `limit` (made before the cap) hold an old hash or generation when
/// this is called, so their next request signs them out all the same.
///
/// # Errors
/// The store fails.
pub async fn end_others(
    store: &dyn SessionStore,
    user: &User,
    keep: Option<&str>,
    limit: usize,
) -> Result<usize, StoreError> {
    let Some(index) = store.user_index() else {
        return Ok(0);
    };
    let listed = index.user_sessions(&user.key(), limit).await?;
    let mut ended = 0;
    for session in listed {
        if Some(session.handle.as_str()) == keep {
            continue;
        }
        if index.end_user_session(&user.key(), &session.handle).await? {
            ended += 1;
        }
    }
    Ok(ended)
}

/// Makes room for one more session of `user` under the cap of `max` (before a login): ends
/// their sessions that would end first until `max - 1` are left. Says how many it ended.
///
/// # Errors
/// The store fails.
pub async fn make_room(
    store: &dyn SessionStore,
    user: &User,
    max: usize,
) -> Result<usize, StoreError> {
    let Some(index) = store.user_index() else {
        return Ok(0);
    };
    let ended = index
        .trim_user_sessions(&user.key(), max.saturating_sub(1))
        .await?;
    Ok(ended.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_and_systems_are_read_from_user_agents() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      Chrome/120.0.6099.71 Safari/537.36";
        assert_eq!(
            browser_and_system(chrome),
            ("Chrome 120".into(), "Linux".into())
        );
        let firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 \
                       Firefox/121.0";
        let (browser, system) = browser_and_system(firefox);
        assert_eq!(browser, "Firefox 121");
        assert!(system.starts_with("Windows"), "{system}");
        assert_eq!(browser_and_system(""), ("Unknown".into(), "Unknown".into()));
        assert_eq!(browser_and_system("curl/8.5.0").1, "Unknown");
    }
}
