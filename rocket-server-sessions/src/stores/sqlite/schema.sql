-- The session table (SqlStore::migrate runs this at every launch; it changes nothing that is there).
-- The primary key is the session key's digest (SessionKey::digest: the time the key was made,
-- then its SHA-256), never the key itself, so a copy of this table cannot be replayed as cookies;
-- new sessions go to the end of the table, in the order they were made (keys of earlier
-- versions, their plain SHA-256, lie in random order among them). `expires` is unix seconds. No
-- index on `expires`: expired sessions are cleared by sweeping the table in key order, and such
-- an index, ordered unlike the table, cost a random page write for every deleted session and two
-- more for every save (clearing a million took 31 s with it, 1.4 s without).
-- `user_id` is the user the session is signed in as (NULL for a visitor), indexed only where
-- set, so anonymous sessions pay nothing for it; a table made before it had the column gets it
-- from SqlStore::migrate, which then makes the index (`USER_INDEX` in mod.rs).
CREATE TABLE IF NOT EXISTS session (
    key_hash BLOB PRIMARY KEY NOT NULL,
    data TEXT NOT NULL,
    expires INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    user_id TEXT
) WITHOUT ROWID;
