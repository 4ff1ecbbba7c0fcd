//! TCP and UDP sockets: connect with a deadline, bind with `SO_REUSEADDR`, and an accept that
//! never fails.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tracing::{debug, warn};

use crate::net::{DEFAULT_CONNECT_HOST, HostPort, NetError};

/// Connects to `target`, trying each resolved address in turn, all within `timeout`.
///
/// `TCP_NODELAY` is set: interactive tools want each write on the wire at once.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let target = listener.local_addr()?.to_string().parse()?;
/// let stream = sockit::net::connect(&target, Duration::from_secs(5)).await?;
/// assert_eq!(stream.peer_addr()?, listener.local_addr()?);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`NetError::Addr`] when the host does not resolve, [`NetError::Refused`] or
/// [`NetError::Connect`] for the last address tried, [`NetError::Timeout`] past `timeout`.
pub async fn connect(target: &HostPort, timeout: Duration) -> Result<TcpStream, NetError> {
    let attempt = async {
        let addrs = target.resolve(DEFAULT_CONNECT_HOST).await?;
        let mut last_error = None;
        for addr in addrs {
            debug!(%addr, "connecting");
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    // Not fatal: the stream still works, just with Nagle on.
                    if let Err(error) = stream.set_nodelay(true) {
                        debug!(%error, "cannot set TCP_NODELAY");
                    }
                    return Ok(stream);
                }
                Err(source) => last_error = Some(connect_error(addr, source)),
            }
        }
        Err(last_error.expect("resolve never returns an empty list"))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| NetError::Timeout {
            what: format!("connecting to {target}"),
            after: timeout,
        })?
}

fn connect_error(addr: SocketAddr, source: io::Error) -> NetError {
    if source.kind() == io::ErrorKind::ConnectionRefused {
        NetError::Refused { addr }
    } else {
        NetError::Connect { addr, source }
    }
}

/// Opens a listening TCP socket on `addr` (`port 0` picks a free port).
///
/// # Errors
///
/// [`NetError::Bind`] when the address is taken or not ours.
pub fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, NetError> {
    let bind = || -> io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // A restarted server can take its port back while old connections sit in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(4096)
    };
    bind().map_err(|source| NetError::Bind { addr, source })
}

/// Binds a UDP socket on `addr`.
///
/// # Errors
///
/// [`NetError::Bind`] when the address is taken or not ours.
pub async fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, NetError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| NetError::Bind { addr, source })
}

/// Accepts the next connection; never fails.
///
/// Errors that concern one peer (reset before accept) are skipped; running out of file
/// descriptors waits a little so the loop does not spin while connections close.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    debug!(%peer, %error, "cannot set TCP_NODELAY");
                }
                return (stream, peer);
            }
            Err(error) if is_per_connection(&error) => debug!(%error, "accept skipped a peer"),
            Err(error) => {
                warn!(%error, "accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
