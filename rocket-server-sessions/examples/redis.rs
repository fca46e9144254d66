//! Step two on Redis: sessions in Redis, a near cache in front that other servers' changes
//! reach at once.
//!
//!     cargo run -p rocket-server-sessions --example redis --features redis
//!
//! then open <http://127.0.0.1:8000/> and reload: the count survives a restart. Redis is
//! `redis://127.0.0.1:6379/0` unless the settings say otherwise, in `Rocket.toml`:
//!
//! ```toml
//! [default.session.redis]
//! url = "redis://127.0.0.1:6379/0"
//! key_prefix = "session:"
//! ```
//!
//! or `ROCKET_SESSION='{redis={url="redis://127.0.0.1:6379/1"}}'`. The store is the one
//! `session.backend` names (`backend = "redis"`, this example's default): the same application
//! keeps its sessions in memory with `ROCKET_SESSION='{backend="memory"}'`.

use rocket::figment::Figment;
use rocket::{get, launch, routes};
use rocket_server_sessions::{Backends, Session, Sessions};

#[get("/")]
fn index(session: Session<'_>) -> String {
    let visits: u64 = session.get("visits").unwrap_or(0) + 1;
    session.insert("visits", visits).ok();
    format!("{visits} visits, kept in Redis.\n")
}

#[launch]
fn rocket() -> _ {
    // Rocket's own configuration (Rocket.toml, ROCKET_*), over this example's default store.
    let figment = Figment::from(rocket::Config::figment()).join(("session.backend", "redis"));
    rocket::custom(figment)
        .attach(Sessions::fairing(Backends::new()))
        .mount("/", routes![index])
}
