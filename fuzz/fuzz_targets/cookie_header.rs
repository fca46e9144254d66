//! A raw `Cookie:` header read as Rocket 0.5 reads it, then the `sessionid` it yields given to
//! `SessionKey::parse` and to the cookie store: no panic, and a key is adopted only if well
//! formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocket_server_sessions::store::{SessionKey, SessionStore};
use rango_fuzz::{block_on, cookie_store, is_well_formed_key, session_cookie_of_header};

fuzz_target!(|bytes: &[u8]| {
    // Rocket skips a Cookie header that is not UTF-8.
    let Ok(header) = std::str::from_utf8(bytes) else {
        return;
    };
    let Some(value) = session_cookie_of_header(header) else {
        return;
    };
    assert!(value.len() <= header.len(), "the value grew");
    match SessionKey::parse(&value) {
        Some(key) => assert!(is_well_formed_key(key.as_str())),
        None => assert!(!is_well_formed_key(&value)),
    }
    let opened = block_on(cookie_store().load(&value)).expect("load never fails");
    assert!(opened.is_none(), "a forged cookie opened");
});
