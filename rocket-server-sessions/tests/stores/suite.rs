//! The generic store suite: the rules of the `SessionStore` trait, one case per rule, checked
//! against every store through the trait alone.
//!
//! A case is a plain `async fn(&dyn SessionStore)` that panics when the store breaks its rule.
//! [`store_suite!`] stamps every case onto one backend as a `#[tokio::test]`:
//!
//! ```ignore
//! mod suite;
//! use suite::store_suite;
//!
//! store_suite!(memory, new_memory_store());
//! store_suite!(cookie, new_cookie_store(), skip {
//!     update_over_a_stale_version_is_refused_and_changes_nothing =>
//!         "the data travels in the cookie; the store cannot see a stale copy",
//! });
//! ```
//!
//! The constructor expression is awaited once per test and must give `(store, keep)`: an
//! *empty* store of its own (the counts in `clear_expired` cases are exact) and whatever must
//! outlive it (a `TempDir`, a container handle, `()`). A skipped case still shows in
//! `cargo test`, as ignored with its reason, and `cargo test -- --ignored` runs it to see
//! whether the store still fails it; a skip naming no case does not compile.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use rocket::futures::future::join_all;
use rocket::tokio::sync::Barrier;
use rocket_server_sessions::store::{
    Data, Record, SessionKey, SessionStore, Stored, UserIndex, UserSession,
};
use rocket_server_sessions::USER_KEY;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

/// Stamps every case of the suite onto one store, as module `$modname`.
///
/// `$make` is an expression whose value is a future of `(store, keep)`; it is evaluated inside
/// the generated module, which sees the invoking module's items (`use super::*`). A second arm
/// takes `skip { case => "reason", ... }` for the cases the store cannot honour.
macro_rules! store_suite {
    ($modname:ident, $make:expr $(,)?) => {
        store_suite!(@stamp $modname, $make, [], $);
    };
    ($modname:ident, $make:expr, skip { $($skip:ident => $reason:literal),* $(,)? } $(,)?) => {
        store_suite!(@stamp $modname, $make, [$($skip => $reason),*], $);
    };
    // `$d` is a literal `$`, so the inner macro below can have metavariables of its own.
    (@stamp $modname:ident, $make:expr, [$($skip:ident => $reason:literal),*], $d:tt) => {
        mod $modname {
            #[allow(unused_imports)]
            use super::*;

            // A skip must name a real case: a typo would otherwise silently run nothing.
            $(const _: () = {
                let _ = crate::suite::$skip;
            };)*

            macro_rules! case {
                // A skipped case is still compiled and can be run with `--ignored`, to see
                // whether the store still fails it.
                $(($skip) => { case!(@test $skip, #[ignore = $reason]); };)*
                ($d name:ident) => { case!(@test $d name,); };
                (@test $d name:ident, $d(#[$d attr:meta])?) => {
                    #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    $d(#[$d attr])?
                    async fn $d name() {
                        let Some((store, _keep)) =
                            crate::suite::Available::available($make.await)
                        else {
                            return; // the service is not configured; the constructor said so
                        };
                        crate::suite::$d name(&store).await;
                    }
                };
            }

            case!(load_of_an_unknown_key_is_none_and_creates_nothing);
            case!(load_of_a_malformed_id_is_none_and_never_panics);
            case!(update_of_an_unknown_or_malformed_id_is_refused_and_stores_nothing);
            case!(create_then_load_round_trips_the_data_the_expiry_and_version_one);
            case!(create_returns_distinct_well_formed_keys);
            case!(update_over_the_current_version_applies_and_bumps_it);
            case!(update_over_a_stale_version_is_refused_and_changes_nothing);
            case!(update_of_a_deleted_session_is_refused_and_never_brings_it_back);
            case!(delete_removes_the_session_and_is_idempotent);
            case!(session_created_already_expired_is_never_loaded);
            case!(session_is_no_longer_loaded_once_its_expiry_passes);
            case!(update_that_moves_the_expiry_into_the_past_hides_the_session);
            case!(clear_expired_deletes_exactly_the_expired_sessions_and_counts_them);
            case!(concurrent_updates_over_one_version_have_exactly_one_winner);
            case!(concurrent_saves_of_different_keys_all_survive_by_reload_and_retry);
            case!(concurrent_loads_of_many_sessions_each_get_their_own);
            case!(user_sessions_lists_exactly_the_live_sessions_of_the_user);
            case!(the_user_index_follows_saves_cycled_keys_and_deletions);
            case!(end_user_session_ends_only_a_session_of_that_user);
            case!(expired_and_cleared_sessions_leave_the_user_index);
            case!(user_sessions_lists_at_most_the_limit_those_expiring_last_first);
            case!(trim_user_sessions_ends_all_but_those_expiring_last);
            case!(census_counts_live_and_expired_sessions_and_inspects_expired_ones);
            case!(clearing_in_batches_clears_exactly_the_expired_and_reports_progress);
        }
    };
}

pub(crate) use store_suite;

/// What a suite's constructor may return: a store (and what must outlive it), or `None` for a
/// store on a service this run does not have.
pub trait Available<S, K> {
    /// The store, if there is one.
    fn available(self) -> Option<(S, K)>;
}

impl<S, K> Available<S, K> for (S, K) {
    fn available(self) -> Option<(S, K)> {
        Some(self)
    }
}

impl<S, K> Available<S, K> for Option<(S, K)> {
    fn available(self) -> Option<(S, K)> {
        self
    }
}

/// The JSON object `value` as session data.
fn data(value: Value) -> Data {
    match value {
        Value::Object(map) => map,
        other => panic!("session data must be a JSON object, not {other}"),
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn in_an_hour() -> OffsetDateTime {
    now() + Duration::hours(1)
}

/// A well-formed key that no store has issued.
fn unknown_key() -> String {
    SessionKey::generate().as_str().to_owned()
}

/// Ids that are not session keys: empty, too short, too long, wrong case, punctuation that
/// means something to cookies or SQL, NUL, non-ASCII.
fn malformed_ids() -> Vec<String> {
    vec![
        String::new(),
        "1".into(),
        "a".repeat(5000),
        "abcdefghijklmnopqrstuvwxyz01234".into(),   // 31
        "abcdefghijklmnopqrstuvwxyz0123456".into(), // 33
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345".into(),
        "abcdefghijklmnopqrstuvwxyz01234;".into(),
        "abcdefghijkl; path=/; HttpOnly45".into(),
        "abcdefghijklmnopqrstuvwxyz01234\0".into(),
        "\0".repeat(32),
        "abcdefghijklmnopqrstuvwxyz01234é".into(),
        "é".repeat(16), // 32 bytes, 16 characters
        "ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐ".into(),
        "' OR '1'='1' --                 ".into(),
        " abcdefghijklmnopqrstuvwxyz01234".into(),
    ]
}

async fn load(store: &dyn SessionStore, id: &str) -> Option<Record> {
    store.load(id).await.expect("load answers")
}

async fn create(store: &dyn SessionStore, data: &Data, expires: OffsetDateTime) -> String {
    let Stored { id, version } = store.create(data, expires).await.expect("create answers");
    assert_eq!(version, 1, "a new session is at version 1");
    id
}

async fn update(store: &dyn SessionStore, id: &str, record: &Record) -> Option<Stored> {
    store.update(id, record).await.expect("update answers")
}

/// The live record of `id`, which the case expects to be there.
async fn live(store: &dyn SessionStore, id: &str) -> Record {
    load(store, id)
        .await
        .unwrap_or_else(|| panic!("session {} should be live", &id[..4.min(id.len())]))
}

/// Asserts that nothing is stored under the well-formed `id`: it does not load, no update over
/// any early version applies, and the store has no expired record to clear either.
async fn assert_nothing_stored(store: &dyn SessionStore, id: &str) {
    assert_eq!(load(store, id).await, None);
    for version in 0..=2 {
        let record = Record {
            data: Arc::new(data(json!({"planted": true}))),
            expires: in_an_hour(),
            version,
        };
        assert_eq!(
            update(store, id, &record).await,
            None,
            "an update over version {version} applied, so a record was there"
        );
    }
    assert_eq!(load(store, id).await, None);
}

/// Rule: `load` of an unknown id is `Ok(None)` and creates nothing.
pub async fn load_of_an_unknown_key_is_none_and_creates_nothing(store: &dyn SessionStore) {
    let key = unknown_key();
    assert_eq!(load(store, &key).await, None);
    assert_eq!(
        load(store, &key).await,
        None,
        "a second load finds nothing either"
    );
    assert_nothing_stored(store, &key).await;
    assert_eq!(
        store.clear_expired().await.expect("clear_expired answers"),
        0,
        "the loads left no record behind, not even an expired one"
    );
}

/// Ids that come close to the live session `id` without being it: other case, padded, cut,
/// doubled, its digest in hex. A store must not normalize its way from one to the session.
fn near_misses(id: &str) -> Vec<String> {
    let Some(key) = SessionKey::parse(id) else {
        return Vec::new();
    };
    vec![
        id.to_uppercase(),
        format!("{id} "),
        format!(" {id}"),
        format!("{id}\0"),
        format!("{id};"),
        format!("{id}{id}"),
        id[..SessionKey::LEN - 1].to_owned(),
        key.digest_hex(),
    ]
}

/// Asserts the session `id` is still there, as created with `{"secret": 1}`.
async fn assert_untouched(store: &dyn SessionStore, id: &str) {
    let record = live(store, id).await;
    assert_eq!(
        *record.data,
        data(json!({"secret": 1})),
        "the real session is untouched"
    );
    assert_eq!(record.version, 1);
}

/// Rule: `load` of a malformed id is `Ok(None)`, never a panic nor an error, and `delete` of
/// one is `Ok(())`; neither reaches a stored session through a near miss of its id.
pub async fn load_of_a_malformed_id_is_none_and_never_panics(store: &dyn SessionStore) {
    let id = create(store, &data(json!({"secret": 1})), in_an_hour()).await;
    for bad in malformed_ids().iter().chain(&near_misses(&id)) {
        assert_eq!(load(store, bad).await, None, "load of {bad:?}");
        store
            .delete(bad)
            .await
            .unwrap_or_else(|e| panic!("delete of {bad:?} failed: {e}"));
    }
    assert_untouched(store, &id).await;
    assert_eq!(
        store.clear_expired().await.expect("clear_expired answers"),
        0,
        "the loads left no record behind"
    );
}

/// Rule: `update` applies only over a stored version, so an update of an unknown or malformed
/// id is `Ok(None)`: it neither creates a session nor reaches one through a near miss.
pub async fn update_of_an_unknown_or_malformed_id_is_refused_and_stores_nothing(
    store: &dyn SessionStore,
) {
    let id = create(store, &data(json!({"secret": 1})), in_an_hour()).await;
    let unknown = unknown_key();
    for bad in malformed_ids()
        .iter()
        .chain(&near_misses(&id))
        .chain([&unknown])
    {
        for version in [0, 1, 2] {
            let record = Record {
                data: Arc::new(data(json!({"planted": true}))),
                expires: in_an_hour(),
                version,
            };
            assert_eq!(
                update(store, bad, &record).await,
                None,
                "update of {bad:?} over version {version}"
            );
        }
    }
    assert_nothing_stored(store, &unknown).await;
    assert_untouched(store, &id).await;
}

/// Rule: a created session loads back exactly: the data, the expiry to the second, version 1.
pub async fn create_then_load_round_trips_the_data_the_expiry_and_version_one(
    store: &dyn SessionStore,
) {
    let stored = data(json!({
        "visits": 3,
        "big": i64::MAX,
        "negative": -42,
        "float": 1.5,
        "name": "Zoë \"; DROP TABLE session; --",
        "emoji": "🦀 日本語 \u{0} \n\t",
        "nested": {"a": [1, null, true, {"b": []}], "empty": {}},
        "_session_expiry": 0,
        "": "empty key",
    }));
    // A sub-second part, so a store that keeps seconds only is checked for truncation, not
    // for rounding into a different second.
    let expires = in_an_hour().replace_nanosecond(250_000_000).expect("valid");
    let id = create(store, &stored, expires).await;

    let record = live(store, &id).await;
    assert_eq!(*record.data, stored);
    assert_eq!(record.expires.unix_timestamp(), expires.unix_timestamp());
    assert_eq!(record.version, 1);

    let empty = create(store, &Data::new(), expires).await;
    assert_eq!(
        *live(store, &empty).await.data,
        Data::new(),
        "an empty session too"
    );
}

/// Rule: `create` never reuses a live id; a server-side store's ids are keys (41 of [a-z0-9]).
pub async fn create_returns_distinct_well_formed_keys(store: &dyn SessionStore) {
    let mut ids = HashSet::new();
    for n in 0..100 {
        let id = create(store, &data(json!({ "n": n })), in_an_hour()).await;
        assert_eq!(id.len(), SessionKey::LEN, "{id:?}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "{id:?}"
        );
        assert!(SessionKey::parse(&id).is_some(), "{id:?}");
        assert!(ids.insert(id), "an id was issued twice");
    }
    let values: HashSet<i64> = join_all(ids.iter().map(|id| live(store, id)))
        .await
        .iter()
        .filter_map(|record| record.data["n"].as_i64())
        .collect();
    assert_eq!(values.len(), 100, "each id names its own session");
}

/// Rule: `update` over the stored version replaces the record and bumps the version.
pub async fn update_over_the_current_version_applies_and_bumps_it(store: &dyn SessionStore) {
    let id = create(store, &data(json!({"step": 0})), in_an_hour()).await;
    let later = now() + Duration::days(7);

    let first = Record {
        data: Arc::new(data(json!({"step": 1, "new": ["x"]}))),
        expires: later,
        version: 1,
    };
    let Stored { id, version } = update(store, &id, &first)
        .await
        .expect("an update over the current version applies");
    assert_eq!(version, 2);
    let record = live(store, &id).await;
    assert_eq!(record.data, first.data, "the data is replaced, not merged");
    assert_eq!(record.expires.unix_timestamp(), later.unix_timestamp());
    assert_eq!(record.version, 2);

    let second = Record {
        data: data(json!({"step": 2})).into(),
        ..record
    };
    let Stored { id, version } = update(store, &id, &second)
        .await
        .expect("and again over the new version");
    assert_eq!(version, 3);
    assert_eq!(live(store, &id).await.data, second.data);
    assert_eq!(live(store, &id).await.version, 3);
}

/// Rule: `update` over a version that is not the stored one is `Ok(None)` and changes nothing.
pub async fn update_over_a_stale_version_is_refused_and_changes_nothing(store: &dyn SessionStore) {
    let expires = in_an_hour();
    let id = create(store, &data(json!({"v": 1})), expires).await;
    let current = Record {
        data: Arc::new(data(json!({"v": 2}))),
        expires,
        version: 1,
    };
    let Stored { id, .. } = update(store, &id, &current)
        .await
        .expect("the first update applies");

    for stale in [1, 0, -1, 3, i64::MAX] {
        let record = Record {
            data: Arc::new(data(json!({"v": "stale"}))),
            expires: now() + Duration::days(30),
            version: stale,
        };
        assert_eq!(
            update(store, &id, &record).await,
            None,
            "an update over version {stale} (stored: 2) applied"
        );
    }
    let record = live(store, &id).await;
    assert_eq!(*record.data, data(json!({"v": 2})));
    assert_eq!(record.expires.unix_timestamp(), expires.unix_timestamp());
    assert_eq!(record.version, 2);
}

/// Rule: saving a session deleted meanwhile never resurrects it.
pub async fn update_of_a_deleted_session_is_refused_and_never_brings_it_back(
    store: &dyn SessionStore,
) {
    let id = create(store, &data(json!({"user": 7})), in_an_hour()).await;
    let read = live(store, &id).await;
    store.delete(&id).await.expect("delete answers");

    let save = Record {
        data: data(json!({"user": 7, "cart": [1]})).into(),
        ..read
    };
    assert_eq!(update(store, &id, &save).await, None);
    assert_eq!(
        load(store, &id).await,
        None,
        "the deleted session stays deleted"
    );
    assert_nothing_stored(store, &id).await;
}

/// Rule: `delete` removes the session, only that one, and is `Ok(())` however often it is
/// called and whatever the id.
pub async fn delete_removes_the_session_and_is_idempotent(store: &dyn SessionStore) {
    let id = create(store, &data(json!({"a": 1})), in_an_hour()).await;
    let other = create(store, &data(json!({"b": 2})), in_an_hour()).await;

    store.delete(&id).await.expect("delete answers");
    assert_eq!(load(store, &id).await, None);
    store.delete(&id).await.expect("a second delete is Ok");
    assert_eq!(load(store, &id).await, None);

    store
        .delete(&unknown_key())
        .await
        .expect("deleting an unknown key is Ok");
    for bad in malformed_ids() {
        store
            .delete(&bad)
            .await
            .unwrap_or_else(|e| panic!("deleting {bad:?} failed: {e}"));
    }
    assert_eq!(*live(store, &other).await.data, data(json!({"b": 2})));
    assert_eq!(
        store.clear_expired().await.expect("clear_expired answers"),
        0
    );
}

/// Rule: an expired session is never loaded, even before `clear_expired` runs.
pub async fn session_created_already_expired_is_never_loaded(store: &dyn SessionStore) {
    for expires in [
        now() - Duration::seconds(2),
        now() - Duration::days(1),
        OffsetDateTime::UNIX_EPOCH,
    ] {
        let id = create(store, &data(json!({"old": true})), expires).await;
        assert_eq!(load(store, &id).await, None, "expired at {expires}");
        assert_eq!(
            load(store, &id).await,
            None,
            "and still not on a second look"
        );
    }
}

/// Rule: expiry is checked at load, so a session that was live stops loading when its date
/// passes, with no help from `clear_expired`. (Sleeps one to two seconds: stores may keep
/// whole seconds.)
pub async fn session_is_no_longer_loaded_once_its_expiry_passes(store: &dyn SessionStore) {
    // A whole second two seconds ahead: live for at least one more second even in a store
    // that keeps seconds, and over for every store once the clock passes it.
    let expires = now().replace_nanosecond(0).expect("valid") + Duration::seconds(2);
    let id = create(store, &data(json!({"short": true})), expires).await;
    assert!(load(store, &id).await.is_some(), "live before its expiry");

    let wait = expires - now() + Duration::milliseconds(200);
    rocket::tokio::time::sleep(StdDuration::try_from(wait).unwrap_or_default()).await;
    assert_eq!(load(store, &id).await, None, "not loaded after its expiry");
}

/// Rule: an update that sets an expiry in the past ends the session as far as `load` goes.
pub async fn update_that_moves_the_expiry_into_the_past_hides_the_session(
    store: &dyn SessionStore,
) {
    let id = create(store, &data(json!({"n": 1})), in_an_hour()).await;
    let record = Record {
        expires: now() - Duration::minutes(5),
        ..live(store, &id).await
    };
    let Stored { id, .. } = update(store, &id, &record)
        .await
        .expect("an update over the current version applies, whatever its expiry");
    assert_eq!(load(store, &id).await, None);
}

/// Rule: `clear_expired` deletes the expired sessions, all of them and only them, and says how
/// many. A store that drops expired sessions by itself (`expires_by_itself`: a Redis TTL) has
/// none left to clear, and says 0.
pub async fn clear_expired_deletes_exactly_the_expired_sessions_and_counts_them(
    store: &dyn SessionStore,
) {
    assert_eq!(
        store.clear_expired().await.expect("clear_expired answers"),
        0,
        "an empty store has nothing to clear"
    );
    let mut expired = Vec::new();
    for expires in [
        now() - Duration::seconds(5),
        now() - Duration::hours(1),
        now() - Duration::days(365),
    ] {
        expired.push(create(store, &data(json!({"expired": true})), expires).await);
    }
    let mut alive = Vec::new();
    for expires in [in_an_hour(), now() + Duration::days(3650)] {
        alive.push(create(store, &data(json!({"alive": true})), expires).await);
    }

    let expected = if store.expires_by_itself() { 0 } else { 3 };
    assert_eq!(
        store.clear_expired().await.expect("clear_expired answers"),
        expected,
        "3 expired sessions, the store expiring by itself: {}",
        store.expires_by_itself()
    );
    for id in &alive {
        assert_eq!(*live(store, id).await.data, data(json!({"alive": true})));
    }
    for id in &expired {
        assert_eq!(load(store, id).await, None);
        // Really gone, not just hidden: not even an update over its version finds it.
        assert_nothing_stored(store, id).await;
    }
    assert_eq!(
        store.clear_expired().await.expect("clear_expired answers"),
        0,
        "a second run finds nothing more"
    );
}

/// Rule: a store with a census counts live sessions and expired ones not cleared yet, and
/// inspects a session whether it expired or not (what `load` hides); an unknown or malformed id
/// inspects as nothing.
pub async fn census_counts_live_and_expired_sessions_and_inspects_expired_ones(
    store: &dyn SessionStore,
) {
    let census = store.census().expect("the store counts and inspects");
    let zero = census.count().await.expect("count answers");
    assert_eq!((zero.live, zero.expired), (0, 0), "an empty store");
    let alive = create(store, &data(json!({"tag": "alive"})), in_an_hour()).await;
    create(store, &data(json!({"tag": "alive"})), in_an_hour()).await;
    let gone = create(
        store,
        &data(json!({"tag": "gone"})),
        now() - Duration::hours(1),
    )
    .await;
    let counts = census.count().await.expect("count answers");
    assert_eq!((counts.live, counts.expired), (2, 1));

    let inspected = census.inspect(&alive).await.expect("inspect answers");
    assert_eq!(
        inspected,
        Some(live(store, &alive).await),
        "a live one, as loaded"
    );
    let expired = census
        .inspect(&gone)
        .await
        .expect("inspect answers")
        .expect("an expired session not cleared yet is inspected");
    assert_eq!(*expired.data, data(json!({"tag": "gone"})));
    assert!(expired.expires <= now());
    assert_eq!(census.inspect(&unknown_key()).await.expect("answers"), None);
    for id in malformed_ids() {
        assert_eq!(census.inspect(&id).await.expect("answers"), None);
    }

    store.clear_expired().await.expect("clear_expired answers");
    let counts = census.count().await.expect("count answers");
    assert_eq!((counts.live, counts.expired), (2, 0), "cleared");
    assert_eq!(census.inspect(&gone).await.expect("answers"), None);
}

/// Rule: a store that clears in batches deletes exactly the expired sessions, reports a running
/// total that only grows and ends at what it returns, and a second run finds nothing.
pub async fn clearing_in_batches_clears_exactly_the_expired_and_reports_progress(
    store: &dyn SessionStore,
) {
    let batches = store.batches().expect("the store clears in batches");
    let mut expired = Vec::new();
    for hours in 1..=7 {
        let expires = now() - Duration::hours(hours);
        expired.push(create(store, &data(json!({"expired": hours})), expires).await);
    }
    let mut alive = Vec::new();
    for _ in 0..5 {
        alive.push(create(store, &data(json!({"alive": true})), in_an_hour()).await);
    }
    let mut progress = Vec::new();
    let cleared = batches
        .clear_expired_in_batches(3, &mut |done| progress.push(done))
        .await
        .expect("clearing answers");
    assert_eq!(cleared, 7);
    assert_eq!(progress.last(), Some(&7), "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(progress.len() >= 3, "7 in batches of 3: {progress:?}");
    for id in &alive {
        assert!(load(store, id).await.is_some());
    }
    for id in &expired {
        assert_nothing_stored(store, id).await;
    }
    let again = batches
        .clear_expired_in_batches(3, &mut |_| {})
        .await
        .expect("clearing answers");
    assert_eq!(again, 0, "a second run finds nothing more");
}

/// Rule: `update` is a compare-and-swap: of two saves over the same version, exactly one
/// applies, and the stored record is the winner's whole.
pub async fn concurrent_updates_over_one_version_have_exactly_one_winner(store: &dyn SessionStore) {
    for round in 0..20 {
        let id = create(store, &data(json!({"round": round})), in_an_hour()).await;
        let save = |who: &str| Record {
            data: Arc::new(data(json!({"round": round, "by": who}))),
            expires: in_an_hour(),
            version: 1,
        };
        let (a, b) = (save("a"), save("b"));
        let (won_a, won_b) = rocket::tokio::join!(update(store, &id, &a), update(store, &id, &b));
        let winner = match (won_a, won_b) {
            (Some(Stored { version: 2, .. }), None) => a,
            (None, Some(Stored { version: 2, .. })) => b,
            other => panic!("round {round}: expected exactly one winner at version 2: {other:?}"),
        };
        let record = live(store, &id).await;
        assert_eq!(record.data, winner.data, "round {round}");
        assert_eq!(record.version, 2, "round {round}");
    }
}

/// How many concurrent saves [`concurrent_saves_of_different_keys_all_survive_by_reload_and_retry`]
/// runs.
const WRITERS: usize = 16;

/// The merge the session layer relies on: concurrent requests of one session each set their own
/// key, by load, modify, update over the version read, and on `None` reload and retry. At the
/// end every key is there and the version counts every save.
pub async fn concurrent_saves_of_different_keys_all_survive_by_reload_and_retry(
    store: &dyn SessionStore,
) {
    let id = create(store, &data(json!({"base": true})), in_an_hour()).await;
    // Every writer reads before any writes on its first attempt, so the first round is sure to
    // conflict: one save applies, the others must retry.
    let barrier = Barrier::new(WRITERS);

    let writer = |n: usize| {
        let (id, barrier) = (&id, &barrier);
        async move {
            let mut retries = 0u32;
            loop {
                let mut record = live(store, id).await;
                Arc::make_mut(&mut record.data).insert(format!("writer{n}"), json!(n));
                if retries == 0 {
                    barrier.wait().await;
                }
                if update(store, id, &record).await.is_some() {
                    return retries;
                }
                retries += 1;
                assert!(retries < 1000, "writer {n} never got its save in");
            }
        }
    };
    let retries: u32 = join_all((0..WRITERS).map(writer)).await.into_iter().sum();

    let record = live(store, &id).await;
    for n in 0..WRITERS {
        assert_eq!(
            record.data.get(&format!("writer{n}")),
            Some(&json!(n)),
            "the key of writer {n} was lost"
        );
    }
    assert_eq!(record.data.get("base"), Some(&json!(true)));
    assert_eq!(record.data.len(), WRITERS + 1);
    assert_eq!(record.version, 1 + WRITERS as i64, "each save bumped once");
    assert!(
        retries >= WRITERS as u32 - 1,
        "the first round had {WRITERS} saves over one version; only one could apply, yet \
         there were only {retries} retries"
    );
}

/// Many loads at once, as a busy server makes them (a store may send them together): each gets
/// its own session, and a load of an unknown key among them gets none.
pub async fn concurrent_loads_of_many_sessions_each_get_their_own(store: &dyn SessionStore) {
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(create(store, &data(json!({"n": n})), in_an_hour()).await);
    }
    let unknown = SessionKey::generate();
    for round in 0..3 {
        let loads = ids.iter().map(|id| store.load(id));
        let (loaded, missing) = rocket::tokio::join!(join_all(loads), store.load(unknown.as_str()));
        for (n, record) in loaded.into_iter().enumerate() {
            let record = record.expect("the store answers").expect("a live session");
            assert_eq!(
                *record.data,
                data(json!({"n": n})),
                "round {round}, session {n}"
            );
        }
        assert!(
            missing.expect("the store answers").is_none(),
            "round {round}"
        );
    }
}

/// A session's data signed in as `user`, with a `tag` to tell sessions apart.
fn signed_in(user: &str, tag: &str) -> Data {
    data(json!({ USER_KEY: user, "tag": tag }))
}

/// The store's index of users' sessions, which it must keep.
fn index(store: &dyn SessionStore) -> &dyn UserIndex {
    store
        .user_index()
        .expect("the store keeps an index of users' sessions")
}

/// The sessions the store lists for `user`.
async fn listed(store: &dyn SessionStore, user: &str) -> Vec<UserSession> {
    index(store)
        .user_sessions(user, 1000)
        .await
        .expect("user_sessions answers")
}

/// The tags of `user`'s listed sessions, sorted.
async fn listed_tags(store: &dyn SessionStore, user: &str) -> Vec<String> {
    let mut tags: Vec<String> = listed(store, user)
        .await
        .iter()
        .map(|session| {
            session.record.data["tag"]
                .as_str()
                .expect("a tag")
                .to_owned()
        })
        .collect();
    tags.sort();
    tags
}

/// Rule: `user_sessions` lists the live sessions signed in as the user, each once, with its
/// record, under a handle that is not its key; no one else's, no visitor's, no expired one.
pub async fn user_sessions_lists_exactly_the_live_sessions_of_the_user(store: &dyn SessionStore) {
    let a1 = create(store, &signed_in("ann", "a1"), in_an_hour()).await;
    let a2 = create(store, &signed_in("ann", "a2"), now() + Duration::days(30)).await;
    create(store, &signed_in("bob", "b1"), in_an_hour()).await;
    create(store, &data(json!({"tag": "visitor"})), in_an_hour()).await;
    create(
        store,
        &signed_in("ann", "gone"),
        now() - Duration::seconds(5),
    )
    .await;
    // A user is matched whole: no prefix, no case folding.
    create(store, &signed_in("Ann", "other"), in_an_hour()).await;
    create(store, &signed_in("anne", "other"), in_an_hour()).await;

    let sessions = listed(store, "ann").await;
    assert_eq!(listed_tags(store, "ann").await, ["a1", "a2"]);
    for session in &sessions {
        assert_ne!(session.handle, a1);
        assert_ne!(session.handle, a2);
        assert!(!session.handle.contains(&a1) && !session.handle.contains(&a2));
        let tag = session.record.data["tag"].as_str().expect("a tag");
        let key = if tag == "a1" { &a1 } else { &a2 };
        assert_eq!(
            session.record,
            live(store, key).await,
            "the record as loaded"
        );
    }
    assert_ne!(sessions[0].handle, sessions[1].handle);
    assert_eq!(listed_tags(store, "bob").await, ["b1"]);
    assert!(listed(store, "nobody").await.is_empty());
    assert!(listed(store, "").await.is_empty());
}

/// Rule: the index follows the session's data through every save: a visitor's session that
/// signs in is listed, one that moves to another user moves, a cycled key (a new session with
/// the data, the old one deleted) is listed once under its new handle, a signed-out or deleted
/// one is gone.
pub async fn the_user_index_follows_saves_cycled_keys_and_deletions(store: &dyn SessionStore) {
    let id = create(store, &data(json!({"tag": "s"})), in_an_hour()).await;
    assert!(listed(store, "cyd").await.is_empty());

    let record = live(store, &id).await;
    let signed = Record {
        data: signed_in("cyd", "s").into(),
        ..record
    };
    let Stored { id, .. } = update(store, &id, &signed).await.expect("signs in");
    assert_eq!(listed_tags(store, "cyd").await, ["s"]);

    // Login cycles the key: a new session with the data, then the old one deleted.
    let cycled = create(store, &signed.data, in_an_hour()).await;
    store.delete(&id).await.expect("delete answers");
    let sessions = listed(store, "cyd").await;
    assert_eq!(sessions.len(), 1, "listed once after its key was cycled");
    assert_eq!(sessions[0].record, live(store, &cycled).await);

    // Another user signs in on it.
    let moved = Record {
        data: signed_in("dee", "s").into(),
        expires: in_an_hour(),
        version: live(store, &cycled).await.version,
    };
    let Stored { id: cycled, .. } = update(store, &cycled, &moved).await.expect("saves");
    assert!(listed(store, "cyd").await.is_empty(), "left its old user");
    assert_eq!(listed_tags(store, "dee").await, ["s"]);

    // Signed out, the data kept.
    let out = Record {
        data: data(json!({"tag": "s"})).into(),
        expires: in_an_hour(),
        version: live(store, &cycled).await.version,
    };
    update(store, &cycled, &out).await.expect("saves");
    assert!(listed(store, "dee").await.is_empty(), "signed out");

    // Signed in again, then deleted.
    let again = Record {
        data: signed_in("dee", "s").into(),
        expires: in_an_hour(),
        version: live(store, &cycled).await.version,
    };
    update(store, &cycled, &again).await.expect("saves");
    assert_eq!(listed_tags(store, "dee").await, ["s"]);
    store.delete(&cycled).await.expect("delete answers");
    assert!(listed(store, "dee").await.is_empty(), "deleted");
}

/// Rule: `end_user_session` deletes the session listed under a handle only if it is still
/// signed in as that user, and says whether it did; another user's handle, a made-up or a
/// malformed one, or one already ended delete nothing.
pub async fn end_user_session_ends_only_a_session_of_that_user(store: &dyn SessionStore) {
    let mine = create(store, &signed_in("eve", "mine"), in_an_hour()).await;
    let other = create(store, &signed_in("eve", "other"), in_an_hour()).await;
    let bobs = create(store, &signed_in("bo", "bobs"), in_an_hour()).await;
    let handle_of = |sessions: &[UserSession], tag: &str| {
        sessions
            .iter()
            .find(|session| session.record.data["tag"] == tag)
            .map(|session| session.handle.clone())
            .expect("listed")
    };
    let bobs_handle = handle_of(&listed(store, "bo").await, "bobs");
    let other_handle = handle_of(&listed(store, "eve").await, "other");

    let end = |user: &'static str, handle: String| async move {
        index(store)
            .end_user_session(user, &handle)
            .await
            .expect("end_user_session answers")
    };
    assert!(
        !end("eve", bobs_handle.clone()).await,
        "another user's session"
    );
    assert!(load(store, &bobs).await.is_some());
    for forged in [
        SessionKey::generate().as_str().to_owned(),
        "0".repeat(64),
        "zz".repeat(32),
        String::new(),
        mine.clone(),
        format!("{other_handle}' OR '1'='1"),
    ] {
        assert!(!end("eve", forged.clone()).await, "{forged:?}");
    }
    assert_eq!(listed_tags(store, "eve").await, ["mine", "other"]);

    assert!(end("eve", other_handle.clone()).await);
    assert_eq!(load(store, &other).await, None, "ended");
    assert!(load(store, &mine).await.is_some(), "the other one stays");
    assert_eq!(listed_tags(store, "eve").await, ["mine"]);
    assert!(!end("eve", other_handle).await, "already ended");
}

/// Rule: a session that expires leaves its user's list at once, and clearing expired sessions
/// leaves no entry behind: a later list holds only live sessions, and the user's other
/// sessions stay listed.
pub async fn expired_and_cleared_sessions_leave_the_user_index(store: &dyn SessionStore) {
    let staying = create(store, &signed_in("fay", "staying"), in_an_hour()).await;
    let going = create(store, &signed_in("fay", "going"), in_an_hour()).await;
    let record = live(store, &going).await;
    let expired = Record {
        expires: now() - Duration::seconds(1),
        ..record
    };
    update(store, &going, &expired).await.expect("saves");
    assert_eq!(listed_tags(store, "fay").await, ["staying"]);
    store.clear_expired().await.expect("clear_expired answers");
    assert_eq!(listed_tags(store, "fay").await, ["staying"]);
    assert!(load(store, &staying).await.is_some());
}

/// `user`'s sessions tagged `t1`..`tN`, `tK` expiring K hours from now; their ids.
async fn sessions_expiring_hourly(store: &dyn SessionStore, user: &str, n: i64) -> Vec<String> {
    let mut ids = Vec::new();
    for k in 1..=n {
        let expires = now() + Duration::hours(k);
        ids.push(create(store, &signed_in(user, &format!("t{k}")), expires).await);
    }
    ids
}

/// Rule: a listing returns at most its limit, the sessions that expire last first, so that
/// listing a user with many sessions costs no more than the limit.
pub async fn user_sessions_lists_at_most_the_limit_those_expiring_last_first(
    store: &dyn SessionStore,
) {
    sessions_expiring_hourly(store, "gil", 5).await;
    let tags = |sessions: Vec<UserSession>| -> Vec<String> {
        sessions
            .iter()
            .map(|s| s.record.data["tag"].as_str().expect("a tag").to_owned())
            .collect()
    };
    let list = |limit| async move {
        index(store)
            .user_sessions("gil", limit)
            .await
            .expect("user_sessions answers")
    };
    assert_eq!(tags(list(3).await), ["t5", "t4", "t3"]);
    assert_eq!(tags(list(10).await), ["t5", "t4", "t3", "t2", "t1"]);
    assert!(list(0).await.is_empty());
}

/// Rule: trimming a user's sessions ends all but the `keep` that expire last, says which it
/// ended, and touches no other user's session nor a visitor's; once under `keep` it ends
/// nothing.
pub async fn trim_user_sessions_ends_all_but_those_expiring_last(store: &dyn SessionStore) {
    let ids = sessions_expiring_hourly(store, "hal", 5).await;
    let other = create(store, &signed_in("ida", "other"), in_an_hour()).await;
    let visitor = create(store, &data(json!({"tag": "visitor"})), in_an_hour()).await;
    let trim = |keep| async move {
        index(store)
            .trim_user_sessions("hal", keep)
            .await
            .expect("trim_user_sessions answers")
    };
    // Loaded first, so that a store with a near cache holds them: the trim must drop them.
    for id in &ids {
        assert!(load(store, id).await.is_some());
    }
    let mut ended = trim(2).await;
    ended.sort();
    let mut handles: Vec<String> = ids[..3]
        .iter()
        .map(|id| SessionKey::parse(id).expect("a key").digest_hex())
        .collect();
    handles.sort();
    assert_eq!(ended, handles, "the handles of the three that expire first");
    for id in &ids[..3] {
        assert_eq!(load(store, id).await, None, "ended");
    }
    for id in &ids[3..] {
        assert!(load(store, id).await.is_some(), "kept");
    }
    assert_eq!(listed_tags(store, "hal").await, ["t4", "t5"]);
    assert!(trim(2).await.is_empty(), "under the cap: nothing to end");
    assert_eq!(trim(0).await.len(), 2);
    assert!(listed_tags(store, "hal").await.is_empty());
    assert!(load(store, &other).await.is_some());
    assert!(load(store, &visitor).await.is_some());
}
