//! Adding categories (Tango with Django, chapter 7, for signed-in users as in chapter 9): a
//! form, its errors shown in it, a redirect to the index once added.

use rocket::form::FromForm;
use rocket::response::Redirect;
use rocket::{get, post, Either, State};
use rocket_dyn_templates::{context, Template};
use rocket_server_sessions::{Csrf, CsrfToken};
use serde::Serialize;

use super::front::FrontPage;
use super::models::{self, MAX_NAME_LEN};
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
    let length = name.chars().count();
    let problem = if name.is_empty() {
        Some("This field is required.".to_owned())
    } else if length > MAX_NAME_LEN {
        Some(format!(
            "Ensure this value has at most {MAX_NAME_LEN} characters (it has {length})."
        ))
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
