//! Idle connections: a stream that fails with `TimedOut` once no byte has moved either way for
//! a while (a client that stops reading a download, or stops sending an upload, lets go of its
//! connection), used by both protocols. For HTTP/1 only ([`IdleIo::parking_http1`]), the
//! same stream also fails once a request head is overdue however slowly it trickles in
//! (slowloris), and can end a quiet keep-alive connection's HTTP session (`parked`) so the
//! bare socket waits for the next request without hyper's buffers: it knows a request head
//! by the `\r\n\r\n` that ends it, which is HTTP/1 framing. With `rewind`, a connection
//! costs those buffers only while it talks.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Requests of one connection, as its service sees them; the IO parks only when none is
/// being answered.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    had_body: AtomicBool,
}

impl Activity {
    /// A request starts; it ends when the returned guard (kept in its response body) drops.
    /// A request with a body keeps the connection from parking: only the HTTP layer knows
    /// where such a request ends in the byte stream.
    pub(crate) fn start(self: &Arc<Self>, has_body: bool) -> InFlight {
        if has_body {
            self.had_body.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn answering(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    fn quiet(&self) -> bool {
        !self.answering() && !self.had_body.load(Ordering::Relaxed)
    }
}

/// Connections holding an HTTP session (and hyper's buffers) at once, server-wide. Past
/// `crowd` of them, a quiet connection parks at once instead of after its pause: a burst of
/// new connections then costs buffers for the ones being answered, not for all of them.
#[derive(Debug)]
pub(crate) struct Http1Sessions {
    live: AtomicUsize,
    crowd: usize,
}

impl Http1Sessions {
    pub(crate) fn new(crowd: usize) -> Self {
        Self {
            live: AtomicUsize::new(0),
            crowd,
        }
    }

    /// One more session, until the returned guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> Http1Session {
        self.live.fetch_add(1, Ordering::Relaxed);
        Http1Session(self.clone())
    }
}

/// One connection's HTTP session; see [`Http1Sessions::enter`].
#[derive(Debug)]
pub(crate) struct Http1Session(Arc<Http1Sessions>);

impl Http1Session {
    fn crowded(&self) -> bool {
        self.0.live.load(Ordering::Relaxed) > self.0.crowd
    }
}

impl Drop for Http1Session {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request being answered; see [`Activity::start`].
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that ends its request's [`InFlight`] when hyper is done with it.
#[derive(Debug)]
pub(crate) struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B> http_body::Body for Tracked<B>
where
    B: http_body::Body<Data = Bytes, Error = io::Error> + Unpin,
{
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// When a quiet connection parks: after `after` without a byte either way, once every
/// request was answered and flushed and the bytes read so far end with a complete request
/// head (so hyper holds no part of the next one). And how long the next request's head may
/// take: `head_timeout` from the moment the connection starts waiting for it.
#[derive(Debug)]
struct Park {
    after: Duration,
    activity: Arc<Activity>,
    session: Http1Session,
    tail: [u8; 4],
    flushed: bool,
    parked: bool,
    head_timeout: Duration,
    /// Since when the connection has been waiting for a request (every one before answered
    /// and flushed); `None` while one is being answered.
    waiting_since: Option<Instant>,
}

impl Park {
    fn ready(&self) -> bool {
        self.flushed && &self.tail == b"\r\n\r\n" && self.activity.quiet()
    }

    fn saw(&mut self, bytes: &[u8]) {
        if bytes.len() >= 4 {
            self.tail.copy_from_slice(&bytes[bytes.len() - 4..]);
        } else {
            for &b in bytes {
                self.tail.rotate_left(1);
                self.tail[3] = b;
            }
        }
    }
}

/// Wraps `S`; see the module docs.
#[derive(Debug)]
pub(crate) struct IdleIo<S> {
    inner: S,
    timeout: Duration,
    last_progress: Instant,
    // Re-armed lazily: progress only records a time, the timer moves when it fires.
    sleep: Pin<Box<Sleep>>,
    park: Option<Park>,
}

impl<S> IdleIo<S> {
    pub(crate) fn new(inner: S, timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timeout,
            last_progress: now,
            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
            park: None,
        }
    }

    /// Lets reads end (`Ok(0)`, as if the peer had finished) once the connection has been
    /// quiet for `after` (at once while sessions are crowded); [`IdleIo::parked`] then tells
    /// this apart from a real end. Reads fail with `TimedOut` when a request head has not
    /// arrived `head_timeout` after the connection started waiting for it (it has been
    /// waiting since `waiting_since`).
    pub(crate) fn parking_http1(
        mut self,
        after: Duration,
        activity: Arc<Activity>,
        session: Http1Session,
        (head_timeout, waiting_since): (Duration, Instant),
    ) -> Self {
        self.park = Some(Park {
            after,
            activity,
            session,
            tail: [0; 4],
            flushed: true,
            parked: false,
            head_timeout,
            waiting_since: Some(waiting_since),
        });
        self
    }

    /// Whether reads ended because the connection parked.
    pub(crate) fn parked(&self) -> bool {
        self.park.as_ref().is_some_and(|p| p.parked)
    }

    /// When the last byte moved either way.
    pub(crate) fn last_progress(&self) -> Instant {
        self.last_progress
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    fn park_deadline(&self) -> Option<Instant> {
        self.park.as_ref().filter(|p| p.ready()).map(|p| {
            let after = if p.session.crowded() {
                Duration::ZERO
            } else {
                p.after
            };
            self.last_progress + after
        })
    }

    fn head_deadline(&self) -> Option<Instant> {
        let park = self.park.as_ref().filter(|p| !p.activity.answering())?;
        Some(park.waiting_since? + park.head_timeout)
    }

    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            let idle_at = self.last_progress + self.timeout;
            if now >= idle_at {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                ));
            }
            let mut next = idle_at;
            if let Some(at) = self.park_deadline() {
                if at <= now {
                    // Time to park: the next read does it.
                    self.sleep.as_mut().reset(idle_at);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                next = next.min(at);
            }
            if let Some(at) = self.head_deadline() {
                if at <= now {
                    return Poll::Ready(head_timed_out());
                }
                next = next.min(at);
            }
            self.sleep.as_mut().reset(next);
        }
    }

    /// Brings the timer forward to the park or head deadline, if one comes first, and
    /// registers the task with it.
    fn arm(&mut self, cx: &mut Context<'_>) {
        self.bring_forward([self.park_deadline(), self.head_deadline()]);
        if self.sleep.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }

    /// Moves the timer to the earliest of `deadlines` that comes before it.
    fn bring_forward(&mut self, deadlines: [Option<Instant>; 2]) {
        if let Some(at) = deadlines.into_iter().flatten().min() {
            if self.sleep.deadline() > at {
                self.sleep.as_mut().reset(at);
            }
        }
    }

    fn wrote(&mut self) {
        self.last_progress = Instant::now();
        if let Some(park) = &mut self.park {
            park.flushed = false;
            park.waiting_since = None;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.last_progress = Instant::now();
                if let Some(park) = &mut this.park {
                    park.saw(&buf.filled()[before..]);
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let park_at = this.park_deadline();
                let head_at = this.head_deadline();
                if park_at.is_some() || head_at.is_some() {
                    let now = Instant::now();
                    if let (Some(at), Some(park)) = (park_at, &mut this.park) {
                        if now >= at {
                            park.parked = true;
                            return Poll::Ready(Ok(()));
                        }
                    }
                    if head_at.is_some_and(|at| now >= at) {
                        return Poll::Ready(Err(head_timed_out()));
                    }
                    this.bring_forward([park_at, head_at]);
                }
                this.poll_idle(cx).map(Err)
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.wrote();
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                this.wrote();
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(result) => {
                if let (Ok(()), Some(park)) = (&result, &mut this.park) {
                    park.flushed = true;
                    if !park.activity.answering() && park.waiting_since.is_none() {
                        park.waiting_since = Some(this.last_progress);
                    }
                    // hyper may not read again until woken (it tried before this flush): the
                    // timer wakes it when it is time to park or the next head is overdue.
                    this.arm(cx);
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn head_timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "request head not received in time")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::server::body::Body;
    use crate::http::server::rewind::Rewind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A stream over an in-memory pipe that parks after 100 ms of quiet between requests,
    /// with `head` as its head timeout and start: the client's end, the stream, and the
    /// activity it watches.
    fn parking_pipe(
        sessions: &Arc<Http1Sessions>,
        idle: Duration,
        head: (Duration, Instant),
        capacity: usize,
    ) -> (DuplexStream, IdleIo<DuplexStream>, Arc<Activity>) {
        let (client, server) = tokio::io::duplex(capacity);
        let activity = Arc::new(Activity::default());
        let io = IdleIo::new(server, idle).parking_http1(
            Duration::from_millis(100),
            activity.clone(),
            sessions.enter(),
            head,
        );
        (client, io, activity)
    }

    #[tokio::test]
    async fn rewound_byte_comes_first() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"ello").await.unwrap();
        drop(client);
        let mut io = Rewind::new(Bytes::from_static(b"h"), server);
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello");
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_connections_park_only_between_requests() {
        let sessions = Arc::new(Http1Sessions::new(8));
        let (mut client, mut io, activity) = parking_pipe(
            &sessions,
            Duration::from_secs(60),
            (Duration::from_secs(3600), Instant::now()),
            256,
        );
        let mut buf = [0u8; 64];
        // A request is being answered: no parking.
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
        let in_flight = activity.start(false);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), io.read(&mut buf))
                .await
                .is_err()
        );
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        drop(in_flight);
        // Written but not yet flushed: still no parking.
        assert!(
            tokio::time::timeout(Duration::from_secs(1), io.read(&mut buf))
                .await
                .is_err()
        );
        io.flush().await.unwrap();
        let started = Instant::now();
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert!(io.parked());
        assert!(started.elapsed() <= Duration::from_millis(150));
        drop(io);
        assert_eq!(sessions.live.load(Ordering::Relaxed), 0);

        // Half a head read: never parks, whatever the pause.
        let (mut client, mut io, _) = parking_pipe(
            &sessions,
            Duration::from_secs(5),
            (Duration::from_secs(3600), Instant::now()),
            256,
        );
        client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let _ = io.read(&mut buf).await.unwrap();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(!io.parked());
    }

    /// How long a connection that was just answered takes to park, with `others` sessions
    /// besides its own and room for `crowd`.
    async fn park_wait(others: usize, crowd: usize) -> Duration {
        let sessions = Arc::new(Http1Sessions::new(crowd));
        let _others: Vec<_> = (0..others).map(|_| sessions.enter()).collect();
        let (mut client, mut io, _) = parking_pipe(
            &sessions,
            Duration::from_secs(60),
            (Duration::from_secs(3600), Instant::now()),
            256,
        );
        let mut buf = [0u8; 64];
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        io.flush().await.unwrap();
        let started = Instant::now();
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert!(io.parked());
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn crowded_sessions_park_without_waiting() {
        assert_eq!(park_wait(2, 3).await, Duration::from_millis(100));
        assert_eq!(park_wait(3, 3).await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dribbled_head_times_out_but_a_slow_answer_does_not() {
        let sessions = Arc::new(Http1Sessions::new(8));
        let waiting_since = Instant::now();
        let (mut client, mut io, activity) = parking_pipe(
            &sessions,
            Duration::from_secs(60),
            (Duration::from_secs(10), waiting_since),
            256,
        );
        let mut buf = [0u8; 64];
        // A whole request in time, then an answer that takes longer than a head may.
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_secs(9)).await;
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
        let in_flight = activity.start(false);
        assert!(
            tokio::time::timeout(Duration::from_secs(30), io.read(&mut buf))
                .await
                .is_err()
        );
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        drop(in_flight);
        io.flush().await.unwrap();
        // The next head comes a byte every second, from at once (so the connection does not
        // park): each byte is progress, but the head as a whole is due 10 s after the answer
        // went out.
        let answered = Instant::now();
        let dribble = tokio::spawn(async move {
            for &b in b"GET /next HTTP/1.1\r\n" {
                if client.write_all(&[b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let err = loop {
            match io.read(&mut buf).await {
                Ok(n) => assert!(n > 0, "ended before the head timed out"),
                Err(err) => break err,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(answered.elapsed(), Duration::from_secs(10));
        dribble.abort();
    }

    /// hyper serving one connection over `IdleIo`: once a request has been answered and the
    /// connection has been quiet for the pause, the session ends parked.
    #[tokio::test(start_paused = true)]
    async fn hyper_session_parks_after_an_answer() {
        use hyper_util::rt::TokioIo;

        let sessions = Arc::new(Http1Sessions::new(8));
        let (mut client, io, activity) = parking_pipe(
            &sessions,
            Duration::from_secs(60),
            (Duration::from_secs(10), Instant::now()),
            4096,
        );
        let service = hyper::service::service_fn(move |req: http::Request<_>| {
            let in_flight = activity.start(!http_body::Body::is_end_stream(req.body()));
            let body = Tracked::new(Body::bytes("hi"), in_flight);
            std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(body)))
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(None)
            .serve_connection(TokioIo::new(io), service)
            .without_shutdown();
        let served = tokio::spawn(conn);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"hi") {
            let mut buf = [0u8; 256];
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0);
            answer.extend_from_slice(&buf[..n]);
        }
        let started = Instant::now();
        let parts = tokio::time::timeout(Duration::from_secs(30), served)
            .await
            .expect("the connection never parked")
            .unwrap()
            .unwrap();
        assert!(parts.io.into_inner().parked());
        assert!(started.elapsed() <= Duration::from_millis(150));
        assert_eq!(sessions.live.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_peer_times_out_and_active_peer_does_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = IdleIo::new(server, Duration::from_secs(5));
        let mut client = client;
        let writer = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                client.write_all(b"x").await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(client);
        });
        let mut buf = [0u8; 1];
        for _ in 0..3 {
            io.read_exact(&mut buf).await.unwrap();
        }
        let started = Instant::now();
        let err = io.read_exact(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() <= Duration::from_secs(6));
        writer.abort();
    }
}
