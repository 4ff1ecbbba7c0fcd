//! Fan-out: a room's lines into its history and, rendered once per framing, into every
//! member's queue; the console's copy; dropping members whose queue overflowed.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::chat::command::DEFAULT_ROOM;
use crate::chat::framing::{Event, Framing, LineId, LineKind, RoomLine, close_frame, now_ms};
use crate::chat::history::{Ring, Store};
use crate::chat::hub::bus::Post;
use crate::chat::hub::members::{ClientId, Hub, Member, Room, State};
use crate::chat::outbox::Outbox;

impl Room {
    /// Queues `post` for every member except `except`, rendered once per framing; whoever
    /// could not take it goes to `dropped`.
    pub(super) fn deliver(
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

impl Hub {
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

    /// Copies every line fanned out to any room into `outbox` (the server's console).
    pub(crate) fn watch(&self, outbox: Arc<Outbox>) {
        self.lock().observer = Some(outbox);
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

    /// Numbers `payload`'s lines in `room`, keeps them in its history (and database) and
    /// returns them as a post.
    pub(super) fn remember(
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
    pub(super) fn fan_out(
        &self,
        state: &mut State,
        room: &str,
        post: &Post,
        except: Option<ClientId>,
    ) {
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
    pub(super) fn settle(&self, state: &mut State, mut dropped: Vec<ClientId>) {
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

    /// Forgets every room's history (the log it mirrored is gone).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn clear_history(&self) {
        let mut state = self.lock();
        for room in state.rooms.values_mut() {
            room.history = Ring::default();
        }
    }
}

/// Replays history to `member`: the last `n` lines, or with `after` only the lines after
/// that id (all kept lines when `after` is not among them).
pub(super) fn replay(member: &Member, room: &str, history: &Ring, n: usize, after: Option<LineId>) {
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
