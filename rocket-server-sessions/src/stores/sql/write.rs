//! A save as the SQL store runs it: its statement and parameters, the same through sqlx and,
//! on SQLite, through the group writer's own connection (`group.rs`). On SQLite `$N` parameters
//! are numbered by their first appearance, so each statement names them in order.

/// A new session: `$1` digest, `$2` data, `$3` expiry, `$4` its user (no row changed when the
/// digest is taken).
pub(super) const INSERT: &str = "INSERT INTO session (key_hash, data, expires, version, user_id) \
     VALUES ($1, $2, $3, 1, $4) ON CONFLICT (key_hash) DO NOTHING";

/// A save over a version: `$1` data, `$2` expiry, `$3` its user, `$4` digest, `$5` the version
/// it read (no row changed when another save came first). The parameters appear in the order
/// of their numbers: SQLite numbers `$N` parameters by their first appearance.
pub(super) const UPDATE: &str =
    "UPDATE session SET data = $1, expires = $2, version = version + 1, \
     user_id = $3 WHERE key_hash = $4 AND version = $5";

/// A deletion: `$1` digest.
pub(super) const DELETE: &str = "DELETE FROM session WHERE key_hash = $1";

/// A deletion of a user's session: `$1` digest, `$2` the user it must be signed in as.
pub(super) const END: &str = "DELETE FROM session WHERE key_hash = $1 AND user_id = $2";

/// A save: what the store's `write` runs.
#[derive(Debug)]
pub(super) enum Write {
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
