//! The proxy environment variables, read as curl reads them: `http_proxy` (lower case only:
//! a CGI program gets the request's `Proxy:` header as `HTTP_PROXY`), `HTTPS_PROXY` or
//! `https_proxy`, `ALL_PROXY` or `all_proxy`, and `NO_PROXY` or `no_proxy`.

use std::net::IpAddr;

use crate::net::proxy::{Proxy, ProxyUrlError};

/// A snapshot of the proxy variables (taken once, so tests can build one by hand).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// `http_proxy`: for `http://` URLs.
    pub http: Option<String>,
    /// `https_proxy` or `HTTPS_PROXY`: for `https://` URLs.
    pub https: Option<String>,
    /// `all_proxy` or `ALL_PROXY`: for either, when the specific one is unset.
    pub all: Option<String>,
    /// `no_proxy` or `NO_PROXY`: hosts reached directly.
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    /// Reads the variables; the lower-case spelling wins, an empty value counts as unset.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let either = |lower: &str, upper: &str| var(lower).or_else(|| var(upper));
        Self {
            // Never `HTTP_PROXY`: any CGI request could set it through a `Proxy:` header.
            http: var("http_proxy"),
            https: either("https_proxy", "HTTPS_PROXY"),
            all: either("all_proxy", "ALL_PROXY"),
            no_proxy: either("no_proxy", "NO_PROXY"),
        }
    }

    /// The proxy for a URL with `scheme` and `host`, or `None` to go direct. `no_proxy`, when
    /// given (`--noproxy`), replaces the variable.
    ///
    /// # Errors
    ///
    /// [`ProxyUrlError`] when the variable that applies holds no valid proxy URL.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockit::net::proxy::ProxyEnv;
    ///
    /// let env = ProxyEnv {
    ///     https: Some("socks5h://127.0.0.1:1080".into()),
    ///     no_proxy: Some("localhost,.internal".into()),
    ///     ..ProxyEnv::default()
    /// };
    /// assert!(env.proxy_for("https", "example.com", None).unwrap().is_some());
    /// assert!(env.proxy_for("https", "db.internal", None).unwrap().is_none());
    /// assert!(env.proxy_for("http", "example.com", None).unwrap().is_none());
    /// ```
    pub fn proxy_for(
        &self,
        scheme: &str,
        host: &str,
        no_proxy: Option<&str>,
    ) -> Result<Option<Proxy>, ProxyUrlError> {
        let specific = match scheme {
            "http" => self.http.as_ref(),
            "https" => self.https.as_ref(),
            _ => None,
        };
        let Some(url) = specific.or(self.all.as_ref()) else {
            return Ok(None);
        };
        let list = no_proxy.or(self.no_proxy.as_deref()).unwrap_or("");
        if NoProxy::new(list).matches(host) {
            return Ok(None);
        }
        url.parse().map(Some)
    }
}

/// Which proxy a client that talks to many hosts (HTTP, with redirects) uses for each.
///
/// `Default` goes direct everywhere and reads no environment.
#[derive(Debug, Clone, Default)]
pub struct ProxyPolicy {
    /// `--proxy URL`: `Some(Some(p))` uses `p`; `Some(None)` (`--proxy ''`) never uses a
    /// proxy; `None` leaves the choice to `env`.
    pub explicit: Option<Option<Proxy>>,
    /// The environment variables (an empty one for library users who want none).
    pub env: ProxyEnv,
    /// `--noproxy LIST`, which replaces `NO_PROXY`.
    pub no_proxy: Option<String>,
}

impl ProxyPolicy {
    /// A policy that always uses `proxy` (or never one), whatever the host.
    pub fn fixed(proxy: Option<Proxy>) -> Self {
        Self {
            explicit: Some(proxy),
            ..Self::default()
        }
    }

    /// The proxy for a URL with `scheme` and `host`, or `None` to go direct.
    ///
    /// # Errors
    ///
    /// [`ProxyUrlError`] when an environment variable holds no valid proxy URL.
    pub fn proxy_for(&self, scheme: &str, host: &str) -> Result<Option<Proxy>, ProxyUrlError> {
        match &self.explicit {
            Some(None) => Ok(None),
            Some(Some(proxy)) => {
                let list = self.no_proxy.as_deref().or(self.env.no_proxy.as_deref());
                if NoProxy::new(list.unwrap_or("")).matches(host) {
                    Ok(None)
                } else {
                    Ok(Some(proxy.clone()))
                }
            }
            None => self.env.proxy_for(scheme, host, self.no_proxy.as_deref()),
        }
    }
}

/// A `NO_PROXY` list: `*`, host names (a name also covers its subdomains; a leading dot is
/// the same), IP addresses and CIDR ranges, separated by commas or spaces.
///
/// # Examples
///
/// ```
/// use sockit::net::proxy::NoProxy;
///
/// let list = NoProxy::new("example.com, .local,10.0.0.0/8,::1");
/// assert!(list.matches("example.com"));
/// assert!(list.matches("www.example.com"));
/// assert!(!list.matches("notexample.com"));
/// assert!(list.matches("printer.local"));
/// assert!(list.matches("10.1.2.3"));
/// assert!(list.matches("[::1]"));
/// assert!(!list.matches("11.0.0.1"));
/// assert!(NoProxy::new("*").matches("anything"));
/// ```
#[derive(Debug, Clone)]
pub struct NoProxy<'a> {
    entries: Vec<&'a str>,
}

impl<'a> NoProxy<'a> {
    /// Splits the list (pure; nothing is resolved).
    pub fn new(list: &'a str) -> Self {
        Self {
            entries: list
                .split([',', ' ', '\t'])
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .collect(),
        }
    }

    /// Whether `host` (a name or an IP literal, brackets allowed) is reached directly.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|entry| {
            if *entry == "*" {
                return true;
            }
            let entry = entry.trim_start_matches('[').trim_end_matches(']');
            if let Some(ip) = ip {
                return ip_matches(ip, entry);
            }
            let name = entry.trim_start_matches('.').trim_end_matches('.');
            let name = name.to_ascii_lowercase();
            !name.is_empty()
                && (host == name
                    || host
                        .strip_suffix(&name)
                        .is_some_and(|prefix| prefix.ends_with('.')))
        })
    }
}

fn ip_matches(ip: IpAddr, entry: &str) -> bool {
    let (addr, bits) = match entry.split_once('/') {
        Some((addr, bits)) => match bits.parse::<u32>() {
            Ok(bits) => (addr, Some(bits)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    let Ok(network) = addr.parse::<IpAddr>() else {
        return false;
    };
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => prefix_equal(
            u128::from(u32::from(ip)),
            u128::from(u32::from(net)),
            32,
            bits,
        ),
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            prefix_equal(u128::from(ip), u128::from(net), 128, bits)
        }
        _ => false,
    }
}

fn prefix_equal(a: u128, b: u128, width: u32, bits: Option<u32>) -> bool {
    let bits = bits.unwrap_or(width).min(width);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_uses_only_lower_case_http_proxy_and_falls_back_to_all_proxy() {
        let env = ProxyEnv {
            all: Some("socks5h://127.0.0.1:1".into()),
            ..ProxyEnv::default()
        };
        let proxy = env.proxy_for("http", "h", None).unwrap().unwrap();
        assert_eq!(proxy.to_string(), "socks5h://127.0.0.1:1");
        let env = ProxyEnv {
            http: Some("http://127.0.0.1:2".into()),
            all: Some("socks5h://127.0.0.1:1".into()),
            ..ProxyEnv::default()
        };
        let proxy = env.proxy_for("http", "h", None).unwrap().unwrap();
        assert_eq!(proxy.to_string(), "http://127.0.0.1:2");
        let proxy = env.proxy_for("https", "h", None).unwrap().unwrap();
        assert_eq!(proxy.to_string(), "socks5h://127.0.0.1:1");
    }

    #[test]
    fn noproxy_flag_replaces_the_variable() {
        let env = ProxyEnv {
            all: Some("socks5h://127.0.0.1:1".into()),
            no_proxy: Some("*".into()),
            ..ProxyEnv::default()
        };
        assert!(env.proxy_for("https", "h", None).unwrap().is_none());
        assert!(
            env.proxy_for("https", "h", Some("other"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn cidr_and_exact_addresses() {
        let list = NoProxy::new("192.168.0.0/16 fe80::/10 127.0.0.1");
        assert!(list.matches("192.168.4.4"));
        assert!(list.matches("fe80::1"));
        assert!(list.matches("127.0.0.1"));
        assert!(!list.matches("127.0.0.2"));
        assert!(!list.matches("192.169.0.1"));
    }
}
