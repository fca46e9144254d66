//! Which session store each `session.backend` name means for Rango: the one place that decides.
//! The server builds its store here (through the `Sessions` fairing), and so does the command
//! line, so a store added here works in `serve`, `clearsessions` and `session show|stats` alike.

use std::num::NonZeroUsize;
use std::sync::Arc;

use rocket::figment::Figment;
use rocket::{Build, Rocket};
use rocket_db_pools::Database;
use rocket_server_sessions::stores::{
    CachedStore, CookieStore, NearCacheConfig, NearCached, RedisConfig, RedisStore, SqlStore,
    Watched,
};
use rocket_server_sessions::{BuildError, SessionConfig, SessionStore, StoreFactory};

use crate::db::{Db, DbPool};

/// The names `session.backend` may give, after Django's session engines.
pub const BACKENDS: &[&str] = &["db", "cache", "cached_db", "cookie"];

/// Whether the store named `backend` keeps its sessions in the site's database.
pub fn needs_database(backend: &str) -> bool {
    matches!(backend, "db" | "cached_db")
}

/// What a store is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Serving requests.
    Serve,
    /// A maintenance command (clearing, counting, inspecting): what a store keeps in the
    /// database is read there, without its cache, so that `clearsessions` from cron works
    /// while Redis is down.
    Maintain,
}

/// The store `config.backend` names, for `purpose`, on the site's database `db` (`None` when
/// it is not open), with the store settings in `figment`.
///
/// # Errors
/// [`BuildError`] naming the unknown backend, the invalid setting, or the store that cannot
/// be reached.
pub async fn build(
    purpose: Purpose,
    db: Option<&DbPool>,
    figment: &Figment,
    config: &SessionConfig,
) -> Result<Arc<dyn SessionStore>, BuildError> {
    // Every store's settings are checked, the unused ones' too: a mistake shows at launch, not
    // on the day the site switches stores.
    let near_cache = NearCacheConfig::from_figment(figment)?.capacity();
    let redis = RedisConfig::from_figment(figment)?;
    Ok(match config.backend.as_str() {
        "db" => match db {
            // SQLite loads cost no round trip: nothing for a near cache to save.
            Some(DbPool::Sqlite(pool)) => Arc::new(SqlStore::sqlite(pool.clone())),
            Some(DbPool::Postgres(pool)) => near(SqlStore::postgres(pool.clone()), near_cache),
            None => return Err(no_database()),
        },
        "cache" => near(RedisStore::connect(&redis).await?, near_cache),
        "cached_db" => {
            let db = db.ok_or_else(no_database)?;
            // The database is the truth: what maintenance reads and clears.
            if purpose == Purpose::Maintain {
                return Ok(Arc::new(db.session_store()));
            }
            near(
                CachedStore::new(RedisStore::connect(&redis).await?, db.session_store()),
                near_cache,
            )
        }
        "cookie" => Arc::new(cookie(figment, config)?),
        other => {
            return Err(BuildError::UnknownBackend {
                name: other.to_owned(),
                known: BACKENDS,
            })
        }
    })
}

/// `store` behind a near cache of `capacity` sessions, or as it is when the cache is off.
fn near<S: Watched>(store: S, capacity: Option<NonZeroUsize>) -> Arc<dyn SessionStore> {
    match capacity {
        Some(capacity) => Arc::new(NearCached::new(store, capacity)),
        None => Arc::new(store),
    }
}

fn no_database() -> BuildError {
    BuildError::Missing("the database `rango` is not configured".into())
}

fn cookie(figment: &Figment, config: &SessionConfig) -> Result<CookieStore, BuildError> {
    match figment.extract_inner::<String>("secret_key") {
        Ok(key) => CookieStore::new(&key, &config.cookie_name)
            .map_err(|e| BuildError::Missing(e.to_string())),
        // As Rocket does for private cookies: a fresh key in debug, a refusal elsewhere.
        Err(_) if figment.profile() == "debug" => {
            log::warn!(
                "no secret_key: session cookies are sealed with a random key and will not \
                 open after a restart"
            );
            Ok(CookieStore::with_key(
                cookie::Key::generate(),
                &config.cookie_name,
            ))
        }
        Err(_) => Err(BuildError::Missing(
            "secret_key must be set (e.g. `openssl rand -base64 32`)".into(),
        )),
    }
}

/// Rango's [`StoreFactory`]: [`build`] on the database of the `Db` fairing.
pub struct RangoStores;

#[rocket::async_trait]
impl StoreFactory for RangoStores {
    async fn build(
        &self,
        rocket: &Rocket<Build>,
        config: &SessionConfig,
    ) -> Result<Arc<dyn SessionStore>, BuildError> {
        let db = Db::fetch(rocket).map(Db::pool);
        build(Purpose::Serve, db, rocket.figment(), config).await
    }
}
