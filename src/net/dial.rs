//! How a client reaches its server: directly over TCP, over a Unix socket, or through a
//! proxy, with curl's `--resolve` and `--connect-to` overrides, a source address and an
//! address family. Every client opens its transport here; TLS to the target goes on top
//! (`stream.rs`), so it is verified the same way whatever the route.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream, UnixStream};
use tracing::debug;

use crate::net::proxy::{self, Proxy, ProxyError, ProxyKind, socks5};
use crate::net::{AddrError, BoxStream, DEFAULT_CONNECT_HOST, HostPort, NetError, tls};

/// Only IPv4 or only IPv6 (`-4`, `-6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 addresses only.
    V4,
    /// IPv6 addresses only.
    V6,
}

impl Family {
    fn admits(self, ip: IpAddr) -> bool {
        match self {
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }
}

/// A Unix socket address: a path, or on Linux an abstract name (`@name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnixAddr {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract socket, named without the leading `@`.
    Abstract(String),
}

impl UnixAddr {
    /// Parses `unix:/path`, `unix:relative`, `unix:@name`; `None` when `input` does not start
    /// with `unix:`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockit::net::dial::UnixAddr;
    ///
    /// assert_eq!(UnixAddr::parse_prefixed("unix:/run/app.sock"),
    ///            Some(UnixAddr::Path("/run/app.sock".into())));
    /// assert_eq!(UnixAddr::parse_prefixed("unix:@app"), Some(UnixAddr::Abstract("app".into())));
    /// assert_eq!(UnixAddr::parse_prefixed("localhost:80"), None);
    /// ```
    pub fn parse_prefixed(input: &str) -> Option<Self> {
        input.strip_prefix("unix:").map(Self::from_path_text)
    }

    /// A path as written (`@name` is an abstract socket).
    pub fn from_path_text(text: &str) -> Self {
        match text.strip_prefix('@') {
            Some(name) => UnixAddr::Abstract(name.to_owned()),
            None => UnixAddr::Path(PathBuf::from(text)),
        }
    }

    /// Connects to the socket.
    ///
    /// # Errors
    ///
    /// [`NetError::Unix`] with what the OS said.
    pub async fn connect(&self) -> Result<UnixStream, NetError> {
        let error = |source| NetError::Unix {
            addr: self.to_string(),
            source,
        };
        match self {
            UnixAddr::Path(path) => UnixStream::connect(path).await.map_err(error),
            UnixAddr::Abstract(name) => connect_abstract(name).map_err(error),
        }
    }
}

#[cfg(target_os = "linux")]
fn connect_abstract(name: &str) -> std::io::Result<UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    // A Unix connect completes at once or fails (a full backlog fails with EAGAIN).
    let std_stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    std_stream.set_nonblocking(true)?;
    UnixStream::from_std(std_stream)
}

#[cfg(not(target_os = "linux"))]
fn connect_abstract(_name: &str) -> std::io::Result<UnixStream> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract Unix sockets exist on Linux only",
    ))
}

impl fmt::Display for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixAddr::Path(path) => write!(f, "unix:{}", path.display()),
            UnixAddr::Abstract(name) => write!(f, "unix:@{name}"),
        }
    }
}

/// Where a client connects: a TCP address or a Unix socket (`unix:/path`, `unix:@name`).
///
/// # Examples
///
/// ```
/// use sockit::net::dial::Endpoint;
///
/// assert!(matches!("unix:/tmp/s".parse::<Endpoint>(), Ok(Endpoint::Unix(_))));
/// assert!(matches!("8080".parse::<Endpoint>(), Ok(Endpoint::Tcp(_))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `HOST:PORT` and the other address forms.
    Tcp(HostPort),
    /// A Unix socket.
    Unix(UnixAddr),
}

impl FromStr for Endpoint {
    type Err = AddrError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match UnixAddr::parse_prefixed(input) {
            Some(UnixAddr::Path(path)) if path.as_os_str().is_empty() => Err(AddrError::Invalid {
                input: input.to_owned(),
                reason: "unix: needs a path",
            }),
            Some(unix) => Ok(Endpoint::Unix(unix)),
            None => input.parse().map(Endpoint::Tcp),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Unix(addr) => write!(f, "{addr}"),
        }
    }
}

/// `--resolve HOST:PORT:ADDR[,ADDR…]`: connections to HOST:PORT go to these addresses
/// instead of what DNS says (the name is still the one TLS checks and `Host` names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolve {
    host: String,
    port: u16,
    addrs: Vec<IpAddr>,
}

impl FromStr for Resolve {
    type Err = AddrError;

    /// # Examples
    ///
    /// ```
    /// use sockit::net::dial::Resolve;
    /// assert!("localhost:443:127.0.0.1".parse::<Resolve>().is_ok());
    /// assert!("example.com:443:[::1],127.0.0.1".parse::<Resolve>().is_ok());
    /// assert!("example.com:443".parse::<Resolve>().is_err());
    /// ```
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| AddrError::Invalid {
            input: input.to_owned(),
            reason,
        };
        let fields = split_fields(input);
        let [host, port, addrs] = fields.as_slice() else {
            return Err(invalid("expected HOST:PORT:ADDR[,ADDR…]"));
        };
        let port = port
            .parse()
            .map_err(|_| invalid("the PORT is not a number"))?;
        let addrs = addrs
            .split(',')
            .map(|a| a.trim_start_matches('[').trim_end_matches(']').parse())
            .collect::<Result<Vec<IpAddr>, _>>()
            .map_err(|_| invalid("each ADDR must be an IP address"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid("the HOST is empty"));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
            addrs,
        })
    }
}

/// `--connect-to HOST:PORT:HOST2:PORT2`: a connection meant for HOST:PORT goes to
/// HOST2:PORT2 instead. An empty HOST or PORT matches any; an empty HOST2 or PORT2 keeps
/// the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTo {
    host: Option<String>,
    port: Option<u16>,
    to_host: Option<String>,
    to_port: Option<u16>,
}

impl FromStr for ConnectTo {
    type Err = AddrError;

    /// # Examples
    ///
    /// ```
    /// use sockit::net::dial::ConnectTo;
    /// assert!("localhost:443:127.0.0.1:8443".parse::<ConnectTo>().is_ok());
    /// assert!("::[::1]:".parse::<ConnectTo>().is_ok());
    /// assert!("a:1:b".parse::<ConnectTo>().is_err());
    /// ```
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| AddrError::Invalid {
            input: input.to_owned(),
            reason,
        };
        let fields = split_fields(input);
        let [host, port, to_host, to_port] = fields.as_slice() else {
            return Err(invalid(
                "expected HOST:PORT:HOST2:PORT2 (empty fields allowed)",
            ));
        };
        let port_of = |s: &str| -> Result<Option<u16>, AddrError> {
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse()
                    .map(Some)
                    .map_err(|_| invalid("a PORT is not a number"))
            }
        };
        let host_of = |s: &str| {
            let s = s.trim_start_matches('[').trim_end_matches(']');
            (!s.is_empty()).then(|| s.to_ascii_lowercase())
        };
        Ok(Self {
            host: host_of(host),
            port: port_of(port)?,
            to_host: host_of(to_host),
            to_port: port_of(to_port)?,
        })
    }
}

/// Splits on `:` outside brackets, so `[::1]` stays one field.
fn split_fields(input: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                fields.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    fields.push(&input[start..]);
    fields
}

/// The route a client takes to its server, and the knobs of the TCP connect.
#[derive(Debug, Clone, Default)]
pub struct DialOptions {
    /// Go through this proxy.
    pub proxy: Option<Proxy>,
    /// TLS for an `https://` proxy; `None` verifies it against the web PKI.
    pub proxy_tls: Option<Arc<rustls::ClientConfig>>,
    /// Connect to this Unix socket instead of the target's host and port (the target still
    /// names the server to TLS and HTTP).
    pub unix_socket: Option<UnixAddr>,
    /// `--resolve` overrides, first match wins.
    pub resolve: Vec<Resolve>,
    /// `--connect-to` overrides, first match wins.
    pub connect_to: Vec<ConnectTo>,
    /// Bind the local end of TCP connections to this address (`-s`).
    pub source: Option<IpAddr>,
    /// Only this address family.
    pub family: Option<Family>,
    /// Ask for TCP send and receive buffers of this many bytes, set before connecting so
    /// that the window scale fits them (Linux caps them at `wmem_max`/`rmem_max`).
    pub socket_buffer_bytes: Option<u32>,
}

/// A transport as [`dial`] opened it: the bare TCP stream whenever the route gives one
/// (direct, or a SOCKS5 or `http://` proxy's tunnel), so that a caller can split it into
/// owned halves; otherwise (Unix socket, `https://` proxy) a boxed stream.
pub enum Dialed {
    /// A TCP connection to the target or, through a proxy, a tunnel to it.
    Tcp(TcpStream),
    /// Any other transport.
    Boxed(BoxStream),
}

impl fmt::Debug for Dialed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dialed::Tcp(tcp) => f.debug_tuple("Tcp").field(tcp).finish(),
            Dialed::Boxed(_) => f.write_str("Boxed(..)"),
        }
    }
}

impl Dialed {
    /// The transport as a boxed stream, whatever it is.
    pub fn into_boxed(self) -> BoxStream {
        match self {
            Dialed::Tcp(tcp) => Box::new(tcp),
            Dialed::Boxed(stream) => stream,
        }
    }
}

/// Who the transport actually reached, for logs and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix socket.
    Unix(UnixAddr),
    /// A target reached through a proxy.
    Proxied {
        /// The target as asked for.
        target: String,
        /// The proxy (no password).
        proxy: String,
    },
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Unix(addr) => write!(f, "{addr}"),
            Peer::Proxied { target, proxy } => write!(f, "{target} via {proxy}"),
        }
    }
}

impl DialOptions {
    /// Where a connection for `target` really goes, after `--connect-to`.
    fn redirect(&self, target: &HostPort) -> HostPort {
        let host = target.host_or(DEFAULT_CONNECT_HOST).to_ascii_lowercase();
        for rule in &self.connect_to {
            let host_matches = rule.host.as_deref().is_none_or(|h| h == host);
            let port_matches = rule.port.is_none_or(|p| p == target.port());
            if host_matches && port_matches {
                let to_host = rule.to_host.clone().unwrap_or(host);
                return HostPort::new(Some(to_host), rule.to_port.unwrap_or(target.port()));
            }
        }
        HostPort::new(Some(host), target.port())
    }

    /// The addresses for `target`: a `--resolve` entry, else DNS; only of `family` if set.
    ///
    /// # Errors
    ///
    /// [`NetError::Addr`] when the host does not resolve or has no address of `family`.
    pub async fn resolve(&self, target: &HostPort) -> Result<Vec<SocketAddr>, NetError> {
        let host = target.host_or(DEFAULT_CONNECT_HOST).to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let pinned = self.resolve.iter().find(|r| {
            r.host.trim_start_matches('[').trim_end_matches(']') == bare && r.port == target.port()
        });
        let addrs = match pinned {
            Some(rule) => rule
                .addrs
                .iter()
                .map(|ip| SocketAddr::new(*ip, target.port()))
                .collect(),
            None => target.resolve(DEFAULT_CONNECT_HOST).await?,
        };
        let Some(family) = self.family else {
            return Ok(addrs);
        };
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| family.admits(a.ip()))
            .collect();
        if kept.is_empty() {
            return Err(NetError::Addr(AddrError::Resolve {
                host: format!(
                    "{host} (no {} address)",
                    if family == Family::V4 { "IPv4" } else { "IPv6" }
                ),
                source: None,
            }));
        }
        Ok(kept)
    }

    /// Opens a TCP connection to one of `target`'s addresses, from `source` if set.
    async fn tcp(&self, target: &HostPort) -> Result<TcpStream, NetError> {
        let addrs = self.resolve(target).await?;
        let mut last_error = None;
        for addr in addrs {
            if self.source.is_some_and(|s| s.is_ipv4() != addr.is_ipv4()) {
                continue;
            }
            debug!(%addr, "connecting");
            match connect_from(addr, self.source, self.socket_buffer_bytes).await {
                Ok(stream) => {
                    // Not fatal: the stream still works, just with Nagle on.
                    if let Err(error) = stream.set_nodelay(true) {
                        debug!(%error, "cannot set TCP_NODELAY");
                    }
                    return Ok(stream);
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            NetError::Addr(AddrError::Resolve {
                host: format!("{target} (no address of the source address's family)"),
                source: None,
            })
        }))
    }
}

async fn connect_from(
    addr: SocketAddr,
    source: Option<IpAddr>,
    buffer_bytes: Option<u32>,
) -> Result<TcpStream, NetError> {
    let error = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::ConnectionRefused {
            NetError::Refused { addr }
        } else {
            NetError::Connect { addr, source }
        }
    };
    if source.is_none() && buffer_bytes.is_none() {
        return TcpStream::connect(addr).await.map_err(error);
    }
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(error)?;
    if let Some(bytes) = buffer_bytes {
        socket.set_send_buffer_size(bytes).map_err(error)?;
        socket.set_recv_buffer_size(bytes).map_err(error)?;
    }
    if let Some(source) = source {
        let local = SocketAddr::new(source, 0);
        socket.bind(local).map_err(|source| NetError::Bind {
            addr: local,
            source,
        })?;
    }
    socket.connect(addr).await.map_err(error)
}

/// Opens the transport to `target` the way `options` say: the stream (not yet TLS to the
/// target) and who was reached. The caller bounds the time. Every client connection of the
/// crate starts here ([`open`](crate::net::open) adds TLS and tracing on top).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sockit::net::dial::{Dialed, DialOptions, dial};
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let target = listener.local_addr()?.to_string().parse()?;
/// let (transport, peer) = dial(&target, &DialOptions::default()).await?;
/// assert!(matches!(transport, Dialed::Tcp(_)));
/// assert_eq!(peer.to_string(), listener.local_addr()?.to_string());
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// Those of a direct connect; [`NetError::Unix`] for a Unix socket;
/// [`NetError::ProxyUnreachable`] when the proxy cannot be reached and [`NetError::Proxy`]
/// when it refuses or breaks the handshake.
pub async fn dial(target: &HostPort, options: &DialOptions) -> Result<(Dialed, Peer), NetError> {
    if let Some(unix) = &options.unix_socket {
        let stream = unix.connect().await?;
        return Ok((Dialed::Boxed(Box::new(stream)), Peer::Unix(unix.clone())));
    }
    let target = options.redirect(target);
    let Some(proxy) = &options.proxy else {
        let stream = options.tcp(&target).await?;
        let peer = stream.peer_addr().map_err(|source| NetError::Connect {
            addr: SocketAddr::from(([0, 0, 0, 0], target.port())),
            source,
        })?;
        return Ok((Dialed::Tcp(stream), Peer::Tcp(peer)));
    };
    let unreachable = |source: NetError| NetError::ProxyUnreachable {
        proxy: proxy.to_string(),
        source: Box::new(source),
    };
    let tcp = options.tcp(&proxy.addr).await.map_err(unreachable)?;
    let mut stream = match proxy.kind {
        ProxyKind::Https => {
            let config = match &options.proxy_tls {
                Some(config) => config.clone(),
                None => tls::client_config(&tls::Verify::WebPki, &[]).map_err(unreachable)?,
            };
            let name =
                tls::server_name(proxy.addr.host_or(DEFAULT_CONNECT_HOST)).map_err(unreachable)?;
            let tls_stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|source| {
                    unreachable(NetError::Tls {
                        peer: proxy.addr.to_string(),
                        source,
                    })
                })?;
            Dialed::Boxed(Box::new(tls_stream))
        }
        _ => Dialed::Tcp(tcp),
    };
    match &mut stream {
        Dialed::Tcp(tcp) => open_tunnel(tcp, proxy, &target, options).await?,
        Dialed::Boxed(boxed) => open_tunnel(boxed, proxy, &target, options).await?,
    }
    debug!(%proxy, %target, "tunnel open");
    Ok((
        stream,
        Peer::Proxied {
            target: target.to_string(),
            proxy: proxy.to_string(),
        },
    ))
}

/// Asks `proxy`, reached over `stream`, for a tunnel to `target`.
async fn open_tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &Proxy,
    target: &HostPort,
    options: &DialOptions,
) -> Result<(), NetError> {
    let handshake_error = |source: ProxyError| NetError::Proxy {
        proxy: proxy.to_string(),
        source,
    };
    let host = target.host_or(DEFAULT_CONNECT_HOST);
    match proxy.kind {
        ProxyKind::Socks5 { remote_dns } => {
            let dest = match host.parse::<IpAddr>() {
                Ok(ip) => socks5::Destination::Addr(SocketAddr::new(ip, target.port())),
                Err(_) if remote_dns => socks5::Destination::Name(host.to_owned(), target.port()),
                Err(_) => {
                    let addrs = options.resolve(target).await?;
                    socks5::Destination::Addr(addrs[0])
                }
            };
            socks5::handshake(stream, &dest, proxy.credentials.as_ref())
                .await
                .map_err(handshake_error)
        }
        ProxyKind::Http | ProxyKind::Https => {
            proxy::connect_tunnel(stream, &target.to_string(), proxy.credentials.as_ref())
                .await
                .map_err(handshake_error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_rules_match_and_keep_empty_fields() {
        let options = DialOptions {
            connect_to: vec![
                "localhost:443:127.0.0.1:8443".parse().unwrap(),
                ":80::8080".parse().unwrap(),
            ],
            ..DialOptions::default()
        };
        let to = |s: &str| options.redirect(&s.parse().unwrap()).to_string();
        assert_eq!(to("localhost:443"), "127.0.0.1:8443");
        assert_eq!(to("example.com:80"), "example.com:8080");
        assert_eq!(to("example.com:443"), "example.com:443");
    }

    #[tokio::test]
    async fn resolve_rules_replace_dns_and_families_filter() {
        let options = DialOptions {
            resolve: vec!["example.invalid:443:127.0.0.1,[::1]".parse().unwrap()],
            family: Some(Family::V6),
            ..DialOptions::default()
        };
        let addrs = options
            .resolve(&"example.invalid:443".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(addrs, vec!["[::1]:443".parse().unwrap()]);
        let v4_only = DialOptions {
            family: Some(Family::V4),
            ..DialOptions::default()
        };
        let err = v4_only
            .resolve(&"[::1]:1".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no IPv4 address"), "{err}");
    }
}
