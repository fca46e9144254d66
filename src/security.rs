//! Django's security defaults for the site: the response headers of its `SecurityMiddleware`
//! and clickjacking middleware, and `ALLOWED_HOSTS`.
//!
//! `allowed_hosts` is a top-level setting (`ROCKET_ALLOWED_HOSTS='["example.org"]'` overrides
//! it), matched as Django matches it: the port ignored, a trailing dot ignored, `.example.org`
//! for the domain and every subdomain, `*` for any host. A request whose `Host` is not allowed
//! (or is not a host at all) is answered 400 before any handler runs: its URI is rewritten to a
//! route of this module that answers nothing else, so no session is loaded and no cookie set.
//! Over HTTP/2 the host is the request's `:authority`. A request that names no host at all
//! (HTTP/1.0 without `Host`) names none to rebind, and is served.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::http::uri::Origin;
use rocket::http::{Header, Method, Status};
use rocket::shield::Shield;
use rocket::{get, routes, Build, Data, Request, Response, Rocket};

/// The hosts allowed when `allowed_hosts` is not set: this machine, as Django allows with
/// `DEBUG` and no `ALLOWED_HOSTS`.
pub const DEFAULT_ALLOWED_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Where a request for a host that is not allowed is sent.
const REFUSED: &str = "/__rango/disallowed-host";

/// The `Content-Security-Policy` header's value: everything from the site itself, no plugin, no
/// frame around it, forms posted only to it. The pages satisfy it: no inline script, style or
/// event handler, one stylesheet under `/static` (a test over `templates/` keeps it so).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; object-src 'none'; \
                                           base-uri 'self'; form-action 'self'; \
                                           frame-ancestors 'none'";

/// Django's security headers: `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`
/// and `Cross-Origin-Opener-Policy: same-origin` (its `SecurityMiddleware`), `X-Frame-Options:
/// DENY` (its clickjacking middleware), and a [`CONTENT_SECURITY_POLICY`]; with `hsts`,
/// `Strict-Transport-Security: max-age=31536000` too.
pub fn security_headers(hsts: bool) -> Vec<Header<'static>> {
    let mut headers = vec![
        Header::new("X-Content-Type-Options", "nosniff"),
        Header::new("Referrer-Policy", "same-origin"),
        Header::new("Cross-Origin-Opener-Policy", "same-origin"),
        Header::new("X-Frame-Options", "DENY"),
        Header::new("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ];
    if hsts {
        headers.push(Header::new("Strict-Transport-Security", "max-age=31536000"));
    }
    headers
}

/// Sets [`security_headers`] on every response that has not set its own, as Rocket's `Shield`
/// would, with HSTS when `session.cookie_secure` is set: a site whose session cookie goes over
/// HTTPS only is served over HTTPS only (behind a proxy that terminates TLS too), and the browser
/// should never try plain HTTP. Rocket's own `Shield`, which it attaches by default, is replaced
/// by an empty one.
///
/// Written here rather than configured on `Shield` because of what `Shield` costs a response:
/// for each of its headers it asks the response's header map for the name and then sets it, and
/// Rocket's map hashes a name one byte at a time (SipHash over the lowercased bytes), about 1,200
/// instructions a name, twice per header: about 21,600 instructions a response, 15 % of the about
/// page's. This fairing finds which of its headers the response already has by comparing
/// names with the few the response carries, and hashes each name once, to set it (BENCHMARKS.md,
/// "What each change bought", 24). Rocket's default `Permissions-Policy: interest-cohort=()`
/// is not sent: Django does not send it, and the feature it turns off is gone from browsers, which
/// now warn of an unknown feature.
pub fn security_headers_fairing() -> impl Fairing {
    fairing::AdHoc::on_ignite("Security headers", |rocket| async move {
        let hsts = rocket
            .figment()
            .extract_inner::<bool>("session.cookie_secure")
            .unwrap_or(false);
        rocket.attach(Shield::new()).attach(SecurityHeaders {
            headers: security_headers(hsts),
        })
    })
}

/// The fairing of [`security_headers_fairing`].
struct SecurityHeaders {
    /// At most 32: `on_response` keeps one bit for each.
    headers: Vec<Header<'static>>,
}

#[rocket::async_trait]
impl Fairing for SecurityHeaders {
    fn info(&self) -> Info {
        Info {
            name: "Security headers",
            kind: Kind::Response | Kind::Singleton,
        }
    }

    async fn on_response<'r>(&self, _: &'r Request<'_>, response: &mut Response<'r>) {
        // Bit i: the response set its own `self.headers[i]`.
        let mut present = 0u32;
        for header in response.headers().iter() {
            for (i, ours) in self.headers.iter().enumerate() {
                if header
                    .name()
                    .as_str()
                    .eq_ignore_ascii_case(ours.name().as_str())
                {
                    present |= 1 << i;
                }
            }
        }
        for (i, header) in self.headers.iter().enumerate() {
            if present & (1 << i) == 0 {
                response.set_header(header.clone());
            }
        }
    }
}

/// The `allowed_hosts` patterns, lower case, checked at launch.
#[derive(Debug, Clone, PartialEq)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    /// The patterns of `allowed_hosts` in `figment`, or the defaults.
    ///
    /// # Errors
    /// A message naming the setting when it is not a list of host patterns.
    pub fn from_figment(figment: &rocket::figment::Figment) -> Result<Self, String> {
        let patterns: Vec<String> = match figment.extract_inner("allowed_hosts") {
            Ok(patterns) => patterns,
            Err(e) if e.missing() => DEFAULT_ALLOWED_HOSTS.map(str::to_owned).to_vec(),
            Err(e) => return Err(format!("invalid setting allowed_hosts: {e}")),
        };
        let mut checked = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            let lower = pattern.trim().to_ascii_lowercase();
            let host = lower.strip_prefix('.').unwrap_or(&lower);
            if lower != "*" && split_host(host) != Some((host, false)) {
                return Err(format!(
                    "invalid setting allowed_hosts: {pattern:?} is not a host name, an IP \
                     address, \".example.org\" (a domain and its subdomains) or \"*\" (no port)"
                ));
            }
            checked.push(lower);
        }
        Ok(AllowedHosts(checked))
    }

    /// Whether a request whose `Host` header is `host` may be served.
    /// Compared in any case, with no copy of the host: this runs on every request.
    pub fn allows(&self, host: &str) -> bool {
        let Some((domain, _)) = split_host(host) else {
            return false;
        };
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        self.0.iter().any(|pattern| {
            pattern == "*"
                || pattern.eq_ignore_ascii_case(domain)
                || pattern.strip_prefix('.').is_some_and(|parent| {
                    // `domain` is ASCII (split_host checked it), so any byte index is a boundary.
                    let sub = domain.len().checked_sub(parent.len() + 1);
                    domain.eq_ignore_ascii_case(parent)
                        || sub.is_some_and(|dot| {
                            domain.as_bytes()[dot] == b'.'
                                && domain[dot + 1..].eq_ignore_ascii_case(parent)
                        })
                })
        })
    }
}

/// The host of a `Host` value (ASCII, in any case) and whether it had a port; `None` when it is not a
/// host name, an IPv4 address or a bracketed IPv6 address, with an optional numeric port.
fn split_host(value: &str) -> Option<(&str, bool)> {
    let (host, port) = if value.starts_with('[') {
        let end = value.find(']')? + 1;
        let (host, rest) = value.split_at(end);
        let inside = &host[1..end - 1];
        let ipv6 = inside.contains(':')
            && inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        match rest.strip_prefix(':') {
            Some(port) if ipv6 => (host, Some(port)),
            None if ipv6 && rest.is_empty() => (host, None),
            _ => return None,
        }
    } else {
        let (host, port) = match value.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        };
        let name = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
        if host.is_empty() || !host.chars().all(name) {
            return None;
        }
        (host, port)
    };
    match port {
        Some(port) if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) => None,
        port => Some((host, port.is_some())),
    }
}

/// Refuses to launch with a weak `secret_key`: one that is set but does not decode (base64 or
/// hex) to 32 or 64 bytes, or whose bytes are all zero (Rocket launches with either). Unset,
/// Rocket's own rule holds: a random key in debug, and the cookie store refuses to launch
/// without one elsewhere.
pub fn secret_key_check() -> rocket::fairing::AdHoc {
    rocket::fairing::AdHoc::try_on_ignite("Secret key", |rocket| async move {
        let Ok(key) = rocket.figment().extract_inner::<String>("secret_key") else {
            return Ok(rocket);
        };
        match rocket_server_sessions::stores::CookieStore::new(&key, "sessionid") {
            Ok(_) => Ok(rocket),
            Err(e) => {
                log::error!("refusing a weak key: {e}");
                Err(rocket)
            }
        }
    })
}

/// Refuses requests for hosts that are not allowed.
pub struct HostCheck;

/// The fairing that checks every request's `Host` against `allowed_hosts`.
pub fn host_check() -> HostCheck {
    HostCheck
}

#[rocket::async_trait]
impl Fairing for HostCheck {
    fn info(&self) -> Info {
        Info {
            name: "Allowed hosts",
            kind: Kind::Ignite | Kind::Request,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        match AllowedHosts::from_figment(rocket.figment()) {
            Ok(hosts) => Ok(rocket.manage(hosts).mount("/", routes![disallowed_host])),
            Err(e) => {
                log::error!("{e}");
                Err(rocket)
            }
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        let Some(hosts) = req.rocket().state::<AllowedHosts>() else {
            return;
        };
        // HTTP/1 names the host in `Host`; HTTP/2 in `:authority`, which Rocket keeps as the
        // request's host.
        let authority;
        let host = match req.headers().get_one("Host") {
            Some(host) => host,
            None => match req.host() {
                Some(host) => {
                    authority = host.to_string();
                    authority.as_str()
                }
                None => return,
            },
        };
        if hosts.allows(host) {
            return;
        }
        REFUSALS.note(host);
        req.set_method(Method::Get);
        req.set_uri(Origin::const_new(REFUSED, None));
    }
}

/// What a refused request gets: the 400 page, from the site's catcher.
#[get("/__rango/disallowed-host")]
fn disallowed_host() -> Status {
    Status::BadRequest
}

/// Warnings about refused hosts: one line a second at most, with how many were refused since
/// the last, so that a flood of them (a scan, a DNS rebinding attempt) cannot fill a log.
struct Throttled {
    /// The unix second of the last line.
    last: AtomicI64,
    /// Refusals since the last line.
    unsaid: AtomicU64,
}

static REFUSALS: Throttled = Throttled {
    last: AtomicI64::new(0),
    unsaid: AtomicU64::new(0),
};

impl Throttled {
    fn note(&self, host: &str) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let last = self.last.load(Ordering::Relaxed);
        if now > last
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let more = self.unsaid.swap(0, Ordering::Relaxed);
            let host: String = host
                .chars()
                .take(100)
                .flat_map(char::escape_debug)
                .collect();
            log::warn!(
                "refused a request for host \"{host}\", not in allowed_hosts \
                 (and {more} more refused since the last such warning)"
            );
        } else {
            self.unsaid.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocket::figment::providers::Serialized;
    use rocket::figment::Figment;

    fn hosts(patterns: &[&str]) -> AllowedHosts {
        let figment = Figment::new().merge(Serialized::global("allowed_hosts", patterns));
        AllowedHosts::from_figment(&figment).expect("valid patterns")
    }

    /// A header the response set itself is kept, alone; the others are added once each, HSTS
    /// only when asked for; and Rocket's own `Shield` adds nothing.
    #[rocket::async_test]
    async fn a_response_keeps_a_security_header_it_set_itself() {
        use rocket::local::asynchronous::Client;

        #[derive(rocket::Responder)]
        struct Framed {
            body: &'static str,
            frame: Header<'static>,
        }
        #[get("/framed")]
        fn framed() -> Framed {
            let frame = Header::new("x-frame-options", "SAMEORIGIN");
            Framed {
                body: "framed",
                frame,
            }
        }
        #[get("/plain")]
        fn plain() -> &'static str {
            "plain"
        }

        for secure in [false, true] {
            let figment = rocket::Config::figment().merge(("session.cookie_secure", secure));
            let rocket = rocket::custom(figment)
                .attach(security_headers_fairing())
                .mount("/", routes![framed, plain]);
            let client = Client::untracked(rocket).await.expect("a rocket");
            let response = client.get("/framed").dispatch().await;
            let frame: Vec<&str> = response.headers().get("X-Frame-Options").collect();
            assert_eq!(frame, ["SAMEORIGIN"]);
            let response = client.get("/plain").dispatch().await;
            let expected = security_headers(secure);
            assert_eq!(expected.len(), if secure { 6 } else { 5 });
            for header in &expected {
                let values: Vec<&str> = response.headers().get(header.name().as_str()).collect();
                assert_eq!(values, [header.value()], "{}", header.name());
            }
            // Nothing else: no `Permissions-Policy`, Rocket's `Shield`'s default.
            let names: Vec<String> = response
                .headers()
                .iter()
                .map(|h| h.name().to_string())
                .collect();
            let mut wanted = vec!["Content-Type".to_owned(), "Server".to_owned()];
            wanted.extend(expected.iter().map(|h| h.name().to_string()));
            assert_eq!(names, wanted);
        }
    }

    #[test]
    fn hosts_match_as_djangos_allowed_hosts() {
        let default = AllowedHosts::from_figment(&Figment::new()).expect("the defaults");
        for host in [
            "localhost",
            "LOCALHOST:8000",
            "127.0.0.1:8000",
            "[::1]:8000",
            "[::1]",
        ] {
            assert!(default.allows(host), "{host}");
        }
        for host in [
            "example.org",
            "127.0.0.2",
            "localhost.evil.org",
            "",
            ":80",
            "local host",
        ] {
            assert!(!default.allows(host), "{host}");
        }
        let site = hosts(&[".example.org", "rango.test"]);
        for host in [
            "example.org",
            "www.example.org:443",
            "a.b.example.org",
            "rango.test.",
        ] {
            assert!(site.allows(host), "{host}");
        }
        for host in [
            "badexample.org",
            "example.org.evil",
            "rango.test:x",
            "www.rango.test",
        ] {
            assert!(!site.allows(host), "{host}");
        }
        assert!(hosts(&["*"]).allows("anything.example"));
        assert!(!hosts(&["*"]).allows("not a host"));
    }

    #[test]
    fn patterns_that_are_not_hosts_are_refused_by_name() {
        for bad in ["example.org:80", "http://example.org", "ex ample.org", ""] {
            let figment = Figment::new().merge(Serialized::global("allowed_hosts", [bad]));
            let message = AllowedHosts::from_figment(&figment).expect_err(bad);
            assert!(message.contains("allowed_hosts"), "{message}");
        }
        let figment = Figment::new().merge(Serialized::global("allowed_hosts", "example.org"));
        assert!(AllowedHosts::from_figment(&figment).is_err());
    }
}
