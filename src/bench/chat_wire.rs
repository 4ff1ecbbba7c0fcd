//! How a chat load client's lines go over the wire: text lines over TCP, or WebSocket
//! frames — sockit's own JSON events (`say` out, `message` in) or a generic broadcast
//! server's raw text (every text frame is a line). The accounting (`chat`) sees lines only.

use std::io;

use bytes::BytesMut;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::net::dial::{DialOptions, Dialed, dial};
use crate::net::{BoxStream, HostPort, NetError};

/// How the load's clients talk to the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Transport {
    /// Text lines over TCP (nc, telnet, `sockit chat join`, ncat's chat).
    #[default]
    Lines,
    /// WebSocket to a sockit chat at `path`: each line goes out as `{"kind":"say",…}`, and
    /// lines arrive as `message` events (notices as `notice` and `error`).
    ChatWebSocket {
        /// The WebSocket's path, e.g. `/ws`.
        path: String,
    },
    /// WebSocket to a generic broadcast server at `path`: each line goes out as the text of
    /// one frame, and every text (or binary) frame that arrives holds lines.
    RawWebSocket {
        /// The WebSocket's path, e.g. `/`.
        path: String,
    },
}

impl Transport {
    /// Bytes a server adds to each line it queues for a client (prefix, JSON envelope and
    /// frame header), to size the senders' window.
    pub(super) fn overhead_bytes(&self) -> usize {
        match self {
            Transport::Lines | Transport::RawWebSocket { .. } => 32,
            Transport::ChatWebSocket { .. } => 160,
        }
    }
}

type Ws = WebSocketStream<BoxStream>;

/// The sending half of a line client's stream: an owned TCP half (no lock shared with the
/// reader) or a half of any other transport.
type LineWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// The receiving half of a line client's stream.
type LineReader = Box<dyn AsyncRead + Send + Unpin>;

/// Bytes a WebSocket client reads at once: enough for a burst of frames, small enough for
/// thousands of idle clients.
const WS_READ_BUFFER_BYTES: usize = 16 * 1024;

/// Frames handed over per wake-up of a WebSocket reader before it lets others run.
const WS_FRAMES_PER_TURN: usize = 64;

/// The sending half of one client.
pub(super) enum Writer {
    Lines(LineWriter),
    Ws {
        sink: SplitSink<Ws, Message>,
        is_raw: bool,
        /// One buffer per batch; every frame is a slice of it.
        frames: BytesMut,
    },
}

/// The receiving half of one client.
pub(super) enum Reader {
    Lines {
        half: LineReader,
        buf: BytesMut,
    },
    Ws {
        stream: SplitStream<Ws>,
        is_raw: bool,
        /// A frame waited for and not yet handed over.
        pending: Option<Message>,
        is_closed: bool,
    },
}

/// What a client heard: a line (chat or not, as the server framed it), or a server notice.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Heard<'a> {
    Line(&'a [u8]),
    /// The text of a WebSocket `notice` or `error` event, without the `* ` a line client
    /// would see.
    Notice(&'a str),
}

/// Why a client could not join.
#[derive(Debug)]
pub(super) enum OpenError {
    /// The route to the server failed (connect, proxy, Unix socket).
    Dial(NetError),
    /// The WebSocket handshake failed.
    WebSocket(io::Error),
}

/// Connects one client to `addr` by `route` (directly, through a proxy or over a Unix
/// socket), then speaks `transport`. The dial layer sets TCP_NODELAY on TCP connections.
pub(super) async fn open(
    addr: &HostPort,
    route: &DialOptions,
    transport: &Transport,
) -> Result<(Writer, Reader), OpenError> {
    let (dialed, _) = dial(addr, route).await.map_err(OpenError::Dial)?;
    let (path, is_raw) = match transport {
        Transport::Lines => {
            let (half, writer): (LineReader, LineWriter) = match dialed {
                // Owned halves of a TCP stream share no lock between reader and writer.
                Dialed::Tcp(tcp) => {
                    let (half, writer) = tcp.into_split();
                    (Box::new(half), Box::new(writer))
                }
                Dialed::Boxed(stream) => {
                    let (half, writer) = tokio::io::split(stream);
                    (Box::new(half), Box::new(writer))
                }
            };
            let buf = BytesMut::with_capacity(64 * 1024);
            return Ok((Writer::Lines(writer), Reader::Lines { half, buf }));
        }
        Transport::ChatWebSocket { path } => (path, false),
        Transport::RawWebSocket { path } => (path, true),
    };
    let url = format!("ws://{addr}{path}");
    let config = WebSocketConfig::default().read_buffer_size(WS_READ_BUFFER_BYTES);
    let stream = dialed.into_boxed();
    let (ws, _) = tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config))
        .await
        .map_err(|err| {
            OpenError::WebSocket(io::Error::other(format!(
                "WebSocket handshake at {url} failed: {err}"
            )))
        })?;
    let (sink, stream) = ws.split();
    Ok((
        Writer::Ws {
            sink,
            is_raw,
            frames: BytesMut::new(),
        },
        Reader::Ws {
            stream,
            is_raw,
            pending: None,
            is_closed: false,
        },
    ))
}

impl Writer {
    /// Sends `text` as it is: a line (a newline is added) or the text of one frame.
    pub(super) async fn greet(&mut self, text: &str) -> bool {
        match self {
            Writer::Lines(half) => half.write_all(format!("{text}\n").as_bytes()).await.is_ok(),
            Writer::Ws { sink, .. } => sink.send(Message::text(text)).await.is_ok(),
        }
    }

    /// Sends `lines` (each ending in `\n`): in one write over TCP, as one frame each over a
    /// WebSocket (written together). `false` when the connection failed.
    pub(super) async fn send_lines(&mut self, lines: &[u8]) -> bool {
        let (sink, is_raw, frames) = match self {
            Writer::Lines(half) => return half.write_all(lines).await.is_ok(),
            Writer::Ws {
                sink,
                is_raw,
                frames,
            } => (sink, *is_raw, frames),
        };
        // Room for every frame at once, so each is a slice of one allocation.
        frames.reserve(lines.len() + lines.len() / 8 + 64 * 32);
        for line in lines.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            if is_raw {
                frames.extend_from_slice(line);
            } else {
                push_say(frames, line);
            }
            let Ok(text) = Utf8Bytes::try_from(frames.split().freeze()) else {
                continue; // not UTF-8: the load's own lines always are
            };
            if sink.feed(Message::Text(text)).await.is_err() {
                return false;
            }
        }
        sink.flush().await.is_ok()
    }
}

/// Appends `{"kind":"say","text":LINE}`.
fn push_say(out: &mut BytesMut, line: &[u8]) {
    let is_plain = line
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f);
    out.extend_from_slice(br#"{"kind":"say","text":"#);
    if is_plain {
        out.extend_from_slice(b"\"");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\"");
    } else {
        let text = String::from_utf8_lossy(line);
        let quoted = serde_json::to_string(&text).expect("a string always serialises");
        out.extend_from_slice(quoted.as_bytes());
    }
    out.extend_from_slice(b"}");
}

impl Reader {
    /// Waits until something arrives; the bytes that did, or `None` when the connection
    /// closed or failed. [`drain`](Self::drain) then hands it over. Cancel-safe.
    pub(super) async fn wait(&mut self) -> Option<usize> {
        match self {
            Reader::Lines { half, buf } => {
                if buf.capacity() - buf.len() < 16 * 1024 {
                    buf.reserve(64 * 1024);
                }
                match half.read_buf(buf).await {
                    Ok(0) | Err(_) => None,
                    Ok(n) => Some(n),
                }
            }
            Reader::Ws {
                stream,
                pending,
                is_closed,
                ..
            } => {
                if pending.is_some() {
                    // Left over from the last turn (its bytes are counted).
                    return Some(0);
                }
                if *is_closed {
                    return None;
                }
                match stream.next().await {
                    Some(Ok(message)) if !message.is_close() => {
                        let n = message.len();
                        *pending = Some(message);
                        Some(n)
                    }
                    _ => {
                        *is_closed = true;
                        None
                    }
                }
            }
        }
    }

    /// Hands what arrived to `each`, whole lines only (a partial line waits for its end);
    /// over a WebSocket also the frames already there, up to a few dozen. Returns the bytes
    /// of those extra frames.
    pub(super) fn drain(&mut self, mut each: impl FnMut(Heard<'_>)) -> usize {
        match self {
            Reader::Lines { buf, .. } => {
                let mut start = 0;
                for end in memchr::memchr_iter(b'\n', buf) {
                    let line = &buf[start..end];
                    each(Heard::Line(line.strip_suffix(b"\r").unwrap_or(line)));
                    start = end + 1;
                }
                let _ = buf.split_to(start);
                0
            }
            Reader::Ws {
                stream,
                is_raw,
                pending,
                is_closed,
            } => {
                let mut extra = 0;
                let mut next = pending.take();
                for _ in 0..WS_FRAMES_PER_TURN {
                    let Some(message) = next.take() else { break };
                    match &message {
                        Message::Text(text) => hear_frame(text.as_bytes(), *is_raw, &mut each),
                        Message::Binary(bytes) => hear_frame(bytes, true, &mut each),
                        _ => {}
                    }
                    // Frames already read: no wait, no clock read of their own.
                    match stream.next().now_or_never() {
                        None => {}
                        Some(Some(Ok(message))) if !message.is_close() => {
                            extra += message.len();
                            next = Some(message);
                        }
                        Some(_) => *is_closed = true,
                    }
                }
                *pending = next;
                extra
            }
        }
    }
}

/// One frame's lines: raw text split at newlines, or one sockit event.
fn hear_frame(payload: &[u8], is_raw: bool, each: &mut impl FnMut(Heard<'_>)) {
    if is_raw {
        for line in payload.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                each(Heard::Line(line));
            }
        }
        return;
    }
    // The usual case, read in place: the kind and the text, neither with an escape.
    if let (Some(kind), Some(text)) = (plain_field(payload, KIND), plain_field(payload, TEXT)) {
        hear_event(kind, text, each);
        return;
    }
    #[derive(serde::Deserialize)]
    struct Event {
        kind: String,
        #[serde(default)]
        text: String,
    }
    if let Ok(event) = serde_json::from_slice::<Event>(payload) {
        hear_event(event.kind.as_bytes(), event.text.as_bytes(), each);
    }
}

fn hear_event(kind: &[u8], text: &[u8], each: &mut impl FnMut(Heard<'_>)) {
    match kind {
        b"message" => each(Heard::Line(text)),
        b"notice" | b"error" => {
            if let Ok(text) = std::str::from_utf8(text) {
                each(Heard::Notice(text));
            }
        }
        _ => {}
    }
}

const KIND: &[u8] = br#""kind":""#;
const TEXT: &[u8] = br#""text":""#;

/// The value of string field `key` (given as `"name":"`) when it holds no escape. Inside a
/// JSON string every `"` is escaped, so the first unescaped `"name":"` is the field.
fn plain_field<'a>(json: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = memchr::memmem::find(json, key)? + key.len();
    let len = memchr::memchr2(b'"', b'\\', &json[start..])?;
    let value = &json[start..start + len];
    (json[start + len] == b'"').then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(payload: &str, is_raw: bool) -> Vec<String> {
        let mut out = Vec::new();
        hear_frame(payload.as_bytes(), is_raw, &mut |h| {
            out.push(match h {
                Heard::Line(line) => String::from_utf8_lossy(line).into_owned(),
                Heard::Notice(text) => format!("* {text}"),
            })
        });
        out
    }

    #[test]
    fn sockit_events_give_their_text() {
        let message = r#"{"id":"7","kind":"message","nick":"guest-1","room":"lobby","text":"~slxx~sb1~","time":"2026-01-01T00:00:00.000Z"}"#;
        assert_eq!(heard(message, false), ["~slxx~sb1~"]);
        let escaped = r#"{"kind":"message","nick":"a","text":"say \"hi\"\\"}"#;
        assert_eq!(heard(escaped, false), [r#"say "hi"\"#], "the slow way");
        let notice = r#"{"kind":"notice","text":"slow down: more than 5 lines"}"#;
        assert_eq!(heard(notice, false), ["* slow down: more than 5 lines"]);
        assert!(heard(r#"{"kind":"welcome","nick":"a","room":"lobby"}"#, false).is_empty());
        assert!(heard(r#"{"kind":"members","nicks":["a"],"room":"lobby"}"#, false).is_empty());
        assert!(heard("not json", false).is_empty());
    }

    #[test]
    fn raw_frames_are_lines() {
        assert_eq!(heard("one", true), ["one"]);
        assert_eq!(heard("one\r\ntwo\n", true), ["one", "two"]);
    }

    #[test]
    fn say_requests_escape_only_when_needed() {
        let mut out = BytesMut::new();
        push_say(&mut out, b"plain ~sl~");
        assert_eq!(&out[..], br#"{"kind":"say","text":"plain ~sl~"}"#);
        let mut out = BytesMut::new();
        push_say(&mut out, br#"a "quote" \ and	tab"#);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["text"], "a \"quote\" \\ and\ttab");
    }
}
