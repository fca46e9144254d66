//! The stores: one module per store, each behind the Cargo feature of its name; the memory
//! store is always there.
//!
//! A store's speed machinery lives inside its module, after the plain store: the SQL store's
//! own connections and inline SQLite reader under `sql/`, Redis's read batching in
//! `redis/batch.rs`. The near cache (`near/`) is a store that wraps a store whose server reports
//! every change to a session ([`Watched`]: Redis, Redis in front of SQL, PostgreSQL); each
//! store's watcher lives in its module (`redis/watch.rs`, `sql/listen.rs`).

#[cfg(feature = "redis")]
mod cached;
#[cfg(feature = "cookie")]
mod cookie;
mod memory;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod near;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

#[cfg(feature = "redis")]
pub use cached::CachedStore;
#[cfg(feature = "cookie")]
pub use cookie::{BadSecretKey, CookieStore};
pub use memory::MemoryStore;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub use near::{NearCacheConfig, NearCached, Watched};
#[cfg(feature = "redis")]
pub use redis::{RedisConfig, RedisStore};
#[cfg(feature = "sqlite")]
pub use sql::GroupCommits;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::SqlStore;
