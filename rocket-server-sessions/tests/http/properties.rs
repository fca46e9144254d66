//! Property tests of what the session layer reads from the outside world: the cookie value
//! (a session key, or a sealed cookie-store session), and a stored record. None of them may
//! panic on any input, and what is encoded decodes to the same data.
//!
//! The same code is fuzzed by the cargo-fuzz targets in `fuzz/`; inputs the fuzzers found are
//! kept under `fuzz/regressions/<target>/` and replayed by the `regression_*` tests at the end.
//! Case counts are kept modest so this file runs in a few seconds under `cargo test`.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use proptest::prelude::*;
use rocket::http::Cookie;
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime, UtcOffset};

use rocket_server_sessions::store::{
    decode, encode, Data, Record, SessionKey, SessionStore, StoreError, Stored, EXPIRY_KEY,
};
use rocket_server_sessions::stores::CookieStore;
use rocket_server_sessions::Expiry;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Runs a future that never waits on I/O (the cookie store's) to completion, without a runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// The cookie store under test, with a fixed secret key (64 hex digits: 32 bytes, expanded).
fn cookie_store() -> CookieStore {
    CookieStore::new(&"5a".repeat(32), "sessionid").expect("a valid secret key")
}

fn in_an_hour() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::hours(1)
}

fn is_well_formed_key(s: &str) -> bool {
    (s.len() == SessionKey::LEN || s.len() == SessionKey::OLD_LEN)
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The value of the `sessionid` cookie Rocket's request guard would see for a raw `Cookie:`
/// header: Rocket 0.5 splits the header on `;`, trims, percent-decodes each pair with
/// `Cookie::parse_encoded`, drops what does not parse, and the last pair of a name wins.
fn session_cookie_of_header(header: &str) -> Option<String> {
    let mut jar = cookie::CookieJar::new();
    for pair in header.split(';').map(str::trim) {
        if let Ok(cookie) = Cookie::parse_encoded(pair) {
            jar.add_original(cookie.into_owned());
        }
    }
    jar.get("sessionid").map(|c| c.value().to_owned())
}

/// `cases` cases per property; failures are shrunk and reported, not written to a file
/// (a failure worth keeping becomes a `regression_*` test below).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// A JSON number: integers of the whole i64/u64 range and finite floats.
fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        // Floats as people write them: short decimals.
        (-1_000_000i64..1_000_000, 0u32..6)
            .prop_filter_map("finite", |(m, e)| Number::from_f64(
                m as f64 / 10f64.powi(e as i32)
            ))
            .prop_map(Value::Number),
    ]
}

/// Any string, including quotes, backslashes, control characters and non-ASCII.
fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z_]{0,12}",
        prop::collection::vec(prop::char::any(), 0..8).prop_map(|c| c.into_iter().collect()),
    ]
}

/// Any JSON value, nested up to 6 levels, with at most ~64 nodes.
fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_number(),
        arb_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_text(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Any session data: a JSON object of arbitrary values.
fn arb_data() -> impl Strategy<Value = Data> {
    prop::collection::vec((arb_text(), arb_value()), 0..8)
        .prop_map(|entries| entries.into_iter().collect::<Map<String, Value>>())
}

/// Text that looks like JSON, so the parser gets past the first byte.
fn jsonish() -> impl Strategy<Value = String> {
    prop_oneof![
        r#"[\[\]{}",:0-9a-z\\. eE+\-]{0,64}"#,
        arb_data().prop_map(|d| encode(&d)),
        // A valid record with one byte changed, cut, or grown.
        (arb_data(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(d, at, b)| {
            let mut bytes = encode(&d).into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = b;
            String::from_utf8_lossy(&bytes).into_owned()
        }),
        (arb_data(), any::<prop::sample::Index>()).prop_map(|(d, at)| {
            let text = encode(&d);
            let mut cut = at.index(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text[..cut].to_owned()
        }),
    ]
}

/// A date RFC 3339 can write: years 0000 to 9999, any nanosecond, an offset of whole minutes.
fn arb_rfc3339_date() -> impl Strategy<Value = OffsetDateTime> {
    let min = OffsetDateTime::parse(
        "0000-01-02T00:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .expect("valid")
    .unix_timestamp();
    let max = OffsetDateTime::parse(
        "9999-12-30T00:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .expect("valid")
    .unix_timestamp();
    (
        min..max,
        0u32..1_000_000_000,
        -(23 * 60 + 59)..=(23 * 60 + 59),
    )
        .prop_map(|(seconds, nanos, offset_minutes)| {
            let offset = UtcOffset::from_whole_seconds(offset_minutes * 60).expect("in range");
            (OffsetDateTime::from_unix_timestamp(seconds).expect("in range")
                + Duration::nanoseconds(i64::from(nanos)))
            .to_offset(offset)
        })
}

// ---------------------------------------------------------------------------------------------
// Session keys

proptest! {
    #![proptest_config(config(512))]

    /// `parse` never panics, and accepts exactly 41 characters of `[a-z0-9]` (or 32, a key of
    /// an earlier version).
    #[test]
    fn key_parse_accepts_exactly_well_formed_keys(value in prop_oneof![
        any::<String>(),
        "[a-z0-9]{30,34}",
        "[a-z0-9]{39,43}",
        "[a-zA-Z0-9;=%\"\\\\ é\u{0}]{32}",
        "[a-zA-Z0-9;=%\"\\\\ é\u{0}]{41}",
        "[a-z0-9]{0,50}",
    ]) {
        let parsed = SessionKey::parse(&value);
        prop_assert_eq!(parsed.is_some(), is_well_formed_key(&value));
        if let Some(key) = parsed {
            prop_assert_eq!(key.as_str(), value.as_str());
        }
    }

    /// Every well-formed key of an earlier version parses, and its digest is the SHA-256 of the
    /// key, as it was.
    #[test]
    fn well_formed_old_keys_parse(value in "[a-z0-9]{32}") {
        let key = SessionKey::parse(&value).expect("well formed");
        prop_assert_eq!(key.as_str(), value.as_str());
        let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        prop_assert_eq!(key.digest(), digest);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        prop_assert_eq!(key.digest_hex(), hex);
        prop_assert!(!format!("{key:?}").contains(&value), "Debug leaks the key");
    }

    /// Every well-formed key parses, and its digest is the time its first nine characters
    /// spell (base-36 milliseconds, six bytes big-endian), then the head of its SHA-256.
    #[test]
    fn well_formed_keys_parse(value in "[a-z0-9]{41}") {
        let key = SessionKey::parse(&value).expect("well formed");
        prop_assert_eq!(key.as_str(), value.as_str());
        let millis = u64::from_str_radix(&value[..9], 36).expect("base 36");
        let hash: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        let digest = key.digest();
        prop_assert_eq!(&digest[..6], &millis.to_be_bytes()[2..]);
        prop_assert_eq!(&digest[6..], &hash[..26]);
        prop_assert!(!format!("{key:?}").contains(&value), "Debug leaks the key");
    }

    /// A well-formed key with one character changed to anything outside `[a-z0-9]` is refused.
    #[test]
    fn keys_with_one_bad_character_are_refused(
        value in prop_oneof!["[a-z0-9]{41}", "[a-z0-9]{32}"],
        at in 0..SessionKey::OLD_LEN,
        bad in any::<char>().prop_filter("outside the alphabet", |c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit())
        }),
    ) {
        let mut chars: Vec<char> = value.chars().collect();
        chars[at] = bad;
        let value: String = chars.into_iter().collect();
        prop_assert_eq!(SessionKey::parse(&value), None);
    }

    /// Whatever the `Cookie:` header, the `sessionid` Rocket extracts from it never panics
    /// `parse`, and a key is adopted only if it is well formed.
    #[test]
    fn cookie_headers_yield_only_well_formed_keys(header in prop_oneof![
        any::<String>(),
        r"(sessionid|other|session id|SESSIONID)=[a-z0-9%;=\x22 é\x00]{0,45}(; (sessionid|x)=[a-z0-9%]{0,43}){0,3}",
        "[a-z0-9]{41}".prop_map(|k| format!("a=1; sessionid={k}; b=2")),
        "[a-z0-9]{32}".prop_map(|k| format!("a=1; sessionid={k}; b=2")),
    ]) {
        if let Some(value) = session_cookie_of_header(&header) {
            let key = SessionKey::parse(&value);
            prop_assert_eq!(key.is_some(), is_well_formed_key(&value));
        }
    }
}

/// Generated keys always parse to themselves (one run: each case draws 165 bits from the OS).
#[test]
fn generated_keys_always_parse() {
    for _ in 0..2_000 {
        let key = SessionKey::generate();
        assert!(is_well_formed_key(key.as_str()), "{key}");
        assert_eq!(SessionKey::parse(key.as_str()), Some(key));
    }
}

// ---------------------------------------------------------------------------------------------
// Records

proptest! {
    #![proptest_config(config(256))]

    /// `decode` never panics on any text and always returns an object (empty if corrupt).
    #[test]
    fn decode_never_panics_on_text(text in prop_oneof![any::<String>(), jsonish()]) {
        let data = decode(&text);
        // What it returns is data that encodes and decodes back to itself.
        prop_assert_eq!(decode(&encode(&data)), data);
    }

    /// `decode` never panics on arbitrary bytes read as (lossy) UTF-8, as a store's bytes are.
    #[test]
    fn decode_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let data = decode(&String::from_utf8_lossy(&bytes));
        prop_assert_eq!(decode(&encode(&data)), data);
    }

    /// A decode of what was encoded returns the same data.
    #[test]
    fn decode_of_encode_is_identity(data in arb_data()) {
        prop_assert_eq!(decode(&encode(&data)), data);
    }

    /// An expiry read from any data, written back and read again, is the same expiry.
    #[test]
    fn expiry_from_any_data_is_stable(value in prop_oneof![
        arb_value(),
        any::<i64>().prop_map(Value::from),
        arb_rfc3339_date().prop_map(|d| Value::from(
            d.format(&time::format_description::well_known::Rfc3339).expect("formats")
        )),
    ]) {
        let mut data = Data::new();
        data.insert(EXPIRY_KEY.into(), value);
        let expiry = Expiry::from_data(&data);
        let mut again = Data::new();
        if let Some(value) = expiry.to_value() {
            again.insert(EXPIRY_KEY.into(), value);
        }
        prop_assert_eq!(Expiry::from_data(&again), expiry);
    }

    /// `Expiry` survives `to_value` then `from_data`: an age of whole seconds other than 0
    /// (0 is written as -1: "already expired", since the integer 0 means "at browser close"),
    /// and any date RFC 3339 can write.
    #[test]
    fn expiry_round_trips(
        seconds in any::<i64>().prop_filter("0 is browser close", |s| *s != 0),
        date in arb_rfc3339_date(),
    ) {
        for expiry in [Expiry::BrowserClose, Expiry::Age(Duration::seconds(seconds)), Expiry::At(date)] {
            let mut data = Data::new();
            data.insert(EXPIRY_KEY.into(), expiry.to_value().expect("a value"));
            prop_assert_eq!(Expiry::from_data(&data), expiry);
        }
        let mut data = Data::new();
        data.insert(EXPIRY_KEY.into(), Expiry::Age(Duration::ZERO).to_value().expect("a value"));
        prop_assert_eq!(Expiry::from_data(&data), Expiry::Age(Duration::seconds(-1)));
        prop_assert_eq!(Expiry::Default.to_value(), None);
    }
}

// ---------------------------------------------------------------------------------------------
// The cookie store

proptest! {
    #![proptest_config(config(128))]

    /// `create` then `load` of the returned id gives the same data, version and expiry (to the
    /// second); a session too big for a cookie is `TooLarge`, never a panic.
    #[test]
    fn cookie_store_create_then_load(data in arb_data()) {
        let store = cookie_store();
        let expires = in_an_hour();
        match block_on(store.create(&data, expires)) {
            Ok(Stored { id, version }) => {
                prop_assert_eq!(version, 1);
                let record = block_on(store.load(&id)).expect("no I/O").expect("opens");
                prop_assert_eq!(&*record.data, &data);
                prop_assert_eq!(record.version, 1);
                prop_assert_eq!(record.expires.unix_timestamp(), expires.unix_timestamp());
                // An update seals the next version.
                let Stored { id: id2, version: version2 } = block_on(store.update(&id, &record))
                    .expect("no I/O")
                    .expect("always applies");
                prop_assert_eq!(version2, 2);
                let record2 = block_on(store.load(&id2)).expect("no I/O").expect("opens");
                prop_assert_eq!(record2, Record { version: 2, ..record });
            }
            Err(StoreError::TooLarge(_)) => prop_assert!(encode(&data).len() > 2_000),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    /// `load` of any cookie value is `Ok(None)` or a record, never an error or a panic.
    #[test]
    fn cookie_store_load_of_anything(value in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9+/=]{0,200}",
        "[a-z0-9]{41}",
        "[a-z0-9]{32}",
    ]) {
        let store = cookie_store();
        prop_assert!(block_on(store.load(&value)).expect("never an error").is_none());
    }

    /// A sealed cookie with one character changed, cut short or grown, does not open as
    /// anything but the original session. (It may open as that: base64's last character
    /// carries bits the decoder drops, so a few spellings of one sealed value exist; each is
    /// the same session, which only its holder has.)
    #[test]
    fn tampered_cookies_do_not_open(
        data in arb_data(),
        at in any::<prop::sample::Index>(),
        replacement in any::<char>(),
        edit in 0..3u8,
    ) {
        let store = cookie_store();
        let Ok(Stored { id: sealed, .. }) = block_on(store.create(&data, in_an_hour())) else {
            return Ok(());
        };
        let mut chars: Vec<char> = sealed.chars().collect();
        let i = at.index(chars.len());
        match edit {
            0 => chars[i] = replacement,
            1 => chars.truncate(i),
            _ => chars.insert(i, replacement),
        }
        let tampered: String = chars.into_iter().collect();
        match block_on(store.load(&tampered)).expect("never an error") {
            None => {}
            Some(record) => prop_assert_eq!(&*record.data, &data, "opened as another session"),
        }
    }
}

/// A cookie sealed for another name, or with another key, or already expired, does not open.
#[test]
fn cookie_store_refuses_foreign_and_expired_cookies() {
    let store = cookie_store();
    let data: Data = [("n".to_owned(), Value::from(1))].into_iter().collect();
    let Stored { id: sealed, .. } = block_on(store.create(&data, in_an_hour())).expect("small");
    let other_key = CookieStore::new(&"a5".repeat(32), "sessionid").expect("valid");
    assert!(block_on(other_key.load(&sealed)).expect("no I/O").is_none());
    let other_name = CookieStore::new(&"5a".repeat(32), "othername").expect("valid");
    assert!(block_on(other_name.load(&sealed))
        .expect("no I/O")
        .is_none());
    let past = OffsetDateTime::now_utc() - Duration::seconds(1);
    let Stored { id: expired, .. } = block_on(store.create(&data, past)).expect("small");
    assert!(block_on(store.load(&expired)).expect("no I/O").is_none());
}

// ---------------------------------------------------------------------------------------------
// Regressions: every input the fuzzers kept under fuzz/regressions/<target>/, replayed.

/// Every file under `fuzz/regressions/<target>/`, as bytes (none if the directory is absent).
fn regression_inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut inputs: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| {
            let path = e.path();
            let bytes = std::fs::read(&path).expect("readable");
            (path.display().to_string(), bytes)
        })
        .collect();
    inputs.sort();
    inputs
}

/// Found by `decode_of_encode_is_identity`: without serde_json's `float_roundtrip` feature, a
/// float written by `encode` (shortest round-trip digits) could be read back by `decode` one
/// unit in the last place off, so a session's float changed on every save.
#[test]
fn regression_floats_survive_encode_then_decode() {
    for f in [
        -1.804984884743519e267,
        2.297841536048836e120,
        0.1 + 0.2,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        -0.0,
    ] {
        let data: Data = [("f".to_owned(), Value::from(f))].into_iter().collect();
        let back = decode(&encode(&data));
        assert_eq!(back, data, "{f:e}");
        assert_eq!(
            back["f"].as_f64().map(f64::to_bits),
            Some(f.to_bits()),
            "{f:e}"
        );
    }
}

#[test]
fn regression_session_key() {
    for (name, bytes) in regression_inputs("session_key") {
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(
            SessionKey::parse(&text).is_some(),
            is_well_formed_key(&text),
            "{name}"
        );
    }
}

#[test]
fn regression_record_decode() {
    for (name, bytes) in regression_inputs("record_decode") {
        let data = decode(&String::from_utf8_lossy(&bytes));
        assert_eq!(decode(&encode(&data)), data, "{name}");
        let _ = Expiry::from_data(&data).to_value();
    }
}

#[test]
fn regression_cookie_open() {
    let store = cookie_store();
    for (name, bytes) in regression_inputs("cookie_open") {
        let value = String::from_utf8_lossy(&bytes);
        assert!(block_on(store.load(&value)).is_ok(), "{name}");
    }
}

#[test]
fn regression_cookie_header() {
    let store = cookie_store();
    for (name, bytes) in regression_inputs("cookie_header") {
        let header = String::from_utf8_lossy(&bytes);
        if let Some(value) = session_cookie_of_header(&header) {
            let _ = SessionKey::parse(&value);
            assert!(block_on(store.load(&value)).is_ok(), "{name}");
        }
    }
}
