//! The site's tests, through Rocket's local client and the real binary: its pages (`views.rs`),
//! its settings (`config.rs`), the command line (`cli.rs`), hostile cookies (`hostile.rs`), the
//! session rules as its pages meet them (`sessions.rs`) and a real browser (`browser.rs`). The
//! session framework's own tests are the crate's (`rocket-server-sessions/tests/`); outages,
//! restarts and load are `tests/faults/`.

mod browser;
mod cli;
mod common;
mod config;
mod hostile;
mod sessions;
mod views;
