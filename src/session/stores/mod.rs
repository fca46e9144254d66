//! The stores: one module per backend.

mod memory;
mod sql;

pub use memory::MemoryStore;
pub use sql::SqliteStore;
