//! The static file server behind `sockit serve`: GET/HEAD of files and directory listings,
//! conditional and range requests, compression, optional uploads and Basic auth, over
//! HTTP/1.1 (keep-alive, pipelining) and HTTP/2 (ALPN `h2` on TLS, prior knowledge on
//! cleartext) on the accept loop of [`crate::net`].
//!
//! Safe by default: request paths are checked before they touch the disk ([`RequestPath`]),
//! symlinks that leave the directory and hidden files are refused, and every connection is
//! bounded in time and size ([`Limits`], HTTP/2 floods included).
//!
//! Fast like nginx: small files are served from memory, cached files of 32 KiB or more go
//! out with `sendfile` on plain TCP over HTTP/1 (the bytes never pass through user space),
//! and an HTTP/1 keep-alive connection between requests holds no HTTP buffers.
//!
//! The parts, each in its own file: `connection` (the one connection driver, for `send` too:
//! HTTP/1.1 or HTTP/2), `rewind`, `idle`, and `http1` with `http1_heads` and `http1_sendfile`
//! (what only holds for HTTP/1), `conformance` (what every request is checked for, either protocol),
//! `site` (routing), `file_answer`, `upload_answer`, `range`, `conditional` and `response`
//! (answers), `static_files`, `listing`, `upload` and `path` (the disk), `archive` and
//! `archive_stream` (a directory downloaded as a tar or zip), `config`, `auth`,
//! `added_headers` (`--header`, CORS), `log`.
//!
//! # Examples
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tokio_util::sync::CancellationToken;
//! use sockit::http::server::{self, Config};
//! use sockit::net::{self, ServerConfig};
//!
//! let dir = std::env::temp_dir();
//! let listener = net::bind_tcp("127.0.0.1:0".parse()?)?;
//! let stop = CancellationToken::new();
//! let config = Config { root: dir, ..Config::default() };
//! let server = tokio::spawn(server::serve(listener, config, ServerConfig::default(), stop.clone()));
//! stop.cancel();
//! server.await??;
//! # Ok(()) }
//! ```

mod added_headers;
mod archive;
mod archive_stream;
mod auth;
mod body;
mod conditional;
mod config;
pub(crate) mod conformance;
pub(crate) mod connection;
mod file_answer;
mod http1;
pub(crate) mod http1_heads;
mod http1_sendfile;
mod idle;
mod listing;
mod log;
mod path;
mod range;
pub(crate) mod response;
pub(crate) mod rewind;
mod site;
mod static_files;
mod upload;
mod upload_answer;

pub use added_headers::{HeaderLineError, parse_header_line};
pub use auth::{Credentials, CredentialsError};
pub use body::Body;
pub use conditional::{Precondition, Validators, evaluate};
pub use config::{Config, FixedAnswer, ServeError};
pub use connection::{ALPN, Limits};
pub use listing::ListEntry;
pub use log::AccessLog;
pub use path::{PathError, RequestPath, display_name, encode_segment};
pub use range::{RangeAnswer, resolve_range};
pub use site::serve;
pub use upload::UploadConfig;
