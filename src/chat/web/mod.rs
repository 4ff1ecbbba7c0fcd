//! The chat's web side: a one-page client (embedded, no CDN) and its WebSocket (`/ws`), on
//! the chat's own address (the connection's first line tells) or on a listener of its own
//! (`--web`). HTTP is the crate's one connection driver (`http::server`); a WebSocket
//! upgrade takes the connection over and becomes a chat member like any other.
//!
//! | file | what it owns |
//! |---|---|
//! | `site` | routes: the page with its security headers, the upgrade with its Origin check |
//! | `socket` | one browser member: WebSocket frames in, JSON events out, keep-alive |
//! | `page.html` | the page |

mod site;
mod socket;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio_util::sync::CancellationToken;

use crate::chat::Config;
use crate::chat::hub::Hub;
use crate::http::server::Limits;
use crate::http::server::connection::Driver;
use crate::http::server::rewind::Rewind;
use crate::net::BoxStream;

pub(crate) use site::ChatSite;

/// Serves HTTP connections of the chat: the page and its WebSocket.
pub(crate) struct WebSide {
    driver: Arc<Driver<ChatSite>>,
}

impl WebSide {
    /// The web side of `hub`; `is_tls` says whether its connections are HTTPS (for the
    /// Origin check), `stop` ends its WebSocket members.
    pub(crate) fn new(
        hub: Arc<Hub>,
        config: Arc<Config>,
        is_tls: bool,
        stop: CancellationToken,
    ) -> Self {
        let limits = Limits {
            max_conns: config.server.max_conns,
            ..Limits::default()
        };
        let site = ChatSite::new(hub, config, is_tls, stop);
        Self {
            driver: Arc::new(Driver::new(site, limits)),
        }
    }

    /// Serves one HTTP connection whose first bytes (`first`) are already read.
    pub(crate) async fn serve(
        &self,
        stream: BoxStream,
        first: BytesMut,
        peer: SocketAddr,
        stop: CancellationToken,
    ) {
        let stream: BoxStream = if first.is_empty() {
            stream
        } else {
            Box::new(Rewind::new(first.freeze(), stream))
        };
        self.driver.clone().serve(stream, peer, stop).await;
    }
}
