//! Every store against the generic store suite (`suite.rs`), then what only one store can be
//! asked (how SQLite keeps its rows), then the near cache (`near_cache.rs`).
//!
//! Another store is one more line: `store_suite!(postgres, new_postgres_store());`, with a
//! constructor giving `(store, whatever must outlive it)` on an empty store of its own, and
//! `skip { case => "reason", ... }` for what it cannot honour (as the cookie store below).
//!
//! PostgreSQL and Redis come from `SESSIONS_TEST_POSTGRES_URL` and `SESSIONS_TEST_REDIS_URL`
//! (`services.rs`): without them their tests say they are skipped, except under `CI=true`.

mod near_cache;
mod services;
mod suite;

use std::path::Path;
use std::str::FromStr;

use rocket_server_sessions::store::{
    Census, ClearInBatches, Data, Record, SessionKey, SessionStore, Stored, UserIndex,
};
use rocket_server_sessions::stores::{
    CachedStore, CookieStore, MemoryStore, NearCached, PostgresStore, RedisStore, SqliteStore,
    Watched,
};
use serde_json::json;
use services::{PgSchema, RedisPrefix};
use sha2::Digest;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};
use suite::store_suite;
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

store_suite!(memory, new_memory_store(), skip {
    clearing_in_batches_clears_exactly_the_expired_and_reports_progress =>
        "one pass over memory: no batches",
});
store_suite!(sqlite, new_sqlite_store());
store_suite!(sqlite_with_near_cache, new_sqlite_store_with_near_cache());
store_suite!(postgres, new_postgres_store());
store_suite!(
    postgres_with_near_cache,
    new_postgres_store_with_near_cache()
);
// Redis drops expired sessions by their TTL and would scan every key to count them.
store_suite!(redis, new_redis_store(), skip {
    census_counts_live_and_expired_sessions_and_inspects_expired_ones => "no census",
    clearing_in_batches_clears_exactly_the_expired_and_reports_progress => "TTLs clear",
});
store_suite!(redis_without_near_cache, new_redis_store_without_near_cache(), skip {
    census_counts_live_and_expired_sessions_and_inspects_expired_ones => "no census",
    clearing_in_batches_clears_exactly_the_expired_and_reports_progress => "TTLs clear",
});
store_suite!(cached_db, new_cached_store());
// The wrappers over the other stores they can wrap.
store_suite!(cached_over_postgres, new_cached_postgres_store());
store_suite!(cached_over_memory_without_near_cache, new_cached_memory_store(), skip {
    clearing_in_batches_clears_exactly_the_expired_and_reports_progress =>
        "the memory store clears in one pass",
});
// Nothing is kept on the server (see `stores/cookie.rs`): what needs a server-side record
// cannot hold. Each skip still runs with `cargo test --test stores -- --ignored`.
store_suite!(cookie, new_cookie_store(), skip {
    load_of_an_unknown_key_is_none_and_creates_nothing =>
        "the probe for a planted record is an update, and this store seals any update",
    update_of_an_unknown_or_malformed_id_is_refused_and_stores_nothing =>
        "update seals the record it is given; it never opens the old cookie",
    create_returns_distinct_well_formed_keys =>
        "ids are sealed sessions in base64, not 41-character keys",
    update_over_a_stale_version_is_refused_and_changes_nothing =>
        "no stored version to compare with: the last response's cookie wins",
    update_of_a_deleted_session_is_refused_and_never_brings_it_back =>
        "a deleted session is only a dropped cookie; a copy of it still opens",
    delete_removes_the_session_and_is_idempotent =>
        "nothing on the server to delete: a copied cookie stays valid until it expires",
    clear_expired_deletes_exactly_the_expired_sessions_and_counts_them =>
        "nothing to clear, and the probe that cleared sessions are gone is an update",
    concurrent_updates_over_one_version_have_exactly_one_winner =>
        "no stored version to compare with: both saves succeed",
    concurrent_saves_of_different_keys_all_survive_by_reload_and_retry =>
        "concurrent requests cannot be merged: the last response's cookie wins",
    user_sessions_lists_exactly_the_live_sessions_of_the_user =>
        "sessions live only in their cookies: there is nothing to list",
    the_user_index_follows_saves_cycled_keys_and_deletions =>
        "sessions live only in their cookies: there is nothing to list",
    end_user_session_ends_only_a_session_of_that_user =>
        "sessions live only in their cookies: a site signs them out by a generation number",
    expired_and_cleared_sessions_leave_the_user_index =>
        "sessions live only in their cookies: there is nothing to list",
    user_sessions_lists_at_most_the_limit_those_expiring_last_first =>
        "sessions live only in their cookies: there is nothing to list",
    trim_user_sessions_ends_all_but_those_expiring_last =>
        "sessions live only in their cookies: a site cannot count them",
    census_counts_live_and_expired_sessions_and_inspects_expired_ones =>
        "sessions live only in their cookies: there is nothing to count",
    clearing_in_batches_clears_exactly_the_expired_and_reports_progress =>
        "sessions live only in their cookies: there is nothing to clear",
});

/// A cookie store with a fresh key; nothing to keep alive.
async fn new_cookie_store() -> (CookieStore, ()) {
    // `::cookie`: the crate, not the `cookie` module the suite stamps above.
    let key = ::cookie::Key::generate();
    (CookieStore::with_key(key, "sessionid"), ())
}

/// An empty in-memory store; nothing to keep alive.
async fn new_memory_store() -> (MemoryStore, ()) {
    (MemoryStore::new(), ())
}

/// A SQLite pool as an application opens one for the store: WAL, a busy timeout.
pub async fn sqlite_pool(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(std::time::Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .expect("the temporary database opens")
}

/// A PostgreSQL pool on `url`.
pub async fn postgres_pool(url: &str) -> PgPool {
    let options = PgConnectOptions::from_str(url).expect("a PostgreSQL URL");
    PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .expect("PostgreSQL opens")
}

/// A migrated SQLite database in a temporary directory of its own.
struct SqliteDb {
    pool: SqlitePool,
    dir: TempDir,
}

impl SqliteDb {
    /// A fresh database file, with the session table.
    async fn new() -> SqliteDb {
        let dir = TempDir::new().expect("a temporary directory");
        let pool = sqlite_pool(&dir.path().join("sessions.sqlite3")).await;
        SqliteStore::new(pool.clone())
            .migrate()
            .await
            .expect("the session table is made in an empty database");
        SqliteDb { pool, dir }
    }

    fn sqlite(&self) -> &SqlitePool {
        &self.pool
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::new(self.pool.clone())
    }

    async fn rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM session")
            .fetch_one(self.sqlite())
            .await
            .expect("the session table answers")
    }

    async fn exec(&self, sql: &str) -> u64 {
        sqlx::query(sql)
            .execute(self.sqlite())
            .await
            .expect("the statement runs")
            .rows_affected()
    }

    /// Every file of the database (main, WAL, shared memory) as bytes.
    fn files(&self) -> Vec<(String, Vec<u8>)> {
        let files = std::fs::read_dir(self.dir.path()).expect("the directory lists");
        files
            .map(|entry| entry.expect("a directory entry").path())
            .map(|path| {
                let bytes = std::fs::read(&path).expect("the file reads");
                (name(&path), bytes)
            })
            .collect()
    }
}

fn name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A migrated PostgreSQL schema of its own, when `SESSIONS_TEST_POSTGRES_URL` is set.
async fn new_postgres_store() -> Option<(PostgresStore, (PgPool, PgSchema))> {
    let schema = PgSchema::create("postgres store suite").await?;
    let pool = postgres_pool(&schema.url()).await;
    let store = PostgresStore::new(pool.clone());
    store
        .migrate()
        .await
        .expect("the session table is made in an empty schema");
    Some((store, (pool, schema)))
}

/// The same, with a near cache (as a site runs it on PostgreSQL).
async fn new_postgres_store_with_near_cache(
) -> Option<(NearCached<PostgresStore>, (PgPool, PgSchema))> {
    let (store, keep) = new_postgres_store().await?;
    Some((near(store).await, keep))
}

/// Waits until a near cache watches (so that the suite goes through it), for 5 s at most.
async fn wait_for(watching: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !watching() {
        assert!(
            std::time::Instant::now() < deadline,
            "the near cache never started watching"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// `store` behind a near cache that watches already (so that the suite goes through it).
async fn near<S: Watched>(store: S) -> NearCached<S> {
    let store = NearCached::new(store, std::num::NonZeroUsize::new(100).expect("not zero"));
    wait_for(|| store.watching()).await;
    store
}

/// A Redis store under a key prefix of its own, with a near cache (as a site runs it), when
/// `SESSIONS_TEST_REDIS_URL` is set.
async fn new_redis_store() -> Option<(NearCached<RedisStore>, RedisPrefix)> {
    let (store, prefix) = new_redis_store_without_near_cache().await?;
    Some((near(store).await, prefix))
}

/// The same, every load asking Redis.
async fn new_redis_store_without_near_cache() -> Option<(RedisStore, RedisPrefix)> {
    let prefix = RedisPrefix::create("redis store suite")?;
    Some((prefix.store().await, prefix))
}

/// Redis in front of a SQLite database of its own, with a near cache (as a site runs it).
async fn new_cached_store() -> Option<(
    NearCached<CachedStore<SqliteStore>>,
    (RedisPrefix, SqliteDb),
)> {
    let (redis, prefix) = new_redis_store_without_near_cache().await?;
    let (sql, db) = new_sqlite_store().await;
    Some((near(CachedStore::new(redis, sql)).await, (prefix, db)))
}

/// Redis in front of a PostgreSQL schema of its own, with a near cache.
async fn new_cached_postgres_store() -> Option<(
    NearCached<CachedStore<PostgresStore>>,
    (RedisPrefix, (PgPool, PgSchema)),
)> {
    let (redis, prefix) = new_redis_store_without_near_cache().await?;
    let (sql, keep) = new_postgres_store().await?;
    Some((near(CachedStore::new(redis, sql)).await, (prefix, keep)))
}

/// Redis in front of the memory store, every load asking Redis.
async fn new_cached_memory_store() -> Option<(CachedStore<MemoryStore>, RedisPrefix)> {
    let (redis, prefix) = new_redis_store_without_near_cache().await?;
    Some((CachedStore::new(redis, MemoryStore::new()), prefix))
}

/// What a store offers beyond the five methods, as `(expires by itself, batches, census, user
/// index)`.
fn capabilities(store: &dyn SessionStore) -> (bool, bool, bool, bool) {
    (
        store.expires_by_itself(),
        store.batches().is_some(),
        store.census().is_some(),
        store.user_index().is_some(),
    )
}

/// Every store says what it offers, and every wrapper offers what the store it wraps does (a
/// capability a wrapper dropped would leave an operator's command line or a site's "your
/// sessions" page without it). The suite above then runs each one it offers.
#[tokio::test]
async fn every_store_and_wrapper_offers_its_capabilities() {
    let sql = (false, true, true, true);
    let (sqlite, _db) = new_sqlite_store().await;
    assert_eq!(capabilities(&sqlite), sql, "sqlite");
    // A store a factory chose is one behind an `Arc<dyn SessionStore>`: it keeps them all.
    let (shared, _shared_db) = new_sqlite_store().await;
    let shared: std::sync::Arc<dyn SessionStore> = std::sync::Arc::new(shared);
    assert_eq!(capabilities(&shared), sql, "sqlite behind an Arc");
    assert_eq!(
        capabilities(&new_memory_store().await.0),
        (false, false, true, true),
        "memory"
    );
    assert_eq!(
        capabilities(&new_cookie_store().await.0),
        (true, false, false, false),
        "cookie"
    );
    let Some((postgres, _pg)) = new_postgres_store().await else {
        return;
    };
    assert_eq!(capabilities(&postgres), sql, "postgres");
    assert_eq!(
        capabilities(&near(postgres).await),
        sql,
        "near over postgres"
    );
    let Some((redis, _prefix)) = new_redis_store_without_near_cache().await else {
        return;
    };
    let redis_offers = (true, false, false, true);
    assert_eq!(capabilities(&redis), redis_offers, "redis");
    let (cache, _prefix) = new_redis_store_without_near_cache().await.expect("redis");
    assert_eq!(
        capabilities(&near(cache).await),
        redis_offers,
        "near over redis"
    );
    let (cache, _prefix) = new_redis_store_without_near_cache().await.expect("redis");
    let cached = CachedStore::new(cache, sqlite);
    assert_eq!(capabilities(&cached), sql, "cached over sqlite");
    assert_eq!(capabilities(&near(cached).await), sql, "near over cached");
    let (cache, _prefix) = new_redis_store_without_near_cache().await.expect("redis");
    let cached = CachedStore::new(cache, shared);
    assert_eq!(capabilities(&cached), sql, "cached over a shared store");
    let (cache, _prefix) = new_redis_store_without_near_cache().await.expect("redis");
    let cached = CachedStore::new(cache, MemoryStore::new());
    assert_eq!(
        capabilities(&cached),
        (false, false, true, true),
        "cached over memory"
    );
}

/// The suite's constructor: the store, and the database it must not outlive.
async fn new_sqlite_store() -> (SqliteStore, SqliteDb) {
    let db = SqliteDb::new().await;
    (db.store(), db)
}

/// The same behind a near cache (as `db` serves a SQLite file).
async fn new_sqlite_store_with_near_cache() -> (NearCached<SqliteStore>, SqliteDb) {
    let (store, db) = new_sqlite_store().await;
    (near(store).await, db)
}

fn data(value: serde_json::Value) -> Data {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("session data must be a JSON object, not {other}"),
    }
}

fn in_an_hour() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::hours(1)
}

#[tokio::test]
async fn memory_store_counts_live_and_expired_sessions() {
    let store = MemoryStore::new();
    let past = OffsetDateTime::now_utc() - Duration::hours(1);
    store.create(&Data::new(), past).await.expect("created");
    store
        .create(&Data::new(), in_an_hour())
        .await
        .expect("created");
    store
        .create(&Data::new(), in_an_hour())
        .await
        .expect("created");
    let counts = store.count().await.expect("answers");
    assert_eq!((counts.live, counts.expired), (2, 1));
}

#[tokio::test]
async fn memory_store_keeps_no_record_for_unknown_or_malformed_keys() {
    let store = MemoryStore::new();
    for id in [SessionKey::generate().as_str(), "", "1", "ABC;\0"] {
        assert_eq!(store.load(id).await.expect("load answers"), None);
    }
    assert!(store.is_empty());
}

#[tokio::test]
async fn sqlite_load_of_unknown_or_malformed_keys_adds_no_row() {
    let db = SqliteDb::new().await;
    let store = db.store();
    let long = "a".repeat(5000);
    for id in [SessionKey::generate().as_str(), "", "1", "ABC;\0", &long] {
        assert_eq!(store.load(id).await.expect("load answers"), None);
    }
    assert_eq!(db.rows().await, 0);
}

#[tokio::test]
async fn sqlite_keeps_the_sha256_of_the_key_never_the_key() {
    let db = SqliteDb::new().await;
    let store = db.store();
    let Stored { id, .. } = store
        .create(&data(json!({"user": "ann"})), in_an_hour())
        .await
        .expect("create answers");
    let record = Record {
        data: data(json!({"user": "ann", "visits": 2})).into(),
        expires: in_an_hour(),
        version: 1,
    };
    store
        .update(&id, &record)
        .await
        .expect("update answers")
        .expect("the update applies");
    let digest = SessionKey::parse(&id).expect("a well-formed key").digest();

    let rows: Vec<(Vec<u8>, String, String, String)> = sqlx::query_as(
        "SELECT key_hash, data, CAST(expires AS TEXT), CAST(version AS TEXT) FROM session",
    )
    .fetch_all(db.sqlite())
    .await
    .expect("the session table answers");
    assert_eq!(rows.len(), 1);
    let (key_hash, data, expires, version) = &rows[0];
    assert_eq!(
        key_hash.as_slice(),
        &digest[..],
        "the primary key is the digest"
    );
    assert_ne!(key_hash.as_slice(), id.as_bytes());
    for column in [data, expires, version] {
        assert!(!column.contains(&id), "a column holds the key: {column:?}");
    }
    assert_eq!(version, "2");

    // Nor anywhere else in the files: a copied database cannot be replayed as cookies.
    for (file, bytes) in db.files() {
        assert!(
            !bytes
                .windows(id.len())
                .any(|window| window == id.as_bytes()),
            "{file} holds the key"
        );
    }
}

#[tokio::test]
async fn sqlite_reads_corrupt_data_as_an_empty_session_not_an_error() {
    let db = SqliteDb::new().await;
    let store = db.store();
    let expires = in_an_hour();
    for corrupt in ["not json", "", "[1,2]", "42", "null", "{\"unterminated\": "] {
        let Stored { id, .. } = store
            .create(&data(json!({"user": "ann"})), expires)
            .await
            .expect("create answers");
        let changed = sqlx::query("UPDATE session SET data = ?1")
            .bind(corrupt)
            .execute(db.sqlite())
            .await
            .expect("the corruption applies")
            .rows_affected();
        assert!(changed >= 1);

        let record = store
            .load(&id)
            .await
            .unwrap_or_else(|e| panic!("data {corrupt:?} made load fail: {e}"))
            .unwrap_or_else(|| panic!("data {corrupt:?} hid the session"));
        assert_eq!(*record.data, Data::new(), "data {corrupt:?}");
        assert_eq!(record.version, 1);
        assert_eq!(record.expires.unix_timestamp(), expires.unix_timestamp());

        // The session recovers on its next save.
        let fixed = Record {
            data: data(json!({"fresh": true})).into(),
            ..record
        };
        let Stored { id, .. } = store
            .update(&id, &fixed)
            .await
            .expect("update answers")
            .expect("an update over the corrupt record applies");
        let reloaded = store.load(&id).await.expect("load answers");
        assert_eq!(reloaded.map(|r| r.data), Some(fixed.data));
        store.delete(&id).await.expect("delete answers");
    }
}

#[tokio::test]
async fn sqlite_clears_expired_sessions_in_batches_and_reports_progress() {
    let db = SqliteDb::new().await;
    let store = db.store();
    let past = OffsetDateTime::now_utc() - Duration::hours(1);
    for _ in 0..7 {
        store
            .create(&Data::new(), past)
            .await
            .expect("create answers");
    }
    let Stored { id: alive, .. } = store
        .create(&data(json!({"alive": true})), in_an_hour())
        .await
        .expect("create answers");

    let mut progress = Vec::new();
    let total = store
        .clear_expired_in_batches(3, &mut |done| progress.push(done))
        .await
        .expect("clear_expired_in_batches answers");
    assert_eq!(total, 7);
    assert_eq!(progress, [3, 6, 7]);
    assert_eq!(db.rows().await, 1);
    assert!(store.load(&alive).await.expect("load answers").is_some());
    assert_eq!(db.exec("DELETE FROM session").await, 1);
}

#[tokio::test]
async fn cached_db_keeps_the_tombstone_of_a_flushed_session_through_a_failed_save() {
    let Some((redis, prefix)) = new_redis_store_without_near_cache().await else {
        return;
    };
    let (sql, _db) = new_sqlite_store().await;
    let cached = CachedStore::new(redis.clone(), sql);
    let data = data(json!({"user": 42}));
    let Stored { id, version } = cached
        .create(&data, OffsetDateTime::now_utc() + Duration::hours(1))
        .await
        .expect("created");
    let stale = cached.load(&id).await.expect("loads").expect("live");
    assert_eq!(stale.version, version);
    // A logout, then a save loaded before it: refused, and the tombstone stays...
    cached.delete(&id).await.expect("deleted");
    let saved = cached.update(&id, &stale).await.expect("answers");
    assert_eq!(saved, None, "never brought back");
    // ...so a read that was in flight cannot put the session back in the cache.
    let name = prefix.key_of(&id);
    let mut conn = prefix.connection().expect("Redis answers");
    let version: Option<i64> = ::redis::cmd("HGET")
        .arg(&name)
        .arg("v")
        .query(&mut conn)
        .expect("HGET answers");
    assert_eq!(version, Some(-1), "a tombstone");
    assert_eq!(cached.load(&id).await.expect("loads"), None);
}

#[tokio::test]
async fn cached_db_copies_are_kept_near_no_longer_than_redis_keeps_them() {
    let Some((redis, _prefix)) = new_redis_store_without_near_cache().await else {
        return;
    };
    let (sql, _db) = new_sqlite_store().await;
    let cached = CachedStore::new(redis, sql);
    let Stored { id, .. } = cached
        .create(&data(json!({"user": 42})), in_an_hour())
        .await
        .expect("created");
    let kept = cached
        .load_watched(&id, &cached.watched_name(&id).expect("a well-formed id"))
        .await
        .expect("loads")
        .expect("live");
    let ttl = CachedStore::<SqliteStore>::COPY_TTL;
    let until = kept.until.expect("a copy from Redis has a date");
    let now = OffsetDateTime::now_utc();
    assert!(
        until <= now + ttl && until > now + ttl - Duration::seconds(5),
        "{until}"
    );
}

/// Corrupts the Redis entry named by its second argument.
type Corrupt = dyn Fn(&mut ::redis::Connection, &str);

/// The ways a session's entry in Redis can fail to decode, each applied to the key `name`
/// (`::redis`: the crate, not the `redis` module the suite stamps above).
fn corruptions() -> Vec<(&'static str, Box<Corrupt>)> {
    fn run(conn: &mut ::redis::Connection, command: &mut ::redis::Cmd) {
        command.query::<()>(conn).expect("the corruption applies");
    }
    vec![
        (
            "not a hash (WRONGTYPE)",
            Box::new(|conn, name| {
                run(conn, ::redis::cmd("DEL").arg(name));
                run(conn, ::redis::cmd("SET").arg(name).arg("junk"));
            }),
        ),
        (
            "v not an integer",
            Box::new(|conn, name| run(conn, ::redis::cmd("HSET").arg(name).arg("v").arg("one"))),
        ),
        (
            "e not an integer",
            Box::new(|conn, name| run(conn, ::redis::cmd("HSET").arg(name).arg("e").arg("soon"))),
        ),
        (
            "d not UTF-8",
            Box::new(|conn, name| {
                run(
                    conn,
                    ::redis::cmd("HSET")
                        .arg(name)
                        .arg("d")
                        .arg(&[0xff_u8, 0xfe, 0x7b][..]),
                );
            }),
        ),
    ]
}

/// Loads `ids` in one instant (one pipeline: every load queues before the batch is sent).
async fn load_together<S: SessionStore>(
    store: &S,
    ids: [&str; 3],
) -> [rocket_server_sessions::store::Result<Option<Record>>; 3] {
    let (a, b, c) = tokio::join!(store.load(ids[0]), store.load(ids[1]), store.load(ids[2]));
    [a, b, c]
}

/// Three new sessions, of users ann, bob and cid.
async fn sessions_of_ann_bob_and_cid<S: SessionStore>(store: &S) -> Vec<String> {
    let mut ids = Vec::new();
    for user in ["ann", "bob", "cid"] {
        let Stored { id, .. } = store
            .create(&data(json!({ "user": user })), in_an_hour())
            .await
            .expect("created");
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn redis_entry_that_does_not_decode_is_an_empty_session_and_hurts_no_other() {
    let Some((store, prefix)) = new_redis_store_without_near_cache().await else {
        return;
    };
    let mut conn = prefix.connection().expect("Redis answers");
    for (corruption, corrupt) in corruptions() {
        let ids = sessions_of_ann_bob_and_cid(&store).await;
        corrupt(&mut conn, &prefix.key_of(&ids[1]));

        let [ann, bob, cid] = load_together(&store, [&ids[0], &ids[1], &ids[2]]).await;
        let user = |loaded: rocket_server_sessions::store::Result<Option<Record>>| {
            let record = loaded.unwrap_or_else(|e| panic!("{corruption}: a load failed: {e}"));
            record.map(|record| record.data["user"].clone())
        };
        assert_eq!(user(ann), Some(json!("ann")), "{corruption}");
        assert_eq!(
            user(bob),
            None,
            "{corruption}: the corrupt one starts empty"
        );
        assert_eq!(user(cid), Some(json!("cid")), "{corruption}");

        // The corrupt session is replaced by a new one on its next save, as any missing one.
        let Stored { id: fresh, .. } = store
            .create(&data(json!({"user": "bob"})), in_an_hour())
            .await
            .expect("a new session is made");
        assert!(store.load(&fresh).await.expect("loads").is_some());
    }
}

#[tokio::test]
async fn cached_db_reads_a_corrupt_copy_from_the_database_and_writes_it_over() {
    let Some((redis, prefix)) = new_redis_store_without_near_cache().await else {
        return;
    };
    let (sql, _db) = new_sqlite_store().await;
    let cached = CachedStore::new(redis.clone(), sql);
    let mut conn = prefix.connection().expect("Redis answers");
    for (corruption, corrupt) in corruptions() {
        let ids = sessions_of_ann_bob_and_cid(&cached).await;
        corrupt(&mut conn, &prefix.key_of(&ids[1]));

        let loaded = load_together(&cached, [&ids[0], &ids[1], &ids[2]]).await;
        for (loaded, user) in loaded.into_iter().zip(["ann", "bob", "cid"]) {
            let record = loaded
                .unwrap_or_else(|e| panic!("{corruption}: a load failed: {e}"))
                .unwrap_or_else(|| panic!("{corruption}: {user}'s session is lost"));
            assert_eq!(record.data["user"], json!(user), "{corruption}");
        }
        // The copy was written over (Redis was not paused for it).
        // Read from Redis alone: a copy still corrupt would load as an empty session.
        let copy = redis.load(&ids[1]).await.expect("Redis answers");
        let user = copy.map(|record| record.data["user"].clone());
        assert_eq!(
            user,
            Some(json!("bob")),
            "{corruption}: the copy was repaired"
        );
    }
}

#[tokio::test]
async fn postgres_judges_expiry_by_the_databases_clock_in_loads_counts_and_clears() {
    let Some(schema) = PgSchema::create("postgres clock skew").await else {
        return;
    };
    // The schema's own now(), found before pg_catalog's: a database clock that the test skews.
    let url = schema.url().replace(
        &format!("search_path%3D{}", schema.name),
        &format!("search_path%3D{}%2Cpg_catalog", schema.name),
    );
    let pool = postgres_pool(&url).await;
    let skew = |hours: i64| {
        format!(
            "CREATE OR REPLACE FUNCTION now() RETURNS timestamptz LANGUAGE sql STABLE \
             AS $$ SELECT pg_catalog.now() + interval '{hours} hours' $$"
        )
    };
    let store = PostgresStore::new(pool.clone());
    store.migrate().await.expect("the session table is made");
    let host_now = OffsetDateTime::now_utc();

    // The database's clock an hour ahead of this host's: a session this host would call live
    // for half an hour more is expired, for loads, counts and clears alike.
    sqlx::query(&skew(1)).execute(&pool).await.expect("skewed");
    let Stored { id: ending, .. } = store
        .create(&data(json!({"a": 1})), host_now + Duration::minutes(30))
        .await
        .expect("created");
    let Stored { id: live, .. } = store
        .create(&data(json!({"b": 2})), host_now + Duration::hours(2))
        .await
        .expect("created");
    assert_eq!(store.load(&ending).await.expect("loads"), None);
    assert!(store.load(&live).await.expect("loads").is_some());
    let counts = store.count().await.expect("counts");
    assert_eq!((counts.live, counts.expired), (1, 1));
    assert_eq!(store.clear_expired().await.expect("clears"), 1);

    // An hour behind: a session this host would call expired half an hour ago is live, and
    // no clear deletes it (a host whose clock runs ahead never deletes live sessions).
    sqlx::query(&skew(-1)).execute(&pool).await.expect("skewed");
    let Stored { id: lagging, .. } = store
        .create(&data(json!({"c": 3})), host_now - Duration::minutes(30))
        .await
        .expect("created");
    assert!(store.load(&lagging).await.expect("loads").is_some());
    assert_eq!(store.clear_expired().await.expect("clears"), 0);
    let counts = store.count().await.expect("counts");
    assert_eq!((counts.live, counts.expired), (2, 0));
    assert!(store.load(&lagging).await.expect("loads").is_some());

    // Through a near cache too: what it keeps, it serves by the database's clock.
    let near = near(PostgresStore::new(pool.clone())).await;
    for load in ["a miss", "a hit"] {
        let loaded = near.load(&lagging).await.expect("loads");
        assert!(
            loaded.is_some(),
            "{load} of a session the database calls live"
        );
    }
    assert_eq!(near.hits(), 1);
}

/// The session table as it was before sessions had users (before the `user_id` column).
const TABLE_BEFORE_USERS: &str = "CREATE TABLE session (key_hash BYTEA PRIMARY KEY, \
     data TEXT NOT NULL, expires BIGINT NOT NULL, version BIGINT NOT NULL DEFAULT 1)";

/// A session in a table made before users: its key (32 random characters, as keys were then,
/// before they began with their time), stored by hand as that version did, under the key's
/// plain SHA-256.
fn session_before_users() -> (SessionKey, Vec<u8>, i64) {
    let new = SessionKey::generate();
    let random = &new.as_str()[SessionKey::LEN - SessionKey::OLD_LEN..];
    let key = SessionKey::parse(random).expect("a key of an earlier version is well formed");
    let digest = sha2::Sha256::digest(random.as_bytes()).to_vec();
    (key, digest, in_an_hour().unix_timestamp())
}

/// After `migrate` of a table made before users: the old session (and its old key) still
/// loads and saves, a session signed in is listed, and a second `migrate` changes nothing.
async fn assert_migrated_from_before_users(
    sql: rocket_server_sessions::stores::SqlStore,
    old: &SessionKey,
) {
    for _ in 0..2 {
        sql.migrate()
            .await
            .expect("migrates a table made before users");
    }
    let store = sql.into_store();
    let loaded = store.load(old.as_str()).await.expect("loads");
    let loaded = loaded.expect("the old key still opens its session");
    assert_eq!(*loaded.data, data(json!({"visits": 3})));
    let record = Record {
        data: data(json!({"visits": 4})).into(),
        ..loaded
    };
    store
        .update(old.as_str(), &record)
        .await
        .expect("saves")
        .expect("the old key's session is saved in place");
    let loaded = store.load(old.as_str()).await.expect("loads");
    assert_eq!(
        loaded.map(|r| Data::clone(&r.data)),
        Some(data(json!({"visits": 4})))
    );
    let data = data(json!({ rocket_server_sessions::USER_KEY: "ann" }));
    store.create(&data, in_an_hour()).await.expect("creates");
    let users = store
        .user_index()
        .expect("a SQL store lists a user's sessions");
    let listed = users.user_sessions("ann", 50).await.expect("lists");
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn sqlite_migrate_adds_users_to_a_table_made_before_them() {
    let dir = TempDir::new().expect("a temporary directory");
    let pool = sqlite_pool(&dir.path().join("old.sqlite3")).await;
    let (key, digest, expires) = session_before_users();
    sqlx::query(&format!(
        "{} WITHOUT ROWID",
        TABLE_BEFORE_USERS.replace("BYTEA", "BLOB")
    ))
    .execute(&pool)
    .await
    .expect("the old table");
    sqlx::query("INSERT INTO session (key_hash, data, expires) VALUES ($1, '{\"visits\": 3}', $2)")
        .bind(&digest)
        .bind(expires)
        .execute(&pool)
        .await
        .expect("an old session");
    assert_migrated_from_before_users(
        rocket_server_sessions::stores::SqlStore::Sqlite(SqliteStore::new(pool)),
        &key,
    )
    .await;
}

#[tokio::test]
async fn postgres_migrate_adds_users_to_a_table_made_before_them() {
    let Some(schema) = PgSchema::create("migrate a table made before users").await else {
        return;
    };
    let pool = postgres_pool(&schema.url()).await;
    let (key, digest, expires) = session_before_users();
    sqlx::query(TABLE_BEFORE_USERS)
        .execute(&pool)
        .await
        .expect("the old table");
    sqlx::query("INSERT INTO session (key_hash, data, expires) VALUES ($1, '{\"visits\": 3}', $2)")
        .bind(&digest)
        .bind(expires)
        .execute(&pool)
        .await
        .expect("an old session");
    assert_migrated_from_before_users(
        rocket_server_sessions::stores::SqlStore::Postgres(PostgresStore::new(pool)),
        &key,
    )
    .await;
}

/// Redis keeps a set per user: it lives as long as the user's longest session, loses a
/// session's member when the session is deleted, and `clear_expired` drops the members of
/// sessions Redis expired, so no entry outlives its session.
#[tokio::test]
async fn redis_user_sets_follow_their_sessions_and_clearing_leaves_no_member_behind() {
    let Some((store, prefix)) = new_redis_store_without_near_cache().await else {
        return;
    };
    let mut conn = prefix.connection().expect("Redis answers");
    let set = format!("{}users:gus", prefix.prefix);
    let members = |conn: &mut ::redis::Connection| -> usize {
        ::redis::cmd("ZCARD").arg(&set).query(conn).expect("ZCARD")
    };
    let ttl = |conn: &mut ::redis::Connection| -> i64 {
        ::redis::cmd("TTL").arg(&set).query(conn).expect("TTL")
    };
    let signed = data(json!({ rocket_server_sessions::USER_KEY: "gus" }));
    let short = store
        .create(&signed, in_an_hour())
        .await
        .expect("creates")
        .id;
    assert!(
        (3590..=3600).contains(&ttl(&mut conn)),
        "the set lives as its session"
    );
    let long = store
        .create(&signed, OffsetDateTime::now_utc() + Duration::days(14))
        .await
        .expect("creates")
        .id;
    assert!(ttl(&mut conn) > 13 * 86_400, "as its longest session");
    store.create(&signed, in_an_hour()).await.expect("creates");
    assert_eq!(members(&mut conn), 3);

    store.delete(&long).await.expect("deletes");
    assert_eq!(members(&mut conn), 2, "a deleted session leaves its set");
    // Saved with an expiry in the past: gone at once, and out of its set.
    let record = store.load(&short).await.expect("loads").expect("live");
    let expired = Record {
        expires: OffsetDateTime::now_utc() - Duration::seconds(1),
        ..record
    };
    store
        .update(&short, &expired)
        .await
        .expect("updates")
        .expect("applies");
    assert_eq!(members(&mut conn), 1);
    // Expired by Redis (its TTL ran out, here a DEL as Redis does it): the member stays until
    // a listing or a clearing.
    let third = store
        .create(&signed, in_an_hour())
        .await
        .expect("creates")
        .id;
    let name = prefix.key_of(&third);
    let _: () = ::redis::cmd("DEL")
        .arg(&name)
        .query(&mut conn)
        .expect("DEL");
    assert_eq!(members(&mut conn), 2);
    assert_eq!(store.clear_expired().await.expect("clears"), 0);
    assert_eq!(
        members(&mut conn),
        1,
        "clearing dropped the expired session's member"
    );
    let listed = store.user_sessions("gus", 50).await.expect("lists");
    assert_eq!(listed.len(), 1);
    let last = &listed[0].handle;
    assert!(store.end_user_session("gus", last).await.expect("ends"));
    let keys = prefix.keys_on(&mut conn).expect("KEYS");
    assert!(keys.is_empty(), "nothing left: {keys:?}");
}

/// The user sets of before the cap on sessions per user (plain sets under `user:`) are moved
/// into the sorted sets by `clear_expired` (what `clearsessions` runs): a session saved before
/// the upgrade is listed again, and the old set is gone.
#[tokio::test]
async fn redis_clearing_moves_the_user_sets_of_before_the_cap_into_sorted_sets() {
    let Some((store, prefix)) = new_redis_store_without_near_cache().await else {
        return;
    };
    let mut conn = prefix.connection().expect("Redis answers");
    let signed = data(json!({ rocket_server_sessions::USER_KEY: "hugo" }));
    let id = store
        .create(&signed, in_an_hour())
        .await
        .expect("creates")
        .id;
    let member = rocket_server_sessions::store::SessionKey::parse(&id)
        .expect("a key")
        .digest_hex();
    // As an older version left it: the member in a plain set, no sorted set.
    let new_set = format!("{}users:hugo", prefix.prefix);
    let old_set = format!("{}user:hugo", prefix.prefix);
    let _: () = ::redis::cmd("DEL")
        .arg(&new_set)
        .query(&mut conn)
        .expect("DEL");
    let _: () = ::redis::cmd("SADD")
        .arg(&old_set)
        .arg(&member)
        .query(&mut conn)
        .expect("SADD");
    assert!(store
        .user_sessions("hugo", 50)
        .await
        .expect("lists")
        .is_empty());
    store.clear_expired().await.expect("clears");
    let listed = store.user_sessions("hugo", 50).await.expect("lists");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, member);
    let exists: i64 = ::redis::cmd("EXISTS")
        .arg(&old_set)
        .query(&mut conn)
        .expect("EXISTS");
    assert_eq!(exists, 0, "the old set is gone");
    let ttl: i64 = ::redis::cmd("TTL")
        .arg(&new_set)
        .query(&mut conn)
        .expect("TTL");
    assert!(
        (3590..=3600).contains(&ttl),
        "the new set lives as its session"
    );
}

/// On SQLite the index is the `user_id` column: clearing leaves no row of an expired session
/// signed in as a user, and keeps the live ones.
#[tokio::test]
async fn sqlite_clearing_leaves_no_index_entry_of_an_expired_session() {
    let db = SqliteDb::new().await;
    let store = db.store();
    let signed = data(json!({ rocket_server_sessions::USER_KEY: "fay" }));
    store.create(&signed, in_an_hour()).await.expect("creates");
    let past = OffsetDateTime::now_utc() - Duration::seconds(5);
    for _ in 0..3 {
        store.create(&signed, past).await.expect("creates");
    }
    let indexed = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM session WHERE user_id = 'fay'")
            .fetch_one(db.sqlite())
            .await
            .expect("counts")
    };
    assert_eq!(indexed().await, 4);
    assert_eq!(store.clear_expired().await.expect("clears"), 3);
    assert_eq!(indexed().await, 1);
}

/// An application's `main` drops its Rocket, and so its store, after the runtime is gone (the
/// `#[launch]` macro does): the PostgreSQL store, holding pooled connections, must let go of
/// them without a runtime to hand them back on, rather than panic at exit.
#[test]
fn a_postgres_store_dropped_after_its_runtime_is_gone_does_not_panic() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let made = runtime.block_on(async {
        let (store, keep) = new_postgres_store().await?;
        let stored = store
            .create(&data(json!({"n": 1})), in_an_hour())
            .await
            .expect("create");
        // A load too: the store's lanes now hold a connection each for reads and writes.
        assert!(store.load(&stored.id).await.expect("load").is_some());
        Some((store, keep))
    });
    drop(runtime);
    let Some((store, (pool, schema))) = made else {
        return;
    };
    drop(store);
    // The schema goes on a thread and runtime of its own. (Closing the pool would wait for the
    // connections the store let go of, which it never gets back: the process is not ending.)
    drop(pool);
    drop(schema);
}
