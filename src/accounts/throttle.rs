//! Throttling of failed attempts: at login, at registration and at the password change's
//! old-password check.
//!
//! Failures are counted in the site's database (table `throttle`), which every server of the
//! site shares, under two keys: the username tried (`user:` and its unique form, counted
//! whether or not such a user exists, so a lock tells nothing about who is registered) and
//! the client's address (`addr:`; an IPv6 address by its /64, what one machine is given).
//! Each failure is a row (key, time), and a key counts those of the last
//! `rango.throttle_window` seconds (900): a sliding window, so any 10 failures within 15
//! minutes lock, however they fall. An attempt is counted *before* its password is checked
//! ([`admit`]), so that attempts in flight at once (on one server or several) count too, and a
//! key with `rango.failures_per_user` failures (10) or, for an address,
//! `rango.failures_per_address` (50) in the window is *locked*: the attempt that makes the
//! limit, and every attempt after it until the oldest of those failures leaves the window, is
//! answered `429 Too Many Requests` with `Retry-After`, the later ones before any password is
//! checked, so the right password is refused too and a guesser cannot learn when it guessed
//! right. Refused attempts count nothing (the lock ends on time, and a flood of them adds no
//! row). A success uncounts itself and clears its username's failures; so one person signing
//! in from many devices is never limited. Rows older than the window are deleted by every
//! attempt, so the table holds at most the limit per key and window.
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

/// An attempt admitted under its keys: its rows count as failures until it succeeds.
#[derive(Debug)]
pub struct Attempt {
    /// Each key's row for this attempt, and the key's limit.
    rows: Vec<(String, i64, u32)>,
}

/// Admits an attempt under `keys`, counting it as a failure before its password is checked
/// (so attempts in flight at once count too: no more than the limit are ever checked in a
/// window); or, when a key has its limit of failures in the window already, the seconds
/// until the oldest of them leaves it. A refused attempt counts nothing, so a lock ends on
/// time however hard it is hammered.
///
/// # Errors
/// The database fails.
pub async fn admit(
    db: &DbPool,
    config: &RangoConfig,
    keys: &Keys,
) -> Result<Result<Attempt, u64>, sqlx::Error> {
    let now = now();
    let window = i64::try_from(config.throttle_window).unwrap_or(i64::MAX);
    let mut attempt = Attempt { rows: Vec::new() };
    for (key, limit) in &keys.0 {
        match insert_below(db, key, now, now.saturating_sub(window), *limit).await? {
            Some(id) => attempt.rows.push((key.clone(), id, *limit)),
            None => {
                let wait = wait(db, key, now, window, *limit).await?;
                forget(db, &attempt).await?;
                return Ok(Err(wait));
            }
        }
    }
    Ok(Ok(attempt))
}

impl Attempt {
    /// The attempt failed: it stays counted. If a key now has its limit of failures in the
    /// window, the seconds until the oldest leaves it (the limit-th failure is answered as a
    /// locked attempt is).
    ///
    /// # Errors
    /// The database fails.
    pub async fn failed(
        self,
        db: &DbPool,
        config: &RangoConfig,
    ) -> Result<Option<u64>, sqlx::Error> {
        let now = now();
        let window = i64::try_from(config.throttle_window).unwrap_or(i64::MAX);
        let mut locked = None;
        for (key, _, limit) in &self.rows {
            let counted: Vec<(i64,)> = on_pool!(db, pool => sqlx::query_as(
                "SELECT COUNT(*) FROM throttle WHERE key = $1 AND at > $2"
            )
            .bind(key)
            .bind(now.saturating_sub(window))
            .fetch_all(pool)
            .await)?;
            if counted.first().is_some_and(|(n,)| *n >= i64::from(*limit)) {
                locked = locked.max(Some(wait(db, key, now, window, *limit).await?));
            }
        }
        Ok(locked)
    }

    /// The attempt succeeded: it does not count, and neither do the earlier failures of
    /// `username` (a successful login or old-password check clears its username's count).
    ///
    /// # Errors
    /// The database fails.
    pub async fn succeeded(self, db: &DbPool, username: Option<&str>) -> Result<(), sqlx::Error> {
        forget(db, &self).await?;
        if let Some(username) = username {
            clear(db, &user_key(username)).await?;
        }
        Ok(())
    }
}

/// Counts a failure for `key` at `now` if fewer than `limit` are counted since `cutoff`; its
/// row's id, or `None` when the key is locked. One statement on SQLite (which runs writes one
/// at a time); on PostgreSQL the key's advisory lock makes two servers' attempts take turns,
/// so that neither counts past the limit. Rows whose window closed are deleted first.
async fn insert_below(
    db: &DbPool,
    key: &str,
    now: i64,
    cutoff: i64,
    limit: u32,
) -> Result<Option<i64>, sqlx::Error> {
    const CLOSED: &str = "DELETE FROM throttle WHERE at <= $1";
    const INSERT: &str = "INSERT INTO throttle (key, at) SELECT $1, $2 \
         WHERE (SELECT COUNT(*) FROM throttle WHERE key = $1 AND at > $3) < $4 RETURNING id";
    let limit = i64::from(limit);
    let ids: Vec<(i64,)> = match db {
        DbPool::Sqlite(pool) => {
            sqlx::query(CLOSED).bind(cutoff).execute(pool).await?;
            sqlx::query_as(INSERT)
                .bind(key)
                .bind(now)
                .bind(cutoff)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
        DbPool::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(key)
                .execute(&mut *tx)
                .await?;
            sqlx::query(CLOSED).bind(cutoff).execute(&mut *tx).await?;
            let ids = sqlx::query_as(INSERT)
                .bind(key)
                .bind(now)
                .bind(cutoff)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            ids
        }
    };
    Ok(ids.first().map(|(id,)| *id))
}

/// Seconds until `key` has fewer than `limit` failures in the window: until its `limit`-th
/// newest leaves it (at least 1).
async fn wait(
    db: &DbPool,
    key: &str,
    now: i64,
    window: i64,
    limit: u32,
) -> Result<u64, sqlx::Error> {
    let nth: Vec<(i64,)> = on_pool!(db, pool => sqlx::query_as(
        "SELECT at FROM throttle WHERE key = $1 AND at > $2 ORDER BY at DESC LIMIT 1 OFFSET $3"
    )
    .bind(key)
    .bind(now.saturating_sub(window))
    .bind(i64::from(limit.saturating_sub(1)))
    .fetch_all(pool)
    .await)?;
    let ends = nth.first().map_or(now.saturating_add(window), |(at,)| {
        at.saturating_add(window)
    });
    Ok(u64::try_from(ends.saturating_sub(now)).unwrap_or(0).max(1))
}

/// Deletes the rows of `attempt`.
async fn forget(db: &DbPool, attempt: &Attempt) -> Result<(), sqlx::Error> {
    for (_, id, _) in &attempt.rows {
        on_pool!(db, pool => sqlx::query("DELETE FROM throttle WHERE id = $1")
            .bind(*id)
            .execute(pool)
            .await
            .map(drop))?;
    }
    Ok(())
}

/// Clears the failures counted under `key` (a successful login clears its username's;
/// `rango user unlock` any); whether there were any.
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

#[cfg(test)]
mod tests {
    use super::*;

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
