//! Django's security defaults: the headers of its SecurityMiddleware and clickjacking
//! middleware on every response, and `allowed_hosts` (Django's `ALLOWED_HOSTS`).

use rocket::http::{Header, Status};
use serde_json::json;

use crate::common::*;

/// The headers every response carries, and their values.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    (
        "Content-Security-Policy",
        "default-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
         frame-ancestors 'none'",
    ),
];

#[tokio::test]
async fn every_response_carries_djangos_security_headers() {
    let app = TestApp::untracked(&[]).await;
    for (uri, status) in [
        ("/rango/", Status::Ok),
        ("/rango/about/", Status::Ok),
        ("/static/css/rango.css", Status::Ok),
        ("/rango/category/no-such-category/", Status::NotFound),
        ("/no/such/page", Status::NotFound),
    ] {
        let response = app.get(uri).await;
        assert_eq!(response.status(), status, "{uri}");
        for (name, value) in SECURITY_HEADERS {
            let values: Vec<&str> = response.headers().get(name).collect();
            assert_eq!(values, [value], "{uri}: {name}");
        }
    }
}

/// HSTS when the session cookie is Secure (the site is then served over HTTPS only), with the
/// other headers kept; none otherwise.
#[tokio::test]
async fn hsts_is_sent_when_cookies_are_secure_and_only_then() {
    const HSTS: &str = "Strict-Transport-Security";
    let plain = TestApp::untracked(&[]).await;
    let response = plain.get("/rango/about/").await;
    assert_eq!(response.headers().get_one(HSTS), None);
    let secure = TestApp::untracked(&[("session.cookie_secure", json!(true))]).await;
    for uri in ["/rango/", "/rango/about/", "/static/css/rango.css"] {
        let response = secure.get(uri).await;
        assert_eq!(
            response.headers().get_one(HSTS),
            Some("max-age=31536000"),
            "{uri}"
        );
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(
                response.headers().get_one(name),
                Some(value),
                "{uri}: {name}"
            );
        }
    }
}

#[tokio::test]
async fn a_page_that_sets_the_session_cookie_is_private_to_shared_caches() {
    let app = TestApp::untracked(&[]).await;
    let response = app.get("/rango/").await;
    assert!(session_set_cookie(&response).is_some());
    assert_eq!(response.headers().get_one("Cache-Control"), Some("private"));
    // The stylesheet sets no cookie: a cache may keep it.
    let response = app.get("/static/css/rango.css").await;
    assert!(set_cookies(&response).is_empty());
    assert_eq!(response.headers().get_one("Cache-Control"), None);
}

/// GET `uri` with the `Host` header `host`.
async fn get_for_host<'a>(
    app: &'a TestApp,
    uri: &str,
    host: &str,
) -> rocket::local::asynchronous::LocalResponse<'a> {
    app.client
        .get(uri.to_owned())
        .header(Header::new("Host", host.to_owned()))
        .dispatch()
        .await
}

#[tokio::test]
async fn a_host_not_allowed_gets_a_400_page_and_no_session() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/rango/").await);
    for host in [
        "evil.example",
        "evil.example:8000",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "not a host",
        "[::2]:8000",
    ] {
        for uri in [
            "/rango/",
            "/rango/about/",
            "/t/set/a/1",
            "/static/css/rango.css",
        ] {
            let response = app
                .client
                .get(uri)
                .header(Header::new("Host", host))
                .cookie(rocket::http::Cookie::new("sessionid", key.clone()))
                .dispatch()
                .await;
            assert_eq!(response.status(), Status::BadRequest, "{host} {uri}");
            assert!(set_cookies(&response).is_empty(), "{host} {uri}");
            assert_eq!(
                vary(&response),
                None,
                "{host} {uri}: the session was loaded"
            );
            assert_eq!(response.headers().get_one("X-Frame-Options"), Some("DENY"));
            let body = response.into_string().await.expect("a page");
            assert!(body.contains("400"), "{host} {uri}: {body}");
        }
    }
    // Nothing reached a session: the visit count is where the first visit left it.
    assert_eq!(app.session_rows().await, 1);
    let body = app
        .get_with("/rango/about/", &key)
        .await
        .into_string()
        .await;
    assert_eq!(visits(&body.expect("a page")), 1);
}

#[tokio::test]
async fn allowed_hosts_are_served_whatever_their_port() {
    let app = TestApp::untracked(&[]).await;
    for host in [
        "localhost",
        "localhost:8000",
        "127.0.0.1:8000",
        "[::1]:8000",
        "LOCALHOST",
    ] {
        let response = get_for_host(&app, "/rango/", host).await;
        assert_eq!(response.status(), Status::Ok, "{host}");
    }
    // Without a Host header (HTTP/1.0, or this local client) there is no host to rebind.
    assert_eq!(app.get("/rango/").await.status(), Status::Ok);
}

#[tokio::test]
async fn allowed_hosts_come_from_the_setting_and_its_environment_override() {
    let app = TestApp::untracked(&[("allowed_hosts", json!([".example.org"]))]).await;
    for (host, status) in [
        ("example.org", Status::Ok),
        ("www.example.org:443", Status::Ok),
        ("localhost", Status::BadRequest),
        ("badexample.org", Status::BadRequest),
    ] {
        let response = get_for_host(&app, "/rango/about/", host).await;
        assert_eq!(response.status(), status, "{host}");
    }

    let figment = rocket_figment_with_env(&[("ROCKET_ALLOWED_HOSTS", r#"["rango.test"]"#)]);
    let hosts = rango::security::AllowedHosts::from_figment(&figment).expect("valid");
    assert!(hosts.allows("rango.test:8000"));
    assert!(!hosts.allows("localhost"));
    let default = rango::security::AllowedHosts::from_figment(&rocket_figment()).expect("valid");
    assert!(default.allows("localhost:8000"));
}

/// Django shows why a CSRF check failed only with `DEBUG`: here `rango.debug`, on in the debug
/// profile (the tests'), off everywhere else.
#[tokio::test]
async fn a_refused_csrf_check_says_why_only_in_debug() {
    for (debug, says_why) in [(true, true), (false, false)] {
        let app = TestApp::untracked(&[("rango.debug", json!(debug))]).await;
        let response = app
            .client
            .post("/rango/logout/")
            .header(rocket::http::ContentType::Form)
            .body("")
            .dispatch()
            .await;
        assert_eq!(response.status(), Status::Forbidden);
        let body = response.into_string().await.expect("a page");
        assert!(
            body.contains("CSRF verification failed. Request aborted."),
            "{body}"
        );
        assert_eq!(
            body.contains("id=\"reason\""),
            says_why,
            "debug = {debug}: {body}"
        );
        assert_eq!(
            body.contains("CSRF session token missing."),
            says_why,
            "{body}"
        );
    }
    for (profile, debug) in [("debug", true), ("release", false), ("postgres", false)] {
        let figment = rocket_figment().select(profile);
        let config = rango::rango::RangoConfig::from_figment(&figment).expect("valid");
        assert_eq!(config.debug, debug, "the {profile} profile");
    }
}

/// The pages satisfy the Content-Security-Policy (everything from the site itself): no template
/// has an inline script, an inline style, an event handler, a `javascript:` URL or a resource
/// from elsewhere.
#[test]
fn no_template_needs_more_than_the_content_security_policy_allows() {
    fn templates(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                templates(&path, found);
            } else {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    templates(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"),
        &mut found,
    );
    assert!(found.len() > 10, "{found:?}");
    for path in found {
        let text = std::fs::read_to_string(&path)
            .expect("a template")
            .to_lowercase();
        for needs_more in [
            "<script",
            "<style",
            " style=",
            "javascript:",
            " onclick",
            " onload",
            " onsubmit",
            " onchange",
            "src=\"http",
            "href=\"http://",
            "<iframe",
            "<object",
            "<embed",
        ] {
            assert!(
                !text.contains(needs_more),
                "{}: {needs_more}",
                path.display()
            );
        }
    }
}

/// Every route of an unsafe method checks CSRF (takes its form as `Csrf<T>`): a request to it
/// without a token is refused with the CSRF 403 before its handler runs. A new route that
/// forgets fails this test. (Rocket's `_method` field can turn a form POST into PUT, DELETE or
/// PATCH, so those routes count too.)
#[tokio::test]
async fn every_unsafe_route_checks_csrf() {
    let app = TestApp::tracked(&[]).await;
    // Signed in (a visitor is sent to log in before some checks), with a CSRF secret.
    register_and_sign_in(&app.client, "ann", "security-test").await;
    assert!(
        app.body("/rango/about/").await.contains("nav-logout"),
        "signed in"
    );
    let unsafe_routes: Vec<(rocket::http::Method, String)> = app
        .client
        .rocket()
        .routes()
        .filter(|route| {
            !matches!(
                route.method,
                rocket::http::Method::Get
                    | rocket::http::Method::Head
                    | rocket::http::Method::Options
            )
        })
        .map(|route| {
            let path: Vec<String> = route
                .uri
                .path()
                .split('/')
                .map(|segment| {
                    if segment.starts_with('<') {
                        "x".to_owned()
                    } else {
                        segment.to_owned()
                    }
                })
                .collect();
            (route.method, format!("{}/", path.join("/")))
        })
        .collect();
    assert!(unsafe_routes.len() >= 6, "{unsafe_routes:?}");
    for (method, path) in unsafe_routes {
        let response = app
            .client
            .req(method, path.clone())
            .header(rocket::http::ContentType::Form)
            .body("")
            .dispatch()
            .await;
        assert_eq!(response.status(), Status::Forbidden, "{method} {path}");
        let body = response.into_string().await.unwrap_or_default();
        assert!(
            body.contains("CSRF verification failed"),
            "{method} {path}: {body}"
        );
    }
}
