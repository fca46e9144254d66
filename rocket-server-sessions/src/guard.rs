//! The `Session` request guard: loads the session at most once per request, on first use.

use std::sync::{Arc, Mutex};

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{Ignite, Rocket, Sentinel};

use crate::config::SessionConfig;
use crate::handle::{Session, SessionState};
use crate::store::SessionStore;

/// The settings and store of a launched application, in Rocket's managed state (the fairing
/// puts it there at ignite).
pub struct SessionManager {
    /// The validated settings.
    pub config: SessionConfig,
    /// The store sessions live in.
    pub store: Arc<dyn SessionStore>,
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
            return Slot::Loaded(Mutex::new(SessionState::new(None, None)));
        }
        let incoming = req
            .cookies()
            .get(&manager.config.cookie_name)
            .map(|c| c.value().to_owned());
        let record = match &incoming {
            Some(id) => match manager.store.load(id).await {
                Ok(record) => record,
                Err(e) => {
                    log::error!("loading a session failed: {e}");
                    return Slot::Failed;
                }
            },
            None => None,
        };
        Slot::Loaded(Mutex::new(SessionState::new(incoming, record)))
    }
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
