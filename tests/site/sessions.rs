//! The session framework's rules as the site's own pages meet them (the rules themselves are
//! tested in the crate, `rocket-server-sessions/tests/http/`): the index page's save once per
//! visit interval, static files outside the session, a broken store on the index page, and the
//! sealed-cookie store counting visits.

use rocket::http::Status;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn static_files_never_touch_the_session() {
    let app = TestApp::tracked(&[]).await;
    let response = app.get("/static/css/rango.css").await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(vary(&response), None);
    assert!(set_cookies(&response).is_empty());
}

#[tokio::test]
async fn the_index_page_saves_a_visit_once_per_interval() {
    let app = TestApp::tracked(&[("session.sliding_expiry", json!(false))]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    let (_, _, version) = app.row(&key).await.expect("a row");
    let response = app.get("/rango/").await; // the first visit counts: one save
    assert!(set_cookies(&response).len() == 1);
    let response = app.get("/rango/").await; // the second, within the interval: none
    assert!(set_cookies(&response).is_empty());
    let (_, _, after) = app.row(&key).await.expect("a row");
    assert_eq!(after, version + 1, "only the first index visit saved");
}

#[tokio::test]
async fn a_broken_store_gives_the_index_page_a_503_and_static_files_still_work() {
    let app = TestApp::untracked(&[]).await;
    sqlx::query("DROP TABLE session")
        .execute(app.pool())
        .await
        .expect("drop");
    let response = app
        .get_with("/rango/", "abcdefghijklmnopqrstuvwxyz012345")
        .await;
    assert_eq!(response.status(), Status::ServiceUnavailable);
    let body = response.into_string().await.expect("body");
    assert!(body.contains("session store is unavailable"), "{body}");
    // Without a cookie nothing is loaded, but the save fails: a clear 503 too.
    let response = app.get("/rango/").await;
    assert_eq!(response.status(), Status::ServiceUnavailable);
    assert!(set_cookies(&response).is_empty());
    assert_eq!(app.get("/static/css/rango.css").await.status(), Status::Ok);
}

#[tokio::test]
async fn the_cookie_store_counts_visits_with_nothing_stored() {
    let app = TestApp::tracked(&[
        ("session.backend", json!("cookie")),
        (
            "secret_key",
            json!("hPrLE9UkbMmvNmOXpSZdFgXR4jWvVYiX1qk4oUCsXk0="),
        ),
    ])
    .await;
    let body = app.get("/rango/").await.into_string().await.expect("body");
    assert_eq!(visits(&body), 1);
    assert_eq!(app.session_rows().await, 0);
}
