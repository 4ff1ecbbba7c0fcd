//! Cached files sent with `sendfile(2)`. A response body that is a slice of a cached file's
//! bytes can go from the page cache to the socket without the copy through user space that a
//! write makes. hyper still frames every response; this layer only sees its writes,
//! recognises the body slices it was told about ([`Offers`]) by their address, and sends each
//! one from the open file instead. On plain TCP on Linux; everything else is written as usual.
//!
//! The file is the one the bytes were read from, and every request checks it has not changed
//! before its response is built. A file rewritten in place while a response is on its way
//! can still show through in that response, as with nginx; a file cut short meanwhile is
//! noticed and the rest is written from memory.

#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::BoxStream;

/// Bytes of a file in memory, and the file they were read from (kept open, so a later
/// rename or delete of the path does not matter).
#[derive(Debug, Clone)]
pub(crate) struct FileBytes {
    bytes: Bytes,
    file: Arc<File>,
    offset: u64,
}

impl FileBytes {
    /// `bytes` must be what `file` held at `offset` when it was read.
    pub(crate) fn new(bytes: Bytes, file: Arc<File>, offset: u64) -> Self {
        Self {
            bytes,
            file,
            offset,
        }
    }

    /// Where `slice` starts in the file, when it lies within these bytes. An address inside
    /// this buffer can belong to nothing else: `self` keeps the buffer alive and unchanged.
    fn offset_of(&self, slice: &[u8]) -> Option<u64> {
        let base = self.bytes.as_ptr() as usize;
        let start = slice.as_ptr() as usize;
        let inside = start >= base && start + slice.len() <= base + self.bytes.len();
        (inside && !slice.is_empty()).then(|| self.offset + (start - base) as u64)
    }
}

/// Bodies that one connection's responses may be writing, oldest first. Responses go out in
/// order, so once a body is being written the ones offered before it are done and dropped;
/// the connection clears the rest when it goes idle. (hyper may drop a body before its
/// last bytes are written, so the body itself cannot say when it is done.)
#[derive(Debug, Default)]
pub(crate) struct Offers(Mutex<VecDeque<FileBytes>>);

/// Enough for a response being written and a few pipelined ones behind it; older offers
/// are forgotten and their bodies written the usual way.
const OFFERS_MAX: usize = 4;

impl Offers {
    pub(crate) fn offer(&self, bytes: FileBytes) {
        let mut offers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if offers.len() == OFFERS_MAX {
            offers.pop_front();
        }
        offers.push_back(bytes);
    }

    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The file and offset that hold `slice`; offers older than its own are dropped.
    fn find(&self, slice: &[u8]) -> Option<(Arc<File>, u64)> {
        let mut offers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (index, offset) = offers
            .iter()
            .enumerate()
            .find_map(|(i, o)| Some((i, o.offset_of(slice)?)))?;
        offers.drain(..index);
        Some((offers[0].file.clone(), offset))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A connection's stream, writing offered file slices with `sendfile`; see the module docs.
pub(crate) struct Http1Sendfile {
    inner: BoxStream,
    offers: Arc<Offers>,
}

impl std::fmt::Debug for Http1Sendfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Sendfile").finish_non_exhaustive()
    }
}

impl Http1Sendfile {
    pub(crate) fn new(inner: BoxStream, offers: Arc<Offers>) -> Self {
        Self { inner, offers }
    }

    /// The stream, for a connection taken over after a `101` answer.
    pub(crate) fn into_inner(self) -> BoxStream {
        self.inner
    }

    /// The bare TCP socket beneath, when there is one (not TLS, not traced).
    fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        crate::net::AsyncStream::as_any(&*self.inner).downcast_ref()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::task::{Context, Poll};

    use nix::sys::socket::{MsgFlags, SockaddrStorage, sendmsg};
    use tokio::net::TcpStream;

    /// Sends `len` bytes of `file` from `offset`. `None` when the file no longer holds them
    /// (cut short since) or cannot be sent this way: the caller writes them from memory.
    pub(super) fn send_file(
        tcp: &TcpStream,
        cx: &mut Context<'_>,
        file: &File,
        offset: u64,
        len: usize,
    ) -> Option<Poll<io::Result<usize>>> {
        let mut offset = i64::try_from(offset).ok()?;
        match crate::net::poll_send_file(tcp, cx, file, &mut offset, len) {
            Poll::Ready(Ok(0)) => None,
            Poll::Ready(Err(e))
                if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) =>
            {
                None
            }
            sent => Some(sent),
        }
    }

    /// Writes `bufs` (a response head) with `MSG_MORE`: they leave in the same segment as the
    /// body that follows instead of in one of their own.
    pub(super) fn send_more(
        tcp: &TcpStream,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let fd = tcp.as_raw_fd();
        crate::net::poll_write_op(tcp, cx, || {
            sendmsg(
                fd,
                bufs,
                &[],
                MsgFlags::from_bits_retain(libc::MSG_MORE),
                None::<&SockaddrStorage>,
            )
        })
    }
}

impl AsyncRead for Http1Sendfile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Http1Sendfile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        #[cfg(target_os = "linux")]
        if let Some(tcp) = this.tcp() {
            let found = bufs
                .iter()
                .enumerate()
                .find_map(|(i, buf)| Some((i, this.offers.find(buf)?)));
            match found {
                // The offered slice leads: send it from its file, or from memory if that fails.
                Some((0, (file, offset))) => {
                    if let Some(sent) = linux::send_file(tcp, cx, &file, offset, bufs[0].len()) {
                        return sent;
                    }
                }
                // What comes before it (the head) goes first, held back to share the body's
                // first segment; the caller comes back for the rest, which the slice leads.
                Some((i, _)) => return linux::send_more(tcp, cx, &bufs[..i]),
                None => {}
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
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

    fn file_bytes(content: &[u8]) -> FileBytes {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, content).unwrap();
        FileBytes::new(Bytes::copy_from_slice(content), Arc::new(file), 0)
    }

    #[test]
    fn slices_are_found_by_address_not_by_content() {
        let a = file_bytes(b"0123456789");
        let b = file_bytes(b"0123456789");
        let offers = Offers::default();
        offers.offer(a.clone());
        offers.offer(b.clone());
        // Equal bytes elsewhere are not an offered slice.
        assert!(offers.find(b"0123456789").is_none());
        assert!(offers.find(&a.bytes[..0]).is_none());
        // A slice of the second body is found at its offset; the first body is then done.
        let (_, offset) = offers.find(&b.bytes[3..7]).unwrap();
        assert_eq!(offset, 3);
        assert_eq!(offers.len(), 1);
        assert!(offers.find(&a.bytes[..]).is_none());
        // A slice running past the end of the buffer is not inside it.
        let wider = Bytes::copy_from_slice(b"0123456789abc");
        assert!(
            FileBytes::new(
                wider.slice(..10),
                Arc::new(tempfile::tempfile().unwrap()),
                0
            )
            .offset_of(&wider)
            .is_none()
        );
        // Bytes from the middle of a file: offsets count from the file's start.
        let middle = FileBytes::new(wider.slice(4..), Arc::new(tempfile::tempfile().unwrap()), 4);
        assert_eq!(middle.offset_of(&wider[6..8]), Some(6));
    }

    #[test]
    fn offers_are_bounded() {
        let offers = Offers::default();
        let all: Vec<_> = (0..OFFERS_MAX + 2).map(|_| file_bytes(b"x")).collect();
        for bytes in &all {
            offers.offer(bytes.clone());
        }
        assert_eq!(offers.len(), OFFERS_MAX);
        assert!(offers.find(&all[0].bytes).is_none());
        assert!(offers.find(&all[OFFERS_MAX + 1].bytes).is_some());
        offers.clear();
        assert_eq!(offers.len(), 0);
    }
}
