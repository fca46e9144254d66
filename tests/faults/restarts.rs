//! Restarts. Sessions survive a restart of the server on SQLite, PostgreSQL, Redis and Redis in
//! front of PostgreSQL: the same cookie finds the same session and its visit count goes on.
//! A server killed (SIGKILL) while writes are in flight leaves no half-written record: every
//! stored record decodes whole, and every client's count after the restart is the last one it
//! was shown, or one more for the request that was cut off (committed, but never answered).
//!
//! Each test runs the real binary; the PostgreSQL and Redis tests use the machine's services
//! through `SESSIONS_TEST_POSTGRES_URL` and `SESSIONS_TEST_REDIS_URL`, each in a schema or key prefix
//! of its own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::services::{PgSchema, RedisPrefix};
use crate::support::*;
use rango::db::DbPool;
use serde_json::Value;
use tempfile::TempDir;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Where the sessions of a test live.
enum Store {
    Sqlite(TempDir),
    Postgres(PgSchema),
    Redis(TempDir, RedisPrefix),
    CachedDb(PgSchema, RedisPrefix),
}

impl Store {
    async fn sqlite() -> Option<Store> {
        Some(Store::Sqlite(TempDir::new().expect("temp dir")))
    }

    async fn postgres(test: &str) -> Option<Store> {
        Some(Store::Postgres(PgSchema::create(test).await?))
    }

    async fn redis(test: &str) -> Option<Store> {
        Some(Store::Redis(
            TempDir::new().expect("temp dir"),
            RedisPrefix::create(test)?,
        ))
    }

    async fn cached_db(test: &str) -> Option<Store> {
        let schema = PgSchema::create(test).await?;
        Some(Store::CachedDb(schema, RedisPrefix::create(test)?))
    }

    fn name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "SQLite",
            Store::Postgres(_) => "PostgreSQL",
            Store::Redis(..) => "Redis",
            Store::CachedDb(..) => "Redis in front of PostgreSQL",
        }
    }

    /// The server's settings for this store, counting a visit on every request.
    fn env(&self) -> Vec<(&'static str, String)> {
        let session = |backend: &str, redis: &RedisPrefix| {
            format!(
                "{{backend=\"{backend}\",redis={{url=\"{}\",key_prefix=\"{}\"}}}}",
                redis.url, redis.prefix
            )
        };
        let mut env = vec![("ROCKET_RANGO", "{visit_interval=0}".to_owned())];
        match self {
            Store::Sqlite(dir) => {
                env.push(("ROCKET_DATABASES", databases_env(&sqlite_url(dir.path()))));
            }
            Store::Postgres(schema) => {
                env.push(("ROCKET_DATABASES", databases_env(&schema.url())));
            }
            Store::Redis(dir, redis) => {
                env.push(("ROCKET_DATABASES", databases_env(&sqlite_url(dir.path()))));
                env.push(("ROCKET_SESSION", session("cache", redis)));
            }
            Store::CachedDb(schema, redis) => {
                env.push(("ROCKET_DATABASES", databases_env(&schema.url())));
                env.push(("ROCKET_SESSION", session("cached_db", redis)));
            }
        }
        env
    }

    /// The data of every stored session, each checked to be a whole record: a JSON object, a
    /// future expiry and a version (SQL: `data`, `expires`, `version`; Redis: the hash's `d`,
    /// `e` and `v`). Under `cached_db`, the database's records and Redis's copies.
    async fn records(&self) -> Vec<Value> {
        match self {
            Store::Sqlite(dir) => {
                let url = sqlite_url(dir.path());
                let pool = sqlx::SqlitePool::connect(&url).await.expect("open");
                let check: String = sqlx::query_scalar("PRAGMA integrity_check")
                    .fetch_one(&pool)
                    .await
                    .expect("integrity_check");
                assert_eq!(check, "ok", "the SQLite file is intact");
                let rows = sql_records(&DbPool::Sqlite(pool.clone())).await;
                pool.close().await;
                rows
            }
            Store::Postgres(schema) => postgres_records(schema).await,
            Store::Redis(_, redis) => redis_records(redis),
            Store::CachedDb(schema, redis) => {
                let mut records = postgres_records(schema).await;
                records.extend(redis_records(redis));
                records
            }
        }
    }
}

async fn postgres_records(schema: &PgSchema) -> Vec<Value> {
    let pool = sqlx::PgPool::connect(&schema.url()).await.expect("connect");
    let rows = sql_records(&DbPool::Postgres(pool.clone())).await;
    pool.close().await;
    rows
}

async fn sql_records(pool: &DbPool) -> Vec<Value> {
    let rows: Vec<(String, i64, i64)> = rango::on_pool!(pool, pool => sqlx::query_as(
        "SELECT data, expires, version FROM session",
    )
    .fetch_all(pool)
    .await)
    .expect("select");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    rows.into_iter()
        .map(|(data, expires, version)| {
            assert!(expires > now, "expiry {expires} of {data}");
            assert!(version >= 1, "version {version} of {data}");
            whole(&data)
        })
        .collect()
}

fn redis_records(redis: &RedisPrefix) -> Vec<Value> {
    let mut conn = redis.connection().expect("Redis");
    let keys = redis.keys_on(&mut conn).expect("KEYS");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    keys.iter()
        .filter_map(|key| {
            let hash: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
                .arg(key)
                .query(&mut conn)
                .expect("HGETALL");
            let version: i64 = hash.get("v").expect("v").parse().expect("a version");
            if version == -1 {
                return None; // a tombstone of a deleted session (cached_db)
            }
            assert!(version >= 1, "{key}: {hash:?}");
            let expires: i64 = hash.get("e").expect("e").parse().expect("an expiry");
            assert!(expires > now, "{key}: {hash:?}");
            Some(whole(hash.get("d").expect("d")))
        })
        .collect()
}

/// `data` parsed, checked to be what one save of a visit writes: a JSON object with a count and
/// the time of the last visit.
fn whole(data: &str) -> Value {
    let value: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
    let visits = value["visits"].as_u64().unwrap_or_default();
    assert!(visits >= 1, "a count: {data}");
    let last = value["last_visit"].as_str().expect("a last visit");
    OffsetDateTime::parse(last, &Rfc3339).expect("an RFC 3339 date");
    value
}

/// Visits three times, restarts the server (SIGTERM, then the same command again), and the
/// same cookie goes on counting.
async fn sessions_survive_a_restart(store: Store) {
    let mut server = Server::start(&store.env());
    let http = Http::fresh();
    let first = http.get(&server.url("/rango/"), None).await;
    let key = first.session.clone().expect("a session");
    assert_eq!(first.visits(), 1);
    for n in 2..=3 {
        let reply = http.get(&server.url("/rango/about/"), Some(&key)).await;
        assert_eq!((reply.status, reply.visits()), (200, n));
    }

    let status = server.terminate();
    assert!(status.success(), "a clean shutdown: {status}");
    server.restart();

    let reply = http.get(&server.url("/rango/"), Some(&key)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.visits(), 4, "the count goes on after the restart");
    assert_eq!(
        reply.session.as_deref(),
        Some(key.as_str()),
        "the same session"
    );
    assert_eq!(
        store.records().await.len(),
        1 + usize::from(matches!(store, Store::CachedDb(..)))
    );
    server.assert_healthy();
}

#[tokio::test]
async fn sessions_survive_a_server_restart_on_sqlite() {
    sessions_survive_a_restart(Store::sqlite().await.expect("SQLite")).await;
}

#[tokio::test]
async fn sessions_survive_a_server_restart_on_postgresql() {
    if let Some(store) = Store::postgres("sessions_survive_a_server_restart_on_postgresql").await {
        sessions_survive_a_restart(store).await;
    }
}

#[tokio::test]
async fn sessions_survive_a_server_restart_on_redis() {
    if let Some(store) = Store::redis("sessions_survive_a_server_restart_on_redis").await {
        sessions_survive_a_restart(store).await;
    }
}

#[tokio::test]
async fn sessions_survive_a_server_restart_on_redis_in_front_of_postgresql() {
    if let Some(store) = Store::cached_db("sessions_survive_a_server_restart_on_cached_db").await {
        sessions_survive_a_restart(store).await;
    }
}

/// Returning visitors writing at once.
const WRITERS: usize = 12;
/// New visitors arriving at once (each request creates a session).
const NEWCOMERS: usize = 4;
/// Answered writes before the kill.
const WRITES_BEFORE_KILL: u64 = 150;

/// What one returning visitor saw before the kill.
struct Seen {
    key: String,
    /// The last count a page showed it.
    shown: u64,
    /// Whether a request of its was cut off by the kill (it may have been saved).
    cut_off: bool,
}

/// Visitors write concurrently (returning ones count up, new ones create sessions); the
/// server is killed with SIGKILL while writes are in flight; then every stored record must be
/// whole, and after a restart every returning visitor's count must be what it was last shown
/// or, if its last request was cut off, possibly one more.
async fn a_kill_mid_save_leaves_no_half_written_record(store: Store) {
    let mut server = Server::start(&store.env());
    let http = Http::pooled();
    let mut keys = Vec::new();
    for _ in 0..WRITERS {
        let reply = http.get(&server.url("/rango/"), None).await;
        assert_eq!(reply.visits(), 1);
        keys.push(reply.session.expect("a session"));
    }

    let answered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for key in keys {
        let (http, url) = (http.clone(), server.url("/rango/"));
        let (answered, stop) = (answered.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut seen = Seen {
                key,
                shown: 1,
                cut_off: false,
            };
            while !stop.load(Ordering::SeqCst) {
                match http.try_get(&url, Some(&seen.key)).await {
                    Ok(reply) if reply.status == 200 => {
                        assert_eq!(reply.visits(), seen.shown + 1, "one more each visit");
                        seen.shown += 1;
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(reply) => panic!("{}: {}", reply.status, reply.body),
                    Err(_) => {
                        seen.cut_off = true;
                        break;
                    }
                }
            }
            seen
        }));
    }
    let mut newcomers = Vec::new();
    for _ in 0..NEWCOMERS {
        let (http, url, stop) = (http.clone(), server.url("/rango/about/"), stop.clone());
        newcomers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match http.try_get(&url, None).await {
                    Ok(reply) => assert_eq!((reply.status, reply.visits()), (200, 1)),
                    Err(_) => break,
                }
            }
        }));
    }
    while answered.load(Ordering::SeqCst) < WRITES_BEFORE_KILL {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    stop.store(true, Ordering::SeqCst);
    let mut seen = Vec::new();
    for writer in writers {
        seen.push(writer.await.expect("a writer"));
    }
    for newcomer in newcomers {
        newcomer.await.expect("a newcomer");
    }
    let cut_off = seen.iter().filter(|s| s.cut_off).count();
    assert!(cut_off > 0, "the kill caught writes in flight");

    let records = store.records().await;
    assert!(records.len() >= WRITERS, "{} records", records.len());
    say(&format!(
        "{}: killed after {} answered writes, {cut_off} of {WRITERS} visitors had a request \
         cut off; {} stored records, every one whole",
        store.name(),
        answered.load(Ordering::SeqCst),
        records.len()
    ));

    server.restart();
    let http = Http::fresh();
    for visitor in &seen {
        let reply = http.get(&server.url("/rango/"), Some(&visitor.key)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let stored = reply.visits() - 1;
        let most = visitor.shown + u64::from(visitor.cut_off);
        assert!(
            (visitor.shown..=most).contains(&stored),
            "shown {}, cut off {}, stored {stored}",
            visitor.shown,
            visitor.cut_off
        );
    }
    server.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_save_leaves_no_half_written_record_on_sqlite() {
    a_kill_mid_save_leaves_no_half_written_record(Store::sqlite().await.expect("SQLite")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_save_leaves_no_half_written_record_on_postgresql() {
    if let Some(store) = Store::postgres("a_server_killed_mid_save_on_postgresql").await {
        a_kill_mid_save_leaves_no_half_written_record(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_save_leaves_no_half_written_record_on_redis() {
    if let Some(store) = Store::redis("a_server_killed_mid_save_on_redis").await {
        a_kill_mid_save_leaves_no_half_written_record(store).await;
    }
}
