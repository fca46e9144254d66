//! `rango migrate`: applies the migrations the database lacks and names them (Django's
//! `manage.py migrate`). Running it again applies nothing. The server applies them too at
//! launch; this is for deploy scripts that migrate before they restart it.

use sqlx::migrate::{Migrate, Migration};

use super::{Context, Result};
use crate::db::{self, DbPool};
use crate::on_pool;

/// Applies the pending migrations and prints one line for each, or that there were none.
///
/// # Errors
/// The database cannot be opened, or a migration fails (nothing of it is kept then).
pub async fn run(context: &Context) -> Result {
    let pool = context.pool().await?;
    let pending = pending(&pool).await?;
    // The session table is made (if it is not there) either way.
    db::run_migrations(&pool).await?;
    if pending.is_empty() {
        println!("No migrations to apply.");
        return Ok(());
    }
    for migration in pending {
        println!(
            "Applied {:04}_{}",
            migration.version,
            migration.description.replace(' ', "_")
        );
    }
    Ok(())
}

/// The migrations compiled into this binary that the database has not applied, in order.
/// Reads only: a database never migrated has no `_sqlx_migrations` table, and this does not
/// create it.
///
/// # Errors
/// A query fails.
pub(super) async fn pending(pool: &DbPool) -> Result<Vec<&'static Migration>> {
    let tracked_sql = match pool {
        DbPool::Sqlite(_) => {
            "SELECT EXISTS (SELECT 1 FROM sqlite_master \
             WHERE type = 'table' AND name = '_sqlx_migrations')"
        }
        DbPool::Postgres(_) => {
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations')"
        }
    };
    let applied: Vec<i64> = on_pool!(pool, p => {
        let mut conn = p.acquire().await?;
        let (tracked,): (bool,) = sqlx::query_as(tracked_sql).fetch_one(&mut *conn).await?;
        if tracked {
            conn.list_applied_migrations()
                .await?
                .into_iter()
                .map(|applied| applied.version)
                .collect()
        } else {
            Vec::new()
        }
    });
    Ok(pool
        .migrator()
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .collect())
}
