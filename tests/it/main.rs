//! Integration tests: real servers on 127.0.0.1 port 0, real sockets, real peers.

// Test helpers are `pub` for the test modules; nothing here is a public API.
#![allow(unreachable_pub)]
mod bench;
mod chat;
mod chat_browser;
#[cfg(feature = "cluster")]
mod chat_cluster;
mod chat_ws;
mod curl_habits;
mod delivery;
mod echo;
mod framing;
mod full_output;
mod http;
mod http2;
mod httpbin;
mod identity;
mod nc_habits;
mod net;
mod peers_nc;
mod proxy;
mod redbot;
mod serve;
mod serve_archive;
mod serve_h2;
mod support;
mod tls_hints;
mod transfer;
mod tty;
mod unix;
