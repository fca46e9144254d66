//! Accounts (Tango with Django, chapter 9): register, log in, log out, a page for signed-in
//! users only, a password change, and "your sessions", where a user sees the sessions signed
//! in as them and signs any other out. Every form is CSRF-protected by the session crate's
//! `Csrf` guard.

pub mod auth;
pub mod devices;
pub mod never_cache;
pub mod password_rules;
pub mod throttle;
pub mod users;

use rocket::form::FromForm;
use rocket::http::uri::Origin;
use rocket::http::{RawStr, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::Redirect;
use rocket::{catch, catchers, get, post, routes, Catcher, Either, Route, State};
use rocket_db_pools::Connection;
use rocket_dyn_templates::{context, Template};
use rocket_server_sessions::csrf::NoFields;
use rocket_server_sessions::{Csrf, CsrfToken, Expiry, Session, SessionManager};
use serde::Serialize;

use crate::db::Db;
use crate::error::Error;
use crate::rango::RangoConfig;
use crate::urls::Slashed;
use auth::{Nav, SignedIn};
use throttle::{ClientAddress, Keys};
use users::{CreateError, Hashing};

/// The catchers of the area: a page that needs a signed-in user sends others to log in.
pub fn catchers() -> Vec<Catcher> {
    catchers![login_required]
}

/// The pages.
pub fn routes() -> Vec<Route> {
    routes![
        register_form,
        register,
        login_form,
        login,
        logout_form,
        logout,
        restricted,
        password_form,
        password,
        sessions,
        end_session,
        end_other_sessions,
    ]
}

/// A page or a redirect.
type Reply = Either<Template, Redirect>;

/// The `User-Agent` of a request.
struct UserAgent(Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for UserAgent {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let agent = req.headers().get_one("User-Agent").map(str::to_owned);
        Outcome::Success(UserAgent(agent))
    }
}

/// `next` if it is a path on this site (Django's `url_has_allowed_host_and_scheme`): it starts
/// with one `/`, names no host or scheme, holds no backslash or control character, and parses.
pub fn local_path(next: Option<&str>) -> Option<&str> {
    let next = next?;
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
        && Origin::parse(next).is_ok();
    local.then_some(next)
}

/// Where the login page sends a visitor of a page that needs a signed-in user (Django's
/// `login_required`): the login page, with the page as `next`.
#[catch(401)]
fn login_required(req: &Request<'_>) -> Redirect {
    let next = req.uri().to_string();
    Redirect::to(format!(
        "/rango/login/?next={}",
        RawStr::new(&next).percent_encode()
    ))
}

#[derive(Debug, FromForm)]
struct RegisterForm {
    username: String,
    email: String,
    password: String,
}

/// A form's errors by field, as the templates show them.
#[derive(Debug, Default, Serialize)]
struct FieldErrors {
    username: Vec<&'static str>,
    email: Vec<&'static str>,
    password: Vec<&'static str>,
    old_password: Vec<&'static str>,
    new_password1: Vec<&'static str>,
    new_password2: Vec<&'static str>,
    form: Vec<&'static str>,
}

impl FieldErrors {
    fn any(&self) -> bool {
        [
            &self.username,
            &self.email,
            &self.password,
            &self.old_password,
            &self.new_password1,
            &self.new_password2,
            &self.form,
        ]
        .iter()
        .any(|errors| !errors.is_empty())
    }
}

#[get("/rango/register")]
fn register_form(_slash: Slashed, account: Nav, csrf_token: CsrfToken) -> Template {
    Template::render(
        "accounts/register",
        context! { account, csrf_token, errors: FieldErrors::default(), nav: "register" },
    )
}

#[post("/rango/register", data = "<form>")]
#[allow(clippy::too_many_arguments)] // a handler's guards
async fn register(
    _slash: Slashed,
    form: Csrf<RegisterForm>,
    db: Connection<Db>,
    session: Session<'_>,
    address: ClientAddress,
    rango: &State<RangoConfig>,
    hashing: &State<Hashing>,
    account: Nav,
) -> Result<Template, Error> {
    let RegisterForm {
        username,
        email,
        password,
    } = form.into_inner();
    // By address only: see `throttle.rs`.
    let keys = Keys::of(rango, None, address);
    let attempt = throttle::admit(&db, rango, &keys)
        .await?
        .map_err(Error::Throttled)?;
    let username = users::normalize(username.trim());
    let email = email.trim().to_owned();
    let mut errors = FieldErrors::default();
    errors.username.extend(users::username_problem(&username));
    errors.email.extend(users::email_problem(&email));
    errors
        .password
        .extend(password_rules::problems(&password, &username, &email));
    if !errors.any() {
        let Some(_turn) = hashing.turn() else {
            attempt.succeeded(&db, None).await?;
            return Err(Error::Busy);
        };
        match users::create(&db, &username, &email, &password).await {
            Ok(user) => {
                attempt.succeeded(&db, None).await?;
                log::info!("registered user {}", user.id);
                return Ok(Template::render(
                    "accounts/registered",
                    context! { account, username: user.username, nav: "register" },
                ));
            }
            Err(CreateError::Taken) => {
                errors
                    .username
                    .push("A user with that username already exists.");
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(wait) = attempt.failed(&db, rango).await? {
        return Err(Error::Throttled(wait));
    }
    // A token made here, not by a guard: a guard would run before the CSRF check, and give a
    // refused request's session a secret.
    let csrf_token = CsrfToken::new(&session);
    Ok(Template::render(
        "accounts/register",
        context! { account, csrf_token, errors, username, email, nav: "register" },
    ))
}

#[derive(Debug, FromForm)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
    /// "Remember me": unticked (absent), the session ends when the browser closes.
    remember: bool,
}

#[get("/rango/login?<next>")]
fn login_form(
    _slash: Slashed,
    next: Option<&str>,
    account: Nav,
    csrf_token: CsrfToken,
) -> Template {
    let next = local_path(next);
    Template::render(
        "accounts/login",
        context! { account, csrf_token, next, nav: "login" },
    )
}

#[post("/rango/login", data = "<form>")]
#[allow(clippy::too_many_arguments)] // a handler's guards
async fn login(
    _slash: Slashed,
    form: Csrf<LoginForm>,
    db: Connection<Db>,
    session: Session<'_>,
    user_agent: UserAgent,
    address: ClientAddress,
    manager: &State<SessionManager>,
    rango: &State<RangoConfig>,
    hashing: &State<Hashing>,
    account: Nav,
) -> Result<Reply, Error> {
    let LoginForm {
        username,
        password,
        next,
        remember,
    } = form.into_inner();
    let turn = hashing.turn().ok_or(Error::Busy)?;
    // Counted before the password is checked; locked, refused before it is, the right one
    // too.
    let keys = Keys::of(rango, Some(username.trim()), address);
    let attempt = throttle::admit(&db, rango, &keys)
        .await?
        .map_err(Error::Throttled)?;
    let user = users::by_username(&db, username.trim()).await?;
    let checked = match &user {
        Some(user) => user.check_password(&password).await,
        None => {
            users::waste_a_password_check(&password).await;
            false
        }
    };
    drop(turn);
    let Some(user) = user.filter(|_| checked) else {
        if let Some(wait) = attempt.failed(&db, rango).await? {
            return Err(Error::Throttled(wait));
        }
        let next = local_path(next.as_deref());
        let csrf_token = CsrfToken::new(&session);
        return Ok(Either::Left(Template::render(
            "accounts/login",
            context! {
                account, csrf_token, next, username,
                error: "Invalid login details", nav: "login",
            },
        )));
    };
    attempt.succeeded(&db, Some(username.trim())).await?;
    // The cap: this login's session is saved with the response, so leave room for it.
    let ended = devices::make_room(manager.store(), &user, rango.max_sessions_per_user).await?;
    if ended > 0 {
        log::info!("user {}: {ended} oldest sessions ended (the cap)", user.id);
    }
    auth::login(&session, &user, user_agent.0.as_deref());
    // The book's chapter 10, chosen per login: a remembered sign-in lasts `cookie_age` after
    // each save, whatever the configured policy; any other ends when the browser closes.
    session.set_expiry(if remember {
        Expiry::Age(time::Duration::seconds(
            i64::try_from(manager.config().cookie_age).unwrap_or(i64::MAX),
        ))
    } else {
        Expiry::BrowserClose
    });
    let target = local_path(next.as_deref()).unwrap_or("/rango/").to_owned();
    Ok(Either::Right(Redirect::to(target)))
}

#[get("/rango/logout")]
fn logout_form(_slash: Slashed, account: Nav, csrf_token: CsrfToken) -> Template {
    Template::render(
        "accounts/logout",
        context! { account, csrf_token, nav: "logout" },
    )
}

#[post("/rango/logout", data = "<form>")]
fn logout(_slash: Slashed, form: Csrf<NoFields>, session: Session<'_>) -> Redirect {
    let _ = form;
    auth::logout(&session);
    Redirect::to("/rango/")
}

#[get("/rango/restricted")]
fn restricted(_slash: Slashed, _user: SignedIn, account: Nav) -> Template {
    Template::render(
        "accounts/restricted",
        context! { account, nav: "restricted" },
    )
}

#[derive(Debug, FromForm)]
struct PasswordForm {
    old_password: String,
    new_password1: String,
    new_password2: String,
}

#[get("/rango/password")]
fn password_form(
    _slash: Slashed,
    _user: SignedIn,
    account: Nav,
    csrf_token: CsrfToken,
) -> Template {
    Template::render(
        "accounts/password",
        context! { account, csrf_token, errors: FieldErrors::default(), nav: "password" },
    )
}

#[post("/rango/password", data = "<form>")]
#[allow(clippy::too_many_arguments)] // a handler's guards
async fn password(
    _slash: Slashed,
    form: Csrf<PasswordForm>,
    signed_in: SignedIn,
    db: Connection<Db>,
    session: Session<'_>,
    manager: &State<SessionManager>,
    rango: &State<RangoConfig>,
    hashing: &State<Hashing>,
    address: ClientAddress,
    account: Nav,
) -> Result<Template, Error> {
    let SignedIn(user) = signed_in;
    let form = form.into_inner();
    let turn = hashing.turn().ok_or(Error::Busy)?;
    let keys = Keys::of(rango, Some(&user.username), address);
    let attempt = throttle::admit(&db, rango, &keys)
        .await?
        .map_err(Error::Throttled)?;
    let mut errors = FieldErrors::default();
    if user.check_password(&form.old_password).await {
        attempt.succeeded(&db, Some(&user.username)).await?;
    } else {
        if let Some(wait) = attempt.failed(&db, rango).await? {
            return Err(Error::Throttled(wait));
        }
        errors
            .old_password
            .push("Your old password was entered incorrectly. Please enter it again.");
    }
    if form.new_password1 != form.new_password2 {
        errors
            .new_password2
            .push("The two password fields didn’t match.");
    }
    errors.new_password1.extend(password_rules::problems(
        &form.new_password1,
        &user.username,
        &user.email,
    ));
    if errors.any() {
        drop(turn);
        let csrf_token = CsrfToken::new(&session);
        return Ok(Template::render(
            "accounts/password",
            context! { account, csrf_token, errors, nav: "password" },
        ));
    }
    let user = users::set_password(&db, &user, &form.new_password1).await?;
    // This session stays signed in under a new key; the others hold the old hash, so each is
    // signed out on its next request, and the stores that list sessions delete them now.
    let this = session.handle();
    auth::update_session_auth_hash(&session, &user);
    end_others(manager, rango, &user, this.as_deref()).await;
    Ok(Template::render(
        "accounts/password_done",
        context! { account, nav: "password" },
    ))
}

#[get("/rango/sessions")]
#[allow(clippy::too_many_arguments)] // a handler's guards
async fn sessions(
    _slash: Slashed,
    signed_in: SignedIn,
    session: Session<'_>,
    manager: &State<SessionManager>,
    rango: &State<RangoConfig>,
    account: Nav,
    csrf_token: CsrfToken,
) -> Result<Template, Error> {
    let SignedIn(user) = signed_in;
    let current = session.handle();
    let devices = devices::devices(
        manager.store(),
        manager.config(),
        &user,
        current.as_deref(),
        rango.max_sessions_per_user,
    )
    .await?;
    let listed = devices.is_some();
    Ok(Template::render(
        "accounts/sessions",
        context! {
            account, csrf_token, listed,
            devices: devices.unwrap_or_default(),
            backend: &manager.config().backend,
            nav: "sessions",
        },
    ))
}

#[post("/rango/sessions/<id>/end", data = "<form>")]
async fn end_session(
    id: &str,
    form: Csrf<NoFields>,
    signed_in: SignedIn,
    session: Session<'_>,
    manager: &State<SessionManager>,
) -> Result<Either<Redirect, Status>, Error> {
    let SignedIn(user) = signed_in;
    let _ = form;
    if session.handle().as_deref() == Some(id) {
        auth::logout(&session);
        return Ok(Either::Left(Redirect::to("/rango/")));
    }
    // Found by its handle directly; only one of the user's own sessions is ended, anything
    // else is not found.
    let ended = match manager.store().user_index() {
        Some(index) => index.end_user_session(&user.key(), id).await?,
        None => false,
    };
    if !ended {
        return Ok(Either::Right(Status::NotFound));
    }
    Ok(Either::Left(Redirect::to("/rango/sessions/")))
}

#[post("/rango/sessions/end-others", data = "<form>")]
async fn end_other_sessions(
    form: Csrf<NoFields>,
    signed_in: SignedIn,
    db: Connection<Db>,
    session: Session<'_>,
    manager: &State<SessionManager>,
    rango: &State<RangoConfig>,
) -> Result<Redirect, Error> {
    let SignedIn(user) = signed_in;
    let _ = form;
    // A new generation signs out every session of the old one, on every store; this one is
    // given the new hash, and the stores that list sessions delete the others now.
    let user = users::next_generation(&db, &user).await?;
    let this = session.handle();
    auth::update_session_auth_hash(&session, &user);
    end_others(manager, rango, &user, this.as_deref()).await;
    Ok(Redirect::to("/rango/sessions/"))
}

/// Deletes the user's other sessions from a store that lists them, after their hash or
/// generation changed. A failure only warns: the change is made and signs them out on their
/// next request anyway, and failing the request would throw away this session's new hash (a
/// 5xx saves nothing), signing this device out too.
async fn end_others(
    manager: &SessionManager,
    rango: &RangoConfig,
    user: &users::User,
    this: Option<&str>,
) {
    let limit = rango.max_sessions_per_user;
    match devices::end_others(manager.store(), user, this, limit).await {
        Ok(ended) => log::info!("user {}: {ended} other sessions deleted", user.id),
        Err(e) => log::warn!(
            "user {}: deleting the other sessions failed ({e}); they are signed out on their \
             next request",
            user.id
        ),
    }
}
