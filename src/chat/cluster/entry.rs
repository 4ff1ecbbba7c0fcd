//! Stream entries as nodes write and read them. An entry is one field, `e`, holding one or
//! more records back to back: a run of lines said in a room goes as one entry, so Redis stores
//! and serves, and every node parses, one entry per run instead of fourteen strings per line;
//! replies are walked straight into [`Entry`] values (one per record), without the generic
//! per-entry field map.
//!
//! A record is a header line of eight decimal or one-letter tokens, then four strings:
//!
//! ```text
//! KIND SEQ CLIENT AT_MS NODE_LEN NICK_LEN TO_LEN BODY_LEN\n NODE NICK TO BODY
//! ```
//!
//! KIND is `m` (message), `a` (action), `n` (notice), `p` (private message) or `c`
//! (canary). The line of record `i` of entry `MS-SEQ` has the id `MS-(SEQ × 1024 + i)`, so ids
//! follow the stream's order. Entries written field by field (`n`, `q`, `k`, `c`, `u`, `to`,
//! `t`, `l`) by earlier versions are read too, so a room's older history still shows.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use redis::{FromRedisValue, ParsingError, Value};

use crate::chat::framing::{LineId, LineKind, RoomLine};

/// The field that holds an entry's records.
pub(super) const FIELD: &str = "e";

/// Most records in one entry (line ids leave room for this many per entry).
pub(super) const MAX_RECORDS: usize = 1024;

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
    /// Appends this record to an entry's value (field [`FIELD`]).
    pub(super) fn pack_into(&self, out: &mut Vec<u8>) {
        let mut header = String::with_capacity(56);
        // Writing into a String cannot fail.
        let _ = writeln!(
            header,
            "{} {} {} {} {} {} {} {}",
            self.kind.tag(),
            self.seq,
            self.client,
            self.at_ms,
            self.node.len(),
            self.nick.len(),
            self.to.len(),
            self.body.len()
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
    }
}

/// One record of a stream entry as read back; the strings share the reply's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// The line id: the stream entry's, with the record's place in it.
    pub(super) id: LineId,
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
            id: self.id,
            at_ms: self.at_ms,
            kind,
            nick: Arc::from(String::from_utf8_lossy(&self.nick)),
            line: self.body.clone(),
        })
    }

    /// The records of entry `id`'s value, appended to `out`; `false` (and nothing appended)
    /// if the value is not a whole number of records.
    fn unpack(id: (u64, u64), packed: &Bytes, out: &mut Vec<Entry>) -> bool {
        let start = out.len();
        let mut at = 0;
        while at < packed.len() {
            let record = (out.len() - start < MAX_RECORDS)
                .then(|| Entry::unpack_one(id, out.len() - start, packed, at))
                .flatten();
            let Some((entry, next)) = record else {
                out.truncate(start);
                return false;
            };
            out.push(entry);
            at = next;
        }
        out.len() > start
    }

    /// The record at `at` of `packed`, and where the next one starts.
    fn unpack_one(
        id: (u64, u64),
        index: usize,
        packed: &Bytes,
        at: usize,
    ) -> Option<(Entry, usize)> {
        let rest = packed.get(at..)?;
        let end = at + rest.iter().position(|&b| b == b'\n')?;
        let mut tokens = packed[at..end].split(|&b| b == b' ');
        let kind = Kind::from_tag(tokens.next()?)?;
        let mut next = || -> Option<u64> { std::str::from_utf8(tokens.next()?).ok()?.parse().ok() };
        let (seq, client, at_ms) = (next()?, next()?, i64::try_from(next()?).ok()?);
        let lens = [next()?, next()?, next()?, next()?].map(|len| usize::try_from(len).ok());
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
        let (node, nick, to, body) = (
            take(lens[0])?,
            take(lens[1])?,
            take(lens[2])?,
            take(lens[3])?,
        );
        let entry = Entry {
            id: line_id(id, index)?,
            kind,
            seq,
            client,
            at_ms,
            node,
            nick,
            to,
            body,
        };
        Some((entry, at))
    }

    /// The records of entry `id` from its field/value list, packed or written field by
    /// field, appended to `out`; `false` if it has none (no origin or kind, a damaged value).
    fn from_fields(id: (u64, u64), fields: Vec<Value>, out: &mut Vec<Entry>) -> bool {
        let mut fields = fields.into_iter();
        let (mut node, mut seq, mut kind) = (None, None, None);
        let (mut client, mut at_ms) = (0, 0);
        let (mut nick, mut to, mut body) = (Bytes::new(), Bytes::new(), Bytes::new());
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            let (Some(name), Some(value)) = (bytes(name), bytes(value)) else {
                return false;
            };
            match &name[..] {
                b"e" => return Entry::unpack(id, &value, out),
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
        let (Some(kind), Some(seq), Some(node), Some(id)) = (kind, seq, node, line_id(id, 0))
        else {
            return false;
        };
        out.push(Entry {
            id,
            kind,
            seq,
            client,
            at_ms,
            node,
            nick,
            to,
            body,
        });
        true
    }
}

/// The id of record `index` of stream entry `MS-SEQ`: `MS-(SEQ × MAX_RECORDS + index)`, so
/// ids follow the stream's order; `None` past what the id can hold.
fn line_id((ms, seq): (u64, u64), index: usize) -> Option<LineId> {
    let line = seq
        .checked_mul(MAX_RECORDS as u64)?
        .checked_add(index as u64)?;
    Some(LineId::stream(ms, line))
}

/// A stream entry id's two numbers (`MS-SEQ`).
fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
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

/// The records of an `XRANGE`/`XREVRANGE` reply (or of one stream of an `XREAD` reply), in
/// reply order, and the id of the reply's last entry. Entries that hold no records of ours
/// (another program's, damaged ones) are left out, but still count as read.
#[derive(Debug, Default)]
pub(super) struct Entries {
    pub(super) records: Vec<Entry>,
    /// The id of the last entry in the reply, ours or not (where reading goes on).
    pub(super) last_id: Option<String>,
    /// The id of the first entry in the reply.
    pub(super) first_id: Option<String>,
    /// Entries in the reply, ours or not.
    pub(super) count: usize,
}

impl FromRedisValue for Entries {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut entries = Entries::default();
        for item in array(v)? {
            let mut pair = array(item)?.into_iter();
            let (Some(id), Some(fields)) = (pair.next(), pair.next()) else {
                return Err("a stream entry without its fields".into());
            };
            let id = string(id)?;
            if let Some(numbers) = stream_id(&id) {
                Entry::from_fields(numbers, array(fields)?, &mut entries.records);
            }
            if entries.first_id.is_none() {
                entries.first_id = Some(id.clone());
            }
            entries.last_id = Some(id);
            entries.count += 1;
        }
        Ok(entries)
    }
}

/// An `XREAD` reply: each stream's key and new entries (empty when the read timed out).
#[derive(Debug, Default)]
pub(super) struct StreamsRead(pub(super) Vec<(String, Entries)>);

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
            .map(|(key, entries)| Ok((string(key)?, Entries::from_redis_value(entries)?)))
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

    fn pack(records: &[Fields<'_>]) -> Bytes {
        let mut out = Vec::new();
        for record in records {
            record.pack_into(&mut out);
        }
        Bytes::from(out)
    }

    fn unpack(id: (u64, u64), packed: &Bytes) -> Option<Vec<Entry>> {
        let mut out = Vec::new();
        Entry::unpack(id, packed, &mut out).then_some(out)
    }

    fn bulk(b: &[u8]) -> Value {
        Value::BulkString(b.to_vec())
    }

    #[test]
    fn records_read_back_as_written_whatever_their_bytes() {
        let bodies: [&[u8]; 4] = [b"hello\n", b"", b"a b\nc 1 2 3\n\0\xff", b"\n\n"];
        let records: Vec<Fields<'_>> = bodies
            .iter()
            .enumerate()
            .map(|(n, body)| Fields {
                seq: 42 + n as u64,
                ..fields(body)
            })
            .collect();
        let entries = unpack((9, 1), &pack(&records)).expect("unpacks");
        assert_eq!(entries.len(), 4);
        for (n, (entry, body)) in entries.iter().zip(bodies).enumerate() {
            assert_eq!(
                (entry.kind, entry.seq, entry.client, entry.at_ms),
                (Kind::Message, 42 + n as u64, 7, 1_700_000_000_123)
            );
            assert_eq!(entry.node(), Some("a/1700000000000"));
            assert_eq!((entry.nick().as_str(), entry.to().as_str()), ("alice", ""));
            let line = entry.room_line().expect("a room line");
            assert_eq!(&line.line[..], body);
            assert_eq!(line.id.to_string(), format!("9-{}", 1024 + n));
        }
        let private = Fields {
            kind: Kind::Private,
            nick: "bob smith",
            to: "carol\n",
            ..fields(b"psst")
        };
        let entry = &unpack((1, 0), &pack(&[private])).unwrap()[0];
        assert_eq!(
            (entry.nick(), entry.to(), entry.text()),
            ("bob smith".into(), "carol\n".into(), "psst".into())
        );
        assert!(entry.room_line().is_none());
    }

    #[test]
    fn damaged_values_are_refused_whole_without_a_panic() {
        let good = pack(&[fields(b"one\n"), fields(b"hi\n")]);
        // Every proper prefix is refused, except the one that ends after the first record.
        let first = pack(&[fields(b"one\n")]).len();
        for cut in 1..good.len() {
            let got = unpack((1, 0), &good.slice(..cut));
            assert_eq!(
                got.map(|e| e.len()),
                (cut == first).then_some(1),
                "cut at {cut}"
            );
        }
        // Every byte replaced by each of a few telling values: no panic, and what is still
        // read holds only bytes of the value.
        for at in 0..good.len() {
            for byte in [0, b' ', b'\n', b'0', b'9', b'-', b'm', 0xff] {
                let mut damaged = good.to_vec();
                damaged[at] = byte;
                let len = damaged.len();
                for entry in unpack((1, 0), &Bytes::from(damaged)).unwrap_or_default() {
                    let strings = entry.node.len() + entry.nick.len() + entry.to.len();
                    assert!(strings + entry.body.len() < len, "at {at}: {entry:?}");
                }
            }
        }
        for bad in [
            &b""[..],
            b"x 1 0 0 0 0 0 0\n",
            b"m 1 0 0 0 0 0\n",
            b"m 1 0 0 0 0 0 0 0\n",
            b"m -1 0 0 0 0 0 0\n",
            b"m 1 0 0 99999999999999999999 0 0 0\n",
            b"m 1 0 0 18446744073709551615 1 0 0\nab",
            b"m 1 0 18446744073709551615 0 0 0 0\n",
            b"m 1 0 0 0 0 0 3\nab",
        ] {
            assert!(
                unpack((1, 0), &Bytes::from_static(bad)).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // An entry id too large for the line ids is refused too.
        assert!(unpack((1, u64::MAX), &pack(&[fields(b"x")])).is_none());
    }

    #[test]
    fn an_xread_reply_is_walked_into_records_packed_or_field_by_field() {
        let two = bulk(&pack(&[fields(b"new\n"), fields(b"newer\n")]));
        let old = Value::Array(
            [
                "n", "b/1", "q", "3", "k", "a", "c", "0", "u", "bob", "t", "5", "l", "waves\n",
            ]
            .map(|s| bulk(s.as_bytes()))
            .to_vec(),
        );
        let foreign = Value::Array(vec![bulk(b"k"), bulk(b"m"), bulk(b"l"), bulk(b"x")]);
        let entries = Value::Array(vec![
            Value::Array(vec![bulk(b"1-0"), Value::Array(vec![bulk(b"e"), two])]),
            Value::Array(vec![bulk(b"1-1"), old]),
            Value::Array(vec![bulk(b"1-2"), foreign]),
        ]);
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"sockit:room:lobby"),
            entries,
        ])]);
        let StreamsRead(streams) = StreamsRead::from_redis_value(reply).unwrap();
        assert_eq!(streams.len(), 1);
        let (key, entries) = &streams[0];
        assert_eq!(key, "sockit:room:lobby");
        let ids: Vec<String> = entries.records.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(
            ids,
            ["1-0", "1-1", "1-1024"],
            "the foreign entry is left out"
        );
        assert_eq!(
            (entries.first_id.as_deref(), entries.last_id.as_deref()),
            (Some("1-0"), Some("1-2")),
            "but reading goes on after it"
        );
        let old = &entries.records[2];
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
    fn line_ids_follow_the_stream_order() {
        let id = |ms: u64, seq: u64, index: usize| -> LineId {
            let mut out = Vec::new();
            let value = pack(&vec![fields(b"x"); index + 1]);
            assert!(Entry::unpack((ms, seq), &value, &mut out));
            out[index].id
        };
        assert!(id(9, 0, 1023) < id(9, 1, 0));
        assert!(id(9, 5, 3) < id(10, 0, 0));
        assert!(id(9, 1, 0) < id(9, 1, 1));
        let too_many = pack(&vec![fields(b"x"); MAX_RECORDS + 1]);
        assert!(unpack((9, 0), &too_many).is_none());
    }
}
