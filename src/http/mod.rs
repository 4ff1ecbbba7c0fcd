//! HTTP on hyper: the client (`sockit get/post/http`; HTTP/1.1 and HTTP/2) and the static
//! file server (`sockit serve`). hyper does the framing; this module adds the parts users see.
//!
//! The client: [`get`], [`post`] and a [`Client`] with keep-alive, timeouts, redirects and
//! TLS options (HTTP/2 by ALPN, one shared connection per origin); request items as HTTPie
//! spells them ([`items`]) and bodies made of them ([`body`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let url = format!("http://{}/", listener.local_addr()?);
//! # tokio::spawn(async move {
//! #     for reply in [&b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"[..],
//! #                   &b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"[..]] {
//! #         let (mut s, _) = listener.accept().await.unwrap();
//! #         let mut buf = [0; 4096];
//! #         let _ = s.read(&mut buf).await;
//! #         s.write_all(reply).await.unwrap();
//! #     }
//! # });
//! // The lesson's `get(url)` and `post(url, data)`, over hyper and rustls.
//! let response = sockit::http::get(&url).await?;
//! assert_eq!(response.status(), 200);
//! let answer: serde_json::Value = response.json().await?;
//! assert_eq!(answer["ok"], true);
//!
//! let created = sockit::http::post(&url, &serde_json::json!({"name": "Ada"})).await?;
//! assert_eq!(created.status().as_u16(), 201);
//! # Ok(()) }
//! ```

pub mod body;
mod client;
pub mod download;
mod h2_reads;
pub mod items;
pub(crate) mod part_file;
mod request_first;
pub mod session;
mod trace;

pub use client::{
    Client, ClientConfig, Cookie, CookieJar, Hop, HttpError, HttpVersions, Request, RequestBuilder,
    Response, SentHead, Timings, get, netscape_format, post, target_url,
};
pub mod server;
