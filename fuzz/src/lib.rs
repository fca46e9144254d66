//! What the fuzz targets share: a runtime-free `block_on` for the cookie store (whose futures
//! never wait), the store under a fixed key, and Rocket's reading of a `Cookie:` header.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use cookie::{Cookie, CookieJar, Key};
use rocket_server_sessions::stores::CookieStore;
use rocket_server_sessions::store::SessionKey;

/// The cookie name the site uses.
pub const COOKIE_NAME: &str = "sessionid";

/// Runs a future that never waits on I/O to completion, without a runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// The fixed key the targets seal and open with (as `CookieStore::new` derives it from a
/// 32-byte `secret_key`).
pub fn key() -> Key {
    Key::derive_from(&[0x5a; 32])
}

/// The cookie store under [`key`].
pub fn cookie_store() -> CookieStore {
    CookieStore::with_key(key(), COOKIE_NAME)
}

/// `payload` sealed as the cookie store seals a session, whatever the payload: so the fuzzer
/// reaches the code behind the decryption, which it could never reach by guessing a tag.
pub fn seal(payload: &str) -> String {
    let mut jar = CookieJar::new();
    jar.private_mut(&key())
        .add(Cookie::new(COOKIE_NAME, payload.to_owned()));
    jar.get(COOKIE_NAME)
        .map(|c| c.value().to_owned())
        .unwrap_or_default()
}

/// The `sessionid` value Rocket 0.5's request guard sees for the raw `Cookie:` header `header`
/// (rocket `Request::from_hyp`): split on `;`, trim, percent-decode each pair with
/// `Cookie::parse_encoded`, drop what does not parse; the last pair of a name wins.
pub fn session_cookie_of_header(header: &str) -> Option<String> {
    let mut jar = CookieJar::new();
    for pair in header.split(';').map(str::trim) {
        if let Ok(cookie) = Cookie::parse_encoded(pair) {
            jar.add_original(cookie.into_owned());
        }
    }
    jar.get(COOKIE_NAME).map(|c| c.value().to_owned())
}

/// Exactly 32 characters of `[a-z0-9]`.
pub fn is_well_formed_key(s: &str) -> bool {
    s.len() == SessionKey::LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}
