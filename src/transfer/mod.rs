//! File transfer: `sockit send` / `sockit recv` — HTTPS with a pinned self-signed certificate
//! and a random token, a manifest with BLAKE3 hashes, `Range` resume — plus `--raw`, the
//! classic "every client gets the file's bytes" mode.
//!
//! [`manifest`](Manifest) and [`Code`] are pure; [`serve_offer`] is the sender,
//! [`receive`] the receiver, [`serve_raw`] / [`receive_raw`] the raw mode.

mod code;
mod manifest;
mod raw;
mod recv;
mod send;

pub use code::{Code, CodeError, SCHEME, Token};
pub use manifest::{
    Digest, Entry, MAX_COMPONENT_BYTES, MAX_DEPTH, MAX_FILES, MAX_MANIFEST_BYTES, MAX_PATH_BYTES,
    Manifest, ManifestError, VERSION, check_path, shown,
};
pub use raw::{RAW_BUFFER_BYTES, receive_raw, serve_raw};
pub use recv::{Outcome, Progress, RecvConfig, RecvError, receive};
pub use send::{Offer, PeerStats, SendConfig, SendError, Sender, serve_offer};
