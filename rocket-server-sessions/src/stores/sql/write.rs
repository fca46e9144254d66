//! A save as the SQL stores run it: its statement and parameters, the same through sqlx and,
//! on a SQLite file, through the group writer's own connection (`sqlite/group.rs`). On SQLite `$N` parameters
//! are numbered by their first appearance, so each statement names them in order.

use sqlx::database::HasArguments;
use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use super::RowsAffected;

/// A new session: `$1` digest, `$2` data, `$3` expiry, `$4` its user (no row changed when the
/// digest is taken).
pub(crate) const INSERT: &str = "INSERT INTO session (key_hash, data, expires, version, user_id) \
     VALUES ($1, $2, $3, 1, $4) ON CONFLICT (key_hash) DO NOTHING";

/// A save over a version: `$1` data, `$2` expiry, `$3` its user, `$4` digest, `$5` the version
/// it read (no row changed when another save came first). The parameters appear in the order
/// of their numbers: SQLite numbers `$N` parameters by their first appearance.
pub(crate) const UPDATE: &str =
    "UPDATE session SET data = $1, expires = $2, version = version + 1, \
     user_id = $3 WHERE key_hash = $4 AND version = $5";

/// A deletion: `$1` digest.
pub(crate) const DELETE: &str = "DELETE FROM session WHERE key_hash = $1";

/// A deletion of a user's session: `$1` digest, `$2` the user it must be signed in as.
pub(crate) const END: &str = "DELETE FROM session WHERE key_hash = $1 AND user_id = $2";

/// A save: what a store's `write` runs.
#[derive(Debug)]
pub(crate) enum Write {
    /// A new session (`rows` 0 when the digest is taken).
    Insert {
        digest: [u8; 32],
        data: String,
        expires: i64,
        user: Option<String>,
    },
    /// A save over `version` (`rows` 0 when another save came first).
    Update {
        digest: [u8; 32],
        data: String,
        expires: i64,
        version: i64,
        user: Option<String>,
    },
    /// A deletion.
    Delete { digest: [u8; 32] },
    /// A deletion of a session only if it is signed in as `user`.
    End { digest: [u8; 32], user: String },
}

impl Write {
    /// Runs the save through sqlx on `conn` (a connection or a pool); how many rows it changed.
    pub(crate) async fn run<'c, DB, E>(&self, conn: E) -> Result<u64, sqlx::Error>
    where
        DB: Database,
        DB::QueryResult: RowsAffected,
        E: Executor<'c, Database = DB>,
        for<'q> <DB as HasArguments<'q>>::Arguments: IntoArguments<'q, DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
        for<'q> &'q str: Encode<'q, DB> + Type<DB>,
        for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    {
        let done = match self {
            Write::Insert {
                digest,
                data,
                expires,
                user,
            } => {
                sqlx::query(INSERT)
                    .bind(&digest[..])
                    .bind(data.as_str())
                    .bind(*expires)
                    .bind(user.as_deref())
                    .execute(conn)
                    .await
            }
            Write::Update {
                digest,
                data,
                expires,
                version,
                user,
            } => {
                sqlx::query(UPDATE)
                    .bind(data.as_str())
                    .bind(*expires)
                    .bind(user.as_deref())
                    .bind(&digest[..])
                    .bind(*version)
                    .execute(conn)
                    .await
            }
            Write::Delete { digest } => sqlx::query(DELETE).bind(&digest[..]).execute(conn).await,
            Write::End { digest, user } => {
                sqlx::query(END)
                    .bind(&digest[..])
                    .bind(user.as_str())
                    .execute(conn)
                    .await
            }
        };
        done.map(|done| done.rows())
    }
}
