//! What `cargo test -p rocket-server-sessions` left out for want of features.
//!
//! The integration tests name the features they need (`required-features` in Cargo.toml), and
//! Cargo passes over such a test without a word; each one left out shows here instead, as an
//! ignored test whose reason says how to run it (`--all-features` runs them all).

#[cfg(not(all(feature = "sqlite", feature = "redis", feature = "cookie")))]
#[test]
#[ignore = "tests/http (the session rules through HTTP) needs --features sqlite,redis,cookie"]
fn http_tests() {}

#[cfg(not(all(
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "cookie"
)))]
#[test]
#[ignore = "tests/stores (the store suite) needs --features sqlite,postgres,redis,cookie"]
fn store_tests() {}
