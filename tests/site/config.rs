//! Settings: Rocket.toml's profiles, environment overrides, and bad settings failing the launch.

use rango::rango::RangoConfig;
use rocket_server_sessions::SessionConfig;
use serde_json::{json, Value};
use tempfile::TempDir;

async fn launch_fails_with(settings: &[(&str, Value)]) -> bool {
    let dir = TempDir::new().expect("temp dir");
    match rango::rocket_with(crate::common::figment(&dir, settings))
        .ignite()
        .await
    {
        Ok(_) => false,
        Err(e) => matches!(e.kind(), rocket::error::ErrorKind::FailedFairings(_)),
    }
}

#[tokio::test]
async fn bad_session_settings_fail_the_launch() {
    for (setting, value) in [
        ("session.cookie_age", json!(0)),
        ("session.cookie_age", json!("two weeks")),
        ("session.cookie_name", json!("")),
        ("session.cookie_path", json!("rango")),
        ("session.cookie_same_site", json!("Sometimes")),
        ("session.cookie_same_site", json!("None")),
        ("session.backend", json!("file")),
        ("session.redis.timeout_ms", json!(0)),
        ("session.cookie_agee", json!(60)),
        ("session.cache_url", json!("redis://127.0.0.1:6379/0")),
        ("session.near_cache", json!(false)),
        ("session.near_cache.size", json!(0)),
        ("rango.visit_interval", json!(-1)),
        ("rango.visits_interval", json!(1)),
        ("session.cookie_name", json!("__Host-sessionid")),
        ("session.cookie_name", json!("__Secure-sessionid")),
        ("allowed_hosts", json!(["example.org:80"])),
        ("allowed_hosts", json!(["http://example.org"])),
        ("allowed_hosts", json!("example.org")),
        ("static_dir", json!("/no/such/directory")),
    ] {
        assert!(
            launch_fails_with(&[(setting, value.clone())]).await,
            "{setting} = {value}"
        );
    }
}

#[tokio::test]
async fn a_cache_url_that_is_not_redis_fails_the_launch() {
    assert!(
        launch_fails_with(&[
            ("session.backend", json!("cache")),
            ("session.redis.url", json!("http://127.0.0.1:6379")),
        ])
        .await
    );
}

#[tokio::test]
async fn a_cache_that_cannot_be_reached_fails_the_launch() {
    for backend in ["cache", "cached_db"] {
        assert!(
            launch_fails_with(&[
                ("session.backend", json!(backend)),
                ("session.redis.url", json!("redis://127.0.0.1:1/0")),
                ("session.redis.timeout_ms", json!(500)),
            ])
            .await,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn the_cookie_backend_needs_a_good_secret_key_outside_debug() {
    assert!(
        launch_fails_with(&[
            ("session.backend", json!("cookie")),
            ("secret_key", json!("short"))
        ])
        .await
    );
    assert!(
        !launch_fails_with(&[("session.backend", json!("cookie"))]).await,
        "debug: a random key"
    );
}

/// A weak `secret_key` stops the launch whatever the store: all zeros (Rocket's example, an
/// unfilled template), too short, not a key at all.
#[tokio::test]
async fn a_weak_secret_key_fails_the_launch_on_every_store() {
    let zeros = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let good = "8s7hHUY8nbpKs6oNQsnSVM2AvRWnnjl0m7d0bl8mr/c=";
    for backend in ["db", "cookie", "memory"] {
        for weak in [zeros, "0".repeat(64).as_str(), "short", "hello world"] {
            assert!(
                launch_fails_with(&[
                    ("session.backend", json!(backend)),
                    ("secret_key", json!(weak))
                ])
                .await,
                "{backend}: {weak}"
            );
        }
        assert!(
            !launch_fails_with(&[
                ("session.backend", json!(backend)),
                ("secret_key", json!(good))
            ])
            .await,
            "{backend}: a good key"
        );
    }
}

#[tokio::test]
async fn good_settings_launch() {
    assert!(!launch_fails_with(&[]).await);
    assert!(
        !launch_fails_with(&[
            ("session.cookie_same_site", json!("None")),
            ("session.cookie_secure", json!(true)),
        ])
        .await
    );
}

#[test]
fn setting_errors_name_the_setting() {
    let figment = crate::common::rocket_figment()
        .merge(("session.cookie_same_site", "None"))
        .merge(("session.cookie_secure", false));
    let message = SessionConfig::from_figment(&figment)
        .expect_err("refused")
        .to_string();
    assert!(message.contains("session.cookie_same_site"), "{message}");
    assert!(message.contains("cookie_secure"), "{message}");
}

#[test]
fn rocket_toml_profiles_and_environment_overrides() {
    let default = SessionConfig::from_figment(&crate::common::rocket_figment()).expect("valid");
    assert!(!default.expire_at_browser_close, "persistent by default");
    assert_eq!(default.cookie_age, 1_209_600);
    assert!(default.sliding_expiry, "Rango slides");
    assert!(!default.cookie_secure);
    let rango = RangoConfig::from_figment(&crate::common::rocket_figment()).expect("valid");
    assert_eq!(rango.visit_interval, 86_400);

    let browser_close = crate::common::rocket_figment().select("browser_close");
    let config = SessionConfig::from_figment(&browser_close).expect("valid");
    assert!(config.expire_at_browser_close);
    assert_eq!(config.cookie_age, 1_209_600);

    for (profile, backend, postgres) in [
        ("postgres", "db", true),
        ("redis", "cache", false),
        ("cached_db", "cached_db", true),
        ("cookie", "cookie", false),
    ] {
        let figment = crate::common::rocket_figment().select(profile);
        let config = SessionConfig::from_figment(&figment).expect("valid");
        assert_eq!(config.backend, backend, "{profile}");
        let url: String = figment
            .extract_inner("databases.rango.url")
            .expect("a database");
        assert_eq!(url.starts_with("postgres://"), postgres, "{profile}: {url}");
    }

    let release = crate::common::rocket_figment().select("release");
    assert!(
        SessionConfig::from_figment(&release)
            .expect("valid")
            .cookie_secure
    );

    let figment = crate::common::rocket_figment_with_env(&[
        (
            "ROCKET_SESSION",
            "{expire_at_browser_close=true,cookie_age=60}",
        ),
        ("ROCKET_RANGO", "{visit_interval=2}"),
    ]);
    let config = SessionConfig::from_figment(&figment).expect("valid");
    assert!(config.expire_at_browser_close);
    assert_eq!(config.cookie_age, 60);
    assert_eq!(
        config.cookie_name, "sessionid",
        "the rest of Rocket.toml stays"
    );
    let rango = RangoConfig::from_figment(&figment).expect("valid");
    assert_eq!(rango.visit_interval, 2);
}
