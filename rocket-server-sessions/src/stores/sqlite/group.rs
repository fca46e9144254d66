//! Session saves to a SQLite file in group commits.
//!
//! SQLite has one writer at a time, and each of its commits costs the same whatever it holds:
//! the write lock taken and given back, the changed pages appended to the WAL, the WAL index
//! updated. When many visitors arrive at once, each save waited for the one before it and paid
//! for a commit of its own (through sqlx, with a hop to its connection thread and back). [`GroupWriter`]
//! runs the saves on one thread of its own, on a plain SQLite connection (rusqlite, on the
//! library sqlx links), and commits every save that is waiting in one transaction. The first
//! save of a group wakes the thread from a task that yields once first, so that the requests
//! the worker thread has ready queue their saves too (as Redis loads are batched,
//! `redis/batch.rs`); saves that arrive while a commit is under way go in the next one.
//!
//! Each request still answers only after the commit that holds its save is done (durable as
//! the pool's `synchronous` pragma makes any commit). A statement that fails, or a commit that
//! fails, rolls the group back and the group's saves run again one by one, each in its own
//! commit, so a failure reaches only the request whose save failed; a transaction that cannot
//! begin at all (another process holding the write lock past the busy timeout) fails them all,
//! as it would have failed each. A save whose request gave up meanwhile (timed out or went
//! away) is not run.
//!
//! Checkpoints stay SQLite's own: the commit that takes the WAL past 1,000 pages copies it back
//! into the database file and waits for an fsync, and the saves queued meanwhile wait with it.
//! That wait is the write path's p99; a checkpointer of its own could not remove it
//! (BENCHMARKS.md, "What each change bought", 10, says why).
//!
//! The thread starts at the first save, or at launch when a near cache watches the file
//! (`watch.rs`: the thread polls for other processes' commits), with the `synchronous` and
//! `busy_timeout` pragmas of the pool's connections, and stops when the store is dropped. A
//! save committed after its request stopped waiting drops the near cache's copies: the
//! server may have loaded the old session meanwhile, and its own commits move nothing a
//! poll would see. Where it cannot run (an
//! in-memory database, a file it cannot open) saves go through the application's pool.
//!
//! Gain (BENCHMARKS.md, "What each change bought", 10).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::Thread;
use std::time::Duration;

use rocket::tokio::sync::{oneshot, OnceCell};
use rocket::tokio::time::timeout;
use rusqlite::{Connection, OpenFlags};
use sqlx::SqlitePool;

use super::watch::Watcher;
use crate::store::{Result, StoreError};
use crate::stores::near::Cache;
use crate::stores::sql::write::{Write, DELETE, END, INSERT, UPDATE};

impl Write {
    /// Runs the save on the writer's connection; how many rows it changed.
    fn run_here(&self, conn: &Connection) -> rusqlite::Result<usize> {
        match self {
            Write::Insert {
                digest,
                data,
                expires,
                user,
            } => conn
                .prepare_cached(INSERT)?
                .execute((&digest[..], data, expires, user)),
            Write::Update {
                digest,
                data,
                expires,
                version,
                user,
            } => conn
                .prepare_cached(UPDATE)?
                .execute((data, expires, user, &digest[..], version)),
            Write::Delete { digest } => conn.prepare_cached(DELETE)?.execute((&digest[..],)),
            Write::End { digest, user } => conn.prepare_cached(END)?.execute((&digest[..], user)),
        }
    }
}

/// A save and where its answer goes.
struct Job {
    write: Write,
    done: oneshot::Sender<Result<u64>>,
}

/// The most saves one commit holds: a group holds the write lock for well under a millisecond
/// per dozen saves, so another process that writes to the file waits no longer than that.
const MAX_GROUP: usize = 64;

/// How many commits held how many saves, in powers of two up to [`MAX_GROUP`]: 1, 2–3, 4–7,
/// 8–15, 16–31, 32–63, 64.
pub(crate) const GROUP_SIZES: usize = (usize::BITS - MAX_GROUP.leading_zeros()) as usize;

/// What the writer did so far.
#[derive(Debug, Default)]
struct Counts {
    commits: AtomicU64,
    writes: AtomicU64,
    largest: AtomicU64,
    by_size: [AtomicU64; GROUP_SIZES],
}

impl Counts {
    fn add(&self, group: usize) {
        let group = group as u64;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(group, Ordering::Relaxed);
        self.largest.fetch_max(group, Ordering::Relaxed);
        let bucket = (u64::BITS - 1 - group.leading_zeros()) as usize;
        self.by_size[bucket.min(GROUP_SIZES - 1)].fetch_add(1, Ordering::Relaxed);
    }
}

/// How a SQLite store's saves were committed: see [`SqliteStore::group_commits`](super::SqliteStore::group_commits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupCommits {
    /// Commits made.
    pub commits: u64,
    /// Saves (inserts, updates, deletions) they held.
    pub writes: u64,
    /// The most saves one commit held.
    pub largest: u64,
    /// How many commits held 1, 2–3, 4–7, 8–15, 16–31, 32–63 and 64 saves (the most a
    /// commit holds).
    pub by_size: [u64; GROUP_SIZES],
}

/// The saves waiting for the writer.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// The writer has been (or is being) woken for these jobs: a new one needs no wake-up.
    woken: bool,
}

/// What the store and its writer thread share.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    counts: Counts,
    /// A near cache for the writer to watch from now on (`watch.rs`).
    watch: Mutex<Option<Weak<Cache>>>,
}

/// The writer thread once started.
struct Running {
    shared: Arc<Shared>,
    writer: Thread,
}

/// The thread that commits a SQLite file's session saves in groups.
pub(crate) struct GroupWriter {
    path: PathBuf,
    /// How long a save waits for its commit.
    limit: Duration,
    /// The writer once started; `None` if it could not start.
    running: OnceCell<Option<Running>>,
}

impl std::fmt::Debug for GroupWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for GroupWriter {
    /// Wakes the writer, which finds the store gone and stops.
    fn drop(&mut self) {
        if let Some(Some(Running { shared, writer })) = self.running.take() {
            drop(shared);
            writer.unpark();
        }
    }
}

impl GroupWriter {
    /// A writer of the database file at `path` whose saves wait at most `limit`, or `None`
    /// when `path` is not a file (an in-memory database, which other connections cannot see).
    pub(crate) fn new(path: &Path, limit: Duration) -> Option<Self> {
        if !path.is_file() {
            return None;
        }
        Some(GroupWriter {
            path: std::fs::canonicalize(path).ok()?,
            limit,
            running: OnceCell::new(),
        })
    }

    /// Runs `write` in the next group commit and says how many rows it changed; gives `write`
    /// back when the writer cannot run, for the caller to run elsewhere.
    pub(crate) async fn run(
        &self,
        pool: &SqlitePool,
        write: Write,
    ) -> std::result::Result<Result<u64>, Write> {
        let Some(running) = self.running.get_or_init(|| self.start(pool)).await else {
            return Err(write);
        };
        let (done, answer) = oneshot::channel();
        let wake = {
            let mut queue = running
                .shared
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            queue.jobs.push(Job { write, done });
            !std::mem::replace(&mut queue.woken, true)
        };
        if wake {
            // After the requests that are ready have queued their saves too.
            let writer = running.writer.clone();
            rocket::tokio::spawn(async move {
                rocket::tokio::task::yield_now().await;
                writer.unpark();
            });
        }
        Ok(match timeout(self.limit, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(StoreError::Backend("the session writer stopped".into())),
            Err(_) => Err(StoreError::Backend(
                "the database did not commit the session in time".into(),
            )),
        })
    }

    /// Has the writer watch the file for `cache` (`watch.rs`), starting it if need be; a
    /// writer that cannot run leaves the cache unconfirmed, and so serving nothing.
    pub(crate) async fn watch(&self, pool: &SqlitePool, cache: Weak<Cache>) {
        match self.running.get_or_init(|| self.start(pool)).await {
            Some(running) => {
                *running
                    .shared
                    .watch
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(cache);
                running.writer.unpark();
            }
            None => log::warn!("session near cache off: the session writer cannot run"),
        }
    }

    /// What the writer committed so far.
    pub(crate) fn counts(&self) -> GroupCommits {
        let Some(Some(running)) = self.running.get() else {
            return GroupCommits::default();
        };
        let c = &running.shared.counts;
        GroupCommits {
            commits: c.commits.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            largest: c.largest.load(Ordering::Relaxed),
            by_size: std::array::from_fn(|i| c.by_size[i].load(Ordering::Relaxed)),
        }
    }

    /// Opens the connection with the pool's pragmas and starts the thread.
    async fn start(&self, pool: &SqlitePool) -> Option<Running> {
        let pragmas = async {
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(pool)
                .await?;
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(pool)
                .await?;
            Ok::<_, sqlx::Error>((synchronous, busy))
        };
        let path = self.path.clone();
        let opened = match pragmas.await {
            Ok((synchronous, busy)) => {
                rocket::tokio::task::spawn_blocking(move || open(&path, synchronous, busy))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
            Err(e) => Err(e.to_string()),
        };
        let started = opened.and_then(|conn| {
            let shared = Arc::new(Shared::default());
            let weak = Arc::downgrade(&shared);
            let writer = std::thread::Builder::new()
                .name("session-writer".into())
                .spawn(move || serve(&conn, &weak))
                .map_err(|e| e.to_string())?;
            Ok(Running {
                shared,
                writer: writer.thread().clone(),
            })
        });
        match started {
            Ok(running) => Some(running),
            Err(e) => {
                log::warn!(
                    "sessions save through the pool, one commit each: cannot open {}: {e}",
                    self.path.display()
                );
                None
            }
        }
    }
}

/// The writer's connection: the pool's `synchronous` and busy timeout (WAL is the file's).
fn open(path: &Path, synchronous: i64, busy_ms: i64) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.busy_timeout(Duration::from_millis(u64::try_from(busy_ms).unwrap_or(0)))?;
    Ok(conn)
}

/// The writer's loop: every save waiting, up to [`MAX_GROUP`], in one commit; every
/// `watch::POLL`, between groups or while none waits, the near cache's watch (if it has one,
/// and it is not asleep: `watch::IDLE`); parked otherwise; until the store is gone.
fn serve(conn: &Connection, shared: &Weak<Shared>) {
    let mut watcher: Option<Watcher> = None;
    while let Some(shared) = shared.upgrade() {
        let cache = shared
            .watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(cache) = cache {
            watcher = Watcher::start(conn, cache);
        }
        let mut group: Vec<Job> = {
            let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.jobs.is_empty() {
                queue.woken = false;
                drop(queue);
                drop(shared);
                if watcher
                    .as_mut()
                    .is_some_and(|watch| !watch.poll_when_due(conn))
                {
                    watcher = None;
                }
                match watcher.as_ref().and_then(Watcher::due_in) {
                    Some(due) => std::thread::park_timeout(due),
                    None => std::thread::park(),
                }
                continue;
            }
            let take = queue.jobs.len().min(MAX_GROUP);
            queue.jobs.drain(..take).collect()
        };
        // Saves whose requests gave up are not run.
        group.retain(|job| !job.done.is_closed());
        if !group.is_empty() && !commit(conn, group, &shared.counts) {
            if let Some(watch) = &watcher {
                watch.flush();
            }
        }
        if watcher
            .as_mut()
            .is_some_and(|watch| !watch.poll_when_due(conn))
        {
            watcher = None;
        }
    }
}

/// Why a group did not commit.
enum Failed {
    /// The transaction did not begin: every save of the group would fail alike.
    Begin(rusqlite::Error),
    /// A statement or the commit failed: the saves are run again one by one.
    Later,
}

/// Commits `group` and answers each of its saves; false when a save was committed but its
/// request had stopped waiting for the answer.
fn commit(conn: &Connection, group: Vec<Job>, counts: &Counts) -> bool {
    if group.len() > 1 {
        match together(conn, &group) {
            Ok(rows) => {
                counts.add(group.len());
                let mut answered = true;
                for (job, rows) in group.into_iter().zip(rows) {
                    answered &= job.done.send(Ok(rows)).is_ok();
                }
                return answered;
            }
            Err(Failed::Begin(e)) => {
                let message = e.to_string();
                for job in group {
                    job.done
                        .send(Err(StoreError::Backend(message.clone().into())))
                        .ok();
                }
                return true;
            }
            Err(Failed::Later) => {}
        }
    }
    let mut answered = true;
    for job in group {
        let result = job.write.run_here(conn);
        counts.add(1);
        let committed = result.is_ok();
        let sent = job
            .done
            .send(result.map(|rows| rows as u64).map_err(StoreError::backend))
            .is_ok();
        answered &= sent || !committed;
    }
    answered
}

/// Runs every save of `group` in one transaction; the rows each changed.
fn together(conn: &Connection, group: &[Job]) -> std::result::Result<Vec<u64>, Failed> {
    // IMMEDIATE: the write lock is taken (or waited for) at the start, so no statement of the
    // group meets a busy database half way.
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(Failed::Begin)?;
    let rows: rusqlite::Result<Vec<u64>> = group
        .iter()
        .map(|job| job.write.run_here(conn).map(|rows| rows as u64))
        .collect();
    match rows.and_then(|rows| conn.execute_batch("COMMIT").map(|()| rows)) {
        Ok(rows) => Ok(rows),
        Err(e) => {
            log::debug!("a group commit failed ({e}); its saves run one by one");
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK").ok();
            }
            Err(Failed::Later)
        }
    }
}
