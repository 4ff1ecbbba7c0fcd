//! Many chat nodes joined through Redis (`chat serve --cluster redis://…`): the
//! [`Bus`](crate::chat::Bus) that makes one Redis Stream per room the log every node delivers
//! from, with cluster-wide nicks and presence and a canary that proves delivery. The hub stays
//! the same: it publishes into this bus and gets every line back, its own included, through
//! [`Hub::deliver`](crate::chat::Hub::deliver).
//!
//! Three tasks per node, each on its own footing:
//! - the appender takes posts from a bounded queue, in order, and `XADD`s them (one entry per
//!   run of lines in a room, each line with this node's incarnation and a sequence number);
//!   a failed or unanswered batch is sent again, and readers skip a line whose (incarnation,
//!   sequence) they already delivered, so a retry never shows twice;
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
//!
//! | file | what it owns |
//! |---|---|
//! | `connection` | the URL, settings and errors; connecting; health and the canary alarm |
//! | `entry` | stream entries: a run of lines packed into one field, read without a field map |
//! | `node` | the shared state; joining (history loaded) and running the three tasks |
//! | `outbound` | the bus the hub publishes into; the append queue and its appender |
//! | `reader` | the room-stream reader: from the last entry delivered, duplicates skipped |
//! | `presence` | the heartbeat: presence, nick claims, gone nodes, the epoch |

mod connection;
mod entry;
mod node;
mod outbound;
mod presence;
mod reader;

pub use connection::{
    ClusterConfig, ClusterError, DEFAULT_HEARTBEAT, DEFAULT_QUEUE_POSTS, RedisUrl,
};
pub(crate) use node::Node;
