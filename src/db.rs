//! The site's database, SQLite or PostgreSQL as `[databases.rango] url` says, its embedded
//! migrations, and the session table (made by the session store's own `migrate`).

use std::str::FromStr;
use std::time::Duration;

use rocket::fairing;
use rocket::figment::Figment;
use rocket::{Build, Rocket};
use rocket_db_pools::Database;
use rocket_server_sessions::store::StoreError;
use rocket_server_sessions::stores::SqlStore;
use rocket_server_sessions::stores::{PostgresStore, SqliteStore};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::pool::PoolOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, PgPool, Postgres, Sqlite, SqlitePool};

use crate::redact::{redact_in, redact_password};

/// The migrations under `migrations/sqlite`, compiled into the binary.
///
/// The session table is not among them: the session store makes it (its `migrate`).
/// Databases made before the session framework became a crate of its own have its two
/// migrations (versions 2 and 3) applied; `ignore_missing` lets them be. So the site's next
/// migration is version 4: 2 and 3 are taken in those databases.
pub static SQLITE_MIGRATOR: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("migrations/sqlite")
};

/// The migrations under `migrations/postgres`, compiled into the binary (see
/// [`SQLITE_MIGRATOR`]).
pub static POSTGRES_MIGRATOR: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("migrations/postgres")
};

/// The channel Rango's PostgreSQL session table notifies its changes on.
pub const PG_CHANNEL: &str = "rango_session";

/// A pool on SQLite or PostgreSQL, chosen by the URL at launch: the site's queries (with `$N`
/// parameters, which both understand) run on either.
#[derive(Debug, Clone)]
pub enum DbPool {
    /// SQLite, for one machine.
    Sqlite(SqlitePool),
    /// PostgreSQL, for sites that outgrow one.
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete sqlx pool inside a [`DbPool`]: the body is
/// compiled once per database, so it may use each one's types.
#[macro_export]
macro_rules! on_pool {
    ($db_pool:expr, $pool:ident => $body:expr) => {
        match $db_pool {
            $crate::db::DbPool::Sqlite($pool) => $body,
            $crate::db::DbPool::Postgres($pool) => $body,
        }
    };
}

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

impl DbPool {
    /// Connects as `config` (the `databases.rango` table) says. SQLite connections get the
    /// pragmas a server wants: WAL (readers never wait for the writer, which the session
    /// store's loads rely on), `synchronous = NORMAL` (safe with WAL; one fsync per checkpoint
    /// instead of per commit), a busy timeout and foreign keys on.
    ///
    /// # Errors
    /// The URL is not a `sqlite:` or `postgres:` URL, or the database cannot be opened.
    pub async fn connect(config: &rocket_db_pools::Config) -> Result<Self, sqlx::Error> {
        let url = config.url.as_str();
        let connect_timeout = Duration::from_secs(config.connect_timeout);
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            if config.max_connections < 2 {
                return Err(sqlx::Error::Configuration(
                    "databases.rango.max_connections must be at least 2 on PostgreSQL: the \
                     session store keeps up to half of the connections, the pages' queries \
                     need the rest"
                        .into(),
                ));
            }
            let connect = PgConnectOptions::from_str(url)?.disable_statement_logging();
            let pool = pool_options::<Postgres>(config)
                .connect_with(connect)
                .await?;
            return Ok(DbPool::Postgres(pool));
        }
        if !url.starts_with("sqlite:") {
            return Err(sqlx::Error::Configuration(
                format!(
                    "unsupported database URL {}: use sqlite:// or postgres://",
                    redact_password(url)
                )
                .into(),
            ));
        }
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(connect_timeout)
            .foreign_keys(true)
            .disable_statement_logging();
        let pool = pool_options::<Sqlite>(config).connect_with(connect).await?;
        Ok(DbPool::Sqlite(pool))
    }

    /// The session store on this database (not migrated: [`run_migrations`] makes its table).
    pub fn session_store(&self) -> SqlStore {
        match self {
            DbPool::Sqlite(pool) => SqlStore::Sqlite(SqliteStore::new(pool.clone())),
            // Rango's session tables have notified this channel since they first reported
            // their changes: servers of an older version, still running beside newer ones
            // during a rolling upgrade (or after a rollback), listen on it.
            DbPool::Postgres(pool) => {
                SqlStore::Postgres(PostgresStore::new(pool.clone()).with_channel(PG_CHANNEL))
            }
        }
    }

    /// The SQLite pool, if it is one.
    pub fn as_sqlite(&self) -> Option<&SqlitePool> {
        match self {
            DbPool::Sqlite(pool) => Some(pool),
            DbPool::Postgres(_) => None,
        }
    }

    /// The migrations for this database.
    pub fn migrator(&self) -> &'static Migrator {
        match self {
            DbPool::Sqlite(_) => &SQLITE_MIGRATOR,
            DbPool::Postgres(_) => &POSTGRES_MIGRATOR,
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }
}

/// `url` (redacted) and why it could not be opened: `e`, with the URL redacted wherever the
/// driver's message shows it. What the server's launch and the command line print.
pub fn why_not_opened(url: &str, e: &sqlx::Error) -> String {
    format!(
        "{}: {}",
        redact_password(url),
        redact_in(&e.to_string(), url)
    )
}

/// The pool settings of `config`, for either database.
fn pool_options<DB: sqlx::Database>(config: &rocket_db_pools::Config) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(u32::try_from(config.max_connections).unwrap_or(u32::MAX))
        .min_connections(config.min_connections.unwrap_or_default())
        .acquire_timeout(Duration::from_secs(config.connect_timeout))
        .idle_timeout(config.idle_timeout.map(Duration::from_secs))
}

/// Why the database could not be migrated.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// A migration of the site's tables failed; nothing of it is kept.
    #[error("{0}")]
    Site(#[from] MigrateError),
    /// The session table could not be made.
    #[error("making the session table: {0}")]
    Sessions(#[from] StoreError),
}

/// Applies the site's pending migrations, then makes the session table if it is not there.
///
/// # Errors
/// A migration fails; nothing of it is kept.
pub async fn run_migrations(pool: &DbPool) -> Result<(), MigrationError> {
    on_pool!(pool, p => pool.migrator().run(p).await)?;
    pool.session_store().migrate().await?;
    Ok(())
}

/// The crate's factory builds the server's SQL store on the site's pool through this.
impl rocket_server_sessions::SessionPool for DbPool {
    fn sql_store(&self) -> SqlStore {
        self.session_store()
    }
}

#[rocket::async_trait]
impl rocket_db_pools::Pool for DbPool {
    /// Handlers get the pool itself (a cheap clone): a query takes a connection for as long
    /// as it runs, not for the whole request.
    type Connection = DbPool;
    type Error = rocket_db_pools::Error<sqlx::Error>;

    async fn init(figment: &Figment) -> Result<Self, Self::Error> {
        let config: rocket_db_pools::Config = figment.extract()?;
        DbPool::connect(&config).await.map_err(|e| {
            let message = format!("cannot open {}", why_not_opened(&config.url, &e));
            rocket_db_pools::Error::Init(sqlx::Error::Configuration(message.into()))
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
