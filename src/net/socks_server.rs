//! A SOCKS5 server (RFC 1928, CONNECT only) with optional user name and password (RFC 1929):
//! one handshake bounded in time and size, then the shared full-duplex relay, half-close
//! included. BIND and UDP ASSOCIATE are refused with "command not supported".

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::net::proxy::Credentials;
use crate::net::proxy::socks5::{
    self, CMD_CONNECT, Destination, METHOD_NONE, METHOD_PASSWORD, METHOD_UNACCEPTABLE,
    ReadDestination, VERSION,
};
use crate::net::relay::{RelayConfig, relay};
use crate::net::{AddrError, BoxStream, HostPort, NetError, connect};

/// How the SOCKS5 server behaves.
#[derive(Debug, Clone)]
pub struct SocksConfig {
    /// Require this user name and password (RFC 1929); `None` admits anyone who can connect.
    pub credentials: Option<Credentials>,
    /// A client that has not finished the handshake by then is dropped. Every field of the
    /// handshake is length-prefixed with one byte, so its size is bounded too (about 1 KiB).
    pub handshake_timeout: Duration,
    /// Limit for resolving and connecting to the destination.
    pub connect_timeout: Duration,
    /// Close a tunnel after this long without data either way.
    pub idle_timeout: Option<Duration>,
}

impl Default for SocksConfig {
    fn default() -> Self {
        Self {
            credentials: None,
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: None,
        }
    }
}

/// Why a client's handshake ended without a tunnel (logged, never fatal to the server).
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("not SOCKS5 (version byte {0})")]
    Version(u8),
    #[error("no acceptable authentication method offered")]
    NoMethod,
    #[error("wrong user name or password")]
    AuthFailed,
    #[error("command {0} is not supported (CONNECT only)")]
    Command(u8),
    #[error("unsupported address type")]
    AddressType,
    #[error("cannot reach {dest}")]
    Unreachable {
        dest: Destination,
        #[source]
        source: NetError,
    },
    #[error("handshake not finished within {0:?}")]
    Slow(Duration),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Serves one SOCKS5 client on `stream` until its tunnel ends or `stop` is cancelled.
pub async fn serve_socks5(
    mut stream: BoxStream,
    peer: SocketAddr,
    config: &SocksConfig,
    stop: CancellationToken,
) {
    let handshake = tokio::time::timeout(config.handshake_timeout, handshake(&mut stream, config));
    let opened = tokio::select! {
        _ = stop.cancelled() => return,
        opened = handshake => opened.unwrap_or(Err(Refusal::Slow(config.handshake_timeout))),
    };
    let (upstream, dest) = match opened {
        Ok(opened) => opened,
        Err(refusal) => {
            warn!(%peer, reason = %crate::net::error_chain(&refusal), "socks5 refused");
            let _ = tokio::time::timeout(Duration::from_millis(500), stream.shutdown()).await;
            return;
        }
    };
    let (from_dest, to_dest) = tokio::io::split(upstream);
    let relay_config = RelayConfig {
        idle_timeout: config.idle_timeout,
        end_with_peer: false,
        keep_write_open: false,
    };
    match relay(stream, from_dest, to_dest, relay_config, stop).await {
        Ok(report) => info!(
            %peer,
            %dest,
            sent = report.received,
            received = report.sent,
            "socks5 CONNECT"
        ),
        Err(error) => {
            info!(%peer, %dest, error = %crate::net::error_chain(&error), "socks5 CONNECT ended")
        }
    }
}

async fn handshake(
    stream: &mut BoxStream,
    config: &SocksConfig,
) -> Result<(tokio::net::TcpStream, Destination), Refusal> {
    let version = stream.read_u8().await?;
    if version != VERSION {
        return Err(Refusal::Version(version));
    }
    let count = usize::from(stream.read_u8().await?);
    let mut methods = vec![0u8; count];
    stream.read_exact(&mut methods).await?;
    let wanted = if config.credentials.is_some() {
        METHOD_PASSWORD
    } else {
        METHOD_NONE
    };
    if !methods.contains(&wanted) {
        stream.write_all(&[VERSION, METHOD_UNACCEPTABLE]).await?;
        return Err(Refusal::NoMethod);
    }
    stream.write_all(&[VERSION, wanted]).await?;
    if let Some(expected) = &config.credentials {
        let _version = stream.read_u8().await?;
        let user = read_short(stream).await?;
        let password = read_short(stream).await?;
        // Both compared in full, so the time taken says nothing about which one was wrong.
        let user_ok = constant_time_eq(&user, expected.user.as_bytes());
        let password_ok = constant_time_eq(&password, expected.password.as_bytes());
        if !(user_ok & password_ok) {
            stream.write_all(&[1, 1]).await?;
            return Err(Refusal::AuthFailed);
        }
        stream.write_all(&[1, 0]).await?;
    }
    let mut head = [0u8; 3];
    stream.read_exact(&mut head).await?;
    if head[0] != VERSION {
        return Err(Refusal::Version(head[0]));
    }
    let dest = match socks5::read_destination(stream).await {
        Ok(dest) => dest,
        Err(ReadDestination::Io(e)) => return Err(e.into()),
        Err(ReadDestination::Unsupported) => {
            reply(stream, socks5::REPLY_ADDRESS_UNSUPPORTED, None).await?;
            return Err(Refusal::AddressType);
        }
    };
    if head[1] != CMD_CONNECT {
        reply(stream, socks5::REPLY_COMMAND_UNSUPPORTED, None).await?;
        return Err(Refusal::Command(head[1]));
    }
    let target = match &dest {
        Destination::Addr(addr) => HostPort::new(Some(addr.ip().to_string()), addr.port()),
        Destination::Name(host, port) => HostPort::new(Some(host.clone()), *port),
    };
    debug!(%dest, "socks5 connecting");
    let upstream = match connect(&target, config.connect_timeout).await {
        Ok(upstream) => upstream,
        Err(source) => {
            reply(stream, reply_code(&source), None).await?;
            return Err(Refusal::Unreachable { dest, source });
        }
    };
    reply(stream, socks5::REPLY_OK, upstream.local_addr().ok()).await?;
    Ok((upstream, dest))
}

/// The reply code that names a failed connect.
fn reply_code(error: &NetError) -> u8 {
    match error {
        NetError::Refused { .. } => socks5::REPLY_REFUSED,
        NetError::Timeout { .. } => socks5::REPLY_TTL_EXPIRED,
        NetError::Addr(AddrError::Resolve { .. }) => socks5::REPLY_HOST_UNREACHABLE,
        NetError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::NetworkUnreachable =>
        {
            socks5::REPLY_NETWORK_UNREACHABLE
        }
        NetError::Connect { .. } => socks5::REPLY_HOST_UNREACHABLE,
        _ => socks5::REPLY_FAILURE,
    }
}

async fn reply(stream: &mut BoxStream, code: u8, bound: Option<SocketAddr>) -> std::io::Result<()> {
    let mut out = vec![VERSION, code, 0];
    let bound = bound.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    socks5::encode_destination(&Destination::Addr(bound), &mut out);
    stream.write_all(&out).await?;
    stream.flush().await
}

async fn read_short(stream: &mut BoxStream) -> std::io::Result<Vec<u8>> {
    let len = usize::from(stream.read_u8().await?);
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    Ok(bytes)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}
