//! Sessions in Redis (Django's `backends.cache`).
//!
//! A session is a hash under `<prefix><sha256 of the key in hex>` with fields `v` (version),
//! `d` (the JSON data) and `e` (expiry, unix seconds), and a TTL at its expiry: Redis drops
//! expired sessions itself. Creating and updating are Lua scripts, so a save is one atomic
//! compare-and-swap on the version, as in the SQL store. A deleted session can be left as a
//! *tombstone* (`v` = -1, short TTL) so that a cache in front of SQL never brings it back from
//! a read that was in flight when it was deleted.
//!
//! Loads that arrive together go to Redis together ([`Reads`]): the first one queues its `HMGET`
//! and spawns a task that yields once, so that the other requests the worker thread has ready
//! run first and queue theirs, then sends the whole queue as one pipeline. Under load that is
//! one write to Redis for several loads: measured with 16 connections, Redis's own CPU per load
//! halved (the web server's cost stayed the same; see BENCHMARKS.md).
//!
//! With a near cache (the `near_cache` argument of [`RedisStore::connect`]), a load of an unchanged session asks Redis
//! nothing: `watch` keeps a RESP3 connection with client tracking in broadcast mode on the
//! key prefix, so Redis reports every change to any session (see `near.rs` for the rules).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, PushInfo, PushKind, Script, Value};
use rocket::tokio::sync::oneshot;
use time::OffsetDateTime;

use rocket::figment::Figment;
use serde::{Deserialize, Serialize};

use crate::config::{redact_password, store_settings, ConfigError};
use crate::key::SessionKey;
use crate::record::{self, Data, Record};
use crate::store::{Result, SessionStore, StoreError};
use crate::stores::near::{keep_watching, NearCache, HEARTBEAT};

/// How many fresh keys `create` draws before it gives up.
const CREATE_ATTEMPTS: u32 = 10;

/// The version a tombstone carries.
const TOMBSTONE: i64 = -1;

/// How long a tombstone lives: longer than any request that could still hold the session.
const TOMBSTONE_TTL: u64 = 600;

/// Creates the hash unless the key exists. ARGV: data, expiry.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', 1, 'd', ARGV[1], 'e', ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return 1";

/// Replaces the hash if its version is ARGV[1]. ARGV: expected version, data, expiry.
const UPDATE: &str = r"
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1] + 1, 'd', ARGV[2], 'e', ARGV[3])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return 1";

/// Writes the hash unless what is there is newer or a tombstone (the same version is written
/// again, with its new write time). ARGV: version, data, expiry, when Redis should drop this
/// copy (no later than the expiry), and the write time (unix milliseconds).
const PUT_IF_NEWER: &str = r"
local current = tonumber(redis.call('HGET', KEYS[1], 'v'))
if current and (current < 0 or current > tonumber(ARGV[1])) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2], 'e', ARGV[3], 'w', ARGV[5])
redis.call('EXPIREAT', KEYS[1], ARGV[4])
return 1";

/// Deletes the hash unless it is a tombstone.
const INVALIDATE: &str = r"
if redis.call('HGET', KEYS[1], 'v') == '-1' then return 0 end
return redis.call('DEL', KEYS[1])";

/// How long a copy written by [`RedisStore::put_if_newer`] lives at most: a cache in front of
/// another store whose writes to Redis failed (Redis was down) serves a stale copy no longer.
pub const CACHE_TTL: i64 = 300;

/// The settings of a Redis store: `[default.session.redis]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// The server (default `redis://127.0.0.1:6379/0`).
    pub url: String,
    /// Put before every key, so several sites (or test runs) share one database (default
    /// `session:`).
    pub key_prefix: String,
    /// Milliseconds to wait for a connection or an answer before the store counts as down
    /// (default 2000).
    pub timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".into(),
            key_prefix: "session:".into(),
            timeout_ms: 2000,
        }
    }
}

impl RedisConfig {
    /// The settings in `figment`'s `session.redis` table, over the defaults, validated.
    ///
    /// # Errors
    /// [`ConfigError`] naming the setting at fault.
    pub fn from_figment(figment: &Figment) -> std::result::Result<Self, ConfigError> {
        let config: RedisConfig = store_settings(figment, "redis")?;
        if !(config.url.starts_with("redis://") || config.url.starts_with("rediss://")) {
            return Err(ConfigError::invalid(
                "redis.url",
                "must be a redis:// or rediss:// URL",
            ));
        }
        if config.timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "redis.timeout_ms",
                "must be at least 1",
            ));
        }
        Ok(config)
    }

    /// `timeout_ms` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// What Redis holds for a session id.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// Nothing.
    Missing,
    /// A session deleted a moment ago.
    Deleted,
    /// A live session, and when [`RedisStore::put_if_newer`] wrote it (unix milliseconds), if
    /// that is how it got there.
    Live(Record, Option<i64>),
}

/// The fields `v`, `d`, `e` and `w` of a session's hash.
type Fields = (Option<i64>, Option<String>, Option<i64>, Option<i64>);

/// Where the answer to one queued load goes.
type Waiter = oneshot::Sender<redis::RedisResult<Fields>>;

/// Loads waiting to be sent, each with where its answer goes.
#[derive(Default)]
struct Reads {
    queue: Mutex<Vec<(String, Waiter)>>,
}

impl Reads {
    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<(String, Waiter)>> {
        // Nothing panics while holding it; if something did, the queue is still whole.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fields of the hash under `redis_key`, read in one pipeline with whatever other loads
    /// are queued by then.
    async fn fields(
        self: &Arc<Self>,
        conn: &ConnectionManager,
        redis_key: String,
    ) -> redis::RedisResult<Fields> {
        let (answer, answered) = oneshot::channel();
        let first = {
            let mut queue = self.queue();
            queue.push((redis_key, answer));
            queue.len() == 1
        };
        if first {
            let reads = Arc::clone(self);
            let mut conn = conn.clone();
            rocket::tokio::spawn(async move {
                // Let the requests that are ready queue their loads first.
                rocket::tokio::task::yield_now().await;
                reads.send(&mut conn).await;
            });
        }
        answered.await.unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "the read was dropped before Redis answered",
            )))
        })
    }

    /// Sends every queued load as one pipeline and hands out the answers.
    async fn send(&self, conn: &mut ConnectionManager) {
        let batch = std::mem::take(&mut *self.queue());
        let mut pipe = redis::pipe();
        for (key, _) in &batch {
            pipe.cmd("HMGET").arg(key).arg(&["v", "d", "e", "w"]);
        }
        let answers: redis::RedisResult<Vec<Fields>> = pipe.query_async(conn).await;
        let answers = answers.and_then(|answers| {
            if answers.len() == batch.len() {
                Ok(answers)
            } else {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "a pipeline of loads got the wrong number of answers",
                    format!("{} for {}", answers.len(), batch.len()),
                )))
            }
        });
        match answers {
            Ok(answers) => {
                for ((_, waiter), fields) in batch.into_iter().zip(answers) {
                    // A waiter that went away (its request was cancelled) needs no answer.
                    let _ = waiter.send(Ok(fields));
                }
            }
            Err(e) => {
                for (_, waiter) in batch {
                    let _ = waiter.send(Err(e.clone()));
                }
            }
        }
    }
}

/// `at` in unix milliseconds.
pub(crate) fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Watches the keys under `prefix` for `near`: a RESP3 connection of its own with client
/// tracking in broadcast mode, so Redis reports every change to a key under the prefix
/// (written, deleted, expired or evicted, by anyone) as an invalidation, then heartbeats on it.
/// Reconnects after any failure, flushing the cache; stops when the cache is dropped.
async fn watch(client: redis::Client, prefix: String, timeout: Duration, near: Weak<Near>) {
    keep_watching(near.clone(), "Redis", || async {
        watch_once(&client, &prefix, timeout, &near)
            .await
            .map_err(|e| format!("{e} (client tracking needs Redis 6 or later)"))
    })
    .await;
}

/// One connection's worth of [`watch`]: `Ok` when the cache was dropped, the error otherwise.
async fn watch_once(
    client: &redis::Client,
    prefix: &str,
    timeout: Duration,
    near: &Weak<Near>,
) -> redis::RedisResult<()> {
    let reported = near.clone();
    let on_push = move |push: PushInfo| -> Result<(), ()> {
        let cache = reported.upgrade().ok_or(())?;
        apply(&cache, push);
        Ok(())
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_push_sender(on_push);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(watcher_name(prefix))
        .query_async::<()>(&mut conn)
        .await?;
    let mut tracking = redis::cmd("CLIENT");
    tracking.arg("TRACKING").arg("ON").arg("BCAST");
    if !prefix.is_empty() {
        tracking.arg("PREFIX").arg(prefix);
    }
    tracking.query_async::<()>(&mut conn).await?;
    // Anything kept before now was not watched.
    let watch = match near.upgrade() {
        Some(cache) => cache.watch(),
        None => return Ok(()),
    };
    loop {
        let sent = Instant::now();
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        match near.upgrade() {
            Some(cache) => cache.confirm(watch, sent),
            None => return Ok(()),
        }
        rocket::tokio::time::sleep(HEARTBEAT).await;
    }
}

/// Applies what Redis pushed to the watcher: an invalidation evicts the keys it names (a
/// flush of the database, which names none, flushes); a lost connection stops the cache.
fn apply(cache: &Near, push: PushInfo) {
    match push.kind {
        PushKind::Invalidate => match push.data.first() {
            Some(Value::Array(keys)) => cache.evict(keys.iter().filter_map(|key| match key {
                Value::BulkString(key) => std::str::from_utf8(key).ok(),
                _ => None,
            })),
            _ => cache.flush(),
        },
        PushKind::Disconnection => cache.lost(),
        _ => {}
    }
}

/// The client name of the watcher of `prefix` (`CLIENT LIST` shows it).
pub fn watcher_name(prefix: &str) -> String {
    let printable: String = prefix
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!("session-watch:{printable}")
}

/// The near cache of a Redis store, by Redis key.
type Near = NearCache<Entry>;

/// A store in Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    reads: Arc<Reads>,
    near: Option<Arc<Near>>,
    prefix: String,
    create: Script,
    update: Script,
    put: Script,
    invalidate: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn backend(e: redis::RedisError) -> StoreError {
    StoreError::backend(e)
}

impl RedisStore {
    /// Connects to the server of `settings` (and fails if it cannot be reached now), keeping up
    /// to `near_cache` recently loaded sessions in the process, watched through Redis's client
    /// tracking (`None`: every load asks Redis). The connection reconnects by itself when the
    /// server comes back after an outage.
    ///
    /// # Errors
    /// [`StoreError::Backend`] naming the URL when it is invalid or the server does not answer.
    pub async fn connect(settings: &RedisConfig, near_cache: Option<NonZeroUsize>) -> Result<Self> {
        let unreachable = |e: redis::RedisError| {
            StoreError::Backend(
                format!(
                    "cannot reach Redis at {}: {e}",
                    redact_password(&settings.url)
                )
                .into(),
            )
        };
        let client = redis::Client::open(settings.url.as_str()).map_err(unreachable)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout()))
            .set_response_timeout(Some(settings.timeout()))
            .set_number_of_retries(1);
        let mut conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unreachable)?;
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(unreachable)?;
        let near = near_cache.map(|capacity| {
            let near = Arc::new(NearCache::new(capacity));
            let mut info = client.get_connection_info().clone();
            let resp3 = info
                .redis_settings()
                .clone()
                .set_protocol(redis::ProtocolVersion::RESP3);
            info = info.set_redis_settings(resp3);
            match redis::Client::open(info) {
                Ok(watcher) => {
                    rocket::tokio::spawn(watch(
                        watcher,
                        settings.key_prefix.clone(),
                        settings.timeout(),
                        Arc::downgrade(&near),
                    ));
                }
                Err(e) => log::warn!("session near cache off: {e}"),
            }
            near
        });
        Ok(RedisStore {
            conn,
            reads: Arc::default(),
            near,
            prefix: settings.key_prefix.clone(),
            create: Script::new(CREATE),
            update: Script::new(UPDATE),
            put: Script::new(PUT_IF_NEWER),
            invalidate: Script::new(INVALIDATE),
        })
    }

    fn redis_key(&self, key: &SessionKey) -> String {
        let mut redis_key = String::with_capacity(self.prefix.len() + 64);
        redis_key.push_str(&self.prefix);
        redis_key.push_str(&key.digest_hex());
        redis_key
    }

    /// What Redis holds for `id`, tombstones included.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when Redis does not answer.
    pub async fn entry(&self, id: &str) -> Result<Entry> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(Entry::Missing);
        };
        let redis_key = self.redis_key(&key);
        let now = OffsetDateTime::now_utc();
        let ticket = match &self.near {
            Some(near) => match near.get(&redis_key) {
                Some(Entry::Live(record, _)) if record.expires <= now => return Ok(Entry::Missing),
                // A copy that Redis should have dropped by now (its TTL was CACHE_TTL) is asked
                // for again: Redis reports the drop only once it notices it.
                Some(Entry::Live(_, Some(written)))
                    if written.saturating_add(CACHE_TTL * 1000) <= unix_ms(now) =>
                {
                    near.ticket()
                }
                Some(entry) => return Ok(entry),
                None => near.ticket(),
            },
            None => None,
        };
        let (version, data, expires, written) = self
            .reads
            .fields(&self.conn, redis_key.clone())
            .await
            .map_err(backend)?;
        let entry = Self::entry_of(version, data, expires, written, now.unix_timestamp());
        if let (Some(near), Some(ticket), Entry::Live(..)) = (&self.near, ticket, &entry) {
            near.fill(redis_key, entry.clone(), ticket);
        }
        Ok(entry)
    }

    /// What the fields of a hash say, at `now` (unix seconds).
    fn entry_of(
        version: Option<i64>,
        data: Option<String>,
        expires: Option<i64>,
        written: Option<i64>,
        now: i64,
    ) -> Entry {
        match (version, data, expires) {
            (Some(TOMBSTONE), _, _) => Entry::Deleted,
            (Some(version), Some(data), Some(expires)) if expires > now => Entry::Live(
                Record {
                    data: record::decode(&data),
                    expires: OffsetDateTime::from_unix_timestamp(expires)
                        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    version,
                },
                written,
            ),
            _ => Entry::Missing,
        }
    }

    /// Drops the copy under `redis_key` from the near cache after a write: this process sees
    /// its own writes at once, and no load that was in flight keeps what it read.
    fn written(&self, redis_key: &str) {
        if let Some(near) = &self.near {
            near.evict([redis_key]);
        }
    }

    /// Whether the near cache is watching Redis now (for tests and diagnosis).
    pub fn near_cache_watching(&self) -> bool {
        self.near.as_ref().is_some_and(|near| near.watching())
    }

    /// How many loads the near cache has answered (for tests and diagnosis).
    pub fn near_cache_hits(&self) -> u64 {
        self.near.as_ref().map_or(0, |near| near.hits())
    }

    /// Stores `record` under `id`, with the time of writing, unless Redis has a newer version
    /// or a tombstone (for a cache in front of another store), for [`CACHE_TTL`] seconds at
    /// most. Returns whether it wrote.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when Redis does not answer.
    pub async fn put_if_newer(&self, id: &str, record: &Record) -> Result<bool> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(false);
        };
        let now = OffsetDateTime::now_utc();
        let redis_key = self.redis_key(&key);
        let mut invocation = self.put.prepare_invoke();
        invocation
            .key(&redis_key)
            .arg(record.version)
            .arg(record::encode(&record.data))
            .arg(record.expires.unix_timestamp())
            .arg(
                record
                    .expires
                    .unix_timestamp()
                    .min(now.unix_timestamp() + CACHE_TTL),
            )
            .arg(unix_ms(now));
        let written = invocation.invoke_async::<i64>(&mut self.conn.clone()).await;
        self.written(&redis_key);
        Ok(written.map_err(backend)? == 1)
    }

    /// Drops the copy under `id`, but not a tombstone (which must outlive reads in flight).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when Redis does not answer.
    pub async fn invalidate(&self, id: &str) -> Result<()> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(());
        };
        let redis_key = self.redis_key(&key);
        let mut invocation = self.invalidate.prepare_invoke();
        invocation.key(&redis_key);
        let outcome = invocation.invoke_async::<i64>(&mut self.conn.clone()).await;
        self.written(&redis_key);
        outcome.map(|_| ()).map_err(backend)
    }

    /// Replaces whatever is under `id` by a tombstone that lives a few minutes.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when Redis does not answer.
    pub async fn bury(&self, id: &str) -> Result<()> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(());
        };
        let redis_key = self.redis_key(&key);
        let outcome = redis::pipe()
            .atomic()
            .del(&redis_key)
            .ignore()
            .hset(&redis_key, "v", TOMBSTONE)
            .ignore()
            .expire(&redis_key, TOMBSTONE_TTL as i64)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await;
        self.written(&redis_key);
        outcome.map_err(backend)
    }
}

#[rocket::async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, id: &str) -> Result<Option<Record>> {
        Ok(match self.entry(id).await? {
            Entry::Live(record, _) => Some(record),
            Entry::Missing | Entry::Deleted => None,
        })
    }

    async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<(String, i64)> {
        let encoded = record::encode(data);
        for _ in 0..CREATE_ATTEMPTS {
            let key = SessionKey::generate();
            let mut invocation = self.create.prepare_invoke();
            invocation
                .key(self.redis_key(&key))
                .arg(&encoded)
                .arg(expires.unix_timestamp());
            let created: i64 = invocation
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
            if created == 1 {
                return Ok((key.as_str().to_owned(), 1));
            }
        }
        Err(StoreError::NoFreeKey(CREATE_ATTEMPTS))
    }

    async fn update(&self, id: &str, record: &Record) -> Result<Option<(String, i64)>> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(None);
        };
        let redis_key = self.redis_key(&key);
        let mut invocation = self.update.prepare_invoke();
        invocation
            .key(&redis_key)
            .arg(record.version)
            .arg(record::encode(&record.data))
            .arg(record.expires.unix_timestamp());
        let updated = invocation.invoke_async::<i64>(&mut self.conn.clone()).await;
        self.written(&redis_key);
        Ok((updated.map_err(backend)? == 1).then(|| (id.to_owned(), record.version + 1)))
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(());
        };
        let redis_key = self.redis_key(&key);
        let outcome = self.conn.clone().del::<_, ()>(&redis_key).await;
        self.written(&redis_key);
        outcome.map_err(backend)
    }

    async fn clear_expired(&self) -> Result<u64> {
        // Redis drops a session when its TTL runs out.
        Ok(0)
    }

    fn expires_by_itself(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(kind: PushKind, data: Vec<Value>) -> PushInfo {
        PushInfo { kind, data }
    }

    fn filled(names: &[&str]) -> Near {
        crate::stores::near::filled(names, Entry::Deleted)
    }

    #[test]
    fn an_invalidation_evicts_the_keys_it_names() {
        let cache = filled(&["p:a", "p:b", "p:c"]);
        let keys = ["p:a", "p:c"]
            .iter()
            .map(|key| Value::BulkString(key.as_bytes().to_vec()))
            .collect();
        apply(&cache, push(PushKind::Invalidate, vec![Value::Array(keys)]));
        assert_eq!(cache.get("p:a"), None);
        assert_eq!(cache.get("p:b"), Some(Entry::Deleted));
        assert_eq!(cache.get("p:c"), None);
    }

    #[test]
    fn an_invalidation_without_keys_flushes_everything() {
        // What Redis sends after FLUSHDB or FLUSHALL.
        let cache = filled(&["p:a", "p:b"]);
        apply(&cache, push(PushKind::Invalidate, vec![Value::Nil]));
        assert_eq!(cache.len(), 0);
        assert!(cache.watching());
    }

    #[test]
    fn a_lost_connection_stops_the_cache() {
        let cache = filled(&["p:a"]);
        apply(&cache, push(PushKind::Disconnection, vec![]));
        assert!(!cache.watching());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn other_pushes_change_nothing() {
        let cache = filled(&["p:a"]);
        let message = vec![Value::BulkString(b"channel".to_vec())];
        apply(&cache, push(PushKind::Message, message));
        assert_eq!(cache.get("p:a"), Some(Entry::Deleted));
    }

    #[test]
    fn watcher_names_are_printable() {
        assert_eq!(watcher_name("site:session:"), "session-watch:site:session:");
        assert_eq!(watcher_name("a b\n"), "session-watch:a_b_");
    }
}
