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
//! or `ROCKET_SESSION='{redis={url="redis://127.0.0.1:6379/1"}}'`.

use rocket::{get, launch, routes};
use rocket_server_sessions::{Session, Sessions};

#[get("/")]
fn index(session: Session<'_>) -> String {
    let visits: u64 = session.get("visits").unwrap_or(0) + 1;
    session.insert("visits", visits).ok();
    format!("{visits} visits, kept in Redis.\n")
}

#[launch]
fn rocket() -> _ {
    rocket::build()
        .attach(Sessions::on_redis())
        .mount("/", routes![index])
}
