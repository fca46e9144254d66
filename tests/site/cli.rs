//! The command line, through the real binary, each test on its own temporary database.

use std::time::{Duration, Instant};

use assert_cmd::Command;
use clap::CommandFactory;
use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use rocket::local::asynchronous::Client;
use serde_json::{json, Value};
use sqlx::SqlitePool;
use tempfile::TempDir;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::common::register_and_sign_in;
use rocket_server_sessions::store::{Census, Data, SessionStore, Stored};
use rocket_server_sessions::stores::SqliteStore;

/// A temporary database and the binary pointed at it.
struct Site {
    dir: TempDir,
}

/// What a run of the binary printed.
struct Output {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Site {
    fn new() -> Site {
        Site {
            dir: TempDir::new().expect("temp dir"),
        }
    }

    fn url(&self) -> String {
        format!("sqlite://{}/db.sqlite3?mode=rwc", self.dir.path().display())
    }

    /// `rango ARGS` with this database, and `env` on top, from the repository root (where
    /// Rocket.toml is).
    fn rango_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::cargo_bin("rango").expect("the rango binary is built");
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env(
                "ROCKET_DATABASES",
                format!("{{rango={{url=\"{}\"}}}}", self.url()),
            )
            .env("ROCKET_LOG_LEVEL", "off")
            .args(args)
            .timeout(Duration::from_secs(60));
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().expect("rango runs");
        Output {
            status: output.status.code().expect("rango exits, not killed"),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        }
    }

    fn rango(&self, args: &[&str]) -> Output {
        self.rango_with(args, &[])
    }

    /// A migrated database.
    fn migrated() -> Site {
        let site = Site::new();
        site.rango(&["migrate"]).success();
        site
    }

    /// The configuration the site runs with in-process: Rocket's own, this database, no logs.
    fn figment(&self) -> Figment {
        crate::common::rocket_figment()
            .merge(Serialized::global("databases.rango.url", self.url()))
            .merge(Serialized::global("log_level", "off"))
    }

    async fn pool(&self) -> SqlitePool {
        SqlitePool::connect(&self.url())
            .await
            .expect("the database opens")
    }

    async fn store(&self) -> SqliteStore {
        SqliteStore::new(self.pool().await)
    }

    async fn rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM session")
            .fetch_one(&self.pool().await)
            .await
            .expect("count")
    }
}

impl Output {
    /// Asserts exit status 0 and returns stdout.
    #[track_caller]
    fn success(self) -> String {
        assert_eq!(
            self.status, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    /// Asserts exit status 1 with exactly one line on stderr, and returns that line.
    #[track_caller]
    fn failure(self) -> String {
        assert_eq!(self.status, 1, "stdout: {}", self.stdout);
        assert_eq!(self.stderr.lines().count(), 1, "stderr: {:?}", self.stderr);
        assert!(self.stderr.starts_with("rango: "), "{:?}", self.stderr);
        self.stderr
    }
}

fn data(value: Value) -> Data {
    match value {
        Value::Object(data) => data,
        other => panic!("not an object: {other}"),
    }
}

fn in_an_hour() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::hours(1)
}

fn an_hour_ago() -> OffsetDateTime {
    OffsetDateTime::now_utc() - time::Duration::hours(1)
}

/// The JSON that `session show` prints after `data: `.
fn shown_data(stdout: &str) -> Value {
    let (_, json) = stdout.split_once("data: ").expect("a data: section");
    serde_json::from_str(json).expect("the data is JSON")
}

#[test]
fn verify_cli() {
    rango::cli::Cli::command().debug_assert();
}

#[tokio::test]
async fn show_finds_a_session_created_through_the_site_and_decodes_it() {
    let site = Site::new();
    let client = Client::tracked(rango::rocket_with(site.figment()))
        .await
        .expect("the site launches");
    let before = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("valid");
    let response = client.get("/rango/").dispatch().await;
    assert_eq!(response.status().code, 200);
    let key = response
        .cookies()
        .get("sessionid")
        .expect("the index sets the session cookie")
        .value()
        .to_owned();
    drop(response);

    let stdout = site.rango(&["session", "show", &key]).success();
    assert!(
        stdout.contains("expires at browser close: no\n"),
        "{stdout}"
    );
    let expires = stdout
        .lines()
        .find_map(|line| line.strip_prefix("expires: "))
        .and_then(|line| line.split(' ').next())
        .expect("an expires: line");
    let expires = OffsetDateTime::parse(expires, &Rfc3339).expect("an RFC 3339 date");
    let two_weeks = time::Duration::seconds(1_209_600);
    assert!(expires >= before + two_weeks, "{stdout}");
    assert!(expires <= OffsetDateTime::now_utc() + two_weeks, "{stdout}");

    let shown = shown_data(&stdout);
    assert_eq!(shown["visits"], json!(1), "{stdout}");
    let last_visit = shown["last_visit"]
        .as_str()
        .expect("last_visit is a string");
    let last_visit = OffsetDateTime::parse(last_visit, &Rfc3339).expect("an RFC 3339 date");
    assert!(last_visit >= before && last_visit <= OffsetDateTime::now_utc());
    assert!(
        !stdout.contains(&key),
        "the key is a secret and is not echoed"
    );
}

#[tokio::test]
async fn show_says_when_a_session_ends_at_browser_close() {
    let site = Site::migrated();
    let store = site.store().await;
    let Stored {
        id: per_session, ..
    } = store
        .create(&data(json!({"_session_expiry": 0, "n": 1})), in_an_hour())
        .await
        .expect("create");
    let Stored { id: by_default, .. } = store
        .create(&data(json!({"n": 2})), in_an_hour())
        .await
        .expect("create");

    let stdout = site.rango(&["session", "show", &per_session]).success();
    assert!(
        stdout.contains("expires at browser close: yes\n"),
        "{stdout}"
    );
    assert_eq!(shown_data(&stdout), json!({"_session_expiry": 0, "n": 1}));

    let stdout = site.rango(&["session", "show", &by_default]).success();
    assert!(
        stdout.contains("expires at browser close: no\n"),
        "{stdout}"
    );
    let browser_close = [("ROCKET_SESSION", "{expire_at_browser_close=true}")];
    let stdout = site
        .rango_with(&["session", "show", &by_default], &browser_close)
        .success();
    assert!(
        stdout.contains("expires at browser close: yes\n"),
        "{stdout}"
    );
}

#[test]
fn show_of_an_unknown_key_exits_1_with_one_line_on_stderr() {
    let site = Site::migrated();
    let stderr = site
        .rango(&["session", "show", "abcdefghijklmnopqrstuvwxyz012345"])
        .failure();
    assert!(stderr.contains("no session has this key"), "{stderr}");
}

#[test]
fn show_of_a_malformed_key_exits_1_with_one_line_on_stderr() {
    let site = Site::migrated();
    let long = "a".repeat(5000);
    for key in [
        "",
        "abc",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        "abcdefghijklmnopqrstuvwxyz01234;",
        "abcdefghijklmnopqrstuvwxyz01234é",
        "abcdefghijklmnopqrstuvwxyz01234\n",
        &long,
    ] {
        let stderr = site.rango(&["session", "show", key]).failure();
        assert!(stderr.contains("not a session key"), "{key:?}: {stderr}");
    }
}

#[tokio::test]
async fn show_of_an_expired_key_exits_1_with_one_line_on_stderr() {
    let site = Site::migrated();
    let Stored { id: key, .. } = site
        .store()
        .await
        .create(&data(json!({"visits": 4})), an_hour_ago())
        .await
        .expect("create");
    let stderr = site.rango(&["session", "show", &key]).failure();
    assert!(stderr.contains("expired"), "{stderr}");
    assert_eq!(site.rows().await, 1, "show never deletes");
}

#[test]
fn show_on_a_database_never_migrated_says_to_migrate() {
    let site = Site::new();
    let stderr = site
        .rango(&["session", "show", "abcdefghijklmnopqrstuvwxyz012345"])
        .failure();
    assert!(stderr.contains("rango migrate"), "{stderr}");
}

#[tokio::test]
async fn clearsessions_removes_exactly_the_expired_sessions_and_keeps_the_live_ones() {
    let site = Site::migrated();
    let store = site.store().await;
    for n in 0..7 {
        store
            .create(&data(json!({ "n": n })), an_hour_ago())
            .await
            .expect("create");
    }
    let mut live = Vec::new();
    for n in 0..3 {
        let Stored { id: key, .. } = store
            .create(&data(json!({ "live": n })), in_an_hour())
            .await
            .expect("create");
        live.push(key);
    }
    let stats = site.rango(&["session", "stats"]).success();
    assert_eq!(stats, "live: 3\nexpired: 7 (not yet cleared)\n");

    // Not a terminal: one summary line, in batches smaller than the work.
    let stdout = site
        .rango(&["clearsessions", "--batch-size", "2"])
        .success();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("Deleted 7 expired sessions in "),
        "{stdout}"
    );

    assert_eq!(site.rows().await, 3);
    for key in &live {
        assert!(store.load(key).await.expect("load").is_some());
    }
    let stats = site.rango(&["session", "stats"]).success();
    assert_eq!(stats, "live: 3\nexpired: 0 (not yet cleared)\n");
    let stdout = site.rango(&["clearsessions"]).success();
    assert!(
        stdout.starts_with("Deleted 0 expired sessions in "),
        "{stdout}"
    );
}

#[tokio::test]
async fn clearsessions_sweeps_past_long_runs_of_live_sessions() {
    let site = Site::migrated();
    let store = site.store().await;
    for n in 0..40 {
        store
            .create(&data(json!({ "live": n })), in_an_hour())
            .await
            .expect("create");
    }
    for n in 0..3 {
        store
            .create(&data(json!({ "n": n })), an_hour_ago())
            .await
            .expect("create");
    }
    // One row per batch: windows of four rows, most of them with nothing to delete.
    let stdout = site
        .rango(&["clearsessions", "--batch-size", "1"])
        .success();
    assert!(
        stdout.starts_with("Deleted 3 expired sessions in "),
        "{stdout}"
    );
    assert_eq!(site.rows().await, 40);
}

#[test]
fn clearsessions_for_a_store_that_expires_sessions_itself_says_so_and_succeeds() {
    let site = Site::new();
    let stdout = site
        .rango_with(
            &["clearsessions"],
            &[("ROCKET_SESSION", "{backend=\"cookie\"}")],
        )
        .success();
    assert!(stdout.contains("nothing to clear"), "{stdout}");
}

/// The server takes `backend = "memory"` (the crate's factory knows it); a command has no
/// sessions to work on then, and says so rather than that the name is unknown.
#[test]
fn a_command_on_the_memory_store_says_the_sessions_are_in_the_server() {
    let site = Site::new();
    let stderr = site
        .rango_with(
            &["clearsessions"],
            &[("ROCKET_SESSION", "{backend=\"memory\"}")],
        )
        .failure();
    assert!(stderr.contains("in the server's own process"), "{stderr}");
}

#[test]
fn clearsessions_exits_1_when_the_database_cannot_be_opened() {
    let site = Site::new();
    let nowhere = format!(
        "{{rango={{url=\"sqlite://{}/no/such/dir/db.sqlite3?mode=rwc\"}}}}",
        site.dir.path().display()
    );
    for args in [&["clearsessions"][..], &["session", "stats"]] {
        let stderr = site
            .rango_with(args, &[("ROCKET_DATABASES", &nowhere)])
            .failure();
        assert!(stderr.contains("cannot open the database"), "{stderr}");
    }
}

#[test]
fn subcommands_refuse_invalid_session_settings() {
    let site = Site::migrated();
    let stderr = site
        .rango_with(
            &["clearsessions"],
            &[("ROCKET_SESSION", "{clear_expired_every=0}")],
        )
        .failure();
    assert!(stderr.contains("session.clear_expired_every"), "{stderr}");
}

#[test]
fn migrate_applies_every_migration_then_nothing() {
    let site = Site::new();
    let first = site.rango(&["migrate"]).success();
    assert_eq!(
        first,
        "Applied 0001_rango\nApplied 0004_users\nApplied 0005_throttle\n"
    );
    let second = site.rango(&["migrate"]).success();
    assert_eq!(second, "No migrations to apply.\n");
}

#[tokio::test]
async fn populate_adds_the_sample_data_then_nothing() {
    let site = Site::migrated();
    let first = site.rango(&["populate"]).success();
    assert_eq!(first, "Added 3 categories and 8 pages.\n");
    let second = site.rango(&["populate"]).success();
    assert_eq!(second, "The sample data is already there; nothing added.\n");
    let pool = site.pool().await;
    let counts: (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM category), (SELECT COUNT(*) FROM page)")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(counts, (3, 8));
}

#[test]
fn populate_before_migrate_says_to_migrate() {
    let site = Site::new();
    let stderr = site.rango(&["populate"]).failure();
    assert!(stderr.contains("rango migrate"), "{stderr}");
}

#[test]
fn bad_arguments_exit_2_with_clap_s_message() {
    let site = Site::new();
    for args in [
        &["bogus"][..],
        &["session"],
        &["session", "show"],
        &["session", "show", "a", "b"],
        &["clearsessions", "--batch-size", "0"],
        &["clearsessions", "--batch-size", "many"],
        &["migrate", "--now"],
    ] {
        let output = site.rango(args);
        assert_eq!(output.status, 2, "{args:?}: {}", output.stderr);
        assert!(
            output.stderr.starts_with("error: ") || output.stderr.contains("Usage: rango"),
            "{args:?}: {}",
            output.stderr
        );
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn help_lists_every_subcommand() {
    let stdout = Site::new().rango(&["help"]).success();
    for subcommand in ["serve", "migrate", "populate", "session", "clearsessions"] {
        assert!(stdout.contains(subcommand), "{stdout}");
    }
}

/// Waits until the store holds `expected` expired sessions, for at most `limit`.
async fn expired_sessions_reach(store: &SqliteStore, expected: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if store.count().await.expect("count").expired == expected {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_reaper_clears_expired_sessions_on_its_period_and_stops_at_shutdown() {
    let site = Site::new();
    let figment = site
        .figment()
        .merge(Serialized::global("session.clear_expired_every", 1));
    let client = Client::untracked(rango::rocket_with(figment))
        .await
        .expect("the site launches");
    let store = site.store().await;
    let Stored { id: live, .. } = store
        .create(&data(json!({"live": true})), in_an_hour())
        .await
        .expect("create");
    for round in 0..2 {
        for _ in 0..3 {
            store
                .create(&Data::new(), an_hour_ago())
                .await
                .expect("create");
        }
        assert!(
            expired_sessions_reach(&store, 0, Duration::from_secs(5)).await,
            "round {round}: the reaper cleared nothing within 5 s"
        );
    }
    assert_eq!(site.rows().await, 1);
    assert!(store.load(&live).await.expect("load").is_some());

    let started = Instant::now();
    client.terminate().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown waited"
    );
    store
        .create(&Data::new(), an_hour_ago())
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        store.count().await.expect("count").expired,
        1,
        "the reaper stopped at shutdown"
    );
}

#[tokio::test]
async fn the_reaper_is_off_by_default() {
    let site = Site::new();
    let client = Client::untracked(rango::rocket_with(site.figment()))
        .await
        .expect("the site launches");
    let store = site.store().await;
    store
        .create(&Data::new(), an_hour_ago())
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(store.count().await.expect("count").expired, 1);
    client.terminate().await;
}

/// The sealed-cookie store's settings, for the site in-process and for the binary.
const COOKIE_SECRET: &str = "hPrLE9UkbMmvNmOXpSZdFgXR4jWvVYiX1qk4oUCsXk0=";

#[tokio::test]
async fn show_opens_a_sealed_cookie_with_the_sites_own_store() {
    let site = Site::new();
    let figment = site
        .figment()
        .merge(Serialized::global("session.backend", "cookie"))
        .merge(Serialized::global("secret_key", COOKIE_SECRET));
    let client = Client::tracked(rango::rocket_with(figment))
        .await
        .expect("the site launches");
    let response = client.get("/rango/").dispatch().await;
    let sealed = response
        .cookies()
        .get("sessionid")
        .expect("the index sets the session cookie")
        .value()
        .to_owned();
    drop(response);
    let cookie_store = [
        ("ROCKET_SESSION", "{backend=\"cookie\"}"),
        ("ROCKET_SECRET_KEY", COOKIE_SECRET),
    ];
    let stdout = site
        // `--`: a sealed cookie may begin with `-` (URL-safe base64).
        .rango_with(&["session", "show", "--", &sealed], &cookie_store)
        .success();
    assert_eq!(shown_data(&stdout)["visits"], json!(1), "{stdout}");
    // Counting is a capability the cookie store does not have: a clear refusal, not a guess.
    let stderr = site
        .rango_with(&["session", "stats"], &cookie_store)
        .failure();
    assert!(stderr.contains("cannot count"), "{stderr}");
}

#[test]
fn clearsessions_of_cached_db_works_on_the_database_while_redis_is_down() {
    let site = Site::migrated();
    let redis_down = [(
        "ROCKET_SESSION",
        "{backend=\"cached_db\",redis={url=\"redis://127.0.0.1:1/0\",timeout_ms=200}}",
    )];
    let stdout = site.rango_with(&["clearsessions"], &redis_down).success();
    assert!(
        stdout.starts_with("Deleted 0 expired sessions in "),
        "{stdout}"
    );
    let stdout = site
        .rango_with(&["session", "stats"], &redis_down)
        .success();
    assert!(stdout.starts_with("live: 0\n"), "{stdout}");
}

/// Database URLs with secrets in every place a redaction has missed, each with the pieces of
/// its secret that must never be printed.
const SECRET_URLS: [(&str, &[&str]); 9] = [
    (
        "postgresql+psycopg://u:zqsecret@127.0.0.1:1/x",
        &["zqsecret"],
    ),
    ("postgress://u:zqsecret@127.0.0.1:1/x", &["zqsecret"]),
    ("mysql://u:zqsecret@127.0.0.1:1/x", &["zqsecret"]),
    (
        "postgres://u@127.0.0.1:1/x?password=zqsecret",
        &["zqsecret"],
    ),
    (
        "postgres://u:zq1/zq2?zq3#zq4@127.0.0.1:1/x",
        &["zq1", "zq2", "zq3", "zq4"],
    ),
    ("postgres://u:zq1@zq2@127.0.0.1:1/x", &["zq1", "zq2"]),
    ("postgres:/u:zqsecret@127.0.0.1:1/x", &["zqsecret"]),
    ("host=127.0.0.1 port=1 password=zqsecret", &["zqsecret"]),
    (
        "postgres://u@127.0.0.1:1/x?pass%77ord=zqsecret",
        &["zqsecret"],
    ),
];

#[test]
fn no_database_secret_reaches_the_launch_log_or_the_command_line() {
    let site = Site::new();
    for (url, secrets) in SECRET_URLS {
        let databases = format!("{{rango={{url=\"{url}\",connect_timeout=2}}}}");
        let env = [
            ("ROCKET_DATABASES", databases.as_str()),
            ("ROCKET_LOG_LEVEL", "normal"),
            ("ROCKET_PORT", "0"),
        ];
        let launch = site.rango_with(&["serve"], &env);
        assert_ne!(launch.status, 0, "{url}: the launch must fail");
        let cli = site.rango_with(&["clearsessions"], &env);
        assert_ne!(cli.status, 0, "{url}: clearsessions must fail");
        let printed = format!(
            "{}{}{}{}",
            launch.stdout, launch.stderr, cli.stdout, cli.stderr
        );
        assert!(printed.contains("***"), "{url}: {printed}");
        for secret in secrets {
            assert!(
                !printed.contains(secret),
                "{url} showed {secret}: {printed}"
            );
        }
    }
}

/// A browser (a tracked client of its own on the site's database) that registers `username`
/// if it is new and signs in with `agent`.
async fn signed_in_browser(site: &Site, username: &str, agent: &'static str) -> Client {
    let client = Client::tracked(rango::rocket_with(site.figment()))
        .await
        .expect("the site launches");
    register_and_sign_in(&client, username, agent).await;
    client
}

#[tokio::test]
async fn user_list_and_user_sessions_show_the_accounts_and_end_all_signs_them_out() {
    let site = Site::migrated();
    assert_eq!(site.rango(&["user", "list"]).success(), "No users.\n");
    let laptop = signed_in_browser(
        &site,
        "ann",
        "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 Safari/537.36",
    )
    .await;
    let phone = signed_in_browser(
        &site,
        "ann",
        "Mozilla/5.0 (Windows NT 10.0; rv:121.0) Gecko/20100101 Firefox/121.0",
    )
    .await;
    let bob = signed_in_browser(&site, "bob", "curl/8").await;

    let listed = site.rango(&["user", "list"]).success();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed
        .lines()
        .next()
        .is_some_and(|line| line.contains("\tann\ta@example.com\t")));

    let sessions = site.rango(&["user", "sessions", "ANN"]).success();
    assert_eq!(sessions.lines().count(), 2, "{sessions}");
    assert!(
        sessions
            .lines()
            .next()
            .is_some_and(|line| line.contains("Firefox 121")),
        "newest first: {sessions}"
    );
    for client in [&laptop, &phone] {
        let key = client
            .cookies()
            .get("sessionid")
            .expect("a session")
            .value()
            .to_owned();
        assert!(!sessions.contains(&key), "a session key printed");
    }

    let ended = site
        .rango(&["user", "sessions", "ann", "--end-all"])
        .success();
    assert!(
        ended.contains("Signed out every session of ann (2 deleted from the store)."),
        "{ended}"
    );
    for client in [&laptop, &phone] {
        let response = client.get("/rango/restricted/").dispatch().await;
        assert_eq!(response.status().code, 303, "still signed in");
    }
    assert_eq!(
        bob.get("/rango/restricted/").dispatch().await.status().code,
        200
    );
    assert_eq!(
        site.rango(&["user", "sessions", "ann"]).success(),
        "ann has no session.\n"
    );

    let stderr = site.rango(&["user", "sessions", "nobody"]).failure();
    assert!(stderr.contains("no user is named \"nobody\""), "{stderr}");
    let cookie = site
        .rango_with(
            &["user", "sessions", "bob"],
            &[("ROCKET_SESSION", "{backend=\"cookie\"}")],
        )
        .success();
    assert!(
        cookie.contains("this store cannot list sessions"),
        "{cookie}"
    );
}

/// What a user supplied is printed escaped: a control character or a bidirectional override in
/// a name or an e-mail (a row older than the checks, or written by hand) cannot write to the
/// operator's terminal.
#[tokio::test]
async fn user_commands_escape_what_users_supplied() {
    let site = Site::migrated();
    let pool = sqlx::SqlitePool::connect(&site.url())
        .await
        .expect("the database");
    sqlx::query(
        "INSERT INTO users (username, username_key, email, password, date_joined) \
         VALUES ($1, 'eve', $2, 'x', '2026-01-01T00:00:00Z')",
    )
    .bind("eve\u{1b}[2J")
    .bind("eve\u{202e}moc.elpmaxe@\u{7}eve\r\nforged line")
    .execute(&pool)
    .await
    .expect("insert");
    pool.close().await;
    let listed = site.rango(&["user", "list"]).success();
    assert!(
        !listed.contains(['\u{1b}', '\u{7}', '\u{202e}', '\r']),
        "{listed:?}"
    );
    assert_eq!(listed.lines().count(), 1, "{listed:?}");
    assert!(
        listed.contains("eve\\u{1b}[2J\teve\\u{202e}moc.elpmaxe@\\u{7}eve\\u{d}\\u{a}forged line"),
        "{listed:?}"
    );
    let sessions = site.rango(&["user", "sessions", "eve"]).success();
    assert!(
        sessions.contains("eve\\u{1b}[2J has no session."),
        "{sessions:?}"
    );
}

/// `rango session show` escapes what JSON leaves raw: a visitor's `User-Agent` (kept in a
/// signed-in session) with a C1 control (U+009B, a terminal's one-character escape), DEL and
/// a bidirectional override.
#[tokio::test]
async fn session_show_escapes_what_a_visitor_supplied() {
    let site = Site::migrated();
    let browser = signed_in_browser(&site, "eve", "Evil/1.0 \u{9b}31m\u{7f} \u{202e}gpj.exe").await;
    let key = browser
        .cookies()
        .get("sessionid")
        .expect("a session")
        .value()
        .to_owned();
    let shown = site.rango(&["session", "show", &key]).success();
    assert!(
        !shown.contains(['\u{9b}', '\u{7f}', '\u{202e}']),
        "{shown:?}"
    );
    assert!(
        shown.contains("Evil/1.0 \\u{9b}31m\\u{7f} \\u{202e}gpj.exe"),
        "{shown:?}"
    );
}

/// `rango user unlock` forgets the failed attempts that lock a username (in any case) or an
/// address (an IPv6 one by its /64), and says when there were none.
#[tokio::test]
async fn user_unlock_forgets_the_failures_of_a_username_or_an_address() {
    let site = Site::migrated();
    let pool = site.pool().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for key in [
        "user:ann",
        "addr:192.0.2.1",
        "addr:2001:db8:0:1::/64",
        "user:bob",
    ] {
        for _ in 0..10 {
            sqlx::query("INSERT INTO throttle (key, at) VALUES ($1, $2)")
                .bind(key)
                .bind(now)
                .execute(&pool)
                .await
                .expect("a failure");
        }
    }
    let out = site.rango(&["user", "unlock", "ANN"]).success();
    assert!(out.starts_with("Unlocked ANN"), "{out}");
    let out = site
        .rango(&["user", "unlock", "--address", "2001:db8:0:1:abcd::5"])
        .success();
    assert!(out.starts_with("Unlocked 2001:db8:0:1:abcd::5"), "{out}");
    let out = site.rango(&["user", "unlock", "ann"]).success();
    assert!(out.contains("had no failed attempts"), "{out}");
    let left: Vec<String> = sqlx::query_scalar("SELECT DISTINCT key FROM throttle ORDER BY key")
        .fetch_all(&pool)
        .await
        .expect("keys");
    assert_eq!(left, ["addr:192.0.2.1", "user:bob"]);
    assert_ne!(
        site.rango(&["user", "unlock"]).status,
        0,
        "says what it needs"
    );
}
