//! Session loads from a SQLite file on the request's own thread: the read path without a hop.
//!
//! sqlx runs every SQLite connection on a thread of its own, so each statement through it is a
//! round trip to that thread: a message, a wake-up, a context switch there and one back. For a
//! session load, a lookup by primary key that SQLite answers from its page cache in a few
//! microseconds, that hop was most of the cost (about 5 futex calls and 1.8 context switches per
//! load, when the whole page served with no session takes about 100 µs of CPU on this project's
//! benchmark machine). [`InlineReader`] keeps a few plain SQLite connections (rusqlite, on the
//! same SQLite library sqlx links) and runs the lookup where it is asked for.
//!
//! It never waits on a lock: its connections have no busy timeout, and when all of them are in
//! use (several worker threads loading at once) or SQLite answers `SQLITE_BUSY` (a WAL reader
//! only meets that while another connection recovers the WAL), or anything else goes wrong, it
//! declines, and the caller loads on a blocking thread of Tokio's ([`InlineReader::load_waiting`]:
//! the same connections, waiting for one and for the lock, within the pool's acquire timeout). A WAL reader does not wait for
//! writers, so what is left of blocking is reading a few pages of the file, which the OS has
//! in memory for any session read recently. The connections are `query_only`: they cannot
//! write, whatever statement they are given.
//!
//! Gain (BENCHMARKS.md, "What each change bought", 6): futex calls per read-path request
//! 18.3 → 13.7, instructions per request over the ceiling +29,500 → +21,700, the SQLite read
//! path 0.90 → 0.95 of the ceiling.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::stores::sql::Row;

/// A few read-only connections to one SQLite file, each used by one load at a time.
pub(crate) struct InlineReader {
    path: PathBuf,
    /// The store's load statement: `$1` is the key digest, `$2` the time (unix seconds).
    load: &'static str,
    slots: Box<[Mutex<Option<Connection>>]>,
    /// Set when a connection could not be opened: the reader stays out of the way from then
    /// on instead of failing on every load.
    off: AtomicBool,
}

impl std::fmt::Debug for InlineReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineReader")
            .field("path", &self.path)
            .field("connections", &self.slots.len())
            .finish()
    }
}

impl InlineReader {
    /// A reader of the database file at `path` with up to `count` connections (at least one),
    /// running `load`, or `None` when `path` is not a file (an in-memory database, which other
    /// connections cannot see).
    pub(crate) fn new(path: &Path, count: usize, load: &'static str) -> Option<Self> {
        if !path.is_file() {
            return None;
        }
        // Absolute, so that the file stays the one the pool opened whatever the working
        // directory is later.
        Some(InlineReader {
            path: std::fs::canonicalize(path).ok()?,
            load,
            slots: (0..count.max(1)).map(|_| Mutex::new(None)).collect(),
            off: AtomicBool::new(false),
        })
    }

    /// The live session whose key digests to `digest` at unix time `now`: `Some(row)` or
    /// `Some(None)` when SQLite answered at once, `None` when the caller must ask elsewhere.
    pub(crate) fn load(&self, digest: &[u8], now: i64) -> Option<Option<Row>> {
        if self.off.load(Ordering::Relaxed) {
            return None;
        }
        let mut slot = self.slots.iter().find_map(free)?;
        if slot.is_none() {
            *slot = Some(self.open().ok()?);
        }
        let conn = slot.as_ref()?;
        match self.query(conn, digest, now) {
            Ok(row) => Some(row),
            Err(e) => {
                if !is_busy(&e) {
                    // Anything but a lock held elsewhere: start over on a fresh connection.
                    log::debug!("inline reader: {e}");
                    slot.take();
                }
                None
            }
        }
    }

    /// Whether the reader stays out of the way (a connection could not be opened).
    pub(crate) fn is_off(&self) -> bool {
        self.off.load(Ordering::Relaxed)
    }

    /// What [`InlineReader::load`] declined: the same load, for a blocking thread, waiting at
    /// most `limit` in all for a free connection and for a lock held elsewhere. When a
    /// connection cannot be opened the reader turns itself off (see [`InlineReader::is_off`]).
    pub(crate) fn load_waiting(
        &self,
        digest: &[u8],
        now: i64,
        limit: Duration,
    ) -> rusqlite::Result<Option<Row>> {
        let deadline = Instant::now() + limit;
        let mut slot = loop {
            if let Some(slot) = self.slots.iter().find_map(free) {
                break slot;
            }
            if Instant::now() >= deadline {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("no session reader connection was free in time".into()),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let conn = match slot.take() {
            Some(conn) => conn,
            None => self.open()?,
        };
        // SQLite takes its busy timeout in milliseconds as an `int`.
        let left = deadline.saturating_duration_since(Instant::now());
        conn.busy_timeout(left.min(Duration::from_millis(i32::MAX.unsigned_abs().into())))?;
        let row = self.query(&conn, digest, now);
        // Back to never waiting, for the inline loads; a connection that fails is not kept.
        if conn.busy_timeout(Duration::ZERO).is_ok() && row.is_ok() {
            *slot = Some(conn);
        }
        row
    }

    /// A connection for a slot; when none can be opened, the reader turns itself off.
    fn open(&self) -> rusqlite::Result<Connection> {
        let opened = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|conn| {
            conn.busy_timeout(Duration::ZERO)?;
            conn.pragma_update(None, "query_only", true)?;
            Ok(conn)
        });
        opened.inspect_err(|e| {
            log::warn!(
                "sessions load through the pool: cannot open {} directly: {e}",
                self.path.display()
            );
            self.off.store(true, Ordering::Relaxed);
        })
    }

    fn query(&self, conn: &Connection, digest: &[u8], now: i64) -> rusqlite::Result<Option<Row>> {
        conn.prepare_cached(self.load)?
            .query_row((digest, now), |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()
    }
}

/// The slot, unless another load holds it (a load that panicked left it usable: it holds a
/// connection or none, nothing half done).
fn free(slot: &Mutex<Option<Connection>>) -> Option<MutexGuard<'_, Option<Connection>>> {
    match slot.try_lock() {
        Ok(slot) => Some(slot),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Whether `e` says another connection holds a lock this read would wait for.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOAD: &str =
        "SELECT data, expires, version FROM session WHERE key_hash = $1 AND expires > $2";

    fn database(dir: &tempfile::TempDir) -> (PathBuf, Connection) {
        let path = dir.path().join("inline.sqlite3");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE session (key_hash BLOB PRIMARY KEY, data TEXT NOT NULL,
                                   expires INTEGER NOT NULL, version INTEGER NOT NULL);
             INSERT INTO session VALUES (x'01', '{\"a\":1}', 200, 3), (x'02', '{}', 50, 1);",
        )
        .expect("schema");
        (path, conn)
    }

    #[test]
    fn loads_live_sessions_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, _writer) = database(&dir);
        let reader = InlineReader::new(&path, 1, LOAD).expect("a file");
        assert_eq!(
            reader.load(&[1], 100),
            Some(Some(("{\"a\":1}".to_owned(), 200, 3)))
        );
        assert_eq!(reader.load(&[2], 100), Some(None), "expired");
        assert_eq!(reader.load(&[3], 100), Some(None), "missing");
    }

    #[test]
    fn sees_what_other_connections_commit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = database(&dir);
        let reader = InlineReader::new(&path, 1, LOAD).expect("a file");
        assert_eq!(reader.load(&[1], 100).flatten().map(|r| r.2), Some(3));
        writer
            .execute("UPDATE session SET version = 4 WHERE key_hash = x'01'", ())
            .expect("update");
        assert_eq!(reader.load(&[1], 100).flatten().map(|r| r.2), Some(4));
        writer
            .execute("DELETE FROM session WHERE key_hash = x'01'", ())
            .expect("delete");
        assert_eq!(reader.load(&[1], 100), Some(None));
    }

    #[test]
    fn reads_while_another_connection_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = database(&dir);
        let reader = InlineReader::new(&path, 1, LOAD).expect("a file");
        // A write transaction left open holds SQLite's write lock; WAL readers go on.
        writer
            .execute_batch("BEGIN IMMEDIATE; UPDATE session SET version = 9;")
            .expect("write");
        assert_eq!(reader.load(&[1], 100).flatten().map(|r| r.2), Some(3));
    }

    #[test]
    fn declines_when_every_connection_is_busy_or_the_read_fails() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = database(&dir);
        let reader = InlineReader::new(&path, 1, LOAD).expect("a file");
        let held = reader.slots[0].lock().expect("slot");
        assert_eq!(reader.load(&[1], 100), None, "no free connection");
        drop(held);
        writer.execute_batch("DROP TABLE session").expect("drop");
        assert_eq!(reader.load(&[1], 100), None, "no table");
    }

    #[test]
    fn what_it_declines_it_loads_waiting_for_the_connection_and_the_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, _writer) = database(&dir);
        let reader = std::sync::Arc::new(InlineReader::new(&path, 1, LOAD).expect("a file"));
        // Every connection in use: the waiting load gets one when it is given back, and gives
        // up when none is within its limit.
        let held = reader.slots[0].lock().expect("slot");
        let late = reader.load_waiting(&[1], 100, Duration::from_millis(20));
        assert!(late.as_ref().is_err_and(is_busy), "{late:?}");
        let waiting = std::thread::spawn({
            let reader = std::sync::Arc::clone(&reader);
            move || reader.load_waiting(&[1], 100, Duration::from_secs(5))
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        let row = waiting.join().expect("no panic").expect("loaded");
        assert_eq!(row.map(|r| r.2), Some(3));
    }

    #[test]
    fn what_a_lock_held_elsewhere_declines_it_loads_waiting_up_to_its_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = database(&dir);
        // An exclusive lock held elsewhere (as while another connection recovers the WAL):
        // the inline load declines, the waiting one fails after its limit, then succeeds.
        writer
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
            .expect("lock");
        let reader = InlineReader::new(&path, 1, LOAD).expect("a file");
        assert_eq!(reader.load(&[1], 100), None, "busy");
        let e = reader.load_waiting(&[1], 100, Duration::from_millis(50));
        assert!(e.as_ref().is_err_and(is_busy), "{e:?}");
        writer
            .execute_batch("COMMIT; PRAGMA locking_mode = NORMAL; SELECT 1 FROM session;")
            .expect("unlock");
        let row = reader
            .load_waiting(&[1], 100, Duration::from_secs(5))
            .expect("loaded");
        assert_eq!(row.map(|r| r.2), Some(3));
        let inline = reader.load(&[1], 100).flatten().map(|r| r.2);
        assert_eq!(inline, Some(3), "inline again");
    }

    #[test]
    fn a_load_that_panicked_leaves_its_connection_usable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, _writer) = database(&dir);
        let reader = std::sync::Arc::new(InlineReader::new(&path, 1, LOAD).expect("a file"));
        let poisoner = std::sync::Arc::clone(&reader);
        let panicked = std::thread::spawn(move || {
            let _slot = poisoner.slots[0].lock();
            panic!("a load panics while it holds the connection");
        })
        .join();
        assert!(panicked.is_err() && reader.slots[0].is_poisoned());
        assert_eq!(reader.load(&[1], 100).flatten().map(|r| r.2), Some(3));
    }

    #[test]
    fn cannot_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, _writer) = database(&dir);
        let reader = InlineReader::new(&path, 1, LOAD).expect("a file");
        assert!(reader.load(&[1], 100).is_some());
        let slot = reader.slots[0].lock().expect("slot");
        let conn = slot.as_ref().expect("opened by the load");
        assert!(conn.execute("DELETE FROM session", ()).is_err());
    }

    #[test]
    fn stays_out_of_the_way_when_it_cannot_open_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, _writer) = database(&dir);
        let reader = InlineReader::new(&path, 1, LOAD).expect("a file");
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(reader.load(&[1], 100), None);
        assert!(reader.off.load(Ordering::Relaxed));
    }

    #[test]
    fn no_reader_for_a_database_that_is_not_a_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(InlineReader::new(&dir.path().join("missing.sqlite3"), 1, LOAD).is_none());
        assert!(InlineReader::new(Path::new("file:sqlx-in-memory-1"), 1, LOAD).is_none());
    }
}
