//! The session framework through HTTP: cookies, saving rules, expiry, keys, concurrency.

use crate::common::*;
use rocket::http::{Header, Status};
use rocket::local::asynchronous::LocalResponse;
use rocket_server_sessions::store::SessionKey;
use serde_json::json;
use time::OffsetDateTime;

const FORGED: &str = "abcdefghijklmnopqrstuvwxyz012345";

fn assert_close(actual: i64, expected: i64, what: &str) {
    assert!(
        (actual - expected).abs() <= 5,
        "{what}: {actual} vs {expected}"
    );
}

/// Checks a persistent session cookie attribute by attribute, in Rocket's order.
fn assert_persistent_cookie(header: &str, max_age: i64) {
    let parts: Vec<&str> = header.split("; ").collect();
    let value = cookie_value(header);
    assert_eq!(parts[0], format!("sessionid={value}"));
    assert_eq!(value.len(), SessionKey::LEN);
    assert!(value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    assert_eq!(
        &parts[1..5],
        [
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            &format!("Max-Age={max_age}")
        ],
        "{header}"
    );
    assert_eq!(parts.len(), 6, "{header}");
    let cookie = rocket::http::Cookie::parse(header.to_owned()).expect("parses");
    let expires = cookie.expires_datetime().expect("an Expires date");
    let expected = OffsetDateTime::now_utc().unix_timestamp() + max_age;
    assert_close(
        expires.unix_timestamp(),
        expected,
        "Expires matches Max-Age",
    );
}

const REMOVAL: &str =
    "sessionid=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT";

#[tokio::test]
async fn persistent_session_cookie_has_max_age_and_matching_expires() {
    let app = TestApp::tracked(&[]).await;
    let response = app.get("/t/set/a/1").await;
    let header = session_set_cookie(&response).expect("a cookie");
    assert_persistent_cookie(&header, 1_209_600);
}

#[tokio::test]
async fn cookie_age_setting_sets_max_age_and_server_expiry() {
    let app = TestApp::tracked(&[("session.cookie_age", json!(60))]).await;
    let response = app.get("/t/set/a/1").await;
    let header = session_set_cookie(&response).expect("a cookie");
    assert_persistent_cookie(&header, 60);
    let (_, expires, _) = app.row(&cookie_value(&header)).await.expect("a row");
    assert_close(
        expires,
        OffsetDateTime::now_utc().unix_timestamp() + 60,
        "row expiry",
    );
}

#[tokio::test]
async fn browser_close_session_cookie_has_neither_max_age_nor_expires() {
    let app = TestApp::tracked(&[("session.expire_at_browser_close", json!(true))]).await;
    let response = app.get("/t/set/a/1").await;
    let header = session_set_cookie(&response).expect("a cookie");
    let value = cookie_value(&header);
    assert_eq!(
        header,
        format!("sessionid={value}; HttpOnly; SameSite=Lax; Path=/")
    );
    // The server still forgets it cookie_age after its last save, as Django does.
    let (_, expires, _) = app.row(&value).await.expect("a row");
    assert_close(
        expires,
        OffsetDateTime::now_utc().unix_timestamp() + 1_209_600,
        "row expiry",
    );
}

#[tokio::test]
async fn configured_cookie_attributes_are_all_sent() {
    let app = TestApp::tracked(&[
        ("session.cookie_name", json!("site_sid")),
        ("session.cookie_domain", json!("example.com")),
        ("session.cookie_path", json!("/t")),
        ("session.cookie_secure", json!(true)),
        ("session.cookie_http_only", json!(false)),
        ("session.cookie_same_site", json!("Strict")),
        ("session.cookie_age", json!(120)),
    ])
    .await;
    let response = app.get("/t/set/a/1").await;
    let header = set_cookies(&response).pop().expect("a cookie");
    let value = cookie_value(&header);
    assert!(
        header.starts_with(&format!("site_sid={value}; ")),
        "{header}"
    );
    for attribute in [
        "SameSite=Strict",
        "Secure",
        "Path=/t",
        "Domain=example.com",
        "Max-Age=120",
    ] {
        assert!(
            header.split("; ").any(|a| a == attribute),
            "{attribute} in {header}"
        );
    }
    assert!(!header.contains("HttpOnly"), "{header}");
}

#[tokio::test]
async fn a_page_that_stores_nothing_sets_no_cookie_and_no_row() {
    let app = TestApp::tracked(&[]).await;
    let response = app.get("/t/get/a").await;
    assert_eq!(response.into_string().await.as_deref(), Some("none"));
    let response = app.get("/t/info").await;
    assert!(set_cookies(&response).is_empty());
    assert_eq!(app.session_rows().await, 0);
}

#[tokio::test]
async fn responses_whose_handler_used_the_session_vary_on_cookie() {
    let app = TestApp::tracked(&[]).await;
    assert_eq!(vary(&app.get("/t/get/a").await).as_deref(), Some("Cookie"));
    assert_eq!(
        vary(&app.get("/t/set/a/1").await).as_deref(),
        Some("Cookie")
    );
    assert_eq!(vary(&app.get("/t/plain").await), None);
}

#[tokio::test]
async fn values_persist_across_requests() {
    let app = TestApp::tracked(&[]).await;
    app.get("/t/set/a/hello").await;
    let body = app.get("/t/get/a").await.into_string().await;
    assert_eq!(body.as_deref(), Some("\"hello\""));
    let body = app.get("/t/remove/a").await.into_string().await;
    assert_eq!(body.as_deref(), Some("\"hello\""));
    let body = app.get("/t/get/a").await.into_string().await;
    assert_eq!(body.as_deref(), Some("none"));
}

#[tokio::test]
async fn an_unchanged_session_is_not_saved_again() {
    let app = TestApp::tracked(&[("session.sliding_expiry", json!(false))]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    let (_, _, version) = app.row(&key).await.expect("a row");
    // Reading, and writing an equal value, change nothing.
    for uri in ["/t/get/a", "/t/set/a/1", "/t/info", "/t/get/a"] {
        let response = app.get(uri).await;
        assert!(set_cookies(&response).is_empty(), "{uri}");
    }
    let (_, _, after) = app.row(&key).await.expect("a row");
    assert_eq!(after, version, "nothing saved");
}

#[tokio::test]
async fn save_every_request_saves_and_resends_the_cookie_each_time() {
    let app = TestApp::tracked(&[("session.save_every_request", json!(true))]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    for n in 2..=4 {
        let response = app.get("/t/get/a").await;
        assert_eq!(new_key(&response), key);
        let (_, _, version) = app.row(&key).await.expect("a row");
        assert_eq!(version, n);
    }
}

#[tokio::test]
async fn sliding_expiry_resaves_only_past_half_the_age() {
    let app = TestApp::tracked(&[
        ("session.sliding_expiry", json!(true)),
        ("session.cookie_age", json!(1000)),
    ])
    .await;
    let key = new_key(&app.get("/t/set/a/1").await);
    // Fresh: no save on a read.
    assert!(set_cookies(&app.get("/t/get/a").await).is_empty());
    // 600 of 1000 seconds gone: the next read renews the session and its cookie.
    let now = OffsetDateTime::now_utc().unix_timestamp();
    app.set_expires(&key, now + 400).await;
    let response = app.get("/t/get/a").await;
    let header = session_set_cookie(&response).expect("renewed cookie");
    assert_eq!(cookie_value(&header), key);
    assert_persistent_cookie(&header, 1000);
    let (_, expires, _) = app.row(&key).await.expect("a row");
    assert_close(expires, now + 1000, "renewed expiry");
    // Renewed: quiet again.
    assert!(set_cookies(&app.get("/t/get/a").await).is_empty());
}

#[tokio::test]
async fn sliding_expiry_off_never_resaves_a_read() {
    let app = TestApp::tracked(&[
        ("session.sliding_expiry", json!(false)),
        ("session.cookie_age", json!(1000)),
    ])
    .await;
    let key = new_key(&app.get("/t/set/a/1").await);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    app.set_expires(&key, now + 10).await;
    assert!(set_cookies(&app.get("/t/get/a").await).is_empty());
    assert_eq!(app.row(&key).await.expect("a row").1, now + 10);
}

#[tokio::test]
async fn a_well_formed_unknown_key_is_never_adopted() {
    let app = TestApp::untracked(&[]).await;
    let response = app.get_with("/t/set/a/1", FORGED).await;
    let key = new_key(&response);
    assert_ne!(key, FORGED);
    assert_eq!(app.session_rows().await, 1);
    assert!(app.row(FORGED).await.is_none());
}

#[tokio::test]
async fn malformed_cookies_start_a_fresh_session() {
    let app = TestApp::untracked(&[]).await;
    let long = "a".repeat(5000);
    for bad in [
        "",
        "1",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        "é",
        long.as_str(),
    ] {
        let response = app.get_with("/t/set/a/1", bad).await;
        assert_eq!(response.status(), Status::Ok);
        let key = new_key(&response);
        assert_ne!(key, bad);
        assert_eq!(key.len(), SessionKey::LEN);
    }
}

#[tokio::test]
async fn an_unknown_key_on_a_read_only_page_creates_nothing_and_sends_no_cookie() {
    let app = TestApp::untracked(&[]).await;
    let response = app.get_with("/t/get/a", FORGED).await;
    assert_eq!(response.status(), Status::Ok);
    // A value this server did not issue (or no longer knows) gets no removal cookie: it may
    // have been planted beside the visitor's real one, which a removal would delete.
    assert!(set_cookies(&response).is_empty());
    assert_eq!(app.session_rows().await, 0);
}

/// A GET of `uri` whose `Cookie` header carries `sessionid` once per value, in this order.
async fn get_with_cookies<'a>(app: &'a TestApp, uri: &str, values: &[&str]) -> LocalResponse<'a> {
    let header = values
        .iter()
        .map(|value| format!("sessionid={value}"))
        .collect::<Vec<_>>()
        .join("; ");
    app.client
        .get(uri.to_owned())
        .header(Header::new("Cookie", format!("other=1; {header}")))
        .dispatch()
        .await
}

#[tokio::test]
async fn of_several_session_cookies_the_first_that_names_a_live_session_wins() {
    let app = TestApp::untracked(&[]).await;
    let ann = new_key(&app.get("/t/set/user/ann").await);
    let bob = new_key(&app.get("/t/set/user/bob").await);
    for (values, user) in [
        (vec!["junk", ann.as_str()], "\"ann\""),
        (vec![ann.as_str(), "junk"], "\"ann\""),
        (vec![FORGED, bob.as_str(), ann.as_str()], "\"bob\""),
        (vec![ann.as_str(), bob.as_str()], "\"ann\""),
    ] {
        let response = get_with_cookies(&app, "/t/get/user", &values).await;
        assert_eq!(response.status(), Status::Ok, "{values:?}");
        assert!(set_cookies(&response).is_empty(), "{values:?}");
        let body = response.into_string().await;
        assert_eq!(body.as_deref(), Some(user), "{values:?}");
    }
}

#[tokio::test]
async fn a_planted_session_cookie_never_gets_the_real_one_removed() {
    let app = TestApp::untracked(&[]).await;
    let real = new_key(&app.get("/t/set/a/1").await);
    // Junk or an unknown key planted before (or instead of) the real cookie, on pages that
    // read, write, empty or flush the session: no removal cookie for what we did not issue.
    for uri in ["/t/get/a", "/t/remove/b", "/t/clear", "/t/flush"] {
        let response = get_with_cookies(&app, uri, &["junk", FORGED]).await;
        assert!(set_cookies(&response).is_empty(), "{uri}");
    }
    let body = app.get_with("/t/get/a", &real).await.into_string().await;
    assert_eq!(
        body.as_deref(),
        Some("\"1\""),
        "the real session is untouched"
    );
    // Once the real session is found, emptying it removes its cookie as before.
    let response = get_with_cookies(&app, "/t/flush", &["junk", &real]).await;
    assert_eq!(session_set_cookie(&response).as_deref(), Some(REMOVAL));
    assert_eq!(app.session_rows().await, 0);
}

#[tokio::test]
async fn a_request_is_looked_up_by_four_session_cookies_at_most() {
    let app = TestApp::untracked(&[]).await;
    let real = new_key(&app.get("/t/set/a/1").await);
    let junk = ["j1", "j2", "j3", "j4"];
    let response =
        get_with_cookies(&app, "/t/get/a", &[&junk[..], &[real.as_str()]].concat()).await;
    assert_eq!(response.into_string().await.as_deref(), Some("none"));
    let response =
        get_with_cookies(&app, "/t/get/a", &[&junk[..3], &[real.as_str()]].concat()).await;
    assert_eq!(response.into_string().await.as_deref(), Some("\"1\""));
}

#[tokio::test]
async fn an_expired_session_is_never_loaded() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    let past = OffsetDateTime::now_utc().unix_timestamp() - 1;
    app.set_expires(&key, past).await;
    let body = app.get_with("/t/get/a", &key).await.into_string().await;
    assert_eq!(body.as_deref(), Some("none"));
    let response = app.get_with("/t/set/b/2", &key).await;
    assert_ne!(new_key(&response), key, "a new key, not the expired one");
}

#[tokio::test]
async fn set_expiry_in_the_past_ends_the_session() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    app.get_with("/t/expiry/age:-10", &key).await;
    let body = app.get_with("/t/get/a", &key).await.into_string().await;
    assert_eq!(body.as_deref(), Some("none"));
}

#[tokio::test]
async fn a_corrupt_record_reads_as_an_empty_session() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    app.exec_on(
        &key,
        "UPDATE session SET data = 'not json {' WHERE key_hash = ?1",
    )
    .await;
    let response = app.get_with("/t/get/a", &key).await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.into_string().await.as_deref(), Some("none"));
    // Writing to it works again.
    let response = app.get_with("/t/set/b/2", &key).await;
    assert_eq!(response.status(), Status::Ok);
    let body = app
        .get_with("/t/get/b", &new_key(&response))
        .await
        .into_string()
        .await;
    assert_eq!(body.as_deref(), Some("\"2\""));
}

#[tokio::test]
async fn nothing_is_saved_when_the_response_is_a_server_error() {
    for status in [500, 503] {
        let app = TestApp::untracked(&[]).await;
        let response = app
            .client
            .get(format!("/t/fail/{status}/a/1"))
            .dispatch()
            .await;
        assert_eq!(response.status().code, status);
        assert!(set_cookies(&response).is_empty());
        assert_eq!(app.session_rows().await, 0);
        // An existing session keeps its old value.
        let key = new_key(&app.get("/t/set/a/old").await);
        let response = app.get_with(&format!("/t/fail/{status}/a/new"), &key).await;
        assert!(set_cookies(&response).is_empty());
        let body = app.get_with("/t/get/a", &key).await.into_string().await;
        assert_eq!(body.as_deref(), Some("\"old\""));
    }
}

#[tokio::test]
async fn a_client_error_response_still_saves() {
    let app = TestApp::untracked(&[]).await;
    let response = app.client.get("/t/fail/404/a/1").dispatch().await;
    assert_eq!(response.status(), Status::NotFound);
    assert!(session_set_cookie(&response).is_some());
    assert_eq!(app.session_rows().await, 1);
}

#[tokio::test]
async fn flush_deletes_the_row_and_the_cookie() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    let response = app.get_with("/t/flush", &key).await;
    assert_eq!(session_set_cookie(&response).as_deref(), Some(REMOVAL));
    assert_eq!(vary(&response).as_deref(), Some("Cookie"));
    assert_eq!(app.session_rows().await, 0);
    let body = app.get_with("/t/get/a", &key).await.into_string().await;
    assert_eq!(body.as_deref(), Some("none"));
}

#[tokio::test]
async fn the_removal_cookie_keeps_the_configured_path_and_domain() {
    let app = TestApp::untracked(&[
        ("session.cookie_domain", json!("example.com")),
        ("session.cookie_path", json!("/t")),
        ("session.cookie_same_site", json!("Strict")),
    ])
    .await;
    let key = new_key(&app.get("/t/set/a/1").await);
    let response = app.get_with("/t/flush", &key).await;
    assert_eq!(
        session_set_cookie(&response).as_deref(),
        Some(
            "sessionid=; HttpOnly; SameSite=Strict; Path=/t; Domain=example.com; Max-Age=0; \
             Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        )
    );
}

#[tokio::test]
async fn flush_without_a_cookie_sends_no_set_cookie_but_varies() {
    let app = TestApp::untracked(&[]).await;
    let response = app.get("/t/flush").await;
    assert!(set_cookies(&response).is_empty());
    assert_eq!(vary(&response).as_deref(), Some("Cookie"));
}

#[tokio::test]
async fn flush_then_insert_starts_a_new_session_under_a_new_key() {
    let app = TestApp::untracked(&[]).await;
    let old = new_key(&app.get("/t/set/a/1").await);
    let response = app.get_with("/t/flush_then_set/b/2", &old).await;
    let new = new_key(&response);
    assert_ne!(new, old);
    assert!(app.row(&old).await.is_none());
    let info = info_of(app.get_with("/t/info", &new).await).await;
    assert_eq!(info["keys"], json!(["b"]));
}

#[tokio::test]
async fn emptying_the_session_by_clear_or_remove_drops_row_and_cookie() {
    for emptying in ["/t/clear", "/t/remove/a"] {
        let app = TestApp::untracked(&[]).await;
        let key = new_key(&app.get("/t/set/a/1").await);
        let response = app.get_with(emptying, &key).await;
        assert_eq!(
            session_set_cookie(&response).as_deref(),
            Some(REMOVAL),
            "{emptying}"
        );
        assert_eq!(app.session_rows().await, 0, "{emptying}");
    }
}

#[tokio::test]
async fn cycle_key_keeps_the_data_under_a_new_key_and_deletes_the_old_row() {
    let app = TestApp::untracked(&[]).await;
    let old = new_key(&app.get("/t/set/a/1").await);
    let response = app.get_with("/t/cycle", &old).await;
    let new = new_key(&response);
    assert_ne!(new, old);
    assert!(app.row(&old).await.is_none(), "old row gone");
    let body = app.get_with("/t/get/a", &new).await.into_string().await;
    assert_eq!(body.as_deref(), Some("\"1\""));
    let body = app.get_with("/t/get/a", &old).await.into_string().await;
    assert_eq!(body.as_deref(), Some("none"), "the old key no longer works");
    assert_eq!(app.session_rows().await, 1);
}

#[tokio::test]
async fn set_expiry_chooses_the_cookie_kind_per_session() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/1").await);

    let header =
        session_set_cookie(&app.get_with("/t/expiry/browser", &key).await).expect("cookie");
    assert_eq!(
        header,
        format!("sessionid={key}; HttpOnly; SameSite=Lax; Path=/")
    );
    let info = info_of(app.get_with("/t/info", &key).await).await;
    assert_eq!(info["browser_close"], json!(true));
    assert_eq!(info["age"], json!(1_209_600));

    let header = session_set_cookie(&app.get_with("/t/expiry/age:60", &key).await).expect("cookie");
    assert_persistent_cookie(&header, 60);
    let info = info_of(app.get_with("/t/info", &key).await).await;
    assert_eq!(
        (info["browser_close"].clone(), info["age"].clone()),
        (json!(false), json!(60))
    );

    let at = OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let header = session_set_cookie(&app.get_with(&format!("/t/expiry/at:{at}"), &key).await)
        .expect("cookie");
    let max_age: i64 = header
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .expect("number");
    assert_close(max_age, 3600, "Max-Age until the date");
    assert_close(
        app.row(&key).await.expect("row").1,
        at,
        "row expiry at the date",
    );
    let info = info_of(app.get_with("/t/info", &key).await).await;
    assert_eq!(info["date"], json!(at));

    let header =
        session_set_cookie(&app.get_with("/t/expiry/default", &key).await).expect("cookie");
    assert_persistent_cookie(&header, 1_209_600);
    let info = info_of(app.get_with("/t/info", &key).await).await;
    assert_eq!(info["expiry"], json!("Default"));
    assert_eq!(info["keys"], json!(["a"]), "the expiry key is gone");
}

#[tokio::test]
async fn set_expiry_age_overrides_browser_close_mode() {
    let app = TestApp::untracked(&[("session.expire_at_browser_close", json!(true))]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    let header = session_set_cookie(&app.get_with("/t/expiry/age:60", &key).await).expect("cookie");
    assert_persistent_cookie(&header, 60);
}

#[tokio::test]
async fn the_test_cookie_trio_works() {
    let app = TestApp::tracked(&[]).await;
    let body = app.get("/t/testcookie/check").await.into_string().await;
    assert_eq!(body.as_deref(), Some("not set"));
    app.get("/t/testcookie/set").await;
    let body = app.get("/t/testcookie/check").await.into_string().await;
    assert_eq!(body.as_deref(), Some("worked"));
    app.get("/t/testcookie/delete").await;
    let body = app.get("/t/testcookie/check").await.into_string().await;
    assert_eq!(body.as_deref(), Some("not set"));
}

#[tokio::test]
async fn session_info_reports_key_emptiness_and_defaults() {
    let app = TestApp::untracked(&[]).await;
    let info = info_of(app.get("/t/info").await).await;
    assert_eq!(info["key"], json!(null));
    assert_eq!(info["empty"], json!(true));
    assert_eq!(info["browser_close"], json!(false));
    let key = new_key(&app.get("/t/set/a/1").await);
    let info = info_of(app.get_with("/t/info", &key).await).await;
    assert_eq!(info["key"], json!(key));
    assert_eq!(
        (info["empty"].clone(), info["contains_a"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(info["modified"], json!(false));
}

#[tokio::test]
async fn two_guards_in_one_handler_share_one_session() {
    let app = TestApp::tracked(&[]).await;
    let body = app.get("/t/twice").await.into_string().await;
    assert_eq!(body.as_deref(), Some("1"));
}

#[tokio::test]
async fn concurrent_requests_changing_different_keys_both_keep_their_change() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/base/0").await);
    let a = app.request_with("/t/slow_set/a/1/150", &key);
    let b = app.request_with("/t/slow_set/b/2/150", &key);
    let (ra, rb) = tokio::join!(a.dispatch(), b.dispatch());
    assert_eq!((ra.status(), rb.status()), (Status::Ok, Status::Ok));
    let info = info_of(app.get_with("/t/info", &key).await).await;
    assert_eq!(info["keys"], json!(["a", "b", "base"]));
    let (_, _, version) = app.row(&key).await.expect("row");
    assert_eq!(version, 3, "two saves, both applied");
}

#[tokio::test]
async fn many_concurrent_requests_lose_no_key() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/base/0").await);
    let requests: Vec<_> = (0..12)
        .map(|i| app.request_with(&format!("/t/slow_set/k{i:02}/{i}/50"), &key))
        .collect();
    let responses = futures_join_all(requests).await;
    assert!(responses.iter().all(|s| *s == Status::Ok), "{responses:?}");
    let info = info_of(app.get_with("/t/info", &key).await).await;
    assert_eq!(info["keys"].as_array().expect("keys").len(), 13);
}

async fn futures_join_all(
    requests: Vec<rocket::local::asynchronous::LocalRequest<'_>>,
) -> Vec<Status> {
    let handles: Vec<_> = requests.into_iter().map(|r| r.dispatch()).collect();
    let mut statuses = Vec::new();
    // Polled together: each handler loads before any saves.
    let joined = rocket::futures::future::join_all(handles).await;
    for response in joined {
        statuses.push(response.status());
    }
    statuses
}

#[tokio::test]
async fn concurrent_changes_to_one_key_keep_the_last_save() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/0").await);
    let first = app.request_with("/t/slow_set/a/first/50", &key);
    let last = app.request_with("/t/slow_set/a/last/250", &key);
    tokio::join!(first.dispatch(), last.dispatch());
    let body = app.get_with("/t/get/a", &key).await.into_string().await;
    assert_eq!(body.as_deref(), Some("\"last\""));
}

#[tokio::test]
async fn a_session_flushed_meanwhile_is_never_brought_back() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    let slow = app.request_with("/t/slow_set/b/2/250", &key);
    let logout = app.request_with("/t/slow_flush/10", &key);
    let (slow, logout) = tokio::join!(slow.dispatch(), logout.dispatch());
    assert_eq!(logout.status(), Status::Ok);
    assert_eq!(slow.status(), Status::BadRequest);
    assert!(
        set_cookies(&slow).is_empty(),
        "the browser may hold a newer session by now: its cookie is left alone"
    );
    let body = slow.into_string().await.expect("body");
    assert!(body.contains("The request's session was deleted before the request completed"));
    assert_eq!(app.session_rows().await, 0, "not resurrected");
}

#[tokio::test]
async fn a_session_flushed_meanwhile_is_not_carried_to_a_cycled_key() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    let login = app.request_with("/t/slow_cycle/250", &key);
    let logout = app.request_with("/t/slow_flush/10", &key);
    let (login, logout) = tokio::join!(login.dispatch(), logout.dispatch());
    assert_eq!(logout.status(), Status::Ok);
    assert_eq!(login.status(), Status::BadRequest);
    assert!(
        set_cookies(&login).is_empty(),
        "no new key for an ended session"
    );
    assert_eq!(app.session_rows().await, 0, "not carried over");
    // Undisturbed, a cycled key keeps the data.
    let key = new_key(&app.get("/t/set/a/1").await);
    let cycled = new_key(&app.get_with("/t/cycle", &key).await);
    assert_ne!(cycled, key);
    let body = app.get_with("/t/get/a", &cycled).await.into_string().await;
    assert_eq!(body.as_deref(), Some("\"1\""));
}

#[tokio::test]
async fn the_store_keeps_only_a_digest_of_the_key() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    let stored: Vec<u8> = sqlx::query_scalar("SELECT key_hash FROM session")
        .fetch_one(app.pool())
        .await
        .expect("row");
    let digest = rocket_server_sessions::store::SessionKey::parse(&key)
        .expect("key")
        .digest();
    assert_eq!(stored, digest.to_vec());
    assert!(!String::from_utf8_lossy(&stored).contains(&key));
}

#[tokio::test]
async fn a_broken_store_gives_a_503_page_and_session_free_pages_still_work() {
    let app = TestApp::untracked(&[]).await;
    sqlx::query("DROP TABLE session")
        .execute(app.pool())
        .await
        .expect("drop");
    let response = app.get_with("/t/get/a", FORGED).await;
    assert_eq!(response.status(), Status::ServiceUnavailable);
    // Without a cookie nothing is loaded, but the save fails: a clear 503 too.
    let response = app.get("/t/set/a/1").await;
    assert_eq!(response.status(), Status::ServiceUnavailable);
    assert!(set_cookies(&response).is_empty());
    let body = response.into_string().await.expect("body");
    assert!(body.contains("session store is unavailable"), "{body}");
    assert_eq!(app.get("/t/plain").await.status(), Status::Ok);
}

#[tokio::test]
async fn an_absurd_expiry_age_is_a_date_far_ahead_not_a_panic() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    let response = app.get_with("/t/expiry/age:1000000000000", &key).await;
    assert_eq!(response.status(), Status::Ok);
    assert!(session_set_cookie(&response).is_some());
    let body = app.get_with("/t/get/a", &key).await.into_string().await;
    assert_eq!(body.as_deref(), Some("\"1\""));
}

#[tokio::test]
async fn data_nested_too_deep_to_read_back_is_refused_with_a_500_page() {
    let app = TestApp::untracked(&[]).await;
    let response = app.get("/t/deep/99").await;
    assert_eq!(
        response.status(),
        Status::Ok,
        "99 levels (100 with the map) are fine"
    );
    let key = new_key(&response);
    let info = info_of(app.get_with("/t/info", &key).await).await;
    assert_eq!(info["keys"], json!(["deep"]));
    let response = app.get("/t/deep/150").await;
    assert_eq!(response.status(), Status::InternalServerError);
    assert!(set_cookies(&response).is_empty());
    let body = response.into_string().await.expect("body");
    assert!(body.contains("nests deeper than 100 levels"), "{body}");
}

#[tokio::test]
async fn removing_the_last_key_keeps_a_key_another_request_added_meanwhile() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    let remove = app.request_with("/t/slow_remove/a/200", &key);
    let add = app.request_with("/t/slow_set/b/2/10", &key);
    let (removed, added) = tokio::join!(remove.dispatch(), add.dispatch());
    assert_eq!((removed.status(), added.status()), (Status::Ok, Status::Ok));
    assert_eq!(
        session_set_cookie(&removed).map(|c| cookie_value(&c)),
        Some(key.clone())
    );
    let info = info_of(app.get_with("/t/info", &key).await).await;
    assert_eq!(info["keys"], json!(["b"]));
}

#[tokio::test]
async fn concurrent_removals_that_empty_the_session_delete_it() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    app.get_with("/t/set/b/2", &key).await;
    let first = app.request_with("/t/slow_remove/a/100", &key);
    let second = app.request_with("/t/slow_remove/b/100", &key);
    tokio::join!(first.dispatch(), second.dispatch());
    assert_eq!(app.session_rows().await, 0, "no empty row is left behind");
}

#[tokio::test]
async fn concurrent_reads_due_for_sliding_renew_the_session_once() {
    let app = TestApp::untracked(&[
        ("session.sliding_expiry", json!(true)),
        ("session.cookie_age", json!(1000)),
    ])
    .await;
    let key = new_key(&app.get("/t/set/a/1").await);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    app.set_expires(&key, now + 100).await;
    let reads: Vec<_> = (0..6)
        .map(|_| app.request_with("/t/slow_get/a/50", &key))
        .collect();
    let responses =
        rocket::futures::future::join_all(reads.into_iter().map(|r| r.dispatch())).await;
    assert!(responses.iter().all(|r| r.status() == Status::Ok));
    let (_, expires, version) = app.row(&key).await.expect("a row");
    assert_eq!(version, 2, "one renewal, not one per request");
    assert_close(expires, now + 1000, "renewed");
}

#[tokio::test]
async fn a_response_that_sets_or_removes_the_cookie_is_private_to_caches() {
    let app = TestApp::untracked(&[]).await;
    let response = app.get("/t/set/a/1").await;
    assert_eq!(response.headers().get_one("Cache-Control"), Some("private"));
    let key = new_key(&response);
    // Merged with what the handler said: `public` dropped, the rest kept.
    for (given, merged) in [
        ("max-age=60", "private, max-age=60"),
        ("public, max-age=60", "private, max-age=60"),
        ("no-store", "no-store"),
        ("private, max-age=5", "private, max-age=5"),
        ("", "private"),
    ] {
        let uri = format!(
            "/t/cached/a/{}?cache={}",
            given.len(),
            given.replace(' ', "%20")
        );
        let response = app.get_with(&uri, &key).await;
        assert!(session_set_cookie(&response).is_some(), "{given}");
        let headers: Vec<&str> = response.headers().get("Cache-Control").collect();
        assert_eq!(headers, [merged], "{given}");
    }
    // A removal cookie too.
    let response = app.get_with("/t/cached/a/-?cache=public", &key).await;
    assert_eq!(session_set_cookie(&response).as_deref(), Some(REMOVAL));
    assert_eq!(response.headers().get_one("Cache-Control"), Some("private"));
    // A page that reads the session and sets no cookie is left as the handler made it.
    let key = new_key(&app.get("/t/set/a/1").await);
    let response = app.get_with("/t/get/a", &key).await;
    assert!(set_cookies(&response).is_empty());
    assert_eq!(response.headers().get_one("Cache-Control"), None);
}
