//! A visit counter in a server-side session: `cargo run -p rocket-server-sessions --example counter`
//! then open <http://127.0.0.1:8000/> and reload. `/forget` ends the session (a logout).
//!
//! Sessions live in memory here. For a real store, see the examples `sqlite`, `postgres` and
//! `redis` (`Sessions::fairing(Backends::new().database::<Db>())` on a `rocket_db_pools`
//! database, the store chosen by `session.backend`).

use rocket::response::Redirect;
use rocket::{get, launch, routes};
use rocket_server_sessions::stores::MemoryStore;
use rocket_server_sessions::{Session, Sessions};

/// The session's one key, owned by this handler module rather than scattered as strings.
const VISITS: &str = "visits";

#[get("/")]
fn index(session: Session<'_>) -> String {
    let visits: u64 = session.get(VISITS).unwrap_or(0) + 1;
    // A value that serializes to JSON always inserts.
    session.insert(VISITS, visits).ok();
    format!("You have been here {visits} time(s). Reload, or go to /forget.\n")
}

#[get("/forget")]
fn forget(session: Session<'_>) -> Redirect {
    session.flush();
    Redirect::to("/")
}

#[launch]
fn rocket() -> _ {
    rocket::build()
        .attach(Sessions::with_store(MemoryStore::new()))
        .mount("/", routes![index, forget])
}
