//! The outbound queue: what the hub publishes ([`RedisBus`]) waits here, in order, until
//! the appender `XADD`s it; a batch that fails is sent again.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use redis::{cmd, pipe};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::chat::cluster::connection::WRITE_TIMEOUT;
use crate::chat::cluster::entry::{FIELD, Fields, Kind, MAX_RECORDS};
use crate::chat::cluster::node::{Shared, inbox_key, lock, room_key};
use crate::chat::cluster::presence::{CLAIM, nick_claim_key};
use crate::chat::framing::{LineKind, RoomLine};
use crate::chat::hub::{Bus, ClientId, Post};

/// Entries a room's stream keeps at least (`XADD … MAXLEN ~`), so a node that was cut off
/// for a while can still read every line it missed.
pub(super) const MIN_STREAM_LEN: usize = 10_000;

/// Entries the appender sends in one pipeline.
pub(super) const BATCH: usize = 512;

/// What waits for the appender, in order.
#[derive(Debug, Clone)]
pub(super) enum Outbound {
    Line {
        room: String,
        seq: u64,
        from: Option<ClientId>,
        line: RoomLine,
    },
    Notice {
        room: String,
        seq: u64,
        text: String,
    },
    Private {
        node: String,
        seq: u64,
        from: String,
        to: String,
        text: String,
    },
    Canary {
        seq: u64,
        at_ms: i64,
    },
}

impl Outbound {
    pub(super) fn room(&self) -> Option<&str> {
        match self {
            Outbound::Line { room, .. } | Outbound::Notice { room, .. } => Some(room),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Outgoing {
    pub(super) queue: VecDeque<Outbound>,
    pub(super) next_seq: u64,
    /// Guest numbers reserved in Redis for this node: `next..end`.
    pub(super) guests: (u64, u64),
}

impl Outgoing {
    pub(super) fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}

impl Shared {
    pub(super) fn push(&self, make: impl FnOnce(u64) -> Outbound) {
        {
            let mut out = lock(&self.out);
            let seq = out.seq();
            let item = make(seq);
            if let Some(room) = item.room() {
                let is_open = lock(&self.opened).contains(room);
                if !is_open {
                    lock(&self.wanted).insert(room.to_owned());
                }
            }
            out.queue.push_back(item);
        }
        self.queued.notify_one();
    }
}

/// The Redis bus: what the hub publishes goes into the append queue.
pub(super) struct RedisBus(pub(super) Arc<Shared>);

impl Bus for RedisBus {
    fn publish(
        &self,
        room: &str,
        post: &Post,
        from: Option<ClientId>,
        _deliver_here: &mut dyn FnMut(&Post),
    ) {
        if post.room_lines().is_empty() {
            let text = post.notice_text().to_owned();
            self.0.push(|seq| Outbound::Notice {
                room: room.to_owned(),
                seq,
                text,
            });
            return;
        }
        for line in post.room_lines() {
            self.0.push(|seq| Outbound::Line {
                room: room.to_owned(),
                seq,
                from,
                line: line.clone(),
            });
        }
    }

    fn is_log(&self) -> bool {
        true
    }

    fn ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                let freed = self.0.appended.notified();
                if lock(&self.0.out).queue.len() < self.0.config.queue_posts {
                    return;
                }
                freed.await;
            }
        })
    }

    fn claim<'a>(&'a self, nick: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let mut conn = self.0.writer.clone();
            let mut claim = cmd("EVAL");
            claim
                .arg(CLAIM)
                .arg(1)
                .arg(nick_claim_key(nick))
                .arg(&self.0.incarnation)
                .arg(self.0.config.ttl().as_millis() as u64);
            match tokio::time::timeout(WRITE_TIMEOUT, claim.query_async::<i64>(&mut conn)).await {
                Ok(Ok(claimed)) => Ok(claimed == 1),
                Ok(Err(err)) => Err(format!("redis: {err}")),
                Err(_) => Err("redis does not answer".into()),
            }
        })
    }

    fn release(&self, nick: &str) {
        lock(&self.0.releases).push(nick.to_owned());
    }

    fn next_guest(&self) -> Option<u64> {
        let mut out = lock(&self.0.out);
        let (next, end) = out.guests;
        (next < end).then(|| {
            out.guests.0 += 1;
            next
        })
    }

    fn send_private(&self, node: &str, from: &str, to: &str, text: &str) {
        self.0.push(|seq| Outbound::Private {
            node: node.to_owned(),
            seq,
            from: from.to_owned(),
            to: to.to_owned(),
            text: text.to_owned(),
        });
    }

    fn stats(&self) -> Vec<String> {
        let shared = &self.0;
        let queued = lock(&shared.out).queue.len();
        let h = lock(&shared.health);
        let ago = |t: Option<Instant>| {
            t.map_or("never".to_owned(), |t| {
                format!("{:.1}s ago", t.elapsed().as_secs_f64())
            })
        };
        let mut lines = vec![
            format!("node {} on {}", shared.config.node, shared.config.url),
            format!(
                "queued {queued} of {}; appended {}; delivered {}; duplicates skipped {}",
                shared.config.queue_posts, h.appended, h.delivered, h.duplicates_skipped
            ),
            format!(
                "canary: sent {}, seen {}, latency {}",
                ago(h.canary_sent),
                ago(h.canary_seen),
                h.canary_latency_ms
                    .map_or("unknown".to_owned(), |ms| format!("{ms} ms"))
            ),
        ];
        if h.is_alarmed {
            lines.push("alarm: redis takes writes but delivers nothing".into());
        }
        if let Some(err) = &h.write_error {
            lines.push(format!("redis write failing: {err}"));
        }
        if let Some(err) = &h.read_error {
            lines.push(format!("redis read failing: {err}"));
        }
        if h.history_resets > 0 {
            lines.push(format!("history resets seen: {}", h.history_resets));
        }
        lines
    }
}

/// Bytes of lines that end an entry's run (a run also ends at [`MAX_RECORDS`] lines).
const ENTRY_BYTES: usize = 64 * 1024;

/// `batch` cut into stream entries, in order: each run of lines said in one room is one
/// entry, and everything else an entry of its own.
fn entries(batch: &[Outbound]) -> impl Iterator<Item = &[Outbound]> {
    let mut rest = batch;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let mut len = 1;
        if let Outbound::Line { room, .. } = first {
            let mut bytes = 0;
            for item in &rest[1..] {
                match item {
                    Outbound::Line { room: r, line, .. }
                        if r == room && len < MAX_RECORDS && bytes < ENTRY_BYTES =>
                    {
                        bytes += line.line.len();
                        len += 1;
                    }
                    _ => break,
                }
            }
        }
        let (entry, after) = rest.split_at(len);
        rest = after;
        Some(entry)
    })
}

/// Adds the `XADD` of one entry (see [`entries`]) to `p`: its records on its room's stream
/// or a node's inbox, which is trimmed to about `max_len` entries.
pub(super) fn xadd(p: &mut redis::Pipeline, shared: &Shared, entry: &[Outbound]) {
    let Some(item) = entry.first() else {
        return;
    };
    let inc = &shared.incarnation;
    let (key, max_len) = match item {
        Outbound::Line { room, .. } | Outbound::Notice { room, .. } => {
            (room_key(room), shared.history_lines.max(MIN_STREAM_LEN))
        }
        Outbound::Private { node, .. } => (inbox_key(node), 1_000),
        Outbound::Canary { .. } => (inbox_key(inc), 1_000),
    };
    let mut value = Vec::new();
    for item in entry {
        record(inc, item).pack_into(&mut value);
    }
    p.cmd("XADD")
        .arg(key)
        .arg("MAXLEN")
        .arg("~")
        .arg(max_len)
        .arg("*")
        .arg(FIELD)
        .arg(value)
        .ignore();
}

/// The record of one queued item, appended by node incarnation `inc`.
fn record<'a>(inc: &'a str, item: &'a Outbound) -> Fields<'a> {
    let none = Fields {
        kind: Kind::Canary,
        seq: 0,
        client: 0,
        at_ms: 0,
        node: inc,
        nick: "",
        to: "",
        body: b"",
    };
    match item {
        Outbound::Line {
            seq, from, line, ..
        } => Fields {
            kind: match line.kind {
                LineKind::Message => Kind::Message,
                LineKind::Action => Kind::Action,
            },
            seq: *seq,
            client: from.map_or(0, ClientId::number),
            at_ms: line.at_ms,
            nick: &line.nick,
            body: &line.line,
            ..none
        },
        Outbound::Notice { seq, text, .. } => Fields {
            kind: Kind::Notice,
            seq: *seq,
            body: text.as_bytes(),
            ..none
        },
        Outbound::Private {
            seq,
            from,
            to,
            text,
            ..
        } => Fields {
            kind: Kind::Private,
            seq: *seq,
            nick: from,
            to,
            body: text.as_bytes(),
            ..none
        },
        Outbound::Canary { seq, at_ms } => Fields {
            seq: *seq,
            at_ms: *at_ms,
            ..none
        },
    }
}

/// Appends the queue to Redis in order, a batch at a time; a batch that fails is sent
/// again until it goes through (readers skip what was appended twice). On `stop`, what is
/// queued still goes out for a bounded time.
pub(super) async fn append_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let mut conn = shared.writer.clone();
    let mut backoff = Duration::from_millis(50);
    let mut sadded: HashSet<String> = HashSet::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if deadline.is_none() && stop.is_cancelled() {
            deadline = Some(tokio::time::Instant::now() + WRITE_TIMEOUT * 2);
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            let left = lock(&shared.out).queue.len();
            if left > 0 {
                warn!(left, "stopped before redis took every queued line");
            }
            return;
        }
        let batch: Vec<Outbound> = lock(&shared.out)
            .queue
            .iter()
            .take(BATCH)
            .cloned()
            .collect();
        if batch.is_empty() {
            if deadline.is_some() {
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = shared.queued.notified() => {}
            }
            continue;
        }
        // A room is read before this node writes into it (see `Shared::opened`).
        let is_open = {
            let opened = lock(&shared.opened);
            batch
                .iter()
                .filter_map(Outbound::room)
                .all(|room| opened.contains(room))
        };
        if !is_open {
            let opened = shared.opened_changed.notified();
            tokio::select! {
                _ = opened => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            continue;
        }
        let mut p = pipe();
        let mut new_rooms = Vec::new();
        for room in batch.iter().filter_map(Outbound::room) {
            if !sadded.contains(room) && !new_rooms.iter().any(|r| r == room) {
                new_rooms.push(room.to_owned());
            }
        }
        for room in &new_rooms {
            p.cmd("SADD").arg("sockit:rooms").arg(room).ignore();
        }
        for entry in entries(&batch) {
            xadd(&mut p, &shared, entry);
        }
        let sent = tokio::time::timeout(WRITE_TIMEOUT, p.query_async::<()>(&mut conn)).await;
        match sent {
            Ok(Ok(())) => {
                sadded.extend(new_rooms);
                let canary = {
                    let mut out = lock(&shared.out);
                    out.queue.drain(..batch.len());
                    batch
                        .iter()
                        .any(|item| matches!(item, Outbound::Canary { .. }))
                };
                shared.appended.notify_waiters();
                let mut h = lock(&shared.health);
                h.appended += batch.len() as u64;
                h.last_write_ok = Some(Instant::now());
                if canary {
                    h.canary_sent = Some(Instant::now());
                }
                if let Some(err) = h.write_error.take() {
                    info!(previous = %err, "redis takes writes again");
                }
                backoff = Duration::from_millis(50);
            }
            failed => {
                let why = match failed {
                    Ok(Err(err)) => err.to_string(),
                    _ => "no answer in time".to_owned(),
                };
                {
                    let mut h = lock(&shared.health);
                    if h.write_error.is_none() {
                        warn!(error = %why, queued = lock(&shared.out).queue.len(), "redis write failed; lines wait in the queue");
                    }
                    h.write_error = Some(why);
                }
                // Readers skip what a retried batch appends twice.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::framing::LineId;

    fn line(room: &str, seq: u64, bytes: usize) -> Outbound {
        Outbound::Line {
            room: room.to_owned(),
            seq,
            from: None,
            line: RoomLine {
                id: LineId::stream(0, 0),
                at_ms: 0,
                kind: LineKind::Message,
                nick: Arc::from("a"),
                line: vec![b'x'; bytes].into(),
            },
        }
    }

    fn lengths(batch: &[Outbound]) -> Vec<usize> {
        entries(batch).map(<[Outbound]>::len).collect()
    }

    #[test]
    fn runs_of_lines_in_one_room_make_one_entry_each() {
        let notice = Outbound::Notice {
            room: "a".into(),
            seq: 4,
            text: "n".into(),
        };
        let canary = Outbound::Canary { seq: 7, at_ms: 0 };
        let batch = [
            line("a", 1, 5),
            line("a", 2, 5),
            line("a", 3, 5),
            notice,
            line("b", 5, 5),
            line("b", 6, 5),
            canary,
            line("a", 8, 5),
        ];
        assert_eq!(lengths(&batch), [3, 1, 2, 1, 1]);
        assert!(lengths(&[]).is_empty());
        // A run ends at MAX_RECORDS lines, and once it holds ENTRY_BYTES of them.
        let many: Vec<Outbound> = (0..MAX_RECORDS as u64 + 5)
            .map(|n| line("a", n, 1))
            .collect();
        assert_eq!(lengths(&many), [MAX_RECORDS, 5]);
        let big: Vec<Outbound> = (0..6).map(|n| line("a", n, ENTRY_BYTES / 2)).collect();
        assert_eq!(lengths(&big), [3, 3]);
    }
}
