//! The heartbeats of the watchers that listen on a connection of their own (Redis's tracking,
//! PostgreSQL's `LISTEN`; `cache.rs` gives the rules they follow). SQLite's watcher polls the
//! file instead (`sqlite/watch.rs`), so a build with SQLite alone uses none of this.
#![cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

#[cfg(test)]
use super::cache::Name;
use super::cache::{NearCache, MAX_LAG};

/// How often a watcher sends a heartbeat: several per [`MAX_LAG`], so that one slow answer does
/// not stop the cache.
pub const HEARTBEAT: Duration = Duration::from_millis(200);

/// How long a watcher may hear none of its own heartbeats before it counts as deaf: it is then
/// opened again on a new connection (the cache stopped serving after [`MAX_LAG`] already).
pub const SILENCE: Duration = Duration::from_secs(3);

/// A watcher's heartbeats sent and not yet heard back, by number, with when they were sent.
#[derive(Debug, Default)]
pub struct Beats(Mutex<VecDeque<(u64, Instant)>>);

impl Beats {
    /// Heartbeat `n` is sent at `at`.
    pub fn note(&self, n: u64, at: Instant) {
        let mut sent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Heartbeats that never came back are of no use once older than the lag allowed.
        while sent.front().is_some_and(|(_, at)| at.elapsed() > MAX_LAG) {
            sent.pop_front();
        }
        sent.push_back((n, at));
    }

    /// When heartbeat `n` was sent, forgetting it and every earlier one (reports arrive in
    /// order: an earlier one that has not come back never will).
    pub fn heard(&self, n: u64) -> Option<Instant> {
        let mut sent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found = None;
        while let Some(&(m, at)) = sent.front() {
            if m > n {
                break;
            }
            sent.pop_front();
            if m == n {
                found = Some(at);
            }
        }
        found
    }
}

/// Runs a store's watcher: `attempt` watches over one connection until that ends (`Err` with
/// why) or the cache is dropped (`Ok`), and is started again after a pause that grows to 5 s
/// while attempts keep failing. Every end loses the watch (the cache stops until the next one
/// is confirmed); each outage is logged once, the very first attempt's failure included.
pub async fn keep_watching<V, F, A>(near: Weak<NearCache<V>>, store: &str, mut attempt: F)
where
    V: Clone,
    F: FnMut() -> A,
    A: Future<Output = Result<(), String>>,
{
    let mut pause = Duration::from_millis(50);
    let mut reported = false;
    loop {
        let Err(why) = attempt().await else { return };
        let Some(cache) = near.upgrade() else { return };
        if cache.watching() {
            reported = false;
            pause = Duration::from_millis(50);
        }
        cache.lost();
        drop(cache);
        if !reported {
            log::warn!("session near cache off until {store} can be watched: {why}");
            reported = true;
        }
        rocket::tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// A watched cache holding `value` under each of `names` (for the watchers' tests).
#[cfg(test)]
pub(crate) fn filled<V: Clone>(names: &[Name], value: V) -> NearCache<V> {
    let cache =
        NearCache::new(std::num::NonZeroUsize::new(names.len().max(1) * 2).expect("not zero"));
    let watch = cache.watch();
    cache.confirm(watch, Instant::now());
    for name in names {
        if let Some(ticket) = cache.ticket() {
            cache.fill(*name, value.clone(), ticket);
        }
    }
    cache
}
