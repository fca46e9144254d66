//! Server-side sessions for Rocket, written as if it were its own crate.
//!
//! Three layers, after Django's `contrib.sessions` and tower-sessions:
//! - a [`SessionStore`] keeps records ([`stores`] has the implementations);
//! - the [`Session`] request guard hands a handler the session of its request, loaded from the
//!   store at most once and only if the handler asks for it;
//! - the [`Sessions`] fairing reads [`SessionConfig`] from the `session` table of Rocket's
//!   configuration at ignite, builds the store with the application's [`StoreFactory`], and
//!   after each response decides, by Django's middleware rules, whether to save, delete, set
//!   or remove the cookie, and adds `Vary: Cookie`.
//!
//! To add a store: implement [`SessionStore`] (the trait documents the rules), return it from
//! the application's [`StoreFactory`] for its [`Backend`], and stamp the generic store suite
//! (`tests/common/store_suite.rs`) onto it.

mod config;
mod fairing;
mod guard;
mod handle;
mod key;
mod reaper;
mod record;
mod store;
pub mod stores;

pub use config::{redact_password, Backend, ConfigError, SessionConfig};
pub use fairing::{SessionManager, Sessions, StoreFactory};
pub use guard::SessionError;
pub use handle::Session;
pub use key::{SessionKey, KEY_LEN};
pub use record::{decode, encode, Data, Expiry, Record, EXPIRY_KEY};
pub use store::{Result, SessionStore, StoreError};
