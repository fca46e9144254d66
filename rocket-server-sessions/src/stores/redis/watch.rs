//! The watcher of a [`NearCached`](crate::stores::NearCached) Redis store: a RESP3 connection
//! with client tracking in broadcast mode on the key prefix, so Redis reports every change to
//! any session (written, deleted, expired or evicted, by anyone), with heartbeats on the same
//! connection (see `near/cache.rs` for the rules).

use std::sync::Weak;
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind, Value};

use crate::stores::near::{keep_watching, Cache, HEARTBEAT};

/// The near cache of a Redis store, by Redis key.
type Near = Cache;

/// Watches the keys under `prefix` for `near`: a RESP3 connection of its own with client
/// tracking in broadcast mode, so Redis reports every change to a key under the prefix
/// (written, deleted, expired or evicted, by anyone) as an invalidation, then heartbeats on it.
/// Reconnects after any failure, flushing the cache; stops when the cache is dropped.
pub(super) async fn watch(
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    near: Weak<Near>,
) {
    keep_watching(near.clone(), "Redis", || async {
        watch_once(&client, &prefix, timeout, &near)
            .await
            .map_err(|e| format!("{e} (client tracking needs Redis 6 or later)"))
    })
    .await;
}

/// One connection's worth of [`watch`]: `Ok` when the cache was dropped, the error otherwise.
async fn watch_once(
    client: &redis::Client,
    prefix: &str,
    timeout: Duration,
    near: &Weak<Near>,
) -> redis::RedisResult<()> {
    let reported = near.clone();
    let on_push = move |push: PushInfo| -> Result<(), ()> {
        let cache = reported.upgrade().ok_or(())?;
        apply(&cache, push);
        Ok(())
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_push_sender(on_push);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(watcher_name(prefix))
        .query_async::<()>(&mut conn)
        .await?;
    let mut tracking = redis::cmd("CLIENT");
    tracking.arg("TRACKING").arg("ON").arg("BCAST");
    if !prefix.is_empty() {
        tracking.arg("PREFIX").arg(prefix);
    }
    tracking.query_async::<()>(&mut conn).await?;
    // Anything kept before now was not watched.
    let watch = match near.upgrade() {
        Some(cache) => cache.watch(),
        None => return Ok(()),
    };
    loop {
        let sent = Instant::now();
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        match near.upgrade() {
            Some(cache) => cache.confirm(watch, sent),
            None => return Ok(()),
        }
        rocket::tokio::time::sleep(HEARTBEAT).await;
    }
}

/// Applies what Redis pushed to the watcher: an invalidation evicts the keys it names (a
/// flush of the database, which names none, flushes); a lost connection stops the cache.
fn apply(cache: &Near, push: PushInfo) {
    match push.kind {
        PushKind::Invalidate => match push.data.first() {
            Some(Value::Array(keys)) => cache.evict(keys.iter().filter_map(|key| match key {
                Value::BulkString(key) => std::str::from_utf8(key).ok(),
                _ => None,
            })),
            _ => cache.flush(),
        },
        PushKind::Disconnection => cache.lost(),
        _ => {}
    }
}

/// The client name of the watcher of `prefix` (`CLIENT LIST` shows it).
pub fn watcher_name(prefix: &str) -> String {
    let printable: String = prefix
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!("session-watch:{printable}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::near::kept;

    fn push(kind: PushKind, data: Vec<Value>) -> PushInfo {
        PushInfo { kind, data }
    }

    fn filled(names: &[&str]) -> Near {
        crate::stores::near::filled(names, kept())
    }

    #[test]
    fn an_invalidation_evicts_the_keys_it_names() {
        let cache = filled(&["p:a", "p:b", "p:c"]);
        let keys = ["p:a", "p:c"]
            .iter()
            .map(|key| Value::BulkString(key.as_bytes().to_vec()))
            .collect();
        apply(&cache, push(PushKind::Invalidate, vec![Value::Array(keys)]));
        assert_eq!(cache.get("p:a"), None);
        assert_eq!(cache.get("p:b"), Some(kept()));
        assert_eq!(cache.get("p:c"), None);
    }

    #[test]
    fn an_invalidation_without_keys_flushes_everything() {
        // What Redis sends after FLUSHDB or FLUSHALL.
        let cache = filled(&["p:a", "p:b"]);
        apply(&cache, push(PushKind::Invalidate, vec![Value::Nil]));
        assert_eq!(cache.len(), 0);
        assert!(cache.watching());
    }

    #[test]
    fn a_lost_connection_stops_the_cache() {
        let cache = filled(&["p:a"]);
        apply(&cache, push(PushKind::Disconnection, vec![]));
        assert!(!cache.watching());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn other_pushes_change_nothing() {
        let cache = filled(&["p:a"]);
        let message = vec![Value::BulkString(b"channel".to_vec())];
        apply(&cache, push(PushKind::Message, message));
        assert_eq!(cache.get("p:a"), Some(kept()));
    }

    #[test]
    fn watcher_names_are_printable() {
        assert_eq!(watcher_name("site:session:"), "session-watch:site:session:");
        assert_eq!(watcher_name("a b\n"), "session-watch:a_b_");
    }
}
