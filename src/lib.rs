//! Rango: the site of *Tango with Django*, chapter 10 (cookies and sessions), on Rocket 0.5,
//! with its sessions from the `rocket-server-sessions` crate of this workspace.

pub mod cli;
pub mod db;
pub mod error;
pub mod rango;
pub mod stores;

use rocket::fairing::AdHoc;
use rocket::figment::Figment;
use rocket::fs::{relative, FileServer};
use rocket::{Build, Rocket};
use rocket_db_pools::Database;
use rocket_dyn_templates::Template;

use db::Db;
use rocket_server_sessions::Sessions;

/// The site with the configuration Rocket reads by itself: Rocket.toml, the profile chosen by
/// `ROCKET_PROFILE`, and `ROCKET_*` environment overrides.
pub fn rocket() -> Rocket<Build> {
    rocket_with(rocket::Config::figment())
}

/// The site with the configuration in `figment`; tests and the command line use this.
pub fn rocket_with(figment: Figment) -> Rocket<Build> {
    rocket::custom(figment)
        .attach(Db::init())
        .attach(AdHoc::try_on_ignite("Migrations", db::migrate))
        .attach(rango::fairing())
        .attach(Sessions::fairing(stores::RangoStores))
        .attach(Template::fairing())
        .mount("/", rango::routes())
        .mount("/static", FileServer::from(relative!("static")))
        .register("/", error::catchers())
}
