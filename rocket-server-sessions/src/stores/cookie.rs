//! Sessions in the cookie itself (Django's `backends.signed_cookies`, but encrypted too).
//!
//! The session's data, expiry and version are sealed with AES-256-GCM under a key derived from
//! Rocket's `secret_key`, as Rocket's private cookies are (the `cookie` crate's private jar, with
//! the cookie's name bound in). Nothing is stored on the server, so this store cannot revoke a
//! session (a copied cookie stays valid until it expires), clear sessions server-side, or merge
//! the changes of concurrent requests (the last response's cookie wins).

use cookie::{Cookie, CookieJar, Key};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::record::{Data, Record};
use crate::store::{Census, ClearInBatches, Result, SessionStore, StoreError, Stored, UserIndex};

/// The most a browser keeps of one cookie's name and value (RFC 6265 section 6.1).
pub(crate) const MAX_COOKIE_BYTES: usize = 4096;

/// A store that seals sessions into their cookie.
pub struct CookieStore {
    key: Key,
    cookie_name: String,
}

impl std::fmt::Debug for CookieStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieStore")
            .field("cookie_name", &self.cookie_name)
            .finish_non_exhaustive()
    }
}

/// Why a secret key could not be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "secret_key must be 32 or 64 random bytes in base64 or hex, not all zeros \
     (e.g. `openssl rand -base64 32`)"
)]
pub struct BadSecretKey;

impl CookieStore {
    /// A store sealing with `secret_key` as Rocket's configuration gives it (32 or 64 bytes in
    /// base64 or hex), for cookies named `cookie_name`.
    ///
    /// # Errors
    /// [`BadSecretKey`] when the key does not decode to 32 or 64 bytes, or they are all zero.
    pub fn new(secret_key: &str, cookie_name: &str) -> Result<Self, BadSecretKey> {
        use base64::Engine;
        let bytes = decode_hex(secret_key)
            .or_else(|| {
                base64::engine::general_purpose::STANDARD
                    .decode(secret_key)
                    .ok()
            })
            .ok_or(BadSecretKey)?;
        // Rocket's example key, and what a template left unfilled holds.
        if bytes.iter().all(|&b| b == 0) {
            return Err(BadSecretKey);
        }
        // Rocket's rule: a 256-bit key is expanded, a 512-bit key used as it is.
        let key = match bytes.len() {
            32 => Key::derive_from(&bytes),
            64 => Key::try_from(bytes.as_slice()).map_err(|_| BadSecretKey)?,
            _ => return Err(BadSecretKey),
        };
        Ok(Self::with_key(key, cookie_name))
    }

    /// A store sealing with `key`.
    pub fn with_key(key: Key, cookie_name: &str) -> Self {
        CookieStore {
            key,
            cookie_name: cookie_name.to_owned(),
        }
    }

    /// A store sealing with Rocket's `secret_key` in `figment`, as Rocket does for private
    /// cookies: without one, a random key in the debug profile (sessions then do not survive a
    /// restart, and a warning says so), a refusal elsewhere.
    ///
    /// # Errors
    /// [`BuildError::Missing`](crate::BuildError::Missing) when the key is missing outside debug, or is not a valid key.
    pub fn from_figment(
        figment: &rocket::figment::Figment,
        cookie_name: &str,
    ) -> Result<Self, crate::fairing::BuildError> {
        use crate::fairing::BuildError;
        match figment.extract_inner::<String>("secret_key") {
            Ok(key) => {
                CookieStore::new(&key, cookie_name).map_err(|e| BuildError::Missing(e.to_string()))
            }
            Err(_) if figment.profile() == "debug" => {
                log::warn!(
                    "no secret_key: session cookies are sealed with a random key and will not \
                     open after a restart"
                );
                Ok(CookieStore::with_key(Key::generate(), cookie_name))
            }
            Err(_) => Err(BuildError::Missing(
                "secret_key must be set (e.g. `openssl rand -base64 32`)".into(),
            )),
        }
    }

    fn seal(&self, data: &Data, expires: OffsetDateTime, version: i64) -> Result<String> {
        let payload = json!({ "v": version, "e": expires.unix_timestamp(), "d": data }).to_string();
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key)
            .add(Cookie::new(self.cookie_name.clone(), payload));
        // The private jar writes standard base64; its URL-safe form needs no percent-encoding
        // in a cookie, so the value a browser (or a person) copies is the value the store reads.
        let sealed: String = jar
            .get(&self.cookie_name)
            .map(|c| c.value())
            .unwrap_or_default()
            .chars()
            .filter(|&c| c != '=')
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        let size = self.cookie_name.len() + 1 + sealed.len();
        if size > MAX_COOKIE_BYTES {
            return Err(StoreError::TooLarge(format!(
                "the sealed session cookie is {size} bytes; browsers keep at most \
                 {MAX_COOKIE_BYTES}. Store less in the session or use a server-side backend"
            )));
        }
        Ok(sealed)
    }

    fn open(&self, id: &str) -> Option<Record> {
        if id.len() > MAX_COOKIE_BYTES {
            return None;
        }
        let mut standard: String = id
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        while !standard.len().is_multiple_of(4) {
            standard.push('=');
        }
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(self.cookie_name.clone(), standard));
        let cookie = jar.private(&self.key).get(&self.cookie_name)?;
        let Ok(Value::Object(mut payload)) = serde_json::from_str::<Value>(cookie.value()) else {
            log::warn!("a session cookie opened but did not decode; starting an empty session");
            return None;
        };
        let version = payload.get("v")?.as_i64()?;
        let expires = OffsetDateTime::from_unix_timestamp(payload.get("e")?.as_i64()?).ok()?;
        let Some(Value::Object(data)) = payload.remove("d") else {
            return None;
        };
        (expires > OffsetDateTime::now_utc()).then_some(Record {
            data: data.into(),
            expires,
            version,
        })
    }
}

/// A 32- or 64-byte key written in hex (64 or 128 hex digits).
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !matches!(text.len(), 64 | 128) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[rocket::async_trait]
impl SessionStore for CookieStore {
    async fn load(&self, id: &str) -> Result<Option<Record>> {
        Ok(self.open(id))
    }

    async fn create(&self, data: &Data, expires: OffsetDateTime) -> Result<Stored> {
        Ok(Stored {
            id: self.seal(data, expires, 1)?,
            version: 1,
        })
    }

    async fn update(&self, _id: &str, record: &Record) -> Result<Option<Stored>> {
        let version = record.version + 1;
        Ok(Some(Stored {
            id: self.seal(&record.data, record.expires, version)?,
            version,
        }))
    }

    async fn delete(&self, _id: &str) -> Result<()> {
        // Nothing on the server: dropping the cookie is the deletion.
        Ok(())
    }

    async fn clear_expired(&self) -> Result<u64> {
        Ok(0)
    }

    fn expires_by_itself(&self) -> bool {
        true
    }

    // Sessions live only in their cookies: nothing to clear, count or list on the server.
    fn batches(&self) -> Option<&dyn ClearInBatches> {
        None
    }

    fn census(&self) -> Option<&dyn Census> {
        None
    }

    fn user_index(&self) -> Option<&dyn UserIndex> {
        None
    }

    async fn describe(&self) -> Result<String> {
        Ok("sealed in their cookies (nothing kept on the server)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_store() -> CookieStore {
        CookieStore::with_key(Key::generate(), "sessionid")
    }

    #[test]
    fn sealed_sessions_open_with_the_same_key_only() {
        let store = new_store();
        let mut data = Data::new();
        data.insert("visits".into(), json!(3));
        let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let sealed = store.seal(&data, expires, 1).expect("small");
        assert!(!sealed.contains("visits"), "encrypted, not only signed");
        let record = store.open(&sealed).expect("opens");
        assert_eq!(*record.data, data);
        assert_eq!(record.version, 1);
        assert!(
            new_store().open(&sealed).is_none(),
            "another key cannot open it"
        );
        let other_name = CookieStore {
            key: store.key.clone(),
            cookie_name: "other".into(),
        };
        assert!(
            other_name.open(&sealed).is_none(),
            "bound to the cookie name"
        );
    }

    #[test]
    fn tampered_or_expired_cookies_do_not_open() {
        let store = new_store();
        let data = Data::new();
        let sealed = store
            .seal(
                &data,
                OffsetDateTime::now_utc() + time::Duration::hours(1),
                1,
            )
            .expect("small");
        let mut tampered = sealed.clone().into_bytes();
        tampered[10] ^= 1;
        assert!(store.open(&String::from_utf8_lossy(&tampered)).is_none());
        let expired = store
            .seal(
                &data,
                OffsetDateTime::now_utc() - time::Duration::seconds(1),
                1,
            )
            .expect("small");
        assert!(store.open(&expired).is_none());
        for junk in ["", "x", "abcdefghijklmnopqrstuvwxyz012345"] {
            assert!(store.open(junk).is_none());
        }
    }

    #[test]
    fn a_session_too_big_for_a_cookie_is_an_error() {
        let store = new_store();
        let mut data = Data::new();
        data.insert("big".into(), json!("x".repeat(4000)));
        let error = store
            .seal(
                &data,
                OffsetDateTime::now_utc() + time::Duration::hours(1),
                1,
            )
            .expect_err("too large");
        assert!(matches!(error, StoreError::TooLarge(_)));
        assert!(error.to_string().contains("4096"), "{error}");
    }

    #[test]
    fn secret_keys_are_read_as_rocket_reads_them() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        assert!(CookieStore::new(&b64.encode([7u8; 32]), "s").is_ok());
        assert!(CookieStore::new(&b64.encode([7u8; 64]), "s").is_ok());
        assert!(CookieStore::new(&"ab".repeat(32), "s").is_ok());
        assert!(CookieStore::new("short", "s").is_err());
        assert!(CookieStore::new(&b64.encode([7u8; 16]), "s").is_err());
    }
}
