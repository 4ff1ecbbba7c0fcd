//! The small services of the classic lessons, done right: echo and greet (`hello {}`), over
//! TCP (one task per connection) and UDP (many peers on one socket).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::{debug, warn};

use crate::net::line::{Frame, LineFramer, MESSAGE_PAUSE};
#[cfg(target_os = "linux")]
use crate::net::plain_tcp;
use crate::net::relay::COPY_BUFFER_BYTES;
#[cfg(target_os = "linux")]
use crate::net::splice::echo_spliced;
use crate::net::udp_batch::{self, RecvBatch, SendBatch};
use crate::net::{AsyncStream, NetError};

/// Largest UDP payload over IPv4 (65535 − 8 UDP − 20 IP header bytes).
pub const MAX_DATAGRAM_BYTES: usize = 65_507;

/// First buffer of an echo connection; it grows while reads keep filling it.
const ECHO_START_BYTES: usize = 16 * 1024;

/// A reply template: `{}` stands for the received line (every occurrence).
///
/// Works on bytes, so a line that is not UTF-8 is answered with its bytes unchanged.
///
/// # Examples
///
/// ```
/// use sockit::net::echo::Template;
/// let t = Template::new("hello {}!");
/// let mut out = bytes::BytesMut::new();
/// t.render(b"world", &mut out);
/// assert_eq!(&out[..], b"hello world!\n");
/// ```
#[derive(Debug, Clone)]
pub struct Template {
    parts: Arc<[Vec<u8>]>,
}

impl Template {
    /// Parses a template; text without `{}` is sent as is for every line.
    pub fn new(template: &str) -> Self {
        let parts: Vec<Vec<u8>> = template
            .split("{}")
            .map(|p| p.as_bytes().to_vec())
            .collect();
        Self {
            parts: parts.into(),
        }
    }

    /// Appends the reply for `line`, with a trailing newline, to `out`.
    pub fn render(&self, line: &[u8], out: &mut BytesMut) {
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                out.put_slice(line);
            }
            out.put_slice(part);
        }
        out.put_u8(b'\n');
    }
}

/// Per-connection limits of the echo and greet services.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// A connection with no data for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// Longest line `greet` answers (longer ones get an error line).
    pub max_line_bytes: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            idle_timeout: None,
            max_line_bytes: 64 * 1024,
        }
    }
}

/// Runs one `read` under the idle timeout; a `stop` that fires first reads as EOF (0 bytes).
async fn read_until_stopped(
    read: impl Future<Output = std::io::Result<usize>>,
    idle_timeout: Option<Duration>,
    stop: Pin<&mut WaitForCancellationFuture<'_>>,
) -> std::io::Result<usize> {
    let read = async {
        match idle_timeout {
            Some(limit) => tokio::time::timeout(limit, read).await.map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    NetError::Timeout {
                        what: "idle connection".into(),
                        after: limit,
                    },
                )
            })?,
            None => read.await,
        }
    };
    tokio::select! {
        biased;
        _ = stop => Ok(0),
        n = read => n,
    }
}

/// Echoes every byte back until the peer closes, the idle timeout passes or `stop` fires.
///
/// Small messages are read into one buffer kept for the whole connection and written back
/// at once. A read that fills the buffer means a bulk stream: on plain TCP (Linux) the rest
/// is echoed with `splice(2)` through a pipe, without copying; otherwise (TLS, Unix sockets)
/// the buffer doubles up to [`COPY_BUFFER_BYTES`].
pub async fn echo<S: AsyncStream>(mut stream: S, config: &ServiceConfig, stop: CancellationToken) {
    // Waiting for `stop` is registered once for the connection, not once per read.
    let stop = stop.cancelled();
    tokio::pin!(stop);
    let mut buf = vec![0u8; ECHO_START_BYTES];
    loop {
        let read = stream.read(&mut buf);
        match read_until_stopped(read, config.idle_timeout, stop.as_mut()).await {
            Ok(0) => break,
            Ok(n) => {
                if let Err(error) = stream.write_all(&buf[..n]).await {
                    debug!(%error, "write failed");
                    return;
                }
                if n < buf.len() {
                    continue;
                }
                #[cfg(target_os = "linux")]
                if let Some(tcp) = plain_tcp(&stream) {
                    debug!("bulk stream: echoing through a pipe");
                    match echo_spliced(tcp, config.idle_timeout, stop.as_mut()).await {
                        Ok(()) => break,
                        Err(error) => {
                            debug!(%error, "echo ended");
                            return;
                        }
                    }
                }
                if buf.len() < COPY_BUFFER_BYTES {
                    buf.resize(buf.len() * 2, 0);
                }
            }
            Err(error) => {
                debug!(%error, "read ended");
                break;
            }
        }
    }
    let _ = stream.shutdown().await;
}

/// Answers every line with `template`; over-long lines get an error line and the connection
/// stays open. All answers to one read go out in one write (pipelined clients are cheap).
///
/// A message ends at a newline, at EOF, or when a partial line is followed by a pause of
/// [`MESSAGE_PAUSE`] (see [`crate::net::line`]), so a client that sends `zy` without a
/// newline and waits in `recv` gets `hello zy`.
pub async fn greet<S: AsyncStream>(
    mut stream: S,
    template: &Template,
    config: &ServiceConfig,
    stop: CancellationToken,
) {
    let stop = stop.cancelled();
    tokio::pin!(stop);
    let mut framer = LineFramer::new(config.max_line_bytes);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        let is_partial = framer.is_partial(&buf);
        // The pause timer starts anew with every read: a line still arriving is never cut.
        let end = tokio::select! {
            biased;
            read = read_until_stopped(stream.read_buf(&mut buf), config.idle_timeout, stop.as_mut()) => match read {
                Ok(0) => End::Eof,
                Ok(_) => End::Read,
                Err(error) => {
                    debug!(%error, "read ended");
                    break;
                }
            },
            _ = tokio::time::sleep(MESSAGE_PAUSE), if is_partial => End::Pause,
        };
        loop {
            let frame = match end {
                End::Read => framer.decode(&mut buf),
                End::Pause => framer.decode_pause(&mut buf),
                End::Eof => framer.decode_eof(&mut buf),
            };
            match frame {
                Some(Frame::Line(line)) => template.render(&line, &mut out),
                Some(Frame::TooLong) => {
                    warn!(limit = framer.max_line_bytes(), "line too long");
                    out.put_slice(
                        format!(
                            "error: line longer than {} bytes\n",
                            framer.max_line_bytes()
                        )
                        .as_bytes(),
                    );
                }
                None => break,
            }
        }
        if !out.is_empty() {
            if let Err(error) = stream.write_all(&out).await {
                debug!(%error, "write failed");
                return;
            }
            out.clear();
        }
        if end == End::Eof {
            break;
        }
    }
    let _ = stream.shutdown().await;
}

/// Why the greet loop looks at its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// New bytes: whole lines only.
    Read,
    /// A partial line and no byte for [`MESSAGE_PAUSE`]: it is a message.
    Pause,
    /// The peer closed (or half-closed): whatever is left is a message.
    Eof,
}

/// What a UDP service answers.
#[derive(Debug, Clone)]
pub enum UdpReply {
    /// The datagram itself.
    Echo,
    /// The template, with the datagram (less a trailing newline) for `{}`.
    Greet(Template),
}

/// Serves every peer on one UDP socket until `stop` fires: each datagram is answered to its
/// sender, boundaries kept. A reply that cannot be sent (too large, peer gone) is logged and
/// skipped; it never stops the service.
///
/// Datagrams are taken and answered in batches ([`udp_batch`]): one
/// system call for everything queued, one for all the answers.
pub async fn serve_udp(socket: UdpSocket, reply: UdpReply, stop: CancellationToken) {
    let mut received = RecvBatch::new(MAX_DATAGRAM_BYTES + 1);
    let mut send = SendBatch::new();
    let mut rendered: Vec<BytesMut> = Vec::new();
    loop {
        match received.try_recv(&socket) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    ready = socket.readable() => if let Err(error) = ready {
                        warn!(%error, "UDP socket failed");
                        return;
                    },
                }
                continue;
            }
            // ICMP port-unreachable from an earlier reply shows up here on some systems.
            Err(error) => {
                debug!(%error, "recv");
                continue;
            }
        }
        let answers: Vec<(&[u8], Option<std::net::SocketAddr>)> = match &reply {
            UdpReply::Echo => received.iter().map(|(d, peer)| (d, Some(peer))).collect(),
            UdpReply::Greet(template) => {
                rendered.resize_with(rendered.len().max(udp_batch::BATCH), BytesMut::new);
                for ((datagram, _), out) in received.iter().zip(rendered.iter_mut()) {
                    out.clear();
                    let line = datagram.strip_suffix(b"\n").unwrap_or(datagram);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    template.render(line, out);
                }
                received
                    .iter()
                    .zip(&rendered)
                    .map(|((_, peer), out)| (&out[..], Some(peer)))
                    .collect()
            }
        };
        let sent = send.send_all(&socket, &answers, |answer, peer, error| {
            warn!(?peer, %error, bytes = answer.len(), "cannot send reply");
        });
        let sent = tokio::select! {
            _ = stop.cancelled() => return,
            sent = sent => sent,
        };
        if let Err(error) = sent {
            warn!(%error, "UDP socket failed");
            return;
        }
    }
}
