//! The sealed-cookie store through HTTP: the session lives in the cookie itself.

use crate::common::*;
use rocket::http::Status;
use serde_json::json;

const KEY_A: &str = "hPrLE9UkbMmvNmOXpSZdFgXR4jWvVYiX1qk4oUCsXk0=";
const KEY_B: &str = "2Tk0pVNSx0jzLOsTKqHJDuOgDZV38LDCkeVv7wsIHhQ=";

fn cookie_backend(secret: &str) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("session.backend", json!("cookie")),
        ("secret_key", json!(secret)),
    ]
}

#[tokio::test]
async fn the_session_travels_in_the_cookie_and_nothing_is_stored() {
    let app = TestApp::tracked(&cookie_backend(KEY_A)).await;
    let response = app.get("/t/set/a/hello").await;
    let value = new_key(&response);
    assert!(value.len() > 32, "a sealed session, not a key");
    assert!(!value.contains("hello"), "encrypted");
    let body = app.get("/t/get/a").await.into_string().await;
    assert_eq!(body.as_deref(), Some("\"hello\""));
    assert_eq!(app.session_rows().await, 0);
}

#[tokio::test]
async fn a_cookie_sealed_with_another_key_starts_a_fresh_session() {
    let a = TestApp::untracked(&cookie_backend(KEY_A)).await;
    let b = TestApp::untracked(&cookie_backend(KEY_B)).await;
    let sealed = new_key(&a.get("/t/set/a/1").await);
    let body = b.get_with("/t/get/a", &sealed).await.into_string().await;
    assert_eq!(body.as_deref(), Some("none"));
    let body = a.get_with("/t/get/a", &sealed).await.into_string().await;
    assert_eq!(body.as_deref(), Some("\"1\""));
}

#[tokio::test]
async fn a_session_too_big_for_a_cookie_gets_a_500_page_that_says_why() {
    let app = TestApp::untracked(&cookie_backend(KEY_A)).await;
    let big = "x".repeat(4000);
    let response = app.get(&format!("/t/set/big/{big}")).await;
    assert_eq!(response.status(), Status::InternalServerError);
    assert!(
        set_cookies(&response).is_empty(),
        "no cookie the browser would drop"
    );
    let body = response.into_string().await.expect("body");
    assert!(body.contains("browsers keep at most 4096"), "{body}");
}
