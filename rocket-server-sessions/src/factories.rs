//! Step two in one line: [`Backends`], the crate's own [`StoreFactory`], builds the store that
//! `session.backend` names from what Rocket already has at ignite, so that switching stores is
//! a line of `Rocket.toml`. An application writes a factory only for a store of its own.

use std::sync::Arc;

use rocket::figment::Figment;
use rocket::{Build, Rocket};

use crate::config::SessionConfig;
use crate::fairing::{BuildError, StoreFactory};
use crate::store::SessionStore;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::stores::SqlStore;

/// A database pool the SQL session store runs on: sqlx's SQLite pool (feature `sqlite`) and
/// PostgreSQL pool (feature `postgres`), as `rocket_db_pools` hands them out; an application
/// whose pool type is its own implements it to name the store on it.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub trait SessionPool: Send + Sync + 'static {
    /// The SQL store on this pool ([`Backends`] makes its table or brings it up to date).
    fn sql_store(&self) -> SqlStore;
}

#[cfg(feature = "sqlite")]
impl SessionPool for sqlx::SqlitePool {
    fn sql_store(&self) -> SqlStore {
        SqlStore::Sqlite(crate::stores::SqliteStore::new(self.clone()))
    }
}

#[cfg(feature = "postgres")]
impl SessionPool for sqlx::PgPool {
    fn sql_store(&self) -> SqlStore {
        SqlStore::Postgres(crate::stores::PostgresStore::new(self.clone()))
    }
}

/// The SQL store as `db` serves it: behind the near cache, on PostgreSQL and on a SQLite file
/// (a database in memory has no other process to watch for, and its loads cost no I/O).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn served(store: SqlStore, settings: &Settings) -> Arc<dyn SessionStore> {
    match store {
        #[cfg(feature = "sqlite")]
        SqlStore::Sqlite(store) if store.on_file() => near(store, settings),
        #[cfg(feature = "sqlite")]
        SqlStore::Sqlite(store) => Arc::new(store),
        #[cfg(feature = "postgres")]
        SqlStore::Postgres(store) => near(store, settings),
    }
}

/// Where [`Backends`] finds the SQL pool: a `rocket_db_pools` database, by its type.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
struct Database {
    /// Its name in `[databases]`.
    name: &'static str,
    /// The type's name, for a message.
    type_name: &'static str,
    fetch: for<'a> fn(&'a Rocket<Build>) -> Option<&'a dyn SessionPool>,
}

/// The crate's [`StoreFactory`]: the store `session.backend` names, built from the settings.
///
/// | `session.backend` | the store | needs |
/// |---|---|---|
/// | `"db"` (the default) | SQL, on the database given to [`Backends::database`]; its table made or brought up to date at ignite; behind a near cache (but in memory) | features `sqlite` or `postgres` |
/// | `"redis"` (or Django's name, `"cache"`) | Redis as `[session.redis]` says, behind a near cache | feature `redis` |
/// | `"cached_db"` | Redis in front of the SQL database, behind a near cache | `redis` and a database |
/// | `"cookie"` | sealed in the cookie with Rocket's `secret_key` (a random key in debug) | feature `cookie` |
/// | `"memory"` | this process's memory | nothing |
///
/// The near cache follows `[session.near_cache]` (`enabled`, `size`). Every store's settings
/// are checked at ignite, the unused ones' too: a mistake shows at launch, not on the day the
/// site switches stores.
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use rocket_db_pools::Database;
/// use rocket_server_sessions::{Backends, Sessions};
///
/// #[derive(Database)]
/// #[database("sessions")]
/// struct Db(sqlx::SqlitePool);
///
/// let rocket = rocket::build()
///     .attach(Db::init())
///     .attach(Sessions::fairing(Backends::new().database::<Db>()));
/// # }
/// ```
#[derive(Default)]
pub struct Backends {
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    database: Option<Database>,
}

impl Backends {
    /// The names this build of the crate knows (by its features).
    pub const KNOWN: &'static [&'static str] = &[
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        "db",
        #[cfg(feature = "redis")]
        "redis",
        #[cfg(feature = "redis")]
        "cache",
        #[cfg(all(feature = "redis", any(feature = "sqlite", feature = "postgres")))]
        "cached_db",
        #[cfg(feature = "cookie")]
        "cookie",
        "memory",
    ];

    /// The factory, with no database yet.
    pub fn new() -> Self {
        Backends::default()
    }

    /// The SQL store of `db` and `cached_db` runs on the `rocket_db_pools` database `D` (its
    /// `#[derive(Database)]` type): attach `D::init()` before the `Sessions` fairing.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[must_use]
    pub fn database<D>(mut self) -> Self
    where
        D: rocket_db_pools::Database,
        D::Pool: SessionPool,
    {
        fn fetch<D>(rocket: &Rocket<Build>) -> Option<&dyn SessionPool>
        where
            D: rocket_db_pools::Database,
            D::Pool: SessionPool,
        {
            let pool: &D::Pool = D::fetch(rocket)?;
            Some(pool)
        }
        let type_name = std::any::type_name::<D>();
        self.database = Some(Database {
            name: D::NAME,
            type_name: type_name.rsplit("::").next().unwrap_or(type_name),
            fetch: fetch::<D>,
        });
        self
    }

    /// The SQL store on the database, migrated.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    async fn sql(&self, rocket: &Rocket<Build>) -> Result<SqlStore, BuildError> {
        let Some(database) = &self.database else {
            return Err(BuildError::Missing(
                "no database: give the factory one (`Backends::new().database::<Db>()`)".into(),
            ));
        };
        let Some(pool) = (database.fetch)(rocket) else {
            return Err(BuildError::Missing(format!(
                "the database {:?} is not available: its fairing failed (see above), or \
                 `{}::init()` is not attached before the Sessions fairing",
                database.name, database.type_name
            )));
        };
        let store = pool.sql_store();
        store.migrate().await?;
        Ok(store)
    }
}

/// `store` behind a near cache as `[session.near_cache]` says, or as it is when it is off.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
fn near<S: crate::stores::Watched>(store: S, settings: &Settings) -> Arc<dyn SessionStore> {
    match settings.near_cache {
        Some(capacity) => Arc::new(crate::stores::NearCached::new(store, capacity)),
        None => Arc::new(store),
    }
}

#[rocket::async_trait]
impl StoreFactory for Backends {
    async fn build(
        &self,
        rocket: &Rocket<Build>,
        config: &SessionConfig,
    ) -> Result<Arc<dyn SessionStore>, BuildError> {
        let figment = rocket.figment();
        let settings = Settings::read(figment)?;
        let _ = &settings; // a build with no store of settings of its own reads none
        Ok(match config.backend.as_str() {
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            "db" => served(self.sql(rocket).await?, &settings),
            #[cfg(feature = "redis")]
            "redis" | "cache" => near(redis(&settings).await?, &settings),
            #[cfg(all(feature = "redis", any(feature = "sqlite", feature = "postgres")))]
            "cached_db" => {
                let db = self.sql(rocket).await?.into_store();
                let cached = crate::stores::CachedStore::new(redis(&settings).await?, db);
                near(cached, &settings)
            }
            #[cfg(feature = "cookie")]
            "cookie" => Arc::new(crate::stores::CookieStore::from_figment(
                figment,
                &config.cookie_name,
            )?),
            "memory" => Arc::new(crate::stores::MemoryStore::new()),
            name => {
                return Err(BuildError::UnknownBackend {
                    name: name.to_owned(),
                    known: Backends::KNOWN,
                })
            }
        })
    }
}

/// The Redis store of `[session.redis]`.
#[cfg(feature = "redis")]
async fn redis(settings: &Settings) -> Result<crate::stores::RedisStore, BuildError> {
    Ok(crate::stores::RedisStore::connect(&settings.redis).await?)
}

/// The store tables of this build's stores, every one read at ignite, so that an invalid one
/// fails the launch whichever store serves.
struct Settings {
    /// `[session.near_cache]`: the near cache's capacity, or `None` when it is off.
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
    near_cache: Option<std::num::NonZeroUsize>,
    /// `[session.redis]`.
    #[cfg(feature = "redis")]
    redis: crate::stores::RedisConfig,
}

impl Settings {
    fn read(figment: &Figment) -> Result<Self, BuildError> {
        let _ = figment;
        Ok(Settings {
            #[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
            near_cache: crate::stores::NearCacheConfig::from_figment(figment)?.capacity(),
            #[cfg(feature = "redis")]
            redis: crate::stores::RedisConfig::from_figment(figment)?,
        })
    }
}
