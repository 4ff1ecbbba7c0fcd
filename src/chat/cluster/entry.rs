//! One stream entry as nodes write and read it. Every field is packed into one value
//! (field `e`), so Redis stores and every node parses two strings per line instead of
//! fourteen; replies are walked straight into [`Entry`] values, without the generic
//! per-entry field map.
//!
//! The packed value is a header line of seven decimal or one-letter tokens, then four
//! strings back to back, the last one running to the end:
//!
//! ```text
//! KIND SEQ CLIENT AT_MS NODE_LEN NICK_LEN TO_LEN\n NODE NICK TO BODY
//! ```
//!
//! KIND is `m` (message), `a` (action), `n` (notice), `p` (private message) or `c`
//! (canary). Entries written field by field (`n`, `q`, `k`, `c`, `u`, `to`, `t`, `l`) by
//! earlier versions are read too, so a room's older history still shows.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use redis::{FromRedisValue, ParsingError, Value};

use crate::chat::framing::{LineId, LineKind, RoomLine};

/// The field that holds a packed entry.
pub(super) const FIELD: &str = "e";

/// What an entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Message,
    Action,
    Notice,
    Private,
    Canary,
}

impl Kind {
    fn tag(self) -> char {
        match self {
            Kind::Message => 'm',
            Kind::Action => 'a',
            Kind::Notice => 'n',
            Kind::Private => 'p',
            Kind::Canary => 'c',
        }
    }

    fn from_tag(tag: &[u8]) -> Option<Self> {
        Some(match tag {
            b"m" => Kind::Message,
            b"a" => Kind::Action,
            b"n" => Kind::Notice,
            b"p" => Kind::Private,
            b"c" => Kind::Canary,
            _ => return None,
        })
    }
}

/// The fields of an entry to append, borrowed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fields<'a> {
    pub(super) kind: Kind,
    /// The appending node's sequence number (retries are recognised by it).
    pub(super) seq: u64,
    /// The sending client on the appending node (0: none).
    pub(super) client: u64,
    pub(super) at_ms: i64,
    /// The appending node's incarnation.
    pub(super) node: &'a str,
    pub(super) nick: &'a str,
    /// A private message's addressee.
    pub(super) to: &'a str,
    /// The line (with its newline), a notice's or private message's text.
    pub(super) body: &'a [u8],
}

impl Fields<'_> {
    /// The packed value of field [`FIELD`].
    pub(super) fn pack(&self) -> Vec<u8> {
        let mut header = String::with_capacity(48);
        // Writing into a String cannot fail.
        let _ = writeln!(
            header,
            "{} {} {} {} {} {} {}",
            self.kind.tag(),
            self.seq,
            self.client,
            self.at_ms,
            self.node.len(),
            self.nick.len(),
            self.to.len()
        );
        let mut out = Vec::with_capacity(
            header.len() + self.node.len() + self.nick.len() + self.to.len() + self.body.len(),
        );
        for part in [
            header.as_bytes(),
            self.node.as_bytes(),
            self.nick.as_bytes(),
            self.to.as_bytes(),
            self.body,
        ] {
            out.extend_from_slice(part);
        }
        out
    }
}

/// One stream entry as read back; the strings share the reply's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// The stream entry id (`MS-SEQ`).
    pub(super) id: String,
    pub(super) kind: Kind,
    pub(super) seq: u64,
    pub(super) client: u64,
    pub(super) at_ms: i64,
    node: Bytes,
    nick: Bytes,
    to: Bytes,
    body: Bytes,
}

impl Entry {
    /// The appending node's incarnation (`None` if it is not UTF-8).
    pub(super) fn node(&self) -> Option<&str> {
        std::str::from_utf8(&self.node).ok()
    }

    pub(super) fn nick(&self) -> String {
        String::from_utf8_lossy(&self.nick).into_owned()
    }

    pub(super) fn to(&self) -> String {
        String::from_utf8_lossy(&self.to).into_owned()
    }

    /// A notice's or private message's text.
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The room line this entry holds (`None` for a notice, private message or canary).
    pub(super) fn room_line(&self) -> Option<RoomLine> {
        let kind = match self.kind {
            Kind::Message => LineKind::Message,
            Kind::Action => LineKind::Action,
            _ => return None,
        };
        Some(RoomLine {
            id: line_id(&self.id),
            at_ms: self.at_ms,
            kind,
            nick: Arc::from(String::from_utf8_lossy(&self.nick)),
            line: self.body.clone(),
        })
    }

    /// An entry from its id and packed value; `None` if the value is not one.
    pub(super) fn unpack(id: String, packed: Bytes) -> Option<Entry> {
        let end = packed.iter().position(|&b| b == b'\n')?;
        let mut tokens = packed[..end].split(|&b| b == b' ');
        let kind = Kind::from_tag(tokens.next()?)?;
        let mut next = || -> Option<u64> { std::str::from_utf8(tokens.next()?).ok()?.parse().ok() };
        let (seq, client, at_ms) = (next()?, next()?, i64::try_from(next()?).ok()?);
        let lens = [next()?, next()?, next()?].map(|len| usize::try_from(len).ok());
        if next().is_some() {
            return None;
        }
        let mut at = end + 1;
        let mut take = |len: Option<usize>| -> Option<Bytes> {
            let until = at.checked_add(len?)?;
            let part = packed.get(at..until).map(|_| packed.slice(at..until))?;
            at = until;
            Some(part)
        };
        let (node, nick, to) = (take(lens[0])?, take(lens[1])?, take(lens[2])?);
        let body = packed.slice(at..);
        Some(Entry {
            id,
            kind,
            seq,
            client,
            at_ms,
            node,
            nick,
            to,
            body,
        })
    }

    /// An entry from its id and its field/value list, packed or written field by field;
    /// `None` if it has no origin (node and sequence) or kind.
    fn from_fields(id: String, fields: Vec<Value>) -> Option<Entry> {
        let mut fields = fields.into_iter();
        let (mut node, mut seq, mut kind) = (None, None, None);
        let (mut client, mut at_ms) = (0, 0);
        let (mut nick, mut to, mut body) = (Bytes::new(), Bytes::new(), Bytes::new());
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            let (Some(name), Some(value)) = (bytes(name), bytes(value)) else {
                return None;
            };
            match &name[..] {
                b"e" => return Entry::unpack(id, value),
                b"n" => node = Some(value),
                b"q" => seq = number(&value),
                b"k" => kind = Kind::from_tag(&value),
                b"c" => client = number(&value).unwrap_or(0),
                b"t" => {
                    at_ms = number(&value)
                        .and_then(|t| i64::try_from(t).ok())
                        .unwrap_or(0)
                }
                b"u" => nick = value,
                b"to" => to = value,
                b"l" => body = value,
                _ => {}
            }
        }
        Some(Entry {
            id,
            kind: kind?,
            seq: seq?,
            client,
            at_ms,
            node: node?,
            nick,
            to,
            body,
        })
    }
}

/// A stream entry id as a line id.
pub(super) fn line_id(id: &str) -> LineId {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    LineId::stream(ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn number(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A string reply's bytes, without copying them.
fn bytes(value: Value) -> Option<Bytes> {
    match value {
        Value::BulkString(b) => Some(Bytes::from(b)),
        Value::SimpleString(s) => Some(Bytes::from(s)),
        _ => None,
    }
}

fn string(value: Value) -> Result<String, ParsingError> {
    match value {
        Value::BulkString(b) => String::from_utf8(b).map_err(ParsingError::from),
        Value::SimpleString(s) => Ok(s),
        other => Err(format!("expected a string, got {other:?}").into()),
    }
}

fn array(value: Value) -> Result<Vec<Value>, ParsingError> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(format!("expected an array, got {other:?}").into()),
    }
}

/// The entries of an `XRANGE`/`XREVRANGE` reply (or one stream of an `XREAD` reply), in
/// reply order; an entry without an origin or kind is left out.
#[derive(Debug, Default)]
pub(super) struct Entries(pub(super) Vec<Entry>);

impl FromRedisValue for Entries {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut entries = Vec::new();
        for item in array(v)? {
            let mut pair = array(item)?.into_iter();
            let (Some(id), Some(fields)) = (pair.next(), pair.next()) else {
                return Err("a stream entry without its fields".into());
            };
            if let Some(entry) = Entry::from_fields(string(id)?, array(fields)?) {
                entries.push(entry);
            }
        }
        Ok(Entries(entries))
    }
}

/// An `XREAD` reply: each stream's key and new entries (empty when the read timed out).
#[derive(Debug, Default)]
pub(super) struct StreamsRead(pub(super) Vec<(String, Vec<Entry>)>);

impl FromRedisValue for StreamsRead {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let pairs: Vec<(Value, Value)> = match v {
            // RESP3 answers with a map of key → entries.
            Value::Map(pairs) => pairs,
            other => array(other)?
                .into_iter()
                .map(|stream| {
                    let mut pair = array(stream)?.into_iter();
                    match (pair.next(), pair.next()) {
                        (Some(key), Some(entries)) => Ok((key, entries)),
                        _ => Err(ParsingError::from("a stream without its entries")),
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let streams = pairs
            .into_iter()
            .map(|(key, entries)| Ok((string(key)?, Entries::from_redis_value(entries)?.0)))
            .collect::<Result<_, ParsingError>>()?;
        Ok(StreamsRead(streams))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: &[u8]) -> Fields<'_> {
        Fields {
            kind: Kind::Message,
            seq: 42,
            client: 7,
            at_ms: 1_700_000_000_123,
            node: "a/1700000000000",
            nick: "alice",
            to: "",
            body,
        }
    }

    fn bulk(b: &[u8]) -> Value {
        Value::BulkString(b.to_vec())
    }

    #[test]
    fn a_packed_entry_reads_back_as_written_whatever_its_bytes() {
        for body in [&b"hello\n"[..], b"", b"a b\nc 1 2 3\n\0\xff", b"\n\n"] {
            let packed = fields(body).pack();
            let entry = Entry::unpack("9-1".into(), Bytes::from(packed)).expect("unpacks");
            assert_eq!(
                (entry.kind, entry.seq, entry.client, entry.at_ms),
                (Kind::Message, 42, 7, 1_700_000_000_123)
            );
            assert_eq!(entry.node(), Some("a/1700000000000"));
            assert_eq!((entry.nick().as_str(), entry.to().as_str()), ("alice", ""));
            let line = entry.room_line().expect("a room line");
            assert_eq!(&line.line[..], body);
            assert_eq!(line.id.to_string(), "9-1");
        }
        let private = Fields {
            kind: Kind::Private,
            nick: "bob smith",
            to: "carol\n",
            ..fields(b"psst")
        };
        let entry = Entry::unpack("1-0".into(), Bytes::from(private.pack())).unwrap();
        assert_eq!(
            (entry.nick(), entry.to(), entry.text()),
            ("bob smith".into(), "carol\n".into(), "psst".into())
        );
        assert!(entry.room_line().is_none());
    }

    #[test]
    fn damaged_packed_values_are_refused_without_a_panic() {
        let good = fields(b"hi\n").pack();
        // Every prefix of the header and of the strings it announces is refused.
        let strings_end = good.len() - 3;
        for cut in 0..strings_end {
            assert!(
                Entry::unpack("1-0".into(), Bytes::copy_from_slice(&good[..cut])).is_none(),
                "cut at {cut}"
            );
        }
        // Every byte replaced by each of a few telling values: no panic, and what is still
        // read holds only bytes of the value.
        for at in 0..good.len() {
            for byte in [0, b' ', b'\n', b'0', b'9', b'-', b'm', 0xff] {
                let mut damaged = good.clone();
                damaged[at] = byte;
                let len = damaged.len();
                if let Some(entry) = Entry::unpack("1-0".into(), Bytes::from(damaged)) {
                    let strings = entry.node.len() + entry.nick.len() + entry.to.len();
                    assert!(strings + entry.body.len() < len, "at {at}: {entry:?}");
                }
            }
        }
        for bad in [
            &b"x 1 0 0 0 0 0\n"[..],
            b"m 1 0 0 0 0\n",
            b"m 1 0 0 0 0 0 0\n",
            b"m -1 0 0 0 0 0\n",
            b"m 1 0 0 99999999999999999999 0 0\n",
            b"m 1 0 0 18446744073709551615 1 0\nab",
            b"m 1 0 18446744073709551615 0 0 0\n",
        ] {
            assert!(
                Entry::unpack("1-0".into(), Bytes::from_static(bad)).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn an_xread_reply_is_walked_into_entries_packed_or_field_by_field() {
        let packed = bulk(&fields(b"new\n").pack());
        let old = Value::Array(
            [
                "n", "b/1", "q", "3", "k", "a", "c", "0", "u", "bob", "t", "5", "l", "waves\n",
            ]
            .map(|s| bulk(s.as_bytes()))
            .to_vec(),
        );
        let no_origin = Value::Array(vec![bulk(b"k"), bulk(b"m"), bulk(b"l"), bulk(b"x")]);
        let entries = Value::Array(vec![
            Value::Array(vec![bulk(b"1-0"), Value::Array(vec![bulk(b"e"), packed])]),
            Value::Array(vec![bulk(b"1-1"), old]),
            Value::Array(vec![bulk(b"1-2"), no_origin]),
        ]);
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"sockit:room:lobby"),
            entries,
        ])]);
        let StreamsRead(streams) = StreamsRead::from_redis_value(reply).unwrap();
        assert_eq!(streams.len(), 1);
        let (key, entries) = &streams[0];
        assert_eq!(key, "sockit:room:lobby");
        assert_eq!(entries.len(), 2, "the entry without an origin is left out");
        assert_eq!((entries[0].id.as_str(), entries[0].seq), ("1-0", 42));
        let old = &entries[1];
        assert_eq!(
            (old.kind, old.seq, old.at_ms, old.node()),
            (Kind::Action, 3, 5, Some("b/1"))
        );
        assert_eq!(&old.room_line().unwrap().line[..], b"waves\n");
        assert!(
            StreamsRead::from_redis_value(Value::Nil)
                .unwrap()
                .0
                .is_empty()
        );
        assert!(StreamsRead::from_redis_value(Value::Int(3)).is_err());
    }

    #[test]
    fn stream_ids_become_line_ids_in_order() {
        assert_eq!(line_id("1700000000000-3").to_string(), "1700000000000-3");
        assert!(line_id("1700000000000-3") < line_id("1700000000001-0"));
        assert!(line_id("9-10") > line_id("9-9"));
    }
}
