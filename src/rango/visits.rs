//! The book's `visitor_cookie_handler`: a visit count kept in the session, counted at most once
//! per visit interval.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use rocket_server_sessions::Session;

/// The session key of the visit count.
pub const VISITS: &str = "visits";
/// The session key of the last counted visit, an RFC 3339 timestamp.
pub const LAST_VISIT: &str = "last_visit";

/// Counts this request as a visit if it is the session's first or at least `interval` has
/// passed since the last counted one, and returns the count. Otherwise the session is left as
/// it is (no change, so no write).
///
/// # Errors
/// The timestamp cannot be formatted (only for dates beyond year 9999).
pub fn record_visit(
    session: &Session<'_>,
    interval: Duration,
    now: OffsetDateTime,
) -> Result<u64, time::error::Format> {
    let visits: u64 = session.get(VISITS).unwrap_or(0);
    let last_visit = session
        .get::<String>(LAST_VISIT)
        .and_then(|s| OffsetDateTime::parse(&s, &Rfc3339).ok());
    let due = match last_visit {
        Some(last) => now - last >= interval,
        None => true,
    };
    if visits > 0 && !due {
        return Ok(visits);
    }
    let visits = visits + 1;
    let stamp = now.format(&Rfc3339)?;
    // A u64 and a string always serialize.
    session.insert(VISITS, visits).ok();
    session.insert(LAST_VISIT, stamp).ok();
    Ok(visits)
}
