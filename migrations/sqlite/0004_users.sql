-- Accounts (Tango with Django, chapter 9). Version 4: versions 2 and 3 are taken in databases
-- made before the session table moved to the session crate (src/db.rs).
-- `username_key` is the username in lower case: usernames are unique whatever their case.
-- `password` is an Argon2id hash in PHC format, never the password. `session_generation` goes
-- up when the user signs out their other sessions: a session signed in under an older one is
-- signed out on its next request, on every store (the sealed-cookie store included).
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    password TEXT NOT NULL,
    session_generation INTEGER NOT NULL DEFAULT 0,
    date_joined TEXT NOT NULL
);
