//! Rango: the site of *Tango with Django*, chapter 10 (cookies and sessions), on Rocket 0.5,
//! with its sessions from the `rocket-server-sessions` crate of this workspace.

pub mod accounts;
pub mod cli;
pub mod db;
pub mod error;
pub mod rango;
pub mod redact;
pub mod security;
pub mod stores;
pub mod urls;

use rocket::fairing::AdHoc;
use rocket::figment::value::magic::RelativePathBuf;
use rocket::figment::Figment;
use rocket::fs::FileServer;
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
        .attach(security::host_check())
        .attach(security::secret_key_check())
        .attach(security::security_headers_fairing())
        .attach(Db::init())
        .attach(AdHoc::try_on_ignite("Migrations", db::migrate))
        .attach(rango::fairing())
        .attach(Sessions::fairing(stores::factory()))
        // After the sessions: its `Cache-Control` replaces their `private`.
        .attach(accounts::never_cache::fairing())
        .attach(Template::fairing())
        .attach(AdHoc::try_on_ignite("Static files", mount_static_files))
        .mount("/", rango::routes())
        .mount("/", accounts::routes())
        .mount("/", urls::routes())
        .register("/", error::catchers())
        .register("/", accounts::catchers())
}

/// Serves `/static` from the `static_dir` setting: a path relative to the Rocket.toml that sets
/// it (as `template_dir`), or to the working directory when no file does (default `static`).
/// Never the build directory: the binary serves its files wherever it is installed.
async fn mount_static_files(rocket: Rocket<Build>) -> rocket::fairing::Result {
    let dir = match rocket
        .figment()
        .extract_inner::<RelativePathBuf>("static_dir")
    {
        Ok(dir) => dir.relative(),
        Err(e) if e.missing() => "static".into(),
        Err(e) => {
            log::error!("invalid setting static_dir: {e}");
            return Err(rocket);
        }
    };
    if !dir.is_dir() {
        log::error!(
            "static_dir {} is not a directory: install the site's static/ folder there, or set \
             static_dir (ROCKET_STATIC_DIR) to where it is",
            dir.display()
        );
        return Err(rocket);
    }
    Ok(rocket.mount("/static", FileServer::from(dir)))
}
