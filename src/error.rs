//! The application's errors and its error pages.

use rocket::http::Status;
use rocket::response::{self, Responder};
use rocket::{catch, catchers, Catcher, Request};
use rocket_dyn_templates::{context, Template};

/// What a handler can fail with. The page says only that something went wrong; the log keeps
/// the detail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A timestamp could not be formatted.
    #[error("formatting a timestamp: {0}")]
    Time(#[from] time::error::Format),
    /// The session store failed (listing or ending a user's sessions).
    #[error("session store: {0}")]
    Store(#[from] rocket_server_sessions::store::StoreError),
    /// A user could not be stored: its password could not be hashed (or, where a form does
    /// not handle it, its name was taken).
    #[error("storing a user: {0}")]
    Password(String),
    /// A template could not be rendered (its error is in the log above).
    #[error("rendering the template {0}")]
    Template(&'static str),
    /// Too many failed attempts for this username or address: locked for so many seconds
    /// (`accounts/throttle.rs`).
    #[error("too many failed attempts: locked for {0} s")]
    Throttled(u64),
    /// Too many password checks wait for a core already.
    #[error("too many password checks waiting")]
    Busy,
}

impl<'r> Responder<'r, 'static> for Error {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let (status, wait) = match self {
            Error::Throttled(wait) => (Status::TooManyRequests, wait),
            Error::Busy => (Status::ServiceUnavailable, 1),
            _ => {
                log::error!("{self}");
                return Err(status_of(&self));
            }
        };
        // Not a warning: a flood of them would flood the log.
        log::info!("{self}");
        let minutes = wait.div_ceil(60);
        let page = Template::render(
            "error/retry",
            context! { code: status.code, reason: status.reason_lossy(), busy: status.code == 503, minutes },
        );
        let mut response = page.respond_to(req)?;
        response.set_status(status);
        response.set_raw_header("Retry-After", wait.to_string());
        Ok(response)
    }
}

/// The status of an error whose page a catcher renders.
fn status_of(error: &Error) -> Status {
    match error {
        // The database is out of reach (down, or no connection freed up in time): the same
        // 503 page as a session store that is down, not a 500.
        Error::Database(
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
        ) => Status::ServiceUnavailable,
        Error::Store(rocket_server_sessions::store::StoreError::Backend(_)) => {
            Status::ServiceUnavailable
        }
        _ => Status::InternalServerError,
    }
}

/// The catchers that render error pages from templates (each area registers its own too).
pub fn catchers() -> Vec<Catcher> {
    catchers![not_found, forbidden, internal_error, any_error]
}

/// A refused CSRF check (the site's only 403), as Django words it; why, as Django does, only
/// with `rango.debug` (a reason tells an attacker which part of a forged request to mend).
#[catch(403)]
fn forbidden(req: &Request<'_>) -> Template {
    let failure = rocket_server_sessions::csrf::csrf_failure(req);
    let debug = req
        .rocket()
        .state::<crate::rango::RangoConfig>()
        .is_some_and(|config| config.debug);
    let reason = failure.filter(|_| debug).map(|reason| reason.to_string());
    Template::render("error/403", context! { csrf: failure.is_some(), reason })
}

#[catch(404)]
fn not_found(req: &Request<'_>) -> Template {
    Template::render("error/404", context! { path: req.uri().path().as_str() })
}

#[catch(500)]
fn internal_error() -> Template {
    Template::render("error/500", context! {})
}

#[catch(default)]
fn any_error(status: Status, _: &Request<'_>) -> Template {
    Template::render(
        "error/default",
        context! { code: status.code, reason: status.reason_lossy() },
    )
}
