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
pub use cached::{CachedStore, RETRY_AFTER};
#[cfg(feature = "cookie")]
pub use cookie::{BadSecretKey, CookieStore, MAX_COOKIE_BYTES};
pub use memory::MemoryStore;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub use near::{Cache, Kept, NearCacheConfig, NearCached, Watched};
#[cfg(feature = "redis")]
pub use redis::{Entry, RedisConfig, RedisStore, CACHE_TTL};
#[cfg(feature = "sqlite")]
pub use sql::GroupCommits;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::SqlStore;
#[cfg(feature = "postgres")]
pub use sql::CHANNEL;
