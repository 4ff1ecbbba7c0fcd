//! A stream with bytes already read from it put back in front: the first bytes a connection
//! driver read to tell the protocol, or those of the next request on a parked connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};

/// `S` with bytes already read from it put back in front.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }

    /// The stream and whatever of the prefix was not read.
    pub(crate) fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() > 0 && !this.prefix.is_empty() {
            let n = buf.remaining().min(this.prefix.len());
            buf.put_slice(&this.prefix.split_to(n));
            if this.prefix.is_empty() {
                // What follows comes in the same call, so hyper sees the whole head at once
                // and keeps its first buffer instead of growing it for one byte.
                let mut more = [0u8; 4096];
                let room = buf.remaining().min(more.len());
                if room > 0 {
                    let mut rest = ReadBuf::new(&mut more[..room]);
                    // Pending or an error here: the prefix goes up now, the rest next time.
                    if let Poll::Ready(Ok(())) = Pin::new(&mut this.inner).poll_read(cx, &mut rest)
                    {
                        buf.put_slice(rest.filled());
                    }
                }
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

crate::net::forward_async_write!(Rewind);
