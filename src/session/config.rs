//! Session settings: `[default.session]` in Rocket.toml, overridable per profile and through
//! `ROCKET_SESSION='{...}'`. Every field has Django's default unless noted.

use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use rocket::http::SameSite;
use serde::{Deserialize, Serialize};
use time::Duration;

/// Which store keeps the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// A SQL database (Django's `backends.db`).
    Db,
    /// A cache such as Redis (Django's `backends.cache`).
    Cache,
    /// A cache in front of the database (Django's `backends.cached_db`).
    CachedDb,
    /// The data sealed in the cookie itself (Django's `backends.signed_cookies`).
    Cookie,
}

impl Backend {
    /// The name as Rocket.toml spells it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Db => "db",
            Backend::Cache => "cache",
            Backend::CachedDb => "cached_db",
            Backend::Cookie => "cookie",
        }
    }
}

/// The session settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Sessions on (default true). Off, every request gets an empty session that is never
    /// loaded or saved and no cookie is read or sent: the cost of a page without the session
    /// layer, for benchmarks and diagnosis.
    pub enabled: bool,
    /// The store: "db" (default), "cache", "cached_db" or "cookie".
    pub backend: Backend,
    /// The cookie's name (default "sessionid").
    pub cookie_name: String,
    /// Seconds a session lives after its last save, and the cookie's `Max-Age` (default 1209600,
    /// two weeks).
    pub cookie_age: u64,
    /// Cookies without `Max-Age`/`Expires`, which the browser drops when it closes (default
    /// false). The server still expires the session `cookie_age` after its last save.
    pub expire_at_browser_close: bool,
    /// The cookie's `Path` (default "/").
    pub cookie_path: String,
    /// The cookie's `Domain` (default none: a host-only cookie).
    pub cookie_domain: Option<String>,
    /// The cookie's `Secure` flag (default false; Rango's release profile turns it on).
    pub cookie_secure: bool,
    /// The cookie's `HttpOnly` flag (default true).
    pub cookie_http_only: bool,
    /// The cookie's `SameSite`: "Strict", "Lax" (default) or "None" (which requires
    /// `cookie_secure`).
    pub cookie_same_site: String,
    /// Save the session on every request, renewing its expiry (default false; Django's
    /// `SESSION_SAVE_EVERY_REQUEST`).
    pub save_every_request: bool,
    /// Save an unchanged session again once more than half its age has passed since its last
    /// save, so an active visitor keeps it at the price of at most two writes a lifetime
    /// (default false).
    pub sliding_expiry: bool,
    /// Seconds between two runs of the server's built-in reaper, which deletes expired
    /// sessions in the background as `rango clearsessions` does, in the same short batches
    /// (default none: no reaper; clear from cron instead). Not needed for stores that expire
    /// sessions by themselves (Redis, cookies).
    pub clear_expired_every: Option<u64>,
    /// The Redis server of the "cache" and "cached_db" backends (default
    /// "redis://127.0.0.1:6379/0").
    pub cache_url: String,
    /// Put before every session's Redis key, so several sites share one Redis database
    /// (default "rango:session:").
    pub cache_key_prefix: String,
    /// Milliseconds to wait for Redis to connect or answer before it counts as down (default
    /// 2000).
    pub cache_timeout_ms: u64,
    /// Keep recently loaded sessions in the process, so that loading an unchanged session costs
    /// no round trip (default true). Used by the "cache" and "cached_db" backends and by "db"
    /// on PostgreSQL, whose servers report every change to a session on a connection of its
    /// own (Redis's client tracking, PostgreSQL's `LISTEN`); a change made by another server
    /// is seen as soon as its report arrives, and every load asks the store again within a
    /// second of that connection dying. False: every load asks the store.
    pub near_cache: bool,
    /// How many sessions the near cache keeps at most, least recently used first out
    /// (default 10000).
    pub near_cache_size: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            enabled: true,
            backend: Backend::Db,
            cookie_name: "sessionid".into(),
            cookie_age: 1_209_600,
            expire_at_browser_close: false,
            cookie_path: "/".into(),
            cookie_domain: None,
            cookie_secure: false,
            cookie_http_only: true,
            cookie_same_site: "Lax".into(),
            save_every_request: false,
            sliding_expiry: false,
            clear_expired_every: None,
            cache_url: "redis://127.0.0.1:6379/0".into(),
            cache_key_prefix: "rango:session:".into(),
            cache_timeout_ms: 2000,
            near_cache: true,
            near_cache_size: 10_000,
        }
    }
}

/// A setting that cannot be used; the message names it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The settings do not parse (wrong type, unknown name).
    #[error("invalid [session] settings: {0}")]
    Parse(#[source] Box<rocket::figment::Error>),
    /// A setting parses but its value is not allowed.
    #[error("invalid setting session.{setting}: {reason}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// `url` with its password, if it has one, replaced by `***`: what may go into a log or an
/// error message (`redis://:secret@host` → `redis://:***@host`).
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The longest `clear_expired_every` accepted: a year.
const MAX_PERIOD: u64 = 365 * 24 * 60 * 60;

/// The largest `near_cache_size` accepted.
const MAX_NEAR_CACHE: usize = 10_000_000;

/// The largest `cookie_age` accepted: about 400 days, the longest a browser keeps a cookie
/// (RFC 6265bis section 5.5: user agents cap `Max-Age` at 400 days).
const MAX_COOKIE_AGE: u64 = 400 * 24 * 60 * 60;

impl SessionConfig {
    /// The settings in `figment`'s `session` table, over the defaults, validated.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first setting that is unknown, of the wrong type or not allowed.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let config: SessionConfig = Figment::from(Serialized::defaults(SessionConfig::default()))
            .merge(figment.focus("session"))
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value; the error names the first setting at fault.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a value that is not allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| {
            Err(ConfigError::Invalid {
                setting,
                reason: reason.to_owned(),
            })
        };
        // RFC 6265 section 4.1.1: a cookie name is an RFC 2616 token.
        let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
        if self.cookie_name.is_empty() || !self.cookie_name.chars().all(token) {
            return invalid(
                "cookie_name",
                "must be a non-empty token of visible ASCII characters without separators",
            );
        }
        if self.cookie_age == 0 || self.cookie_age > MAX_COOKIE_AGE {
            return invalid(
                "cookie_age",
                "must be between 1 and 34560000 seconds (400 days, what browsers keep)",
            );
        }
        if !self.cookie_path.starts_with('/') || self.cookie_path.contains(';') {
            return invalid("cookie_path", "must start with '/' and contain no ';'");
        }
        if let Some(domain) = &self.cookie_domain {
            let ok = !domain.is_empty()
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !ok {
                return invalid("cookie_domain", "must be a host name such as example.com");
            }
        }
        let uses_cache = matches!(self.backend, Backend::Cache | Backend::CachedDb);
        if uses_cache
            && !(self.cache_url.starts_with("redis://") || self.cache_url.starts_with("rediss://"))
        {
            return invalid("cache_url", "must be a redis:// or rediss:// URL");
        }
        if self.cache_timeout_ms == 0 {
            return invalid("cache_timeout_ms", "must be at least 1");
        }
        if self.near_cache_size == 0 || self.near_cache_size > MAX_NEAR_CACHE {
            return invalid(
                "near_cache_size",
                "must be between 1 and 10000000 (turn the cache off with near_cache = false)",
            );
        }
        match self.same_site() {
            None => {
                return invalid(
                    "cookie_same_site",
                    "must be \"Strict\", \"Lax\" or \"None\"",
                )
            }
            Some(SameSite::None) if !self.cookie_secure => {
                return invalid(
                    "cookie_same_site",
                    "\"None\" requires session.cookie_secure = true (browsers reject it otherwise)",
                )
            }
            Some(_) => {}
        }
        if matches!(self.clear_expired_every, Some(0))
            || self.clear_expired_every > Some(MAX_PERIOD)
        {
            return invalid(
                "clear_expired_every",
                "must be a number of seconds from 1 to 31536000 (a year; leave it out for no reaper)",
            );
        }
        Ok(())
    }

    /// `cookie_same_site` as Rocket's type, matched case-insensitively.
    pub fn same_site(&self) -> Option<SameSite> {
        match self.cookie_same_site.to_ascii_lowercase().as_str() {
            "strict" => Some(SameSite::Strict),
            "lax" => Some(SameSite::Lax),
            "none" => Some(SameSite::None),
            _ => None,
        }
    }

    /// `clear_expired_every` as a period, if the reaper is on.
    pub fn clear_expired_period(&self) -> Option<std::time::Duration> {
        self.clear_expired_every.map(std::time::Duration::from_secs)
    }

    /// `cache_timeout_ms` as a duration.
    pub fn cache_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.cache_timeout_ms)
    }

    /// How many sessions the near cache keeps, or `None` when it is off.
    pub fn near_cache_capacity(&self) -> Option<std::num::NonZeroUsize> {
        if self.near_cache {
            std::num::NonZeroUsize::new(self.near_cache_size)
        } else {
            None
        }
    }

    /// `cookie_age` as a duration.
    pub fn age(&self) -> Duration {
        // validate() caps the age far below i64::MAX seconds.
        Duration::seconds(i64::try_from(self.cookie_age).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(setting: &str, value: impl Serialize) -> Result<SessionConfig, ConfigError> {
        let figment =
            Figment::new().merge(Serialized::default(&format!("session.{setting}"), value));
        SessionConfig::from_figment(&figment)
    }

    fn error_for(setting: &str, value: impl Serialize) -> String {
        with(setting, value)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn missing_table_gives_djangos_defaults() {
        let config = SessionConfig::from_figment(&Figment::new()).expect("defaults are valid");
        assert_eq!(config, SessionConfig::default());
        assert_eq!(config.cookie_name, "sessionid");
        assert_eq!(config.cookie_age, 1_209_600);
        assert!(config.cookie_http_only && !config.cookie_secure);
        assert_eq!(config.same_site(), Some(SameSite::Lax));
    }

    #[test]
    fn values_override_the_defaults() {
        let config = with("cookie_age", 60).expect("valid");
        assert_eq!(config.cookie_age, 60);
        assert_eq!(
            with("backend", "cached_db").expect("valid").backend,
            Backend::CachedDb
        );
    }

    #[test]
    fn bad_values_name_their_setting() {
        assert!(error_for("cookie_age", 0).contains("session.cookie_age"));
        assert!(error_for("cookie_age", "soon").contains("cookie_age"));
        assert!(error_for("cookie_name", "").contains("session.cookie_name"));
        assert!(error_for("cookie_name", "a b").contains("session.cookie_name"));
        assert!(error_for("cookie_path", "rango").contains("session.cookie_path"));
        assert!(error_for("cookie_domain", "a;b").contains("session.cookie_domain"));
        assert!(error_for("cookie_same_site", "Loose").contains("session.cookie_same_site"));
        assert!(error_for("backend", "file").contains("backend"));
        assert!(error_for("cookie_agee", 5).contains("cookie_agee"));
        assert!(error_for("clear_expired_every", 0).contains("session.clear_expired_every"));
        assert!(error_for("clear_expired_every", u64::MAX).contains("clear_expired_every"));
        assert!(error_for("clear_expired_every", -5).contains("clear_expired_every"));
        assert!(error_for("near_cache_size", 0).contains("session.near_cache_size"));
        assert!(error_for("near_cache_size", 10_000_001).contains("session.near_cache_size"));
    }

    #[test]
    fn near_cache_is_on_by_default_and_can_be_turned_off() {
        let default = SessionConfig::default();
        assert_eq!(default.near_cache_capacity().map(|n| n.get()), Some(10_000));
        let off = with("near_cache", false).expect("valid");
        assert_eq!(off.near_cache_capacity(), None);
        let small = with("near_cache_size", 3).expect("valid");
        assert_eq!(small.near_cache_capacity().map(|n| n.get()), Some(3));
    }

    #[test]
    fn reaper_is_off_by_default_and_takes_seconds() {
        assert_eq!(SessionConfig::default().clear_expired_period(), None);
        let config = with("clear_expired_every", 3600).expect("valid");
        assert_eq!(
            config.clear_expired_period(),
            Some(std::time::Duration::from_secs(3600))
        );
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_password("redis://:pw@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_password("postgres://u:p@ss@db/x?sslmode=off"),
            "postgres://u:***@db/x?sslmode=off"
        );
        for unchanged in [
            "postgres://u@db/x",
            "sqlite://a.sqlite3?mode=rwc",
            "redis://h/0",
            "x",
        ] {
            assert_eq!(redact_password(unchanged), unchanged);
        }
    }

    #[test]
    fn same_site_none_requires_secure() {
        let message = error_for("cookie_same_site", "None");
        assert!(message.contains("cookie_secure"), "{message}");
        let figment = Figment::new()
            .merge(Serialized::default("session.cookie_same_site", "None"))
            .merge(Serialized::default("session.cookie_secure", true));
        assert!(SessionConfig::from_figment(&figment).is_ok());
    }
}
