//! The site's database, SQLite or PostgreSQL as `[databases.rango] url` says, and its embedded
//! migrations.

use std::time::Duration;

use rocket::fairing;
use rocket::figment::Figment;
use rocket::{Build, Rocket};
use rocket_db_pools::Database;
use sqlx::migrate::{MigrateError, Migrator};

use crate::session::stores::SqlOptions;
pub use crate::session::stores::SqlPool as DbPool;

/// The migrations under `migrations/sqlite`, compiled into the binary.
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// The migrations under `migrations/postgres`, compiled into the binary.
pub static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The `rango` database of `[default.databases.rango]`.
#[derive(Database)]
#[database("rango")]
pub struct Db(DbPool);

impl Db {
    /// The pool.
    pub fn pool(&self) -> &DbPool {
        &self.0
    }
}

/// The migrations for the database `pool` is on.
pub fn migrator(pool: &DbPool) -> &'static Migrator {
    match pool {
        DbPool::Sqlite(_) => &SQLITE_MIGRATOR,
        DbPool::Postgres(_) => &POSTGRES_MIGRATOR,
    }
}

/// Applies the pending migrations.
///
/// # Errors
/// A migration fails; nothing of it is kept.
pub async fn run_migrations(pool: &DbPool) -> Result<(), MigrateError> {
    match pool {
        DbPool::Sqlite(p) => SQLITE_MIGRATOR.run(p).await,
        DbPool::Postgres(p) => POSTGRES_MIGRATOR.run(p).await,
    }
}

/// Connects as `config` (the `databases.rango` table) says.
///
/// # Errors
/// The URL does not parse or the database cannot be opened.
pub async fn connect(config: &rocket_db_pools::Config) -> Result<DbPool, sqlx::Error> {
    DbPool::connect(&SqlOptions {
        url: config.url.clone(),
        max_connections: u32::try_from(config.max_connections).unwrap_or(u32::MAX),
        min_connections: config.min_connections.unwrap_or_default(),
        connect_timeout: Duration::from_secs(config.connect_timeout),
        idle_timeout: config.idle_timeout.map(Duration::from_secs),
    })
    .await
}

#[rocket::async_trait]
impl rocket_db_pools::Pool for DbPool {
    /// Handlers get the pool itself (a cheap clone): a query takes a connection for as long
    /// as it runs, not for the whole request.
    type Connection = DbPool;
    type Error = rocket_db_pools::Error<sqlx::Error>;

    async fn init(figment: &Figment) -> Result<Self, Self::Error> {
        let config: rocket_db_pools::Config = figment.extract()?;
        connect(&config).await.map_err(|e| {
            rocket_db_pools::Error::Init(match e {
                sqlx::Error::Configuration(_) => e,
                other => sqlx::Error::Configuration(
                    format!(
                        "cannot open {}: {other}",
                        crate::session::redact_password(&config.url)
                    )
                    .into(),
                ),
            })
        })
    }

    async fn get(&self) -> Result<Self::Connection, Self::Error> {
        Ok(self.clone())
    }

    async fn close(&self) {
        DbPool::close(self).await;
    }
}

/// Applies pending migrations at ignite (attach after `Db::init()`).
pub async fn migrate(rocket: Rocket<Build>) -> fairing::Result {
    let Some(db) = Db::fetch(&rocket) else {
        return Err(rocket);
    };
    match run_migrations(db.pool()).await {
        Ok(()) => Ok(rocket),
        Err(e) => {
            log::error!("database migrations failed: {e}");
            Err(rocket)
        }
    }
}
