//! Several instances behind a load balancer: two Rocket instances share one store, and a
//! browser-like client alternating between them keeps one session.

use crate::common::*;
use crate::services::{PgSchema, RedisPrefix};
use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use serde_json::json;
use tempfile::TempDir;

/// Two instances on `figment`, a client alternating between them: the visit count goes on
/// from one to the other, and a flush on one ends the session on both.
async fn one_session_across_two_instances(figment: Figment) {
    let figment = figment.merge(Serialized::global("rango.visit_interval", 0));
    let a = TestApp::on(figment.clone()).await;
    let b = TestApp::on(figment).await;
    // Time for the near caches of Redis (and the PostgreSQL store) to start watching, so that
    // the visits below go through them.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let response = a.get("/rango/").await;
    let key = new_key(&response);
    assert_eq!(visits(&response.into_string().await.expect("body")), 1);
    for n in 2..=6 {
        let instance = if n % 2 == 0 { &b } else { &a };
        let response = instance.get_with("/rango/", &key).await;
        assert_eq!(new_key(&response), key, "the same session on both");
        assert_eq!(visits(&response.into_string().await.expect("body")), n);
    }
    // Different keys changed on both instances at once are both kept.
    let (ra, rb) = tokio::join!(
        a.request_with("/t/slow_set/from_a/1/100", &key).dispatch(),
        b.request_with("/t/slow_set/from_b/2/100", &key).dispatch(),
    );
    assert_eq!((ra.status().code, rb.status().code), (200, 200));
    let info = info_of(a.get_with("/t/info", &key).await).await;
    assert_eq!(info["contains_a"], json!(false));
    let keys = info["keys"].as_array().expect("keys").clone();
    assert!(
        keys.contains(&json!("from_a")) && keys.contains(&json!("from_b")),
        "{keys:?}"
    );

    // Logged out on A: gone on B too, as soon as B's near cache has heard of it (it is told
    // on a connection of its own, so the test waits for it as a second visitor would).
    a.get_with("/t/flush", &key).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let body = b.get_with("/t/get/visits", &key).await.into_string().await;
        if body.as_deref() == Some("none") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B still has the session: {body:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let response = b.get_with("/rango/", &key).await;
    assert_ne!(new_key(&response), key, "B starts a new session");
    assert_eq!(visits(&response.into_string().await.expect("body")), 1);
}

fn local_sqlite(dir: &TempDir) -> Figment {
    figment(dir, &[])
}

#[tokio::test]
async fn two_instances_sharing_postgresql_keep_one_session() {
    let Some(schema) = PgSchema::create("two_instances_sharing_postgresql").await else {
        return;
    };
    let dir = TempDir::new().expect("temp dir");
    let figment = local_sqlite(&dir).merge(Serialized::global("databases.rango.url", schema.url()));
    one_session_across_two_instances(figment).await;
}

#[tokio::test]
async fn two_instances_sharing_redis_keep_one_session() {
    let Some(redis) = RedisPrefix::create("two_instances_sharing_redis") else {
        return;
    };
    // Each instance has a database of its own: only the sessions are shared.
    let dir = TempDir::new().expect("temp dir");
    let figment = local_sqlite(&dir)
        .merge(Serialized::global("session.backend", "cache"))
        .merge(Serialized::global("session.redis.url", &redis.url))
        .merge(Serialized::global(
            "session.redis.key_prefix",
            &redis.prefix,
        ));
    one_session_across_two_instances(figment).await;
}

#[tokio::test]
async fn two_instances_sharing_redis_in_front_of_postgresql_keep_one_session() {
    let Some(schema) = PgSchema::create("two_instances_sharing_cached_db").await else {
        return;
    };
    let Some(redis) = RedisPrefix::create("two_instances_sharing_cached_db") else {
        return;
    };
    let dir = TempDir::new().expect("temp dir");
    let figment = local_sqlite(&dir)
        .merge(Serialized::global("databases.rango.url", schema.url()))
        .merge(Serialized::global("session.backend", "cached_db"))
        .merge(Serialized::global("session.redis.url", &redis.url))
        .merge(Serialized::global(
            "session.redis.key_prefix",
            &redis.prefix,
        ));
    one_session_across_two_instances(figment).await;
}

/// How soon after a server reaches Redis again another server serves what it saved while it
/// could not (README: "Stores", cached_db).
const CONSISTENT_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

#[tokio::test]
async fn cached_db_servers_agree_within_a_bound_after_one_loses_redis_while_saving() {
    let Some(schema) = PgSchema::create("cached_db_cut_from_redis").await else {
        return;
    };
    let Some(redis) = RedisPrefix::create("cached_db_cut_from_redis") else {
        return;
    };
    // A reaches Redis through a proxy the test cuts; B directly.
    let target = redis
        .url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .expect("host:port")
        .to_owned();
    let proxy = crate::support::Proxy::start(&target);
    let dir = TempDir::new().expect("temp dir");
    let shared = local_sqlite(&dir)
        .merge(Serialized::global("databases.rango.url", schema.url()))
        .merge(Serialized::global("session.backend", "cached_db"))
        .merge(Serialized::global(
            "session.redis.key_prefix",
            &redis.prefix,
        ));
    let a = TestApp::on(shared.clone().merge(Serialized::global(
        "session.redis.url",
        format!("redis://{}/0", proxy.address()),
    )))
    .await;
    let b = TestApp::on(shared.merge(Serialized::global("session.redis.url", &redis.url))).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let key = new_key(&a.get("/t/set/v/1").await);
    assert_eq!(
        value_of(&b, &key).await,
        "\"1\"",
        "B has it, and keeps it near"
    );

    // Cut from Redis, A saves to the database alone (its copy fails), and says so.
    proxy.cut();
    assert_eq!(a.get_with("/t/set/v/2", &key).await.status().code, 200);
    assert_eq!(value_of(&a, &key).await, "\"2\"");
    // Redis is back, but A leaves it alone for a few seconds after the failure: this save's
    // copy is skipped.
    proxy.restore();
    assert_eq!(a.get_with("/t/set/v/3", &key).await.status().code, 200);
    let took = until_served(&b, &key, "\"3\"").await;
    crate::support::say(&format!(
        "cached_db: B served A's save {took:?} after the restore"
    ));
    assert!(took < CONSISTENT_WITHIN, "{took:?}");

    // A logout on A while it is cut off: once A reaches Redis again, B ends the session too.
    proxy.cut();
    assert_eq!(a.get_with("/t/flush", &key).await.status().code, 200);
    proxy.restore();
    let took = until_served(&b, &key, "none").await;
    crate::support::say(&format!(
        "cached_db: B ended the session {took:?} after the restore"
    ));
    assert!(took < CONSISTENT_WITHIN, "{took:?}");
    // Buried, not only dropped: a load that read the database before the logout cannot copy
    // the session back into Redis.
    let name = format!(
        "{}{}",
        redis.prefix,
        rocket_server_sessions::store::SessionKey::parse(&key)
            .expect("a key")
            .digest_hex()
    );
    let mut conn = redis.connection().expect("Redis");
    let version: Option<i64> = redis::cmd("HGET")
        .arg(&name)
        .arg("v")
        .query(&mut conn)
        .expect("HGET");
    assert_eq!(version, Some(-1), "a tombstone");
}

/// The session value `v` that `app` serves for `key`.
async fn value_of(app: &TestApp, key: &str) -> String {
    let response = app.get_with("/t/get/v", key).await;
    response.into_string().await.unwrap_or_default()
}

/// How long until `app` serves `expected` as the value `v` of `key` (10 s at most).
async fn until_served(app: &TestApp, key: &str, expected: &str) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        let seen = value_of(app, key).await;
        if seen == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "still {seen} instead of {expected} after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
