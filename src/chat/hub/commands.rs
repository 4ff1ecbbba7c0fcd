//! What one member asks of the hub beyond chat lines: `/who`, `/rooms`, `/history`,
//! `/msg` (here or on another node), `/help`, `/stats`.

use std::collections::BTreeSet;

use crate::chat::command::{HELP, nick_key};
use crate::chat::framing::{Event, now_ms};
use crate::chat::hub::bus::Bus;
use crate::chat::hub::delivery::replay;
use crate::chat::hub::members::{ClientId, Hub};

impl Hub {
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

    /// Tells `id` which rooms have members.
    pub(crate) fn rooms(&self, id: ClientId) {
        let state = self.lock();
        let Some(member) = state.clients.get(&id) else {
            return;
        };
        // Rooms here and on other nodes; `nicks_in` counts each member once, wherever it is.
        let names: BTreeSet<&str> = state
            .rooms
            .keys()
            .map(String::as_str)
            .chain(state.remote.iter().map(|m| m.room.as_str()))
            .collect();
        let rooms: Vec<(&str, usize)> = names
            .into_iter()
            .map(|name| (name, Self::nicks_in(&state, name).len()))
            .filter(|(_, members)| *members > 0)
            .collect();
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

    /// Sends the help text to `id`.
    pub(crate) fn help(&self, id: ClientId) {
        let state = self.lock();
        if let Some(member) = state.clients.get(&id) {
            for line in HELP {
                member.notice(line);
            }
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
}
