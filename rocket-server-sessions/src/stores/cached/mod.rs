//! A cache tier in front of a store (Django's `backends.cached_db`: Redis in front of a
//! database): reads hit the cache first and fall back to the store, writes go to both, and the
//! store is the truth. When the cache is down, sessions keep working from the store and a
//! warning is logged. A copy in the cache lives [`CachedStore::COPY_TTL`] at most, so one that a
//! failed write left stale (a logout while Redis was unreachable, say) is not served for longer.
//!
//! [`CachedStore`] is generic over the store and over its cache tier ([`CacheTier`]: copies
//! that carry the time they were written, written only over older ones, and tombstones that
//! keep a deleted session from coming back); the one tier is Redis, whose side of that
//! protocol is `redis.rs` here.
//!
//! After Redis fails, the store leaves it alone for [`RETRY_AFTER`]: loads go straight to the
//! database and saves do not copy to Redis, so that a Redis that drops packets (rather than
//! refusing connections) costs one request a wait of `redis.timeout_ms`, not every request,
//! and the warning is logged once per outage, not once per request. Any operation that
//! reaches Redis again ends the pause. Deletes always try Redis: a logged-out session must not
//! stay in the cache if Redis can be told.
//!
//! A save whose copy to Redis failed or was skipped leaves an older copy there, which the
//! other servers sharing Redis would go on serving (and keeping in their near caches) until it
//! expires. So the store notes the name of every copy a save could not bring up to date, and a
//! task invalidates them (or, for a deleted session, buries them) as soon as Redis answers again
//! (trying every `STALE_RETRY`, 250 ms); Redis then reports the change to every server's near cache. Another server serves the old version
//! while this one cannot reach Redis, and for at most a second or two after it can; if this
//! server dies first, for at most the copy's `COPY_TTL`. This server itself never serves
//! such a copy: every copy carries the time it was written, and copies written before Redis
//! last failed here are read again from the database (and written over) instead of being
//! served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use time::OffsetDateTime;

use super::near::{Cache, Kept, Name, Watched};
use super::redis::RedisStore;
use crate::record::{Data, Record};
use crate::store::{Census, ClearInBatches, Result, SessionStore, Stored, UserIndex, UserSession};

mod redis;

/// Where a [`CachedStore`] keeps its copies: a store whose server reports every change to a
/// watcher ([`Watched`]), with the copy protocol that keeps a cache in front of another store
/// coherent (copies that carry the time they were written, written only over older ones, and
/// tombstones that keep a deleted session from coming back). Sealed: [`RedisStore`] is the one
/// tier, and the protocol's operations are the crate's own.
pub trait CacheTier: Watched + Clone + tier::Protocol {}

impl CacheTier for RedisStore {}

/// The copy protocol, out of reach of applications: its operations take sessions by name (the
/// key's digest, a session's `Watched::watched_name`), not by key.
mod tier {
    use std::time::Duration;

    use crate::record::Record;
    use crate::store::Result;
    use crate::stores::near::Name;

    #[rocket::async_trait]
    pub trait Protocol {
        /// How long a copy lives at most: the longest another server may serve a copy that a
        /// store could not bring up to date or bury because the cache stopped answering.
        const COPY_TTL: Duration;

        /// What the cache holds of the session `name`, tombstones included.
        async fn entry_at(&self, name: &Name) -> Result<Entry>;

        /// Keeps `record` as the copy of `id`, with the time of writing, unless the cache holds
        /// a newer version or a tombstone; for `COPY_TTL` at most. Whether it wrote.
        async fn put_if_newer(&self, id: &str, record: &Record) -> Result<bool>;

        /// Drops the copy of the session `name`, but not a tombstone (which must outlive reads
        /// in flight).
        async fn invalidate_at(&self, name: &Name) -> Result<()>;

        /// Replaces whatever the cache holds of the session `name` by a tombstone that outlives
        /// any request that could still hold the session.
        async fn bury_at(&self, name: &Name) -> Result<()>;
    }

    /// What a cache tier holds for a session.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Entry {
        /// Nothing.
        Missing,
        /// A session deleted a moment ago: a tombstone.
        Deleted,
        /// A live session, and when `put_if_newer` wrote it (unix milliseconds), if that is
        /// how it got there.
        Live(Record, Option<i64>),
    }
}

use tier::Entry;

/// `at` in unix milliseconds.
fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// How long the store leaves Redis alone after it failed.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(5);

/// How often copies that a save could not bring up to date are invalidated again, until Redis
/// answers.
pub(crate) const STALE_RETRY: Duration = Duration::from_millis(250);

/// How many stale copies are remembered at most; past that, the rest expire by their TTL.
const MAX_STALE: usize = 100_000;

/// A cache tier `C` (Redis) in front of the store `S`.
#[derive(Debug)]
pub struct CachedStore<S, C = RedisStore> {
    cache: C,
    db: S,
    /// Until when (unix milliseconds) Redis is left alone; 0 while it answers.
    paused_until: AtomicI64,
    /// When (unix milliseconds) Redis last failed: copies written before then may be older
    /// than the database (their updates could not be copied), so they are not served.
    distrust_before: AtomicI64,
    /// The copies to invalidate once Redis answers again.
    stale: Arc<Mutex<Stale>>,
}

/// Names of copies in Redis that a save could not bring up to date, what each needs, and whether
/// a task is repairing them.
#[derive(Debug, Default)]
struct Stale {
    names: HashMap<Name, Repair>,
    invalidating: bool,
    /// Names that did not fit (past [`MAX_STALE`]) since the last warning.
    dropped: u64,
}

/// What a stale copy needs once Redis answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Repair {
    /// Dropped: the next load reads the database and copies it again.
    Invalidate,
    /// A tombstone: the session was deleted, and a load in flight must not copy it back.
    Bury,
}

fn now_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc())
}

impl<S: SessionStore, C: CacheTier> CachedStore<S, C> {
    /// How long a copy lives in the cache at most (300 s in Redis): the longest another server
    /// may serve a copy that this store could not bring up to date or bury because the cache
    /// stopped answering.
    pub const COPY_TTL: Duration = C::COPY_TTL;

    /// `cache` in front of `db`.
    pub fn new(cache: C, db: S) -> Self {
        CachedStore {
            cache,
            db,
            paused_until: AtomicI64::new(0),
            distrust_before: AtomicI64::new(0),
            stale: Arc::default(),
        }
    }

    /// The store behind the cache.
    pub fn db(&self) -> &S {
        &self.db
    }

    /// How many copies in Redis a save or a delete could not bring up to date (or bury) and
    /// that are not repaired yet: other servers may serve them until Redis answers this store
    /// again, or for [`Self::COPY_TTL`] at most.
    pub fn stale_copies(&self) -> usize {
        let stale = self.stale.lock().unwrap_or_else(PoisonError::into_inner);
        stale.names.len() + usize::try_from(stale.dropped).unwrap_or(usize::MAX)
    }

    /// Whether Redis is being left alone after a failure.
    fn paused(&self) -> bool {
        let until = self.paused_until.load(Ordering::Relaxed);
        until != 0 && now_ms() < until
    }

    /// Notes how an operation on Redis went: a failure pauses the cache (and warns, once per
    /// pause), a success ends a pause.
    fn noted<T>(&self, outcome: Result<T>) -> Option<T> {
        match outcome {
            Ok(value) => {
                if self.paused_until.load(Ordering::Relaxed) != 0 {
                    self.paused_until.store(0, Ordering::Relaxed);
                    log::info!("session cache available again");
                }
                Some(value)
            }
            Err(e) => {
                let now = now_ms();
                self.distrust_before.fetch_max(now, Ordering::Relaxed);
                let until = now.saturating_add(RETRY_AFTER.as_millis() as i64);
                if self.paused_until.swap(until, Ordering::Relaxed) == 0 {
                    log::warn!(
                        "session cache unavailable, serving from the database \
                         (trying it again in {} s): {e}",
                        RETRY_AFTER.as_secs()
                    );
                }
                None
            }
        }
    }

    /// Writes `record`, just read from the database, to the cache unless it holds something
    /// newer; a failure only warns (the copy there, if any, is no older than it was).
    async fn fill(&self, id: &str, record: &Record) {
        if !self.paused() {
            self.noted(self.cache.put_if_newer(id, record).await);
        }
    }

    /// Writes `record`, just saved in the database, to the cache unless it holds something
    /// newer; when that fails or Redis is paused, the copy there is stale.
    async fn copy_saved(&self, id: &str, record: &Record) {
        let copied = !self.paused()
            && self
                .noted(self.cache.put_if_newer(id, record).await)
                .is_some();
        if !copied {
            self.stale(id, Repair::Invalidate);
        }
    }

    /// Notes that the copy of `id` in Redis is older than the database, and makes sure a task
    /// repairs it as soon as Redis answers.
    fn stale(&self, id: &str, repair: Repair) {
        if let Some(name) = self.cache.watched_name(id) {
            self.stale_name(name, repair);
        }
    }

    /// [`CachedStore::stale`] of the copy of the session `name` (its [`Watched::watched_name`]).
    fn stale_name(&self, name: Name, repair: Repair) {
        let mut stale = self.stale.lock().unwrap_or_else(PoisonError::into_inner);
        if stale.names.len() < MAX_STALE || stale.names.contains_key(&name) {
            let needed = stale.names.entry(name).or_insert(repair);
            if repair == Repair::Bury {
                *needed = Repair::Bury;
            }
        } else {
            stale.dropped += 1;
        }
        if !stale.invalidating {
            stale.invalidating = true;
            rocket::tokio::spawn(repair_stale(self.cache.clone(), Arc::clone(&self.stale)));
        }
    }
}

/// Repairs the stale copies, every [`STALE_RETRY`] until Redis answers, then ends.
async fn repair_stale<C: CacheTier>(cache: C, stale: Arc<Mutex<Stale>>) {
    let lock = || stale.lock().unwrap_or_else(PoisonError::into_inner);
    let mut repaired = 0_u64;
    loop {
        rocket::tokio::time::sleep(STALE_RETRY).await;
        let names: Vec<(Name, Repair)> = lock()
            .names
            .iter()
            .take(1000)
            .map(|(name, repair)| (*name, *repair))
            .collect();
        for (name, repair) in &names {
            let outcome = match repair {
                Repair::Invalidate => cache.invalidate_at(name).await,
                Repair::Bury => cache.bury_at(name).await,
            };
            if outcome.is_err() {
                break;
            }
            let mut stale = lock();
            // A delete noted meanwhile still needs its tombstone.
            if stale.names.get(name) == Some(repair) {
                stale.names.remove(name);
            }
            repaired += 1;
        }
        let mut stale = lock();
        if stale.names.is_empty() {
            stale.invalidating = false;
            if stale.dropped > 0 {
                log::warn!(
                    "{} more session copies in the cache may be stale until they expire (at \
                     most {} s)",
                    std::mem::take(&mut stale.dropped),
                    C::COPY_TTL.as_secs()
                );
            }
            log::info!("repaired {repaired} session copies that Redis missed");
            return;
        }
    }
}

#[rocket::async_trait]
impl<S: SessionStore, C: CacheTier> SessionStore for CachedStore<S, C> {
    async fn load(&self, id: &str) -> Result<Option<Record>> {
        let Some(name) = self.cache.watched_name(id) else {
            return Ok(None);
        };
        Ok(self.load_watched(id, &name).await?.map(|kept| kept.record))
    }

    async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<Stored> {
        let stored = self.db.create(data, expires).await?;
        let record = Record {
            data: data.clone().into(),
            expires,
            version: stored.version,
        };
        self.copy_saved(&stored.id, &record).await;
        Ok(stored)
    }

    async fn update(&self, id: &str, record: &Record) -> Result<Option<Stored>> {
        match self.db.update(id, record).await? {
            Some(stored) => {
                let copy = Record {
                    version: stored.version,
                    ..record.clone()
                };
                self.copy_saved(&stored.id, &copy).await;
                Ok(Some(stored))
            }
            None => {
                // The cache was stale: drop it so the caller's reload reads the database (but
                // keep a tombstone, which must outlive the reads in flight). While the cache is
                // paused, the reload does not read it.
                if let Some(name) = self.cache.watched_name(id).filter(|_| !self.paused()) {
                    self.noted(self.cache.invalidate_at(&name).await);
                }
                Ok(None)
            }
        }
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.db.delete(id).await?;
        // A tombstone, so that a read in flight cannot put the session back in the cache.
        if let Some(name) = self.cache.watched_name(id) {
            if self.noted(self.cache.bury_at(&name).await).is_none() {
                self.stale_name(name, Repair::Bury);
            }
        }
        Ok(())
    }

    // Redis drops its copies by their TTL; the database, the truth, is what is cleared,
    // counted and inspected: those capabilities are the database's own.
    async fn clear_expired(&self) -> Result<u64> {
        self.db.clear_expired().await
    }

    fn expires_by_itself(&self) -> bool {
        self.db.expires_by_itself()
    }

    fn batches(&self) -> Option<&dyn ClearInBatches> {
        self.db.batches()
    }

    fn census(&self) -> Option<&dyn Census> {
        self.db.census()
    }

    /// The database's index, with every session it ends buried in Redis too.
    fn user_index(&self) -> Option<&dyn UserIndex> {
        self.db.user_index().map(|_| self as &dyn UserIndex)
    }

    async fn describe(&self) -> Result<String> {
        let db = self.db.describe().await?;
        let cache = self.cache.describe().await?;
        Ok(format!("{db}, with copies in {cache}"))
    }
}

#[rocket::async_trait]
impl<S: SessionStore, C: CacheTier> UserIndex for CachedStore<S, C> {
    async fn user_sessions(&self, user: &str, limit: usize) -> Result<Vec<UserSession>> {
        match self.db.user_index() {
            Some(index) => index.user_sessions(user, limit).await,
            None => Ok(Vec::new()),
        }
    }

    async fn trim_user_sessions(&self, user: &str, keep: usize) -> Result<Vec<String>> {
        let Some(index) = self.db.user_index() else {
            return Ok(Vec::new());
        };
        let ended = index.trim_user_sessions(user, keep).await?;
        for handle in &ended {
            self.buried(handle).await;
        }
        Ok(ended)
    }

    async fn end_user_session(&self, user: &str, handle: &str) -> Result<bool> {
        let Some(index) = self.db.user_index() else {
            return Ok(false);
        };
        if !index.end_user_session(user, handle).await? {
            return Ok(false);
        }
        self.buried(handle).await;
        Ok(true)
    }
}

impl<S: SessionStore, C: CacheTier> CachedStore<S, C> {
    /// After the session listed under `handle` was deleted from the database: as `delete`, a
    /// tombstone over its copy (a handle the database took is a name).
    async fn buried(&self, handle: &str) {
        if let Some(name) = self.cache.handle_name(handle) {
            if self.noted(self.cache.bury_at(&name).await).is_none() {
                self.stale_name(name, Repair::Bury);
            }
        }
    }
}

impl<S: SessionStore, C: CacheTier> crate::stores::near::sealed::Sealed for CachedStore<S, C> {}

/// Redis reports every change to its copies (`redis/watch.rs`), and every change to a session
/// goes through its copy in Redis (written over, invalidated or buried), so a
/// [`NearCached`](super::NearCached) store can keep what this one loads, for as long as the
/// copy it came from may live (`CachedStore::COPY_TTL` after it was written): Redis reports a copy's
/// expiry only when it notices it.
#[rocket::async_trait]
impl<S: SessionStore, C: CacheTier> Watched for CachedStore<S, C> {
    fn watch(&self, cache: Weak<Cache>) {
        self.cache.watch(cache);
    }

    async fn load_watched(&self, id: &str, name: &Name) -> Result<Option<Kept>> {
        if !self.paused() {
            match self.noted(self.cache.entry_at(name).await) {
                Some(Entry::Live(record, Some(written)))
                    if written >= self.distrust_before.load(Ordering::Relaxed) =>
                {
                    return Ok(Some(Kept {
                        until: until(written, C::COPY_TTL, &record),
                        record,
                    }));
                }
                Some(Entry::Deleted) => return Ok(None),
                // A copy from before Redis last failed is read again from the database, and
                // written again over it.
                Some(Entry::Live(..) | Entry::Missing) | None => {}
            }
        }
        let record = self.db.load(id).await?;
        if let Some(record) = &record {
            self.fill(id, record).await;
        }
        Ok(record.map(|record| Kept {
            until: until(now_ms(), C::COPY_TTL, &record),
            record,
        }))
    }
}

/// Until when a near cache may serve `record`, copied at `written` (unix milliseconds): no
/// later than the cache drops the copy (`ttl` after it was written), nor than the session
/// expires.
fn until(written: i64, ttl: Duration, record: &Record) -> Option<OffsetDateTime> {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let ms = written.saturating_add(ttl_ms);
    let dropped = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    Some(dropped.min(record.expires))
}
