//! Integration tests: real servers on 127.0.0.1 port 0, real sockets, real peers.

mod support;

mod http;
mod net;
