//! `--crlf` (nc's `-C`): a reader that turns each bare `\n` into `\r\n`, for line protocols
//! (SMTP, HTTP/1.0 by hand, IRC) that want CRLF while a terminal or file gives LF.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Wraps a reader; every `\n` not already preceded by `\r` comes out as `\r\n`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use tokio::io::AsyncReadExt;
/// use sockit::net::crlf::CrlfReader;
///
/// let mut out = String::new();
/// CrlfReader::new(&b"HELO x\nQUIT\r\n"[..]).read_to_string(&mut out).await?;
/// assert_eq!(out, "HELO x\r\nQUIT\r\n");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CrlfReader<R> {
    inner: R,
    /// The last byte read was `\r` (a `\n` after it is left alone).
    after_cr: bool,
    /// Converted bytes that did not fit the caller's buffer yet.
    pending: Vec<u8>,
    /// How much of `pending` has been handed out.
    pending_at: usize,
    /// Bytes as read, before conversion (kept to save an allocation per read).
    raw: Vec<u8>,
}

impl<R> CrlfReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            after_cr: false,
            pending: Vec::new(),
            pending_at: 0,
            raw: Vec::new(),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for CrlfReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending_at == this.pending.len() {
            // Read at most half the room, so that the converted bytes usually fit at once.
            this.raw.resize((buf.remaining() / 2).max(1), 0);
            let mut raw_buf = ReadBuf::new(&mut this.raw);
            match Pin::new(&mut this.inner).poll_read(cx, &mut raw_buf) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            this.pending.clear();
            this.pending_at = 0;
            for &byte in raw_buf.filled() {
                if byte == b'\n' && !this.after_cr {
                    this.pending.push(b'\r');
                }
                this.pending.push(byte);
                this.after_cr = byte == b'\r';
            }
            if this.pending.is_empty() {
                return Poll::Ready(Ok(())); // EOF
            }
        }
        let n = buf.remaining().min(this.pending.len() - this.pending_at);
        buf.put_slice(&this.pending[this.pending_at..this.pending_at + n]);
        this.pending_at += n;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::CrlfReader;

    #[tokio::test]
    async fn bare_newlines_become_crlf_and_crlf_stays() {
        for (input, want) in [
            (&b"a\nb\n"[..], &b"a\r\nb\r\n"[..]),
            (b"a\r\nb", b"a\r\nb"),
            (b"\n\n", b"\r\n\r\n"),
            (b"no newline", b"no newline"),
        ] {
            let mut out = Vec::new();
            CrlfReader::new(input).read_to_end(&mut out).await.unwrap();
            assert_eq!(out, want, "{input:?}");
        }
    }

    #[tokio::test]
    async fn a_one_byte_buffer_still_gets_every_byte() {
        let mut reader = CrlfReader::new(&b"x\ny\n"[..]);
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        for _ in 0..10 {
            if reader.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            out.push(byte[0]);
        }
        assert_eq!(out, b"x\r\ny\r\n");
    }
}
