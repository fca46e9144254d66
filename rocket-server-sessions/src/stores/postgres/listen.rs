//! The watcher of a [`NearCache`] in front of PostgreSQL, through `LISTEN`.
//!
//! [`PostgresStore::migrate`](super::PostgresStore::migrate) makes the `session` table report itself: its
//! triggers send `NOTIFY <channel>, '<table oid>:<key digest in hex>'` for every update, and
//! every delete of a session live or expired less than five minutes ago (whoever makes it:
//! another server, `psql`), and `'<table oid>:*'` when the table is truncated. Clearing sessions
//! that expired earlier reports nothing: the cache never serves one, so clearing costs no
//! notifications.
//!
//! The watcher listens on a connection of its own. Its heartbeats are changes to the table (see
//! `near/cache.rs`): every [`HEARTBEAT`] another connection inserts a row of the watcher's own
//! and deletes it in one transaction, and the table's delete trigger reports it as it reports a
//! session's, `'<table oid>:<probe key in hex>'`. The row is inserted only while the table's
//! three triggers are on and notify the store's channel, so a trigger turned off, or triggers
//! that notify another channel, stop the heartbeats; the row never outlives its transaction, so
//! no count or listing sees it. PostgreSQL delivers notifications in commit order, so when
//! heartbeat `n` arrives, every change committed before it was sent has arrived too, and the
//! cache is confirmed up to when it was sent, provided it came from the table the listener
//! watches (a table dropped and made again starts the listener over). A listener that hears
//! none of its own heartbeats for [`SILENCE`] says why (no table, triggers off, another
//! channel) and is opened again, on a new connection, flushing the cache.

use std::sync::{Arc, Weak};
use std::time::Instant;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::PgPool;

use crate::key::SessionKey;
use crate::stores::near::{keep_watching, Beats, Cache, Watch, HEARTBEAT, SILENCE};

/// The channel the session table's triggers notify, unless the store names another.
pub(crate) const CHANNEL: &str = "session_changes";

/// The near cache of a PostgreSQL store.
type Near = Cache;

/// The triggers of the session table.
const TRIGGERS: [&str; 3] = ["session_updated", "session_deleted", "session_truncated"];

/// What the key of a heartbeat's row begins with, in hex (`probe`); then the watcher and the
/// heartbeat's number, eight bytes each: 21 bytes, never a session's 32-byte digest.
const PROBE: &str = "70726f6265";

/// The key of heartbeat `n` of `watcher`, in hex.
fn probe_key(watcher: u64, n: u64) -> String {
    format!("{PROBE}{watcher:016x}{n:016x}")
}

/// The watcher and heartbeat number of a probe key in hex, or `None` for any other name.
fn probe_of(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix(PROBE)?;
    if rest.len() != 32 {
        return None;
    }
    let watcher = u64::from_str_radix(rest.get(..16)?, 16).ok()?;
    let n = u64::from_str_radix(rest.get(16..)?, 16).ok()?;
    Some((watcher, n))
}

/// An SQL expression: how many of the session table's triggers are on and notify `channel` (a
/// plain name, which `migrate` checks), 3 when all is well.
fn triggers_reporting(channel: &str) -> String {
    format!(
        "(SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
          WHERE t.tgrelid = to_regclass('session') AND t.tgenabled IN ('O', 'A') \
            AND t.tgname IN ({}) \
            AND position('pg_notify(''{channel}''' IN p.prosrc) > 0)",
        trigger_names()
    )
}

/// The names of [`TRIGGERS`] as an SQL list: `'session_updated', ...`.
fn trigger_names() -> String {
    TRIGGERS.map(|name| format!("'{name}'")).join(", ")
}

/// Heartbeat `n` of `watcher`: a row inserted (only while every trigger is on and notifies
/// `channel`) and deleted in one transaction, which the delete trigger reports. One simple
/// query, so one round trip; every value in it is ours (hex digits, a plain channel name).
fn heartbeat_sql(channel: &str, watcher: u64, n: u64) -> String {
    let key = probe_key(watcher, n);
    format!(
        "INSERT INTO session (key_hash, data, expires, version) \
         SELECT '\\x{key}'::bytea, '{{}}', 253402300799, 0 WHERE {} = {}; \
         DELETE FROM session WHERE key_hash = '\\x{key}'::bytea",
        triggers_reporting(channel),
        TRIGGERS.len()
    )
}

/// Starts watching the `session` table that `options` reach, for `near`. The watcher and its
/// heartbeat stop when the cache is dropped.
pub fn spawn(options: &PgConnectOptions, channel: &'static str, near: Weak<Near>) {
    let options = options.clone().application_name("session-watch");
    let watcher = rand::random::<u64>();
    let sent = Arc::new(Beats::default());
    // A heartbeat's commit need not wait for the disk: one lost in a crash is one not heard.
    let beating = options.clone().options([("synchronous_commit", "off")]);
    rocket::tokio::spawn(heartbeat(
        pool_of_one(&beating),
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

/// Sends heartbeat after heartbeat while the cache lives.
async fn heartbeat(
    pool: PgPool,
    channel: &'static str,
    watcher: u64,
    sent: Arc<Beats>,
    near: Weak<Near>,
) {
    let mut n: u64 = 0;
    while near.strong_count() > 0 {
        n += 1;
        sent.note(n, Instant::now());
        let sql = heartbeat_sql(channel, watcher, n);
        let beat = sqlx::Executor::execute(&pool, sql.as_str());
        match rocket::tokio::time::timeout(SILENCE, beat).await {
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
    sent: Arc<Beats>,
    near: Weak<Near>,
) {
    keep_watching(near.clone(), "PostgreSQL", || {
        listen(&options, channel, watcher, &sent, &near)
    })
    .await;
}

/// The oid of the session table `conn` sees, or why it cannot report its changes on `channel`:
/// it is missing, or its triggers are not all on, or they notify another channel.
async fn diagnose(
    conn: &mut PgListener,
    channel: &str,
) -> Result<Result<String, String>, sqlx::Error> {
    let sql = format!(
        "SELECT to_regclass('session')::oid::text, \
                (SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('session') \
                   AND tgname IN ({}) AND tgenabled IN ('O', 'A')), \
                {}",
        trigger_names(),
        triggers_reporting(channel)
    );
    let (table, on, reporting): (Option<String>, i64, i64) =
        sqlx::query_as(&sql).fetch_one(&mut *conn).await?;
    let all = i64::try_from(TRIGGERS.len()).unwrap_or(i64::MAX);
    Ok(match table {
        None => Err("no session table (migrate first)".into()),
        Some(_) if on < all => Err(format!(
            "the session table's triggers are not all on ({on} of {all}: migrate, or ENABLE \
             TRIGGER)"
        )),
        Some(_) if reporting < all => Err(format!(
            "the session table's triggers do not notify {channel:?}, the channel this store \
             listens on: build every store of this table with the channel its migrate installed"
        )),
        Some(table) => Ok(table),
    })
}

/// One listener's life: `Err` with why when it fails, hears none of its heartbeats for
/// [`SILENCE`] or loses its connection, `Ok` when the cache is gone.
async fn listen(
    options: &PgConnectOptions,
    channel: &str,
    watcher: u64,
    sent: &Beats,
    near: &Weak<Near>,
) -> Result<(), String> {
    let pool = pool_of_one(options);
    let setup = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(channel).await?;
        let table = diagnose(&mut listener, channel).await?;
        if let Ok(table) = &table {
            sqlx::query("SELECT set_config('application_name', $1, false)")
                .bind(format!("session-watch:{table}"))
                .execute(&mut listener)
                .await?;
        }
        Ok::<_, sqlx::Error>((listener, table))
    };
    let (mut listener, table) = match rocket::tokio::time::timeout(SILENCE, setup).await {
        Ok(Ok((listener, Ok(table)))) => (listener, table),
        Ok(Ok((_, Err(why)))) => return Err(why),
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("no answer".into()),
    };
    let watch = match near.upgrade() {
        Some(cache) => cache.watch(),
        None => return Ok(()),
    };
    let mut last_heard = Instant::now();
    loop {
        let wait = SILENCE.saturating_sub(last_heard.elapsed());
        // A timeout may cut a message in half; the listener is dropped right after.
        let Ok(received) = rocket::tokio::time::timeout(wait, listener.try_recv()).await else {
            return Err(match diagnose(&mut listener, channel).await {
                Ok(Err(why)) => why,
                _ => "none of its heartbeats came back through the session table's trigger".into(),
            });
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
        if heard.apply(&cache, notification.payload())? {
            last_heard = Instant::now();
        }
    }
}

/// What one listener needs to make sense of a notification.
struct Heard<'a> {
    /// The oid of the session table it watches.
    table: &'a str,
    watcher: u64,
    watch: Watch,
    sent: &'a Beats,
}

impl Heard<'_> {
    /// Applies one notification: a change to a session of this table evicts it (`*`, or a
    /// name that is not a digest in hex, which no row the stores write has, flushes);
    /// a heartbeat of this watcher confirms the cache up to when it was sent, and says so with
    /// `true`, if it came from the table watched (an error otherwise); the rest (other tables,
    /// other watchers' heartbeats) is not ours.
    fn apply(&self, cache: &Near, payload: &str) -> Result<bool, String> {
        let Some((source, name)) = payload.split_once(':') else {
            return Ok(false);
        };
        if let Some((from, n)) = probe_of(name) {
            if from != self.watcher {
                return Ok(false);
            }
            if source != self.table {
                return Err("the session table was made again".into());
            }
            if let Some(at) = self.sent.heard(n) {
                cache.confirm(self.watch, at);
            }
            return Ok(true);
        }
        if source == self.table {
            match SessionKey::digest_of_hex(name) {
                Some(name) => cache.evict([name]),
                None => cache.flush(),
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;
    use crate::stores::near::{kept, Name};

    /// A session's name for the tests: `c` repeated.
    fn name(c: u8) -> Name {
        [c; 32]
    }

    /// A notification of a change to the session `name(c)` in the table `table`.
    fn change(table: &str, c: u8) -> String {
        format!("{table}:{}", SessionKey::hex(&name(c)))
    }

    fn filled(names: &[u8]) -> Near {
        let names: Vec<Name> = names.iter().map(|&c| name(c)).collect();
        crate::stores::near::filled(&names, kept())
    }

    fn heard<'a>(sent: &'a Beats, watch: Watch) -> Heard<'a> {
        Heard {
            table: "16400",
            watcher: 7,
            watch,
            sent,
        }
    }

    #[test]
    fn a_change_to_this_table_evicts_its_session() {
        let cache = filled(b"ab");
        let sent = Beats::default();
        let heard = heard(&sent, Watch(0));
        assert_eq!(heard.apply(&cache, &change("16400", b'a')), Ok(false));
        assert!(cache.get(&name(b'a')).is_none());
        assert!(cache.get(&name(b'b')).is_some());
    }

    #[test]
    fn a_truncate_flushes_and_other_tables_are_ignored() {
        let cache = filled(b"ab");
        let sent = Beats::default();
        let heard = heard(&sent, Watch(0));
        assert_eq!(heard.apply(&cache, &change("16500", b'a')), Ok(false));
        assert_eq!(heard.apply(&cache, "garbage"), Ok(false));
        assert!(cache.get(&name(b'a')).is_some());
        assert_eq!(heard.apply(&cache, "16400:*"), Ok(false));
        assert!(cache.get(&name(b'a')).is_none() && cache.get(&name(b'b')).is_none());
    }

    #[test]
    fn a_name_that_is_no_digest_flushes() {
        // No row the stores write has such a key: whatever changed, nothing is kept.
        let hex = SessionKey::hex(&name(b'a'));
        let upper = SessionKey::hex(&[0xab; 32]).to_uppercase();
        for odd in [&hex[1..], &upper, "zz"] {
            let cache = filled(b"ab");
            let sent = Beats::default();
            let heard = heard(&sent, Watch(0));
            assert_eq!(heard.apply(&cache, &format!("16400:{odd}")), Ok(false));
            assert!(cache.get(&name(b'b')).is_none(), "{odd}");
        }
    }

    #[test]
    fn probe_keys_read_back_and_are_never_digests() {
        let key = probe_key(7, 42);
        assert_eq!(probe_of(&key), Some((7, 42)));
        assert_eq!(key.len(), 42, "21 bytes, where a digest has 32");
        assert_eq!(probe_of(&"a".repeat(64)), None);
        assert_eq!(probe_of(&format!("{PROBE}zz")), None);
        assert!(heartbeat_sql("site_sessions", 7, 42).contains("pg_notify(''site_sessions''"));
    }

    #[test]
    fn only_this_watchers_heartbeats_confirm_and_evict_nothing() {
        let cache = Near::new(NonZeroUsize::new(8).unwrap());
        let sent = Beats::default();
        let heard = heard(&sent, cache.watch());
        sent.note(1, Instant::now());
        sent.note(2, Instant::now());
        let ticket = cache.ticket();
        assert_eq!(
            heard.apply(&cache, &format!("16400:{}", probe_key(8, 1))),
            Ok(false)
        );
        assert!(!cache.watching(), "another watcher's heartbeat");
        assert_eq!(
            heard.apply(&cache, &format!("16400:{}", probe_key(7, 0))),
            Ok(true)
        );
        assert!(!cache.watching(), "a heartbeat never sent");
        assert_eq!(
            heard.apply(&cache, &format!("16400:{}", probe_key(7, 2))),
            Ok(true)
        );
        assert!(cache.watching());
        assert_eq!(ticket, None, "nothing was watched before");
        // Heartbeat 1 was passed by 2 (notifications arrive in order): it is forgotten.
        assert_eq!(sent.heard(1), None);
    }

    #[test]
    fn a_heartbeat_from_a_new_table_stops_the_listener() {
        let cache = Near::new(NonZeroUsize::new(8).unwrap());
        let sent = Beats::default();
        let heard = heard(&sent, cache.watch());
        sent.note(1, Instant::now());
        assert!(
            heard
                .apply(&cache, &format!("16500:{}", probe_key(7, 1)))
                .is_err(),
            "the table was made again"
        );
        assert!(!cache.watching());
    }
}
