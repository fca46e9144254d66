//! What a store keeps for a session: its data, its expiry date and a version.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::SessionConfig;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// A session's data: string keys, JSON values.
pub type Data = Map<String, Value>;

/// The data key that holds a per-session expiry set with `Session::set_expiry`, as Django's
/// `_session_expiry`: an integer of seconds (0 = at browser close) or an RFC 3339 date.
pub const EXPIRY_KEY: &str = "_session_expiry";

/// The data key that names the user a session is signed in as (Django's `_auth_user_id`): a
/// string. Stores that list a user's sessions ([`UserIndex::user_sessions`]) index it.
///
/// [`UserIndex::user_sessions`]: crate::store::UserIndex::user_sessions
pub const USER_KEY: &str = "_auth_user_id";

/// The user `data` is signed in as: the string under [`USER_KEY`], if there is one.
pub fn user_of(data: &Data) -> Option<&str> {
    data.get(USER_KEY)
        .and_then(Value::as_str)
        .filter(|user| !user.is_empty())
}

/// `now + age`, held to the dates `time` can represent: an absurd age (a huge
/// `set_expiry` or a tampered `_session_expiry`) means "never" or "already", not a panic.
pub fn after(now: OffsetDateTime, age: Duration) -> OffsetDateTime {
    now.checked_add(age).unwrap_or(if age.is_positive() {
        // The last second of year 9999: far past any cookie or store expiry.
        OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap_or(now)
    } else {
        OffsetDateTime::UNIX_EPOCH
    })
}

/// `at` to the second, as every store keeps an expiry date.
pub fn whole_seconds(at: OffsetDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(at.unix_timestamp()).unwrap_or(at)
}

/// How deeply values may nest: JSON parsers (serde_json's included) refuse documents past 128
/// levels, so deeper data would be saved and then read back as a corrupt, empty session.
pub const MAX_DEPTH: usize = 100;

/// How deeply `data` nests (a flat map of scalars is 1).
pub fn depth(data: &Data) -> usize {
    fn value_depth(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
            Value::Object(map) => 1 + map.values().map(value_depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    1 + data.values().map(value_depth).max().unwrap_or(0)
}

/// A stored session.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The session's data, shared: a near cache hands the same decoded copy to every request
    /// that reads the session, and a request that writes it copies it first
    /// ([`Arc::make_mut`]). `Data::into()` makes one.
    pub data: Arc<Data>,
    /// When the store stops returning it.
    pub expires: OffsetDateTime,
    /// Bumped by every update; a save applies only over the version it read, so concurrent
    /// saves are merged rather than lost.
    pub version: i64,
}

/// The data encoded for storage: a JSON object.
pub fn encode(data: &Data) -> String {
    // A map of string keys and JSON values always serializes; the fallback is unreachable.
    serde_json::to_string(data).unwrap_or_else(|_| String::from("{}"))
}

/// The data decoded from storage. A record that is not a JSON object (corrupted, truncated,
/// written by something else) is logged and read as an empty session, never an error: Django's
/// "Session data corrupted" rule.
pub fn decode(text: &str) -> Data {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(data)) => data,
        Ok(_) => {
            log::warn!("session data corrupted (not a JSON object); starting an empty session");
            Data::new()
        }
        Err(e) => {
            log::warn!("session data corrupted ({e}); starting an empty session");
            Data::new()
        }
    }
}

/// When a session ends, as set per session with `Session::set_expiry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The configured policy: `cookie_age` and `expire_at_browser_close`.
    Default,
    /// When the browser closes (the server still keeps it `cookie_age` after the last save).
    BrowserClose,
    /// This long after the last save.
    Age(Duration),
    /// At this date, whenever it is saved.
    At(OffsetDateTime),
}

impl Record {
    /// The session's own expiry, as set with `Session::set_expiry`.
    pub fn expiry(&self) -> Expiry {
        Expiry::from_data(&self.data)
    }
}

impl Expiry {
    /// How long a session with this expiry lives after a save at `now` (Django's
    /// `get_expiry_age`): `config.cookie_age` unless the session sets its own.
    pub fn age(self, config: &SessionConfig, now: OffsetDateTime) -> Duration {
        match self {
            Expiry::Default | Expiry::BrowserClose => config.age(),
            Expiry::Age(age) => age,
            Expiry::At(date) => date - now,
        }
    }

    /// When a session with this expiry ends if saved at `now` (Django's `get_expiry_date`).
    pub fn date(self, config: &SessionConfig, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            Expiry::At(date) => date,
            _ => after(now, self.age(config, now)),
        }
    }

    /// Whether the cookie of a session with this expiry ends with the browser (Django's
    /// `get_expire_at_browser_close`): a session's own expiry overrides the setting.
    pub fn at_browser_close(self, config: &SessionConfig) -> bool {
        match self {
            Expiry::Default => config.expire_at_browser_close,
            Expiry::BrowserClose => true,
            Expiry::Age(_) | Expiry::At(_) => false,
        }
    }

    /// Whether an unchanged session stored until `stored_expires` is due for a sliding save at
    /// `now`: `sliding_expiry` is on, and less than half its age is left. A session that ends
    /// at a fixed date is never renewed.
    pub fn sliding_due(
        self,
        config: &SessionConfig,
        stored_expires: OffsetDateTime,
        now: OffsetDateTime,
    ) -> bool {
        if !config.sliding_expiry || matches!(self, Expiry::At(_)) {
            return false;
        }
        // Twice the time left, as a sum: `Duration * 2` goes through a 128-bit division.
        let left = stored_expires - now;
        left + left < self.age(config, now)
    }

    /// The expiry the data holds under [`EXPIRY_KEY`]; anything unreadable is `Default`.
    pub fn from_data(data: &Data) -> Expiry {
        match data.get(EXPIRY_KEY) {
            Some(Value::Number(n)) => match n.as_i64() {
                Some(0) => Expiry::BrowserClose,
                Some(seconds) => Expiry::Age(Duration::seconds(seconds)),
                None => Expiry::Default,
            },
            Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339)
                .map(Expiry::At)
                .unwrap_or(Expiry::Default),
            _ => Expiry::Default,
        }
    }

    /// The value stored under [`EXPIRY_KEY`], `None` for the default (the key is removed).
    pub fn to_value(self) -> Option<Value> {
        match self {
            Expiry::Default => None,
            Expiry::BrowserClose => Some(Value::from(0)),
            Expiry::Age(age) if age.whole_seconds() == 0 => Some(Value::from(-1)),
            Expiry::Age(age) => Some(Value::from(age.whole_seconds())),
            Expiry::At(date) => date.format(&Rfc3339).ok().map(Value::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_of_encode_is_identity() {
        let Value::Object(data) =
            json!({"visits": 3, "name": "é\"; x", "nested": {"a": [1, null]}})
        else {
            unreachable!()
        };
        assert_eq!(decode(&encode(&data)), data);
    }

    #[test]
    fn absurd_ages_give_a_date_not_a_panic() {
        let now = OffsetDateTime::now_utc();
        assert!(after(now, Duration::seconds(i64::MAX)) > now);
        assert_eq!(
            after(now, Duration::seconds(i64::MIN)),
            OffsetDateTime::UNIX_EPOCH
        );
        assert_eq!(
            after(now, Duration::seconds(10)),
            now + Duration::seconds(10)
        );
    }

    #[test]
    fn depth_counts_nesting() {
        let Value::Object(flat) = json!({"a": 1, "b": "x"}) else {
            unreachable!()
        };
        assert_eq!(depth(&flat), 1);
        let Value::Object(nested) = json!({"a": {"b": [1, [2]]}}) else {
            unreachable!()
        };
        assert_eq!(depth(&nested), 4);
        assert_eq!(depth(&Data::new()), 1);
    }

    #[test]
    fn corrupt_records_decode_as_empty() {
        for bad in ["", "{", "[1,2]", "42", "\"str\"", "null", "\u{0}\u{1}"] {
            assert!(decode(bad).is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn expiry_round_trips_through_the_data() {
        let date = OffsetDateTime::from_unix_timestamp(2_000_000_000).expect("valid");
        for expiry in [
            Expiry::BrowserClose,
            Expiry::Age(Duration::seconds(10)),
            Expiry::Age(Duration::seconds(-10)),
            Expiry::At(date),
        ] {
            let mut data = Data::new();
            data.insert(EXPIRY_KEY.into(), expiry.to_value().expect("a value"));
            assert_eq!(Expiry::from_data(&data), expiry);
        }
        assert_eq!(Expiry::Default.to_value(), None);
        assert_eq!(Expiry::from_data(&Data::new()), Expiry::Default);
    }
}
