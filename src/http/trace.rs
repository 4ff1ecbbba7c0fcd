//! `--trace` for HTTP: the plain HTTP bytes of a connection as hexdump records, with the
//! values of secret headers (`Authorization`, `Cookie`, `Proxy-Authorization`, `Set-Cookie`)
//! replaced by `*` of the same length, so offsets still match the wire.
//!
//! HTTP/2 is shown frame by frame: one record per frame, labelled with its type, stream,
//! flags and length, holding the frame's exact bytes. Header blocks are HPACK-compressed,
//! and a compressed block cannot be masked field by field, so their payload is shown as
//! `*` unless secrets are to be shown (`--trace-secrets`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::trace::{Direction, TraceSink};

const SECRET_HEADERS: [&[u8]; 4] = [
    b"authorization",
    b"cookie",
    b"proxy-authorization",
    b"set-cookie",
];

/// Longest header name worth remembering while looking for a secret one.
const MAX_NAME: usize = 24;

/// Masks secret header values in a byte stream that arrives in arbitrary pieces.
#[derive(Debug, Default, Clone)]
pub(crate) struct Redactor {
    name: Vec<u8>,
    in_name: bool,
    masking: bool,
}

impl Redactor {
    pub(crate) fn new() -> Self {
        Self {
            in_name: true,
            ..Self::default()
        }
    }

    /// Returns `bytes` with the values of secret headers replaced by `*`.
    pub(crate) fn redact(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                self.masking = false;
                self.in_name = true;
                self.name.clear();
                out.push(b);
                continue;
            }
            if self.masking {
                out.push(if b == b' ' || b == b'\t' { b } else { b'*' });
                continue;
            }
            if self.in_name {
                if b == b':' {
                    self.in_name = false;
                    self.masking = SECRET_HEADERS
                        .iter()
                        .any(|s| self.name.eq_ignore_ascii_case(s));
                } else if self.name.len() < MAX_NAME {
                    self.name.push(b);
                } else {
                    self.in_name = false;
                }
            }
            out.push(b);
        }
        out
    }
}

/// The client's connection preface, which opens every HTTP/2 connection.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Cuts one direction of an HTTP/2 connection into frames, which arrive in any pieces.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    /// Bytes of the connection preface still to come before the first frame.
    preface: usize,
    buf: Vec<u8>,
    /// Offset in the stream of `buf[0]`.
    offset: u64,
    show_secrets: bool,
}

/// One whole frame (or the preface) for the trace.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// `HEADERS stream 1 flags 0x05 (END_STREAM|END_HEADERS) length 42`.
    pub(crate) description: String,
    /// Where the frame starts in the stream.
    pub(crate) offset: u64,
    /// Its bytes as on the wire (a header block's payload as `*` when masked).
    pub(crate) bytes: Vec<u8>,
}

impl Frames {
    /// The client's side (`sent`: it starts with the preface) or the server's.
    pub(crate) fn new(sent: bool, show_secrets: bool) -> Self {
        Self {
            preface: if sent { PREFACE.len() } else { 0 },
            show_secrets,
            ..Self::default()
        }
    }

    /// Takes the next bytes; returns every frame they complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        loop {
            let (len, description) = if self.preface > 0 {
                (self.preface, "connection preface".to_owned())
            } else if self.buf.len() >= 9 {
                let length = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]);
                let stream =
                    u32::from_be_bytes([self.buf[5] & 0x7f, self.buf[6], self.buf[7], self.buf[8]]);
                let description = describe(self.buf[3], self.buf[4], stream, length);
                (9 + length as usize, description)
            } else {
                break;
            };
            if self.buf.len() < len {
                break;
            }
            let mut frame: Vec<u8> = self.buf.drain(..len).collect();
            if self.preface == 0 && !self.show_secrets && matches!(frame[3], 0x1 | 0x5 | 0x9) {
                frame[9..].fill(b'*');
            }
            self.preface = 0;
            frames.push(Frame {
                description,
                offset: self.offset,
                bytes: frame,
            });
            self.offset += len as u64;
        }
        frames
    }
}

impl Frames {
    /// Bytes of a frame the connection ended in the middle of, if any.
    pub(crate) fn rest(&mut self) -> Option<Frame> {
        (!self.buf.is_empty()).then(|| Frame {
            description: "incomplete frame".to_owned(),
            offset: self.offset,
            bytes: std::mem::take(&mut self.buf),
        })
    }
}

/// `TYPE stream N flags 0xFF (NAMES) length L` for a frame header.
fn describe(kind: u8, flags: u8, stream: u32, length: u32) -> String {
    let (name, flag_names): (&str, &[(u8, &str)]) = match kind {
        0x0 => ("DATA", &[(0x1, "END_STREAM"), (0x8, "PADDED")]),
        0x1 => (
            "HEADERS",
            &[
                (0x1, "END_STREAM"),
                (0x4, "END_HEADERS"),
                (0x8, "PADDED"),
                (0x20, "PRIORITY"),
            ],
        ),
        0x2 => ("PRIORITY", &[]),
        0x3 => ("RST_STREAM", &[]),
        0x4 => ("SETTINGS", &[(0x1, "ACK")]),
        0x5 => ("PUSH_PROMISE", &[(0x4, "END_HEADERS"), (0x8, "PADDED")]),
        0x6 => ("PING", &[(0x1, "ACK")]),
        0x7 => ("GOAWAY", &[]),
        0x8 => ("WINDOW_UPDATE", &[]),
        0x9 => ("CONTINUATION", &[(0x4, "END_HEADERS")]),
        _ => ("UNKNOWN", &[]),
    };
    let set: Vec<&str> = flag_names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    let shown_flags = if set.is_empty() {
        format!("0x{flags:02x}")
    } else {
        format!("0x{flags:02x} ({})", set.join("|"))
    };
    let name = if name == "UNKNOWN" {
        format!("type 0x{kind:02x}")
    } else {
        name.to_owned()
    };
    format!("{name} stream {stream} flags {shown_flags} length {length}")
}

/// How one connection's bytes are shown: HTTP/1 text with secrets masked, HTTP/2 frames, or
/// as they are.
enum View {
    Plain,
    Masked(Redactor, Redactor),
    Framed(Box<(Frames, Frames)>),
}

/// A stream that records its plain bytes to a sink, masking secrets unless told not to.
pub(crate) struct HttpTraced<S> {
    inner: S,
    label: String,
    sink: TraceSink,
    sent: u64,
    received: u64,
    view: View,
}

impl<S> HttpTraced<S> {
    /// Traces `inner` as HTTP/1 text, or with `http2` as HTTP/2 frames.
    pub(crate) fn new(
        inner: S,
        label: String,
        sink: TraceSink,
        show_secrets: bool,
        http2: bool,
    ) -> Self {
        let view = if http2 {
            View::Framed(Box::new((
                Frames::new(true, show_secrets),
                Frames::new(false, show_secrets),
            )))
        } else if show_secrets {
            View::Plain
        } else {
            View::Masked(Redactor::new(), Redactor::new())
        };
        Self {
            inner,
            label,
            sink,
            sent: 0,
            received: 0,
            view,
        }
    }

    fn record(&mut self, direction: Direction, bytes: &[u8]) {
        let offset = match direction {
            Direction::Sent => self.sent,
            Direction::Received => self.received,
        };
        match &mut self.view {
            View::Plain => self.sink.record(&self.label, direction, offset, bytes),
            View::Masked(sent, received) => {
                let redactor = match direction {
                    Direction::Sent => sent,
                    Direction::Received => received,
                };
                let shown = redactor.redact(bytes);
                self.sink.record(&self.label, direction, offset, &shown);
            }
            View::Framed(frames) => {
                let frames = match direction {
                    Direction::Sent => &mut frames.0,
                    Direction::Received => &mut frames.1,
                };
                for frame in frames.push(bytes) {
                    let label = format!("{} h2 {}", self.label, frame.description);
                    self.sink
                        .record(&label, direction, frame.offset, &frame.bytes);
                }
            }
        }
        match direction {
            Direction::Sent => self.sent += bytes.len() as u64,
            Direction::Received => self.received += bytes.len() as u64,
        }
    }
}

impl<S> Drop for HttpTraced<S> {
    fn drop(&mut self) {
        // A connection that ended inside a frame still shows every byte that moved.
        if let View::Framed(frames) = &mut self.view {
            let (sent, received) = &mut **frames;
            for (direction, frames) in [(Direction::Sent, sent), (Direction::Received, received)] {
                if let Some(frame) = frames.rest() {
                    let label = format!("{} h2 {}", self.label, frame.description);
                    self.sink
                        .record(&label, direction, frame.offset, &frame.bytes);
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HttpTraced<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                this.record(Direction::Received, new);
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HttpTraced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            this.record(Direction::Sent, &buf[..*n]);
        }
        poll
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

    #[test]
    fn http2_frames_are_cut_whole_from_any_pieces_and_labelled() {
        let mut wire = PREFACE.to_vec();
        wire.extend([0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS, empty
        wire.extend([0, 0, 3, 0x1, 0x5, 0, 0, 0, 1, 0x82, 0x86, 0x84]); // HEADERS
        wire.extend([0, 0, 2, 0x0, 0x1, 0, 0, 0, 1, b'h', b'i']); // DATA
        let mut frames = Frames::new(true, false);
        let mut got = Vec::new();
        for piece in wire.chunks(5) {
            got.extend(frames.push(piece));
        }
        let shown: Vec<(&str, u64, usize)> = got
            .iter()
            .map(|f| (f.description.as_str(), f.offset, f.bytes.len()))
            .collect();
        assert_eq!(
            shown,
            [
                ("connection preface", 0, 24),
                ("SETTINGS stream 0 flags 0x00 length 0", 24, 9),
                (
                    "HEADERS stream 1 flags 0x05 (END_STREAM|END_HEADERS) length 3",
                    33,
                    12
                ),
                ("DATA stream 1 flags 0x01 (END_STREAM) length 2", 45, 11),
            ]
        );
        assert_eq!(&got[2].bytes[..9], &wire[33..42]);
        assert_eq!(&got[2].bytes[9..], b"***");
        assert_eq!(got[3].bytes, &wire[45..]);
        let mut shown = Frames::new(true, true);
        let all: Vec<u8> = shown
            .push(&wire)
            .into_iter()
            .flat_map(|f| f.bytes)
            .collect();
        assert_eq!(all, wire);
    }

    #[test]
    fn secret_values_are_masked_even_when_split_across_writes() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dTpw\r\ncookie: a=b\r\nX-Cookie: keep\r\n\r\n";
        let whole = Redactor::new().redact(head);
        let mut r = Redactor::new();
        let mut pieces = Vec::new();
        for chunk in head.chunks(3) {
            pieces.extend(r.redact(chunk));
        }
        assert_eq!(whole, pieces);
        let text = String::from_utf8(whole).unwrap();
        assert!(text.contains("Authorization: ***** ****\r\n"), "{text}");
        assert!(text.contains("cookie: ***\r\n"), "{text}");
        assert!(text.contains("X-Cookie: keep\r\n"), "{text}");
        assert_eq!(text.len(), head.len());
    }
}
