//! The cookie store's `load` of any cookie value, under a fixed key: no panic, never an error.
//! The input is tried three ways: as the cookie value itself; sealed with the store's key, so
//! the payload parsing behind the decryption is reached; and as session data to `create`
//! then `load`, which must give the same data back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocket_server_sessions::store::{decode, SessionStore, StoreError};
use rango_fuzz::{block_on, cookie_store, seal};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

fuzz_target!(|bytes: &[u8]| {
    let store = cookie_store();
    let text = String::from_utf8_lossy(bytes);

    // 1. The raw cookie value: it cannot carry a valid tag, so nothing opens.
    let opened = block_on(store.load(&text)).expect("load never fails");
    assert!(opened.is_none(), "a forged cookie opened");

    // 2. The input as a sealed payload: it opens only as a live, well-typed session.
    let opened = block_on(store.load(&seal(&text))).expect("load never fails");
    if let Some(record) = opened {
        let payload: Value = serde_json::from_str(&text).expect("it opened, so it parsed");
        assert_eq!(payload["d"], Value::Object(record.data.clone()));
        assert_eq!(payload["v"].as_i64(), Some(record.version));
        assert!(record.expires > OffsetDateTime::now_utc() - Duration::seconds(5));
    }

    // 3. The input as session data: what is created loads back the same.
    let data = decode(&text);
    let expires = OffsetDateTime::now_utc() + Duration::hours(1);
    match block_on(store.create(&data, expires)) {
        Ok((id, version)) => {
            let record = block_on(store.load(&id))
                .expect("load never fails")
                .expect("a fresh session opens");
            assert_eq!(record.data, data);
            assert_eq!(record.version, version);
        }
        Err(StoreError::TooLarge(_)) => {}
        Err(e) => panic!("create failed: {e}"),
    }
});
