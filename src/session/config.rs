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
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
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
