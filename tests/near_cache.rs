//! The near cache in front of Redis (`src/session/stores/near.rs`), with two stores on one
//! Redis standing for two servers: a load of an unchanged session asks Redis nothing, and a
//! change made anywhere else (another server, a raw command, the watcher's connection lost
//! meanwhile) is never served stale.

mod services;

use std::future::Future;
use std::time::{Duration, Instant};

use rango::session::stores::RedisStore;
use rango::session::{Data, Record, SessionStore};
use serde_json::json;
use services::RedisPrefix;
use time::OffsetDateTime;

/// Longer than the near cache's `MAX_LAG` (1 s) with room for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(5);

fn data(visits: i64) -> Data {
    match json!({ "visits": visits }) {
        serde_json::Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn in_an_hour() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::hours(1)
}

/// Waits until `done` holds, for `PATIENCE` at most; false if it never did.
async fn eventually<F: Future<Output = bool>>(mut done: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// A store whose near cache is watching, and a session in it, loaded once (so cached).
async fn watching_store_with_a_session(prefix: &RedisPrefix) -> (RedisStore, String) {
    let store = prefix.store(true).await;
    assert!(
        eventually(|| async { store.near_cache_watching() }).await,
        "the near cache starts watching Redis"
    );
    let (id, _) = store.create(&data(1), in_an_hour()).await.expect("created");
    assert!(store.load(&id).await.expect("loads").is_some());
    (store, id)
}

async fn visits(store: &RedisStore, id: &str) -> Option<i64> {
    let record = store.load(id).await.expect("loads")?;
    record
        .data
        .get("visits")
        .and_then(serde_json::Value::as_i64)
}

fn watcher_ids(prefix: &RedisPrefix, conn: &mut redis::Connection) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(conn)
        .expect("CLIENT LIST answers");
    let name = format!("name=rango-session-watch:{}", prefix.prefix);
    list.lines()
        .filter(|line| line.split(' ').any(|field| field == name))
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn an_unchanged_session_is_loaded_from_the_near_cache() {
    let Some(prefix) = RedisPrefix::create("near cache hits") else {
        return;
    };
    let (store, id) = watching_store_with_a_session(&prefix).await;
    let before = store.near_cache_hits();
    for _ in 0..10 {
        assert_eq!(visits(&store, &id).await, Some(1));
    }
    assert_eq!(store.near_cache_hits() - before, 10);

    let without = prefix.store(false).await;
    assert_eq!(visits(&without, &id).await, Some(1));
    assert_eq!(visits(&without, &id).await, Some(1));
    assert_eq!(without.near_cache_hits(), 0);
    assert!(!without.near_cache_watching());
}

#[tokio::test]
async fn this_servers_own_writes_are_seen_at_once() {
    let Some(prefix) = RedisPrefix::create("near cache own writes") else {
        return;
    };
    let (store, id) = watching_store_with_a_session(&prefix).await;
    let record = store.load(&id).await.expect("loads").expect("live");
    let saved = Record {
        data: data(2),
        ..record
    };
    assert!(store.update(&id, &saved).await.expect("saves").is_some());
    assert_eq!(
        visits(&store, &id).await,
        Some(2),
        "no wait for Redis's report"
    );
    store.delete(&id).await.expect("deletes");
    assert_eq!(visits(&store, &id).await, None, "a logout is seen at once");
}

#[tokio::test]
async fn another_servers_update_and_logout_are_seen() {
    let Some(prefix) = RedisPrefix::create("near cache other server") else {
        return;
    };
    let (a, id) = watching_store_with_a_session(&prefix).await;
    let b = prefix.store(true).await;
    let record = b.load(&id).await.expect("loads").expect("live");
    let saved = Record {
        data: data(2),
        ..record
    };
    assert!(b.update(&id, &saved).await.expect("saves").is_some());
    assert!(
        eventually(|| async { visits(&a, &id).await == Some(2) }).await,
        "server A sees B's update"
    );
    // A caches the new version again, then B logs the visitor out.
    assert_eq!(visits(&a, &id).await, Some(2));
    b.delete(&id).await.expect("deletes");
    assert!(
        eventually(|| async { visits(&a, &id).await.is_none() }).await,
        "server A sees B's logout"
    );
}

#[tokio::test]
async fn a_change_made_outside_any_store_is_seen() {
    let Some(prefix) = RedisPrefix::create("near cache raw change") else {
        return;
    };
    let (store, id) = watching_store_with_a_session(&prefix).await;
    let mut conn = prefix.connection().expect("a connection");
    let keys = prefix.keys_on(&mut conn).expect("keys");
    assert_eq!(keys.len(), 1);
    redis::cmd("DEL")
        .arg(&keys[0])
        .query::<()>(&mut conn)
        .expect("DEL");
    assert!(
        eventually(|| async { visits(&store, &id).await.is_none() }).await,
        "a session deleted by hand is gone"
    );
}

#[tokio::test]
async fn changes_made_while_the_watcher_was_away_are_not_served() {
    let Some(prefix) = RedisPrefix::create("near cache lost watcher") else {
        return;
    };
    let (a, id) = watching_store_with_a_session(&prefix).await;
    assert_eq!(visits(&a, &id).await, Some(1));
    let mut conn = prefix.connection().expect("a connection");
    let watchers = watcher_ids(&prefix, &mut conn);
    assert_eq!(watchers.len(), 1, "one watcher for the prefix");
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&watchers[0])
        .query::<()>(&mut conn)
        .expect("CLIENT KILL");
    assert!(
        eventually(|| async { !a.near_cache_watching() }).await,
        "the cache notices its watcher is gone"
    );
    // Changed while nobody watched for A: A must not serve its old copy once it watches again.
    let b = prefix.store(false).await;
    let record = b.load(&id).await.expect("loads").expect("live");
    let saved = Record {
        data: data(5),
        ..record
    };
    assert!(b.update(&id, &saved).await.expect("saves").is_some());
    assert!(
        eventually(|| async { a.near_cache_watching() }).await,
        "the watcher reconnects"
    );
    assert_ne!(watcher_ids(&prefix, &mut conn), watchers);
    assert_eq!(visits(&a, &id).await, Some(5));
    // Watching again, it caches again.
    let hits = a.near_cache_hits();
    assert_eq!(visits(&a, &id).await, Some(5));
    assert!(a.near_cache_hits() > hits);
}

#[tokio::test]
async fn an_expired_session_is_not_served_from_the_near_cache() {
    let Some(prefix) = RedisPrefix::create("near cache expiry") else {
        return;
    };
    let store = prefix.store(true).await;
    assert!(eventually(|| async { store.near_cache_watching() }).await);
    let expires = OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let (id, _) = store.create(&data(1), expires).await.expect("created");
    assert_eq!(visits(&store, &id).await, Some(1));
    let hits = store.near_cache_hits();
    assert_eq!(visits(&store, &id).await, Some(1));
    assert!(store.near_cache_hits() > hits, "cached while live");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(visits(&store, &id).await, None);
}
