-- Failed attempts at login, registration and the password change, by username (`user:...`)
-- and by client address (`addr:...`): `failures` since `since` (unix seconds), the opening
-- of the key's window (src/accounts/throttle.rs). Rows whose window closed are deleted when
-- another window opens (by `since`).
CREATE TABLE throttle (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    since BIGINT NOT NULL
);
CREATE INDEX throttle_by_since ON throttle (since);
