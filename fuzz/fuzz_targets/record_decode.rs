//! `decode` of any stored record: no panic, always an object; what it returns survives
//! `encode` then `decode`, and the expiry it holds survives `to_value` then `from_data`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocket_server_sessions::Expiry;
use rocket_server_sessions::store::{decode, encode, Data, EXPIRY_KEY};

fuzz_target!(|bytes: &[u8]| {
    let data = decode(&String::from_utf8_lossy(bytes));
    assert_eq!(
        decode(&encode(&data)),
        data,
        "encode then decode changed the data"
    );
    let expiry = Expiry::from_data(&data);
    let mut again = Data::new();
    if let Some(value) = expiry.to_value() {
        again.insert(EXPIRY_KEY.to_owned(), value);
    }
    assert_eq!(Expiry::from_data(&again), expiry, "the expiry changed");
});
