-- The session table and the triggers that report its changes (SqlStore::migrate runs this in one
-- transaction at every launch; it changes nothing that is there but the trigger functions, which
-- it brings up to date). Servers that start together take turns under an advisory lock.
SELECT pg_advisory_xact_lock(7526353065616936531);

-- The primary key is the SHA-256 digest of the session key, never the key itself, so a copy of
-- this table cannot be replayed as cookies. `expires` is unix seconds.
CREATE TABLE IF NOT EXISTS session (
    key_hash BYTEA PRIMARY KEY,
    data TEXT NOT NULL,
    expires BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);

CREATE INDEX IF NOT EXISTS session_expires ON session (expires);

-- For the near caches of the servers that use the table (listen.rs): every update, and every
-- delete of a live session, notifies channel `session_changes` with
-- '<table oid>:<key_hash in hex>', and a truncate with '<table oid>:*'. The oid tells apart the
-- session tables of several schemas in one database. Deleting sessions that expired more than
-- five minutes ago (clearing) notifies nothing: no cache serves an expired session (the five
-- minutes cover clocks that disagree). An update always notifies, even of an expired row: it
-- may bring the session back.
CREATE OR REPLACE FUNCTION session_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('session_changes', TG_RELID::text || ':' || encode(OLD.key_hash, 'hex'));
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION session_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('session_changes', TG_RELID::text || ':*');
    RETURN NULL;
END
$$;

-- Triggers are made once: one turned off by an operator stays off (the near cache then stays
-- off too, see listen.rs).
DO $$
BEGIN
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
$$;
