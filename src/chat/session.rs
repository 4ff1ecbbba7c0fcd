//! One connected client: a single task owns its socket, reads and handles its lines, and
//! writes its queue, both at once. Consecutive chat lines from one read are published as one
//! shared buffer, so a burst costs the hub one fan-out instead of one per line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::chat::command::{Command, Input, parse};
use crate::chat::hub::{ClientId, Departure, Hub, notice};
use crate::chat::line::{Incoming, LineDecoder};
use crate::chat::outbox::{Outbox, write_all_queued};
use crate::chat::{Config, Password};
use crate::net::BoxStream;
use crate::net::line::MESSAGE_PAUSE;

/// Bytes asked of a read while a client is quiet: idle clients cost little memory.
const SMALL_READ_BYTES: usize = 1024;
/// Bytes asked of each read while a client is busy: a burst arrives in few reads, and each
/// read is published as one shared buffer.
const BIG_READ_BYTES: usize = 32 * 1024;
/// How long the last lines (a goodbye, a shutdown notice) may take to reach a client.
const LINGER: Duration = Duration::from_secs(2);

/// A token bucket: `rate` lines per second on average, bursts of up to `burst`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket; a `rate` of zero lets everything through.
    pub(crate) fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Takes one token; `false` when the bucket is empty (the line must wait).
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl TokenBucket {
    /// How long until a token is there (zero when one is).
    pub(crate) fn time_to_token(&mut self, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        self.refill(now);
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0))
    }

    /// Whether the bucket has refilled to its burst: the sender has been calm.
    pub(crate) fn is_full(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// Why the read loop looks at its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A read of this many bytes: whole lines only.
    Read(usize),
    /// A partial line and no byte for [`MESSAGE_PAUSE`]: it is a message.
    Pause,
    /// The client closed (or half-closed): whatever is left is a message.
    Eof,
}

/// How the read side ended.
enum Ending {
    /// The client leaves the hub for this reason.
    Leave(Departure),
    /// Refused at login: never entered the hub; its last notice still goes out.
    Refused,
    /// Dropped by the hub (already removed and announced): close at once.
    Dropped,
}

struct Session {
    hub: Arc<Hub>,
    config: Arc<Config>,
    outbox: Arc<Outbox>,
    peer: SocketAddr,
    /// Set once the client is in the hub (after `PASS` when a password is required).
    me: Option<(ClientId, String)>,
    bucket: TokenBucket,
    /// Held back by flood control since its bucket was last full (told once per burst).
    is_throttled: bool,
    /// Chat lines of the current read, published together.
    pending: BytesMut,
}

/// Serves one client until it leaves, is dropped, or the server stops.
pub(crate) async fn run(
    stream: BoxStream,
    peer: SocketAddr,
    hub: Arc<Hub>,
    config: Arc<Config>,
    stop: CancellationToken,
) {
    let outbox = Arc::new(Outbox::new(config.queue));
    let now = Instant::now();
    let mut session = Session {
        bucket: TokenBucket::new(config.rate, config.burst, now),
        hub,
        config,
        outbox: outbox.clone(),
        peer,
        me: None,
        is_throttled: false,
        pending: BytesMut::new(),
    };
    let (mut reader, mut writer) = tokio::io::split(stream);
    let writing = write_all_queued(&mut writer, &outbox);
    tokio::pin!(writing);
    let mut is_written = false;
    let ending = tokio::select! {
        ending = session.read_all(&mut reader, &stop) => ending,
        result = &mut writing => {
            is_written = true;
            match result {
                Ok(()) => Ending::Leave(Departure::Closed),
                Err(err) => Ending::Leave(Departure::Lost(err.kind().to_string())),
            }
        }
        _ = outbox.killed() => Ending::Dropped,
    };
    if matches!(ending, Ending::Dropped) {
        // Its last line ("you were dropped") goes out only if the socket takes it at once.
        let _ = tokio::time::timeout(Duration::ZERO, writing).await;
        debug!("session dropped");
        return;
    }
    if let (Some((id, _)), Ending::Leave(why)) = (&session.me, &ending) {
        session.hub.leave(*id, why);
    }
    outbox.close();
    if !is_written {
        // Let the last lines (goodbye, shutdown notice) out, within a bound.
        let _ = tokio::time::timeout(LINGER, writing).await;
    }
    debug!("session ended");
}

impl Session {
    async fn read_all<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        stop: &CancellationToken,
    ) -> Ending {
        let mut decoder = LineDecoder::new(self.config.max_line_bytes);
        let mut buf = BytesMut::new();
        let mut read_bytes = SMALL_READ_BYTES;
        let login_deadline = Instant::now() + self.config.login_timeout;
        if self.config.password.is_some() {
            self.outbox
                .push(&notice("password required: send PASS <password>"));
        } else {
            self.enter();
        }
        loop {
            if buf.capacity() - buf.len() < read_bytes / 2 {
                buf.reserve(read_bytes);
            }
            let spare = (buf.capacity() - buf.len()).min(read_bytes);
            let is_partial = decoder.is_partial(&buf);
            let mut limited = (&mut buf).limit(read_bytes);
            let event = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    self.outbox.push_last(notice("server shutting down"));
                    return Ending::Leave(Departure::Shutdown);
                }
                _ = tokio::time::sleep_until(login_deadline), if self.me.is_none() => {
                    self.outbox.push_last(notice("login timed out"));
                    return Ending::Refused;
                }
                // Bounded reads bound what one publish adds to every member's queue.
                read = reader.read_buf(&mut limited) => match read {
                    Ok(0) => End::Eof,
                    Ok(n) => End::Read(n),
                    Err(err) => {
                        debug!(error = %err, "read failed");
                        return Ending::Leave(Departure::Lost(describe(&err)));
                    }
                },
                // Restarted by every read, so a line still arriving is never cut.
                _ = tokio::time::sleep(MESSAGE_PAUSE), if is_partial => End::Pause,
            };
            // A read that filled the buffer means more is waiting: read bigger.
            if event == End::Read(spare) {
                read_bytes = BIG_READ_BYTES;
            }
            loop {
                let line = match event {
                    End::Read(_) => decoder.decode(&mut buf),
                    End::Pause => decoder.decode_pause(&mut buf),
                    End::Eof => decoder.decode_eof(&mut buf),
                };
                let Some(line) = line else { break };
                if let Some(ending) = self.handle(line, stop).await {
                    self.flush();
                    return ending;
                }
            }
            self.flush();
            if event == End::Eof {
                return Ending::Leave(Departure::Closed);
            }
            // One read per turn: a sender flat out takes its share of the thread, not all
            // of it, so every member's writer gets to drain between two reads.
            tokio::task::yield_now().await;
            // After a burst, an idle client goes back to a small buffer.
            if buf.is_empty()
                && read_bytes == BIG_READ_BYTES
                && matches!(event, End::Read(n) if n < SMALL_READ_BYTES)
            {
                read_bytes = SMALL_READ_BYTES;
                buf = BytesMut::new();
            }
        }
    }

    fn enter(&mut self) {
        let (id, nick) = self.hub.enter(self.peer, self.outbox.clone());
        self.me = Some((id, nick));
    }

    /// Publishes the chat lines gathered so far.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let payload: Bytes = self.pending.split().freeze();
        if let Some((id, _)) = &self.me {
            self.hub.publish(*id, &payload);
        }
    }

    fn tell(&self, text: &str) {
        self.outbox.push(&notice(text));
    }

    /// Flood control: takes a token, or stops reading (TCP back-pressure on the sender) until
    /// one is there. The first wait of a burst tells the sender once; nothing is dropped and
    /// the order stays. `Some` when the server stops meanwhile.
    async fn wait_for_a_token(&mut self, stop: &CancellationToken) -> Option<Ending> {
        let now = Instant::now();
        if self.bucket.is_full(now) {
            self.is_throttled = false;
        }
        if self.bucket.take(now) {
            return None;
        }
        // What was gathered before this line goes out now, not after the wait.
        self.flush();
        if !self.is_throttled {
            self.is_throttled = true;
            self.tell(&format!(
                "slow down: more than {} lines at once; the rest are taken at {} lines per second",
                self.config.burst, self.config.rate
            ));
        }
        loop {
            let wait = self.bucket.time_to_token(Instant::now());
            tokio::select! {
                _ = stop.cancelled() => {
                    self.outbox.push_last(notice("server shutting down"));
                    return Some(Ending::Leave(Departure::Shutdown));
                }
                _ = tokio::time::sleep(wait) => {}
            }
            if self.bucket.take(Instant::now()) {
                return None;
            }
        }
    }

    /// Handles one line; `Some` ends the session.
    async fn handle(&mut self, line: Incoming, stop: &CancellationToken) -> Option<Ending> {
        let Incoming::Line(text) = line else {
            warn!(peer = %self.peer, limit = self.config.max_line_bytes, "line too long");
            self.tell(&format!(
                "line too long (at most {} bytes); not sent",
                self.config.max_line_bytes
            ));
            return None;
        };
        let Some((id, nick)) = self.me.clone() else {
            return self.login(&text);
        };
        let input = match parse(&text) {
            Ok(input) => input,
            Err(err) => {
                self.tell(&err.to_string());
                return None;
            }
        };
        let is_costly = match &input {
            Input::Say(text) if text.trim().is_empty() => return None,
            Input::Say(_) | Input::Command(Command::Me(_) | Command::Msg { .. }) => true,
            _ => false,
        };
        if is_costly && let Some(ending) = self.wait_for_a_token(stop).await {
            return Some(ending);
        }
        let command = match input {
            Input::Say(text) => {
                self.pending.reserve(nick.len() + text.len() + 4);
                self.pending.extend_from_slice(b"<");
                self.pending.extend_from_slice(nick.as_bytes());
                self.pending.extend_from_slice(b"> ");
                self.pending.extend_from_slice(text.as_bytes());
                self.pending.extend_from_slice(b"\n");
                return None;
            }
            Input::Command(command) => command,
        };
        // Commands see (and change) the world after the lines before them.
        self.flush();
        match command {
            Command::Me(action) => {
                self.hub
                    .publish(id, &Bytes::from(format!("* {nick} {action}\n")));
            }
            Command::Nick(wanted) => {
                if let Some(new) = self.hub.rename(id, &wanted) {
                    self.me = Some((id, new));
                }
            }
            Command::Join(room) => self.hub.join(id, &room),
            Command::Rooms => self.hub.rooms(id),
            Command::Who => self.hub.who(id),
            Command::Msg { nick: to, text } => self.hub.private(id, &to, &text),
            Command::History(n) => self.hub.history(id, n),
            Command::Help => self.hub.help(id),
            Command::Quit(reason) => {
                self.outbox.push_last(notice("bye"));
                return Some(Ending::Leave(Departure::Quit(reason)));
            }
        }
        None
    }

    /// The first line when a password is required.
    fn login(&mut self, line: &str) -> Option<Ending> {
        let given = line.strip_prefix("PASS ").map(str::trim);
        match (&self.config.password, given) {
            (Some(password), Some(given)) if password.matches(given) => {
                self.enter();
                None
            }
            _ => {
                warn!(peer = %self.peer, "wrong or missing password");
                self.outbox.push_last(notice("wrong password"));
                Some(Ending::Refused)
            }
        }
    }
}

fn describe(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        std::io::ErrorKind::BrokenPipe => "connection broken".into(),
        std::io::ErrorKind::TimedOut => "timed out".into(),
        _ => "connection lost".into(),
    }
}

impl Password {
    /// Compares in time that does not depend on where the strings differ.
    pub(crate) fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_bursts_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3.0, start);
        assert!((0..3).all(|_| bucket.take(start)));
        assert!(!bucket.take(start));
        assert!(bucket.take(start + Duration::from_millis(100)));
        assert!(!bucket.take(start + Duration::from_millis(110)));
        assert!(bucket.time_to_token(start + Duration::from_millis(110)) > Duration::ZERO);
        assert!(!bucket.is_full(start + Duration::from_millis(110)));
        // Idle time refills up to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        assert!((0..3).all(|_| bucket.take(later)));
        assert!(!bucket.take(later));
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(0.0, 0.0, now);
        assert!((0..10_000).all(|_| bucket.take(now)));
    }

    #[test]
    fn password_comparison() {
        let p = Password("secret".into());
        assert!(p.matches("secret"));
        assert!(!p.matches("secreT"));
        assert!(!p.matches("secret2"));
        assert!(!p.matches(""));
        assert_eq!(format!("{p:?}"), "<redacted>");
    }
}
