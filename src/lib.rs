//! # sockit
//!
//! One fast, safe binary — and this library — for talking TCP, UDP, TLS and HTTP.
//!
//! | module | what it holds |
//! |---|---|
//! | [`transfer`] | `send`/`recv`: manifest with BLAKE3, pinned HTTPS, Range resume, raw mode |
//! | [`chat`] | chat server (rooms, nicknames, fan-out, history) and terminal client |
//! | [`net`] | addresses, TCP/UDP connect and listen, TLS (self-signed, pinning), byte tracing, full-duplex relay, line framing, the accept loop and graceful shutdown, echo/greet services |
//! | [`http`] | HTTP/1.1 on hyper: the client ([`http::get`], [`http::Client`]) and request items |
//!
//! The `sockit` binary is a thin layer over these modules (`src/cli/`).
//!
//! # Example: an echo server and a client, in-process
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio_util::sync::CancellationToken;
//! use sockit::net::{self, echo, ServerConfig};
//!
//! let listener = net::bind_tcp("127.0.0.1:0".parse()?)?;
//! let addr = listener.local_addr()?;
//! let stop = CancellationToken::new();
//! let server = tokio::spawn(net::serve(listener, ServerConfig::default(), stop.clone(),
//!     |stream, _peer, stop| async move { echo::echo(stream, &Default::default(), stop).await }));
//!
//! let (mut stream, _) = net::open(&addr.to_string().parse()?, &Default::default()).await?;
//! stream.write_all(b"ping").await?;
//! let mut reply = [0; 4];
//! stream.read_exact(&mut reply).await?;
//! assert_eq!(&reply, b"ping");
//!
//! stop.cancel();
//! server.await?;
//! # Ok(()) }
//! ```

pub mod bench;
pub mod chat;
pub mod http;
pub mod net;
pub mod transfer;
