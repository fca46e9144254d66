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
}

impl<'r> Responder<'r, 'static> for Error {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        log::error!("{self}");
        Err(match self {
            // The database is out of reach (down, or no connection freed up in time): the same
            // 503 page as a session store that is down, not a 500.
            Error::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
            ) => Status::ServiceUnavailable,
            _ => Status::InternalServerError,
        })
    }
}

/// The catchers that render error pages from templates.
pub fn catchers() -> Vec<Catcher> {
    catchers![not_found, internal_error, any_error]
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
