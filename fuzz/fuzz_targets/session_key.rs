//! `SessionKey::parse` of any cookie value: no panic, and it accepts exactly 32 characters of
//! `[a-z0-9]`, as they are.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocket_server_sessions::store::SessionKey;
use rango_fuzz::is_well_formed_key;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    match SessionKey::parse(&text) {
        Some(key) => {
            assert!(is_well_formed_key(&text), "adopted {text:?}");
            assert_eq!(key.as_str(), text);
            assert_eq!(key.digest_hex().len(), 64);
            assert!(!format!("{key:?}").contains(key.as_str()));
        }
        None => assert!(!is_well_formed_key(&text), "refused {text:?}"),
    }
});
