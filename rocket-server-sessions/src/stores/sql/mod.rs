//! Sessions in a SQL database, SQLite or PostgreSQL (Django's `backends.db`), on a pool the
//! application hands the store ([`SqlStore::sqlite`], [`SqlStore::postgres`]).
//!
//! Table `session` (`schema/`, made by [`SqlStore::migrate`]): `key_hash` (the SHA-256 of the
//! key, primary key), `data` (the JSON object), `expires` (unix seconds), `version`, `user_id`
//! (the user it is signed in as, from `USER_KEY`; indexed where set, for `user_sessions`). Every
//! operation is one statement: a load is one `SELECT`, a save one conditional `UPDATE` (a
//! compare-and-swap on `version`, so concurrent saves merge instead of losing each other's keys).
//!
//! What follows the plain store is speed machinery, each piece with its measured gain in
//! BENCHMARKS.md. Loads and saves run on connections of the store's own (`lanes.rs`), not
//! through the pool, whose ping on every checkout and every return tripled the round trips of
//! each statement. On SQLite, a load first runs on the request's own thread (`inline.rs`):
//! sqlx's connections run on threads of their own, and that hop was most of a load's cost.
//! Saves go through one writer, never colliding on SQLite's write lock (whose busy handler
//! backs off in sleeps of milliseconds): on a file, a thread that commits the saves waiting
//! for it together (`group.rs`); else one connection that they take in turn. On PostgreSQL, [`SqlStore::with_near_cache`] keeps recently loaded
//! sessions in the process, watched through `LISTEN` (`listen.rs`).
//!
//! Expired sessions are cleared by a sweep of the table in key order, a short window at a time
//! (see `clear_expired_in_batches`). On SQLite `expires` has no index: the keys are random
//! digests, so an index on `expires` orders rows differently from the table, and keeping it up
//! to date cost a random page write per deleted row (and two more per save). Deleting a million
//! expired sessions took 31 s with it, 1.4 s without.

#[cfg(feature = "sqlite")]
mod group;
#[cfg(feature = "sqlite")]
mod inline;
pub(crate) mod lanes;
#[cfg(feature = "postgres")]
mod listen;
mod write;

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "postgres")]
use sqlx::PgPool;
#[cfg(feature = "sqlite")]
use sqlx::{SqliteConnection, SqlitePool};
use time::OffsetDateTime;

use crate::key::SessionKey;
use crate::record::{self, Data, Record};
use crate::store::{
    Census, ClearInBatches, Result, SessionCounts, SessionStore, StoreError, Stored, UserIndex,
    UserSession,
};
#[cfg(feature = "postgres")]
use crate::stores::near::{Cache, Kept, Watched};

#[cfg(feature = "sqlite")]
pub use group::GroupCommits;
#[cfg(feature = "sqlite")]
use group::GroupWriter;

#[cfg(feature = "sqlite")]
use inline::InlineReader;
#[cfg(feature = "postgres")]
use lanes::Borrowed;
#[cfg(feature = "sqlite")]
use lanes::Own;
use lanes::{on_lane, Lanes};
use write::{Write, DELETE, END, INSERT, UPDATE};

#[cfg(feature = "postgres")]
pub(crate) use listen::CHANNEL;

/// A load: the live session of a key digest at a unix time. (On SQLite, `$1` and `$2` are
/// parameters 1 and 2 as well, so [`InlineReader`] runs the same statement.)
#[cfg(feature = "sqlite")]
const LOAD: &str =
    "SELECT data, expires, version FROM session WHERE key_hash = $1 AND expires > $2";

/// A load on PostgreSQL: expiry judged by the database's clock, as every server sharing the
/// database and its triggers judge it (see [`SqlStore::now`]).
#[cfg(feature = "postgres")]
const LOAD_POSTGRES: &str = "SELECT data, expires, version, \
     CAST(expires - EXTRACT(EPOCH FROM now()) AS DOUBLE PRECISION) FROM session \
     WHERE key_hash = $1 AND expires > EXTRACT(EPOCH FROM now())";

/// How many fresh keys `create` draws before it gives up.
const CREATE_ATTEMPTS: u32 = 10;

/// Rows `clear_expired` deletes per statement: small enough that no batch holds SQLite's write
/// lock for long, so a server sharing the file keeps answering.
pub const CLEAR_BATCH: u32 = 5_000;

/// How many rows, live or expired, one window of the sweep spans at most, per row of `batch`:
/// where few sessions are expired, a window moves through live ones in bigger strides, yet its
/// statement still reads a bounded number of rows.
const WINDOW_PER_BATCH: i64 = 4;

/// How long `clear_expired_in_batches` sleeps between two batches. SQLite's busy handler
/// polls a waiting writer every few milliseconds (at most 25 ms apart in its first 100 ms), so
/// a writer of the server, in this process or another one sharing the file, gets the lock in
/// this gap instead of waiting behind the next batch.
pub const CLEAR_PAUSE: Duration = Duration::from_millis(10);

/// The pool a [`SqlStore`] runs on. The same statements (with `$N` parameters, which both
/// databases understand) run on either.
#[derive(Debug, Clone)]
enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete sqlx pool of a [`Pool`]: the body is
/// compiled once per database, so it may use each one's types.
macro_rules! on_pool {
    ($sql_pool:expr, $pool:ident => $body:expr) => {
        match $sql_pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite($pool) => $body,
            #[cfg(feature = "postgres")]
            Pool::Postgres($pool) => $body,
        }
    };
}

/// A store in a SQL database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    /// Clearing, counting and inspecting.
    pool: Pool,
    /// Loads and saves.
    lanes: Arc<StoreLanes>,
    /// The channel the session table's triggers notify (PostgreSQL).
    #[cfg(feature = "postgres")]
    channel: &'static str,
}

/// The connections a [`SqlStore`] loads and saves on, opened on first use with the pool's
/// options (the same pragmas on SQLite).
#[derive(Debug)]
enum StoreLanes {
    /// Loads on up to one connection per core (WAL readers never wait), first on the
    /// request's own thread when the database is a file; saves on one, in group commits when
    /// the database is a file.
    #[cfg(feature = "sqlite")]
    Sqlite {
        inline: Option<InlineReader>,
        read: Lanes<Own<SqliteConnection>>,
        group: Option<Box<GroupWriter>>,
        write: Lanes<Own<SqliteConnection>>,
    },
    /// Loads and saves alike on up to as many connections as the pool may open.
    #[cfg(feature = "postgres")]
    Postgres(Lanes<Borrowed<sqlx::Postgres>>),
}

/// Runs `$body` with `$conn` bound to a connection of the `$kind` (`read` or `write`) lanes of
/// `$store`; evaluates to `Result<T, sqlx::Error>`.
macro_rules! on_store_lane {
    ($store:expr, $kind:ident, $conn:ident => $body:expr) => {
        match &*$store.lanes {
            #[cfg(feature = "sqlite")]
            StoreLanes::Sqlite { $kind: lanes, .. } => on_lane!(lanes, $conn => $body),
            #[cfg(feature = "postgres")]
            StoreLanes::Postgres(lanes) => on_lane!(lanes, $conn => $body),
        }
    };
}

/// How long a connection the store keeps may serve nothing before it is let go: the pool's
/// `idle_timeout`, or sqlx's default of ten minutes.
fn idle<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Duration {
    pool.options()
        .get_idle_timeout()
        .unwrap_or(Duration::from_secs(600))
}

/// The session table on SQLite: what [`SqlStore::migrate`] makes.
#[cfg(feature = "sqlite")]
const SQLITE_SCHEMA: &str = include_str!("schema/sqlite.sql");

/// The index from users to their sessions on SQLite, made after the `user_id` column.
#[cfg(feature = "sqlite")]
const SQLITE_USER_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS session_by_user ON session (user_id) WHERE user_id IS NOT NULL";

/// The session table on PostgreSQL, with the triggers that report its changes to near caches.
#[cfg(feature = "postgres")]
const POSTGRES_SCHEMA: &str = include_str!("schema/postgres.sql");

impl SqlStore {
    /// A store on a SQLite pool. The pool should be in WAL mode (readers then never wait for
    /// the writer) with a busy timeout; its database needs the `session` table, which
    /// [`SqlStore::migrate`] makes.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(pool: SqlitePool) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let max = usize::try_from(pool.options().get_max_connections()).unwrap_or(1);
        let limit = pool.options().get_acquire_timeout();
        let readers = cores.min(max);
        let file = pool.connect_options().as_ref().clone().get_filename();
        let lanes = StoreLanes::Sqlite {
            inline: InlineReader::new(&file, readers, LOAD),
            group: GroupWriter::new(&file, limit).map(Box::new),
            read: Lanes::new(Own(pool.connect_options()), readers, limit, idle(&pool)),
            write: Lanes::new(Own(pool.connect_options()), 1, limit, idle(&pool)),
        };
        SqlStore {
            pool: Pool::Sqlite(pool),
            lanes: Arc::new(lanes),
            #[cfg(feature = "postgres")]
            channel: CHANNEL,
        }
    }

    /// A store on a PostgreSQL pool, whose database needs the `session` table and its triggers,
    /// which [`SqlStore::migrate`] makes.
    ///
    /// The store and the application share the pool's `max_connections`: the store takes the
    /// connections it keeps from the pool (at most half of them, so the application's own
    /// queries always find some), takes another only when every one it keeps is busy, and
    /// gives back those that served nothing for the pool's `idle_timeout`. A near cache
    /// ([`NearCached`](crate::stores::NearCached)) adds two connections of its own. So a
    /// server holds at most `max_connections + 2`. The pool needs at least 2 connections:
    /// with one, the store keeps it and the application's queries wait for it.
    #[cfg(feature = "postgres")]
    pub fn postgres(pool: PgPool) -> Self {
        let max = usize::try_from(pool.options().get_max_connections()).unwrap_or(1);
        if max < 2 {
            log::warn!(
                "a PostgreSQL pool of {max} connection for sessions: the application's own \
                 queries will wait while the session store keeps it; allow at least 2"
            );
        }
        let lanes = StoreLanes::Postgres(Lanes::new(
            Borrowed(pool.clone()),
            max / 2,
            pool.options().get_acquire_timeout(),
            idle(&pool),
        ));
        SqlStore {
            pool: Pool::Postgres(pool),
            lanes: Arc::new(lanes),
            channel: CHANNEL,
        }
    }

    /// The same store, its table's triggers notifying `channel` instead of `session_changes` (for a
    /// site whose session table already reports on a channel of its own: servers of the old
    /// and the new version must hear the same one while both run). A name of lowercase
    /// letters, digits and `_`; [`SqlStore::migrate`] refuses any other.
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn with_channel(self, channel: &'static str) -> Self {
        SqlStore { channel, ..self }
    }

    /// Whether the database reports every change to a session (PostgreSQL, through its
    /// triggers), so that a near cache in front can serve what it keeps. SQLite reports none.
    pub fn reports_changes(&self) -> bool {
        match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => false,
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => true,
        }
    }

    /// Makes the `session` table (and on PostgreSQL its triggers) if they are not there yet;
    /// does nothing to a table that is. Call it once at launch, before serving (or from a
    /// deploy script): it is safe to run from several servers at once.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when a statement fails.
    pub async fn migrate(&self) -> Result<()> {
        match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                // WAL, so that loads never wait for saves: kept by the file itself. Best
                // effort (another process may hold the file); `describe` warns at launch.
                if let Err(e) = sqlx::query("PRAGMA journal_mode = WAL").execute(pool).await {
                    log::debug!("could not set the session database to WAL: {e}");
                }
                async {
                    sqlx::Executor::execute(pool, SQLITE_SCHEMA).await?;
                    let has_users: bool = sqlx::query_scalar(
                    "SELECT COUNT(*) > 0 FROM pragma_table_info('session') WHERE name = 'user_id'",
                )
                .fetch_one(pool)
                .await?;
                    if !has_users {
                        // A table made before sessions had users. Another process migrating at
                        // the same moment may add the column first: then it is there.
                        if let Err(e) = sqlx::query("ALTER TABLE session ADD COLUMN user_id TEXT")
                            .execute(pool)
                            .await
                        {
                            if !e.to_string().contains("duplicate column") {
                                return Err(e);
                            }
                        }
                    }
                    sqlx::query(SQLITE_USER_INDEX).execute(pool).await.map(drop)
                }
                .await
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => {
                let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
                if self.channel.is_empty() || !self.channel.chars().all(plain) {
                    return Err(StoreError::Backend(
                        format!("invalid notification channel {:?}", self.channel).into(),
                    ));
                }
                let schema = POSTGRES_SCHEMA.replace("CHANNEL", self.channel);
                async {
                    // One transaction, under an advisory lock that servers starting together
                    // take in turn: PostgreSQL's `IF NOT EXISTS` does not guard against a
                    // concurrent `CREATE`.
                    let mut tx = pool.begin().await?;
                    sqlx::Executor::execute(&mut *tx, schema.as_str()).await?;
                    tx.commit().await
                }
                .await
            }
        }
        .map_err(StoreError::backend)
    }

    /// The live session of `digest`, read from the database: on SQLite on the request's own
    /// thread if the inline reader can, else on a read lane; on PostgreSQL by its clock, with
    /// the seconds it has left by that clock.
    async fn read(&self, digest: &[u8; 32]) -> Result<Option<(Record, Option<f64>)>> {
        match &*self.lanes {
            #[cfg(feature = "sqlite")]
            StoreLanes::Sqlite { inline, read, .. } => {
                let now = OffsetDateTime::now_utc().unix_timestamp();
                if let Some(row) = inline.as_ref().and_then(|inline| inline.load(digest, now)) {
                    return Ok(row.map(|row| (record_of(row), None)));
                }
                let row: Option<(String, i64, i64)> = on_lane!(read, conn => sqlx::query_as(LOAD)
                    .bind(&digest[..])
                    .bind(now)
                    .fetch_optional(conn))
                .map_err(StoreError::backend)?;
                Ok(row.map(|row| (record_of(row), None)))
            }
            #[cfg(feature = "postgres")]
            StoreLanes::Postgres(lanes) => {
                let row: Option<(String, i64, i64, f64)> =
                    on_lane!(lanes, conn => sqlx::query_as(LOAD_POSTGRES)
                        .bind(&digest[..])
                        .fetch_optional(conn))
                    .map_err(StoreError::backend)?;
                Ok(row.map(|(data, expires, version, left)| {
                    (record_of((data, expires, version)), Some(left))
                }))
            }
        }
    }

    /// Runs a save and says how many rows it changed: on a SQLite file in the next group
    /// commit (`group.rs`), else as one statement on the write lanes.
    async fn write(&self, write: Write) -> Result<u64> {
        #[cfg(feature = "sqlite")]
        let write = match (&*self.lanes, &self.pool) {
            (
                StoreLanes::Sqlite {
                    group: Some(group), ..
                },
                Pool::Sqlite(pool),
            ) => match group.run(pool, write).await {
                Ok(result) => return result,
                Err(write) => write,
            },
            #[allow(unreachable_patterns)]
            _ => write,
        };
        let rows = on_store_lane!(self, write, conn => async {
            match &write {
                Write::Insert { digest, data, expires, user } => sqlx::query(INSERT)
                    .bind(&digest[..])
                    .bind(data)
                    .bind(expires)
                    .bind(user)
                    .execute(conn)
                    .await,
                Write::Update { digest, data, expires, version, user } => sqlx::query(UPDATE)
                    .bind(data)
                    .bind(expires)
                    .bind(user)
                    .bind(&digest[..])
                    .bind(version)
                    .execute(conn)
                    .await,
                Write::Delete { digest } => sqlx::query(DELETE)
                    .bind(&digest[..])
                    .execute(conn)
                    .await,
                Write::End { digest, user } => sqlx::query(END)
                    .bind(&digest[..])
                    .bind(user)
                    .execute(conn)
                    .await,
            }
            .map(|done| done.rows_affected())
        });
        rows.map_err(StoreError::backend)
    }

    /// How this store's saves were committed so far: `None` unless it runs on a SQLite file,
    /// whose saves go in group commits (saves that arrive while a commit is under way are
    /// committed together in the next one). For monitoring and benchmarks.
    #[cfg(feature = "sqlite")]
    pub fn group_commits(&self) -> Option<GroupCommits> {
        match &*self.lanes {
            StoreLanes::Sqlite {
                group: Some(group), ..
            } => Some(group.counts()),
            _ => None,
        }
    }

    /// The time (unix seconds) that decides which sessions are expired: the host's clock on
    /// SQLite (one machine), the database's on PostgreSQL, so that servers whose clocks
    /// disagree still agree on which sessions are live, and one whose clock runs ahead never
    /// clears sessions the others still serve. (Expiry dates are written by the clock of the
    /// server that saves, as the cookie's `Expires` is: a server's skew shifts the lifetime of
    /// the sessions it saves, never what the others decide.)
    async fn now(&self) -> Result<i64> {
        match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => Ok(OffsetDateTime::now_utc().unix_timestamp()),
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => {
                sqlx::query_scalar("SELECT CAST(FLOOR(EXTRACT(EPOCH FROM now())) AS BIGINT)")
                    .fetch_one(pool)
                    .await
                    .map_err(StoreError::backend)
            }
        }
    }
}

#[cfg(feature = "postgres")]
impl crate::stores::near::sealed::Sealed for SqlStore {}

/// On PostgreSQL, the session table's triggers report every change (see `listen.rs`), so a
/// [`NearCached`](crate::stores::NearCached) store can keep what this one loads. A SQLite
/// database reports nothing: wrapped anyway, its cache stays off.
#[cfg(feature = "postgres")]
#[rocket::async_trait]
impl Watched for SqlStore {
    fn watched_name(&self, id: &str) -> Option<String> {
        SessionKey::parse(id).map(|key| key.digest_hex())
    }

    fn watch(&self, cache: std::sync::Weak<Cache>) {
        match &self.pool {
            Pool::Postgres(pool) => listen::spawn(&pool.connect_options(), self.channel, cache),
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => log::warn!("session near cache off: SQLite reports no changes"),
        }
    }

    /// The name is the key's digest in hex: read back, not computed again.
    async fn load_watched(&self, id: &str, name: &str) -> Result<Option<Kept>> {
        let Some(digest) = SessionKey::digest_of_hex(name) else {
            return Ok(self.load(id).await?.map(|record| Kept {
                record,
                until: None,
            }));
        };
        // Kept until it expires by the database's clock, put on this server's: a server whose
        // clock is off serves from its cache what the database calls live, no more.
        let now = OffsetDateTime::now_utc();
        Ok(self.read(&digest).await?.map(|(record, left)| Kept {
            until: left.map(|left| now + time::Duration::seconds_f64(left.max(0.0))),
            record,
        }))
    }
}

/// The record of a `(data, expires, version)` row.
fn record_of((data, expires, version): (String, i64, i64)) -> Record {
    Record {
        data: record::decode(&data),
        expires: OffsetDateTime::from_unix_timestamp(expires).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        version,
    }
}

#[rocket::async_trait]
impl SessionStore for SqlStore {
    async fn load(&self, id: &str) -> Result<Option<Record>> {
        let Some(key) = SessionKey::parse(id) else {
            // Client input: at debug level, so that a flood of them cannot fill a log.
            log::debug!("ignored a malformed session cookie ({} bytes)", id.len());
            return Ok(None);
        };
        Ok(self.read(&key.digest()).await?.map(|(record, _)| record))
    }

    async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<Stored> {
        let user = record::user_of(data).map(str::to_owned);
        let data = record::encode(data);
        for _ in 0..CREATE_ATTEMPTS {
            let key = SessionKey::generate();
            let insert = Write::Insert {
                digest: key.digest(),
                data: data.clone(),
                expires: expires.unix_timestamp(),
                user: user.clone(),
            };
            if self.write(insert).await? == 1 {
                return Ok(Stored {
                    id: key.as_str().to_owned(),
                    version: 1,
                });
            }
        }
        Err(StoreError::NoFreeKey(CREATE_ATTEMPTS))
    }

    async fn update(&self, id: &str, record: &Record) -> Result<Option<Stored>> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(None);
        };
        let update = Write::Update {
            digest: key.digest(),
            data: record::encode(&record.data),
            expires: record.expires.unix_timestamp(),
            version: record.version,
            user: record::user_of(&record.data).map(str::to_owned),
        };
        let updated = self.write(update).await?;
        Ok((updated == 1).then(|| Stored {
            id: id.to_owned(),
            version: record.version + 1,
        }))
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(());
        };
        self.write(Write::Delete {
            digest: key.digest(),
        })
        .await
        .map(drop)
    }

    async fn clear_expired(&self) -> Result<u64> {
        self.clear_expired_in_batches(CLEAR_BATCH, &mut |_| {})
            .await
    }

    fn expires_by_itself(&self) -> bool {
        false
    }

    fn batches(&self) -> Option<&dyn ClearInBatches> {
        Some(self)
    }

    fn census(&self) -> Option<&dyn Census> {
        Some(self)
    }

    fn user_index(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }

    /// Which database, after checking that the session table is there with every column
    /// (`migrate` made it); on SQLite, the journal mode, with a warning unless it is WAL.
    async fn describe(&self) -> Result<String> {
        let table = on_pool!(&self.pool, pool => sqlx::query(
            "SELECT key_hash, data, expires, version, user_id FROM session LIMIT 0",
        )
        .execute(pool).await.map(drop));
        if let Err(e) = table {
            return Err(StoreError::Backend(
                format!(
                    "the session table is missing or not migrated ({e}): call \
                     SqlStore::migrate() before serving (at ignite), or run your migrate command"
                )
                .into(),
            ));
        }
        match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                let (file, mode): (String, String) = sqlx::query_as(
                    "SELECT (SELECT file FROM pragma_database_list WHERE name = 'main'), \
                            (SELECT journal_mode FROM pragma_journal_mode)",
                )
                .fetch_one(pool)
                .await
                .map_err(StoreError::backend)?;
                if file.is_empty() {
                    return Ok(format!("SQLite in memory (journal_mode={mode})"));
                }
                if !mode.eq_ignore_ascii_case("wal") {
                    log::warn!(
                        "the session database {file} is in journal_mode={mode}: every load waits \
                         for saves; SqlStore::migrate sets WAL, or open it with journal_mode=WAL"
                    );
                }
                Ok(format!("SQLite at {file} (journal_mode={mode})"))
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => Ok(format!(
                "PostgreSQL, changes notified on channel {:?}",
                self.channel
            )),
        }
    }
}

#[rocket::async_trait]
impl ClearInBatches for SqlStore {
    /// Deletes expired sessions at most `batch` rows at a time, calling `progress` with the
    /// running total after each batch; returns the total.
    ///
    /// It sweeps the table in key order, one window at a time: a window ends at its `batch`-th
    /// expired session, or after `4 × batch` rows, whichever comes first. Finding the window
    /// is a read (WAL readers never wait for writers nor hold them up); deleting its expired
    /// sessions is one statement over contiguous rows, so one short hold of SQLite's write
    /// lock. It pauses 10 ms between windows so that other writers get their turn. A
    /// session saved during the sweep is judged by its expiry at the time of the delete.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database fails.
    async fn clear_expired_in_batches(
        &self,
        batch: u32,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64> {
        let now = self.now().await?;
        let batch = i64::from(batch.max(1));
        let window = batch.saturating_mul(WINDOW_PER_BATCH);
        // Every digest sorts after the empty blob.
        let mut after: Vec<u8> = Vec::new();
        let mut total = 0;
        loop {
            // The window's last key by count of expired rows (NULL if the window holds fewer),
            // its last key, and how many rows it holds.
            let (nth_expired, last, rows): (Option<Vec<u8>>, Option<Vec<u8>>, i64) =
                on_pool!(&self.pool, pool => sqlx::query_as(
                    "WITH span AS (SELECT key_hash, expires FROM session \
                                     WHERE key_hash > $1 ORDER BY key_hash LIMIT $2) \
                     SELECT (SELECT key_hash FROM span WHERE expires <= $3 \
                             ORDER BY key_hash LIMIT 1 OFFSET $4), \
                            (SELECT key_hash FROM span ORDER BY key_hash DESC LIMIT 1), \
                            (SELECT COUNT(*) FROM span)",
                )
                .bind(&after)
                .bind(window)
                .bind(now)
                .bind(batch - 1)
                .fetch_one(pool).await)
                .map_err(StoreError::backend)?;
            // A window short of both bounds ran into the end of the table.
            let last_window = nth_expired.is_none() && rows < window;
            let Some(end) = nth_expired.or(last) else {
                // Nothing after `after`: the sweep is done.
                progress(total);
                return Ok(total);
            };
            total += on_pool!(&self.pool, pool => sqlx::query(
                "DELETE FROM session WHERE key_hash > $1 AND key_hash <= $2 AND expires <= $3",
            )
            .bind(&after)
            .bind(&end)
            .bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))
            .map_err(StoreError::backend)?;
            progress(total);
            if last_window {
                return Ok(total);
            }
            after = end;
            // Let requests waiting for the write lock in.
            rocket::tokio::time::sleep(CLEAR_PAUSE).await;
        }
    }
}

#[rocket::async_trait]
impl Census for SqlStore {
    /// How many sessions are live and how many expired but not yet cleared: one read of the
    /// table (a fraction of a second for a million sessions).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database fails.
    async fn count(&self) -> Result<SessionCounts> {
        let now = self.now().await?;
        let (live, expired): (i64, i64) = on_pool!(&self.pool, pool => sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE expires > $1), COUNT(*) FILTER (WHERE expires <= $1) \
             FROM session",
        )
        .bind(now)
        .fetch_one(pool).await)
        .map_err(StoreError::backend)?;
        Ok(SessionCounts {
            live: u64::try_from(live).unwrap_or_default(),
            expired: u64::try_from(expired).unwrap_or_default(),
        })
    }

    /// The session `key` names, expired or not: what an operator inspects. Unlike
    /// `load`, an expired session that is not yet cleared is returned (with
    /// its expiry date in the past), so the command line can say it expired rather than that it
    /// never existed.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database fails.
    async fn inspect(&self, id: &str) -> Result<Option<Record>> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(None);
        };
        let row: Option<(String, i64, i64)> =
            on_pool!(&self.pool, pool => sqlx::query_as("SELECT data, expires, version FROM session WHERE key_hash = $1")
                .bind(&key.digest()[..])
                .fetch_optional(pool).await)
                .map_err(StoreError::backend)?;
        Ok(row.map(record_of))
    }
}

#[rocket::async_trait]
impl UserIndex for SqlStore {
    /// The user's live sessions: one read of the `user_id` index.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database fails.
    async fn user_sessions(&self, user: &str) -> Result<Vec<UserSession>> {
        let now = self.now().await?;
        let rows: Vec<(Vec<u8>, String, i64, i64)> = on_pool!(&self.pool, pool => sqlx::query_as(
            "SELECT key_hash, data, expires, version FROM session \
             WHERE user_id = $1 AND expires > $2",
        )
        .bind(user)
        .bind(now)
        .fetch_all(pool).await)
        .map_err(StoreError::backend)?;
        let sessions = rows
            .into_iter()
            .filter_map(|(digest, data, expires, version)| {
                Some(UserSession {
                    handle: SessionKey::hex(&<[u8; 32]>::try_from(digest).ok()?),
                    record: record_of((data, expires, version)),
                })
            })
            .collect();
        Ok(sessions)
    }

    async fn end_user_session(&self, user: &str, handle: &str) -> Result<bool> {
        let Some(digest) = SessionKey::digest_of_hex(handle) else {
            return Ok(false);
        };
        let end = Write::End {
            digest,
            user: user.to_owned(),
        };
        Ok(self.write(end).await? == 1)
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    async fn store(url: &str) -> SqlStore {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().expect("a SQLite URL");
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options.create_if_missing(true))
            .await
            .expect("connect");
        SqlStore::sqlite(pool)
    }

    fn reads_inline(store: &SqlStore) -> bool {
        matches!(
            &*store.lanes,
            StoreLanes::Sqlite {
                inline: Some(_),
                ..
            }
        )
    }

    /// A store on a fresh SQLite file in `dir`, migrated, with a busy timeout of `busy`.
    async fn file_store(dir: &tempfile::TempDir, busy: Duration) -> (SqlStore, String) {
        let path = dir.path().join("group.sqlite3");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(busy);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .expect("connect");
        let store = SqlStore::sqlite(pool);
        store.migrate().await.expect("migrate");
        (store, path.display().to_string())
    }

    /// A connection of its own holding the file's write lock until it is dropped.
    fn hold_write_lock(path: &str) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(path).expect("open");
        conn.execute_batch("BEGIN IMMEDIATE; DELETE FROM session WHERE 0;")
            .expect("lock");
        conn
    }

    fn data(text: &str) -> Data {
        let mut data = Data::new();
        data.insert("v".into(), text.into());
        data
    }

    /// `count` creates at once, the `poisoned`-th (if any) with data a trigger refuses; each
    /// create's answer, in order.
    async fn creates_at_once(
        store: &SqlStore,
        count: usize,
        poisoned: Option<usize>,
    ) -> Vec<Result<Stored>> {
        let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let tasks: Vec<_> = (0..count)
            .map(|i| {
                let store = store.clone();
                let text = if Some(i) == poisoned {
                    "poison"
                } else {
                    "fine"
                };
                rocket::tokio::spawn(async move { store.create(&data(text), expires).await })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.expect("no panic"));
        }
        answers
    }

    #[rocket::async_test]
    async fn saves_that_wait_for_the_writer_share_one_commit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, path) = file_store(&dir, Duration::from_secs(5)).await;
        // The writer's first save waits for the lock; the others queue behind it meanwhile.
        let lock = hold_write_lock(&path);
        let answers = rocket::tokio::spawn({
            let store = store.clone();
            async move { creates_at_once(&store, 32, None).await }
        });
        rocket::tokio::time::sleep(Duration::from_millis(300)).await;
        drop(lock);
        let answers = answers.await.expect("no panic");
        let reader = rusqlite::Connection::open(&path).expect("open");
        for answer in answers {
            // Committed when answered: another connection sees it.
            let Stored { id, .. } = answer.expect("saved");
            let digest = SessionKey::parse(&id).expect("a key").digest();
            let found: i64 = reader
                .query_row(
                    "SELECT COUNT(*) FROM session WHERE key_hash = ?1",
                    (&digest[..],),
                    |row| row.get(0),
                )
                .expect("read");
            assert_eq!(found, 1);
        }
        let commits = store.group_commits().expect("a file");
        assert_eq!(commits.writes, 32);
        assert!(commits.commits < 32, "{commits:?}");
        assert!(commits.largest > 1, "{commits:?}");
        assert_eq!(commits.by_size.iter().sum::<u64>(), commits.commits);
    }

    #[rocket::async_test]
    async fn a_save_that_fails_fails_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, path) = file_store(&dir, Duration::from_secs(5)).await;
        rusqlite::Connection::open(&path)
            .expect("open")
            .execute_batch(
                "CREATE TRIGGER poison BEFORE INSERT ON session WHEN NEW.data LIKE '%poison%' \
                 BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
            )
            .expect("trigger");
        let lock = hold_write_lock(&path);
        let answers = rocket::tokio::spawn({
            let store = store.clone();
            async move { creates_at_once(&store, 16, Some(7)).await }
        });
        rocket::tokio::time::sleep(Duration::from_millis(300)).await;
        drop(lock);
        let answers = answers.await.expect("no panic");
        for (i, answer) in answers.iter().enumerate() {
            if i == 7 {
                let e = answer.as_ref().expect_err("the poisoned save fails");
                assert!(e.to_string().contains("poisoned"), "{e}");
            } else {
                let stored = answer.as_ref().expect("its neighbours are saved");
                assert!(store.load(&stored.id).await.expect("load").is_some());
            }
        }
        assert_eq!(Census::count(&store).await.expect("count").live, 15);
    }

    #[rocket::async_test]
    async fn a_lock_held_past_the_busy_timeout_fails_the_saves_and_then_lets_them_through() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, path) = file_store(&dir, Duration::from_millis(100)).await;
        let lock = hold_write_lock(&path);
        let answers = creates_at_once(&store, 4, None).await;
        assert!(answers.iter().all(Result::is_err), "{answers:?}");
        drop(lock);
        let answers = creates_at_once(&store, 4, None).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(Census::count(&store).await.expect("count").live, 4);
    }

    #[rocket::async_test]
    async fn the_writer_keeps_the_wal_checkpointed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, path) = file_store(&dir, Duration::from_secs(5)).await;
        let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let commits: u64 = 1_500;
        for _ in 0..commits {
            store.create(&data("x"), expires).await.expect("create");
        }
        // SQLite's checkpoint at 1,000 pages starts the WAL over; without it the WAL would
        // hold a frame (a page and its header) per commit at the least.
        let wal = std::fs::metadata(format!("{path}-wal"))
            .expect("a WAL")
            .len();
        assert!(
            wal < commits * 4096,
            "WAL of {wal} bytes after {commits} commits"
        );
        assert_eq!(store.group_commits().map(|c| c.writes), Some(commits));
    }

    #[rocket::async_test]
    async fn saves_to_a_database_in_memory_go_through_sqlx() {
        let store = store("sqlite::memory:").await;
        store.migrate().await.expect("migrate");
        let Stored { id, .. } = store
            .create(
                &data("x"),
                OffsetDateTime::now_utc() + time::Duration::hours(1),
            )
            .await
            .expect("create");
        assert!(store.load(&id).await.expect("load").is_some());
        assert_eq!(store.group_commits(), None);
    }

    #[rocket::async_test]
    async fn loads_from_a_sqlite_file_on_the_requests_thread() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("s.sqlite3").display());
        assert!(reads_inline(&store(&url).await));
        assert!(!reads_inline(&store("sqlite::memory:").await));
    }
}
