//! The crate's own factory, `Backends`: the store `session.backend` names, built at ignite from
//! Rocket's configuration and the application's `rocket_db_pools` database.

use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket::{get, routes, Build, Rocket};
use rocket_db_pools::Database;
use rocket_server_sessions::{Backends, Session, Sessions};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::common::figment;

#[derive(Database)]
#[database("sessions")]
struct Db(sqlx::SqlitePool);

#[get("/")]
fn count(session: Session<'_>) -> String {
    let visits: u64 = session.get("visits").unwrap_or(0) + 1;
    session.insert("visits", visits).ok();
    visits.to_string()
}

/// An application with the database `sessions` on a file in `dir` and `settings`.
fn app(dir: &TempDir, settings: &[(&str, Value)]) -> Rocket<Build> {
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("sessions.sqlite3").display()
    );
    let mut all = vec![("databases.sessions.url", json!(url))];
    all.extend(settings.iter().cloned());
    rocket::custom(figment(&all))
        .attach(Db::init())
        .attach(Sessions::fairing(Backends::new().database::<Db>()))
        .mount("/", routes![count])
}

/// The launch error's kind is read, as Rocket requires of an error it is not to panic over.
async fn launch_fails(rocket: Rocket<Build>) {
    let error = rocket.ignite().await.expect_err("the launch stops");
    assert!(
        matches!(error.kind(), rocket::error::ErrorKind::FailedFairings(_)),
        "{error:?}"
    );
}

async fn visits(client: &Client) -> String {
    let response = client.get("/").dispatch().await;
    assert_eq!(response.status(), Status::Ok);
    response.into_string().await.expect("a body")
}

#[rocket::async_test]
async fn db_makes_its_table_on_the_applications_database_and_counts_across_a_restart() {
    let dir = TempDir::new().expect("temp dir");
    let client = Client::tracked(app(&dir, &[])).await.expect("launches");
    assert_eq!(visits(&client).await, "1");
    assert_eq!(visits(&client).await, "2");
    let cookies: Vec<_> = client.cookies().iter().cloned().collect();
    client.terminate().await;

    let client = Client::untracked(app(&dir, &[]))
        .await
        .expect("launches again");
    let response = client.get("/").cookies(cookies).dispatch().await;
    assert_eq!(
        response.into_string().await.as_deref(),
        Some("3"),
        "the session survived the restart"
    );
}

#[rocket::async_test]
async fn each_name_builds_its_store_and_an_unknown_one_stops_the_launch() {
    let dir = TempDir::new().expect("temp dir");
    for backend in ["memory", "cookie"] {
        let client = Client::tracked(app(&dir, &[("session.backend", json!(backend))]))
            .await
            .expect("launches");
        assert_eq!(visits(&client).await, "1", "{backend}");
        assert_eq!(visits(&client).await, "2", "{backend}");
    }
    launch_fails(app(&dir, &[("session.backend", json!("file"))])).await;
}

#[rocket::async_test]
async fn db_without_the_database_attached_stops_the_launch() {
    let rocket = rocket::custom(figment(&[]))
        .attach(Sessions::fairing(Backends::new().database::<Db>()))
        .mount("/", routes![count]);
    launch_fails(rocket).await;
    let rocket = rocket::custom(figment(&[]))
        .attach(Sessions::fairing(Backends::new()))
        .mount("/", routes![count]);
    launch_fails(rocket).await;
}

#[rocket::async_test]
async fn an_invalid_setting_of_a_store_not_in_use_stops_the_launch() {
    let dir = TempDir::new().expect("temp dir");
    let settings = [
        ("session.backend", json!("memory")),
        ("session.redis.url", json!("http://not-redis")),
    ];
    launch_fails(app(&dir, &settings)).await;
}

#[test]
fn the_known_names_are_the_stores_of_this_build() {
    assert_eq!(
        Backends::KNOWN,
        ["db", "redis", "cache", "cached_db", "cookie", "memory"]
    );
}
