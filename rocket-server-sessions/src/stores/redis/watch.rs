//! The watcher of a [`NearCached`](crate::stores::NearCached) Redis store: a RESP3 connection
//! with client tracking in broadcast mode on the key prefix, so Redis reports every change to
//! any session (written, deleted, expired or evicted, by anyone).
//!
//! Its heartbeats are changes too (see `near/cache.rs`): every [`HEARTBEAT`] the store's own
//! connection, the one its saves take, writes and deletes a key of the watcher's own under the
//! prefix (`<prefix>watch:<watcher>:<n>`, in one `MULTI`, so no reader ever sees it), and the
//! cache is confirmed when Redis's invalidation of that key comes back to the watcher. A
//! watcher whose tracking misses the sessions' keys misses its heartbeats too. A watcher that
//! hears none of them for [`SILENCE`] is opened again on a new connection.
//!
//! A session's key is the prefix and its key's digest in hex (what the cache names it by, read
//! back); any other key under the prefix (a heartbeat, a user's set of sessions) evicts nothing.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::{PushInfo, PushKind, Value};

use crate::key::SessionKey;
use crate::stores::near::{keep_watching, Beats, Cache, Name, Watch, HEARTBEAT, SILENCE};

/// The near cache of a Redis store.
type Near = Cache;

/// What a heartbeat's key holds after the prefix, before `<watcher>:<n>`.
const PROBE: &str = "watch:";

/// One connection's heartbeats: whose they are, which were sent, and the watch they confirm.
struct Probes {
    /// The key of heartbeat `n` is `<prefix>watch:<watcher>:<n>`.
    key_start: String,
    sent: Beats,
    watch: OnceLock<Watch>,
    /// When one of them last came back.
    heard: Mutex<Option<Instant>>,
}

impl Probes {
    fn new(prefix: &str) -> Self {
        Probes {
            key_start: format!("{prefix}{PROBE}{:016x}:", rand::random::<u64>()),
            sent: Beats::default(),
            watch: OnceLock::new(),
            heard: Mutex::new(None),
        }
    }

    fn key(&self, n: u64) -> String {
        format!("{}{n}", self.key_start)
    }

    /// Whether one of them came back within [`SILENCE`].
    fn lately(&self) -> bool {
        let heard = self.heard.lock().unwrap_or_else(PoisonError::into_inner);
        heard.is_some_and(|at| at.elapsed() < SILENCE)
    }

    /// The number of this watcher's heartbeat whose key is `key`, if it is one.
    fn number(&self, key: &str) -> Option<u64> {
        key.strip_prefix(self.key_start.as_str())?.parse().ok()
    }
}

/// Whether `key`, under `prefix`, is a heartbeat's (any watcher's): no session is named so.
fn is_probe(prefix: &str, key: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with(PROBE))
}

/// The name of the session whose Redis key is `key`, if it is one: `prefix` and 64 lowercase
/// hex digits.
fn session_of(prefix: &str, key: &str) -> Option<Name> {
    SessionKey::digest_of_hex(key.strip_prefix(prefix)?)
}

/// Watches the keys under `prefix` for `near`: a RESP3 connection of its own with client
/// tracking in broadcast mode, so Redis reports every change to a key under the prefix
/// (written, deleted, expired or evicted, by anyone) as an invalidation, and heartbeats written
/// through `store`, the store's own connection. Reconnects after any failure, flushing the
/// cache; stops when the cache is dropped.
pub(super) async fn watch(
    client: redis::Client,
    store: ConnectionManager,
    prefix: String,
    timeout: Duration,
    near: Weak<Near>,
) {
    keep_watching(near.clone(), "Redis", || async {
        watch_once(&client, &store, &prefix, timeout, &near).await
    })
    .await;
}

/// One connection's worth of [`watch`]: `Ok` when the cache was dropped, why otherwise.
async fn watch_once(
    client: &redis::Client,
    store: &ConnectionManager,
    prefix: &str,
    timeout: Duration,
    near: &Weak<Near>,
) -> Result<(), String> {
    let probes = Arc::new(Probes::new(prefix));
    let reported = near.clone();
    let (on_prefix, heard) = (prefix.to_owned(), Arc::clone(&probes));
    let on_push = move |push: PushInfo| -> Result<(), ()> {
        let cache = reported.upgrade().ok_or(())?;
        apply(&cache, &on_prefix, &heard, push);
        Ok(())
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_push_sender(on_push);
    let tracking = |e: redis::RedisError| format!("{e} (client tracking needs Redis 6 or later)");
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(tracking)?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(watcher_name(prefix))
        .query_async::<()>(&mut conn)
        .await
        .map_err(tracking)?;
    let mut track = redis::cmd("CLIENT");
    track.arg("TRACKING").arg("ON").arg("BCAST");
    if !prefix.is_empty() {
        track.arg("PREFIX").arg(prefix);
    }
    track.query_async::<()>(&mut conn).await.map_err(tracking)?;
    // Anything kept before now was not watched.
    match near.upgrade() {
        Some(cache) => {
            let _ = probes.watch.set(cache.watch());
        }
        None => return Ok(()),
    }
    let started = Instant::now();
    let mut n: u64 = 0;
    loop {
        n += 1;
        probes.sent.note(n, Instant::now());
        let key = probes.key(n);
        let beat = redis::pipe()
            .atomic()
            .set(&key, 1)
            .ignore()
            .del(&key)
            .ignore()
            .query_async::<()>(&mut store.clone())
            .await;
        if let Err(e) = beat {
            log::debug!("session near cache heartbeat failed: {e}");
        }
        // The watcher's own connection answers too, or is opened again.
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if near.strong_count() == 0 {
            return Ok(());
        }
        if started.elapsed() > SILENCE && !probes.lately() {
            return Err("none of its heartbeats came back through client tracking".into());
        }
        rocket::tokio::time::sleep(HEARTBEAT).await;
    }
}

/// Applies what Redis pushed to the watcher: an invalidation evicts the sessions it names (a
/// flush of the database, which names none, flushes) and confirms the cache for this watcher's
/// heartbeats among them; a lost connection stops the cache.
fn apply(cache: &Near, prefix: &str, probes: &Probes, push: PushInfo) {
    match push.kind {
        PushKind::Invalidate => match push.data.first() {
            Some(Value::Array(keys)) => {
                let keys = keys.iter().filter_map(|key| match key {
                    Value::BulkString(key) => std::str::from_utf8(key).ok(),
                    _ => None,
                });
                let (probe_keys, others): (Vec<&str>, Vec<&str>) =
                    keys.partition(|key| is_probe(prefix, key));
                let sessions: Vec<Name> = others
                    .iter()
                    .filter_map(|key| session_of(prefix, key))
                    .collect();
                if !sessions.is_empty() {
                    cache.evict(sessions);
                }
                // After the evictions: a heartbeat confirms what came before it.
                let newest = probe_keys.iter().filter_map(|key| probes.number(key)).max();
                if let (Some(n), Some(watch)) = (newest, probes.watch.get()) {
                    if let Some(at) = probes.sent.heard(n) {
                        cache.confirm(*watch, at);
                        *probes.heard.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(Instant::now());
                    }
                }
            }
            _ => cache.flush(),
        },
        PushKind::Disconnection => cache.lost(),
        _ => {}
    }
}

/// The client name of the watcher of `prefix` (`CLIENT LIST` shows it).
pub(crate) fn watcher_name(prefix: &str) -> String {
    let printable: String = prefix
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!("session-watch:{printable}")
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;
    use crate::stores::near::kept;

    fn push(kind: PushKind, data: Vec<Value>) -> PushInfo {
        PushInfo { kind, data }
    }

    fn invalidate(keys: &[&str]) -> PushInfo {
        let keys = keys
            .iter()
            .map(|key| Value::BulkString(key.as_bytes().to_vec()))
            .collect();
        push(PushKind::Invalidate, vec![Value::Array(keys)])
    }

    /// A session's name for the tests: `c` repeated.
    fn name(c: u8) -> Name {
        [c; 32]
    }

    /// The Redis key of the session `name(c)` under the prefix `p:`.
    fn key(c: u8) -> String {
        format!("p:{}", SessionKey::hex(&name(c)))
    }

    fn filled(names: &[u8]) -> Near {
        let names: Vec<Name> = names.iter().map(|&c| name(c)).collect();
        crate::stores::near::filled(&names, kept())
    }

    #[test]
    fn an_invalidation_evicts_the_keys_it_names() {
        let cache = filled(b"abc");
        apply(
            &cache,
            "p:",
            &Probes::new("p:"),
            invalidate(&[&key(b'a'), &key(b'c')]),
        );
        assert_eq!(cache.get(&name(b'a')), None);
        assert_eq!(cache.get(&name(b'b')), Some(kept()));
        assert_eq!(cache.get(&name(b'c')), None);
    }

    #[test]
    fn keys_read_back_as_names_and_other_keys_name_no_session() {
        let hex = SessionKey::hex(&name(b'a'));
        assert_eq!(session_of("p:", &key(b'a')), Some(name(b'a')));
        assert_eq!(session_of("", &hex), Some(name(b'a')), "an empty prefix");
        for other in [
            format!("q:{hex}"),         // another prefix
            format!("p:{}", &hex[1..]), // too short
            format!("p:{hex}0"),        // too long
            format!("p:{}", SessionKey::hex(&[0xab; 32]).to_uppercase()),
            "p:user:ann".to_owned(),  // a user's set of sessions
            Probes::new("p:").key(1), // a heartbeat
        ] {
            assert_eq!(session_of("p:", &other), None, "{other}");
        }
        // A key that names no session evicts nothing, and takes no fill's ticket away.
        let cache = filled(b"a");
        let ticket = cache.ticket().expect("watching");
        apply(
            &cache,
            "p:",
            &Probes::new("p:"),
            invalidate(&["p:user:ann", &format!("q:{hex}")]),
        );
        assert_eq!(cache.get(&name(b'a')), Some(kept()));
        cache.fill(name(b'b'), kept(), ticket);
        assert_eq!(cache.get(&name(b'b')), Some(kept()));
    }

    #[test]
    fn an_invalidation_without_keys_flushes_everything() {
        // What Redis sends after FLUSHDB or FLUSHALL.
        let cache = filled(b"ab");
        let nil = push(PushKind::Invalidate, vec![Value::Nil]);
        apply(&cache, "p:", &Probes::new("p:"), nil);
        assert_eq!(cache.len(), 0);
        assert!(cache.watching());
    }

    #[test]
    fn a_lost_connection_stops_the_cache() {
        let cache = filled(b"a");
        let lost = push(PushKind::Disconnection, vec![]);
        apply(&cache, "p:", &Probes::new("p:"), lost);
        assert!(!cache.watching());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn other_pushes_change_nothing() {
        let cache = filled(b"a");
        let message = vec![Value::BulkString(b"channel".to_vec())];
        apply(
            &cache,
            "p:",
            &Probes::new("p:"),
            push(PushKind::Message, message),
        );
        assert_eq!(cache.get(&name(b'a')), Some(kept()));
    }

    #[test]
    fn only_this_watchers_heartbeats_confirm_and_heartbeats_evict_nothing() {
        let cache = Near::new(NonZeroUsize::new(8).unwrap());
        let probes = Probes::new("p:");
        let _ = probes.watch.set(cache.watch());
        probes.sent.note(1, Instant::now());
        probes.sent.note(2, Instant::now());
        let other = Probes::new("p:");
        apply(&cache, "p:", &probes, invalidate(&[&other.key(2)]));
        assert!(!cache.watching(), "another watcher's heartbeat");
        assert!(!probes.lately());
        apply(
            &cache,
            "p:",
            &probes,
            invalidate(&[&key(b'a'), &probes.key(2)]),
        );
        assert!(cache.watching());
        assert!(probes.lately());
        // Heartbeat 1 was passed by 2: it is forgotten.
        assert_eq!(probes.sent.heard(1), None);
        // A heartbeat is no session: it takes no fill's ticket away.
        let ticket = cache.ticket().expect("watching");
        probes.sent.note(3, Instant::now());
        apply(&cache, "p:", &probes, invalidate(&[&probes.key(3)]));
        cache.fill(name(b's'), kept(), ticket);
        assert_eq!(cache.get(&name(b's')), Some(kept()));
        assert!(is_probe("p:", &probes.key(3)) && !is_probe("p:", &key(b's')));
    }

    #[test]
    fn a_ping_alone_confirms_nothing() {
        // What the watcher's PING proves (its connection answers) is not a heartbeat.
        let cache = Near::new(NonZeroUsize::new(8).unwrap());
        let probes = Probes::new("p:");
        let _ = probes.watch.set(cache.watch());
        probes.sent.note(1, Instant::now());
        let pong = push(PushKind::Other("pong".into()), vec![]);
        apply(&cache, "p:", &probes, pong);
        assert!(!cache.watching());
    }

    #[test]
    fn watcher_names_are_printable() {
        assert_eq!(watcher_name("site:session:"), "session-watch:site:session:");
        assert_eq!(watcher_name("a b\n"), "session-watch:a_b_");
    }
}
