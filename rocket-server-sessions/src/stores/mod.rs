//! The stores: one module per backend, each behind the Cargo feature of its name, with no
//! feature switch inside (this file is where they are); the memory store is always there.
//!
//! A store's main file is the plain store; its speed machinery lives beside it, each piece
//! with its measured gain: SQLite's reader on the request's thread and group-commit writer
//! (`sqlite/`), PostgreSQL's own connections (`postgres/lanes.rs`), Redis's read batching
//! (`redis/batch.rs`). `sql/` holds what the two SQL stores share: the table's statements and
//! what runs on the application's pool. The near cache (`near/`) is a store that wraps a store
//! whose every change to a session can be heard ([`Watched`]: Redis, Redis in front of a
//! database, PostgreSQL, a SQLite file); each store's watcher lives in its module
//! (`redis/watch.rs`, `postgres/listen.rs`, `sqlite/watch.rs`).

#[cfg(feature = "redis")]
mod cached;
#[cfg(feature = "cookie")]
mod cookie;
mod memory;
#[cfg(any(feature = "redis", feature = "postgres", feature = "sqlite"))]
mod near;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "redis")]
pub use cached::{CacheTier, CachedStore};
#[cfg(feature = "cookie")]
pub use cookie::{BadSecretKey, CookieStore};
pub use memory::MemoryStore;
#[cfg(any(feature = "redis", feature = "postgres", feature = "sqlite"))]
pub use near::{NearCacheConfig, NearCached, Watched};
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use redis::{RedisConfig, RedisStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{GroupCommits, SqliteStore};

/// A SQL store, on whichever database its pool is: what a
/// [`SessionPool`](crate::SessionPool) answers.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SqlStore {
    /// [`SqliteStore`].
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteStore),
    /// [`PostgresStore`].
    #[cfg(feature = "postgres")]
    Postgres(PostgresStore),
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl SqlStore {
    /// Makes the session table if it is not there yet (the store's own `migrate`).
    ///
    /// # Errors
    /// [`StoreError::Backend`](crate::store::StoreError::Backend) when a statement fails.
    pub async fn migrate(&self) -> crate::store::Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            SqlStore::Sqlite(store) => store.migrate().await,
            #[cfg(feature = "postgres")]
            SqlStore::Postgres(store) => store.migrate().await,
        }
    }

    /// The store itself, as any store: for a command, or to wrap it. What only one database's
    /// store has (PostgreSQL's near cache and channel, SQLite's `group_commits`) is reached
    /// through the variants.
    pub fn into_store(self) -> std::sync::Arc<dyn crate::store::SessionStore> {
        match self {
            #[cfg(feature = "sqlite")]
            SqlStore::Sqlite(store) => std::sync::Arc::new(store),
            #[cfg(feature = "postgres")]
            SqlStore::Postgres(store) => std::sync::Arc::new(store),
        }
    }
}
