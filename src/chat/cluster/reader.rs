//! The room-stream reader: every open room (and this node's inbox) read from the last entry
//! delivered, retried entries skipped, each new entry handed to the hub in stream order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use redis::aio::ConnectionManager;
use redis::cmd;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::chat::cluster::connection::WRITE_TIMEOUT;
use crate::chat::cluster::entry::{Entries, Entry, Kind, StreamsRead};
use crate::chat::cluster::node::{Shared, lock, room_key};
use crate::chat::cluster::outbound::BATCH;
use crate::chat::framing::{RoomLine, now_ms};
use crate::chat::hub::{ClientId, Hub, Post};

/// How long a blocking read waits in Redis for new entries.
pub(super) const READ_BLOCK_MS: u64 = 250;

/// What the reader knows: where it is in each stream and what it delivered.
#[derive(Debug, Default)]
pub(super) struct ReadState {
    /// Stream key → last entry id delivered (`0-0` for an empty stream).
    pub(super) last: HashMap<String, String>,
    /// (stream key, incarnation) → last sequence number delivered from it.
    pub(super) seen: HashMap<(String, String), u64>,
}

impl ReadState {
    /// Whether the entry is new (and records it); `false` for a retried duplicate.
    pub(super) fn is_new(&mut self, key: &str, node: &str, seq: u64) -> bool {
        let last = self
            .seen
            .entry((key.to_owned(), node.to_owned()))
            .or_default();
        if seq <= *last {
            return false;
        }
        *last = seq;
        true
    }
}

/// Starts reading the rooms this node needs: each one's last lines become its history,
/// and reading goes on from the newest of them.
pub(super) async fn open_wanted(
    shared: &Shared,
    hub: &Hub,
    reader: &mut ConnectionManager,
    state: &mut ReadState,
) -> redis::RedisResult<()> {
    let wanted: Vec<String> = {
        let opened = lock(&shared.opened);
        lock(&shared.wanted)
            .iter()
            .filter(|room| !opened.contains(*room))
            .cloned()
            .collect()
    };
    for room in wanted {
        let key = room_key(&room);
        // The history, and a few lines more for members who joined before this read.
        let wanted = shared.history_lines + 20;
        let (newest, records) = newest_records(reader, &key, wanted).await?;
        let last = newest.unwrap_or_else(|| "0-0".to_owned());
        let mut lines = Vec::new();
        for entry in &records {
            let Some(node) = entry.node() else {
                continue;
            };
            if !state.is_new(&key, node, entry.seq) {
                continue;
            }
            if let Some(line) = entry.room_line() {
                lines.push(line);
            }
        }
        let skip = lines.len().saturating_sub(wanted);
        lines.drain(..skip);
        hub.load_history(&room, lines);
        state.last.insert(key, last);
        lock(&shared.opened).insert(room);
    }
    shared.opened_changed.notify_waiters();
    Ok(())
}

/// Entries read newest first, a page at a time, per `XREVRANGE` call.
const HISTORY_PAGE: usize = 64;

/// The newest records of stream `key`, at least `wanted` of them if it holds that many, in
/// stream order, and the id of its newest entry. An entry holds up to
/// [`MAX_RECORDS`](crate::chat::cluster::entry::MAX_RECORDS) lines, so the stream is read a
/// page of entries at a time until enough lines are in, not `wanted` entries at once.
async fn newest_records(
    reader: &mut ConnectionManager,
    key: &str,
    wanted: usize,
) -> redis::RedisResult<(Option<String>, Vec<Entry>)> {
    let mut newest = None;
    let mut records = Vec::new();
    let mut before = "+".to_owned();
    // Each entry of ours holds a line at least: this many pages always suffice.
    for _ in 0..=wanted.div_ceil(HISTORY_PAGE) {
        let page: Entries = cmd("XREVRANGE")
            .arg(key)
            .arg(&before)
            .arg("-")
            .arg("COUNT")
            .arg(HISTORY_PAGE)
            .query_async(reader)
            .await?;
        newest = newest.or(page.first_id);
        records.extend(page.records);
        match page.last_id {
            Some(oldest) if page.count == HISTORY_PAGE && records.len() < wanted => {
                before = format!("({oldest}");
            }
            _ => break,
        }
    }
    // Newest entry first, the records of each entry in order: sorted, they are in the
    // stream's order.
    records.sort_by_key(|entry| entry.id);
    Ok((newest, records))
}

/// Reads every open room (and this node's inbox) from the last entry id delivered, and
/// hands each new entry to the hub in stream order.
pub(super) async fn read_loop(
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    reader: ConnectionManager,
    state: ReadState,
    stop: CancellationToken,
) {
    let mut node = ReaderTask {
        shared,
        hub,
        reader,
        state,
    };
    let mut backoff = Duration::from_millis(50);
    while !stop.is_cancelled() {
        let result = tokio::select! {
            _ = stop.cancelled() => break,
            result = node.read_once() => result,
        };
        match result {
            Ok(()) => {
                if let Some(err) = lock(&node.shared.health).read_error.take() {
                    info!(previous = %err, "redis delivers again");
                }
                backoff = Duration::from_millis(50);
            }
            Err(why) => {
                {
                    let mut h = lock(&node.shared.health);
                    if h.read_error.is_none() {
                        warn!(error = %why, "redis read failed; reading resumes from the last line delivered");
                    }
                    h.read_error = Some(why);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

pub(super) struct ReaderTask {
    pub(super) shared: Arc<Shared>,
    pub(super) hub: Arc<Hub>,
    pub(super) reader: ConnectionManager,
    pub(super) state: ReadState,
}

impl ReaderTask {
    pub(super) async fn read_once(&mut self) -> Result<(), String> {
        // Rooms members here joined, and rooms other nodes created.
        for room in self.hub.rooms_here() {
            if !lock(&self.shared.opened).contains(&room) {
                lock(&self.shared.wanted).insert(room);
            }
        }
        let opening = open_wanted(&self.shared, &self.hub, &mut self.reader, &mut self.state);
        match tokio::time::timeout(WRITE_TIMEOUT, opening).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err.to_string()),
            Err(_) => return Err("no answer in time".into()),
        }
        let (keys, ids): (Vec<&String>, Vec<&String>) = self.state.last.iter().unzip();
        let mut read = cmd("XREAD");
        read.arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(READ_BLOCK_MS)
            .arg("STREAMS")
            .arg(&keys)
            .arg(&ids);
        let reply = tokio::time::timeout(
            WRITE_TIMEOUT,
            read.query_async::<StreamsRead>(&mut self.reader),
        )
        .await;
        let streams = match reply {
            Ok(Ok(StreamsRead(streams))) => streams,
            Ok(Err(err)) => return Err(err.to_string()),
            Err(_) => return Err("no answer in time".into()),
        };
        if streams.is_empty() {
            return Ok(());
        }
        // One turn for the node's other tasks first: lines members sent meanwhile go to
        // Redis (the appender) before the fan-out below wakes every member's writer.
        tokio::task::yield_now().await;
        for (key, entries) in streams {
            self.deliver(&key, &entries.records);
            if let Some(last) = entries.last_id {
                self.state.last.insert(key, last);
            }
        }
        Ok(())
    }

    /// Hands `entries` of stream `key` to the hub, in order; consecutive lines of one
    /// sender go as one post.
    pub(super) fn deliver(&mut self, key: &str, entries: &[Entry]) {
        let room = key.strip_prefix("sockit:room:");
        let mut group: Vec<RoomLine> = Vec::new();
        let mut group_from: Option<ClientId> = None;
        let mut delivered = 0u64;
        let mut skipped = 0u64;
        let flush = |group: &mut Vec<RoomLine>, from: Option<ClientId>| {
            if let (Some(room), false) = (room, group.is_empty()) {
                let mut text = BytesMut::new();
                for line in group.iter() {
                    text.extend_from_slice(&line.line);
                }
                let post = Post::lines(text.freeze(), std::mem::take(group));
                self.hub.deliver(room, &post, from);
            }
        };
        for entry in entries {
            let Some(node) = entry.node() else {
                continue;
            };
            if !self.state.is_new(key, node, entry.seq) {
                skipped += 1;
                continue;
            }
            delivered += 1;
            let is_mine = node == self.shared.incarnation;
            let from = (is_mine && entry.client != 0).then(|| ClientId::from_number(entry.client));
            if let Some(line) = entry.room_line() {
                if from != group_from && !group.is_empty() {
                    flush(&mut group, group_from);
                }
                group_from = from;
                group.push(line);
                continue;
            }
            flush(&mut group, group_from);
            match entry.kind {
                Kind::Notice => {
                    if let Some(room) = room {
                        self.hub.deliver(room, &Post::notice(entry.text()), None);
                    }
                }
                Kind::Private => {
                    self.hub
                        .deliver_private(&entry.nick(), &entry.to(), &entry.text());
                }
                Kind::Canary if is_mine => {
                    let mut h = lock(&self.shared.health);
                    h.canary_seen = Some(Instant::now());
                    h.canary_latency_ms = Some(now_ms() - entry.at_ms);
                }
                _ => {}
            }
        }
        flush(&mut group, group_from);
        let mut h = lock(&self.shared.health);
        h.delivered += delivered;
        h.duplicates_skipped += skipped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_entry_is_delivered_once_and_in_order() {
        let mut state = ReadState::default();
        // Batch 5, 6, 7 applied, its reply lost, sent again: 5 6 7 5 6 7 8.
        let seen: Vec<bool> = [5, 6, 7, 5, 6, 7, 8]
            .into_iter()
            .map(|seq| state.is_new("k", "a/1", seq))
            .collect();
        assert_eq!(seen, [true, true, true, false, false, false, true]);
        assert!(state.is_new("k", "b/1", 1), "another node counts apart");
        assert!(
            state.is_new("other", "a/1", 1),
            "another stream counts apart"
        );
    }
}
