//! Store outages. A store that is down at launch stops the launch with an error naming its
//! URL. One that goes down while serving turns the pages that need a session into a 503 page
//! saying the session store is unavailable, with a logged error and no panic, while pages that
//! need no session keep working; when it comes back, requests succeed again without restarting
//! the server. `cached_db` keeps serving from SQL while its Redis is down.
//!
//! The stores that go down are the test's own: a private `redis-server` on a free port that the
//! test kills, freezes and restarts, and a TCP proxy in front of the machine's PostgreSQL that the
//! test cuts and restores. The machine's shared services are never stopped.

use std::time::{Duration, Instant};

use crate::services::PgSchema;
use crate::support::*;
use rocket::error::ErrorKind;
use serde_json::{json, Value};
use tempfile::TempDir;

/// Redis counts as down after this long without an answer (the default is 2000 ms).
const CACHE_TIMEOUT_MS: u64 = 300;

/// A stylesheet: a page that never touches the session.
const CSS: &str = "/static/css/rango.css";

/// How long a test waits for a recovered store to serve again.
const RECOVERY: Duration = Duration::from_secs(60);

/// The settings of a server whose visits count on every request and whose sessions are in the
/// `backend` store at `cache_url`, over a SQLite database in `dir`.
fn redis_env(dir: &TempDir, backend: &str, cache_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ROCKET_DATABASES", databases_env(&sqlite_url(dir.path()))),
        ("ROCKET_RANGO", "{visit_interval=0}".into()),
        (
            "ROCKET_SESSION",
            format!(
                "{{backend=\"{backend}\",redis={{url=\"{cache_url}\",\
                 timeout_ms={CACHE_TIMEOUT_MS}}}}}"
            ),
        ),
    ]
}

/// Launches the real binary with `env`, which must fail: returns what it printed.
fn launch_fails(env: &[(&str, String)]) -> String {
    match Server::launch(env) {
        Launch::Serving(server) => panic!("it launched:\n{}", server.output()),
        Launch::Exited(status, output) => {
            assert!(!status.success(), "exit status {status}:\n{output}");
            output
        }
    }
}

/// Ignites the site in-process with `settings` over a SQLite database; it must fail in the
/// fairing named `fairing`.
async fn ignite_fails_in(settings: &[(&str, Value)], fairing: &str) {
    let dir = TempDir::new().expect("temp dir");
    let rocket = rango::rocket_with(crate::common::figment(&dir, settings));
    let error = rocket.ignite().await.expect_err("ignite fails");
    match error.kind() {
        ErrorKind::FailedFairings(failed) => assert!(
            failed.iter().any(|info| info.name.contains(fairing)),
            "failed fairings: {:?}",
            failed.iter().map(|info| info.name).collect::<Vec<_>>()
        ),
        other => panic!("not a failed fairing: {other:?}"),
    }
}

#[tokio::test]
async fn a_redis_that_is_down_at_launch_stops_the_launch_with_an_error_naming_its_url() {
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    for backend in ["cache", "cached_db"] {
        ignite_fails_in(
            &[
                ("session.backend", json!(backend)),
                ("session.redis.url", json!(url)),
                ("session.redis.timeout_ms", json!(CACHE_TIMEOUT_MS)),
            ],
            "Sessions",
        )
        .await;
        let dir = TempDir::new().expect("temp dir");
        let output = launch_fails(&redis_env(&dir, backend, &url));
        assert!(
            output.contains(&format!("cannot reach Redis at {url}")),
            "{backend}: the error names the URL:\n{output}"
        );
        assert!(!output.contains("panicked"), "{output}");
    }
}

#[tokio::test]
async fn a_postgresql_that_is_down_at_launch_stops_the_launch_with_an_error_naming_its_url() {
    let url = format!("postgres://postgres@127.0.0.1:{}/test", free_port());
    ignite_fails_in(
        &[
            ("databases.rango.url", json!(url)),
            ("databases.rango.connect_timeout", json!(1)),
        ],
        "Database",
    )
    .await;
    let output = launch_fails(&[("ROCKET_DATABASES", databases_env(&url))]);
    assert!(
        output.contains(&format!("cannot open {url}")),
        "the error names the URL:\n{output}"
    );
    assert!(!output.contains("panicked"), "{output}");
}

/// While the store is down: the session pages answer the 503 page (for a returning visitor,
/// whose session cannot be loaded, and for a new one, whose session cannot be saved), the
/// stylesheet is served, and the server is still up with the failure logged.
async fn pages_while_the_store_is_down(server: &mut Server, http: &Http, key: &str) {
    for (path, session) in [
        ("/rango/", Some(key)),
        ("/rango/about/", Some(key)),
        ("/rango/about/", None),
        ("/rango/", None),
    ] {
        let reply = http.get(&server.url(path), session).await;
        assert!(
            reply.is_store_unavailable(),
            "GET {path} with {session:?}: {} {}",
            reply.status,
            reply.body
        );
        assert_eq!(reply.session, None, "no cookie from a failed page");
    }
    let css = http.get(&server.url(CSS), None).await;
    assert_eq!(css.status, 200, "{}", css.body);
    assert!(css.body.contains('{'), "a stylesheet: {}", css.body);
    server.assert_healthy();
    let output = server.output();
    assert!(
        output.contains("loading a session failed") && output.contains("saving a session failed"),
        "the failures are logged:\n{output}"
    );
}

/// Polls `path` (with `session`) until it answers 200, and returns that reply.
async fn once_it_recovers(
    server: &Server,
    http: &Http,
    path: &str,
    session: Option<&str>,
) -> Reply {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let reply = http.get(&server.url(path), session).await;
        if reply.status == 200 {
            return reply;
        }
        assert!(
            reply.is_store_unavailable(),
            "only the 503 page while it recovers: {} {}",
            reply.status,
            reply.body
        );
        assert!(Instant::now() < deadline, "no recovery within {RECOVERY:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A new visitor's session key, after two visits counted (`visit_interval = 0`).
async fn two_visits(server: &Server, http: &Http) -> String {
    let first = http.get(&server.url("/rango/"), None).await;
    let key = first.session.clone().expect("a session");
    assert_eq!(first.visits(), 1);
    assert_eq!(
        http.get(&server.url("/rango/"), Some(&key)).await.visits(),
        2
    );
    key
}

#[tokio::test]
async fn redis_going_down_while_serving_gives_503_pages_and_recovers_without_a_restart() {
    let Some(mut redis) = RedisServer::start("redis_going_down_while_serving") else {
        return;
    };
    let dir = TempDir::new().expect("temp dir");
    let mut server = Server::start(&redis_env(&dir, "cache", &redis.url()));
    let http = Http::fresh();
    let key = two_visits(&server, &http).await;

    redis.kill();
    pages_while_the_store_is_down(&mut server, &http, &key).await;

    // Back, empty (it keeps nothing on disk): the old key finds nothing and a new session starts.
    redis.restart();
    let reply = once_it_recovers(&server, &http, "/rango/", Some(&key)).await;
    let key = reply.session.clone().expect("a new session");
    assert_eq!(reply.visits(), 1);
    let reply = http.get(&server.url("/rango/"), Some(&key)).await;
    assert_eq!((reply.status, reply.visits()), (200, 2));
    assert_eq!(
        redis.keys("rango:session:").len(),
        1,
        "stored in Redis again"
    );
    server.assert_healthy();
}

#[tokio::test]
async fn a_redis_that_stops_answering_gives_503_pages_instead_of_a_hang_and_recovers() {
    let Some(redis) = RedisServer::start("a_redis_that_stops_answering") else {
        return;
    };
    let dir = TempDir::new().expect("temp dir");
    let mut server = Server::start(&redis_env(&dir, "cache", &redis.url()));
    let http = Http::fresh();
    let key = http
        .get(&server.url("/rango/"), None)
        .await
        .session
        .expect("a session");

    // Frozen: the kernel still accepts connections, but nothing answers. Every request gets an
    // answer anyway (a hang would fail `get` after REQUEST_TIMEOUT).
    redis.freeze();
    pages_while_the_store_is_down(&mut server, &http, &key).await;

    // Thawed, with its data: the same session goes on.
    redis.thaw();
    let reply = once_it_recovers(&server, &http, "/rango/", Some(&key)).await;
    assert_eq!(reply.visits(), 2, "the session survived the freeze");
    server.assert_healthy();
}

#[tokio::test]
async fn postgresql_going_down_while_serving_gives_503_pages_and_recovers_without_a_restart() {
    let Some(schema) = PgSchema::create("postgresql_going_down_while_serving").await else {
        return;
    };
    let url = schema.url();
    let proxy = Proxy::start(&address_of(&url, 5432));
    let mut server = Server::start(&[
        (
            "ROCKET_DATABASES",
            databases_env(&with_address(&url, &proxy.address())),
        ),
        ("ROCKET_RANGO", "{visit_interval=0}".into()),
    ]);
    let http = Http::fresh();
    let key = two_visits(&server, &http).await;

    proxy.cut();
    pages_while_the_store_is_down(&mut server, &http, &key).await;

    // Back: the session was kept in PostgreSQL and goes on.
    proxy.restore();
    let reply = once_it_recovers(&server, &http, "/rango/", Some(&key)).await;
    assert_eq!(reply.visits(), 3);
    let reply = http.get(&server.url("/rango/about/"), None).await;
    assert_eq!((reply.status, reply.visits()), (200, 1), "new sessions too");
    server.assert_healthy();
    drop(server);
    drop(proxy);
    drop(schema);
}

#[tokio::test]
async fn cached_db_keeps_sessions_working_from_sql_while_its_redis_is_down_then_uses_it_again() {
    let Some(mut redis) = RedisServer::start("cached_db_keeps_sessions_working") else {
        return;
    };
    let dir = TempDir::new().expect("temp dir");
    let mut server = Server::start(&redis_env(&dir, "cached_db", &redis.url()));
    let http = Http::fresh();
    let cached = |redis: &RedisServer, key: &str| -> Option<String> {
        let digest = rocket_server_sessions::store::SessionKey::parse(key)
            .expect("a key")
            .digest_hex();
        redis::cmd("HGET")
            .arg(format!("rango:session:{digest}"))
            .arg("d")
            .query(&mut redis.connection())
            .expect("HGET")
    };
    let visits_in = |data: Option<String>| -> Option<u64> {
        let data: Value = serde_json::from_str(&data?).expect("JSON");
        data["visits"].as_u64()
    };

    let first = http.get(&server.url("/rango/"), None).await;
    let key = first.session.clone().expect("a session");
    assert_eq!(first.visits(), 1);
    assert_eq!(visits_in(cached(&redis, &key)), Some(1), "cached");

    redis.kill();
    for n in 2..=4 {
        let reply = http.get(&server.url("/rango/"), Some(&key)).await;
        assert_eq!((reply.status, reply.visits()), (200, n), "{}", reply.body);
    }
    let reply = http.get(&server.url("/rango/about/"), None).await;
    assert_eq!((reply.status, reply.visits()), (200, 1), "new sessions too");
    let output = server.output();
    assert!(
        output.contains("session cache unavailable, serving from the database"),
        "a warning is logged:\n{output}"
    );
    server.assert_healthy();

    // Back, empty: the next request fills it again, and reads are served from it: a count
    // planted in the cache (same version) is what the page goes on from.
    redis.restart();
    let deadline = Instant::now() + RECOVERY;
    let mut n = 4;
    while cached(&redis, &key).is_none() {
        assert!(Instant::now() < deadline, "the cache is never filled again");
        n += 1;
        let reply = http.get(&server.url("/rango/"), Some(&key)).await;
        assert_eq!((reply.status, reply.visits()), (200, n), "{}", reply.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(visits_in(cached(&redis, &key)), Some(n));
    let digest = rocket_server_sessions::store::SessionKey::parse(&key)
        .expect("a key")
        .digest_hex();
    let planted = cached(&redis, &key)
        .expect("cached")
        .replace(&format!("\"visits\":{n}"), "\"visits\":100");
    redis::cmd("HSET")
        .arg(format!("rango:session:{digest}"))
        .arg("d")
        .arg(planted)
        .query::<()>(&mut redis.connection())
        .expect("HSET");
    let reply = http.get(&server.url("/rango/about/"), Some(&key)).await;
    assert_eq!(
        (reply.status, reply.visits()),
        (200, 101),
        "read from the cache"
    );
    server.assert_healthy();
}

#[tokio::test]
async fn cached_db_waits_for_a_redis_that_stops_answering_once_not_on_every_request() {
    let Some(redis) = RedisServer::start("cached_db_waits_once") else {
        return;
    };
    let dir = TempDir::new().expect("temp dir");
    let mut server = Server::start(&redis_env(&dir, "cached_db", &redis.url()));
    let http = Http::fresh();
    let key = two_visits(&server, &http).await;

    // Frozen: connections are accepted, nothing answers, so every command waits for
    // `cache_timeout_ms` before it fails. The first request meets that; the ones after it (well
    // within the pause) go to the database without asking Redis.
    redis.freeze();
    let reply = http.get(&server.url("/rango/"), Some(&key)).await;
    assert_eq!((reply.status, reply.visits()), (200, 3), "{}", reply.body);
    let started = Instant::now();
    for n in 4..=8 {
        let reply = http.get(&server.url("/rango/"), Some(&key)).await;
        assert_eq!((reply.status, reply.visits()), (200, n), "{}", reply.body);
    }
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(CACHE_TIMEOUT_MS),
        "five requests took {waited:?}: some waited for the frozen Redis"
    );
    let output = server.output();
    assert_eq!(
        output.matches("session cache unavailable").count(),
        1,
        "one warning for the outage:\n{output}"
    );

    // Thawed: once the pause is over, the cache is used again (the next save fills it).
    redis.thaw();
    // The crate leaves Redis alone for 5 s after a failure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reply = http.get(&server.url("/rango/"), Some(&key)).await;
    assert_eq!((reply.status, reply.visits()), (200, 9));
    let digest = rocket_server_sessions::store::SessionKey::parse(&key)
        .expect("a key")
        .digest_hex();
    let cached: Option<String> = redis::cmd("HGET")
        .arg(format!("rango:session:{digest}"))
        .arg("d")
        .query(&mut redis.connection())
        .expect("HGET");
    assert!(
        cached.is_some_and(|data| data.contains("\"visits\":9")),
        "filled again"
    );
    assert!(server.output().contains("session cache available again"));
    server.assert_healthy();
}
