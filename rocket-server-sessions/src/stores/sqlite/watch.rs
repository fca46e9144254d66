//! The watcher of a [`NearCache`] in front of a SQLite file: the group writer's connection
//! polling `PRAGMA data_version`.
//!
//! SQLite reports no change to anyone; what it offers is `data_version`, a number of the
//! connection that asks, which moves whenever *another* connection (another server on the file,
//! the command line, the application's pool) has committed since this one last looked, and
//! never for the connection's own commits. The writer thread (`group.rs`) asks it on its own
//! connection between groups, and every [`POLL`] while no save waits: when it moved, every
//! session kept is dropped (SQLite does not say which rows changed); either way the cache is
//! confirmed up to when the poll began. The server's own saves, committed on that same
//! connection, never move it, so they drop nothing but the session they saved (which
//! [`NearCached`](crate::stores::NearCached) evicts itself).
//!
//! **The poll is the path a change travels.** On SQLite a change reaches another process
//! through the file alone: a commit appends to the WAL and bumps the WAL index's header in the
//! shared memory beside it, and the read transaction that `PRAGMA data_version` begins reads
//! that header (the same check that makes every read see the last commit). So a poll that
//! answered at `t` has seen every commit made before `t`, whoever made it, and a poll that
//! cannot read the file (it is locked away, gone, unreadable) confirms nothing: the cache serves
//! nothing once its last confirmation is older than `MAX_LAG` (1 s), the rule every watcher
//! follows (`near/cache.rs`). There is no channel of its own to go deaf, as PostgreSQL's
//! `LISTEN` connection or Redis's tracking can, so no heartbeat write is needed (and a write
//! would move every other server's `data_version`, dropping their caches at each beat).
//!
//! The bound this gives: a change committed by another process is served by this one no later
//! than the next poll, [`POLL`] after it while the writer is idle, after the group under way
//! while it commits; if the writer is held up longer (waiting for another process's write
//! lock), nothing is served after `MAX_LAG`.
//!
//! **Asleep while nothing is served.** After [`IDLE`] with no load answered from the cache,
//! the watcher stops polling and unconfirms the cache ([`Cache::sleep`]): an idle server does
//! not wake 200 times a second (each poll a thread wake-up and a read transaction: 1.0–1.7 %
//! of a core on the benchmarks' host, BENCHMARKS.md, "What each change bought", 25). The next
//! load finds the watch unconfirmed, goes to the store, and wakes the writer's thread, whose
//! first poll compares `data_version` with the last one seen as any poll does: whatever another
//! process committed while it slept drops the copies, and the server's own saves meanwhile
//! evicted theirs (unconfirmed, the cache keeps no write).

use std::sync::Weak;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::stores::near::{Cache, Watch};

/// How long the watcher goes on polling while no load is answered from the cache, before it
/// sleeps until one is asked for.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

/// How often an idle writer asks `data_version`: the longest a change committed by another
/// process goes unseen here while this one is idle. One poll is a read transaction that reads
/// a header (a few microseconds); 200 a second cost under half a percent of a core on the
/// host of BENCHMARKS.md's item 12, 1.0–1.7 % on a VM where each timed wake-up is dear (item
/// 25), and nothing once the watch sleeps ([`IDLE`]).
pub(crate) const POLL: Duration = Duration::from_millis(5);

/// A near cache watched through the writer's connection.
pub(crate) struct Watcher {
    cache: Weak<Cache>,
    watch: Watch,
    /// `data_version` as last seen; `None` until a read of it succeeds.
    seen: Option<i64>,
    /// When the last poll began.
    polled: Instant,
    /// Whether the last poll failed (logged once per outage).
    failing: bool,
    /// The cache's hits as the last poll saw them, and when they last moved.
    hits: u64,
    served: Instant,
    /// Asleep ([`Cache::sleep`]): no poll until a read wakes the cache.
    asleep: bool,
}

impl Watcher {
    /// Starts watching for `cache` on `conn`: `data_version` is read first, then the cache
    /// starts empty, so a commit made between the two is seen by the first poll. (If that read
    /// fails, the first poll that reads confirms nothing it has not dropped first.) `None` when
    /// the cache is gone.
    pub(crate) fn start(conn: &Connection, cache: Weak<Cache>) -> Option<Watcher> {
        let seen = data_version(conn).ok();
        let (watch, hits) = cache.upgrade().map(|cache| (cache.watch(), cache.hits()))?;
        let mut watcher = Watcher {
            cache,
            watch,
            seen,
            polled: Instant::now(),
            failing: false,
            hits,
            served: Instant::now(),
            asleep: false,
        };
        watcher.poll(conn).then_some(watcher)
    }

    /// [`Watcher::poll`] if [`POLL`] has passed since the last one, or a read woke it from its
    /// sleep; false once the cache is gone.
    pub(crate) fn poll_when_due(&mut self, conn: &Connection) -> bool {
        if self.asleep {
            let Some(cache) = self.cache.upgrade() else {
                return false;
            };
            if cache.sleeping() {
                return true;
            }
            self.asleep = false;
            self.served = Instant::now();
            return self.poll(conn);
        }
        if self.due_in().is_some_and(|due| due.is_zero()) {
            self.poll(conn)
        } else {
            self.cache.strong_count() > 0
        }
    }

    /// Drops every session kept: a save this connection committed was not answered (its
    /// request gave up waiting), so the server may have loaded the old one meanwhile, and its
    /// own commits never move `data_version`.
    pub(crate) fn flush(&self) {
        if let Some(cache) = self.cache.upgrade() {
            cache.flush();
        }
    }

    /// How long until the next poll is due; `None` while asleep.
    pub(crate) fn due_in(&self) -> Option<Duration> {
        (!self.asleep).then(|| POLL.saturating_sub(self.polled.elapsed()))
    }

    /// Drops every session kept if another connection committed since the last poll, then
    /// confirms the watch up to now. False once the cache is gone.
    pub(crate) fn poll(&mut self, conn: &Connection) -> bool {
        let Some(cache) = self.cache.upgrade() else {
            return false;
        };
        let sent = Instant::now();
        self.polled = sent;
        match data_version(conn) {
            Ok(version) => {
                if self.seen != Some(version) {
                    cache.flush();
                    self.seen = Some(version);
                }
                cache.confirm(self.watch, sent);
                if std::mem::take(&mut self.failing) {
                    log::info!("session near cache on again: the SQLite file can be read");
                }
                let hits = cache.hits();
                if hits != self.hits {
                    self.hits = hits;
                    self.served = sent;
                } else if sent.saturating_duration_since(self.served) >= IDLE {
                    cache.sleep();
                    self.asleep = true;
                }
            }
            Err(e) => {
                // Unconfirmed, the cache stops serving within MAX_LAG; the next poll that
                // reads compares with the last version seen, so nothing committed meanwhile
                // is missed.
                if !std::mem::replace(&mut self.failing, true) {
                    log::warn!("session near cache off until the SQLite file can be read: {e}");
                }
            }
        }
        true
    }
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;
    use std::sync::Arc;

    /// A session's name for the tests.
    const A: crate::stores::near::Name = [b'a'; 32];

    fn kept(cache: &Cache, name: crate::stores::near::Name) {
        let ticket = cache.ticket().expect("watching");
        cache.fill(name, crate::stores::near::kept(), ticket);
    }

    /// A SQLite file in WAL mode with a table, in a directory of its own (kept while the test
    /// runs), a connection to it (the writer's), and an empty cache.
    fn file() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        Connection,
        Arc<Cache>,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("w.sqlite3");
        let own = Connection::open(&path).expect("open");
        own.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x)")
            .expect("schema");
        let cache = Arc::new(Cache::new(NonZeroUsize::new(4).expect("not zero")));
        (dir, path, own, cache)
    }

    #[test]
    fn another_connections_commit_drops_the_copies_and_its_own_do_not() {
        let (_dir, path, own, cache) = file();
        let other = Connection::open(&path).expect("open");
        let mut watcher = Watcher::start(&own, Arc::downgrade(&cache)).expect("watching");
        assert!(cache.watching());
        kept(&cache, A);

        own.execute("INSERT INTO t VALUES (1)", [])
            .expect("own commit");
        assert!(watcher.poll(&own));
        assert!(cache.get(&A).is_some(), "its own commit drops nothing");

        other
            .execute("INSERT INTO t VALUES (2)", [])
            .expect("commit");
        assert!(cache.get(&A).is_some(), "until the next poll");
        assert!(watcher.poll(&own));
        assert!(cache.get(&A).is_none(), "another's commit drops every copy");

        kept(&cache, A);
        assert!(watcher.poll(&own));
        assert!(cache.get(&A).is_some(), "nothing moved: kept");

        drop(cache);
        assert!(!watcher.poll(&own), "the cache is gone: the watcher ends");
    }

    #[test]
    fn an_idle_watch_sleeps_until_a_read_wakes_it_and_then_misses_nothing() {
        let (_dir, path, own, cache) = file();
        let other = Connection::open(&path).expect("open");
        let mut watcher = Watcher::start(&own, Arc::downgrade(&cache)).expect("watching");
        kept(&cache, A);

        // Served lately: the watch goes on.
        assert!(cache.get(&A).is_some());
        watcher.served = Instant::now() - IDLE;
        assert!(watcher.poll(&own));
        assert!(
            !watcher.asleep && cache.watching(),
            "a hit since the last poll"
        );

        // Nothing served for IDLE: asleep, unconfirmed, no poll due.
        watcher.served = Instant::now() - IDLE;
        assert!(watcher.poll(&own));
        assert!(watcher.asleep && cache.sleeping() && !cache.watching());
        assert_eq!(watcher.due_in(), None);
        other
            .execute("INSERT INTO t VALUES (1)", [])
            .expect("commit");
        assert!(watcher.poll_when_due(&own), "asleep: no poll");
        assert!(watcher.asleep);

        // A read wakes it (and is not served); the first poll sees the commit made meanwhile.
        assert!(cache.get(&A).is_none(), "asleep: nothing served");
        assert!(!cache.sleeping());
        assert!(watcher.poll_when_due(&own));
        assert!(!watcher.asleep && cache.watching());
        assert!(
            cache.get(&A).is_none(),
            "the commit made while asleep dropped the copy"
        );
        kept(&cache, A);
        assert!(cache.get(&A).is_some(), "served again");
    }

    /// The writer's thread, parked while its watch sleeps, is woken by a read.
    #[test]
    fn a_read_unparks_the_sleeping_watchers_thread() {
        let (_dir, _, own, cache) = file();
        let weak = Arc::downgrade(&cache);
        let (slept, asleep) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut watcher = Watcher::start(&own, weak).expect("watching");
            watcher.served = Instant::now() - IDLE;
            assert!(watcher.poll(&own));
            slept.send(watcher.due_in()).expect("sent");
            // Parked until woken, as the writer's loop parks (here for 10 s at most).
            let parked = Instant::now();
            while watcher.due_in().is_none() {
                std::thread::park_timeout(Duration::from_secs(10));
                assert!(
                    parked.elapsed() < Duration::from_secs(5),
                    "not woken by the read"
                );
                assert!(watcher.poll_when_due(&own));
            }
        });
        assert_eq!(asleep.recv().expect("asleep"), None);
        assert!(cache.get(&A).is_none());
        thread.join().expect("woken, it polls again");
        assert!(cache.watching());
    }

    #[test]
    fn a_poll_that_cannot_read_confirms_nothing_and_misses_nothing() {
        let (dir, path, own, cache) = file();
        let mut watcher = Watcher::start(&own, Arc::downgrade(&cache)).expect("watching");
        kept(&cache, A);
        // A poll that fails, as on a file that cannot be read (here: not a database at all),
        // while another connection commits.
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, [0x55_u8; 4096]).expect("written");
        let unreadable = Connection::open(&garbage).expect("open");
        let before = Instant::now();
        assert!(watcher.poll(&unreadable));
        assert!(watcher.failing, "the poll could not read the file");
        Connection::open(&path)
            .expect("open")
            .execute("INSERT INTO t VALUES (1)", [])
            .expect("commit");
        // Unconfirmed since `before`: once MAX_LAG has passed, nothing is served.
        std::thread::sleep(
            crate::stores::near::MAX_LAG.saturating_sub(before.elapsed())
                + Duration::from_millis(10),
        );
        assert!(!cache.watching());
        assert!(cache.get(&A).is_none());
        assert!(watcher.poll(&own));
        assert!(cache.watching() && !watcher.failing);
        assert!(cache.get(&A).is_none(), "the commit made meanwhile is seen");
    }

    #[test]
    fn a_start_that_cannot_read_watches_once_a_poll_reads() {
        let (dir, _, own, cache) = file();
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, [0x55_u8; 4096]).expect("written");
        let unreadable = Connection::open(&garbage).expect("open");
        let mut watcher = Watcher::start(&unreadable, Arc::downgrade(&cache)).expect("started");
        assert!(!cache.watching(), "nothing read, nothing confirmed");
        assert!(watcher.poll(&own));
        assert!(cache.watching(), "the first poll that reads confirms");
    }
}
