//! Sessions in a SQLite database (Django's `backends.db`), on the pool the application hands the
//! store ([`SqliteStore::new`]): the table and statements of `stores/sql`, loads and saves on
//! the file itself.
//!
//! On a file, both hot paths run on plain SQLite connections (rusqlite, on the libsqlite3 sqlx
//! links), each with its measured gain in BENCHMARKS.md: a load runs on the request's own
//! thread (`read.rs`; through sqlx, each statement was a hop to the connection's thread and
//! back, most of a load's cost), and saves go through one writer thread that commits the saves
//! waiting for it together (`group.rs`), never colliding on SQLite's write lock (whose busy
//! handler backs off in sleeps of milliseconds); a load that cannot run at once waits on a
//! blocking thread for the same connections. Clearing, counting and inspecting run on the
//! application's pool. A database in memory, which no other connection can see, runs on the
//! pool alone, as does a file this process cannot open directly.
//!
//! The store is [`Watched`]: the writer polls the file's `data_version` (`watch.rs`), so a
//! near cache in front serves unchanged sessions from memory and drops them all when another
//! process commits.

mod group;
mod read;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use time::OffsetDateTime;

use crate::record::{whole_seconds, Record};
use crate::store::{Result, StoreError, Stored};
use crate::stores::near::{Cache, Kept, Name, Watched};
use crate::stores::sql::write::Write;
use crate::stores::sql::{self, OnPool, Row, RowsAffected, SqlBackend};

pub use group::GroupCommits;
use group::GroupWriter;
use read::InlineReader;

/// A load: the live session of a key digest (`$1`) at a unix time (`$2`).
const LOAD: &str =
    "SELECT data, expires, version FROM session WHERE key_hash = $1 AND expires > $2";

/// The session table: what [`SqliteStore::migrate`] makes.
const SCHEMA: &str = include_str!("schema.sql");

/// The index from users to their sessions, made after the `user_id` column.
const USER_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS session_by_user ON session (user_id) WHERE user_id IS NOT NULL";

/// A store in a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Clearing, counting and inspecting; loads and saves in memory.
    pool: SqlitePool,
    /// Loads and saves on a file.
    file: Option<Arc<OnFile>>,
    /// How long a load may wait: the pool's acquire timeout.
    limit: Duration,
}

/// The connections of a store on a file.
#[derive(Debug)]
struct OnFile {
    /// Loads, on up to one connection per core (WAL readers never wait).
    reader: InlineReader,
    /// Saves, in group commits.
    writer: GroupWriter,
}

impl SqliteStore {
    /// A store on a SQLite pool. The pool should be in WAL mode (readers then never wait for
    /// the writer) with a busy timeout; its database needs the `session` table, which
    /// [`SqliteStore::migrate`] makes.
    pub fn new(pool: SqlitePool) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let max = usize::try_from(pool.options().get_max_connections()).unwrap_or(1);
        let limit = pool.options().get_acquire_timeout();
        let path = pool.connect_options().as_ref().clone().get_filename();
        let file = InlineReader::new(&path, cores.min(max), LOAD)
            .zip(GroupWriter::new(&path, limit))
            .map(|(reader, writer)| Arc::new(OnFile { reader, writer }));
        SqliteStore { pool, file, limit }
    }

    /// Makes the `session` table if it is not there yet, and puts the file in WAL mode; does
    /// nothing to a table that is. Call it once at launch, before serving (or from a deploy
    /// script): it is safe to run from several processes at once.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when a statement fails.
    pub async fn migrate(&self) -> Result<()> {
        let pool = &self.pool;
        // WAL, so that loads never wait for saves: kept by the file itself. Best effort
        // (another process may hold the file); `describe` warns at launch.
        if let Err(e) = sqlx::query("PRAGMA journal_mode = WAL").execute(pool).await {
            log::debug!("could not set the session database to WAL: {e}");
        }
        async {
            sqlx::Executor::execute(pool, SCHEMA).await?;
            let has_users: bool = sqlx::query_scalar(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('session') WHERE name = 'user_id'",
            )
            .fetch_one(pool)
            .await?;
            if !has_users {
                // A table made before sessions had users. Another process migrating at the
                // same moment may add the column first: then it is there.
                if let Err(e) = sqlx::query("ALTER TABLE session ADD COLUMN user_id TEXT")
                    .execute(pool)
                    .await
                {
                    if !e.to_string().contains("duplicate column") {
                        return Err(e);
                    }
                }
            }
            sqlx::query(USER_INDEX).execute(pool).await.map(drop)
        }
        .await
        .map_err(StoreError::backend)
    }

    /// How this store's saves were committed so far: `None` unless it runs on a file, whose
    /// saves go in group commits (saves that arrive while a commit is under way are committed
    /// together in the next one). For monitoring and benchmarks.
    pub fn group_commits(&self) -> Option<GroupCommits> {
        self.file.as_ref().map(|file| file.writer.counts())
    }

    /// Whether loads and saves run on the file's own connections (not in memory, nor through
    /// the pool): only then can a near cache watch it.
    pub(crate) fn on_file(&self) -> bool {
        self.file.is_some()
    }
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// The session store on top (`sql/mod.rs`): every session operation, clearing in batches,
/// counting and inspecting, a user's sessions.
#[rocket::async_trait]
impl SqlBackend for SqliteStore {
    /// On a file on the request's own thread, or when that cannot be at once on a blocking
    /// thread; in memory, or when the file cannot be opened directly, through the pool.
    async fn read(&self, digest: &[u8; 32]) -> Result<Option<Record>> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        if let Some(file) = &self.file {
            if let Some(row) = file.reader.load(digest, now) {
                return Ok(row.map(sql::record_of));
            }
            if !file.reader.is_off() {
                let (on_file, digest, limit) = (Arc::clone(file), *digest, self.limit);
                let waited = rocket::tokio::task::spawn_blocking(move || {
                    on_file.reader.load_waiting(&digest, now, limit)
                })
                .await
                .map_err(StoreError::backend)?;
                match waited {
                    Ok(row) => return Ok(row.map(sql::record_of)),
                    Err(e) if !file.reader.is_off() => return Err(StoreError::backend(e)),
                    Err(_) => {} // the reader turned itself off: through the pool
                }
            }
        }
        let row: Option<Row> = sqlx::query_as(LOAD)
            .bind(&digest[..])
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(row.map(sql::record_of))
    }

    /// On a file in the next group commit; in memory, or when the writer cannot run, through
    /// the pool.
    async fn write(&self, write: Write) -> Result<u64> {
        let write = match &self.file {
            Some(file) => match file.writer.run(&self.pool, write).await {
                Ok(result) => return result,
                Err(write) => write,
            },
            None => write,
        };
        write.run(&self.pool).await.map_err(StoreError::backend)
    }

    /// This machine's clock, as every process sharing the file reads it.
    async fn now(&self) -> Result<i64> {
        Ok(OffsetDateTime::now_utc().unix_timestamp())
    }

    fn on_pool(&self) -> &dyn OnPool {
        &self.pool
    }

    /// The file and its journal mode, with a warning unless it is WAL.
    async fn describe_database(&self) -> Result<String> {
        let (file, mode): (String, String) = sqlx::query_as(
            "SELECT (SELECT file FROM pragma_database_list WHERE name = 'main'), \
                    (SELECT journal_mode FROM pragma_journal_mode)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        if file.is_empty() {
            return Ok(format!("SQLite in memory (journal_mode={mode})"));
        }
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!(
                "the session database {file} is in journal_mode={mode}: every load waits for \
                 saves; SqliteStore::migrate sets WAL, or open it with journal_mode=WAL"
            );
        }
        Ok(format!("SQLite at {file} (journal_mode={mode})"))
    }
}

impl crate::stores::near::sealed::Sealed for SqliteStore {}

/// Another process's commits are seen through the file's `data_version`, polled by the group
/// writer (`watch.rs`), so a [`NearCached`](crate::stores::NearCached) store can keep what
/// this one loads. Expiry is this machine's clock, checked on every hit.
#[rocket::async_trait]
impl Watched for SqliteStore {
    fn watch(&self, cache: std::sync::Weak<Cache>) {
        let Some(file) = &self.file else {
            log::info!("session near cache off: a SQLite database in memory has no file to watch");
            return;
        };
        let (file, pool) = (Arc::clone(file), self.pool.clone());
        rocket::tokio::spawn(async move { file.writer.watch(&pool, cache).await });
    }

    /// The name is the key's digest: not computed again.
    async fn load_watched(&self, _id: &str, name: &Name) -> Result<Option<Kept>> {
        Ok(self.read(name).await?.map(|record| Kept {
            record,
            until: None,
        }))
    }

    /// The writer's own commits never move the `data_version` it polls, so a session this
    /// server saved is kept as a load would read it back (its expiry in whole seconds, as the
    /// row keeps it).
    fn after_own_update(&self, record: &Record, stored: &Stored) -> Option<Kept> {
        Some(Kept {
            record: Record {
                data: Arc::clone(&record.data),
                expires: whole_seconds(record.expires),
                version: stored.version,
            },
            until: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SessionKey;
    use crate::store::{Census, Data, SessionStore, Stored};

    async fn store(url: &str) -> SqliteStore {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().expect("a SQLite URL");
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options.create_if_missing(true))
            .await
            .expect("connect");
        SqliteStore::new(pool)
    }

    /// A store on a fresh SQLite file in `dir`, migrated, with a busy timeout of `busy`.
    async fn file_store(dir: &tempfile::TempDir, busy: Duration) -> (SqliteStore, String) {
        let path = dir.path().join("group.sqlite3");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(busy);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .expect("connect");
        let store = SqliteStore::new(pool);
        store.migrate().await.expect("migrate");
        (store, path.display().to_string())
    }

    /// A connection of its own holding the file's write lock until it is dropped.
    fn hold_write_lock(path: &str) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(path).expect("open");
        conn.execute_batch("BEGIN IMMEDIATE; DELETE FROM session WHERE 0;")
            .expect("lock");
        conn
    }

    fn data(text: &str) -> Data {
        let mut data = Data::new();
        data.insert("v".into(), text.into());
        data
    }

    /// `count` creates at once, the `poisoned`-th (if any) with data a trigger refuses; each
    /// create's answer, in order.
    async fn creates_at_once(
        store: &SqliteStore,
        count: usize,
        poisoned: Option<usize>,
    ) -> Vec<Result<Stored>> {
        let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let tasks: Vec<_> = (0..count)
            .map(|i| {
                let store = store.clone();
                let text = if Some(i) == poisoned {
                    "poison"
                } else {
                    "fine"
                };
                rocket::tokio::spawn(async move { store.create(&data(text), expires).await })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.expect("no panic"));
        }
        answers
    }

    #[rocket::async_test]
    async fn saves_that_wait_for_the_writer_share_one_commit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, path) = file_store(&dir, Duration::from_secs(5)).await;
        // The writer's first save waits for the lock; the others queue behind it meanwhile.
        let lock = hold_write_lock(&path);
        let answers = rocket::tokio::spawn({
            let store = store.clone();
            async move { creates_at_once(&store, 32, None).await }
        });
        rocket::tokio::time::sleep(Duration::from_millis(300)).await;
        drop(lock);
        let answers = answers.await.expect("no panic");
        let reader = rusqlite::Connection::open(&path).expect("open");
        for answer in answers {
            // Committed when answered: another connection sees it.
            let Stored { id, .. } = answer.expect("saved");
            let digest = SessionKey::parse(&id).expect("a key").digest();
            let found: i64 = reader
                .query_row(
                    "SELECT COUNT(*) FROM session WHERE key_hash = ?1",
                    (&digest[..],),
                    |row| row.get(0),
                )
                .expect("read");
            assert_eq!(found, 1);
        }
        let commits = store.group_commits().expect("a file");
        assert_eq!(commits.writes, 32);
        assert!(commits.commits < 32, "{commits:?}");
        assert!(commits.largest > 1, "{commits:?}");
        assert_eq!(commits.by_size.iter().sum::<u64>(), commits.commits);
    }

    #[rocket::async_test]
    async fn a_save_that_fails_fails_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, path) = file_store(&dir, Duration::from_secs(5)).await;
        rusqlite::Connection::open(&path)
            .expect("open")
            .execute_batch(
                "CREATE TRIGGER poison BEFORE INSERT ON session WHEN NEW.data LIKE '%poison%' \
                 BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
            )
            .expect("trigger");
        let lock = hold_write_lock(&path);
        let answers = rocket::tokio::spawn({
            let store = store.clone();
            async move { creates_at_once(&store, 16, Some(7)).await }
        });
        rocket::tokio::time::sleep(Duration::from_millis(300)).await;
        drop(lock);
        let answers = answers.await.expect("no panic");
        for (i, answer) in answers.iter().enumerate() {
            if i == 7 {
                let e = answer.as_ref().expect_err("the poisoned save fails");
                assert!(e.to_string().contains("poisoned"), "{e}");
            } else {
                let stored = answer.as_ref().expect("its neighbours are saved");
                assert!(store.load(&stored.id).await.expect("load").is_some());
            }
        }
        assert_eq!(Census::count(&store).await.expect("count").live, 15);
    }

    #[rocket::async_test]
    async fn a_lock_held_past_the_busy_timeout_fails_the_saves_and_then_lets_them_through() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, path) = file_store(&dir, Duration::from_millis(100)).await;
        let lock = hold_write_lock(&path);
        let answers = creates_at_once(&store, 4, None).await;
        assert!(answers.iter().all(Result::is_err), "{answers:?}");
        drop(lock);
        let answers = creates_at_once(&store, 4, None).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(Census::count(&store).await.expect("count").live, 4);
    }

    #[rocket::async_test]
    async fn the_writer_keeps_the_wal_checkpointed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, path) = file_store(&dir, Duration::from_secs(5)).await;
        let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let commits: u64 = 1_500;
        for _ in 0..commits {
            store.create(&data("x"), expires).await.expect("create");
        }
        // SQLite's checkpoint at 1,000 pages starts the WAL over; without it the WAL would
        // hold a frame (a page and its header) per commit at the least.
        let wal = std::fs::metadata(format!("{path}-wal"))
            .expect("a WAL")
            .len();
        assert!(
            wal < commits * 4096,
            "WAL of {wal} bytes after {commits} commits"
        );
        assert_eq!(store.group_commits().map(|c| c.writes), Some(commits));
    }

    /// The near cache over a store whose saves wait at most 300 ms: a save that gave up while
    /// another connection held the lock, then committed by the writer once the lock was free,
    /// must not leave this server serving the old session (its own commits move nothing the
    /// watcher's poll sees).
    #[rocket::async_test]
    async fn a_save_committed_after_its_request_gave_up_drops_the_near_copies() {
        use crate::stores::NearCached;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("late.sqlite3");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_millis(300))
            .connect_with(options)
            .await
            .expect("connect");
        let plain = SqliteStore::new(pool);
        plain.migrate().await.expect("migrate");
        let store = NearCached::new(plain, std::num::NonZeroUsize::new(8).expect("not zero"));
        let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let Stored { id, .. } = store.create(&data("old"), expires).await.expect("created");
        for _ in 0..100 {
            if store.watching() {
                break;
            }
            rocket::tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(store.watching());
        let record = store.load(&id).await.expect("load").expect("live");
        let lock = hold_write_lock(&path.display().to_string());
        let saved = Record {
            data: data("new").into(),
            ..record
        };
        assert!(
            store.update(&id, &saved).await.is_err(),
            "the save gives up waiting"
        );
        // Loaded again, from the file (the old row), and kept while the watch is still fresh.
        let hits = store.hits();
        store.load(&id).await.expect("load");
        store.load(&id).await.expect("load");
        assert!(store.hits() > hits, "the old session is kept");
        drop(lock); // the writer commits the save nobody waits for
        let mut seen = String::new();
        for _ in 0..200 {
            let record = store.load(&id).await.expect("load").expect("live");
            seen = record.data["v"].to_string();
            if seen == "\"new\"" {
                return;
            }
            rocket::tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("still serving {seen} after the late commit");
    }

    #[rocket::async_test]
    async fn a_database_in_memory_runs_on_the_pool() {
        let store = store("sqlite::memory:").await;
        store.migrate().await.expect("migrate");
        let Stored { id, .. } = store
            .create(
                &data("x"),
                OffsetDateTime::now_utc() + time::Duration::hours(1),
            )
            .await
            .expect("create");
        assert!(store.load(&id).await.expect("load").is_some());
        assert_eq!(store.group_commits(), None);
        // Saves at once, through the pool: none fails on a lock.
        let answers = creates_at_once(&store, 32, None).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(Census::count(&store).await.expect("count").live, 33);
    }

    #[rocket::async_test]
    async fn loads_and_saves_on_a_file_run_on_the_files_own_connections() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("s.sqlite3").display());
        assert!(store(&url).await.on_file());
        assert!(!store("sqlite::memory:").await.on_file());
    }
}
