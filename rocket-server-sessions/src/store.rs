//! The seam between the session layer and where sessions are kept.

use time::OffsetDateTime;

use crate::record::{Data, Record};

/// What went wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or refused the operation.
    #[error("session store unavailable: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// `create` kept drawing keys that were taken; the store is likely broken.
    #[error("session store gave no free key after {0} attempts")]
    NoFreeKey(u32),
    /// A save kept losing to concurrent saves of the same session.
    #[error("session changed by concurrent requests {0} times during one save")]
    Contention(u32),
    /// A session is too big for the store (the cookie store's 4096 bytes, for one).
    #[error("session too large for this store: {0}")]
    TooLarge(String),
}

impl StoreError {
    /// Wraps any backend error.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// A store's result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where sessions live. Object safe, so the configured store is chosen at launch.
///
/// A session is named by its *id*: the value its cookie holds. For a server-side store that is
/// a [`SessionKey`](super::SessionKey); a store that keeps the data in the cookie itself would
/// return the sealed data as the id. The store, not the session layer, decides.
///
/// The rules every store keeps (the generic store suite checks them):
/// - `load` of an unknown, malformed or expired id is `Ok(None)` and creates nothing;
/// - `create` never reuses a live id; it retries on a collision;
/// - `update` applies only over the version it is given, so a save never overwrites a
///   concurrent one unseen, and never brings back a deleted session;
/// - `delete` of an unknown id is `Ok(())`;
/// - `clear_expired` removes expired sessions and says how many.
///
/// Beside those five, a store may offer what an operator's command line uses: clearing in
/// batches with progress, counting, inspecting an expired session. Each has a default answer,
/// so a store implements only what it can do better.
///
/// A store is the five methods. This one wraps another store and refuses sessions over a size
/// (the wrapped store keeps every rule above, so the wrapper does too); the crate's README walks
/// through a store from scratch, the memory store:
///
/// ```
/// use rocket_server_sessions::{encode, Data, Record, Result, SessionStore, StoreError};
/// use time::OffsetDateTime;
///
/// struct Limited<S> {
///     inner: S,
///     max_bytes: usize,
/// }
///
/// impl<S> Limited<S> {
///     fn check(&self, data: &Data) -> Result<()> {
///         let size = encode(data).len();
///         if size > self.max_bytes {
///             return Err(StoreError::TooLarge(format!("{size} bytes")));
///         }
///         Ok(())
///     }
/// }
///
/// #[rocket::async_trait]
/// impl<S: SessionStore> SessionStore for Limited<S> {
///     async fn load(&self, id: &str) -> Result<Option<Record>> {
///         self.inner.load(id).await
///     }
///     async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<(String, i64)> {
///         self.check(data)?;
///         self.inner.create(data, expires).await
///     }
///     async fn update(&self, id: &str, record: &Record) -> Result<Option<(String, i64)>> {
///         self.check(&record.data)?;
///         self.inner.update(id, record).await
///     }
///     async fn delete(&self, id: &str) -> Result<()> {
///         self.inner.delete(id).await
///     }
///     async fn clear_expired(&self) -> Result<u64> {
///         self.inner.clear_expired().await
///     }
/// }
///
/// # let store = Limited { inner: rocket_server_sessions::stores::MemoryStore::new(), max_bytes: 16 };
/// # let big: Data = serde_json::from_str(r#"{"a": "a long enough value"}"#).unwrap();
/// # let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
/// # let refused = rocket::execute(store.create(&big, expires));
/// # assert!(matches!(refused, Err(StoreError::TooLarge(_))));
/// ```
#[rocket::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The live session named `id`, or `None`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn load(&self, id: &str) -> Result<Option<Record>>;

    /// Stores a new session and returns its id and version.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer or finds no free key.
    async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<(String, i64)>;

    /// Replaces the session `id` by `record` if its stored version is still `record.version`;
    /// the stored version becomes the returned one. `Ok(None)` when it is not (changed or
    /// deleted meanwhile): the caller reloads and merges.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn update(&self, id: &str, record: &Record) -> Result<Option<(String, i64)>>;

    /// Deletes the session `id`, if there is one.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn delete(&self, id: &str) -> Result<()>;

    /// Deletes expired sessions; returns how many.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn clear_expired(&self) -> Result<u64>;

    /// Whether the store drops expired sessions by itself (a Redis TTL, a cookie's expiry), so
    /// that `clear_expired` has nothing to do.
    fn expires_by_itself(&self) -> bool {
        false
    }

    /// Deletes expired sessions at most `batch` at a time, calling `progress` with the running
    /// total after each batch; returns the total. By default one [`SessionStore::clear_expired`]
    /// and one call of `progress`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn clear_expired_in_batches(
        &self,
        batch: u32,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64> {
        let _ = batch;
        let cleared = self.clear_expired().await?;
        progress(cleared);
        Ok(cleared)
    }

    /// How many sessions are live and how many expired but not cleared yet, or `None` (the
    /// default) when the store cannot count them.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn count(&self) -> Result<Option<SessionCounts>> {
        Ok(None)
    }

    /// The session `id` names for an operator: unlike [`SessionStore::load`], a store that
    /// keeps expired sessions until they are cleared returns them too (with an expiry date in
    /// the past). By default, what `load` returns.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn inspect(&self, id: &str) -> Result<Option<Record>> {
        self.load(id).await
    }

    /// The live sessions signed in as `user` (whose data hold it under
    /// [`USER_KEY`](crate::USER_KEY)), in no order, or `None` (the default) when the store
    /// cannot list them. A store that can keeps an index from each user to their sessions,
    /// exact through saves, cycled keys, deletions, expiry and clearing.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn user_sessions(&self, user: &str) -> Result<Option<Vec<UserSession>>> {
        let _ = user;
        Ok(None)
    }

    /// Deletes the session that [`SessionStore::user_sessions`] listed under `handle`, if it
    /// is still signed in as `user`; returns whether one was deleted. By default (a store that
    /// cannot list) nothing is deleted.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn end_user_session(&self, user: &str, handle: &str) -> Result<bool> {
        let _ = (user, handle);
        Ok(false)
    }
}

/// A session of a user, as [`SessionStore::user_sessions`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSession {
    /// What the store names the session by (the SHA-256 of its key, in hex): never its key,
    /// and not to be shown to anyone; [`SessionStore::end_user_session`] takes it.
    pub handle: String,
    /// The session.
    pub record: Record,
}

/// How many sessions a store holds, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionCounts {
    /// Sessions that can still be loaded.
    pub live: u64,
    /// Sessions past their expiry date that no one has cleared yet.
    pub expired: u64,
}
