//! How a chat load client's lines go over the wire: text lines over TCP, or WebSocket
//! frames — sockit's own JSON events (`say` out, `message` in) or a generic broadcast
//! server's raw text (every text frame is a line). The accounting (`chat`) sees lines only.

use std::io;
use std::sync::Arc;

use std::time::Duration;

use base64::Engine as _;
use bytes::{Buf as _, BytesMut};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::net::dial::{DialOptions, Dialed, dial};
use crate::net::ws_frame::{BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, push_frame};
use crate::net::{HostPort, NetError};

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

/// Bytes a client asks for per read: enough for a burst of lines or frames.
const READ_BYTES: usize = 64 * 1024;

/// The longest handshake answer a WebSocket client waits for.
const MAX_HANDSHAKE_BYTES: usize = 16 * 1024;

/// The longest message a WebSocket client assembles from fragments.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// The sending half of a client's stream: an owned TCP half (no lock shared with the
/// reader) or a half of any other transport.
type HalfWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// The receiving half of a client's stream.
type HalfReader = Box<dyn AsyncRead + Send + Unpin>;

/// The sending half of one client.
pub(super) enum Writer {
    Lines(HalfWriter),
    Ws {
        /// Shared with the reader, which answers pings.
        half: Arc<Mutex<HalfWriter>>,
        is_raw: bool,
        masks: Masks,
        /// The frames of one batch, written at once.
        frames: Vec<u8>,
    },
}

/// The receiving half of one client. Over a WebSocket the frames are read in place: a
/// server's frames are unmasked (RFC 6455 §5.1), so a line is a slice of the read buffer,
/// as over TCP, and the generator's cost per delivery stays well below the server's.
pub(super) enum Reader {
    Lines {
        half: HalfReader,
        buf: BytesMut,
    },
    Ws {
        half: HalfReader,
        buf: BytesMut,
        is_raw: bool,
        /// The message being put together from fragments.
        fragments: Vec<u8>,
        /// For the answers to pings.
        writer: Arc<Mutex<HalfWriter>>,
        /// Pings heard and not yet answered.
        pings: Vec<Vec<u8>>,
        masks: Masks,
        is_closed: bool,
    },
}

/// What a client heard: a line (chat or not, as the server framed it), whole lines as they
/// came over TCP, or a server notice.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Heard<'a> {
    Line(&'a [u8]),
    /// Whole lines, each ending in `\n` (and maybe `\r` before it): the taker splits them,
    /// and may know where the next one ends without a search.
    Lines(&'a [u8]),
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
    let dialed = dial_patiently(addr, route).await.map_err(OpenError::Dial)?;
    let (mut half, mut writer): (HalfReader, HalfWriter) = match dialed {
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
    let (path, is_raw) = match transport {
        Transport::Lines => {
            let buf = BytesMut::with_capacity(READ_BYTES);
            return Ok((Writer::Lines(writer), Reader::Lines { half, buf }));
        }
        Transport::ChatWebSocket { path } => (path, false),
        Transport::RawWebSocket { path } => (path, true),
    };
    let mut masks = Masks::new();
    let buf = handshake(&mut half, &mut writer, addr, path, &mut masks)
        .await
        .map_err(OpenError::WebSocket)?;
    let writer = Arc::new(Mutex::new(writer));
    Ok((
        Writer::Ws {
            half: writer.clone(),
            is_raw,
            masks: masks.fork(),
            frames: Vec::new(),
        },
        Reader::Ws {
            half,
            buf,
            is_raw,
            fragments: Vec::new(),
            writer,
            pings: Vec::new(),
            masks,
            is_closed: false,
        },
    ))
}

/// Without an answer to a direct TCP connect after this long, another attempt starts beside
/// it. A server whose accept queue is full drops the SYN, and the kernel sends it again only
/// after 1 s, then 3 s, 7 s…: a small listen backlog (ncat's) fills while the server is busy
/// (ncat tells every client about every join), and the clients would trickle in a few a
/// second. A server that accepts at once answers in microseconds and sees one attempt.
pub(super) const CONNECT_RETRY: Duration = Duration::from_millis(200);

/// Attempts alive at once for one client: with a slow route each still gets its time.
const MAX_CONNECT_ATTEMPTS: usize = 8;

/// [`dial`], with a fresh attempt every [`CONNECT_RETRY`] while none has connected (the
/// first one to connect wins, the others are dropped unanswered). Through a proxy or a Unix
/// socket there is one attempt: a proxy's own connect waits for the server anyway, and a
/// Unix connect fails at once when the backlog is full.
async fn dial_patiently(addr: &HostPort, route: &DialOptions) -> Result<Dialed, NetError> {
    if route.proxy.is_some() || route.unix_socket.is_some() {
        return Ok(dial(addr, route).await?.0);
    }
    let mut attempts = FuturesUnordered::new();
    attempts.push(dial(addr, route));
    loop {
        let may_add = attempts.len() < MAX_CONNECT_ATTEMPTS;
        tokio::select! {
            // Never empty, so never waiting forever.
            done = attempts.select_next_some() => match done {
                Ok((dialed, _)) => return Ok(dialed),
                // A refusal or a failure is an answer: the server is not there.
                Err(error) => return Err(error),
            },
            () = tokio::time::sleep(CONNECT_RETRY), if may_add => attempts.push(dial(addr, route)),
        }
    }
}

/// The opening handshake (RFC 6455 §4.1); returns what the server sent after its answer.
async fn handshake(
    reader: &mut HalfReader,
    writer: &mut HalfWriter,
    addr: &HostPort,
    path: &str,
    masks: &mut Masks,
) -> io::Result<BytesMut> {
    let fail = |why: String| {
        io::Error::other(format!(
            "WebSocket handshake at ws://{addr}{path} failed: {why}"
        ))
    };
    let key = base64::engine::general_purpose::STANDARD.encode(masks.key_bytes());
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    writer.write_all(request.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(READ_BYTES);
    let head_len = loop {
        if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HANDSHAKE_BYTES {
            return Err(fail("the answer's head is too long".into()));
        }
        if reader.read_buf(&mut buf).await? == 0 {
            return Err(fail("the server closed the connection".into()));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("101") {
        return Err(fail(format!("the server answered {status:?}")));
    }
    let accept = derive_accept_key(key.as_bytes());
    let is_accepted = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == accept
        })
    });
    if !is_accepted {
        return Err(fail("wrong or missing Sec-WebSocket-Accept".into()));
    }
    let _ = buf.split_to(head_len);
    Ok(buf)
}

/// Masking keys for a client's frames (RFC 6455 §5.3): a xorshift generator, seeded per
/// connection. A load generator needs keys a server cannot predict from its own side, not
/// secrets.
pub(super) struct Masks(u64);

impl Masks {
    fn new() -> Self {
        static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self((nanos ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fork(&mut self) -> Self {
        Self(self.next() | 1)
    }

    fn key_bytes(&mut self) -> [u8; 16] {
        let mut key = [0; 16];
        key[..8].copy_from_slice(&self.next().to_le_bytes());
        key[8..].copy_from_slice(&self.next().to_le_bytes());
        key
    }

    fn mask(&mut self) -> [u8; 4] {
        (self.next() as u32).to_le_bytes()
    }
}

/// Appends one masked, final client frame.
fn push_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], masks: &mut Masks) {
    push_frame(out, opcode, payload, Some(masks.mask()));
}

/// One frame at the start of `buf`: (final, opcode, payload range, frame length), or `None`
/// while it has not all arrived. Errors on a masked frame (a server never masks).
fn parse_frame(buf: &[u8]) -> io::Result<Option<(bool, u8, std::ops::Range<usize>)>> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b1 & 0x80 != 0 {
        return Err(io::Error::other("the server sent a masked frame"));
    }
    let (len, header) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().unwrap_or_default()), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= MAX_MESSAGE_BYTES)
        .ok_or_else(|| io::Error::other("the server sent a frame too long"))?;
    if buf.len() < header + len {
        return Ok(None);
    }
    Ok(Some((b0 & 0x80 != 0, b0 & 0x0f, header..header + len)))
}

impl Writer {
    /// Sends `text` as it is: a line (a newline is added) or the text of one frame.
    pub(super) async fn greet(&mut self, text: &str) -> bool {
        match self {
            Writer::Lines(half) => half.write_all(format!("{text}\n").as_bytes()).await.is_ok(),
            Writer::Ws {
                half,
                masks,
                frames,
                ..
            } => {
                frames.clear();
                push_client_frame(frames, TEXT, text.as_bytes(), masks);
                half.lock().await.write_all(frames).await.is_ok()
            }
        }
    }

    /// Sends `lines` (each ending in `\n`): in one write over TCP, as one frame each over a
    /// WebSocket (written together). `false` when the connection failed.
    pub(super) async fn send_lines(&mut self, lines: &[u8]) -> bool {
        let (half, is_raw, masks, frames) = match self {
            Writer::Lines(half) => return half.write_all(lines).await.is_ok(),
            Writer::Ws {
                half,
                is_raw,
                masks,
                frames,
            } => (half, *is_raw, masks, frames),
        };
        frames.clear();
        let mut say = Vec::new();
        for line in lines.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            if is_raw {
                push_client_frame(frames, TEXT, line, masks);
            } else {
                say.clear();
                push_say(&mut say, line);
                push_client_frame(frames, TEXT, &say, masks);
            }
        }
        half.lock().await.write_all(frames).await.is_ok()
    }
}

/// Appends `{"kind":"say","text":LINE}`.
fn push_say(out: &mut Vec<u8>, line: &[u8]) {
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
        let (half, buf) = match self {
            Reader::Lines { half, buf } => (half, buf),
            Reader::Ws {
                half,
                buf,
                writer,
                pings,
                masks,
                is_closed,
                ..
            } => {
                if *is_closed {
                    return None;
                }
                if !pings.is_empty() {
                    let mut pongs = Vec::new();
                    for ping in pings.drain(..) {
                        push_client_frame(&mut pongs, PONG, &ping, masks);
                    }
                    if writer.lock().await.write_all(&pongs).await.is_err() {
                        *is_closed = true;
                        return None;
                    }
                }
                (half, buf)
            }
        };
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(READ_BYTES);
        }
        match half.read_buf(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        }
    }

    /// Hands what arrived to `each`: whole lines only (a partial line waits for its end), at
    /// once over TCP, or every whole WebSocket message. Returns bytes that arrived beyond
    /// those `wait` reported (none: everything is read there).
    pub(super) fn drain(&mut self, mut each: impl FnMut(Heard<'_>)) -> usize {
        match self {
            Reader::Lines { buf, .. } => {
                if let Some(last) = memchr::memrchr(b'\n', buf) {
                    each(Heard::Lines(&buf[..=last]));
                    buf.advance(last + 1);
                }
            }
            Reader::Ws {
                buf,
                is_raw,
                fragments,
                pings,
                is_closed,
                ..
            } => {
                let mut start = 0;
                loop {
                    let (fin, opcode, payload) = match parse_frame(&buf[start..]) {
                        Ok(Some(frame)) => frame,
                        Ok(None) => break,
                        Err(_) => {
                            *is_closed = true;
                            break;
                        }
                    };
                    let frame_end = start + payload.end;
                    let payload = &buf[start + payload.start..frame_end];
                    start = frame_end;
                    match opcode {
                        TEXT | BINARY if fin && fragments.is_empty() => {
                            hear_frame(payload, *is_raw || opcode == BINARY, &mut each);
                        }
                        TEXT | BINARY | CONTINUATION => {
                            if fragments.len() + payload.len() > MAX_MESSAGE_BYTES {
                                *is_closed = true;
                                break;
                            }
                            fragments.extend_from_slice(payload);
                            if fin {
                                hear_frame(fragments, *is_raw, &mut each);
                                fragments.clear();
                            }
                        }
                        PING => pings.push(payload.to_vec()),
                        CLOSE => {
                            *is_closed = true;
                            break;
                        }
                        _ => {} // pongs, unknown opcodes
                    }
                }
                let _ = buf.split_to(start);
            }
        }
        0
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
    if let (Some(kind), Some(text)) = (kind_field(payload), text_field(payload)) {
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

/// The key sockit's events start with.
const KIND_FIRST: &[u8] = br#"{"kind":""#;
const KIND_KEY: &[u8] = br#""kind":""#;
const TEXT_KEY: &[u8] = br#""text":""#;

/// The keys, each searched with a finder built once (building one per search cost the load
/// generator a fifth of its time).
static KIND_FIELD: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(KIND_KEY));
static TEXT_FIELD: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(TEXT_KEY));

/// The `kind` of an event without an escape: sockit writes it first, so it is read in place
/// (a search of every frame cost the load generator a tenth of its time); other servers'
/// events are searched.
fn kind_field(json: &[u8]) -> Option<&[u8]> {
    if json.starts_with(KIND_FIRST) {
        return plain_value(json, KIND_FIRST.len());
    }
    plain_value(json, KIND_FIELD.find(json)? + KIND_KEY.len())
}

/// The `text` of an event without an escape. sockit writes it last (`…,"text":"VALUE"}`), so
/// it is read back from the end; other servers' events are searched. Inside a JSON string
/// every `"` is escaped, so an unescaped `"text":"` is the field.
fn text_field(json: &[u8]) -> Option<&[u8]> {
    if let Some(body) = json.strip_suffix(b"\"}")
        && let Some(open) = memchr::memrchr(b'"', body)
        && body[..=open].ends_with(TEXT_KEY)
        && memchr::memchr(b'\\', &body[open + 1..]).is_none()
    {
        return Some(&body[open + 1..]);
    }
    plain_value(json, TEXT_FIELD.find(json)? + TEXT_KEY.len())
}

/// The string value that starts at `start`, when it holds no escape.
fn plain_value(json: &[u8], start: usize) -> Option<&[u8]> {
    let len = memchr::memchr2(b'"', b'\\', json.get(start..)?)?;
    (json[start + len] == b'"').then(|| &json[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(payload: &str, is_raw: bool) -> Vec<String> {
        let mut out = Vec::new();
        hear_frame(payload.as_bytes(), is_raw, &mut |h| {
            out.push(match h {
                Heard::Line(line) | Heard::Lines(line) => {
                    String::from_utf8_lossy(line).into_owned()
                }
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
        let in_order =
            r#"{"kind":"message","room":"lobby","id":"8","time":"t","nick":"b","text":"hi"}"#;
        assert_eq!(
            heard(in_order, false),
            ["hi"],
            "sockit's own order, read in place"
        );
        let quoting = r#"{"kind":"message","nick":"b","text":"a \"text\":\"x\" b"}"#;
        assert_eq!(heard(quoting, false), [r#"a "text":"x" b"#]);
        let notice = r#"{"kind":"notice","text":"slow down: more than 5 lines"}"#;
        assert_eq!(heard(notice, false), ["* slow down: more than 5 lines"]);
        assert!(heard(r#"{"kind":"welcome","nick":"a","room":"lobby"}"#, false).is_empty());
        assert!(heard(r#"{"kind":"members","nicks":["a"],"room":"lobby"}"#, false).is_empty());
        assert!(heard("not json", false).is_empty());
    }

    /// An unmasked server frame.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(n as u8),
            n @ 126..=0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn frames_of_every_length_encoding_parse_once_whole() {
        for len in [0, 5, 125, 126, 300, 0xffff, 70_000] {
            let payload = vec![b'x'; len];
            let frame = server_frame(true, TEXT, &payload);
            for cut in [1, frame.len() / 2, frame.len() - 1] {
                assert!(
                    parse_frame(&frame[..cut]).unwrap().is_none(),
                    "{len} cut at {cut}"
                );
            }
            let (fin, opcode, range) = parse_frame(&frame).unwrap().unwrap();
            assert!(fin);
            assert_eq!(opcode, TEXT);
            assert_eq!(range.end, frame.len(), "{len}");
            assert_eq!(&frame[range], &payload[..]);
        }
        let mut masked = server_frame(true, TEXT, b"hi");
        masked[1] |= 0x80;
        assert!(parse_frame(&masked).is_err(), "a server never masks");
    }

    #[test]
    fn client_frames_are_masked_and_unmask_to_the_text() {
        let mut masks = Masks(12345);
        for len in [3, 200, 70_000] {
            let text = vec![b'a'; len];
            let mut out = Vec::new();
            push_client_frame(&mut out, TEXT, &text, &mut masks);
            assert_eq!(out[0], 0x81);
            assert_ne!(out[1] & 0x80, 0, "masked");
            let header = match out[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            let mask = &out[header..header + 4];
            let unmasked: Vec<u8> = out[header + 4..]
                .iter()
                .zip(mask.iter().cycle())
                .map(|(b, m)| b ^ m)
                .collect();
            assert_eq!(unmasked, text);
        }
    }

    #[tokio::test]
    async fn a_reader_puts_fragments_together_and_keeps_pings_for_an_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (half, writer) = client.into_split();
        let (half, writer): (HalfReader, HalfWriter) = (Box::new(half), Box::new(writer));
        let mut bytes = Vec::new();
        bytes.extend(server_frame(false, TEXT, b"one "));
        bytes.extend(server_frame(true, PING, b"p"));
        bytes.extend(server_frame(true, CONTINUATION, b"two"));
        bytes.extend(server_frame(true, TEXT, b"three\nfour"));
        let partial = server_frame(true, TEXT, b"five");
        bytes.extend(&partial[..3]);
        let mut reader = Reader::Ws {
            half,
            buf: BytesMut::from(&bytes[..]),
            is_raw: true,
            fragments: Vec::new(),
            writer: Arc::new(Mutex::new(writer)),
            pings: Vec::new(),
            masks: Masks(7),
            is_closed: false,
        };
        let mut lines = Vec::new();
        reader.drain(|heard| {
            if let Heard::Line(line) = heard {
                lines.push(String::from_utf8_lossy(line).into_owned());
            }
        });
        assert_eq!(lines, ["one two", "three", "four"]);
        let Reader::Ws { buf, pings, .. } = &reader else {
            unreachable!()
        };
        assert_eq!(pings, &[b"p".to_vec()]);
        assert_eq!(&buf[..], &partial[..3], "a partial frame waits");
    }

    #[test]
    fn raw_frames_are_lines() {
        assert_eq!(heard("one", true), ["one"]);
        assert_eq!(heard("one\r\ntwo\n", true), ["one", "two"]);
    }

    #[test]
    fn say_requests_escape_only_when_needed() {
        let mut out = Vec::new();
        push_say(&mut out, b"plain ~sl~");
        assert_eq!(&out[..], br#"{"kind":"say","text":"plain ~sl~"}"#);
        let mut out = Vec::new();
        push_say(&mut out, br#"a "quote" \ and	tab"#);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["text"], "a \"quote\" \\ and\ttab");
    }
}
