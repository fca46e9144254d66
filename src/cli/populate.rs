//! `rango populate`: the book's `populate_rango.py`. Loads the sample categories and pages;
//! what is already there is kept, so running it twice adds nothing the second time.

use super::{Context, Result};
use crate::rango::models;

/// Loads the sample data and prints what it added.
///
/// # Errors
/// The database cannot be opened, is not migrated, or an insert fails (nothing is added then).
pub async fn run(context: &Context) -> Result {
    let pool = context.migrated_pool().await?;
    let (categories, pages) = models::populate(&pool).await?;
    if categories == 0 && pages == 0 {
        println!("The sample data is already there; nothing added.");
    } else {
        println!("Added {categories} categories and {pages} pages.");
    }
    Ok(())
}
