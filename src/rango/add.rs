//! Adding categories and pages (Tango with Django, chapter 7, for signed-in users as in chapter
//! 9): a form, its errors shown in it, a redirect once added.

use rocket::form::FromForm;
use rocket::response::Redirect;
use rocket::{get, post, Either, State};
use rocket_dyn_templates::{context, Template};
use rocket_server_sessions::{Csrf, CsrfToken};
use serde::Serialize;

use super::front::FrontPage;
use super::models::{self, MAX_NAME_LEN, MAX_TITLE_LEN, MAX_URL_LEN};
use crate::accounts::auth::{Nav, SignedIn};
use crate::db::Db;
use crate::error::Error;
use crate::urls::Slashed;

#[derive(Debug, FromForm)]
pub(super) struct CategoryForm {
    name: String,
}

/// What the form shows again after a refusal.
#[derive(Debug, Default, Serialize)]
struct Refused {
    name: String,
    errors: Vec<String>,
}

#[get("/rango/add_category")]
pub(super) fn add_category_form(
    _slash: Slashed,
    _user: SignedIn,
    account: Nav,
    csrf_token: CsrfToken,
) -> Template {
    Template::render(
        "rango/add_category",
        context! { account, csrf_token, form: Refused::default(), nav: "add_category" },
    )
}

#[post("/rango/add_category", data = "<form>")]
pub(super) async fn add_category(
    _slash: Slashed,
    _user: SignedIn,
    form: Csrf<CategoryForm>,
    db: &Db,
    front: &State<FrontPage>,
    account: Nav,
    csrf_token: CsrfToken,
) -> Result<Either<Template, Redirect>, Error> {
    let name = form.into_inner().name.trim().to_owned();
    let slug = models::slugify(&name);
    let problem = if let Some(problem) = length_problem(&name, MAX_NAME_LEN) {
        Some(problem)
    } else if slug.is_empty() {
        Some("Enter a name with a letter or a digit in it.".to_owned())
    } else if !models::add_category(db.pool(), &name, &slug).await? {
        Some("Category with this Name already exists.".to_owned())
    } else {
        None
    };
    let Some(problem) = problem else {
        front.changed();
        return Ok(Either::Right(Redirect::to("/rango/")));
    };
    let form = Refused {
        name,
        errors: vec![problem],
    };
    Ok(Either::Left(Template::render(
        "rango/add_category",
        context! { account, csrf_token, form, nav: "add_category" },
    )))
}

#[derive(Debug, FromForm)]
pub(super) struct PageForm {
    title: String,
    url: String,
}

/// What the page form shows again after a refusal.
#[derive(Debug, Default, Serialize)]
struct RefusedPage {
    title: String,
    url: String,
    title_errors: Vec<String>,
    url_errors: Vec<String>,
}

/// Why `text` is refused as a required field of at most `max` characters.
fn length_problem(text: &str, max: usize) -> Option<String> {
    let length = text.chars().count();
    if text.is_empty() {
        Some("This field is required.".to_owned())
    } else if length > max {
        Some(format!(
            "Ensure this value has at most {max} characters (it has {length})."
        ))
    } else {
        None
    }
}

/// `url` as a page may link to it, or why not: a URL without a scheme gets `http://` (as
/// Django's `URLField` gives it); only `http` and `https` URLs with a host are taken, so no
/// `javascript:` or `data:` link reaches a page.
fn page_url(url: &str) -> Result<String, String> {
    let has_scheme = url.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    let url = if has_scheme || url.is_empty() {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    if let Some(problem) = length_problem(&url, MAX_URL_LEN) {
        return Err(problem);
    }
    match url::Url::parse(&url) {
        Ok(parsed)
            if matches!(parsed.scheme(), "http" | "https")
                && parsed.host_str().is_some_and(|host| !host.is_empty()) =>
        {
            // As stored: percent-encoding and punycode can lengthen it.
            let url = String::from(parsed);
            length_problem(&url, MAX_URL_LEN).map_or(Ok(url), Err)
        }
        _ => Err("Enter a valid URL.".to_owned()),
    }
}

#[get("/rango/category/<slug>/add_page")]
pub(super) async fn add_page_form(
    _slash: Slashed,
    slug: &str,
    _user: SignedIn,
    db: &Db,
    account: Nav,
    csrf_token: CsrfToken,
) -> Result<Option<Template>, Error> {
    let Some(category) = models::category(db.pool(), slug).await? else {
        return Ok(None);
    };
    Ok(Some(Template::render(
        "rango/add_page",
        context! { account, csrf_token, category, form: RefusedPage::default() },
    )))
}

#[post("/rango/category/<slug>/add_page", data = "<form>")]
#[allow(clippy::too_many_arguments)] // Rocket's guards, each a parameter
pub(super) async fn add_page(
    _slash: Slashed,
    slug: &str,
    _user: SignedIn,
    form: Csrf<PageForm>,
    db: &Db,
    front: &State<FrontPage>,
    account: Nav,
    csrf_token: CsrfToken,
) -> Result<Option<Either<Template, Redirect>>, Error> {
    let Some(category) = models::category(db.pool(), slug).await? else {
        return Ok(None);
    };
    let PageForm { title, url } = form.into_inner();
    let (title, url) = (title.trim().to_owned(), url.trim().to_owned());
    let mut refused = RefusedPage {
        title: title.clone(),
        url: url.clone(),
        ..RefusedPage::default()
    };
    refused
        .title_errors
        .extend(length_problem(&title, MAX_TITLE_LEN));
    let url = page_url(&url).map_err(|problem| refused.url_errors.push(problem));
    if let (true, Ok(url)) = (refused.title_errors.is_empty(), &url) {
        if models::add_page(db.pool(), slug, &title, url).await? {
            front.changed();
            return Ok(Some(Either::Right(Redirect::to(format!(
                "/rango/category/{slug}/"
            )))));
        }
        refused
            .title_errors
            .push("Page with this Category and Title already exists.".to_owned());
    }
    Ok(Some(Either::Left(Template::render(
        "rango/add_page",
        context! { account, csrf_token, category, form: refused },
    ))))
}
