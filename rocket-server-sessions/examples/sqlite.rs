//! Step two on SQLite: sessions in a database file of `rocket_db_pools`.
//!
//!     cargo run -p rocket-server-sessions --example sqlite --features sqlite
//!
//! then open <http://127.0.0.1:8000/> and reload: the count survives a restart. It needs no
//! setting at all: the database is `sessions.sqlite3` in the working directory, made at the
//! first launch. The same in `Rocket.toml` (which overrides it, as `ROCKET_DATABASES` does):
//!
//! ```toml
//! [default.databases.sessions]
//! url = "sqlite://sessions.sqlite3?mode=rwc"
//! ```

use rocket::figment::Figment;
use rocket::{get, launch, routes};
use rocket_db_pools::Database;
use rocket_server_sessions::{Backends, Session, Sessions};

/// The database, as `rocket_db_pools` names it: `[default.databases.sessions]`.
#[derive(Database)]
#[database("sessions")]
struct Db(sqlx::SqlitePool);

#[get("/")]
fn index(session: Session<'_>) -> String {
    let visits: u64 = session.get("visits").unwrap_or(0) + 1;
    session.insert("visits", visits).ok();
    format!("{visits} visits, kept in SQLite.\n")
}

#[launch]
fn rocket() -> _ {
    // Rocket's own configuration (Rocket.toml, ROCKET_*), over this example's default URL.
    let figment = Figment::from(rocket::Config::figment()).join((
        "databases.sessions.url",
        "sqlite://sessions.sqlite3?mode=rwc",
    ));
    rocket::custom(figment)
        .attach(Db::init())
        .attach(Sessions::fairing(Backends::new().database::<Db>()))
        .mount("/", routes![index])
}
