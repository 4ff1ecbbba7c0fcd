//! What the server tells a client, and how each transport frames it: text lines for TCP and
//! TLS clients (`<nick> text`, `* notice`), one JSON object per WebSocket text frame for
//! browsers. Pure: the hub renders an [`Event`] once per framing and queues the bytes; sessions
//! own the sockets.
//!
//! Server-to-client WebSocket frames are never masked (RFC 6455 §5.1), so one encoded frame is
//! the same bytes for every browser member: a room line is encoded once and shared.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::json;

use crate::net::ws_frame::{CLOSE, PING, TEXT, push_frame};

/// How a client's connection frames what it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Text lines ending in `\n` (nc, telnet, `sockit chat join`).
    Lines,
    /// WebSocket text frames holding one JSON object each (the browser page).
    WebSocket,
}

/// The kind of a room line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// `<nick> text`.
    Message,
    /// `* nick action` (`/me`).
    Action,
}

/// A room line's id, increasing within its room: a number counted by this server (kept
/// across restarts with `--db`), or with `--cluster` `MS-N` from the Redis stream entry id
/// `MS-SEQ` and the line's place in the entry, so a page can resume on any node. Browsers see
/// it as an opaque string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct LineId {
    /// Milliseconds of a stream entry id; 0 for a number counted here.
    ms: u64,
    seq: u64,
}

impl LineId {
    /// The `n`th line counted by this server.
    pub(crate) const fn local(n: u64) -> Self {
        Self { ms: 0, seq: n }
    }

    /// A line of a Redis stream entry (see `chat::cluster::entry`).
    pub(crate) const fn stream(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// Whether this id was counted by this server (not taken from a stream).
    pub(crate) fn is_local(self) -> bool {
        self.ms == 0
    }

    /// The number of a local id (what `--db` stores).
    pub(crate) fn number(self) -> u64 {
        self.seq
    }
}

impl std::fmt::Display for LineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ms == 0 {
            write!(f, "{}", self.seq)
        } else {
            write!(f, "{}-{}", self.ms, self.seq)
        }
    }
}

impl std::str::FromStr for LineId {
    type Err = std::num::ParseIntError;

    /// `N` (a local id) or `MS-SEQ` (a stream entry id).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('-') {
            Some((ms, seq)) => Ok(Self::stream(ms.parse()?, seq.parse()?)),
            None => Ok(Self::local(s.parse()?)),
        }
    }
}

/// One line said in a room, with what every framing needs to show it.
#[derive(Debug, Clone)]
pub(crate) struct RoomLine {
    /// Increasing within its room.
    pub(crate) id: LineId,
    /// When the server took it, in milliseconds since the Unix epoch.
    pub(crate) at_ms: i64,
    pub(crate) kind: LineKind,
    pub(crate) nick: Arc<str>,
    /// The line as line clients get it, `\n` included: `<nick> text\n` or `* nick text\n`.
    pub(crate) line: Bytes,
}

impl RoomLine {
    /// The line as line clients get it, from `nick` and `text`.
    pub(crate) fn format(kind: LineKind, nick: &str, text: &str) -> Bytes {
        let mut line = BytesMut::with_capacity(nick.len() + text.len() + 4);
        match kind {
            LineKind::Message => {
                line.put_u8(b'<');
                line.put_slice(nick.as_bytes());
                line.put_slice(b"> ");
            }
            LineKind::Action => {
                line.put_slice(b"* ");
                line.put_slice(nick.as_bytes());
                line.put_u8(b' ');
            }
        }
        line.put_slice(text.as_bytes());
        line.put_u8(b'\n');
        line.freeze()
    }

    /// Reads back a line stored in its line form (history written by older versions).
    pub(crate) fn parse(id: LineId, at_ms: i64, line: Bytes) -> Option<RoomLine> {
        let text = std::str::from_utf8(&line).ok()?;
        let (kind, nick) = if let Some(rest) = text.strip_prefix('<') {
            (LineKind::Message, rest.split_once("> ")?.0)
        } else if let Some(rest) = text.strip_prefix("* ") {
            (LineKind::Action, rest.split_once(' ')?.0)
        } else {
            return None;
        };
        if !line.ends_with(b"\n") {
            return None;
        }
        let nick = Arc::from(nick);
        Some(RoomLine {
            id,
            at_ms,
            kind,
            nick,
            line,
        })
    }

    /// The text said, without nick and newline.
    pub(crate) fn text(&self) -> &str {
        // Both forms put three bytes around the nick: `<` `> ` or `* ` ` `.
        let start = (self.nick.len() + 3).min(self.line.len());
        let end = self.line.len().saturating_sub(1).max(start);
        std::str::from_utf8(&self.line[start..end]).unwrap_or("")
    }
}

/// Something the server tells one client or a room.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event<'a> {
    /// Right after entering.
    Welcome { nick: &'a str, room: &'a str },
    /// A system line, about `room` when there is one.
    Notice {
        text: &'a str,
        room: Option<&'a str>,
    },
    /// A refused command; `code` names the cause for programs (`password`).
    Error {
        text: &'a str,
        code: Option<&'a str>,
    },
    /// A private message, to its recipient (`is_echo: false`) or back to its sender.
    Private {
        from: &'a str,
        to: &'a str,
        text: &'a str,
        at_ms: i64,
        is_echo: bool,
    },
    /// Who is in a room (browser members only: line clients ask `/who`).
    Members { room: &'a str, nicks: &'a [&'a str] },
    /// Rooms with members, and how many.
    Rooms { rooms: &'a [(&'a str, usize)] },
    /// One's own nick changed (browser members only: line clients see the room's notice).
    Nick { nick: &'a str },
    /// A room line.
    Line { room: &'a str, line: &'a RoomLine },
}

impl Framing {
    /// `event` as this framing sends it; `None` when it sends nothing for it.
    pub(crate) fn render(self, event: &Event<'_>) -> Option<Bytes> {
        match self {
            Framing::Lines => render_line(event),
            Framing::WebSocket => {
                let mut out = BytesMut::new();
                push_json_frame(&mut out, &to_json(event));
                Some(out.freeze())
            }
        }
    }

    /// Room lines as this framing sends them, as one buffer.
    pub(crate) fn render_lines(self, room: &str, lines: &[RoomLine]) -> Bytes {
        let mut out = BytesMut::new();
        for line in lines {
            match self {
                Framing::Lines => out.extend_from_slice(&line.line),
                Framing::WebSocket => {
                    push_json_frame(&mut out, &to_json(&Event::Line { room, line }))
                }
            }
        }
        out.freeze()
    }
}

fn render_line(event: &Event<'_>) -> Option<Bytes> {
    let text = match event {
        Event::Welcome { nick, .. } => format!(
            "* welcome to sockit chat, {nick}; /nick NAME picks a name, /help lists commands\n"
        ),
        Event::Notice { text, .. } | Event::Error { text, .. } => format!("* {text}\n"),
        Event::Private {
            from,
            text,
            is_echo: false,
            ..
        } => format!("*{from}* {text}\n"),
        Event::Private {
            to,
            text,
            is_echo: true,
            ..
        } => format!("-> *{to}* {text}\n"),
        Event::Rooms { rooms } => {
            let list: Vec<String> = rooms.iter().map(|(n, c)| format!("#{n} ({c})")).collect();
            format!("* rooms: {}\n", list.join(", "))
        }
        Event::Line { line, .. } => return Some(line.line.clone()),
        Event::Members { .. } | Event::Nick { .. } => return None,
    };
    Some(Bytes::from(text))
}

/// The JSON object of `event` (the format is in README.md, "Chat in the browser").
pub(crate) fn to_json(event: &Event<'_>) -> serde_json::Value {
    match *event {
        Event::Welcome { nick, room } => json!({"kind": "welcome", "nick": nick, "room": room}),
        Event::Notice { text, room } => {
            let mut value = json!({"kind": "notice", "text": text});
            if let Some(room) = room {
                value["room"] = room.into();
            }
            value["time"] = rfc3339_millis(now_ms()).into();
            value
        }
        Event::Error { text, code } => match code {
            Some(code) => json!({"kind": "error", "code": code, "text": text}),
            None => json!({"kind": "error", "text": text}),
        },
        Event::Private {
            from,
            to,
            text,
            at_ms,
            ..
        } => json!({"kind": "private", "from": from, "to": to, "text": text,
            "time": rfc3339_millis(at_ms)}),
        Event::Members { room, nicks } => json!({"kind": "members", "room": room, "nicks": nicks}),
        Event::Rooms { rooms } => {
            let rooms: Vec<_> = rooms
                .iter()
                .map(|(name, members)| json!({"name": name, "members": members}))
                .collect();
            json!({"kind": "rooms", "rooms": rooms})
        }
        Event::Nick { nick } => json!({"kind": "nick", "nick": nick}),
        Event::Line { room, line } => json!({
            "kind": match line.kind { LineKind::Message => "message", LineKind::Action => "action" },
            "room": room,
            "id": line.id.to_string(),
            "time": rfc3339_millis(line.at_ms),
            "nick": &*line.nick,
            "text": line.text(),
        }),
    }
}

/// Appends `value` as one unmasked, final WebSocket text frame.
fn push_json_frame(out: &mut BytesMut, value: &serde_json::Value) {
    let payload = serde_json::to_vec(value).expect("a JSON value always serialises");
    out.reserve(payload.len() + 10);
    push_frame(out, TEXT, &payload, None);
}

/// A close frame with `code` and a short `reason` (cut to fit a control frame).
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    let mut out = BytesMut::new();
    push_frame(&mut out, CLOSE, &payload, None);
    out.freeze()
}

/// A ping frame (keep-alive).
pub(crate) fn ping_frame() -> Bytes {
    Bytes::from_static(&[0x80 | PING, 0])
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `ms` since the Unix epoch as RFC 3339 UTC with milliseconds: `2026-11-28T04:05:06.123Z`.
pub(crate) fn rfc3339_millis(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: LineKind, nick: &str, text: &str) -> RoomLine {
        RoomLine {
            id: LineId::local(42),
            at_ms: 1_795_838_706_123,
            kind,
            nick: Arc::from(nick),
            line: RoomLine::format(kind, nick, text),
        }
    }

    /// The JSON payload of the single frame in `frame`.
    fn payload(frame: &[u8]) -> serde_json::Value {
        assert_eq!(frame[0], 0x81, "final text frame");
        let (len, start) = match frame[1] {
            126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
            n => (usize::from(n), 2),
        };
        assert_eq!(frame.len(), start + len, "one frame, unmasked");
        serde_json::from_slice(&frame[start..]).unwrap()
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_795_838_706_123),
            "2026-11-28T04:05:06.123Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_999), "2000-02-29T00:00:00.999Z");
    }

    #[test]
    fn room_lines_render_once_per_framing() {
        let said = line(
            LineKind::Message,
            "alice",
            "<img src=x onerror=alert(1)> 你好 🎉",
        );
        assert_eq!(said.text(), "<img src=x onerror=alert(1)> 你好 🎉");
        let lines = Framing::Lines.render_lines("lobby", std::slice::from_ref(&said));
        assert_eq!(
            &lines[..],
            "<alice> <img src=x onerror=alert(1)> 你好 🎉\n".as_bytes()
        );
        let frame = Framing::WebSocket.render_lines("lobby", std::slice::from_ref(&said));
        assert_eq!(
            payload(&frame),
            json!({"kind": "message", "room": "lobby", "id": "42",
                "time": "2026-11-28T04:05:06.123Z", "nick": "alice",
                "text": "<img src=x onerror=alert(1)> 你好 🎉"})
        );
        let action = line(LineKind::Action, "bob", "waves");
        assert_eq!(&action.line[..], b"* bob waves\n");
        let frame = Framing::WebSocket.render(&Event::Line {
            room: "rust",
            line: &action,
        });
        let value = payload(&frame.unwrap());
        assert_eq!(value["kind"], "action");
        assert_eq!(value["text"], "waves");
        assert_eq!(value["room"], "rust");
    }

    #[test]
    fn stored_lines_parse_back() {
        let back = RoomLine::parse(
            LineId::local(7),
            0,
            Bytes::from_static(b"<server> hi there\n"),
        )
        .unwrap();
        assert_eq!(
            (back.kind, &*back.nick, back.text()),
            (LineKind::Message, "server", "hi there")
        );
        let back = RoomLine::parse(
            LineId::local(8),
            0,
            Bytes::from_static(b"* bob waves twice\n"),
        )
        .unwrap();
        assert_eq!(
            (back.kind, &*back.nick, back.text()),
            (LineKind::Action, "bob", "waves twice")
        );
        assert!(RoomLine::parse(LineId::local(9), 0, Bytes::from_static(b"garbage\n")).is_none());
    }

    #[test]
    fn events_as_json_and_as_lines() {
        let cases = [
            (
                Event::Welcome {
                    nick: "guest-3",
                    room: "lobby",
                },
                json!({"kind": "welcome", "nick": "guest-3", "room": "lobby"}),
                Some(
                    "* welcome to sockit chat, guest-3; /nick NAME picks a name, /help lists commands\n",
                ),
            ),
            (
                Event::Error {
                    text: "wrong password",
                    code: Some("password"),
                },
                json!({"kind": "error", "code": "password", "text": "wrong password"}),
                Some("* wrong password\n"),
            ),
            (
                Event::Members {
                    room: "lobby",
                    nicks: &["alice", "bob"],
                },
                json!({"kind": "members", "room": "lobby", "nicks": ["alice", "bob"]}),
                None,
            ),
            (
                Event::Rooms {
                    rooms: &[("lobby", 3)],
                },
                json!({"kind": "rooms", "rooms": [{"name": "lobby", "members": 3}]}),
                Some("* rooms: #lobby (3)\n"),
            ),
            (
                Event::Nick { nick: "alice" },
                json!({"kind": "nick", "nick": "alice"}),
                None,
            ),
            (
                Event::Private {
                    from: "alice",
                    to: "bob",
                    text: "hi",
                    at_ms: 0,
                    is_echo: true,
                },
                json!({"kind": "private", "from": "alice", "to": "bob", "text": "hi",
                    "time": "1970-01-01T00:00:00.000Z"}),
                Some("-> *bob* hi\n"),
            ),
        ];
        for (event, expected, as_line) in cases {
            assert_eq!(
                payload(&Framing::WebSocket.render(&event).unwrap()),
                expected
            );
            let rendered = Framing::Lines.render(&event);
            assert_eq!(rendered.as_deref(), as_line.map(str::as_bytes), "{event:?}");
        }
        let notice = payload(
            &Framing::WebSocket
                .render(&Event::Notice {
                    text: "alice joined #lobby",
                    room: None,
                })
                .unwrap(),
        );
        assert_eq!(notice["kind"], "notice");
        assert!(notice.get("room").is_none());
        assert!(notice["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn frames_use_the_right_length_encoding() {
        let long = "x".repeat(300);
        let said = line(LineKind::Message, "a", &long);
        let frame = Framing::WebSocket.render_lines("lobby", &[said]);
        assert_eq!(frame[1], 126);
        assert_eq!(payload(&frame)["text"], long);
        let close = close_frame(1008, "wrong password");
        assert_eq!(&close[..4], &[0x88, 16, 0x03, 0xf0]);
        assert_eq!(close_frame(1000, &"é".repeat(100)).len(), 2 + 2 + 122);
    }
}
