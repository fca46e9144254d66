//! The session layer on its own, as a crate user would mount it: with a counting store, to see
//! exactly what store I/O each request costs, and with a store that fails.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::Client;
use rocket::{get, routes, Build, Rocket};
use time::OffsetDateTime;

use rocket_server_sessions::store::{
    Census, ClearInBatches, Data, Record, SessionStore, StoreError, Stored, UserIndex,
};
use rocket_server_sessions::stores::MemoryStore;
use rocket_server_sessions::{Session, SessionConfig, Sessions};

/// A memory store that counts the calls it gets.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    loads: AtomicUsize,
    writes: AtomicUsize,
}

#[rocket::async_trait]
impl SessionStore for Counting {
    async fn load(&self, id: &str) -> rocket_server_sessions::store::Result<Option<Record>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(id).await
    }
    async fn create(
        &self,
        data: &Data,
        expires: OffsetDateTime,
    ) -> rocket_server_sessions::store::Result<Stored> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.create(data, expires).await
    }
    async fn update(
        &self,
        id: &str,
        record: &Record,
    ) -> rocket_server_sessions::store::Result<Option<Stored>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.update(id, record).await
    }
    async fn delete(&self, id: &str) -> rocket_server_sessions::store::Result<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(id).await
    }
    async fn clear_expired(&self) -> rocket_server_sessions::store::Result<u64> {
        self.inner.clear_expired().await
    }
    fn expires_by_itself(&self) -> bool {
        self.inner.expires_by_itself()
    }
    fn batches(&self) -> Option<&dyn ClearInBatches> {
        self.inner.batches()
    }
    fn census(&self) -> Option<&dyn Census> {
        self.inner.census()
    }
    fn user_index(&self) -> Option<&dyn UserIndex> {
        self.inner.user_index()
    }
    async fn describe(&self) -> rocket_server_sessions::store::Result<String> {
        self.inner.describe().await
    }
}

/// A store that is down.
struct Down;

#[rocket::async_trait]
impl SessionStore for Down {
    async fn load(&self, _: &str) -> rocket_server_sessions::store::Result<Option<Record>> {
        Err(StoreError::backend(std::io::Error::other(
            "connection refused",
        )))
    }
    async fn create(
        &self,
        _: &Data,
        _: OffsetDateTime,
    ) -> rocket_server_sessions::store::Result<Stored> {
        Err(StoreError::backend(std::io::Error::other(
            "connection refused",
        )))
    }
    async fn update(
        &self,
        _: &str,
        _: &Record,
    ) -> rocket_server_sessions::store::Result<Option<Stored>> {
        Err(StoreError::backend(std::io::Error::other(
            "connection refused",
        )))
    }
    async fn delete(&self, _: &str) -> rocket_server_sessions::store::Result<()> {
        Err(StoreError::backend(std::io::Error::other(
            "connection refused",
        )))
    }
    async fn clear_expired(&self) -> rocket_server_sessions::store::Result<u64> {
        Err(StoreError::backend(std::io::Error::other(
            "connection refused",
        )))
    }
    fn expires_by_itself(&self) -> bool {
        false
    }
    fn batches(&self) -> Option<&dyn ClearInBatches> {
        None
    }
    fn census(&self) -> Option<&dyn Census> {
        None
    }
    fn user_index(&self) -> Option<&dyn UserIndex> {
        None
    }
    // Up at launch; down from the first request on.
    async fn describe(&self) -> rocket_server_sessions::store::Result<String> {
        Ok("a store that goes down".into())
    }
}

#[get("/plain")]
fn plain() -> &'static str {
    "plain"
}

#[get("/read")]
fn read(session: Session<'_>) -> String {
    session.get::<u32>("n").unwrap_or(0).to_string()
}

#[get("/write")]
fn write(session: Session<'_>) -> &'static str {
    let n = session.get::<u32>("n").unwrap_or(0);
    session.insert("n", n + 1).expect("serializes");
    "ok"
}

#[get("/twice")]
fn twice(a: Session<'_>, b: Session<'_>) -> String {
    format!("{}{}", a.is_empty(), b.is_empty())
}

fn app(store: Arc<dyn SessionStore>) -> Rocket<Build> {
    app_with(store, rocket::Config::figment())
}

fn app_with(store: Arc<dyn SessionStore>, figment: rocket::figment::Figment) -> Rocket<Build> {
    rocket::custom(figment.merge(("log_level", "off")))
        .attach(Sessions::fairing(
            move |_: &Rocket<Build>, _: &SessionConfig| Ok(store.clone()),
        ))
        .mount("/", routes![plain, read, write, twice])
}

/// Starts a session through `/write` and returns its key.
async fn new_session(client: &Client) -> String {
    let response = client.get("/write").dispatch().await;
    let cookie = response
        .cookies()
        .get("sessionid")
        .expect("a session cookie");
    cookie.value().to_owned()
}

#[tokio::test]
async fn a_handler_without_a_session_costs_no_store_io() {
    let store = Arc::new(Counting::default());
    let client = Client::untracked(app(store.clone())).await.expect("launch");
    let key = new_session(&client).await;
    let (loads, writes) = (
        store.loads.load(Ordering::SeqCst),
        store.writes.load(Ordering::SeqCst),
    );
    for _ in 0..3 {
        let response = client
            .get("/plain")
            .cookie(Cookie::new("sessionid", key.clone()))
            .dispatch()
            .await;
        assert_eq!(response.status(), Status::Ok);
        assert!(response.headers().get_one("Set-Cookie").is_none());
        assert!(response.headers().get_one("Vary").is_none());
    }
    assert_eq!(store.loads.load(Ordering::SeqCst), loads);
    assert_eq!(store.writes.load(Ordering::SeqCst), writes);
}

#[tokio::test]
async fn a_session_loads_once_per_request_and_a_read_writes_nothing() {
    let store = Arc::new(Counting::default());
    let client = Client::untracked(app(store.clone())).await.expect("launch");
    let key = new_session(&client).await;
    assert_eq!(
        store.loads.load(Ordering::SeqCst),
        0,
        "no cookie, nothing to load"
    );
    assert_eq!(store.writes.load(Ordering::SeqCst), 1, "one create");

    let response = client
        .get("/twice")
        .cookie(Cookie::new("sessionid", key.clone()))
        .dispatch()
        .await;
    assert_eq!(response.into_string().await.as_deref(), Some("falsefalse"));
    assert_eq!(
        store.loads.load(Ordering::SeqCst),
        1,
        "two guards, one load"
    );

    let response = client
        .get("/read")
        .cookie(Cookie::new("sessionid", key.clone()))
        .dispatch()
        .await;
    assert_eq!(response.into_string().await.as_deref(), Some("1"));
    assert_eq!(store.loads.load(Ordering::SeqCst), 2);
    assert_eq!(
        store.writes.load(Ordering::SeqCst),
        1,
        "a read writes nothing"
    );

    client
        .get("/write")
        .cookie(Cookie::new("sessionid", key))
        .dispatch()
        .await;
    assert_eq!(store.loads.load(Ordering::SeqCst), 3);
    assert_eq!(
        store.writes.load(Ordering::SeqCst),
        2,
        "one update per save"
    );
}

#[tokio::test]
async fn a_store_that_is_down_gives_503_not_a_panic() {
    let client = Client::untracked(app(Arc::new(Down)))
        .await
        .expect("launch");
    let response = client
        .get("/read")
        .cookie(Cookie::new("sessionid", "abcdefghijklmnopqrstuvwxyz012345"))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::ServiceUnavailable);
    let response = client.get("/write").dispatch().await;
    assert_eq!(response.status(), Status::ServiceUnavailable);
    assert!(response.headers().get_one("Set-Cookie").is_none());
    let body = response.into_string().await.expect("body");
    assert!(body.contains("session store is unavailable"), "{body}");
    assert_eq!(client.get("/plain").dispatch().await.status(), Status::Ok);
}

#[tokio::test]
async fn a_route_using_session_without_the_fairing_refuses_to_launch() {
    let rocket = rocket::custom(rocket::Config::figment().merge(("log_level", "off")))
        .mount("/", routes![read]);
    let error = rocket.launch().await.expect_err("refused");
    assert!(matches!(
        error.kind(),
        rocket::error::ErrorKind::SentinelAborts(_)
    ));
}

#[tokio::test]
async fn with_sessions_off_pages_work_and_touch_no_store() {
    let store = Arc::new(Counting::default());
    let figment = rocket::Config::figment().merge(("session.enabled", false));
    let client = Client::untracked(app_with(store.clone(), figment))
        .await
        .expect("launch");
    for _ in 0..2 {
        let response = client
            .get("/write")
            .cookie(Cookie::new("sessionid", "abcdefghijklmnopqrstuvwxyz012345"))
            .dispatch()
            .await;
        assert_eq!(response.status(), Status::Ok);
        assert!(response.headers().get_one("Set-Cookie").is_none());
        assert!(response.headers().get_one("Vary").is_none());
    }
    let body = client.get("/read").dispatch().await.into_string().await;
    assert_eq!(body.as_deref(), Some("0"), "nothing was kept");
    assert_eq!(store.loads.load(Ordering::SeqCst), 0);
    assert_eq!(store.writes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_wrapper_that_hands_on_its_stores_capabilities_keeps_them_working() {
    let store = Counting::default();
    let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let Stored { id, .. } = store.create(&Data::new(), expires).await.expect("created");
    let census = store.census().expect("the memory store counts");
    assert_eq!(census.count().await.expect("answers").live, 1);
    assert_eq!(
        census.inspect(&id).await.expect("answers"),
        store.load(&id).await.expect("answers"),
    );
    assert!(
        store.user_index().is_some(),
        "the memory store lists users' sessions"
    );
    assert!(
        store.batches().is_none(),
        "the memory store clears in one pass"
    );
    assert!(!store.expires_by_itself());
}

/// A SQLite pool on a fresh file in `dir`, in the journal mode SQLite gives a new file.
async fn fresh_sqlite(dir: &tempfile::TempDir) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("sessions.sqlite3"))
        .create_if_missing(true);
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .expect("the temporary database opens")
}

/// A store whose table was never made stops the launch (saying to migrate), rather than
/// answering 503 on the first save; once migrated, it launches and says which store it is,
/// and `migrate` has set the file to WAL.
#[tokio::test]
async fn an_unmigrated_sql_store_stops_the_launch_and_a_migrated_one_says_what_it_is() {
    use rocket_server_sessions::stores::SqliteStore;
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = fresh_sqlite(&dir).await;
    let store = SqliteStore::new(pool.clone());
    let refused = store.describe().await.expect_err("no session table");
    assert!(refused.to_string().contains("migrate"), "{refused}");
    let rocket = rocket::custom(crate::common::figment(&[]))
        .attach(Sessions::with_store(store.clone()))
        .mount("/", routes![read]);
    let error = rocket.ignite().await.expect_err("the launch stops");
    assert!(
        matches!(error.kind(), rocket::error::ErrorKind::FailedFairings(_)),
        "{error:?}"
    );

    store.migrate().await.expect("migrates");
    let described = store.describe().await.expect("ready");
    assert!(described.starts_with("SQLite at "), "{described}");
    assert!(described.ends_with("(journal_mode=wal)"), "{described}");
    let rocket = rocket::custom(crate::common::figment(&[]))
        .attach(Sessions::with_store(store))
        .mount("/", routes![read]);
    let client = Client::untracked(rocket).await.expect("launches");
    assert_eq!(client.get("/read").dispatch().await.status(), Status::Ok);
}
