//! Which session store each `session.backend` name means for Rango: the one place that decides,
//! and builds each store the same way for every use. The server builds its store here (through
//! the `Sessions` fairing), the command line its maintenance store, and `migrate` makes the
//! session table through [`DbPool::session_store`], the one constructor of the SQL store: the
//! channel its triggers notify and the one its near cache listens on cannot disagree.

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
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::db::{Db, DbPool};

/// The names `session.backend` may give, after Django's session engines.
pub const BACKENDS: &[&str] = &["db", "cache", "cached_db", "cookie"];

/// Whether the store named `backend` keeps its sessions in the site's database.
pub fn needs_database(backend: &str) -> bool {
    matches!(backend, "db" | "cached_db")
}

/// The store `config.backend` names, for serving, on the site's database `db` (`None` when it
/// is not open), with the store settings in `figment`.
///
/// # Errors
/// [`BuildError`] naming the unknown backend, the invalid setting, or the store that cannot
/// be reached.
pub async fn build(
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
            Some(db @ DbPool::Sqlite(_)) => Arc::new(db.session_store()),
            Some(db @ DbPool::Postgres(_)) => near(db.session_store(), near_cache),
            None => return Err(no_database()),
        },
        "cache" => near(RedisStore::connect(&redis).await?, near_cache),
        "cached_db" => {
            let db = db.ok_or_else(no_database)?;
            near(
                CachedStore::new(RedisStore::connect(&redis).await?, db.session_store()),
                near_cache,
            )
        }
        "cookie" => Arc::new(cookie(figment, config)?),
        other => return Err(unknown(other)),
    })
}

/// The store of a maintenance command (clearing, counting, inspecting, ending a user's
/// sessions): the server's store without a near cache (a command reads each session once).
/// cached_db's is its database with the copies in Redis buried as it deletes sessions, so that
/// no server serves an ended session from Redis; when Redis cannot be reached it is the database
/// alone, which clears and counts all the same (`clearsessions` from cron works while Redis is
/// down), and [`Maintenance::left_behind`] says what that leaves.
pub struct Maintenance {
    /// The store.
    pub store: Arc<dyn SessionStore>,
    /// cached_db's store, asked what it could not bury.
    cached: Option<Arc<CachedStore<SqlStore>>>,
    /// Why Redis was left out, when it was.
    without_redis: Option<String>,
}

impl Maintenance {
    /// For a command that ended live sessions: what it could not end everywhere (copies in
    /// Redis that other servers may serve), and until when, or `None` when nothing is left.
    pub fn left_behind(&self) -> Option<String> {
        let what = match (&self.without_redis, &self.cached) {
            (Some(why), _) => format!("Redis was not reached ({why})"),
            (None, Some(cached)) if cached.stale_copies() > 0 => format!(
                "{} session copies in Redis could not be buried (Redis stopped answering)",
                cached.stale_copies()
            ),
            _ => return None,
        };
        let ttl = CachedStore::<SqlStore>::COPY_TTL;
        let until = (OffsetDateTime::now_utc() + ttl)
            .replace_nanosecond(0)
            .ok()
            .and_then(|at| at.format(&Rfc3339).ok())
            .unwrap_or_default();
        Some(format!(
            "{what}: other servers may serve the ended sessions from their copies in Redis \
             until {until} at the latest ({} s)",
            ttl.as_secs()
        ))
    }
}

/// [`Maintenance`] for `config.backend`, on `db`, with the settings in `figment`.
///
/// # Errors
/// As [`build`], but for Redis on cached_db.
pub async fn maintenance(
    db: Option<&DbPool>,
    figment: &Figment,
    config: &SessionConfig,
) -> Result<Maintenance, BuildError> {
    let redis = RedisConfig::from_figment(figment)?;
    let alone = |store: Arc<dyn SessionStore>| Maintenance {
        store,
        cached: None,
        without_redis: None,
    };
    Ok(match config.backend.as_str() {
        "db" => alone(Arc::new(db.ok_or_else(no_database)?.session_store())),
        "cache" => alone(Arc::new(RedisStore::connect(&redis).await?)),
        "cached_db" => {
            let db = db.ok_or_else(no_database)?;
            match RedisStore::connect(&redis).await {
                Ok(cache) => {
                    let cached = Arc::new(CachedStore::new(cache, db.session_store()));
                    Maintenance {
                        store: cached.clone(),
                        cached: Some(cached),
                        without_redis: None,
                    }
                }
                Err(e) => Maintenance {
                    store: Arc::new(db.session_store()),
                    cached: None,
                    without_redis: Some(e.to_string()),
                },
            }
        }
        "cookie" => alone(Arc::new(cookie(figment, config)?)),
        other => return Err(unknown(other)),
    })
}

/// `store` behind a near cache of `capacity` sessions, or as it is when the cache is off.
fn near<S: Watched>(store: S, capacity: Option<NonZeroUsize>) -> Arc<dyn SessionStore> {
    match capacity {
        Some(capacity) => Arc::new(NearCached::new(store, capacity)),
        None => Arc::new(store),
    }
}

fn unknown(backend: &str) -> BuildError {
    BuildError::UnknownBackend {
        name: backend.to_owned(),
        known: BACKENDS,
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
        build(db, rocket.figment(), config).await
    }
}
