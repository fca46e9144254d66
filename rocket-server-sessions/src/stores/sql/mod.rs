//! What the two SQL stores share (Django's `backends.db`): `SqliteStore` and `PostgresStore`
//! keep sessions in the same table and run the same statements on it, each on its own
//! database's connections.
//!
//! Table `session` (each store's `schema.sql`, made by its `migrate`): `key_hash` (the key's
//! digest, [`SessionKey::digest`], primary key), `data` (the JSON object), `expires` (unix seconds), `version`,
//! `user_id` (the user it is signed in as, from `USER_KEY`; indexed where set, for
//! `user_sessions`). Every operation is one statement: a load is one `SELECT`, a save one
//! conditional `UPDATE` (a compare-and-swap on `version`, so concurrent saves merge instead of
//! losing each other's keys).
//!
//! Here, written once for both: the saves (`write.rs`); the session store on top of a database's
//! loads and saves ([`SqlBackend`]: each store says how it loads, saves and tells the time, and
//! is a [`SessionStore`] with every capability of a SQL store); and, in [`OnPool`], what runs
//! on the application's pool rather than on a hot path: clearing, counting, inspecting, a
//! user's sessions, and the check that the table is there (sqlx's generic executor; `$N`
//! parameters mean the same on both databases).
//!
//! Expired sessions are cleared by a sweep of the table in key order, a short window at a time
//! (see [`OnPool::clear_expired_in_batches`]). On SQLite `expires` has no index: the keys are
//! random digests, so an index on `expires` orders rows differently from the table, and
//! keeping it up to date cost a random page write per deleted row (and two more per save).
//! Deleting a million expired sessions took 31 s with it, 1.4 s without.

pub(crate) mod write;

use std::time::Duration;

use sqlx::database::HasArguments;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};
use time::OffsetDateTime;

use crate::key::SessionKey;
use crate::record::{self, Data, Record};
use crate::store::{
    Census, ClearInBatches, Result, SessionCounts, SessionStore, StoreError, Stored, UserIndex,
    UserSession, TRIM_BATCH,
};
use write::Write;

/// How many fresh keys `create` draws before it gives up.
const CREATE_ATTEMPTS: u32 = 10;

/// Rows `clear_expired` deletes per statement: small enough that no batch holds SQLite's write
/// lock for long, so a server sharing the file keeps answering.
const CLEAR_BATCH: u32 = 5_000;

/// How many rows, live or expired, one window of the sweep spans at most, per row of `batch`:
/// where few sessions are expired, a window moves through live ones in bigger strides, yet its
/// statement still reads a bounded number of rows.
const WINDOW_PER_BATCH: i64 = 4;

/// How long `clear_expired_in_batches` sleeps between two batches. SQLite's busy handler
/// polls a waiting writer every few milliseconds (at most 25 ms apart in its first 100 ms), so
/// a writer of the server, in this process or another one sharing the file, gets the lock in
/// this gap instead of waiting behind the next batch.
const CLEAR_PAUSE: Duration = Duration::from_millis(10);

/// A session row: data, expires, version.
pub(crate) type Row = (String, i64, i64);

/// The record of a `(data, expires, version)` row.
pub(crate) fn record_of((data, expires, version): Row) -> Record {
    Record {
        data: record::decode(&data).into(),
        expires: OffsetDateTime::from_unix_timestamp(expires).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        version,
    }
}

/// A SQL database as a session store sees it: its loads, saves and clock, and its pool. Each SQL
/// store implements it; what makes it a [`SessionStore`] is written once, below.
#[rocket::async_trait]
pub(crate) trait SqlBackend: Send + Sync + 'static {
    /// The live session of a key digest.
    async fn read(&self, digest: &[u8; 32]) -> Result<Option<Record>>;

    /// Runs a save; how many rows it changed.
    async fn write(&self, write: Write) -> Result<u64>;

    /// The time (unix seconds) that decides which sessions are expired.
    async fn now(&self) -> Result<i64>;

    /// The application's pool, for what runs off the hot path.
    fn on_pool(&self) -> &dyn OnPool;

    /// Which database, for the launch log, once the table is checked.
    async fn describe_database(&self) -> Result<String>;
}

#[rocket::async_trait]
impl<B: SqlBackend> SessionStore for B {
    async fn load(&self, id: &str) -> Result<Option<Record>> {
        let Some(key) = SessionKey::parse(id) else {
            // Client input: at debug level, so that a flood of them cannot fill a log.
            log::debug!("ignored a malformed session cookie ({} bytes)", id.len());
            return Ok(None);
        };
        self.read(&key.digest()).await
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
        let digest = key.digest();
        self.write(Write::Delete { digest }).await.map(drop)
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

    /// Which database, after checking that the session table is there with every column (the
    /// store's `migrate` made it).
    async fn describe(&self) -> Result<String> {
        self.on_pool().check().await?;
        self.describe_database().await
    }
}

#[rocket::async_trait]
impl<B: SqlBackend> ClearInBatches for B {
    /// Deletes expired sessions (by the store's clock) at most `batch` rows at a time, calling
    /// `progress` with the running total after each batch; returns the total: a sweep of the
    /// table in key order, each batch one short statement, 10 ms apart so that the server's
    /// saves get their turn (see `OnPool::clear_expired_in_batches`).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database fails.
    async fn clear_expired_in_batches(
        &self,
        batch: u32,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64> {
        let now = self.now().await?;
        self.on_pool()
            .clear_expired_in_batches(now, batch, progress)
            .await
    }
}

#[rocket::async_trait]
impl<B: SqlBackend> Census for B {
    /// One read of the table (a fraction of a second for a million sessions).
    async fn count(&self) -> Result<SessionCounts> {
        let now = self.now().await?;
        self.on_pool().count(now).await
    }

    async fn inspect(&self, id: &str) -> Result<Option<Record>> {
        self.on_pool().inspect(id).await
    }
}

#[rocket::async_trait]
impl<B: SqlBackend> UserIndex for B {
    /// One read of the `user_id` index.
    async fn user_sessions(&self, user: &str, limit: usize) -> Result<Vec<UserSession>> {
        let now = self.now().await?;
        self.on_pool().user_sessions(user, now, limit).await
    }

    /// One statement on the pool, not the store's writer: it runs once a login, and on a
    /// SQLite file the near cache hears of it as of any other connection's commit.
    async fn trim_user_sessions(&self, user: &str, keep: usize) -> Result<Vec<String>> {
        self.on_pool().trim_user_sessions(user, keep).await
    }

    async fn end_user_session(&self, user: &str, handle: &str) -> Result<bool> {
        let Some(digest) = SessionKey::digest_of_hex(handle) else {
            return Ok(false);
        };
        let user = user.to_owned();
        Ok(self.write(Write::End { digest, user }).await? == 1)
    }
}

/// How many rows a statement changed: each database's result has its own method for it in
/// sqlx 0.7, and no trait names it; each SQL store implements this for its database's.
pub(crate) trait RowsAffected {
    /// The rows changed.
    fn rows(&self) -> u64;
}

/// The session table on the application's pool: what runs off the hot path, written once for
/// both databases.
#[rocket::async_trait]
pub(crate) trait OnPool: Send + Sync {
    /// Checks that the session table is there with every column, or says what to run.
    async fn check(&self) -> Result<()>;

    /// Deletes the sessions expired at `now` (unix seconds) at most `batch` rows at a time,
    /// calling `progress` with the running total after each batch; returns the total.
    ///
    /// It sweeps the table in key order, one window at a time: a window ends at its `batch`-th
    /// expired session, or after `4 × batch` rows, whichever comes first. Finding the window
    /// is a read (WAL readers never wait for writers nor hold them up); deleting its expired
    /// sessions is one statement over contiguous rows, so one short hold of SQLite's write
    /// lock. It pauses 10 ms between windows so that other writers get their turn. A
    /// session saved during the sweep is judged by its expiry at the time of the delete.
    async fn clear_expired_in_batches(
        &self,
        now: i64,
        batch: u32,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64>;

    /// How many sessions are live at `now` and how many expired but not yet cleared.
    async fn count(&self, now: i64) -> Result<SessionCounts>;

    /// The session `id` names, expired or not: what an operator inspects. Unlike a load, an
    /// expired session that is not yet cleared is returned (with its expiry date in the past),
    /// so the command line can say it expired rather than that it never existed.
    async fn inspect(&self, id: &str) -> Result<Option<Record>>;

    /// The user's sessions live at `now`, at most `limit`, those that expire last first.
    async fn user_sessions(&self, user: &str, now: i64, limit: usize) -> Result<Vec<UserSession>>;

    /// Deletes the user's sessions but the `keep` that expire last (at most [`TRIM_BATCH`]);
    /// their handles.
    async fn trim_user_sessions(&self, user: &str, keep: usize) -> Result<Vec<String>>;
}

#[rocket::async_trait]
impl<DB> OnPool for Pool<DB>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> <DB as HasArguments<'q>>::Arguments: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> (Option<Vec<u8>>, Option<Vec<u8>>, i64): FromRow<'r, DB::Row>,
    for<'r> (i64, i64): FromRow<'r, DB::Row>,
    for<'r> (String, i64, i64): FromRow<'r, DB::Row>,
    for<'r> (Vec<u8>, String, i64, i64): FromRow<'r, DB::Row>,
    for<'r> (Vec<u8>,): FromRow<'r, DB::Row>,
{
    async fn check(&self) -> Result<()> {
        let checked =
            sqlx::query("SELECT key_hash, data, expires, version, user_id FROM session LIMIT 0")
                .execute(self)
                .await;
        checked.map(drop).map_err(|e| {
            StoreError::Backend(
                format!(
                    "the session table is missing or not migrated ({e}): call the store's \
                     migrate() before serving (at ignite), or run your migrate command"
                )
                .into(),
            )
        })
    }

    async fn clear_expired_in_batches(
        &self,
        now: i64,
        batch: u32,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64> {
        let batch = i64::from(batch.max(1));
        let window = batch.saturating_mul(WINDOW_PER_BATCH);
        // Every digest sorts after the empty blob.
        let mut after: Vec<u8> = Vec::new();
        let mut total = 0;
        loop {
            // The window's last key by count of expired rows (NULL if the window holds fewer),
            // its last key, and how many rows it holds.
            let (nth_expired, last, rows): (Option<Vec<u8>>, Option<Vec<u8>>, i64) =
                sqlx::query_as(
                    "WITH span AS (SELECT key_hash, expires FROM session \
                                     WHERE key_hash > $1 ORDER BY key_hash LIMIT $2) \
                     SELECT (SELECT key_hash FROM span WHERE expires <= $3 \
                             ORDER BY key_hash LIMIT 1 OFFSET $4), \
                            (SELECT key_hash FROM span ORDER BY key_hash DESC LIMIT 1), \
                            (SELECT COUNT(*) FROM span)",
                )
                .bind(after.as_slice())
                .bind(window)
                .bind(now)
                .bind(batch - 1)
                .fetch_one(self)
                .await
                .map_err(StoreError::backend)?;
            // A window short of both bounds ran into the end of the table.
            let last_window = nth_expired.is_none() && rows < window;
            let Some(end) = nth_expired.or(last) else {
                // Nothing after `after`: the sweep is done.
                progress(total);
                return Ok(total);
            };
            total += sqlx::query(
                "DELETE FROM session WHERE key_hash > $1 AND key_hash <= $2 AND expires <= $3",
            )
            .bind(after.as_slice())
            .bind(end.as_slice())
            .bind(now)
            .execute(self)
            .await
            .map_err(StoreError::backend)?
            .rows();
            progress(total);
            if last_window {
                return Ok(total);
            }
            after = end;
            // Let requests waiting for the write lock in.
            rocket::tokio::time::sleep(CLEAR_PAUSE).await;
        }
    }

    async fn count(&self, now: i64) -> Result<SessionCounts> {
        let (live, expired): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE expires > $1), COUNT(*) FILTER (WHERE expires <= $1) \
             FROM session",
        )
        .bind(now)
        .fetch_one(self)
        .await
        .map_err(StoreError::backend)?;
        Ok(SessionCounts {
            live: u64::try_from(live).unwrap_or_default(),
            expired: u64::try_from(expired).unwrap_or_default(),
        })
    }

    async fn inspect(&self, id: &str) -> Result<Option<Record>> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(None);
        };
        let row: Option<Row> =
            sqlx::query_as("SELECT data, expires, version FROM session WHERE key_hash = $1")
                .bind(&key.digest()[..])
                .fetch_optional(self)
                .await
                .map_err(StoreError::backend)?;
        Ok(row.map(record_of))
    }

    async fn user_sessions(&self, user: &str, now: i64, limit: usize) -> Result<Vec<UserSession>> {
        let rows: Vec<(Vec<u8>, String, i64, i64)> = sqlx::query_as(
            "SELECT key_hash, data, expires, version FROM session \
             WHERE user_id = $1 AND expires > $2 ORDER BY expires DESC, key_hash LIMIT $3",
        )
        .bind(user)
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self)
        .await
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

    async fn trim_user_sessions(&self, user: &str, keep: usize) -> Result<Vec<String>> {
        // `$1` twice: both databases bind it once (SQLite numbers parameters by name).
        let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
            "DELETE FROM session WHERE user_id = $1 AND key_hash IN (\
                 SELECT key_hash FROM session WHERE user_id = $1 \
                 ORDER BY expires DESC, key_hash LIMIT $2 OFFSET $3) \
             RETURNING key_hash",
        )
        .bind(user)
        .bind(i64::try_from(TRIM_BATCH).unwrap_or(i64::MAX))
        .bind(i64::try_from(keep).unwrap_or(i64::MAX))
        .fetch_all(self)
        .await
        .map_err(StoreError::backend)?;
        Ok(rows
            .into_iter()
            .filter_map(|(digest,)| Some(SessionKey::hex(&<[u8; 32]>::try_from(digest).ok()?)))
            .collect())
    }
}
