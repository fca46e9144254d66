-- Failed attempts at login, registration and the password change, a row each, by username
-- (`user:...`) and by client address (`addr:...`), at `at` (unix seconds): a key counts its
-- rows of the last `rango.throttle_window` seconds (src/accounts/throttle.rs). Older rows
-- are deleted by every attempt (by `at`).
CREATE TABLE throttle (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX throttle_by_key ON throttle (key, at);
CREATE INDEX throttle_by_at ON throttle (at);
