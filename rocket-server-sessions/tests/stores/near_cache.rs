//! The near caches in front of Redis, PostgreSQL and a SQLite file (`src/stores/near/`), with
//! two stores on one database standing for two servers: a load of an unchanged session asks
//! the database nothing, and a change made anywhere else (another server, a raw command, the
//! watcher's connection lost meanwhile) is never served stale. One suite, run on each (SQLite's
//! watcher has no connection of its own to lose: it is held up instead, in a test of its own).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::services::{PgSchema, RedisPrefix};
use std::num::NonZeroUsize;

use rocket_server_sessions::store::{Data, Record, SessionStore, Stored};
use rocket_server_sessions::stores::{NearCached, PostgresStore, RedisStore, SqliteStore, Watched};
use serde_json::json;
use time::OffsetDateTime;

/// Longer than the near cache's `MAX_LAG` (1 s) with room for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(5);

fn data(visits: i64) -> Data {
    match json!({ "visits": visits }) {
        serde_json::Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn in_an_hour() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::hours(1)
}

/// Waits until `done` holds, for `PATIENCE` at most; false if it never did.
async fn eventually<F: Future<Output = bool>>(mut done: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// A database the suite runs on: stores on it, and what is done behind the stores' backs.
#[rocket::async_trait]
trait Database: Send + Sync {
    type Store: Watched;
    /// A store on this database, every load asking it.
    async fn plain(&self) -> Self::Store;
    /// A store on this database behind a near cache.
    async fn cached(&self) -> NearCached<Self::Store> {
        NearCached::new(
            self.plain().await,
            NonZeroUsize::new(100).expect("not zero"),
        )
    }
    /// Deletes every session without going through a store.
    async fn delete_by_hand(&self);
    /// The ids of the watchers' connections of this database's sessions.
    async fn watchers(&self) -> Vec<String>;
    /// Closes the watcher connection `id`, as a failing network would.
    async fn kill(&self, id: &str);
}

struct OnRedis(RedisPrefix);

#[rocket::async_trait]
impl Database for OnRedis {
    type Store = RedisStore;

    async fn plain(&self) -> RedisStore {
        self.0.store().await
    }

    async fn delete_by_hand(&self) {
        let mut conn = self.0.connection().expect("a connection");
        let keys = self.0.keys_on(&mut conn).expect("keys");
        assert!(!keys.is_empty());
        redis::cmd("DEL")
            .arg(keys)
            .query::<()>(&mut conn)
            .expect("DEL");
    }

    async fn watchers(&self) -> Vec<String> {
        self.0.watchers()
    }

    async fn kill(&self, id: &str) {
        self.0.kill_client(id);
    }
}

struct OnPostgres {
    pool: sqlx::PgPool,
    _schema: PgSchema,
}

impl OnPostgres {
    async fn create(test: &str) -> Option<OnPostgres> {
        let schema = PgSchema::create(test).await?;
        let pool = crate::postgres_pool(&schema.url()).await;
        PostgresStore::new(pool.clone())
            .migrate()
            .await
            .expect("the session table is made");
        Some(OnPostgres {
            pool,
            _schema: schema,
        })
    }

    fn pg(&self) -> &sqlx::PgPool {
        &self.pool
    }
}

#[rocket::async_trait]
impl Database for OnPostgres {
    type Store = PostgresStore;

    async fn plain(&self) -> PostgresStore {
        PostgresStore::new(self.pool.clone())
    }

    async fn delete_by_hand(&self) {
        let deleted = sqlx::query("DELETE FROM session")
            .execute(self.pg())
            .await
            .expect("DELETE");
        assert!(deleted.rows_affected() > 0);
    }

    async fn watchers(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT pid::text FROM pg_stat_activity \
             WHERE application_name = 'session-watch:' || to_regclass('session')::oid",
        )
        .fetch_all(self.pg())
        .await
        .expect("pg_stat_activity")
    }

    async fn kill(&self, id: &str) {
        let pid: i32 = id.parse().expect("a pid");
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(self.pg())
            .await
            .expect("pg_terminate_backend");
    }
}

/// Two servers on one SQLite file: each store has a pool, a reader and a writer of its own.
struct OnSqlite {
    path: std::path::PathBuf,
    pool: sqlx::SqlitePool,
    _dir: tempfile::TempDir,
}

impl OnSqlite {
    async fn create() -> OnSqlite {
        let dir = tempfile::TempDir::new().expect("a temporary directory");
        let path = dir.path().join("sessions.sqlite3");
        let pool = crate::sqlite_pool(&path).await;
        SqliteStore::new(pool.clone())
            .migrate()
            .await
            .expect("the session table is made");
        OnSqlite {
            path,
            pool,
            _dir: dir,
        }
    }
}

#[rocket::async_trait]
impl Database for OnSqlite {
    type Store = SqliteStore;

    async fn plain(&self) -> SqliteStore {
        SqliteStore::new(crate::sqlite_pool(&self.path).await)
    }

    async fn delete_by_hand(&self) {
        let deleted = sqlx::query("DELETE FROM session")
            .execute(&self.pool)
            .await
            .expect("DELETE");
        assert!(deleted.rows_affected() > 0);
    }

    /// The watcher polls on the writer's connection, which nothing outside can close.
    async fn watchers(&self) -> Vec<String> {
        Vec::new()
    }

    async fn kill(&self, _: &str) {}
}

/// Runs the suite's `$case`s on each database.
macro_rules! near_cache_suite {
    ($($case:ident),* $(,)?) => {
        mod redis_near_cache {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(prefix) = super::RedisPrefix::create(stringify!($case)) else {
                        return;
                    };
                    super::$case(&super::OnRedis(prefix)).await;
                }
            )*
        }
        mod postgres_near_cache {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = super::OnPostgres::create(stringify!($case)).await else {
                        return;
                    };
                    super::$case(&db).await;
                }
            )*
        }
    };
}

near_cache_suite!(
    an_unchanged_session_is_loaded_from_the_near_cache,
    this_servers_own_writes_are_seen_at_once,
    another_servers_update_and_logout_are_seen,
    a_big_sessions_copy_is_served_and_dropped_alike,
    another_servers_change_after_this_servers_save_is_seen,
    a_change_made_outside_any_store_is_seen,
    changes_made_while_the_watcher_was_away_are_not_served,
    an_expired_session_is_not_served_from_the_near_cache,
);

/// The suite's cases on a SQLite file.
macro_rules! on_sqlite {
    ($($case:ident),* $(,)?) => {
        mod sqlite_near_cache {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&super::OnSqlite::create().await).await;
                }
            )*
        }
    };
}

on_sqlite!(
    an_unchanged_session_is_loaded_from_the_near_cache,
    this_servers_own_writes_are_seen_at_once,
    another_servers_update_and_logout_are_seen,
    a_big_sessions_copy_is_served_and_dropped_alike,
    another_servers_change_after_this_servers_save_is_seen,
    a_change_made_outside_any_store_is_seen,
    an_expired_session_is_not_served_from_the_near_cache,
);

/// On a SQLite file the writer's own commits are never reported (they do not move the
/// `data_version` it polls), so a session this server saved is kept as saved: the next load is
/// a hit, and gives back exactly what a read of the row would (the expiry in whole seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_servers_own_save_is_kept_as_saved() {
    let db = OnSqlite::create().await;
    let (a, id) = watching_store_with_a_session(&db).await;
    let record = a.load(&id).await.expect("loads").expect("live");
    let saved = Record {
        data: data(2).into(),
        expires: in_an_hour() + time::Duration::milliseconds(500),
        ..record
    };
    let stored = a.update(&id, &saved).await.expect("saves").expect("saved");
    let hits = a.hits();
    let kept = a.load(&id).await.expect("loads").expect("live");
    assert_eq!(a.hits(), hits + 1, "a hit, not a read");
    let read = a.inner().load(&id).await.expect("loads").expect("live");
    assert_eq!(kept, read, "as a read of the row gives it");
    assert_eq!(kept.version, stored.version);
}

/// SQLite's watcher is the group writer's poll. Held up (another process keeps the write lock
/// while a save of this server waits for it), it confirms nothing and the cache serves
/// nothing; what the other process committed meanwhile is seen once the writer runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_writer_held_up_serves_nothing_and_then_sees_what_changed() {
    use sqlx::Connection;
    let db = OnSqlite::create().await;
    let (a, id) = watching_store_with_a_session(&db).await;
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.path.display()))
        .await
        .expect("another connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("the write lock");
    let a = std::sync::Arc::new(a);
    let save = tokio::spawn({
        let a = std::sync::Arc::clone(&a);
        async move { a.create(&data(9), in_an_hour()).await }
    });
    assert!(
        eventually(|| async { !a.watching() }).await,
        "a writer held up stops the cache"
    );
    let hits = a.hits();
    assert_eq!(visits(&*a, &id).await, Some(1), "read from the file");
    assert_eq!(a.hits(), hits, "not from the cache");
    sqlx::query("UPDATE session SET data = '{\"visits\":5}', version = version + 1")
        .execute(&mut other)
        .await
        .expect("an update");
    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("committed");
    save.await
        .expect("no panic")
        .expect("the waiting save is committed after");
    assert!(
        eventually(|| async { a.watching() }).await,
        "watching again"
    );
    assert_eq!(visits(&*a, &id).await, Some(5), "the change made meanwhile");
}

/// A store whose near cache is watching, and a session in it, loaded once (so cached).
async fn watching_store_with_a_session<D: Database>(db: &D) -> (NearCached<D::Store>, String) {
    watching_store_with(db, &data(1)).await
}

/// A store whose near cache is watching, and a session of `data` in it, loaded once (so
/// cached).
async fn watching_store_with<D: Database>(db: &D, data: &Data) -> (NearCached<D::Store>, String) {
    let store = db.cached().await;
    assert!(
        eventually(|| async { store.watching() }).await,
        "the near cache starts watching"
    );
    let Stored { id, .. } = store.create(data, in_an_hour()).await.expect("created");
    // Redis reports the create too, and that report may evict the first load's copy.
    assert!(
        eventually(|| async {
            let hits = store.hits();
            store.load(&id).await.expect("loads").is_some() && store.hits() > hits
        })
        .await,
        "the session is cached"
    );
    (store, id)
}

async fn visits(store: &impl SessionStore, id: &str) -> Option<i64> {
    let record = store.load(id).await.expect("loads")?;
    record
        .data
        .get("visits")
        .and_then(serde_json::Value::as_i64)
}

async fn an_unchanged_session_is_loaded_from_the_near_cache(db: &impl Database) {
    let (store, id) = watching_store_with_a_session(db).await;
    let before = store.hits();
    for _ in 0..10 {
        assert_eq!(visits(&store, &id).await, Some(1));
    }
    assert_eq!(store.hits() - before, 10);

    let without = db.plain().await;
    assert_eq!(visits(&without, &id).await, Some(1));
    assert_eq!(visits(&without, &id).await, Some(1));
}

async fn this_servers_own_writes_are_seen_at_once(db: &impl Database) {
    let (store, id) = watching_store_with_a_session(db).await;
    let record = store.load(&id).await.expect("loads").expect("live");
    let saved = Record {
        data: data(2).into(),
        ..record
    };
    assert!(store.update(&id, &saved).await.expect("saves").is_some());
    assert_eq!(visits(&store, &id).await, Some(2), "no wait for the report");
    store.delete(&id).await.expect("deletes");
    assert_eq!(visits(&store, &id).await, None, "a logout is seen at once");
}

async fn another_servers_update_and_logout_are_seen(db: &impl Database) {
    let (a, id) = watching_store_with_a_session(db).await;
    let b = db.cached().await;
    let record = b.load(&id).await.expect("loads").expect("live");
    let saved = Record {
        data: data(2).into(),
        ..record
    };
    assert!(b.update(&id, &saved).await.expect("saves").is_some());
    assert!(
        eventually(|| async { visits(&a, &id).await == Some(2) }).await,
        "server A sees B's update"
    );
    // A caches the new version again, then B logs the visitor out.
    let hits = a.hits();
    assert_eq!(visits(&a, &id).await, Some(2));
    assert!(a.hits() > hits, "cached again");
    b.delete(&id).await.expect("deletes");
    assert!(
        eventually(|| async { visits(&a, &id).await.is_none() }).await,
        "server A sees B's logout"
    );
}

/// A session of 4 KB is held decoded rather than as its text: served the same, and dropped on
/// another server's change the same.
async fn a_big_sessions_copy_is_served_and_dropped_alike(db: &impl Database) {
    let mut big = data(1);
    big.insert("pad".into(), "x".repeat(4096).into());
    let (a, id) = watching_store_with(db, &big).await;
    let hits = a.hits();
    let hit = a.load(&id).await.expect("loads").expect("live");
    assert_eq!(
        (Data::clone(&hit.data), a.hits()),
        (big.clone(), hits + 1),
        "served whole"
    );
    another_server_counts_a_visit_and_logs_out(db, &a, &id, 2).await;
}

/// After this server's own save, another server's later change is seen over it.
async fn another_servers_change_after_this_servers_save_is_seen(db: &impl Database) {
    let (a, id) = watching_store_with_a_session(db).await;
    let record = a.load(&id).await.expect("loads").expect("live");
    let mine = Record {
        data: data(2).into(),
        ..record
    };
    assert!(a.update(&id, &mine).await.expect("saves").is_some());
    assert_eq!(visits(&a, &id).await, Some(2), "this server's save");
    another_server_counts_a_visit_and_logs_out(db, &a, &id, 3).await;
}

/// Server B (a store of its own on `db`) sets the session's visits to `count`, keeping the
/// rest of its data, and then ends it: server A sees both.
async fn another_server_counts_a_visit_and_logs_out(
    db: &impl Database,
    a: &impl SessionStore,
    id: &str,
    count: i64,
) {
    let b = db.cached().await;
    let mut record = b.load(id).await.expect("loads").expect("live");
    Arc::make_mut(&mut record.data).insert("visits".into(), count.into());
    assert!(b.update(id, &record).await.expect("saves").is_some());
    assert!(
        eventually(|| async { visits(a, id).await == Some(count) }).await,
        "server A sees B's update"
    );
    b.delete(id).await.expect("deletes");
    assert!(
        eventually(|| async { visits(a, id).await.is_none() }).await,
        "server A sees B's logout"
    );
}

async fn a_change_made_outside_any_store_is_seen(db: &impl Database) {
    let (store, id) = watching_store_with_a_session(db).await;
    let hits = store.hits();
    assert_eq!(visits(&store, &id).await, Some(1));
    assert!(store.hits() > hits, "cached");
    db.delete_by_hand().await;
    assert!(
        eventually(|| async { visits(&store, &id).await.is_none() }).await,
        "a session deleted by hand is gone"
    );
}

async fn changes_made_while_the_watcher_was_away_are_not_served(db: &impl Database) {
    let (a, id) = watching_store_with_a_session(db).await;
    assert_eq!(visits(&a, &id).await, Some(1));
    let watchers = db.watchers().await;
    assert_eq!(watchers.len(), 1, "one watcher: {watchers:?}");
    db.kill(&watchers[0]).await;
    assert!(
        eventually(|| async { !a.watching() }).await,
        "the cache notices its watcher is gone"
    );
    // Changed while nobody watched for A: A must not serve its old copy once it watches again.
    let b = db.plain().await;
    let record = b.load(&id).await.expect("loads").expect("live");
    let saved = Record {
        data: data(5).into(),
        ..record
    };
    assert!(b.update(&id, &saved).await.expect("saves").is_some());
    assert!(
        eventually(|| async { a.watching() }).await,
        "the watcher reconnects"
    );
    assert_ne!(db.watchers().await, watchers);
    assert_eq!(visits(&a, &id).await, Some(5));
    // Watching again, it caches again.
    let hits = a.hits();
    assert_eq!(visits(&a, &id).await, Some(5));
    assert!(a.hits() > hits);
}

async fn an_expired_session_is_not_served_from_the_near_cache(db: &impl Database) {
    let store = db.cached().await;
    assert!(eventually(|| async { store.watching() }).await);
    // Expiries are whole seconds: this one is 4 to 5 s away.
    let expires = OffsetDateTime::now_utc() + time::Duration::seconds(5);
    let Stored { id, .. } = store.create(&data(1), expires).await.expect("created");
    assert!(
        eventually(|| async {
            let hits = store.hits();
            visits(&store, &id).await == Some(1) && store.hits() > hits
        })
        .await,
        "cached while live"
    );
    tokio::time::sleep(Duration::from_millis(5100)).await;
    assert_eq!(visits(&store, &id).await, None);
}

/// Redis refusing client tracking (here an ACL without `CLIENT`; likewise a Redis older than 6):
/// sessions work, every load asks Redis.
#[tokio::test]
async fn a_redis_that_cannot_be_watched_leaves_the_near_cache_off() {
    let Some(prefix) = RedisPrefix::create("near cache refused") else {
        return;
    };
    let user = prefix.prefix.trim_end_matches(':').replace(':', "_");
    let mut admin = prefix.connection().expect("a connection");
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(">secret")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-client")
        .query::<()>(&mut admin)
        .expect("ACL SETUSER");
    struct DropUser(redis::Connection, String);
    impl Drop for DropUser {
        fn drop(&mut self) {
            let _ = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&self.1)
                .query::<()>(&mut self.0);
        }
    }
    let _user = DropUser(admin, user.clone());
    let url = prefix
        .url
        .replacen("redis://", &format!("redis://{user}:secret@"), 1);
    let restricted = RedisPrefix {
        url,
        prefix: prefix.prefix.clone(),
    };
    let store = NearCached::new(
        restricted.store().await,
        NonZeroUsize::new(100).expect("not zero"),
    );
    let Stored { id, .. } = store.create(&data(1), in_an_hour()).await.expect("created");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        assert_eq!(visits(&store, &id).await, Some(1));
    }
    assert!(!store.watching());
    assert_eq!(store.hits(), 0);
}

/// What `table`'s notifications on the channel say until `marker`, sent now, comes by (the
/// notifications of other tests' tables are skipped).
async fn heard(
    listener: &mut sqlx::postgres::PgListener,
    pool: &sqlx::PgPool,
    table: &str,
    marker: &str,
) -> Vec<String> {
    sqlx::query("SELECT pg_notify('session_changes', $1)")
        .bind(marker)
        .execute(pool)
        .await
        .expect("NOTIFY");
    let mut payloads = Vec::new();
    loop {
        let notification = tokio::time::timeout(PATIENCE, listener.recv())
            .await
            .expect("the marker arrives")
            .expect("a notification");
        let payload = notification.payload();
        if payload == marker {
            return payloads;
        }
        if let Some(rest) = payload.strip_prefix(&format!("{table}:")) {
            payloads.push(rest.to_owned());
        }
    }
}

/// The notifications of migration 0003, read off the channel: what the near cache hears of
/// each kind of change (and what clearing expired sessions spares it).
#[tokio::test]
async fn postgres_notifies_updates_and_deletes_of_live_sessions_only() {
    let Some(db) = OnPostgres::create("near cache notifications").await else {
        return;
    };
    let store = db.plain().await;
    let table: String = sqlx::query_scalar("SELECT to_regclass('session')::oid::text")
        .fetch_one(db.pg())
        .await
        .expect("the table's oid");
    let mut listener = sqlx::postgres::PgListener::connect_with(db.pg())
        .await
        .expect("a listener");
    listener.listen("session_changes").await.expect("LISTEN");
    let past = OffsetDateTime::now_utc() - time::Duration::hours(1);
    let Stored { id: expired, .. } = store.create(&data(1), past).await.expect("created");
    let Stored { id: live, .. } = store.create(&data(2), in_an_hour()).await.expect("created");
    let Stored { id: renewed, .. } = store.create(&data(3), past).await.expect("created");

    let digest = |id: &str| {
        rocket_server_sessions::store::SessionKey::parse(id)
            .expect("a key")
            .digest_hex()
    };

    assert_eq!(
        heard(&mut listener, db.pg(), &table, "created").await,
        Vec::<String>::new(),
        "inserts are not news"
    );
    sqlx::query("UPDATE session SET expires = $1 WHERE key_hash = decode($2, 'hex')")
        .bind(in_an_hour().unix_timestamp())
        .bind(digest(&renewed))
        .execute(db.pg())
        .await
        .expect("UPDATE");
    assert_eq!(
        heard(&mut listener, db.pg(), &table, "renewed").await,
        vec![digest(&renewed)],
        "an expired row renewed"
    );
    assert_eq!(store.clear_expired().await.expect("cleared"), 1);
    assert_eq!(
        heard(&mut listener, db.pg(), &table, "cleared").await,
        Vec::<String>::new(),
        "clearing expired: nothing"
    );
    assert!(store.load(&expired).await.expect("loads").is_none());
    store.delete(&live).await.expect("deleted");
    assert_eq!(
        heard(&mut listener, db.pg(), &table, "deleted").await,
        vec![digest(&live)]
    );
    sqlx::query("TRUNCATE session")
        .execute(db.pg())
        .await
        .expect("TRUNCATE");
    assert_eq!(
        heard(&mut listener, db.pg(), &table, "truncated").await,
        vec!["*".to_owned()]
    );
}

/// Changes PostgreSQL makes without the triggers are never reported: the heartbeat notices
/// the triggers are off, and the cache stops until they are back.
#[tokio::test]
async fn postgres_without_its_triggers_turns_the_near_cache_off() {
    let Some(db) = OnPostgres::create("near cache triggers off").await else {
        return;
    };
    let (store, id) = watching_store_with_a_session(&db).await;
    sqlx::query("ALTER TABLE session DISABLE TRIGGER session_deleted")
        .execute(db.pg())
        .await
        .expect("ALTER TABLE");
    assert!(
        eventually(|| async { !store.watching() }).await,
        "the heartbeat notices"
    );
    // Unreported, yet not served from the cache.
    db.delete_by_hand().await;
    assert_eq!(visits(&store, &id).await, None);
    assert!(!store.watching(), "stays off while a trigger is off");
    sqlx::query("ALTER TABLE session ENABLE TRIGGER session_deleted")
        .execute(db.pg())
        .await
        .expect("ALTER TABLE");
    assert!(
        eventually(|| async { store.watching() }).await,
        "back on with the triggers"
    );
}

/// `pg_proc.xmin` of the trigger function: it changes whenever the function is written again.
async fn function_version(pool: &sqlx::PgPool) -> String {
    sqlx::query_scalar("SELECT xmin::text FROM pg_proc WHERE oid = to_regproc('session_changed')")
        .fetch_one(pool)
        .await
        .expect("the function is there")
}

#[tokio::test]
async fn postgres_tables_notify_the_channel_their_store_names() {
    let Some(db) = OnPostgres::create("near cache channel").await else {
        return;
    };
    // `OnPostgres` migrated with the default channel; a site whose table reports elsewhere
    // names its own, and its table is brought to it once.
    let before = function_version(&db.pool).await;
    let store = PostgresStore::new(db.pool.clone()).with_channel("site_sessions");
    store.migrate().await.expect("migrates");
    let moved = function_version(&db.pool).await;
    assert_ne!(
        moved, before,
        "the function now notifies the store's channel"
    );
    store.migrate().await.expect("migrates again");
    assert_eq!(
        function_version(&db.pool).await,
        moved,
        "and is left alone after"
    );

    let cached = NearCached::new(store.clone(), NonZeroUsize::new(8).expect("not zero"));
    assert!(eventually(|| async { cached.watching() }).await, "watches");
    let Stored { id, .. } = cached
        .create(&data(1), in_an_hour())
        .await
        .expect("created");
    assert_eq!(visits(&cached, &id).await, Some(1));
    let record = store.load(&id).await.expect("loads").expect("live");
    let saved = Record {
        data: data(2).into(),
        ..record
    };
    assert!(store.update(&id, &saved).await.expect("saves").is_some());
    assert!(
        eventually(|| async { visits(&cached, &id).await == Some(2) }).await,
        "another server's update, reported on the store's channel, reaches the cache"
    );

    let refused = PostgresStore::new(db.pool.clone())
        .with_channel("no; DROP TABLE session")
        .migrate()
        .await;
    assert!(refused.is_err(), "a channel that is not a plain name");
}

/// A store whose table's triggers notify another channel than the one it listens on (two
/// constructors of one application that disagree) hears no change:
/// its heartbeats, which the same triggers report, do not come back either, so its cache never
/// serves, and another server's logout is seen at once.
#[tokio::test]
async fn postgres_listening_on_another_channel_than_the_triggers_serves_nothing() {
    let Some(db) = OnPostgres::create("near cache deaf channel").await else {
        return;
    };
    // Migrated with the default channel; this store listens elsewhere.
    let deaf = NearCached::new(
        PostgresStore::new(db.pool.clone()).with_channel("elsewhere"),
        NonZeroUsize::new(8).expect("not zero"),
    );
    let other = db.plain().await;
    let Stored { id, .. } = other.create(&data(1), in_an_hour()).await.expect("created");
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert_eq!(visits(&deaf, &id).await, Some(1));
        assert!(!deaf.watching(), "confirmed a watch that hears nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(deaf.hits(), 0);
    other.delete(&id).await.expect("deleted");
    assert_eq!(visits(&deaf, &id).await, None, "the logout, at once");
}

/// A heartbeat leaves nothing behind: no row in the table, no key under the prefix, nothing
/// counted.
#[tokio::test]
async fn heartbeats_leave_no_trace_in_the_store() {
    if let Some(db) = OnPostgres::create("near cache heartbeat trace").await {
        let (store, _) = watching_store_with_a_session(&db).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM session")
            .fetch_one(db.pg())
            .await
            .expect("count");
        assert_eq!(rows, 1, "the session alone");
        assert_eq!(
            store
                .census()
                .map(|census| census.count())
                .expect("PostgreSQL counts")
                .await
                .map(|c| (c.live, c.expired))
                .expect("counts"),
            (1, 0)
        );
    }
    if let Some(prefix) = RedisPrefix::create("near cache heartbeat trace") {
        let db = OnRedis(prefix);
        let (_store, _) = watching_store_with_a_session(&db).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let keys = db.0.keys();
        assert_eq!(keys.len(), 1, "the session alone: {keys:?}");
    }
}
