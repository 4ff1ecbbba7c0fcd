//! The seam between the hub and other nodes: what is published to a room ([`Post`]), the
//! [`Bus`] that carries it, and the single-node [`LocalBus`].

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::chat::framing::{Event, Framing, RoomLine};
use crate::chat::hub::members::ClientId;

/// What is published to a room: lines said in it (kept in its history), or a notice.
#[derive(Debug, Clone)]
pub struct Post {
    /// What line clients get, as one buffer.
    pub(super) text: Bytes,
    /// The room lines in `text`, in order (empty for a notice).
    pub(super) lines: Vec<RoomLine>,
    /// The notice in `text`, without `* ` and newline (empty for lines).
    pub(super) notice: String,
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
    pub(super) fn render(&self, framing: Framing, room: &str) -> Bytes {
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
    /// through [`Hub::deliver`](crate::chat::Hub::deliver), in log order, instead of to
    /// `deliver_here`.
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
