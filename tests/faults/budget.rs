//! PostgreSQL's connection budget: a server never holds more connections than
//! `databases.rango.max_connections` plus the near cache's two, opens one only when every open
//! one is busy, and lets idle ones go; so two servers fit a PostgreSQL that allows exactly
//! their two budgets (a role's `CONNECTION LIMIT`, which PostgreSQL enforces as it enforces its
//! own `max_connections`), under a load of several times that many clients, without a 503.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocket::figment::providers::Serialized;
use sqlx::Connection;
use tempfile::TempDir;

use crate::common::*;
use crate::services::{run_from_drop, unique_name, PgSchema};
use crate::support::say;

/// Each server's `max_connections`.
const MAX: usize = 4;
/// What the near cache adds per server.
const NEAR_CACHE: usize = 2;
/// Concurrent clients per server.
const CLIENTS: usize = 24;
/// Requests per client.
const REQUESTS: usize = 25;

/// A login role of this test alone, allowed `limit` connections; dropped (its connections
/// ended) after the schema it works in.
struct Role {
    admin_url: String,
    name: String,
}

impl Role {
    async fn create(admin_url: &str, schema: &str, limit: usize) -> Role {
        let name = unique_name("budget");
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("PostgreSQL");
        for statement in [
            format!("CREATE ROLE {name} LOGIN CONNECTION LIMIT {limit}"),
            format!("GRANT ALL ON SCHEMA {schema} TO {name}"),
        ] {
            sqlx::query(&statement)
                .execute(&mut conn)
                .await
                .expect("role");
        }
        Role {
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// `url` (of the admin user) as this role, with `application_name` set.
    fn url(&self, url: &str, application: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let rest = rest.split_once('@').map_or(rest, |(_, host)| host);
        let separator = if rest.contains('?') { '&' } else { '?' };
        format!(
            "{scheme}://{}@{rest}{separator}application_name={application}",
            self.name
        )
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let statements = [
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{}'",
                self.name
            ),
            format!("DROP ROLE IF EXISTS {}", self.name),
        ];
        if let Err(e) = run_from_drop(&self.admin_url, &statements) {
            eprintln!("could not drop test role {}: {e}", self.name);
        }
    }
}

/// The role's connections now, by application name (the near cache's watchers name theirs).
async fn connections(admin: &mut sqlx::PgConnection, role: &str) -> HashMap<String, usize> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT application_name, COUNT(*) FROM pg_stat_activity WHERE usename = $1 \
         GROUP BY application_name",
    )
    .bind(role)
    .fetch_all(admin)
    .await
    .expect("pg_stat_activity");
    rows.into_iter()
        .map(|(name, n)| (name, usize::try_from(n).unwrap_or_default()))
        .collect()
}

/// Waits until `servers` hold no connection (10 s at most).
async fn wait_for_idle(admin: &mut sqlx::PgConnection, role: &str, servers: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = connections(admin, role).await;
        let held: usize = servers
            .iter()
            .map(|server| now.get(*server).copied().unwrap_or_default())
            .sum();
        if held == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {held} connections after 10 s idle: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_keep_to_one_connection_budget_under_load() {
    // Declared first, dropped last: after the schema its tables are in.
    let role: Role;
    let Some(schema) = PgSchema::create("connection budget").await else {
        return;
    };
    let admin_url = std::env::var("SESSIONS_TEST_POSTGRES_URL").expect("set: the schema was made");
    let budget = 2 * (MAX + NEAR_CACHE);
    role = Role::create(&admin_url, &schema.name, budget).await;

    let dir = TempDir::new().expect("temp dir");
    let server = |application: &str| {
        figment(&dir, &[])
            .merge(Serialized::global(
                "databases.rango.url",
                role.url(&schema.url(), application),
            ))
            .merge(Serialized::global("databases.rango.max_connections", MAX))
            .merge(Serialized::global("databases.rango.idle_timeout", 1))
            .merge(Serialized::global("rango.visit_interval", 0))
    };
    let a = Arc::new(TestApp::on(server("server_a")).await);
    let b = Arc::new(TestApp::on(server("server_b")).await);
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("PostgreSQL");

    // What the launch opened (migrations, sample data) goes once idle for a second.
    wait_for_idle(&mut admin, &role.name, &["server_a", "server_b"]).await;

    // One visitor at a time: the one the session store keeps, and the pool's for the page's
    // queries: two, as sqlx pings a connection given back before it hands it out again, so a
    // query right after another may get a second one.
    let key = new_key(&a.get("/rango/").await);
    for _ in 0..20 {
        assert_eq!(a.get_with("/rango/", &key).await.status().code, 200);
    }
    let sequential = connections(&mut admin, &role.name).await;
    let held = sequential.get("server_a").copied().unwrap_or_default();
    assert!(
        held <= 3,
        "one visitor at a time held {held}: {sequential:?}"
    );

    // Many clients on both servers at once, sampled as they go.
    let done = Arc::new(AtomicBool::new(false));
    let peak: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let sampler = {
        let (done, peak, name) = (done.clone(), peak.clone(), role.name.clone());
        let mut sampling = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("PostgreSQL");
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let now = connections(&mut sampling, &name).await;
                let total = now.values().sum::<usize>();
                {
                    let mut peak = peak.lock().expect("peak");
                    for (name, n) in now {
                        let entry = peak.entry(name).or_default();
                        *entry = (*entry).max(n);
                    }
                    let entry = peak.entry("(all)".into()).or_default();
                    *entry = (*entry).max(total);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..2 * CLIENTS {
        let app = if client % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        clients.spawn(async move {
            let mut statuses = Vec::new();
            let mut key: Option<String> = None;
            for _ in 0..REQUESTS {
                let response = match &key {
                    Some(key) => app.get_with("/rango/", key).await,
                    None => app.get("/rango/").await,
                };
                statuses.push(response.status().code);
                if let Some(set) = session_set_cookie(&response) {
                    key = Some(cookie_value(&set));
                }
            }
            statuses
        });
    }
    let mut answers: HashMap<u16, usize> = HashMap::new();
    while let Some(statuses) = clients.join_next().await {
        for status in statuses.expect("a client") {
            *answers.entry(status).or_default() += 1;
        }
    }
    done.store(true, Ordering::Relaxed);
    sampler.await.expect("the sampler");
    let peak = peak.lock().expect("peak").clone();
    say(&format!(
        "connection budget: {} requests from {} clients on two servers: {answers:?}; \
         peak connections {peak:?} (each server's max_connections {MAX}, role limit {budget})",
        2 * CLIENTS * REQUESTS,
        2 * CLIENTS
    ));
    assert_eq!(
        answers.get(&200),
        Some(&(2 * CLIENTS * REQUESTS)),
        "{answers:?}"
    );
    for server in ["server_a", "server_b"] {
        let held = peak.get(server).copied().unwrap_or_default();
        assert!(held <= MAX, "{server} held {held} connections: {peak:?}");
    }

    // Idle, each lets its connections go (idle_timeout = 1 s).
    wait_for_idle(&mut admin, &role.name, &["server_a", "server_b"]).await;
    // Shut both down (their pools closed) before the runtime ends: a pool left open to the end
    // once kept sqlx's idle reaper spinning through the runtime's shutdown, and the test hung.
    for app in [a, b] {
        let app = Arc::try_unwrap(app).unwrap_or_else(|_| panic!("a client is still in use"));
        app.client.terminate().await;
    }
}

#[tokio::test]
async fn a_postgresql_pool_of_one_connection_is_refused_at_launch() {
    let Some(schema) = PgSchema::create("a pool of one").await else {
        return;
    };
    let dir = TempDir::new().expect("temp dir");
    let launch = |max: usize| {
        let figment = figment(&dir, &[])
            .merge(Serialized::global("databases.rango.url", schema.url()))
            .merge(Serialized::global("databases.rango.max_connections", max));
        async move {
            match rango::rocket_with(figment).ignite().await {
                Ok(_) => true,
                // Reading the error marks it handled (Rocket panics on dropping an unread one).
                Err(e) => !matches!(e.kind(), rocket::error::ErrorKind::FailedFairings(_)),
            }
        }
    };
    // With one, the session store would keep it and the pages' queries would wait for it.
    assert!(!launch(1).await, "a pool of one connection launched");
    assert!(launch(2).await, "a pool of two connections did not launch");
}
