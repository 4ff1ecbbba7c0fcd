//! The client's side of an HTTP/1 connection, made to take what real servers do (HTTP/2
//! needs none of this: its frames say which stream a response belongs to, and the pool
//! never wraps an HTTP/2 connection in it):
//!
//! - Some servers answer before they read the request (the lessons' server writes its
//!   response on accept). hyper treats bytes that arrive while no request is in flight as
//!   an error, so nothing is read here until the request has started to go out.
//! - Some servers answer and close while the request body is still on its way (413, 401,
//!   a refused `Expect: 100-continue`). The write then fails with a broken pipe or a reset,
//!   but the answer is already in the socket: the rest of the request is dropped, the
//!   failure is kept for the caller, and reading goes on, so the status the server sent is
//!   what the user sees (curl does the same).
//! - A server that closes without reading the request makes the kernel send a reset
//!   instead of a normal close. Once the response has started, a reset ends the stream
//!   like a close: a body without a length (HTTP/1.0 style) is then complete, and one with
//!   a `Content-Length` or chunks that stopped early is still reported as cut short.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What happened to the request bytes of one connection, shared with the client.
#[derive(Debug, Default)]
pub(crate) struct SendState {
    /// The write error that cut the request short, until the client takes it.
    failure: Mutex<Option<io::Error>>,
    /// Whether a request was ever cut short on this connection.
    failed: AtomicBool,
}

impl SendState {
    /// The error that stopped the request from going out, if one did (taken once).
    pub(crate) fn take_failure(&self) -> Option<io::Error> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Whether the request was cut short (the connection cannot be reused).
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn record(&self, err: io::Error) {
        self.failed.store(true, Ordering::Relaxed);
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(err);
    }
}

/// A stream that reads nothing before the first request bytes are written, and that
/// swallows the write errors of a peer that stopped reading (see the module docs).
pub(crate) struct Http1RequestFirst<S> {
    inner: S,
    /// Set by the first write: from then on reads go through.
    started: bool,
    /// Set when a write failed: later writes are dropped.
    discarding: bool,
    /// The reader parked before the request started.
    parked: Option<Waker>,
    /// Bytes of response read so far.
    received: u64,
    state: Arc<SendState>,
}

impl<S> Http1RequestFirst<S> {
    pub(crate) fn new(inner: S, state: Arc<SendState>) -> Self {
        Self {
            inner,
            started: false,
            discarding: false,
            parked: None,
            received: 0,
            state,
        }
    }

    fn start(&mut self) {
        self.started = true;
        if let Some(waker) = self.parked.take() {
            waker.wake();
        }
    }

    /// Turns a write error of a peer that stopped reading into "written", once recorded.
    fn absorb<T>(&mut self, result: io::Result<T>, written: T) -> io::Result<T> {
        match result {
            Err(err) if peer_stopped_reading(&err) => {
                self.state.record(err);
                self.discarding = true;
                self.start();
                Ok(written)
            }
            other => other,
        }
    }
}

fn peer_stopped_reading(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Http1RequestFirst<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.started {
            this.parked = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let before = buf.filled().len();
        match std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf)) {
            Ok(()) => {
                this.received += (buf.filled().len() - before) as u64;
                Poll::Ready(Ok(()))
            }
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset && this.received > 0 => {
                tracing::debug!(
                    received = this.received,
                    "reset by the server after its response began; read as its close"
                );
                Poll::Ready(Ok(()))
            }
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Http1RequestFirst<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.discarding {
            return Poll::Ready(Ok(buf.len()));
        }
        let result = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, buf));
        if matches!(result, Ok(n) if n > 0) {
            this.start();
        }
        Poll::Ready(this.absorb(result, buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total = bufs.iter().map(|b| b.len()).sum();
        if this.discarding {
            return Poll::Ready(Ok(total));
        }
        let result = std::task::ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs));
        if matches!(result, Ok(n) if n > 0) {
            this.start();
        }
        Poll::Ready(this.absorb(result, total))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.discarding {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(Pin::new(&mut this.inner).poll_flush(cx));
        Poll::Ready(this.absorb(result, ()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.discarding {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx));
        Poll::Ready(this.absorb(result, ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn nothing_is_read_before_the_request_starts() {
        let (near, mut far) = tokio::io::duplex(64);
        far.write_all(b"early").await.unwrap();
        let mut stream = Http1RequestFirst::new(near, Arc::default());
        let mut buf = [0u8; 5];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(50), stream.read(&mut buf)).await;
        assert!(early.is_err(), "read before the request was written");
        stream.write_all(b"GET").await.unwrap();
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"early");
    }

    #[tokio::test]
    async fn a_peer_that_stopped_reading_leaves_its_answer_readable() {
        let (near, mut far) = tokio::io::duplex(64);
        far.write_all(b"413").await.unwrap();
        let state = Arc::new(SendState::default());
        let mut stream = Http1RequestFirst::new(near, state.clone());
        stream.write_all(b"PUT").await.unwrap();
        far.read_exact(&mut [0u8; 3]).await.unwrap();
        drop(far);
        // The duplex pipe reports a broken pipe once the far end is gone.
        stream.write_all(&[0u8; 4096]).await.unwrap();
        stream.flush().await.unwrap();
        assert!(state.has_failed());
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"413");
        assert_eq!(
            state.take_failure().map(|e| e.kind()),
            Some(io::ErrorKind::BrokenPipe)
        );
    }
}
