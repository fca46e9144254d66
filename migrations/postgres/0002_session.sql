-- Server-side sessions. The primary key is the SHA-256 digest of the session key, never the key
-- itself, so a copy of this table cannot be replayed as cookies. `expires` is unix seconds.
CREATE TABLE session (
    key_hash BYTEA PRIMARY KEY,
    data TEXT NOT NULL,
    expires BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);

CREATE INDEX session_expires ON session (expires);
