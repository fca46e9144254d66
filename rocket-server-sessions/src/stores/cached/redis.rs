//! Redis as a cache tier: its side of the copy protocol.
//!
//! A copy is the Redis store's hash (`v`, `d`, `e`) with one more field, `w`: when it was
//! written (unix milliseconds), so that a [`CachedStore`](super::CachedStore) can tell copies
//! written before Redis last failed it. A copy is written only over an older version (a Lua
//! script, so the check and the write are one step) and lives five minutes at most.
//! A deleted session leaves a *tombstone* (`v` = -1) for ten minutes, longer than any request
//! that could still hold the session, so that a read in flight when it was deleted cannot copy
//! it back; the Redis store reads a tombstone as no session.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use time::OffsetDateTime;

use super::tier::{Entry, Protocol};
use super::unix_ms;
use crate::record::{self, Record};
use crate::store::{Result, StoreError};
use crate::stores::near::{Name, Watched};
use crate::stores::redis::{live, RedisStore};

/// The version a tombstone carries.
const TOMBSTONE: i64 = -1;

/// How long a tombstone lives, in seconds.
const TOMBSTONE_TTL: i64 = 600;

/// How long a copy lives at most, in seconds.
const COPY_TTL: i64 = 300;

/// Writes the hash unless what is there is newer or a tombstone (the same version is written
/// again, with its new write time); what does not decode is written over. ARGV: version,
/// data, expiry, when Redis should drop this copy (no later than the expiry), and the write
/// time (unix milliseconds).
static PUT_IF_NEWER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'hash' and kind ~= 'none' then redis.call('DEL', KEYS[1]) end
local current = tonumber(redis.call('HGET', KEYS[1], 'v'))
if current and (current < 0 or current > tonumber(ARGV[1])) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2], 'e', ARGV[3], 'w', ARGV[5])
redis.call('EXPIREAT', KEYS[1], ARGV[4])
return 1",
    )
});

/// Deletes the hash unless it is a tombstone.
static INVALIDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'hash' and redis.call('HGET', KEYS[1], 'v') == '-1' then return 0 end
return redis.call('DEL', KEYS[1])",
    )
});

fn backend(e: redis::RedisError) -> StoreError {
    StoreError::backend(e)
}

#[rocket::async_trait]
impl Protocol for RedisStore {
    const COPY_TTL: Duration = Duration::from_secs(COPY_TTL.unsigned_abs());

    async fn entry_at(&self, name: &Name) -> Result<Entry> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let Some(fields) = self.fields_at(&self.key_at(name)).await? else {
            return Ok(Entry::Missing);
        };
        let written = fields.3;
        Ok(match fields.0 {
            Some(TOMBSTONE) => Entry::Deleted,
            _ => live(fields, now).map_or(Entry::Missing, |record| Entry::Live(record, written)),
        })
    }

    async fn put_if_newer(&self, id: &str, record: &Record) -> Result<bool> {
        let Some(name) = self.watched_name(id) else {
            return Ok(false);
        };
        let now = OffsetDateTime::now_utc();
        let expires = record.expires.unix_timestamp();
        let mut invocation = PUT_IF_NEWER.prepare_invoke();
        invocation
            .key(self.key_at(&name))
            .arg(record.version)
            .arg(record::encode(&record.data))
            .arg(expires)
            .arg(expires.min(now.unix_timestamp() + COPY_TTL))
            .arg(unix_ms(now));
        let written = invocation.invoke_async::<i64>(&mut self.connection()).await;
        Ok(written.map_err(backend)? == 1)
    }

    async fn invalidate_at(&self, name: &Name) -> Result<()> {
        let mut invocation = INVALIDATE.prepare_invoke();
        invocation.key(self.key_at(name));
        let outcome = invocation.invoke_async::<i64>(&mut self.connection()).await;
        outcome.map(drop).map_err(backend)
    }

    async fn bury_at(&self, name: &Name) -> Result<()> {
        let key = self.key_at(name);
        let outcome = redis::pipe()
            .atomic()
            .del(&key)
            .ignore()
            .hset(&key, "v", TOMBSTONE)
            .ignore()
            .expire(&key, TOMBSTONE_TTL)
            .ignore()
            .query_async::<()>(&mut self.connection())
            .await;
        outcome.map_err(backend)
    }
}
