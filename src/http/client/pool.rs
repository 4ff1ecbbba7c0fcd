//! Connections and the pool that keeps them: one per origin and request in flight for
//! HTTP/1.1, reused once a response has been read to its end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Version;
use http::header::{self, HeaderMap};
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tracing::{debug, info};

use crate::http::client::errors::HttpError;
use crate::http::client::exchange::ClientConfig;
use crate::http::client::origin::Origin;
use crate::http::request_first::{RequestFirst, SendState};
use crate::http::trace::HttpTraced;
use crate::net::tls;
use crate::net::{self, ClientOptions, HostPort, NetError};

/// One connection: hyper's handle and what became of the request bytes written on it.
pub(crate) struct Sender {
    pub(crate) hyper: SendRequest<Full<Bytes>>,
    pub(crate) sent: Arc<SendState>,
}

type Idle = Arc<Mutex<HashMap<Origin, Vec<Sender>>>>;

/// Opens connections and keeps the idle ones, per origin. Cloning shares them.
#[derive(Clone)]
pub(crate) struct Pool {
    config: Arc<ClientConfig>,
    tls: Arc<Mutex<Option<Arc<rustls::ClientConfig>>>>,
    idle: Idle,
}

impl Pool {
    /// An empty pool; TLS settings are loaded on the first `https` connection.
    pub(crate) fn new(config: Arc<ClientConfig>) -> Self {
        Self {
            config,
            tls: Arc::default(),
            idle: Arc::default(),
        }
    }

    /// A ready connection to `origin`: one from the pool, or a new one. connection to `origin`: one from the pool, or a new one.
    pub(crate) async fn sender(
        &self,
        origin: &Origin,
        started: Instant,
    ) -> Result<(Sender, Option<Duration>), HttpError> {
        while let Some(mut sender) = self.take_pooled(origin) {
            if sender.hyper.ready().await.is_ok() {
                debug!(%origin, "reusing a kept-alive connection");
                return Ok((sender, None));
            }
        }
        let sender = self.connect(origin).await?;
        Ok((sender, Some(started.elapsed())))
    }

    fn take_pooled(&self, origin: &Origin) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let senders = idle.get_mut(origin)?;
        while let Some(sender) = senders.pop() {
            if !sender.hyper.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    pub(crate) async fn connect(&self, origin: &Origin) -> Result<Sender, HttpError> {
        let tls = if origin.tls {
            Some(self.tls_config()?)
        } else {
            None
        };
        let options = ClientOptions {
            connect_timeout: self.config.connect_timeout,
            tls,
            server_name: None,
            trace: None,
        };
        let target = HostPort::new(Some(origin.host.clone()), origin.port);
        let (stream, peer) = net::open(&target, &options).await?;
        let stream: net::BoxStream = match &self.config.trace {
            Some(sink) => Box::new(HttpTraced::new(
                stream,
                peer.to_string(),
                sink.clone(),
                self.config.trace_secrets,
            )),
            None => stream,
        };
        let sent = Arc::new(SendState::default());
        let stream = RequestFirst::new(stream, sent.clone());
        let (hyper, connection) = hyper::client::conn::http1::Builder::new()
            .title_case_headers(true)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| HttpError::Protocol {
                origin: origin.to_string(),
                source,
            })?;
        let origin = origin.to_string();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                if err.to_string().contains("unexpected message") {
                    // hyper stops at Content-Length; whatever follows is not this response.
                    info!(%origin, "the server sent more bytes than the response declared; they were ignored");
                } else {
                    debug!(%err, "connection ended");
                }
            }
        });
        Ok(Sender { hyper, sent })
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, NetError> {
        let mut slot = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(config) = slot.as_ref() {
            return Ok(config.clone());
        }
        let config = tls::client_config(&self.config.verify, &[b"http/1.1"])?;
        *slot = Some(config.clone());
        Ok(config)
    }

    /// What gives `sender` back to the pool once its response has been read.
    pub(crate) fn release(&self, origin: Origin, sender: Sender) -> Release {
        Release {
            idle: self.idle.clone(),
            origin,
            sender,
        }
    }
}

/// Whether the connection ends after this response (HTTP/1.0 without `keep-alive`, or
/// `Connection: close`).
pub(crate) fn connection_closes(version: Version, headers: &HeaderMap) -> bool {
    let says = |token: &str| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if version == Version::HTTP_10 {
        !says("keep-alive")
    } else {
        says("close")
    }
}

/// Gives a connection back to the pool once its response body has been read to the end.
pub(crate) struct Release {
    idle: Idle,
    origin: Origin,
    sender: Sender,
}

impl Release {
    pub(crate) fn give_back(self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.entry(self.origin).or_default().push(self.sender);
    }
}

#[cfg(test)]
mod tests {
    use http::Version;
    use http::header::{self, HeaderMap, HeaderValue};

    use crate::http::client::pool::connection_closes;

    #[test]
    fn keep_alive_rules_follow_the_version() {
        let mut h = HeaderMap::new();
        assert!(connection_closes(Version::HTTP_10, &h));
        assert!(!connection_closes(Version::HTTP_11, &h));
        h.insert(header::CONNECTION, HeaderValue::from_static("Close"));
        assert!(connection_closes(Version::HTTP_11, &h));
    }
}
