//! `--trace` for HTTP: the plain HTTP bytes of a connection as hexdump records, with the
//! values of secret headers (`Authorization`, `Cookie`, `Proxy-Authorization`, `Set-Cookie`)
//! replaced by `*` of the same length, so offsets still match the wire.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::trace::{Direction, TraceSink};

const SECRET_HEADERS: [&[u8]; 4] = [
    b"authorization",
    b"cookie",
    b"proxy-authorization",
    b"set-cookie",
];

/// Longest header name worth remembering while looking for a secret one.
const MAX_NAME: usize = 24;

/// Masks secret header values in a byte stream that arrives in arbitrary pieces.
#[derive(Debug, Default, Clone)]
pub(crate) struct Redactor {
    name: Vec<u8>,
    in_name: bool,
    masking: bool,
}

impl Redactor {
    pub(crate) fn new() -> Self {
        Self {
            in_name: true,
            ..Self::default()
        }
    }

    /// Returns `bytes` with the values of secret headers replaced by `*`.
    pub(crate) fn redact(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                self.masking = false;
                self.in_name = true;
                self.name.clear();
                out.push(b);
                continue;
            }
            if self.masking {
                out.push(if b == b' ' || b == b'\t' { b } else { b'*' });
                continue;
            }
            if self.in_name {
                if b == b':' {
                    self.in_name = false;
                    self.masking = SECRET_HEADERS
                        .iter()
                        .any(|s| self.name.eq_ignore_ascii_case(s));
                } else if self.name.len() < MAX_NAME {
                    self.name.push(b);
                } else {
                    self.in_name = false;
                }
            }
            out.push(b);
        }
        out
    }
}

/// A stream that records its plain bytes to a sink, masking secrets unless told not to.
pub(crate) struct HttpTraced<S> {
    inner: S,
    label: String,
    sink: TraceSink,
    sent: u64,
    received: u64,
    redact: Option<(Redactor, Redactor)>,
}

impl<S> HttpTraced<S> {
    pub(crate) fn new(inner: S, label: String, sink: TraceSink, show_secrets: bool) -> Self {
        Self {
            inner,
            label,
            sink,
            sent: 0,
            received: 0,
            redact: (!show_secrets).then(|| (Redactor::new(), Redactor::new())),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HttpTraced<S> {
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
            if !new.is_empty() {
                match &mut this.redact {
                    Some((_, received)) => {
                        let shown = received.redact(new);
                        this.sink
                            .record(&this.label, Direction::Received, this.received, &shown);
                    }
                    None => this
                        .sink
                        .record(&this.label, Direction::Received, this.received, new),
                }
                this.received += new.len() as u64;
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HttpTraced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            let written = &buf[..*n];
            match &mut this.redact {
                Some((sent, _)) => {
                    let shown = sent.redact(written);
                    this.sink
                        .record(&this.label, Direction::Sent, this.sent, &shown);
                }
                None => this
                    .sink
                    .record(&this.label, Direction::Sent, this.sent, written),
            }
            this.sent += *n as u64;
        }
        poll
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

    #[test]
    fn secret_values_are_masked_even_when_split_across_writes() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dTpw\r\ncookie: a=b\r\nX-Cookie: keep\r\n\r\n";
        let whole = Redactor::new().redact(head);
        let mut r = Redactor::new();
        let mut pieces = Vec::new();
        for chunk in head.chunks(3) {
            pieces.extend(r.redact(chunk));
        }
        assert_eq!(whole, pieces);
        let text = String::from_utf8(whole).unwrap();
        assert!(text.contains("Authorization: ***** ****\r\n"), "{text}");
        assert!(text.contains("cookie: ***\r\n"), "{text}");
        assert!(text.contains("X-Cookie: keep\r\n"), "{text}");
        assert_eq!(text.len(), head.len());
    }
}
