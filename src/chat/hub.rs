//! The hub: who is connected, under which nickname, in which room; fan-out of room lines to
//! the members' queues; room history. Small shared state behind one lock that is never held
//! across an `.await` (every method here is synchronous).
//!
//! The hub knows no transport. Each member has a framing (text lines or WebSocket JSON);
//! whatever goes to a room is rendered once per framing present in it and the same bytes are
//! queued for every member of that framing, so a publish costs O(members) pushes and no
//! per-member allocation.
//!
//! Every line for a room goes through a [`Bus`]. The in-process [`LocalBus`] hands it
//! straight to this hub's members. A bus that keeps a shared log (the Redis cluster: one
//! stream per room) numbers lines itself and hands every line back, this node's own
//! included, through [`Hub::deliver`] in log order: local and remote lines take the same
//! path into history, the console and the members' queues.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tracing::{debug, info};

use crate::chat::command::{DEFAULT_ROOM, HELP, check_nick, nick_key};
use crate::chat::framing::{Event, Framing, LineId, LineKind, RoomLine, close_frame, now_ms};
use crate::chat::history::{Ring, Store};
use crate::chat::outbox::Outbox;

/// Identifies one connected client for its whole connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(u64);

/// What is published to a room: lines said in it (kept in its history), or a notice.
#[derive(Debug, Clone)]
pub struct Post {
    /// What line clients get, as one buffer.
    text: Bytes,
    /// The room lines in `text`, in order (empty for a notice).
    lines: Vec<RoomLine>,
    /// The notice in `text`, without `* ` and newline (empty for lines).
    notice: String,
}

impl Post {
    pub(crate) fn lines(text: Bytes, lines: Vec<RoomLine>) -> Self {
        Self {
            text,
            lines,
            notice: String::new(),
        }
    }

    pub(crate) fn notice(text: String) -> Self {
        let rendered = Framing::Lines
            .render(&Event::Notice {
                text: &text,
                room: None,
            })
            .unwrap_or_default();
        Self {
            text: rendered,
            lines: Vec::new(),
            notice: text,
        }
    }

    /// The room lines of the post (none for a notice).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn room_lines(&self) -> &[RoomLine] {
        &self.lines
    }

    /// The notice's text (empty for lines).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn notice_text(&self) -> &str {
        &self.notice
    }

    /// The post as `framing` sends it in `room`.
    fn render(&self, framing: Framing, room: &str) -> Bytes {
        match framing {
            Framing::Lines => self.text.clone(),
            Framing::WebSocket if self.lines.is_empty() => framing
                .render(&Event::Notice {
                    text: &self.notice,
                    room: Some(room),
                })
                .unwrap_or_default(),
            Framing::WebSocket => framing.render_lines(room, &self.lines),
        }
    }
}

/// Carries what is published to rooms, and what rooms and names mean beyond this process:
/// the seam between the hub and other nodes. Every method but `publish` has a single-node
/// default.
pub trait Bus: Send + Sync + 'static {
    /// Publishes `post` to `room` (said by member `from`, if a member said it). Unless the
    /// bus is a log ([`is_log`](Self::is_log)), what is for this node's members is handed to
    /// `deliver_here`, synchronously, before this returns (per-sender order depends on it).
    fn publish(
        &self,
        room: &str,
        post: &Post,
        from: Option<ClientId>,
        deliver_here: &mut dyn FnMut(&Post),
    );

    /// Whether the bus is a shared log that numbers room lines and hands every line back
    /// through [`Hub::deliver`], in log order, instead of to `deliver_here`.
    fn is_log(&self) -> bool {
        false
    }

    /// Waits until the bus can take another post from a member: a bounded queue that is
    /// full slows senders (their sockets are not read meanwhile), it drops nothing.
    fn ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Claims `nick` for this node across every node: `Ok(false)` when another node's
    /// member holds it, `Err` (why) when that cannot be known now.
    fn claim<'a>(&'a self, _nick: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(std::future::ready(Ok(true)))
    }

    /// Gives up this node's claim on `nick` (unless a member here holds it again).
    fn release(&self, _nick: &str) {}

    /// A guest number unique across nodes, when the bus hands them out.
    fn next_guest(&self) -> Option<u64> {
        None
    }

    /// Sends a private message to `to`, a member of `node`.
    fn send_private(&self, _node: &str, _from: &str, _to: &str, _text: &str) {}

    /// What the bus can tell about its health, one line each (`/stats`).
    fn stats(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The single-node bus: every room lives in this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalBus;

impl Bus for LocalBus {
    fn publish(
        &self,
        _room: &str,
        post: &Post,
        _from: Option<ClientId>,
        deliver_here: &mut dyn FnMut(&Post),
    ) {
        deliver_here(post);
    }
}

/// A member of another node, as its node last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteMember {
    pub(crate) nick: String,
    pub(crate) room: String,
    /// The node (its incarnation) the member is connected to.
    pub(crate) node: String,
}

/// Settings of a hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Lines of history kept (and replayed on join) per room.
    pub history_lines: usize,
    /// Show peers' addresses in join notices.
    pub show_addrs: bool,
    /// Joins and leaves are announced in rooms of at most this many members; in bigger
    /// rooms they would be most of the traffic (n joins cost n² lines). `/who` still tells.
    pub announce_limit: usize,
}

/// Rooms up to this size announce joins and leaves by default.
pub const DEFAULT_ANNOUNCE_LIMIT: usize = 200;

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            history_lines: crate::chat::history::DEFAULT_HISTORY_LINES,
            show_addrs: false,
            announce_limit: DEFAULT_ANNOUNCE_LIMIT,
        }
    }
}

/// Why a client leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Departure {
    /// `/quit`, with an optional reason.
    Quit(Option<String>),
    /// The connection ended (EOF).
    Closed,
    /// The connection failed (reset, broken pipe…).
    Lost(String),
    /// The server is shutting down.
    Shutdown,
}

/// What a client asks for as it enters (a browser's `hello`); all optional.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    /// Nickname wanted instead of `guest-N`.
    pub(crate) nick: Option<String>,
    /// Room to join instead of the lobby (a checked name).
    pub(crate) room: Option<String>,
    /// The last line id seen in that room: history replays only what came after it.
    pub(crate) after: Option<LineId>,
    /// Enters listening only (a connection that has not said anything yet): it hears the
    /// room but is not announced nor listed until [`Hub::speak_up`].
    pub(crate) is_listening: bool,
    /// Why the nick asked for was refused before entering (taken on another node).
    pub(crate) refusal: Option<String>,
}

struct Member {
    nick: Arc<str>,
    room: String,
    addr: SocketAddr,
    framing: Framing,
    outbox: Arc<Outbox>,
    /// Has said nothing yet: hears its room, but nobody sees it there (a browser's spare
    /// connection must not show up as a member).
    is_listening: bool,
}

impl Member {
    /// Queues `event` for this member alone; `false` when its queue is full.
    fn tell(&self, event: &Event<'_>) -> bool {
        match self.framing.render(event) {
            Some(bytes) => self.outbox.push(&bytes),
            None => true,
        }
    }

    fn notice(&self, text: &str) {
        self.tell(&Event::Notice { text, room: None });
    }

    fn error(&self, text: &str) {
        self.tell(&Event::Error { text, code: None });
    }
}

/// The members of a room, by framing: each framing's bytes are rendered once per publish.
#[derive(Default)]
struct Room {
    lines: Vec<(ClientId, Arc<Outbox>)>,
    web: Vec<(ClientId, Arc<Outbox>)>,
    history: Ring,
    /// The id of the room's next line.
    next_id: u64,
}

impl Room {
    fn len(&self) -> usize {
        self.lines.len() + self.web.len()
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.web.is_empty()
    }

    fn members_of(&mut self, framing: Framing) -> &mut Vec<(ClientId, Arc<Outbox>)> {
        match framing {
            Framing::Lines => &mut self.lines,
            Framing::WebSocket => &mut self.web,
        }
    }

    /// Queues `post` for every member except `except`, rendered once per framing; whoever
    /// could not take it goes to `dropped`.
    fn deliver(
        &self,
        name: &str,
        post: &Post,
        except: Option<ClientId>,
        dropped: &mut Vec<ClientId>,
    ) {
        for (framing, members) in [
            (Framing::Lines, &self.lines),
            (Framing::WebSocket, &self.web),
        ] {
            if members.is_empty() {
                continue;
            }
            let bytes = post.render(framing, name);
            // A line client shows what it typed itself; a browser gets its own lines back,
            // with their ids.
            let except = except.filter(|_| framing == Framing::Lines);
            for (member, outbox) in members {
                if Some(*member) != except && !outbox.push(&bytes) {
                    dropped.push(*member);
                }
            }
        }
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    next_guest: u64,
    clients: HashMap<ClientId, Member>,
    nicks: HashMap<String, ClientId>,
    rooms: HashMap<String, Room>,
    /// The server's console (`--console`): sees every room line, is never dropped.
    observer: Option<Arc<Outbox>>,
    /// Members of other nodes (cluster), as last heard.
    remote: Vec<RemoteMember>,
}

/// Rooms, nicknames and fan-out for one chat server.
pub struct Hub {
    state: Mutex<State>,
    config: HubConfig,
    bus: Box<dyn Bus>,
    store: Mutex<Option<Store>>,
}

impl ClientId {
    /// The number behind the id (unique within this process).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn number(self) -> u64 {
        self.0
    }

    /// The id with this number.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn from_number(n: u64) -> Self {
        Self(n)
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("config", &self.config).finish()
    }
}

impl Hub {
    /// A hub with the in-process bus and no database.
    pub fn new(config: HubConfig) -> Self {
        Self::with_bus(config, Box::new(LocalBus))
    }

    /// A hub that publishes room lines through `bus`.
    pub fn with_bus(config: HubConfig, bus: Box<dyn Bus>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            config,
            bus,
            store: Mutex::new(None),
        }
    }

    /// Adds persistent history: `rooms` as loaded from `store`, new lines appended to it.
    pub(crate) fn attach_store(&self, store: Store, rooms: HashMap<String, Ring>) {
        let mut state = self.lock();
        for (name, history) in rooms {
            let room = state.rooms.entry(name).or_default();
            // Ids go on from the last one stored: a page resuming after a restart gets
            // only what it missed.
            room.next_id = room
                .next_id
                .max(history.last_id().map_or(1, |id| id.number() + 1));
            room.history = history;
        }
        *self.store.lock().expect("store lock is never poisoned") = Some(store);
    }

    /// Writes every pending history line to the database and closes it.
    pub(crate) fn close_store(&self) {
        if let Some(mut store) = self
            .store
            .lock()
            .expect("store lock is never poisoned")
            .take()
        {
            store.close();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("hub lock is never poisoned")
    }

    /// Number of connected clients.
    pub fn len(&self) -> usize {
        self.lock().clients.len()
    }

    /// Whether nobody is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a new client, framed by `framing`, under the nick it asks for (when free and
    /// valid) or as `guest-N`, in the room it asks for or the lobby; greets it and replays
    /// history.
    pub(crate) fn enter(
        &self,
        addr: SocketAddr,
        outbox: Arc<Outbox>,
        framing: Framing,
        entry: Entry,
    ) -> (ClientId, String) {
        let mut state = self.lock();
        state.next_id += 1;
        let id = ClientId(state.next_id);
        let mut refusal = entry.refusal.clone();
        let wanted = entry
            .nick
            .as_deref()
            .and_then(|nick| match check_nick(nick) {
                Ok(_) if state.nicks.contains_key(&nick_key(nick)) => {
                    refusal = Some(format!("the nickname {nick} is taken"));
                    None
                }
                Ok(_) => Some(nick.to_owned()),
                Err(err) => {
                    refusal = Some(err.to_string());
                    None
                }
            });
        let nick = wanted.unwrap_or_else(|| {
            loop {
                // A guest number from the bus is unique across nodes.
                let number = self.bus.next_guest().unwrap_or_else(|| {
                    state.next_guest += 1;
                    state.next_guest
                });
                let nick = format!("guest-{number}");
                if !state.nicks.contains_key(&nick) {
                    break nick;
                }
            }
        });
        state.nicks.insert(nick_key(&nick), id);
        let room = entry.room.as_deref().unwrap_or(DEFAULT_ROOM);
        let member = Member {
            nick: Arc::from(nick.as_str()),
            room: String::new(),
            addr,
            framing,
            outbox,
            is_listening: entry.is_listening,
        };
        member.tell(&Event::Welcome { nick: &nick, room });
        if let Some(refusal) = refusal {
            member.error(&refusal);
        }
        state.clients.insert(id, member);
        info!(%addr, %nick, "entered");
        self.move_to(&mut state, id, room, entry.after);
        (id, nick)
    }

    /// Publishes lines of `kind` said by `id` (whole lines, already formatted) to its room:
    /// into the history first, then to every other member, one shared buffer per framing.
    /// Never waits: a member whose queue overflows is dropped.
    pub(crate) fn publish(&self, id: ClientId, kind: LineKind, payload: &Bytes) {
        if payload.is_empty() {
            return;
        }
        let mut state = self.lock();
        let Some((room, nick)) = state
            .clients
            .get(&id)
            .map(|m| (m.room.clone(), m.nick.clone()))
        else {
            return;
        };
        let post = self.remember(&mut state, &room, kind, &nick, payload);
        self.fan_out(&mut state, &room, &post, Some(id));
    }

    /// Delivers what the bus's log holds for `room` (lines numbered by it, or a notice) to
    /// this node's members but `except` (a line client does not get its own lines back),
    /// keeping lines in the room's history; every node calls this in log order.
    pub fn deliver(&self, room: &str, post: &Post, except: Option<ClientId>) {
        let mut state = self.lock();
        let mut dropped = Vec::new();
        if let Some(observer) = &state.observer {
            observer.push(&post.text);
        }
        if !post.lines.is_empty() {
            // Kept even with nobody here, so a later join shows the room's past.
            let r = state.rooms.entry(room.to_owned()).or_default();
            for line in &post.lines {
                r.history.push(line.clone(), self.config.history_lines);
            }
        }
        if let Some(r) = state.rooms.get(room) {
            r.deliver(room, post, except, &mut dropped);
        }
        self.settle(&mut state, dropped);
    }

    /// Adds lines read from the log before this node delivered any of `room` (its past).
    /// Members already here (they joined before this node read the room) get them too, so
    /// a line said meanwhile on another node is not missed.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn load_history(&self, room: &str, lines: Vec<RoomLine>) {
        let mut state = self.lock();
        let r = state.rooms.entry(room.to_owned()).or_default();
        for line in &lines {
            r.history.push(line.clone(), self.config.history_lines);
        }
        if r.is_empty() || lines.is_empty() {
            return;
        }
        let text: Vec<u8> = lines.iter().flat_map(|l| l.line.iter().copied()).collect();
        let post = Post::lines(Bytes::from(text), lines);
        let mut dropped = Vec::new();
        r.deliver(room, &post, None, &mut dropped);
        self.settle(&mut state, dropped);
    }

    /// Tells every member of this node `text` (a notice about the cluster itself).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn tell_everyone_here(&self, text: &str) {
        let state = self.lock();
        for member in state.clients.values() {
            member.notice(text);
        }
    }

    /// Tells `room`'s members here that `nick` (of another node) left, and why.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn remote_left(&self, room: &str, text: &str) {
        let mut state = self.lock();
        let mut dropped = Vec::new();
        if let Some(r) = state.rooms.get(room) {
            let post = Post::notice(text.to_owned());
            r.deliver(room, &post, None, &mut dropped);
        }
        self.settle(&mut state, dropped);
    }

    /// Rooms with members here.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn rooms_here(&self) -> Vec<String> {
        let state = self.lock();
        state
            .rooms
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Forgets every room's history (the log it mirrored is gone).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn clear_history(&self) {
        let mut state = self.lock();
        for room in state.rooms.values_mut() {
            room.history = Ring::default();
        }
    }

    /// Replaces what this node knows of other nodes' members.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn set_remote(&self, members: Vec<RemoteMember>) {
        let mut state = self.lock();
        if state.remote == members {
            return;
        }
        let old = std::mem::replace(&mut state.remote, members);
        let mut rooms: Vec<String> = old
            .into_iter()
            .map(|m| m.room)
            .chain(state.remote.iter().map(|m| m.room.clone()))
            .collect();
        rooms.sort_unstable();
        rooms.dedup();
        // Browsers show the member list: tell them of members that came or went elsewhere.
        let mut dropped = Vec::new();
        for room in rooms {
            self.tell_members(&state, &room, &mut dropped);
        }
        self.settle(&mut state, dropped);
    }

    /// This node's members: (nick, room).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn members_here(&self) -> Vec<(String, String)> {
        let state = self.lock();
        state
            .clients
            .values()
            .map(|m| (m.nick.to_string(), m.room.clone()))
            .collect()
    }

    /// Whether a member here holds `nick`.
    pub(crate) fn has_nick(&self, nick: &str) -> bool {
        self.lock().nicks.contains_key(&nick_key(nick))
    }

    /// Hands a private message from another node to `to`, a member here.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn deliver_private(&self, from: &str, to: &str, text: &str) {
        let state = self.lock();
        if let Some(target) = state
            .nicks
            .get(&nick_key(to))
            .and_then(|t| state.clients.get(t))
        {
            target.tell(&Event::Private {
                from,
                to: &target.nick,
                text,
                at_ms: now_ms(),
                is_echo: false,
            });
        }
    }

    /// The bus's health lines, with this node's counts (`/stats`).
    pub(crate) fn stats(&self, id: ClientId) {
        let mut lines = vec![format!("members here: {}", self.len())];
        lines.extend(self.bus.stats());
        let state = self.lock();
        if let Some(member) = state.clients.get(&id) {
            for line in lines {
                member.notice(&line);
            }
        }
    }

    /// The bus, for what sessions must ask it before they reach the hub.
    pub(crate) fn bus(&self) -> &dyn Bus {
        &*self.bus
    }

    /// Copies every line fanned out to any room into `outbox` (the server's console).
    pub(crate) fn watch(&self, outbox: Arc<Outbox>) {
        self.lock().observer = Some(outbox);
    }

    /// A notice from the server to everyone in every room (`* text`).
    pub fn announce(&self, text: &str) {
        let post = Post::notice(text.to_owned());
        let mut state = self.lock();
        let rooms: Vec<String> = state.rooms.keys().cloned().collect();
        for room in rooms {
            self.fan_out(&mut state, &room, &post, None);
        }
    }

    /// A chat line from the server's own console (`<server> text`) to every room.
    pub fn say_as_server(&self, text: &str) {
        let nick: Arc<str> = Arc::from("server");
        let payload = RoomLine::format(LineKind::Message, &nick, text);
        let mut state = self.lock();
        let mut rooms: Vec<String> = state.rooms.keys().cloned().collect();
        // Before anyone joined, the line still goes to the lobby's history, not nowhere.
        if rooms.is_empty() {
            rooms.push(DEFAULT_ROOM.to_owned());
        }
        for room in rooms {
            let post = self.remember(&mut state, &room, LineKind::Message, &nick, &payload);
            self.fan_out(&mut state, &room, &post, None);
        }
    }

    /// Changes `id`'s nickname; on success returns the new one and tells the room.
    pub(crate) fn rename(&self, id: ClientId, wanted: &str) -> Option<String> {
        let mut state = self.lock();
        let key = nick_key(wanted);
        let member = state.clients.get(&id)?;
        let (old, room) = (member.nick.clone(), member.room.clone());
        match state.nicks.get(&key) {
            Some(owner) if *owner != id => {
                member.error(&format!("the nickname {wanted} is taken"));
                return None;
            }
            _ => {}
        }
        if &*old == wanted {
            return None;
        }
        state.nicks.remove(&nick_key(&old));
        state.nicks.insert(key, id);
        self.bus.release(&old);
        if let Some(member) = state.clients.get_mut(&id) {
            member.nick = Arc::from(wanted);
            member.tell(&Event::Nick { nick: wanted });
        }
        info!(%old, new = wanted, "renamed");
        let post = Post::notice(format!("{old} is now {wanted}"));
        self.fan_out(&mut state, &room, &post, None);
        self.membership_changed(&mut state, &room);
        Some(wanted.to_owned())
    }

    /// Moves `id` to `room`.
    pub(crate) fn join(&self, id: ClientId, room: &str) {
        let mut state = self.lock();
        let Some(member) = state.clients.get(&id) else {
            return;
        };
        if member.room == room {
            member.notice(&format!("you are already in #{room}"));
            return;
        }
        self.move_to(&mut state, id, room, None);
    }

    /// Tells `id` who is in its room.
    pub(crate) fn who(&self, id: ClientId) {
        let state = self.lock();
        let Some(member) = state.clients.get(&id) else {
            return;
        };
        let nicks = Self::nicks_in(&state, &member.room);
        let text = format!(
            "in #{} ({}): {}",
            member.room,
            nicks.len(),
            nicks.join(", ")
        );
        member.tell(&Event::Notice {
            text: &text,
            room: Some(&member.room),
        });
    }

    /// The nicks of `room`'s members, sorted without regard to case.
    fn nicks_in<'a>(state: &'a State, room: &str) -> Vec<&'a str> {
        let Some(r) = state.rooms.get(room) else {
            return Vec::new();
        };
        let mut nicks: Vec<&str> = r
            .lines
            .iter()
            .chain(&r.web)
            .filter_map(|(m, _)| state.clients.get(m))
            .filter(|m| !m.is_listening)
            .map(|m| &*m.nick)
            .collect();
        // Members of other nodes (cluster), unless one moved here meanwhile.
        nicks.extend(
            state
                .remote
                .iter()
                .filter(|m| m.room == room && !state.nicks.contains_key(&nick_key(&m.nick)))
                .map(|m| m.nick.as_str()),
        );
        nicks.sort_unstable_by_key(|n| n.to_lowercase());
        nicks
    }

    /// Tells `id` which rooms have members.
    pub(crate) fn rooms(&self, id: ClientId) {
        let state = self.lock();
        let Some(member) = state.clients.get(&id) else {
            return;
        };
        let mut counts: BTreeMap<&str, usize> = state
            .rooms
            .keys()
            .map(|name| (name.as_str(), Self::nicks_in(&state, name).len()))
            .filter(|(_, members)| *members > 0)
            .collect();
        for m in &state.remote {
            *counts.entry(m.room.as_str()).or_default() += 1;
        }
        let rooms: Vec<(&str, usize)> = counts.into_iter().collect();
        member.tell(&Event::Rooms { rooms: &rooms });
    }

    /// Replays the last `n` lines of `id`'s room (all that are kept when `None`) to it.
    pub(crate) fn history(&self, id: ClientId, n: Option<usize>) {
        let state = self.lock();
        let Some(member) = state.clients.get(&id) else {
            return;
        };
        let history = &state.rooms[&member.room].history;
        replay(member, &member.room, history, n.unwrap_or(usize::MAX), None);
    }

    /// Sends `text` from `id` to the client named `to` only.
    pub(crate) fn private(&self, id: ClientId, to: &str, text: &str) {
        let state = self.lock();
        let Some(member) = state.clients.get(&id) else {
            return;
        };
        let Some(target) = state
            .nicks
            .get(&nick_key(to))
            .and_then(|t| state.clients.get(t))
        else {
            let key = nick_key(to);
            match state.remote.iter().find(|m| nick_key(&m.nick) == key) {
                Some(remote) => {
                    self.bus
                        .send_private(&remote.node, &member.nick, &remote.nick, text);
                    member.tell(&Event::Private {
                        from: &member.nick,
                        to: &remote.nick,
                        text,
                        at_ms: now_ms(),
                        is_echo: true,
                    });
                }
                None => member.error(&format!("no one is called {to}")),
            }
            return;
        };
        let mut event = Event::Private {
            from: &member.nick,
            to: &target.nick,
            text,
            at_ms: now_ms(),
            is_echo: false,
        };
        // A full recipient queue only loses this message; the next fan-out drops that client.
        if target.tell(&event) {
            if let Event::Private { is_echo, .. } = &mut event {
                *is_echo = true;
            }
            member.tell(&event);
        } else {
            member.error(&format!("{} is not reading; not sent", target.nick));
        }
    }

    /// Sends the help text to `id`.
    pub(crate) fn help(&self, id: ClientId) {
        let state = self.lock();
        if let Some(member) = state.clients.get(&id) {
            for line in HELP {
                member.notice(line);
            }
        }
    }

    /// Removes `id` and tells its room why.
    pub(crate) fn leave(&self, id: ClientId, why: &Departure) {
        let mut state = self.lock();
        let Some(member) = self.remove(&mut state, id) else {
            return;
        };
        if member.is_listening {
            debug!(nick = %member.nick, "stopped listening");
            return;
        }
        let text = match why {
            Departure::Quit(Some(reason)) => format!("{} left ({reason})", member.nick),
            Departure::Quit(None) | Departure::Closed => format!("{} left", member.nick),
            Departure::Lost(error) => format!("{} left ({error})", member.nick),
            Departure::Shutdown => return,
        };
        info!(nick = %member.nick, reason = %text, "left");
        self.announce_in(&mut state, &member.room, Post::notice(text));
        self.membership_changed(&mut state, &member.room);
    }

    fn remove(&self, state: &mut State, id: ClientId) -> Option<Member> {
        let member = state.clients.remove(&id)?;
        state.nicks.remove(&nick_key(&member.nick));
        self.bus.release(&member.nick);
        self.leave_room(state, id, &member.room);
        Some(member)
    }

    fn leave_room(&self, state: &mut State, id: ClientId, room: &str) {
        if let Some(r) = state.rooms.get_mut(room) {
            r.lines.retain(|(m, _)| *m != id);
            r.web.retain(|(m, _)| *m != id);
            if r.is_empty() && r.history.is_empty() {
                state.rooms.remove(room);
            }
        }
    }

    fn move_to(&self, state: &mut State, id: ClientId, room: &str, after: Option<LineId>) {
        let Some(member) = state.clients.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut member.room, room.to_owned());
        let (nick, framing, outbox, is_listening) = (
            member.nick.clone(),
            member.framing,
            member.outbox.clone(),
            member.is_listening,
        );
        if !old.is_empty() {
            self.leave_room(state, id, &old);
            self.announce_in(state, &old, Post::notice(format!("{nick} went to #{room}")));
            self.membership_changed(state, &old);
        }
        if !is_listening {
            self.announce_join(state, id, room);
        }
        let r = state.rooms.entry(room.to_owned()).or_default();
        r.next_id = r.next_id.max(1);
        if let Some(member) = state.clients.get(&id) {
            member.tell(&Event::Notice {
                text: &format!("you joined #{room} as {nick}"),
                room: Some(room),
            });
            replay(member, room, &r.history, self.config.history_lines, after);
        }
        r.members_of(framing).push((id, outbox));
        if !is_listening {
            self.membership_changed(state, room);
        }
        debug!(%nick, room, is_listening, "joined");
    }

    /// A listening member said its first line: from now on it is announced and listed.
    pub(crate) fn speak_up(&self, id: ClientId) {
        let mut state = self.lock();
        let Some(member) = state.clients.get_mut(&id).filter(|m| m.is_listening) else {
            return;
        };
        member.is_listening = false;
        let room = member.room.clone();
        self.announce_join(&mut state, id, &room);
        self.membership_changed(&mut state, &room);
    }

    /// Tells `room` that `id` joined it.
    fn announce_join(&self, state: &mut State, id: ClientId, room: &str) {
        let Some(member) = state.clients.get(&id) else {
            return;
        };
        let from = if self.config.show_addrs {
            format!(" from {}", member.addr)
        } else {
            String::new()
        };
        let post = Post::notice(format!("{}{from} joined #{room}", member.nick));
        // A member that was listening is in the room already: it knows it joined.
        let size = state.rooms.get(room).map_or(0, Room::len);
        if size <= self.config.announce_limit {
            self.fan_out(state, room, &post, Some(id));
        }
    }

    /// A join or leave notice, unless the room is too big for them.
    fn announce_in(&self, state: &mut State, room: &str, post: Post) {
        let size = state.rooms.get(room).map_or(0, Room::len);
        if size <= self.config.announce_limit {
            self.fan_out(state, room, &post, None);
        }
    }

    /// `room`'s member list, once changed, to its browser members.
    fn membership_changed(&self, state: &mut State, room: &str) {
        let mut dropped = Vec::new();
        self.tell_members(state, room, &mut dropped);
        self.settle(state, dropped);
    }

    /// Sends `room`'s member list to its browser members (rendered once), in rooms up to the
    /// announce limit.
    fn tell_members(&self, state: &State, room: &str, dropped: &mut Vec<ClientId>) {
        let Some(r) = state.rooms.get(room) else {
            return;
        };
        if r.web.is_empty() || r.len() > self.config.announce_limit {
            return;
        }
        let nicks = Self::nicks_in(state, room);
        let Some(bytes) = Framing::WebSocket.render(&Event::Members {
            room,
            nicks: &nicks,
        }) else {
            return;
        };
        for (member, outbox) in &r.web {
            if !outbox.push(&bytes) {
                dropped.push(*member);
            }
        }
    }

    /// Numbers `payload`'s lines in `room`, keeps them in its history (and database) and
    /// returns them as a post.
    fn remember(
        &self,
        state: &mut State,
        room: &str,
        kind: LineKind,
        nick: &Arc<str>,
        payload: &Bytes,
    ) -> Post {
        let at_ms = now_ms();
        if self.bus.is_log() {
            // The log numbers them; history takes them as they come back in log order.
            let lines = split_lines(payload)
                .map(|line| RoomLine {
                    id: LineId::default(),
                    at_ms,
                    kind,
                    nick: nick.clone(),
                    line,
                })
                .collect();
            return Post::lines(payload.clone(), lines);
        }
        let keep = self.config.history_lines;
        let store = self.store.lock().expect("store lock is never poisoned");
        let r = state.rooms.entry(room.to_owned()).or_default();
        r.next_id = r.next_id.max(1);
        let mut lines = Vec::new();
        for line in split_lines(payload) {
            let line = RoomLine {
                id: LineId::local(r.next_id),
                at_ms,
                kind,
                nick: nick.clone(),
                line,
            };
            r.next_id += 1;
            if keep > 0 {
                if let Some(store) = store.as_ref() {
                    store.append(room, line.clone());
                }
                r.history.push(line.clone(), keep);
            }
            lines.push(line);
        }
        Post::lines(payload.clone(), lines)
    }

    /// Queues `post` for every member of `room` except `except`, then drops whoever could
    /// not take it.
    fn fan_out(&self, state: &mut State, room: &str, post: &Post, except: Option<ClientId>) {
        let mut dropped = Vec::new();
        if self.bus.is_log() {
            // Back through `deliver`, to the console too, in log order.
            self.bus.publish(room, post, except, &mut |_| {});
            return;
        }
        if let Some(observer) = &state.observer {
            // A console that cannot keep up misses lines; it never holds anyone up.
            observer.push(&post.text);
        }
        if let Some(r) = state.rooms.get(room) {
            self.bus.publish(room, post, except, &mut |post| {
                r.deliver(room, post, except, &mut dropped);
            });
        }
        if !dropped.is_empty() {
            self.settle(state, dropped);
        }
    }

    /// Drops clients whose queue overflowed, telling their rooms (which may drop more).
    fn settle(&self, state: &mut State, mut dropped: Vec<ClientId>) {
        while let Some(id) = dropped.pop() {
            let Some(member) = self.remove(state, id) else {
                continue;
            };
            tracing::warn!(nick = %member.nick, queued_bytes = member.outbox.queued_bytes(), "dropped: not reading fast enough");
            let text = "you were dropped: not reading fast enough";
            let mut last = member
                .framing
                .render(&Event::Notice { text, room: None })
                .unwrap_or_default();
            if member.framing == Framing::WebSocket {
                last = [last, close_frame(1008, "not reading fast enough")]
                    .concat()
                    .into();
            }
            member.outbox.kill(last);
            if member.is_listening {
                continue;
            }
            let post = Post::notice(format!(
                "{} was dropped (not reading fast enough)",
                member.nick
            ));
            if let Some(r) = state.rooms.get(&member.room) {
                self.bus.publish(&member.room, &post, None, &mut |post| {
                    r.deliver(&member.room, post, None, &mut dropped);
                });
            }
            self.tell_members(state, &member.room, &mut dropped);
        }
    }
}

/// Replays history to `member`: the last `n` lines, or with `after` only the lines after
/// that id (all kept lines when `after` is not among them).
fn replay(member: &Member, room: &str, history: &Ring, n: usize, after: Option<LineId>) {
    let newer = after.and_then(|after| history.after(after));
    let lines: Vec<RoomLine> = match newer {
        Some(lines) => lines.cloned().collect(),
        None => {
            let count = history.len().min(n);
            history.last(count).cloned().collect()
        }
    };
    if lines.is_empty() {
        return;
    }
    let is_lines = member.framing == Framing::Lines;
    if is_lines {
        member.notice(&format!("last {} lines of #{room}:", lines.len()));
    }
    member
        .outbox
        .push(&member.framing.render_lines(room, &lines));
    if is_lines {
        member.notice("end of history");
    }
}

/// Splits whole lines (each ending in `\n`) into shared slices of `payload`.
fn split_lines(payload: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut start = 0;
    memchr::memchr_iter(b'\n', payload).map(move |end| {
        let line = payload.slice(start..=end);
        start = end + 1;
        line
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::outbox::{Next, QueueLimits};
    use std::collections::VecDeque;

    fn client(hub: &Hub, limits: QueueLimits) -> (ClientId, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(limits));
        let (id, _) = hub.enter(
            "127.0.0.1:1".parse().unwrap(),
            outbox.clone(),
            Framing::Lines,
            Entry::default(),
        );
        (id, outbox)
    }

    async fn drain(outbox: &Outbox) -> String {
        let mut batch = VecDeque::new();
        let mut out = Vec::new();
        outbox.close();
        while let Next::Write = outbox.next(&mut batch).await {
            for b in batch.drain(..) {
                out.extend_from_slice(&b);
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn lines_reach_others_once_and_land_in_history() {
        let hub = Hub::new(HubConfig::default());
        let (a, a_box) = client(&hub, QueueLimits::default());
        let (_b, b_box) = client(&hub, QueueLimits::default());
        hub.publish(
            a,
            LineKind::Message,
            &Bytes::from_static(b"<guest-1> one\n<guest-1> two\n"),
        );
        let b_text = drain(&b_box).await;
        assert!(
            b_text.ends_with("<guest-1> one\n<guest-1> two\n"),
            "{b_text}"
        );
        let a_text = drain(&a_box).await;
        assert!(!a_text.contains("<guest-1> one"), "no echo to the sender");
        let (_c, c_box) = client(&hub, QueueLimits::default());
        let c_text = drain(&c_box).await;
        assert!(
            c_text.contains("last 2 lines of #lobby:\n<guest-1> one\n<guest-1> two\n"),
            "{c_text}"
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_only_that_client() {
        let hub = Hub::new(HubConfig::default());
        let (a, _a_box) = client(&hub, QueueLimits::default());
        let (_slow, slow_box) = client(
            &hub,
            QueueLimits {
                max_bytes: 8 * (64 + crate::chat::outbox::ENTRY_OVERHEAD_BYTES),
            },
        );
        let (_c, c_box) = client(&hub, QueueLimits::default());
        for _ in 0..10 {
            hub.publish(
                a,
                LineKind::Message,
                &Bytes::from_static(b"<guest-1> spam\n"),
            );
        }
        assert_eq!(hub.len(), 2);
        let c_text = drain(&c_box).await;
        assert!(c_text.contains("guest-2 was dropped"), "{c_text}");
        assert_eq!(c_text.matches("spam").count(), 10);
        assert_eq!(
            drain(&slow_box).await,
            "* you were dropped: not reading fast enough\n",
            "only its last line is left"
        );
    }

    #[tokio::test]
    async fn nicknames_are_unique_without_regard_to_case() {
        let hub = Hub::new(HubConfig::default());
        let (a, _) = client(&hub, QueueLimits::default());
        let (b, b_box) = client(&hub, QueueLimits::default());
        assert_eq!(hub.rename(a, "Alice"), Some("Alice".into()));
        assert_eq!(hub.rename(b, "aLiCe"), None);
        assert!(drain(&b_box).await.contains("the nickname aLiCe is taken"));
        hub.leave(a, &Departure::Closed);
        let (c, _) = client(&hub, QueueLimits::default());
        assert_eq!(hub.rename(c, "alice"), Some("alice".into()));
    }
}
