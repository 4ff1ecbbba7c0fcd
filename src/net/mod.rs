//! The network layer: addresses, TCP/UDP/Unix connect and listen, proxies, TLS, byte tracing,
//! full-duplex relay, line framing, the accept loop with graceful shutdown, and the small
//! echo/greet/SOCKS5 services. It knows nothing of HTTP or chat; everything else stands on it.
mod addr;
pub mod crlf;
pub mod dial;
pub mod echo;
mod error;
pub mod keep_open;
pub mod line;
pub mod proxy;
mod read_ahead;
pub mod relay;
pub mod scan;
mod server;
pub mod socks_server;
#[cfg(target_os = "linux")]
mod splice;
mod stream;
mod tcp;
pub mod tls;
pub mod trace;
pub mod udp_batch;
#[cfg(unix)]
pub mod unix;
pub(crate) mod ws_frame;

pub use addr::{AddrError, DEFAULT_BIND_HOST, DEFAULT_CONNECT_HOST, HostPort, Target};
pub use dial::{DialOptions, Peer};
pub use error::{FailureClass, NetError, classify};
pub use server::{Listener, ServerConfig, serve, shutdown_signal};
#[cfg(target_os = "linux")]
pub(crate) use splice::{poll_send_file, poll_write_op, send_file};
pub(crate) use stream::forward_async_write;
#[cfg(target_os = "linux")]
pub(crate) use stream::plain_tcp;
pub use stream::{
    AsyncBufStream, AsyncStream, BoxStream, ClientOptions, alpn_protocol, buffered, open, secure,
};
pub use tcp::{accept, bind_tcp, bind_udp, connect};

/// Formats an error and its causes on one line: `outer: inner: root`.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let next = e.to_string();
        // Some errors repeat their source's text; say each thing once.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = e.source();
    }
    text
}
