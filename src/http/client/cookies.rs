//! A cookie jar (RFC 6265): cookies a response sets are sent back only to the host, path and
//! scheme they were set for. Cookies are not bound to a port (RFC 6265 §8.5), but a name set
//! by one host is never sent to another.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};
use url::Url;

/// One stored cookie.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cookie {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
    /// The host it was set by, or the domain it covers (lower case, no leading dot).
    pub domain: String,
    /// Sent to `domain` exactly, not to its subdomains (no `Domain` attribute was given).
    pub host_only: bool,
    /// Sent for this path and below.
    pub path: String,
    /// Sent over `https` only.
    pub secure: bool,
    /// When it expires, in seconds since the Unix epoch; `None` lasts the session.
    pub expires: Option<u64>,
}

/// The cookies of one client, shared by the requests of a redirect chain.
#[derive(Debug, Default)]
pub struct CookieJar {
    cookies: Mutex<Vec<Cookie>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The host of `url` as cookies see it: lower case, IPv6 without brackets.
fn host_of(url: &Url) -> Option<String> {
    match url.host()? {
        url::Host::Ipv6(ip) => Some(ip.to_string()),
        host => Some(host.to_string().to_ascii_lowercase()),
    }
}

/// RFC 6265 §5.1.3: `host` is `domain` or one of its subdomains (never for an IP address).
fn domain_matches(host: &str, domain: &str) -> bool {
    host == domain
        || (host.ends_with(domain)
            && host[..host.len() - domain.len()].ends_with('.')
            && host.parse::<IpAddr>().is_err())
}

/// RFC 6265 §5.1.4: `request_path` is `cookie_path` or below it.
fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || request_path[cookie_path.len()..].starts_with('/')))
}

/// RFC 6265 §5.1.4: the directory of the request path.
fn default_path(url: &Url) -> String {
    let path = url.path();
    match path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => path[..i].to_owned(),
    }
}

impl CookieJar {
    /// An empty jar.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Cookie>> {
        self.cookies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `cookie`, replacing one with the same name, domain and path.
    pub fn insert(&self, cookie: Cookie) {
        let mut cookies = self.lock();
        cookies.retain(|c| {
            !(c.name == cookie.name && c.domain == cookie.domain && c.path == cookie.path)
        });
        if cookie.expires.is_none_or(|at| at > now()) {
            cookies.push(cookie);
        }
    }

    /// Every cookie that has not expired.
    pub fn cookies(&self) -> Vec<Cookie> {
        let now = now();
        let mut cookies = self.lock();
        cookies.retain(|c| c.expires.is_none_or(|at| at > now));
        cookies.clone()
    }

    /// Stores the cookies of the `Set-Cookie` headers of a response from `url`; a cookie for
    /// a domain `url`'s host does not belong to is ignored.
    pub fn store(&self, url: &Url, headers: &HeaderMap) {
        for value in headers.get_all(header::SET_COOKIE) {
            if let Some(cookie) = value.to_str().ok().and_then(|v| parse_set_cookie(url, v)) {
                self.insert(cookie);
            }
        }
    }

    /// The `Cookie` header value for a request to `url`, if any cookie is due.
    pub fn header_for(&self, url: &Url) -> Option<String> {
        let host = host_of(url)?;
        let secure = url.scheme() == "https";
        let mut due: Vec<Cookie> = self
            .cookies()
            .into_iter()
            .filter(|c| {
                (if c.host_only {
                    host == c.domain
                } else {
                    domain_matches(&host, &c.domain)
                }) && path_matches(url.path(), &c.path)
                    && (secure || !c.secure)
            })
            .collect();
        if due.is_empty() {
            return None;
        }
        // Longer paths first (RFC 6265 §5.4).
        due.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        Some(
            due.iter()
                .map(|c| format!("{}={}", c.name, c.value))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

/// The cookies in the Netscape format curl and wget read (`curl -b FILE`, `-c FILE`): one
/// tab-separated line per cookie, domain cookies with a leading dot, 0 for no expiry.
pub fn netscape_format(cookies: &[Cookie]) -> String {
    let mut text = String::from("# Netscape HTTP Cookie File\n");
    for c in cookies {
        let (domain, subdomains) = if c.host_only {
            (c.domain.clone(), "FALSE")
        } else {
            (format!(".{}", c.domain), "TRUE")
        };
        let secure = if c.secure { "TRUE" } else { "FALSE" };
        text.push_str(&format!(
            "{domain}\t{subdomains}\t{}\t{secure}\t{}\t{}\t{}\n",
            c.path,
            c.expires.unwrap_or(0),
            c.name,
            c.value
        ));
    }
    text
}

/// Parses one `Set-Cookie` value received from `url` (RFC 6265 §5.2–5.3).
pub(crate) fn parse_set_cookie(url: &Url, text: &str) -> Option<Cookie> {
    let host = host_of(url)?;
    let mut parts = text.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let mut cookie = Cookie {
        name: name.to_owned(),
        value: value.trim().trim_matches('"').to_owned(),
        domain: host.clone(),
        host_only: true,
        path: default_path(url),
        secure: false,
        expires: None,
    };
    let mut max_age = None;
    for attribute in parts {
        let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
        let val = val.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "domain" => {
                let domain = val.trim_start_matches('.').to_ascii_lowercase();
                if domain.is_empty() {
                    continue;
                }
                // A cookie for a domain the host is not in (another site, or a parent of
                // an IP address) is refused whole.
                if !domain_matches(&host, &domain) {
                    return None;
                }
                // A bare top-level name (`Domain=com`) would reach every site under it.
                if domain != host && !domain.contains('.') {
                    return None;
                }
                cookie.host_only = domain == host;
                cookie.domain = domain;
            }
            "path" if val.starts_with('/') => cookie.path = val.to_owned(),
            "secure" => cookie.secure = true,
            "max-age" => max_age = val.parse::<i64>().ok(),
            "expires" => {
                if let Ok(at) = httpdate::parse_http_date(val) {
                    cookie.expires = Some(
                        at.duration_since(UNIX_EPOCH)
                            .unwrap_or(Duration::ZERO)
                            .as_secs(),
                    );
                }
            }
            _ => {}
        }
    }
    // Max-Age wins over Expires; zero or less deletes the cookie at once.
    if let Some(seconds) = max_age {
        cookie.expires = Some(if seconds <= 0 {
            0
        } else {
            now().saturating_add(seconds.unsigned_abs())
        });
    }
    Some(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn a_cookie_goes_back_to_its_host_only() {
        let jar = CookieJar::new();
        let mut headers = HeaderMap::new();
        headers.append(header::SET_COOKIE, "a=1; Path=/".parse().unwrap());
        jar.store(&url("http://a.test/x/y"), &headers);
        assert_eq!(
            jar.header_for(&url("http://a.test/z")).as_deref(),
            Some("a=1")
        );
        assert_eq!(jar.header_for(&url("http://b.test/z")), None);
        assert_eq!(jar.header_for(&url("http://sub.a.test/z")), None);
    }

    #[test]
    fn domain_cookies_reach_subdomains_but_never_other_sites() {
        let from = url("http://www.a.test/");
        let c = parse_set_cookie(&from, "s=1; Domain=.a.test").unwrap();
        assert!(!c.host_only);
        assert_eq!(c.domain, "a.test");
        assert!(parse_set_cookie(&from, "s=1; Domain=b.test").is_none());
        assert!(parse_set_cookie(&from, "s=1; Domain=test").is_none());
        assert!(parse_set_cookie(&url("http://127.0.0.1/"), "s=1; Domain=0.0.1").is_none());
        let jar = CookieJar::new();
        jar.insert(c);
        assert!(jar.header_for(&url("http://api.a.test/")).is_some());
        assert!(jar.header_for(&url("http://evil-a.test/")).is_none());
    }

    #[test]
    fn path_secure_and_expiry_are_kept() {
        let from = url("https://a.test/docs/page");
        let jar = CookieJar::new();
        jar.insert(parse_set_cookie(&from, "p=1").unwrap()); // default path /docs
        jar.insert(parse_set_cookie(&from, "s=1; Secure; Path=/").unwrap());
        jar.insert(parse_set_cookie(&from, "old=1; Max-Age=0").unwrap());
        assert_eq!(
            jar.header_for(&url("https://a.test/docs/x")).as_deref(),
            Some("p=1; s=1")
        );
        assert_eq!(
            jar.header_for(&url("https://a.test/docsx")).as_deref(),
            Some("s=1")
        );
        assert_eq!(
            jar.header_for(&url("http://a.test/docs/x")).as_deref(),
            Some("p=1")
        );
        jar.insert(parse_set_cookie(&from, "p=; Max-Age=0").unwrap());
        assert_eq!(jar.header_for(&url("http://a.test/docs/x")), None);
    }
}
