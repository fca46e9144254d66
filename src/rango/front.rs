//! The index page's two lists (the most liked categories, the most viewed pages), kept in
//! memory as HTML (`templates/rango/lists.html.tera`), read again from the database and
//! rendered again at most once a [`FRESH`].
//!
//! The two queries cost several times the rest of the page, and rendering the lists twice the
//! rest of its template (BENCHMARKS.md, "The index page"); the lists are the same for every
//! visitor and change only when someone adds or edits a category or page. A copy younger
//! than `FRESH` is served as it is; the first request after that reads the database again
//! while the others wait for its answer (one read per `FRESH`, never one per request). So a
//! change made by another server or by the command line shows here within `FRESH`, under the
//! 2 s within which every server shows another's session changes (README, "What another server
//! sees"). (Rango has no page that changes the lists yet: the one that does must drop the
//! copy, so that its own change shows at once.)

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rocket::tokio::sync::Mutex as AsyncMutex;
use rocket_dyn_templates::{context, Metadata};

use super::models;
use crate::db::DbPool;
use crate::error::Error;

/// How long a copy of the lists is served before the database is read again.
pub const FRESH: Duration = Duration::from_secs(1);

/// How many of each list the index shows.
const SHOWN: i64 = 5;

/// The template of the lists.
const TEMPLATE: &str = "rango/lists";

/// The lists as last rendered, and when (managed state).
#[derive(Debug, Default)]
pub struct FrontPage {
    /// The lists' HTML and when the read that made it began.
    copy: Mutex<Option<(Instant, Arc<str>)>>,
    /// Held by the request that reads the database again.
    reading: AsyncMutex<()>,
}

impl FrontPage {
    /// The lists' HTML: the copy if it is fresh, else read again from `db` and rendered.
    ///
    /// # Errors
    /// A query fails, or the template cannot be rendered (the next request tries again).
    pub async fn lists(&self, db: &DbPool, templates: &Metadata<'_>) -> Result<Arc<str>, Error> {
        if let Some(lists) = self.fresh() {
            return Ok(lists);
        }
        let _reading = self.reading.lock().await;
        // Another request may have read them while this one waited.
        if let Some(lists) = self.fresh() {
            return Ok(lists);
        }
        let read_at = Instant::now();
        let categories = models::most_liked_categories(db, SHOWN).await?;
        let pages = models::most_viewed_pages(db, SHOWN).await?;
        let (_, html) = templates
            .render(TEMPLATE, context! { categories, pages })
            .ok_or(Error::Template(TEMPLATE))?;
        let lists: Arc<str> = html.into();
        *self.copy() = Some((read_at, Arc::clone(&lists)));
        Ok(lists)
    }

    fn fresh(&self) -> Option<Arc<str>> {
        let copy = self.copy();
        let (at, lists) = copy.as_ref()?;
        (at.elapsed() < FRESH).then(|| Arc::clone(lists))
    }

    fn copy(&self) -> MutexGuard<'_, Option<(Instant, Arc<str>)>> {
        self.copy.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
