//! A line client's session (nc, telnet, `sockit chat join`): text lines in, text lines out.
//! The connection's first bytes tell a browser from a line client (`sniff`); a browser's
//! connection goes to the web side. Consecutive chat lines from one read are published as
//! one shared buffer, so a burst costs the hub one fan-out instead of one per line.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, ready};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::chat::Config;
use crate::chat::framing::{Event, Framing};
use crate::chat::hub::{Departure, Entry, Hub};
use crate::chat::line::{Incoming, LineDecoder};
use crate::chat::sniff::{Arrivals, Sniffed, is_request_line, sniff};
use crate::chat::talk::{Ending, Listener, Talker, converse, describe};
use crate::chat::web::WebSide;
use crate::net::BoxStream;
use crate::net::line::MESSAGE_PAUSE;

/// Bytes asked of a read while a client is quiet: idle clients cost little memory.
const SMALL_READ_BYTES: usize = 1024;
/// Bytes asked of each read while a client is busy: a burst arrives in few reads, and each
/// read is published as one shared buffer.
const BIG_READ_BYTES: usize = 32 * 1024;

/// Why the read loop looks at its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A read of this many bytes: whole lines only.
    Read(usize),
    /// A partial line and no byte for [`MESSAGE_PAUSE`]: it is a message.
    Pause,
    /// The client closed (or half-closed): whatever is left is a message.
    Eof,
}

/// Serves one connection on the chat's address: a browser's on the web side, a line
/// client's here, until it leaves, is dropped, or the server stops.
pub(crate) async fn run(
    mut stream: BoxStream,
    peer: SocketAddr,
    hub: Arc<Hub>,
    config: Arc<Config>,
    web: Arc<WebSide>,
    arrivals: Arc<Arrivals>,
    stop: CancellationToken,
) {
    let (first, is_paused) = match sniff(&mut stream, &arrivals, &stop).await {
        Sniffed::Http(first) => {
            debug!("speaks HTTP");
            // Boxed: a line client's task must not be as big as a browser's.
            Box::pin(web.serve(stream, first, peer, stop)).await;
            return;
        }
        Sniffed::Lines { first, is_paused } => (first, is_paused),
        Sniffed::Gone => return,
    };
    let talker = Talker::new(hub, config, peer, Framing::Lines);
    let (reader, writer) = tokio::io::split(stream);
    let lines = LineListener {
        reader,
        first,
        is_paused,
    };
    converse(talker, lines, writer, stop).await;
}

/// The read side of a line client.
struct LineListener<R> {
    reader: R,
    /// Bytes read while telling the client's kind, to take before any read.
    first: BytesMut,
    /// Whether those bytes end in a partial line followed by a pause (a message).
    is_paused: bool,
}

impl<R: AsyncRead + Unpin + Send> Listener for LineListener<R> {
    async fn listen(&mut self, talker: &mut Talker, stop: &CancellationToken) -> Ending {
        let mut decoder = LineDecoder::new(talker.config.max_line_bytes);
        let mut buf = std::mem::take(&mut self.first);
        let mut first = (!buf.is_empty()).then_some(if self.is_paused {
            End::Pause
        } else {
            End::Read(buf.len())
        });
        let mut read_bytes = SMALL_READ_BYTES;
        let login_deadline = Instant::now() + talker.config.login_timeout;
        // A client that has said nothing yet may be a browser's spare connection, or a browser
        // slow to send its request: it hears the room, but nobody sees it there before it
        // speaks, and a request line as its first line is not chat.
        let mut is_first_line = true;
        if talker.config.password.is_some() {
            talker.tell(&Event::Notice {
                text: "password required: send PASS <password>",
                room: None,
            });
        } else {
            talker
                .enter(Entry {
                    is_listening: buf.is_empty(),
                    ..Entry::default()
                })
                .await;
        }
        loop {
            if buf.is_empty() && read_bytes == SMALL_READ_BYTES {
                // A quiet client holds no read buffer: the next read takes one.
                buf = BytesMut::new();
            } else if buf.capacity() - buf.len() < read_bytes / 2 {
                buf.reserve(read_bytes);
            }
            let spare = match buf.capacity() - buf.len() {
                0 => read_bytes.min(SMALL_READ_BYTES),
                room => room.min(read_bytes),
            };
            let is_partial = decoder.is_partial(&buf);
            let event = if let Some(event) = first.take() {
                event
            } else {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return talker.shutting_down(),
                    _ = tokio::time::sleep_until(login_deadline), if !talker.has_entered() => {
                        return talker.login_timed_out();
                    }
                    // Bounded reads bound what one publish adds to every member's queue.
                    read = read_lazily(&mut self.reader, &mut buf, read_bytes) => match read {
                        Ok(0) => End::Eof,
                        Ok(n) => End::Read(n),
                        Err(err) => {
                            debug!(error = %err, "read failed");
                            return Ending::Leave(Departure::Lost(describe(&err)));
                        }
                    },
                    // Restarted by every read, so a line still arriving is never cut.
                    _ = tokio::time::sleep(MESSAGE_PAUSE), if is_partial => End::Pause,
                }
            };
            // A read that filled the buffer means more is waiting: read bigger.
            if event == End::Read(spare) {
                read_bytes = BIG_READ_BYTES;
            }
            loop {
                let line = match event {
                    End::Read(_) => decoder.decode(&mut buf),
                    End::Pause => decoder.decode_pause(&mut buf),
                    End::Eof => decoder.decode_eof(&mut buf),
                };
                let Some(line) = line else { break };
                let is_first = std::mem::take(&mut is_first_line);
                let ending = match line {
                    Incoming::Line(text) if is_first && is_request_line(text.as_bytes()) => {
                        debug!("an HTTP request after the greeting: closed");
                        Some(talker.close_quietly())
                    }
                    Incoming::TooLong => {
                        talker.too_long();
                        None
                    }
                    Incoming::Line(text) if !talker.has_entered() => login(talker, &text).await,
                    Incoming::Line(text) => talker.handle(&text, stop).await,
                };
                if let Some(ending) = ending {
                    talker.flush();
                    return ending;
                }
            }
            talker.flush();
            if event == End::Eof {
                return Ending::Leave(Departure::Closed);
            }
            // One read per turn: a sender flat out takes its share of the thread, not all
            // of it, so every member's writer gets to drain between two reads.
            tokio::task::yield_now().await;
            // After a burst, an idle client goes back to small reads (and no buffer).
            if buf.is_empty()
                && read_bytes == BIG_READ_BYTES
                && matches!(event, End::Read(n) if n < SMALL_READ_BYTES)
            {
                read_bytes = SMALL_READ_BYTES;
            }
        }
    }
}

/// Reads at most `limit` bytes into `buf`. A `buf` with no room left (a quiet client's, which
/// holds no memory) is not grown before the bytes are there: they land on the stack of the
/// poll that finds them, then take exactly their room in `buf`.
pub(crate) async fn read_lazily<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut BytesMut,
    limit: usize,
) -> std::io::Result<usize> {
    if buf.capacity() > buf.len() {
        return reader.read_buf(&mut (&mut *buf).limit(limit)).await;
    }
    std::future::poll_fn(|cx| {
        let mut landing = [0u8; SMALL_READ_BYTES];
        let mut read = ReadBuf::new(&mut landing[..limit.min(SMALL_READ_BYTES)]);
        ready!(Pin::new(&mut *reader).poll_read(cx, &mut read))?;
        buf.extend_from_slice(read.filled());
        Poll::Ready(Ok(read.filled().len()))
    })
    .await
}

/// A line client's first line when a password is required: `PASS <password>`.
async fn login(talker: &mut Talker, line: &str) -> Option<Ending> {
    let given = line.strip_prefix("PASS ").map(str::trim);
    if given.is_some() && talker.is_password(given) {
        talker.enter(Entry::default()).await;
        None
    } else {
        Some(talker.refuse_password())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::hub::HubConfig;

    /// Every connected line client holds its session's future for its whole life: this pins
    /// what an idle one costs (the rest is its hub entry, its queue and the kernel's socket).
    #[test]
    fn a_line_clients_task_stays_small() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let hub = Arc::new(Hub::new(HubConfig::default()));
        let config = Arc::new(Config::default());
        let stop = CancellationToken::new();
        let web = Arc::new(WebSide::new(
            hub.clone(),
            config.clone(),
            false,
            stop.clone(),
        ));
        let stream: BoxStream = Box::new(tokio::io::duplex(64).0);
        let peer = "127.0.0.1:1".parse().unwrap();
        let arrivals = Arc::new(Arrivals::default());
        let session = run(stream, peer, hub, config, web, arrivals, stop);
        let bytes = std::mem::size_of_val(&session);
        // 2.7 KiB before the browser's side was boxed and the writer's slices left the
        // future; bench/chat-idle.sh shows what each byte here costs 10,000 clients.
        assert!(
            bytes <= 1750,
            "a line client's session future is {bytes} bytes"
        );
    }

    #[tokio::test]
    async fn a_quiet_reader_takes_room_only_for_what_arrives() {
        let mut buf = BytesMut::new();
        let mut input: &[u8] = b"hello\n";
        let read = read_lazily(&mut input, &mut buf, SMALL_READ_BYTES)
            .await
            .unwrap();
        assert_eq!((read, &buf[..]), (6, &b"hello\n"[..]));
        assert!(buf.capacity() < 64, "took {} bytes", buf.capacity());
        // With room left, bytes go straight into it, up to that room.
        buf.reserve(SMALL_READ_BYTES);
        let mut input: &[u8] = b"more";
        read_lazily(&mut input, &mut buf, SMALL_READ_BYTES)
            .await
            .unwrap();
        assert_eq!(&buf[..], b"hello\nmore");
    }
}
