//! Server-side sessions for [Rocket](https://rocket.rs) 0.5, with Django's session rules.
//!
//! A handler asks for a [`Session`] and reads and writes typed values; the browser holds only a
//! random key. The session is loaded at most once per request, only if a handler asks for it,
//! and saved after the response only if it changed. Concurrent requests of one visitor merge
//! their changes instead of losing them; a session that was logged out is never brought back
//! by a request that was still running; the cookie gets `HttpOnly`, `SameSite=Lax` and
//! `Vary: Cookie` by default; stores keep a SHA-256 digest of each key, never the key.
//!
//! # Layers
//! Each layer uses only the ones below it:
//! - the [`Sessions`] fairing reads [`SessionConfig`] from the `session` table of Rocket's
//!   configuration at ignite, builds the store with the application's [`StoreFactory`], and
//!   after each response ends the request's session by Django's middleware rules (save, merge,
//!   delete, set or remove the cookie);
//! - the [`Session`] request guard hands a handler the session of its request;
//! - a [`SessionStore`](store::SessionStore) keeps records; [`stores`] has one per Cargo feature: `sqlite` and
//!   `postgres` ([`stores::SqliteStore`], [`stores::PostgresStore`] on a pool the application hands it), `redis`
//!   ([`stores::RedisStore`], and [`stores::CachedStore`]: Redis in front of another store),
//!   `cookie` ([`stores::CookieStore`], sealed with Rocket's `secret_key`), and
//!   [`stores::MemoryStore`], always there; [`stores::NearCached`] is a store in front of a
//!   store whose server reports every change, keeping recently loaded sessions in memory.
//!
//! # Quick start
//! ```
//! use rocket::{get, routes};
//! use rocket::local::blocking::Client;
//! use rocket_server_sessions::{stores::MemoryStore, Session, Sessions};
//!
//! #[get("/")]
//! fn count(session: Session<'_>) -> String {
//!     let visits: u64 = session.get("visits").unwrap_or(0) + 1;
//!     session.insert("visits", visits).ok();
//!     format!("{visits} visits")
//! }
//!
//! let rocket = rocket::build()
//!     .attach(Sessions::with_store(MemoryStore::new()))
//!     .mount("/", routes![count]);
//! let client = Client::tracked(rocket).expect("a valid rocket");
//! client.get("/").dispatch();
//! assert_eq!(client.get("/").dispatch().into_string().as_deref(), Some("2 visits"));
//! ```
//!
//! Every setting (`cookie_age`, `expire_at_browser_close`, `sliding_expiry`, ...) comes from
//! `[default.session]` in `Rocket.toml` or `ROCKET_SESSION`; see [`SessionConfig`].
//!
//! # Choosing the store from the configuration
//! `Sessions::fairing(Backends::new().database::<Db>())`: [`Backends`], the crate's own
//! [`StoreFactory`], builds the store `session.backend` names (`db` on the application's
//! `rocket_db_pools` database, `redis`, `cached_db`, `cookie`, `memory`), its table migrated at
//! ignite. Store settings live in tables of their own (`[default.session.redis]`, read by
//! `stores::RedisConfig`). A factory of the application's own builds a store of its own.
//!
//! # Adding a store
//! Implement [`SessionStore`](store::SessionStore) (its documentation lists the rules every store keeps), give it a
//! name in the application's factory, and run the crate's generic store suite on it (this
//! crate's `tests/stores/`). The crate's README walks through [`stores::MemoryStore`] as the
//! example.
#![warn(missing_docs)]

mod commit;
mod config;
pub mod csrf;
mod factories;
mod fairing;
mod guard;
mod handle;
mod key;
mod reaper;
mod record;
pub mod store;
pub mod stores;

pub use config::{ConfigError, SessionConfig};
pub use csrf::{rotate_csrf_token, Csrf, CsrfToken};
pub use factories::Backends;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use factories::SessionPool;
pub use fairing::{BuildError, Sessions, StoreFactory};
pub use guard::{SessionError, SessionManager};
pub use handle::Session;
pub use record::{Expiry, USER_KEY};
