//! Many chat nodes joined through Redis (`chat serve --cluster redis://…`): the [`Bus`] that
//! makes one Redis Stream per room the log every node delivers from, with cluster-wide nicks
//! and presence and a canary that proves delivery. The hub stays the same: it publishes into
//! this bus and gets every line back, its own included, through [`Hub::deliver`].
//!
//! Three tasks per node, each on its own footing:
//! - the appender takes posts from a bounded queue, in order, and `XADD`s them (one entry per
//!   line, with this node's incarnation and a sequence number); a failed or unanswered batch
//!   is sent again, and readers skip an entry whose (incarnation, sequence) they already
//!   delivered, so a retry never shows twice;
//! - the reader `XREAD`s every room from the last entry id it delivered (on its own
//!   connection, as the read blocks), so after any fault it resumes exactly where it was;
//! - the heartbeat refreshes this node's presence and nick claims (expiring keys), reads the
//!   other nodes', tells members when a node is gone, watches the epoch key (Redis restarted
//!   empty) and the canary.
//!
//! Redis keys, all under `sockit:` — `room:ROOM` (stream), `rooms` (set), `inbox:NODE`
//! (stream: private messages and canaries), `node:NODE`, `presence:NODE` (hash nick → room),
//! `nodes` (set), `nick:NICK`, `epoch`, `guests`; NODE is the node's incarnation (name and
//! start time).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{Value, cmd, pipe};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::chat::command::nick_key;
use crate::chat::framing::{LineId, LineKind, RoomLine, now_ms};
use crate::chat::hub::{Bus, ClientId, Hub, HubConfig, Post, RemoteMember};

/// How often a node proves it is alive and sends a canary, by default.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// Posts a node keeps while Redis cannot take them, by default; past it senders are slowed.
pub const DEFAULT_QUEUE_POSTS: usize = 10_000;

/// Entries a room's stream keeps at least (`XADD … MAXLEN ~`), so a node that was cut off
/// for a while can still read every line it missed.
const MIN_STREAM_LEN: usize = 10_000;

/// Entries the appender sends in one pipeline.
const BATCH: usize = 512;

/// One Redis round trip may take this long before it counts as failed and is retried.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a blocking read waits in Redis for new entries.
const READ_BLOCK_MS: u64 = 250;

/// How long a node waits for Redis at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A canary missing this long while writes succeed is reported: with a canary a second
/// and a check every half heartbeat, a broker that stops delivering is reported within 3 s.
const CANARY_ALARM: Duration = Duration::from_secs(2);

/// A nick is claimed, or its claim refreshed, if free or already this node's.
const CLAIM: &str = "local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1";

/// A nick claim is dropped only by its owner.
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// The Redis URL; its `Debug` and `Display` forms hide a password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(pub String);

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("redacted"));
                f.write_str(url.as_str())
            }
            _ => f.write_str(&self.0),
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// How a node joins the others.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`, `rediss://…` or `unix:/PATH`.
    pub url: RedisUrl,
    /// This node's name, shown when it is gone (default: host name and port).
    pub node: String,
    /// Presence is refreshed every half heartbeat and expires after one and a half; a
    /// canary goes through Redis every heartbeat. A node killed outright is announced gone
    /// within two heartbeats.
    pub heartbeat: Duration,
    /// Posts kept while Redis cannot take them; past it senders are slowed, never dropped.
    pub queue_posts: usize,
}

impl ClusterConfig {
    /// A configuration with defaults for everything but the URL and the node name.
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            url: RedisUrl(url.into()),
            node: node.into(),
            heartbeat: DEFAULT_HEARTBEAT,
            queue_posts: DEFAULT_QUEUE_POSTS,
        }
    }

    fn ttl(&self) -> Duration {
        self.heartbeat * 3 / 2
    }
}

/// Why a node could not join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL is not a Redis URL.
    #[error("bad redis url {url}")]
    Url {
        /// The URL (password hidden).
        url: RedisUrl,
        /// What the client said.
        #[source]
        source: redis::RedisError,
    },
    /// Redis did not answer.
    #[error("cannot reach redis at {url}")]
    Connect {
        /// The URL (password hidden).
        url: RedisUrl,
        /// What went wrong, as an I/O error of the right kind (refused, timed out…).
        #[source]
        source: std::io::Error,
    },
    /// A cluster node is made with `Server::connect`, which reaches Redis first.
    #[error("a chat cluster node must be started with Server::connect")]
    NeedsConnect,
    /// Redis did not answer in time.
    #[error("cannot reach redis at {url}: no answer within {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout {
        /// The URL (password hidden).
        url: RedisUrl,
    },
}

/// What waits for the appender, in order.
#[derive(Debug, Clone)]
enum Outbound {
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
    fn room(&self) -> Option<&str> {
        match self {
            Outbound::Line { room, .. } | Outbound::Notice { room, .. } => Some(room),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct Outgoing {
    queue: VecDeque<Outbound>,
    next_seq: u64,
    /// Guest numbers reserved in Redis for this node: `next..end`.
    guests: (u64, u64),
}

impl Outgoing {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}

/// What the node knows of its own health (`/stats`, the canary alarm).
#[derive(Debug, Default)]
struct Health {
    appended: u64,
    delivered: u64,
    duplicates_skipped: u64,
    last_write_ok: Option<Instant>,
    write_error: Option<String>,
    read_error: Option<String>,
    canary_sent: Option<Instant>,
    canary_seen: Option<Instant>,
    canary_latency_ms: Option<i64>,
    /// Since when every heartbeat reached Redis in time.
    in_contact_since: Option<Instant>,
    is_alarmed: bool,
    history_resets: u64,
}

/// The state the bus and the node's tasks share.
struct Shared {
    config: ClusterConfig,
    /// This node's name and start time: what its entries, claims and keys carry.
    incarnation: String,
    history_lines: usize,
    out: Mutex<Outgoing>,
    /// Wakes the appender.
    queued: Notify,
    /// Wakes senders waiting for room in the queue.
    appended: Notify,
    /// Rooms the reader reads (and so the appender may write: a room is read before this
    /// node writes into it, so none of its own lines is taken for history).
    opened: Mutex<HashSet<String>>,
    opened_changed: Notify,
    /// Rooms this node needs read.
    wanted: Mutex<HashSet<String>>,
    releases: Mutex<Vec<String>>,
    health: Mutex<Health>,
    writer: ConnectionManager,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect("cluster locks are never poisoned")
}

fn room_key(room: &str) -> String {
    format!("sockit:room:{room}")
}

fn inbox_key(node: &str) -> String {
    format!("sockit:inbox:{node}")
}

fn nick_claim_key(nick: &str) -> String {
    format!("sockit:nick:{}", nick_key(nick))
}

impl Shared {
    fn push(&self, make: impl FnOnce(u64) -> Outbound) {
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
struct RedisBus(Arc<Shared>);

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

/// What the reader knows: where it is in each stream and what it delivered.
#[derive(Debug, Default)]
struct ReadState {
    /// Stream key → last entry id delivered (`0-0` for an empty stream).
    last: HashMap<String, String>,
    /// (stream key, incarnation) → last sequence number delivered from it.
    seen: HashMap<(String, String), u64>,
}

impl ReadState {
    /// Whether the entry is new (and records it); `false` for a retried duplicate.
    fn is_new(&mut self, key: &str, node: &str, seq: u64) -> bool {
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

/// A node of a chat cluster: its hub (with the Redis bus) and its tasks, ready to run.
pub(crate) struct Node {
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    reader: ConnectionManager,
    state: ReadState,
    epoch: String,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("incarnation", &self.shared.incarnation)
            .finish()
    }
}

async fn manager(
    client: &redis::Client,
    response_timeout: Duration,
    url: &RedisUrl,
) -> Result<ConnectionManager, ClusterError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(response_timeout))
        .set_max_delay(Duration::from_millis(500));
    let connecting = ConnectionManager::new_with_config(client.clone(), config);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) => Err(ClusterError::Connect {
            url: url.clone(),
            source: as_io(source),
        }),
        Err(_) => Err(ClusterError::Timeout { url: url.clone() }),
    }
}

/// A Redis error as an I/O error whose kind tells a refusal or a timeout (exit codes).
fn as_io(err: redis::RedisError) -> std::io::Error {
    let kind = if err.is_connection_refusal() {
        std::io::ErrorKind::ConnectionRefused
    } else if err.is_timeout() {
        std::io::ErrorKind::TimedOut
    } else {
        std::io::ErrorKind::Other
    };
    std::io::Error::new(kind, err)
}

impl Node {
    /// Connects to Redis, builds the hub on the Redis bus and loads every room's history.
    pub(crate) async fn connect(
        config: ClusterConfig,
        hub_config: HubConfig,
    ) -> Result<Node, ClusterError> {
        let url = config.url.clone();
        let client =
            redis::Client::open(config.url.0.as_str()).map_err(|source| ClusterError::Url {
                url: url.clone(),
                source,
            })?;
        let mut writer = manager(&client, WRITE_TIMEOUT, &url).await?;
        // The reader blocks in Redis for READ_BLOCK_MS at a time.
        let reader = manager(&client, WRITE_TIMEOUT, &url).await?;
        let connect_err = |source| ClusterError::Connect {
            url: url.clone(),
            source: as_io(source),
        };
        let incarnation = format!("{}/{}", config.node, now_ms());
        let (epoch, guests, rooms): (String, u64, Vec<String>) = pipe()
            .cmd("SET")
            .arg("sockit:epoch")
            .arg(format!("{incarnation}/{}", std::process::id()))
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg("sockit:epoch")
            .cmd("INCRBY")
            .arg("sockit:guests")
            .arg(100)
            .cmd("SMEMBERS")
            .arg("sockit:rooms")
            .query_async(&mut writer)
            .await
            .map_err(connect_err)?;
        let history_lines = hub_config.history_lines;
        let shared = Arc::new(Shared {
            incarnation: incarnation.clone(),
            history_lines,
            out: Mutex::new(Outgoing {
                guests: (guests - 99, guests + 1),
                ..Outgoing::default()
            }),
            queued: Notify::new(),
            appended: Notify::new(),
            opened: Mutex::new(HashSet::new()),
            opened_changed: Notify::new(),
            wanted: Mutex::new(rooms.into_iter().collect()),
            releases: Mutex::new(Vec::new()),
            health: Mutex::new(Health::default()),
            writer,
            config,
        });
        let hub = Arc::new(Hub::with_bus(
            hub_config,
            Box::new(RedisBus(shared.clone())),
        ));
        let mut node = Node {
            shared,
            hub,
            reader,
            state: ReadState::default(),
            epoch,
        };
        node.state
            .last
            .insert(inbox_key(&incarnation), "0-0".to_owned());
        open_wanted(&node.shared, &node.hub, &mut node.reader, &mut node.state)
            .await
            .map_err(connect_err)?;
        info!(node = %node.shared.config.node, url = %url, "joined the chat cluster");
        Ok(node)
    }

    /// The node's hub.
    pub(crate) fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Runs the node's tasks until `stop`; then sends what is still queued (bounded) and
    /// takes this node's presence out of Redis.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let Node {
            shared,
            hub,
            reader,
            state,
            epoch,
        } = self;
        let reading = read_loop(shared.clone(), hub.clone(), reader, state, stop.clone());
        let appending = append_loop(shared.clone(), stop.clone());
        let beating = heartbeat_loop(shared.clone(), hub, epoch, stop);
        tokio::join!(reading, appending, beating);
        let mut conn = shared.writer.clone();
        let inc = &shared.incarnation;
        let mut leaving = pipe();
        leaving
            .cmd("DEL")
            .arg(format!("sockit:node:{inc}"))
            .arg(format!("sockit:presence:{inc}"))
            .arg(inbox_key(inc))
            .ignore()
            .cmd("SREM")
            .arg("sockit:nodes")
            .arg(inc)
            .ignore();
        for nick in lock(&shared.releases).drain(..) {
            leaving
                .cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(nick_claim_key(&nick))
                .arg(inc)
                .ignore();
        }
        let _ = tokio::time::timeout(WRITE_TIMEOUT, leaving.query_async::<()>(&mut conn)).await;
        info!("left the chat cluster");
    }
}

/// Starts reading the rooms this node needs: each one's last lines become its history,
/// and reading goes on from the newest of them.
async fn open_wanted(
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
        let reply: StreamRangeReply = cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(shared.history_lines + 20)
            .query_async(reader)
            .await?;
        let last = reply
            .ids
            .first()
            .map_or("0-0".to_owned(), |entry| entry.id.clone());
        let mut lines = Vec::new();
        for entry in reply.ids.iter().rev() {
            let Some((node, seq)) = origin(entry) else {
                continue;
            };
            if !state.is_new(&key, &node, seq) {
                continue;
            }
            if let Some(line) = room_line(entry) {
                lines.push(line);
            }
        }
        hub.load_history(&room, lines);
        state.last.insert(key, last);
        lock(&shared.opened).insert(room);
    }
    shared.opened_changed.notify_waiters();
    Ok(())
}

/// The (incarnation, sequence) an entry was appended with.
fn origin(entry: &StreamId) -> Option<(String, u64)> {
    Some((entry.get::<String>("n")?, entry.get::<u64>("q")?))
}

/// A stream entry id as a line id.
fn line_id(id: &str) -> LineId {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    LineId::stream(ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// The room line an entry holds (`None` for a notice).
fn room_line(entry: &StreamId) -> Option<RoomLine> {
    let kind = match entry.get::<String>("k")?.as_str() {
        "m" => LineKind::Message,
        "a" => LineKind::Action,
        _ => return None,
    };
    let nick: String = entry.get("u")?;
    let line: Vec<u8> = entry.get("l")?;
    Some(RoomLine {
        id: line_id(&entry.id),
        at_ms: entry.get("t").unwrap_or(0),
        kind,
        nick: Arc::from(nick),
        line: Bytes::from(line),
    })
}

fn xadd(p: &mut redis::Pipeline, shared: &Shared, item: &Outbound) {
    let inc = &shared.incarnation;
    let (key, max_len) = match item {
        Outbound::Line { room, .. } | Outbound::Notice { room, .. } => {
            (room_key(room), shared.history_lines.max(MIN_STREAM_LEN))
        }
        Outbound::Private { node, .. } => (inbox_key(node), 1_000),
        Outbound::Canary { .. } => (inbox_key(inc), 1_000),
    };
    let c = p
        .cmd("XADD")
        .arg(key)
        .arg("MAXLEN")
        .arg("~")
        .arg(max_len)
        .arg("*")
        .arg("n")
        .arg(inc);
    match item {
        Outbound::Line {
            seq, from, line, ..
        } => {
            let kind = match line.kind {
                LineKind::Message => "m",
                LineKind::Action => "a",
            };
            c.arg("q")
                .arg(*seq)
                .arg("k")
                .arg(kind)
                .arg("c")
                .arg(from.map_or(0, ClientId::number))
                .arg("u")
                .arg(&*line.nick)
                .arg("t")
                .arg(line.at_ms)
                .arg("l")
                .arg(&line.line[..]);
        }
        Outbound::Notice { seq, text, .. } => {
            c.arg("q").arg(*seq).arg("k").arg("n").arg("l").arg(text);
        }
        Outbound::Private {
            seq,
            from,
            to,
            text,
            ..
        } => {
            c.arg("q")
                .arg(*seq)
                .arg("k")
                .arg("p")
                .arg("u")
                .arg(from)
                .arg("to")
                .arg(to)
                .arg("l")
                .arg(text);
        }
        Outbound::Canary { seq, at_ms } => {
            c.arg("q").arg(*seq).arg("k").arg("c").arg("t").arg(*at_ms);
        }
    }
    c.ignore();
}

/// Appends the queue to Redis in order, a batch at a time; a batch that fails is sent
/// again until it goes through (readers skip what was appended twice). On `stop`, what is
/// queued still goes out for a bounded time.
async fn append_loop(shared: Arc<Shared>, stop: CancellationToken) {
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
        for item in &batch {
            xadd(&mut p, &shared, item);
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

/// Reads every open room (and this node's inbox) from the last entry id delivered, and
/// hands each new entry to the hub in stream order.
async fn read_loop(
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

struct ReaderTask {
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    reader: ConnectionManager,
    state: ReadState,
}

impl ReaderTask {
    async fn read_once(&mut self) -> Result<(), String> {
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
            read.query_async::<Option<StreamReadReply>>(&mut self.reader),
        )
        .await;
        let reply = match reply {
            Ok(Ok(reply)) => reply,
            Ok(Err(err)) => return Err(err.to_string()),
            Err(_) => return Err("no answer in time".into()),
        };
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            self.deliver(&stream.key, &stream.ids);
        }
        Ok(())
    }

    /// Hands `entries` of stream `key` to the hub, in order; consecutive lines of one
    /// sender go as one post.
    fn deliver(&mut self, key: &str, entries: &[StreamId]) {
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
            self.state.last.insert(key.to_owned(), entry.id.clone());
            let Some((node, seq)) = origin(entry) else {
                continue;
            };
            if !self.state.is_new(key, &node, seq) {
                skipped += 1;
                continue;
            }
            delivered += 1;
            let is_mine = node == self.shared.incarnation;
            let from = entry
                .get::<u64>("c")
                .filter(|c| is_mine && *c != 0)
                .map(ClientId::from_number);
            if let Some(line) = room_line(entry) {
                if from != group_from && !group.is_empty() {
                    flush(&mut group, group_from);
                }
                group_from = from;
                group.push(line);
                continue;
            }
            flush(&mut group, group_from);
            let text: String = entry.get("l").unwrap_or_default();
            match entry.get::<String>("k").as_deref() {
                Some("n") => {
                    if let Some(room) = room {
                        self.hub.deliver(room, &Post::notice(text), None);
                    }
                }
                Some("p") => {
                    let from: String = entry.get("u").unwrap_or_default();
                    let to: String = entry.get("to").unwrap_or_default();
                    self.hub.deliver_private(&from, &to, &text);
                }
                Some("c") if is_mine => {
                    let sent: i64 = entry.get("t").unwrap_or(0);
                    let mut h = lock(&self.shared.health);
                    h.canary_seen = Some(Instant::now());
                    h.canary_latency_ms = Some(now_ms() - sent);
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

/// Every half heartbeat: this node's presence, claims and rooms into Redis; the other
/// nodes' presence out of it; gone nodes announced; the epoch and the canary checked.
async fn heartbeat_loop(
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    mut epoch: String,
    stop: CancellationToken,
) {
    let mut conn = shared.writer.clone();
    let tick = shared.config.heartbeat / 2;
    let ttl_ms = shared.config.ttl().as_millis() as u64;
    let inc = shared.incarnation.clone();
    let mut ticks = 0u64;
    // Nodes seen alive, with their members as last seen.
    let mut alive: HashMap<String, Vec<RemoteMember>> = HashMap::new();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        ticks += 1;
        if ticks % 2 == 0 {
            shared.push(|seq| Outbound::Canary {
                seq,
                at_ms: now_ms(),
            });
        }
        check_canary(&shared);
        let started = Instant::now();
        let beat = beat(&shared, &hub, &mut conn, &inc, ttl_ms);
        let Ok(Ok(beat)) = tokio::time::timeout(tick.max(WRITE_TIMEOUT / 2), beat).await else {
            lock(&shared.health).in_contact_since = None;
            continue;
        };
        let in_contact_since = {
            let mut h = lock(&shared.health);
            if started.elapsed() > tick {
                h.in_contact_since = None;
            }
            *h.in_contact_since.get_or_insert(started)
        };
        // Redis lost its data (restarted without persistence): say so once, carry on.
        if beat.epoch != epoch {
            if !epoch.is_empty() {
                warn!("redis restarted empty: room history was reset");
                hub.clear_history();
                hub.tell_everyone_here("the chat broker restarted empty: history was reset");
                lock(&shared.health).history_resets += 1;
            }
            epoch = beat.epoch.clone();
        }
        for room in beat.rooms {
            if !lock(&shared.opened).contains(&room) {
                lock(&shared.wanted).insert(room);
            }
        }
        // Only a node that has itself been in touch with Redis for a whole expiry period
        // may judge others gone: after a pause of Redis every key looks expired for a while.
        let may_judge = in_contact_since.elapsed() >= shared.config.ttl();
        let mut remote = Vec::new();
        let mut now_alive = HashMap::new();
        for (node, members) in beat.nodes {
            if node == inc {
                continue;
            }
            match members {
                Some(members) => {
                    remote.extend(members.iter().cloned());
                    now_alive.insert(node, members);
                }
                None if may_judge => {
                    let name = node.rsplit_once('/').map_or(node.as_str(), |(n, _)| n);
                    info!(node = name, "node gone");
                    for member in alive.get(&node).into_iter().flatten() {
                        hub.remote_left(
                            &member.room,
                            &format!("{} left (node {name} gone)", member.nick),
                        );
                    }
                    let _ = cmd("SREM")
                        .arg("sockit:nodes")
                        .arg(&node)
                        .query_async::<()>(&mut conn)
                        .await;
                }
                None => {
                    // Not judged yet: keep what was known.
                    if let Some(members) = alive.get(&node) {
                        remote.extend(members.iter().cloned());
                        now_alive.insert(node, members.clone());
                    }
                }
            }
        }
        alive = now_alive;
        hub.set_remote(remote);
    }
}

/// What one heartbeat learned.
struct Beat {
    epoch: String,
    rooms: Vec<String>,
    /// Every registered node, with its members, or `None` when its key expired.
    nodes: Vec<(String, Option<Vec<RemoteMember>>)>,
}

async fn beat(
    shared: &Shared,
    hub: &Hub,
    conn: &mut ConnectionManager,
    inc: &str,
    ttl_ms: u64,
) -> redis::RedisResult<Beat> {
    let here = hub.members_here();
    let presence = format!("sockit:presence:{inc}");
    let mut p = pipe();
    p.cmd("SET")
        .arg(format!("sockit:node:{inc}"))
        .arg(&shared.config.node)
        .arg("PX")
        .arg(ttl_ms)
        .ignore();
    p.cmd("SADD").arg("sockit:nodes").arg(inc).ignore();
    p.atomic();
    p.cmd("DEL").arg(&presence).ignore();
    if !here.is_empty() {
        let c = p.cmd("HSET").arg(&presence);
        for (nick, room) in &here {
            c.arg(nick).arg(room);
        }
        c.ignore();
    }
    p.cmd("PEXPIRE").arg(&presence).arg(ttl_ms).ignore();
    let mut rooms_here: Vec<&str> = here.iter().map(|(_, r)| r.as_str()).collect();
    rooms_here.sort_unstable();
    rooms_here.dedup();
    for room in rooms_here {
        p.cmd("SADD").arg("sockit:rooms").arg(room).ignore();
    }
    for (nick, _) in &here {
        p.cmd("EVAL")
            .arg(CLAIM)
            .arg(1)
            .arg(nick_claim_key(nick))
            .arg(inc)
            .arg(ttl_ms)
            .ignore();
    }
    let releases: Vec<String> = std::mem::take(&mut *lock(&shared.releases));
    for nick in releases.iter().filter(|n| !hub.has_nick(n)) {
        p.cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(nick_claim_key(nick))
            .arg(inc)
            .ignore();
    }
    // A Redis that lost its data has no epoch: the first node back sets a new one.
    p.cmd("SET")
        .arg("sockit:epoch")
        .arg(format!("{inc}/{}", now_ms()))
        .arg("NX")
        .ignore();
    p.cmd("GET").arg("sockit:epoch");
    p.cmd("SMEMBERS").arg("sockit:rooms");
    p.cmd("SMEMBERS").arg("sockit:nodes");
    let is_low = {
        let out = lock(&shared.out);
        out.guests.1 - out.guests.0 < 20
    };
    if is_low {
        p.cmd("INCRBY").arg("sockit:guests").arg(100);
    } else {
        p.cmd("GET").arg("sockit:guests");
    }
    let (epoch, rooms, nodes, guests): (String, Vec<String>, Vec<String>, Option<u64>) =
        p.query_async(conn).await?;
    match guests {
        Some(guests) if is_low => lock(&shared.out).guests = (guests - 99, guests + 1),
        // Redis lost its data: take a new range above the one in hand.
        None => {
            let above = lock(&shared.out).guests.1 + 100;
            let reserved: u64 = cmd("INCRBY")
                .arg("sockit:guests")
                .arg(above)
                .query_async(conn)
                .await?;
            lock(&shared.out).guests = (reserved - 99, reserved + 1);
        }
        Some(_) => {}
    }
    let mut p = pipe();
    for node in &nodes {
        p.cmd("EXISTS").arg(format!("sockit:node:{node}"));
        p.cmd("HGETALL").arg(format!("sockit:presence:{node}"));
    }
    let replies: Vec<Value> = if nodes.is_empty() {
        Vec::new()
    } else {
        p.query_async(conn).await?
    };
    let mut known = Vec::new();
    for (node, pair) in nodes.into_iter().zip(replies.chunks(2)) {
        let exists: i64 = redis::from_redis_value_ref(&pair[0]).unwrap_or(0);
        let members: HashMap<String, String> =
            redis::from_redis_value_ref(&pair[1]).unwrap_or_default();
        let members = (exists == 1).then(|| {
            members
                .into_iter()
                .map(|(nick, room)| RemoteMember {
                    nick,
                    room,
                    node: node.clone(),
                })
                .collect()
        });
        known.push((node, members));
    }
    Ok(Beat {
        epoch,
        rooms,
        nodes: known,
    })
}

/// Reports (once per episode) a broker that takes writes but delivers nothing.
fn check_canary(shared: &Shared) {
    let mut h = lock(&shared.health);
    let (Some(sent), Some(write_ok)) = (h.canary_sent, h.last_write_ok) else {
        return;
    };
    let seen_since = h
        .canary_seen
        .map_or(sent.elapsed() + CANARY_ALARM, |s| s.elapsed());
    let is_stuck = write_ok.elapsed() < CANARY_ALARM && seen_since >= CANARY_ALARM;
    if is_stuck && !h.is_alarmed {
        warn!(
            silent_secs = seen_since.as_secs(),
            "redis takes writes but delivers nothing: no canary back"
        );
        h.is_alarmed = true;
    } else if !is_stuck && h.is_alarmed && seen_since < CANARY_ALARM {
        info!("redis delivers again: canary back");
        h.is_alarmed = false;
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

    #[test]
    fn stream_ids_become_line_ids_in_order() {
        assert_eq!(line_id("1700000000000-3").to_string(), "1700000000000-3");
        assert!(line_id("1700000000000-3") < line_id("1700000000001-0"));
        assert!(line_id("9-10") > line_id("9-9"));
    }

    #[test]
    fn the_url_hides_its_password() {
        let url = RedisUrl("redis://:s3cret@127.0.0.1:6379/2".into());
        assert!(!format!("{url} {url:?}").contains("s3cret"));
        assert!(url.to_string().contains("127.0.0.1:6379/2"));
    }
}
