//! `rango` or `rango serve`: serves the site, as `cargo run` does.

use super::{Error, Result};

/// Launches the site and returns when it shuts down (Ctrl-C, SIGTERM).
///
/// # Errors
/// [`Error::Serve`] when it fails to launch (Rocket has logged why).
pub async fn run() -> Result {
    crate::rocket()
        .launch()
        .await
        .map(drop)
        // Formatting the error marks it handled (Rocket panics on dropping an unread one).
        .map_err(|e| Error::Serve(e.to_string()))
}
