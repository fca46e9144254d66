-- The session table and the triggers that report its changes (SqlStore::migrate runs this in one
-- transaction at every launch). Each statement first checks whether what it makes is there
-- already, so a launch on a database that has it all takes no lock on the table and needs no
-- ownership of it. Servers that start together take turns under an advisory lock. The channel
-- the triggers notify, written CHANNEL here, is the store's (SqlStore::with_channel).
SELECT pg_advisory_xact_lock(7526353065616936531);

-- The primary key is the session key's digest (its time, then its SHA-256: SessionKey::digest),
-- never the key itself, so a copy of this table cannot be replayed as cookies. `expires` is unix seconds.
-- `user_id` is the user the session is signed in as (NULL for a visitor), indexed where set.
CREATE TABLE IF NOT EXISTS session (
    key_hash BYTEA PRIMARY KEY,
    data TEXT NOT NULL,
    expires BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    user_id TEXT
);

-- For the near caches of the servers that use the table (listen.rs): every update, and every
-- delete of a live session, notifies CHANNEL with '<table oid>:<key_hash in hex>', and a
-- truncate with '<table oid>:*'. The oid tells apart the session tables of several schemas in
-- one database. Deleting sessions that expired more than five minutes ago (clearing) notifies
-- nothing: no cache serves an expired session (the five minutes cover clocks that disagree). An
-- update always notifies, even of an expired row: it may bring the session back. Triggers are
-- made once: one turned off by an operator stays off (the near cache then stays off too).
DO $migrate$
BEGIN
    IF to_regclass('session_expires') IS NULL THEN
        CREATE INDEX session_expires ON session (expires);
    END IF;
    -- A table made before sessions had users.
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = 'session'::regclass AND attname = 'user_id'
                     AND NOT attisdropped) THEN
        ALTER TABLE session ADD COLUMN user_id TEXT;
    END IF;
    IF to_regclass('session_by_user') IS NULL THEN
        CREATE INDEX session_by_user ON session (user_id) WHERE user_id IS NOT NULL;
    END IF;
    -- A function that notifies another channel (a store whose channel changed) is replaced.
    IF NOT EXISTS (SELECT 1 FROM pg_proc
                   WHERE oid = to_regproc('session_changed')
                     AND prosrc LIKE '%pg_notify(''CHANNEL''%') THEN
        CREATE OR REPLACE FUNCTION session_changed() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN
            PERFORM pg_notify('CHANNEL', TG_RELID::text || ':' || encode(OLD.key_hash, 'hex'));
            RETURN NULL;
        END
        $f$;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_proc
                   WHERE oid = to_regproc('session_truncated')
                     AND prosrc LIKE '%pg_notify(''CHANNEL''%') THEN
        CREATE OR REPLACE FUNCTION session_truncated() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN
            PERFORM pg_notify('CHANNEL', TG_RELID::text || ':*');
            RETURN NULL;
        END
        $f$;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'session'::regclass AND tgname = 'session_updated') THEN
        CREATE TRIGGER session_updated AFTER UPDATE ON session
            FOR EACH ROW EXECUTE FUNCTION session_changed();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'session'::regclass AND tgname = 'session_deleted') THEN
        CREATE TRIGGER session_deleted AFTER DELETE ON session
            FOR EACH ROW WHEN (OLD.expires > EXTRACT(EPOCH FROM now()) - 300)
            EXECUTE FUNCTION session_changed();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'session'::regclass AND tgname = 'session_truncated') THEN
        CREATE TRIGGER session_truncated AFTER TRUNCATE ON session
            FOR EACH STATEMENT EXECUTE FUNCTION session_truncated();
    END IF;
END
$migrate$;
