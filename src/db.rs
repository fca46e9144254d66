//! The database: a SQLite pool set up for a web server, and its embedded migrations.

use std::ops::Deref;
use std::str::FromStr;
use std::time::Duration;

use rocket::fairing;
use rocket::figment::Figment;
use rocket::{Build, Rocket};
use rocket_db_pools::Database;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Sqlite, SqlitePool};

/// The migrations under `migrations/sqlite`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The `rango` database of `[default.databases.rango]`.
#[derive(Database)]
#[database("rango")]
pub struct Db(DbPool);

impl Db {
    /// The sqlx pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.0 .0
    }
}

/// A SQLite pool with the pragmas a server wants: WAL (readers never wait for the writer),
/// `synchronous = NORMAL` (safe with WAL, one fsync per checkpoint instead of per commit),
/// a busy timeout and foreign keys on.
#[derive(Debug, Clone)]
pub struct DbPool(SqlitePool);

impl Deref for DbPool {
    type Target = SqlitePool;

    fn deref(&self) -> &SqlitePool {
        &self.0
    }
}

impl DbPool {
    /// Connects as `config` (the `databases.rango` table) says.
    ///
    /// # Errors
    /// The URL does not parse or the database cannot be opened.
    pub async fn connect(config: &rocket_db_pools::Config) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(&config.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(config.connect_timeout))
            .foreign_keys(true)
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(u32::try_from(config.max_connections).unwrap_or(u32::MAX))
            .min_connections(config.min_connections.unwrap_or_default())
            .acquire_timeout(Duration::from_secs(config.connect_timeout))
            .idle_timeout(config.idle_timeout.map(Duration::from_secs))
            .connect_with(options)
            .await?;
        Ok(DbPool(pool))
    }
}

#[rocket::async_trait]
impl rocket_db_pools::Pool for DbPool {
    type Connection = PoolConnection<Sqlite>;
    type Error = rocket_db_pools::Error<sqlx::Error>;

    async fn init(figment: &Figment) -> Result<Self, Self::Error> {
        let config: rocket_db_pools::Config = figment.extract()?;
        DbPool::connect(&config)
            .await
            .map_err(rocket_db_pools::Error::Init)
    }

    async fn get(&self) -> Result<Self::Connection, Self::Error> {
        self.0.acquire().await.map_err(rocket_db_pools::Error::Get)
    }

    async fn close(&self) {
        self.0.close().await;
    }
}

/// Applies pending migrations at ignite (attach after `Db::init()`).
pub async fn migrate(rocket: Rocket<Build>) -> fairing::Result {
    let Some(db) = Db::fetch(&rocket) else {
        return Err(rocket);
    };
    match MIGRATOR.run(db.pool()).await {
        Ok(()) => Ok(rocket),
        Err(e) => {
            log::error!("database migrations failed: {e}");
            Err(rocket)
        }
    }
}
