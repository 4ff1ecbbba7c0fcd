//! HTTP/1.1 connections, with what only holds for HTTP/1: a connection is handed to hyper
//! only while it talks and parked between requests (`idle`), request heads are checked in the
//! byte stream before hyper parses them and refused ones get a lingering close
//! (`http1_heads`), and cached file bodies go out with `sendfile` (`http1_sendfile`).
//! `connection` decides which connections come here.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::http::server::connection::{Handler, Limits, SendfileBody, Takeover};
use crate::http::server::http1_heads::{self, Http1HeadCheck, Http1HeadLimits};
use crate::http::server::http1_sendfile::{Http1Sendfile, Offers};
use crate::http::server::idle::{Activity, Http1Sessions, IdleIo, Tracked};
use crate::http::server::rewind::Rewind;
use crate::net::BoxStream;

/// A keep-alive connection quiet for this long hands its socket back from hyper (see
/// [`Http1Driver::serve`]).
const PARK_AFTER: Duration = Duration::from_millis(50);
/// Past this many connections in a session at once (about 17 KiB of buffers each), quiet
/// ones park without the pause.
const CROWDED_SESSIONS: usize = 1024;

/// How HTTP/1.1 connections are served; see the module docs.
pub(crate) struct Http1Driver {
    http: hyper::server::conn::http1::Builder,
    sessions: Arc<Http1Sessions>,
    header_timeout: Duration,
    idle_timeout: Duration,
    head_limits: Http1HeadLimits,
}

/// A connection between requests: its stream, the bytes of its next request already read,
/// and since when it has waited for that request.
struct Waiting {
    stream: Http1Sendfile,
    prefix: Bytes,
    since: Instant,
}

impl Http1Driver {
    pub(crate) fn new(limits: &Limits) -> Self {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .keep_alive(true)
            // A client that sends its requests and then half-closes still gets every answer.
            .half_close(true)
            // Pipelined requests are answered in order either way; hyper's `pipeline_flush`
            // would batch their flushes but (hyper 1.x) loses its automatic 400/414/431 answers.
            .pipeline_flush(false)
            // The connection's stream times request heads out (`idle::IdleIo`): hyper's own
            // timer would cost an allocation and a timer-wheel entry per request.
            .header_read_timeout(None)
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.max_header_bytes.max(8192) + 256 * 1024);
        Self {
            http,
            sessions: Arc::new(Http1Sessions::new(CROWDED_SESSIONS)),
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            head_limits: Http1HeadLimits {
                max_target_bytes: limits.max_uri_bytes,
                max_head_bytes: limits.max_header_bytes,
            },
        }
    }

    /// Serves `stream`, whose first bytes (`prefix`, read since `since`) are already in hand.
    ///
    /// hyper allocates its buffers up front and keeps them while a keep-alive connection
    /// waits: a connection is handed to hyper only once a request starts, and handed back
    /// (parked) once it has been quiet for a moment, so a silent or idle connection costs
    /// only this wait (bounded like a request head), however many there are.
    pub(crate) async fn serve<H: Handler>(
        &self,
        handler: &Arc<H>,
        stream: BoxStream,
        prefix: Bytes,
        since: Instant,
        peer: SocketAddr,
        stop: &CancellationToken,
    ) {
        let activity = Arc::new(Activity::default());
        let offers = Arc::new(Offers::default());
        let mut waiting = Waiting {
            stream: Http1Sendfile::new(stream, offers.clone()),
            prefix,
            since,
        };
        loop {
            if waiting.prefix.is_empty() {
                let wait = self.header_timeout.saturating_sub(waiting.since.elapsed());
                let mut first = [0u8; 1];
                let read = tokio::select! {
                    read = tokio::time::timeout(wait, waiting.stream.read(&mut first)) => read,
                    _ = stop.cancelled() => return,
                };
                if !matches!(read, Ok(Ok(1))) {
                    return; // closed, failed, or silent past the head timeout
                }
                waiting.prefix = Bytes::copy_from_slice(&first);
            }
            // Boxed: a waiting connection then holds only what the lines above need, and
            // the session's state (hyper's connection) exists only while it talks.
            let session = self.session(handler, waiting, &activity, &offers, peer, stop);
            match Box::pin(session).await {
                Some(parked) => waiting = parked,
                None => return,
            }
        }
    }

    /// Serves requests on a connection that has started one, until the connection ends
    /// (`None`) or parks.
    async fn session<H: Handler>(
        &self,
        handler: &Arc<H>,
        waiting: Waiting,
        activity: &Arc<Activity>,
        offers: &Arc<Offers>,
        peer: SocketAddr,
        stop: &CancellationToken,
    ) -> Option<Waiting> {
        let head_timeout = (self.header_timeout, waiting.since);
        let io = IdleIo::new(
            Http1HeadCheck::new(
                Rewind::new(waiting.prefix, waiting.stream),
                self.head_limits,
            ),
            self.idle_timeout,
        )
        .parking_http1(
            PARK_AFTER,
            activity.clone(),
            self.sessions.enter(),
            head_timeout,
        );
        let handler = handler.clone();
        let requests = activity.clone();
        let offered = offers.clone();
        let takeover = Arc::new(std::sync::Mutex::new(None::<Takeover>));
        let taken = takeover.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let in_flight = requests.start(!http_body::Body::is_end_stream(req.body()));
            let offers = offered.clone();
            let taken = taken.clone();
            handler.answer(req, peer).map(move |mut res| {
                if let Some(takeover) = res.extensions_mut().remove::<Takeover>()
                    && res.status() == http::StatusCode::SWITCHING_PROTOCOLS
                    && let Ok(mut slot) = taken.lock()
                {
                    *slot = Some(takeover);
                }
                if let Some(sendable) = res.body().sendable() {
                    offers.offer(sendable);
                }
                Ok::<_, Infallible>(res.map(|body| Tracked::new(body, in_flight)))
            })
        });
        let mut conn = self.http.serve_connection(TokioIo::new(io), service);
        let result = tokio::select! {
            // The connection first: it is what wakes this task almost every time.
            biased;
            result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => result,
            _ = stop.cancelled() => {
                std::pin::Pin::new(&mut conn).graceful_shutdown();
                std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)).await
            }
        };
        if let Err(error) = &result {
            debug!(%error, "connection ended with an error");
        }
        let parts = conn.into_parts();
        let io = parts.io.into_inner();
        let parked = result.is_ok() && io.parked() && !stop.is_cancelled();
        let since = io.last_progress();
        let (refusal, rewind, checking) = io.into_inner().into_parts();
        let (unread, mut stream) = rewind.into_parts();
        offers.clear();
        let takeover = takeover.lock().ok().and_then(|mut slot| slot.take());
        if let Some(serve) = takeover.and_then(|t| t.take()) {
            // hyper stops after a 101 answer; whatever the client sent after its request
            // belongs to the new protocol.
            if result.is_ok() {
                let left: Bytes = [&parts.read_buf[..], &checking[..], &unread[..]]
                    .concat()
                    .into();
                let stream = stream.into_inner();
                let stream: BoxStream = if left.is_empty() {
                    stream
                } else {
                    Box::new(Rewind::new(left, stream))
                };
                serve(stream).await;
            }
            return None;
        }
        if !parked {
            http1_heads::linger(&mut stream, refusal, stop).await;
            return None;
        }
        // Nothing is left over when parking; anything that is goes first all the same,
        // copied: an empty `read_buf` still holds hyper's whole read buffer.
        let prefix = match (
            parts.read_buf.is_empty(),
            checking.is_empty(),
            unread.is_empty(),
        ) {
            (true, true, true) => Bytes::new(),
            (false, true, true) => Bytes::copy_from_slice(&parts.read_buf),
            (true, true, false) => Bytes::copy_from_slice(&unread),
            _ => [&parts.read_buf[..], &checking[..], &unread[..]]
                .concat()
                .into(),
        };
        Some(Waiting {
            stream,
            prefix,
            since,
        })
    }
}
