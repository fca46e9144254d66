//! A near cache: a store that wraps a store whose every change to a session can be heard (its
//! server reports them, or, on a SQLite file, the file's change counter is polled), and answers
//! the load of an unchanged session from memory, with no round trip.
//!
//! [`NearCached`] is a plain [`SessionStore`] over an inner one: a load asks its cache first and
//! the inner store on a miss; a write goes to the inner store and evicts the session (or, on a
//! SQLite file, whose writer never hears its own commits, keeps it as saved). What it
//! needs of the inner store is [`Watched`]: the name under which changes to a session are
//! reported, and a watcher that reports them (Redis's client tracking for
//! [`RedisStore`](super::RedisStore) and [`CachedStore`](super::CachedStore), `LISTEN` for
//! [`PostgresStore`](super::PostgresStore), the file's `data_version` polled by the writer for
//! [`SqliteStore`](super::SqliteStore)). `cache.rs` has the cache and the rules that keep it
//! from serving a stale session, `beats.rs` the heartbeats of the watchers on a connection of
//! their own; the watchers live with their stores.
//!
//! Gain (BENCHMARKS.md, "What each change bought", 8): instructions per read-path request over
//! the ceiling +34,000 → +20,500 on PostgreSQL, +33,300 → +19,600 on Redis; the PostgreSQL read
//! path 0.81 → 1.00 of the ceiling in req/s.

mod beats;
mod cache;
mod decoded;

use std::num::NonZeroUsize;
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use rocket::figment::Figment;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use self::decoded::Decoded;
use crate::config::{store_settings, ConfigError};
use crate::key::SessionKey;
use crate::record::{Data, Record};
use crate::store::{Census, ClearInBatches, Result, SessionStore, Stored, UserIndex, UserSession};

#[cfg(test)]
#[allow(unused_imports)] // by the tests of the watchers on a connection of their own
pub(crate) use beats::filled;

/// A session kept until the far future (for the watchers' tests).
#[cfg(test)]
pub(crate) fn kept() -> Held {
    let kept = Held::new(&Kept {
        record: Record {
            data: Arc::default(),
            expires: OffsetDateTime::UNIX_EPOCH + time::Duration::days(40_000),
            version: 1,
        },
        until: None,
    });
    kept.expect("a date before 2262")
}
#[allow(unused_imports)] // a build with SQLite alone has no heartbeats
pub(crate) use beats::{keep_watching, Beats, HEARTBEAT, SILENCE};
#[cfg(test)]
#[allow(unused_imports)] // by the SQLite watcher's tests
pub(crate) use cache::MAX_LAG;
pub(crate) use cache::{Name, NearCache, Watch};

/// What the cache keeps of a session: the record, and until when it may be served without
/// asking the inner store again.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    /// The session as loaded.
    pub record: Record,
    /// Past this date (on this server's clock) the inner store is asked again; before it, the
    /// session is served as live, so a store that sets it puts the session's own expiry under
    /// it. `None`: for as long as the watch holds and the record's `expires` is ahead.
    pub until: Option<OffsetDateTime>,
}

/// What the cache holds of a session: a [`Kept`] with its data in a [`Form`] and its dates in
/// nanoseconds: 40 bytes in the cache's table, and the data's own allocations (one for a small
/// session's text).
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    data: Form,
    /// The record's `expires`, in nanoseconds since the Unix epoch.
    expires: i64,
    version: i64,
    /// [`Kept::until`] in nanoseconds since the Unix epoch, or [`WATCHED`] for `None`.
    until: i64,
}

/// A held session's data. Small sessions, the many, are held as their JSON text, decoded once
/// for as long as they are in use (`decoded.rs`): a decoded map (a `BTreeMap` node of eleven
/// slots, and a string per key and value) took several times the memory: a server holding
/// 100,000 sessions of two small keys each peaked at 176 MB of RSS; with the text behind an
/// `Arc`, `OffsetDateTime`s and an LRU node allocated per session, at 99-120 MB; as here, at
/// 60-62 MB, against 38 MB with no near cache (`bench/near_rss.sh` in the repository,
/// BENCHMARKS.md, "What each change bought", 14 and 15). Sessions of [`DECODED_FROM`] bytes
/// of text or more, the few, are held decoded (item 17): their decoded copies would be too big
/// to keep beside the text. A hit hands the request the decoded map itself, shared. Both forms
/// fit in 16 bytes.
#[derive(Debug, Clone, PartialEq)]
enum Form {
    Text(Arc<str>),
    Decoded(Arc<Data>),
}

/// The length of JSON text from which a session is held decoded.
const DECODED_FROM: usize = 1024;

/// [`Held::until`] of a session served for as long as the watch holds.
const WATCHED: i64 = i64::MAX;

/// `at` in nanoseconds since the Unix epoch, if it is between 1677 and 2262.
fn nanos(at: OffsetDateTime) -> Option<i64> {
    i64::try_from(at.unix_timestamp_nanos()).ok()
}

/// The time now in nanoseconds since the Unix epoch: the system clock read directly, as
/// `OffsetDateTime::now_utc` reads it, without working out a calendar date only to turn it back
/// into a count (a few hundred instructions a hit).
fn now_nanos() -> Option<i64> {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since.as_nanos()).ok()
}

impl Held {
    /// What the cache holds of `kept`; `None` for a session that expires past 2262 (not kept).
    fn new(kept: &Kept) -> Option<Self> {
        let until = kept.until.map_or(WATCHED, |until| {
            // Past 2262 it is as good as forever; before 1677, past.
            let nanos = until
                .unix_timestamp_nanos()
                .clamp(i128::from(i64::MIN), i128::from(WATCHED - 1));
            i64::try_from(nanos).unwrap_or(i64::MIN)
        });
        let text = crate::record::encode(&kept.record.data);
        let data = if text.len() < DECODED_FROM {
            Form::Text(text.into())
        } else {
            Form::Decoded(Arc::clone(&kept.record.data))
        };
        Some(Held {
            data,
            expires: nanos(kept.record.expires)?,
            version: kept.record.version,
            until,
        })
    }

    /// The record held, its data from `decoded` if it is held as the text of the session
    /// `name`.
    fn record(&self, name: &Name, decoded: &Decoded) -> Record {
        // Every i64 of nanoseconds is a date (1677 to 2262): the fallback is unreachable.
        let expires = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.expires))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let data = match &self.data {
            Form::Text(text) => decoded.of(name, text),
            Form::Decoded(data) => Arc::clone(data),
        };
        Record {
            data,
            expires,
            version: self.version,
        }
    }
}

/// The cache of a [`NearCached`] store, by the name its watcher reports changes under.
pub type Cache = NearCache<Held>;

/// The seal on [`Watched`]: only the crate's stores are watched, since what makes a watcher
/// safe (the coherence rule in `cache.rs`) is checked by the crate's cross-server tests.
pub(crate) mod sealed {
    /// Implemented by the crate's watched stores only.
    pub trait Sealed {}
}

/// A store whose every change to a session can be heard, so that a [`NearCached`] store can
/// keep what it loads: the crate's Redis store, Redis in front of another store, and the SQL
/// stores (PostgreSQL reports changes; on a SQLite file the writer polls for them).
#[rocket::async_trait]
pub trait Watched: SessionStore + sealed::Sealed {
    /// The name under which the watcher reports changes to the session `id`: the digest of
    /// its key ([`SessionKey::digest`]), as every store keeps it; `None` for an id that names no stored
    /// session (a malformed one).
    fn watched_name(&self, id: &str) -> Option<Name> {
        SessionKey::digest_of(id)
    }

    /// The name under which the watcher reports changes to the session that
    /// [`UserIndex::user_sessions`] listed under `handle` (the digest in hex, read back);
    /// `None` for a handle that names no session.
    fn handle_name(&self, handle: &str) -> Option<Name> {
        SessionKey::digest_of_hex(handle)
    }

    /// Starts watching the store for `cache`: a task (or, on SQLite, the writer's thread) that
    /// evicts what changes and confirms the watch with heartbeats (see `cache.rs`; on SQLite
    /// each poll of the file is one), and ends when the cache is dropped. A store
    /// that cannot be watched logs why and leaves the cache unconfirmed, so it serves nothing.
    fn watch(&self, cache: Weak<Cache>);

    /// [`SessionStore::load`] for the cache, of the session `id` whose watched name is `name`
    /// (a store may use it rather than derive it again): the record, and until when it may be
    /// served. By default `load`, served for as long as the watch holds.
    ///
    /// # Errors
    /// As [`SessionStore::load`].
    async fn load_watched(&self, id: &str, name: &Name) -> Result<Option<Kept>> {
        let _ = name;
        Ok(self.load(id).await?.map(|record| Kept {
            record,
            until: None,
        }))
    }

    /// What a load of the session would return right after this process's own
    /// [`SessionStore::update`] stored `record` as `stored`, if the watcher never reports this
    /// process's own writes (so that nothing would evict the copy the cache keeps of it); `None`
    /// (by default) where it reports them, as Redis's tracking and PostgreSQL's `LISTEN` do:
    /// the report would drop the copy at once.
    fn after_own_update(&self, record: &Record, stored: &Stored) -> Option<Kept> {
        let _ = (record, stored);
        None
    }
}

/// A store in front of the store `S`, keeping the sessions it loaded lately.
pub struct NearCached<S> {
    inner: S,
    cache: Arc<Cache>,
    decoded: Decoded,
}

impl<S> std::fmt::Debug for NearCached<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCached")
            .field("watching", &self.cache.watching())
            .finish_non_exhaustive()
    }
}

impl<S: Watched> NearCached<S> {
    /// `inner` with a cache of up to `capacity` sessions (the least recently used go first),
    /// which serves nothing until `inner`'s watcher has confirmed its watch. Must be called
    /// within a Tokio runtime.
    pub fn new(inner: S, capacity: NonZeroUsize) -> Self {
        let cache = Arc::new(NearCache::new(capacity));
        inner.watch(Arc::downgrade(&cache));
        NearCached {
            inner,
            cache,
            decoded: Decoded::new(),
        }
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Whether the cache is watching the store now, and so may serve (for tests and diagnosis).
    pub fn watching(&self) -> bool {
        self.cache.watching()
    }

    /// How many loads the cache has answered (for tests and diagnosis).
    pub fn hits(&self) -> u64 {
        self.cache.hits()
    }

    /// Drops the session `id` after this process deleted it: it sees its own logouts at once,
    /// and no load that was in flight keeps what it read.
    fn deleted(&self, id: &str) {
        if let Some(name) = self.inner.watched_name(id) {
            self.cache.evict([name]);
        }
    }
}

#[rocket::async_trait]
impl<S: Watched> SessionStore for NearCached<S> {
    async fn load(&self, id: &str) -> Result<Option<Record>> {
        let Some(name) = self.inner.watched_name(id) else {
            return self.inner.load(id).await;
        };
        let now = now_nanos();
        if let (Some(held), Some(now)) = (self.cache.get(&name), now) {
            if held.until == WATCHED {
                return Ok((held.expires > now).then(|| held.record(&name, &self.decoded)));
            }
            if now < held.until {
                return Ok(Some(held.record(&name, &self.decoded)));
            }
        }
        // Taken before the load: a change reported meanwhile voids the fill.
        let ticket = self.cache.ticket();
        let loaded = self.inner.load_watched(id, &name).await?;
        if let (Some(ticket), Some(kept)) = (ticket, &loaded) {
            if let Some(held) = Held::new(kept) {
                self.cache.fill(name, held, ticket);
            }
        }
        Ok(loaded.map(|kept| kept.record))
    }

    async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<Stored> {
        // A new key: nothing of it can be cached.
        self.inner.create(data, expires).await
    }

    /// Where the store's watcher never reports this process's own writes (a SQLite file), a
    /// session saved here is kept as saved: its next load is a hit rather than a read.
    async fn update(&self, id: &str, record: &Record) -> Result<Option<Stored>> {
        // Taken before the write: a change reported meanwhile voids the copy.
        let ticket = self.cache.ticket();
        let updated = self.inner.update(id, record).await;
        let Some(name) = self.inner.watched_name(id) else {
            return updated;
        };
        let saved = match &updated {
            Ok(Some(stored)) => self
                .inner
                .after_own_update(record, stored)
                .and_then(|kept| Held::new(&kept)),
            _ => None,
        };
        let version = saved.as_ref().map(|held| held.version);
        self.cache
            .written(name, saved, ticket, |kept| Some(kept.version) < version);
        updated
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let deleted = self.inner.delete(id).await;
        self.deleted(id);
        deleted
    }

    async fn clear_expired(&self) -> Result<u64> {
        // The cache never serves an expired session: nothing of it to clear.
        self.inner.clear_expired().await
    }

    fn expires_by_itself(&self) -> bool {
        self.inner.expires_by_itself()
    }

    // Clearing, counting and inspecting read or delete only expired sessions, which the cache
    // never serves: they are the inner store's own.
    fn batches(&self) -> Option<&dyn ClearInBatches> {
        self.inner.batches()
    }

    fn census(&self) -> Option<&dyn Census> {
        self.inner.census()
    }

    /// The inner store's index, with every session it ends dropped from the cache too.
    fn user_index(&self) -> Option<&dyn UserIndex> {
        self.inner.user_index().map(|_| self as &dyn UserIndex)
    }

    async fn describe(&self) -> Result<String> {
        let inner = self.inner.describe().await?;
        Ok(format!(
            "{inner}, recent sessions kept near (up to {})",
            self.cache.capacity()
        ))
    }
}

#[rocket::async_trait]
impl<S: Watched> UserIndex for NearCached<S> {
    async fn user_sessions(&self, user: &str, limit: usize) -> Result<Vec<UserSession>> {
        match self.inner.user_index() {
            Some(index) => index.user_sessions(user, limit).await,
            None => Ok(Vec::new()),
        }
    }

    async fn trim_user_sessions(&self, user: &str, keep: usize) -> Result<Vec<String>> {
        let Some(index) = self.inner.user_index() else {
            return Ok(Vec::new());
        };
        let ended = index.trim_user_sessions(user, keep).await?;
        self.cache.evict(
            ended
                .iter()
                .filter_map(|handle| self.inner.handle_name(handle)),
        );
        Ok(ended)
    }

    async fn end_user_session(&self, user: &str, handle: &str) -> Result<bool> {
        let Some(index) = self.inner.user_index() else {
            return Ok(false);
        };
        let ended = index.end_user_session(user, handle).await;
        if let Some(name) = self.inner.handle_name(handle) {
            self.cache.evict([name]);
        }
        ended
    }
}

/// The near cache's settings: `[default.session.near_cache]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NearCacheConfig {
    /// Keep recently loaded sessions in the process, so that loading an unchanged session costs
    /// no round trip (default true). Used by the stores whose every change can be heard:
    /// Redis (client tracking) and PostgreSQL (`LISTEN`), whose servers report changes on a
    /// connection of its own, and a SQLite file, whose version the session writer polls every
    /// 5 ms. A change made by another server is seen as soon as its report arrives (on SQLite,
    /// at the next poll), and every load asks the store again within a second of the watch
    /// failing. False: every load asks the store.
    pub enabled: bool,
    /// How many sessions it keeps at most, least recently used first out (default 10000).
    pub size: usize,
}

impl Default for NearCacheConfig {
    fn default() -> Self {
        NearCacheConfig {
            enabled: true,
            size: 10_000,
        }
    }
}

/// The largest `size` accepted.
const MAX_SIZE: usize = 10_000_000;

impl NearCacheConfig {
    /// The settings in `figment`'s `session.near_cache` table, over the defaults, validated.
    ///
    /// # Errors
    /// [`ConfigError`] naming the setting at fault.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let config: NearCacheConfig = store_settings(figment, "near_cache")?;
        if config.size == 0 || config.size > MAX_SIZE {
            return Err(ConfigError::invalid(
                "near_cache.size",
                "must be between 1 and 10000000 (turn the cache off with enabled = false)",
            ));
        }
        Ok(config)
    }

    /// How many sessions the cache keeps, or `None` when it is off.
    pub fn capacity(&self) -> Option<NonZeroUsize> {
        if self.enabled {
            NonZeroUsize::new(self.size)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocket::figment::providers::Serialized;

    #[test]
    fn settings_default_to_on_and_are_checked() {
        let config = |key: &str, value: serde_json::Value| {
            NearCacheConfig::from_figment(&Figment::new().merge(Serialized::default(
                &format!("session.near_cache.{key}"),
                value,
            )))
        };
        let default = NearCacheConfig::from_figment(&Figment::new()).expect("defaults");
        assert_eq!(default.capacity().map(NonZeroUsize::get), Some(10_000));
        let off = config("enabled", false.into()).expect("valid");
        assert_eq!(off.capacity(), None);
        let small = config("size", 3.into()).expect("valid");
        assert_eq!(small.capacity().map(NonZeroUsize::get), Some(3));
        for size in [0, 10_000_001] {
            let message = config("size", size.into())
                .expect_err("refused")
                .to_string();
            assert!(message.contains("session.near_cache.size"), "{message}");
        }
    }

    /// A memory store, watched by a watcher that confirms once at once and reports nothing,
    /// whose copies may be served until `until`; it counts its loads.
    struct Fake {
        inner: crate::stores::MemoryStore,
        until: Option<OffsetDateTime>,
        loads: std::sync::atomic::AtomicUsize,
    }

    #[rocket::async_trait]
    impl SessionStore for Fake {
        async fn load(&self, id: &str) -> Result<Option<Record>> {
            self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.load(id).await
        }
        async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<Stored> {
            self.inner.create(data, expires).await
        }
        async fn update(&self, id: &str, record: &Record) -> Result<Option<Stored>> {
            self.inner.update(id, record).await
        }
        async fn delete(&self, id: &str) -> Result<()> {
            self.inner.delete(id).await
        }
        async fn clear_expired(&self) -> Result<u64> {
            self.inner.clear_expired().await
        }
        fn expires_by_itself(&self) -> bool {
            false
        }
        fn batches(&self) -> Option<&dyn ClearInBatches> {
            None
        }
        fn census(&self) -> Option<&dyn Census> {
            None
        }
        fn user_index(&self) -> Option<&dyn UserIndex> {
            None
        }
        async fn describe(&self) -> Result<String> {
            Ok("a fake".into())
        }
    }

    impl super::sealed::Sealed for Fake {}

    #[rocket::async_trait]
    impl Watched for Fake {
        fn watch(&self, cache: Weak<Cache>) {
            if let Some(cache) = cache.upgrade() {
                let watch = cache.watch();
                cache.confirm(watch, std::time::Instant::now());
            }
        }
        async fn load_watched(&self, id: &str, _: &Name) -> Result<Option<Kept>> {
            let until = self.until;
            Ok(self.load(id).await?.map(|record| Kept { record, until }))
        }
    }

    fn fake(until: Option<OffsetDateTime>) -> NearCached<Fake> {
        let inner = Fake {
            inner: crate::stores::MemoryStore::new(),
            until,
            loads: Default::default(),
        };
        NearCached::new(inner, NonZeroUsize::new(8).expect("not zero"))
    }

    fn loads(store: &NearCached<Fake>) -> usize {
        store
            .inner()
            .loads
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    #[rocket::async_test]
    async fn hits_are_served_and_own_writes_evict() {
        let store = fake(None);
        let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let Stored { id, version } = store.create(&Data::new(), expires).await.expect("created");
        let record = store.load(&id).await.expect("loads").expect("live");
        assert_eq!(store.load(&id).await.expect("loads"), Some(record.clone()));
        assert_eq!(
            (loads(&store), store.hits()),
            (1, 1),
            "the second load was a hit"
        );
        let mut changed = record.clone();
        Arc::make_mut(&mut changed.data).insert("a".into(), 1.into());
        assert!(store.update(&id, &changed).await.expect("saves").is_some());
        let reloaded = store.load(&id).await.expect("loads").expect("live");
        assert_eq!(
            (reloaded.data, reloaded.version),
            (changed.data, version + 1)
        );
        assert_eq!(loads(&store), 2, "the save evicted the copy");
        store.delete(&id).await.expect("deletes");
        assert_eq!(
            store.load(&id).await.expect("loads"),
            None,
            "the delete too"
        );
    }

    #[test]
    fn the_clock_read_directly_agrees_with_time() {
        let before = nanos(OffsetDateTime::now_utc()).expect("before 2262");
        let now = now_nanos().expect("after 1970");
        let after = nanos(OffsetDateTime::now_utc()).expect("before 2262");
        assert!(before <= now && now <= after, "{before} {now} {after}");
    }

    #[test]
    fn a_held_copy_gives_back_what_was_kept() {
        let at = |year: i32| {
            time::Date::from_calendar_date(year, time::Month::March, 1)
                .expect("a date")
                .midnight()
                .assume_utc()
        };
        let record = Record {
            data: Arc::new(
                serde_json::json!({"a": 1})
                    .as_object()
                    .cloned()
                    .expect("a map"),
            ),
            expires: OffsetDateTime::now_utc() + time::Duration::nanoseconds(1_234_567_891),
            version: 7,
        };
        let held = |until| {
            Held::new(&Kept {
                record: record.clone(),
                until,
            })
        };
        let name = [1; 32];
        let decoded = Decoded::new();
        let watched = held(None).expect("kept");
        assert_eq!(
            (watched.record(&name, &decoded), watched.until),
            (record.clone(), WATCHED)
        );
        assert!(
            matches!(watched.data, Form::Text(_)),
            "a small session as text"
        );
        let mut big = record.clone();
        Arc::make_mut(&mut big.data).insert("pad".into(), "x".repeat(DECODED_FROM).into());
        let held_big = Held::new(&Kept {
            record: big.clone(),
            until: None,
        })
        .expect("kept");
        assert!(
            matches!(held_big.data, Form::Decoded(_)),
            "a big one decoded"
        );
        let served = held_big.record(&name, &decoded);
        assert_eq!(served, big);
        assert!(Arc::ptr_eq(&served.data, &big.data), "the same map, shared");
        assert_eq!(std::mem::size_of::<Held>(), 40, "as small as it was");
        assert_eq!(
            held(Some(at(2000))).expect("kept").until,
            951_868_800 * 1_000_000_000
        );
        assert_eq!(
            held(Some(at(2300))).expect("kept").until,
            WATCHED - 1,
            "as good as forever, and not for as long as the watch holds"
        );
        assert_eq!(held(Some(at(1600))).expect("kept").until, i64::MIN);
        let far = Kept {
            record: Record {
                expires: at(2300),
                ..record.clone()
            },
            until: None,
        };
        assert_eq!(Held::new(&far), None, "not kept");
    }

    #[rocket::async_test]
    async fn a_copy_past_its_date_is_asked_for_again() {
        let store = fake(Some(OffsetDateTime::now_utc() - time::Duration::seconds(1)));
        let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let Stored { id, .. } = store.create(&Data::new(), expires).await.expect("created");
        store.load(&id).await.expect("loads");
        store.load(&id).await.expect("loads");
        assert_eq!(
            (loads(&store), store.hits()),
            (2, 1),
            "kept, but not served"
        );
    }
}
