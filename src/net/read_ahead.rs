//! Large socket reads for a reader that asks for small ones. rustls reads a TLS connection
//! about 4 KiB at a time (a 16 KiB record takes five `recv` calls); [`ReadAhead`] sits
//! beneath it and fills a buffer that grows while the socket keeps it full (up to
//! [`MAX_FILL`]), so a bulk transfer costs one system call per 64 KiB instead of per 4. The
//! buffer is freed whenever it is empty and the socket has nothing more: a quiet connection
//! holds none. 64 KiB, not more: the bytes are decrypted, handed on and written right after
//! they are read, and all of that should happen while they are still in the CPU's cache.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

/// The first buffer: one TLS record and its overhead.
const FIRST_FILL: usize = 17 * 1024;

/// The largest buffer, reached after reads that filled the buffer each time.
pub(crate) const MAX_FILL: usize = 64 * 1024;

/// A stream whose reads come from a buffer filled in large reads; see the module docs.
/// Writes go straight through.
#[derive(Debug)]
pub(crate) struct ReadAhead<S> {
    inner: S,
    buf: BytesMut,
    /// Bytes asked of the socket by the next fill.
    fill: usize,
}

impl<S> ReadAhead<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            fill: FIRST_FILL,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            if out.remaining() >= this.fill {
                // Room enough in the caller's buffer: no copy through ours.
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            this.buf.reserve(this.fill);
            let poll = tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buf);
            let n = match poll {
                Poll::Pending => {
                    // Nothing to read now: hold no memory while the connection waits.
                    this.buf = BytesMut::new();
                    return Poll::Pending;
                }
                Poll::Ready(result) => result?,
            };
            if n >= this.fill {
                this.fill = (this.fill * 2).min(MAX_FILL);
            }
        }
        let n = out.remaining().min(this.buf.len());
        out.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

crate::net::forward_async_write!(ReadAhead);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_see_every_byte_in_order_through_growing_fills() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (mut tx, rx) = tokio::io::duplex(MAX_FILL * 2);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            tx.write_all(&sent).await.unwrap();
        });
        let mut reader = ReadAhead::new(rx);
        let mut got = Vec::new();
        let mut piece = [0u8; 4096];
        let mut odd = 1;
        loop {
            // Reads of varying sizes, as rustls's are.
            odd = odd * 31 % 4096 + 1;
            let n = reader.read(&mut piece[..odd]).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&piece[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes differ");
        assert!(reader.fill > FIRST_FILL, "fills grew: {}", reader.fill);
    }

    #[tokio::test]
    async fn a_waiting_reader_holds_no_buffer() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = ReadAhead::new(rx);
        tx.write_all(b"hello").await.unwrap();
        let mut piece = [0u8; 8];
        assert_eq!(reader.read(&mut piece).await.unwrap(), 5);
        let pending = futures_util::FutureExt::now_or_never(reader.read(&mut piece));
        assert!(pending.is_none());
        assert_eq!(reader.buf.capacity(), 0);
        drop(tx);
        assert_eq!(reader.read(&mut piece).await.unwrap(), 0);
    }
}
