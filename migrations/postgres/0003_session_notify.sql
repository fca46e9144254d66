-- The session table reports its changes, for the near caches of the servers that use it
-- (src/session/stores/listen.rs): every update, and every delete of a live session, notifies
-- channel `rango_session` with '<table oid>:<key_hash in hex>', and a truncate with
-- '<table oid>:*'. The oid tells apart the session tables of several schemas in one database.
-- Deleting sessions that expired more than five minutes ago (clearsessions) notifies nothing:
-- no cache serves an expired session (the five minutes cover clocks that disagree). An update
-- always notifies, even of an expired row: it may bring the session back.
CREATE FUNCTION session_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rango_session', TG_RELID::text || ':' || encode(OLD.key_hash, 'hex'));
    RETURN NULL;
END
$$;

CREATE TRIGGER session_updated AFTER UPDATE ON session
    FOR EACH ROW EXECUTE FUNCTION session_changed();

CREATE TRIGGER session_deleted AFTER DELETE ON session
    FOR EACH ROW WHEN (OLD.expires > EXTRACT(EPOCH FROM now()) - 300)
    EXECUTE FUNCTION session_changed();

CREATE FUNCTION session_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rango_session', TG_RELID::text || ':*');
    RETURN NULL;
END
$$;

CREATE TRIGGER session_truncated AFTER TRUNCATE ON session
    FOR EACH STATEMENT EXECUTE FUNCTION session_truncated();
