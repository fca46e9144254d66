//! The seam between the session layer and where sessions are kept: what a store implements
//! ([`SessionStore`] and its capabilities), what it keeps ([`Record`]s of [`Data`], named by a
//! [`SessionKey`]'s digest), and what an application's own [`StoreFactory`](crate::StoreFactory)
//! returns. An application that uses the crate's stores needs none of it.

use time::OffsetDateTime;

pub use crate::config::store_settings;
pub use crate::key::SessionKey;
pub use crate::record::{decode, encode, Data, Record, EXPIRY_KEY};

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
/// a [`SessionKey`]; a store that keeps the data in the cookie itself would
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
/// Beside those five, a store says what more it can do for an operator's command line and a
/// site's "your sessions" page: each capability is a trait of its own ([`ClearInBatches`],
/// [`Census`], [`UserIndex`]) that the store hands out, or not. The accessors have no default,
/// so a store, and above all a wrapper, says for each one what it offers: a wrapper cannot
/// drop one by forgetting it.
///
/// This store wraps another and refuses sessions over a size. Its writes check the size; what
/// it cannot change (clearing, counting, the user index, which only read or delete) it hands
/// on from the store it wraps. The crate's README walks through a store from scratch, the
/// memory store:
///
/// ```
/// use rocket_server_sessions::store::{
///     encode, Census, ClearInBatches, Data, Record, Result, SessionStore, StoreError, Stored,
///     UserIndex,
/// };
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
///     async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<Stored> {
///         self.check(data)?;
///         self.inner.create(data, expires).await
///     }
///     async fn update(&self, id: &str, record: &Record) -> Result<Option<Stored>> {
///         self.check(&record.data)?;
///         self.inner.update(id, record).await
///     }
///     async fn delete(&self, id: &str) -> Result<()> {
///         self.inner.delete(id).await
///     }
///     async fn clear_expired(&self) -> Result<u64> {
///         self.inner.clear_expired().await
///     }
///     fn expires_by_itself(&self) -> bool {
///         self.inner.expires_by_itself()
///     }
///     fn batches(&self) -> Option<&dyn ClearInBatches> {
///         self.inner.batches()
///     }
///     fn census(&self) -> Option<&dyn Census> {
///         self.inner.census()
///     }
///     fn user_index(&self) -> Option<&dyn UserIndex> {
///         self.inner.user_index()
///     }
///     async fn describe(&self) -> Result<String> {
///         let inner = self.inner.describe().await?;
///         Ok(format!("{inner}, sessions of at most {} bytes", self.max_bytes))
///     }
/// }
///
/// # use rocket_server_sessions::stores::MemoryStore;
/// # let store = Limited { inner: MemoryStore::new(), max_bytes: 16 };
/// # let big: Data = serde_json::from_str(r#"{"a": "a long enough value"}"#).unwrap();
/// # let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
/// # let refused = rocket::execute(store.create(&big, expires));
/// # assert!(matches!(refused, Err(StoreError::TooLarge(_))));
/// # assert!(store.census().is_some() && store.user_index().is_some());
/// ```
#[rocket::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The live session named `id`, or `None`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn load(&self, id: &str) -> Result<Option<Record>>;

    /// Stores a new session (at version 1) and says under which id.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer or finds no free key.
    async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<Stored>;

    /// Replaces the session `id` by `record` if its stored version is still `record.version`;
    /// the stored version becomes the returned one. `Ok(None)` when it is not (changed or
    /// deleted meanwhile): the caller reloads and merges.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn update(&self, id: &str, record: &Record) -> Result<Option<Stored>>;

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
    fn expires_by_itself(&self) -> bool;

    /// Clearing in batches with progress, if the store can (else an operator's command line
    /// calls [`SessionStore::clear_expired`] once).
    fn batches(&self) -> Option<&dyn ClearInBatches>;

    /// Counting and inspecting sessions, if the store can.
    fn census(&self) -> Option<&dyn Census>;

    /// Listing and ending a user's sessions, if the store keeps an index of them.
    fn user_index(&self) -> Option<&dyn UserIndex>;

    /// What the launch log says of the store: which store it is and where it keeps sessions.
    /// The `Sessions` fairing asks at ignite, so this is also where a store checks that it can
    /// serve at all (a SQL store, that its table is there and migrated).
    ///
    /// # Errors
    /// A [`StoreError`] saying what to do; it stops the launch.
    async fn describe(&self) -> Result<String>;
}

/// A shared store is the store: what a factory chose at ignite (`Arc<dyn SessionStore>`) can be
/// wrapped like any store, e.g. by [`CachedStore`](crate::stores::CachedStore), with every
/// capability it has.
#[rocket::async_trait]
impl<S: SessionStore + ?Sized> SessionStore for std::sync::Arc<S> {
    async fn load(&self, id: &str) -> Result<Option<Record>> {
        (**self).load(id).await
    }
    async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<Stored> {
        (**self).create(data, expires).await
    }
    async fn update(&self, id: &str, record: &Record) -> Result<Option<Stored>> {
        (**self).update(id, record).await
    }
    async fn delete(&self, id: &str) -> Result<()> {
        (**self).delete(id).await
    }
    async fn clear_expired(&self) -> Result<u64> {
        (**self).clear_expired().await
    }
    fn expires_by_itself(&self) -> bool {
        (**self).expires_by_itself()
    }
    fn batches(&self) -> Option<&dyn ClearInBatches> {
        (**self).batches()
    }
    fn census(&self) -> Option<&dyn Census> {
        (**self).census()
    }
    fn user_index(&self) -> Option<&dyn UserIndex> {
        (**self).user_index()
    }
    async fn describe(&self) -> Result<String> {
        (**self).describe().await
    }
}

/// Where [`SessionStore::create`] or [`SessionStore::update`] left a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The id the session's cookie holds from now on (a sealing store's changes with its data).
    pub id: String,
    /// The version the session is stored at.
    pub version: i64,
}

/// A store that clears expired sessions a batch at a time, so that clearing a large table holds
/// no lock for long and an operator sees it progress.
#[rocket::async_trait]
pub trait ClearInBatches: Send + Sync {
    /// Deletes expired sessions at most `batch` at a time, calling `progress` with the running
    /// total after each batch; returns the total.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn clear_expired_in_batches(
        &self,
        batch: u32,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64>;
}

/// A store that can count its sessions and show an operator one of them, expired or not.
#[rocket::async_trait]
pub trait Census: Send + Sync {
    /// How many sessions are live and how many expired but not cleared yet.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn count(&self) -> Result<SessionCounts>;

    /// The session `id` names for an operator: unlike [`SessionStore::load`], an expired
    /// session not cleared yet is returned too (with an expiry date in the past).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn inspect(&self, id: &str) -> Result<Option<Record>>;
}

/// A store that keeps an index from each user (the value under [`USER_KEY`](crate::USER_KEY) in
/// a session's data) to their sessions, exact through saves, cycled keys, deletions, expiry and
/// clearing.
#[rocket::async_trait]
pub trait UserIndex: Send + Sync {
    /// The live sessions signed in as `user`, at most `limit` of them: those that expire
    /// last, first (the sessions saved most lately), so a listing costs the same however many
    /// sessions the user has.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn user_sessions(&self, user: &str, limit: usize) -> Result<Vec<UserSession>>;

    /// Deletes the session that [`UserIndex::user_sessions`] listed under `handle`, if it is
    /// still signed in as `user`; returns whether one was deleted.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn end_user_session(&self, user: &str, handle: &str) -> Result<bool>;

    /// Ends the sessions signed in as `user` but the `keep` that expire last (those that would
    /// end first go first, expired ones included), at most [`TRIM_BATCH`] of them in one call;
    /// returns the handles of those it ended. What a cap on sessions per user runs before a
    /// login adds one.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store cannot answer.
    async fn trim_user_sessions(&self, user: &str, keep: usize) -> Result<Vec<String>>;
}

/// The most sessions [`UserIndex::trim_user_sessions`] ends in one call: a user far over a cap
/// (sessions made before it was set) is brought under it over a few logins, each bounded.
pub const TRIM_BATCH: usize = 1000;

/// A session of a user, as [`UserIndex::user_sessions`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSession {
    /// What the store names the session by (its key's digest, in hex): never its key.
    /// It grants nothing (a load takes the key; [`UserIndex::end_user_session`], which takes
    /// the handle, takes its user too), so a page may show it to its user to name the session.
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
