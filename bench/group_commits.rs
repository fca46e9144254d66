//! How a SQLite store's saves group into commits when several arrive at once.
//!
//!     cargo bench --bench group_commits
//!
//! For 1, 4, 16 and 64 concurrent savers (tasks that each save a new session, then the next,
//! for two seconds), on one worker thread as a server pinned to one core has, against a fresh
//! SQLite file in WAL mode with `synchronous = NORMAL` (what a server sets), it prints the saves
//! per second and how many saves each commit held (`SqliteStore::group_commits`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocket_server_sessions::store::{Data, SessionStore};
use rocket_server_sessions::stores::SqliteStore;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use time::OffsetDateTime;

const RUN: Duration = Duration::from_secs(2);

fn main() {
    let runtime = rocket::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    println!("| savers | saves/s | commits | saves per commit | largest | commits of 1, 2–3, 4–7, 8–15, 16–31, 32–63, 64+ |");
    println!("|---:|---:|---:|---:|---:|---|");
    for savers in [1, 4, 16, 64] {
        runtime.block_on(run(savers));
    }
}

async fn run(savers: usize) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("group.sqlite3"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("a pool");
    let store = SqliteStore::new(pool);
    store.migrate().await.expect("the session table");
    let mut data = Data::new();
    data.insert("visits".into(), 1.into());
    let data = Arc::new(data);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..savers)
        .map(|_| {
            let (store, data, stop) = (store.clone(), Arc::clone(&data), Arc::clone(&stop));
            rocket::tokio::spawn(async move {
                let expires = OffsetDateTime::now_utc() + time::Duration::days(1);
                while !stop.load(Ordering::Relaxed) {
                    store.create(&data, expires).await.expect("a save");
                }
            })
        })
        .collect();
    rocket::tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("no panic");
    }
    let seconds = started.elapsed().as_secs_f64();
    let c = store.group_commits().expect("a SQLite file");
    let sizes: Vec<String> = c.by_size.iter().map(u64::to_string).collect();
    println!(
        "| {savers} | {:.0} | {} | {:.1} | {} | {} |",
        c.writes as f64 / seconds,
        c.commits,
        c.writes as f64 / c.commits.max(1) as f64,
        c.largest,
        sizes.join(", ")
    );
}
