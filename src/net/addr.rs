//! Address parsing and name resolution: `HOST:PORT`, `[v6]:PORT`, `:PORT` and a bare `PORT`.
//!
//! Parsing is pure (no DNS); [`HostPort::resolve`] does the lookup.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

/// The host servers bind when the user names none: loopback, so nothing is exposed by accident.
pub const DEFAULT_BIND_HOST: &str = "127.0.0.1";

/// The host clients talk to when an address gives only a port (`:8000`).
pub const DEFAULT_CONNECT_HOST: &str = "localhost";

/// A host (name or IP literal) and a port, as the user wrote them.
///
/// # Examples
///
/// ```
/// use sockit::net::HostPort;
///
/// let hp: HostPort = "[::1]:8080".parse().unwrap();
/// assert_eq!(hp.host(), Some("::1"));
/// assert_eq!(hp.port(), 8080);
///
/// let hp: HostPort = "9000".parse().unwrap();
/// assert_eq!(hp.host(), None);
/// assert_eq!(hp.with_default_host("127.0.0.1").to_string(), "127.0.0.1:9000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    host: Option<String>,
    port: u16,
}

/// Why an address could not be parsed or resolved.
#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    /// The text is not one of the accepted forms.
    #[error("invalid address {input:?}: {reason} (expected HOST:PORT, [IPv6]:PORT, :PORT or PORT)")]
    Invalid {
        /// What the user typed.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// DNS gave no answer for the host.
    #[error("could not resolve host: {host}")]
    Resolve {
        /// The host that was looked up.
        host: String,
        /// The resolver's error, when there was one.
        #[source]
        source: Option<std::io::Error>,
    },
}

impl HostPort {
    /// An address from its parts; `host` `None` means "the default for this side".
    pub fn new(host: Option<String>, port: u16) -> Self {
        Self { host, port }
    }

    /// The host as written, without brackets; `None` when only a port was given.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The same address with `default` filled in when no host was given.
    pub fn with_default_host(mut self, default: &str) -> Self {
        if self.host.is_none() {
            self.host = Some(default.to_owned());
        }
        self
    }

    /// The host to present to TLS (SNI) and in `Host` headers: the name as written.
    pub fn host_or(&self, default: &'static str) -> &str {
        self.host.as_deref().unwrap_or(default)
    }

    /// Looks the host up (IP literals need no DNS). Never returns an empty list.
    ///
    /// # Errors
    ///
    /// [`AddrError::Resolve`] when the name does not resolve.
    pub async fn resolve(&self, default_host: &str) -> Result<Vec<SocketAddr>, AddrError> {
        let host = self.host.as_deref().unwrap_or(default_host);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let resolve_error = |source| AddrError::Resolve {
            host: host.to_owned(),
            source,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, self.port))
            .await
            .map_err(|e| resolve_error(Some(e)))?
            .collect();
        if addrs.is_empty() {
            return Err(resolve_error(None));
        }
        Ok(addrs)
    }

    /// The socket address to bind: the host must be an IP literal (or `localhost`).
    ///
    /// # Errors
    ///
    /// [`AddrError::Invalid`] for a host name other than `localhost`.
    pub fn bind_addr(&self) -> Result<SocketAddr, AddrError> {
        let ip = match self.host.as_deref() {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(host) => host.parse().map_err(|_| AddrError::Invalid {
                input: self.to_string(),
                reason: "a server binds an IP address such as 127.0.0.1 or 0.0.0.0",
            })?,
        };
        Ok(SocketAddr::new(ip, self.port))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.as_deref() {
            Some(h) if h.contains(':') => write!(f, "[{h}]:{}", self.port),
            Some(h) => write!(f, "{h}:{}", self.port),
            None => write!(f, ":{}", self.port),
        }
    }
}

impl FromStr for HostPort {
    type Err = AddrError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| AddrError::Invalid {
            input: input.to_owned(),
            reason,
        };
        let target = Target::parse(input)?;
        if target.scheme.is_some() {
            return Err(invalid("URLs are not addresses; give HOST:PORT"));
        }
        if target.userinfo.is_some() || !target.rest.is_empty() {
            return Err(invalid(
                "an address has no user, path or query; give HOST:PORT",
            ));
        }
        let port = target.port.ok_or_else(|| invalid("missing :PORT"))?;
        if let Some(host) = &target.host {
            if !host.contains(':') && !is_valid_host(host) {
                return Err(invalid("the host has characters a host name cannot have"));
            }
        }
        Ok(Self::new(target.host, port))
    }
}

/// What a user typed to name a peer, before any defaults: an address (`HOST:PORT`,
/// `[v6]:PORT`, `:PORT`, `PORT`) or a URL, with or without its scheme
/// (`[SCHEME://][USER[:PASSWORD]@]ADDR[/PATH][?QUERY][#FRAGMENT]`).
///
/// Every command parses its target with this one parser, so the forms mean the same
/// everywhere. A bare number is always a port on the default host, never an IPv4
/// address in disguise (`18000` is `localhost:18000`, not `0.0.70.80`).
///
/// # Examples
///
/// ```
/// use sockit::net::Target;
///
/// let t = Target::parse("18000").unwrap();
/// assert_eq!((t.host.as_deref(), t.port), (None, Some(18000)));
///
/// let t = Target::parse("ada:pw@example.com:8080/a?next=http://b/").unwrap();
/// assert_eq!(t.scheme, None);
/// assert_eq!(t.userinfo.as_deref(), Some("ada:pw"));
/// assert_eq!(t.host.as_deref(), Some("example.com"));
/// assert_eq!(t.port, Some(8080));
/// assert_eq!(t.rest, "/a?next=http://b/");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The scheme, lower case, when one was written (`https` in `https://x/`).
    pub scheme: Option<String>,
    /// `USER[:PASSWORD]` before `@`, as written (percent-escapes still in place).
    pub userinfo: Option<String>,
    /// The host without brackets; `None` when only a port (or nothing) was given.
    pub host: Option<String>,
    /// The port, when one was written.
    pub port: Option<u16>,
    /// Everything from the first `/`, `?` or `#` after the address; empty when none.
    pub rest: String,
}

impl Target {
    /// Splits `input` into its parts. No DNS, no defaults.
    ///
    /// # Errors
    ///
    /// [`AddrError::Invalid`] with the reason, for text that is none of the forms.
    pub fn parse(input: &str) -> Result<Self, AddrError> {
        let invalid = |reason| AddrError::Invalid {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(invalid("it is empty"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains spaces or control characters"));
        }
        // A scheme only counts before the first `/`, `?` or `#`: `x/?next=http://y` has none.
        let (scheme, s) = match s.split_once("://") {
            Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme.to_ascii_lowercase()), rest),
            _ => (None, s),
        };
        let end = s.find(['/', '?', '#']).unwrap_or(s.len());
        let (authority, rest) = s.split_at(end);
        let (userinfo, address) = match authority.rsplit_once('@') {
            Some((user, address)) => (Some(user.to_owned()), address),
            None => (None, authority),
        };
        let (host, port) = split_host_port(address).map_err(invalid)?;
        if host.is_none() && port.is_none() && scheme.is_some() {
            return Err(invalid("the URL has no host"));
        }
        Ok(Self {
            scheme,
            userinfo,
            host,
            port,
            rest: rest.to_owned(),
        })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, `:port`, `port` or nothing.
fn split_host_port(s: &str) -> Result<(Option<String>, Option<u16>), &'static str> {
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or("missing ']' after the IPv6 address")?;
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| "not an IPv6 address inside [ ]")?;
        let port = match after {
            "" => None,
            _ => Some(parse_port(
                after.strip_prefix(':').ok_or("missing :PORT after ']'")?,
            )?),
        };
        return Ok((Some(ip.to_owned()), port));
    }
    if s.is_empty() || s == ":" {
        return Ok((None, None));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((None, Some(parse_port(s)?)));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Ok((Some(s.to_owned()), None));
    };
    if host.contains(':') {
        return Err("an IPv6 address needs brackets, as in [::1]:80");
    }
    let port = parse_port(port)?;
    if host.is_empty() {
        return Ok((None, Some(port)));
    }
    if host.bytes().all(|b| b.is_ascii_digit()) {
        // `8080:80` is not a host; an all-digit host would be read as an IPv4 number.
        return Err("a host of digits only is not a host name (did you mean :PORT?)");
    }
    Ok((Some(host.to_owned()), Some(port)))
}

/// RFC 3986: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

fn parse_port(s: &str) -> Result<u16, &'static str> {
    if s.is_empty() {
        return Err("the port is missing");
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port is not a number");
    }
    s.parse().map_err(|_| "the port is larger than 65535")
}

/// Host names: letters, digits, `-`, `.`, `_` (seen in the wild), at most 253 bytes.
fn is_valid_host(host: &str) -> bool {
    host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepted_forms() {
        let cases: &[(&str, Option<&str>, u16)] = &[
            ("example.com:80", Some("example.com"), 80),
            ("127.0.0.1:8080", Some("127.0.0.1"), 8080),
            ("[::1]:443", Some("::1"), 443),
            ("[2001:db8::1]:0", Some("2001:db8::1"), 0),
            (":8000", None, 8000),
            ("8000", None, 8000),
            ("0", None, 0),
            ("  localhost:65535 ", Some("localhost"), 65535),
        ];
        for (input, host, port) in cases {
            let hp: HostPort = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(hp.host(), *host, "{input}");
            assert_eq!(hp.port(), *port, "{input}");
        }
    }

    #[test]
    fn rejected_forms_say_why() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("localhost", "missing :PORT"),
            ("host:", "port is missing"),
            ("host:http", "not a number"),
            ("host:65536", "larger than 65535"),
            ("::1:80", "needs brackets"),
            ("[::1]80", "missing :PORT"),
            ("[::1", "missing ']'"),
            ("[nothost]:80", "not an IPv6"),
            ("http://x:80", "URLs"),
            ("x:80/path", "no user, path or query"),
            ("ada@x:80", "no user, path or query"),
            ("12:80", "digits only"),
            ("a b:80", "spaces"),
            ("ho$t:80", "characters"),
            ("99999999999999999999", "larger than 65535"),
        ];
        for (input, why) in cases {
            let err = input.parse::<HostPort>().expect_err(input).to_string();
            assert!(err.contains(why), "{input:?}: {err}");
        }
    }

    #[test]
    fn targets_split_into_their_parts() {
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Option<u16>,
            &'a str,
        );
        let cases: &[Case] = &[
            ("18000", None, None, None, Some(18000), ""),
            (":18000/x", None, None, None, Some(18000), "/x"),
            ("18000/x?y", None, None, None, Some(18000), "/x?y"),
            (":/x", None, None, None, None, "/x"),
            ("example.com", None, None, Some("example.com"), None, ""),
            ("Example.com/a", None, None, Some("Example.com"), None, "/a"),
            ("HTTPS://x:1/", Some("https"), None, Some("x"), Some(1), "/"),
            ("http://8080/", Some("http"), None, None, Some(8080), "/"),
            ("[::1]/a", None, None, Some("::1"), None, "/a"),
            (
                "https://[::1]:8443?q",
                Some("https"),
                None,
                Some("::1"),
                Some(8443),
                "?q",
            ),
            (
                "h/x?next=http://y/",
                None,
                None,
                Some("h"),
                None,
                "/x?next=http://y/",
            ),
            (
                "h?next=http://y/",
                None,
                None,
                Some("h"),
                None,
                "?next=http://y/",
            ),
            ("h#http://y", None, None, Some("h"), None, "#http://y"),
            ("u:p@h:1/x", None, Some("u:p"), Some("h"), Some(1), "/x"),
            ("u:p@ss@h/x", None, Some("u:p@ss"), Some("h"), None, "/x"),
            ("http://u@:9/", Some("http"), Some("u"), None, Some(9), "/"),
        ];
        for (input, scheme, user, host, port, rest) in cases {
            let t = Target::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(t.scheme.as_deref(), *scheme, "{input}");
            assert_eq!(t.userinfo.as_deref(), *user, "{input}");
            assert_eq!(t.host.as_deref(), *host, "{input}");
            assert_eq!(t.port, *port, "{input}");
            assert_eq!(t.rest, *rest, "{input}");
        }
        for (input, why) in [
            ("http:///x", "no host"),
            ("h:99999/", "larger than 65535"),
            ("::1/x", "brackets"),
            ("h x", "spaces"),
        ] {
            let err = Target::parse(input).expect_err(input).to_string();
            assert!(err.contains(why), "{input:?}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["example.com:80", "[::1]:443", ":9"] {
            assert_eq!(s.parse::<HostPort>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn bind_defaults_to_loopback_and_refuses_names() {
        let hp: HostPort = "8000".parse().unwrap();
        assert_eq!(hp.bind_addr().unwrap(), "127.0.0.1:8000".parse().unwrap());
        let hp: HostPort = "0.0.0.0:1".parse().unwrap();
        assert_eq!(hp.bind_addr().unwrap(), "0.0.0.0:1".parse().unwrap());
        assert!(
            "example.com:1"
                .parse::<HostPort>()
                .unwrap()
                .bind_addr()
                .is_err()
        );
    }

    #[tokio::test]
    async fn literal_ips_resolve_without_dns() {
        let hp: HostPort = "[::1]:7".parse().unwrap();
        assert_eq!(
            hp.resolve(DEFAULT_CONNECT_HOST).await.unwrap(),
            vec!["[::1]:7".parse().unwrap()]
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<HostPort>();
            let _ = Target::parse(&s);
        }

        #[test]
        fn every_socket_addr_parses_back(ip in any::<IpAddr>(), port in any::<u16>()) {
            let addr = SocketAddr::new(ip, port);
            let hp: HostPort = addr.to_string().parse().unwrap();
            prop_assert_eq!(hp.port(), addr.port());
            prop_assert_eq!(hp.host().unwrap().parse::<IpAddr>().unwrap(), addr.ip());
        }
    }
}
