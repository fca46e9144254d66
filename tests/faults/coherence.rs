//! A session ended on one server is ended on every server: the cross-server matrix.
//!
//! Each cell runs two real server processes on one store with the shipped Rocket.toml profile
//! of that store (`postgres`, `redis`, `cached_db`; the default one for SQLite), their database
//! and key prefix made for the cell alone. Server A counts a visit on every request; server B
//! never counts again (`visit_interval` of a day), so B only *reads* the sessions the cell
//! watches. B first holds the session (loaded, and so kept in its near cache where it has
//! one); then A or the command line changes it, or a fault strikes (the watcher's connection
//! killed, Redis restarted, PostgreSQL restarted or cut off from both servers), and the cell
//! asks B again and again until
//! it serves the new state. The rule: B serves the old state no longer than [`BOUND`] (what
//! README's "Stores" table states), and serves normally again after a fault.
//!
//! B is judged by the session's own data, never by the site's sign-in check alone (which
//! flushes a session whose user signed out elsewhere, and so would hide a store that still
//! serves it): the visit count on the about page, and whether the session still holds its CSRF
//! secret, which a `POST /rango/logout/` without a token tells without changing anything (the
//! refusal says "CSRF token missing." while the session has a secret, "CSRF session token
//! missing." once it is gone).
//!
//! Each cell prints a line `coherence: <store> | <change> | ...` with what it measured; the
//! table in README comes from those lines.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tempfile::TempDir;

use crate::common::{csrf_token, form_body, visits};
use crate::services::{unique_name, PgSchema, RedisPrefix};
use crate::support::{
    address_of, say, sqlite_url, with_address, PgServer, Proxy, RedisServer, Server,
    REQUEST_TIMEOUT, STARTUP,
};

/// How long B may serve the old state after a change, or after a fault ends: README, "Stores".
const BOUND: Duration = Duration::from_secs(2);

/// Time for both servers' near caches to confirm their watch (a heartbeat every 200 ms; on
/// SQLite a poll every 5 ms).
const WARM: Duration = Duration::from_millis(1000);

const PASSWORD: &str = "a long password";
const NEW_PASSWORD: &str = "another long password";

/// Where the sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// `db` on SQLite: two servers on one file.
    Sqlite,
    /// `db` on PostgreSQL.
    Postgres,
    /// `cache`: Redis.
    Cache,
    /// `cached_db`: Redis in front of PostgreSQL.
    CachedDb,
}

/// A store and whether its near cache is on.
#[derive(Debug, Clone, Copy)]
struct Setup {
    backend: Backend,
    near: bool,
}

const SQLITE_NEAR: Setup = Setup {
    backend: Backend::Sqlite,
    near: true,
};
const SQLITE: Setup = Setup {
    backend: Backend::Sqlite,
    near: false,
};
const POSTGRES_NEAR: Setup = Setup {
    backend: Backend::Postgres,
    near: true,
};
const POSTGRES: Setup = Setup {
    backend: Backend::Postgres,
    near: false,
};
const CACHE_NEAR: Setup = Setup {
    backend: Backend::Cache,
    near: true,
};
const CACHE: Setup = Setup {
    backend: Backend::Cache,
    near: false,
};
const CACHED_DB_NEAR: Setup = Setup {
    backend: Backend::CachedDb,
    near: true,
};
const CACHED_DB: Setup = Setup {
    backend: Backend::CachedDb,
    near: false,
};

impl Setup {
    fn name(&self) -> String {
        let store = match self.backend {
            Backend::Sqlite => "db on SQLite",
            Backend::Postgres => "db on PostgreSQL",
            Backend::Cache => "cache",
            Backend::CachedDb => "cached_db",
        };
        let near = if self.near { "on" } else { "off" };
        format!("{store}, near cache {near}")
    }

    fn on_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres | Backend::CachedDb)
    }

    fn on_redis(&self) -> bool {
        matches!(self.backend, Backend::Cache | Backend::CachedDb)
    }
}

/// What the cell changes while B holds a session.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// A counts a visit.
    save,
    /// A logs the session out.
    logout,
    /// A's other device ends it from "Your sessions".
    end_one,
    /// A's other device signs out all others.
    end_others,
    /// A's other device changes the password.
    password,
    /// `rango user sessions NAME --end-all`.
    cli_end_all,
    /// The session expires and `rango clearsessions` clears it.
    cli_clear_expired,
    /// The watchers' connections are killed (`pg_terminate_backend`, `CLIENT KILL`), then A
    /// logs the session out.
    watcher_killed,
    /// Redis is restarted (empty), A logging the session out while it is down.
    redis_restarted,
    /// PostgreSQL (a server of the cell's own) is restarted, and the command line ends the
    /// session as soon as it answers, while the servers reconnect.
    postgres_restarted,
    /// PostgreSQL goes away from both servers and comes back (a proxy cut and restored); the
    /// command line, which still reaches it, ends the session meanwhile.
    postgres_cut_off,
}

/// The services of one cell, dropped (and cleaned up) with it.
struct Shared {
    setup: Setup,
    dir: TempDir,
    schema: Option<PgSchema>,
    private_postgres: Option<PgServer>,
    redis: Option<RedisPrefix>,
    private_redis: Option<RedisServer>,
    proxy: Option<Proxy>,
    cookie_age: Option<u32>,
}

impl Shared {
    async fn create(setup: Setup, case: Case) -> Option<Shared> {
        let test = format!("coherence {} {case:?}", setup.name());
        let private_postgres = match (setup.on_postgres(), case) {
            (true, Case::postgres_restarted) => Some(PgServer::start(&test)?),
            _ => None,
        };
        let schema = match (setup.on_postgres(), &private_postgres) {
            (true, None) => Some(PgSchema::create(&test).await?),
            _ => None,
        };
        let (redis, private_redis) = match (setup.on_redis(), case) {
            (true, Case::redis_restarted) => {
                let server = RedisServer::start(&test)?;
                let prefix = RedisPrefix {
                    url: server.url(),
                    prefix: format!("{}:", unique_name("coherence")),
                };
                (Some(prefix), Some(server))
            }
            (true, _) => (Some(RedisPrefix::create(&test)?), None),
            (false, _) => (None, None),
        };
        let proxy = match (&schema, case) {
            (Some(schema), Case::postgres_cut_off) => {
                Some(Proxy::start(&address_of(&schema.url(), 5432)))
            }
            _ => None,
        };
        Some(Shared {
            setup,
            dir: TempDir::new().expect("temp dir"),
            schema,
            private_postgres,
            redis,
            private_redis,
            proxy,
            cookie_age: (case == Case::cli_clear_expired).then_some(3),
        })
    }

    /// The site's database as the command line reaches it: directly.
    fn database_url(&self) -> String {
        match (&self.schema, &self.private_postgres) {
            (Some(schema), _) => schema.url(),
            (None, Some(postgres)) => postgres.url(),
            (None, None) => sqlite_url(self.dir.path()),
        }
    }

    /// The site's database as the servers reach it: through the proxy, if there is one.
    fn served_database_url(&self) -> String {
        match &self.proxy {
            Some(proxy) => with_address(&self.database_url(), &proxy.address()),
            None => self.database_url(),
        }
    }

    /// The settings over the shipped profile of the store: the database and the key prefix of
    /// this cell, and the near cache off where the cell says so.
    fn env(&self, database_url: &str) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        let profile = match self.setup.backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some("postgres"),
            Backend::Cache => Some("redis"),
            Backend::CachedDb => Some("cached_db"),
        };
        if let Some(profile) = profile {
            env.push(("ROCKET_PROFILE", profile.to_owned()));
        }
        env.push((
            "ROCKET_DATABASES",
            format!("{{rango={{url=\"{database_url}\",connect_timeout=2}}}}"),
        ));
        let mut session = Vec::new();
        if let Some(redis) = &self.redis {
            session.push(format!(
                "redis={{url=\"{}\",key_prefix=\"{}\"}}",
                redis.url, redis.prefix
            ));
        }
        if !self.setup.near {
            session.push("near_cache={enabled=false}".to_owned());
        }
        if let Some(age) = self.cookie_age {
            session.push(format!("cookie_age={age}"));
        }
        if !session.is_empty() {
            env.push(("ROCKET_SESSION", format!("{{{}}}", session.join(","))));
        }
        env
    }

    /// A server counting a visit every `visit_interval` seconds.
    fn server(&self, visit_interval: u64) -> Server {
        let mut env = self.env(&self.served_database_url());
        env.push((
            "ROCKET_RANGO",
            // debug: the 403 of a refused CSRF check says why, which is how B is judged.
            format!("{{visit_interval={visit_interval},debug=true}}"),
        ));
        let env: Vec<(&str, String)> = env.into_iter().collect();
        Server::start(&env)
    }

    /// Runs the command line with the servers' settings (the database reached directly);
    /// returns its stdout and stderr, after checking it succeeded.
    async fn rango(&self, args: &[&str]) -> (String, String) {
        rango_with(self.env(&self.database_url()), args).await
    }
}

/// Runs the command line with the settings `env`; returns its stdout and stderr, after
/// checking it succeeded.
async fn rango_with(env: Vec<(&'static str, String)>, args: &[&str]) -> (String, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rango"));
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(&args)
            .stdin(std::process::Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().expect("the command line runs")
    })
    .await
    .expect("no panic");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// What a request answered.
#[derive(Debug)]
struct Page {
    status: u16,
    /// The `sessionid` the response set (empty for a removal).
    set_cookie: Option<String>,
    body: String,
}

impl Page {
    /// The CSRF token of the page's first form.
    fn token(&self) -> String {
        csrf_token(&self.body)
    }

    /// The visit count the page shows.
    fn visits(&self) -> u64 {
        visits(&self.body)
    }

    /// The ids (handles) of the sessions "Your sessions" offers to end (every one but this one).
    fn other_sessions(&self) -> Vec<String> {
        let body = self.body.replace("&#x2F;", "/");
        body.split("action=\"/rango/sessions/")
            .skip(1)
            .filter_map(|rest| rest.split('/').next())
            .filter(|id| *id != "end-others")
            .map(str::to_owned)
            .collect()
    }
}

/// An HTTP/1.1 client over real sockets that can post forms.
struct Web {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Web {
    fn new() -> Web {
        Web {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `method` `url` with the session `cookie` and, if given, a form body.
    async fn send(
        &self,
        method: &str,
        url: &str,
        cookie: Option<&str>,
        form: Option<&str>,
    ) -> Page {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("User-Agent", "coherence-test/1.0");
        if let Some(cookie) = cookie {
            request = request.header("Cookie", format!("sessionid={cookie}"));
        }
        if form.is_some() {
            request = request.header("Content-Type", "application/x-www-form-urlencoded");
        }
        let body = Full::new(Bytes::from(form.unwrap_or_default().to_owned()));
        let request = request.body(body).expect("a request");
        let exchange = async {
            let response = self.client.request(request).await.expect("an answer");
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            let set_cookie = header("set-cookie").into_iter().find_map(|v| {
                v.strip_prefix("sessionid=")
                    .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
            });
            let body = response
                .into_body()
                .collect()
                .await
                .expect("a body")
                .to_bytes();
            Page {
                status,
                set_cookie,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| panic!("{method} {url}: no answer in {REQUEST_TIMEOUT:?}"))
    }

    /// Whether `server` still serves the session `key`, judged by its own data, or `None` when
    /// it cannot say (a 503 while a store is away). Changes nothing.
    async fn holds(&self, server: &Server, key: &str) -> Option<bool> {
        let page = self
            .send("POST", &server.url("/rango/logout/"), Some(key), Some(""))
            .await;
        match (page.status, page.body.as_str()) {
            (403, body) if body.contains("CSRF session token missing.") => Some(false),
            (403, body) if body.contains("CSRF token missing.") => Some(true),
            (503, _) => None,
            (status, body) => panic!("POST /rango/logout/ without a token: {status} {body}"),
        }
    }

    /// The visit count `server` shows for `key` on the about page, and whether it started a
    /// new session; `None` when it cannot say.
    async fn visits(&self, server: &Server, key: &str) -> Option<(u64, bool)> {
        let page = self
            .send("GET", &server.url("/rango/about/"), Some(key), None)
            .await;
        if page.status != 200 {
            return None;
        }
        let new = page.set_cookie.as_deref().is_some_and(|set| set != key);
        Some((page.visits(), new))
    }
}

/// One browser on a server: its session cookie.
struct Device<'a> {
    web: &'a Web,
    server: &'a Server,
    key: Option<String>,
}

impl<'a> Device<'a> {
    fn new(web: &'a Web, server: &'a Server) -> Self {
        Device {
            web,
            server,
            key: None,
        }
    }

    fn key(&self) -> String {
        self.key.clone().expect("a session")
    }

    fn keep(&mut self, page: Page) -> Page {
        if let Some(set) = &page.set_cookie {
            self.key = (!set.is_empty()).then(|| set.clone());
        }
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        let page = self
            .web
            .send("GET", &self.server.url(path), self.key.as_deref(), None)
            .await;
        self.keep(page)
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let page = self
            .web
            .send(
                "POST",
                &self.server.url(path),
                self.key.as_deref(),
                Some(&form_body(fields)),
            )
            .await;
        self.keep(page)
    }

    /// Gets the form at `form_path`, then posts `fields` and its token to `action`.
    async fn submit(&mut self, form_path: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.get(form_path).await.token();
        let mut all = vec![("csrfmiddlewaretoken", token.as_str())];
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }

    /// Registers `username` (a second device finds the name taken) and logs in.
    async fn sign_in(&mut self, username: &str) {
        let email = format!("{username}@example.com");
        self.submit(
            "/rango/register/",
            "/rango/register/",
            &[
                ("username", username),
                ("email", &email),
                ("password", PASSWORD),
            ],
        )
        .await;
        let page = self
            .submit(
                "/rango/login/",
                "/rango/login/",
                &[("username", username), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(page.status, 303, "login: {}", page.body);
    }

    /// Logs out with the logout button's token.
    async fn log_out(&mut self) -> Page {
        self.submit("/rango/about/", "/rango/logout/", &[]).await
    }
}

/// A device signed in as `username` on `server`, its session seen by `b` (and so held there).
async fn signed_in<'a>(web: &'a Web, server: &'a Server, b: &Server, username: &str) -> Device<'a> {
    let mut device = Device::new(web, server);
    device.sign_in(username).await;
    assert_eq!(web.holds(b, &device.key()).await, Some(true), "B reads it");
    assert_eq!(
        web.holds(b, &device.key()).await,
        Some(true),
        "B reads it again"
    );
    device
}

/// What B served after the change: until when it still served the old state, and when it
/// first served the new one.
#[derive(Debug)]
struct Seen {
    stale_until: Duration,
    settled: Duration,
}

/// Asks B (through `state`: `Some(true)` for the old state, `Some(false)` for the new,
/// `None` when it cannot say) until it has served the new state for a while.
async fn watch_b<F, Fut>(mut state: F) -> Seen
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<bool>>,
{
    let started = Instant::now();
    let mut stale_until = Duration::ZERO;
    let mut settled: Option<Duration> = None;
    loop {
        let answer = state().await;
        // When B's answer was back: what it served, it served by then.
        let at = started.elapsed();
        match answer {
            Some(true) => {
                stale_until = at;
                settled = None;
            }
            Some(false) => {
                let first = *settled.get_or_insert(at);
                // Served the new state for half a second in a row: done.
                if at - first > Duration::from_millis(500) {
                    return Seen {
                        stale_until,
                        settled: first,
                    };
                }
            }
            None => {}
        }
        assert!(
            started.elapsed() < STARTUP,
            "B never settled on the new state (old state last served after {stale_until:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Until B no longer holds any of `keys`.
async fn until_released(web: &Web, b: &Server, keys: &[String]) -> Seen {
    watch_b(|| async {
        let mut any = Some(false);
        for key in keys {
            match web.holds(b, key).await {
                Some(true) => return Some(true),
                Some(false) => {}
                None => any = None,
            }
        }
        any
    })
    .await
}

/// Kills the connections of every server's near-cache watcher; how many.
async fn kill_watchers(shared: &Shared) -> usize {
    match shared.setup.backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&shared.database_url())
                .await
                .expect("PostgreSQL");
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'session-watch:' || to_regclass('session')::oid",
            )
            .fetch_all(&pool)
            .await
            .expect("pg_terminate_backend");
            pool.close().await;
            killed.len()
        }
        _ => {
            let redis = shared.redis.as_ref().expect("Redis");
            let ids = redis.watchers();
            for id in &ids {
                redis.kill_client(id);
            }
            ids.len()
        }
    }
}

/// After a fault: a new session signed in on A is served by B, and its logout seen by B within
/// the bound.
async fn serves_normally_again(web: &Web, a: &Server, b: &Server) {
    let deadline = Instant::now() + STARTUP;
    let mut device = loop {
        let mut device = Device::new(web, a);
        let form = device.get("/rango/login/").await;
        let page = match form.status {
            200 => {
                let token = form.token();
                let fields = [
                    ("csrfmiddlewaretoken", token.as_str()),
                    ("username", "ann"),
                    ("password", PASSWORD),
                ];
                device.post("/rango/login/", &fields).await
            }
            _ => form,
        };
        if page.status == 303 {
            break device;
        }
        assert!(
            Instant::now() < deadline,
            "A never signed in again: {page:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let key = device.key();
    let deadline = Instant::now() + STARTUP;
    while web.holds(b, &key).await != Some(true) {
        assert!(Instant::now() < deadline, "B never served the new session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(device.log_out().await.status, 303);
    let seen = until_released(web, b, &[key]).await;
    assert!(seen.stale_until <= BOUND, "after the fault: {seen:?}");
}

/// One cell: two servers on `setup`, `case` changed while B holds a session.
async fn run(setup: Setup, case: Case) {
    let Some(mut shared) = Shared::create(setup, case).await else {
        return;
    };
    let a = shared.server(0);
    let b = shared.server(86_400);
    let web = Web::new();
    tokio::time::sleep(WARM).await;

    let seen = match case {
        Case::save => {
            let mut visitor = Device::new(&web, &a);
            visitor.get("/rango/about/").await;
            let page = visitor.get("/rango/about/").await;
            assert_eq!(page.visits(), 2);
            let key = visitor.key();
            for _ in 0..2 {
                assert_eq!(web.visits(&b, &key).await, Some((2, false)), "B holds it");
            }
            assert_eq!(visitor.get("/rango/about/").await.visits(), 3);
            watch_b(|| async {
                match web.visits(&b, &key).await {
                    Some((2, false)) => Some(true),
                    Some((3, false)) => Some(false),
                    Some(other) => panic!("B shows {other:?}"),
                    None => None,
                }
            })
            .await
        }
        Case::logout => {
            let mut device = signed_in(&web, &a, &b, "ann").await;
            let key = device.key();
            let restricted = web
                .send("GET", &b.url("/rango/restricted/"), Some(&key), None)
                .await;
            assert_eq!(restricted.status, 200, "B serves the signed-in page");
            assert_eq!(device.log_out().await.status, 303);
            let seen = until_released(&web, &b, std::slice::from_ref(&key)).await;
            let restricted = web
                .send("GET", &b.url("/rango/restricted/"), Some(&key), None)
                .await;
            assert_eq!(restricted.status, 303, "B sends the old cookie to log in");
            seen
        }
        Case::end_one | Case::end_others | Case::password => {
            let mut this = signed_in(&web, &a, &b, "ann").await;
            let mut others = vec![signed_in(&web, &a, &b, "ann").await.key()];
            if case == Case::end_others {
                others.push(signed_in(&web, &a, &b, "ann").await.key());
            }
            let page = match case {
                Case::end_one => {
                    let listed = this.get("/rango/sessions/").await;
                    let ids = listed.other_sessions();
                    assert_eq!(ids.len(), 1, "one other session: {}", listed.body);
                    let action = format!("/rango/sessions/{}/end/", ids[0]);
                    this.submit("/rango/sessions/", &action, &[]).await
                }
                Case::end_others => {
                    this.submit("/rango/sessions/", "/rango/sessions/end-others/", &[])
                        .await
                }
                _ => {
                    this.submit(
                        "/rango/password/",
                        "/rango/password/",
                        &[
                            ("old_password", PASSWORD),
                            ("new_password1", NEW_PASSWORD),
                            ("new_password2", NEW_PASSWORD),
                        ],
                    )
                    .await
                }
            };
            assert!(page.status < 400, "{case:?}: {page:?}");
            let seen = until_released(&web, &b, &others).await;
            assert_eq!(
                web.holds(&b, &this.key()).await,
                Some(true),
                "the device that did it stays signed in"
            );
            seen
        }
        Case::cli_end_all => {
            let device = signed_in(&web, &a, &b, "ann").await;
            let (_, stderr) = shared
                .rango(&["user", "sessions", "ann", "--end-all"])
                .await;
            assert!(!stderr.contains("warning"), "{stderr}");
            until_released(&web, &b, &[device.key()]).await
        }
        Case::cli_clear_expired => {
            let mut visitor = Device::new(&web, &a);
            visitor.get("/rango/about/").await;
            assert_eq!(visitor.get("/rango/about/").await.visits(), 2);
            let key = visitor.key();
            assert_eq!(web.visits(&b, &key).await, Some((2, false)), "B holds it");
            // Whole seconds: expired 3 to 4 s after its last save.
            tokio::time::sleep(Duration::from_millis(4_500)).await;
            shared.rango(&["clearsessions"]).await;
            watch_b(|| async {
                match web.visits(&b, &key).await {
                    Some((2, _)) => Some(true),
                    Some((1, true)) => Some(false),
                    Some(other) => panic!("B shows {other:?}"),
                    None => None,
                }
            })
            .await
        }
        Case::watcher_killed => {
            let mut device = signed_in(&web, &a, &b, "ann").await;
            let key = device.key();
            assert!(kill_watchers(&shared).await >= 2, "A's and B's watchers");
            assert_eq!(device.log_out().await.status, 303);
            let seen = until_released(&web, &b, &[key]).await;
            serves_normally_again(&web, &a, &b).await;
            seen
        }
        Case::redis_restarted => {
            let mut device = signed_in(&web, &a, &b, "ann").await;
            let key = device.key();
            let redis = shared.private_redis.as_mut().expect("a private Redis");
            redis.kill();
            // cached_db logs out on its database meanwhile; on Redis alone nothing can be done
            // (a 503), and the restart loses every session.
            let about = device.get("/rango/about/").await;
            if shared.setup.backend == Backend::CachedDb {
                assert_eq!(about.status, 200, "cached_db serves from its database");
                assert_eq!(device.log_out().await.status, 303);
            } else {
                assert_eq!(about.status, 503, "Redis alone is down");
            }
            let redis = shared.private_redis.as_mut().expect("a private Redis");
            redis.restart();
            let seen = until_released(&web, &b, &[key]).await;
            serves_normally_again(&web, &a, &b).await;
            seen
        }
        Case::postgres_restarted => {
            let device = signed_in(&web, &a, &b, "ann").await;
            let key = device.key();
            let postgres = shared
                .private_postgres
                .as_ref()
                .expect("a private PostgreSQL");
            tokio::task::block_in_place(|| postgres.restart());
            shared
                .rango(&["user", "sessions", "ann", "--end-all"])
                .await;
            let seen = until_released(&web, &b, &[key]).await;
            serves_normally_again(&web, &a, &b).await;
            seen
        }
        Case::postgres_cut_off => {
            let device = signed_in(&web, &a, &b, "ann").await;
            let key = device.key();
            let proxy = shared.proxy.as_ref().expect("a proxy");
            proxy.cut();
            shared
                .rango(&["user", "sessions", "ann", "--end-all"])
                .await;
            proxy.restore();
            let seen = until_released(&web, &b, &[key]).await;
            serves_normally_again(&web, &a, &b).await;
            seen
        }
    };
    say(&format!(
        "coherence: {} | {case:?} | old state last served at {:?}, new state served from {:?}",
        setup.name(),
        seen.stale_until,
        seen.settled
    ));
    assert!(
        seen.stale_until <= BOUND,
        "{} {case:?}: B served the old state {:?} after the change\nB's log:\n{}",
        setup.name(),
        seen.stale_until,
        b.output()
    );
    for mut server in [a, b] {
        server.assert_healthy();
    }
}

/// One test per cell: `store: SETUP => [cases]`.
macro_rules! cells {
    ($($module:ident: $setup:expr => [$($case:ident),* $(,)?];)*) => {
        $(mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run($setup, super::Case::$case).await;
                }
            )*
        })*
    };
}

cells! {
    sqlite_near: super::SQLITE_NEAR => [
        save, logout, end_one, end_others, password, cli_end_all, cli_clear_expired,
    ];
    sqlite: super::SQLITE => [
        save, logout, end_one, end_others, password, cli_end_all, cli_clear_expired,
    ];
    postgres_near: super::POSTGRES_NEAR => [
        save, logout, end_one, end_others, password, cli_end_all, cli_clear_expired,
        watcher_killed, postgres_restarted, postgres_cut_off,
    ];
    postgres: super::POSTGRES => [
        save, logout, end_one, end_others, password, cli_end_all, cli_clear_expired,
        postgres_restarted, postgres_cut_off,
    ];
    cache_near: super::CACHE_NEAR => [
        save, logout, end_one, end_others, password, cli_end_all, cli_clear_expired,
        watcher_killed, redis_restarted,
    ];
    cache: super::CACHE => [
        save, logout, end_one, end_others, password, cli_end_all, cli_clear_expired,
        redis_restarted,
    ];
    cached_db_near: super::CACHED_DB_NEAR => [
        save, logout, end_one, end_others, password, cli_end_all, cli_clear_expired,
        watcher_killed, redis_restarted, postgres_restarted, postgres_cut_off,
    ];
    cached_db: super::CACHED_DB => [
        save, logout, end_one, end_others, password, cli_end_all, cli_clear_expired,
        redis_restarted, postgres_restarted, postgres_cut_off,
    ];
}

/// cached_db's `--end-all` when Redis cannot be reached: the sessions are ended in the database,
/// and the command says on stderr what it left in Redis and until when.
#[tokio::test]
async fn cli_end_all_on_cached_db_without_redis_says_what_it_left() {
    let Some(shared) = Shared::create(CACHED_DB_NEAR, Case::cli_end_all).await else {
        return;
    };
    let a = shared.server(0);
    let web = Web::new();
    let mut device = Device::new(&web, &a);
    device.sign_in("ann").await;
    let mut env = shared.env(&shared.database_url());
    // Nothing listens on port 1.
    env.push((
        "ROCKET_SESSION",
        "{redis={url=\"redis://127.0.0.1:1/0\",timeout_ms=200}}".to_owned(),
    ));
    let (_, stderr) = rango_with(env, &["user", "sessions", "ann", "--end-all"]).await;
    assert!(
        stderr.contains("rango: warning: Redis was not reached")
            && stderr.contains("until")
            && stderr.contains("(300 s)"),
        "{stderr}"
    );
    // Ended in the database, the truth.
    let (stdout, _) = shared.rango(&["user", "sessions", "ann"]).await;
    assert!(stdout.contains("ann has no session."), "{stdout}");
}

/// A server whose session table cannot report every change (a trigger turned off by an
/// operator, which `migrate` leaves off) cannot prove its near cache fresh: it says why in its
/// log, and serves every session from the database, so another server's logout, which the
/// table no longer reports, is seen all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_cannot_report_turns_the_near_cache_off_with_a_warning() {
    let Some(shared) = Shared::create(POSTGRES_NEAR, Case::logout).await else {
        return;
    };
    let a = shared.server(0);
    let pool = sqlx::PgPool::connect(&shared.database_url())
        .await
        .expect("PostgreSQL");
    sqlx::query("ALTER TABLE session DISABLE TRIGGER session_deleted")
        .execute(&pool)
        .await
        .expect("ALTER TABLE");
    pool.close().await;
    let b = shared.server(86_400);
    let web = Web::new();
    tokio::time::sleep(WARM).await;
    let mut device = signed_in(&web, &a, &b, "ann").await;
    let key = device.key();
    assert_eq!(device.log_out().await.status, 303);
    let seen = until_released(&web, &b, &[key]).await;
    assert!(seen.stale_until <= BOUND, "{seen:?}");
    let warning = "session near cache off until PostgreSQL can be watched: the session \
                   table's triggers are not all on (2 of 3";
    assert!(b.output().contains(warning), "B's log:\n{}", b.output());
}
