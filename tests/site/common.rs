//! Fixtures: a Rango client per test with its own temporary database, routes that exercise
//! every part of the `Session` API, and assertions on raw `Set-Cookie` headers.
#![allow(dead_code)] // each test crate uses a different part of this module

use std::time::Duration;

use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::{Client, LocalRequest, LocalResponse};
use rocket::{get, routes, Route};
use rocket_db_pools::Database;
use serde_json::{json, Value};
use sqlx::SqlitePool;
use tempfile::TempDir;

use rango::db::Db;
use rocket_server_sessions::{Expiry, Session};

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

    /// The application's database pool.
    pub fn pool(&self) -> &SqlitePool {
        Db::fetch(self.client.rocket())
            .expect("db attached")
            .pool()
            .as_sqlite()
            .expect("a SQLite database")
    }

    /// How many session rows are stored.
    pub async fn session_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM session")
            .fetch_one(self.pool())
            .await
            .expect("count")
    }

    /// The stored row of the session `key`: (data, expires, version).
    pub async fn row(&self, key: &str) -> Option<(String, i64, i64)> {
        let digest = rocket_server_sessions::SessionKey::parse(key)
            .expect("well-formed key")
            .digest();
        sqlx::query_as("SELECT data, expires, version FROM session WHERE key_hash = ?1")
            .bind(&digest[..])
            .fetch_optional(self.pool())
            .await
            .expect("select")
    }

    /// Runs `sql` with `key`'s digest bound to `?1`.
    pub async fn exec_on(&self, key: &str, sql: &str) {
        let digest = rocket_server_sessions::SessionKey::parse(key)
            .expect("well-formed key")
            .digest();
        sqlx::query(sql)
            .bind(&digest[..])
            .execute(self.pool())
            .await
            .expect("sql");
    }

    /// Moves the stored expiry of the session `key` to `unix` seconds.
    pub async fn set_expires(&self, key: &str, unix: i64) {
        self.exec_on(
            key,
            &format!("UPDATE session SET expires = {unix} WHERE key_hash = ?1"),
        )
        .await;
    }

    /// GET `uri` with the client's cookies.
    pub async fn get(&self, uri: &str) -> LocalResponse<'_> {
        self.client.get(uri.to_owned()).dispatch().await
    }

    /// The body of GET `uri`.
    pub async fn body(&self, uri: &str) -> String {
        self.get(uri).await.into_string().await.expect("a body")
    }

    /// A GET of `uri` carrying `sessionid=value`, to dispatch later (several at once, say).
    pub fn request_with(&self, uri: &str, value: &str) -> LocalRequest<'_> {
        self.client
            .get(uri.to_owned())
            .cookie(Cookie::new("sessionid", value.to_owned()))
    }

    /// GET `uri` carrying `sessionid=value` (for untracked clients).
    pub async fn get_with(&self, uri: &str, value: &str) -> LocalResponse<'_> {
        self.client
            .get(uri.to_owned())
            .cookie(Cookie::new("sessionid", value.to_owned()))
            .dispatch()
            .await
    }
}

/// The raw `Set-Cookie` headers of a response.
pub fn set_cookies(response: &LocalResponse<'_>) -> Vec<String> {
    response
        .headers()
        .get("Set-Cookie")
        .map(str::to_owned)
        .collect()
}

/// The one raw `Set-Cookie` header for `sessionid`, if any (fails on several).
pub fn session_set_cookie(response: &LocalResponse<'_>) -> Option<String> {
    let mut found: Vec<String> = set_cookies(response)
        .into_iter()
        .filter(|c| c.starts_with("sessionid="))
        .collect();
    assert!(found.len() <= 1, "several session cookies: {found:?}");
    found.pop()
}

/// The value of a raw `Set-Cookie` header, percent-decoded as a browser sends it back.
pub fn cookie_value(header: &str) -> String {
    Cookie::parse_encoded(header.to_owned())
        .expect("valid Set-Cookie")
        .value()
        .to_owned()
}

/// The session key the response set.
pub fn new_key(response: &LocalResponse<'_>) -> String {
    cookie_value(&session_set_cookie(response).expect("a session cookie"))
}

/// The number in `<span id="visits">N</span>`, which must occur exactly once.
pub fn visits(body: &str) -> u64 {
    let marker = "<span id=\"visits\">";
    assert_eq!(body.matches(marker).count(), 1, "one #visits element");
    let start = body.find(marker).expect("visits element") + marker.len();
    let end = start + body[start..].find("</span>").expect("closing span");
    body[start..end].parse().expect("a number")
}

/// The `Vary` header.
pub fn vary(response: &LocalResponse<'_>) -> Option<String> {
    response.headers().get_one("Vary").map(str::to_owned)
}

/// Routes that drive the `Session` API, mounted under `/t`.
pub fn test_routes() -> Vec<Route> {
    routes![
        get_value,
        set_value,
        remove_value,
        clear,
        flush,
        flush_then_set,
        cycle,
        set_expiry,
        info,
        fail,
        slow_set,
        slow_flush,
        plain,
        twice,
        test_cookie_set,
        test_cookie_check,
        test_cookie_delete,
        deep,
        slow_remove,
        slow_get,
    ]
}

#[get("/get/<key>")]
fn get_value(session: Session<'_>, key: &str) -> String {
    session
        .get_value(key)
        .map_or_else(|| "none".into(), |v| v.to_string())
}

#[get("/set/<key>/<value>")]
fn set_value(session: Session<'_>, key: &str, value: &str) -> &'static str {
    session.insert(key, value).expect("a string serializes");
    "ok"
}

#[get("/remove/<key>")]
fn remove_value(session: Session<'_>, key: &str) -> String {
    session
        .remove(key)
        .map_or_else(|| "none".into(), |v| v.to_string())
}

#[get("/clear")]
fn clear(session: Session<'_>) -> &'static str {
    session.clear();
    "ok"
}

#[get("/flush")]
fn flush(session: Session<'_>) -> &'static str {
    session.flush();
    "ok"
}

#[get("/flush_then_set/<key>/<value>")]
fn flush_then_set(session: Session<'_>, key: &str, value: &str) -> &'static str {
    session.flush();
    session.insert(key, value).expect("a string serializes");
    "ok"
}

#[get("/cycle")]
fn cycle(session: Session<'_>) -> &'static str {
    session.cycle_key();
    "ok"
}

/// `mode`: "browser", "default", "age:<seconds>" or "at:<unix seconds>".
#[get("/expiry/<mode>")]
fn set_expiry(session: Session<'_>, mode: &str) -> &'static str {
    let expiry = match mode.split_once(':') {
        None if mode == "browser" => Expiry::BrowserClose,
        Some(("age", s)) => Expiry::Age(time::Duration::seconds(s.parse().expect("seconds"))),
        Some(("at", s)) => Expiry::At(
            time::OffsetDateTime::from_unix_timestamp(s.parse().expect("unix seconds"))
                .expect("a date"),
        ),
        _ => Expiry::Default,
    };
    session.set_expiry(expiry);
    "ok"
}

#[get("/info")]
fn info(session: Session<'_>) -> String {
    json!({
        "key": session.key(),
        "empty": session.is_empty(),
        "keys": session.keys(),
        "contains_a": session.contains("a"),
        "age": session.expiry_age().whole_seconds(),
        "date": session.expiry_date().unix_timestamp(),
        "browser_close": session.expire_at_browser_close(),
        "expiry": format!("{:?}", session.expiry()),
        "modified": session.is_modified(),
    })
    .to_string()
}

/// Changes the session, then answers with `status` (a 5xx must not save).
#[get("/fail/<status>/<key>/<value>")]
fn fail(session: Session<'_>, status: u16, key: &str, value: &str) -> (Status, &'static str) {
    session.insert(key, value).expect("a string serializes");
    (Status::from_code(status).expect("a status"), "failed")
}

/// Loads the session, waits `ms`, then sets `key`: two of these overlap.
#[get("/slow_set/<key>/<value>/<ms>")]
async fn slow_set(session: Session<'_>, key: &str, value: &str, ms: u64) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    session.insert(key, value).expect("a string serializes");
    "ok"
}

#[get("/slow_remove/<key>/<ms>")]
async fn slow_remove(session: Session<'_>, key: &str, ms: u64) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    session.remove(key);
    "ok"
}

#[get("/slow_get/<key>/<ms>")]
async fn slow_get(session: Session<'_>, key: &str, ms: u64) -> String {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    session
        .get_value(key)
        .map_or_else(|| "none".into(), |v| v.to_string())
}

#[get("/slow_flush/<ms>")]
async fn slow_flush(session: Session<'_>, ms: u64) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    session.flush();
    "ok"
}

/// A page that never asks for the session.
#[get("/plain")]
fn plain() -> &'static str {
    "plain"
}

/// Two `Session` guards in one handler: one load.
#[get("/twice")]
fn twice(a: Session<'_>, b: Session<'_>) -> String {
    a.insert("a", 1).expect("serializes");
    b.get::<i64>("a").expect("same session").to_string()
}

#[get("/testcookie/set")]
fn test_cookie_set(session: Session<'_>) -> &'static str {
    session.set_test_cookie();
    "ok"
}

#[get("/testcookie/check")]
fn test_cookie_check(session: Session<'_>) -> &'static str {
    if session.test_cookie_worked() {
        "worked"
    } else {
        "not set"
    }
}

#[get("/testcookie/delete")]
fn test_cookie_delete(session: Session<'_>) -> &'static str {
    session.delete_test_cookie();
    "ok"
}

/// Stores a value nested `levels` arrays deep.
#[get("/deep/<levels>")]
fn deep(session: Session<'_>, levels: usize) -> &'static str {
    let value = (0..levels).fold(json!(1), |inner, _| json!([inner]));
    session.insert("deep", value).expect("serializes");
    "ok"
}

/// Parses the JSON of `/t/info`.
pub async fn info_of(response: LocalResponse<'_>) -> Value {
    serde_json::from_str(&response.into_string().await.expect("body")).expect("json")
}
