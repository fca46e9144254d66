//! Which session store each `session.backend` name means for Rango. The server's store is the
//! crate's own factory's ([`factory`]: `Backends` on the site's database); the command line's
//! maintenance store is made here. Every SQL store is made by [`DbPool::session_store`] (its
//! `SessionPool`), the one constructor of the SQL store: the channel its triggers notify and
//! the one its near cache listens on cannot disagree.

use std::sync::Arc;

use rocket::figment::Figment;
use rocket_server_sessions::store::SessionStore;
use rocket_server_sessions::stores::{CachedStore, CookieStore, RedisConfig, RedisStore};
use rocket_server_sessions::{Backends, BuildError, SessionConfig};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::db::{Db, DbPool};

/// The names `session.backend` may give to a command, after Django's session engines (and
/// `redis`, the crate's name for `cache`); the server also knows `memory`.
pub const BACKENDS: &[&str] = &["db", "cache", "redis", "cached_db", "cookie"];

/// The server's store factory: the crate's [`Backends`], on the site's database.
pub fn factory() -> Backends {
    Backends::new().database::<Db>()
}

/// Whether the store named `backend` keeps its sessions in the site's database.
pub fn needs_database(backend: &str) -> bool {
    matches!(backend, "db" | "cached_db")
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
    cached: Option<Arc<CachedStore<Arc<dyn SessionStore>>>>,
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
        let ttl = CachedStore::<Arc<dyn SessionStore>>::COPY_TTL;
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
/// [`BuildError`] naming the unknown backend, the invalid setting, or the store that cannot be
/// reached (but for Redis on cached_db).
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
        "db" => alone(db.ok_or_else(no_database)?.session_store().into_store()),
        "cache" | "redis" => alone(Arc::new(RedisStore::connect(&redis).await?)),
        "cached_db" => {
            let db = db.ok_or_else(no_database)?;
            match RedisStore::connect(&redis).await {
                Ok(cache) => {
                    let cached = Arc::new(CachedStore::new(cache, db.session_store().into_store()));
                    Maintenance {
                        store: cached.clone(),
                        cached: Some(cached),
                        without_redis: None,
                    }
                }
                Err(e) => Maintenance {
                    store: db.session_store().into_store(),
                    cached: None,
                    without_redis: Some(e.to_string()),
                },
            }
        }
        "cookie" => alone(Arc::new(CookieStore::from_figment(
            figment,
            &config.cookie_name,
        )?)),
        "memory" => {
            return Err(BuildError::Missing(
                "session.backend = \"memory\": the sessions live in the server's own process; \
                 a command has none to work on"
                    .into(),
            ))
        }
        other => return Err(unknown(other)),
    })
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
