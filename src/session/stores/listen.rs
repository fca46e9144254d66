//! The watcher of a [`NearCache`] in front of PostgreSQL, through `LISTEN`.
//!
//! Migration 0003 (migrations/postgres) makes the `session` table report itself: a trigger
//! sends `NOTIFY rango_session, '<table oid>:<key digest in hex>'` for every update or
//! delete of a live session (whoever makes it: another server, `psql`), and `'<table oid>:*'`
//! when the table is truncated. Deleting *expired* sessions reports nothing: the cache never
//! serves one, so `clearsessions` costs no notifications.
//!
//! The watcher listens on a connection of its own. Heartbeats go through the same channel:
//! every [`HEARTBEAT`] another connection sends `'hb:<watcher>:<n>'`. PostgreSQL delivers
//! notifications in commit order, so when heartbeat `n` arrives, every change committed
//! before it was sent has arrived too, and the cache is confirmed up to when it was sent. A
//! listener that stops hearing anything (its own heartbeats included) for [`SILENCE`] is
//! dropped and opened again, flushing the cache.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPoolOptions};
use sqlx::PgPool;

use super::near::{NearCache, HEARTBEAT, MAX_LAG};
use crate::session::record::Record;

/// The channel the trigger of migration 0003 notifies.
pub const CHANNEL: &str = "rango_session";

/// How long a listener may hear nothing before it counts as dead and is opened again.
pub const SILENCE: Duration = Duration::from_secs(3);

/// The near cache of a PostgreSQL store, by key digest in hex.
pub type Near = NearCache<Record>;

/// Heartbeats sent and not yet heard, by number, with when they were sent.
#[derive(Default)]
struct Sent(Mutex<VecDeque<(u64, Instant)>>);

impl Sent {
    fn note(&self, n: u64, at: Instant) {
        let mut sent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Heartbeats that never came back are of no use once older than the lag allowed.
        while sent.front().is_some_and(|(_, at)| at.elapsed() > MAX_LAG) {
            sent.pop_front();
        }
        sent.push_back((n, at));
    }

    /// When heartbeat `n` was sent, forgetting it and every earlier one.
    fn heard(&self, n: u64) -> Option<Instant> {
        let mut sent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found = None;
        while let Some(&(m, at)) = sent.front() {
            if m > n {
                break;
            }
            sent.pop_front();
            if m == n {
                found = Some(at);
            }
        }
        found
    }
}

/// Starts watching the `session` table that `options` reach, for `near`. The watcher and its
/// heartbeat stop when the cache is dropped.
pub fn spawn(options: &PgConnectOptions, near: &Arc<Near>) {
    let options = options.clone().application_name("rango-session-watch");
    // One connection listens, the other sends heartbeats; neither is taken from the site's pool.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .min_connections(0)
        .acquire_timeout(SILENCE)
        .connect_lazy_with(options);
    let watcher = rand::random::<u64>();
    let sent = Arc::new(Sent::default());
    rocket::tokio::spawn(heartbeat(
        pool.clone(),
        watcher,
        Arc::clone(&sent),
        Arc::downgrade(near),
    ));
    rocket::tokio::spawn(watch(pool, watcher, sent, Arc::downgrade(near)));
}

/// Sends heartbeat after heartbeat on the channel while the cache lives.
async fn heartbeat(pool: PgPool, watcher: u64, sent: Arc<Sent>, near: Weak<Near>) {
    let mut n: u64 = 0;
    while near.strong_count() > 0 {
        n += 1;
        let at = Instant::now();
        sent.note(n, at);
        let payload = format!("hb:{watcher}:{n}");
        let notified = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&payload)
            .execute(&pool)
            .await;
        if let Err(e) = notified {
            log::debug!("session near cache heartbeat failed: {e}");
        }
        rocket::tokio::time::sleep(HEARTBEAT).await;
    }
}

/// Listens while the cache lives, opening the listener again after any failure or silence.
async fn watch(pool: PgPool, watcher: u64, sent: Arc<Sent>, near: Weak<Near>) {
    let mut pause = Duration::from_millis(50);
    // Whether this outage was reported: one warning each, the first attempt's included.
    let mut reported = false;
    loop {
        let outcome = listen(&pool, watcher, &sent, &near).await;
        let Some(cache) = near.upgrade() else { return };
        if cache.watching() {
            reported = false;
            pause = Duration::from_millis(50);
        }
        cache.lost();
        if !reported {
            match outcome {
                Err(e) => log::warn!("session near cache off until PostgreSQL can be watched: {e}"),
                Ok(()) => log::warn!("session near cache off: its PostgreSQL listener went quiet"),
            }
            reported = true;
        }
        drop(cache);
        rocket::tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// One listener's life: returns when it fails, falls silent or loses its connection (or the
/// cache is gone).
async fn listen(
    pool: &PgPool,
    watcher: u64,
    sent: &Sent,
    near: &Weak<Near>,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    let table: String = sqlx::query_scalar("SELECT to_regclass('session')::oid::text")
        .fetch_one(&mut listener)
        .await?;
    let name = format!("rango-session-watch:{table}");
    sqlx::query("SELECT set_config('application_name', $1, false)")
        .bind(&name)
        .execute(&mut listener)
        .await?;
    loop {
        // A timeout may cut a message in half; the listener is dropped right after.
        let Ok(received) = rocket::tokio::time::timeout(SILENCE, listener.try_recv()).await else {
            return Ok(());
        };
        let Some(notification) = received? else {
            // The connection was lost: notifications were missed.
            return Ok(());
        };
        let Some(cache) = near.upgrade() else {
            return Ok(());
        };
        apply(&cache, &table, watcher, sent, &notification);
    }
}

/// Applies one notification: a change to a session of `table` evicts it (`*` flushes), this
/// watcher's heartbeat confirms the cache up to when it was sent; the rest (other tables,
/// other watchers' heartbeats) is not ours.
fn apply(cache: &Near, table: &str, watcher: u64, sent: &Sent, notification: &PgNotification) {
    apply_payload(cache, table, watcher, sent, notification.payload());
}

fn apply_payload(cache: &Near, table: &str, watcher: u64, sent: &Sent, payload: &str) {
    let Some((source, rest)) = payload.split_once(':') else {
        return;
    };
    if source == table {
        if rest == "*" {
            cache.flush();
        } else {
            cache.evict([rest]);
        }
    } else if source == "hb" {
        let Some((from, n)) = rest.split_once(':') else {
            return;
        };
        if from.parse() == Ok(watcher) {
            if let Some(at) = n.parse().ok().and_then(|n| sent.heard(n)) {
                cache.confirm(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;

    fn record() -> Record {
        Record {
            data: crate::session::record::Data::new(),
            expires: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
            version: 1,
        }
    }

    fn filled(names: &[&str]) -> Near {
        let cache = NearCache::new(NonZeroUsize::new(8).unwrap());
        cache.confirm(Instant::now());
        for name in names {
            let ticket = cache.ticket().unwrap();
            cache.fill((*name).to_owned(), record(), ticket);
        }
        cache
    }

    #[test]
    fn a_change_to_this_table_evicts_its_session() {
        let cache = filled(&["aa", "bb"]);
        apply_payload(&cache, "16400", 7, &Sent::default(), "16400:aa");
        assert!(cache.get("aa").is_none());
        assert!(cache.get("bb").is_some());
    }

    #[test]
    fn a_truncate_flushes_and_other_tables_are_ignored() {
        let cache = filled(&["aa", "bb"]);
        apply_payload(&cache, "16400", 7, &Sent::default(), "16500:aa");
        apply_payload(&cache, "16400", 7, &Sent::default(), "garbage");
        assert!(cache.get("aa").is_some());
        apply_payload(&cache, "16400", 7, &Sent::default(), "16400:*");
        assert!(cache.get("aa").is_none() && cache.get("bb").is_none());
    }

    #[test]
    fn only_this_watchers_heartbeats_confirm() {
        let cache = NearCache::<Record>::new(NonZeroUsize::new(8).unwrap());
        let sent = Sent::default();
        sent.note(1, Instant::now());
        sent.note(2, Instant::now());
        apply_payload(&cache, "16400", 7, &sent, "hb:8:1");
        assert!(!cache.watching(), "another watcher's heartbeat");
        apply_payload(&cache, "16400", 7, &sent, "hb:7:0");
        assert!(!cache.watching(), "a heartbeat never sent");
        apply_payload(&cache, "16400", 7, &sent, "hb:7:2");
        assert!(cache.watching());
        // Heartbeat 1 was passed by 2 (notifications arrive in order): it is forgotten.
        assert_eq!(sent.heard(1), None);
    }
}
