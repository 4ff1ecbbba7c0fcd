//! The accept loop every TCP server shares: connection limit, TLS and tracing, one task per
//! connection, and a graceful, bounded drain when asked to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::net::trace::TraceSink;
use crate::net::{BoxStream, accept, secure};

/// Limits and layers of an accept loop.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Connections served at once; more are closed at once (they cost only themselves).
    pub max_conns: usize,
    /// TLS for every connection, or plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A TLS client that has not finished its handshake by then is dropped.
    pub handshake_timeout: Duration,
    /// After a stop, how long connections in flight may take to finish.
    pub drain_timeout: Duration,
    /// Record every byte of every connection.
    pub trace: Option<TraceSink>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_conns: 10_000,
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            trace: None,
        }
    }
}

/// A listening socket: TCP, or a Unix socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix socket (its file is removed when this is dropped).
    #[cfg(unix)]
    Unix(crate::net::unix::UnixServerSocket),
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Self {
        Listener::Tcp(listener)
    }
}

#[cfg(unix)]
impl From<crate::net::unix::UnixServerSocket> for Listener {
    fn from(listener: crate::net::unix::UnixServerSocket) -> Self {
        Listener::Unix(listener)
    }
}

/// The address a Unix socket client is given: it has none (`0.0.0.0:0`).
const UNIX_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

impl Listener {
    /// Accepts the next connection; never fails (see [`accept`]).
    pub async fn accept(&self) -> (BoxStream, SocketAddr) {
        match self {
            Listener::Tcp(listener) => {
                let (tcp, peer) = accept(listener).await;
                (Box::new(tcp), peer)
            }
            #[cfg(unix)]
            Listener::Unix(listener) => (Box::new(listener.accept().await), UNIX_PEER),
        }
    }
}

/// Accepts connections until `stop` is cancelled and runs `handler` on each in its own task.
///
/// The handler gets the (secured, traced) stream, the peer address (`0.0.0.0:0` for a Unix
/// socket client, which has none) and a child token that is cancelled when the server stops:
/// it should finish the item in hand and close.
pub async fn serve<H, F>(
    listener: impl Into<Listener>,
    config: ServerConfig,
    stop: CancellationToken,
    handler: H,
) where
    H: Fn(BoxStream, SocketAddr, CancellationToken) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let listener = listener.into();
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(config.max_conns));
    let tasks = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            conn = listener.accept() => conn,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            warn!(%peer, limit = config.max_conns, "connection limit reached; closing new connection");
            drop(tcp);
            continue;
        };
        let handler = handler.clone();
        let config = config.clone();
        let stop = stop.child_token();
        tasks.spawn(
            async move {
                debug!("connected");
                match secure(
                    tcp,
                    peer,
                    config.tls.as_ref(),
                    &config.trace,
                    config.handshake_timeout,
                )
                .await
                {
                    Ok(stream) => handler(stream, peer, stop).await,
                    Err(error) => {
                        warn!(error = %crate::net::error_chain(&error), "handshake failed")
                    }
                }
                debug!("disconnected");
                drop(permit);
            }
            .instrument(info_span!("conn", %peer)),
        );
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(config.drain_timeout, tasks.wait())
        .await
        .is_err()
    {
        warn!(
            still_open = tasks.len(),
            "drain timed out; closing the rest"
        );
    } else {
        info!("all connections finished");
    }
}

/// Registers for Ctrl-C and, on Unix, SIGTERM at once, and returns a future that resolves
/// when either arrives. Registering before a server announces itself means a signal sent
/// right after the announcement is never missed. Call it inside the runtime.
///
/// # Errors
///
/// When the signal handlers cannot be installed.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
