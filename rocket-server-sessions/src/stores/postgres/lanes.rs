//! Connections the PostgreSQL store keeps, each for one operation at a time: its hot path.
//!
//! sqlx 0.7's pool checks a connection with a ping when it hands it out and again, always, when
//! it takes it back (`PoolConnection::return_to_pool`): on PostgreSQL each ping is a network
//! round trip, so a session load through the pool cost three round trips instead of one.
//! [`Lanes`] keeps a few connections, each behind an async mutex: an operation takes the first
//! free one, runs its statement (prepared once per connection and cached, as sqlx does), and
//! leaves it in its lane, with no ping either way.
//!
//! The connections are taken from the application's pool and kept ([`Borrowed`]; the lanes
//! take them from a [`Source`], so that their tests run on SQLite with no server), so that
//! store and application share the pool's `max_connections`, which is what a PostgreSQL
//! server limits. A lane opens (or
//! takes) a connection only when every open lane is busy, and a task lets go of those that
//! served nothing for the pool's `idle_timeout` (back to the pool, which closes them).
//!
//! A connection is dropped when an operation on it fails other than by a statement error the
//! database reported, times out, or is abandoned half way (a cancelled request): the next
//! operation opens a fresh one. When a connection turns out to be broken (the database
//! restarted, or went away and came back), every connection opened before is dropped too, and
//! an operation that met the broken connection after it had sat idle is tried once more, on a
//! fresh connection: what the pool's ping on checkout did. So a database that goes away and
//! comes back is handled as the pool handles it, without a restart. Every operation, connecting
//! included, is bounded by the pool's acquire timeout.
//!
//! Gain (BENCHMARKS.md, "What each change bought", 1): PostgreSQL read 0.80 → 0.92 of the
//! ceiling, write 0.69 → 0.85, update 0.58 → 0.75.

use std::future::Future;
use std::ops::DerefMut;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rocket::tokio::sync::{Mutex, MutexGuard};
use rocket::tokio::time::timeout;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, Database, Pool};

/// Where the connections of lanes come from.
pub(crate) trait Source: Send + Sync + 'static {
    /// What a lane holds.
    type Held: DerefMut<Target = Self::Conn> + Send + 'static;
    /// The connection an operation runs on.
    type Conn: Connection;

    /// A connection for a lane that has none.
    fn open(&self) -> impl Future<Output = Result<Self::Held, sqlx::Error>> + Send;

    /// Lets go of a connection that may be broken or half way through a statement.
    fn discard(held: Self::Held) {
        drop(held);
    }

    /// Done when the lanes must give back every connection (their pool is closing).
    fn closing(&self) -> impl Future<Output = ()> + Send + 'static {
        std::future::pending()
    }

    /// Lets go of a connection when the lanes are dropped outside any Tokio runtime (an
    /// application's `main` drops its Rocket, and so the store, after the runtime is gone).
    fn abandon(held: Self::Held) {
        drop(held);
    }
}

/// Connections taken from the application's pool and kept (no ping per operation), so that the
/// store and the application share one budget, the pool's `max_connections`: for PostgreSQL,
/// whose server caps the connections of every client together.
pub(crate) struct Borrowed<DB: Database>(pub(crate) Pool<DB>);

impl<DB: Database> Source for Borrowed<DB> {
    type Held = PoolConnection<DB>;
    type Conn = DB::Connection;

    async fn open(&self) -> Result<PoolConnection<DB>, sqlx::Error> {
        self.0.acquire().await
    }

    /// Closed, not handed back: the pool must not give it to anyone else.
    fn discard(held: PoolConnection<DB>) {
        drop(held.detach());
    }

    /// Forgotten: dropping or detaching a pooled connection spawns a task on the runtime
    /// (sqlx returns it to the pool, or keeps the pool's `min_connections`), and without one
    /// that panics. The process is ending; its sockets close with it.
    fn abandon(held: PoolConnection<DB>) {
        std::mem::forget(held);
    }

    /// The pool is closing (the application shuts down): it waits for every connection it
    /// lent, so the lanes give theirs back at once.
    fn closing(&self) -> impl Future<Output = ()> + Send + 'static {
        self.0.close_event()
    }
}

/// An open connection, the generation it was opened in, and when it last served.
struct Open<H> {
    conn: H,
    generation: u64,
    used: Instant,
}

/// The slots of lanes: each holds a connection or none.
type Slots<H> = [Mutex<Option<Open<H>>>];

/// A few connections of one database, each used by one operation at a time.
pub(crate) struct Lanes<S: Source> {
    source: S,
    slots: Arc<Slots<S::Held>>,
    next: AtomicUsize,
    /// Bumped when a connection is found broken: connections of older generations are not
    /// trusted any more and are reopened on their next use.
    generation: AtomicU64,
    timeout: Duration,
}

impl<S: Source> std::fmt::Debug for Lanes<S> {
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

impl<S: Source> Lanes<S> {
    /// Up to `count` connections (at least one) from `source`; an operation, connecting
    /// included, fails after `limit`. A connection that served nothing for `idle` is let go
    /// (by a task of the current runtime, if there is one).
    pub(crate) fn new(source: S, count: usize, limit: Duration, idle: Duration) -> Self {
        let slots: Arc<Slots<S::Held>> = (0..count.max(1)).map(|_| Mutex::new(None)).collect();
        if let Ok(runtime) = rocket::tokio::runtime::Handle::try_current() {
            runtime.spawn(let_idle_go(Arc::downgrade(&slots), idle, source.closing()));
        }
        Lanes {
            source,
            slots,
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            timeout: limit,
        }
    }

    /// A connection for one operation: the first free open one; else a new one, if a lane has
    /// none (so connections are opened only when every open one is busy); else the next lane in
    /// turn once it is free. Reopened if it is older than a broken one.
    ///
    /// # Errors
    /// The connection cannot be opened, or no lane frees up in time.
    pub(crate) async fn lane(&self) -> Result<Lane<'_, S>, sqlx::Error> {
        let mut closed = None;
        let mut open = None;
        for slot in self.slots.iter() {
            let Ok(slot) = slot.try_lock() else {
                continue;
            };
            if slot.is_some() {
                open = Some(slot);
                break;
            }
            if closed.is_none() {
                closed = Some(slot);
            }
        }
        let mut slot = match open.or(closed) {
            Some(slot) => slot,
            None => {
                let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
                timeout(self.timeout, self.slots[turn].lock())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)?
            }
        };
        let generation = self.generation.load(Ordering::Acquire);
        if slot
            .as_ref()
            .is_some_and(|open| open.generation < generation)
        {
            // Dropped without a goodbye: it may be broken.
            if let Some(old) = slot.take() {
                S::discard(old.conn);
            }
        }
        let reused = slot.is_some();
        if !reused {
            let conn = timeout(self.timeout, self.source.open())
                .await
                .map_err(|_| timed_out())??;
            *slot = Some(Open {
                conn,
                generation,
                used: Instant::now(),
            });
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

/// Every `idle / 2`, lets go of the connections that served nothing for `idle` (back to the
/// pool they came from, which closes them when they stay idle there), until the lanes are gone;
/// once `closing` is done, lets go of every connection as soon as its operation ends.
async fn let_idle_go<H: Send + 'static>(
    slots: Weak<Slots<H>>,
    idle: Duration,
    closing: impl Future<Output = ()> + Send,
) {
    let mut tick = rocket::tokio::time::interval((idle / 2).max(Duration::from_millis(100)));
    let mut closing = std::pin::pin!(closing);
    loop {
        let closed = rocket::tokio::select! {
            _ = tick.tick() => false,
            () = &mut closing => true,
        };
        let Some(slots) = slots.upgrade() else {
            return;
        };
        if closed {
            for slot in slots.iter() {
                slot.lock().await.take();
            }
            return;
        }
        for slot in slots.iter() {
            if let Ok(mut slot) = slot.try_lock() {
                if slot
                    .as_ref()
                    .is_some_and(|open| open.used.elapsed() >= idle)
                {
                    slot.take();
                }
            }
        }
    }
}

/// One connection, taken for one operation. Unless [`Lane::finish`] says the operation ended
/// with the connection in a known state, dropping the lane closes the connection.
pub(crate) struct Lane<'a, S: Source> {
    slot: MutexGuard<'a, Option<Open<S::Held>>>,
    generation: &'a AtomicU64,
    clean: bool,
    reused: bool,
    timeout: Duration,
}

impl<S: Source> Lane<'_, S> {
    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut S::Conn {
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
                if let Some(open) = self.slot.as_mut() {
                    open.used = Instant::now();
                }
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

impl<S: Source> Drop for Lanes<S> {
    fn drop(&mut self) {
        if rocket::tokio::runtime::Handle::try_current().is_ok() {
            return; // the connections drop with their slots, as anywhere else
        }
        for slot in self.slots.iter() {
            if let Some(open) = slot.try_lock().ok().and_then(|mut slot| slot.take()) {
                S::abandon(open.conn);
            }
        }
    }
}

impl<S: Source> Drop for Lane<'_, S> {
    fn drop(&mut self) {
        if !self.clean {
            // Broken, timed out, or left half way: the next operation opens a fresh one.
            if let Some(open) = self.slot.take() {
                S::discard(open.conn);
            }
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
                    Err($crate::stores::postgres::lanes::Failure::Retry(_)) if !retried => {
                        retried = true;
                    }
                    Err(
                        $crate::stores::postgres::lanes::Failure::Retry(e)
                        | $crate::stores::postgres::lanes::Failure::Fatal(e),
                    ) => break Err(e),
                }
            }
        }
        .await
    };
}
pub(crate) use on_lane;

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, SqliteConnection};

    /// Connections of the lanes' own, opened with these options: lanes with no pool and no
    /// server, on a SQLite file.
    struct Own<C: Connection>(Arc<C::Options>);

    /// A connection of the lanes' own.
    struct Plain<C>(C);

    impl<C> std::ops::Deref for Plain<C> {
        type Target = C;
        fn deref(&self) -> &C {
            &self.0
        }
    }

    impl<C> DerefMut for Plain<C> {
        fn deref_mut(&mut self) -> &mut C {
            &mut self.0
        }
    }

    impl<C: Connection + 'static> Source for Own<C> {
        type Held = Plain<C>;
        type Conn = C;

        async fn open(&self) -> Result<Plain<C>, sqlx::Error> {
            self.0.connect().await.map(Plain)
        }
    }

    fn lanes(dir: &tempfile::TempDir, count: usize) -> Lanes<Own<SqliteConnection>> {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("lanes.sqlite3"))
            .create_if_missing(true);
        Lanes::new(
            Own(Arc::new(options)),
            count,
            Duration::from_secs(30),
            Duration::from_secs(600),
        )
    }

    /// Whether the lane's connection is the one that made the temporary table `mark` (temporary
    /// tables belong to one connection).
    async fn marked(lanes: &Lanes<Own<SqliteConnection>>) -> bool {
        let found: Result<Option<(i64,)>, sqlx::Error> = on_lane!(lanes, conn => async {
            sqlx::query_as("SELECT COUNT(*) FROM sqlite_temp_master WHERE name = 'mark'")
                .fetch_optional(conn)
                .await
        });
        found.expect("query").is_some_and(|(n,)| n == 1)
    }

    async fn mark(lanes: &Lanes<Own<SqliteConnection>>) {
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
