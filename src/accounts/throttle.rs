//! Throttling of failed attempts: at login, at registration and at the password change's
//! old-password check.
//!
//! Failures are counted in the site's database (table `throttle`), which every server of the
//! site shares, under two keys: the username tried (`user:` and its unique form, counted
//! whether or not such a user exists, so a lock tells nothing about who is registered) and
//! the client's address (`addr:`; an IPv6 address by its /64, what one machine is given).
//! Each key counts its failures in a window that opens at its first failure and lasts
//! `rango.throttle_window` seconds (900). A key with `rango.failures_per_user` failures (10)
//! or, for an address, `rango.failures_per_address` (50) in its window is *locked* until the
//! window closes: every attempt under it is answered `429 Too Many Requests` with
//! `Retry-After`, before any password is checked, so the right password is refused too and a
//! guesser cannot learn when it guessed right. Attempts refused so are not counted: the lock
//! ends when the window does. A successful login clears its username's count; successes are
//! never counted, so one person signing in from many devices is never limited. Each window
//! that opens deletes the closed ones, so the table holds only the last window's keys.
//!
//! Registration counts against the address only: counting refused registrations against the
//! username tried would let anyone lock a user out by registering their name ten times.
//!
//! The client's address is the connection's peer unless `rango.trusted_proxy` says a proxy in
//! front sets the header Rocket's `ip_header` names (`X-Real-IP`), as README's nginx block
//! does; trusting it without a proxy would let each attempt name an address of its choosing.
//! `rango user unlock` clears a count by hand.

use std::net::IpAddr;

use rocket::request::{FromRequest, Outcome, Request};
use time::OffsetDateTime;

use crate::db::DbPool;
use crate::on_pool;
use crate::rango::RangoConfig;

/// The client address of a request, as the throttle keys it (see the module's notes on
/// `rango.trusted_proxy`); `None` when the request has none (Rocket's local client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<IpAddr>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ClientAddress {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let trusted = req
            .rocket()
            .state::<RangoConfig>()
            .is_some_and(|config| config.trusted_proxy);
        let address = if trusted {
            req.real_ip().or_else(|| req.remote().map(|peer| peer.ip()))
        } else {
            req.remote().map(|peer| peer.ip())
        };
        Outcome::Success(ClientAddress(address))
    }
}

/// The keys an attempt is counted under, and each key's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys(Vec<(String, u32)>);

impl Keys {
    /// The keys of an attempt for `username` (none: registration) from `address`.
    pub fn of(config: &RangoConfig, username: Option<&str>, address: ClientAddress) -> Self {
        let mut keys = Vec::new();
        if let Some(username) = username {
            keys.push((user_key(username), config.failures_per_user));
        }
        if let Some(address) = address.0 {
            keys.push((address_key(address), config.failures_per_address));
        }
        Keys(keys)
    }
}

/// The key of `username`: its unique form (as the users table keys it), cut to the longest
/// username so that a made-up one cannot fill the table with long keys.
pub fn user_key(username: &str) -> String {
    let unique = super::users::username_key(username);
    let cut: String = unique
        .chars()
        .take(super::users::MAX_USERNAME_LEN)
        .collect();
    format!("user:{cut}")
}

/// The key of `address`: an IPv4 address whole, an IPv6 address by its /64.
pub fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => format!("addr:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("addr:{v4}"),
            None => {
                let s = v6.segments();
                format!("addr:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Seconds until the lock on any of `keys` ends, if one is locked now.
///
/// # Errors
/// The database fails.
pub async fn locked(
    db: &DbPool,
    config: &RangoConfig,
    keys: &Keys,
) -> Result<Option<u64>, sqlx::Error> {
    let now = now();
    let window = i64::try_from(config.throttle_window).unwrap_or(i64::MAX);
    let mut wait = None;
    for (key, limit) in &keys.0 {
        let row: Option<(i64, i64)> = on_pool!(db, pool => sqlx::query_as(
            "SELECT failures, since FROM throttle WHERE key = $1"
        )
        .bind(key)
        .fetch_optional(pool)
        .await)?;
        if let Some(left) =
            row.and_then(|(failures, since)| lock_left(failures, since, *limit, window, now))
        {
            wait = wait.max(Some(left));
        }
    }
    Ok(wait)
}

/// Counts a failed attempt under every key; seconds until the lock ends if this failure
/// locked one (it is answered as a locked attempt would be).
///
/// # Errors
/// The database fails.
pub async fn failed(
    db: &DbPool,
    config: &RangoConfig,
    keys: &Keys,
) -> Result<Option<u64>, sqlx::Error> {
    let now = now();
    let window = i64::try_from(config.throttle_window).unwrap_or(i64::MAX);
    let mut wait = None;
    for (key, limit) in &keys.0 {
        // One statement: two servers counting at once both count. A window that closed
        // starts again at this failure.
        let (failures, since): (i64, i64) = on_pool!(db, pool => sqlx::query_as(
            "INSERT INTO throttle (key, failures, since) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET \
             failures = CASE WHEN throttle.since <= $3 THEN 1 ELSE throttle.failures + 1 END, \
             since = CASE WHEN throttle.since <= $3 THEN $2 ELSE throttle.since END \
             RETURNING failures, since"
        )
        .bind(key)
        .bind(now)
        .bind(now.saturating_sub(window))
        .fetch_one(pool)
        .await)?;
        if let Some(left) = lock_left(failures, since, *limit, window, now) {
            wait = wait.max(Some(left));
        }
        if failures == 1 {
            // A window opened: the table keeps no closed one (once a window, by an index).
            clear_closed(db, config.throttle_window).await?;
        }
    }
    Ok(wait)
}

/// Clears the count of `key` (a successful login clears its username's; `rango user unlock`
/// any); whether there was one.
///
/// # Errors
/// The database fails.
pub async fn clear(db: &DbPool, key: &str) -> Result<bool, sqlx::Error> {
    let cleared = on_pool!(db, pool => sqlx::query("DELETE FROM throttle WHERE key = $1")
        .bind(key)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
    Ok(cleared > 0)
}

/// Deletes the counts whose window closed; how many.
///
/// # Errors
/// The database fails.
pub async fn clear_closed(db: &DbPool, window: u64) -> Result<u64, sqlx::Error> {
    let cutoff = now().saturating_sub(i64::try_from(window).unwrap_or(i64::MAX));
    on_pool!(db, pool => sqlx::query("DELETE FROM throttle WHERE since <= $1")
        .bind(cutoff)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
}

/// Seconds left of the lock of a key with `failures` since `since`, if it is locked at `now`.
fn lock_left(failures: i64, since: i64, limit: u32, window: i64, now: i64) -> Option<u64> {
    let ends = since.saturating_add(window);
    (failures >= i64::from(limit) && now < ends).then(|| u64::try_from(ends - now).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_locks_at_its_limit_until_its_window_closes() {
        assert_eq!(lock_left(9, 100, 10, 900, 200), None);
        assert_eq!(lock_left(10, 100, 10, 900, 200), Some(800));
        assert_eq!(lock_left(12, 100, 10, 900, 999), Some(1));
        assert_eq!(lock_left(10, 100, 10, 900, 1000), None, "the window closed");
    }

    #[test]
    fn usernames_key_by_their_unique_form_and_addresses_v6_by_their_64() {
        assert_eq!(user_key("Ann"), user_key("ANN"));
        assert_eq!(user_key(&"a".repeat(10_000)).len(), "user:".len() + 150);
        let v6 = |s: &str| address_key(s.parse().expect("an address"));
        assert_eq!(v6("2001:db8:1:2:aaaa::1"), v6("2001:db8:1:2:bbbb::9"));
        assert_ne!(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
        assert_eq!(v6("::ffff:192.0.2.7"), v6("192.0.2.7"));
    }
}
