//! Sessions in Redis (Django's `backends.cache`).
//!
//! A session is a hash under `<prefix><the key's digest in hex>` with fields `v` (version),
//! `d` (the JSON data) and `e` (expiry, unix seconds), and a TTL at its expiry: Redis drops
//! expired sessions itself. Creating and updating are Lua scripts, so a save is one atomic
//! compare-and-swap on the version, as in the SQL store. A hash with a negative version is no
//! session: a *tombstone* that Redis as a cache tier leaves for a deleted session
//! (`cached/redis.rs`).
//!
//! A session signed in as a user also holds field `u` (the user), and its digest is a member of
//! the sorted set `<prefix>users:<user>` (scored by expiry), which lives as long as the user's longest session. The save
//! and delete scripts keep the set exact as sessions move between users or go; a member whose
//! session expired is dropped by the next listing of the set, and by `clear_expired`, which
//! goes over every set (an application's clearing command). The scripts name the user sets and, when
//! listing, the sessions by the prefix they are given rather than in `KEYS`: a standalone Redis
//! (or a primary with replicas) is what the store runs on, not a Redis Cluster.
//!
//! Loads that arrive together go to Redis as one pipeline (`batch.rs`). Redis reports every
//! change to a session to a watcher (`watch.rs`), so a [`NearCached`](super::NearCached) store
//! can keep what this one loads.

mod batch;
mod watch;

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use time::OffsetDateTime;

use rocket::figment::Figment;
use serde::{Deserialize, Serialize};

use crate::config::{store_settings, ConfigError};
use crate::key::SessionKey;
use crate::record::{self, Data, Record};
use crate::store::{
    Census, ClearInBatches, Result, SessionStore, StoreError, Stored, UserIndex, UserSession,
    TRIM_BATCH,
};
use crate::stores::near::{Cache, Kept, Name, Watched};

pub(in crate::stores) use batch::Fields;
use batch::Reads;

/// How many fresh keys `create` draws before it gives up.
const CREATE_ATTEMPTS: u32 = 10;

/// The Lua function the save scripts share: adds `member` to the user set `set` (a sorted set
/// scored by each session's expiry, so a listing or a trim reads only the members it needs),
/// which lives until the latest `expiry` of its sessions.
macro_rules! index_lua {
    () => {
        r"
local function index(set, member, expiry)
    redis.call('ZADD', set, expiry, member)
    local ttl = redis.call('TTL', set)
    if ttl < 0 or tonumber(redis.call('TIME')[1]) + ttl < tonumber(expiry) then
        redis.call('EXPIREAT', set, expiry)
    end
end
"
    };
}

/// Creates the hash unless the key exists. ARGV: data, expiry, user ('' for none), the user
/// sets' prefix, the session's member name (its digest).
const CREATE: &str = concat!(
    index_lua!(),
    r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', 1, 'd', ARGV[1], 'e', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'u', ARGV[3]) end
redis.call('EXPIREAT', KEYS[1], ARGV[2])
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then
    index(ARGV[4] .. ARGV[3], ARGV[5], ARGV[2])
end
return 1"
);

/// Replaces the hash if its version is ARGV[1], moving it between user sets if its user
/// changed. ARGV: expected version, data, expiry, user ('' for none), the user sets' prefix,
/// the session's member name.
const UPDATE: &str = concat!(
    index_lua!(),
    r"
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
local old = redis.call('HGET', KEYS[1], 'u')
redis.call('HSET', KEYS[1], 'v', ARGV[1] + 1, 'd', ARGV[2], 'e', ARGV[3])
if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[1], 'u', ARGV[4])
elseif old then
    redis.call('HDEL', KEYS[1], 'u')
end
-- An expiry in the past deletes the session here and now.
redis.call('EXPIREAT', KEYS[1], ARGV[3])
local live = redis.call('EXISTS', KEYS[1]) == 1
if old and (old ~= ARGV[4] or not live) then redis.call('ZREM', ARGV[5] .. old, ARGV[6]) end
if live and ARGV[4] ~= '' then index(ARGV[5] .. ARGV[4], ARGV[6], ARGV[3]) end
return 1"
);

/// Deletes the hash and its entry in its user's set. ARGV: the user sets' prefix, the
/// session's member name.
const DELETE: &str = r"
if redis.call('TYPE', KEYS[1]).ok == 'hash' then
    local user = redis.call('HGET', KEYS[1], 'u')
    if user then redis.call('ZREM', ARGV[1] .. user, ARGV[2]) end
end
return redis.call('DEL', KEYS[1])";

/// Deletes the hash if it is signed in as ARGV[1]. ARGV: user, the user sets' prefix, the
/// session's member name.
const END_USER_SESSION: &str = r"
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
if redis.call('HGET', KEYS[1], 'u') ~= ARGV[1] then return 0 end
redis.call('ZREM', ARGV[2] .. ARGV[1], ARGV[3])
return redis.call('DEL', KEYS[1])";

/// The live sessions in the user set KEYS[1], at most ARGV[4] (0: all), those that expire
/// last first, as `{member, version, data, expiry}`, dropping members whose session expired,
/// is gone or is no longer the user's. ARGV: the key prefix, now (unix seconds), the user,
/// the limit.
const USER_SESSIONS: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local live = {}
for _, member in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[4]) - 1)) do
    local key = ARGV[1] .. member
    local f = {}
    if redis.call('TYPE', key).ok == 'hash' then
        f = redis.call('HMGET', key, 'v', 'd', 'e', 'u')
    end
    local version, expires = tonumber(f[1]), tonumber(f[3])
    if f[4] == ARGV[3] and f[2] and version and version >= 0 and expires
        and expires > tonumber(ARGV[2]) then
        table.insert(live, {member, f[1], f[2], f[3]})
    else
        redis.call('ZREM', KEYS[1], member)
    end
end
return live";

/// Moves the members of a user set of before the cap (KEYS[1], a plain set under `user:`)
/// into the user's sorted set KEYS[2], scored by each live session's expiry, and deletes the
/// old set. ARGV: the key prefix, the user.
const CONVERT_USER_SET: &str = concat!(
    index_lua!(),
    r"
if redis.call('TYPE', KEYS[1]).ok ~= 'set' then return 0 end
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local key = ARGV[1] .. member
    if redis.call('TYPE', key).ok == 'hash' and redis.call('HGET', key, 'u') == ARGV[2] then
        local expiry = tonumber(redis.call('HGET', key, 'e'))
        if expiry then index(KEYS[2], member, expiry) end
    end
end
return redis.call('DEL', KEYS[1])"
);

/// Deletes the sessions in the user set KEYS[1] but the ARGV[3] that expire last (at most
/// ARGV[4] of them), those still signed in as the user; returns their members. ARGV: the key
/// prefix, the user, how many to keep, the batch.
const TRIM_USER_SESSIONS: &str = r"
local keep, batch = tonumber(ARGV[3]), tonumber(ARGV[4])
local ended = {}
for _, member in ipairs(redis.call('ZREVRANGE', KEYS[1], keep, keep + batch - 1)) do
    local key = ARGV[1] .. member
    if redis.call('TYPE', key).ok == 'hash' and redis.call('HGET', key, 'u') == ARGV[2] then
        redis.call('DEL', key)
        table.insert(ended, member)
    end
    redis.call('ZREM', KEYS[1], member)
end
return ended";

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

/// A store in Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    /// For the watcher's connection of its own.
    client: redis::Client,
    timeout: Duration,
    reads: Arc<Reads>,
    prefix: String,
    create: Script,
    update: Script,
    delete: Script,
    end_user_session: Script,
    user_sessions: Script,
    trim_user_sessions: Script,
    convert_user_set: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Where `client` connects, as a URL without its user or password: what a message may show.
fn shown(client: &redis::Client) -> String {
    let info = client.get_connection_info();
    let scheme = match info.addr() {
        redis::ConnectionAddr::Tcp(..) => "redis",
        redis::ConnectionAddr::TcpTls { .. } => "rediss",
        // A Unix socket (the only other address there is).
        _ => "redis+unix",
    };
    let db = info.redis_settings().db();
    format!("{scheme}://{}/{db}", info.addr())
}

fn backend(e: redis::RedisError) -> StoreError {
    StoreError::backend(e)
}

impl RedisStore {
    /// Connects to the server of `settings` (and fails if it cannot be reached now). The
    /// connection reconnects by itself when the server comes back after an outage.
    ///
    /// # Errors
    /// [`StoreError::Backend`] naming the URL when it is invalid or the server does not answer.
    pub async fn connect(settings: &RedisConfig) -> Result<Self> {
        let client = redis::Client::open(settings.url.as_str()).map_err(|e| {
            StoreError::Backend(format!("session.redis.url is not a Redis URL: {e}").into())
        })?;
        let at = shown(&client);
        let unreachable = |e: redis::RedisError| {
            StoreError::Backend(format!("cannot reach Redis at {at}: {e}").into())
        };
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
        Ok(RedisStore {
            conn,
            client,
            timeout: settings.timeout(),
            reads: Arc::default(),
            prefix: settings.key_prefix.clone(),
            create: Script::new(CREATE),
            update: Script::new(UPDATE),
            delete: Script::new(DELETE),
            end_user_session: Script::new(END_USER_SESSION),
            user_sessions: Script::new(USER_SESSIONS),
            trim_user_sessions: Script::new(TRIM_USER_SESSIONS),
            convert_user_set: Script::new(CONVERT_USER_SET),
        })
    }

    fn redis_key(&self, key: &SessionKey) -> String {
        self.key_at(&key.digest())
    }

    /// The Redis key of the session whose key's digest is `name`.
    pub(in crate::stores) fn key_at(&self, name: &Name) -> String {
        self.redis_key_of(&SessionKey::hex(name))
    }

    /// The Redis key of the session whose digest in hex is `member`.
    fn redis_key_of(&self, member: &str) -> String {
        let mut redis_key = String::with_capacity(self.prefix.len() + member.len());
        redis_key.push_str(&self.prefix);
        redis_key.push_str(member);
        redis_key
    }

    /// What the names of the user sets begin with. (`users:`, sorted sets: before the cap on
    /// sessions per user they were plain sets under `user:`, which now expire unread.)
    fn user_set_prefix(&self) -> String {
        format!("{}users:", self.prefix)
    }

    /// Moves every user set of before the cap (`<prefix>user:<user>`) into its sorted set.
    async fn convert_old_user_sets(&self) -> Result<()> {
        let old = format!("{}user:", self.prefix);
        let names = self.scan(&format!("{}*", escape_glob(&old))).await?;
        for name in names {
            let Some(user) = name.strip_prefix(&old) else {
                continue;
            };
            let mut invocation = self.convert_user_set.prepare_invoke();
            invocation
                .key(&name)
                .key(self.user_set(user))
                .arg(&self.prefix)
                .arg(user);
            let converted = invocation.invoke_async::<i64>(&mut self.conn.clone()).await;
            converted.map_err(backend)?;
        }
        Ok(())
    }

    /// The keys that match `pattern`.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let mut iter = conn
            .scan_match::<_, String>(pattern)
            .await
            .map_err(backend)?;
        let mut names = Vec::new();
        while let Some(name) = rocket::futures::StreamExt::next(&mut iter).await {
            names.push(name.map_err(backend)?);
        }
        Ok(names)
    }

    /// The user set of `user`.
    fn user_set(&self, user: &str) -> String {
        format!("{}{user}", self.user_set_prefix())
    }

    /// The live sessions in the user set `set` of `user`, at most `limit` (0: all), pruning
    /// the set of the others it reads.
    async fn list_user_set(&self, set: &str, user: &str, limit: usize) -> Result<Vec<UserSession>> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut invocation = self.user_sessions.prepare_invoke();
        invocation
            .key(set)
            .arg(&self.prefix)
            .arg(now)
            .arg(user)
            .arg(limit);
        let rows: Vec<(String, i64, String, i64)> = invocation
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(handle, version, data, expires)| UserSession {
                handle,
                record: Record {
                    data: record::decode(&data).into(),
                    expires: OffsetDateTime::from_unix_timestamp(expires)
                        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    version,
                },
            })
            .collect())
    }

    /// The fields of the hash under `redis_key`: loads that arrive together go as one
    /// pipeline (`batch.rs`).
    pub(in crate::stores) async fn fields_at(&self, redis_key: &str) -> Result<Option<Fields>> {
        let fields = self.reads.fields(&self.conn, redis_key.to_owned()).await;
        fields.map_err(backend)
    }

    /// A connection for a command of its own.
    pub(in crate::stores) fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The live session under `redis_key`.
    async fn record_at(&self, redis_key: &str) -> Result<Option<Record>> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        Ok(self.fields_at(redis_key).await?.and_then(|f| live(f, now)))
    }
}

/// The live session in a hash's fields at `now` (unix seconds): none for a tombstone (a
/// negative version), an expired session, or fields that do not make one.
pub(in crate::stores) fn live((version, data, expires, _): Fields, now: i64) -> Option<Record> {
    match (version, data, expires) {
        (Some(version), Some(data), Some(expires)) if version >= 0 && expires > now => {
            Some(Record {
                data: record::decode(&data).into(),
                expires: OffsetDateTime::from_unix_timestamp(expires)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                version,
            })
        }
        _ => None,
    }
}

#[rocket::async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, id: &str) -> Result<Option<Record>> {
        match SessionKey::parse(id) {
            Some(key) => self.record_at(&self.redis_key(&key)).await,
            None => Ok(None),
        }
    }

    async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<Stored> {
        let encoded = record::encode(data);
        let user = record::user_of(data).unwrap_or_default();
        let sets = self.user_set_prefix();
        for _ in 0..CREATE_ATTEMPTS {
            let key = SessionKey::generate();
            let member = key.digest_hex();
            let mut invocation = self.create.prepare_invoke();
            invocation
                .key(self.redis_key_of(&member))
                .arg(&encoded)
                .arg(expires.unix_timestamp())
                .arg(user)
                .arg(&sets)
                .arg(&member);
            let created: i64 = invocation
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
            if created == 1 {
                return Ok(Stored {
                    id: key.as_str().to_owned(),
                    version: 1,
                });
            }
        }
        Err(StoreError::NoFreeKey(CREATE_ATTEMPTS))
    }

    async fn update(&self, id: &str, record: &Record) -> Result<Option<Stored>> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(None);
        };
        let member = key.digest_hex();
        let mut invocation = self.update.prepare_invoke();
        invocation
            .key(self.redis_key_of(&member))
            .arg(record.version)
            .arg(record::encode(&record.data))
            .arg(record.expires.unix_timestamp())
            .arg(record::user_of(&record.data).unwrap_or_default())
            .arg(self.user_set_prefix())
            .arg(&member);
        let updated = invocation.invoke_async::<i64>(&mut self.conn.clone()).await;
        Ok((updated.map_err(backend)? == 1).then(|| Stored {
            id: id.to_owned(),
            version: record.version + 1,
        }))
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(());
        };
        let member = key.digest_hex();
        let mut invocation = self.delete.prepare_invoke();
        invocation
            .key(self.redis_key_of(&member))
            .arg(self.user_set_prefix())
            .arg(&member);
        let outcome = invocation.invoke_async::<i64>(&mut self.conn.clone()).await;
        outcome.map(drop).map_err(backend)
    }

    /// Redis drops a session when its TTL runs out: nothing to clear but the user sets'
    /// members whose sessions are gone. It also moves the user sets of before the cap on
    /// sessions per user (plain sets under `user:`) into their sorted sets: until then, the
    /// sessions saved before the upgrade and not since are not listed.
    async fn clear_expired(&self) -> Result<u64> {
        self.convert_old_user_sets().await?;
        let sets = self.user_set_prefix();
        let names = self.scan(&format!("{}*", escape_glob(&sets))).await?;
        for set in &names {
            if let Some(user) = set.strip_prefix(&sets) {
                self.list_user_set(set, user, 0).await?;
            }
        }
        Ok(0)
    }

    fn expires_by_itself(&self) -> bool {
        true
    }

    fn batches(&self) -> Option<&dyn ClearInBatches> {
        None // nothing to clear in batches: TTLs clear
    }

    fn census(&self) -> Option<&dyn Census> {
        None // counting would scan every key
    }

    fn user_index(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }

    async fn describe(&self) -> Result<String> {
        Ok(format!(
            "Redis at {}, keys under {:?}",
            shown(&self.client),
            self.prefix
        ))
    }
}

#[rocket::async_trait]
impl UserIndex for RedisStore {
    async fn user_sessions(&self, user: &str, limit: usize) -> Result<Vec<UserSession>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.list_user_set(&self.user_set(user), user, limit).await
    }

    async fn trim_user_sessions(&self, user: &str, keep: usize) -> Result<Vec<String>> {
        let mut invocation = self.trim_user_sessions.prepare_invoke();
        invocation
            .key(self.user_set(user))
            .arg(&self.prefix)
            .arg(user)
            .arg(keep)
            .arg(TRIM_BATCH);
        let ended = invocation.invoke_async(&mut self.conn.clone()).await;
        ended.map_err(backend)
    }

    async fn end_user_session(&self, user: &str, handle: &str) -> Result<bool> {
        if SessionKey::digest_of_hex(handle).is_none() {
            return Ok(false);
        }
        let mut invocation = self.end_user_session.prepare_invoke();
        invocation
            .key(self.redis_key_of(handle))
            .arg(user)
            .arg(self.user_set_prefix())
            .arg(handle);
        let ended = invocation.invoke_async::<i64>(&mut self.conn.clone()).await;
        Ok(ended.map_err(backend)? == 1)
    }
}

/// Redis reports every change to a key under the prefix through client tracking (`watch.rs`).
impl crate::stores::near::sealed::Sealed for RedisStore {}

#[rocket::async_trait]
impl Watched for RedisStore {
    fn watch(&self, cache: Weak<Cache>) {
        let mut info = self.client.get_connection_info().clone();
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        info = info.set_redis_settings(resp3);
        match redis::Client::open(info) {
            Ok(watcher) => {
                rocket::tokio::spawn(watch::watch(
                    watcher,
                    self.conn.clone(),
                    self.prefix.clone(),
                    self.timeout,
                    cache,
                ));
            }
            Err(e) => log::warn!("session near cache off: {e}"),
        }
    }

    /// The name is the key's digest: no second SHA-256 of the session key.
    async fn load_watched(&self, _id: &str, name: &Name) -> Result<Option<Kept>> {
        let record = self.record_at(&self.key_at(name)).await?;
        Ok(record.map(|record| Kept {
            record,
            until: None,
        }))
    }
}

/// `text` with the characters Redis's glob patterns give a meaning to escaped.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
