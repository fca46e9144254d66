//! The `Session` request guard: loads the session at most once per request, on first use.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use rocket::http::{Cookie, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{Ignite, Rocket, Sentinel};

use crate::commit::CookieHeader;
use crate::config::SessionConfig;
use crate::handle::{Session, SessionState};
use crate::store::SessionStore;

/// The settings and store of a launched application, in Rocket's managed state (the fairing
/// puts it there at ignite).
pub struct SessionManager {
    pub(crate) config: SessionConfig,
    pub(crate) store: Arc<dyn SessionStore>,
    /// The session cookie's header, its constant part formatted once.
    pub(crate) cookie_header: CookieHeader,
}

impl SessionManager {
    pub(crate) fn new(config: SessionConfig, store: Arc<dyn SessionStore>) -> SessionManager {
        SessionManager {
            cookie_header: CookieHeader::new(&config),
            config,
            store,
        }
    }

    /// The validated settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The store sessions live in: for what the request guard does not do (listing a user's
    /// sessions, say).
    pub fn store(&self) -> &dyn SessionStore {
        self.store.as_ref()
    }
}

/// The request-local slot the guard fills and the fairing reads (one slot per type per request,
/// so this type is private to the session layer).
pub(crate) enum Slot {
    /// No handler asked for the session: the fairing does nothing.
    Unused,
    /// The store could not load the session.
    Failed,
    /// The session of this request.
    Loaded(Mutex<SessionState>),
}

/// Why a `Session` could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The `Sessions` fairing is not attached.
    #[error("the Sessions fairing is not attached")]
    NotAttached,
    /// The store did not answer.
    #[error("the session store is unavailable")]
    Unavailable,
}

impl Slot {
    async fn load(req: &Request<'_>, manager: &SessionManager) -> Slot {
        if !manager.config.enabled {
            return Slot::Loaded(Mutex::new(SessionState::new(None)));
        }
        // The first value that names a live session is the request's session.
        for value in candidates(req, &manager.config.cookie_name)
            .into_iter()
            .flatten()
        {
            // Through the `dyn` store itself: `Arc`'s own impl would box one more future.
            match manager.store().load(&value).await {
                Ok(Some(record)) => {
                    let loaded = Some((value.into_owned(), record));
                    return Slot::Loaded(Mutex::new(SessionState::new(loaded)));
                }
                Ok(None) => {}
                Err(e) => {
                    log::error!("loading a session failed: {e}");
                    return Slot::Failed;
                }
            }
        }
        Slot::Loaded(Mutex::new(SessionState::new(None)))
    }
}

/// The most values of the session's cookie one request is looked up by.
const MAX_CANDIDATES: usize = 4;

/// The values of the cookie `name` that the request carried, in the order the browser sent
/// them, without repeats, [`MAX_CANDIDATES`] at most.
///
/// Rocket's cookie jar keeps one value per name, the last; but a request can carry several
/// (a sibling subdomain can plant a cookie of the same name for the parent domain; browsers
/// send longer paths first, then older cookies), and planted junk must not hide the real one.
/// So the `Cookie` headers are read again; the jar is the answer only when they have none (a
/// local client's cookies are only in the jar). A `__Host-` cookie name is what keeps other
/// hosts from planting one at all.
///
/// The headers are walked rather than looked up (a request has a few; a lookup hashes the
/// name with SipHash, a byte at a time), and the values kept in place: a request that carries
/// its session spends no allocation here (BENCHMARKS.md, "What each change bought", 19).
fn candidates<'a>(req: &'a Request<'_>, name: &str) -> [Option<Cow<'a, str>>; MAX_CANDIDATES] {
    let mut values: [Option<Cow<'a, str>>; MAX_CANDIDATES] = Default::default();
    let mut count = 0;
    let sent = req
        .headers()
        .iter()
        .filter(|header| header.name == "Cookie")
        // The map's iterator lends every value: none is owned.
        .filter_map(|header| match header.value {
            Cow::Borrowed(value) => Some(value),
            Cow::Owned(_) => None,
        });
    for pair in sent.flat_map(|header| header.split(';')) {
        let Some(value) = value_of(pair, name) else {
            continue;
        };
        if values[..count].iter().flatten().any(|seen| *seen == value) {
            continue;
        }
        values[count] = Some(value);
        count += 1;
        if count == MAX_CANDIDATES {
            return values;
        }
    }
    if count == 0 {
        values[0] = req.cookies().get(name).map(|c| Cow::Borrowed(c.value()));
    }
    values
}

/// The value of one `name=value` pair of a `Cookie` header if it is the cookie `name`'s:
/// borrowed from the header when it needs no decoding (a session key, a sealed session), else
/// decoded as Rocket decodes cookies (percent-encoding, quotes).
fn value_of<'a>(pair: &'a str, name: &str) -> Option<Cow<'a, str>> {
    let value = pair
        .trim_start()
        .strip_prefix(name)?
        .trim_start()
        .strip_prefix('=')?
        .trim();
    if !value.bytes().any(|b| b == b'%' || b == b'"') {
        return Some(Cow::Borrowed(value));
    }
    let cookie = Cookie::parse_encoded(pair.trim()).ok()?;
    Some(Cow::Owned(cookie.value().to_owned()))
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Session<'r> {
    type Error = SessionError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let Some(manager) = req.rocket().state::<SessionManager>() else {
            return Outcome::Error((Status::InternalServerError, SessionError::NotAttached));
        };
        match req.local_cache_async(Slot::load(req, manager)).await {
            Slot::Loaded(state) => Outcome::Success(Session::new(state, &manager.config)),
            Slot::Failed => Outcome::Error((Status::ServiceUnavailable, SessionError::Unavailable)),
            Slot::Unused => {
                Outcome::Error((Status::InternalServerError, SessionError::NotAttached))
            }
        }
    }
}

/// Refuses to launch a Rocket whose routes ask for a `Session` without the fairing attached.
impl Sentinel for Session<'_> {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        if rocket.state::<SessionManager>().is_none() {
            log::error!("a route uses `Session` but the `Sessions` fairing is not attached");
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_pair_gives_its_value_only_under_its_exact_name() {
        assert_eq!(
            value_of("sessionid=abc", "sessionid").as_deref(),
            Some("abc")
        );
        assert_eq!(
            value_of(" sessionid = abc ", "sessionid").as_deref(),
            Some("abc")
        );
        assert_eq!(value_of("xsessionid=abc", "sessionid"), None);
        assert_eq!(value_of("sessionidx=abc", "sessionid"), None);
        assert_eq!(value_of("sessionid", "sessionid"), None);
        assert_eq!(value_of("other=sessionid", "sessionid"), None);
        // A sealed session's base64 keeps its '=' padding.
        assert_eq!(
            value_of("sessionid=ab+/c==", "sessionid").as_deref(),
            Some("ab+/c==")
        );
        assert!(matches!(
            value_of("sessionid=abc", "sessionid"),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn encoded_and_quoted_values_are_read_as_rocket_reads_them() {
        for pair in [
            "sessionid=a%2Fb",
            "sessionid=\"a%2Fb\"",
            "sessionid=\"abc\"",
        ] {
            let rocket = Cookie::parse_encoded(pair).expect("a cookie");
            assert_eq!(value_of(pair, "sessionid").as_deref(), Some(rocket.value()));
        }
    }
}
