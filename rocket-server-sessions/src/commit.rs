//! The end of a request, top-down in Django's `SessionMiddleware.process_response` order:
//!
//! 1. no handler asked for the session → nothing (no store I/O, no cookie, no `Vary`);
//! 2. the session was used → `Vary: Cookie`;
//! 3. flushed (a logout) → its record is deleted, whatever the response;
//! 4. a 5xx response → nothing saved (Django: `status_code < 500`);
//! 5. emptied → record deleted and a removal cookie (if the browser sent one);
//! 6. changed, or due (`save_every_request`, a sliding renewal, a cycled key) → saved over the
//!    version loaded, merged over a concurrent save on conflict, and the cookie set (with
//!    `Cache-Control: private`, as on a removal cookie);
//!    a session deleted meanwhile is never brought back, nor carried to a cycled key (a 400,
//!    Django's `SessionInterrupted`);
//! 7. the store failed → a 503 page (a session too large for its store: a 500 page).
//!
//! The fairing calls [`finish`] after each response; the expiry arithmetic it uses lives on
//! [`Expiry`](crate::Expiry).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Cursor;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use rocket::http::{ContentType, Cookie, Header, SameSite, Status};
use rocket::tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use rocket::{Request, Response};
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::config::SessionConfig;
use crate::guard::{SessionManager, Slot};
use crate::handle::SessionState;
use crate::record::{self, Record};
use crate::store::{SessionStore, StoreError, Stored};

/// How many times a save reloads and merges before it gives up on a session that other requests
/// keep changing.
const MAX_MERGE_ATTEMPTS: u32 = 32;

/// Django's message for a session deleted under a request (`SessionInterrupted`).
const INTERRUPTED: &str = "The request's session was deleted before the request completed. \
     The user may have logged out in a concurrent request, for example.";

const UNAVAILABLE: &str = "The session store is unavailable, so this page could not be saved. \
     Please try again in a moment.";

/// Ends the request's session: what the fairing does after each response.
pub(crate) async fn finish<'r>(req: &'r Request<'_>, res: &mut Response<'r>) {
    let Some(manager) = req.rocket().state::<SessionManager>() else {
        return;
    };
    if !manager.config.enabled {
        return;
    }
    let (state, now) = match req.local_cache(|| Slot::Unused) {
        Slot::Unused => return,
        Slot::Failed => {
            add_vary_cookie(res);
            return;
        }
        Slot::Loaded(state) => {
            let now = OffsetDateTime::now_utc();
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.settled(&manager.config, now) {
                // The usual read: nothing to store and no cookie, whatever the response, so
                // the state stays where it is (BENCHMARKS.md, "What each change bought", 22).
                add_vary_cookie(res);
                return;
            }
            (std::mem::take(&mut *state), now)
        }
    };
    add_vary_cookie(res);
    if let Err((status, message)) = apply(state, manager, res, now).await {
        // No cookie either way: on a 400 the request that ended the session has already
        // told the browser, which may hold a newer session's cookie by now.
        replace_with_error(res, status, &message);
    }
}

/// Commits the session and adds its cookie; an `Err` is the status the response must take
/// and the message its page gives.
async fn apply(
    state: SessionState,
    manager: &SessionManager,
    res: &mut Response<'_>,
    now: OffsetDateTime,
) -> Result<(), (Status, String)> {
    let config = &manager.config;
    let server_error = res.status().class().is_server_error();
    let outcome = state
        .commit(manager.store.as_ref(), config, server_error, now)
        .await
        .map_err(|e| {
            log::error!("saving a session failed: {e}");
            match e {
                StoreError::TooLarge(why) => (
                    Status::InternalServerError,
                    format!("This page could not be saved: {why}."),
                ),
                _ => (Status::ServiceUnavailable, UNAVAILABLE.to_owned()),
            }
        })?;
    match outcome {
        Commit::Nothing => {}
        Commit::SetCookie { id, max_age } => {
            res.adjoin_header(manager.cookie_header.header(config, id, max_age, now));
            add_cache_control_private(res);
        }
        Commit::RemoveCookie => {
            res.adjoin_header(removal_cookie(config));
            add_cache_control_private(res);
        }
        Commit::Interrupted => {
            log::warn!("a session was deleted by a concurrent request before this one saved it");
            return Err((Status::BadRequest, INTERRUPTED.to_owned()));
        }
    }
    Ok(())
}

impl SessionState {
    /// Saves or deletes what this request did, by Django's middleware rules, and says which
    /// cookie the response needs.
    pub(crate) async fn commit(
        self,
        store: &dyn SessionStore,
        config: &SessionConfig,
        server_error: bool,
        now: OffsetDateTime,
    ) -> Result<Commit, StoreError> {
        // A flush is a logout: honoured whatever the response.
        for id in &self.flushed {
            store.delete(id).await?;
        }
        // A 5xx response leaves the session as it was (Django: `status_code < 500`).
        if server_error {
            return Ok(Commit::Nothing);
        }
        // Keys removed from a stored session are merged like any change (another request may
        // have added one meanwhile); a cleared, flushed or cycled session starts from nothing.
        let merges = self.id.is_some() && self.cycled_from.is_none() && !self.cleared;
        if self.data.is_empty() && !(merges && self.modified) {
            // An emptied session loses its row and its cookie; an untouched empty one gets none.
            for id in self.id.iter().chain(&self.cycled_from) {
                store.delete(id).await?;
            }
            return Ok(self.removal());
        }
        if !self.due(config, now) {
            return Ok(Commit::Nothing);
        }
        if record::depth(&self.data) > record::MAX_DEPTH {
            return Err(StoreError::TooLarge(format!(
                "the session's data nests deeper than {} levels, which could not be read back",
                record::MAX_DEPTH
            )));
        }
        let id = match &self.id {
            None => {
                // A cycled key carries the session over only if it is still there: one ended
                // meanwhile (a logout in another tab, "sign out" from another device) is never
                // brought back under a new key.
                if let Some(old) = &self.cycled_from {
                    if store.load(old).await?.is_none() {
                        return Ok(Commit::Interrupted);
                    }
                }
                let Stored { id, .. } = store
                    .create(&self.data, self.expiry_date(config, now))
                    .await?;
                if let Some(old) = &self.cycled_from {
                    store.delete(old).await?;
                }
                id
            }
            Some(id) => match self.save_merged(store, config, id, now).await? {
                Merged::Saved { id, empty: false } => id,
                Merged::Saved { id, empty: true } => {
                    // What this request removed was all there was, even after the merge.
                    store.delete(&id).await?;
                    return Ok(self.removal());
                }
                Merged::Gone => return Ok(Commit::Interrupted),
            },
        };
        let max_age = (!self.expire_at_browser_close(config)).then(|| self.expiry_age(config, now));
        Ok(Commit::SetCookie { id, max_age })
    }

    /// Whether the session is to be saved, emptiness aside: changed, or due (a cycled key,
    /// `save_every_request`, a sliding renewal).
    fn due(&self, config: &SessionConfig, now: OffsetDateTime) -> bool {
        self.modified
            || self.cycled_from.is_some()
            || config.save_every_request
            || self.sliding_due(config, now)
    }

    /// Whether [`commit`](Self::commit) would answer [`Commit::Nothing`] without a word to the
    /// store, whatever the response: nothing flushed, nothing to delete, nothing due.
    pub(crate) fn settled(&self, config: &SessionConfig, now: OffsetDateTime) -> bool {
        self.flushed.is_empty() && !self.data.is_empty() && !self.due(config, now)
    }

    /// The cookie an empty session needs: a removal if the browser sent one, else none.
    fn removal(&self) -> Commit {
        if self.incoming {
            Commit::RemoveCookie
        } else {
            Commit::Nothing
        }
    }

    /// Saves over the loaded version; when another request saved first, reloads and applies
    /// this request's changes over what it stored. [`Merged::Gone`] when the session was
    /// deleted or expired meanwhile: it is never brought back.
    async fn save_merged(
        &self,
        store: &dyn SessionStore,
        config: &SessionConfig,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Merged, StoreError> {
        let mut record = Record {
            data: self.data.clone(),
            expires: self.expiry_date(config, now),
            version: self.version,
        };
        // Only a renewal (sliding expiry): once another request has renewed the session, this
        // one has nothing left to write.
        let renewal_only =
            !self.modified && self.cycled_from.is_none() && !config.save_every_request;
        let mut turn = None;
        for _ in 0..MAX_MERGE_ATTEMPTS {
            if let Some(Stored { id, .. }) = store.update(id, &record).await? {
                let empty = record.data.is_empty();
                return Ok(Merged::Saved { id, empty });
            }
            if turn.is_none() {
                turn = Some(MergeTurn::take(id).await);
            }
            let Some(stored) = store.load(id).await? else {
                return Ok(Merged::Gone);
            };
            let merged = SessionState {
                data: self.merge_into(stored.data),
                stored_expires: Some(stored.expires),
                ..SessionState::default()
            };
            if renewal_only && !merged.sliding_due(config, now) {
                let empty = merged.data.is_empty();
                return Ok(Merged::Saved {
                    id: id.to_owned(),
                    empty,
                });
            }
            record = Record {
                expires: merged.expiry_date(config, now),
                data: merged.data,
                version: stored.version,
            };
        }
        Err(StoreError::Contention(MAX_MERGE_ATTEMPTS))
    }
}

/// The sessions whose lost saves are being retried in this process, each with its turn.
static MERGING: LazyLock<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>> =
    LazyLock::new(Mutex::default);

/// A save that lost to a concurrent one retries in its turn: one retry loop per session at a
/// time in this process. Without turns, requests that keep changing one session at once (on a
/// busy pool, where the reload and the retry each wait for a connection, so the gap between
/// them is wide) lose their attempts to each other's retries until one gives up; with them, a
/// retry competes only with first attempts (and other instances).
struct MergeTurn {
    id: String,
    lock: Arc<AsyncMutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl MergeTurn {
    async fn take(id: &str) -> MergeTurn {
        let lock = MERGING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.to_owned())
            .or_default()
            .clone();
        MergeTurn {
            id: id.to_owned(),
            guard: Some(lock.clone().lock_owned().await),
            lock,
        }
    }
}

impl Drop for MergeTurn {
    fn drop(&mut self) {
        self.guard.take();
        let mut merging = MERGING.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the map and this turn hold it: no one else waits, so forget the session.
        if Arc::strong_count(&self.lock) == 2 {
            merging.remove(&self.id);
        }
    }
}

/// How a merged save ended.
enum Merged {
    /// Stored under `id`; `empty` when nothing is left in it.
    Saved { id: String, empty: bool },
    /// The session was deleted (or expired) meanwhile.
    Gone,
}

/// What the response needs after a commit.
#[derive(Debug, PartialEq)]
pub(crate) enum Commit {
    /// No cookie.
    Nothing,
    /// Send the session's cookie: persistent with this `Max-Age`, or for the browser session.
    SetCookie {
        id: String,
        max_age: Option<Duration>,
    },
    /// Tell the browser to drop its cookie.
    RemoveCookie,
    /// The session was ended by a concurrent request before this one saved.
    Interrupted,
}

fn base_cookie(config: &SessionConfig, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::build((config.cookie_name.clone(), value))
        .path(config.cookie_path.clone())
        .http_only(config.cookie_http_only)
        .secure(config.cookie_secure)
        .same_site(config.same_site().unwrap_or(SameSite::Lax))
        .build();
    if let Some(domain) = &config.cookie_domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

/// The session cookie's `Set-Cookie` header, its constant part formatted once at ignite by the
/// `cookie` crate, as Rocket would format it: a response writes only the key, `Max-Age` and
/// `Expires`. Rocket's own conversion (`From<Cookie> for Header`) runs every attribute through
/// the `cookie` crate's percent-encoding `Display` and `Expires` through `time`'s format
/// descriptions: this saves about 6,000 instructions a saved session, a tenth of what a save
/// adds to a request (BENCHMARKS.md, "What each change bought", 21). A value or name that
/// percent-encoding would change (a sealed session) takes Rocket's way; a unit test checks that
/// both give the same header.
pub(crate) struct CookieHeader {
    /// `name=`: `None` when percent-encoding changes the name.
    head: Option<String>,
    /// What follows the value, but `Max-Age` and `Expires`: `; HttpOnly; SameSite=Lax; Path=/`.
    attributes: String,
}

impl CookieHeader {
    pub(crate) fn new(config: &SessionConfig) -> CookieHeader {
        let formatted = base_cookie(config, String::new()).encoded().to_string();
        let head = format!("{}=", config.cookie_name);
        match formatted.strip_prefix(&head) {
            Some(attributes) => CookieHeader {
                attributes: attributes.to_owned(),
                head: Some(head),
            },
            None => CookieHeader {
                head: None,
                attributes: String::new(),
            },
        }
    }

    /// The session's cookie, as [`session_cookie`] would make it.
    fn header(
        &self,
        config: &SessionConfig,
        id: String,
        max_age: Option<Duration>,
        now: OffsetDateTime,
    ) -> Header<'static> {
        // A value of letters and digits only (a session key): percent-encoding leaves it as is.
        let head = match self.head.as_deref() {
            Some(head) if id.bytes().all(|b| b.is_ascii_alphanumeric()) => head,
            _ => return session_cookie(config, id, max_age, now).into(),
        };
        let mut value = String::with_capacity(head.len() + id.len() + self.attributes.len() + 64);
        value.push_str(head);
        value.push_str(&id);
        value.push_str(&self.attributes);
        if let Some(age) = max_age {
            let age = age.max(Duration::ZERO);
            let _ = write!(value, "; Max-Age={}; Expires=", age.whole_seconds());
            push_http_date(&mut value, record::after(now, age));
        }
        Header::new("Set-Cookie", value)
    }
}

/// Writes `at` as the `cookie` crate writes `Expires` (`Thu, 01 Jan 1970 00:00:00 GMT`).
fn push_http_date(out: &mut String, at: OffsetDateTime) {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let push2 = |out: &mut String, n: u8| {
        out.push(char::from(b'0' + n / 10));
        out.push(char::from(b'0' + n % 10));
    };
    let at = at.to_offset(UtcOffset::UTC);
    let (year, month, day) = at.to_calendar_date();
    out.push_str(DAYS[usize::from(at.weekday().number_days_from_monday())]);
    out.push_str(", ");
    push2(out, day);
    out.push(' ');
    out.push_str(MONTHS[usize::from(u8::from(month) - 1)]);
    let _ = write!(out, " {year} ");
    let (hour, minute, second) = at.to_hms();
    push2(out, hour);
    out.push(':');
    push2(out, minute);
    out.push(':');
    push2(out, second);
    out.push_str(" GMT");
}

/// The session's cookie: with `Max-Age` and a matching `Expires` when persistent, with neither
/// when it ends with the browser.
fn session_cookie(
    config: &SessionConfig,
    id: String,
    max_age: Option<Duration>,
    now: OffsetDateTime,
) -> Cookie<'static> {
    let mut cookie = base_cookie(config, id);
    if let Some(age) = max_age {
        let age = age.max(Duration::ZERO);
        cookie.set_max_age(age);
        cookie.set_expires(record::after(now, age));
    }
    cookie
}

/// The cookie that makes the browser drop the session cookie: same name, path, domain and
/// attributes, empty, `Max-Age=0` and `Expires` at the epoch.
fn removal_cookie(config: &SessionConfig) -> Cookie<'static> {
    let mut cookie = base_cookie(config, String::new());
    cookie.set_max_age(Duration::ZERO);
    cookie.set_expires(OffsetDateTime::UNIX_EPOCH);
    cookie
}

/// Adds `Cookie` to the response's `Vary` header (caches must not share a session's page).
fn add_vary_cookie(res: &mut Response<'_>) {
    // The usual case, a response without `Vary`, allocates nothing and looks the name up once:
    // the few headers are walked rather than the name hashed (SipHash, a byte at a time).
    if !res.headers().iter().any(|header| header.name == "Vary") {
        res.set_raw_header("Vary", "Cookie");
        return;
    }
    let existing: Vec<String> = res.headers().get("Vary").map(str::to_owned).collect();
    let covered = existing.iter().flat_map(|v| v.split(',')).any(|v| {
        let v = v.trim();
        v == "*" || v.eq_ignore_ascii_case("cookie")
    });
    if covered {
        return;
    }
    let mut parts = existing;
    parts.push("Cookie".into());
    res.set_raw_header("Vary", parts.join(", "));
}

/// Marks a response that sets or removes the session cookie `Cache-Control: private`: a shared
/// cache must never keep one visitor's `Set-Cookie` for another. What the handler set stays,
/// but `public`, which would contradict it; `no-store` and `private` already say enough.
fn add_cache_control_private(res: &mut Response<'_>) {
    // As in `add_vary_cookie`: the headers walked, not the name hashed, in the usual case.
    if !res
        .headers()
        .iter()
        .any(|header| header.name == "Cache-Control")
    {
        res.set_raw_header("Cache-Control", "private");
        return;
    }
    let Some(existing) = res.headers().get_one("Cache-Control") else {
        return;
    };
    let directives: Vec<&str> = existing
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !d.eq_ignore_ascii_case("public"))
        .collect();
    let enough = directives.iter().any(|d| {
        let name = d.split('=').next().unwrap_or(d).trim();
        name.eq_ignore_ascii_case("private") || name.eq_ignore_ascii_case("no-store")
    });
    let mut merged = directives.join(", ");
    if !enough {
        merged = if merged.is_empty() {
            "private".to_owned()
        } else {
            format!("private, {merged}")
        };
    }
    res.set_raw_header("Cache-Control", merged);
}

/// Replaces the response by a small page: the handler's own page is not what happened.
fn replace_with_error(res: &mut Response<'_>, status: Status, message: &str) {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{code} {reason}</title></head>\n<body><h1>{code} {reason}</h1>\n<p>{message}</p>\
         </body></html>\n",
        code = status.code,
        reason = status.reason_lossy(),
    );
    res.set_status(status);
    res.set_header(ContentType::HTML);
    res.set_sized_body(body.len(), Cursor::new(body));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    use crate::store::{Census, ClearInBatches, UserIndex};

    /// A store that refuses every call: a commit that asks it anything fails.
    struct Refusing;

    fn refused<T>() -> Result<T, StoreError> {
        Err(StoreError::Contention(0))
    }

    #[rocket::async_trait]
    impl SessionStore for Refusing {
        async fn load(&self, _: &str) -> Result<Option<Record>, StoreError> {
            refused()
        }
        async fn create(&self, _: &record::Data, _: OffsetDateTime) -> Result<Stored, StoreError> {
            refused()
        }
        async fn update(&self, _: &str, _: &Record) -> Result<Option<Stored>, StoreError> {
            refused()
        }
        async fn delete(&self, _: &str) -> Result<(), StoreError> {
            refused()
        }
        async fn clear_expired(&self) -> Result<u64, StoreError> {
            refused()
        }
        fn expires_by_itself(&self) -> bool {
            false
        }
        fn batches(&self) -> Option<&dyn ClearInBatches> {
            None
        }
        fn census(&self) -> Option<&dyn Census> {
            None
        }
        fn user_index(&self) -> Option<&dyn UserIndex> {
            None
        }
        async fn describe(&self) -> Result<String, StoreError> {
            refused()
        }
    }

    /// The fairing leaves a settled session where it is: so a settled session must be one that
    /// `commit` ends with no cookie and no word to the store, whatever the response; and the
    /// usual read (a session loaded, read, not due for renewal) is settled.
    #[rocket::async_test]
    async fn a_settled_session_is_one_commit_leaves_alone() {
        let now = OffsetDateTime::from_unix_timestamp(1_765_000_000).expect("a time");
        let data = |pairs: &[(&str, Value)]| -> Arc<record::Data> {
            Arc::new(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            )
        };
        let datas = [
            data(&[]),
            data(&[("visits", 3.into())]),
            data(&[("visits", 3.into()), (record::EXPIRY_KEY, 60.into())]),
            data(&[("visits", 3.into()), (record::EXPIRY_KEY, 0.into())]),
        ];
        let mut settled = 0;
        for (sliding, every_request) in [(false, false), (true, false), (true, true)] {
            let config = SessionConfig {
                sliding_expiry: sliding,
                save_every_request: every_request,
                ..SessionConfig::default()
            };
            // Renewed a moment ago, or with a fifth of its age left.
            let stored = [
                now + config.age(),
                now + config.age() / 5,
                now + Duration::seconds(10),
            ];
            for data in &datas {
                for expires in stored {
                    for loaded in [true, false] {
                        for change in 0..4 {
                            let mut state = SessionState::new(loaded.then(|| {
                                let record = Record {
                                    data: Arc::clone(data),
                                    expires,
                                    version: 1,
                                };
                                ("a-key".to_owned(), record)
                            }));
                            match change {
                                1 => state.set("visits", 4.into()),
                                2 => state.cycle_key(),
                                3 => state.flush(),
                                _ => {}
                            }
                            if !state.settled(&config, now) {
                                continue;
                            }
                            settled += 1;
                            for server_error in [false, true] {
                                let commit = std::mem::take(&mut state)
                                    .commit(&Refusing, &config, server_error, now)
                                    .await;
                                assert!(matches!(commit, Ok(Commit::Nothing)), "{commit:?}");
                            }
                        }
                    }
                }
            }
        }
        assert!(settled > 0);
        let read = SessionState::new(Some((
            "a-key".to_owned(),
            Record {
                data: Arc::clone(&datas[1]),
                expires: now + SessionConfig::default().age(),
                version: 1,
            },
        )));
        for sliding_expiry in [false, true] {
            let config = SessionConfig {
                sliding_expiry,
                ..SessionConfig::default()
            };
            assert!(read.settled(&config, now), "the usual read is settled");
        }
    }

    /// The header built from the parts formatted once is the one Rocket makes of the cookie,
    /// whatever the settings, the key and the expiry.
    #[test]
    fn the_cookie_header_is_the_one_rocket_would_send() {
        let configs = [
            SessionConfig::default(),
            SessionConfig {
                cookie_secure: true,
                cookie_http_only: false,
                cookie_same_site: "Strict".into(),
                ..SessionConfig::default()
            },
            SessionConfig {
                cookie_domain: Some("example.com".into()),
                cookie_path: "/app/".into(),
                ..SessionConfig::default()
            },
            SessionConfig {
                cookie_same_site: "None".into(),
                cookie_name: "my_session".into(),
                ..SessionConfig::default()
            },
            // A name percent-encoding changes: Rocket's way.
            SessionConfig {
                cookie_name: "my%session".into(),
                ..SessionConfig::default()
            },
        ];
        let now = OffsetDateTime::from_unix_timestamp(1_765_000_000).expect("a time");
        let ages = [
            None,
            Some(Duration::ZERO),
            Some(Duration::seconds(-5)),
            Some(Duration::seconds(1_209_600)),
            Some(Duration::milliseconds(86_400_500)),
            Some(Duration::days(365 * 9000)),
        ];
        let values = ["abc123xyz", "", "sealed+value/with=", "a b"];
        for config in &configs {
            let header = CookieHeader::new(config);
            for age in ages {
                for value in values {
                    let ours = header.header(config, value.to_owned(), age, now);
                    let rockets: Header<'static> =
                        session_cookie(config, value.to_owned(), age, now).into();
                    assert_eq!(ours.value(), rockets.value(), "{age:?} {value}");
                    assert_eq!(ours.name(), rockets.name());
                }
            }
        }
        // The days of the week and the months, one date of each.
        let config = SessionConfig::default();
        let header = CookieHeader::new(&config);
        for day in 0..400 {
            let age = Some(Duration::days(day) + Duration::seconds(day * 3_671));
            let ours = header.header(&config, "k".into(), age, now);
            let rockets: Header<'static> = session_cookie(&config, "k".into(), age, now).into();
            assert_eq!(ours.value(), rockets.value());
        }
    }
}
