-- Server-side sessions. The primary key is the SHA-256 digest of the session key, never the key
-- itself, so a copy of this table cannot be replayed as cookies. `expires` is unix seconds.
CREATE TABLE session (
    key_hash BLOB PRIMARY KEY NOT NULL,
    data TEXT NOT NULL,
    expires INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;

CREATE INDEX session_expires ON session (expires);
