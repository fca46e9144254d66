//! The `Sessions` fairing: attaches the configured store at ignite; after each response whose
//! handler used the session, saves it and sets or deletes the cookie.

use std::io::Cursor;
use std::sync::{Arc, PoisonError};

use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::http::{ContentType, Cookie, SameSite, Status};
use rocket::{Build, Orbit, Request, Response, Rocket};
use time::{Duration, OffsetDateTime};

use super::config::SessionConfig;
use super::guard::Slot;
use super::handle::{Commit, SessionState};
use super::reaper::Reaper;
use super::record;
use super::store::{SessionStore, StoreError};

/// Builds the store the settings ask for, at ignite. The application implements it: it owns
/// the database pools and connections the stores run on.
#[rocket::async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// The store for `config.backend`.
    ///
    /// # Errors
    /// A message saying why that store cannot be built (it fails the launch).
    async fn build(
        &self,
        rocket: &Rocket<Build>,
        config: &SessionConfig,
    ) -> Result<Arc<dyn SessionStore>, String>;
}

#[rocket::async_trait]
impl<F> StoreFactory for F
where
    F: Fn(&Rocket<Build>, &SessionConfig) -> Result<Arc<dyn SessionStore>, String>
        + Send
        + Sync
        + 'static,
{
    async fn build(
        &self,
        rocket: &Rocket<Build>,
        config: &SessionConfig,
    ) -> Result<Arc<dyn SessionStore>, String> {
        self(rocket, config)
    }
}

/// The settings and store of a launched application, in Rocket's managed state.
pub struct SessionManager {
    /// The validated settings.
    pub config: SessionConfig,
    /// The store sessions live in.
    pub store: Arc<dyn SessionStore>,
}

/// The session fairing. Attach it after the fairings that set up what the store needs (a
/// database pool, say).
pub struct Sessions {
    factory: Box<dyn StoreFactory>,
    reaper: Reaper,
}

impl Sessions {
    /// The fairing, building its store with `factory`.
    pub fn fairing(factory: impl StoreFactory) -> Self {
        Sessions {
            factory: Box::new(factory),
            reaper: Reaper::default(),
        }
    }
}

/// Django's message for a session deleted under a request (`SessionInterrupted`).
const INTERRUPTED: &str = "The request's session was deleted before the request completed. \
     The user may have logged out in a concurrent request, for example.";

const UNAVAILABLE: &str = "The session store is unavailable, so this page could not be saved. \
     Please try again in a moment.";

#[rocket::async_trait]
impl Fairing for Sessions {
    fn info(&self) -> Info {
        Info {
            name: "Sessions",
            kind: Kind::Ignite | Kind::Liftoff | Kind::Response | Kind::Shutdown,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        let config = match SessionConfig::from_figment(rocket.figment()) {
            Ok(config) => config,
            Err(e) => {
                log::error!("{e}");
                return Err(rocket);
            }
        };
        let store = match self.factory.build(&rocket, &config).await {
            Ok(store) => store,
            Err(e) => {
                log::error!(
                    "session.backend = \"{}\": cannot build the store: {e}",
                    config.backend.name()
                );
                return Err(rocket);
            }
        };
        Ok(rocket.manage(SessionManager { config, store }))
    }

    /// Starts the reaper if `session.clear_expired_every` is set.
    async fn on_liftoff(&self, rocket: &Rocket<Orbit>) {
        self.reaper.start(rocket);
    }

    /// Waits for the reaper to stop.
    async fn on_shutdown(&self, _: &Rocket<Orbit>) {
        self.reaper.stop().await;
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let Some(manager) = req.rocket().state::<SessionManager>() else {
            return;
        };
        if !manager.config.enabled {
            return;
        }
        let state = match req.local_cache(|| Slot::Unused) {
            Slot::Unused => return,
            Slot::Failed => {
                add_vary_cookie(res);
                return;
            }
            Slot::Loaded(state) => {
                std::mem::take(&mut *state.lock().unwrap_or_else(PoisonError::into_inner))
            }
        };
        add_vary_cookie(res);
        if let Err((status, message)) = commit(state, manager, res).await {
            // No cookie either way: on a 400 the request that ended the session has already
            // told the browser, which may hold a newer session's cookie by now.
            replace_with_error(res, status, &message);
        }
    }
}

/// Commits the session and adds its cookie; an `Err` is the status the response must take
/// and the message its page gives.
async fn commit(
    state: SessionState,
    manager: &SessionManager,
    res: &mut Response<'_>,
) -> Result<(), (Status, String)> {
    let config = &manager.config;
    let now = OffsetDateTime::now_utc();
    let server_error = res.status().class().is_server_error();
    let outcome = state
        .commit(manager.store.as_ref(), config, server_error, now)
        .await
        .map_err(|e| {
            log::error!("saving a session failed: {e}");
            match e {
                StoreError::TooLarge(why) => (
                    Status::InternalServerError,
                    format!("This page could not be saved: {why}."),
                ),
                _ => (Status::ServiceUnavailable, UNAVAILABLE.to_owned()),
            }
        })?;
    match outcome {
        Commit::Nothing => {}
        Commit::SetCookie { id, max_age } => {
            res.adjoin_header(session_cookie(config, id, max_age, now));
        }
        Commit::RemoveCookie => res.adjoin_header(removal_cookie(config)),
        Commit::Interrupted => {
            log::warn!("a session was deleted by a concurrent request before this one saved it");
            return Err((Status::BadRequest, INTERRUPTED.to_owned()));
        }
    }
    Ok(())
}

fn base_cookie(config: &SessionConfig, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::build((config.cookie_name.clone(), value))
        .path(config.cookie_path.clone())
        .http_only(config.cookie_http_only)
        .secure(config.cookie_secure)
        .same_site(config.same_site().unwrap_or(SameSite::Lax))
        .build();
    if let Some(domain) = &config.cookie_domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

/// The session's cookie: with `Max-Age` and a matching `Expires` when persistent, with neither
/// when it ends with the browser.
fn session_cookie(
    config: &SessionConfig,
    id: String,
    max_age: Option<Duration>,
    now: OffsetDateTime,
) -> Cookie<'static> {
    let mut cookie = base_cookie(config, id);
    if let Some(age) = max_age {
        let age = age.max(Duration::ZERO);
        cookie.set_max_age(age);
        cookie.set_expires(record::after(now, age));
    }
    cookie
}

/// The cookie that makes the browser drop the session cookie: same name, path, domain and
/// attributes, empty, `Max-Age=0` and `Expires` at the epoch.
fn removal_cookie(config: &SessionConfig) -> Cookie<'static> {
    let mut cookie = base_cookie(config, String::new());
    cookie.set_max_age(Duration::ZERO);
    cookie.set_expires(OffsetDateTime::UNIX_EPOCH);
    cookie
}

/// Adds `Cookie` to the response's `Vary` header (caches must not share a session's page).
fn add_vary_cookie(res: &mut Response<'_>) {
    // The usual case, a response without `Vary`, allocates nothing.
    if !res.headers().contains("Vary") {
        res.set_raw_header("Vary", "Cookie");
        return;
    }
    let existing: Vec<String> = res.headers().get("Vary").map(str::to_owned).collect();
    let covered = existing.iter().flat_map(|v| v.split(',')).any(|v| {
        let v = v.trim();
        v == "*" || v.eq_ignore_ascii_case("cookie")
    });
    if covered {
        return;
    }
    let mut parts = existing;
    parts.push("Cookie".into());
    res.set_raw_header("Vary", parts.join(", "));
}

/// Replaces the response by a small page: the handler's own page is not what happened.
fn replace_with_error(res: &mut Response<'_>, status: Status, message: &str) {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{code} {reason}</title></head>\n<body><h1>{code} {reason}</h1>\n<p>{message}</p>\
         </body></html>\n",
        code = status.code,
        reason = status.reason_lossy(),
    );
    res.set_status(status);
    res.set_header(ContentType::HTML);
    res.set_sized_body(body.len(), Cursor::new(body));
}
