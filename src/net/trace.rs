//! Byte tracing: a wrapper for any stream that hexdumps every read and write, with direction,
//! offset and time — the raw view of what goes over the wire.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where trace records go. Cloning shares the writer and the clock.
///
/// Records are written whole under a lock, in the order the bytes moved; this is a
/// debugging view, so exact order matters more than the cost of a synchronous write.
#[derive(Clone)]
pub struct TraceSink {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    start: Instant,
}

impl std::fmt::Debug for TraceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSink").finish_non_exhaustive()
    }
}

/// Which way bytes moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Written to the peer.
    Sent,
    /// Read from the peer.
    Received,
}

impl TraceSink {
    /// A sink that writes records to `out`.
    pub fn new(out: impl Write + Send + 'static) -> Self {
        Self {
            out: Arc::new(Mutex::new(Box::new(out))),
            start: Instant::now(),
        }
    }

    /// A sink that writes to stderr.
    pub fn stderr() -> Self {
        Self::new(io::stderr())
    }

    /// Writes one record: a header line and a hexdump of `bytes`.
    pub fn record(&self, label: &str, direction: Direction, offset: u64, bytes: &[u8]) {
        let text = format_record(
            label,
            direction,
            offset,
            self.start.elapsed().as_secs_f64(),
            bytes,
        );
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A trace that cannot be written must not break the connection it describes.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// Formats one trace record (pure; the sink adds time and locking).
///
/// ```text
/// > 127.0.0.1:80 sent 5 bytes at offset 0 (+0.000412s)
///   00000000  68 65 6c 6c 6f                                    |hello|
/// ```
pub fn format_record(
    label: &str,
    direction: Direction,
    offset: u64,
    secs: f64,
    bytes: &[u8],
) -> String {
    let (arrow, verb) = match direction {
        Direction::Sent => ('>', "sent"),
        Direction::Received => ('<', "received"),
    };
    let mut s = String::with_capacity(80 + bytes.len() * 4);
    let _ = writeln!(
        s,
        "{arrow} {label} {verb} {} bytes at offset {offset} (+{secs:.6}s)",
        bytes.len()
    );
    for (i, row) in bytes.chunks(16).enumerate() {
        let _ = write!(s, "  {:08x}  ", offset + (i as u64) * 16);
        for col in 0..16 {
            match row.get(col) {
                Some(b) => {
                    let _ = write!(s, "{b:02x} ");
                }
                None => s.push_str("   "),
            }
            if col == 7 {
                s.push(' ');
            }
        }
        s.push_str(" |");
        s.extend(row.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        s.push_str("|\n");
    }
    s
}

/// A stream whose every read and write is recorded to a [`TraceSink`] (when it has one).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use std::sync::{Arc, Mutex};
/// use tokio::io::AsyncWriteExt;
/// use sockit::net::trace::{TraceSink, Traced};
///
/// #[derive(Clone, Default)]
/// struct Shared(Arc<Mutex<Vec<u8>>>);
/// impl std::io::Write for Shared {
///     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
///     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// }
///
/// let log = Shared::default();
/// let mut stream = Traced::new(tokio::io::sink(), "peer", Some(TraceSink::new(log.clone())));
/// stream.write_all(b"GET / HTTP/1.1\r\n").await?;
/// let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
/// assert!(text.starts_with("> peer sent 16 bytes at offset 0"));
/// assert!(text.contains("|GET / HTTP/1.1..|"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Traced<S> {
    inner: S,
    label: String,
    sink: Option<TraceSink>,
    sent: u64,
    received: u64,
}

impl<S> Traced<S> {
    /// Wraps `inner`; `label` names the peer in each record. With no sink it records nothing.
    pub fn new(inner: S, label: impl Into<String>, sink: Option<TraceSink>) -> Self {
        Self {
            inner,
            label: label.into(),
            sink,
            sent: 0,
            received: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Traced<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let new = &buf.filled()[before..];
            if let (Some(sink), false) = (&this.sink, new.is_empty()) {
                sink.record(&this.label, Direction::Received, this.received, new);
                this.received += new.len() as u64;
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Traced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(sink)) = (&poll, &this.sink) {
            sink.record(&this.label, Direction::Sent, this.sent, &buf[..*n]);
            this.sent += *n as u64;
        }
        poll
    }

    // TLS hands its queued records over as one vectored write: without this, each record
    // (and each few-byte one after an HTTP/2 frame head) would cost a system call of its own.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let (Poll::Ready(Ok(n)), Some(sink)) = (&poll, &this.sink) {
            // One record for the whole write, as the peer receives it.
            let mut sent = Vec::with_capacity(*n);
            for buf in bufs {
                let take = buf.len().min(*n - sent.len());
                sent.extend_from_slice(&buf[..take]);
            }
            sink.record(&this.label, Direction::Sent, this.sent, &sent);
            this.sent += *n as u64;
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl Write for Log {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn vectored_writes_pass_through_whole_and_are_recorded() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut b, _) = listener.accept().await.unwrap();
        let log = Log::default();
        let mut traced = Traced::new(a, "p", Some(TraceSink::new(log.clone())));
        assert!(traced.is_write_vectored());
        let slices = [io::IoSlice::new(b"head"), io::IoSlice::new(b"-body")];
        let n = traced.write_vectored(&slices).await.unwrap();
        assert_eq!(n, 9, "both slices in one write");
        let mut got = [0u8; 9];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"head-body");
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("> p sent 9 bytes at offset 0"), "{text}");
        assert!(text.contains("|head-body|"), "{text}");
    }

    #[test]
    fn hexdump_rows_align_and_escape() {
        let bytes: Vec<u8> = (0u8..20).chain(*b"hi\x1b[31m").collect();
        let text = format_record("p", Direction::Received, 32, 0.5, &bytes);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "< p received 27 bytes at offset 32 (+0.500000s)");
        assert_eq!(
            lines[1],
            "  00000020  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|"
        );
        assert!(lines[2].starts_with("  00000030  10 11 12 13 68 69 1b 5b"));
        // The escape byte is shown as '.', never written raw to the terminal.
        assert!(lines[2].ends_with("|....hi.[31m|"));
        assert_eq!(lines.len(), 3);
    }
}
