//! A bounded load test on loopback: the site, with the test routes under `/t`, launched on a
//! real port (Rocket's HTTP server, not the local client), and 64 concurrent HTTP clients:
//! half the requests from new visitors (each gets a fresh session with a count of 1), half
//! from returning ones (each request counts, `visit_interval = 0`), and among those, some
//! clients changing different keys of one shared session at once. It asserts zero 5xx (every
//! answer a 200), zero lost keys (every key of the shared session, with its last value), zero
//! lost sessions (one stored per new visit), and every returning client's count right; it
//! prints the numbers to stderr.
//!
//! Size: `RANGO_LOAD_REQUESTS` requests in all (default 20,000 in a release build and 4,000 in
//! a debug one, to stay well under half a minute on two cores). The full size:
//!
//! ```sh
//! cargo test --release --test load -- --nocapture
//! RANGO_LOAD_REQUESTS=20000 cargo test --test load     # debug build, slower
//! ```
//!
//! SQLite always; PostgreSQL and Redis too when `SESSIONS_TEST_POSTGRES_URL` and
//! `SESSIONS_TEST_REDIS_URL` are set. The stores' runs take turns, so each has both cores.

use std::collections::HashSet;
use std::time::Instant;

use crate::services::{PgSchema, RedisPrefix};
use crate::support::*;
use rango::db::DbPool;
use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::Mutex;

/// Concurrent clients.
const CLIENTS: usize = 64;
/// Of them, clients that are always new visitors (no cookie).
const NEW_VISITORS: usize = 32;
/// Of them, clients that change their own key of one shared session.
const SHARED_WRITERS: usize = 8;
/// The rest are returning visitors with a session of their own.
const RETURNING: usize = CLIENTS - NEW_VISITORS - SHARED_WRITERS;

/// One store's run at a time: each gets both cores.
static TURN: Mutex<()> = Mutex::const_new(());

fn requests() -> usize {
    let default = if cfg!(debug_assertions) {
        4_000
    } else {
        20_000
    };
    std::env::var("RANGO_LOAD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(CLIENTS * 2)
}

/// The site launched in-process on a free port, on a runtime and thread of its own; shut down
/// when dropped.
struct Site {
    port: u16,
    shutdown: Option<rocket::Shutdown>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Site {
    fn launch(figment: Figment) -> Site {
        let port = free_port();
        let figment = figment
            .merge(Serialized::global("address", "127.0.0.1"))
            .merge(Serialized::global("port", port))
            .merge(Serialized::global("rango.visit_interval", 0));
        let (ignited, shutdown) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let rocket = rango::rocket_with(figment)
                    .mount("/t", crate::common::test_routes())
                    .ignite()
                    .await
                    .map_err(|e| e.to_string());
                let rocket = match rocket {
                    Ok(rocket) => rocket,
                    Err(e) => {
                        let _ = ignited.send(Err(e));
                        return;
                    }
                };
                let _ = ignited.send(Ok(rocket.shutdown()));
                if let Err(e) = rocket.launch().await {
                    panic!("the site stopped: {e}");
                }
            });
        });
        let shutdown = shutdown
            .recv()
            .expect("the site's thread")
            .unwrap_or_else(|e| panic!("the site did not ignite: {e}"));
        wait_for("the site to listen", STARTUP, || listening(port));
        Site {
            port,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.notify();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    new: usize,
    returning: usize,
    shared: usize,
    server_errors: usize,
    other_failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.new += other.new;
        self.returning += other.returning;
        self.shared += other.shared;
        self.server_errors += other.server_errors;
        self.other_failures.extend(other.other_failures);
    }

    /// Counts `reply`; `true` if it is a 200.
    fn check(&mut self, what: &str, reply: &Reply) -> bool {
        if reply.status == 200 {
            return true;
        }
        if reply.status >= 500 {
            self.server_errors += 1;
        }
        if self.other_failures.len() < 5 {
            self.other_failures
                .push(format!("{what}: {} {}", reply.status, reply.body));
        }
        false
    }
}

/// `n` requests as a new visitor: each a 200 with a count of 1 and a fresh session.
async fn new_visitor(site: String, http: Http, n: usize) -> (Tally, Vec<String>) {
    let mut tally = Tally::default();
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let path = if i % 2 == 0 {
            "/rango/"
        } else {
            "/rango/about/"
        };
        let reply = http.get(&format!("{site}{path}"), None).await;
        tally.new += 1;
        if tally.check(path, &reply) {
            assert_eq!(reply.visits(), 1, "a new visitor's first visit");
            keys.push(reply.session.expect("a new session"));
        }
    }
    (tally, keys)
}

/// `n` requests as one returning visitor: the first starts the session, and each one after
/// shows a count one higher.
async fn returning_visitor(site: String, http: Http, n: usize) -> (Tally, String, u64) {
    let mut tally = Tally::default();
    let first = http.get(&format!("{site}/rango/"), None).await;
    tally.new += 1;
    assert!(tally.check("first visit", &first), "{}", first.body);
    let key = first.session.clone().expect("a session");
    let mut count = first.visits();
    assert_eq!(count, 1);
    for i in 1..n {
        let path = if i % 2 == 0 {
            "/rango/"
        } else {
            "/rango/about/"
        };
        let reply = http.get(&format!("{site}{path}"), Some(&key)).await;
        tally.returning += 1;
        if tally.check(path, &reply) {
            assert_eq!(reply.visits(), count + 1, "a returning visitor's count");
            count += 1;
        }
    }
    (tally, key, count)
}

/// `n` writes of `key` into the shared session, values 1 to `n`.
async fn shared_writer(site: String, http: Http, shared: String, key: String, n: usize) -> Tally {
    let mut tally = Tally::default();
    for value in 1..=n {
        let reply = http
            .get(&format!("{site}/t/set/{key}/{value}"), Some(&shared))
            .await;
        tally.shared += 1;
        tally.check("shared write", &reply);
    }
    tally
}

/// Runs the load against the site on `figment`; `stored_sessions` counts the sessions its
/// store holds.
async fn load(store: &str, figment: Figment, stored_sessions: impl AsyncFn() -> usize) {
    let _turn = TURN.lock().await;
    let site = Site::launch(figment);
    let base = site.url("");
    let http = Http::pooled();
    let total = requests();
    // Client `i`'s share of the requests: all of them in all.
    let share = |i: usize| total / CLIENTS + usize::from(i < total % CLIENTS);

    // The shared session, with a key of its own.
    let created = http.get(&site.url("/t/set/owner/1"), None).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let shared = created.session.expect("the shared session");

    let started = Instant::now();
    let mut new_visitors = Vec::new();
    for i in 0..NEW_VISITORS {
        new_visitors.push(tokio::spawn(new_visitor(
            base.clone(),
            http.clone(),
            share(i),
        )));
    }
    let mut returning = Vec::new();
    for i in NEW_VISITORS..NEW_VISITORS + RETURNING {
        returning.push(tokio::spawn(returning_visitor(
            base.clone(),
            http.clone(),
            share(i),
        )));
    }
    let mut writers = Vec::new();
    for (w, i) in (NEW_VISITORS + RETURNING..CLIENTS).enumerate() {
        writers.push(tokio::spawn(shared_writer(
            base.clone(),
            http.clone(),
            shared.clone(),
            format!("w{w}"),
            share(i),
        )));
    }

    let mut tally = Tally::default();
    let mut new_keys = HashSet::new();
    let mut visitors = Vec::new();
    for task in new_visitors {
        let (t, keys) = task.await.expect("a new visitor");
        tally.add(t);
        new_keys.extend(keys);
    }
    for task in returning {
        let (t, key, count) = task.await.expect("a returning visitor");
        tally.add(t);
        visitors.push((key, count));
    }
    for task in writers {
        tally.add(task.await.expect("a shared-session writer"));
    }
    let elapsed = started.elapsed();
    let sent = tally.new + tally.returning + tally.shared;

    // Every key of the shared session, with its last value; and each returning visitor's count
    // as stored.
    let reply = http.get(&site.url("/t/info"), Some(&shared)).await;
    let info: Value = serde_json::from_str(&reply.body).expect("JSON");
    let keys: HashSet<&str> = info["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut lost = Vec::new();
    for (w, i) in (NEW_VISITORS + RETURNING..CLIENTS).enumerate() {
        let key = format!("w{w}");
        let value = http
            .get(&site.url(&format!("/t/get/{key}")), Some(&shared))
            .await
            .body;
        if !keys.contains(key.as_str()) || value != format!("\"{}\"", share(i)) {
            lost.push(format!("{key} = {value}"));
        }
    }
    if !keys.contains("owner") {
        lost.push("owner".into());
    }
    let mut wrong_counts = 0;
    for (i, (key, count)) in (NEW_VISITORS..).zip(&visitors) {
        let stored = http.get(&site.url("/t/get/visits"), Some(key)).await.body;
        if stored != count.to_string() || *count != share(i) as u64 {
            wrong_counts += 1;
        }
    }
    let sessions = stored_sessions().await;
    drop(site);

    say(&format!(
        "load on {store}: {sent} requests ({} new visitors, {} returning, {} shared-session \
         writes) from {CLIENTS} concurrent clients in {:.2} s: {:.0} req/s; {} 5xx, {} lost \
         keys, {wrong_counts} wrong counts of {RETURNING}; {sessions} sessions stored",
        tally.new,
        tally.returning,
        tally.shared,
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        tally.server_errors,
        lost.len(),
    ));
    assert_eq!(tally.server_errors, 0, "{:?}", tally.other_failures);
    assert!(
        tally.other_failures.is_empty(),
        "{:?}",
        tally.other_failures
    );
    assert!(lost.is_empty(), "lost keys of the shared session: {lost:?}");
    assert_eq!(wrong_counts, 0, "returning visitors' counts");
    let new_visits: usize = (0..NEW_VISITORS).map(share).sum();
    assert_eq!(
        new_keys.len(),
        new_visits,
        "a distinct session for every new visit"
    );
    assert_eq!(
        sessions,
        new_visits + RETURNING + 1,
        "one stored session per new visit, per returning visitor, and the shared one"
    );
}

/// How many rows the session table of `pool` has; closes the pool.
async fn stored_rows(pool: DbPool) -> usize {
    let rows: i64 = rango::on_pool!(&pool, p => sqlx::query_scalar("SELECT COUNT(*) FROM session")
        .fetch_one(p)
        .await)
    .expect("count");
    rango::on_pool!(&pool, p => p.close().await);
    usize::try_from(rows).expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_of_new_and_returning_visitors_on_sqlite_loses_nothing_and_never_fails() {
    let dir = TempDir::new().expect("temp dir");
    let url = sqlite_url(dir.path());
    load("SQLite", crate::common::figment(&dir, &[]), async || {
        stored_rows(DbPool::Sqlite(
            sqlx::SqlitePool::connect(&url).await.expect("open"),
        ))
        .await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_of_new_and_returning_visitors_on_postgresql_loses_nothing_and_never_fails() {
    let Some(schema) = PgSchema::create("a_load_on_postgresql").await else {
        return;
    };
    let dir = TempDir::new().expect("temp dir");
    let figment = crate::common::figment(&dir, &[("databases.rango.url", json!(schema.url()))]);
    let url = schema.url();
    load("PostgreSQL", figment, async || {
        stored_rows(DbPool::Postgres(
            sqlx::PgPool::connect(&url).await.expect("connect"),
        ))
        .await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_of_new_and_returning_visitors_on_redis_loses_nothing_and_never_fails() {
    let Some(redis) = RedisPrefix::create("a_load_on_redis") else {
        return;
    };
    let dir = TempDir::new().expect("temp dir");
    let figment = crate::common::figment(
        &dir,
        &[
            ("session.backend", json!("cache")),
            ("session.redis.url", json!(redis.url)),
            ("session.redis.key_prefix", json!(redis.prefix)),
        ],
    );
    load("Redis", figment, async || redis.keys().len()).await;
}
