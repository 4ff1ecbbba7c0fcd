//! The response body: bytes in memory (which the connection may send from the file they
//! were read from), a slice of a file read in large chunks, or chunks made as they are sent
//! (archives of a directory), whose length nobody knows in advance.

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncRead;

use crate::http::server::connection::SendfileBody;
use crate::http::server::http1_sendfile::FileBytes;

/// Biggest chunk read from a file at once: few trips to the blocking pool, bounded memory.
const FILE_CHUNK_BYTES: usize = 256 * 1024;

/// A response body; all but a stream of chunks of unknown length (a directory archive)
/// have an exact length, so hyper sends `Content-Length` for them.
#[derive(Debug)]
pub struct Body {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Bytes(Option<Bytes>),
    /// Bytes that `file` holds at `offset`, still open.
    Cached {
        bytes: Option<Bytes>,
        file: Arc<File>,
        offset: u64,
    },
    // Boxed: hyper moves bodies around by value, and most are bytes.
    File(Box<FileBody>),
    /// Chunks from a producer; an error ends the body (the client sees a cut-off transfer).
    Chunks(Option<tokio::sync::mpsc::Receiver<io::Result<Bytes>>>),
}

#[derive(Debug)]
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: BytesMut,
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Bytes(None),
        }
    }

    /// A body of bytes already in memory.
    pub fn bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            kind: Kind::Bytes((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// `bytes`, which `file` holds at `offset`: see [`SendfileBody::sendable`].
    pub(crate) fn cached(bytes: Bytes, file: Arc<File>, offset: u64) -> Self {
        Self {
            kind: Kind::Cached {
                bytes: (!bytes.is_empty()).then_some(bytes),
                file,
                offset,
            },
        }
    }

    /// The next `len` bytes of `file` (already positioned).
    pub fn file(file: tokio::fs::File, len: u64) -> Self {
        Self {
            kind: Kind::File(Box::new(FileBody {
                file,
                remaining: len,
                buf: BytesMut::new(),
            })),
        }
    }
}

impl Body {
    /// A body of unknown length made of what `chunks` yields, until it closes or yields an
    /// error; with `None`, an empty body of unknown length (a HEAD answer). Chunked on
    /// HTTP/1.1.
    pub(crate) fn chunks(chunks: Option<tokio::sync::mpsc::Receiver<io::Result<Bytes>>>) -> Self {
        Self {
            kind: Kind::Chunks(chunks),
        }
    }
}

impl SendfileBody for Body {
    /// The bytes still to go and the open file that holds them, for a body made with
    /// [`Body::cached`].
    fn sendable(&self) -> Option<FileBytes> {
        match &self.kind {
            Kind::Cached {
                bytes: Some(bytes),
                file,
                offset,
            } => Some(FileBytes::new(bytes.clone(), file.clone(), *offset)),
            _ => None,
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Bytes(bytes) | Kind::Cached { bytes, .. } => {
                Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b))))
            }
            Kind::File(body) => {
                let FileBody {
                    file,
                    remaining,
                    buf,
                } = &mut **body;
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(FILE_CHUNK_BYTES);
                if buf.len() < want {
                    buf.resize(FILE_CHUNK_BYTES.max(want), 0);
                }
                let mut read_buf = tokio::io::ReadBuf::new(&mut buf[..want]);
                ready!(Pin::new(file).poll_read(cx, &mut read_buf))?;
                let n = read_buf.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being sent",
                    ))));
                }
                // Hands the filled front of the buffer over without a copy.
                let chunk = buf.split_to(n).freeze();
                *remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Kind::Chunks(chunks) => {
                let Some(rx) = chunks else {
                    return Poll::Ready(None);
                };
                let next = ready!(rx.poll_recv(cx));
                if !matches!(next, Some(Ok(_))) {
                    *chunks = None;
                }
                Poll::Ready(next.map(|chunk| chunk.map(Frame::data)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Bytes(bytes) | Kind::Cached { bytes, .. } => bytes.is_none(),
            Kind::File(body) => body.remaining == 0,
            // Never known in advance: an empty one would be sent with `Content-Length: 0`.
            Kind::Chunks(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Bytes(bytes) | Kind::Cached { bytes, .. } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::File(body) => SizeHint::with_exact(body.remaining),
            Kind::Chunks(_) => SizeHint::default(),
        }
    }
}
