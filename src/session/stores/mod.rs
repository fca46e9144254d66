//! The stores: one module per backend.

mod cached;
mod cookie;
mod inline;
mod lanes;
mod listen;
mod memory;
mod near;
mod redis;
mod sql;

pub use cached::{CachedStore, RETRY_AFTER};
pub use cookie::{BadSecretKey, CookieStore, MAX_COOKIE_BYTES};
pub use memory::MemoryStore;
pub use redis::{Entry, RedisOptions, RedisStore};
pub use sql::{on_pool, SessionCounts, SqlOptions, SqlPool, SqlStore, CLEAR_BATCH, CLEAR_PAUSE};
