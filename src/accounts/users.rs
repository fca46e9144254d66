//! The `users` table (migration 0004) and passwords: Argon2id hashes in PHC format, never the
//! password itself, and never logged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rocket::tokio::sync::Semaphore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use unicode_normalization::UnicodeNormalization;

use crate::db::DbPool;
use crate::on_pool;

/// The longest username accepted (Django's 150).
pub const MAX_USERNAME_LEN: usize = 150;

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct User {
    /// Its id: what a session stores (as a string) to name its user.
    pub id: i64,
    /// The name as registered (its case kept).
    pub username: String,
    /// The e-mail address given.
    pub email: String,
    /// The Argon2id hash of the password.
    #[serde(skip)]
    pub password: String,
    /// Raised when the user signs out their other sessions.
    pub session_generation: i64,
    /// When the user registered (RFC 3339).
    pub date_joined: String,
}

impl User {
    /// The id as a session stores it.
    pub fn key(&self) -> String {
        self.id.to_string()
    }

    /// Whether `password` is the user's: an Argon2 check, on a blocking thread, a few at a time.
    pub async fn check_password(&self, password: &str) -> bool {
        let (hash, password) = (self.password.clone(), password.to_owned());
        argon2_work(move || verify(&hash, &password))
            .await
            .unwrap_or(false)
    }

    /// What a session signed in as this user stores to prove it (Django's
    /// `get_session_auth_hash`): a digest of the password hash and the session generation, so
    /// a new password or a "sign out everywhere else" signs out every session holding an old
    /// one. It reveals neither: the password hash is salted and never leaves the server.
    pub fn session_auth_hash(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"rango.session_auth_hash\0")
            .chain_update(self.password.as_bytes())
            .chain_update(b"\0")
            .chain_update(self.session_generation.to_string().as_bytes())
            .finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Argon2 hashes and checks in flight at most: each takes 19 MiB and tens of milliseconds of
/// a core, so a burst of logins waits here instead of taking every core and all that memory.
static ARGON2_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(*CORES));

/// The machine's cores: how many of [`ARGON2_SLOTS`] there are.
static CORES: LazyLock<usize> =
    LazyLock::new(|| std::thread::available_parallelism().map_or(2, usize::from));

/// A server's admissions to hash or check a password: one per core at work (the
/// `ARGON2_SLOTS`) and `rango.argon2_queue` more waiting. A flood of logins would otherwise
/// queue without bound behind the cores, and every real login with it; the requests beyond
/// get a 503 with `Retry-After` at once.
#[derive(Debug)]
pub struct Hashing {
    in_flight: AtomicUsize,
    bound: usize,
}

impl Hashing {
    /// Admissions for one core each and `queue` waiting.
    pub fn new(queue: usize) -> Self {
        Hashing {
            in_flight: AtomicUsize::new(0),
            bound: CORES.saturating_add(queue),
        }
    }

    /// A turn, or `None` when the queue is full.
    pub fn turn(&self) -> Option<HashingTurn<'_>> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= self.bound {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(HashingTurn(self))
    }
}

/// A request's admission to hash or check passwords, given back when dropped.
#[derive(Debug)]
pub struct HashingTurn<'a>(&'a Hashing);

impl Drop for HashingTurn<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `work` (an Argon2 hash or check) on a blocking thread, not on the async workers that
/// serve pages, when one of [`ARGON2_SLOTS`] is free. `None` if the thread panicked.
async fn argon2_work<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let _slot = ARGON2_SLOTS.acquire().await.ok()?;
    rocket::tokio::task::spawn_blocking(work).await.ok()
}

/// Whether `password` matches the PHC string `hash`.
fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// The Argon2id hash of `password`, with a fresh salt.
///
/// # Errors
/// Argon2 refused the input (a password past its limit of 4 GiB).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// [`hash_password`] as [`argon2_work`].
async fn hash_password_off_the_workers(password: &str) -> Result<String, CreateError> {
    let password = password.to_owned();
    argon2_work(move || hash_password(&password))
        .await
        .ok_or(CreateError::Hash(argon2::password_hash::Error::Crypto))?
        .map_err(CreateError::Hash)
}

/// Spends the time checking a password takes, for a login whose username is unknown: the
/// answer's timing does not tell which usernames exist.
pub async fn waste_a_password_check(password: &str) {
    static DUMMY: LazyLock<String> =
        LazyLock::new(|| hash_password("not anyone's password").unwrap_or_default());
    let password = password.to_owned();
    argon2_work(move || verify(&DUMMY, &password)).await;
}

/// A username as stored: NFKC-normalized, as Django's `normalize_username`.
pub fn normalize(username: &str) -> String {
    username.nfkc().collect()
}

/// The form of a username that is unique: normalized, then lower case, so that neither case
/// nor look-alike forms (full-width letters, ligatures) make a second account.
pub fn username_key(username: &str) -> String {
    normalize(username).to_lowercase()
}

/// Why a username is refused, if it is (Django's rule: letters, digits and `@.+-_`).
pub fn username_problem(username: &str) -> Option<&'static str> {
    if username.is_empty() {
        return Some("This field is required.");
    }
    if username.chars().count() > MAX_USERNAME_LEN {
        return Some("Ensure this value has at most 150 characters.");
    }
    let allowed = |c: char| c.is_alphanumeric() || "@.+-_".contains(c);
    if !username.chars().all(allowed) {
        return Some(
            "Enter a valid username. This value may contain only letters, numbers, and \
             @/./+/-/_ characters.",
        );
    }
    None
}

/// The longest e-mail address accepted (Django's `EmailField` on its user model).
pub const MAX_EMAIL_LEN: usize = 254;

/// Why an e-mail address is refused, if it is: Django's `EmailValidator`. At most 254
/// characters and no control character anywhere; a local part that is a dot-atom of the
/// characters RFC 5322 allows, or a quoted string; a domain of labels (letters, digits and
/// inner hyphens, at most 63 each) ending in a top-level label of at least two characters,
/// `localhost`, or an address literal in brackets.
pub fn email_problem(email: &str) -> Option<&'static str> {
    const INVALID: &str = "Enter a valid email address.";
    if email.is_empty() {
        return Some("This field is required.");
    }
    if email.chars().count() > MAX_EMAIL_LEN {
        return Some("Ensure this value has at most 254 characters.");
    }
    if email.chars().any(char::is_control) {
        return Some(INVALID);
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Some(INVALID);
    };
    (!(local_part_ok(local) && domain_ok(domain))).then_some(INVALID)
}

/// A dot-atom (`first.last+tag`) or a quoted string (`"john doe"`), ASCII only.
fn local_part_ok(local: &str) -> bool {
    let atom_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    if let Some(quoted) = local
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            let ok = match c {
                '\\' => chars.next().is_some_and(|escaped| escaped.is_ascii()),
                '"' => false,
                c => c.is_ascii(),
            };
            if !ok {
                return false;
            }
        }
        return true;
    }
    !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atom_char))
}

/// Labels and a top-level label (letters in any script, as IDNA would encode them), or
/// `localhost`, or `[an IP address]`.
fn domain_ok(domain: &str) -> bool {
    if domain.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(literal) = domain
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        let ip = literal.strip_prefix("IPv6:").unwrap_or(literal);
        return ip.parse::<std::net::IpAddr>().is_ok();
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.chars().count())
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let labels: Vec<&str> = domain.split('.').collect();
    match labels.split_last() {
        Some((top, rest)) if !rest.is_empty() => {
            rest.iter().all(|label| label_ok(label))
                && label_ok(top)
                && top.chars().count() >= 2
                && !top.chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

const COLUMNS: &str = "id, username, email, password, session_generation, date_joined";

// Every query here reads all of its rows (`fetch_all`), even when it has at most one: on
// SQLite, sqlx's `fetch_optional` and `fetch_one` leave the statement unfinished, and an
// unfinished `INSERT`/`UPDATE ... RETURNING` is not committed, nor a `SELECT`'s read snapshot
// let go, until the connection runs its next statement. Other connections then missed a user
// just registered, or a session generation just raised (seen under load in
// tests/site/accounts.rs).

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The username is taken, in any case.
    #[error("A user with that username already exists.")]
    Taken,
    /// Hashing the password failed.
    #[error("the password could not be hashed: {0}")]
    Hash(argon2::password_hash::Error),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A failure to store a user, for a handler: a taken username is the form's business (the
/// register page shows it), so here it is only a failure.
impl From<CreateError> for crate::error::Error {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::Database(e) => crate::error::Error::Database(e),
            CreateError::Hash(_) | CreateError::Taken => {
                crate::error::Error::Password(e.to_string())
            }
        }
    }
}

/// Registers a user.
///
/// # Errors
/// [`CreateError::Taken`] when the username is taken in any case; else a database or hashing
/// failure.
pub async fn create(
    db: &DbPool,
    username: &str,
    email: &str,
    password: &str,
) -> Result<User, CreateError> {
    let hash = hash_password_off_the_workers(password).await?;
    let username = normalize(username);
    let joined = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let inserted: Vec<User> = on_pool!(db, pool => sqlx::query_as(&format!(
        "INSERT INTO users (username, username_key, email, password, date_joined) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username_key) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(&username)
    .bind(username_key(&username))
    .bind(email)
    .bind(&hash)
    .bind(&joined)
    .fetch_all(pool)
    .await)?;
    inserted.into_iter().next().ok_or(CreateError::Taken)
}

/// The user named `username`, in any case.
///
/// # Errors
/// The query fails.
pub async fn by_username(db: &DbPool, username: &str) -> Result<Option<User>, sqlx::Error> {
    let found: Vec<User> = on_pool!(db, pool => sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE username_key = $1"
    ))
    .bind(username_key(username))
    .fetch_all(pool)
    .await)?;
    Ok(found.into_iter().next())
}

/// The user whose id a session stores (`key`, a string).
///
/// # Errors
/// The query fails.
pub async fn by_key(db: &DbPool, key: &str) -> Result<Option<User>, sqlx::Error> {
    let Ok(id) = key.parse::<i64>() else {
        return Ok(None);
    };
    let found: Vec<User> = on_pool!(db, pool => sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1"
    ))
    .bind(id)
    .fetch_all(pool)
    .await)?;
    Ok(found.into_iter().next())
}

/// Every user, by username.
///
/// # Errors
/// The query fails.
pub async fn all(db: &DbPool) -> Result<Vec<User>, sqlx::Error> {
    on_pool!(db, pool => sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users ORDER BY username_key"
    ))
    .fetch_all(pool)
    .await)
}

/// Sets the user's password; returns the user as stored now.
///
/// # Errors
/// Hashing or the query fails.
pub async fn set_password(db: &DbPool, user: &User, password: &str) -> Result<User, CreateError> {
    let hash = hash_password_off_the_workers(password).await?;
    let updated: Vec<User> = on_pool!(db, pool => sqlx::query_as(&format!(
        "UPDATE users SET password = $1 WHERE id = $2 RETURNING {COLUMNS}"
    ))
    .bind(&hash)
    .bind(user.id)
    .fetch_all(pool)
    .await)?;
    updated
        .into_iter()
        .next()
        .ok_or(CreateError::Database(sqlx::Error::RowNotFound))
}

/// Raises the user's session generation (signing out every session of an older one); returns
/// the user as stored now.
///
/// # Errors
/// The query fails.
pub async fn next_generation(db: &DbPool, user: &User) -> Result<User, sqlx::Error> {
    let updated: Vec<User> = on_pool!(db, pool => sqlx::query_as(&format!(
        "UPDATE users SET session_generation = session_generation + 1 WHERE id = $1 \
         RETURNING {COLUMNS}"
    ))
    .bind(user.id)
    .fetch_all(pool)
    .await)?;
    updated.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(password: &str) -> User {
        User {
            id: 1,
            username: "ann".into(),
            email: String::new(),
            password: hash_password(password).expect("hashes"),
            session_generation: 0,
            date_joined: String::new(),
        }
    }

    #[rocket::async_test]
    async fn passwords_are_stored_as_argon2id_hashes_and_checked() {
        let ann = user("correct horse");
        assert!(ann.password.starts_with("$argon2id$"));
        assert!(!ann.password.contains("correct horse"));
        assert!(ann.check_password("correct horse").await);
        assert!(!ann.check_password("correct hors").await);
        assert!(!ann.check_password("").await);
        assert_ne!(
            hash_password("same").expect("hashes"),
            hash_password("same").expect("hashes"),
            "salted"
        );
    }

    #[test]
    fn the_session_auth_hash_changes_with_the_password_and_the_generation() {
        let ann = user("one password");
        let hash = ann.session_auth_hash();
        assert_eq!(hash, ann.session_auth_hash());
        let moved = User {
            session_generation: 1,
            ..ann.clone()
        };
        assert_ne!(moved.session_auth_hash(), hash);
        let new_password = User {
            password: hash_password("one password").expect("hashes"),
            ..ann
        };
        assert_ne!(
            new_password.session_auth_hash(),
            hash,
            "a new salt, a new hash"
        );
    }

    #[test]
    fn usernames_follow_djangos_rule() {
        for good in ["ann", "Ann.B", "a+b@c-d_e", "Zoë", "user1"] {
            assert_eq!(username_problem(good), None, "{good}");
        }
        for bad in ["", "a b", "a/b", "<script>", "a\u{0}b", &"a".repeat(151)] {
            assert!(username_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(username_key("AnN"), "ann");
        assert_eq!(
            username_key("ＡＮＮ"),
            "ann",
            "full-width letters are the same name"
        );
        assert_eq!(normalize("ﬁona"), "fiona");
    }
}
