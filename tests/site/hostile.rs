//! Hostile cookies: whatever a client sends as its session cookie, it gets a 200 with a fresh
//! session (or its own existing one), never a 500, never the key it chose, and nothing is
//! stored for a client that changes nothing. Through the local client (the session layer) and
//! through the real binary (Rocket's and hyper's parsing of raw `Cookie` headers).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use rocket::http::{Cookie, Status};
use tempfile::TempDir;

/// Cookie values no session key looks like.
fn hostile_values() -> Vec<String> {
    vec![
        String::new(),
        " ".into(),
        "a".repeat(5000),
        "abcdefghijklmnopqrstuvwxyz0123456789".repeat(150),
        "ключ-сессии-ключ-сессии-ключ-сес".into(),
        "%61%62%63%64%65%66%67%68%69%6a%6b%6c%6d%6e%6f%70".into(),
        "\"abcdefghijklmnopqrstuvwxyz012345\"".into(),
        "abcdefghijklmnopqrstuvwxyz01234;".into(),
        "abcdefghijklmnop\0rstuvwxyz012345".into(),
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345".into(),
        "../../../../etc/passwd".into(),
        "' OR '1'='1".into(),
        "abcdefghijklmnopqrstuvwxyz012345".into(), // well formed (as earlier versions made them), unknown
        "000000000abcdefghijklmnopqrstuvwxyz012345".into(), // well formed, unknown
    ]
}

fn is_key(value: &str) -> bool {
    value.len() == 41
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[tokio::test]
async fn hostile_cookies_on_a_writing_page_get_a_fresh_session() {
    let app = TestApp::untracked(&[]).await;
    let values = hostile_values();
    for value in &values {
        let response = app
            .client
            .get("/rango/")
            .cookie(Cookie::new("sessionid", value.clone()))
            .dispatch()
            .await;
        assert_eq!(response.status(), Status::Ok, "{value:?}");
        let key = new_key(&response);
        assert!(is_key(&key), "{value:?} -> {key:?}");
        assert_ne!(&key, value, "never the client's key");
        assert_eq!(visits(&response.into_string().await.expect("body")), 1);
    }
    assert_eq!(
        app.session_rows().await,
        values.len() as i64,
        "one new session each"
    );
}

#[tokio::test]
async fn hostile_cookies_on_a_reading_page_write_nothing() {
    let app = TestApp::untracked(&[]).await;
    for value in hostile_values() {
        let response = app
            .client
            .get("/t/get/visits")
            .cookie(Cookie::new("sessionid", value.clone()))
            .dispatch()
            .await;
        assert_eq!(response.status(), Status::Ok, "{value:?}");
        // No removal cookie for a value we did not issue: it may sit beside a real one.
        assert!(set_cookies(&response).is_empty(), "{value:?}");
        assert_eq!(response.into_string().await.as_deref(), Some("none"));
    }
    assert_eq!(app.session_rows().await, 0);
}

#[tokio::test]
async fn a_key_from_another_site_is_not_adopted() {
    let first = TestApp::untracked(&[]).await;
    let second = TestApp::untracked(&[]).await;
    let key = new_key(&first.get("/t/set/a/1").await);
    let response = second.get_with("/t/set/b/2", &key).await;
    assert_ne!(new_key(&response), key);
    let body = second.get_with("/t/get/a", &key).await.into_string().await;
    assert_eq!(body.as_deref(), Some("none"));
}

#[tokio::test]
async fn a_key_of_a_flushed_session_starts_a_fresh_one() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/1").await);
    app.get_with("/t/flush", &key).await;
    let response = app.get_with("/rango/", &key).await;
    assert_eq!(response.status(), Status::Ok);
    assert_ne!(new_key(&response), key);
    assert_eq!(visits(&response.into_string().await.expect("body")), 1);
}

#[tokio::test]
async fn a_live_key_still_finds_its_own_session_among_hostile_cookies() {
    let app = TestApp::untracked(&[]).await;
    let key = new_key(&app.get("/t/set/a/mine").await);
    // Other cookies around the session cookie, some of them junk.
    let response = app
        .client
        .get("/t/get/a")
        .cookie(Cookie::new("csrftoken", "\"x;y\""))
        .cookie(Cookie::new("sessionid", key.clone()))
        .cookie(Cookie::new("other", "a".repeat(3000)))
        .dispatch()
        .await;
    assert_eq!(response.into_string().await.as_deref(), Some("\"mine\""));
}

/// The real binary on a free port and a database of its own, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = TempDir::new().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("sqlite://{}/rango.sqlite3?mode=rwc", dir.path().display());
        let child = Command::new(env!("CARGO_BIN_EXE_rango"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_LOG_LEVEL", "off")
            .env("ROCKET_DATABASES", format!("{{rango={{url=\"{url}\"}}}}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let server = Server {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Sends `GET path` with the raw `cookie` header bytes; returns status and headers.
    fn get(&self, path: &str, cookie: &[u8]) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n").into_bytes();
        request.extend_from_slice(b"Cookie: ");
        request.extend_from_slice(cookie);
        request.extend_from_slice(b"\r\n\r\n");
        stream.write_all(&request).expect("send");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_cookie_value(response: &str) -> Option<String> {
    response
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: sessionid="))
        .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
}

#[test]
fn raw_hostile_cookie_headers_never_get_a_server_error() {
    let server = Server::start();
    let (status, response) = server.get("/rango/", b"");
    assert_eq!(status, 200);
    let live = set_cookie_value(&response).expect("a session");
    let long = format!("sessionid={}", "b".repeat(6000));
    let several = format!("sessionid=abcdefghijklmnopqrstuvwxyz012345; sessionid={live}");
    let cases: Vec<&[u8]> = vec![
        b"sessionid=",
        b"sessionid",
        b"sessionid=\"quoted\"",
        b"sessionid=a;b;c;;;=;",
        b"sessionid=%00%ff%20",
        "sessionid=é€😀".as_bytes(),
        b"sessionid=\xff\xfe\xfd",
        long.as_bytes(),
        several.as_bytes(),
        b"=====; ;;; sessionid=",
    ];
    for cookie in cases {
        let (status, response) = server.get("/rango/", cookie);
        let shown = String::from_utf8_lossy(cookie);
        assert_eq!(status, 200, "{shown}: {response}");
        let key = set_cookie_value(&response).unwrap_or_else(|| live.clone());
        assert!(is_key(&key), "{shown} -> {key}");
        assert!(
            !shown.contains(&format!("sessionid={key}")) || key == live,
            "{shown}"
        );
    }
    // A NUL byte is not allowed in a header at all: the HTTP layer refuses the request.
    let (status, _) = server.get("/rango/", b"sessionid=abc\0def");
    assert!(status == 400 || status == 0, "NUL: {status}");
    let (status, _) = server.get("/rango/", b"");
    assert_eq!(status, 200, "still serving");
}
