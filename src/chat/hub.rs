//! The hub: who is connected, under which nickname, in which room; fan-out of room lines to
//! the members' queues; room history. Small shared state behind one lock that is never held
//! across an `.await` (every method here is synchronous).
//!
//! Every line for a room goes through a [`Bus`]. The in-process [`LocalBus`] hands it
//! straight to this hub's members; a backend that spreads rooms over several nodes (Redis
//! pub/sub) would also forward it, and deliver what other nodes publish with
//! [`Hub::deliver`], without any change to sessions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tracing::{debug, info};

use crate::chat::command::{DEFAULT_ROOM, HELP, nick_key};
use crate::chat::history::{Ring, Store};
use crate::chat::outbox::Outbox;

/// Identifies one connected client for its whole connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(u64);

/// Carries room lines: the publish/subscribe seam between the hub and other nodes.
pub trait Bus: Send + Sync + 'static {
    /// Publishes `payload` (whole lines) to `room`; lines for this node's members are handed
    /// to `deliver_here`, synchronously, before this returns (per-sender order depends on it).
    fn publish(&self, room: &str, payload: &Bytes, deliver_here: &mut dyn FnMut(&Bytes));
}

/// The single-node bus: every room lives in this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalBus;

impl Bus for LocalBus {
    fn publish(&self, _room: &str, payload: &Bytes, deliver_here: &mut dyn FnMut(&Bytes)) {
        deliver_here(payload);
    }
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

struct Member {
    nick: String,
    room: String,
    addr: SocketAddr,
    outbox: Arc<Outbox>,
}

#[derive(Default)]
struct Room {
    members: Vec<(ClientId, Arc<Outbox>)>,
    history: Ring,
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
}

/// Rooms, nicknames and fan-out for one chat server.
pub struct Hub {
    state: Mutex<State>,
    config: HubConfig,
    bus: Box<dyn Bus>,
    store: Mutex<Option<Store>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("config", &self.config).finish()
    }
}

/// A system notice line: `* text\n`.
pub(crate) fn notice(text: &str) -> Bytes {
    let mut line = BytesMut::with_capacity(text.len() + 3);
    line.extend_from_slice(b"* ");
    line.extend_from_slice(text.as_bytes());
    line.extend_from_slice(b"\n");
    line.freeze()
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
            state.rooms.entry(name).or_default().history = history;
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

    /// Registers a new client as `guest-N` in the default room; greets it and replays history.
    pub(crate) fn enter(&self, addr: SocketAddr, outbox: Arc<Outbox>) -> (ClientId, String) {
        let mut state = self.lock();
        state.next_id += 1;
        let id = ClientId(state.next_id);
        let nick = loop {
            state.next_guest += 1;
            let nick = format!("guest-{}", state.next_guest);
            if !state.nicks.contains_key(&nick) {
                break nick;
            }
        };
        state.nicks.insert(nick.clone(), id);
        outbox.push(&notice(&format!(
            "welcome to sockit chat, {nick}; /nick NAME picks a name, /help lists commands"
        )));
        state.clients.insert(
            id,
            Member {
                nick: nick.clone(),
                room: String::new(),
                addr,
                outbox,
            },
        );
        info!(%addr, %nick, "entered");
        self.move_to(&mut state, id, DEFAULT_ROOM);
        (id, nick)
    }

    /// Publishes chat lines from `id` (whole lines, already formatted) to its room: into the
    /// history first, then to every other member, one shared buffer for all of them. Never
    /// waits: a member whose queue overflows is dropped.
    pub(crate) fn publish(&self, id: ClientId, payload: &Bytes) {
        if payload.is_empty() {
            return;
        }
        let mut state = self.lock();
        let Some(room) = state.clients.get(&id).map(|m| m.room.clone()) else {
            return;
        };
        self.remember(&mut state, &room, payload);
        self.fan_out(&mut state, &room, payload, Some(id));
    }

    /// Delivers lines published for `room` by another node to this node's members.
    pub fn deliver(&self, room: &str, payload: &Bytes) {
        let mut state = self.lock();
        let mut dropped = Vec::new();
        if let Some(r) = state.rooms.get_mut(room) {
            for line in split_lines(payload) {
                r.history.push(line, self.config.history_lines);
            }
            for (member, outbox) in &r.members {
                if !outbox.push(payload) {
                    dropped.push(*member);
                }
            }
        }
        self.settle(&mut state, dropped);
    }

    /// Copies every line fanned out to any room into `outbox` (the server's console).
    pub(crate) fn watch(&self, outbox: Arc<Outbox>) {
        self.lock().observer = Some(outbox);
    }

    /// A notice from the server to everyone in every room (`* text`).
    pub fn announce(&self, text: &str) {
        let line = notice(text);
        let mut state = self.lock();
        let rooms: Vec<String> = state.rooms.keys().cloned().collect();
        for room in rooms {
            self.fan_out(&mut state, &room, &line, None);
        }
    }

    /// A chat line from the server's own console (`<server> text`) to every room.
    pub fn say_as_server(&self, text: &str) {
        let line = Bytes::from(format!("<server> {text}\n"));
        let mut state = self.lock();
        let mut rooms: Vec<String> = state.rooms.keys().cloned().collect();
        // Before anyone joined, the line still goes to the lobby's history, not nowhere.
        if rooms.is_empty() {
            rooms.push(DEFAULT_ROOM.to_owned());
        }
        for room in rooms {
            self.remember(&mut state, &room, &line);
            self.fan_out(&mut state, &room, &line, None);
        }
    }

    /// Changes `id`'s nickname; on success returns the new one and tells the room.
    pub(crate) fn rename(&self, id: ClientId, wanted: &str) -> Option<String> {
        let mut state = self.lock();
        let key = nick_key(wanted);
        let member = state.clients.get(&id)?;
        let (old, room, outbox) = (
            member.nick.clone(),
            member.room.clone(),
            member.outbox.clone(),
        );
        match state.nicks.get(&key) {
            Some(owner) if *owner != id => {
                outbox.push(&notice(&format!("the nickname {wanted} is taken")));
                return None;
            }
            _ => {}
        }
        if old == wanted {
            return None;
        }
        state.nicks.remove(&nick_key(&old));
        state.nicks.insert(key, id);
        if let Some(member) = state.clients.get_mut(&id) {
            member.nick = wanted.to_owned();
        }
        info!(%old, new = wanted, "renamed");
        let line = notice(&format!("{old} is now {wanted}"));
        self.fan_out(&mut state, &room, &line, None);
        Some(wanted.to_owned())
    }

    /// Moves `id` to `room`.
    pub(crate) fn join(&self, id: ClientId, room: &str) {
        let mut state = self.lock();
        let Some(member) = state.clients.get(&id) else {
            return;
        };
        if member.room == room {
            member
                .outbox
                .push(&notice(&format!("you are already in #{room}")));
            return;
        }
        self.move_to(&mut state, id, room);
    }

    /// Tells `id` who is in its room.
    pub(crate) fn who(&self, id: ClientId) {
        let state = self.lock();
        let Some(member) = state.clients.get(&id) else {
            return;
        };
        let mut nicks: Vec<&str> = state.rooms[&member.room]
            .members
            .iter()
            .filter_map(|(m, _)| state.clients.get(m).map(|m| m.nick.as_str()))
            .collect();
        nicks.sort_unstable_by_key(|n| n.to_lowercase());
        let text = format!(
            "in #{} ({}): {}",
            member.room,
            nicks.len(),
            nicks.join(", ")
        );
        member.outbox.push(&notice(&text));
    }

    /// Tells `id` which rooms have members.
    pub(crate) fn rooms(&self, id: ClientId) {
        let state = self.lock();
        let Some(member) = state.clients.get(&id) else {
            return;
        };
        let mut rooms: Vec<(&String, usize)> = state
            .rooms
            .iter()
            .filter(|(_, r)| !r.members.is_empty())
            .map(|(name, r)| (name, r.members.len()))
            .collect();
        rooms.sort();
        let list: Vec<String> = rooms.iter().map(|(n, c)| format!("#{n} ({c})")).collect();
        member
            .outbox
            .push(&notice(&format!("rooms: {}", list.join(", "))));
    }

    /// Replays the last `n` lines of `id`'s room (all that are kept when `None`) to it.
    pub(crate) fn history(&self, id: ClientId, n: Option<usize>) {
        let state = self.lock();
        let Some(member) = state.clients.get(&id) else {
            return;
        };
        let history = &state.rooms[&member.room].history;
        replay(
            &member.outbox,
            &member.room,
            history,
            n.unwrap_or(usize::MAX),
        );
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
            member
                .outbox
                .push(&notice(&format!("no one is called {to}")));
            return;
        };
        let delivered = Bytes::from(format!("*{}* {text}\n", member.nick));
        // A full recipient queue only loses this message; the next fan-out drops that client.
        if target.outbox.push(&delivered) {
            member
                .outbox
                .push(&Bytes::from(format!("-> *{}* {text}\n", target.nick)));
        } else {
            member.outbox.push(&notice(&format!(
                "{} is not reading; not sent",
                target.nick
            )));
        }
    }

    /// Sends the help text to `id`.
    pub(crate) fn help(&self, id: ClientId) {
        let state = self.lock();
        if let Some(member) = state.clients.get(&id) {
            for line in HELP {
                member.outbox.push(&notice(line));
            }
        }
    }

    /// Removes `id` and tells its room why.
    pub(crate) fn leave(&self, id: ClientId, why: &Departure) {
        let mut state = self.lock();
        let Some(member) = self.remove(&mut state, id) else {
            return;
        };
        let text = match why {
            Departure::Quit(Some(reason)) => format!("{} left ({reason})", member.nick),
            Departure::Quit(None) | Departure::Closed => format!("{} left", member.nick),
            Departure::Lost(error) => format!("{} left ({error})", member.nick),
            Departure::Shutdown => return,
        };
        info!(nick = %member.nick, reason = %text, "left");
        self.announce_in(&mut state, &member.room, &notice(&text));
    }

    fn remove(&self, state: &mut State, id: ClientId) -> Option<Member> {
        let member = state.clients.remove(&id)?;
        state.nicks.remove(&nick_key(&member.nick));
        self.leave_room(state, id, &member.room);
        Some(member)
    }

    fn leave_room(&self, state: &mut State, id: ClientId, room: &str) {
        if let Some(r) = state.rooms.get_mut(room) {
            r.members.retain(|(m, _)| *m != id);
            if r.members.is_empty() && r.history.is_empty() {
                state.rooms.remove(room);
            }
        }
    }

    fn move_to(&self, state: &mut State, id: ClientId, room: &str) {
        let Some(member) = state.clients.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut member.room, room.to_owned());
        let (nick, addr, outbox) = (member.nick.clone(), member.addr, member.outbox.clone());
        if !old.is_empty() {
            self.leave_room(state, id, &old);
            let line = notice(&format!("{nick} went to #{room}"));
            self.announce_in(state, &old, &line);
        }
        let from = if self.config.show_addrs {
            format!(" from {addr}")
        } else {
            String::new()
        };
        let line = notice(&format!("{nick}{from} joined #{room}"));
        self.announce_in(state, room, &line);
        let r = state.rooms.entry(room.to_owned()).or_default();
        outbox.push(&notice(&format!("you joined #{room} as {nick}")));
        replay(&outbox, room, &r.history, self.config.history_lines);
        r.members.push((id, outbox));
        debug!(%nick, room, "joined");
    }

    /// A join or leave notice, unless the room is too big for them.
    fn announce_in(&self, state: &mut State, room: &str, line: &Bytes) {
        let size = state.rooms.get(room).map_or(0, |r| r.members.len());
        if size <= self.config.announce_limit {
            self.fan_out(state, room, line, None);
        }
    }

    fn remember(&self, state: &mut State, room: &str, payload: &Bytes) {
        if self.config.history_lines == 0 {
            return;
        }
        let store = self.store.lock().expect("store lock is never poisoned");
        let r = state.rooms.entry(room.to_owned()).or_default();
        for line in split_lines(payload) {
            if let Some(store) = store.as_ref() {
                store.append(room, line.clone());
            }
            r.history.push(line, self.config.history_lines);
        }
    }

    /// Queues `payload` for every member of `room` except `except`, then drops whoever
    /// could not take it.
    fn fan_out(&self, state: &mut State, room: &str, payload: &Bytes, except: Option<ClientId>) {
        let mut dropped = Vec::new();
        if let Some(observer) = &state.observer {
            // A console that cannot keep up misses lines; it never holds anyone up.
            observer.push(payload);
        }
        if let Some(r) = state.rooms.get(room) {
            self.bus.publish(room, payload, &mut |payload| {
                for (member, outbox) in &r.members {
                    if Some(*member) != except && !outbox.push(payload) {
                        dropped.push(*member);
                    }
                }
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
            member
                .outbox
                .kill(notice("you were dropped: not reading fast enough"));
            let line = notice(&format!(
                "{} was dropped (not reading fast enough)",
                member.nick
            ));
            if let Some(r) = state.rooms.get(&member.room) {
                self.bus.publish(&member.room, &line, &mut |payload| {
                    for (m, outbox) in &r.members {
                        if !outbox.push(payload) {
                            dropped.push(*m);
                        }
                    }
                });
            }
        }
    }
}

fn replay(outbox: &Outbox, room: &str, history: &Ring, n: usize) {
    let count = history.len().min(n);
    if count == 0 {
        return;
    }
    outbox.push(&notice(&format!("last {count} lines of #{room}:")));
    for line in history.last(count) {
        outbox.push(line);
    }
    outbox.push(&notice("end of history"));
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
        let (id, _) = hub.enter("127.0.0.1:1".parse().unwrap(), outbox.clone());
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
        hub.publish(a, &Bytes::from_static(b"<guest-1> one\n<guest-1> two\n"));
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
            hub.publish(a, &Bytes::from_static(b"<guest-1> spam\n"));
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
