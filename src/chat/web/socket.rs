//! One browser member: WebSocket frames in (read and checked by tungstenite), JSON events
//! out (pre-encoded by the hub and written from the member's queue like a line client's).
//! tungstenite's own replies (pong, the answer to a close) go through the same queue, so
//! every byte to the browser leaves in order from one writer.
//!
//! What the browser sends: an optional `hello` first (nick, password, room, `after`), then
//! `say`s; a text that is not a JSON object is a `say` of itself.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt as _, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::chat::Config;
use crate::chat::command::room_name;
use crate::chat::framing::{Event, Framing, ping_frame};
use crate::chat::hub::{Departure, Entry, Hub};
use crate::chat::line::neutralise;
use crate::chat::outbox::Outbox;
use crate::chat::talk::{Ending, Listener, Talker, close, converse, describe};
use crate::net::BoxStream;

/// How long a browser has to send `hello` before it enters as a guest (when no password is
/// required): the page sends it at once; `websocat` users just type.
const HELLO_WAIT: Duration = Duration::from_millis(100);

/// Room for the JSON around a `say` text of `--max-line` bytes.
const ENVELOPE_BYTES: usize = 1024;

/// Messages already read that are handled before their lines go to the hub together: about
/// what one 32 KiB read of a line client's holds, so that a browser flat out costs the
/// server as few publishes (and writes to every member) as a line client does.
const MESSAGES_PER_TURN: usize = 512;
/// Bytes of chat lines gathered in one turn at most, whatever their number.
const BYTES_PER_TURN: usize = 32 * 1024;

/// Bytes tungstenite reads at once: an idle browser costs little memory.
const READ_BUFFER_BYTES: usize = 2 * 1024;

/// Serves one upgraded connection until the member leaves, is dropped, or the server stops.
pub(crate) async fn run(
    stream: BoxStream,
    peer: SocketAddr,
    hub: Arc<Hub>,
    config: Arc<Config>,
    stop: CancellationToken,
) {
    let max_message = config.max_line_bytes.saturating_add(ENVELOPE_BYTES);
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let talker = Talker::new(hub, config, peer, Framing::WebSocket);
    let (reader, writer) = tokio::io::split(stream);
    let io = Duplex {
        reader,
        replies: talker.outbox.clone(),
    };
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config)).await;
    debug!("WebSocket open");
    converse(talker, WsListener { ws }, writer, stop).await;
}

/// The socket as tungstenite sees it: reads from the connection, writes (its pongs and
/// close answers) into the member's queue.
struct Duplex {
    reader: ReadHalf<BoxStream>,
    replies: Arc<Outbox>,
}

impl AsyncRead for Duplex {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Duplex {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Bounded like everything queued for the member: a ping flood from a client that
        // does not read its pongs fills its own queue and ends its own session.
        if self.replies.push(&Bytes::copy_from_slice(buf)) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(io::Error::other("queue full")))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What a browser sends, as JSON (unknown fields are ignored).
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Request {
    Hello {
        nick: Option<String>,
        password: Option<String>,
        room: Option<String>,
        after: Option<String>,
    },
    Say {
        text: String,
    },
}

/// One text message: a request, or (not JSON, or of an unknown kind) what it is.
enum Said {
    Request(Request),
    Text(String),
    Unknown(String),
}

fn read_message(text: &str) -> Said {
    // The usual case at once; anything else is looked at as a whole.
    if let Ok(request) = serde_json::from_str::<Request>(text) {
        return Said::Request(request);
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return Said::Text(text.to_owned());
    };
    if !value.is_object() {
        return Said::Text(text.to_owned());
    }
    match serde_json::from_value::<Request>(value) {
        Ok(request) => Said::Request(request),
        Err(err) => Said::Unknown(err.to_string()),
    }
}

/// The read side of a browser member.
struct WsListener {
    ws: WebSocketStream<Duplex>,
}

/// What happened on the socket.
enum Heard {
    Text(String),
    /// Anything else that proves the browser is there (pong, ping, binary).
    Other(Option<&'static str>),
    /// The browser closed (its close frame is answered).
    Closed,
    Failed(Ending),
}

impl WsListener {
    /// The next message; protocol errors close the socket with their code.
    async fn hear(&mut self, talker: &Talker) -> Heard {
        match self.ws.next().await {
            None => Heard::Closed,
            Some(Ok(Message::Text(text))) => Heard::Text(text.as_str().to_owned()),
            Some(Ok(Message::Binary(_))) => {
                Heard::Other(Some("binary messages are not chat; send text"))
            }
            // tungstenite queues the answer to a close; reading on sends it and ends.
            Some(Ok(Message::Close(_))) => Heard::Other(None),
            Some(Ok(_)) => Heard::Other(None),
            Some(Err(err)) => Heard::Failed(fail(talker, &err)),
        }
    }
}

/// Closes the socket for `err` with the code RFC 6455 gives it.
fn fail(talker: &Talker, err: &WsError) -> Ending {
    let (code, text) = match err {
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            return Ending::Leave(Departure::Closed);
        }
        WsError::Io(err) => return Ending::Leave(Departure::Lost(describe(err))),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            return Ending::Leave(Departure::Lost("connection reset".into()));
        }
        WsError::Utf8(_) => (
            close::INVALID_DATA,
            "a text message that is not UTF-8".to_owned(),
        ),
        WsError::Capacity(_) => (
            close::TOO_BIG,
            format!(
                "message too long (at most {} bytes of text)",
                talker.config.max_line_bytes
            ),
        ),
        err => (close::PROTOCOL, format!("protocol error: {err}")),
    };
    debug!(code, %text, "closing WebSocket");
    talker.last_words(
        &Event::Error {
            text: &text,
            code: None,
        },
        code,
    );
    if talker.has_entered() {
        Ending::Leave(Departure::Lost(text))
    } else {
        Ending::Refused
    }
}

impl Listener for WsListener {
    async fn listen(&mut self, talker: &mut Talker, stop: &CancellationToken) -> Ending {
        let login_deadline = Instant::now()
            + if talker.config.password.is_some() {
                talker.config.login_timeout
            } else {
                HELLO_WAIT
            };
        let mut last_heard = Instant::now();
        let mut is_pinged = false;
        // Messages handled since the last publish: those already read go to the hub
        // together, as one read of a line client's does.
        let mut batched = 0;
        loop {
            let is_turn_over =
                batched >= MESSAGES_PER_TURN || talker.pending_bytes() >= BYTES_PER_TURN;
            let ready = if !is_turn_over {
                self.hear(talker).now_or_never()
            } else {
                None
            };
            let heard = if let Some(heard) = ready {
                batched += 1;
                heard
            } else {
                talker.flush();
                if is_turn_over {
                    // A sender flat out takes its share of the thread, not all of it.
                    tokio::task::yield_now().await;
                }
                batched = 0;
                let ping_at = last_heard + talker.config.ping_interval;
                let give_up_at = ping_at + talker.config.pong_timeout;
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return talker.shutting_down(),
                    _ = tokio::time::sleep_until(login_deadline), if !talker.has_entered() => {
                        if talker.config.password.is_some() {
                            return talker.login_timed_out();
                        }
                        talker.enter(Entry::default()).await;
                        continue;
                    }
                    heard = self.hear(talker) => heard,
                    _ = tokio::time::sleep_until(ping_at), if !is_pinged => {
                        talker.outbox.push(&ping_frame());
                        is_pinged = true;
                        continue;
                    }
                    _ = tokio::time::sleep_until(give_up_at), if is_pinged => {
                        let text = "no answer to ping";
                        talker.last_words(&Event::Error { text, code: None }, close::GOING_AWAY);
                        return Ending::Leave(Departure::Lost(text.into()));
                    }
                }
            };
            last_heard = Instant::now();
            is_pinged = false;
            let text = match heard {
                Heard::Text(text) => text,
                Heard::Other(complaint) => {
                    if let Some(text) = complaint {
                        talker.tell(&Event::Error { text, code: None });
                    }
                    continue;
                }
                Heard::Closed => return Ending::Leave(Departure::Closed),
                Heard::Failed(ending) => return ending,
            };
            let said = read_message(&text);
            if !talker.has_entered() {
                let entry = match &said {
                    Said::Request(Request::Hello {
                        nick,
                        password,
                        room,
                        after,
                    }) => {
                        if !talker.is_password(password.as_deref()) {
                            return talker.refuse_password();
                        }
                        let room = match room.as_deref().map(room_name) {
                            Some(Ok(room)) => Some(room),
                            Some(Err(err)) => {
                                talker.tell(&Event::Error {
                                    text: &err.to_string(),
                                    code: None,
                                });
                                None
                            }
                            None => None,
                        };
                        Entry {
                            nick: nick.clone(),
                            room,
                            after: after.as_deref().and_then(|a| a.parse().ok()),
                            ..Entry::default()
                        }
                    }
                    _ if talker.config.password.is_some() => return talker.refuse_password(),
                    _ => Entry::default(),
                };
                talker.enter(entry).await;
            }
            let text = match said {
                Said::Request(Request::Hello { .. }) => continue,
                Said::Request(Request::Say { text }) | Said::Text(text) => text,
                Said::Unknown(why) => {
                    talker.tell(&Event::Error {
                        text: &format!("not understood: {why}"),
                        code: None,
                    });
                    continue;
                }
            };
            // A message of several lines is several lines typed.
            for line in text.split('\n') {
                if line.len() > talker.config.max_line_bytes {
                    talker.too_long();
                    continue;
                }
                let line = neutralise(line.as_bytes());
                if let Some(ending) = talker.handle(&line, stop).await {
                    return ending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_requests_or_plain_text() {
        assert!(matches!(
            read_message(r#"{"kind":"say","text":"hi","extra":1}"#),
            Said::Request(Request::Say { text }) if text == "hi"
        ));
        assert!(matches!(
            read_message(r#"{"kind":"hello","nick":"alice","after":"41"}"#),
            Said::Request(Request::Hello { nick: Some(n), after: Some(a), password: None, room: None })
                if n == "alice" && a == "41"
        ));
        assert!(matches!(read_message("/join rust"), Said::Text(t) if t == "/join rust"));
        assert!(matches!(read_message("[1,2]"), Said::Text(_)));
        assert!(matches!(read_message("42"), Said::Text(_)));
        assert!(matches!(
            read_message(r#"{"kind":"dance"}"#),
            Said::Unknown(_)
        ));
    }
}
