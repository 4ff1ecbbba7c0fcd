//! The errors of the network layer, and the failure classes that pick an exit code.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::net::AddrError;
use crate::net::proxy::{ProxyError, ProxyUrlError};

/// What went wrong while connecting, binding or handshaking.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The address was malformed or did not resolve.
    #[error(transparent)]
    Addr(#[from] AddrError),
    /// Nothing listens on the port.
    #[error("connection refused: {addr}")]
    Refused {
        /// The address that refused.
        addr: SocketAddr,
    },
    /// The route or host is unreachable, or another connect error.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address that failed.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The operation took longer than its limit.
    #[error("timed out after {}s: {what}", after.as_secs_f64())]
    Timeout {
        /// What was being done (`connecting to 10.0.0.1:80`).
        what: String,
        /// The limit that ran out.
        after: Duration,
    },
    /// The listening socket could not be opened.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed (bad certificate, wrong pin, protocol error).
    #[error("TLS handshake with {peer} failed")]
    Tls {
        /// The peer's address or name.
        peer: String,
        /// The TLS library's reason.
        #[source]
        source: io::Error,
    },
    /// TLS could not be set up (unreadable certificate or key, bad pin syntax).
    #[error("TLS setup: {0}")]
    TlsConfig(String),
    /// A server identity file (`--identity`) that does not hold a certificate and its
    /// matching private key (damaged, or not an identity file).
    #[error("identity file {}: {reason}", path.display())]
    IdentityInvalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with its content.
        reason: String,
    },
    /// A server identity file (`--identity`) that others may read or write: its private key
    /// is no longer private, so it is not used.
    #[error("identity file {} is open to group or others (mode {mode:03o}); it holds a private key", path.display())]
    IdentityExposed {
        /// The file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A Unix socket could not be reached.
    #[error("cannot connect to {addr}")]
    Unix {
        /// The socket (`unix:/path`).
        addr: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A Unix socket could not be listened on.
    #[error("cannot listen on {addr}: {reason}")]
    UnixBind {
        /// The socket (`unix:/path`).
        addr: String,
        /// What is in the way.
        reason: String,
        /// What the OS said, when it said something.
        #[source]
        source: Option<io::Error>,
    },
    /// A proxy URL (from `--proxy` or the environment) is not usable.
    #[error(transparent)]
    ProxyUrl(#[from] ProxyUrlError),
    /// The proxy itself could not be resolved, reached or (`https://`) verified.
    #[error("cannot reach proxy {proxy}")]
    ProxyUnreachable {
        /// The proxy URL, without its password.
        proxy: String,
        /// Why.
        #[source]
        source: Box<NetError>,
    },
    /// The proxy was reached but refused or broke the handshake.
    #[error("proxy {proxy}")]
    Proxy {
        /// The proxy URL, without its password.
        proxy: String,
        /// The step that failed.
        #[source]
        source: ProxyError,
    },
}

/// Broad classes of failure; the binary maps each to its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureClass {
    /// The host name did not resolve.
    Resolve,
    /// Refused, unreachable or reset before anything happened.
    Connect,
    /// A connect, handshake, idle or overall timeout.
    Timeout,
    /// Certificate verification or TLS handshake failure.
    Tls,
    /// The proxy's host name did not resolve.
    ProxyResolve,
    /// The proxy refused or broke its handshake (SOCKS reply, auth).
    Proxy,
    /// An HTTP proxy answered CONNECT with an error status.
    ProxyTunnel,
    /// Anything else.
    Other,
}

impl NetError {
    /// The class of this failure.
    pub fn class(&self) -> FailureClass {
        match self {
            NetError::Addr(AddrError::Resolve { .. }) => FailureClass::Resolve,
            NetError::Refused { .. } | NetError::Connect { .. } | NetError::Unix { .. } => {
                FailureClass::Connect
            }
            NetError::ProxyUnreachable { source, .. } => match source.class() {
                FailureClass::Resolve => FailureClass::ProxyResolve,
                other => other,
            },
            NetError::Proxy { source, .. } => match source {
                ProxyError::ConnectStatus { .. } => FailureClass::ProxyTunnel,
                _ => FailureClass::Proxy,
            },
            NetError::Timeout { .. } => FailureClass::Timeout,
            NetError::Tls { .. }
            | NetError::TlsConfig(_)
            | NetError::IdentityInvalid { .. }
            | NetError::IdentityExposed { .. } => FailureClass::Tls,
            NetError::Addr(AddrError::Invalid { .. })
            | NetError::Bind { .. }
            | NetError::UnixBind { .. }
            | NetError::ProxyUrl(_) => FailureClass::Other,
        }
    }
}

/// The class of any error in a chain: the first [`NetError`] decides, else an I/O error's kind.
pub fn classify(err: &(dyn std::error::Error + 'static)) -> FailureClass {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(net) = e.downcast_ref::<NetError>() {
            return net.class();
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::TimedOut => return FailureClass::Timeout,
                io::ErrorKind::ConnectionRefused => return FailureClass::Connect,
                _ => {}
            }
        }
        cause = e.source();
    }
    FailureClass::Other
}
