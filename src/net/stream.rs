//! One stream type for every transport: TCP, Unix or a proxy tunnel, TLS over any of them,
//! traced or not.
//! Clients `open` one; servers `secure` what they accepted.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, BufReader};
use tracing::debug;

use crate::net::dial::dial;
use crate::net::read_ahead::ReadAhead;
use crate::net::trace::{TraceSink, Traced};
use crate::net::{DialOptions, HostPort, NetError, Peer, tls};

/// Anything that reads and writes bytes asynchronously and can move between tasks.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// The stream itself, so that code able to do better on a bare [`TcpStream`](tokio::net::TcpStream) (such as
    /// `sendfile`) can find one with `downcast_ref`.
    fn as_any(&self) -> &dyn Any;

    /// The stream itself, owned, for [`buffered`] to take a TLS stream out of its box.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncStream for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// A boxed stream: TCP, TLS or traced, chosen at run time.
pub type BoxStream = Box<dyn AsyncStream>;

/// A stream whose reads come from a buffer that can be read in place (`poll_fill_buf`) and
/// consumed in any amounts.
pub trait AsyncBufStream: AsyncBufRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncBufRead + AsyncWrite + Send + Unpin + 'static> AsyncBufStream for T {}

/// The TCP socket under `stream` when there is nothing between (no TLS, no tracing, no
/// buffer): what `splice` and `sendfile` can work on.
#[cfg(target_os = "linux")]
pub(crate) fn plain_tcp(stream: &dyn AsyncStream) -> Option<&tokio::net::TcpStream> {
    let any = stream.as_any();
    any.downcast_ref::<tokio::net::TcpStream>().or_else(|| {
        any.downcast_ref::<BoxStream>()
            .and_then(|inner| plain_tcp(&**inner))
    })
}

/// A client stream as [`open`] makes it with TLS.
type ClientTls = tokio_rustls::client::TlsStream<Traced<BoxStream>>;

/// `stream` with its reads buffered: a TLS stream from [`open`] as it is (rustls holds whole
/// decrypted records already), any other in a buffer of `capacity` bytes.
pub fn buffered(stream: BoxStream, capacity: usize) -> Box<dyn AsyncBufStream> {
    if !AsyncStream::as_any(&*stream).is::<ClientTls>() {
        return Box::new(BufReader::with_capacity(capacity, stream));
    }
    match stream.into_any().downcast::<ClientTls>() {
        Ok(tls) => tls,
        // Not reached (the type was checked above); a closed stream keeps this total.
        Err(_) => Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink())),
    }
}

/// How a client opens a stream.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Limit for name resolution, connect, any proxy handshake and TLS handshake together.
    pub connect_timeout: Duration,
    /// TLS configuration, or `None` for plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Name to send in SNI and to verify; defaults to the target's host.
    pub server_name: Option<String>,
    /// Record every byte to this sink.
    pub trace: Option<TraceSink>,
    /// The route: direct, Unix socket or proxy, and address overrides.
    pub dial: DialOptions,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            tls: None,
            server_name: None,
            trace: None,
            dial: DialOptions::default(),
        }
    }
}

/// Connects to `target` by the route `options.dial` gives (directly, over a Unix socket or
/// through a proxy) and, when asked, runs the TLS handshake with the target on top and wraps
/// the stream for tracing. TLS is end to end: the proxy only ever sees encrypted records,
/// and the certificate is checked against the target's name exactly as without a proxy.
///
/// Returns the stream and who was reached.
///
/// # Errors
///
/// Those of [`connect`](crate::net::connect), the proxy's ([`NetError::ProxyUnreachable`],
/// [`NetError::Proxy`]), and [`NetError::Tls`] when the handshake or verification fails.
pub async fn open(
    target: &HostPort,
    options: &ClientOptions,
) -> Result<(BoxStream, Peer), NetError> {
    let deadline = tokio::time::Instant::now() + options.connect_timeout;
    let (dialed, peer) = tokio::time::timeout_at(deadline, dial(target, &options.dial))
        .await
        .map_err(|_| NetError::Timeout {
            what: match &options.dial.proxy {
                Some(proxy) => format!("connecting to {target} through proxy {proxy}"),
                None => format!("connecting to {target}"),
            },
            after: options.connect_timeout,
        })??;
    let transport = dialed.into_boxed();
    let Some(config) = &options.tls else {
        return Ok((maybe_traced(transport, &peer, &options.trace), peer));
    };
    let host = options
        .server_name
        .clone()
        .unwrap_or_else(|| target.host_or(crate::net::DEFAULT_CONNECT_HOST).to_owned());
    let name = tls::server_name(&host)?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    // Tracing sits below TLS, so `--trace` shows the encrypted records as they really are;
    // beneath both, reads in large pieces (rustls asks for 4 KiB at a time).
    let transport: BoxStream = Box::new(ReadAhead::new(transport));
    let stream = Traced::new(transport, peer.to_string(), options.trace.clone());
    let handshake = tokio::time::timeout_at(deadline, connector.connect(name, stream));
    let tls_stream = handshake
        .await
        .map_err(|_| NetError::Timeout {
            what: format!("TLS handshake with {target}"),
            after: options.connect_timeout,
        })?
        .map_err(|source| NetError::Tls {
            peer: target.to_string(),
            source,
        })?;
    debug!(%peer, "TLS established");
    Ok((Box::new(tls_stream), peer))
}

/// The protocol the server chose by ALPN on a client stream that [`open`] made with TLS;
/// `None` for plain streams or when none was chosen.
pub fn alpn_protocol(stream: &BoxStream) -> Option<&[u8]> {
    type ClientTls = tokio_rustls::client::TlsStream<Traced<BoxStream>>;
    // Through the box to the stream inside: the box itself is an `AsyncStream` too.
    AsyncStream::as_any(&**stream)
        .downcast_ref::<ClientTls>()
        .and_then(|tls| tls.get_ref().1.alpn_protocol())
}

/// Finishes an accepted connection: TLS handshake within `timeout` if `tls` is set, tracing
/// if `trace` is set.
///
/// # Errors
///
/// [`NetError::Tls`] or [`NetError::Timeout`] when the handshake fails.
pub async fn secure(
    stream: BoxStream,
    peer: SocketAddr,
    tls: Option<&Arc<rustls::ServerConfig>>,
    trace: &Option<TraceSink>,
    timeout: Duration,
) -> Result<BoxStream, NetError> {
    let Some(config) = tls else {
        return Ok(maybe_traced(stream, &peer, trace));
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
    let stream = Traced::new(stream, peer.to_string(), trace.clone());
    // Boxed: the handshake's state is large, and a connection task would otherwise keep
    // room for it as long as the connection lives.
    let tls_stream = Box::pin(tokio::time::timeout(timeout, acceptor.accept(stream)))
        .await
        .map_err(|_| NetError::Timeout {
            what: format!("TLS handshake with {peer}"),
            after: timeout,
        })?
        .map_err(|source| NetError::Tls {
            peer: peer.to_string(),
            source,
        })?;
    Ok(Box::new(tls_stream))
}

fn maybe_traced(
    stream: BoxStream,
    peer: &impl std::fmt::Display,
    trace: &Option<TraceSink>,
) -> BoxStream {
    match trace {
        Some(sink) => Box::new(Traced::new(stream, peer.to_string(), Some(sink.clone()))),
        None => stream,
    }
}

/// `impl AsyncWrite for $wrapper<S>` that hands every call to its `inner` field unchanged:
/// for wrappers that only look at what is read.
macro_rules! forward_async_write {
    ($wrapper:ident) => {
        impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<S> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use forward_async_write;
