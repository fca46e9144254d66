//! The stores: one module per backend, each behind the Cargo feature of its name, with no
//! feature switch inside (this file is where they are); the memory store is always there.
//!
//! A store's main file is the plain store; its speed machinery lives beside it, each piece
//! with its measured gain: SQLite's reader on the request's thread and group-commit writer
//! (`sqlite/`), PostgreSQL's own connections (`postgres/lanes.rs`), Redis's read batching
//! (`redis/batch.rs`). `sql/` holds what the two SQL stores share: the table's statements and
//! what runs on the application's pool. The near cache (`near/`) is a store that wraps a store
//! whose server reports every change to a session ([`Watched`]: Redis, Redis in front of a
//! database, PostgreSQL); each store's watcher lives in its module (`redis/watch.rs`,
//! `postgres/listen.rs`).

#[cfg(feature = "redis")]
mod cached;
#[cfg(feature = "cookie")]
mod cookie;
mod memory;
#[cfg(any(feature = "redis", feature = "postgres"))]
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
pub use cached::{CacheTier, CachedStore, Entry};
#[cfg(feature = "cookie")]
pub use cookie::{BadSecretKey, CookieStore};
pub use memory::MemoryStore;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub use near::{NearCacheConfig, NearCached, Watched};
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use redis::{RedisConfig, RedisStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{GroupCommits, SqliteStore};
