//! Cross-site request forgery protection with the secret kept in the session (Django's
//! `CSRF_USE_SESSIONS`), for any Rocket application that uses [`Session`].
//!
//! - A page with a form asks for a [`CsrfToken`] and puts it in a hidden field named
//!   [`CSRF_FIELD`] (`csrfmiddlewaretoken`); a script sends it in the [`CSRF_HEADER`]
//!   (`X-CSRFToken`) header instead. The first token a session needs gives it a secret.
//! - A handler of an unsafe request takes its form as [`Csrf<T>`] in place of `Form<T>`: the
//!   handler runs only if the request comes from the site itself (Django's checks: an `Origin`
//!   header must name the request's own host; without one, a site on HTTPS, `cookie_secure`,
//!   needs a `Referer` on it) and the token matches the session's secret; otherwise the request
//!   fails with a 403 and [`csrf_failure`] tells a catcher why. Nothing runs, so nothing
//!   changes.
//! - [`rotate_csrf_token`] gives the session a new secret: call it on login (with
//!   [`Session::cycle_key`]), as Django does, so a token seen before login is worth nothing after.
//!
//! Each token is the secret masked with a fresh random pad (Django's masking): the token on a
//! page changes with every response, so a compressed page that echoes attacker input beside it
//! leaks nothing about the secret (BREACH). Tokens are compared in constant time.
//!
//! ```
//! use rocket::{get, post, routes, FromForm};
//! use rocket_server_sessions::{stores::MemoryStore, Csrf, CsrfToken, Sessions};
//!
//! #[derive(FromForm)]
//! struct Comment {
//!     text: String,
//! }
//!
//! #[get("/")]
//! fn form(token: CsrfToken) -> String {
//!     format!(r#"<form method="post"><input type="hidden" name="csrfmiddlewaretoken"
//!         value="{token}"><input name="text"></form>"#)
//! }
//!
//! #[post("/", data = "<comment>")]
//! fn post(comment: Csrf<Comment>) -> String {
//!     format!("saved: {}", comment.text)
//! }
//!
//! let rocket = rocket::build()
//!     .attach(Sessions::with_store(MemoryStore::new()))
//!     .mount("/", routes![form, post]);
//! # let client = rocket::local::blocking::Client::tracked(rocket).unwrap();
//! # let page = client.get("/").dispatch().into_string().unwrap();
//! # let token = page.split("value=\"").nth(1).unwrap().split('"').next().unwrap();
//! # let ok = client.post("/").header(rocket::http::ContentType::Form)
//! #     .body(format!("csrfmiddlewaretoken={token}&text=hi")).dispatch();
//! # assert_eq!(ok.into_string().as_deref(), Some("saved: hi"));
//! # let forged = client.post("/").header(rocket::http::ContentType::Form)
//! #     .body("text=hi").dispatch();
//! # assert_eq!(forged.status(), rocket::http::Status::Forbidden);
//! ```

use std::ops::{Deref, DerefMut};

use rand::rngs::OsRng;
use rand::Rng;
use rocket::data::{self, Data, FromData};
use rocket::form::{self, DataField, Form, FromForm, Options, ValueField};
use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use serde::{Serialize, Serializer};
use subtle::ConstantTimeEq;

use crate::guard::SessionError;
use crate::handle::Session;

/// The session key that holds the secret (Django's `CSRF_SESSION_KEY`).
pub const CSRF_SESSION_KEY: &str = "_csrftoken";

/// The form field that carries the token (Django's name).
pub const CSRF_FIELD: &str = "csrfmiddlewaretoken";

/// The header that carries the token (Django's default `CSRF_HEADER_NAME`).
pub const CSRF_HEADER: &str = "X-CSRFToken";

/// Django's alphabet for secrets and masks.
const ALPHABET: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Characters in a secret, and in a mask.
const SECRET_LEN: usize = 32;

/// A random string of [`SECRET_LEN`] characters of [`ALPHABET`].
fn random_string() -> String {
    let mut rng = OsRng;
    (0..SECRET_LEN)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// The position of `c` in [`ALPHABET`].
fn index(c: u8) -> Option<usize> {
    match c {
        b'a'..=b'z' => Some(usize::from(c - b'a')),
        b'A'..=b'Z' => Some(usize::from(c - b'A') + 26),
        b'0'..=b'9' => Some(usize::from(c - b'0') + 52),
        _ => None,
    }
}

/// Whether `secret` is one this module made.
fn well_formed(secret: &str) -> bool {
    secret.len() == SECRET_LEN && secret.bytes().all(|c| index(c).is_some())
}

/// `secret` masked with `mask`: the mask, then each character of the secret shifted by the
/// mask's character at its place (Django's `_mask_cipher_secret`).
fn mask_with(secret: &str, mask: &str) -> String {
    let cipher: String = secret
        .bytes()
        .zip(mask.bytes())
        .map(|(s, m)| {
            let shifted = (index(s).unwrap_or(0) + index(m).unwrap_or(0)) % ALPHABET.len();
            char::from(ALPHABET[shifted])
        })
        .collect();
    format!("{mask}{cipher}")
}

/// The secret a token masks, if the token is well formed (Django's `_unmask_cipher_token`).
fn unmask(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    if bytes.len() != 2 * SECRET_LEN {
        return None;
    }
    let (mask, cipher) = bytes.split_at(SECRET_LEN);
    mask.iter()
        .zip(cipher)
        .map(|(&m, &c)| {
            let shifted = (index(c)? + ALPHABET.len() - index(m)?) % ALPHABET.len();
            Some(char::from(ALPHABET[shifted]))
        })
        .collect()
}

/// The session's secret, made now if it has none.
fn secret_of(session: &Session<'_>) -> String {
    match session.get::<String>(CSRF_SESSION_KEY) {
        Some(secret) if well_formed(&secret) => secret,
        _ => {
            let secret = random_string();
            // A string always serializes.
            session.insert(CSRF_SESSION_KEY, &secret).ok();
            secret
        }
    }
}

/// Gives the session a new CSRF secret: tokens handed out before are refused from now on. Call
/// it on login.
pub fn rotate_csrf_token(session: &Session<'_>) {
    // A string always serializes.
    session.insert(CSRF_SESSION_KEY, random_string()).ok();
}

/// Why a request's token was refused (Django's `REASON_*` messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    /// The session has no secret: no page with a token was served to it (or it was flushed).
    #[error("CSRF session token missing.")]
    NoSecret,
    /// Neither the form nor the header carried a token.
    #[error("CSRF token missing.")]
    Missing,
    /// The token is not one of the session's.
    #[error("CSRF token incorrect.")]
    Incorrect,
    /// The session could not be loaded (its store is down).
    #[error("the session could not be loaded")]
    Session,
    /// The `Origin` header names another site than the one the request is for.
    #[error("Origin checking failed - the origin does not match the site's host.")]
    BadOrigin,
    /// Over HTTPS (`cookie_secure`), a request with no `Origin` and no `Referer`.
    #[error("Referer checking failed - no Referer.")]
    NoReferer,
    /// Over HTTPS (`cookie_secure`), a `Referer` of another site, or not over HTTPS.
    #[error("Referer checking failed - the Referer does not match the site's host.")]
    BadReferer,
}

/// Why the request's CSRF check failed, for a catcher's page; `None` when it did not fail.
pub fn csrf_failure(req: &Request<'_>) -> Option<CsrfError> {
    req.local_cache(|| CsrfOutcome(None)).0
}

/// What the check of this request found, in the request's local cache.
struct CsrfOutcome(Option<CsrfError>);

/// Django's origin checks, before the token's: an `Origin` header must name the host the
/// request is for (its `Host`, which the application's host check has vetted); without one, a
/// site served over HTTPS (`cookie_secure`) needs a `Referer` on that host, over HTTPS. A
/// request with neither header over plain HTTP (a script, an old browser) is judged by its
/// token alone, as Django judges it.
fn same_origin(req: &Request<'_>, https: bool) -> Result<(), CsrfError> {
    // `Host`, or HTTP/2's `:authority`.
    let host = req.headers().get_one("Host").map(str::to_owned);
    let Some(host) = host.or_else(|| req.host().map(|host| host.to_string())) else {
        return Ok(()); // HTTP/1.0 without a host: nothing to compare with
    };
    let host = host.as_str();
    if let Some(origin) = req.headers().get_one("Origin") {
        let (scheme, authority) = origin.split_once("://").ok_or(CsrfError::BadOrigin)?;
        return (same_host(authority, host, scheme) && (scheme == "https" || !https))
            .then_some(())
            .ok_or(CsrfError::BadOrigin);
    }
    if !https {
        return Ok(());
    }
    let referer = req
        .headers()
        .get_one("Referer")
        .ok_or(CsrfError::NoReferer)?;
    let rest = referer
        .strip_prefix("https://")
        .ok_or(CsrfError::BadReferer)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    same_host(authority, host, "https")
        .then_some(())
        .ok_or(CsrfError::BadReferer)
}

/// Whether `authority` (an origin's `host[:port]`, with the scheme `scheme`) is `host` (a
/// `Host` header's `host[:port]`), in any case, a default port written or not.
fn same_host(authority: &str, host: &str, scheme: &str) -> bool {
    let default = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return false,
    };
    let split = |value: &str| -> (String, String) {
        let value = value.to_ascii_lowercase();
        // An IPv6 literal's colons are inside its brackets.
        let port_at = value.rfind(':').filter(|&i| !value[i..].contains(']'));
        match port_at {
            Some(i) => (value[..i].to_owned(), value[i + 1..].to_owned()),
            None => (value, default.to_owned()),
        }
    };
    !authority.is_empty() && !authority.contains('@') && split(authority) == split(host)
}

/// Checks `token` against the session's secret.
fn check(session: &Session<'_>, token: Option<&str>) -> Result<(), CsrfError> {
    let secret = session
        .get::<String>(CSRF_SESSION_KEY)
        .filter(|secret| well_formed(secret))
        .ok_or(CsrfError::NoSecret)?;
    let token = token.filter(|t| !t.is_empty()).ok_or(CsrfError::Missing)?;
    let given = unmask(token).ok_or(CsrfError::Incorrect)?;
    if bool::from(given.as_bytes().ct_eq(secret.as_bytes())) {
        Ok(())
    } else {
        Err(CsrfError::Incorrect)
    }
}

/// The CSRF token for this response: the session's secret, freshly masked. It prints (and
/// serializes, for a template's context) as the 64 characters a form sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrfToken(String);

impl CsrfToken {
    /// A token for `session`, which gets a secret if it has none.
    pub fn new(session: &Session<'_>) -> Self {
        CsrfToken(mask_with(&secret_of(session), &random_string()))
    }

    /// The token as a form sends it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form's hidden field, Django's `{% csrf_token %}`:
    /// `<input type="hidden" name="csrfmiddlewaretoken" value="...">`. The token is letters
    /// and digits only, so the markup needs no escaping; in Tera, pass it into the context and
    /// write `{{ csrf_input | safe }}`.
    pub fn hidden_input(&self) -> String {
        format!(
            r#"<input type="hidden" name="{CSRF_FIELD}" value="{}">"#,
            self.0
        )
    }
}

impl std::fmt::Display for CsrfToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CsrfToken {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for CsrfToken {
    type Error = SessionError;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        req.guard::<Session<'r>>()
            .await
            .map(|session| CsrfToken::new(&session))
    }
}

/// A form whose request carried the session's CSRF token: use it in place of `Form<T>` in the
/// handler of a `POST` (or any unsafe method). The token comes from the [`CSRF_HEADER`] header
/// or the form's [`CSRF_FIELD`] field, which `T` never sees. A missing or wrong token fails the
/// request with a 403 (see [`csrf_failure`]); a valid token with a form that does not parse as
/// `T` fails it as `Form<T>` would (422).
#[derive(Debug)]
pub struct Csrf<T>(pub T);

impl<T> Csrf<T> {
    /// The form.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Csrf<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Csrf<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// A form of no fields but the token: `Csrf<NoFields>` for a button (a logout, say). Whatever
/// else the form holds is ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoFields;

#[rocket::async_trait]
impl<'r> FromForm<'r> for NoFields {
    type Context = ();

    fn init(_: Options) -> Self::Context {}

    fn push_value(_: &mut Self::Context, _: ValueField<'r>) {}

    async fn push_data(_: &mut Self::Context, _: DataField<'r, '_>) {}

    fn finalize(_: Self::Context) -> form::Result<'r, Self> {
        Ok(NoFields)
    }
}

/// `T` with the token field taken out; `T`'s own errors are kept so that a bad token is
/// reported before them.
struct WithToken<'r, T> {
    token: Option<String>,
    form: form::Result<'r, T>,
}

#[rocket::async_trait]
impl<'r, T: FromForm<'r>> FromForm<'r> for WithToken<'r, T> {
    type Context = (Option<String>, T::Context);

    fn init(opts: Options) -> Self::Context {
        (None, T::init(opts))
    }

    fn push_value((token, form): &mut Self::Context, field: ValueField<'r>) {
        if field.name.source() == CSRF_FIELD {
            *token = Some(field.value.to_owned());
        } else {
            T::push_value(form, field);
        }
    }

    async fn push_data((_, form): &mut Self::Context, field: DataField<'r, '_>) {
        T::push_data(form, field).await;
    }

    fn finalize((token, form): Self::Context) -> form::Result<'r, Self> {
        Ok(WithToken {
            token,
            form: T::finalize(form),
        })
    }
}

#[rocket::async_trait]
impl<'r, T: FromForm<'r> + Send> FromData<'r> for Csrf<T> {
    type Error = form::Errors<'r>;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        let refuse = |reason: CsrfError| {
            req.local_cache(|| CsrfOutcome(Some(reason)));
            let status = match reason {
                CsrfError::Session => Status::ServiceUnavailable,
                _ => Status::Forbidden,
            };
            Outcome::Error((
                status,
                form::Errors::from(form::Error::validation(reason.to_string())),
            ))
        };
        let https = req
            .rocket()
            .state::<crate::SessionManager>()
            .is_some_and(|manager| manager.config().cookie_secure);
        if let Err(reason) = same_origin(req, https) {
            return refuse(reason);
        }
        let session = match req.guard::<Session<'r>>().await {
            Outcome::Success(session) => session,
            _ => return refuse(CsrfError::Session),
        };
        let parsed = match Form::<WithToken<'r, T>>::from_data(req, data).await {
            Outcome::Success(parsed) => Some(parsed.into_inner()),
            _ => None,
        };
        let header = req.headers().get_one(CSRF_HEADER);
        let token = header.or(parsed.as_ref().and_then(|p| p.token.as_deref()));
        if let Err(reason) = check(&session, token) {
            return refuse(reason);
        }
        match parsed.map(|parsed| parsed.form) {
            Some(Ok(form)) => Outcome::Success(Csrf(form)),
            Some(Err(errors)) => Outcome::Error((Status::UnprocessableEntity, errors)),
            None => Outcome::Error((
                Status::UnprocessableEntity,
                form::Errors::from(form::Error::validation("the form could not be read")),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_secret_unmasks_to_itself_and_masks_differ() {
        let secret = random_string();
        let one = mask_with(&secret, &random_string());
        let two = mask_with(&secret, &random_string());
        assert_eq!(one.len(), 64);
        assert_ne!(one, two, "a fresh mask per token");
        assert!(!one.contains(&secret));
        assert_eq!(unmask(&one).as_deref(), Some(secret.as_str()));
        assert_eq!(unmask(&two).as_deref(), Some(secret.as_str()));
    }

    #[test]
    fn djangos_masking_of_a_known_secret() {
        // Django: _mask_cipher_secret with mask "a" * 32 leaves the secret as it is ("a" is 0),
        // and with "b" * 32 shifts each character by one, "9" wrapping to "a".
        let secret = "abcdefghijklmnopqrstuvwxyz012389";
        assert_eq!(
            mask_with(secret, &"a".repeat(32)),
            format!("{}{secret}", "a".repeat(32))
        );
        assert_eq!(
            mask_with(secret, &"b".repeat(32)),
            format!("{}bcdefghijklmnopqrstuvwxyzA12349a", "b".repeat(32))
        );
    }

    #[test]
    fn malformed_tokens_unmask_to_nothing() {
        for bad in [
            String::new(),
            "a".repeat(63),
            "a".repeat(65),
            format!("{}!", "a".repeat(63)),
            "é".repeat(32),
        ] {
            assert_eq!(unmask(&bad), None, "{bad:?}");
        }
    }
}
