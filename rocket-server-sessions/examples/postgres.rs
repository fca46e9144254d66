//! Step two on PostgreSQL: sessions in a database of `rocket_db_pools`, the table made at the
//! first launch, a near cache in front that another server's changes reach at once.
//!
//!     ROCKET_DATABASES='{sessions={url="postgres://postgres@127.0.0.1:5432/postgres"}}' \
//!         cargo run -p rocket-server-sessions --example postgres --features postgres
//!
//! then open <http://127.0.0.1:8000/> and reload: the count survives a restart. The same in
//! `Rocket.toml`:
//!
//! ```toml
//! [default.databases.sessions]
//! url = "postgres://postgres@127.0.0.1:5432/postgres"
//! ```

use rocket::{get, launch, routes};
use rocket_db_pools::Database;
use rocket_server_sessions::{Backends, Session, Sessions};

/// The database, as `rocket_db_pools` names it: `[default.databases.sessions]`.
#[derive(Database)]
#[database("sessions")]
struct Db(sqlx::PgPool);

#[get("/")]
fn index(session: Session<'_>) -> String {
    let visits: u64 = session.get("visits").unwrap_or(0) + 1;
    session.insert("visits", visits).ok();
    format!("{visits} visits, kept in PostgreSQL.\n")
}

#[launch]
fn rocket() -> _ {
    rocket::build()
        .attach(Db::init())
        .attach(Sessions::fairing(Backends::new().database::<Db>()))
        .mount("/", routes![index])
}
