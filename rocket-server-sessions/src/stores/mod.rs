//! The stores: one module per store, each behind the Cargo feature of its name; the memory
//! store is always there.
//!
//! A store's speed machinery lives inside its module (the SQL store's own connections and
//! inline SQLite reader under `sql/`); the near cache (`near.rs`) serves the stores whose
//! servers report changes, Redis and PostgreSQL.

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
pub use near::{NearCacheConfig, MAX_LAG};
#[cfg(feature = "redis")]
pub use redis::{watcher_name, Entry, RedisConfig, RedisStore, CACHE_TTL};
#[cfg(feature = "postgres")]
pub use sql::CHANNEL;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{SqlStore, CLEAR_BATCH, CLEAR_PAUSE};
