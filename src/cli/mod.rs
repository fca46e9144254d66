//! The command line: Django's `manage.py` for Rango, one module per subcommand.
//!
//! Every subcommand reads the configuration the server reads, `rocket::Config::figment()`
//! (Rocket.toml, the profile `ROCKET_PROFILE` names, `ROCKET_*` overrides), so it always works on
//! the database and session store the server uses. With no subcommand, the binary serves the
//! site.
//!
//! Exit status: 0 on success; 1 when the work could not be done (no such session, the store
//! cannot be reached, a setting is invalid), with one line on stderr; 2 for bad arguments
//! (clap's usage message).

pub mod clearsessions;
pub mod migrate;
pub mod populate;
pub mod serve;
pub mod session;
pub mod user;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use rocket_db_pools::Database;
use rocket_server_sessions::store::StoreError;
use rocket_server_sessions::{BuildError, ConfigError, SessionConfig};

use crate::db::{Db, DbPool, MigrationError};
use crate::stores;

/// Rango: the Tango with Django site, and its maintenance commands.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: serve the site).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the site (what the binary does with no subcommand).
    Serve,
    /// Apply the database migrations that are not applied yet.
    Migrate,
    /// Load the book's sample categories and pages (what is already there is kept).
    Populate,
    /// Inspect sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Delete expired sessions, in short batches, and say how many (run it from cron).
    Clearsessions(clearsessions::Args),
    /// Inspect users and their sessions.
    #[command(subcommand)]
    User(UserCommand),
}

/// `rango user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Print every user.
    List,
    /// Print a user's signed-in sessions, newest first.
    Sessions {
        /// The username (in any case).
        username: String,
        /// Sign every one of them out.
        #[arg(long)]
        end_all: bool,
    },
    /// Forget the failed attempts (login, registration, password change) that lock a username
    /// or an address, before their window closes.
    #[command(arg_required_else_help = true)]
    Unlock {
        /// The username (in any case).
        username: Option<String>,
        /// A client address (an IPv6 one unlocks its /64).
        #[arg(long)]
        address: Option<std::net::IpAddr>,
    },
}

/// `rango session ...`.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Print a session's data, expiry date and whether it ends at browser close.
    Show {
        /// The session cookie's value (`sessionid` in the browser's developer tools).
        key: String,
    },
    /// Count live sessions and expired ones not yet cleared.
    Stats,
}

impl Cli {
    /// Runs the command and returns the process's exit status; a failure is reported as one
    /// line on stderr.
    pub async fn run(self) -> ExitCode {
        let result = match self.command {
            None | Some(Command::Serve) => serve::run().await,
            Some(Command::Migrate) => migrate::run(&Context::new()).await,
            Some(Command::Populate) => populate::run(&Context::new()).await,
            Some(Command::Session(SessionCommand::Show { key })) => {
                session::show(&Context::new(), &key).await
            }
            Some(Command::Session(SessionCommand::Stats)) => session::stats(&Context::new()).await,
            Some(Command::Clearsessions(args)) => clearsessions::run(&Context::new(), &args).await,
            Some(Command::User(UserCommand::List)) => user::list(&Context::new()).await,
            Some(Command::User(UserCommand::Sessions { username, end_all })) => {
                user::sessions(&Context::new(), &username, end_all).await
            }
            Some(Command::User(UserCommand::Unlock { username, address })) => {
                user::unlock(&Context::new(), username.as_deref(), address).await
            }
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // One line, for cron mail and log scrapers alike.
                let message = e.to_string().replace('\n', " ");
                eprintln!("rango: {message}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Why a subcommand failed. Each message is one line that says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `[session]` settings are invalid.
    #[error(transparent)]
    SessionConfig(#[from] ConfigError),
    /// The `[databases.rango]` settings are invalid.
    #[error("invalid [databases.rango] settings: {0}")]
    DatabaseConfig(#[source] Box<rocket::figment::Error>),
    /// The database cannot be opened: its URL (redacted) and why.
    #[error("cannot open the database {0}")]
    Connect(String),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the migrations failed.
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] MigrationError),
    /// Listing the applied migrations failed.
    #[error("reading the applied migrations failed: {0}")]
    Migrations(#[from] sqlx::migrate::MigrateError),
    /// The configured store cannot be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The database lacks migrations this binary needs.
    #[error("the database lacks {0} migration(s); run `rango migrate` first")]
    NotMigrated(usize),
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configured store cannot count its sessions.
    #[error("session.backend = \"{0}\": this store cannot count its sessions")]
    CannotCount(String),
    /// The value given is not a session key at all.
    #[error("not a session key: the {0} cookie holds 41 characters of a-z and 0-9")]
    MalformedKey(String),
    /// No session has this key.
    #[error("no session has this key (it was never created, or was flushed or cleared)")]
    NoSuchSession,
    /// The session expired and waits for `clearsessions`.
    #[error("the session expired at {0} (not cleared yet)")]
    Expired(String),
    /// Session data could not be printed as JSON.
    #[error("printing the session data failed: {0}")]
    Json(#[from] serde_json::Error),
    /// No user has this name.
    #[error("no user is named {0:?}")]
    NoSuchUser(String),
    /// The server failed.
    #[error("{0}")]
    Serve(String),
}

/// A subcommand's result.
pub type Result<T = (), E = Error> = std::result::Result<T, E>;

/// The configuration the server reads, and what a subcommand opens from it.
pub struct Context {
    figment: Figment,
}

impl Default for Context {
    fn default() -> Self {
        Context::new()
    }
}

impl Context {
    /// The server's configuration: `rocket::Config::figment()`.
    pub fn new() -> Self {
        Context {
            figment: rocket::Config::figment(),
        }
    }

    /// The validated `[session]` settings.
    ///
    /// # Errors
    /// [`Error::SessionConfig`] naming the setting at fault.
    pub fn session_config(&self) -> Result<SessionConfig> {
        Ok(SessionConfig::from_figment(&self.figment)?)
    }

    /// A pool on the site's database, configured as `Db::init()` configures the server's
    /// (same table, same defaults, same pragmas).
    ///
    /// # Errors
    /// [`Error::DatabaseConfig`] or [`Error::Connect`].
    pub async fn pool(&self) -> Result<DbPool> {
        // rocket_db_pools' `Initializer::on_ignite` sets these defaults.
        let workers: usize = self
            .figment
            .extract_inner(rocket::Config::WORKERS)
            .unwrap_or_else(|_| rocket::Config::default().workers);
        let config: rocket_db_pools::Config = self
            .figment
            .focus(&format!("databases.{}", Db::NAME))
            .join(Serialized::default("max_connections", workers * 4))
            .join(Serialized::default("connect_timeout", 5))
            .extract()
            .map_err(|e| Error::DatabaseConfig(Box::new(e)))?;
        DbPool::connect(&config)
            .await
            .map_err(|e| Error::Connect(crate::db::why_not_opened(&config.url, &e)))
    }

    /// [`Context::pool`], checked to have every migration applied.
    ///
    /// # Errors
    /// As [`Context::pool`], and [`Error::NotMigrated`].
    pub async fn migrated_pool(&self) -> Result<DbPool> {
        let pool = self.pool().await?;
        let pending = migrate::pending(&pool).await?.len();
        if pending > 0 {
            return Err(Error::NotMigrated(pending));
        }
        Ok(pool)
    }

    /// The store `session.backend` names, for maintenance ([`stores::maintenance`]: the
    /// server's store without its near cache), on a migrated database if the store keeps its
    /// sessions there.
    ///
    /// # Errors
    /// Invalid settings, the database cannot be opened or is not migrated, or the store
    /// cannot be built.
    pub async fn store(&self, config: &SessionConfig) -> Result<stores::Maintenance> {
        let db = if stores::needs_database(&config.backend) {
            Some(self.migrated_pool().await?)
        } else {
            None
        };
        Ok(stores::maintenance(db.as_ref(), &self.figment, config).await?)
    }
}

/// `text` as a command may print it: what a user supplied (a name, an e-mail, a browser's
/// `User-Agent`) could otherwise write escape sequences to the operator's terminal (clear the
/// screen, forge a line) or turn text around. Control characters and the bidirectional
/// overrides are printed as `\u{...}`; everything else as it is.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| {
        c.is_control()
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}
