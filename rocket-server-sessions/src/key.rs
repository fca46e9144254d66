//! Session keys: what the cookie of a server-side store holds.
//!
//! A key is 41 characters of `[a-z0-9]`: the time it was made (milliseconds since 1970 in nine
//! base-36 digits) and 32 characters drawn from the operating system's secure random source
//! (about 165 bits, as Django's `get_random_string(32, ...)`). Stores never keep the key itself:
//! they keep a 32-byte id made from it ([`SessionKey::digest`]): the time in six bytes, then the
//! first 26 bytes of the key's SHA-256, so a copied table or backup cannot be replayed as cookies
//! (OWASP CheatSheetSeries PR #2133: a plain hash is enough for a 128-bit+ random id).
//!
//! Why the time: a store's index of sessions (SQLite's table, PostgreSQL's primary key) is a
//! B-tree ordered by that id. With ids in random order every new session lands on a random leaf
//! page, so a commit of 16 new sessions wrote 16 pages of 4 KB to SQLite's log; in time order
//! they land on the last leaf, and the same commit writes one or two (BENCHMARKS.md, item 16).
//!
//! Keys of 32 random characters, which earlier versions issued, are still accepted: their id is
//! their plain SHA-256, as it was, so sessions made before stay signed in.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The characters a key is made of: lowercase only, as Django's (case-insensitive file systems).
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Base-36 digits in their order, for the time at the head of a key (so keys sort by time too).
const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Digits of the time at a key's head: 36⁹ ms is 3,200 years, and less than 2⁴⁸.
const TIME_LEN: usize = 9;

/// Random characters after the time.
const RANDOM_LEN: usize = 32;

const KEY_LEN: usize = SessionKey::LEN;

/// A well-formed session key.
///
/// It can only be made by [`SessionKey::generate`] or by [`SessionKey::parse`] of a well-formed
/// string, so holding one proves the value is safe to use in a store lookup.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionKey(String);

impl SessionKey {
    /// The length of a key in characters.
    pub const LEN: usize = TIME_LEN + RANDOM_LEN;

    /// The length of the keys earlier versions issued (32 random characters), still accepted.
    pub const OLD_LEN: usize = RANDOM_LEN;

    /// A new key: the time now, then characters from the OS's secure random source.
    pub fn generate() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let mut key = String::with_capacity(KEY_LEN);
        let mut head = [b'0'; TIME_LEN];
        let mut rest = u64::try_from(millis).unwrap_or(u64::MAX) % 36u64.pow(TIME_LEN as u32);
        for digit in head.iter_mut().rev() {
            *digit = DIGITS[(rest % 36) as usize];
            rest /= 36;
        }
        key.extend(head.iter().map(|&d| char::from(d)));
        // One read of the OS's source for the whole key, not one per character (a system call
        // each). A byte below 252 (7 × 36) picks a character uniformly; the rest are drawn again.
        const ZONE: u8 = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
        let mut bytes = [0u8; RANDOM_LEN + RANDOM_LEN / 4];
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

    /// The key in `value` if it is well formed: [`SessionKey::LEN`] characters of `[a-z0-9]`
    /// (or [`SessionKey::OLD_LEN`], a key of an earlier version).
    ///
    /// Anything else (empty, too long, upper case, punctuation, non-ASCII) is `None`: such a
    /// cookie is ignored and never adopted.
    pub fn parse(value: &str) -> Option<Self> {
        well_formed(value).then(|| SessionKey(value.to_owned()))
    }

    /// The [`digest`](SessionKey::digest) of the key in `value` if it is well formed: `parse`
    /// then `digest`, without copying the key.
    pub fn digest_of(value: &str) -> Option<[u8; 32]> {
        well_formed(value).then(|| digest(value))
    }

    /// The key as the cookie carries it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id a store keeps in place of the key: the key's time in six bytes (big-endian
    /// milliseconds), then the first 26 bytes of its SHA-256. A key of an earlier version (no
    /// time) has its plain SHA-256, as it had.
    pub fn digest(&self) -> [u8; 32] {
        digest(&self.0)
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

/// Whether `value` is a key: [`SessionKey::LEN`] characters of `[a-z0-9]`, or
/// [`SessionKey::OLD_LEN`].
fn well_formed(value: &str) -> bool {
    (value.len() == KEY_LEN || value.len() == SessionKey::OLD_LEN)
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// [`SessionKey::digest`] of the well-formed key `key`.
fn digest(key: &str) -> [u8; 32] {
    let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    if key.len() == SessionKey::OLD_LEN {
        return hash;
    }
    // Nine base-36 digits (`parse` let in nothing else) are below 36⁹ < 2⁴⁸: six bytes.
    let millis = u64::from_str_radix(&key[..TIME_LEN], 36).unwrap_or(0);
    let mut id = [0u8; 32];
    id[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    id[6..].copy_from_slice(&hash[..26]);
    id
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
    fn the_digest_of_a_value_is_its_keys() {
        let key = SessionKey::generate();
        assert_eq!(SessionKey::digest_of(key.as_str()), Some(key.digest()));
        let old = "a".repeat(SessionKey::OLD_LEN);
        let parsed = SessionKey::parse(&old).expect("an old key");
        assert_eq!(SessionKey::digest_of(&old), Some(parsed.digest()));
        for bad in [
            "",
            "ABC",
            &key.as_str().to_uppercase(),
            &format!("{}x", key.as_str()),
        ] {
            assert_eq!(SessionKey::digest_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_begin_with_the_time_they_were_made() {
        let now = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_millis() as u64
        };
        let before = now();
        let key = SessionKey::generate();
        let after = now();
        let made = u64::from_str_radix(&key.as_str()[..TIME_LEN], 36).expect("base 36");
        assert!((before..=after).contains(&made), "{before} {made} {after}");
        let id = key.digest();
        assert_eq!(
            id[..6],
            made.to_be_bytes()[2..],
            "the id begins with the time"
        );
        let hash: [u8; 32] = Sha256::digest(key.as_str().as_bytes()).into();
        assert_eq!(id[6..], hash[..26], "then the head of the key's SHA-256");
    }

    #[test]
    fn ids_of_later_keys_sort_after() {
        let first = SessionKey::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = SessionKey::generate();
        assert!(first.digest()[..6] < second.digest()[..6]);
        assert!(first.as_str()[..TIME_LEN] < second.as_str()[..TIME_LEN]);
    }

    #[test]
    fn the_largest_time_fits_six_bytes() {
        let key = SessionKey::parse(&format!("{}{}", "z".repeat(9), "a".repeat(32))).expect("ok");
        let millis = 36u64.pow(TIME_LEN as u32) - 1;
        assert!(millis < 1 << 48);
        assert_eq!(key.digest()[..6], millis.to_be_bytes()[2..]);
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
            "abcdefghijklmnopqrstuvwxyz01234",            // 31
            "abcdefghijklmnopqrstuvwxyz0123456",          // 33
            "0000000000abcdefghijklmnopqrstuvwxyz0123",   // 40
            "000000000000abcdefghijklmnopqrstuvwxyz0123", // 42
            "000000000ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
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
    fn an_old_keys_digest_is_its_sha256() {
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
