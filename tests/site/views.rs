//! The Rango pages: content, visits, redirects, static files and error pages.

use crate::common::*;
use rocket::http::{ContentType, Status};
use serde_json::json;

#[tokio::test]
async fn index_shows_the_most_liked_categories_and_most_viewed_pages() {
    let app = TestApp::tracked(&[]).await;
    let response = app.get("/rango/").await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.content_type(), Some(ContentType::HTML));
    let body = response.into_string().await.expect("body");
    assert!(body.contains("Rango says"));
    let python = body.find(">Python<").expect("Python");
    let django = body.find(">Django<").expect("Django");
    let other = body.find(">Other Frameworks<").expect("Other Frameworks");
    assert!(python < django && django < other, "ordered by likes");
    assert!(body.contains("64 likes"));
    // The five most viewed of the eight pages, most viewed first.
    assert_in_order(
        &body,
        &[
            "How to Tango with Django",
            "Official Python Tutorial",
            "Official Django Tutorial",
            "How to Think like a Computer Scientist",
            "Django Rocks",
        ],
    );
    for absent in [">Flask<", ">Bottle<", ">Learn Python in 10 Minutes<"] {
        assert!(!body.contains(absent), "{absent} is not in the top five");
    }
    assert_eq!(visits(&body), 1);
    assert!(body.contains("You have visited this site <span id=\"visits\">1</span> time."));
}

/// Asserts that `body` shows each of `titles` as an element's text, in this order.
fn assert_in_order(body: &str, titles: &[&str]) {
    let order: Vec<usize> = titles
        .iter()
        .map(|title| {
            body.find(&format!(">{title}<"))
                .unwrap_or_else(|| panic!("{title}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
}

#[tokio::test]
async fn the_root_serves_the_index_too() {
    let app = TestApp::tracked(&[]).await;
    let body = app.body("/").await;
    assert!(body.contains("Most Liked Categories"));
    assert_eq!(visits(&body), 1);
}

#[tokio::test]
async fn about_shows_its_text_and_the_visit_count() {
    let app = TestApp::tracked(&[]).await;
    let body = app.body("/rango/about/").await;
    assert!(body.contains("here is the about page"));
    assert_eq!(visits(&body), 1);
    let body = app.body("/rango/").await;
    assert_eq!(visits(&body), 1, "the same visit");
}

#[tokio::test]
async fn unslashed_urls_redirect_permanently_to_the_slashed_ones() {
    let app = TestApp::tracked(&[]).await;
    for (from, to) in [
        ("/rango", "/rango/"),
        ("/rango/about", "/rango/about/"),
        ("/rango/about?x=1", "/rango/about/?x=1"),
    ] {
        let response = app.get(from).await;
        assert_eq!(response.status(), Status::MovedPermanently, "{from}");
        assert_eq!(response.headers().get_one("Location"), Some(to), "{from}");
        assert!(
            set_cookies(&response).is_empty(),
            "a redirect touches no session"
        );
    }
}

#[tokio::test]
async fn a_category_page_lists_its_pages_most_viewed_first() {
    let app = TestApp::tracked(&[]).await;
    let response = app.get("/rango/category/django/").await;
    assert_eq!(response.status(), Status::Ok);
    let body = response.into_string().await.expect("body");
    assert!(body.contains("<h1>Django</h1>"), "{body}");
    assert_in_order(
        &body,
        &[
            "How to Tango with Django",
            "Official Django Tutorial",
            "Django Rocks",
        ],
    );
    // Tera escapes the slashes of an attribute; a browser reads the URL back.
    let href = "href=\"https:&#x2F;&#x2F;www.tangowithdjango.com&#x2F;\"";
    assert!(body.contains(href), "{body}");
    assert!(body.contains("55 views"));
    for other in [">Flask<", ">Official Python Tutorial<"] {
        assert!(!body.contains(other), "{other} is another category's");
    }
}

#[tokio::test]
async fn an_unknown_category_is_not_found_and_a_category_without_pages_says_so() {
    let app = TestApp::tracked(&[]).await;
    for uri in ["/rango/category/nowhere/", "/rango/category/%3Cscript%3E/"] {
        let response = app.get(uri).await;
        assert_eq!(response.status(), Status::NotFound, "{uri}");
        let body = response.into_string().await.expect("body");
        assert!(body.contains("404: Not found"), "{body}");
    }
    let app = TestApp::tracked(&[("rango.sample_data", json!(false))]).await;
    sqlx::query("INSERT INTO category (name, slug, views, likes) VALUES ('Empty', 'empty', 0, 0)")
        .execute(app.pool())
        .await
        .expect("a category");
    let body = app.body("/rango/category/empty/").await;
    assert!(body.contains("No pages currently in category."), "{body}");
}

#[tokio::test]
async fn every_category_on_the_index_links_to_its_page() {
    let app = TestApp::tracked(&[]).await;
    let body = app.body("/rango/").await;
    for (slug, name) in [
        ("python", "Python"),
        ("django", "Django"),
        ("other-frameworks", "Other Frameworks"),
    ] {
        let link = format!("<a class=\"name\" href=\"/rango/category/{slug}/\">{name}</a>");
        assert!(body.contains(&link), "{link}");
    }
    let response = app.get("/rango/category/python").await;
    assert_eq!(response.status(), Status::MovedPermanently);
    assert_eq!(
        response.headers().get_one("Location"),
        Some("/rango/category/python/")
    );
}

#[tokio::test]
async fn visits_count_once_per_interval() {
    let app = TestApp::tracked(&[("rango.visit_interval", json!(1))]).await;
    let body = app.body("/rango/").await;
    assert_eq!(visits(&body), 1);
    let response = app.get("/rango/").await;
    assert!(
        set_cookies(&response).is_empty(),
        "within the interval nothing is saved"
    );
    assert_eq!(visits(&response.into_string().await.expect("body")), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let body = app.body("/rango/").await;
    assert_eq!(visits(&body), 2);
    let body = app.body("/rango/about/").await;
    assert_eq!(visits(&body), 2, "about shows the same count");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let body = app.body("/rango/about/").await;
    assert_eq!(visits(&body), 3, "about counts visits too");
}

#[tokio::test]
async fn a_day_long_interval_keeps_the_count() {
    let app = TestApp::tracked(&[]).await;
    for _ in 0..3 {
        let body = app.body("/rango/").await;
        assert_eq!(visits(&body), 1);
    }
}

#[tokio::test]
async fn the_session_holds_visits_and_an_rfc3339_last_visit() {
    let app = TestApp::tracked(&[]).await;
    let key = new_key(&app.get("/rango/").await);
    let (data, _, _) = app.row(&key).await.expect("a row");
    let data: serde_json::Value = serde_json::from_str(&data).expect("json");
    assert_eq!(data["visits"], json!(1));
    let last = data["last_visit"].as_str().expect("a string");
    let parsed = time::OffsetDateTime::parse(last, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    let age = time::OffsetDateTime::now_utc() - parsed;
    assert!(age.whole_seconds().abs() < 5, "{last}");
}

#[tokio::test]
async fn an_empty_site_still_renders() {
    let app = TestApp::tracked(&[("rango.sample_data", json!(false))]).await;
    let body = app.body("/rango/").await;
    assert!(body.contains("There are no categories yet."));
    assert!(body.contains("There are no pages yet."));
    assert_eq!(visits(&body), 1);
}

#[tokio::test]
async fn the_stylesheet_is_served_under_static() {
    let app = TestApp::tracked(&[]).await;
    let response = app.get("/static/css/rango.css").await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.content_type(), Some(ContentType::CSS));
    assert!(set_cookies(&response).is_empty());
}

#[tokio::test]
async fn unknown_pages_get_the_sites_404_page() {
    let app = TestApp::tracked(&[]).await;
    for uri in ["/nowhere", "/rango/nowhere/", "/rango/nowhere"] {
        let response = app.get(uri).await;
        assert_eq!(response.status(), Status::NotFound, "{uri}");
        let body = response.into_string().await.expect("body");
        assert!(body.contains("404: Not found"), "{body}");
        assert!(
            body.contains("href=\"/static/css/rango.css\""),
            "rendered in the layout"
        );
    }
}

#[tokio::test]
async fn a_failing_query_gets_the_sites_500_page_and_saves_nothing() {
    let app = TestApp::tracked(&[]).await;
    sqlx::query("DROP TABLE page")
        .execute(app.pool())
        .await
        .expect("drop");
    let response = app.get("/rango/").await;
    assert_eq!(response.status(), Status::InternalServerError);
    assert!(set_cookies(&response).is_empty());
    let body = response.into_string().await.expect("body");
    assert!(body.contains("500: Something went wrong"), "{body}");
    assert_eq!(app.session_rows().await, 0);
}

#[tokio::test]
async fn pages_link_both_navigation_entries() {
    let app = TestApp::tracked(&[]).await;
    let body = app.body("/rango/about/").await;
    assert!(body.contains("<a href=\"/rango/\">Index</a>"));
    assert!(body.contains("<a href=\"/rango/about/\" aria-current=\"page\">About</a>"));
}

/// The index's lists come from memory, read again at most once a second: a change made behind
/// the server's back (another server, the command line) shows within that second, well under
/// the 2 s bound of "What another server sees".
#[tokio::test]
async fn the_index_shows_a_change_made_elsewhere_within_a_second() {
    let app = TestApp::tracked(&[]).await;
    let filled = std::time::Instant::now();
    let first = |body: &str, a: &str, b: &str| {
        let (a, b) = (body.find(a).expect(a), body.find(b).expect(b));
        a < b
    };
    let body = app.body("/rango/").await;
    assert!(first(&body, ">Python<", ">Other Frameworks<"));
    sqlx::query("UPDATE category SET likes = 1000 WHERE name = 'Other Frameworks'")
        .execute(app.pool())
        .await
        .expect("update");
    let body = app.body("/rango/").await;
    if filled.elapsed() < std::time::Duration::from_millis(900) {
        assert!(
            first(&body, ">Python<", ">Other Frameworks<"),
            "served from memory"
        );
    }
    loop {
        let body = app.body("/rango/").await;
        if first(&body, ">Other Frameworks<", ">Python<") {
            break;
        }
        assert!(
            filled.elapsed() < std::time::Duration::from_secs(2),
            "the change never showed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
