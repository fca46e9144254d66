//! `rango user list` and `rango user sessions USERNAME [--end-all]`: the accounts and their
//! signed-in sessions, as the "your sessions" page shows them, for an operator; `rango user
//! unlock` clears the count of failed attempts that locks a username or an address.

use std::net::IpAddr;

use super::{shown, Context, Error, Result};
use crate::accounts::{devices, throttle, users};

/// Prints every user: id, username, e-mail, when they registered.
///
/// # Errors
/// The database cannot be opened or is not migrated.
pub async fn list(context: &Context) -> Result {
    let db = context.migrated_pool().await?;
    let all = users::all(&db).await?;
    if all.is_empty() {
        println!("No users.");
    }
    for user in all {
        println!(
            "{}\t{}\t{}\tjoined {}",
            user.id,
            shown(&user.username),
            shown(&user.email),
            user.date_joined
        );
    }
    Ok(())
}

/// The most sessions `user sessions` lists (a user has at most `rango.max_sessions_per_user`,
/// 50 by default, unless sessions made before the cap remain).
const LISTED: usize = 1000;

/// Prints the signed-in sessions of `username` (newest first), and with `end_all` signs every
/// one of them out: on every store by a new session generation, and on the stores that list
/// sessions by deleting them too (cached_db: burying their copies in Redis; a warning on
/// stderr says what it could not bury, and until when a server may serve it).
///
/// # Errors
/// No such user; the database or the store cannot be reached.
pub async fn sessions(context: &Context, username: &str, end_all: bool) -> Result {
    let db = context.migrated_pool().await?;
    let user = users::by_username(&db, username)
        .await?
        .ok_or_else(|| Error::NoSuchUser(username.to_owned()))?;
    let config = context.session_config()?;
    let maintenance = context.store(&config).await?;
    let store = &maintenance.store;
    match devices::devices(store.as_ref(), &config, &user, None, LISTED).await? {
        Some(devices) if devices.is_empty() => {
            println!("{} has no session.", shown(&user.username));
        }
        Some(devices) => {
            for device in devices {
                println!(
                    "{}\tsigned in {}\tlast active {}\t{} on {}",
                    device.id,
                    device.started,
                    if device.last_active.is_empty() {
                        "-"
                    } else {
                        &device.last_active
                    },
                    shown(&device.browser),
                    shown(&device.system)
                );
            }
        }
        None => println!(
            "session.backend = \"{}\": this store cannot list sessions.",
            config.backend
        ),
    }
    if end_all {
        users::next_generation(&db, &user).await?;
        let ended = devices::end_others(store.as_ref(), &user, None, LISTED).await?;
        println!(
            "Signed out every session of {} ({ended} deleted from the store).",
            shown(&user.username)
        );
        if let Some(left) = maintenance.left_behind() {
            eprintln!("rango: warning: {left}");
        }
    }
    Ok(())
}

/// Clears the failed attempts counted against `username` and, or, `address`, unlocking them
/// before their window closes (what the 429 page's `Retry-After` says).
///
/// # Errors
/// The database cannot be opened or is not migrated.
pub async fn unlock(context: &Context, username: Option<&str>, address: Option<IpAddr>) -> Result {
    let db = context.migrated_pool().await?;
    let mut keys = Vec::new();
    if let Some(username) = username {
        keys.push((throttle::user_key(username), shown(username)));
    }
    if let Some(address) = address {
        keys.push((throttle::address_key(address), address.to_string().into()));
    }
    for (key, name) in keys {
        if throttle::clear(&db, &key).await? {
            println!("Unlocked {name}: its failed attempts are forgotten.");
        } else {
            println!("{name} had no failed attempts counted.");
        }
    }
    Ok(())
}
