//! What a member says, whatever its transport: login, flood control, commands and chat lines,
//! handed to the hub. The line session (`session`) and the WebSocket session (`web::socket`)
//! only frame bytes and feed clean lines here; [`converse`] runs either one beside its writer.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::chat::command::{Command, Input, parse};
use crate::chat::framing::{Event, Framing, LineKind, RoomLine, close_frame};
use crate::chat::hub::{ClientId, Departure, Entry, Hub};
use crate::chat::outbox::{Outbox, write_all_queued};
use crate::chat::{Config, Password};

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

/// How a member's read side ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The member leaves the hub for this reason.
    Leave(Departure),
    /// Refused at login: never entered the hub; its last words still go out.
    Refused,
    /// Dropped by the hub (already removed and announced): close at once.
    Dropped,
}

/// WebSocket close codes the server sends (RFC 6455 §7.4.1).
pub(crate) mod close {
    /// The conversation is over (`/quit`, the client closed).
    pub(crate) const NORMAL: u16 = 1000;
    /// The server is going down, or the client stopped answering pings.
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// A frame broke the protocol (an unmasked client frame, a bad opcode…).
    pub(crate) const PROTOCOL: u16 = 1002;
    /// A text frame that is not UTF-8.
    pub(crate) const INVALID_DATA: u16 = 1007;
    /// A policy refusal: wrong password, login timed out, too slow a reader.
    pub(crate) const POLICY: u16 = 1008;
    /// A message over the size limit (`--max-line`).
    pub(crate) const TOO_BIG: u16 = 1009;
}

/// One member's side of the chat, whatever its framing.
pub(crate) struct Talker {
    pub(crate) hub: Arc<Hub>,
    pub(crate) config: Arc<Config>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) peer: SocketAddr,
    framing: Framing,
    /// Set once the member is in the hub (after its password when one is required).
    me: Option<(ClientId, String)>,
    /// In the hub but not seen there yet: it has said nothing so far.
    is_listening: bool,
    bucket: TokenBucket,
    /// Held back by flood control since its bucket was last full (told once per burst).
    is_throttled: bool,
    /// Chat lines not yet published: consecutive lines of one read go out together.
    pending: BytesMut,
}

impl Talker {
    pub(crate) fn new(
        hub: Arc<Hub>,
        config: Arc<Config>,
        peer: SocketAddr,
        framing: Framing,
    ) -> Self {
        Self {
            outbox: Arc::new(Outbox::new(config.queue)),
            bucket: TokenBucket::new(config.rate, config.burst, Instant::now()),
            hub,
            config,
            peer,
            framing,
            me: None,
            is_listening: false,
            is_throttled: false,
            pending: BytesMut::new(),
        }
    }

    /// Whether the member is in the hub.
    pub(crate) fn has_entered(&self) -> bool {
        self.me.is_some()
    }

    /// Enters the hub with what the member asked for; the nick asked for is claimed across
    /// nodes first (with `--cluster`).
    pub(crate) async fn enter(&mut self, mut entry: Entry) {
        if let Some(nick) = entry.nick.take() {
            match self.hub.bus().claim(&nick).await {
                Ok(true) => entry.nick = Some(nick),
                Ok(false) => entry.refusal = Some(format!("the nickname {nick} is taken")),
                Err(why) => entry.refusal = Some(format!("cannot claim {nick} now: {why}")),
            }
        }
        self.is_listening = entry.is_listening;
        let (id, nick) = self
            .hub
            .enter(self.peer, self.outbox.clone(), self.framing, entry);
        self.me = Some((id, nick));
    }

    /// The member said its first line: the room sees it from now on.
    pub(crate) fn speak_up(&mut self) {
        if let (true, Some((id, _))) = (self.is_listening, &self.me) {
            self.hub.speak_up(*id);
            self.is_listening = false;
        }
    }

    /// Whether `given` is the server's password (or none is required).
    pub(crate) fn is_password(&self, given: Option<&str>) -> bool {
        match (&self.config.password, given) {
            (None, _) => true,
            (Some(password), Some(given)) => password.matches(given),
            (Some(_), None) => false,
        }
    }

    /// Queues `event` for this member alone.
    pub(crate) fn tell(&self, event: &Event<'_>) {
        if let Some(bytes) = self.framing.render(event) {
            self.outbox.push(&bytes);
        }
    }

    fn notice(&self, text: &str) {
        self.tell(&Event::Notice { text, room: None });
    }

    fn error(&self, text: &str) {
        self.tell(&Event::Error { text, code: None });
    }

    /// Queues the member's last event whatever the limits, then (WebSocket) a close frame
    /// with `code`: nothing is queued after it.
    pub(crate) fn last_words(&self, event: &Event<'_>, code: u16) {
        let text = match event {
            Event::Notice { text, .. } | Event::Error { text, .. } => text,
            _ => "",
        };
        let mut last = self.framing.render(event).unwrap_or_default();
        if self.framing == Framing::WebSocket {
            last = [last, close_frame(code, text)].concat().into();
        }
        self.outbox.push_last(last);
    }

    /// Tells the member the server stops; the session then ends.
    pub(crate) fn shutting_down(&self) -> Ending {
        self.last_words(
            &Event::Notice {
                text: "server shutting down",
                room: None,
            },
            close::GOING_AWAY,
        );
        Ending::Leave(Departure::Shutdown)
    }

    /// Refuses the member at login: wrong or missing password.
    pub(crate) fn refuse_password(&self) -> Ending {
        warn!(peer = %self.peer, "wrong or missing password");
        self.last_words(
            &Event::Error {
                text: "wrong password",
                code: Some("password"),
            },
            close::POLICY,
        );
        Ending::Refused
    }

    /// Ends a session that turned out not to be chat (an HTTP request after the greeting):
    /// no last words; a member that was only listening leaves unannounced (see
    /// [`Hub::leave`]).
    pub(crate) fn close_quietly(&self) -> Ending {
        if self.has_entered() {
            Ending::Leave(Departure::Closed)
        } else {
            Ending::Refused
        }
    }

    /// Refuses the member at login: no password in time.
    pub(crate) fn login_timed_out(&self) -> Ending {
        self.last_words(
            &Event::Error {
                text: "login timed out",
                code: Some("password"),
            },
            close::POLICY,
        );
        Ending::Refused
    }

    /// Tells the member its line was over the limit (and not sent).
    pub(crate) fn too_long(&self) {
        warn!(peer = %self.peer, limit = self.config.max_line_bytes, "line too long");
        self.error(&format!(
            "line too long (at most {} bytes); not sent",
            self.config.max_line_bytes
        ));
    }

    /// Bytes of chat lines gathered and not yet published.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Publishes the chat lines gathered so far.
    pub(crate) fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // Taken whole, not split: the shared buffer goes with the line, so a member that has
        // gone quiet does not keep its last lines alive.
        let payload: Bytes = std::mem::take(&mut self.pending).freeze();
        if let Some((id, _)) = &self.me {
            self.hub.publish(*id, LineKind::Message, &payload);
        }
    }

    /// Flood control: takes a token, or stops reading (back-pressure on the sender) until
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
            self.notice(&format!(
                "slow down: more than {} lines at once; the rest are taken at {} lines per second",
                self.config.burst, self.config.rate
            ));
        }
        loop {
            let wait = self.bucket.time_to_token(Instant::now());
            tokio::select! {
                _ = stop.cancelled() => return Some(self.shutting_down()),
                _ = tokio::time::sleep(wait) => {}
            }
            if self.bucket.take(Instant::now()) {
                return None;
            }
        }
    }

    /// Waits while the bus's queue is full (Redis unreachable): the member's socket is not
    /// read meanwhile, so the sender is slowed and nothing is dropped. `Some` when the server
    /// stops meanwhile.
    async fn wait_for_the_bus(&mut self, stop: &CancellationToken) -> Option<Ending> {
        let hub = self.hub.clone();
        let mut ready = hub.bus().ready();
        if futures_util::FutureExt::now_or_never(&mut ready).is_some() {
            return None;
        }
        // What was gathered goes into the queue first, in order.
        self.flush();
        tokio::select! {
            _ = stop.cancelled() => Some(self.shutting_down()),
            _ = ready => None,
        }
    }

    /// Handles one clean line the member typed (text or `/command`); `Some` ends the
    /// session. Chat lines are gathered until [`flush`](Self::flush) or a command.
    pub(crate) async fn handle(&mut self, text: &str, stop: &CancellationToken) -> Option<Ending> {
        let (id, nick) = self.me.clone()?;
        self.speak_up();
        let input = match parse(text) {
            Ok(input) => input,
            Err(err) => {
                self.error(&err.to_string());
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
        if is_costly && let Some(ending) = self.wait_for_the_bus(stop).await {
            return Some(ending);
        }
        let command = match input {
            Input::Say(text) => {
                self.pending
                    .extend_from_slice(&RoomLine::format(LineKind::Message, &nick, &text));
                return None;
            }
            Input::Command(command) => command,
        };
        // Commands see (and change) the world after the lines before them.
        self.flush();
        match command {
            Command::Me(action) => {
                let line = RoomLine::format(LineKind::Action, &nick, &action);
                self.hub.publish(id, LineKind::Action, &line);
            }
            Command::Nick(wanted) => match self.hub.bus().claim(&wanted).await {
                Ok(true) => {
                    if let Some(new) = self.hub.rename(id, &wanted) {
                        self.me = Some((id, new));
                    } else if !self.hub.has_nick(&wanted) {
                        self.hub.bus().release(&wanted);
                    }
                }
                Ok(false) => self.error(&format!("the nickname {wanted} is taken")),
                Err(why) => self.error(&format!("cannot claim {wanted} now: {why}; try again")),
            },
            Command::Join(room) => self.hub.join(id, &room),
            Command::Rooms => self.hub.rooms(id),
            Command::Who => self.hub.who(id),
            Command::Msg { nick: to, text } => self.hub.private(id, &to, &text),
            Command::History(n) => self.hub.history(id, n),
            Command::Help => self.hub.help(id),
            Command::Stats if self.config.stats => self.hub.stats(id),
            Command::Stats => {
                self.error("/stats is not enabled on this server (chat serve --stats)")
            }
            Command::Quit(reason) => {
                self.last_words(
                    &Event::Notice {
                        text: "bye",
                        room: None,
                    },
                    close::NORMAL,
                );
                return Some(Ending::Leave(Departure::Quit(reason)));
            }
        }
        None
    }
}

/// The read side of one framing: turns bytes into the member's lines until it ends.
pub(crate) trait Listener: Send {
    /// Reads and handles the member's input until the session ends (a leave, a refusal,
    /// the server stopping).
    fn listen<'a>(
        &'a mut self,
        talker: &'a mut Talker,
        stop: &'a CancellationToken,
    ) -> impl Future<Output = Ending> + Send + 'a;
}

/// Runs one member's session: `listener` reads and handles its input while its queue is
/// written to `writer`; then it leaves the hub and its last lines go out (bounded).
pub(crate) async fn converse<L: Listener, W: AsyncWrite + Unpin + Send>(
    mut talker: Talker,
    mut listener: L,
    mut writer: W,
    stop: CancellationToken,
) {
    let outbox = talker.outbox.clone();
    let writing = write_all_queued(&mut writer, &outbox);
    tokio::pin!(writing);
    let mut is_written = false;
    let ending = tokio::select! {
        ending = listener.listen(&mut talker, &stop) => ending,
        result = &mut writing => {
            is_written = true;
            match result {
                Ok(()) => Ending::Leave(Departure::Closed),
                Err(err) => Ending::Leave(Departure::Lost(describe(&err))),
            }
        }
        _ = outbox.killed() => Ending::Dropped,
    };
    talker.flush();
    if matches!(ending, Ending::Dropped) {
        // Its last line ("you were dropped") goes out only if the socket takes it at once.
        let _ = tokio::time::timeout(Duration::ZERO, writing).await;
        debug!("session dropped");
        return;
    }
    if let (Some((id, _)), Ending::Leave(why)) = (&talker.me, &ending) {
        talker.hub.leave(*id, why);
    }
    outbox.close();
    if !is_written {
        // Let the last lines (goodbye, shutdown notice) out, within a bound.
        let _ = tokio::time::timeout(LINGER, writing).await;
    }
    debug!("session ended");
}

/// A short, lower-case reason for a lost connection, for the room's notice.
pub(crate) fn describe(err: &std::io::Error) -> String {
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
    use std::collections::VecDeque;

    use futures_util::FutureExt as _;

    use super::*;
    use crate::chat::HubConfig;
    use crate::chat::outbox::Next;

    fn hub() -> Arc<Hub> {
        Arc::new(Hub::new(HubConfig {
            history_lines: 0,
            show_addrs: false,
            announce_limit: 100,
        }))
    }

    /// A member of `hub`, entered, speaking `framing`.
    async fn member(hub: &Arc<Hub>, config: Config, framing: Framing) -> Talker {
        let peer = "127.0.0.1:4000".parse().expect("an address");
        let mut talker = Talker::new(hub.clone(), Arc::new(config), peer, framing);
        talker.enter(Entry::default()).await;
        talker
    }

    async fn lines_member(hub: &Arc<Hub>) -> Talker {
        let config = Config {
            rate: 0.0,
            ..Config::default()
        };
        member(hub, config, Framing::Lines).await
    }

    /// Everything queued for `talker` so far, as text.
    fn queued(talker: &Talker) -> String {
        let mut out = Vec::new();
        let mut batch = VecDeque::new();
        while let Some(Next::Write) = talker.outbox.next(&mut batch).now_or_never() {
            for bytes in batch.drain(..) {
                out.extend_from_slice(&bytes);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn commands_rename_message_privately_and_quit_with_a_goodbye() {
        let hub = hub();
        let stop = CancellationToken::new();
        let (mut alice, mut bob) = (lines_member(&hub).await, lines_member(&hub).await);
        assert!(alice.handle("/nick alice", &stop).await.is_none());
        assert!(bob.handle("/nick bob", &stop).await.is_none());
        assert!(queued(&bob).contains("is now alice"));
        let _ = queued(&alice);

        assert!(alice.handle("/msg bob psst", &stop).await.is_none());
        assert_eq!(queued(&bob), "*alice* psst\n");
        assert_eq!(queued(&alice), "-> *bob* psst\n");

        assert!(alice.handle("/dance", &stop).await.is_none());
        assert!(queued(&alice).starts_with("* "), "an error, to alice only");
        assert_eq!(queued(&bob), "");
        assert!(alice.handle("   ", &stop).await.is_none());
        alice.flush();
        assert_eq!(queued(&bob), "", "a blank line is not said");

        let ending = alice.handle("/quit gone fishing", &stop).await;
        assert!(
            matches!(&ending, Some(Ending::Leave(Departure::Quit(Some(r)))) if r == "gone fishing"),
            "{ending:?}"
        );
        assert!(queued(&alice).ends_with("* bye\n"));
    }

    #[tokio::test]
    async fn said_lines_wait_for_a_flush_and_a_command_sends_them_first() {
        let hub = hub();
        let stop = CancellationToken::new();
        let (mut alice, bob) = (lines_member(&hub).await, lines_member(&hub).await);
        let _ = queued(&bob);
        let nick = alice.me.clone().expect("entered").1;
        alice.handle("one", &stop).await;
        alice.handle("two", &stop).await;
        assert_eq!(queued(&bob), "", "gathered, not yet published");
        alice.handle("/me waves", &stop).await;
        assert_eq!(
            queued(&bob),
            format!("<{nick}> one\n<{nick}> two\n* {nick} waves\n"),
            "in the order typed"
        );
        alice.handle("three", &stop).await;
        alice.flush();
        assert_eq!(queued(&bob), format!("<{nick}> three\n"));
    }

    #[tokio::test]
    async fn a_browser_gets_json_and_its_own_lines_back() {
        let hub = hub();
        let stop = CancellationToken::new();
        let config = Config {
            rate: 0.0,
            ..Config::default()
        };
        let mut web = member(&hub, config, Framing::WebSocket).await;
        let _ = queued(&web);
        web.handle("hello", &stop).await;
        web.flush();
        let frames = queued(&web);
        assert!(frames.contains(r#""kind":"message""#), "{frames}");
        assert!(frames.contains(r#""text":"hello""#), "{frames}");
    }

    #[tokio::test(start_paused = true)]
    async fn flood_control_tells_once_and_takes_the_rest_at_the_rate() {
        let hub = hub();
        let stop = CancellationToken::new();
        let config = Config {
            rate: 10.0,
            burst: 2.0,
            ..Config::default()
        };
        let mut alice = member(&hub, config, Framing::Lines).await;
        let bob = lines_member(&hub).await;
        let _ = (queued(&alice), queued(&bob));
        let started = Instant::now();
        for i in 0..6 {
            assert!(alice.handle(&format!("line {i}"), &stop).await.is_none());
        }
        alice.flush();
        // Two in the burst, four at 10 a second.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(390) && took < Duration::from_millis(500),
            "{took:?}"
        );
        let to_bob = queued(&bob);
        let said: Vec<&str> = to_bob.lines().filter(|l| l.contains("> line")).collect();
        assert_eq!(said.len(), 6, "nothing dropped: {to_bob}");
        assert!(said.windows(2).all(|w| w[0] < w[1]), "in order: {said:?}");
        let told = queued(&alice);
        assert_eq!(told.matches("slow down").count(), 1, "{told}");
        // A server stopping meanwhile ends the wait with a goodbye.
        stop.cancel();
        let ending = alice.handle("one more", &stop).await;
        assert!(
            matches!(ending, Some(Ending::Leave(Departure::Shutdown))),
            "{ending:?}"
        );
    }

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
