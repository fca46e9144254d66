//! CSRF protection (`csrf.rs`) through HTTP: a form posts only with a token of its own session,
//! from the form field or the header; a refused post changes nothing; tokens are masked anew
//! on every response and rotate on login.

use rocket::http::{ContentType, Cookie, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket::{get, post, routes, FromForm, Request};
use rocket_server_sessions::csrf::{csrf_failure, CsrfError, NoFields, CSRF_FIELD, CSRF_HEADER};
use rocket_server_sessions::stores::MemoryStore;
use rocket_server_sessions::{rotate_csrf_token, Csrf, CsrfToken, Session, Sessions};

use crate::common::figment;

#[derive(FromForm)]
struct Comment {
    text: String,
}

#[get("/token")]
fn token(token: CsrfToken) -> String {
    token.to_string()
}

#[get("/form")]
fn form(token: CsrfToken) -> rocket::response::content::RawHtml<String> {
    rocket::response::content::RawHtml(format!(
        "<form method=post action=/comment>{}<input name=text></form>",
        token.hidden_input()
    ))
}

#[post("/comment", data = "<comment>")]
fn comment(comment: Csrf<Comment>, session: Session<'_>) -> &'static str {
    session.insert("comment", &comment.text).ok();
    "saved"
}

#[post("/login", data = "<form>")]
fn login(form: Csrf<NoFields>, session: Session<'_>) -> &'static str {
    let _ = form;
    session.cycle_key();
    rotate_csrf_token(&session);
    "signed in"
}

#[get("/comment")]
fn read(session: Session<'_>) -> String {
    session.get::<String>("comment").unwrap_or_default()
}

#[rocket::catch(403)]
fn forbidden(req: &Request<'_>) -> String {
    match csrf_failure(req) {
        Some(reason) => format!("CSRF verification failed. {reason}"),
        None => "forbidden".into(),
    }
}

async fn client() -> Client {
    client_with(&[]).await
}

async fn client_with(settings: &[(&str, serde_json::Value)]) -> Client {
    let rocket = rocket::custom(figment(settings))
        .attach(Sessions::with_store(MemoryStore::new()))
        .mount("/", routes![token, form, comment, login, read])
        .register("/", rocket::catchers![forbidden]);
    Client::untracked(rocket).await.expect("valid rocket")
}

/// The session cookie a response set.
fn session_of(response: &LocalResponse<'_>) -> Cookie<'static> {
    response
        .cookies()
        .get("sessionid")
        .expect("a session cookie")
        .clone()
        .into_owned()
}

/// A fresh session and a token of it.
async fn session_with_token(client: &Client) -> (Cookie<'static>, String) {
    let response = client.get("/token").dispatch().await;
    let cookie = session_of(&response);
    (cookie, response.into_string().await.expect("a token"))
}

async fn post_comment<'c>(
    client: &'c Client,
    cookie: Option<&Cookie<'static>>,
    body: String,
    header: Option<&str>,
) -> LocalResponse<'c> {
    let mut request = client.post("/comment").header(ContentType::Form).body(body);
    if let Some(cookie) = cookie {
        request = request.cookie(cookie.clone());
    }
    if let Some(token) = header {
        request = request.header(Header::new(CSRF_HEADER, token.to_owned()));
    }
    request.dispatch().await
}

async fn comment_of(client: &Client, cookie: &Cookie<'static>) -> String {
    let response = client
        .get("/comment")
        .cookie(cookie.clone())
        .dispatch()
        .await;
    response.into_string().await.unwrap_or_default()
}

#[rocket::async_test]
async fn a_form_with_its_sessions_token_posts_from_the_field_or_the_header() {
    let client = client().await;
    let (cookie, token) = session_with_token(&client).await;
    assert_eq!(token.len(), 64);
    let by_field = post_comment(
        &client,
        Some(&cookie),
        format!("{CSRF_FIELD}={token}&text=hi"),
        None,
    )
    .await;
    assert_eq!(by_field.status(), Status::Ok);
    assert_eq!(comment_of(&client, &cookie).await, "hi");
    let by_header = post_comment(&client, Some(&cookie), "text=again".into(), Some(&token)).await;
    assert_eq!(by_header.status(), Status::Ok);
    assert_eq!(comment_of(&client, &cookie).await, "again");
}

/// The form's hidden input, as a page renders it, posts: the field a browser sends back is the
/// one `Csrf<T>` reads.
#[rocket::async_test]
async fn a_page_with_the_hidden_input_posts_its_form() {
    let client = client().await;
    let response = client.get("/form").dispatch().await;
    let cookie = session_of(&response);
    let page = response.into_string().await.expect("a page");
    let prefix = format!(r#"<input type="hidden" name="{CSRF_FIELD}" value=""#);
    let start = page.find(&prefix).expect("the hidden input") + prefix.len();
    let token = &page[start..start + 64];
    assert_eq!(&page[start + 64..start + 66], "\">", "{page}");
    assert!(token.chars().all(|c| c.is_ascii_alphanumeric()), "{token}");
    let posted = post_comment(
        &client,
        Some(&cookie),
        format!("{CSRF_FIELD}={token}&text=from the form"),
        None,
    )
    .await;
    assert_eq!(posted.status(), Status::Ok);
    assert_eq!(comment_of(&client, &cookie).await, "from the form");
}

#[rocket::async_test]
async fn tokens_are_masked_anew_on_every_response_and_all_of_them_pass() {
    let client = client().await;
    let (cookie, first) = session_with_token(&client).await;
    let second = client
        .get("/token")
        .cookie(cookie.clone())
        .dispatch()
        .await
        .into_string()
        .await
        .expect("a token");
    assert_ne!(first, second, "the same secret, masked differently");
    for token in [first, second] {
        let body = format!("{CSRF_FIELD}={token}&text=t");
        assert_eq!(
            post_comment(&client, Some(&cookie), body, None)
                .await
                .status(),
            Status::Ok
        );
    }
}

#[rocket::async_test]
async fn a_post_without_a_valid_token_is_refused_and_changes_nothing() {
    let client = client().await;
    let (cookie, token) = session_with_token(&client).await;
    let (other_cookie, other_token) = session_with_token(&client).await;
    let mut flipped = token.clone().into_bytes();
    flipped[40] = if flipped[40] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).expect("ASCII");
    let cases: Vec<(&str, String, Option<&str>, CsrfError)> = vec![
        ("no token", "text=x".into(), None, CsrfError::Missing),
        (
            "empty token",
            format!("{CSRF_FIELD}=&text=x"),
            None,
            CsrfError::Missing,
        ),
        (
            "another session's",
            format!("{CSRF_FIELD}={other_token}&text=x"),
            None,
            CsrfError::Incorrect,
        ),
        (
            "another session's, in the header",
            "text=x".into(),
            Some(other_token.as_str()),
            CsrfError::Incorrect,
        ),
        (
            "one character changed",
            format!("{CSRF_FIELD}={flipped}&text=x"),
            None,
            CsrfError::Incorrect,
        ),
        (
            "the secret unmasked",
            format!("{CSRF_FIELD}={}&text=x", &token[..32]),
            None,
            CsrfError::Incorrect,
        ),
        (
            "too long",
            format!("{CSRF_FIELD}={token}a&text=x"),
            None,
            CsrfError::Incorrect,
        ),
        (
            "not the alphabet",
            format!("{CSRF_FIELD}={}%21&text=x", &token[..63]),
            None,
            CsrfError::Incorrect,
        ),
    ];
    for (case, body, header, reason) in cases {
        let response = post_comment(&client, Some(&cookie), body, header).await;
        assert_eq!(response.status(), Status::Forbidden, "{case}");
        assert!(
            response.headers().get_one("Set-Cookie").is_none(),
            "{case}: a cookie"
        );
        let page = response.into_string().await.unwrap_or_default();
        assert_eq!(
            page,
            format!("CSRF verification failed. {reason}"),
            "{case}"
        );
        assert_eq!(
            comment_of(&client, &cookie).await,
            "",
            "{case}: the comment was saved"
        );
    }
    // A session that never got a token, and no session at all.
    let body = format!("{CSRF_FIELD}={token}&text=x");
    let response = post_comment(&client, None, body, None).await;
    assert_eq!(response.status(), Status::Forbidden);
    assert_eq!(
        response.into_string().await.unwrap_or_default(),
        format!("CSRF verification failed. {}", CsrfError::NoSecret)
    );
    assert_eq!(comment_of(&client, &other_cookie).await, "");
}

#[rocket::async_test]
async fn a_valid_token_with_a_form_that_does_not_parse_is_a_422() {
    let client = client().await;
    let (cookie, token) = session_with_token(&client).await;
    let response = post_comment(
        &client,
        Some(&cookie),
        format!("{CSRF_FIELD}={token}"),
        None,
    )
    .await;
    assert_eq!(response.status(), Status::UnprocessableEntity);
}

#[rocket::async_test]
async fn login_rotates_the_token_so_one_seen_before_is_refused_after() {
    let client = client().await;
    let (cookie, before) = session_with_token(&client).await;
    let response = client
        .post("/login")
        .header(ContentType::Form)
        .cookie(cookie.clone())
        .body(format!("{CSRF_FIELD}={before}"))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Ok);
    let cookie = session_of(&response);
    let body = format!("{CSRF_FIELD}={before}&text=x");
    let response = post_comment(&client, Some(&cookie), body, None).await;
    assert_eq!(
        response.status(),
        Status::Forbidden,
        "the token from before login"
    );
    let after = client
        .get("/token")
        .cookie(cookie.clone())
        .dispatch()
        .await
        .into_string()
        .await
        .expect("a token");
    let body = format!("{CSRF_FIELD}={after}&text=x");
    assert_eq!(
        post_comment(&client, Some(&cookie), body, None)
            .await
            .status(),
        Status::Ok
    );
}

/// A comment posted with a valid token and the headers `headers`: its status and the page.
async fn post_from(client: &Client, headers: &[(&'static str, &'static str)]) -> (Status, String) {
    let (cookie, token) = session_with_token(client).await;
    let mut request = client
        .post("/comment")
        .header(ContentType::Form)
        .cookie(cookie)
        .body(format!("{CSRF_FIELD}={token}&text=hi"));
    for (name, value) in headers {
        request = request.header(Header::new(*name, *value));
    }
    let response = request.dispatch().await;
    let status = response.status();
    (status, response.into_string().await.unwrap_or_default())
}

/// Django's `Origin` check: an unsafe request whose `Origin` names another site is refused
/// before its token is looked at, even a valid token; the site's own origin, in any case and
/// with its default port written or not, passes.
#[rocket::async_test]
async fn an_origin_of_another_site_is_refused_whatever_the_token() {
    let client = client().await;
    for origin in [
        "https://evil.example",
        "http://example.org.evil.example",
        "http://example.org:8000",
        "null",
        "http://user@example.org",
        "ftp://example.org",
    ] {
        let (status, page) =
            post_from(&client, &[("Host", "example.org"), ("Origin", origin)]).await;
        assert_eq!(status, Status::Forbidden, "{origin}");
        assert!(page.contains("Origin checking failed"), "{origin}: {page}");
    }
    for origin in [
        "http://example.org",
        "http://EXAMPLE.org:80",
        "https://example.org",
    ] {
        let (status, page) =
            post_from(&client, &[("Host", "example.org"), ("Origin", origin)]).await;
        assert_eq!((status, page.as_str()), (Status::Ok, "saved"), "{origin}");
    }
    let (status, _) = post_from(
        &client,
        &[
            ("Host", "127.0.0.1:8000"),
            ("Origin", "http://127.0.0.1:8000"),
        ],
    )
    .await;
    assert_eq!(status, Status::Ok, "a port of its own");
    // Neither header over plain HTTP: the token decides, as in Django.
    let (status, _) = post_from(&client, &[("Host", "example.org")]).await;
    assert_eq!(status, Status::Ok);
}

/// On a site served over HTTPS (`cookie_secure`), a request without `Origin` needs a `Referer`
/// of the site, over HTTPS; an `Origin` over plain HTTP is another site.
#[rocket::async_test]
async fn over_https_a_request_without_origin_needs_a_referer_of_the_site() {
    let client = client_with(&[("session.cookie_secure", serde_json::json!(true))]).await;
    let host = ("Host", "example.org");
    let refused = [
        (vec![host], "Referer checking failed - no Referer."),
        (
            vec![host, ("Referer", "http://example.org/form")],
            "Referer checking failed",
        ),
        (
            vec![host, ("Referer", "https://evil.example/example.org")],
            "Referer checking failed",
        ),
        (
            vec![host, ("Origin", "http://example.org")],
            "Origin checking failed",
        ),
    ];
    for (headers, reason) in refused {
        let (status, page) = post_from(&client, &headers).await;
        assert_eq!(status, Status::Forbidden, "{headers:?}");
        assert!(page.contains(reason), "{headers:?}: {page}");
    }
    for headers in [
        vec![host, ("Referer", "https://example.org/form?x=1")],
        vec![host, ("Origin", "https://example.org")],
    ] {
        let (status, page) = post_from(&client, &headers).await;
        assert_eq!(
            (status, page.as_str()),
            (Status::Ok, "saved"),
            "{headers:?}"
        );
    }
}
