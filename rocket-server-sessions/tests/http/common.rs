//! The application under test: one per test, with its own temporary SQLite database (or the
//! sealed cookie store, or the memory store, as `session.backend` says), the routes of
//! `harness.rs` mounted at `/t`.

use std::sync::Arc;
use std::time::Duration;

use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use rocket::local::asynchronous::Client;
use rocket::{Build, Rocket};
use rocket_server_sessions::store::SessionStore;
use rocket_server_sessions::stores::{CookieStore, MemoryStore, SqliteStore};
use rocket_server_sessions::{BuildError, SessionConfig, Sessions};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::SqlitePool;
use tempfile::TempDir;

pub use crate::harness::*;

/// An application on its own temporary database, mounted at `/t`.
pub struct TestApp {
    pub client: Client,
    pool: SqlitePool,
    _dir: TempDir,
}

/// Rocket's defaults (no Rocket.toml: these tests stand alone) with logging off and `settings`
/// (dotted keys, e.g. "session.cookie_age") over them.
pub fn figment(settings: &[(&str, Value)]) -> Figment {
    let mut figment = Figment::from(rocket::Config::debug_default())
        .merge(Serialized::global("log_level", "off"));
    for (key, value) in settings {
        figment = figment.merge(Serialized::global(key, value));
    }
    figment
}

/// The stores these tests run on, by `session.backend`: "db" (SQLite, the default), "cookie"
/// (sealed with `secret_key`, or a fresh key) and "memory".
fn factory(
    pool: SqlitePool,
) -> impl Fn(&Rocket<Build>, &SessionConfig) -> Result<Arc<dyn SessionStore>, BuildError> {
    move |rocket, config| -> Result<Arc<dyn SessionStore>, BuildError> {
        Ok(match config.backend.as_str() {
            "db" => Arc::new(SqliteStore::new(pool.clone())),
            "memory" => Arc::new(MemoryStore::new()),
            "cookie" => Arc::new(
                match rocket.figment().extract_inner::<String>("secret_key") {
                    Ok(key) => CookieStore::new(&key, &config.cookie_name)
                        .map_err(|e| BuildError::Missing(e.to_string()))?,
                    Err(_) => CookieStore::with_key(cookie::Key::generate(), &config.cookie_name),
                },
            ),
            other => {
                return Err(BuildError::UnknownBackend {
                    name: other.to_owned(),
                    known: &["db", "memory", "cookie"],
                })
            }
        })
    }
}

impl TestApp {
    /// A client that keeps cookies between requests, as a browser does.
    pub async fn tracked(settings: &[(&str, Value)]) -> TestApp {
        TestApp::new(settings, true).await
    }

    /// A client that sends only the cookies a test gives it.
    pub async fn untracked(settings: &[(&str, Value)]) -> TestApp {
        TestApp::new(settings, false).await
    }

    async fn new(settings: &[(&str, Value)], tracked: bool) -> TestApp {
        let dir = TempDir::new().expect("temp dir");
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("sessions.sqlite3"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .expect("the temporary database opens");
        SqliteStore::new(pool.clone())
            .migrate()
            .await
            .expect("the session table is made");
        let rocket = rocket::custom(figment(settings))
            .attach(Sessions::fairing(factory(pool.clone())))
            .mount("/t", test_routes());
        let client = if tracked {
            Client::tracked(rocket).await
        } else {
            Client::untracked(rocket).await
        }
        .expect("valid rocket");
        TestApp {
            client,
            pool,
            _dir: dir,
        }
    }
}

impl App for TestApp {
    fn client(&self) -> &Client {
        &self.client
    }

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}
