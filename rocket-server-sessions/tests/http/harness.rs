//! What the session crate's HTTP tests and the site's share: the requests and database checks
//! of an application under test ([`App`]), routes that exercise every part of the `Session`
//! API (mounted at `/t`), and assertions on raw `Set-Cookie` headers. The site's tests include
//! this file by its path.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::time::Duration;

use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::{Client, LocalRequest, LocalResponse};
use rocket::{get, routes, Route};
use rocket_server_sessions::{Expiry, Session};
use serde_json::{json, Value};
use sqlx::SqlitePool;

/// An application under test: its local client, and the SQLite database of its sessions.
pub trait App {
    /// The local client.
    fn client(&self) -> &Client;
    /// The database the session table is in.
    fn pool(&self) -> &SqlitePool;

    /// How many session rows are stored.
    async fn session_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM session")
            .fetch_one(self.pool())
            .await
            .expect("count")
    }

    /// The stored row of the session `key`: (data, expires, version).
    async fn row(&self, key: &str) -> Option<(String, i64, i64)> {
        let digest = rocket_server_sessions::store::SessionKey::parse(key)
            .expect("well-formed key")
            .digest();
        sqlx::query_as("SELECT data, expires, version FROM session WHERE key_hash = ?1")
            .bind(&digest[..])
            .fetch_optional(self.pool())
            .await
            .expect("select")
    }

    /// Runs `sql` with `key`'s digest bound to `?1`.
    async fn exec_on(&self, key: &str, sql: &str) {
        let digest = rocket_server_sessions::store::SessionKey::parse(key)
            .expect("well-formed key")
            .digest();
        sqlx::query(sql)
            .bind(&digest[..])
            .execute(self.pool())
            .await
            .expect("sql");
    }

    /// Moves the stored expiry of the session `key` to `unix` seconds.
    async fn set_expires(&self, key: &str, unix: i64) {
        self.exec_on(
            key,
            &format!("UPDATE session SET expires = {unix} WHERE key_hash = ?1"),
        )
        .await;
    }

    /// GET `uri` with the client's cookies.
    async fn get(&self, uri: &str) -> LocalResponse<'_> {
        self.client().get(uri.to_owned()).dispatch().await
    }

    /// The body of GET `uri`.
    async fn body(&self, uri: &str) -> String {
        self.get(uri).await.into_string().await.expect("a body")
    }

    /// A GET of `uri` carrying `sessionid=value`, to dispatch later (several at once, say).
    fn request_with(&self, uri: &str, value: &str) -> LocalRequest<'_> {
        self.client()
            .get(uri.to_owned())
            .cookie(Cookie::new("sessionid", value.to_owned()))
    }

    /// GET `uri` carrying `sessionid=value` (for untracked clients).
    async fn get_with(&self, uri: &str, value: &str) -> LocalResponse<'_> {
        self.client()
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
        cached,
        slow_set,
        slow_flush,
        slow_cycle,
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

/// Sets `key` (unless `value` is `-`, which flushes) and answers with the handler's own
/// `Cache-Control: <cache>`.
#[get("/cached/<key>/<value>?<cache>")]
fn cached(session: Session<'_>, key: &str, value: &str, cache: &str) -> WithCacheControl {
    if value == "-" {
        session.flush();
    } else {
        session.insert(key, value).expect("a string serializes");
    }
    WithCacheControl {
        body: "ok",
        cache: rocket::http::Header::new("Cache-Control", cache.to_owned()),
    }
}

/// A body with the handler's own `Cache-Control` header.
#[derive(rocket::Responder)]
struct WithCacheControl {
    body: &'static str,
    cache: rocket::http::Header<'static>,
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

#[get("/slow_cycle/<ms>")]
async fn slow_cycle(session: Session<'_>, ms: u64) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    session.cycle_key();
    "ok"
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
