//! The site's tests, through Rocket's local client and the real binary: its pages (`views.rs`),
//! its settings (`config.rs`), the command line (`cli.rs`), hostile cookies (`hostile.rs`),
//! Django's security headers and allowed hosts (`security.rs`), the session rules as its pages
//! meet them (`sessions.rs`) and a real browser (`browser.rs`). The
//! session framework's own tests are the crate's (`rocket-server-sessions/tests/`); outages,
//! restarts and load are `tests/faults/`.

mod accounts;
mod browser;
mod cli;
mod common;
// The session crate's HTTP test harness: routes under /t, requests, cookie assertions.
mod config;
#[path = "../../rocket-server-sessions/tests/http/harness.rs"]
mod harness;
mod hostile;
mod security;
// The PostgreSQL schemas and Redis prefixes of the crate's store tests, shared.
#[path = "../../rocket-server-sessions/tests/stores/services.rs"]
mod services;
mod sessions;
mod views;
