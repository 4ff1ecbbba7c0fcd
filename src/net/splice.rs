//! Zero-copy moves of a plain TCP socket's bytes, inside the kernel, never through user
//! memory: an echo with `splice(2)` (socket → pipe → socket), and a file sent with
//! `sendfile(2)` (page cache → socket). Linux only, and plain TCP only: TLS must encrypt and
//! decrypt, so it keeps the copying loops of the callers ([`crate::net::echo`], `--raw`).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio_util::sync::WaitForCancellationFuture;

use crate::net::NetError;

/// Pipe size asked for: one splice moves up to this much. Linux lets anyone ask for up to
/// `/proc/sys/fs/pipe-max-size` (1 MiB by default); a refusal leaves the default 64 KiB.
const PIPE_BYTES: usize = 1024 * 1024;

/// A pipe that holds the bytes read from the socket and not yet written back.
struct EchoPipe {
    /// Read end: bytes leave the pipe for the socket here.
    out: OwnedFd,
    /// Write end: bytes from the socket enter here.
    into: OwnedFd,
    /// Bytes the pipe can hold (what the kernel granted).
    capacity: usize,
    /// Bytes in the pipe now.
    held: usize,
}

impl EchoPipe {
    fn open() -> io::Result<Self> {
        let (out, into) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let asked = i32::try_from(PIPE_BYTES).unwrap_or(i32::MAX);
        let capacity = match fcntl(&into, FcntlArg::F_SETPIPE_SZ(asked)) {
            Ok(granted) => usize::try_from(granted).unwrap_or(PIPE_BYTES),
            Err(_) => fcntl(&into, FcntlArg::F_GETPIPE_SZ)
                .ok()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(64 * 1024),
        };
        Ok(Self {
            out,
            into,
            capacity,
            held: 0,
        })
    }
}

/// One non-blocking splice; `EAGAIN` comes back as [`io::ErrorKind::WouldBlock`].
fn splice_some(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    // SIGPIPE on a reset peer: Rust programs ignore it, so it shows up as EPIPE here.
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    Ok(splice(from, None, to, None, len, flags)?)
}

/// Echoes everything `tcp` receives back to it until the peer shuts its side (then every
/// byte read has been written back), `stop` fires, or the idle timeout passes with nothing
/// to read. The caller shuts the write side afterwards.
///
/// Bytes move in the kernel only, up to a pipe's worth per system call: a bulk stream costs
/// two splices per MiB instead of a read and a write per buffer, and no copy at all.
pub(crate) async fn echo_spliced(
    tcp: &TcpStream,
    idle_timeout: Option<Duration>,
    mut stop: Pin<&mut WaitForCancellationFuture<'_>>,
) -> io::Result<()> {
    let mut pipe = EchoPipe::open()?;
    let mut is_reading = true;
    loop {
        let mut moved = false;
        if is_reading && pipe.held < pipe.capacity {
            let room = pipe.capacity - pipe.held;
            let read = if pipe.held == 0 {
                // An empty pipe has room, so EAGAIN means the socket is drained: let tokio
                // forget its readiness, and the wait below sleeps until new bytes arrive.
                tcp.try_io(Interest::READABLE, || splice_some(tcp, &pipe.into, room))
            } else {
                // EAGAIN may mean a full pipe instead: keep the readiness, drain, retry.
                splice_some(tcp, &pipe.into, room)
            };
            match read {
                Ok(0) => is_reading = false,
                Ok(n) => {
                    pipe.held += n;
                    moved = true;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        if pipe.held > 0 {
            match tcp.try_io(Interest::WRITABLE, || {
                splice_some(&pipe.out, tcp, pipe.held)
            }) {
                Ok(n) => {
                    pipe.held -= n;
                    moved = true;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        if !is_reading && pipe.held == 0 {
            return Ok(());
        }
        if moved {
            // A stream that never blocks must still let the other connections run.
            tokio::task::consume_budget().await;
            continue;
        }
        if pipe.held > 0 {
            // The socket's send buffer is full: nothing moves until the peer reads.
            tcp.writable().await?;
            continue;
        }
        let readable = async {
            match idle_timeout {
                Some(limit) => tokio::time::timeout(limit, tcp.readable())
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            NetError::Timeout {
                                what: "idle connection".into(),
                                after: limit,
                            },
                        )
                    })?,
                None => tcp.readable().await,
            }
        };
        tokio::select! {
            biased;
            _ = stop.as_mut() => is_reading = false,
            ready = readable => ready?,
        }
    }
}

/// Bytes asked of one `sendfile`; the socket takes what its send buffer has room for.
const SENDFILE_BYTES: usize = 8 << 20;

/// One `sendfile(2)` of up to `len` bytes of `file` from `offset` (advanced by what was sent),
/// once the socket is writable and until it does not block. `Ok(0)`: `offset` is at the
/// file's end.
pub(crate) fn poll_send_file(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    file: &File,
    offset: &mut i64,
    len: usize,
) -> Poll<io::Result<usize>> {
    poll_write_op(tcp, cx, || {
        nix::sys::sendfile::sendfile(tcp, file, Some(&mut *offset), len)
    })
}

/// Runs the write `op` on `tcp` once the socket is writable, until it does not block.
pub(crate) fn poll_write_op(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    mut op: impl FnMut() -> nix::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        std::task::ready!(tcp.poll_write_ready(cx))?;
        match tcp.try_io(Interest::WRITABLE, || op().map_err(io::Error::from)) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            done => return Poll::Ready(done),
        }
    }
}

/// Sends `file` from its start to its end with `sendfile(2)`: the bytes go from the page cache
/// to the socket without passing through user memory. Returns the byte count.
///
/// A file that is not in the page cache is read from the disk by the call itself, on this
/// thread, as nginx's `sendfile` does; each call sends at most what the socket's buffer holds.
pub(crate) async fn send_file(tcp: &TcpStream, file: &File) -> io::Result<u64> {
    let mut offset = 0i64;
    loop {
        let sent =
            std::future::poll_fn(|cx| poll_send_file(tcp, cx, file, &mut offset, SENDFILE_BYTES))
                .await?;
        if sent == 0 {
            return Ok(u64::try_from(offset).unwrap_or_default());
        }
        // A client that never blocks must still let the other connections run.
        tokio::task::consume_budget().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_file_much_larger_than_the_socket_buffers_arrives_whole_with_sendfile() {
        let mut data = vec![0; (20 << 20) + 12_345];
        blake3::Hasher::new()
            .update(b"sendfile")
            .finalize_xof()
            .fill(&mut data);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source");
        std::fs::write(&path, &data).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (mut client, server) = (client.unwrap(), accepted.unwrap().0);
        let sender = tokio::spawn(async move {
            let file = File::open(&path).unwrap();
            let sent = send_file(&server, &file).await.unwrap();
            drop(server);
            sent
        });
        let mut got = Vec::new();
        let read = client.read_to_end(&mut got);
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("the file arrived")
            .unwrap();
        assert_eq!(sender.await.unwrap(), data.len() as u64);
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes differ");
    }
}
