//! A deployment as README's "Deploying" section describes it: the release binary installed
//! beside its Rocket.toml, templates and static files, far from the build directory; and
//! the log of a server that hostile clients flood.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tempfile::TempDir;

use crate::support::{in_ci, say, sqlite_url, Http, Launch, Server};

/// The release binary: `RANGO_RELEASE_BIN`, which `.ci/run` sets after `cargo build --release`.
/// Elsewhere, without it, the binary under test (built the same way for where it finds its
/// files) stands in, and the test says so.
fn release_binary(test: &str) -> PathBuf {
    match std::env::var_os("RANGO_RELEASE_BIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ if in_ci() => panic!("{test}: CI is set but RANGO_RELEASE_BIN is not"),
        _ => {
            say(&format!(
                "{test}: RANGO_RELEASE_BIN is not set: installing the debug binary instead"
            ));
            PathBuf::from(env!("CARGO_BIN_EXE_rango"))
        }
    }
}

/// Copies `from` (a file or a directory, recursively) to `to`.
fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("a directory");
        for entry in std::fs::read_dir(from).expect("a listing") {
            let entry = entry.expect("an entry");
            copy(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).expect("a copy");
    }
}

/// An installed copy of the site in a fresh directory: the binary, Rocket.toml, templates/ and
/// static/, whose stylesheet ends with a comment only this copy has.
struct Installed {
    dir: TempDir,
    binary: PathBuf,
    stylesheet: String,
}

const MARK: &str = "/* installed copy */";

impl Installed {
    fn new(test: &str) -> Installed {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = TempDir::new().expect("temp dir");
        let binary = dir.path().join("rango");
        copy(&release_binary(test), &binary);
        for item in ["Rocket.toml", "templates", "static"] {
            copy(&source.join(item), &dir.path().join(item));
        }
        let css = dir.path().join("static/css/rango.css");
        let mut stylesheet = std::fs::read_to_string(&css).expect("the stylesheet");
        stylesheet.push_str(MARK);
        stylesheet.push('\n');
        std::fs::write(&css, &stylesheet).expect("the stylesheet is written");
        Installed {
            dir,
            binary,
            stylesheet,
        }
    }

    fn launch(&self) -> Launch {
        let env = [(
            "ROCKET_DATABASES",
            format!("{{rango={{url=\"{}\"}}}}", sqlite_url(self.dir.path())),
        )];
        Server::launch_installed(&self.binary, self.dir.path(), &env)
    }
}

#[tokio::test]
async fn the_release_binary_serves_every_page_from_wherever_it_is_installed() {
    let installed = Installed::new("deploy");
    let server = match installed.launch() {
        Launch::Serving(server) => server,
        Launch::Exited(status, output) => panic!("the installed copy exited ({status}):\n{output}"),
    };
    let http = Http::fresh();
    for (page, status) in [
        ("/rango/", 200),
        ("/rango/about/", 200),
        ("/no/such/page", 404),
    ] {
        let reply = http.get(&server.url(page), None).await;
        assert_eq!(reply.status, status, "{page}: {}", reply.body);
        assert!(reply.body.contains("/static/css/rango.css"), "{page}");
    }
    assert!(http
        .get(&server.url("/rango/"), None)
        .await
        .body
        .contains("Python"));
    // The stylesheet is the installed copy's, not the build directory's.
    let reply = http.get(&server.url("/static/css/rango.css"), None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, installed.stylesheet);
    assert!(reply.body.ends_with(&format!("{MARK}\n")));
}

#[tokio::test]
async fn an_installation_without_its_static_files_refuses_to_launch_and_says_why() {
    let installed = Installed::new("deploy without static/");
    std::fs::remove_dir_all(installed.dir.path().join("static")).expect("removed");
    match installed.launch() {
        Launch::Serving(_) => panic!("served without its static files"),
        Launch::Exited(_, output) => {
            assert!(output.contains("static_dir"), "{output}");
        }
    }
}

#[tokio::test]
async fn a_flood_of_malformed_cookies_and_foreign_hosts_adds_few_log_lines() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start(&[(
        "ROCKET_DATABASES",
        format!("{{rango={{url=\"{}\"}}}}", sqlite_url(dir.path())),
    )]);
    let http = Http::pooled();
    let url = server.url("/rango/about/");
    let started = Instant::now();
    const FLOOD: usize = 300;
    for i in 0..FLOOD {
        let cookie = format!("sessionid=not-a-key-{i}");
        let reply = http
            .try_get_with(&url, &[("Cookie", &cookie)])
            .await
            .expect("an answer");
        assert_eq!(reply.status, 200);
        let host = format!("rebind-{i}.evil.example");
        let reply = http
            .try_get_with(&url, &[("Host", &host)])
            .await
            .expect("an answer");
        assert_eq!(reply.status, 400);
    }
    let seconds = started.elapsed().as_secs() as usize;
    let output = server.output();
    let cookie_lines = output.matches("malformed session cookie").count();
    let host_lines = output
        .lines()
        .filter(|l| l.contains("allowed_hosts"))
        .count();
    assert_eq!(cookie_lines, 0, "{output}");
    assert!(
        (1..=seconds + 2).contains(&host_lines),
        "{host_lines} warnings about hosts in {seconds} s:\n{output}"
    );
    say(&format!(
        "log flood: {FLOOD} malformed cookies and {FLOOD} foreign hosts in {seconds} s: \
         {cookie_lines} + {host_lines} lines"
    ));
}

/// README's nginx server block (without TLS), for `port`, in front of `upstream`, with a
/// short header timeout so that a test can wait it out.
fn nginx_config(dir: &Path, port: u16, upstream: u16) -> String {
    let dir = dir.display();
    format!(
        "daemon off;\n\
         master_process off;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {dir}/body;\n\
           proxy_temp_path {dir}/proxy;\n\
           fastcgi_temp_path {dir}/fastcgi;\n\
           uwsgi_temp_path {dir}/uwsgi;\n\
           scgi_temp_path {dir}/scgi;\n\
           limit_conn_zone $binary_remote_addr zone=perip:10m;\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             server_name rango.test;\n\
             client_header_timeout 2s;\n\
             client_body_timeout 10s;\n\
             client_max_body_size 1m;\n\
             limit_conn perip 32;\n\
             location / {{\n\
               proxy_pass http://127.0.0.1:{upstream};\n\
               proxy_set_header Host $host;\n\
               proxy_set_header X-Real-IP $remote_addr;\n\
             }}\n\
           }}\n\
         }}\n"
    )
}

/// A child process stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        crate::support::signal(&self.0, libc::SIGTERM);
        crate::support::wait_or_kill(&mut self.0, std::time::Duration::from_secs(5));
    }
}

#[tokio::test]
async fn behind_nginx_as_readme_shows_hosts_and_sessions_pass_and_slow_clients_are_cut() {
    let Some(nginx) = crate::support::program("nginx", "behind nginx") else {
        return;
    };
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start(&[
        (
            "ROCKET_DATABASES",
            format!("{{rango={{url=\"{}\"}}}}", sqlite_url(dir.path())),
        ),
        ("ROCKET_ALLOWED_HOSTS", r#"["rango.test"]"#.to_owned()),
        // As README's deployment sets it behind nginx, and a low limit to reach in a test.
        (
            "ROCKET_RANGO",
            "{visit_interval=0,trusted_proxy=true,failures_per_address=2}".to_owned(),
        ),
    ]);
    let port = crate::support::free_port();
    let config = dir.path().join("nginx.conf");
    std::fs::write(&config, nginx_config(dir.path(), port, server.port)).expect("config");
    let _nginx = Child(
        std::process::Command::new(nginx)
            .arg("-c")
            .arg(&config)
            .arg("-p")
            .arg(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx starts"),
    );
    crate::support::wait_for("nginx to listen", crate::support::STARTUP, || {
        crate::support::listening(port)
    });

    let http = Http::fresh();
    let url = format!("http://127.0.0.1:{port}/rango/");
    let host = [("Host", "rango.test")];
    let first = http.try_get_with(&url, &host).await.expect("an answer");
    assert_eq!(first.status, 200, "{}", first.body);
    let key = first.session.clone().expect("a session cookie");
    let cookie = format!("sessionid={key}");
    let again = http
        .try_get_with(&url, &[("Host", "rango.test"), ("Cookie", &cookie)])
        .await
        .expect("an answer");
    assert_eq!(
        (first.visits(), again.visits()),
        (1, 2),
        "the session goes on"
    );

    // The client's Host reaches the site, which refuses what it does not serve.
    for foreign in ["127.0.0.1", "evil.example"] {
        let refused = http
            .try_get_with(&url, &[("Host", foreign)])
            .await
            .expect("an answer");
        assert_eq!(refused.status, 400, "{foreign}");
        assert_eq!(refused.session, None, "{foreign}");
    }

    // The throttle keys the client by the address nginx sets (the client's, here 127.0.0.3 and
    // 127.0.0.4 on the loopback; the server's peer is always nginx), never by one the client
    // sent: two failed logins with two forged addresses are two from one client, locked at
    // the second, and another client behind the same proxy is not locked.
    if let Some(curl) = crate::support::program("curl", "the throttle behind nginx") {
        let jar = dir.path().join("cookies");
        let curl_with = |args: &[&str]| -> String {
            let output = std::process::Command::new(&curl)
                .args(["-s", "--max-time", "10", "-H", "Host: rango.test"])
                .arg("-c")
                .arg(&jar)
                .arg("-b")
                .arg(&jar)
                .args(args)
                .output()
                .expect("curl runs");
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        let login = format!("http://127.0.0.1:{port}/rango/login/");
        let mut statuses = Vec::new();
        for (client, forged, username) in [
            ("127.0.0.3", "203.0.113.1", "ann"),
            ("127.0.0.3", "203.0.113.2", "bob"),
            ("127.0.0.4", "203.0.113.1", "carol"),
        ] {
            let form = curl_with(&["--interface", client, &login]);
            let token = crate::common::csrf_token(&form);
            let body = format!("csrfmiddlewaretoken={token}&username={username}&password=wrong");
            let forged_header = format!("X-Real-IP: {forged}");
            statuses.push(curl_with(&[
                "--interface",
                client,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                &forged_header,
                "--data",
                &body,
                &login,
            ]));
        }
        assert_eq!(statuses, ["200", "429", "200"], "two clients behind nginx");
    }

    // A client that never finishes its headers is cut by nginx, not left to hold Rocket.
    use std::io::{Read, Write};
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    slow.write_all(b"GET /rango/ HTTP/1.1\r\nHost: rango.test\r\n")
        .expect("half a request");
    slow.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("a timeout");
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(8),
        "nginx held a slow client for {waited:?}"
    );
    say(&format!(
        "behind nginx: a client that never finished its headers was cut after {waited:?}"
    ));
}

#[test]
fn http2_requests_are_checked_by_their_authority() {
    let Some(curl) = crate::support::program("curl", "HTTP/2 host check") else {
        return;
    };
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start(&[(
        "ROCKET_DATABASES",
        format!("{{rango={{url=\"{}\"}}}}", sqlite_url(dir.path())),
    )]);
    let get = |host: &str| {
        let url = format!("http://{host}:{}/rango/", server.port);
        let output = std::process::Command::new(&curl)
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
            ])
            .args(["--http2-prior-knowledge", "--max-time", "10"])
            .args(["--resolve", &format!("{host}:{}:127.0.0.1", server.port)])
            .arg(url)
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(get("localhost"), "200 2");
    assert_eq!(get("evil.example"), "400 2");
}
