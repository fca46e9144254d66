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
//! sees"); a change this server makes calls [`FrontPage::changed`] and shows at once.

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
    copy: Mutex<Cached>,
    /// Held by the request that reads the database again.
    reading: AsyncMutex<()>,
}

#[derive(Debug, Default)]
struct Cached {
    /// The lists' HTML and when the read that made it began.
    lists: Option<(Instant, Arc<str>)>,
    /// Changes this server made: a read that one crossed is not kept.
    changes: u64,
    /// When the last read failed.
    failed: Option<Instant>,
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
        let arrived = Instant::now();
        let _reading = self.reading.lock().await;
        // Another request may have read them while this one waited, or failed to: then this
        // one fails at once rather than wait for a database that is out of reach again.
        if let Some(lists) = self.fresh() {
            return Ok(lists);
        }
        if self.copy().failed.is_some_and(|at| at > arrived) {
            return Err(Error::Database(sqlx::Error::PoolTimedOut));
        }
        let (read_at, changes) = (Instant::now(), self.copy().changes);
        let read = async {
            let categories = models::most_liked_categories(db, SHOWN).await?;
            let pages = models::most_viewed_pages(db, SHOWN).await?;
            templates
                .render(TEMPLATE, context! { categories, pages })
                .ok_or(Error::Template(TEMPLATE))
        };
        let (_, html) = match read.await {
            Ok(rendered) => rendered,
            Err(e) => {
                self.copy().failed = Some(Instant::now());
                return Err(e);
            }
        };
        let lists: Arc<str> = html.into();
        let mut copy = self.copy();
        if copy.changes == changes {
            copy.lists = Some((read_at, Arc::clone(&lists)));
        }
        Ok(lists)
    }

    /// This server changed a category or a page: the next request reads the lists again (so
    /// its own change shows at once), and a read under way is not kept.
    pub fn changed(&self) {
        let mut copy = self.copy();
        copy.lists = None;
        copy.changes += 1;
    }

    fn fresh(&self) -> Option<Arc<str>> {
        let copy = self.copy();
        let (at, lists) = copy.lists.as_ref()?;
        (at.elapsed() < FRESH).then(|| Arc::clone(lists))
    }

    fn copy(&self) -> MutexGuard<'_, Cached> {
        self.copy.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
