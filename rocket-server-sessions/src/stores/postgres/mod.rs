//! Sessions in a PostgreSQL database (Django's `backends.db`), on the pool the application hands
//! the store ([`PostgresStore::new`]): the table and statements of `stores/sql`, with triggers
//! that report every change, so that a [`NearCached`](crate::stores::NearCached) store in
//! front may keep what it loads (`listen.rs` hears them).
//!
//! Loads and saves run on connections the store keeps out of the application's pool
//! (`lanes.rs`: the pool pinged the server on every checkout and every return, tripling each
//! statement's round trips; gain in BENCHMARKS.md). Clearing, counting and inspecting run on
//! the pool. Expiry is judged by the database's clock.

mod lanes;
mod listen;

use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgPool, Postgres};
use time::OffsetDateTime;

use crate::record::Record;
use crate::store::{Result, StoreError};
use crate::stores::near::{Cache, Kept, Name, Watched};
use crate::stores::sql::write::Write;
use crate::stores::sql::{self, OnPool, RowsAffected, SqlBackend};

use lanes::{on_lane, Borrowed, Lanes};
pub(crate) use listen::CHANNEL;

/// A load: the live session of a key digest (`$1`), expiry judged by the database's clock, as
/// every server sharing the database and its triggers judge it, with the seconds it has left.
const LOAD: &str = "SELECT data, expires, version, \
     CAST(expires - EXTRACT(EPOCH FROM now()) AS DOUBLE PRECISION) FROM session \
     WHERE key_hash = $1 AND expires > EXTRACT(EPOCH FROM now())";

/// The session table, with the triggers that report its changes to near caches.
const SCHEMA: &str = include_str!("schema.sql");

/// A store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// Clearing, counting and inspecting.
    pool: PgPool,
    /// Loads and saves.
    lanes: Arc<Lanes<Borrowed<Postgres>>>,
    /// The channel the session table's triggers notify.
    channel: &'static str,
}

/// How long a connection the store keeps may serve nothing before it is let go: the pool's
/// `idle_timeout`, or sqlx's default of ten minutes.
fn idle(pool: &PgPool) -> Duration {
    pool.options()
        .get_idle_timeout()
        .unwrap_or(Duration::from_secs(600))
}

impl PostgresStore {
    /// A store on a PostgreSQL pool, whose database needs the `session` table and its triggers,
    /// which [`PostgresStore::migrate`] makes.
    ///
    /// The store and the application share the pool's `max_connections`: the store takes the
    /// connections it keeps from the pool (at most half of them, so the application's own
    /// queries always find some), takes another only when every one it keeps is busy, and
    /// gives back those that served nothing for the pool's `idle_timeout`. A near cache
    /// ([`NearCached`](crate::stores::NearCached)) adds two connections of its own. So a
    /// server holds at most `max_connections + 2`. The pool needs at least 2 connections:
    /// with one, the store keeps it and the application's queries wait for it.
    pub fn new(pool: PgPool) -> Self {
        let max = usize::try_from(pool.options().get_max_connections()).unwrap_or(1);
        if max < 2 {
            log::warn!(
                "a PostgreSQL pool of {max} connection for sessions: the application's own \
                 queries will wait while the session store keeps it; allow at least 2"
            );
        }
        let lanes = Lanes::new(
            Borrowed(pool.clone()),
            max / 2,
            pool.options().get_acquire_timeout(),
            idle(&pool),
        );
        PostgresStore {
            pool,
            lanes: Arc::new(lanes),
            channel: CHANNEL,
        }
    }

    /// The same store, its table's triggers notifying `channel` instead of `session_changes` (for a
    /// site whose session table already reports on a channel of its own: servers of the old
    /// and the new version must hear the same one while both run). A name of lowercase
    /// letters, digits and `_`; [`PostgresStore::migrate`] refuses any other.
    #[must_use]
    pub fn with_channel(self, channel: &'static str) -> Self {
        PostgresStore { channel, ..self }
    }

    /// Makes the `session` table and its triggers if they are not there yet; does nothing to a
    /// table that is. Call it once at launch, before serving (or from a deploy script): it is
    /// safe to run from several servers at once.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when a statement fails or the channel's name is not plain.
    pub async fn migrate(&self) -> Result<()> {
        let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
        if self.channel.is_empty() || !self.channel.chars().all(plain) {
            return Err(StoreError::Backend(
                format!("invalid notification channel {:?}", self.channel).into(),
            ));
        }
        let schema = SCHEMA.replace("CHANNEL", self.channel);
        async {
            // One transaction, under an advisory lock that servers starting together take in
            // turn: PostgreSQL's `IF NOT EXISTS` does not guard against a concurrent `CREATE`.
            let mut tx = self.pool.begin().await?;
            sqlx::Executor::execute(&mut *tx, schema.as_str()).await?;
            tx.commit().await
        }
        .await
        .map_err(StoreError::backend)
    }

    /// The live session of `digest`, by the database's clock, with the seconds it has left by
    /// that clock.
    async fn read_with_time_left(&self, digest: &[u8; 32]) -> Result<Option<(Record, f64)>> {
        let row: Option<(String, i64, i64, f64)> =
            on_lane!(self.lanes, conn => sqlx::query_as(LOAD)
            .bind(&digest[..])
            .fetch_optional(conn))
            .map_err(StoreError::backend)?;
        Ok(row
            .map(|(data, expires, version, left)| (sql::record_of((data, expires, version)), left)))
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// The session store on top (`sql/mod.rs`): every session operation, clearing in batches,
/// counting and inspecting, a user's sessions.
#[rocket::async_trait]
impl SqlBackend for PostgresStore {
    async fn read(&self, digest: &[u8; 32]) -> Result<Option<Record>> {
        Ok(self
            .read_with_time_left(digest)
            .await?
            .map(|(record, _)| record))
    }

    /// On a lane.
    async fn write(&self, write: Write) -> Result<u64> {
        on_lane!(self.lanes, conn => write.run(conn)).map_err(StoreError::backend)
    }

    /// The database's clock, so that servers whose clocks disagree still agree on which
    /// sessions are live, and one whose clock runs ahead never clears sessions the others
    /// still serve. (Expiry dates are written by the clock of the server that saves, as the
    /// cookie's `Expires` is: a server's skew shifts the lifetime of the sessions it saves,
    /// never what the others decide.)
    async fn now(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT CAST(FLOOR(EXTRACT(EPOCH FROM now())) AS BIGINT)")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::backend)
    }

    fn on_pool(&self) -> &dyn OnPool {
        &self.pool
    }

    /// The channel its changes are notified on.
    async fn describe_database(&self) -> Result<String> {
        Ok(format!(
            "PostgreSQL, changes notified on channel {:?}",
            self.channel
        ))
    }
}

impl crate::stores::near::sealed::Sealed for PostgresStore {}

/// The session table's triggers report every change (see `listen.rs`), so a
/// [`NearCached`](crate::stores::NearCached) store can keep what this one loads.
#[rocket::async_trait]
impl Watched for PostgresStore {
    fn watch(&self, cache: std::sync::Weak<Cache>) {
        listen::spawn(&self.pool.connect_options(), self.channel, cache);
    }

    /// The name is the key's digest: not computed again.
    async fn load_watched(&self, _id: &str, name: &Name) -> Result<Option<Kept>> {
        // Kept until it expires by the database's clock, put on this server's: a server whose
        // clock is off serves from its cache what the database calls live, no more.
        let now = OffsetDateTime::now_utc();
        Ok(self
            .read_with_time_left(name)
            .await?
            .map(|(record, left)| Kept {
                until: Some(now + time::Duration::seconds_f64(left.max(0.0))),
                record,
            }))
    }
}
