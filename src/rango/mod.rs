//! The Rango site: index and about pages with the visitor's visit count, and a page per
//! category.

mod add;
pub mod front;
pub mod models;
pub mod visits;

use rocket::fairing::{self, AdHoc};
use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use rocket::{get, routes, Build, Rocket, Route, State};
use rocket_db_pools::{Connection, Database};
use rocket_dyn_templates::{context, Metadata, Template};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::accounts::auth::Nav;
use crate::db::Db;
use crate::error::Error;
use crate::urls::Slashed;
use front::FrontPage;
use rocket_server_sessions::Session;

/// The site's settings: `[default.rango]` in Rocket.toml or `ROCKET_RANGO='{...}'`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RangoConfig {
    /// Seconds that must pass before a visit counts again (default 86400, a day; the book's
    /// `days > 0`).
    pub visit_interval: u64,
    /// Load the book's sample categories and pages at launch when there are none (default true).
    pub sample_data: bool,
    /// Django's `DEBUG` (default false; true in Rocket.toml's `debug` profile, the one
    /// `cargo run` uses): a refused CSRF check's page says why.
    pub debug: bool,
    /// Seconds a sign-in lasts at most, however active the session stays (default 2592000,
    /// 30 days): a session signed in longer ago is signed out on its next request, on every
    /// store (the sealed cookie's copy too).
    pub sign_in_lifetime: u64,
    /// The most sessions one user may be signed in with (default 50, at least 1): a login
    /// beyond it ends the user's sessions that would end first, and "Your sessions" lists at
    /// most this many. (The sealed-cookie store cannot count them.)
    pub max_sessions_per_user: usize,
    /// Failed attempts (login, password change) for one username within the last
    /// `throttle_window` seconds that lock it (default 10; `src/accounts/throttle.rs`).
    pub failures_per_user: u32,
    /// Failed attempts (login, registration, password change) from one client address within
    /// the last `throttle_window` seconds that lock it (default 50).
    pub failures_per_address: u32,
    /// Seconds the throttle looks back (default 900, 15 minutes): a lock lasts until the
    /// oldest of the failures that made it is older.
    pub throttle_window: u64,
    /// Whether a proxy in front sets the client's address in Rocket's `ip_header`
    /// (`X-Real-IP`), so the throttle may believe it (default false: the connection's peer).
    pub trusted_proxy: bool,
    /// How many password hashes or checks may wait for a free core (default 32): beyond it a
    /// login, registration or password change is answered 503 with `Retry-After`.
    pub argon2_queue: usize,
}

impl Default for RangoConfig {
    fn default() -> Self {
        RangoConfig {
            visit_interval: 86_400,
            sample_data: true,
            debug: false,
            sign_in_lifetime: 30 * 86_400,
            max_sessions_per_user: 50,
            failures_per_user: 10,
            failures_per_address: 50,
            throttle_window: 900,
            trusted_proxy: false,
            argon2_queue: 32,
        }
    }
}

impl RangoConfig {
    /// The settings in `figment`'s `rango` table, over the defaults.
    ///
    /// # Errors
    /// A setting is unknown, of the wrong type or out of range; the error names it.
    pub fn from_figment(figment: &Figment) -> Result<Self, Box<rocket::figment::Error>> {
        let config: RangoConfig = Figment::from(Serialized::defaults(RangoConfig::default()))
            .merge(figment.focus("rango"))
            .extract()
            .map_err(Box::new)?;
        let zero = [
            ("max_sessions_per_user", config.max_sessions_per_user == 0),
            ("failures_per_user", config.failures_per_user == 0),
            ("failures_per_address", config.failures_per_address == 0),
            ("throttle_window", config.throttle_window == 0),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, zero)| *zero) {
            return Err(Box::new(rocket::figment::Error::from(format!(
                "rango.{name} must be at least 1"
            ))));
        }
        Ok(config)
    }

    /// `visit_interval` as a duration.
    pub fn visit_interval(&self) -> Duration {
        Duration::seconds(i64::try_from(self.visit_interval).unwrap_or(i64::MAX))
    }
}

/// Reads the site's settings and, if asked, loads the sample data into an empty database
/// (attach after the migrations).
pub fn fairing() -> AdHoc {
    AdHoc::try_on_ignite("Rango", setup)
}

async fn setup(rocket: Rocket<Build>) -> fairing::Result {
    let config = match RangoConfig::from_figment(rocket.figment()) {
        Ok(config) => config,
        Err(e) => {
            log::error!("invalid [rango] settings: {e}");
            return Err(rocket);
        }
    };
    if config.sample_data {
        if let Err(e) = load_sample_data(&rocket).await {
            log::error!("loading the sample data failed: {e}");
            return Err(rocket);
        }
    }
    let hashing = crate::accounts::users::Hashing::new(config.argon2_queue);
    Ok(rocket
        .manage(config)
        .manage(hashing)
        .manage(front::FrontPage::default()))
}

async fn load_sample_data(rocket: &Rocket<Build>) -> Result<(), sqlx::Error> {
    let Some(db) = Db::fetch(rocket) else {
        return Ok(());
    };
    if models::is_empty(db.pool()).await? {
        let (categories, pages) = models::populate(db.pool()).await?;
        log::info!("loaded the sample data: {categories} categories, {pages} pages");
    }
    Ok(())
}

/// The site's routes.
pub fn routes() -> Vec<Route> {
    routes![
        home,
        index,
        about,
        category,
        add::add_category_form,
        add::add_category,
        add::add_page_form,
        add::add_page
    ]
}

/// The project's root serves the index too, as the book's project URLs do.
#[get("/")]
async fn home(
    db: &Db,
    front: &State<FrontPage>,
    templates: Metadata<'_>,
    session: Session<'_>,
    config: &State<RangoConfig>,
    account: Nav,
) -> Result<Template, Error> {
    index_page(db, front, templates, session, config, account).await
}

/// "Rango says...": the most liked categories, the most viewed pages and the visit count.
#[get("/rango")]
async fn index(
    _slash: Slashed,
    db: &Db,
    front: &State<FrontPage>,
    templates: Metadata<'_>,
    session: Session<'_>,
    config: &State<RangoConfig>,
    account: Nav,
) -> Result<Template, Error> {
    index_page(db, front, templates, session, config, account).await
}

/// The lists come from memory, read again at most once a second (`front.rs`).
async fn index_page(
    db: &Db,
    front: &FrontPage,
    templates: Metadata<'_>,
    session: Session<'_>,
    config: &State<RangoConfig>,
    account: Nav,
) -> Result<Template, Error> {
    let lists = front.lists(db.pool(), &templates).await?;
    let visits =
        visits::record_visit(&session, config.visit_interval(), OffsetDateTime::now_utc())?;
    Ok(Template::render(
        "rango/index",
        context! { lists: &*lists, visits, account, nav: "index" },
    ))
}

/// The about page and the visit count.
#[get("/rango/about")]
fn about(
    _slash: Slashed,
    session: Session<'_>,
    config: &State<RangoConfig>,
    account: Nav,
) -> Result<Template, Error> {
    let visits =
        visits::record_visit(&session, config.visit_interval(), OffsetDateTime::now_utc())?;
    Ok(Template::render(
        "rango/about",
        context! { visits, account, nav: "about" },
    ))
}

/// A category's page: its name and its pages (the book's `show_category`); not found for a
/// slug no category has.
#[get("/rango/category/<slug>")]
async fn category(
    _slash: Slashed,
    slug: &str,
    db: Connection<Db>,
    account: Nav,
) -> Result<Option<Template>, Error> {
    let Some(category) = models::category(&db, slug).await? else {
        return Ok(None);
    };
    let pages = models::pages_of(&db, slug).await?;
    Ok(Some(Template::render(
        "rango/category",
        context! { category, pages, account },
    )))
}
