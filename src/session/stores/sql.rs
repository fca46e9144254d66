//! Sessions in SQLite (Django's `backends.db`).
//!
//! Table `session` (migrations/sqlite): `key_hash` (the SHA-256 of the key, primary key),
//! `data` (the JSON object), `expires` (unix seconds, indexed), `version`. Every operation is
//! one statement: a load is one `SELECT`, a save one conditional `UPDATE` (a compare-and-swap
//! on `version`, so concurrent saves merge instead of losing each other's keys).

use sqlx::SqlitePool;
use time::OffsetDateTime;

use crate::session::key::SessionKey;
use crate::session::record::{self, Data, Record};
use crate::session::store::{Result, SessionStore, StoreError};

/// How many fresh keys `create` draws before it gives up.
const CREATE_ATTEMPTS: u32 = 10;

/// Rows `clear_expired` deletes per statement: small enough that no batch holds SQLite's write
/// lock for long, so a server sharing the file keeps answering.
pub const CLEAR_BATCH: u32 = 5_000;

/// A store in a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// A store on `pool`, whose database has the `session` table (see `migrations/sqlite`).
    pub fn new(pool: SqlitePool) -> Self {
        SqliteStore { pool }
    }

    /// Deletes expired sessions `batch` rows at a time, calling `progress` with the running
    /// total after each batch; returns the total.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database fails.
    pub async fn clear_expired_in_batches(
        &self,
        batch: u32,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<u64> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut total = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM session WHERE key_hash IN \
                 (SELECT key_hash FROM session WHERE expires <= ?1 LIMIT ?2)",
            )
            .bind(now)
            .bind(batch)
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?
            .rows_affected();
            total += deleted;
            progress(total);
            if deleted < u64::from(batch) {
                return Ok(total);
            }
            // Let requests waiting for the write lock in.
            rocket::tokio::task::yield_now().await;
        }
    }
}

fn timestamp(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[rocket::async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, id: &str) -> Result<Option<Record>> {
        let Some(key) = SessionKey::parse(id) else {
            log::warn!("ignored a malformed session cookie ({} bytes)", id.len());
            return Ok(None);
        };
        let row: Option<(String, i64, i64)> = sqlx::query_as(
            "SELECT data, expires, version FROM session WHERE key_hash = ?1 AND expires > ?2",
        )
        .bind(&key.digest()[..])
        .bind(OffsetDateTime::now_utc().unix_timestamp())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        Ok(row.map(|(data, expires, version)| Record {
            data: record::decode(&data),
            expires: timestamp(expires),
            version,
        }))
    }

    async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<(String, i64)> {
        let encoded = record::encode(data);
        for _ in 0..CREATE_ATTEMPTS {
            let key = SessionKey::generate();
            let inserted = sqlx::query(
                "INSERT INTO session (key_hash, data, expires, version) VALUES (?1, ?2, ?3, 1) \
                 ON CONFLICT (key_hash) DO NOTHING",
            )
            .bind(&key.digest()[..])
            .bind(&encoded)
            .bind(expires.unix_timestamp())
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?
            .rows_affected();
            if inserted == 1 {
                return Ok((key.as_str().to_owned(), 1));
            }
        }
        Err(StoreError::NoFreeKey(CREATE_ATTEMPTS))
    }

    async fn update(&self, id: &str, record: &Record) -> Result<Option<(String, i64)>> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(None);
        };
        let updated = sqlx::query(
            "UPDATE session SET data = ?1, expires = ?2, version = version + 1 \
             WHERE key_hash = ?3 AND version = ?4",
        )
        .bind(record::encode(&record.data))
        .bind(record.expires.unix_timestamp())
        .bind(&key.digest()[..])
        .bind(record.version)
        .execute(&self.pool)
        .await
        .map_err(StoreError::backend)?
        .rows_affected();
        Ok((updated == 1).then(|| (id.to_owned(), record.version + 1)))
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(());
        };
        sqlx::query("DELETE FROM session WHERE key_hash = ?1")
            .bind(&key.digest()[..])
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }

    async fn clear_expired(&self) -> Result<u64> {
        self.clear_expired_in_batches(CLEAR_BATCH, |_| {}).await
    }
}
