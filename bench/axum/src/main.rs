//! Rango's about page on axum with tower-sessions' SQLite store, for `bench/axum.sh`: the same
//! templates, the same context and the same visit rule as the site's `GET /rango/about/`
//! (`src/rango/mod.rs`, `src/rango/visits.rs`), so that the two servers' figures compare the
//! session layers and the frameworks, not the pages.
//!
//! Environment:
//! - `BENCH_PORT`: the port on 127.0.0.1 (default 8767);
//! - `BENCH_DB`: the SQLite file of the sessions (default `axum-sessions.sqlite3`; created,
//!   WAL journal, migrated at start);
//! - `BENCH_SESSIONS=off`: no session layer, every visitor's count is 1 (the ceiling, as
//!   Rango's `session.enabled = false`);
//! - `BENCH_TEMPLATES`: Rango's `templates/` folder (default `templates`, from the working
//!   directory);
//! - `BENCH_VISIT_INTERVAL`: seconds before a visit counts again (default 86400, as Rango's
//!   `visit_interval`);
//! - `BENCH_POOL`: the most connections sqlx's pool opens (default 16, as Rango's
//!   `max_connections` in Rocket.toml);
//! - `BENCH_TEST_BEFORE_ACQUIRE=off`: no ping of a connection each time the pool hands it out
//!   (sqlx's default pings).

use std::env;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use tera::{Context, Tera};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use tower_sessions::{session, Expiry, Session, SessionManagerLayer};
use tower_sessions_sqlx_store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use tower_sessions_sqlx_store::SqliteStore;

/// The session key of the visit count (Rango's `visits::VISITS`).
const VISITS: &str = "visits";
/// The session key of the last counted visit, an RFC 3339 timestamp (`visits::LAST_VISIT`).
const LAST_VISIT: &str = "last_visit";
/// Rango's `session.cookie_age`: two weeks.
const SESSION_AGE: Duration = Duration::weeks(2);

/// What every handler needs: the templates and the visit interval.
struct App {
    tera: Tera,
    visit_interval: Duration,
}

/// Rango's `Nav` for a visitor who is not signed in: no name, no logout form's token.
#[derive(Serialize)]
struct Nav {
    username: Option<String>,
    csrf_token: Option<String>,
}

/// The about page with `visits` in it, as Rango renders it (`context! { visits, account, nav }`).
fn render_about(app: &App, visits: u64) -> Response {
    let mut context = Context::new();
    context.insert("visits", &visits);
    context.insert(
        "account",
        &Nav {
            username: None,
            csrf_token: None,
        },
    );
    context.insert("nav", "about");
    match app.tera.render("rango/about", &context) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            eprintln!("rendering rango/about failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Rango's `record_visit`: counts this request as a visit if it is the session's first or at
/// least `interval` has passed since the last counted one, and returns the count; otherwise the
/// session is left as it is (not modified, so tower-sessions writes nothing).
async fn record_visit(
    session: &Session,
    interval: Duration,
    now: OffsetDateTime,
) -> Result<u64, session::Error> {
    // A value of the wrong type reads as none, as Rango's typed `get`; a store error does not.
    let visits: u64 = match session.get(VISITS).await {
        Ok(visits) => visits.unwrap_or(0),
        Err(session::Error::SerdeJson(_)) => 0,
        Err(e) => return Err(e),
    };
    let last_visit = match session.get::<String>(LAST_VISIT).await {
        Ok(last) => last.and_then(|s| OffsetDateTime::parse(&s, &Rfc3339).ok()),
        Err(session::Error::SerdeJson(_)) => None,
        Err(e) => return Err(e),
    };
    let due = match last_visit {
        Some(last) => now - last >= interval,
        None => true,
    };
    if visits > 0 && !due {
        return Ok(visits);
    }
    let visits = visits + 1;
    // Only dates past the year 9999 fail to format.
    let stamp = now.format(&Rfc3339).unwrap_or_default();
    session.insert(VISITS, visits).await?;
    session.insert(LAST_VISIT, stamp).await?;
    Ok(visits)
}

/// `GET /rango/about/` with the session layer.
async fn about(State(app): State<Arc<App>>, session: Session) -> Response {
    match record_visit(&session, app.visit_interval, OffsetDateTime::now_utc()).await {
        Ok(visits) => render_about(&app, visits),
        Err(e) => {
            // Rango answers 503 when its store is down.
            eprintln!("the session store failed: {e}");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// `GET /rango/about/` without sessions: a first visit's page, no store I/O, no cookie.
async fn about_ceiling(State(app): State<Arc<App>>) -> Response {
    render_about(&app, 1)
}

/// Every `*.tera` file under `dir`, named as Rocket names them: its path under `dir` without
/// its extensions (`rango/about.html.tera` is `rango/about`).
fn template_files(dir: &Path, under: &Path, files: &mut Vec<(PathBuf, Option<String>)>) {
    let entries = std::fs::read_dir(under)
        .unwrap_or_else(|e| panic!("cannot read the templates in {}: {e}", under.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            template_files(dir, &path, files);
            continue;
        }
        let Some(relative) = path.strip_prefix(dir).ok().and_then(Path::to_str) else {
            continue;
        };
        let Some(stem) = relative.strip_suffix(".tera") else {
            continue;
        };
        let name = match stem.rfind('.') {
            Some(dot) if !stem[dot..].contains('/') => &stem[..dot],
            _ => stem,
        };
        files.push((path.clone(), Some(name.replace('\\', "/"))));
    }
}

/// Rango's templates, loaded as `rocket_dyn_templates` loads them (the same autoescape list).
fn load_templates(dir: &Path) -> Tera {
    let mut tera = Tera::default();
    tera.autoescape_on(vec![
        ".html.tera",
        ".htm.tera",
        ".xml.tera",
        ".html",
        ".htm",
        ".xml",
    ]);
    let mut files = Vec::new();
    template_files(dir, dir, &mut files);
    tera.add_template_files(files)
        .unwrap_or_else(|e| panic!("cannot load the templates in {}: {e:?}", dir.display()));
    tera
}

fn env_or(name: &str, default: &str) -> String {
    env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() {
    let port: u16 = env_or("BENCH_PORT", "8767")
        .parse()
        .expect("BENCH_PORT is a port number");
    let sessions = match env_or("BENCH_SESSIONS", "on").as_str() {
        "on" => true,
        "off" => false,
        other => panic!("BENCH_SESSIONS is on or off, not {other:?}"),
    };
    let interval: i64 = env_or("BENCH_VISIT_INTERVAL", "86400")
        .parse()
        .expect("BENCH_VISIT_INTERVAL is whole seconds");
    let pool_size: u32 = env_or("BENCH_POOL", "16")
        .parse()
        .expect("BENCH_POOL is a number of connections");
    let test_before_acquire = match env_or("BENCH_TEST_BEFORE_ACQUIRE", "on").as_str() {
        "on" => true,
        "off" => false,
        other => panic!("BENCH_TEST_BEFORE_ACQUIRE is on or off, not {other:?}"),
    };
    let app = Arc::new(App {
        tera: load_templates(Path::new(&env_or("BENCH_TEMPLATES", "templates"))),
        visit_interval: Duration::seconds(interval),
    });

    let router = if sessions {
        let db = env_or("BENCH_DB", "axum-sessions.sqlite3");
        // WAL and `synchronous = NORMAL`, as Rango's pool (`src/db.rs`); sqlx's defaults
        // otherwise (a busy timeout of 5 s, and a ping before each use of a connection).
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{db}"))
            .expect("BENCH_DB is a file name")
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(pool_size)
            .test_before_acquire(test_before_acquire)
            .connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("cannot open {db}: {e}"));
        let store = SqliteStore::new(pool);
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("cannot migrate {db}: {e}"));
        // Rango's cookie: `sessionid`, HttpOnly, SameSite=Lax, path /, two weeks' Max-Age.
        let layer = SessionManagerLayer::new(store)
            .with_name("sessionid")
            .with_secure(false)
            .with_same_site(tower_sessions::cookie::SameSite::Lax)
            .with_expiry(Expiry::OnInactivity(SESSION_AGE));
        Router::new()
            .route("/rango/about/", get(about))
            .layer(layer)
            .with_state(app)
    } else {
        Router::new()
            .route("/rango/about/", get(about_ceiling))
            .with_state(app)
    };

    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {address}: {e}"));
    axum::serve(listener, router).await.expect("serving");
}
