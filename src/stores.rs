//! Which session store each `session.backend` means for Rango, built on the site's database.

use std::num::NonZeroUsize;
use std::sync::Arc;

use rocket::{Build, Rocket};
use rocket_db_pools::Database;

use crate::db::Db;
use crate::session::stores::{CachedStore, CookieStore, RedisOptions, RedisStore, SqlStore};
use crate::session::{Backend, SessionConfig, SessionStore, StoreFactory};

/// Builds Rango's session store at ignite.
pub struct RangoStores;

impl RangoStores {
    /// The SQL store on the site's database, with a near cache if `near_cache` says so.
    fn sql(rocket: &Rocket<Build>, near_cache: Option<NonZeroUsize>) -> Result<SqlStore, String> {
        let db = Db::fetch(rocket).ok_or("the database `rango` is not configured")?;
        Ok(SqlStore::with_near_cache(db.pool().clone(), near_cache))
    }

    async fn redis(config: &SessionConfig) -> Result<RedisStore, String> {
        RedisStore::connect(&RedisOptions {
            url: config.cache_url.clone(),
            key_prefix: config.cache_key_prefix.clone(),
            timeout: config.cache_timeout(),
            near_cache: config.near_cache_capacity(),
        })
        .await
        .map_err(|e| format!("session.cache_url: {e}"))
    }

    fn cookie(rocket: &Rocket<Build>, config: &SessionConfig) -> Result<CookieStore, String> {
        match rocket.figment().extract_inner::<String>("secret_key") {
            Ok(key) => CookieStore::new(&key, &config.cookie_name).map_err(|e| e.to_string()),
            // As Rocket does for private cookies: a fresh key in debug, a refusal elsewhere.
            Err(_) if rocket.figment().profile() == "debug" => {
                log::warn!(
                    "no secret_key: session cookies are sealed with a random key and will not \
                     open after a restart"
                );
                Ok(CookieStore::with_key(
                    cookie::Key::generate(),
                    &config.cookie_name,
                ))
            }
            Err(_) => Err("secret_key must be set (e.g. `openssl rand -base64 32`)".into()),
        }
    }
}

#[rocket::async_trait]
impl StoreFactory for RangoStores {
    async fn build(
        &self,
        rocket: &Rocket<Build>,
        config: &SessionConfig,
    ) -> Result<Arc<dyn SessionStore>, String> {
        Ok(match config.backend {
            Backend::Db => Arc::new(Self::sql(rocket, config.near_cache_capacity())?),
            Backend::Cache => Arc::new(Self::redis(config).await?),
            Backend::CachedDb => Arc::new(CachedStore::new(
                Self::redis(config).await?,
                // The near cache in front of Redis is the one that counts.
                Self::sql(rocket, None)?,
            )),
            Backend::Cookie => Arc::new(Self::cookie(rocket, config)?),
        })
    }
}
