//! Redis in front of a database (Django's `backends.cached_db`): reads hit Redis first and fall
//! back to the database, writes go to both, and the database is the truth. When Redis is down,
//! sessions keep working from the database and a warning is logged. A copy in Redis lives
//! [`CACHE_TTL`](super::redis::CACHE_TTL) seconds at most, so one that a failed write left stale
//! (a logout while Redis was unreachable, say) is not served for longer.

use time::OffsetDateTime;

use super::redis::{Entry, RedisStore};
use crate::session::record::{Data, Record};
use crate::session::store::{Result, SessionStore};

/// A Redis cache in front of the store `S`.
#[derive(Debug)]
pub struct CachedStore<S> {
    cache: RedisStore,
    db: S,
}

impl<S: SessionStore> CachedStore<S> {
    /// `cache` in front of `db`.
    pub fn new(cache: RedisStore, db: S) -> Self {
        CachedStore { cache, db }
    }

    /// The store behind the cache.
    pub fn db(&self) -> &S {
        &self.db
    }

    /// Writes `record` to the cache unless it holds something newer; a failure only warns.
    async fn fill(&self, id: &str, record: &Record) {
        if let Err(e) = self.cache.put_if_newer(id, record).await {
            log::warn!("session cache unavailable, serving from the database: {e}");
        }
    }
}

#[rocket::async_trait]
impl<S: SessionStore> SessionStore for CachedStore<S> {
    async fn load(&self, id: &str) -> Result<Option<Record>> {
        match self.cache.entry(id).await {
            Ok(Entry::Live(record)) => return Ok(Some(record)),
            Ok(Entry::Deleted) => return Ok(None),
            Ok(Entry::Missing) => {}
            Err(e) => log::warn!("session cache unavailable, serving from the database: {e}"),
        }
        let record = self.db.load(id).await?;
        if let Some(record) = &record {
            self.fill(id, record).await;
        }
        Ok(record)
    }

    async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<(String, i64)> {
        let (id, version) = self.db.create(data, expires).await?;
        let record = Record {
            data: data.clone(),
            expires,
            version,
        };
        self.fill(&id, &record).await;
        Ok((id, version))
    }

    async fn update(&self, id: &str, record: &Record) -> Result<Option<(String, i64)>> {
        match self.db.update(id, record).await? {
            Some((new_id, version)) => {
                let stored = Record {
                    version,
                    ..record.clone()
                };
                self.fill(&new_id, &stored).await;
                Ok(Some((new_id, version)))
            }
            None => {
                // The cache was stale: drop it so the caller's reload reads the database (but
                // keep a tombstone, which must outlive the reads in flight).
                if let Err(e) = self.cache.invalidate(id).await {
                    log::warn!("session cache unavailable, serving from the database: {e}");
                }
                Ok(None)
            }
        }
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.db.delete(id).await?;
        // A tombstone, so that a read in flight cannot put the session back in the cache.
        if let Err(e) = self.cache.bury(id).await {
            log::warn!("session cache unavailable; a deleted session may linger in it: {e}");
        }
        Ok(())
    }

    async fn clear_expired(&self) -> Result<u64> {
        // Redis drops its copies by their TTL; the database needs clearing.
        self.db.clear_expired().await
    }
}
