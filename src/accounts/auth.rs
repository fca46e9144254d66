//! Who a request is signed in as, and signing in and out: Django's `login`, `logout`,
//! `get_user` and `update_session_auth_hash`, on the session.
//!
//! A signed-in session holds the user's id under [`USER_KEY`] (which the stores index to list a
//! user's sessions), the user's [`User::session_auth_hash`] under [`HASH_KEY`], and what the
//! "your sessions" page shows: when it signed in and its browser's `User-Agent` (the page names
//! each session by the store's handle, never its key). A session whose hash is no longer the user's (the password changed,
//! or the user signed out their other sessions) is flushed on its next request, on every
//! store: that is how the sealed-cookie store, which cannot list sessions, signs them out. So
//! is a session signed in longer ago than `rango.sign_in_lifetime`, however active: sliding
//! renewal keeps a session alive, never a sign-in past that.

use rocket::http::Status;
use rocket::outcome::try_outcome;
use rocket::request::{FromRequest, Outcome, Request};
use rocket_db_pools::Database;
use rocket_server_sessions::{rotate_csrf_token, CsrfToken, Session, SessionError, USER_KEY};
use serde::Serialize;
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::users::{self, User};
use crate::db::Db;

/// The session key of the user's [`User::session_auth_hash`] (Django's `HASH_SESSION_KEY`).
pub const HASH_KEY: &str = "_auth_user_hash";
/// The session key of when it signed in (RFC 3339).
pub const STARTED_KEY: &str = "_auth_started";
/// The session key of the `User-Agent` it signed in with (at most [`MAX_USER_AGENT`] bytes).
pub const USER_AGENT_KEY: &str = "_auth_user_agent";
/// How much of a `User-Agent` a session keeps.
pub const MAX_USER_AGENT: usize = 256;

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Signs the session in as `user` (Django's `login`): a session signed in as someone else is
/// flushed first, else its key is cycled with its data kept (the visit count goes on); the
/// CSRF secret is rotated.
pub fn login(session: &Session<'_>, user: &User, user_agent: Option<&str>) {
    let key = user.key();
    let someone_else = session
        .get::<String>(USER_KEY)
        .is_some_and(|signed_in| signed_in != key);
    if someone_else {
        session.flush();
    } else {
        session.cycle_key();
    }
    rotate_csrf_token(session);
    let now = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    // Strings always serialize.
    session.insert(USER_KEY, key).ok();
    session.insert(HASH_KEY, user.session_auth_hash()).ok();
    session.insert(STARTED_KEY, now).ok();
    session
        .insert(
            USER_AGENT_KEY,
            truncated(user_agent.unwrap_or_default(), MAX_USER_AGENT),
        )
        .ok();
}

/// Signs the session out (Django's `logout`): its data and record go, and a new session
/// starts when something is stored again.
pub fn logout(session: &Session<'_>) {
    session.flush();
}

/// Keeps the session signed in after `user`'s password or generation changed (Django's
/// `update_session_auth_hash`): a new key, the new hash.
pub fn update_session_auth_hash(session: &Session<'_>, user: &User) {
    session.cycle_key();
    session.insert(HASH_KEY, user.session_auth_hash()).ok();
}

/// The user the request is signed in as, if any (Django's `request.user`): looked up once per
/// request, and only for a session that names a user, so a visitor's request makes no query.
/// A session naming a user that is gone, or holding an old hash, is flushed.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Option<User>);

/// What looking the user up found, cached for the request.
#[derive(Debug, Clone)]
enum Lookup {
    Found(Option<User>),
    Failed,
}

async fn look_up(req: &Request<'_>, session: &Session<'_>) -> Lookup {
    let Some(key) = session.get::<String>(USER_KEY) else {
        return Lookup::Found(None);
    };
    let Some(db) = Db::fetch(req.rocket()) else {
        return Lookup::Failed;
    };
    let user = match users::by_key(db.pool(), &key).await {
        Ok(user) => user,
        Err(e) => {
            log::error!("looking up the session's user: {e}");
            return Lookup::Failed;
        }
    };
    let stored = session.get::<String>(HASH_KEY).unwrap_or_default();
    match user {
        Some(user)
            if bool::from(stored.as_bytes().ct_eq(user.session_auth_hash().as_bytes()))
                && within_lifetime(req, session) =>
        {
            Lookup::Found(Some(user))
        }
        _ => {
            // Signed out elsewhere: a new password, "sign out all other sessions", the user
            // deleted.
            session.flush();
            Lookup::Found(None)
        }
    }
}

/// Whether this request was found signed in (by a [`CurrentUser`] guard that ran for it);
/// false when nothing looked.
pub fn signed_in_here(req: &Request<'_>) -> bool {
    matches!(
        req.local_cache(|| Lookup::Found(None)),
        Lookup::Found(Some(_))
    )
}

/// Whether the session signed in less than `rango.sign_in_lifetime` ago (a session that does
/// not say when it signed in cannot show it did).
fn within_lifetime(req: &Request<'_>, session: &Session<'_>) -> bool {
    let lifetime = req
        .rocket()
        .state::<crate::rango::RangoConfig>()
        .map_or(30 * 86_400, |config| config.sign_in_lifetime);
    let lifetime = time::Duration::seconds(i64::try_from(lifetime).unwrap_or(i64::MAX));
    session
        .get::<String>(STARTED_KEY)
        .and_then(|started| OffsetDateTime::parse(&started, &Rfc3339).ok())
        .is_some_and(|started| OffsetDateTime::now_utc() - started < lifetime)
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for CurrentUser {
    type Error = SessionError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let session = try_outcome!(req.guard::<Session<'r>>().await);
        match req.local_cache_async(look_up(req, &session)).await {
            Lookup::Found(user) => Outcome::Success(CurrentUser(user.clone())),
            Lookup::Failed => {
                Outcome::Error((Status::ServiceUnavailable, SessionError::Unavailable))
            }
        }
    }
}

/// A signed-in user, for pages only they may see (Django's `login_required`): anyone else
/// gets a 401, which the site's catcher turns into a redirect to the login page.
#[derive(Debug, Clone)]
pub struct SignedIn(pub User);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for SignedIn {
    type Error = SessionError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        match try_outcome!(req.guard::<CurrentUser>().await) {
            CurrentUser(Some(user)) => Outcome::Success(SignedIn(user)),
            CurrentUser(None) => Outcome::Error((Status::Unauthorized, SessionError::Unavailable)),
        }
    }
}

/// What the navigation of every page shows: the username, and a CSRF token for its logout
/// button, when signed in. A visitor's costs nothing (no query, no token).
#[derive(Debug, Clone, Serialize)]
pub struct Nav {
    /// The signed-in user's name.
    pub username: Option<String>,
    /// The token of the logout form.
    pub csrf_token: Option<CsrfToken>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Nav {
    type Error = SessionError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let CurrentUser(user) = try_outcome!(req.guard::<CurrentUser>().await);
        let Some(user) = user else {
            return Outcome::Success(Nav {
                username: None,
                csrf_token: None,
            });
        };
        let session = try_outcome!(req.guard::<Session<'r>>().await);
        Outcome::Success(Nav {
            username: Some(user.username),
            csrf_token: Some(CsrfToken::new(&session)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("abc", 2), "ab");
        assert_eq!(truncated("éé", 3), "é");
        assert_eq!(truncated("", 5), "");
    }
}
