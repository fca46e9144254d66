//! Step two in one line: factories for the stores a Rocket application runs most, built from
//! what Rocket already has at ignite.
//!
//! - [`Sessions::on_database`]: the SQL store on a database of `rocket_db_pools` (its
//!   `#[derive(Database)]` type), the pool fetched and the session table made or brought up to
//!   date (`migrate`) at ignite; on PostgreSQL with a near cache as `[session.near_cache]` says.
//! - [`Sessions::on_redis`]: the Redis store of `[session.redis]`, with the same near cache.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use std::marker::PhantomData;
use std::sync::Arc;

use rocket::figment::Figment;
use rocket::{Build, Rocket};

use crate::config::SessionConfig;
use crate::fairing::{BuildError, Sessions, StoreFactory};
use crate::store::SessionStore;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// A database pool the SQL session store runs on: sqlx's SQLite pool (feature `sqlite`) and
/// PostgreSQL pool (feature `postgres`), as `rocket_db_pools` hands them out.
#[rocket::async_trait]
pub trait SessionPool: Send + Sync + 'static {
    /// The session store on this pool, its table made or brought up to date, with what the
    /// settings in `figment` ask of it (on PostgreSQL, the near cache).
    ///
    /// # Errors
    /// [`BuildError`] when the table cannot be made or a setting is invalid.
    async fn session_store(&self, figment: &Figment) -> Result<Arc<dyn SessionStore>, BuildError>;
}

#[cfg(feature = "sqlite")]
#[rocket::async_trait]
impl SessionPool for sqlx::SqlitePool {
    /// SQLite loads cost no round trip: no near cache.
    async fn session_store(&self, _: &Figment) -> Result<Arc<dyn SessionStore>, BuildError> {
        let store = crate::stores::SqlStore::sqlite(self.clone());
        store.migrate().await?;
        Ok(Arc::new(store))
    }
}

#[cfg(feature = "postgres")]
#[rocket::async_trait]
impl SessionPool for sqlx::PgPool {
    async fn session_store(&self, figment: &Figment) -> Result<Arc<dyn SessionStore>, BuildError> {
        let store = crate::stores::SqlStore::postgres(self.clone());
        store.migrate().await?;
        Ok(near(store, figment)?)
    }
}

/// `store` behind a near cache as `[session.near_cache]` says, or as it is when it is off.
#[cfg(any(feature = "postgres", feature = "redis"))]
fn near<S: crate::stores::Watched>(
    store: S,
    figment: &Figment,
) -> Result<Arc<dyn SessionStore>, BuildError> {
    let config = crate::stores::NearCacheConfig::from_figment(figment)?;
    Ok(match config.capacity() {
        Some(capacity) => Arc::new(crate::stores::NearCached::new(store, capacity)),
        None => Arc::new(store),
    })
}

/// The factory of [`Sessions::on_database`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
struct OnDatabase<D>(PhantomData<fn() -> D>);

#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[rocket::async_trait]
impl<D> StoreFactory for OnDatabase<D>
where
    D: rocket_db_pools::Database,
    D::Pool: SessionPool,
{
    async fn build(
        &self,
        rocket: &Rocket<Build>,
        _: &SessionConfig,
    ) -> Result<Arc<dyn SessionStore>, BuildError> {
        let Some(database) = D::fetch(rocket) else {
            return Err(BuildError::Missing(format!(
                "the database {:?} is not attached: attach `{}::init()` before the Sessions \
                 fairing",
                D::NAME,
                short_name::<D>()
            )));
        };
        let pool: &D::Pool = database;
        pool.session_store(rocket.figment()).await
    }
}

/// The factory of [`Sessions::on_redis`].
#[cfg(feature = "redis")]
struct OnRedis;

#[cfg(feature = "redis")]
#[rocket::async_trait]
impl StoreFactory for OnRedis {
    async fn build(
        &self,
        rocket: &Rocket<Build>,
        _: &SessionConfig,
    ) -> Result<Arc<dyn SessionStore>, BuildError> {
        let figment = rocket.figment();
        let settings = crate::stores::RedisConfig::from_figment(figment)?;
        near(
            crate::stores::RedisStore::connect(&settings).await?,
            figment,
        )
    }
}

/// The last segment of `T`'s path, as a user wrote it.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn short_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    name.rsplit("::").next().unwrap_or(name)
}

impl Sessions {
    /// The fairing, keeping sessions in the SQL database `D` of `rocket_db_pools` (its
    /// `#[derive(Database)]` type, on a `sqlx::SqlitePool` or `sqlx::PgPool`): at ignite it
    /// fetches the pool, makes or brings up to date the session table, and on PostgreSQL puts
    /// the near cache of `[session.near_cache]` in front. Attach it after `D::init()`.
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use rocket_db_pools::Database;
    /// use rocket_server_sessions::Sessions;
    ///
    /// #[derive(Database)]
    /// #[database("sessions")]
    /// struct Db(sqlx::SqlitePool);
    ///
    /// let rocket = rocket::build()
    ///     .attach(Db::init())
    ///     .attach(Sessions::on_database::<Db>());
    /// # }
    /// ```
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn on_database<D>() -> Self
    where
        D: rocket_db_pools::Database,
        D::Pool: SessionPool,
    {
        Sessions::fairing(OnDatabase::<D>(PhantomData))
    }

    /// The fairing, keeping sessions in Redis as `[session.redis]` says (its URL, key prefix
    /// and timeout), behind the near cache of `[session.near_cache]`. The launch stops when
    /// Redis cannot be reached.
    #[cfg(feature = "redis")]
    pub fn on_redis() -> Self {
        Sessions::fairing(OnRedis)
    }
}
