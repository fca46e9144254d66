//! Connections a store keeps for itself, outside sqlx's pool: the session store's hot path.
//!
//! sqlx 0.7's pool checks a connection with a ping when it hands it out and again, always, when
//! it takes it back (`PoolConnection::return_to_pool`). On PostgreSQL each ping is a network
//! round trip; on SQLite it is a round trip to the connection's worker thread, two context
//! switches. A session load through the pool therefore cost three round trips instead of one
//! (measured on SQLite: 5.4 context switches per load through the pool, 1.8 on a connection of
//! its own). [`Lanes`] holds a few connections, each behind an async mutex: an operation takes a
//! free one, runs its statement (prepared once per connection and cached, as sqlx does), and
//! gives it back, with no ping either way.
//!
//! A connection is opened on first use, with the pool's own options (so SQLite gets the same
//! pragmas), and dropped when an operation on it fails other than by a statement error the
//! database reported, times out, or is abandoned half way (a cancelled request): the next
//! operation opens a fresh one. When a connection turns out to be broken (the database
//! restarted, or went away and came back), every connection opened before is dropped too, and
//! an operation that met the broken connection after it had sat idle is tried once more, on a
//! fresh connection: what the pool's ping on checkout did. So a database that goes away and
//! comes back is handled as the pool handles it, without a restart. Every operation, connecting
//! included, is bounded by the pool's acquire timeout.
//!
//! Gain (BENCHMARKS.md, "What each change bought", 1 and 2): PostgreSQL read 0.80 → 0.92 of
//! the ceiling, write 0.69 → 0.85, update 0.58 → 0.75; SQLite update 0.60 → 0.72; one writer
//! for SQLite took its write-path p99 from 167–208 ms to 10–12 ms.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocket::tokio::sync::{Mutex, MutexGuard};
use rocket::tokio::time::timeout;
use sqlx::{ConnectOptions, Connection};

/// An open connection and the generation it was opened in.
struct Open<C> {
    conn: C,
    generation: u64,
}

/// A few connections of one database, each used by one operation at a time.
pub(crate) struct Lanes<C: Connection> {
    options: Arc<C::Options>,
    slots: Box<[Mutex<Option<Open<C>>>]>,
    next: AtomicUsize,
    /// Bumped when a connection is found broken: connections of older generations are not
    /// trusted any more and are reopened on their next use.
    generation: AtomicU64,
    timeout: Duration,
}

impl<C: Connection> std::fmt::Debug for Lanes<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("lanes", &self.slots.len())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The error an operation that ran out of time gets.
fn timed_out() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the database did not answer in time",
    ))
}

/// Whether `e` says the connection broke (closed by the server, a network error, a crashed
/// worker thread), rather than that the statement failed or the database did not answer in
/// time.
pub(crate) fn broke(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(io) => io.kind() != std::io::ErrorKind::TimedOut,
        sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

impl<C: Connection> Lanes<C> {
    /// Up to `count` connections (at least one) opened with `options`; an operation, connecting
    /// included, fails after `limit`.
    pub(crate) fn new(options: Arc<C::Options>, count: usize, limit: Duration) -> Self {
        Lanes {
            options,
            slots: (0..count.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            timeout: limit,
        }
    }

    /// A connection for one operation: a free one if there is one, else the next in turn once
    /// it is free; opened if it is not open yet, or reopened if it is older than a broken one.
    ///
    /// # Errors
    /// The connection cannot be opened, or no lane frees up in time.
    pub(crate) async fn lane(&self) -> Result<Lane<'_, C>, sqlx::Error> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len();
        let free = (0..n).find_map(|i| self.slots[(start + i) % n].try_lock().ok());
        let mut slot = match free {
            Some(slot) => slot,
            None => timeout(self.timeout, self.slots[start % n].lock())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?,
        };
        let generation = self.generation.load(Ordering::Acquire);
        if slot
            .as_ref()
            .is_some_and(|open| open.generation < generation)
        {
            // Dropped without a goodbye: it may be broken.
            slot.take();
        }
        let reused = slot.is_some();
        if !reused {
            let conn = timeout(self.timeout, self.options.connect())
                .await
                .map_err(|_| timed_out())??;
            *slot = Some(Open { conn, generation });
        }
        Ok(Lane {
            slot,
            generation: &self.generation,
            clean: false,
            reused,
            timeout: self.timeout,
        })
    }
}

/// One connection, taken for one operation. Unless [`Lane::finish`] says the operation ended
/// with the connection in a known state, dropping the lane closes the connection.
pub(crate) struct Lane<'a, C: Connection> {
    slot: MutexGuard<'a, Option<Open<C>>>,
    generation: &'a AtomicU64,
    clean: bool,
    reused: bool,
    timeout: Duration,
}

impl<C: Connection> Lane<'_, C> {
    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut C {
        // `Lanes::lane` opened it; nothing takes it out before the lane is dropped.
        &mut self
            .slot
            .as_mut()
            .expect("a lane always holds an open connection")
            .conn
    }

    /// How long the operation may take.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Ends the operation with its outcome (`Err(())` when it timed out). The connection is
    /// kept after a success or a statement error the database reported, and closed otherwise.
    /// The error is `Retry` when the connection broke after serving earlier operations: the
    /// operation is worth one more try, on a fresh connection.
    pub(crate) fn finish<T>(
        mut self,
        outcome: Result<Result<T, sqlx::Error>, ()>,
    ) -> Result<T, Failure> {
        match outcome {
            Ok(Ok(value)) => {
                self.clean = true;
                Ok(value)
            }
            Ok(Err(e)) if broke(&e) => {
                // Every connection opened until now may be broken the same way.
                if let Some(open) = self.slot.as_ref() {
                    self.generation
                        .fetch_max(open.generation + 1, Ordering::AcqRel);
                }
                Err(if self.reused {
                    Failure::Retry(e)
                } else {
                    Failure::Fatal(e)
                })
            }
            Ok(Err(e)) => {
                self.clean = matches!(e, sqlx::Error::Database(_));
                Err(Failure::Fatal(e))
            }
            Err(()) => Err(Failure::Fatal(timed_out())),
        }
    }
}

/// How an operation on a lane failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Its connection, reused, turned out to be broken: try once more.
    Retry(sqlx::Error),
    /// For good.
    Fatal(sqlx::Error),
}

impl<C: Connection> Drop for Lane<'_, C> {
    fn drop(&mut self) {
        if !self.clean {
            // Broken, timed out, or left half way: the next operation opens a fresh one.
            self.slot.take();
        }
    }
}

/// Runs `$body` (a future using `$conn`, a `&mut` connection) on a lane of `$lanes`, within the
/// lanes' timeout; evaluates to `Result<T, sqlx::Error>`. When a reused connection turns out to
/// be broken, `$body` runs once more on a fresh one: every body here is safe to repeat (a read,
/// an insert that does nothing if its key is taken, a compare-and-swap on the version, a
/// delete).
macro_rules! on_lane {
    ($lanes:expr, $conn:ident => $body:expr) => {
        async {
            let mut retried = false;
            loop {
                let mut lane = $lanes.lane().await?;
                let limit = lane.timeout();
                let outcome = {
                    let $conn = lane.conn();
                    rocket::tokio::time::timeout(limit, $body)
                        .await
                        .map_err(|_| ())
                };
                match lane.finish(outcome) {
                    Ok(value) => break Ok(value),
                    Err($crate::stores::sql::lanes::Failure::Retry(_)) if !retried => {
                        retried = true;
                    }
                    Err(
                        $crate::stores::sql::lanes::Failure::Retry(e)
                        | $crate::stores::sql::lanes::Failure::Fatal(e),
                    ) => break Err(e),
                }
            }
        }
        .await
    };
}
pub(crate) use on_lane;

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::SqliteConnection;

    fn lanes(dir: &tempfile::TempDir, count: usize) -> Lanes<SqliteConnection> {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("lanes.sqlite3"))
            .create_if_missing(true);
        Lanes::new(Arc::new(options), count, Duration::from_secs(30))
    }

    /// Whether the lane's connection is the one that made the temporary table `mark` (temporary
    /// tables belong to one connection).
    async fn marked(lanes: &Lanes<SqliteConnection>) -> bool {
        let found: Result<Option<(i64,)>, sqlx::Error> = on_lane!(lanes, conn => async {
            sqlx::query_as("SELECT COUNT(*) FROM sqlite_temp_master WHERE name = 'mark'")
                .fetch_optional(conn)
                .await
        });
        found.expect("query").is_some_and(|(n,)| n == 1)
    }

    async fn mark(lanes: &Lanes<SqliteConnection>) {
        let made: Result<(), sqlx::Error> = on_lane!(lanes, conn => async {
            sqlx::query("CREATE TEMP TABLE mark (x)").execute(conn).await.map(drop)
        });
        made.expect("temp table");
    }

    #[rocket::async_test]
    async fn a_connection_serves_one_operation_after_another() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lanes = lanes(&dir, 1);
        mark(&lanes).await;
        assert!(marked(&lanes).await, "the same connection");
    }

    #[rocket::async_test]
    async fn a_statement_error_keeps_the_connection() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lanes = lanes(&dir, 1);
        mark(&lanes).await;
        let failed: Result<(), sqlx::Error> = on_lane!(&lanes, conn => async {
            sqlx::query("SELECT * FROM no_such_table").execute(conn).await.map(drop)
        });
        assert!(
            matches!(failed, Err(sqlx::Error::Database(_))),
            "{failed:?}"
        );
        assert!(marked(&lanes).await, "kept");
    }

    #[rocket::async_test]
    async fn an_abandoned_operation_drops_the_connection() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lanes = lanes(&dir, 1);
        mark(&lanes).await;
        // Taken and dropped without `finish`, as when a request is cancelled mid-statement.
        drop(lanes.lane().await.expect("a lane"));
        assert!(!marked(&lanes).await, "a fresh connection");
    }

    #[rocket::async_test]
    async fn a_broken_connection_retires_every_older_one_and_is_tried_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lanes = lanes(&dir, 2);
        // Open both lanes and mark both connections.
        {
            let mut first = lanes.lane().await.expect("a lane");
            let mut second = lanes.lane().await.expect("another lane");
            for lane in [&mut first, &mut second] {
                sqlx::query("CREATE TEMP TABLE mark (x)")
                    .execute(lane.conn())
                    .await
                    .expect("temp table");
            }
            assert!(first.finish(Ok(Ok(()))).is_ok());
            assert!(second.finish(Ok(Ok(()))).is_ok());
        }
        // An operation meets a broken connection (as when the server went away meanwhile).
        let mut runs = 0;
        let result: Result<(), sqlx::Error> = on_lane!(&lanes, conn => async {
            runs += 1;
            if runs == 1 {
                let _ = conn;
                Err(sqlx::Error::Io(std::io::ErrorKind::UnexpectedEof.into()))
            } else {
                sqlx::query("SELECT 1").execute(conn).await.map(drop)
            }
        });
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(runs, 2, "tried once more");
        // Neither lane still holds a connection from before the breakage.
        assert!(!marked(&lanes).await);
        assert!(!marked(&lanes).await);
    }

    #[rocket::async_test]
    async fn a_fresh_connection_that_breaks_is_not_tried_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lanes = lanes(&dir, 1);
        let mut runs = 0;
        let result: Result<(), sqlx::Error> = on_lane!(&lanes, conn => async {
            runs += 1;
            let _ = conn;
            Err(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()))
        });
        assert!(matches!(result, Err(sqlx::Error::Io(_))), "{result:?}");
        assert_eq!(runs, 1);
    }
}
