//! The `Sessions` fairing: at ignite it reads the settings and builds the store with the
//! application's [`StoreFactory`]; after each response it ends the request's session
//! (`commit.rs`); it runs the reaper of expired sessions between liftoff and shutdown.

use std::sync::Arc;

use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::{Build, Orbit, Request, Response, Rocket};

use crate::commit;
use crate::config::{ConfigError, SessionConfig};
use crate::guard::SessionManager;
use crate::reaper::Reaper;
use crate::store::{SessionStore, StoreError};

/// Builds the store the settings ask for, at ignite. The application implements it: it owns
/// the database pools and connections the stores run on, and decides which store each
/// `session.backend` name means. A command line of the application can call the same code, so
/// that the server and the command line always agree.
///
/// A closure `Fn(&Rocket<Build>, &SessionConfig) -> Result<Arc<dyn SessionStore>, BuildError>`
/// is a factory too.
#[rocket::async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// The store for `config.backend`.
    ///
    /// # Errors
    /// [`BuildError`] saying why that store cannot be built (it fails the launch).
    async fn build(
        &self,
        rocket: &Rocket<Build>,
        config: &SessionConfig,
    ) -> Result<Arc<dyn SessionStore>, BuildError>;
}

#[rocket::async_trait]
impl<F> StoreFactory for F
where
    F: Fn(&Rocket<Build>, &SessionConfig) -> Result<Arc<dyn SessionStore>, BuildError>
        + Send
        + Sync
        + 'static,
{
    async fn build(
        &self,
        rocket: &Rocket<Build>,
        config: &SessionConfig,
    ) -> Result<Arc<dyn SessionStore>, BuildError> {
        self(rocket, config)
    }
}

/// Why a [`StoreFactory`] could not build the store.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `session.backend` names no store this application knows.
    #[error("session.backend = {name:?} names no store (known: {})", .known.join(", "))]
    UnknownBackend {
        /// The name given.
        name: String,
        /// The names the factory knows.
        known: &'static [&'static str],
    },
    /// The store's own settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be reached or set up.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something the store needs is missing (a database that is not configured, a secret key).
    #[error("{0}")]
    Missing(String),
}

/// The session fairing. Attach it after the fairings that set up what the store needs (a
/// database pool, say).
pub struct Sessions {
    factory: Box<dyn StoreFactory>,
    reaper: Reaper,
}

impl Sessions {
    /// The fairing, building its store with `factory` at ignite.
    pub fn fairing(factory: impl StoreFactory) -> Self {
        Sessions {
            factory: Box::new(factory),
            reaper: Reaper::default(),
        }
    }

    /// The fairing, keeping sessions in `store` whatever `session.backend` says.
    pub fn with_store(store: impl SessionStore) -> Self {
        let store: Arc<dyn SessionStore> = Arc::new(store);
        Self::fairing(move |_: &Rocket<Build>, _: &SessionConfig| Ok(Arc::clone(&store)))
    }
}

#[rocket::async_trait]
impl Fairing for Sessions {
    fn info(&self) -> Info {
        Info {
            name: "Sessions",
            kind: Kind::Ignite | Kind::Liftoff | Kind::Response | Kind::Shutdown,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        let config = match SessionConfig::from_figment(rocket.figment()) {
            Ok(config) => config,
            Err(e) => {
                log::error!("{e}");
                return Err(rocket);
            }
        };
        let store = match self.factory.build(&rocket, &config).await {
            Ok(store) => store,
            Err(e) => {
                log::error!(
                    "session.backend = \"{}\": cannot build the store: {e}",
                    config.backend
                );
                return Err(rocket);
            }
        };
        match store.describe().await {
            Ok(described) => log::info!("sessions: {described}"),
            Err(e) => {
                log::error!(
                    "session.backend = \"{}\": the store cannot serve: {e}",
                    config.backend
                );
                return Err(rocket);
            }
        }
        Ok(rocket.manage(SessionManager::new(config, store)))
    }

    /// Starts the reaper if `session.clear_expired_every` is set.
    async fn on_liftoff(&self, rocket: &Rocket<Orbit>) {
        self.reaper.start(rocket);
    }

    /// Waits for the reaper to stop.
    async fn on_shutdown(&self, _: &Rocket<Orbit>) {
        self.reaper.stop().await;
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        commit::finish(req, res).await;
    }
}
