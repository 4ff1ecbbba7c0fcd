//! The origin of a URL (`scheme://host:port`, default ports filled in) and the URL forms
//! every command accepts. Connections are pooled per origin; credentials stay with one.

use std::fmt;

use url::Url;

use crate::http::client::errors::HttpError;
use crate::net::{AddrError, DEFAULT_CONNECT_HOST, Target};

/// `scheme://host:port`: connections are reused within one origin only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    /// `https`.
    pub(crate) tls: bool,
    /// The host as the URL has it (an IPv6 address without brackets).
    pub(crate) host: String,
    /// The port, the scheme's default when the URL has none.
    pub(crate) port: u16,
}

impl Origin {
    /// The origin of an `http` or `https` URL.
    pub(crate) fn of(url: &Url) -> Result<Self, HttpError> {
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(HttpError::UnsupportedScheme(other.to_owned())),
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => {
                return Err(HttpError::InvalidUrl {
                    url: url.to_string(),
                    reason: "no host".into(),
                });
            }
        };
        let port = url.port().unwrap_or(Self::default_port(tls));
        Ok(Self { tls, host, port })
    }

    fn default_port(tls: bool) -> u16 {
        if tls { 443 } else { 80 }
    }

    /// `host` or `host:port` as `Host` (HTTP/1) and `:authority` (HTTP/2) carry it: the
    /// port only when it is not the scheme's default.
    pub(crate) fn authority(&self, url: &Url) -> String {
        match url.host_str() {
            Some(host) if self.port == Self::default_port(self.tls) => host.to_owned(),
            Some(host) => format!("{host}:{}", self.port),
            None => String::new(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

pub(crate) fn parse_url(url: &str) -> Result<Url, HttpError> {
    target_url(url, "http")
}

/// The URL for what the user typed, in any form every command accepts ([`Target`]):
/// `https://x/a`, `x/a` (`default_scheme` is added), `:8080/a` and `8080` (localhost),
/// `user:password@x/` (the credentials are sent as Basic authentication).
///
/// # Examples
///
/// ```
/// use sockit::http::target_url;
///
/// assert_eq!(target_url("18000", "http").unwrap().as_str(), "http://localhost:18000/");
/// assert_eq!(target_url(":8443/a?b=c", "https").unwrap().as_str(), "https://localhost:8443/a?b=c");
/// assert_eq!(
///     target_url("x.test/?next=http://y/", "http").unwrap().as_str(),
///     "http://x.test/?next=http://y/"
/// );
/// ```
///
/// # Errors
///
/// [`HttpError::InvalidUrl`] for malformed text,
/// [`HttpError::UnsupportedScheme`] for a scheme other than `http` and `https`.
pub fn target_url(input: &str, default_scheme: &str) -> Result<Url, HttpError> {
    let target = Target::parse(input).map_err(|e| match e {
        AddrError::Invalid { reason, .. } => HttpError::InvalidUrl {
            url: input.to_owned(),
            reason: reason.to_owned(),
        },
        other => HttpError::Net(other.into()),
    })?;
    let scheme = target.scheme.as_deref().unwrap_or(default_scheme);
    if !matches!(scheme, "http" | "https") {
        return Err(HttpError::UnsupportedScheme(scheme.to_owned()));
    }
    let host = match target.host.as_deref() {
        Some(host) if host.contains(':') => format!("[{host}]"),
        Some(host) => host.to_owned(),
        None => DEFAULT_CONNECT_HOST.to_owned(),
    };
    let mut text = format!("{scheme}://{host}");
    if let Some(port) = target.port {
        text.push_str(&format!(":{port}"));
    }
    if !target.rest.starts_with('/') {
        text.push('/');
    }
    text.push_str(&target.rest);
    let invalid = |reason: String| HttpError::InvalidUrl {
        url: input.to_owned(),
        reason,
    };
    let mut url = Url::parse(&text).map_err(|e| invalid(e.to_string()))?;
    if let Some(userinfo) = &target.userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo.as_str(), None),
        };
        url.set_username(user)
            .and_then(|()| url.set_password(password))
            .map_err(|()| invalid("this URL cannot carry a user name".into()))?;
    }
    Origin::of(&url)?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use crate::http::client::errors::HttpError;
    use crate::http::client::origin::{Origin, parse_url};

    #[test]
    fn only_http_and_https_are_accepted() {
        assert!(matches!(
            parse_url("ftp://x/"),
            Err(HttpError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            parse_url("http://[::1/"),
            Err(HttpError::InvalidUrl { .. })
        ));
        assert!(matches!(
            parse_url("http://a<b/"),
            Err(HttpError::InvalidUrl { .. })
        ));
        assert!(matches!(
            parse_url("ftp.test/x?u=gopher://y/"),
            Ok(url) if url.as_str() == "http://ftp.test/x?u=gopher://y/"
        ));
        assert!(parse_url("https://[::1]:8443/a?b=c").is_ok());
    }

    #[test]
    fn default_ports_are_filled_in_and_left_out_of_the_authority() {
        for (url, port, authority) in [
            ("http://a.test/x", 80, "a.test"),
            ("https://a.test/x", 443, "a.test"),
            ("https://a.test:443/x", 443, "a.test"),
            ("http://a.test:8080/x", 8080, "a.test:8080"),
            ("https://[::1]:8443/", 8443, "[::1]:8443"),
        ] {
            let url = url::Url::parse(url).unwrap();
            let origin = Origin::of(&url).unwrap();
            assert_eq!(origin.port, port, "{url}");
            assert_eq!(origin.authority(&url), authority, "{url}");
        }
        let a = Origin::of(&url::Url::parse("http://a.test:80/").unwrap()).unwrap();
        let b = Origin::of(&url::Url::parse("http://a.test/").unwrap()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "http://a.test:80");
    }
}
