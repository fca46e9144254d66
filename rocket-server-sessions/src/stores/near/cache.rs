//! The cache of a [`NearCached`](super::NearCached) store, and the rules that keep it honest.
//!
//! It is only as good as its invalidations. A store that can be watched ([`RedisStore`] through
//! Redis's client tracking, [`PostgresStore`] through `LISTEN`) runs a *watcher*: a
//! connection of its own on which the server reports every change to a session, whoever made it
//! (another server, a `clearsessions` command, an operator's `DEL`). The watcher calls
//! [`NearCache::evict`] for each, and [`NearCache::confirm`] each time one of its *heartbeats*
//! comes back. (A SQLite file has no server to report anything: its watcher reads the file's
//! own change counter, through the same shared memory every commit bumps, and drops
//! everything when it moved; `sqlite/watch.rs` says why that poll is its heartbeat.)
//!
//! **A heartbeat is a change.** It is a write of a key of the watcher's own that the store
//! reports exactly as it reports a change to a session, through the same path: on PostgreSQL a
//! row inserted into and deleted from the session table, which the table's own trigger reports
//! on the channel the listener listens on; on Redis a key under the sessions' prefix written and
//! deleted, which Redis's client tracking reports to the watcher as it reports every session's
//! key. So a watcher that would miss changes (the triggers notify another channel, or are off;
//! tracking does not cover the prefix; the listener reads a connection that hears nothing)
//! misses its heartbeats too, confirms nothing, and the cache serves nothing: it fails closed.
//! A heartbeat that merely echoes on the watcher's own connection would only prove that the
//! connection is open. And a heartbeat written at `t` that came back means every change made
//! before `t` has been reported and applied here: PostgreSQL delivers notifications in commit
//! order, and Redis sends the invalidations of the commands it ran in one turn of its event
//! loop together, at the end of that turn, in the order of the turns.
//!
//! What a new watched store, or a store that wraps a watched one, must do to stay coherent:
//! every change to a session it serves must reach the watcher as a report (a wrapper that
//! writes somewhere the watcher does not hear, as a database behind a Redis copy, must also
//! change what is watched: cached_db buries the Redis copy of every session it deletes); its
//! heartbeats must travel the same path as those reports; and it must evict its own writes at
//! once, or keep them as written where the watcher never reports them
//! ([`NearCached`](super::NearCached) does that for what it wraps).
//!
//! The rules that keep it from serving a stale session:
//! - **Fresh watch.** Entries are served only while the last confirmed heartbeat was sent less
//!   than [`MAX_LAG`] ago. A watcher that dies quietly (a dropped network, a frozen server)
//!   stops confirming, and within `MAX_LAG` every load goes to the store again. That is the
//!   longest another server's change can go unseen; on a working connection it is the time the
//!   report takes to arrive, which is sent as the change is made.
//! - **No fill across a change.** A load takes a [`Ticket`] *before* it asks the store; its
//!   answer is kept only if no eviction, flush or write of this process happened since. A
//!   change that the store made after answering and that arrived before the answer would
//!   otherwise be lost.
//! - **Start empty, and only once.** Changes made while no watcher listened were never
//!   reported, so [`NearCache::watch`] drops everything when a watcher (re)connects, and
//!   [`NearCache::lost`] ends that watch: heartbeats of an older connection no longer count.
//! - The wrapping store evicts a session itself when it writes it, so this process sees its own
//!   writes at once, before the server's report arrives. Where no report ever comes for them
//!   (a SQLite file's writer never hears its own commits), it keeps what it wrote instead
//!   ([`NearCache::written`]): only if nothing was evicted or flushed since the write began,
//!   and never over a later version of the session.
//!
//! A stored session's own expiry is checked on every hit, as on a load.
//!
//! Memory: a session is named by its key's 32-byte digest ([`Name`]) and held in the table of a
//! `schnellru::LruMap`, the entry and its links to the next and previous in the order of use
//! inline, so a cached session costs no allocation but its JSON text (`Held` in `mod.rs`; a
//! session of 1 KB or more, its decoded map; the 1,024 small ones served last also keep a
//! decoded copy, `decoded.rs`): about 230 bytes each in a server holding 100,000,
//! of which about 105 are the table's (80-byte buckets, a quarter of them empty), 80 the text's
//! chunk (two small keys), and the rest the slack of the allocator's arenas (BENCHMARKS.md,
//! "What each change bought", 15).
//!
//! [`RedisStore`]: crate::stores::RedisStore
//! [`PostgresStore`]: crate::stores::PostgresStore

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use schnellru::{ByLength, LruMap};

/// The name of a session in the cache: the digest of its key, which every store keeps
/// in place of the key and under which (in hex) its watcher hears of changes.
pub type Name = [u8; 32];

/// How long after its last confirmed heartbeat a watch still counts: the longest a change made
/// elsewhere can go unseen when the watcher's connection dies without a word.
pub const MAX_LAG: Duration = Duration::from_secs(1);

/// A load's permission to keep what it read, or a write's to keep what it wrote, taken before
/// it asked the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    drops: u64,
}

/// One connection of a watcher: its heartbeats confirm the cache only until it is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch(pub(crate) u64);

struct Entries<V> {
    /// In the map's own table: no allocation per entry.
    lru: LruMap<Name, V, ByLength>,
    /// Bumped by every eviction, flush and write: a fill whose ticket is older could be stale.
    epoch: u64,
    /// Bumped by every eviction and flush, not by the writes [`NearCache::written`] keeps: a
    /// write whose ticket is older could be stale (writes of one session are ordered by their
    /// versions instead).
    drops: u64,
}

/// Sessions loaded lately, by the name the store's watcher reports changes under.
pub struct NearCache<V> {
    entries: Mutex<Entries<V>>,
    /// When the watch was last confirmed, in microseconds since `start` (0: not watching).
    confirmed: AtomicU64,
    /// Bumped by [`NearCache::lost`]: the heartbeats of older watches do not count.
    generation: AtomicU64,
    start: Instant,
    hits: AtomicU64,
    /// A watcher that stopped while nothing was served (`sleep`, SQLite's), until a read
    /// wakes it.
    asleep: AtomicBool,
    /// The thread of the watcher that sleeps.
    sleeper: OnceLock<Thread>,
}

impl<V: Clone> std::fmt::Debug for NearCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("watching", &self.watching())
            .finish_non_exhaustive()
    }
}

impl<V: Clone> NearCache<V> {
    /// How many sessions it keeps at most.
    pub fn capacity(&self) -> usize {
        usize::try_from(self.entries().lru.limiter().max_length()).unwrap_or(usize::MAX)
    }

    /// A cache of at most `capacity` sessions (the least recently used go first; no more than
    /// `u32::MAX`), not yet watching. Its table grows as it fills.
    pub fn new(capacity: NonZeroUsize) -> Self {
        let capacity = u32::try_from(capacity.get()).unwrap_or(u32::MAX);
        NearCache {
            entries: Mutex::new(Entries {
                lru: LruMap::new(ByLength::new(capacity)),
                epoch: 0,
                drops: 0,
            }),
            confirmed: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            start: Instant::now(),
            hits: AtomicU64::new(0),
            asleep: AtomicBool::new(false),
            sleeper: OnceLock::new(),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries<V>> {
        // Nothing panics while holding it; if something did, the map is still whole.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn micros(&self, at: Instant) -> u64 {
        // At least 1, as 0 means "not watching".
        u64::try_from(at.saturating_duration_since(self.start).as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Whether the watch is fresh: its last heartbeat was sent less than [`MAX_LAG`] ago.
    pub fn watching(&self) -> bool {
        let confirmed = self.confirmed.load(Ordering::Acquire);
        confirmed != 0 && self.micros(Instant::now()).saturating_sub(confirmed) < lag_micros()
    }

    /// The session under `name`, if it is here and the watch is fresh; a watcher asleep is
    /// woken.
    pub fn get(&self, name: &Name) -> Option<V> {
        if !self.watching() {
            if self.asleep.swap(false, Ordering::AcqRel) {
                if let Some(sleeper) = self.sleeper.get() {
                    sleeper.unpark();
                }
            }
            return None;
        }
        let value = self.entries().lru.get(name).cloned();
        if value.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        value
    }

    /// How many loads [`NearCache::get`] answered.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// A ticket for a load about to ask the store, or `None` while not watching (its answer
    /// is then not worth keeping).
    pub fn ticket(&self) -> Option<Ticket> {
        if !self.watching() {
            return None;
        }
        let entries = self.entries();
        Some(Ticket {
            epoch: entries.epoch,
            drops: entries.drops,
        })
    }

    /// Keeps `value` under `name` if nothing was evicted, flushed or written since `ticket` was
    /// taken.
    pub fn fill(&self, name: Name, value: V, ticket: Ticket) {
        let mut entries = self.entries();
        if entries.epoch == ticket.epoch {
            entries.lru.insert(name, value);
        }
    }

    /// After this process's own write of the session `name`, with a `ticket` taken before it:
    /// keeps `value` (what the store holds now) if nothing was evicted or flushed since, and
    /// the copy kept, if any, is `older` than it; else drops the session, as an eviction. A
    /// load in flight keeps nothing either way (its answer may predate the write). Two writes
    /// of one session that race here leave the later version: versions only grow.
    pub fn written(
        &self,
        name: Name,
        value: Option<V>,
        ticket: Option<Ticket>,
        older: impl FnOnce(&V) -> bool,
    ) {
        let mut entries = self.entries();
        entries.epoch += 1;
        let fresh = ticket.is_some_and(|ticket| ticket.drops == entries.drops);
        match value {
            Some(value) if fresh => {
                if entries.lru.peek(&name).is_none_or(older) {
                    entries.lru.insert(name, value);
                }
            }
            _ => {
                entries.drops += 1;
                entries.lru.remove(&name);
            }
        }
    }

    /// Drops the sessions under `names`: they changed.
    pub fn evict(&self, names: impl IntoIterator<Item = Name>) {
        let mut entries = self.entries();
        entries.epoch += 1;
        entries.drops += 1;
        for name in names {
            entries.lru.remove(&name);
        }
    }

    /// Drops everything.
    pub fn flush(&self) {
        let mut entries = self.entries();
        entries.epoch += 1;
        entries.drops += 1;
        entries.lru.clear();
    }

    /// A watcher connected and hears every change from now on: everything kept before is
    /// dropped (changes were missed meanwhile), and the watch its heartbeats confirm begins.
    pub fn watch(&self) -> Watch {
        let mut entries = self.entries();
        entries.epoch += 1;
        entries.drops += 1;
        entries.lru.clear();
        Watch(self.generation.load(Ordering::Acquire))
    }

    /// The heartbeat that `watch` sent at `sent` came back: every change made before then has
    /// been evicted. Ignored once `watch` was lost.
    pub fn confirm(&self, watch: Watch, sent: Instant) {
        // Under the lock, so that `lost` cannot come between the check and the store.
        let _entries = self.entries();
        if self.generation.load(Ordering::Acquire) == watch.0 {
            self.confirmed
                .fetch_max(self.micros(sent), Ordering::AcqRel);
        }
    }

    /// The watcher, on its own thread, stops confirming until the next [`NearCache::get`]
    /// wakes it (unparks that thread): nothing is served meanwhile, and the read that wakes it
    /// goes to the store. For a watcher that polls (SQLite's), so that an idle server does not.
    #[cfg(feature = "sqlite")]
    pub(crate) fn sleep(&self) {
        self.sleeper.get_or_init(std::thread::current);
        // Asleep before unconfirmed: a read that finds the watch unconfirmed finds it asleep.
        self.asleep.store(true, Ordering::Release);
        let _entries = self.entries();
        self.confirmed.store(0, Ordering::Release);
    }

    /// Whether the watcher sleeps: no read came since `sleep`.
    #[cfg(feature = "sqlite")]
    pub(crate) fn sleeping(&self) -> bool {
        self.asleep.load(Ordering::Acquire)
    }

    /// The watcher lost its connection: nothing is served until a new watch is confirmed.
    pub fn lost(&self) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.confirmed.store(0, Ordering::Release);
        entries.epoch += 1;
        entries.drops += 1;
        entries.lru.clear();
    }

    /// How many sessions are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries().lru.len()
    }
}

fn lag_micros() -> u64 {
    u64::try_from(MAX_LAG.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name `c` repeated: a session's name for the tests.
    fn name(c: u8) -> Name {
        [c; 32]
    }

    fn watched(capacity: usize) -> NearCache<u32> {
        let cache = NearCache::new(NonZeroUsize::new(capacity).unwrap());
        let watch = cache.watch();
        cache.confirm(watch, Instant::now());
        cache
    }

    #[test]
    fn an_own_write_is_kept_unless_a_change_came_between() {
        let cache = watched(4);
        let newer = |value: u32| move |kept: &u32| *kept < value;
        // Kept; and writes of other sessions meanwhile do not void it.
        let ticket = cache.ticket();
        let other = cache.ticket();
        cache.written(name(b'b'), Some(7), other, newer(7));
        cache.written(name(b'a'), Some(2), ticket, newer(2));
        assert_eq!(cache.get(&name(b'a')), Some(2));
        // A load that read before the write keeps nothing after it.
        let load = cache.ticket().unwrap();
        let write = cache.ticket();
        cache.written(name(b'a'), Some(3), write, newer(3));
        cache.fill(name(b'a'), 2, load);
        assert_eq!(cache.get(&name(b'a')), Some(3));
        // Two writes of one session arriving out of order leave the later version.
        let (first, second) = (cache.ticket(), cache.ticket());
        cache.written(name(b'a'), Some(5), second, newer(5));
        cache.written(name(b'a'), Some(4), first, newer(4));
        assert_eq!(cache.get(&name(b'a')), Some(5));
        // An eviction or a flush between the ticket and the write drops the session.
        let ticket = cache.ticket();
        cache.evict([name(b'c')]);
        cache.written(name(b'a'), Some(6), ticket, newer(6));
        assert_eq!(cache.get(&name(b'a')), None);
        let ticket = cache.ticket();
        cache.flush();
        cache.written(name(b'a'), Some(6), ticket, newer(6));
        assert_eq!(cache.get(&name(b'a')), None);
        // A failed write, or one the store does not keep, drops it too.
        let ticket = cache.ticket();
        cache.written(name(b'b'), None, ticket, newer(0));
        assert_eq!(cache.get(&name(b'b')), None);
    }

    #[test]
    fn serves_nothing_until_the_watch_is_confirmed() {
        let cache = NearCache::<u32>::new(NonZeroUsize::new(4).unwrap());
        assert!(!cache.watching());
        assert_eq!(cache.ticket(), None);
        let watch = cache.watch();
        assert!(!cache.watching());
        cache.confirm(watch, Instant::now());
        let ticket = cache.ticket().unwrap();
        cache.fill(name(b'a'), 1, ticket);
        assert_eq!(cache.get(&name(b'a')), Some(1));
    }

    #[test]
    fn a_stale_watch_serves_nothing() {
        let cache = NearCache::<u32>::new(NonZeroUsize::new(4).unwrap());
        let watch = cache.watch();
        cache.confirm(watch, Instant::now());
        let ticket = cache.ticket().unwrap();
        cache.fill(name(b'a'), 1, ticket);
        // The heartbeat that last came back was sent longer ago than MAX_LAG.
        cache.confirmed.store(1, Ordering::Release);
        let later = cache.start + MAX_LAG + Duration::from_millis(1);
        if Instant::now() < later {
            std::thread::sleep(later - Instant::now());
        }
        assert!(!cache.watching());
        assert_eq!(cache.get(&name(b'a')), None);
        assert_eq!(cache.ticket(), None);
        // A fresh heartbeat on the same watch brings the entry back: the connection was slow,
        // not lost, and a heartbeat that came back follows every change made before it.
        cache.confirm(watch, Instant::now());
        assert_eq!(cache.get(&name(b'a')), Some(1));
    }

    #[test]
    fn a_fill_after_an_eviction_is_dropped() {
        let cache = watched(4);
        let ticket = cache.ticket().unwrap();
        // A change to another session is enough: the ticket does not know which one it was.
        cache.evict([name(b'b')]);
        cache.fill(name(b'a'), 1, ticket);
        assert_eq!(cache.get(&name(b'a')), None);
        let ticket = cache.ticket().unwrap();
        cache.fill(name(b'a'), 2, ticket);
        assert_eq!(cache.get(&name(b'a')), Some(2));
    }

    #[test]
    fn a_fill_after_a_flush_or_a_lost_watch_is_dropped() {
        let cache = watched(4);
        let ticket = cache.ticket().unwrap();
        cache.flush();
        cache.fill(name(b'a'), 1, ticket);
        assert_eq!(cache.get(&name(b'a')), None);

        let ticket = cache.ticket().unwrap();
        cache.lost();
        let watch = cache.watch();
        cache.confirm(watch, Instant::now());
        cache.fill(name(b'a'), 1, ticket);
        assert_eq!(cache.get(&name(b'a')), None);
    }

    #[test]
    fn eviction_drops_only_the_named_sessions() {
        let cache = watched(4);
        for (c, value) in [(b'a', 1), (b'b', 2), (b'c', 3)] {
            let ticket = cache.ticket().unwrap();
            cache.fill(name(c), value, ticket);
        }
        cache.evict([name(b'a'), name(b'c'), name(b'u')]);
        assert_eq!(cache.get(&name(b'a')), None);
        assert_eq!(cache.get(&name(b'b')), Some(2));
        assert_eq!(cache.get(&name(b'c')), None);
    }

    #[test]
    fn losing_the_watch_drops_everything() {
        let cache = NearCache::new(NonZeroUsize::new(4).unwrap());
        let watch = cache.watch();
        cache.confirm(watch, Instant::now());
        let ticket = cache.ticket().unwrap();
        cache.fill(name(b'a'), 1, ticket);
        cache.lost();
        assert!(!cache.watching());
        assert_eq!(cache.len(), 0);
        // A heartbeat of the lost connection that was already on its way counts for nothing.
        cache.confirm(watch, Instant::now());
        assert!(!cache.watching());
        assert_eq!(cache.ticket(), None);
        let watch = cache.watch();
        cache.confirm(watch, Instant::now());
        assert!(cache.watching());
        assert_eq!(cache.get(&name(b'a')), None);
    }

    #[test]
    fn keeps_at_most_its_capacity_dropping_the_least_recently_used() {
        let cache = watched(2);
        for (c, value) in [(b'a', 1), (b'b', 2)] {
            let ticket = cache.ticket().unwrap();
            cache.fill(name(c), value, ticket);
        }
        assert_eq!(cache.get(&name(b'a')), Some(1));
        let ticket = cache.ticket().unwrap();
        cache.fill(name(b'c'), 3, ticket);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&name(b'b')), None);
        assert_eq!(cache.get(&name(b'a')), Some(1));
        assert_eq!(cache.get(&name(b'c')), Some(3));
    }

    #[test]
    fn an_older_heartbeat_does_not_move_the_confirmation_back() {
        let cache = NearCache::<u32>::new(NonZeroUsize::new(2).unwrap());
        let earlier = Instant::now();
        let watch = cache.watch();
        cache.confirm(watch, Instant::now() + Duration::from_millis(5));
        let confirmed = cache.confirmed.load(Ordering::Acquire);
        cache.confirm(watch, earlier);
        assert_eq!(cache.confirmed.load(Ordering::Acquire), confirmed);
    }
}
