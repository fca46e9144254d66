//! Accounts through the local client: register, log in, log out, the restricted page, the
//! password change and "your sessions", their CSRF checks, on every session store (SQLite and
//! PostgreSQL tables, Redis, Redis in front of SQLite, sealed cookies).
//!
//! A [`Device`] is one browser: its own session cookie and `User-Agent` on a shared app, so
//! that two devices of one user can sign each other out.

use rocket::http::{ContentType, Cookie, Header, Status};
use rocket::local::asynchronous::LocalResponse;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::common::*;
use crate::services::{PgSchema, RedisPrefix};

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      Chrome/120.0.6099.71 Safari/537.36";
const FIREFOX: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";
const PASSWORD: &str = "correct horse battery";

/// What a test keeps alive beside its app: the database's directory, the services' schema or
/// prefix.
#[allow(dead_code)] // held for their Drop
struct Keep {
    dir: TempDir,
    service: Service,
}

#[allow(dead_code)] // held for their Drop
enum Service {
    Nothing,
    Schema(PgSchema),
    Prefix(RedisPrefix),
}

/// The site on one session store: SQLite's table, PostgreSQL's, Redis, Redis in front of
/// SQLite, sealed cookies. `None` for a service this run does not have (a failure under CI).
async fn site_on(store: &str) -> Option<(TestApp, Keep)> {
    site_with(store, &[]).await
}

/// [`site_on`] with `extra` settings.
async fn site_with(store: &str, extra: &[(&'static str, Value)]) -> Option<(TestApp, Keep)> {
    let dir = TempDir::new().expect("temp dir");
    let mut settings: Vec<(&str, Value)> = extra.to_vec();
    let mut service = Service::Nothing;
    match store {
        "sqlite" => {}
        "postgres" => {
            let schema = PgSchema::create("accounts on PostgreSQL").await?;
            settings.push(("databases.rango.url", json!(schema.url())));
            service = Service::Schema(schema);
        }
        "redis" | "cached_db" => {
            let prefix = RedisPrefix::create("accounts on Redis")?;
            let backend = if store == "redis" {
                "cache"
            } else {
                "cached_db"
            };
            settings.push(("session.backend", json!(backend)));
            settings.push((
                "session.redis",
                json!({"url": prefix.url, "key_prefix": prefix.prefix}),
            ));
            service = Service::Prefix(prefix);
        }
        "cookie" => {
            settings.push(("session.backend", json!("cookie")));
            settings.push((
                "secret_key",
                json!("hPrLE9UkbMmvNmOXpSZdFgXR4jWvVYiX1qk4oUCsXk0="),
            ));
        }
        other => panic!("no store {other}"),
    }
    let app = TestApp::on(figment(&dir, &settings)).await;
    Some((app, Keep { dir, service }))
}

/// Every store that lists a user's sessions.
const LISTING: [&str; 4] = ["sqlite", "postgres", "redis", "cached_db"];
/// And the one that does not.
const ALL: [&str; 5] = ["sqlite", "postgres", "redis", "cached_db", "cookie"];

/// A page as a device saw it.
struct Page {
    status: Status,
    location: Option<String>,
    body: String,
    set_cookie: bool,
    cache_control: Option<String>,
    /// The session cookie's `Max-Age`, when the response set one with it.
    max_age: Option<i64>,
    /// The `Retry-After` header, in seconds.
    retry_after: Option<u64>,
}

impl Page {
    /// The CSRF token in the page's first form.
    fn token(&self) -> String {
        csrf_token(&self.body)
    }

    /// Whether the page holds `text` (the page's `&#x2F;`, Tera's escape of `/`, read as `/`).
    fn has(&self, text: &str) -> bool {
        self.body.contains(text) || self.body.replace("&#x2F;", "/").contains(text)
    }
}

/// One browser on the app: its session cookie and its `User-Agent`.
struct Device<'a> {
    app: &'a TestApp,
    cookie: Option<String>,
    agent: &'static str,
    /// The address the requests come from (none by default, as Rocket's local client).
    remote: Option<std::net::SocketAddr>,
    /// An `X-Real-IP` header the requests carry, as a proxy would set it (or forge it).
    real_ip: Option<&'static str>,
}

impl<'a> Device<'a> {
    fn new(app: &'a TestApp, agent: &'static str) -> Self {
        Device {
            app,
            cookie: None,
            agent,
            remote: None,
            real_ip: None,
        }
    }

    /// Requests from `remote`, with `X-Real-IP: real_ip` if given.
    fn from(mut self, remote: &str, real_ip: Option<&'static str>) -> Self {
        self.remote = Some(remote.parse().expect("an address and port"));
        self.real_ip = real_ip;
        self
    }

    /// Where the requests come from, on `request`.
    fn placed<'c>(
        &self,
        mut request: rocket::local::asynchronous::LocalRequest<'c>,
    ) -> rocket::local::asynchronous::LocalRequest<'c> {
        if let Some(remote) = self.remote {
            request = request.remote(remote);
        }
        if let Some(ip) = self.real_ip {
            request = request.header(Header::new("X-Real-IP", ip));
        }
        request
    }

    async fn read(&mut self, response: LocalResponse<'_>) -> Page {
        let set = response
            .cookies()
            .get("sessionid")
            .map(|c| c.value().to_owned());
        let set_cookie = set.is_some();
        let max_age = response
            .cookies()
            .get("sessionid")
            .and_then(|c| c.max_age())
            .map(|age| age.whole_seconds());
        if let Some(value) = set {
            self.cookie = (!value.is_empty()).then_some(value);
        }
        Page {
            status: response.status(),
            location: response.headers().get_one("Location").map(str::to_owned),
            cache_control: response
                .headers()
                .get_one("Cache-Control")
                .map(str::to_owned),
            max_age,
            retry_after: response
                .headers()
                .get_one("Retry-After")
                .and_then(|value| value.parse().ok()),
            body: response.into_string().await.unwrap_or_default(),
            set_cookie,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let mut request = self
            .app
            .client
            .get(path.to_owned())
            .header(Header::new("User-Agent", self.agent));
        if let Some(cookie) = &self.cookie {
            request = request.cookie(Cookie::new("sessionid", cookie.clone()));
        }
        let response = self.placed(request).dispatch().await;
        self.read(response).await
    }

    /// Posts `fields` (form-encoded) to `path`.
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut request = self
            .app
            .client
            .post(path.to_owned())
            .header(ContentType::Form)
            .header(Header::new("User-Agent", self.agent))
            .body(form_body(fields));
        if let Some(cookie) = &self.cookie {
            request = request.cookie(Cookie::new("sessionid", cookie.clone()));
        }
        let response = self.placed(request).dispatch().await;
        self.read(response).await
    }

    /// Gets the form at `form_path`, then posts `fields` and its token to `action`.
    async fn submit(&mut self, form_path: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.get(form_path).await.token();
        let mut all = vec![("csrfmiddlewaretoken", token.as_str())];
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }

    async fn register(&mut self, username: &str, password: &str) -> Page {
        self.register_as(username, &format!("{username}@example.com"), password)
            .await
    }

    async fn register_as(&mut self, username: &str, email: &str, password: &str) -> Page {
        self.submit(
            "/rango/register/",
            "/rango/register/",
            &[
                ("username", username),
                ("email", email),
                ("password", password),
            ],
        )
        .await
    }

    async fn login(&mut self, username: &str, password: &str) -> Page {
        self.submit(
            "/rango/login/",
            "/rango/login/",
            &[("username", username), ("password", password)],
        )
        .await
    }

    /// Logs out with the form's token.
    async fn post_logout(&mut self) -> Page {
        self.submit("/rango/logout/", "/rango/logout/", &[]).await
    }

    /// Whether the device is signed in, by the restricted page.
    async fn signed_in(&mut self) -> bool {
        let page = self.get("/rango/restricted/").await;
        match page.status {
            Status::Ok => true,
            Status::SeeOther => false,
            other => panic!("restricted page: {other}"),
        }
    }
}

/// Whether the app's session store still holds the session `device` has the key of.
async fn stored(app: &TestApp, device: &Device<'_>) -> bool {
    let manager = app
        .client
        .rocket()
        .state::<rocket_server_sessions::SessionManager>()
        .expect("sessions attached");
    let key = device.cookie.as_deref().expect("a session key");
    manager
        .store()
        .load(key)
        .await
        .expect("the store answers")
        .is_some()
}

/// A device registered and signed in as `username`.
async fn signed_in_device<'a>(app: &'a TestApp, username: &str, agent: &'static str) -> Device<'a> {
    let mut device = Device::new(app, agent);
    // A second device of the user finds the name taken.
    let registered = device.register(username, PASSWORD).await;
    let page = device.login(username, PASSWORD).await;
    assert_eq!(
        page.status,
        Status::SeeOther,
        "login: {}\nafter registering: {} {}",
        page.body,
        registered.status,
        registered.body
    );
    device
}

/// The ids (the store's handles) of the rows of "your sessions" (in order), and that of "this
/// device".
fn listed_sessions(page: &Page) -> (Vec<String>, Option<String>) {
    let mut ids = Vec::new();
    let mut current = None;
    let table = page.body.split("</table>").next().unwrap_or_default();
    for row in table.split("<tr").skip(2) {
        if let Some(start) = row.find("/rango/sessions/") {
            let rest = &row[start + "/rango/sessions/".len()..];
            ids.push(rest[..rest.find('/').expect("an id")].to_owned());
        } else if row.contains("This device") {
            ids.push("this".into());
            current = Some(ids.len() - 1);
        }
    }
    (ids.clone(), current.map(|i| ids[i].clone()))
}

#[tokio::test]
async fn register_shows_each_problem_in_the_form_and_makes_the_user_once() {
    let Some((app, _keep)) = site_on("sqlite").await else {
        return;
    };
    let mut visitor = Device::new(&app, CHROME);
    let form = visitor.get("/rango/register/").await;
    assert_eq!(form.status, Status::Ok);
    for field in ["username", "email", "password"] {
        assert!(form.has(&format!("name=\"{field}\"")), "{field}");
    }
    let cases: [(&str, &str, &str, &str); 5] = [
        ("", "a@example.com", PASSWORD, "This field is required."),
        ("ann", "", PASSWORD, "This field is required."),
        ("ann", "a@example.com", "", "This field is required."),
        (
            "ann",
            "a@example.com",
            "short",
            "This password is too short",
        ),
        (
            "ann smith",
            "a@example.com",
            PASSWORD,
            "Enter a valid username",
        ),
    ];
    for (username, email, password, error) in cases {
        let page = visitor
            .submit(
                "/rango/register/",
                "/rango/register/",
                &[
                    ("username", username),
                    ("email", email),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(page.status, Status::Ok);
        assert!(
            page.has(error),
            "{username:?} {email:?} {password:?}: {}",
            page.body
        );
        assert!(page.has("id=\"user_form\""), "the form again");
    }
    let page = visitor.register("Ann", PASSWORD).await;
    assert!(page.has("thank you for registering"), "{}", page.body);
    assert!(page.has("href=\"/rango/login/\""));
    for taken in ["Ann", "ann", "ANN"] {
        let page = visitor.register(taken, PASSWORD).await;
        assert!(
            page.has("A user with that username already exists."),
            "{taken}"
        );
    }
    // Without a token: refused, no user made.
    let page = visitor
        .post(
            "/rango/register/",
            &[
                ("username", "bob"),
                ("email", "b@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, Status::Forbidden);
    assert!(page.has("CSRF verification failed"));
    assert!(visitor.register("bob", PASSWORD).await.has("thank you"));
    // The password is stored as an Argon2id hash.
    let stored: String =
        sqlx::query_scalar("SELECT password FROM users WHERE username_key = 'bob'")
            .fetch_one(app.pool())
            .await
            .expect("bob");
    assert!(stored.starts_with("$argon2id$") && !stored.contains(PASSWORD));
}

#[tokio::test]
async fn login_cycles_the_key_keeps_the_visits_and_goes_only_to_a_local_next() {
    for store in ALL {
        let Some((app, _keep)) = site_on(store).await else {
            continue;
        };
        let mut device = Device::new(&app, CHROME);
        device.register("ann", PASSWORD).await;
        let visits_before = visits(&device.get("/rango/").await.body);
        let before = device.cookie.clone().expect("a session");

        // Wrong password, unknown user: one message, a 200, no session change.
        for (username, password) in [("ann", "wrong password"), ("nobody", PASSWORD)] {
            let page = device.login(username, password).await;
            assert_eq!(page.status, Status::Ok, "{store}");
            assert!(page.has("Invalid login details"), "{store}: {}", page.body);
            assert!(
                !page.set_cookie,
                "{store}: a failed login changed the session"
            );
        }
        assert_eq!(device.cookie.as_deref(), Some(before.as_str()));

        let page = device.login("ANN", PASSWORD).await;
        assert_eq!(page.status, Status::SeeOther, "{store}");
        assert_eq!(page.location.as_deref(), Some("/rango/"), "{store}");
        let after = device.cookie.clone().expect("a session");
        assert_ne!(after, before, "{store}: the key was not cycled");
        let index = device.get("/rango/").await;
        assert_eq!(
            visits(&index.body),
            visits_before,
            "{store}: the visits went on"
        );
        assert!(index.has("id=\"nav-username\">ann<"), "{store}");
        // The old key opens nothing.
        let mut old = Device::new(&app, CHROME);
        old.cookie = Some(before);
        if store != "cookie" {
            assert!(
                !old.signed_in().await,
                "{store}: the key before login still works"
            );
        }
    }
}

#[tokio::test]
async fn next_is_followed_only_to_a_path_on_the_site() {
    let Some((app, _keep)) = site_on("sqlite").await else {
        return;
    };
    let mut device = Device::new(&app, CHROME);
    device.register("ann", PASSWORD).await;
    for (next, expected) in [
        ("/rango/about/", "/rango/about/"),
        ("/rango/restricted/?a=1", "/rango/restricted/?a=1"),
        ("//evil.example/", "/rango/"),
        ("https://evil.example/", "/rango/"),
        ("/\\evil.example/", "/rango/"),
        ("javascript:alert(1)", "/rango/"),
        ("rango/about/", "/rango/"),
        ("/rango/\n", "/rango/"),
        ("", "/rango/"),
    ] {
        let page = device
            .submit(
                "/rango/login/",
                "/rango/login/",
                &[("username", "ann"), ("password", PASSWORD), ("next", next)],
            )
            .await;
        assert_eq!(page.location.as_deref(), Some(expected), "{next:?}");
    }
    // The login page carries a local `next` into its form, and drops any other.
    let form = device.get("/rango/login/?next=%2Frango%2Fabout%2F").await;
    assert!(
        form.has("name=\"next\" value=\"/rango/about/\""),
        "{}",
        form.body
    );
    let form = device
        .get("/rango/login/?next=https%3A%2F%2Fevil.example%2F")
        .await;
    assert!(!form.has("name=\"next\""));
}

#[tokio::test]
async fn the_restricted_page_sends_visitors_to_login_and_back() {
    let Some((app, _keep)) = site_on("sqlite").await else {
        return;
    };
    let mut device = Device::new(&app, CHROME);
    let page = device.get("/rango/restricted/").await;
    assert_eq!(page.status, Status::SeeOther);
    assert_eq!(
        page.location.as_deref(),
        Some("/rango/login/?next=%2Frango%2Frestricted%2F")
    );
    let form = device
        .get(page.location.as_deref().expect("a location"))
        .await;
    assert!(form.has("name=\"next\" value=\"/rango/restricted/\""));
    device.register("ann", PASSWORD).await;
    let page = device
        .submit(
            "/rango/login/?next=%2Frango%2Frestricted%2F",
            "/rango/login/",
            &[
                ("username", "ann"),
                ("password", PASSWORD),
                ("next", "/rango/restricted/"),
            ],
        )
        .await;
    assert_eq!(page.location.as_deref(), Some("/rango/restricted/"));
    let page = device.get("/rango/restricted/").await;
    assert!(page.has("Since you're logged in, you can see this text!"));
    // The other signed-in pages too.
    for path in ["/rango/sessions/", "/rango/password/"] {
        assert_eq!(
            Device::new(&app, CHROME).get(path).await.status,
            Status::SeeOther
        );
        assert_eq!(device.get(path).await.status, Status::Ok, "{path}");
    }
}

#[tokio::test]
async fn logout_is_a_csrf_checked_post_that_flushes_the_session() {
    for store in ALL {
        let Some((app, _keep)) = site_on(store).await else {
            continue;
        };
        let mut device = signed_in_device(&app, "ann", CHROME).await;
        let signed_in_key = device.cookie.clone();
        // The navigation's button posts with a token; GET only shows a form.
        let page = device.get("/rango/logout/").await;
        assert!(page.has("id=\"logout\""));
        assert!(device.signed_in().await, "{store}: GET signed out");
        let refused = device.post("/rango/logout/", &[]).await;
        assert_eq!(refused.status, Status::Forbidden, "{store}");
        assert!(device.signed_in().await, "{store}");

        let token = device.get("/rango/").await.token();
        let page = device
            .post("/rango/logout/", &[("csrfmiddlewaretoken", &token)])
            .await;
        assert_eq!(page.status, Status::SeeOther, "{store}");
        assert_eq!(page.location.as_deref(), Some("/rango/"));
        assert!(!device.signed_in().await, "{store}: still signed in");
        let index = device.get("/rango/").await;
        assert!(index.has("id=\"nav-login\""), "{store}");
        if store != "cookie" {
            let mut old = Device::new(&app, CHROME);
            old.cookie = signed_in_key;
            assert!(
                !old.signed_in().await,
                "{store}: the old cookie still signs in"
            );
        }
    }
}

#[tokio::test]
async fn csrf_tokens_from_nowhere_or_another_session_change_nothing_and_rotate_on_login() {
    let Some((app, _keep)) = site_on("sqlite").await else {
        return;
    };
    let mut ann = Device::new(&app, CHROME);
    ann.register("ann", PASSWORD).await;
    let mut other = Device::new(&app, FIREFOX);
    let others_token = other.get("/rango/login/").await.token();
    let own_token = ann.get("/rango/login/").await.token();
    let before = ann.cookie.clone();
    for (case, token) in [
        ("missing", None),
        ("wrong", Some("x".repeat(64))),
        ("another session's", Some(others_token)),
    ] {
        let mut fields = vec![("username", "ann"), ("password", PASSWORD)];
        if let Some(token) = &token {
            fields.push(("csrfmiddlewaretoken", token));
        }
        let page = ann.post("/rango/login/", &fields).await;
        assert_eq!(page.status, Status::Forbidden, "{case}");
        assert!(page.has("CSRF verification failed"), "{case}");
        assert!(!page.set_cookie, "{case}");
        assert_eq!(ann.cookie, before);
        assert!(!ann.signed_in().await, "{case}: signed in");
    }
    // A browser with no session at all: refused, and given none.
    let mut stranger = Device::new(&app, FIREFOX);
    let rows = app.session_rows().await;
    for path in ["/rango/login/", "/rango/register/", "/rango/logout/"] {
        let page = stranger
            .post(path, &[("username", "ann"), ("password", PASSWORD)])
            .await;
        assert_eq!(page.status, Status::Forbidden, "{path}");
        assert!(
            page.has("CSRF session token missing"),
            "{path}: {}",
            page.body
        );
        assert!(!page.set_cookie, "{path}: a refused request got a session");
    }
    assert_eq!(
        app.session_rows().await,
        rows,
        "a refused request stored a session"
    );

    // The header works as the field does; login rotates the secret.
    let page = ann
        .post(
            "/rango/login/",
            &[("username", "ann"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, Status::Forbidden);
    let mut request = app
        .client
        .post("/rango/login/")
        .header(ContentType::Form)
        .header(Header::new("X-CSRFToken", own_token.clone()))
        .body(format!(
            "username=ann&password={}",
            PASSWORD.replace(' ', "+")
        ));
    request = request.cookie(Cookie::new(
        "sessionid",
        ann.cookie.clone().expect("a session"),
    ));
    let response = request.dispatch().await;
    let page = ann.read(response).await;
    assert_eq!(page.status, Status::SeeOther, "by the header");
    let token = own_token;
    let page = ann
        .post("/rango/logout/", &[("csrfmiddlewaretoken", &token)])
        .await;
    assert_eq!(page.status, Status::Forbidden, "a token from before login");
    assert!(ann.signed_in().await);
}

#[tokio::test]
async fn a_password_change_keeps_this_session_and_signs_out_the_others() {
    for store in ALL {
        let Some((app, _keep)) = site_on(store).await else {
            continue;
        };
        let mut laptop = signed_in_device(&app, "ann", CHROME).await;
        let mut phone = signed_in_device(&app, "ann", FIREFOX).await;
        let mut bob = signed_in_device(&app, "bob", FIREFOX).await;

        for (old, new1, new2, error) in [
            (
                "wrong",
                "new password 1",
                "new password 1",
                "Your old password was entered incorrectly",
            ),
            (PASSWORD, "new password 1", "new password 2", "didn’t match"),
            (PASSWORD, "short", "short", "This password is too short"),
        ] {
            let page = laptop
                .submit(
                    "/rango/password/",
                    "/rango/password/",
                    &[
                        ("old_password", old),
                        ("new_password1", new1),
                        ("new_password2", new2),
                    ],
                )
                .await;
            assert!(page.has(error), "{store}: {error}: {}", page.body);
        }
        assert!(
            phone.signed_in().await,
            "{store}: a refused change signed out"
        );

        let key = laptop.cookie.clone();
        let page = laptop
            .submit(
                "/rango/password/",
                "/rango/password/",
                &[
                    ("old_password", PASSWORD),
                    ("new_password1", "a new password"),
                    ("new_password2", "a new password"),
                ],
            )
            .await;
        assert!(
            page.has("id=\"password-changed\""),
            "{store}: {}",
            page.body
        );
        if store != "cookie" {
            assert_ne!(laptop.cookie, key, "{store}: the key was not cycled");
        }
        if store != "cookie" {
            assert!(
                !stored(&app, &phone).await,
                "{store}: the phone's session is still stored"
            );
            assert!(stored(&app, &bob).await, "{store}");
        }
        assert!(
            laptop.signed_in().await,
            "{store}: this session was signed out"
        );
        assert!(
            !phone.signed_in().await,
            "{store}: the other session is still signed in"
        );
        assert!(
            bob.signed_in().await,
            "{store}: another user was signed out"
        );
        let mut fresh = Device::new(&app, CHROME);
        assert!(fresh
            .login("ann", PASSWORD)
            .await
            .has("Invalid login details"));
        assert_eq!(
            fresh.login("ann", "a new password").await.status,
            Status::SeeOther
        );
    }
}

#[tokio::test]
async fn your_sessions_lists_this_users_devices_and_ends_one_or_all_others() {
    for store in LISTING {
        let Some((app, _keep)) = site_on(store).await else {
            continue;
        };
        let mut laptop = signed_in_device(&app, "ann", CHROME).await;
        let mut phone = signed_in_device(&app, "ann", FIREFOX).await;
        let mut tablet = signed_in_device(&app, "ann", FIREFOX).await;
        let mut bob = signed_in_device(&app, "bob", CHROME).await;
        let mut visitor = Device::new(&app, CHROME);
        visitor.get("/rango/").await;

        let page = laptop.get("/rango/sessions/").await;
        assert_eq!(page.status, Status::Ok, "{store}");
        let (ids, current) = listed_sessions(&page);
        assert_eq!(ids.len(), 3, "{store}: {ids:?}\n{}", page.body);
        assert_eq!(
            ids[2], "this",
            "{store}: the laptop signed in first, listed last"
        );
        assert_eq!(current.as_deref(), Some("this"));
        assert!(page.has("Chrome 120") && page.has("Firefox 121") && page.has("Linux"));
        // No session key on the page, anyone's.
        for device in [&laptop, &phone, &tablet, &bob, &visitor] {
            let key = device.cookie.as_deref().expect("a key");
            assert!(!page.has(key), "{store}: a session key on the page");
        }
        let token = page.token();

        // Forged ids, another user's, and the id in another form: not found, nothing ended.
        let bobs_page = bob.get("/rango/sessions/").await;
        let bob_id = listed_sessions(&bobs_page).0;
        assert_eq!(bob_id, ["this"]);
        let bobs_public = {
            // Bob's own id is not a link on his page (it is "this device"): read it from the
            // store through ann's view of a second bob device.
            let mut bob2 = signed_in_device(&app, "bob", FIREFOX).await;
            let page = bob2.get("/rango/sessions/").await;
            let ids = listed_sessions(&page).0;
            ids.into_iter()
                .find(|id| id != "this")
                .expect("bob's first device")
        };
        for forged in [
            "AAAAAAAAAAAAAAAAAAAAAA".to_owned(),
            bobs_public.clone(),
            laptop.cookie.clone().expect("a key"),
            "..".into(),
        ] {
            let path = format!("/rango/sessions/{forged}/end/");
            let page = laptop.post(&path, &[("csrfmiddlewaretoken", &token)]).await;
            assert_eq!(page.status, Status::NotFound, "{store}: {forged}");
        }
        assert!(bob.signed_in().await && phone.signed_in().await && tablet.signed_in().await);
        // Without a token: refused.
        let path = format!("/rango/sessions/{}/end/", ids[0]);
        assert_eq!(laptop.post(&path, &[]).await.status, Status::Forbidden);
        assert!(tablet.signed_in().await, "{store}");

        // Ending the newest (the tablet) signs it out, and only it.
        let page = laptop.post(&path, &[("csrfmiddlewaretoken", &token)]).await;
        assert_eq!(
            page.location.as_deref(),
            Some("/rango/sessions/"),
            "{store}"
        );
        assert!(
            !stored(&app, &tablet).await,
            "{store}: the tablet's session is still stored"
        );
        assert!(
            !tablet.signed_in().await,
            "{store}: the tablet is still signed in"
        );
        assert!(tablet.get("/rango/login/").await.status == Status::Ok);
        assert!(
            phone.signed_in().await && laptop.signed_in().await,
            "{store}"
        );
        let (ids, _) = listed_sessions(&laptop.get("/rango/sessions/").await);
        assert_eq!(ids.len(), 2, "{store}: {ids:?}");

        // Sign out all others: the phone goes, the laptop and bob stay.
        let page = laptop.get("/rango/sessions/").await;
        let page = laptop
            .post(
                "/rango/sessions/end-others/",
                &[("csrfmiddlewaretoken", &page.token())],
            )
            .await;
        assert_eq!(
            page.location.as_deref(),
            Some("/rango/sessions/"),
            "{store}"
        );
        assert!(
            !stored(&app, &phone).await,
            "{store}: the phone's session is still stored"
        );
        assert!(
            !phone.signed_in().await,
            "{store}: the phone is still signed in"
        );
        assert!(
            laptop.signed_in().await,
            "{store}: this device was signed out"
        );
        assert!(bob.signed_in().await, "{store}");
        let (ids, _) = listed_sessions(&laptop.get("/rango/sessions/").await);
        assert_eq!(ids, ["this"], "{store}");
    }
}

#[tokio::test]
async fn the_cookie_store_cannot_list_but_signs_out_all_others_by_generation() {
    let Some((app, _keep)) = site_on("cookie").await else {
        return;
    };
    let mut laptop = signed_in_device(&app, "ann", CHROME).await;
    let mut phone = signed_in_device(&app, "ann", FIREFOX).await;
    let page = laptop.get("/rango/sessions/").await;
    assert!(page.has("id=\"not-listed\""), "{}", page.body);
    let page = laptop
        .post(
            "/rango/sessions/end-others/",
            &[("csrfmiddlewaretoken", &page.token())],
        )
        .await;
    assert_eq!(page.status, Status::SeeOther);
    assert!(!phone.signed_in().await, "the phone is still signed in");
    assert!(laptop.signed_in().await, "this device was signed out");
    // A copy of the phone's old cookie stays signed out too.
    let mut copy = Device::new(&app, FIREFOX);
    copy.cookie = phone.cookie.clone();
    assert!(!copy.signed_in().await);
}

#[tokio::test]
async fn the_navigation_shows_who_is_signed_in() {
    let Some((app, _keep)) = site_on("sqlite").await else {
        return;
    };
    let mut device = Device::new(&app, CHROME);
    for path in ["/rango/", "/rango/about/"] {
        let page = device.get(path).await;
        assert!(
            page.has("id=\"nav-register\"") && page.has("id=\"nav-login\""),
            "{path}"
        );
        assert!(!page.has("nav-logout"), "{path}");
    }
    device.register("ann", PASSWORD).await;
    device.login("ann", PASSWORD).await;
    for path in [
        "/rango/",
        "/rango/about/",
        "/rango/restricted/",
        "/rango/sessions/",
    ] {
        let page = device.get(path).await;
        assert!(page.has("id=\"nav-username\">ann<"), "{path}");
        assert!(
            page.has("id=\"nav-sessions\"") && page.has("id=\"nav-logout\""),
            "{path}"
        );
        assert!(!page.has("id=\"nav-login\""), "{path}");
    }
}

/// Django's `never_cache`: the accounts' pages whoever asks, and every page rendered for a
/// signed-in user, may not be kept by a browser or a proxy; a visitor's ordinary pages keep
/// what they had (nothing, or the session's `private`).
#[tokio::test]
async fn signed_in_pages_and_the_account_pages_are_never_cached() {
    const NEVER: &str = "max-age=0, no-cache, no-store, must-revalidate, private";
    for store in ALL {
        let Some((app, _keep)) = site_on(store).await else {
            continue;
        };
        let mut visitor = Device::new(&app, FIREFOX);
        for path in ["/rango/", "/rango/about/", "/rango/category/python/"] {
            let page = visitor.get(path).await;
            assert_ne!(page.cache_control.as_deref(), Some(NEVER), "{store} {path}");
        }
        for path in ["/rango/login/", "/rango/register/", "/rango/logout/"] {
            let page = visitor.get(path).await;
            assert_eq!(page.status, Status::Ok, "{store} {path}");
            assert_eq!(page.cache_control.as_deref(), Some(NEVER), "{store} {path}");
        }
        let mut device = signed_in_device(&app, "ann", CHROME).await;
        for path in [
            "/rango/",
            "/rango/about/",
            "/rango/category/python/",
            "/rango/restricted/",
            "/rango/password/",
            "/rango/sessions/",
            "/rango/logout/",
        ] {
            let page = device.get(path).await;
            assert_eq!(page.status, Status::Ok, "{store} {path}");
            assert_eq!(page.cache_control.as_deref(), Some(NEVER), "{store} {path}");
        }
        let token = device.get("/rango/about/").await.token();
        let page = device
            .post("/rango/logout/", &[("csrfmiddlewaretoken", &token)])
            .await;
        assert_eq!(page.status, Status::SeeOther, "{store}");
        assert_eq!(
            page.cache_control.as_deref(),
            Some(NEVER),
            "{store}: the logout"
        );
    }
}

/// E-mail addresses as Django's `EmailValidator` takes them: at most 254 characters, no control
/// character (an escape sequence in an address once reached the operator's terminal through
/// `rango user list`), a dot-atom or quoted local part, a domain of valid labels.
#[tokio::test]
async fn register_takes_only_valid_email_addresses() {
    let Some((app, _keep)) = site_on("sqlite").await else {
        return;
    };
    let long = format!("{}@example.com", "a".repeat(243));
    assert_eq!(long.len(), 255);
    let refused = [
        "ann",
        "ann@",
        "@example.com",
        "ann@example",
        "ann@-example.com",
        "ann@example.c",
        "ann..b@example.com",
        "ann b@example.com",
        "ann\u{1b}[2J@example.com",
        "ann@exa\u{7}mple.com",
        "ann@example.com\u{0}x",
        long.as_str(),
    ];
    for (i, email) in refused.iter().enumerate() {
        let mut device = Device::new(&app, CHROME);
        let username = format!("refused{i}");
        let page = device.register_as(&username, email, PASSWORD).await;
        assert_eq!(page.status, Status::Ok, "{email:?}");
        assert!(
            page.has("Enter a valid email address.")
                || page.has("Ensure this value has at most 254 characters."),
            "{email:?}: {}",
            page.body
        );
    }
    let taken = [
        "ann@example.com",
        "first.last+tag@mail.example.co.uk",
        "\"john doe\"@example.com",
        "ann@localhost",
        "ann@[127.0.0.1]",
        "ann@bücher.example",
        format!("{}@example.com", "a".repeat(242)).leak(),
    ];
    for (i, email) in taken.iter().enumerate() {
        let mut device = Device::new(&app, CHROME);
        let username = format!("taken{i}");
        let page = device.register_as(&username, email, PASSWORD).await;
        assert!(!page.has("Enter a valid email address."), "{email:?}");
    }
    for (prefix, made) in [("refused", 0), ("taken", taken.len())] {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE username LIKE $1")
            .bind(format!("{prefix}%"))
            .fetch_one(app.pool())
            .await
            .expect("count");
        assert_eq!(count, made as i64, "{prefix}");
    }
}

/// An absolute lifetime for sign-ins (`rango.sign_in_lifetime`): however active, a session
/// signed in longer ago is signed out, on every store; on the cookie store a copy of the cookie
/// taken while signed in is worth nothing after it too.
#[tokio::test]
async fn a_sign_in_ends_after_its_lifetime_however_active_on_every_store() {
    let mut sites = Vec::new();
    for store in ALL {
        if let Some(site) = site_with(store, &[("rango.sign_in_lifetime", json!(2))]).await {
            sites.push((store, site));
        }
    }
    let mut devices = Vec::new();
    for (store, (app, _)) in &sites {
        let mut device = signed_in_device(app, "ann", CHROME).await;
        assert!(
            device.get("/rango/about/").await.has("nav-logout"),
            "{store}"
        );
        let copied = device.cookie.clone();
        devices.push((*store, device, copied));
    }
    // Active all along: a page every half second.
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        for (_, device, _) in &mut devices {
            device.get("/rango/about/").await;
        }
    }
    for (store, device, copied) in &mut devices {
        let page = device.get("/rango/restricted/").await;
        assert_eq!(page.status, Status::SeeOther, "{store}: sent to log in");
        assert!(
            !device.get("/rango/about/").await.has("nav-logout"),
            "{store}"
        );
        device.cookie = copied.clone();
        let page = device.get("/rango/about/").await;
        assert!(!page.has("nav-logout"), "{store}: the copied cookie");
    }
}

/// Django's password validation at registration and at a password change, the form saying
/// what failed: too short, too common, entirely numeric, too similar to the username or e-mail.
#[tokio::test]
async fn passwords_are_validated_as_django_does_and_the_form_says_why() {
    let Some((app, _keep)) = site_on("sqlite").await else {
        return;
    };
    let cases = [
        (
            "ann1",
            "ann1@example.com",
            "12345678",
            vec![
                "This password is too common.",
                "This password is entirely numeric.",
            ],
        ),
        (
            "ann2",
            "ann2@example.com",
            "97531864",
            vec!["This password is entirely numeric."],
        ),
        (
            "ann3",
            "ann3@example.com",
            "short",
            vec!["This password is too short."],
        ),
        (
            "ann4",
            "ann4@example.com",
            "iloveyou",
            vec!["This password is too common."],
        ),
        (
            "margaretta",
            "m@example.com",
            "margaretta1",
            vec!["The password is too similar to the username."],
        ),
        (
            "ann5",
            "ann.smith@example.com",
            "smithanns",
            vec!["The password is too similar to the email address."],
        ),
    ];
    for (username, email, password, messages) in cases {
        let mut device = Device::new(&app, CHROME);
        let page = device.register_as(username, email, password).await;
        assert_eq!(page.status, Status::Ok, "{password}");
        for message in messages {
            assert!(page.has(message), "{password}: {message}\n{}", page.body);
        }
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!(count, 0, "none registered");
    let mut device = signed_in_device(&app, "ann", CHROME).await;
    let page = device
        .submit(
            "/rango/password/",
            "/rango/password/",
            &[
                ("old_password", PASSWORD),
                ("new_password1", "password"),
                ("new_password2", "password"),
            ],
        )
        .await;
    assert_eq!(page.status, Status::Ok);
    assert!(page.has("This password is too common."), "{}", page.body);
}

/// "Remember me", chosen per login on every store: unticked, the session cookie has no
/// `Max-Age` (it ends with the browser); ticked, `cookie_age`.
#[tokio::test]
async fn remember_me_chooses_the_cookies_lifetime_per_login_on_every_store() {
    for store in ALL {
        let Some((app, _keep)) = site_on(store).await else {
            continue;
        };
        let mut device = Device::new(&app, CHROME);
        device.register("ann", PASSWORD).await;
        for (remember, max_age) in [(None, None), (Some("on"), Some(1_209_600))] {
            let mut fields = vec![("username", "ann"), ("password", PASSWORD)];
            fields.extend(remember.map(|on| ("remember", on)));
            let page = device
                .submit("/rango/login/", "/rango/login/", &fields)
                .await;
            assert_eq!(page.status, Status::SeeOther, "{store}");
            assert!(page.set_cookie, "{store}: a new key at login");
            assert_eq!(page.max_age, max_age, "{store}: remember = {remember:?}");
        }
    }
}

/// The book's add_category (chapters 7 and 9): visitors are sent to log in and back; a signed-in
/// user adds a category whose slug Django's `slugify` makes, sees it on the index at once and
/// has its page; an empty, too long, letterless or taken name (in any case) is shown in the
/// form, and nothing is added.
#[tokio::test]
async fn signed_in_users_add_categories_with_djangos_slugs_and_the_form_says_why_not() {
    let Some((app, _keep)) = site_on("sqlite").await else {
        return;
    };
    let mut visitor = Device::new(&app, FIREFOX);
    let page = visitor.get("/rango/add_category/").await;
    assert_eq!(page.status, Status::SeeOther);
    assert_eq!(
        page.location.as_deref(),
        Some("/rango/login/?next=%2Frango%2Fadd_category%2F")
    );
    let mut device = signed_in_device(&app, "ann", CHROME).await;
    // The index is read once (its lists are kept for a second): the new category must show
    // at once all the same.
    assert!(!device.get("/rango/").await.has("Café au Lait"));
    let page = device
        .submit(
            "/rango/add_category/",
            "/rango/add_category/",
            &[("name", "  Café au Lait!  ")],
        )
        .await;
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/rango/"));
    let index = device.get("/rango/").await;
    assert!(
        index.has("href=\"/rango/category/cafe-au-lait/\""),
        "{}",
        index.body
    );
    let category = device.get("/rango/category/cafe-au-lait/").await;
    assert_eq!(category.status, Status::Ok);
    assert!(category.has("Café au Lait!"));
    let long = "x".repeat(129);
    for (name, message) in [
        ("", "This field is required."),
        ("   ", "This field is required."),
        (
            long.as_str(),
            "Ensure this value has at most 128 characters (it has 129).",
        ),
        ("!!! ???", "Enter a name with a letter or a digit in it."),
        ("PYTHON", "Category with this Name already exists."),
        ("café au lait", "Category with this Name already exists."),
    ] {
        let page = device
            .submit(
                "/rango/add_category/",
                "/rango/add_category/",
                &[("name", name)],
            )
            .await;
        assert_eq!(page.status, Status::Ok, "{name:?}");
        assert!(page.has(message), "{name:?}: {}", page.body);
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM category")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!(count, 4, "the three samples and the one added");
}

/// The book's add_page (chapter 7): signed-in users only, on a category that exists; a URL
/// without a scheme gets `http://`; only http and https URLs are taken (no `javascript:` or
/// `data:` link reaches a page), titles and URLs are bounded, a title is unique in its
/// category; errors are shown in the form, success goes back to the category's page.
#[tokio::test]
async fn signed_in_users_add_pages_with_http_urls_only() {
    let Some((app, _keep)) = site_on("sqlite").await else {
        return;
    };
    let form = "/rango/category/python/add_page/";
    let mut visitor = Device::new(&app, FIREFOX);
    let page = visitor.get(form).await;
    assert_eq!(page.status, Status::SeeOther);
    assert_eq!(
        page.location.as_deref(),
        Some("/rango/login/?next=%2Frango%2Fcategory%2Fpython%2Fadd_page%2F")
    );
    assert!(!visitor
        .get("/rango/category/python/")
        .await
        .has("id=\"add-page\""));
    let mut device = signed_in_device(&app, "ann", CHROME).await;
    assert!(device
        .get("/rango/category/python/")
        .await
        .has("id=\"add-page\""));
    assert_eq!(
        device.get("/rango/category/no-such/add_page/").await.status,
        Status::NotFound
    );
    let page = device
        .submit(
            form,
            form,
            &[
                ("title", " The Rust Book "),
                ("url", "doc.rust-lang.org/book/"),
            ],
        )
        .await;
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/rango/category/python/"));
    let category = device.get("/rango/category/python/").await;
    assert!(
        category.has("href=\"http://doc.rust-lang.org/book/\">The Rust Book<"),
        "{}",
        category.body
    );
    let long_title = "t".repeat(129);
    let long_url = format!("https://example.com/{}", "u".repeat(181));
    // 190 characters as typed, 250 once its spaces are percent-encoded (as stored).
    let spaced_url = format!("https://example.com/{}{}", "a ".repeat(30), "b".repeat(110));
    assert_eq!(spaced_url.chars().count(), 190);
    for (title, url, message) in [
        ("A", "javascript:alert(1)", "Enter a valid URL."),
        ("B", "JaVaScRiPt:alert(1)", "Enter a valid URL."),
        ("C", "java\tscript:alert(1)", "Enter a valid URL."),
        (
            "D",
            "data:text/html,<script>alert(1)</script>",
            "Enter a valid URL.",
        ),
        ("E", "ftp://example.com/file", "Enter a valid URL."),
        ("F", "http://", "Enter a valid URL."),
        ("G", "", "This field is required."),
        (
            "H",
            long_url.as_str(),
            "Ensure this value has at most 200 characters (it has 201).",
        ),
        (
            "I",
            spaced_url.as_str(),
            "Ensure this value has at most 200 characters (it has 250).",
        ),
        ("", "https://example.com/", "This field is required."),
        (
            long_title.as_str(),
            "https://example.com/",
            "Ensure this value has at most 128 characters (it has 129).",
        ),
        (
            "Official Python Tutorial",
            "https://example.com/",
            "Page with this Category and Title already exists.",
        ),
    ] {
        let page = device
            .submit(form, form, &[("title", title), ("url", url)])
            .await;
        assert_eq!(page.status, Status::Ok, "{title:?} {url:?}");
        assert!(page.has(message), "{title:?} {url:?}: {}", page.body);
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM page")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!(count, 9, "the eight samples and the one added");
}

/// The cap on sessions per user (`rango.max_sessions_per_user`), on every store that lists
/// sessions: a login beyond it ends the user's session that would end first (here the one
/// signed in first), "Your sessions" lists at most the cap even when more were made before
/// it, and a user's other sessions and other users are untouched. On the cookie store, which
/// cannot count, logins go on.
#[tokio::test]
async fn a_login_beyond_the_cap_ends_the_oldest_session_and_listing_is_bounded() {
    let cap = [("rango.max_sessions_per_user", json!(3))];
    let mut sites = Vec::new();
    for store in ALL {
        if let Some(site) = site_with(store, &cap).await {
            sites.push((store, site));
        }
    }
    // Three devices signed in a second apart, so that their expiry dates differ.
    let mut devices: Vec<Vec<Device<'_>>> = sites.iter().map(|_| Vec::new()).collect();
    for round in 0..3 {
        if round > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        }
        for ((_, (app, _)), list) in sites.iter().zip(&mut devices) {
            list.push(signed_in_device(app, "ann", CHROME).await);
        }
    }
    let mut bobs = Vec::new();
    for (_, (app, _)) in &sites {
        bobs.push(signed_in_device(app, "bob", FIREFOX).await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for (((store, (app, _)), list), bob) in sites.iter().zip(&mut devices).zip(&mut bobs) {
        let mut fourth = Device::new(app, FIREFOX);
        let page = fourth.login("ann", PASSWORD).await;
        assert_eq!(page.status, Status::SeeOther, "{store}");
        let listing = *store != "cookie";
        assert_eq!(
            list[0].signed_in().await,
            !listing,
            "{store}: the first device"
        );
        if listing {
            assert!(!stored(app, &list[0]).await, "{store}: deleted");
        }
        for device in &mut list[1..] {
            assert!(device.signed_in().await, "{store}");
        }
        assert!(fourth.signed_in().await, "{store}");
        assert!(bob.signed_in().await, "{store}: another user");
        if !listing {
            continue;
        }
        let page = fourth.get("/rango/sessions/").await;
        assert_eq!(listed_sessions(&page).0.len(), 3, "{store}: {}", page.body);

        // Sessions made before the cap (copies of a signed-in one, straight into the store):
        // the page still lists at most the cap.
        let manager = app
            .client
            .rocket()
            .state::<rocket_server_sessions::SessionManager>()
            .expect("sessions attached");
        let store_ = manager.store();
        let key = list[1].cookie.as_deref().expect("a key");
        let record = store_.load(key).await.expect("loads").expect("live");
        for _ in 0..4 {
            store_
                .create(&record.data, record.expires)
                .await
                .expect("creates");
        }
        let page = fourth.get("/rango/sessions/").await;
        assert_eq!(listed_sessions(&page).0.len(), 3, "{store}: bounded");
        // The next login brings the user under the cap again.
        let mut fifth = Device::new(app, CHROME);
        fifth.login("ann", PASSWORD).await;
        assert!(fifth.signed_in().await, "{store}");
        assert!(fourth.signed_in().await, "{store}: the latest stay");
        let index = store_.user_index().expect("an index");
        let user_key = record.data[rocket_server_sessions::USER_KEY]
            .as_str()
            .expect("a user")
            .to_owned();
        let all = index.user_sessions(&user_key, 100).await.expect("lists");
        assert_eq!(all.len(), 3, "{store}: at the cap after the login");
    }
}

/// Whether `page` is the throttle's answer: a 429 with a `Retry-After` within the window.
fn locked(page: &Page, window: u64) -> bool {
    page.status == Status::TooManyRequests
        && page
            .retry_after
            .is_some_and(|wait| (1..=window).contains(&wait))
        && page.has("Too many failed attempts")
}

/// Throttling by username, on every store (the counts live in the site's database, SQLite or
/// PostgreSQL, which every server shares): the 10th failure within the window answers 429
/// with `Retry-After`; while locked the right password is refused too, before it is checked;
/// another username is not locked; a success clears the count, and successes alone are never
/// limited.
#[tokio::test]
async fn failed_logins_lock_a_username_at_the_tenth_and_the_right_password_waits_too() {
    let mut sites = Vec::new();
    for store in ALL {
        if let Some(site) = site_on(store).await {
            sites.push((store, site));
        }
    }
    for (store, (app, _)) in &sites {
        let mut ann = signed_in_device(app, "ann", CHROME).await;
        signed_in_device(app, "bob", CHROME).await;
        ann.post_logout().await;
        // A success clears the count: 9 failures, a success, 9 more: never locked.
        for round in 0..2 {
            for i in 0..9 {
                let page = ann.login("ann", "wrong password").await;
                assert_eq!(page.status, Status::Ok, "{store}: round {round}, {i}");
                assert!(page.has("Invalid login details"), "{store}");
            }
            if round == 0 {
                let page = ann.login("ann", PASSWORD).await;
                assert_eq!(page.status, Status::SeeOther, "{store}");
                ann.post_logout().await;
            }
        }
        let page = ann.login("ANN", "wrong password").await;
        assert!(
            locked(&page, 900),
            "{store}: the 10th failure: {}",
            page.status
        );
        let page = ann.login("ann", PASSWORD).await;
        assert!(locked(&page, 900), "{store}: the right password, locked");
        assert!(!ann.signed_in().await, "{store}");
        // Another user, from the same client: not locked (the address allows 50).
        let mut bob = Device::new(app, FIREFOX);
        assert_eq!(
            bob.login("bob", PASSWORD).await.status,
            Status::SeeOther,
            "{store}"
        );
        // An unknown username locks the same way: a lock tells nothing of who exists.
        let mut guesser = Device::new(app, FIREFOX);
        for _ in 0..9 {
            guesser.login("nobody", "x").await;
        }
        assert!(locked(&guesser.login("nobody", "x").await, 900), "{store}");
    }
    // Many successful logins (one person, many devices) are never limited.
    let (_, (app, _)) = &sites[0];
    for i in 0..30 {
        let mut device = Device::new(app, CHROME);
        assert_eq!(
            device.login("bob", PASSWORD).await.status,
            Status::SeeOther,
            "login {i}"
        );
    }
}

/// The window slides: failures are counted over the last `throttle_window` seconds (4 s
/// here; times are whole seconds), and a lock ends when the oldest of the failures that made
/// it leaves the window, not before; then the right password goes through.
#[tokio::test]
async fn a_lock_lasts_until_its_oldest_failure_leaves_the_sliding_window() {
    let settings = [
        ("rango.throttle_window", json!(4)),
        ("rango.failures_per_user", json!(3)),
    ];
    let Some((app, _keep)) = site_with("sqlite", &settings).await else {
        return;
    };
    let mut ann = signed_in_device(&app, "ann", CHROME).await;
    ann.post_logout().await;
    let first = std::time::Instant::now();
    ann.login("ann", "wrong").await;
    ann.login("ann", "wrong").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let page = ann.login("ann", "wrong").await;
    assert!(locked(&page, 4), "3 within 4 s: {}", page.status);
    assert!(locked(&ann.login("ann", PASSWORD).await, 4));
    // The oldest failure leaves the window at most 5 s after it (whole seconds).
    tokio::time::sleep(std::time::Duration::from_millis(5100).saturating_sub(first.elapsed()))
        .await;
    assert_eq!(ann.login("ann", PASSWORD).await.status, Status::SeeOther);
}

/// Attempts in flight at once are counted before their passwords are checked, one at a time
/// per key on both databases (on PostgreSQL under the key's advisory lock): of twenty attempts
/// admitted at once, exactly ten get through, the rest are told how long to wait. Through HTTP,
/// of twenty concurrent wrong logins at most nine get a plain failure, the rest 429s.
#[tokio::test]
async fn concurrent_guesses_are_counted_before_they_are_checked() {
    for store in ["sqlite", "postgres"] {
        let Some((app, _keep)) = site_on(store).await else {
            continue;
        };
        let rocket = app.client.rocket();
        let db = <rango::db::Db as rocket_db_pools::Database>::fetch(rocket)
            .expect("the database")
            .pool();
        let config = rocket
            .state::<rango::rango::RangoConfig>()
            .expect("the site's settings");
        let keys = rango::accounts::throttle::Keys::of(
            config,
            Some("carol"),
            rango::accounts::throttle::ClientAddress(None),
        );
        let admitted = rocket::futures::future::join_all(
            (0..20).map(|_| rango::accounts::throttle::admit(db, config, &keys)),
        )
        .await;
        let through = admitted.iter().filter(|a| matches!(a, Ok(Ok(_)))).count();
        let waiting = admitted
            .iter()
            .filter(|a| matches!(a, Ok(Err(wait)) if (1..=900).contains(wait)))
            .count();
        assert_eq!((through, waiting), (10, 10), "{store}");

        signed_in_device(&app, "ann", CHROME).await;
        let pages = concurrent_logins(&app, 20, "wrong password").await;
        let checked = pages
            .iter()
            .filter(|page| page.has("Invalid login details"))
            .count();
        let refused = pages.iter().filter(|page| locked(page, 900)).count();
        assert_eq!(checked + refused, 20, "{store}: 200 or 429, nothing else");
        assert!(checked <= 9, "{store}: {checked} plain failures");
    }
}

/// `n` logins as ann with `password`, each from a device of its own, sent at once.
async fn concurrent_logins(app: &TestApp, n: usize, password: &str) -> Vec<Page> {
    let mut devices = Vec::new();
    for _ in 0..n {
        let mut device = Device::new(app, CHROME);
        let token = device.get("/rango/login/").await.token();
        devices.push((device, token));
    }
    rocket::futures::future::join_all(devices.iter_mut().map(|(device, token)| {
        let token = token.clone();
        async move {
            device
                .post(
                    "/rango/login/",
                    &[
                        ("csrfmiddlewaretoken", &token),
                        ("username", "ann"),
                        ("password", password),
                    ],
                )
                .await
        }
    }))
    .await
}

/// Throttling by client address: failures for many usernames from one address lock it; the
/// address is the connection's peer, and an `X-Real-IP` header counts only when
/// `rango.trusted_proxy` says a proxy sets it (else each request could name its own).
#[tokio::test]
async fn failures_from_one_address_lock_it_and_a_proxy_header_counts_only_when_trusted() {
    for trusted in [false, true] {
        let settings = [
            ("rango.failures_per_address", json!(3)),
            ("rango.trusted_proxy", json!(trusted)),
        ];
        let Some((app, _keep)) = site_with("sqlite", &settings).await else {
            continue;
        };
        let forged = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"];
        let mut pages = Vec::new();
        for (i, ip) in forged.iter().enumerate() {
            let mut device = Device::new(&app, CHROME).from("198.51.100.7:5000", Some(ip));
            pages.push(device.login(&format!("user{i}"), "wrong").await);
        }
        let statuses: Vec<Status> = pages.iter().map(|page| page.status).collect();
        if trusted {
            assert!(
                statuses.iter().all(|s| *s == Status::Ok),
                "each proxy-given address counts alone: {statuses:?}"
            );
            // The same proxy-given address three times: locked, from any peer.
            for port in [1, 2] {
                let mut device = Device::new(&app, CHROME)
                    .from(&format!("198.51.100.8:{port}"), Some(forged[0]));
                device.login("someone", "wrong").await;
            }
            let mut device = Device::new(&app, CHROME).from("198.51.100.9:3", Some(forged[0]));
            assert!(locked(&device.login("other", "wrong").await, 900));
        } else {
            assert_eq!(
                statuses,
                [
                    Status::Ok,
                    Status::Ok,
                    Status::TooManyRequests,
                    Status::TooManyRequests
                ],
                "the forged header is ignored: one peer"
            );
            assert!(locked(&pages[3], 900));
            // Another peer is not locked.
            let mut device = Device::new(&app, CHROME).from("198.51.100.10:1", None);
            assert_eq!(device.login("user0", "wrong").await.status, Status::Ok);
        }
    }
}

/// Refused registrations count against the address (a taken name, a weak password), and the
/// password change's old-password check against the username: each locks at its limit, the
/// right old password included.
#[tokio::test]
async fn refused_registrations_and_wrong_old_passwords_are_throttled() {
    let settings = [
        ("rango.failures_per_address", json!(2)),
        ("rango.failures_per_user", json!(2)),
    ];
    for store in ["sqlite", "postgres"] {
        let Some((app, _keep)) = site_with(store, &settings).await else {
            continue;
        };
        let mut ann = signed_in_device(&app, "ann", CHROME).await;
        let mut spammer = Device::new(&app, CHROME).from("192.0.2.1:1", None);
        assert_eq!(
            spammer.register("ann", PASSWORD).await.status,
            Status::Ok,
            "{store}: taken, shown in the form"
        );
        assert!(
            locked(&spammer.register("ann2", "12345678").await, 900),
            "{store}"
        );
        assert!(
            locked(&spammer.register("carol", PASSWORD).await, 900),
            "{store}: a valid one, locked too"
        );

        let change = |old: &'static str| {
            [
                ("old_password", old),
                ("new_password1", "another horse battery"),
                ("new_password2", "another horse battery"),
            ]
        };
        let page = ann
            .submit("/rango/password/", "/rango/password/", &change("wrong"))
            .await;
        assert!(
            page.has("Your old password was entered incorrectly"),
            "{store}"
        );
        let page = ann
            .submit("/rango/password/", "/rango/password/", &change("wrong"))
            .await;
        assert!(locked(&page, 900), "{store}: {}", page.status);
        let page = ann
            .submit("/rango/password/", "/rango/password/", &change(PASSWORD))
            .await;
        assert!(
            locked(&page, 900),
            "{store}: the right old password, locked"
        );
        // The same username's login is locked too: one count of guesses at the password.
        let mut other = Device::new(&app, FIREFOX);
        assert!(locked(&other.login("ann", PASSWORD).await, 900), "{store}");
    }
}

/// A flood of logins waits in a bounded queue for Argon2: beyond it, 503 with `Retry-After`
/// at once, never a 500, and the logins admitted go through.
#[tokio::test]
async fn a_flood_of_logins_beyond_the_argon2_queue_gets_503_with_retry_after() {
    let Some((app, _keep)) = site_with("sqlite", &[("rango.argon2_queue", json!(0))]).await else {
        return;
    };
    signed_in_device(&app, "ann", CHROME).await;
    // Four times as many as the cores, which are the whole queue here.
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let pages = concurrent_logins(&app, 4 * cores, PASSWORD).await;
    let busy = pages
        .iter()
        .filter(|page| page.status == Status::ServiceUnavailable)
        .count();
    let signed_in = pages
        .iter()
        .filter(|page| page.status == Status::SeeOther)
        .count();
    assert_eq!(
        busy + signed_in,
        pages.len(),
        "503 or signed in, nothing else"
    );
    assert!(
        busy > 0 && signed_in > 0,
        "{busy} busy, {signed_in} signed in"
    );
    for page in pages
        .iter()
        .filter(|page| page.status == Status::ServiceUnavailable)
    {
        assert_eq!(page.retry_after, Some(1));
    }
}
