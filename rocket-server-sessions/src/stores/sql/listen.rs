//! The watcher of a [`NearCache`] in front of PostgreSQL, through `LISTEN`.
//!
//! [`SqlStore::migrate`](super::SqlStore::migrate) makes the `session` table report itself: its
//! triggers send `NOTIFY session_changes, '<table oid>:<key digest in hex>'` for every update, and every
//! delete of a session live or expired less than five minutes ago (whoever makes it: another
//! server, `psql`), and `'<table oid>:*'` when the table is truncated. Clearing sessions that
//! expired earlier reports nothing: the cache never serves one, so clearing costs no
//! notifications.
//!
//! The watcher listens on a connection of its own. Heartbeats go through the same channel:
//! every [`HEARTBEAT`] another connection sends `'hb:<watcher>:<n>:<table oid>:<triggers on>'`.
//! PostgreSQL delivers notifications in commit order, so when heartbeat `n` arrives, every
//! change committed before it was sent has arrived too, and the cache is confirmed up to when
//! it was sent, provided the table is still the one the listener watches and its three
//! triggers are on (a table dropped and made again, or triggers turned off, would leave the
//! listener deaf; it starts again instead, and stays off until the triggers are back). A
//! listener that hears nothing (its own heartbeats included) for [`SILENCE`] is dropped and
//! opened again, on a new connection, flushing the cache.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::PgPool;

use crate::stores::near::{keep_watching, Cache, Watch, HEARTBEAT, MAX_LAG};

/// The channel the session table's triggers notify, unless the store names another.
pub const CHANNEL: &str = "session_changes";

/// How long a listener may hear nothing before it counts as dead and is opened again.
pub const SILENCE: Duration = Duration::from_secs(3);

/// The near cache of a PostgreSQL store, by key digest in hex.
type Near = Cache;

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

/// The triggers of the session table: a heartbeat says how many of them are on.
const TRIGGERS: [&str; 3] = ["session_updated", "session_deleted", "session_truncated"];

/// A heartbeat: notifies `hb:<watcher>:<n>:` followed by what the database says of the table
/// this connection's `search_path` finds, `<oid>:<triggers on>`, so that a table dropped and
/// made again, or triggers turned off, stop the cache instead of leaving it deaf.
const HEARTBEAT_SQL: &str =
    "SELECT pg_notify($1, $2 || coalesce(to_regclass('session')::oid::text, '-') \
     || ':' || (SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('session') \
                AND tgname = ANY($3) AND tgenabled IN ('O', 'A')))";

/// Starts watching the `session` table that `options` reach, for `near`. The watcher and its
/// heartbeat stop when the cache is dropped.
pub fn spawn(options: &PgConnectOptions, channel: &'static str, near: Weak<Near>) {
    let options = options.clone().application_name("session-watch");
    let watcher = rand::random::<u64>();
    let sent = Arc::new(Sent::default());
    rocket::tokio::spawn(heartbeat(
        pool_of_one(&options),
        channel,
        watcher,
        Arc::clone(&sent),
        near.clone(),
    ));
    rocket::tokio::spawn(watch(options, channel, watcher, sent, near));
}

/// A pool of one connection, not the site's: each listener gets a new one (a dead listener's
/// `UNLISTEN` may hang on its old connection), the heartbeat one of its own.
fn pool_of_one(options: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(SILENCE)
        .connect_lazy_with(options.clone())
}

/// Sends heartbeat after heartbeat on the channel while the cache lives.
async fn heartbeat(
    pool: PgPool,
    channel: &'static str,
    watcher: u64,
    sent: Arc<Sent>,
    near: Weak<Near>,
) {
    let mut n: u64 = 0;
    while near.strong_count() > 0 {
        n += 1;
        sent.note(n, Instant::now());
        let notify = sqlx::query(HEARTBEAT_SQL)
            .bind(channel)
            .bind(format!("hb:{watcher}:{n}:"))
            .bind(&TRIGGERS[..])
            .execute(&pool);
        match rocket::tokio::time::timeout(SILENCE, notify).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::debug!("session near cache heartbeat failed: {e}"),
            Err(_) => log::debug!("session near cache heartbeat timed out"),
        }
        rocket::tokio::time::sleep(HEARTBEAT).await;
    }
}

/// Listens while the cache lives, opening a listener again after any failure or silence.
async fn watch(
    options: PgConnectOptions,
    channel: &'static str,
    watcher: u64,
    sent: Arc<Sent>,
    near: Weak<Near>,
) {
    keep_watching(near.clone(), "PostgreSQL", || {
        listen(&options, channel, watcher, &sent, &near)
    })
    .await;
}

/// One listener's life: `Err` with why when it fails, falls silent or loses its connection,
/// `Ok` when the cache is gone.
async fn listen(
    options: &PgConnectOptions,
    channel: &str,
    watcher: u64,
    sent: &Sent,
    near: &Weak<Near>,
) -> Result<(), String> {
    let pool = pool_of_one(options);
    let setup = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(channel).await?;
        let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('session')::oid::text")
            .fetch_one(&mut listener)
            .await?;
        let name = format!("session-watch:{}", table.as_deref().unwrap_or("-"));
        sqlx::query("SELECT set_config('application_name', $1, false)")
            .bind(&name)
            .execute(&mut listener)
            .await?;
        Ok::<_, sqlx::Error>((listener, table))
    };
    let (mut listener, table) = match rocket::tokio::time::timeout(SILENCE, setup).await {
        Ok(Ok((listener, Some(table)))) => (listener, table),
        Ok(Ok((_, None))) => return Err("no session table (migrate first)".into()),
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("no answer".into()),
    };
    let watch = match near.upgrade() {
        Some(cache) => cache.watch(),
        None => return Ok(()),
    };
    loop {
        // A timeout may cut a message in half; the listener is dropped right after.
        let Ok(received) = rocket::tokio::time::timeout(SILENCE, listener.try_recv()).await else {
            return Err("its listener went quiet".into());
        };
        let Some(notification) = received.map_err(|e| e.to_string())? else {
            // Notifications were missed.
            return Err("its connection was lost".into());
        };
        let Some(cache) = near.upgrade() else {
            return Ok(());
        };
        let heard = Heard {
            table: &table,
            watcher,
            watch,
            sent,
        };
        heard.apply(&cache, notification.payload())?;
    }
}

/// What one listener needs to make sense of a notification.
struct Heard<'a> {
    /// The oid of the session table it watches.
    table: &'a str,
    watcher: u64,
    watch: Watch,
    sent: &'a Sent,
}

impl Heard<'_> {
    /// Applies one notification: a change to a session of this table evicts it (`*`
    /// flushes); this watcher's heartbeat confirms the cache up to when it was sent, if the
    /// table is still the one watched with its triggers on (an error otherwise); the rest
    /// (other tables, other watchers' heartbeats) is not ours.
    fn apply(&self, cache: &Near, payload: &str) -> Result<(), String> {
        let Some((source, rest)) = payload.split_once(':') else {
            return Ok(());
        };
        if source == self.table {
            if rest == "*" {
                cache.flush();
            } else {
                cache.evict([rest]);
            }
            return Ok(());
        }
        if source != "hb" {
            return Ok(());
        }
        let mut fields = rest.split(':');
        let (Some(from), Some(n), Some(table), Some(triggers)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Ok(());
        };
        if from.parse() != Ok(self.watcher) {
            return Ok(());
        }
        if table != self.table {
            return Err("the session table was made again".into());
        }
        if triggers != TRIGGERS.len().to_string() {
            return Err(format!(
                "the session table's triggers are not all on ({triggers} of {}: migrate, or \
                 ENABLE TRIGGER)",
                TRIGGERS.len()
            ));
        }
        if let Some(at) = n.parse().ok().and_then(|n| self.sent.heard(n)) {
            cache.confirm(self.watch, at);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;
    use crate::stores::near::kept;

    fn filled(names: &[&str]) -> Near {
        crate::stores::near::filled(names, kept())
    }

    fn heard<'a>(sent: &'a Sent, watch: Watch) -> Heard<'a> {
        Heard {
            table: "16400",
            watcher: 7,
            watch,
            sent,
        }
    }

    #[test]
    fn a_change_to_this_table_evicts_its_session() {
        let cache = filled(&["aa", "bb"]);
        let sent = Sent::default();
        let heard = heard(&sent, Watch(0));
        assert_eq!(heard.apply(&cache, "16400:aa"), Ok(()));
        assert!(cache.get("aa").is_none());
        assert!(cache.get("bb").is_some());
    }

    #[test]
    fn a_truncate_flushes_and_other_tables_are_ignored() {
        let cache = filled(&["aa", "bb"]);
        let sent = Sent::default();
        let heard = heard(&sent, Watch(0));
        assert_eq!(heard.apply(&cache, "16500:aa"), Ok(()));
        assert_eq!(heard.apply(&cache, "garbage"), Ok(()));
        assert!(cache.get("aa").is_some());
        assert_eq!(heard.apply(&cache, "16400:*"), Ok(()));
        assert!(cache.get("aa").is_none() && cache.get("bb").is_none());
    }

    #[test]
    fn only_this_watchers_heartbeats_confirm() {
        let cache = Near::new(NonZeroUsize::new(8).unwrap());
        let sent = Sent::default();
        let heard = heard(&sent, cache.watch());
        sent.note(1, Instant::now());
        sent.note(2, Instant::now());
        assert_eq!(heard.apply(&cache, "hb:8:1:16400:3"), Ok(()));
        assert!(!cache.watching(), "another watcher's heartbeat");
        assert_eq!(heard.apply(&cache, "hb:7:0:16400:3"), Ok(()));
        assert!(!cache.watching(), "a heartbeat never sent");
        assert_eq!(heard.apply(&cache, "hb:7:2:16400:3"), Ok(()));
        assert!(cache.watching());
        // Heartbeat 1 was passed by 2 (notifications arrive in order): it is forgotten.
        assert_eq!(sent.heard(1), None);
    }

    #[test]
    fn a_heartbeat_from_a_new_table_or_without_triggers_stops_the_listener() {
        let cache = Near::new(NonZeroUsize::new(8).unwrap());
        let sent = Sent::default();
        let heard = heard(&sent, cache.watch());
        sent.note(1, Instant::now());
        sent.note(2, Instant::now());
        sent.note(3, Instant::now());
        assert!(
            heard.apply(&cache, "hb:7:1:16500:3").is_err(),
            "the table was made again"
        );
        assert!(
            heard.apply(&cache, "hb:7:2:-:0").is_err(),
            "the table was dropped"
        );
        let off = heard
            .apply(&cache, "hb:7:3:16400:2")
            .expect_err("a trigger is off");
        assert!(off.contains("2 of 3"), "{off}");
        assert!(!cache.watching());
    }
}
