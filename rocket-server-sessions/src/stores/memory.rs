//! Sessions in this process's memory: for tests and for trying things out. Lost at restart and
//! not shared between instances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

use crate::key::SessionKey;
use crate::record::{user_of, whole_seconds, Data, Record};
use crate::store::{
    Census, ClearInBatches, Result, SessionCounts, SessionStore, StoreError, Stored, UserIndex,
    UserSession, TRIM_BATCH,
};

/// How many fresh keys `create` draws before it gives up.
const CREATE_ATTEMPTS: u32 = 10;

/// A store in a `HashMap`, keyed by the keys' digests as the SQL store is.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<[u8; 32], Record>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn records(&self) -> MutexGuard<'_, HashMap<[u8; 32], Record>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many records it holds, expired or not.
    pub fn len(&self) -> usize {
        self.records().len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records().is_empty()
    }
}

#[rocket::async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, id: &str) -> Result<Option<Record>> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc();
        Ok(self
            .records()
            .get(&key.digest())
            .filter(|record| record.expires > now)
            .cloned())
    }

    async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<Stored> {
        let mut records = self.records();
        for _ in 0..CREATE_ATTEMPTS {
            let key = SessionKey::generate();
            if let std::collections::hash_map::Entry::Vacant(slot) = records.entry(key.digest()) {
                slot.insert(Record {
                    data: Arc::new(data.clone()),
                    expires: whole_seconds(expires),
                    version: 1,
                });
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
        let mut records = self.records();
        match records.get_mut(&key.digest()) {
            Some(stored) if stored.version == record.version => {
                *stored = Record {
                    version: record.version + 1,
                    expires: whole_seconds(record.expires),
                    data: record.data.clone(),
                };
                Ok(Some(Stored {
                    id: id.to_owned(),
                    version: stored.version,
                }))
            }
            _ => Ok(None),
        }
    }

    async fn delete(&self, id: &str) -> Result<()> {
        if let Some(key) = SessionKey::parse(id) {
            self.records().remove(&key.digest());
        }
        Ok(())
    }

    async fn clear_expired(&self) -> Result<u64> {
        let now = OffsetDateTime::now_utc();
        let mut records = self.records();
        let before = records.len();
        records.retain(|_, record| record.expires > now);
        Ok((before - records.len()) as u64)
    }

    fn expires_by_itself(&self) -> bool {
        false
    }

    fn batches(&self) -> Option<&dyn ClearInBatches> {
        None // one pass over memory holds the lock briefly enough
    }

    fn census(&self) -> Option<&dyn Census> {
        Some(self)
    }

    fn user_index(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }

    async fn describe(&self) -> Result<String> {
        Ok("in this process's memory (lost at restart, not shared)".into())
    }
}

#[rocket::async_trait]
impl Census for MemoryStore {
    async fn count(&self) -> Result<SessionCounts> {
        let now = OffsetDateTime::now_utc();
        let records = self.records();
        let live = records
            .values()
            .filter(|record| record.expires > now)
            .count() as u64;
        Ok(SessionCounts {
            live,
            expired: records.len() as u64 - live,
        })
    }

    async fn inspect(&self, id: &str) -> Result<Option<Record>> {
        let Some(key) = SessionKey::parse(id) else {
            return Ok(None);
        };
        Ok(self.records().get(&key.digest()).cloned())
    }
}

// The memory store holds few sessions: it finds a user's by looking at every one.
#[rocket::async_trait]
impl UserIndex for MemoryStore {
    async fn user_sessions(&self, user: &str, limit: usize) -> Result<Vec<UserSession>> {
        let now = OffsetDateTime::now_utc();
        let mut sessions: Vec<UserSession> = self
            .records()
            .iter()
            .filter(|(_, record)| record.expires > now && user_of(&record.data) == Some(user))
            .map(|(digest, record)| UserSession {
                handle: SessionKey::hex(digest),
                record: record.clone(),
            })
            .collect();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.record.expires));
        sessions.truncate(limit);
        Ok(sessions)
    }

    async fn trim_user_sessions(&self, user: &str, keep: usize) -> Result<Vec<String>> {
        let mut records = self.records();
        let mut theirs: Vec<([u8; 32], OffsetDateTime)> = records
            .iter()
            .filter(|(_, record)| user_of(&record.data) == Some(user))
            .map(|(digest, record)| (*digest, record.expires))
            .collect();
        theirs.sort_by_key(|t| std::cmp::Reverse(t.1));
        let ended = theirs
            .into_iter()
            .skip(keep)
            .take(TRIM_BATCH)
            .filter_map(|(digest, _)| records.remove(&digest).map(|_| SessionKey::hex(&digest)))
            .collect();
        Ok(ended)
    }

    async fn end_user_session(&self, user: &str, handle: &str) -> Result<bool> {
        let Some(digest) = SessionKey::digest_of_hex(handle) else {
            return Ok(false);
        };
        let mut records = self.records();
        let theirs = records
            .get(&digest)
            .is_some_and(|record| user_of(&record.data) == Some(user));
        Ok(theirs && records.remove(&digest).is_some())
    }
}
