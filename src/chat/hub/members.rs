//! Rooms and membership: the hub's state, entering under a nick, moving between rooms,
//! renaming, leaving, and who is listed where (here and on other nodes).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{debug, info};

use crate::chat::command::{DEFAULT_ROOM, check_nick, nick_key};
use crate::chat::framing::{Event, Framing, LineId};
use crate::chat::history::{Ring, Store};
use crate::chat::hub::bus::{Bus, LocalBus, Post, RemoteMember};
use crate::chat::hub::delivery::replay;
use crate::chat::outbox::Outbox;

/// Identifies one connected client for its whole connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(u64);

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

pub(super) struct Member {
    pub(super) nick: Arc<str>,
    pub(super) room: String,
    pub(super) addr: SocketAddr,
    pub(super) framing: Framing,
    pub(super) outbox: Arc<Outbox>,
    /// Has said nothing yet: hears its room, but nobody sees it there (a browser's spare
    /// connection must not show up as a member).
    pub(super) is_listening: bool,
}

impl Member {
    /// Queues `event` for this member alone; `false` when its queue is full.
    pub(super) fn tell(&self, event: &Event<'_>) -> bool {
        match self.framing.render(event) {
            Some(bytes) => self.outbox.push(&bytes),
            None => true,
        }
    }

    pub(super) fn notice(&self, text: &str) {
        self.tell(&Event::Notice { text, room: None });
    }

    pub(super) fn error(&self, text: &str) {
        self.tell(&Event::Error { text, code: None });
    }
}

/// The members of a room, by framing: each framing's bytes are rendered once per publish.
#[derive(Default)]
pub(super) struct Room {
    pub(super) lines: Vec<(ClientId, Arc<Outbox>)>,
    pub(super) web: Vec<(ClientId, Arc<Outbox>)>,
    pub(super) history: Ring,
    /// The id of the room's next line.
    pub(super) next_id: u64,
}

impl Room {
    pub(super) fn len(&self) -> usize {
        self.lines.len() + self.web.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.web.is_empty()
    }

    pub(super) fn members_of(&mut self, framing: Framing) -> &mut Vec<(ClientId, Arc<Outbox>)> {
        match framing {
            Framing::Lines => &mut self.lines,
            Framing::WebSocket => &mut self.web,
        }
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) next_id: u64,
    pub(super) next_guest: u64,
    pub(super) clients: HashMap<ClientId, Member>,
    pub(super) nicks: HashMap<String, ClientId>,
    pub(super) rooms: HashMap<String, Room>,
    /// The server's console (`--console`): sees every room line, is never dropped.
    pub(super) observer: Option<Arc<Outbox>>,
    /// Members of other nodes (cluster), as last heard.
    pub(super) remote: Vec<RemoteMember>,
}

/// Rooms, nicknames and fan-out for one chat server.
pub struct Hub {
    pub(super) state: Mutex<State>,
    pub(super) config: HubConfig,
    pub(super) bus: Box<dyn Bus>,
    pub(super) store: Mutex<Option<Store>>,
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

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
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

    pub(super) fn remove(&self, state: &mut State, id: ClientId) -> Option<Member> {
        let member = state.clients.remove(&id)?;
        state.nicks.remove(&nick_key(&member.nick));
        self.bus.release(&member.nick);
        self.leave_room(state, id, &member.room);
        Some(member)
    }

    pub(super) fn leave_room(&self, state: &mut State, id: ClientId, room: &str) {
        if let Some(r) = state.rooms.get_mut(room) {
            r.lines.retain(|(m, _)| *m != id);
            r.web.retain(|(m, _)| *m != id);
            if r.is_empty() && r.history.is_empty() {
                state.rooms.remove(room);
            }
        }
    }

    pub(super) fn move_to(
        &self,
        state: &mut State,
        id: ClientId,
        room: &str,
        after: Option<LineId>,
    ) {
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
    pub(super) fn announce_join(&self, state: &mut State, id: ClientId, room: &str) {
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
    pub(super) fn announce_in(&self, state: &mut State, room: &str, post: Post) {
        let size = state.rooms.get(room).map_or(0, Room::len);
        if size <= self.config.announce_limit {
            self.fan_out(state, room, &post, None);
        }
    }

    /// `room`'s member list, once changed, to its browser members.
    pub(super) fn membership_changed(&self, state: &mut State, room: &str) {
        let mut dropped = Vec::new();
        self.tell_members(state, room, &mut dropped);
        self.settle(state, dropped);
    }

    /// Sends `room`'s member list to its browser members (rendered once), in rooms up to the
    /// announce limit.
    pub(super) fn tell_members(&self, state: &State, room: &str, dropped: &mut Vec<ClientId>) {
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

    /// The nicks of `room`'s members, sorted without regard to case.
    pub(super) fn nicks_in<'a>(state: &'a State, room: &str) -> Vec<&'a str> {
        let mut nicks: Vec<&str> = state
            .rooms
            .get(room)
            .into_iter()
            .flat_map(|r| r.lines.iter().chain(&r.web))
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

    /// Whether a member here holds `nick`.
    pub(crate) fn has_nick(&self, nick: &str) -> bool {
        self.lock().nicks.contains_key(&nick_key(nick))
    }

    /// This node's members as other nodes may list them: (nick, room). A connection that
    /// has said nothing yet only listens, here as everywhere, so it is left out.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn members_here(&self) -> Vec<(String, String)> {
        let state = self.lock();
        state
            .clients
            .values()
            .filter(|m| !m.is_listening)
            .map(|m| (m.nick.to_string(), m.room.clone()))
            .collect()
    }

    /// Every nick held here, listening members' included (their claims must hold too).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn nicks_here(&self) -> Vec<String> {
        let state = self.lock();
        state.clients.values().map(|m| m.nick.to_string()).collect()
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
}
