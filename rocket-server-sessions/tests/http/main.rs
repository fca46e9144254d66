//! The session layer through HTTP, as an application mounts it: Django's rules for cookies,
//! saving, expiry, keys and concurrency (`rules.rs`), what each request costs the store
//! (`framework.rs`), the sealed-cookie store (`cookie.rs`), and property tests of the parsers
//! and codecs that read what a client sends (`properties.rs`).

mod backends;
mod common;
mod cookie;
mod csrf;
mod framework;
mod harness;
mod properties;
mod rules;
