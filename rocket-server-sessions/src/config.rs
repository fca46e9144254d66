//! Session settings: `[default.session]` in Rocket.toml, overridable per profile and through
//! `ROCKET_SESSION='{...}'`. Every field has Django's default unless noted.
//!
//! [`SessionConfig`] holds what every store shares. A store's own settings are a table of their
//! own inside `session` (`[default.session.redis]`, say), read by that store's settings type
//! through [`store_settings`]; the session layer does not know them.

use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use rocket::http::SameSite;
use serde::{Deserialize, Serialize};
use time::Duration;

/// The session settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// Sessions on (default true). Off, every request gets an empty session that is never
    /// loaded or saved and no cookie is read or sent: the cost of a page without the session
    /// layer, for benchmarks and diagnosis.
    pub enabled: bool,
    /// The store, by the name the application's [`StoreFactory`](crate::StoreFactory) gives
    /// it (default "db").
    pub backend: String,
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
    /// The cookie's `Secure` flag (default false; turn it on wherever the site is served over
    /// HTTPS).
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
    /// sessions in the background as a `clearsessions` command would, in the same short batches
    /// (default none: no reaper; clear from cron instead). Not needed for stores that expire
    /// sessions by themselves (Redis, cookies).
    pub clear_expired_every: Option<u64>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            enabled: true,
            backend: "db".into(),
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
        /// The setting's name, within `session`.
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting nothing reads (a misspelling, say).
    #[error("unknown setting session.{0}")]
    Unknown(String),
}

impl ConfigError {
    /// A value of `setting` that is not allowed, for `reason`.
    pub fn invalid(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}

/// The settings of the store table `session.<table>` over `T`'s defaults, for a store's own
/// settings type (which should deny unknown fields, so that a misspelt one is an error).
///
/// # Errors
/// [`ConfigError::Parse`] naming the setting that is unknown or of the wrong type.
pub fn store_settings<T>(figment: &Figment, table: &str) -> Result<T, ConfigError>
where
    T: Serialize + serde::de::DeserializeOwned + Default,
{
    Figment::from(Serialized::defaults(T::default()))
        .merge(figment.focus(&format!("session.{table}")))
        .extract()
        .map_err(|e| ConfigError::Parse(Box::new(e)))
}

/// The longest `clear_expired_every` accepted: a year.
const MAX_PERIOD: u64 = 365 * 24 * 60 * 60;

/// The largest `cookie_age` accepted: about 400 days, the longest a browser keeps a cookie
/// (RFC 6265bis section 5.5: user agents cap `Max-Age` at 400 days).
const MAX_COOKIE_AGE: u64 = 400 * 24 * 60 * 60;

impl SessionConfig {
    /// The settings in `figment`'s `session` table, over the defaults, validated.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first setting that is unknown, of the wrong type or not allowed.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let table = figment.focus("session");
        Self::check_names(&table)?;
        let config: SessionConfig = Figment::from(Serialized::defaults(SessionConfig::default()))
            .merge(table)
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that every setting of the `session` table is one of these, or a table of a
    /// store's own settings.
    fn check_names(table: &Figment) -> Result<(), ConfigError> {
        use rocket::figment::value::{Dict, Value};
        // A table that is not one (a string, say) fails the extraction after this, by name.
        let Ok(given) = table.extract::<Dict>() else {
            return Ok(());
        };
        let known = match serde_json::to_value(SessionConfig::default()) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => serde_json::Map::new(),
        };
        for (name, value) in &given {
            if known.contains_key(name) || matches!(value, Value::Dict(..)) {
                continue;
            }
            return Err(ConfigError::Unknown(name.clone()));
        }
        Ok(())
    }

    /// Checks every value; the error names the first setting at fault.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a value that is not allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &str, reason: &str| Err(ConfigError::invalid(setting, reason));
        // RFC 6265 section 4.1.1: a cookie name is an RFC 2616 token.
        let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
        if self.cookie_name.is_empty() || !self.cookie_name.chars().all(token) {
            return invalid(
                "cookie_name",
                "must be a non-empty token of visible ASCII characters without separators",
            );
        }
        // RFC 6265bis section 4.1.3: browsers drop a prefixed cookie that breaks its prefix's
        // rules, silently; so a launch that would send one is refused. Browsers now match the
        // prefixes in any case.
        let lowercase_name = self.cookie_name.to_ascii_lowercase();
        if lowercase_name.starts_with("__host-")
            && (!self.cookie_secure || self.cookie_path != "/" || self.cookie_domain.is_some())
        {
            return invalid(
                "cookie_name",
                "a __Host- cookie requires session.cookie_secure = true, session.cookie_path = \"/\" \
                 and no session.cookie_domain (browsers drop it otherwise)",
            );
        }
        if lowercase_name.starts_with("__secure-") && !self.cookie_secure {
            return invalid(
                "cookie_name",
                "a __Secure- cookie requires session.cookie_secure = true (browsers drop it otherwise)",
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
            "cached_db"
        );
    }

    #[test]
    fn bad_values_name_their_setting() {
        assert!(error_for("cookie_age", 0).contains("session.cookie_age"));
        assert!(error_for("cookie_age", "soon").contains("cookie_age"));
        assert!(error_for("cookie_name", "").contains("session.cookie_name"));
        assert!(error_for("cookie_name", "a b").contains("session.cookie_name"));
        assert!(error_for("cookie_path", "site").contains("session.cookie_path"));
        assert!(error_for("cookie_domain", "a;b").contains("session.cookie_domain"));
        assert!(error_for("cookie_same_site", "Loose").contains("session.cookie_same_site"));
        assert!(error_for("backend", 5).contains("backend"));
        assert!(error_for("cookie_agee", 5).contains("cookie_agee"));
        assert!(error_for("clear_expired_every", 0).contains("session.clear_expired_every"));
        assert!(error_for("clear_expired_every", u64::MAX).contains("clear_expired_every"));
        assert!(error_for("clear_expired_every", -5).contains("clear_expired_every"));
    }

    #[test]
    fn unknown_settings_are_named() {
        assert_eq!(
            error_for("cache_url", "redis://127.0.0.1/0"),
            "unknown setting session.cache_url"
        );
        assert_eq!(
            error_for("cookie_agee", 5),
            "unknown setting session.cookie_agee"
        );
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Table {
        size: u32,
    }

    #[test]
    fn store_tables_are_left_to_their_store() {
        let figment = Figment::new().merge(Serialized::default("session.mine.size", 7));
        SessionConfig::from_figment(&figment).expect("a table is a store's");
        let table: Table = store_settings(&figment, "mine").expect("valid");
        assert_eq!(table, Table { size: 7 });
        assert_eq!(
            store_settings::<Table>(&Figment::new(), "mine").expect("defaults"),
            Table::default()
        );
        let bad = Figment::new().merge(Serialized::default("session.mine.sise", 7));
        let message = store_settings::<Table>(&bad, "mine")
            .expect_err("unknown")
            .to_string();
        assert!(message.contains("sise"), "{message}");
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
    fn prefixed_cookie_names_require_their_prefixes_rules() {
        let figment = |settings: &[(&str, serde_json::Value)]| {
            settings
                .iter()
                .fold(Figment::new(), |figment, (name, value)| {
                    figment.merge(Serialized::default(&format!("session.{name}"), value))
                })
        };
        let host = ("cookie_name", serde_json::json!("__Host-sessionid"));
        let secure = ("cookie_secure", serde_json::json!(true));
        for (settings, rule) in [
            (vec![host.clone()], "cookie_secure = true"),
            (
                vec![host.clone(), secure.clone(), ("cookie_path", "/t".into())],
                "cookie_path = \"/\"",
            ),
            (
                vec![
                    host.clone(),
                    secure.clone(),
                    ("cookie_domain", "example.com".into()),
                ],
                "no session.cookie_domain",
            ),
            (
                vec![("cookie_name", "__Secure-sessionid".into())],
                "cookie_secure = true",
            ),
            (
                vec![("cookie_name", "__host-sessionid".into())],
                "cookie_secure = true",
            ),
        ] {
            let message = SessionConfig::from_figment(&figment(&settings))
                .expect_err("must be refused")
                .to_string();
            assert!(
                message.contains("cookie_name") && message.contains(rule),
                "{message}"
            );
        }
        for settings in [
            vec![host, secure.clone()],
            vec![
                ("cookie_name", "__Secure-sessionid".into()),
                secure.clone(),
                ("cookie_path", "/t".into()),
            ],
            vec![("cookie_name", "host-sessionid".into())],
        ] {
            assert!(
                SessionConfig::from_figment(&figment(&settings)).is_ok(),
                "{settings:?}"
            );
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
