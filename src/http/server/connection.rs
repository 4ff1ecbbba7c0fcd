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
use crate::http::server::http1_heads::{self, Refusal};
use crate::http::server::http1_sendfile::FileBytes;
use crate::http::server::idle::IdleIo;
use crate::http::server::response::TEXT_PLAIN;
use crate::http::server::rewind::Rewind;
use crate::net::BoxStream;

/// Limits every connection lives within, whatever its protocol.
///
/// HTTP/2 connections also keep to these: a request's target and header list are held to
/// `max_uri_bytes` and `max_header_bytes` and refused with the same 414 and 431 as HTTP/1
/// (a header block too large to decode at all, which bounds CONTINUATION floods, gets h2's
/// own 431 or closes the connection), at most
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
    /// Connections served at once; the next ones get a 503 in the protocol they speak (HTTP/1.1,
    /// or HTTP/2 followed by a GOAWAY) and are closed.
    pub max_conns: usize,
    /// Largest request head (request line and headers; for HTTP/2 the header list as RFC 9113
    /// counts it, without the path); larger gets 431.
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

const BUSY_TEXT: &str = "server too busy\r\n";

const HTTP1_BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 17\r\nRetry-After: 1\r\nConnection: close\r\n\r\nserver too busy\r\n";

/// How long a connection refused for the connection limit may take to show its protocol,
/// and then to read its 503.
const BUSY_TIME: Duration = Duration::from_secs(1);

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
            // Room for the target too: past each limit the answer is ours (414 or 431, as
            // over HTTP/1); past both, h2 answers 431 itself.
            .max_header_list_size(
                u32::try_from(limits.max_header_bytes.saturating_add(limits.max_uri_bytes))
                    .unwrap_or(u32::MAX),
            )
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
            self.refuse_busy(stream, stop).await;
            return;
        };
        let since = tokio::time::Instant::now();
        let deadline = since + self.limits.header_timeout;
        let Some(first) = first_bytes(&mut stream, deadline, &stop).await else {
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

    /// Answers 503 to a connection past the limit, in the protocol it opens with: the HTTP/2
    /// preface gets HTTP/2 (503 to its first request, then a GOAWAY), anything else (or
    /// nothing within [`BUSY_TIME`]) the HTTP/1.1 503. On TLS this comes after the handshake,
    /// so the client reads an answer in the protocol ALPN picked, not bytes it cannot parse.
    async fn refuse_busy(&self, mut stream: BoxStream, stop: CancellationToken) {
        let first = first_bytes(&mut stream, tokio::time::Instant::now() + BUSY_TIME, &stop).await;
        match first {
            Some(first) if first[..] == PREFACE[..] => {
                refuse_busy_http2(Rewind::new(first, stream), &stop).await;
            }
            _ => {
                let _ = tokio::time::timeout(BUSY_TIME, stream.write_all(HTTP1_BUSY)).await;
                http1_heads::linger(&mut stream, None, &stop).await;
            }
        }
    }

    async fn serve_http2(
        &self,
        stream: Rewind<BoxStream>,
        peer: SocketAddr,
        stop: CancellationToken,
    ) {
        let handler = self.handler.clone();
        let limits = self.limits.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            if let Some(refusal) = http2_refusal(&req, &limits) {
                debug!(status = %refusal.status(), "HTTP/2 request refused");
                let mut res = Response::new(Http2Body::Refusal(Some(Bytes::from_static(
                    refusal.text().as_bytes(),
                ))));
                *res.status_mut() = refusal.status();
                res.headers_mut()
                    .insert(header::CONTENT_TYPE, TEXT_PLAIN.clone());
                return futures_util::future::Either::Left(std::future::ready(Ok(res)));
            }
            let is_head = req.method() == Method::HEAD;
            futures_util::future::Either::Right(handler.answer(req, peer).map(move |mut res| {
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
                Ok::<_, std::convert::Infallible>(res.map(|body| match has_content {
                    true => Http2Body::Answer(body),
                    false => Http2Body::Refusal(None),
                }))
            }))
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

/// The first bytes of a connection: the HTTP/2 preface, or up to where they stop matching
/// it (HTTP/1: a connection waits with only these bytes in hand). `None` when the connection
/// closes, fails or says nothing before `deadline`.
async fn first_bytes(
    stream: &mut BoxStream,
    deadline: tokio::time::Instant,
    stop: &CancellationToken,
) -> Option<Bytes> {
    let mut buf = [0u8; PREFACE.len()];
    let mut filled = 0;
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

/// What HTTP/1 would refuse in this request's head, checked the same way for HTTP/2: a target
/// (`:path`) longer than `max_uri_bytes` gets 414, a header list (RFC 9113 §6.5.2: name,
/// value and 32 per field, pseudo-fields but the path included) over `max_header_bytes` 431.
fn http2_refusal<B>(req: &Request<B>, limits: &Limits) -> Option<Refusal> {
    const FIELD: usize = 32;
    let path = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if path > limits.max_uri_bytes {
        return Some(Refusal::TargetTooLong);
    }
    let pseudo = FIELD * 3
        + ":method".len()
        + req.method().as_str().len()
        + ":scheme".len()
        + req.uri().scheme_str().map_or(0, str::len)
        + ":authority".len()
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + FIELD)
        .sum();
    (pseudo + fields > limits.max_header_bytes).then_some(Refusal::HeadTooLarge)
}

/// Answers an HTTP/2 connection past the connection limit: 503 to its first request, then a
/// GOAWAY, all within about twice [`BUSY_TIME`].
async fn refuse_busy_http2(stream: Rewind<BoxStream>, stop: &CancellationToken) {
    let answered = Arc::new(tokio::sync::Notify::new());
    let told = answered.clone();
    let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
        told.notify_one();
        let mut res = Response::new(http_body_util::Full::new(Bytes::from_static(
            BUSY_TEXT.as_bytes(),
        )));
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        res.headers_mut()
            .insert(header::CONTENT_TYPE, TEXT_PLAIN.clone());
        res.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        std::future::ready(Ok::<_, std::convert::Infallible>(res))
    });
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2.timer(TokioTimer::new()).max_concurrent_streams(1);
    let conn = http2.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        _ = conn.as_mut() => true,
        _ = answered.notified() => false,
        _ = tokio::time::sleep(BUSY_TIME) => false,
        _ = stop.cancelled() => false,
    };
    if !ended {
        // Ends the connection once the 503 is written (a GOAWAY naming the last stream).
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(BUSY_TIME, conn).await;
    }
}

/// A response body as HTTP/2 sends it: the handler's, or one of the driver's own refusals
/// (`None`: no body at all, for answers without content).
enum Http2Body<B> {
    Answer(B),
    Refusal(Option<Bytes>),
}

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
        match self.get_mut() {
            Http2Body::Answer(body) => std::pin::Pin::new(body).poll_frame(cx),
            Http2Body::Refusal(text) => {
                std::task::Poll::Ready(text.take().map(|t| Ok(http_body::Frame::data(t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Http2Body::Answer(body) => body.is_end_stream(),
            Http2Body::Refusal(text) => text.is_none(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Http2Body::Answer(body) => body.size_hint(),
            Http2Body::Refusal(text) => {
                http_body::SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64))
            }
        }
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
