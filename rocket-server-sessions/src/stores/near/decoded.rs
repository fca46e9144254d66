//! Decoded copies of the small sessions served lately: what a hit hands the request, so that
//! serving a session again neither parses its text nor builds and frees a map.
//!
//! The cache holds a small session as its JSON text (memory: `Held` in `mod.rs`); decoding it
//! on every hit was the largest part of a hit's cost (about 2,700 instructions a request for a
//! session of two keys, with the allocations of the map and the frees at the end of the
//! request). A copy here is the decoding of one held text, named by the session and kept with
//! that text: it is handed out only for the very text the cache has just served (the same
//! allocation, `Arc::ptr_eq`), so it is exactly what decoding that text again would give, and
//! it can be no staler than the cache, whose rules decide whether the text may be served at all.
//! A session changed since has a new text, and its old copy is never handed out again; the
//! least recently used copies go first.
//!
//! Gain: BENCHMARKS.md, "What each change bought", 18.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use schnellru::{ByLength, LruMap};

use super::cache::Name;
use crate::record::{decode, Data};

/// How many decoded copies are kept: the sessions in use at once on a busy server, and at most
/// [`DECODED_FROM`](super::DECODED_FROM) bytes of text each (a few KB decoded).
const COPIES: u32 = 1024;

/// Each session's text as the cache holds it, and its decoding.
type Copies = LruMap<Name, (Arc<str>, Arc<Data>), ByLength>;

/// The decoded copies, by session.
pub(crate) struct Decoded {
    copies: Mutex<Copies>,
}

impl Decoded {
    pub(crate) fn new() -> Self {
        Decoded {
            copies: Mutex::new(LruMap::new(ByLength::new(COPIES))),
        }
    }

    fn copies(&self) -> MutexGuard<'_, Copies> {
        // Nothing panics while holding it; if something did, the map is still whole.
        self.copies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The data `text` (the session `name`'s, as the cache holds it) decodes to: the copy kept
    /// of this very text, else decoded now and kept.
    pub(crate) fn of(&self, name: &Name, text: &Arc<str>) -> Arc<Data> {
        if let Some((kept, data)) = self.copies().get(name) {
            if Arc::ptr_eq(kept, text) {
                return Arc::clone(data);
            }
        }
        let data = Arc::new(decode(text));
        self.copies()
            .insert(*name, (Arc::clone(text), Arc::clone(&data)));
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_handed_out_for_its_own_text_only() {
        let decoded = Decoded::new();
        let name = [1; 32];
        let text: Arc<str> = Arc::from(r#"{"a":1}"#);
        let first = decoded.of(&name, &text);
        assert_eq!(first.get("a"), Some(&1.into()));
        assert!(Arc::ptr_eq(&first, &decoded.of(&name, &text)), "kept");
        // The same words in another text (the session saved again) are decoded again.
        let again: Arc<str> = Arc::from(r#"{"a":1}"#);
        let second = decoded.of(&name, &again);
        assert!(!Arc::ptr_eq(&first, &second));
        let changed: Arc<str> = Arc::from(r#"{"a":2}"#);
        assert_eq!(decoded.of(&name, &changed).get("a"), Some(&2.into()));
    }
}
