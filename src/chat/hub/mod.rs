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
//!
//! | file | what it owns |
//! |---|---|
//! | `bus` | the seam to other nodes: [`Post`], [`Bus`], [`LocalBus`] |
//! | `members` | rooms and membership: entering, moving, renaming, leaving, member lists |
//! | `delivery` | fan-out to the members' queues, history, dropping who cannot keep up |
//! | `commands` | what one member asks of the hub: `/who`, `/rooms`, `/history`, `/msg`… |

mod bus;
mod commands;
mod delivery;
mod members;
#[cfg(test)]
mod tests;

#[cfg(feature = "cluster")]
pub(crate) use bus::RemoteMember;
pub use bus::{Bus, LocalBus, Post};
pub(crate) use members::Entry;
pub use members::{ClientId, DEFAULT_ANNOUNCE_LIMIT, Departure, Hub, HubConfig};
