//! Django's `never_cache` for the accounts: a response rendered for a signed-in user, and
//! every page of the accounts (login, register, password, logout, "Your sessions", the
//! restricted page) whoever asks, carry `Cache-Control: max-age=0, no-cache, no-store,
//! must-revalidate, private`, so that no browser or proxy keeps a copy that could be shown
//! again after a logout on a shared computer (the back button, a history entry).
//!
//! A response fairing, so that no handler can forget it: it knows a signed-in request by the
//! user lookup that [`CurrentUser`](super::auth::CurrentUser) cached for the request, and the
//! accounts' pages by their routes. It runs after the session fairing, whose `private` it
//! replaces by the stronger value.

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Method;
use rocket::{Request, Response};

use super::auth;

/// The header's value, Django's `add_never_cache_headers`.
pub const NEVER_CACHE: &str = "max-age=0, no-cache, no-store, must-revalidate, private";

/// The fairing; attach it after the session fairing.
pub struct NeverCache {
    /// The accounts' routes, by method and URI.
    routes: Vec<(Method, String)>,
}

/// The fairing over the accounts' routes.
pub fn fairing() -> NeverCache {
    NeverCache {
        routes: super::routes()
            .iter()
            .map(|route| (route.method, route.uri.as_str().to_owned()))
            .collect(),
    }
}

#[rocket::async_trait]
impl Fairing for NeverCache {
    fn info(&self) -> Info {
        Info {
            name: "Never cache the accounts",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let account_page = req.route().is_some_and(|route| {
            self.routes
                .iter()
                .any(|(method, uri)| *method == route.method && uri == route.uri.as_str())
        });
        if account_page || auth::signed_in_here(req) {
            res.set_raw_header("Cache-Control", NEVER_CACHE);
        }
    }
}
