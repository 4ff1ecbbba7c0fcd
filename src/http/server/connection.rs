//! The one connection driver of every HTTP server in the crate (`serve`, `send`): it takes an
//! accepted stream and a [`Handler`] and speaks HTTP/1.1 or HTTP/2 on it, whichever the client
//! opens with. A client that starts with the HTTP/2 connection preface (after ALPN `h2` on
//! TLS, or with prior knowledge on cleartext) gets HTTP/2 (hyper's `h2`); any other gets
//! HTTP/1.1 through `http1`, which keeps the optimisations that only hold there (parking of
//! idle keep-alive connections, `sendfile`, the request head pre-check, lingering close).
//!
//! Both protocols live within the same [`Limits`]; HTTP/2 adds its own (streams, floods).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::http::server::http1::Http1Driver;
use crate::http::server::http1_heads;
use crate::http::server::http1_sendfile::FileBytes;
use crate::http::server::idle::IdleIo;
use crate::http::server::rewind::Rewind;
use crate::net::BoxStream;

/// Limits every connection lives within, whatever its protocol.
///
/// HTTP/2 connections also keep to these: a request's header list may not exceed
/// `max_header_bytes` (it bounds CONTINUATION floods: the connection is closed), at most
/// `max_streams` requests run at once on one connection, a client that resets more than
/// `max_pending_resets` streams before they are answered (rapid reset, CVE-2023-44487) or
/// provokes more than `max_error_resets` stream errors loses its connection, and a connection
/// on which no byte moves for `idle_timeout` is closed. SETTINGS and PING floods cost only
/// their connection (`h2` bounds the acknowledgements it queues).
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request head (or the first one after a keep-alive pause) must arrive within this
    /// (slowloris); it also bounds how long an idle keep-alive connection stays open, and how
    /// long a new connection may take to say which protocol it speaks.
    pub header_timeout: Duration,
    /// A connection on which no byte moves for this long is closed (stalled transfers, idle
    /// HTTP/2 connections).
    pub idle_timeout: Duration,
    /// Connections served at once; the next ones get a 503 and are closed.
    pub max_conns: usize,
    /// Largest request head (request line and headers; for HTTP/2 the header list); larger
    /// gets 431 (HTTP/1) or closes the connection (HTTP/2).
    pub max_header_bytes: usize,
    /// Longest request target; longer gets 414.
    pub max_uri_bytes: usize,
    /// HTTP/2: requests one connection may have open at once.
    pub max_streams: u32,
    /// HTTP/2: streams a client may reset before the server has answered them, at once,
    /// before its connection is closed (rapid reset).
    pub max_pending_resets: usize,
    /// HTTP/2: streams the server may reset for a client's errors before it closes the
    /// connection.
    pub max_error_resets: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_conns: 10_000,
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
            max_streams: 100,
            max_pending_resets: 20,
            max_error_resets: 1024,
        }
    }
}

/// What a server answers: the part of it that knows nothing of connections or protocols.
pub(crate) trait Handler: Send + Sync + 'static {
    /// The response body.
    type Body: http_body::Body<Data = Bytes, Error = io::Error>
        + SendfileBody
        + Send
        + Unpin
        + 'static;
    /// The answer to one request.
    type Answer: Future<Output = Response<Self::Body>> + Send + Unpin + 'static;
    /// Answers `req`, which came from `peer`.
    fn answer(self: &Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Self::Answer;
}

/// A response body that may be the bytes of a cached file, which an HTTP/1 connection on
/// plain TCP can then send with `sendfile` (HTTP/2 frames its bodies itself).
pub(crate) trait SendfileBody {
    /// The bytes still to go and the open file that holds them, if that is what this is.
    fn sendable(&self) -> Option<FileBytes> {
        None
    }
}

/// A response extension by which a handler takes its connection over once its
/// `101 Switching Protocols` answer is written (HTTP/1.1 only; a WebSocket): the stream, with
/// any bytes the client sent after its request in front, goes to the function, which runs in
/// the connection's own task (so the server's drain waits for it).
#[derive(Clone)]
pub(crate) struct Takeover(Arc<std::sync::Mutex<Option<TakeoverFn>>>);

type TakeoverFn =
    Box<dyn FnOnce(BoxStream) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

impl Takeover {
    /// A takeover that runs `serve` on the connection.
    pub(crate) fn new<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(BoxStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let serve: TakeoverFn = Box::new(move |stream| Box::pin(serve(stream)));
        Self(Arc::new(std::sync::Mutex::new(Some(serve))))
    }

    /// The function, once.
    pub(crate) fn take(&self) -> Option<TakeoverFn> {
        self.0.lock().ok()?.take()
    }
}

/// The protocols a TLS server driven here offers in ALPN, best first.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 17\r\nRetry-After: 1\r\nConnection: close\r\n\r\nserver too busy\r\n";

/// Serves connections with one [`Handler`]; see the module docs.
pub(crate) struct Driver<H> {
    handler: Arc<H>,
    limits: Limits,
    conns: Arc<Semaphore>,
    http1: Http1Driver,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl<H: Handler> Driver<H> {
    /// A driver answering with `handler` within `limits`.
    pub(crate) fn new(handler: H, limits: Limits) -> Self {
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(limits.max_pending_resets)
            .max_local_error_reset_streams(limits.max_error_resets);
        Self {
            handler: Arc::new(handler),
            conns: Arc::new(Semaphore::new(limits.max_conns.min(Semaphore::MAX_PERMITS))),
            http1: Http1Driver::new(&limits),
            http2,
            limits,
        }
    }

    /// The handler.
    pub(crate) fn handler(&self) -> &Arc<H> {
        &self.handler
    }

    /// Serves `stream`, from `peer`, until it closes or `stop` is cancelled (then the
    /// requests in hand are finished).
    pub(crate) async fn serve(
        self: Arc<Self>,
        mut stream: BoxStream,
        peer: SocketAddr,
        stop: CancellationToken,
    ) {
        let Ok(_permit) = self.conns.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = self.limits.max_conns, "connection limit reached; answering 503");
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = stream.write_all(BUSY).await;
            })
            .await;
            http1_heads::linger(&mut stream, None, &stop).await;
            return;
        };
        let since = tokio::time::Instant::now();
        let Some(first) = self.first_bytes(&mut stream, &stop).await else {
            return; // closed, failed, or silent past the head timeout
        };
        if first[..] == PREFACE[..] {
            self.serve_http2(Rewind::new(first, stream), peer, stop)
                .await;
        } else {
            self.http1
                .serve(&self.handler, stream, first, since, peer, &stop)
                .await;
        }
    }

    /// The first bytes of a connection: the HTTP/2 preface, or up to where they stop
    /// matching it (HTTP/1: a connection waits with only these bytes in hand).
    async fn first_bytes(&self, stream: &mut BoxStream, stop: &CancellationToken) -> Option<Bytes> {
        let mut buf = [0u8; PREFACE.len()];
        let mut filled = 0;
        let deadline = tokio::time::Instant::now() + self.limits.header_timeout;
        while filled == 0 || (filled < buf.len() && buf[..filled] == PREFACE[..filled]) {
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, stream.read(&mut buf[filled..])) => read,
                _ = stop.cancelled() => return None,
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => filled += n,
            }
        }
        Some(Bytes::copy_from_slice(&buf[..filled]))
    }

    async fn serve_http2(
        &self,
        stream: Rewind<BoxStream>,
        peer: SocketAddr,
        stop: CancellationToken,
    ) {
        let handler = self.handler.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let is_head = req.method() == Method::HEAD;
            handler.answer(req, peer).map(move |mut res| {
                // Connection-specific fields have no meaning in HTTP/2 (RFC 9113 §8.2.2):
                // a stream ends alone, and only a GOAWAY ends the connection.
                res.headers_mut().remove(header::CONNECTION);
                // HTTP/1 framing leaves out these bodies by itself; in HTTP/2 a DATA frame
                // after them is a protocol error (RFC 9113 §8.1.1).
                let status = res.status();
                let has_content = !(is_head
                    || status.is_informational()
                    || status == StatusCode::NO_CONTENT
                    || status == StatusCode::NOT_MODIFIED);
                Ok::<_, std::convert::Infallible>(
                    res.map(|body| Http2Body(has_content.then_some(body))),
                )
            })
        });
        let io = IdleIo::new(stream, self.limits.idle_timeout);
        let conn = self.http2.serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            _ = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(error) = result {
            debug!(%error, "HTTP/2 connection ended with an error");
        }
    }
}

/// A response body as HTTP/2 sends it: none at all for answers without content.
struct Http2Body<B>(Option<B>);

impl<B> http_body::Body for Http2Body<B>
where
    B: http_body::Body<Data = Bytes, Error = io::Error> + Unpin,
{
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().0 {
            Some(body) => std::pin::Pin::new(body).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), |b| b.size_hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preface_is_the_one_of_rfc_9113() {
        assert_eq!(PREFACE.len(), 24);
        assert!(PREFACE.starts_with(b"PRI * HTTP/2.0"));
    }
}
