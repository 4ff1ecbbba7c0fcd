//! Chat load: N clients in one room, K of them sending M lines each (flat out or paced);
//! every client checks that it gets every other sender's lines exactly once and in order.
//!
//! Each line carries a token `~sb<run>.<sender>.<seq>.<micros>~` at its end, after a fixed
//! run of `x` padding. The token is found anywhere in a received line, so servers that
//! prefix lines (`<nick> `, ncat's `<user5> `) are measured the same way. A line whose token
//! is cut, doubled, or whose padding is damaged counts as malformed (servers that relay
//! `recv()` chunks instead of lines splice lines into each other).
//!
//! The clients speak text lines over TCP, or WebSocket ([`Transport`]): sockit's JSON events
//! at `/ws`, or the raw text frames of a generic broadcast server (Node's `ws` example), so
//! the same load measures all three side by side.
//!
//! Flat out means as fast as the server delivers, not faster than the receivers read:
//! senders stay at most [`WINDOW_BYTES`] of lines ahead of the slowest receiver, so a server
//! that drops clients which fall behind (as it should) never drops one only because the load
//! generator sent faster than it could itself read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bench::Report;
pub use crate::bench::chat_line::MIN_LINE_BYTES;
use crate::bench::chat_line::{Found, LineShape, Token, write_line};
pub use crate::bench::chat_wire::Transport;
use crate::bench::chat_wire::{self, Heard, OpenError, Reader, Writer};
use crate::bench::cpu::{CpuWatch, NoSuchProcess};
use crate::bench::fine_timer::FineTimer;
use crate::bench::timeline::{Pace, Recorder, Timeline};
use crate::net::{DialOptions, HostPort, NetError};

/// What to run against a chat server.
#[derive(Debug, Clone)]
pub struct ChatLoad {
    /// Clients connected at once (senders included).
    pub clients: usize,
    /// How many of them send.
    pub senders: usize,
    /// Lines per sender.
    pub messages: u64,
    /// Lines per second from all senders together; 0 sends flat out. Paced lines carry the
    /// time they were due, so their latency includes any wait to be written (open loop).
    pub rate: f64,
    /// Bytes per line, without the newline (at least the token's length).
    pub size: usize,
    /// Sent by every client right after connecting (e.g. `PASS secret`).
    pub greeting: Option<String>,
    /// After the last line is sent, how long to wait without progress before counting the
    /// missing lines as lost.
    pub settle: Duration,
    /// While lines are still being sent, how long without a single delivery before the run
    /// stops and counts the server as stalled.
    pub stall: Duration,
    /// TCP lines or WebSocket frames.
    pub transport: Transport,
    /// Instead of sending, hold the clients connected and silent this long (to measure the
    /// server's memory per idle client); the report counts who stayed.
    pub idle: Option<Duration>,
    /// The server's process, whose CPU time over the measured part the report gives beside
    /// the generator's own (Linux, `/proc/PID/stat`), to tell which side set the rate.
    pub server_pid: Option<u32>,
}

impl Default for ChatLoad {
    fn default() -> Self {
        Self {
            clients: 100,
            senders: 10,
            messages: 1000,
            rate: 0.0,
            size: 64,
            greeting: None,
            settle: Duration::from_secs(2),
            stall: Duration::from_secs(10),
            transport: Transport::Lines,
            idle: None,
            server_pid: None,
        }
    }
}

/// Why a chat run failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ChatBenchError {
    /// A client could not connect (directly, through the proxy or the socket).
    #[error("client {index} could not connect to {addr}")]
    Connect {
        /// Which client.
        index: usize,
        /// The server.
        addr: HostPort,
        /// What failed.
        #[source]
        source: NetError,
    },
    /// A client connected, but its WebSocket handshake failed.
    #[error("client {index} could not open a WebSocket at {addr}")]
    WebSocket {
        /// Which client.
        index: usize,
        /// The server.
        addr: HostPort,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// No server address was given.
    #[error("no chat server address given")]
    NoAddress,
    /// The server process named to be measured cannot be read.
    #[error(transparent)]
    ServerProcess(#[from] NoSuchProcess),
}

/// Counts of one receiver.
#[derive(Debug, Default)]
struct Tally {
    delivered: u64,
    duplicated: u64,
    reordered: u64,
    malformed: u64,
    disconnected: bool,
    /// Flood-control notices (`* … slow down …`) received while the load ran.
    flood_notices: u64,
    /// Every server notice (`* …`) received while the load ran, by text, the first few texts.
    notices: Vec<(String, u64)>,
}

/// Distinct notice texts a receiver keeps; more are counted under the last one.
const NOTICE_TEXTS: usize = 6;

impl Tally {
    fn notice(&mut self, text: &str) {
        if is_flood_notice(text) {
            self.flood_notices += 1;
        }
        if let Some((_, count)) = self.notices.iter_mut().find(|(t, _)| t == text) {
            *count += 1;
        } else if self.notices.len() < NOTICE_TEXTS {
            self.notices.push((text.to_owned(), 1));
        } else if let Some((_, count)) = self.notices.last_mut() {
            *count += 1;
        }
    }
}

/// A server's system line: `* ` then text.
fn notice_text(line: &[u8]) -> Option<String> {
    line.strip_prefix(b"* ")
        .map(|text| format!("* {}", String::from_utf8_lossy(text)))
}

/// Flood control says so with a notice that contains `slow down`.
fn is_flood_notice(text: &str) -> bool {
    text.to_ascii_lowercase().contains("slow down")
}

/// Per-sender bookkeeping of one receiver: a bit per line (sender after sender, in one
/// vector) and the highest sequence number seen.
struct Seen {
    bits: Vec<u64>,
    words_per_sender: usize,
    highest: Vec<Option<u64>>,
}

impl Seen {
    fn new(senders: usize, messages: u64) -> Self {
        let words_per_sender = messages.div_ceil(64) as usize;
        Self {
            bits: vec![0; words_per_sender * senders],
            words_per_sender,
            highest: vec![None; senders],
        }
    }
}

/// Latencies of one read not yet in the histogram: equal latencies in a row are one entry.
/// A sender stamps a batch of lines with one time and a read has one clock reading, so the
/// lines of a batch arrive with one latency, recorded once with their count (exactly as many
/// samples, one histogram update).
#[derive(Debug, Default)]
struct Pending {
    micros: u64,
    count: u64,
}

/// How far (in bytes of lines, prefixes included) senders may run ahead of the slowest
/// receiver: a quarter of a server's usual 1 MiB per-client queue, and plenty to keep every
/// queue busy.
pub const WINDOW_BYTES: usize = 256 * 1024;

/// Lines written by each sender and lines received by each client, so senders can stay
/// within the window of the slowest receiver.
struct Flow {
    sent: Vec<AtomicU64>,
    received: Vec<AtomicU64>,
    window_lines: u64,
}

impl Flow {
    /// `overhead` is what the server adds to each line it queues (a prefix like
    /// `<guest-123> `, a JSON envelope).
    fn new(senders: usize, clients: usize, size: usize, overhead: usize) -> Self {
        Self {
            sent: (0..senders).map(|_| AtomicU64::new(0)).collect(),
            received: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            window_lines: (WINDOW_BYTES / (size + 1 + overhead)).max(1) as u64,
        }
    }

    /// Whether `lines` more can be sent without any receiver falling further behind than
    /// the window.
    fn has_room(&self, lines: u64) -> bool {
        let sent: Vec<u64> = self
            .sent
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect();
        let total: u64 = sent.iter().sum();
        self.received.iter().enumerate().all(|(index, received)| {
            // Nobody receives its own lines.
            let expected = total - sent.get(index).copied().unwrap_or(0);
            expected.saturating_sub(received.load(Ordering::Relaxed)) + lines <= self.window_lines
        })
    }

    /// Waits (bounded only by the run's own limit) until `lines` more fit the window.
    async fn until_room(&self, lines: u64) {
        while !self.has_room(lines) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Runs `load` against the chat server at `addrs`, connecting directly; see [`run_via`],
/// which takes a route (proxy, Unix socket, source address).
///
/// # Errors
///
/// As [`run_via`].
pub async fn run(
    addrs: &[SocketAddr],
    load: &ChatLoad,
    limit: Duration,
    live: &crate::bench::Progress,
) -> Result<Report, ChatBenchError> {
    let targets: Vec<HostPort> = addrs
        .iter()
        .map(|addr| HostPort::new(Some(addr.ip().to_string()), addr.port()))
        .collect();
    run_via(&targets, &DialOptions::default(), load, limit, live).await
}

/// Runs `load` against the chat server at `addrs` (client `i` connects to
/// `addrs[i % len]`: the nodes of one cluster share the clients), reached by `route`
/// (directly, through a proxy or over a Unix socket); the whole run is bounded by `limit`.
///
/// # Errors
///
/// [`ChatBenchError::Connect`] when a client cannot connect, [`ChatBenchError::WebSocket`]
/// when its WebSocket handshake fails. Lines lost, duplicated or
/// reordered, and a server that stalls, are not errors of the run: the report lists them
/// in [`Report::problems`], next to the server's notices.
pub async fn run_via(
    addrs: &[HostPort],
    route: &DialOptions,
    load: &ChatLoad,
    limit: Duration,
    live: &crate::bench::Progress,
) -> Result<Report, ChatBenchError> {
    let Some(first) = addrs.first() else {
        return Err(ChatBenchError::NoAddress);
    };
    let cpu = CpuWatch::new(load.server_pid)?;
    let deadline = Instant::now() + limit;
    let epoch = Instant::now();
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16)
        });
    let senders = load.senders.min(load.clients);
    let pad = load.size.saturating_sub(MIN_LINE_BYTES);

    let mut writers = Vec::with_capacity(load.clients);
    let mut readers = JoinSet::new();
    // Deliveries so far, shared with whoever shows live progress.
    let progress = live.counter();
    let received_bytes = Arc::new(AtomicU64::new(0));
    let greeted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let last_delivery = Arc::new(AtomicU64::new(0));
    let flow = Arc::new(Flow::new(
        senders,
        load.clients,
        load.size.max(MIN_LINE_BYTES),
        load.transport.overhead_bytes(),
    ));
    let stop = CancellationToken::new();
    let timeline = Timeline::new(epoch, load.rate > 0.0);
    let is_measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for index in 0..load.clients {
        let addr = addrs.get(index % addrs.len()).unwrap_or(first);
        let opened =
            tokio::time::timeout_at(deadline, chat_wire::open(addr, route, &load.transport))
                .await
                .unwrap_or_else(|_| {
                    Err(OpenError::Dial(NetError::Timeout {
                        what: format!("connecting to {addr}"),
                        after: limit,
                    }))
                });
        let (mut writer, reader) = opened.map_err(|error| match error {
            OpenError::Dial(source) => ChatBenchError::Connect {
                index,
                addr: addr.clone(),
                source,
            },
            OpenError::WebSocket(source) => ChatBenchError::WebSocket {
                index,
                addr: addr.clone(),
                source,
            },
        })?;
        if let Some(greeting) = &load.greeting {
            let _ = writer.greet(greeting).await;
        }
        writers.push(writer);
        let receiver = Receiver {
            index,
            shape: LineShape::new(run_id, pad),
            senders,
            messages: load.messages,
            epoch,
            progress: progress.clone(),
            received_bytes: received_bytes.clone(),
            greeted: greeted.clone(),
            last_delivery: last_delivery.clone(),
            flow: flow.clone(),
            is_measuring: is_measuring.clone(),
            recorder: Recorder::new(timeline.clone()),
        };
        readers.spawn(receiver.run(reader, stop.clone()));
    }

    // Let the joins' notices settle so they do not count against the measured part, and
    // make sure every client is in the room (it was greeted) before anyone sends; a server
    // that has not greeted everyone gets a longer quiet period: it may greet nobody, or
    // greet silent clients of a burst only after a while (sockit gives a burst up to 2 s to
    // send an HTTP request first).
    let mut quiet_since = (Instant::now(), received_bytes.load(Ordering::Relaxed));
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now_bytes = received_bytes.load(Ordering::Relaxed);
        let is_everyone_in = greeted.load(Ordering::Relaxed) == load.clients;
        let quiet = if is_everyone_in { 300 } else { 3000 };
        if now_bytes != quiet_since.1 {
            quiet_since = (Instant::now(), now_bytes);
        } else if quiet_since.0.elapsed() >= Duration::from_millis(quiet) {
            break;
        }
    }

    if let Some(hold) = load.idle {
        return Ok(hold_idle(load, hold, deadline, writers, readers, stop).await);
    }

    let start = Instant::now();
    let cpu_at_start = cpu.mark();
    is_measuring.store(true, Ordering::Relaxed);
    let timer = (load.rate > 0.0).then(FineTimer::start);
    let mut sending = JoinSet::new();
    let mut idle_writers = Vec::new();
    for (index, writer) in writers.into_iter().enumerate() {
        if index < senders {
            let line = Stamp {
                sender: index as u32,
                run: run_id,
                epoch,
            };
            let pace = timer
                .clone()
                .map(|timer| Pace::new(start, load.rate, senders, index, timer));
            sending.spawn(send_lines(
                writer,
                line,
                pace,
                Recorder::new(timeline.clone()),
                load.clone(),
                flow.clone(),
            ));
        } else {
            idle_writers.push(writer);
        }
    }
    let expected = senders as u64 * load.messages * (load.clients as u64 - 1);
    let mut senders_done_at = None;
    let mut last_progress = (Instant::now(), 0);
    let mut is_stalled = false;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Finished senders stay connected: closing would end their receiving side too.
        while let Some(done) = sending.try_join_next() {
            if let Ok(writer) = done {
                idle_writers.push(writer);
            }
        }
        if sending.is_empty() && senders_done_at.is_none() {
            senders_done_at = Some(Instant::now());
        }
        let delivered = progress.load(Ordering::Relaxed);
        if delivered != last_progress.1 {
            last_progress = (Instant::now(), delivered);
        }
        if delivered >= expected || Instant::now() >= deadline {
            break;
        }
        if senders_done_at.is_some() && last_progress.0.elapsed() >= load.settle {
            break;
        }
        // Senders wait for the receivers (the window), so a server that stops delivering
        // would hold the run until its limit: past `stall` without a delivery it is over.
        if last_progress.0.elapsed() >= load.stall {
            is_stalled = true;
            break;
        }
    }
    // Nobody works after the last delivery (the loop sees it within 20 ms), so the time to
    // here is the measured part's.
    let cpu_at_end = cpu.mark();
    stop.cancel();
    sending.abort_all();
    let mut total = Tally::default();
    let mut disconnected = 0;
    while let Some(tally) = readers.join_next().await {
        let Ok(tally) = tally else { continue };
        total.flood_notices += tally.flood_notices;
        for (text, count) in tally.notices {
            match total.notices.iter().position(|(t, _)| *t == text) {
                Some(at) => total.notices[at].1 += count,
                None if total.notices.len() < NOTICE_TEXTS => total.notices.push((text, count)),
                None => {}
            }
        }
        total.delivered += tally.delivered;
        total.duplicated += tally.duplicated;
        total.reordered += tally.reordered;
        total.malformed += tally.malformed;
        disconnected += u64::from(tally.disconnected);
    }
    drop(idle_writers);
    let timed_out = Instant::now() >= deadline;
    let end = epoch + Duration::from_micros(last_delivery.load(Ordering::Relaxed));
    let elapsed = if total.delivered == 0 {
        start.elapsed()
    } else {
        end.saturating_duration_since(start)
    };
    let mode = if load.rate > 0.0 {
        format!("{} lines/s in all", load.rate)
    } else {
        "flat out".to_owned()
    };
    let name = format!(
        "chat deliveries: {} clients, {} senders × {} lines, {mode}",
        load.clients, senders, load.messages
    );
    let lost = expected.saturating_sub(total.delivered);
    let mut report = Report::new(
        name,
        elapsed,
        total.delivered,
        total.delivered * (load.size as u64 + 1),
        None,
    )
    .with_timeline(&timeline, (load.rate > 0.0).then_some(load.rate))
    .with_counter("expected", expected)
    .with_counter("lost", lost)
    .with_counter("duplicated", total.duplicated)
    .with_counter("reordered", total.reordered)
    .with_counter("malformed", total.malformed)
    .with_counter("disconnected", disconnected)
    .with_counter("flood notices", total.flood_notices)
    .with_problem_if(lost, &format!("of {expected} lines lost"))
    .with_problem_if(total.duplicated, "lines duplicated")
    .with_problem_if(total.reordered, "lines reordered")
    .with_problem_if(total.malformed, "lines malformed (cut or spliced)")
    .with_problem_if(disconnected, "clients disconnected by the server")
    .with_cpu(cpu_at_start.until(&cpu_at_end, elapsed));
    if let Some(used) = report.cpu
        && load.rate == 0.0
    {
        let cores = tokio::runtime::Handle::current().metrics().num_workers();
        if used.generator_share >= 0.9 * cores as f64 {
            report.warnings.push(format!(
                "the load generator used {:.0}% of {}: the rate is likely its limit, not the \
                 server's",
                used.generator_share * 100.0,
                if cores == 1 {
                    "its core".to_owned()
                } else {
                    format!("{cores} cores")
                }
            ));
        }
    }
    if is_stalled {
        report.problems.push(format!(
            "the server stalled: nothing delivered for {:?}",
            load.stall
        ));
    } else if timed_out && lost > 0 {
        report
            .problems
            .push(format!("the run hit its limit of {limit:?}"));
    }
    if total.flood_notices > 0 && !report.problems.is_empty() {
        report.problems.push(format!(
            "the server's flood control answered {} times (see its notices): \
             pace the senders with --rate",
            total.flood_notices
        ));
    }
    report.notices = total.notices;
    Ok(report)
}

/// Who stamps a sender's lines, and the clock their times count from.
struct Stamp {
    sender: u32,
    run: u32,
    epoch: Instant,
}

/// Holds the connected clients silent for `hold` (within `deadline`); reports how many the
/// server kept.
async fn hold_idle(
    load: &ChatLoad,
    hold: Duration,
    deadline: Instant,
    writers: Vec<Writer>,
    mut readers: JoinSet<Tally>,
    stop: CancellationToken,
) -> Report {
    tokio::time::sleep_until((Instant::now() + hold).min(deadline)).await;
    stop.cancel();
    let mut disconnected = 0;
    while let Some(tally) = readers.join_next().await {
        disconnected += u64::from(tally.is_ok_and(|t| t.disconnected));
    }
    drop(writers);
    let clients = load.clients as u64;
    Report::new(
        format!("chat idle: {clients} clients held silent for {hold:?}"),
        hold,
        clients - disconnected,
        0,
        None,
    )
    .with_counter("clients", clients)
    .with_counter("disconnected", disconnected)
    .with_problem_if(disconnected, "clients disconnected by the server")
}

async fn send_lines(
    mut writer: Writer,
    stamp: Stamp,
    mut pace: Option<Pace>,
    mut recorder: Recorder,
    load: ChatLoad,
    flow: Arc<Flow>,
) -> Writer {
    let Stamp { sender, run, epoch } = stamp;
    let size = load.size.max(MIN_LINE_BYTES);
    let mut out = Vec::with_capacity(32 * (size + 1));
    let mut seq = 0;
    let mut free_since = Instant::now();
    while seq < load.messages {
        out.clear();
        // Flat out: a batch per write, as a busy client would; paced: one line each time.
        let most = if pace.is_some() { 1 } else { 32 };
        let batch = (load.messages - seq).min(most);
        let due = match &mut pace {
            Some(pace) => {
                let sent = pace.next(free_since).await;
                recorder.sent(&sent);
                sent.due
            }
            None => Instant::now(),
        };
        flow.until_room(batch).await;
        // Paced, a line is stamped with when it was due: a write held up by the window or a
        // slow socket counts in its latency, as the server's.
        let micros = due.saturating_duration_since(epoch).as_micros() as u64;
        for _ in 0..batch {
            if seq == load.messages {
                break;
            }
            write_line(
                &mut out,
                size,
                Token {
                    run,
                    sender,
                    seq,
                    micros,
                },
            );
            seq += 1;
        }
        flow.sent[sender as usize].fetch_add(batch, Ordering::Relaxed);
        if !writer.send_lines(&out).await {
            break;
        }
        free_since = Instant::now();
    }
    writer
}

struct Receiver {
    index: usize,
    shape: LineShape,
    senders: usize,
    messages: u64,
    epoch: Instant,
    progress: Arc<AtomicU64>,
    received_bytes: Arc<AtomicU64>,
    /// Clients that received anything at all (the server has them in the room).
    greeted: Arc<std::sync::atomic::AtomicUsize>,
    last_delivery: Arc<AtomicU64>,
    flow: Arc<Flow>,
    /// Set once the senders start: notices before that (joins) are not the load's.
    is_measuring: Arc<std::sync::atomic::AtomicBool>,
    recorder: Recorder,
}

impl Receiver {
    async fn run(mut self, mut reader: Reader, stop: CancellationToken) -> Tally {
        let mut tally = Tally::default();
        let mut seen = Seen::new(self.senders, self.messages);
        let mut is_greeted = false;
        // One wait for the stop, not one per read: each registers with the token.
        let stopped = stop.cancelled();
        tokio::pin!(stopped);
        loop {
            let read = tokio::select! {
                biased;
                _ = &mut stopped => break,
                read = reader.wait() => read,
            };
            let Some(n) = read else {
                tally.disconnected = true;
                // Gone: senders no longer wait for it.
                self.flow.received[self.index].store(u64::MAX, Ordering::Relaxed);
                break;
            };
            if !is_greeted {
                is_greeted = true;
                self.greeted.fetch_add(1, Ordering::Relaxed);
            }
            self.hear(&mut reader, n, Instant::now(), &mut tally, &mut seen);
            // One read per turn: with many busy clients on one thread, a receiver that keeps
            // reading would make the others fall behind.
            tokio::task::yield_now().await;
        }
        tally
    }

    /// Takes what `reader` holds after a read of `n` bytes at `read_at`: checks its lines,
    /// records their latencies, and counts them for the progress and the senders' window.
    fn hear(
        &mut self,
        reader: &mut Reader,
        n: usize,
        read_at: Instant,
        tally: &mut Tally,
        seen: &mut Seen,
    ) {
        let now = read_at.saturating_duration_since(self.epoch).as_micros() as u64;
        let before = (tally.delivered, tally.malformed);
        let mut pending = Pending::default();
        let extra = reader.drain(|heard| match heard {
            Heard::Line(line) => {
                let found = self.shape.find(line);
                self.check(line, found, (now, read_at), tally, seen, &mut pending);
            }
            Heard::Lines(mut lines) => {
                while !lines.is_empty() {
                    let (line, rest, quick) = self.shape.first_line(lines);
                    let found = quick.map_or_else(|| self.shape.find(line), Found::Token);
                    self.check(line, found, (now, read_at), tally, seen, &mut pending);
                    lines = rest;
                }
            }
            Heard::Notice(text) => {
                if self.is_measuring.load(Ordering::Relaxed) {
                    tally.notice(&format!("* {text}"));
                }
            }
        });
        self.record(&pending, read_at);
        self.received_bytes
            .fetch_add((n + extra) as u64, Ordering::Relaxed);
        if tally.delivered > before.0 {
            self.progress
                .fetch_add(tally.delivered - before.0, Ordering::Relaxed);
            self.last_delivery.fetch_max(now, Ordering::Relaxed);
        }
        // Malformed lines count as received too (a server that splices lines must not
        // stall the senders).
        let counted = tally.delivered + tally.malformed - before.0 - before.1;
        if counted > 0 {
            self.flow.received[self.index].fetch_add(counted, Ordering::Relaxed);
        }
    }

    /// Records `pending` latencies as seen at `at`.
    fn record(&mut self, pending: &Pending, at: Instant) {
        if pending.count > 0 {
            self.recorder
                .done_many_after(Duration::from_micros(pending.micros), pending.count, at);
        }
    }

    /// Counts `line`, which holds what `found` says. `now` is when the read was seen, in µs
    /// since the epoch and as an instant; the line's latency joins `pending`, which goes to
    /// the histogram when another latency comes.
    fn check(
        &mut self,
        line: &[u8],
        found: Found,
        (now, read_at): (u64, Instant),
        tally: &mut Tally,
        seen: &mut Seen,
        pending: &mut Pending,
    ) {
        let token = match found {
            Found::Nothing => {
                if let Some(text) = notice_text(line)
                    && self.is_measuring.load(Ordering::Relaxed)
                {
                    tally.notice(&text);
                }
                return;
            }
            Found::Malformed => {
                tally.malformed += 1;
                return;
            }
            Found::Token(token) => token,
        };
        let sender = token.sender as usize;
        // Old runs (history replay), our own lines and impossible numbers are not deliveries.
        if token.run != self.shape.run()
            || sender == self.index
            || sender >= self.senders
            || token.seq >= self.messages
        {
            return;
        }
        let (word, bit) = ((token.seq / 64) as usize, token.seq % 64);
        let bits = &mut seen.bits[sender * seen.words_per_sender + word];
        if *bits & (1 << bit) != 0 {
            tally.duplicated += 1;
            return;
        }
        *bits |= 1 << bit;
        let highest = &mut seen.highest[sender];
        if highest.is_some_and(|h| token.seq < h) {
            tally.reordered += 1;
        }
        *highest = Some(highest.map_or(token.seq, |h| h.max(token.seq)));
        tally.delivered += 1;
        let micros = now.saturating_sub(token.micros);
        if pending.count > 0 && pending.micros != micros {
            self.record(pending, read_at);
            pending.count = 0;
        }
        pending.micros = micros;
        pending.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Latency;

    const RUN: u32 = 0x5eed;
    const PAD: usize = 64 - MIN_LINE_BYTES;

    /// Receiver 0 of a run of 3 senders × 10 lines, its clock at `epoch`.
    fn receiver(epoch: Instant, timeline: &Arc<Timeline>) -> Receiver {
        Receiver {
            index: 0,
            shape: LineShape::new(RUN, PAD),
            senders: 3,
            messages: 10,
            epoch,
            progress: Arc::default(),
            received_bytes: Arc::default(),
            greeted: Arc::default(),
            last_delivery: Arc::default(),
            flow: Arc::new(Flow::new(3, 4, 64, 32)),
            is_measuring: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            recorder: Recorder::new(timeline.clone()),
        }
    }

    /// A line as a server relays it: a nick prefix, then the sender's line.
    fn relayed(out: &mut Vec<u8>, run: u32, sender: u32, seq: u64, micros: u64) {
        out.extend_from_slice(format!("<guest-{sender}> ").as_bytes());
        let token = Token {
            run,
            sender,
            seq,
            micros,
        };
        write_line(out, 64, token);
    }

    /// Feeds `reads` to a fresh receiver as separate reads, all seen 1 s after the epoch;
    /// returns its tally, what it saw and the latencies it recorded.
    fn hear_reads(reads: &[&[u8]]) -> (Tally, Seen, Latency) {
        let epoch = Instant::now();
        let timeline = Timeline::new(epoch, false);
        let mut receiver = receiver(epoch, &timeline);
        let mut reader = Reader::Lines {
            half: Box::new(tokio::io::empty()),
            buf: bytes::BytesMut::new(),
        };
        let (mut tally, mut seen) = (Tally::default(), Seen::new(3, 10));
        for read in reads {
            let Reader::Lines { buf, .. } = &mut reader else {
                unreachable!()
            };
            buf.extend_from_slice(read);
            let at = epoch + Duration::from_secs(1);
            receiver.hear(&mut reader, read.len(), at, &mut tally, &mut seen);
        }
        assert_eq!(
            receiver.flow.received[0].load(Ordering::Relaxed),
            tally.delivered + tally.malformed,
            "the window counts every line taken"
        );
        drop(receiver);
        let mut latency = Latency::new();
        for second in timeline.take().0 {
            latency.merge(&second.corrected);
        }
        (tally, seen, latency)
    }

    #[test]
    fn lines_cut_anywhere_between_reads_count_once_with_every_latency() {
        let mut bytes = Vec::new();
        relayed(&mut bytes, RUN, 1, 0, 999_000);
        relayed(&mut bytes, RUN, 1, 1, 999_000);
        bytes.extend_from_slice(b"* carol joined #lobby\n");
        relayed(&mut bytes, RUN, 2, 0, 998_500);
        relayed(&mut bytes, RUN, 1, 2, 999_500);
        for cut in 0..=bytes.len() {
            let (tally, seen, latency) = hear_reads(&[&bytes[..cut], &bytes[cut..]]);
            let counts = (tally.delivered, tally.malformed, tally.duplicated);
            assert_eq!(counts, (4, 0, 0), "cut at {cut}");
            assert_eq!(tally.reordered, 0);
            assert_eq!(tally.notices, [("* carol joined #lobby".to_owned(), 1)]);
            assert_eq!(seen.highest, [None, Some(2), Some(0)]);
            // Two lines 1 ms old, one 1.5 ms, one 0.5 ms: each one sample.
            assert_eq!(latency.count(), 4, "cut at {cut}");
            assert_eq!(latency.quantile(0.5), Duration::from_millis(1));
            assert_eq!(latency.quantile(0.0), Duration::from_micros(500));
            assert_eq!(latency.quantile(1.0), Duration::from_micros(1500));
        }
    }

    #[test]
    fn duplicates_reorders_and_gaps_are_counted_exactly() {
        let mut bytes = Vec::new();
        for seq in [0, 1, 1, 4, 2, 2, 5] {
            relayed(&mut bytes, RUN, 1, seq, 999_000);
        }
        let (tally, seen, latency) = hear_reads(&[&bytes]);
        assert_eq!(tally.delivered, 5, "0, 1, 4, 2, 5");
        assert_eq!(tally.duplicated, 2);
        assert_eq!(tally.reordered, 1, "2 after 4");
        assert_eq!(seen.bits[seen.words_per_sender], 0b11_0111, "3 never came");
        assert_eq!(latency.count(), 5, "duplicates have no latency");
    }

    #[test]
    fn spliced_cut_and_foreign_lines_are_not_deliveries() {
        let mut whole = Vec::new();
        relayed(&mut whole, RUN, 1, 0, 999_000);
        let mut bytes = Vec::new();
        // A chunk relayed into the middle of another line (a server relaying reads).
        bytes.extend_from_slice(&whole[..20]);
        relayed(&mut bytes, RUN, 2, 0, 999_000);
        // A line cut short, one with damaged padding, one with a damaged number.
        bytes.extend_from_slice(&whole[..whole.len() - 5]);
        bytes.push(b'\n');
        let mut padding = whole.clone();
        padding[25] = b'y';
        bytes.extend_from_slice(&padding);
        let mut number = whole.clone();
        let at = number.len() - 3;
        number[at] = b'z';
        bytes.extend_from_slice(&number);
        // Not deliveries, not damage: another run, its own line, a sender or a line number
        // out of range.
        relayed(&mut bytes, RUN + 1, 1, 1, 999_000);
        relayed(&mut bytes, RUN, 0, 1, 999_000);
        relayed(&mut bytes, RUN, 3, 1, 999_000);
        relayed(&mut bytes, RUN, 1, 10, 999_000);
        // The whole line still counts.
        bytes.extend_from_slice(&whole);
        let (tally, seen, latency) = hear_reads(&[&bytes]);
        assert_eq!(tally.malformed, 4);
        assert_eq!(tally.delivered, 1);
        assert_eq!(seen.highest, [None, Some(0), None]);
        assert_eq!(latency.count(), 1);
    }

    #[test]
    fn senders_stay_within_the_window_of_the_slowest_receiver() {
        let flow = Flow::new(2, 3, 64, 32);
        let window = flow.window_lines;
        assert!(flow.has_room(window));
        flow.sent[0].store(window, Ordering::Relaxed);
        // Client 0 does not receive its own lines; 1 and 2 have received nothing yet.
        assert!(!flow.has_room(1));
        flow.received[1].store(window, Ordering::Relaxed);
        assert!(!flow.has_room(1), "client 2 is still behind");
        flow.received[2].store(u64::MAX, Ordering::Relaxed);
        assert!(flow.has_room(1), "a client that left is not waited for");
    }
}
