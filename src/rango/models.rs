//! Categories and pages (the book's models) and its sample data.

use serde::Serialize;

use crate::db::DbPool;
use crate::on_pool;

/// A category of pages.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Category {
    /// Its name, unique.
    pub name: String,
    /// Its URL slug, unique.
    pub slug: String,
    /// How often it was viewed.
    pub views: i64,
    /// How often it was liked.
    pub likes: i64,
}

/// A page in a category.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Page {
    /// The name of its category.
    pub category: String,
    /// Its title.
    pub title: String,
    /// Where it points.
    pub url: String,
    /// How often it was viewed.
    pub views: i64,
}

/// The `n` most liked categories, most liked first.
///
/// # Errors
/// The query fails.
pub async fn most_liked_categories(db: &DbPool, n: i64) -> Result<Vec<Category>, sqlx::Error> {
    on_pool!(db, pool => sqlx::query_as(
        "SELECT name, slug, views, likes FROM category ORDER BY likes DESC, name LIMIT $1",
    )
    .bind(n)
    .fetch_all(pool)
    .await)
}

/// The `n` most viewed pages, most viewed first.
///
/// # Errors
/// The query fails.
pub async fn most_viewed_pages(db: &DbPool, n: i64) -> Result<Vec<Page>, sqlx::Error> {
    on_pool!(db, pool => sqlx::query_as(
        "SELECT c.name AS category, p.title, p.url, p.views FROM page p \
         JOIN category c ON c.id = p.category_id ORDER BY p.views DESC, p.title LIMIT $1",
    )
    .bind(n)
    .fetch_all(pool)
    .await)
}

/// The category whose slug is `slug`, if there is one.
///
/// # Errors
/// The query fails.
pub async fn category(db: &DbPool, slug: &str) -> Result<Option<Category>, sqlx::Error> {
    on_pool!(db, pool => sqlx::query_as(
        "SELECT name, slug, views, likes FROM category WHERE slug = $1",
    )
    .bind(slug)
    .fetch_optional(pool)
    .await)
}

/// The pages of the category whose slug is `slug`, most viewed first.
///
/// # Errors
/// The query fails.
pub async fn pages_of(db: &DbPool, slug: &str) -> Result<Vec<Page>, sqlx::Error> {
    on_pool!(db, pool => sqlx::query_as(
        "SELECT c.name AS category, p.title, p.url, p.views FROM page p \
         JOIN category c ON c.id = p.category_id WHERE c.slug = $1 \
         ORDER BY p.views DESC, p.title",
    )
    .bind(slug)
    .fetch_all(pool)
    .await)
}

/// The longest category name (the book's `max_length=128`).
pub const MAX_NAME_LEN: usize = 128;

/// `text` as Django's `slugify` makes it: accents folded (NFKD, then ASCII only), lower case,
/// anything but letters, digits, `_`, `-` and spaces dropped, runs of spaces and hyphens made
/// one hyphen, hyphens and underscores trimmed from the ends.
pub fn slugify(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let kept: String = text
        .nfkd()
        .filter(char::is_ascii)
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-') || c.is_ascii_whitespace())
        .collect();
    let mut slug = String::with_capacity(kept.len());
    let mut gap = false;
    for c in kept.chars() {
        if c == '-' || c.is_ascii_whitespace() {
            gap = true;
        } else {
            if gap && !slug.is_empty() {
                slug.push('-');
            }
            gap = false;
            slug.push(c);
        }
    }
    slug.trim_matches(['-', '_']).to_owned()
}

/// Adds the category `name` under `slug`; false when a category has that name or slug already
/// (so names are unique in any case: a slug is lower case).
///
/// # Errors
/// The query fails.
pub async fn add_category(db: &DbPool, name: &str, slug: &str) -> Result<bool, sqlx::Error> {
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO category (name, slug) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(slug)
    .execute(pool)
    .await
    .map(|done| done.rows_affected() == 1))
}

/// The longest page title (the book's `max_length=128`).
pub const MAX_TITLE_LEN: usize = 128;
/// The longest page URL (Django's `URLField`, 200).
pub const MAX_URL_LEN: usize = 200;

/// Adds the page `title` at `url` to the category `slug`; false when there is no such category
/// or it has a page of that title already.
///
/// # Errors
/// The query fails.
pub async fn add_page(
    db: &DbPool,
    slug: &str,
    title: &str,
    url: &str,
) -> Result<bool, sqlx::Error> {
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO page (category_id, title, url) \
         SELECT id, $2, $3 FROM category WHERE slug = $1 ON CONFLICT DO NOTHING",
    )
    .bind(slug)
    .bind(title)
    .bind(url)
    .execute(pool)
    .await
    .map(|done| done.rows_affected() == 1))
}

/// A category of the sample data: name, slug, views, likes, and its pages (title, url, views).
type SampleCategory = (
    &'static str,
    &'static str,
    i64,
    i64,
    &'static [(&'static str, &'static str, i64)],
);

/// The book's sample data (`populate_rango.py`, with the views and likes of its exercises).
pub const SAMPLE: &[SampleCategory] = &[
    (
        "Python",
        "python",
        128,
        64,
        &[
            (
                "Official Python Tutorial",
                "https://docs.python.org/3/tutorial/",
                42,
            ),
            (
                "How to Think like a Computer Scientist",
                "https://greenteapress.com/wp/think-python-2e/",
                27,
            ),
            (
                "Learn Python in 10 Minutes",
                "https://www.stavros.io/tutorials/python/",
                13,
            ),
        ],
    ),
    (
        "Django",
        "django",
        64,
        32,
        &[
            (
                "Official Django Tutorial",
                "https://docs.djangoproject.com/en/stable/intro/tutorial01/",
                36,
            ),
            ("Django Rocks", "http://www.djangorocks.com/", 21),
            (
                "How to Tango with Django",
                "https://www.tangowithdjango.com/",
                55,
            ),
        ],
    ),
    (
        "Other Frameworks",
        "other-frameworks",
        32,
        16,
        &[
            ("Bottle", "https://bottlepy.org/docs/dev/", 8),
            ("Flask", "https://flask.palletsprojects.com/", 17),
        ],
    ),
];

/// Loads [`SAMPLE`]; what is already there (by slug, and by title within a category) is kept.
/// Returns how many categories and pages it added.
///
/// # Errors
/// A statement fails; nothing is added then.
pub async fn populate(db: &DbPool) -> Result<(u64, u64), sqlx::Error> {
    on_pool!(db, pool => {
    let mut tx = pool.begin().await?;
    let (mut categories, mut pages) = (0, 0);
    for (name, slug, views, likes, sample_pages) in SAMPLE {
        categories += sqlx::query(
            "INSERT INTO category (name, slug, views, likes) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(slug)
        .bind(views)
        .bind(likes)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for (title, url, views) in *sample_pages {
            pages += sqlx::query(
                "INSERT INTO page (category_id, title, url, views) \
                 SELECT id, $2, $3, $4 FROM category WHERE slug = $1 ON CONFLICT DO NOTHING",
            )
            .bind(slug)
            .bind(title)
            .bind(url)
            .bind(views)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
    }
    tx.commit().await?;
    Ok((categories, pages))
    })
}

/// Whether there is no category at all.
///
/// # Errors
/// The query fails.
pub async fn is_empty(db: &DbPool) -> Result<bool, sqlx::Error> {
    let (count,): (i64,) = on_pool!(db, pool => sqlx::query_as("SELECT COUNT(*) FROM category")
        .fetch_one(pool)
        .await)?;
    Ok(count == 0)
}

#[cfg(test)]
mod tests {
    use super::slugify;

    #[test]
    fn slugs_are_djangos() {
        for (text, slug) in [
            ("Other Frameworks", "other-frameworks"),
            ("  Café au Lait!  ", "cafe-au-lait"),
            ("C++ & Rust", "c-rust"),
            ("snake_case name", "snake_case-name"),
            ("--Edge--", "edge"),
            ("_x_", "x"),
            ("Ünïcödé  ñ", "unicode-n"),
            ("日本語", ""),
            ("a\tb\nc", "a-b-c"),
        ] {
            assert_eq!(slugify(text), slug, "{text:?}");
        }
    }
}
