//! Integration tests: real servers on 127.0.0.1 port 0, real sockets, real peers.

// Test helpers are `pub` for the test modules; nothing here is a public API.
#![allow(unreachable_pub)]

mod support;

mod bench;
mod chat;
#[cfg(feature = "cluster")]
mod chat_cluster;
mod chat_ws;
mod delivery;
mod framing;
mod full_output;
mod http;
mod http2;
mod httpbin;
mod net;
mod peers_nc;
mod redbot;
mod serve;
mod serve_h2;
mod transfer;
mod tty;
