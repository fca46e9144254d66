//! Fixtures: a Rango client per test with its own temporary database and the routes of the
//! session crate's test harness (`harness.rs`, included by path) mounted at `/t`; Rocket's
//! configuration read under a lock.
#![allow(dead_code)] // each test crate uses a different part of this module

use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use rocket::local::asynchronous::Client;
use rocket_db_pools::Database;
use serde_json::Value;
use sqlx::SqlitePool;
use tempfile::TempDir;

use rango::db::Db;

pub use crate::harness::*;

/// A Rango client on its own temporary database.
pub struct TestApp {
    pub client: Client,
    _dir: TempDir,
}

/// Held while the process's environment is read into a figment, or changed: tests of one
/// binary run in parallel, and one of them sets `ROCKET_*` variables.
static ENVIRONMENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `rocket::Config::figment()` (Rocket.toml, the profile, `ROCKET_*` variables), read while no
/// test changes the environment.
pub fn rocket_figment() -> Figment {
    let _reading = ENVIRONMENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    rocket::Config::figment()
}

/// `rocket::Config::figment()` with the environment variables `vars` set, which no other test
/// sees.
pub fn rocket_figment_with_env(vars: &[(&str, &str)]) -> Figment {
    let _changing = ENVIRONMENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (name, value) in vars {
        std::env::set_var(name, value);
    }
    let figment = rocket::Config::figment();
    for (name, _) in vars {
        std::env::remove_var(name);
    }
    figment
}

/// Rocket's own configuration (Rocket.toml, profile, env) with a temporary database, logging
/// off, and `settings` (dotted keys, e.g. "session.cookie_age") over it in every profile.
pub fn figment(dir: &TempDir, settings: &[(&str, Value)]) -> Figment {
    let url = format!("sqlite://{}/rango.sqlite3?mode=rwc", dir.path().display());
    let mut figment = rocket_figment()
        .merge(Serialized::global("databases.rango.url", url))
        .merge(Serialized::global("log_level", "off"));
    for (key, value) in settings {
        figment = figment.merge(Serialized::global(key, value));
    }
    figment
}

impl TestApp {
    /// A client that keeps cookies between requests, as a browser does.
    pub async fn tracked(settings: &[(&str, Value)]) -> TestApp {
        let dir = TempDir::new().expect("temp dir");
        let rocket = rango::rocket_with(figment(&dir, settings)).mount("/t", test_routes());
        let client = Client::tracked(rocket).await.expect("valid rocket");
        TestApp { client, _dir: dir }
    }

    /// A client that sends only the cookies a test gives it.
    pub async fn untracked(settings: &[(&str, Value)]) -> TestApp {
        let dir = TempDir::new().expect("temp dir");
        let rocket = rango::rocket_with(figment(&dir, settings)).mount("/t", test_routes());
        let client = Client::untracked(rocket).await.expect("valid rocket");
        TestApp { client, _dir: dir }
    }

    /// An untracked client on `figment` as it is (a test that shares a database between
    /// instances gives the same URL to several).
    pub async fn on(figment: Figment) -> TestApp {
        let dir = TempDir::new().expect("temp dir");
        let rocket = rango::rocket_with(figment).mount("/t", test_routes());
        let client = Client::untracked(rocket).await.expect("valid rocket");
        TestApp { client, _dir: dir }
    }
}

impl App for TestApp {
    fn client(&self) -> &Client {
        &self.client
    }

    fn pool(&self) -> &SqlitePool {
        Db::fetch(self.client.rocket())
            .expect("db attached")
            .pool()
            .as_sqlite()
            .expect("a SQLite database")
    }
}

/// The number in `<span id="visits">N</span>`, which must occur exactly once.
pub fn visits(body: &str) -> u64 {
    let marker = "<span id=\"visits\">";
    assert_eq!(body.matches(marker).count(), 1, "one #visits element");
    let start = body.find(marker).expect("visits element") + marker.len();
    let end = start + body[start..].find("</span>").expect("closing span");
    body[start..end].parse().expect("a number")
}

/// The CSRF token in the page's first form.
pub fn csrf_token(page: &str) -> String {
    let marker = "name=\"csrfmiddlewaretoken\" value=\"";
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no CSRF token in: {page}"))
        + marker.len();
    page[start..start + 64].to_owned()
}

/// `fields` as a form body (`application/x-www-form-urlencoded`).
pub fn form_body(fields: &[(&str, &str)]) -> String {
    let pairs: Vec<String> = fields
        .iter()
        .map(|(name, value)| {
            format!(
                "{name}={}",
                rocket::http::RawStr::new(value).percent_encode()
            )
        })
        .collect();
    pairs.join("&")
}

/// Registers `username` (if new: e-mail `a@example.com`, password `a long password`) and signs
/// in on `client` (a tracked client, which keeps the session), the login sent with `agent` as
/// its `User-Agent`.
pub async fn register_and_sign_in(client: &Client, username: &str, agent: &str) {
    for (form, fields) in [
        (
            "/rango/register/",
            format!("username={username}&email=a%40example.com&password=a+long+password"),
        ),
        (
            "/rango/login/",
            format!("username={username}&password=a+long+password"),
        ),
    ] {
        let page = client
            .get(form)
            .dispatch()
            .await
            .into_string()
            .await
            .expect("a page");
        let response = client
            .post(form)
            .header(rocket::http::ContentType::Form)
            .header(rocket::http::Header::new("User-Agent", agent.to_owned()))
            .body(format!(
                "csrfmiddlewaretoken={}&{fields}",
                csrf_token(&page)
            ))
            .dispatch()
            .await;
        assert!(
            response.status().code < 400,
            "{form}: {}",
            response.status()
        );
    }
}
