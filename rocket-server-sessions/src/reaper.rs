//! The built-in reaper: with `session.clear_expired_every` set, the server deletes expired
//! sessions itself on that period, so a small site needs no cron job to clear them
//! (tower-sessions' `continuously_delete_expired`, RFS's `cleanup_interval`).
//!
//! It runs as one task started at liftoff. The store's `clear_expired` deletes in short batches
//! (the SQL store's `CLEAR_BATCH` rows per statement, with a pause between them), so requests
//! keep being served while it works. It stops when Rocket shuts down: at the shutdown signal it
//! drops the pass in progress at its next await (each batch is one statement, so a batch is
//! either wholly applied or not at all), and the fairing's `on_shutdown` waits for it to end.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rocket::tokio::task::JoinHandle;
use rocket::tokio::time::{self, Instant, MissedTickBehavior};
use rocket::{Orbit, Rocket, Shutdown};

use crate::guard::SessionManager;
use crate::store::SessionStore;

/// How long shutdown waits for the task to end before it aborts it.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The reaper's task, if one runs.
#[derive(Default)]
pub(crate) struct Reaper {
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Reaper {
    /// Starts the task if `session.clear_expired_every` asks for one and the store does not
    /// expire sessions by itself.
    pub(crate) fn start(&self, rocket: &Rocket<Orbit>) {
        let Some(manager) = rocket.state::<SessionManager>() else {
            return;
        };
        let Some(period) = manager.config.clear_expired_period() else {
            return;
        };
        if manager.store.expires_by_itself() {
            log::info!(
                "session.clear_expired_every is ignored: the \"{}\" store expires sessions itself",
                manager.config.backend
            );
            return;
        }
        let task = rocket::tokio::spawn(run(Arc::clone(&manager.store), period, rocket.shutdown()));
        log::info!("clearing expired sessions every {}s", period.as_secs());
        let previous = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(task);
        // One reaper per Rocket: a second liftoff of the same fairing replaces the first task.
        if let Some(previous) = previous {
            previous.abort();
        }
    }

    /// Waits for the task to end (Rocket has already signalled shutdown); aborts it after
    /// [`STOP_GRACE`].
    pub(crate) async fn stop(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut task) = task else {
            return;
        };
        if time::timeout(STOP_GRACE, &mut task).await.is_err() {
            log::warn!("the session reaper did not stop in time; aborting it");
            task.abort();
        }
    }
}

/// Clears expired sessions every `period` until `shutdown`. The first pass runs one period
/// after liftoff; a pass that overruns the period delays the next one rather than piling up.
async fn run(store: Arc<dyn SessionStore>, period: Duration, shutdown: Shutdown) {
    rocket::tokio::pin!(shutdown);
    let mut ticks = time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        rocket::tokio::select! {
            _ = &mut shutdown => break,
            _ = ticks.tick() => {}
        }
        rocket::tokio::select! {
            _ = &mut shutdown => break,
            cleared = store.clear_expired() => match cleared {
                Ok(0) => log::debug!("no expired session to clear"),
                Ok(n) => log::info!("cleared {n} expired sessions"),
                // Try again next period: the store may be back by then.
                Err(e) => log::error!("clearing expired sessions failed: {e}"),
            },
        }
    }
    log::debug!("the session reaper stopped");
}
