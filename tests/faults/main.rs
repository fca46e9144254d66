//! Faults, restarts and load, against the real binary and real services: stores that go down
//! and come back (`outages.rs`), servers killed and restarted (`restarts.rs`), instances that
//! share a store (`scale_out.rs`) or a PostgreSQL connection budget (`budget.rs`), a session
//! ended on one server and read on another, for every store, change and fault (`coherence.rs`),
//! a bounded load on loopback (`load.rs`), and an installed copy of the release binary and a
//! flooded log (`deploy.rs`). `support.rs` holds the child processes, proxies and private Redis
//! servers they use.

mod budget;
mod coherence;
#[path = "../site/common.rs"]
mod common;
mod deploy;
// The session crate's HTTP test harness: routes under /t, requests, cookie assertions.
#[path = "../../rocket-server-sessions/tests/http/harness.rs"]
mod harness;
mod load;
mod outages;
mod restarts;
mod scale_out;
// The PostgreSQL schemas and Redis prefixes of the crate's store tests, shared.
#[path = "../../rocket-server-sessions/tests/stores/services.rs"]
mod services;
mod support;
