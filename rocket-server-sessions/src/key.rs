//! Session keys: what the cookie of a server-side store holds.
//!
//! A key is 32 characters of `[a-z0-9]` drawn from the operating system's secure random source
//! (about 165 bits, as Django's `get_random_string(32, ...)`). Stores never keep the key itself:
//! they keep its SHA-256 digest, so a copied table or backup cannot be replayed as cookies
//! (OWASP CheatSheetSeries PR #2133: a plain hash is enough for a 128-bit+ random id).

use std::fmt;

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The characters a key is made of: lowercase only, as Django's (case-insensitive file systems).
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

const KEY_LEN: usize = SessionKey::LEN;

/// A well-formed session key.
///
/// It can only be made by [`SessionKey::generate`] or by [`SessionKey::parse`] of a well-formed
/// string, so holding one proves the value is safe to use in a store lookup.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionKey(String);

impl SessionKey {
    /// The length of a key in characters.
    pub const LEN: usize = 32;

    /// A new key from the OS's secure random source.
    pub fn generate() -> Self {
        // One read of the OS's source for the whole key, not one per character (a system call
        // each). A byte below 252 (7 × 36) picks a character uniformly; the rest are drawn again.
        const ZONE: u8 = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
        let mut key = String::with_capacity(KEY_LEN);
        let mut bytes = [0u8; KEY_LEN + KEY_LEN / 4];
        while key.len() < KEY_LEN {
            OsRng.fill_bytes(&mut bytes);
            key.extend(
                bytes
                    .iter()
                    .filter(|&&b| b < ZONE)
                    .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
                    .take(KEY_LEN - key.len()),
            );
        }
        SessionKey(key)
    }

    /// The key in `value` if it is well formed: exactly [`SessionKey::LEN`] characters of `[a-z0-9]`.
    ///
    /// Anything else (empty, too long, upper case, punctuation, non-ASCII) is `None`: such a
    /// cookie is ignored and never adopted.
    pub fn parse(value: &str) -> Option<Self> {
        let well_formed = value.len() == KEY_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        well_formed.then(|| SessionKey(value.to_owned()))
    }

    /// The key as the cookie carries it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SHA-256 digest of the key: what a store keeps in place of the key.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The digest in lowercase hex, for stores whose keys are text.
    pub fn digest_hex(&self) -> String {
        Self::hex(&self.digest())
    }

    /// `digest` in lowercase hex (for a store that has the digest already).
    pub fn hex(digest: &[u8; 32]) -> String {
        // A table lookup per nibble: `write!("{b:02x}")` per byte went through the formatting
        // machinery 32 times, a quarter of the instructions of a Redis session load.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for &b in digest {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        hex
    }

    /// The digest whose [`SessionKey::hex`] is `hex`, if it is one (64 lowercase hex digits).
    pub fn digest_of_hex(hex: &str) -> Option<[u8; 32]> {
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte = nibble(bytes[2 * i])? << 4 | nibble(bytes[2 * i + 1])?;
        }
        Some(digest)
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Keys are secrets: debug output shows only a prefix.
impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({}…)", &self.0[..4])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = SessionKey::generate();
        let b = SessionKey::generate();
        assert_eq!(SessionKey::parse(a.as_str()), Some(a.clone()));
        assert_eq!(a.as_str().len(), KEY_LEN);
        assert_ne!(a, b);
    }

    #[test]
    fn generated_keys_use_the_whole_alphabet() {
        let seen: std::collections::HashSet<u8> = (0..200)
            .flat_map(|_| SessionKey::generate().0.into_bytes())
            .collect();
        assert_eq!(seen.len(), ALPHABET.len());
    }

    #[test]
    fn malformed_values_are_rejected() {
        let long = "a".repeat(5000);
        for bad in [
            "",
            "1",
            "abcdefghijklmnopqrstuvwxyz01234",   // 31
            "abcdefghijklmnopqrstuvwxyz0123456", // 33
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
            "abcdefghijklmnopqrstuvwxyz01234;",
            "abcdefghijklmnopqrstuvwxyz01234é",
            "abcdefghijklmnopqrstuvwxyz01234\0",
            long.as_str(),
        ] {
            assert_eq!(SessionKey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn digest_is_sha256_of_the_key() {
        let key = SessionKey::parse("abcdefghijklmnopqrstuvwxyz012345").expect("valid");
        let hex = key.digest_hex();
        // printf abcdefghijklmnopqrstuvwxyz012345 | sha256sum
        assert_eq!(
            hex,
            "653bb1245e828fcda4fa53fcd5a3def5bd7654e651f54b4132b73d74e64435c4"
        );
    }

    #[test]
    fn hex_digests_read_back() {
        let key = SessionKey::generate();
        assert_eq!(
            SessionKey::digest_of_hex(&key.digest_hex()),
            Some(key.digest())
        );
        assert_eq!(SessionKey::digest_of_hex("ab"), None);
        assert_eq!(SessionKey::digest_of_hex(&"G".repeat(64)), None);
        assert_eq!(
            SessionKey::digest_of_hex(&"A".repeat(64)),
            None,
            "lowercase only"
        );
    }

    #[test]
    fn debug_does_not_leak_the_key() {
        let key = SessionKey::generate();
        assert!(!format!("{key:?}").contains(key.as_str()));
    }
}
