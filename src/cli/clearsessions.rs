//! `rango clearsessions`: Django's `manage.py clearsessions`, for cron.
//!
//! It deletes expired sessions in short batches (one statement each, with a pause between
//! them), so a server using the same SQLite file keeps answering while it runs. On a terminal
//! it shows a progress bar; otherwise (cron, a systemd timer) it prints one summary line. A
//! store that expires sessions by itself (Redis) has nothing to clear: it says so and succeeds.

use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::{Context, Result};

/// Sessions deleted per statement by default: what the SQL store clears in one statement when
/// its reaper clears (thousands of rows hold SQLite's write lock for a few milliseconds).
const BATCH: u32 = 5_000;

/// `rango clearsessions` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sessions deleted per statement: each batch holds SQLite's write lock once, briefly.
    #[arg(long, value_name = "ROWS", default_value_t = BATCH,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
}

/// Deletes the expired sessions and reports how many.
///
/// # Errors
/// Invalid settings, or the store cannot be reached or fails.
pub async fn run(context: &Context, args: &Args) -> Result {
    let config = context.session_config()?;
    let store = context.store(&config).await?.store;
    if store.expires_by_itself() {
        // What such a store may still tidy: its index of users' sessions (Redis's user sets).
        store.clear_expired().await?;
        println!(
            "session.backend = \"{}\": this store drops expired sessions itself; nothing to clear.",
            config.backend
        );
        return Ok(());
    }
    let started = Instant::now();
    let bar = if io::stderr().is_terminal() {
        let expired = match store.census() {
            Some(census) => census.count().await?.expired,
            None => 0,
        };
        // A bar only for deletions long enough to watch.
        (expired > u64::from(args.batch_size)).then(|| progress_bar(expired))
    } else {
        None
    };
    let deleted = match store.batches() {
        Some(batches) => {
            let progress = &mut |done| {
                if let Some(bar) = &bar {
                    bar.set_position(done);
                }
            };
            batches
                .clear_expired_in_batches(args.batch_size, progress)
                .await
        }
        None => store.clear_expired().await,
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let deleted = deleted?;
    println!(
        "Deleted {deleted} expired {} in {}.",
        if deleted == 1 { "session" } else { "sessions" },
        seconds(started.elapsed())
    );
    Ok(())
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    // The template is a constant; should it ever not parse, the default style is fine.
    if let Ok(style) = ProgressStyle::with_template(
        "clearing expired sessions {bar:40} {human_pos}/{human_len} ({eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.2} s", elapsed.as_secs_f64())
}
