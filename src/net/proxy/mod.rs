//! Proxies a client goes through: the proxy URL (`socks5h://`, `socks5://`, `http://`,
//! `https://`), the environment variables curl reads, and the handshakes that turn a stream
//! to the proxy into a tunnel to the target. Opening the stream to the proxy is `dial.rs`'s.

mod env;
mod http_connect;
pub mod socks5;

use std::fmt;
use std::io;
use std::str::FromStr;

pub use env::{NoProxy, ProxyEnv, ProxyPolicy};
pub(crate) use http_connect::connect_tunnel;

use crate::net::{HostPort, Target};

/// The port a proxy URL means when it names none (curl's defaults).
const SOCKS_DEFAULT_PORT: u16 = 1080;
const HTTP_DEFAULT_PORT: u16 = 1080;
const HTTPS_DEFAULT_PORT: u16 = 443;

/// How a proxy is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// SOCKS5; `remote_dns` (`socks5h://`) sends the target's name for the proxy to resolve,
    /// else (`socks5://`) the name is resolved here and the proxy gets an IP address.
    Socks5 {
        /// Whether the proxy resolves the target's name.
        remote_dns: bool,
    },
    /// HTTP `CONNECT` over plain TCP to the proxy.
    Http,
    /// HTTP `CONNECT` over TLS to the proxy (verified against the web PKI).
    Https,
}

/// A user name and password for a proxy; `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name, percent-decoded.
    pub user: String,
    /// The password, percent-decoded.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: <redacted> }}",
            self.user
        )
    }
}

/// A proxy as given by `--proxy URL` or an environment variable.
///
/// # Examples
///
/// ```
/// use sockit::net::proxy::{Proxy, ProxyKind};
///
/// let proxy: Proxy = "socks5h://ada:s%40cret@127.0.0.1:1080".parse().unwrap();
/// assert_eq!(proxy.kind, ProxyKind::Socks5 { remote_dns: true });
/// assert_eq!(proxy.credentials.as_ref().unwrap().password, "s@cret");
/// // The password never shows in messages.
/// assert_eq!(proxy.to_string(), "socks5h://127.0.0.1:1080");
///
/// let proxy: Proxy = "proxy.example:3128".parse().unwrap();
/// assert_eq!(proxy.kind, ProxyKind::Http);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The protocol.
    pub kind: ProxyKind,
    /// Where the proxy listens.
    pub addr: HostPort,
    /// `user:password` from the URL, if any.
    pub credentials: Option<Credentials>,
}

impl Proxy {
    /// The URL scheme of this proxy's kind.
    pub fn scheme(&self) -> &'static str {
        match self.kind {
            ProxyKind::Socks5 { remote_dns: true } => "socks5h",
            ProxyKind::Socks5 { remote_dns: false } => "socks5",
            ProxyKind::Http => "http",
            ProxyKind::Https => "https",
        }
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.addr)
    }
}

/// Why a proxy URL is not usable.
#[derive(Debug, thiserror::Error)]
#[error("invalid proxy {input:?}: {reason}")]
pub struct ProxyUrlError {
    input: String,
    reason: String,
}

impl FromStr for Proxy {
    type Err = ProxyUrlError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| ProxyUrlError {
            input: redact(input),
            reason: reason.to_owned(),
        };
        let target = Target::parse(input).map_err(|e| invalid(&e.to_string()))?;
        let (kind, default_port) = match target.scheme.as_deref() {
            None | Some("http") => (ProxyKind::Http, HTTP_DEFAULT_PORT),
            Some("https") => (ProxyKind::Https, HTTPS_DEFAULT_PORT),
            Some("socks5h") => (ProxyKind::Socks5 { remote_dns: true }, SOCKS_DEFAULT_PORT),
            Some("socks5") => (ProxyKind::Socks5 { remote_dns: false }, SOCKS_DEFAULT_PORT),
            Some(other) => {
                return Err(invalid(&format!(
                    "unsupported scheme {other:?} (use socks5h://, socks5://, http:// or https://)"
                )));
            }
        };
        if !matches!(target.rest.as_str(), "" | "/") {
            return Err(invalid("a proxy URL has no path or query"));
        }
        let host = target
            .host
            .ok_or_else(|| invalid("the proxy URL has no host"))?;
        let credentials = target.userinfo.as_deref().map(|userinfo| {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            Credentials {
                user: decode(user),
                password: decode(password),
            }
        });
        if let Some(credentials) = &credentials {
            if matches!(kind, ProxyKind::Socks5 { .. })
                && (credentials.user.len() > 255 || credentials.password.len() > 255)
            {
                return Err(invalid(
                    "SOCKS5 user names and passwords are at most 255 bytes",
                ));
            }
        }
        Ok(Proxy {
            kind,
            addr: HostPort::new(Some(host), target.port.unwrap_or(default_port)),
            credentials,
        })
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The URL with any password replaced, for messages.
fn redact(input: &str) -> String {
    match (input.find("://"), input.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}<redacted>{}", &input[..start + 3], &input[at..])
        }
        (None, Some(at)) => format!("<redacted>{}", &input[at..]),
        _ => input.to_owned(),
    }
}

/// What went wrong while talking to a proxy, after the connection to it was made.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The SOCKS5 proxy accepts none of the authentication methods offered.
    #[error("SOCKS5 proxy accepts none of our authentication methods{}", if *.offered_password { "" } else { " (it may want a user:password in the proxy URL)" })]
    NoAcceptableMethod {
        /// Whether user name and password were offered.
        offered_password: bool,
    },
    /// The proxy refused the user name and password.
    #[error("auth failed: the proxy refused the user name and password")]
    AuthFailed,
    /// The SOCKS5 proxy answered the CONNECT with an error code.
    #[error("SOCKS5 CONNECT to {target} failed: {}", socks5::reply_text(*.code))]
    Socks5Reply {
        /// The target asked for.
        target: String,
        /// The reply code (RFC 1928 section 6).
        code: u8,
    },
    /// The HTTP proxy answered the CONNECT with a status other than 2xx.
    #[error("CONNECT to {target} failed: proxy answered {code} {reason}{}", if *.code == 407 { " (put user:password in the proxy URL)" } else { "" })]
    ConnectStatus {
        /// The target asked for.
        target: String,
        /// The status code.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The proxy broke the protocol.
    #[error("the proxy broke the protocol: {0}")]
    Protocol(String),
    /// Reading from or writing to the proxy failed during the handshake.
    #[error("handshake with the proxy failed")]
    Io(#[source] io::Error),
}

impl From<io::Error> for ProxyError {
    fn from(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            ProxyError::Protocol("it closed the connection during the handshake".to_owned())
        } else {
            ProxyError::Io(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let p: Proxy = "socks5://127.0.0.1:9050".parse().unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5 { remote_dns: false });
        assert_eq!(p.addr.to_string(), "127.0.0.1:9050");
        assert!(p.credentials.is_none());

        let p: Proxy = "http://u:p@[::1]:3128/".parse().unwrap();
        assert_eq!(p.kind, ProxyKind::Http);
        assert_eq!(p.addr.host(), Some("::1"));
        assert_eq!(p.credentials.as_ref().unwrap().user, "u");

        let p: Proxy = "https://proxy.example".parse().unwrap();
        assert_eq!(p.addr.port(), 443);
        let p: Proxy = "socks5h://localhost".parse().unwrap();
        assert_eq!(p.addr.port(), 1080);

        let err = "socks4://h:1".parse::<Proxy>().unwrap_err().to_string();
        assert!(err.contains("unsupported scheme"), "{err}");
        let err = "http://u:secret@h:1/path"
            .parse::<Proxy>()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        assert!("http://:8080".parse::<Proxy>().is_err());
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let p: Proxy = "socks5h://ada:hunter2@h:1".parse().unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
