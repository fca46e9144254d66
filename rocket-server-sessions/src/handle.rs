//! The per-request session: its state and the typed handle handlers get. How it is saved at
//! the end of the request is `commit.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::config::SessionConfig;
use crate::record::{Data, Expiry, Record, EXPIRY_KEY};

/// The key and value Django's `set_test_cookie` stores.
const TEST_COOKIE_KEY: &str = "testcookie";
const TEST_COOKIE_VALUE: &str = "worked";

/// A session as one request sees it. Loaded once by the guard, read and changed by the handler,
/// saved by the fairing.
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    /// The request carried a cookie that named a live session: only a cookie this server
    /// issued is ever answered with a removal cookie.
    pub(crate) incoming: bool,
    /// The id of the stored session this request loaded; `None` for a new or flushed session.
    pub(crate) id: Option<String>,
    /// The stored version loaded; saves apply over it.
    pub(crate) version: i64,
    /// The stored expiry date loaded.
    pub(crate) stored_expires: Option<OffsetDateTime>,
    /// The data as this request sees it: the loaded copy, shared with the store's cache until
    /// this request first changes it.
    pub(crate) data: Arc<Data>,
    /// What this request changed: a value set, or `None` for a key removed.
    pub(crate) changes: BTreeMap<String, Option<Value>>,
    /// `clear` ran: a merge starts from an empty session, not from the stored data.
    pub(crate) cleared: bool,
    /// Something changed that needs a save.
    pub(crate) modified: bool,
    /// Stored sessions to delete (flushed).
    pub(crate) flushed: Vec<String>,
    /// The id `cycle_key` retired; deleted once the data is stored under a new key.
    pub(crate) cycled_from: Option<String>,
}

impl SessionState {
    /// The state for a request whose cookie value named the stored `record`, or for a new
    /// session.
    pub(crate) fn new(loaded: Option<(String, Record)>) -> Self {
        match loaded {
            // Every field named: `..Default::default()` would allocate an empty map only to
            // drop it.
            Some((id, record)) => SessionState {
                incoming: true,
                id: Some(id),
                version: record.version,
                stored_expires: Some(record.expires),
                data: record.data,
                changes: BTreeMap::new(),
                cleared: false,
                modified: false,
                flushed: Vec::new(),
                cycled_from: None,
            },
            None => SessionState::default(),
        }
    }

    pub(crate) fn set(&mut self, key: &str, value: Value) {
        // Writing an equal value is no change: no save, no write.
        if self.data.get(key) == Some(&value) {
            return;
        }
        Arc::make_mut(&mut self.data).insert(key.to_owned(), value.clone());
        self.changes.insert(key.to_owned(), Some(value));
        self.modified = true;
    }

    fn remove(&mut self, key: &str) -> Option<Value> {
        if !self.data.contains_key(key) {
            return None;
        }
        let old = Arc::make_mut(&mut self.data).remove(key)?;
        self.changes.insert(key.to_owned(), None);
        self.modified = true;
        Some(old)
    }

    fn clear(&mut self) {
        if !self.data.is_empty() {
            self.data = Arc::default();
            self.changes.clear();
            self.cleared = true;
            self.modified = true;
        }
    }

    pub(crate) fn flush(&mut self) {
        self.flushed.extend(self.id.take());
        self.flushed.extend(self.cycled_from.take());
        self.data = Arc::default();
        self.changes.clear();
        self.cleared = false;
        self.modified = false;
        self.version = 0;
        self.stored_expires = None;
    }

    pub(crate) fn cycle_key(&mut self) {
        if let Some(id) = self.id.take() {
            self.cycled_from = Some(id);
        }
    }

    pub(crate) fn expiry(&self) -> Expiry {
        Expiry::from_data(&self.data)
    }

    pub(crate) fn expiry_age(&self, config: &SessionConfig, now: OffsetDateTime) -> Duration {
        self.expiry().age(config, now)
    }

    pub(crate) fn expiry_date(
        &self,
        config: &SessionConfig,
        now: OffsetDateTime,
    ) -> OffsetDateTime {
        self.expiry().date(config, now)
    }

    pub(crate) fn expire_at_browser_close(&self, config: &SessionConfig) -> bool {
        self.expiry().at_browser_close(config)
    }

    /// An unchanged session is due for a sliding save once less than half its age is left.
    pub(crate) fn sliding_due(&self, config: &SessionConfig, now: OffsetDateTime) -> bool {
        config.sliding_expiry
            && self
                .stored_expires
                .is_some_and(|stored| self.expiry().sliding_due(config, stored, now))
    }

    /// The stored data with this request's changes applied over it.
    pub(crate) fn merge_into(&self, stored: Arc<Data>) -> Arc<Data> {
        let mut merged = if self.cleared {
            Data::new()
        } else {
            Arc::unwrap_or_clone(stored)
        };
        for (key, change) in &self.changes {
            match change {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        Arc::new(merged)
    }
}

/// The session of the current request, handed to handlers by its request guard.
///
/// Reads and writes are synchronous: the guard loaded the session (once per request), and the
/// fairing saves it after the handler, only if something changed. Values are any `serde` type,
/// stored as JSON.
///
/// ```rust,no_run
/// # use rocket_server_sessions::Session;
/// #[rocket::get("/count")]
/// fn count(session: Session<'_>) -> String {
///     let n: u64 = session.get("n").unwrap_or(0) + 1;
///     session.insert("n", n).ok();
///     n.to_string()
/// }
/// ```
pub struct Session<'r> {
    state: &'r Mutex<SessionState>,
    config: &'r SessionConfig,
}

impl<'r> Session<'r> {
    pub(crate) fn new(state: &'r Mutex<SessionState>, config: &'r SessionConfig) -> Self {
        Session { state, config }
    }

    fn state(&self) -> MutexGuard<'r, SessionState> {
        // No code panics while holding the lock; a poisoned one still holds consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value under `key` as a `T`; `None` when absent or not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        match T::deserialize(self.state().data.get(key)?) {
            Ok(value) => Some(value),
            Err(e) => {
                log::warn!("session value {key:?} is not of the type asked for: {e}");
                None
            }
        }
    }

    /// The raw JSON value under `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.state().data.get(key).cloned()
    }

    /// Stores `value` under `key`. Storing a value equal to the one there is no change.
    ///
    /// # Errors
    /// The value does not serialize to JSON (a map with non-string keys, say).
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), serde_json::Error> {
        let value = serde_json::to_value(value)?;
        self.state().set(key, value);
        Ok(())
    }

    /// Removes `key` and returns its value, if it was there.
    pub fn remove(&self, key: &str) -> Option<Value> {
        self.state().remove(key)
    }

    /// Removes `key` and returns its value as a `T`, if it was there and is one.
    pub fn remove_as<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.remove(key)
            .and_then(|value| serde_json::from_value(value).ok())
    }

    /// Whether `key` holds a value.
    pub fn contains(&self, key: &str) -> bool {
        self.state().data.contains_key(key)
    }

    /// The keys that hold values.
    pub fn keys(&self) -> Vec<String> {
        self.state().data.keys().cloned().collect()
    }

    /// Whether the session holds nothing.
    pub fn is_empty(&self) -> bool {
        self.state().data.is_empty()
    }

    /// Whether this request changed the session (it will be saved).
    pub fn is_modified(&self) -> bool {
        self.state().modified
    }

    /// Removes every value but keeps the session's key. An emptied session loses its stored
    /// record and cookie at the end of the request.
    pub fn clear(&self) {
        self.state().clear();
    }

    /// Ends the session (logout): deletes its data and stored record, drops its cookie, and
    /// starts a new, empty session that gets a fresh key if anything is stored in it.
    pub fn flush(&self) {
        self.state().flush();
    }

    /// Keeps the data under a new key and deletes the old record when the response is sent
    /// (call it on login, against session fixation). [`Session::key`] is `None` until then.
    pub fn cycle_key(&self) {
        self.state().cycle_key();
    }

    /// The key (cookie value) of the stored session; `None` for a session not stored yet.
    pub fn key(&self) -> Option<String> {
        self.state().id.clone()
    }

    /// What a store's user index names the stored session by (the digest of its key in hex,
    /// the [`UserSession::handle`](crate::store::UserSession::handle) of a listing): to tell
    /// which listed session is this one. `None` for a session not stored yet.
    pub fn handle(&self) -> Option<String> {
        let state = self.state();
        let key = crate::key::SessionKey::parse(state.id.as_deref()?)?;
        Some(key.digest_hex())
    }

    /// Sets when this session ends; [`Expiry::Default`] goes back to the configured policy.
    pub fn set_expiry(&self, expiry: Expiry) {
        let mut state = self.state();
        match expiry.to_value() {
            Some(value) => state.set(EXPIRY_KEY, value),
            None => {
                state.remove(EXPIRY_KEY);
            }
        }
    }

    /// When this session ends, as set with [`Session::set_expiry`].
    pub fn expiry(&self) -> Expiry {
        self.state().expiry()
    }

    /// How long the session lives after a save made now (Django's `get_expiry_age`).
    pub fn expiry_age(&self) -> Duration {
        self.state()
            .expiry_age(self.config, OffsetDateTime::now_utc())
    }

    /// When the session ends if saved now (Django's `get_expiry_date`).
    pub fn expiry_date(&self) -> OffsetDateTime {
        self.state()
            .expiry_date(self.config, OffsetDateTime::now_utc())
    }

    /// Whether the cookie ends with the browser (Django's `get_expire_at_browser_close`).
    pub fn expire_at_browser_close(&self) -> bool {
        self.state().expire_at_browser_close(self.config)
    }

    /// Stores a marker to check on the next request that the browser keeps cookies.
    pub fn set_test_cookie(&self) {
        self.state()
            .set(TEST_COOKIE_KEY, Value::from(TEST_COOKIE_VALUE));
    }

    /// Whether the marker of [`Session::set_test_cookie`] came back.
    pub fn test_cookie_worked(&self) -> bool {
        self.state().data.get(TEST_COOKIE_KEY) == Some(&Value::from(TEST_COOKIE_VALUE))
    }

    /// Removes the marker of [`Session::set_test_cookie`].
    pub fn delete_test_cookie(&self) {
        self.state().remove(TEST_COOKIE_KEY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn loaded(data: Value) -> SessionState {
        let Value::Object(data) = data else {
            unreachable!()
        };
        let record = Record {
            data: data.into(),
            expires: OffsetDateTime::now_utc() + Duration::hours(1),
            version: 1,
        };
        SessionState::new(Some(("k".into(), record)))
    }

    #[test]
    fn equal_writes_are_no_change() {
        let mut state = loaded(json!({"a": 1}));
        state.set("a", json!(1));
        assert!(!state.modified);
        state.set("a", json!(2));
        assert!(state.modified);
    }

    #[test]
    fn a_write_never_changes_the_shared_copy_it_loaded() {
        let Value::Object(data) = json!({"a": 1, "b": 2}) else {
            unreachable!()
        };
        let shared = Arc::new(data);
        let load = || {
            let record = Record {
                data: Arc::clone(&shared),
                expires: OffsetDateTime::now_utc() + Duration::hours(1),
                version: 1,
            };
            SessionState::new(Some(("k".into(), record)))
        };
        let mut set = load();
        set.set("a", json!(9));
        let mut removed = load();
        removed.remove("b");
        let mut cleared = load();
        cleared.clear();
        let mut flushed = load();
        flushed.flush();
        assert_eq!(Value::Object(Data::clone(&shared)), json!({"a": 1, "b": 2}));
        assert_eq!(set.data.get("a"), Some(&json!(9)));
        assert!(!removed.data.contains_key("b") && cleared.data.is_empty());
        assert!(Arc::ptr_eq(&load().data, &shared), "shared until written");
    }

    #[test]
    fn removing_a_missing_key_is_no_change() {
        let mut state = loaded(json!({"a": 1}));
        assert_eq!(state.remove("b"), None);
        assert!(!state.modified);
    }

    #[test]
    fn merge_applies_only_this_requests_changes() {
        let mut state = loaded(json!({"a": 1, "b": 1}));
        state.set("a", json!(2));
        state.remove("b");
        let Value::Object(stored) = json!({"a": 1, "b": 1, "c": 7}) else {
            unreachable!()
        };
        assert_eq!(
            Value::Object(Data::clone(&state.merge_into(stored.into()))),
            json!({"a": 2, "c": 7})
        );
    }

    #[test]
    fn merge_after_clear_starts_empty() {
        let mut state = loaded(json!({"a": 1}));
        state.clear();
        state.set("b", json!(2));
        let Value::Object(stored) = json!({"a": 1, "c": 7}) else {
            unreachable!()
        };
        assert_eq!(
            Value::Object(Data::clone(&state.merge_into(stored.into()))),
            json!({"b": 2})
        );
    }

    #[test]
    fn sliding_is_due_past_half_the_age() {
        let config = SessionConfig {
            sliding_expiry: true,
            cookie_age: 100,
            ..SessionConfig::default()
        };
        let now = OffsetDateTime::now_utc();
        let mut state = loaded(json!({"a": 1}));
        state.stored_expires = Some(now + Duration::seconds(60));
        assert!(!state.sliding_due(&config, now));
        state.stored_expires = Some(now + Duration::seconds(40));
        assert!(state.sliding_due(&config, now));
        let off = SessionConfig {
            sliding_expiry: false,
            ..config
        };
        assert!(!state.sliding_due(&off, now));
    }
}
