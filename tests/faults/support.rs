//! Faults for the outage, restart and load tests: the real binary as a child process, an HTTP
//! client over real sockets, a private `redis-server` a test can kill, freeze and restart, a
//! private PostgreSQL server a test can restart, and a TCP proxy a test can cut and restore (to
//! take a shared service away from one server without touching the service). Everything
//! started here is stopped when its guard is dropped.
//!
//! The machine's shared PostgreSQL and Redis are never stopped: a test that needs one of them
//! down puts a [`Proxy`] in front of it, or runs a [`RedisServer`] or [`PgServer`] of its own.
#![allow(dead_code)] // each test crate uses a different part of this module

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tempfile::TempDir;

/// How long any single request may take before a test calls it a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a server, store or proxy may take to come up (or a fault to take effect).
pub const STARTUP: Duration = Duration::from_secs(60);

/// Whether this run is CI, where every tool and service must be there.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Writes `message` to the real stderr (the harness captures `eprintln!` of passing tests).
pub fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// The path of `program` on `PATH`, or `None` (after saying `test` is skipped) when it is not
/// installed outside CI.
///
/// # Panics
/// When `CI` is set and the program is missing.
pub fn program(name: &str, test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    match found {
        Some(path) => Some(path),
        None if in_ci() => panic!("{test}: CI is set but `{name}` is not installed"),
        None => {
            say(&format!("skipped: {test}: `{name}` is not installed"));
            None
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Whether something accepts connections on `port`.
pub fn listening(port: u16) -> bool {
    StdStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_ok()
}

/// Polls `check` every 50 ms until it holds; fails the test, saying `what`, after `within`.
pub fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` to the process `child`.
pub fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: kill(2) on our own child's pid; it has not been reaped, so the pid is still ours.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Waits at most `within` for `child` to exit; kills it if it does not.
pub fn wait_or_kill(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary.

/// How a launch of the binary ended.
pub enum Launch {
    /// It accepts connections.
    Serving(Server),
    /// It exited before accepting any: its status and everything it printed.
    Exited(ExitStatus, String),
}

/// The real `rango` binary serving on a free loopback port, killed when dropped. What it prints
/// (Rocket logs to stdout, the command line's last word to stderr) goes to a log file that
/// [`Server::output`] reads.
pub struct Server {
    child: Option<Child>,
    /// The binary, and the directory it runs in (where its Rocket.toml is).
    program: PathBuf,
    dir: PathBuf,
    /// The port it serves on (kept across restarts).
    pub port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    _logs: TempDir,
}

impl Server {
    /// Starts the binary with `env` (`ROCKET_*` overrides) over a serving configuration of its
    /// own: loopback, a free port, plain logs. Waits until it accepts connections.
    ///
    /// # Panics
    /// When it exits instead (with what it printed).
    pub fn start(env: &[(&str, String)]) -> Server {
        match Server::launch(env) {
            Launch::Serving(server) => server,
            Launch::Exited(status, output) => {
                panic!("the server exited ({status}) instead of serving:\n{output}")
            }
        }
    }

    /// Starts the binary with `env` and tells whether it came up or exited.
    pub fn launch(env: &[(&str, String)]) -> Launch {
        let program = PathBuf::from(env!("CARGO_BIN_EXE_rango"));
        Server::launch_installed(&program, Path::new(env!("CARGO_MANIFEST_DIR")), env)
    }

    /// Starts `program` in `dir` (where its Rocket.toml, templates and static files are), as
    /// an installed copy runs, with `env`, and tells whether it came up or exited.
    pub fn launch_installed(program: &Path, dir: &Path, env: &[(&str, String)]) -> Launch {
        let logs = TempDir::new().expect("temp dir");
        let mut server = Server {
            child: None,
            program: program.to_owned(),
            dir: dir.to_owned(),
            port: free_port(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            log: logs.path().join("rango.log"),
            _logs: logs,
        };
        match server.spawn() {
            Ok(()) => Launch::Serving(server),
            Err(status) => Launch::Exited(status, server.output()),
        }
    }

    fn spawn(&mut self) -> Result<(), ExitStatus> {
        assert!(self.child.is_none(), "already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut command = Command::new(&self.program);
        command
            .current_dir(&self.dir)
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_PORT", self.port.to_string())
            .env("ROCKET_CLI_COLORS", "false")
            .env("ROCKET_LOG_LEVEL", "normal")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the binary starts");
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(status);
            }
            if listening(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not start:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything the server printed so far, over all its runs.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Asserts the server is still running and has printed no panic.
    pub fn assert_healthy(&mut self) {
        let output = self.output();
        assert!(!output.contains("panicked"), "a panic:\n{output}");
        assert!(self.is_running(), "the server exited:\n{output}");
    }

    /// Stops it gracefully (SIGTERM), waits for it to exit and returns its status.
    ///
    /// # Panics
    /// When it does not exit within a minute (it is killed then).
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(&child, libc::SIGTERM);
        wait_or_kill(&mut child, STARTUP).expect("the server stops on SIGTERM")
    }

    /// Kills it at once (SIGKILL), as a crash or `kill -9` would.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
    }

    /// Starts it again on the same port with the same settings.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
        // The old process is gone; the port may take a moment to be free for binding again.
        wait_for("the old server's port to free", STARTUP, || {
            !listening(self.port)
        });
        if let Err(status) = self.spawn() {
            panic!("the restarted server exited ({status}):\n{}", self.output());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `ROCKET_DATABASES` value for a database at `url` whose pool waits at most a second for
/// a connection (so an outage turns into an error page fast).
pub fn databases_env(url: &str) -> String {
    format!("{{rango={{url=\"{url}\",connect_timeout=1}}}}")
}

/// A SQLite URL for a database file in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/rango.sqlite3?mode=rwc", dir.display())
}

// ---------------------------------------------------------------------------------------------
// An HTTP client.

/// What a GET answered.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The value of the `sessionid` cookie the response set, if it set one (empty for a
    /// removal).
    pub session: Option<String>,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// The visit count the page shows.
    pub fn visits(&self) -> u64 {
        let marker = "<span id=\"visits\">";
        let start = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no visit count in {}: {}", self.status, self.body))
            + marker.len();
        let end = start + self.body[start..].find("</span>").expect("closing span");
        self.body[start..end].parse().expect("a number")
    }

    /// Whether this is the page that says the session store is unavailable.
    pub fn is_store_unavailable(&self) -> bool {
        self.status == 503 && self.body.contains("session store is unavailable")
    }
}

/// An HTTP/1.1 client (hyper) for tests against a server on a real port.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Http {
    /// A client that keeps connections open between requests, as browsers do.
    pub fn pooled() -> Http {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// A client that opens a connection per request: nothing stale after a server restart.
    pub fn fresh() -> Http {
        Http {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build_http(),
        }
    }

    /// GET `url`, carrying `sessionid=<session>` if given.
    ///
    /// # Errors
    /// The connection failed, or no answer came within [`REQUEST_TIMEOUT`].
    pub async fn try_get(&self, url: &str, session: Option<&str>) -> Result<Reply, String> {
        match session {
            Some(key) => {
                let cookie = format!("sessionid={key}");
                self.try_get_with(url, &[("Cookie", &cookie)]).await
            }
            None => self.try_get_with(url, &[]).await,
        }
    }

    /// GET `url` with the request headers `headers` (`Host` replaces the URL's).
    ///
    /// # Errors
    /// The connection failed, or no answer came within [`REQUEST_TIMEOUT`].
    pub async fn try_get_with(&self, url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        let mut request = hyper::Request::get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("GET {url}: {e:?}"))?;
            let status = response.status().as_u16();
            let session = response
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| v.strip_prefix("sessionid="))
                .map(|rest| rest.split(';').next().unwrap_or_default().to_owned());
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("GET {url}: body: {e}"))?
                .to_bytes();
            Ok(Reply {
                status,
                session,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("GET {url}: no answer in {REQUEST_TIMEOUT:?}"))?
    }

    /// GET `url`, carrying `sessionid=<session>` if given.
    ///
    /// # Panics
    /// The connection failed or timed out.
    pub async fn get(&self, url: &str, session: Option<&str>) -> Reply {
        self.try_get(url, session)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// A private redis-server.

/// A `redis-server` of the test's own on a free port, keeping nothing on disk; stopped when
/// dropped.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port (kept across restarts).
    pub port: u16,
    program: PathBuf,
    dir: TempDir,
}

impl RedisServer {
    /// Starts one, or returns `None` (after saying `test` is skipped) when `redis-server` is not
    /// installed outside CI.
    pub fn start(test: &str) -> Option<RedisServer> {
        let program = program("redis-server", test)?;
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            program,
            dir: TempDir::new().expect("temp dir"),
        };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let log = File::create(self.dir.path().join("redis.log")).expect("log file");
        let child = Command::new(&self.program)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let url = self.url();
        wait_for("the private redis-server to answer PING", STARTUP, || {
            ping(&url)
        });
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it (SIGKILL): everything it held is lost, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGCONT);
            signal(&child, libc::SIGKILL);
            let _ = child.wait();
        }
        let port = self.port;
        wait_for("the private redis-server's port to close", STARTUP, || {
            !listening(port)
        });
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Freezes it (SIGSTOP): connections are still accepted by the kernel, but nothing answers.
    pub fn freeze(&self) {
        signal(self.child.as_ref().expect("running"), libc::SIGSTOP);
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        signal(self.child.as_ref().expect("running"), libc::SIGCONT);
    }

    /// A connection to it, for checks.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("a connection to the private redis-server")
    }

    /// The keys that start with `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query(&mut self.connection())
            .expect("KEYS")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether the Redis server at `url` answers PING.
pub fn ping(url: &str) -> bool {
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn))
        .is_ok_and(|pong| pong == "PONG")
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy that can be cut.

/// A TCP proxy on a loopback port, forwarding each connection to a target (the machine's
/// PostgreSQL, say). [`Proxy::cut`] drops every connection and refuses new ones, as a service
/// that went down would; [`Proxy::restore`] listens again on the same port. Runs on a thread
/// and runtime of its own, so it works under any test; stopped when dropped.
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    target: SocketAddr,
    runtime: tokio::runtime::Handle,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to `target` (`host:port`), listening.
    pub fn start(target: &str) -> Proxy {
        let target = target
            .to_socket_addrs()
            .expect("a target address")
            .next()
            .expect("a target address");
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            handle_tx.send(runtime.handle().clone()).expect("send");
            runtime.block_on(async {
                let _ = stopped.await;
            });
        });
        let runtime = handle_rx.recv().expect("the proxy's runtime");
        let listener = StdListener::bind("127.0.0.1:0").expect("a port for the proxy");
        let proxy = Proxy {
            port: listener.local_addr().expect("address").port(),
            target,
            runtime,
            accept: Mutex::new(None),
            connections: Arc::default(),
            stop: Some(stop),
            thread: Some(thread),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: StdListener) {
        listener.set_nonblocking(true).expect("non-blocking");
        let _entered = self.runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        let (target, connections) = (self.target, self.connections.clone());
        let task = self.runtime.spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let forward = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut connections = connections.lock().unwrap_or_else(PoisonError::into_inner);
                connections.retain(|c| !c.is_finished());
                connections.push(forward.abort_handle());
            }
        });
        *self.accept.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
    }

    /// `host:port` of the proxy.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Drops every connection through the proxy and refuses new ones, until restored.
    pub fn cut(&self) {
        if let Some(accept) = self
            .accept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            accept.abort();
        }
        for connection in self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            connection.abort();
        }
        let port = self.port;
        wait_for("the proxy to refuse connections", STARTUP, || {
            !listening(port)
        });
    }

    /// Accepts connections again, on the same port.
    pub fn restore(&self) {
        let mut listener = None;
        wait_for("the proxy's port to bind again", STARTUP, || {
            listener = StdListener::bind(("127.0.0.1", self.port)).ok();
            listener.is_some()
        });
        self.serve(listener.expect("bound"));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `url` (`scheme://[user@]host[:port]/rest`) with its host and port replaced by `address`.
pub fn with_address(url: &str, address: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme://");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}{address}{tail}")
}

/// The `host:port` of `url` (`scheme://[user@]host[:port]/rest`), with `default_port`.
pub fn address_of(url: &str, default_port: u16) -> String {
    let (_, rest) = url.split_once("://").expect("scheme://");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    }
}

// ---------------------------------------------------------------------------------------------
// A private PostgreSQL server.

/// A PostgreSQL server of the test's own (`initdb` in a temporary directory, trust
/// authentication, no fsync) on a free loopback port, which a test can restart; stopped when
/// dropped. Run as root (CI), its commands run as the `postgres` user, as PostgreSQL requires.
pub struct PgServer {
    /// Its port.
    pub port: u16,
    bin: PathBuf,
    dir: TempDir,
}

impl PgServer {
    /// Starts one, or returns `None` (after saying `test` is skipped) when PostgreSQL's server
    /// programs are not installed outside CI.
    pub fn start(test: &str) -> Option<PgServer> {
        // Debian keeps them out of PATH, under /usr/lib/postgresql/<version>/bin.
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(|v| v.ok().map(|v| v.path().join("bin")))
                    .find(|bin| bin.join("pg_ctl").is_file())
            })
            .or_else(|| program("pg_ctl", test)?.parent().map(Path::to_owned));
        let Some(bin) = bin else {
            if in_ci() {
                panic!("{test}: CI is set but PostgreSQL's pg_ctl is not installed");
            }
            say(&format!(
                "skipped: {test}: PostgreSQL's pg_ctl is not installed"
            ));
            return None;
        };
        let server = PgServer {
            port: free_port(),
            bin,
            dir: TempDir::new().expect("temp dir"),
        };
        if is_root() {
            let owned = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(server.dir.path())
                .status()
                .expect("chown runs");
            assert!(
                owned.success(),
                "chown of the private PostgreSQL's directory"
            );
        }
        let data = server.dir.path().join("data");
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        server.pg_ctl("start");
        Some(server)
    }

    /// The server program `name`, to run as `postgres` when this is root.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Runs the server program `name` with `args`.
    fn run(&self, name: &str, args: &[&std::ffi::OsStr]) {
        let output = self
            .command(name)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("a PostgreSQL program runs");
        assert!(
            output.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `pg_ctl <action>`, waiting for it to finish.
    fn pg_ctl(&self, action: &str) {
        let dir = self.dir.path();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            dir.display()
        );
        let data = dir.join("data");
        let log = dir.join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                action.as_ref(),
            ],
        );
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Restarts it (`pg_ctl restart -m fast`): every connection is closed, and the server
    /// answers again when this returns.
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(data)
            .args(["-m", "immediate", "stop"])
            .stdin(Stdio::null())
            .output();
    }
}

/// Whether this process runs as root.
fn is_root() -> bool {
    // SAFETY: geteuid(2) only reads the process's credentials.
    unsafe { libc::geteuid() == 0 }
}
