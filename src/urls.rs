//! The site's URL rules, shared by its areas (`rango`, `accounts`): pages live at slashed URLs,
//! as Django's do, and a page's URL without its slash redirects to it (Django's
//! `APPEND_SLASH`). This module imports no area, so the areas depend on it and not on each
//! other for it.

use rocket::http::uri::Origin;
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::Redirect;
use rocket::{get, routes, Route};

/// The routes of the URL rules: the slash appended to a page's URL.
pub fn routes() -> Vec<Route> {
    routes![append_slash]
}

/// A guard that passes only requests whose path ends with a slash. Rocket matches `/rango` and
/// `/rango/` alike; the pages are at the slashed URLs, as Django's are.
pub struct Slashed;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Slashed {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        if req.uri().path().ends_with('/') {
            Outcome::Success(Slashed)
        } else {
            Outcome::Forward(Status::NotFound)
        }
    }
}

/// The site's pages, which are served at their slashed URLs, without their slash.
const SLASHED_PAGES: &[&str] = &[
    "/rango",
    "/rango/about",
    "/rango/register",
    "/rango/login",
    "/rango/logout",
    "/rango/restricted",
    "/rango/password",
    "/rango/sessions",
];

/// Whether `path` (without its slash) is one of the site's pages: a fixed one, or a
/// category's (`/rango/category/<slug>`).
fn is_page(path: &str) -> bool {
    let category = path
        .strip_prefix("/rango/category/")
        .is_some_and(|slug| !slug.is_empty() && !slug.contains('/'));
    category || SLASHED_PAGES.contains(&path)
}

/// Django's `APPEND_SLASH`: a page's URL without its slash redirects permanently to the
/// slashed one, query kept; anything else is not found.
#[get("/<_..>", rank = 20)]
fn append_slash(uri: &Origin<'_>) -> Option<Redirect> {
    let path = uri.path();
    if !is_page(path.as_str()) {
        return None;
    }
    let target = match uri.query() {
        Some(query) => format!("{path}/?{query}"),
        None => format!("{path}/"),
    };
    Some(Redirect::moved(target))
}
