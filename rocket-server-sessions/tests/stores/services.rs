//! The real services some tests need (PostgreSQL, Redis), found through environment variables
//! that `.ci/run` sets: `SESSIONS_TEST_POSTGRES_URL` and `SESSIONS_TEST_REDIS_URL`.
//!
//! Without a variable, a test that needs the service says it was skipped and passes (a laptop
//! without PostgreSQL still runs `cargo test`); with `CI` set, a missing service fails it.
//! Every test gets its own PostgreSQL schema and its own Redis key prefix, so tests never
//! collide, and cleans up after itself.
#![allow(dead_code)] // each test crate uses a different part of this module

use rand::distributions::{Alphanumeric, DistString};

/// Whether this run is CI, where every service must be there.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The URL in `var`, or `None` (after saying the test is skipped) when it is unset outside CI.
///
/// # Panics
/// When `CI` is set and `var` is not: CI must never skip silently.
pub fn service_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if in_ci() => panic!("{test}: CI is set but {var} is not: the service is required"),
        _ => {
            say_skipped_once(var, test);
            None
        }
    }
}

/// Says once per test binary and service that its tests are skipped, on the real stderr (the
/// test harness captures `eprintln!` of passing tests, and a skip must be seen).
fn say_skipped_once(var: &str, test: &str) {
    use std::collections::HashSet;
    use std::io::Write;
    use std::sync::Mutex;
    static SAID: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut said = SAID
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if said.get_or_insert_with(HashSet::new).insert(var.to_owned()) {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {test} and every other test needing {var}: it is not set (.ci/run sets it)"
        );
    }
}

/// A short random name for a schema or key prefix of this test alone.
pub fn unique_name(prefix: &str) -> String {
    let suffix = Alphanumeric
        .sample_string(&mut rand::thread_rng(), 12)
        .to_lowercase();
    format!("{prefix}_{suffix}")
}

/// A PostgreSQL schema of this test alone, dropped with everything in it when dropped.
pub struct PgSchema {
    base_url: String,
    pub name: String,
}

impl PgSchema {
    /// Creates a fresh schema in the database of `SESSIONS_TEST_POSTGRES_URL`.
    pub async fn create(test: &str) -> Option<PgSchema> {
        let base_url = service_url("SESSIONS_TEST_POSTGRES_URL", test)?;
        let name = unique_name("session_test");
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base_url)
            .await
            .expect("SESSIONS_TEST_POSTGRES_URL reachable");
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .expect("create schema");
        Some(PgSchema { base_url, name })
    }

    /// The URL whose connections work in this schema.
    pub fn url(&self) -> String {
        let separator = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base_url, self.name
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let drop_schema = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        if run_from_drop(&self.base_url, &[drop_schema]).is_err() {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}

/// Runs `statements` on the database at `url`, one after the other, from a `Drop`: on a
/// thread and runtime of its own, outside any runtime that could be blocked on.
///
/// # Errors
/// The first statement that fails, or the connection.
pub fn run_from_drop(url: &str, statements: &[String]) -> Result<(), String> {
    let (url, statements) = (url.to_owned(), statements.to_vec());
    let ran = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            for statement in &statements {
                sqlx::query(statement)
                    .execute(&mut conn)
                    .await
                    .map_err(|e| format!("{statement}: {e}"))?;
            }
            Ok(())
        })
    })
    .join();
    ran.unwrap_or_else(|_| Err("the thread panicked".into()))
}

/// A Redis key prefix of this test alone; its keys are deleted when dropped.
pub struct RedisPrefix {
    pub url: String,
    pub prefix: String,
}

impl RedisPrefix {
    /// A fresh prefix on the server of `SESSIONS_TEST_REDIS_URL`.
    pub fn create(test: &str) -> Option<RedisPrefix> {
        let url = service_url("SESSIONS_TEST_REDIS_URL", test)?;
        Some(RedisPrefix {
            url,
            prefix: format!("{}:", unique_name("session_test")),
        })
    }
}

impl RedisPrefix {
    /// The Redis key of the session `id` under this prefix: the prefix and the key's digest in
    /// hex.
    pub fn key_of(&self, id: &str) -> String {
        let key = rocket_server_sessions::store::SessionKey::parse(id).expect("a session key");
        format!("{}{}", self.prefix, key.digest_hex())
    }

    /// A connection to the server.
    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url.as_str()).and_then(|client| client.get_connection())
    }

    /// The keys under this prefix, on `conn`.
    pub fn keys_on(&self, conn: &mut redis::Connection) -> redis::RedisResult<Vec<String>> {
        redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(conn)
    }

    /// The client ids of the near caches' watchers of this prefix (`CLIENT LIST`).
    #[allow(dead_code)] // not every test binary watches
    pub fn watchers(&self) -> Vec<String> {
        let mut conn = self.connection().expect("a connection");
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut conn)
            .expect("CLIENT LIST answers");
        let name = format!("name=session-watch:{}", self.prefix);
        list.lines()
            .filter(|line| line.split(' ').any(|field| field == name))
            .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
            .map(str::to_owned)
            .collect()
    }

    /// Closes the client connection `id` (`CLIENT KILL`), as a failing network would.
    #[allow(dead_code)] // not every test binary kills clients
    pub fn kill_client(&self, id: &str) {
        let mut conn = self.connection().expect("a connection");
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query::<()>(&mut conn)
            .expect("CLIENT KILL");
    }

    /// A Redis store under this prefix.
    #[allow(dead_code)] // not every test binary builds stores
    pub async fn store(&self) -> rocket_server_sessions::stores::RedisStore {
        rocket_server_sessions::stores::RedisStore::connect(
            &rocket_server_sessions::stores::RedisConfig {
                url: self.url.clone(),
                key_prefix: self.prefix.clone(),
                timeout_ms: 2000,
            },
        )
        .await
        .expect("Redis answers")
    }

    /// The keys under this prefix.
    #[allow(dead_code)] // not every test binary lists keys
    pub fn keys(&self) -> Vec<String> {
        self.connection()
            .and_then(|mut conn| self.keys_on(&mut conn))
            .expect("the keys in Redis")
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let cleaned = self.connection().and_then(|mut conn| {
            let keys = self.keys_on(&mut conn)?;
            if keys.is_empty() {
                return Ok(());
            }
            redis::cmd("DEL").arg(keys).query::<()>(&mut conn)
        });
        if let Err(e) = cleaned {
            eprintln!("could not delete test keys {}*: {e}", self.prefix);
        }
    }
}
