//! Connections and the pool that keeps them. HTTP/1.1: one connection per request in
//! flight, reused once a response has been read to its end. HTTP/2 (ALPN `h2` on TLS, or
//! prior knowledge on `http://`): one connection per origin, shared by every request.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::Either;
use http::Version;
use http::header::{self, HeaderMap};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tracing::{debug, info};

use crate::http::client::errors::HttpError;
use crate::http::client::exchange::{ClientConfig, HttpVersions};
use crate::http::client::origin::Origin;
use crate::http::h2_reads::WholeFrames;
use crate::http::request_first::{Http1RequestFirst, SendState};
use crate::http::trace::HttpTraced;
use crate::net::tls;
use crate::net::{self, ClientOptions, HostPort, NetError};

/// Read buffer under a cleartext HTTP/2 connection (TLS has rustls's).
const HTTP2_READ_BUFFER_BYTES: usize = 256 * 1024;

/// Largest DATA frame a server may send us (SETTINGS_MAX_FRAME_SIZE; h2 asks for 16 KiB).
/// A 16 KiB frame and its 9-byte head make two TLS records, and every frame costs a turn
/// of h2 and a piece for the body's reader: larger frames cut all three per byte.
const HTTP2_MAX_FRAME_BYTES: u32 = 64 * 1024;

/// hyper's handle on one connection, by protocol.
enum Handle {
    /// HTTP/1.1: one request at a time; what became of the request bytes written on it.
    Http1(http1::SendRequest<Full<Bytes>>, Arc<SendState>),
    /// HTTP/2: many streams at once; the handle is cloned for each request.
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// One connection, ready for a request.
pub(crate) struct Sender {
    handle: Handle,
}

impl Sender {
    /// Sends a request; the future ends when the response head has arrived.
    pub(crate) fn send_request(
        &mut self,
        request: hyper::Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<hyper::Response<Incoming>, hyper::Error>> + use<> {
        match &mut self.handle {
            Handle::Http1(hyper, _) => Either::Left(hyper.send_request(request)),
            Handle::Http2(hyper) => Either::Right(hyper.send_request(request)),
        }
    }

    /// Whether this connection speaks HTTP/2.
    pub(crate) fn is_http2(&self) -> bool {
        matches!(self.handle, Handle::Http2(_))
    }

    /// The write error that cut the last HTTP/1 request short, if one did (taken once).
    pub(crate) fn take_failure(&self) -> Option<std::io::Error> {
        match &self.handle {
            Handle::Http1(_, sent) => sent.take_failure(),
            Handle::Http2(_) => None,
        }
    }

    /// Whether an HTTP/1 request was ever cut short on this connection.
    pub(crate) fn has_failed(&self) -> bool {
        match &self.handle {
            Handle::Http1(_, sent) => sent.has_failed(),
            Handle::Http2(_) => false,
        }
    }

    fn is_closed(&self) -> bool {
        match &self.handle {
            Handle::Http1(hyper, _) => hyper.is_closed(),
            Handle::Http2(hyper) => hyper.is_closed(),
        }
    }

    async fn ready(&mut self) -> Result<(), hyper::Error> {
        match &mut self.handle {
            Handle::Http1(hyper, _) => hyper.ready().await,
            Handle::Http2(hyper) => hyper.ready().await,
        }
    }
}

/// What the pool holds per origin.
#[derive(Default)]
struct Slots {
    /// HTTP/1.1 connections with no request in flight.
    idle: HashMap<Origin, Vec<Sender>>,
    /// The one HTTP/2 connection per origin, shared by every request.
    shared: HashMap<Origin, http2::SendRequest<Full<Bytes>>>,
    /// Origins known to answer HTTP/1.1 only: their connections open in parallel.
    http1_only: HashSet<Origin>,
    /// Held while the first connection to an origin opens, so that requests that may
    /// share an HTTP/2 connection wait for it instead of opening their own.
    opening: HashMap<Origin, Arc<tokio::sync::Mutex<()>>>,
}

/// Opens connections and keeps them per origin: idle HTTP/1.1 connections until a request
/// wants one, and one HTTP/2 connection shared by all requests. Cloning shares them.
#[derive(Clone)]
pub(crate) struct Pool {
    config: Arc<ClientConfig>,
    tls: Arc<Mutex<Option<Arc<rustls::ClientConfig>>>>,
    slots: Arc<Mutex<Slots>>,
}

impl Pool {
    /// An empty pool; TLS settings are loaded on the first `https` connection.
    pub(crate) fn new(config: Arc<ClientConfig>) -> Self {
        Self {
            config,
            tls: Arc::default(),
            slots: Arc::default(),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A ready connection to `origin`: the shared HTTP/2 one, an idle HTTP/1.1 one, or a
    /// new one (then with the time it took to open, from `started`).
    pub(crate) async fn sender(
        &self,
        origin: &Origin,
        started: Instant,
    ) -> Result<(Sender, Option<Duration>), HttpError> {
        if let Some(sender) = self.reuse(origin).await {
            return Ok((sender, None));
        }
        let may_share = self.offers_http2(origin) && !self.slots().http1_only.contains(origin);
        if !may_share {
            return Ok((self.connect(origin).await?, Some(started.elapsed())));
        }
        let opening = self
            .slots()
            .opening
            .entry(origin.clone())
            .or_default()
            .clone();
        let turn = opening.lock().await;
        if let Some(sender) = self.reuse(origin).await {
            return Ok((sender, None));
        }
        if self.slots().http1_only.contains(origin) {
            // The first connection turned out HTTP/1.1: the others need not wait in line.
            drop(turn);
        }
        Ok((self.connect(origin).await?, Some(started.elapsed())))
    }

    async fn reuse(&self, origin: &Origin) -> Option<Sender> {
        let shared = self.slots().shared.get(origin).cloned();
        if let Some(mut hyper) = shared {
            if !hyper.is_closed() && hyper.ready().await.is_ok() {
                debug!(%origin, "sharing the HTTP/2 connection");
                return Some(Sender {
                    handle: Handle::Http2(hyper),
                });
            }
            self.slots().shared.remove(origin);
        }
        while let Some(mut sender) = self.take_idle(origin) {
            if sender.ready().await.is_ok() {
                debug!(%origin, "reusing a kept-alive connection");
                return Some(sender);
            }
        }
        None
    }

    fn take_idle(&self, origin: &Origin) -> Option<Sender> {
        let mut slots = self.slots();
        let senders = slots.idle.get_mut(origin)?;
        while let Some(sender) = senders.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Whether a connection to `origin` may turn out to be HTTP/2.
    fn offers_http2(&self, origin: &Origin) -> bool {
        match self.config.versions {
            HttpVersions::Http1 => false,
            HttpVersions::Http2 => true,
            HttpVersions::Negotiate => origin.tls,
        }
    }

    /// Opens a new connection to `origin`: HTTP/2 when TLS negotiated `h2` or the
    /// configuration says so for `http://` (prior knowledge), else HTTP/1.1.
    pub(crate) async fn connect(&self, origin: &Origin) -> Result<Sender, HttpError> {
        let tls = if origin.tls {
            Some(self.tls_config()?)
        } else {
            None
        };
        let scheme = if origin.tls { "https" } else { "http" };
        let proxy = self
            .config
            .proxy
            .proxy_for(scheme, &origin.host)
            .map_err(NetError::from)?;
        let options = ClientOptions {
            connect_timeout: self.config.connect_timeout,
            tls,
            server_name: None,
            trace: None,
            dial: net::DialOptions {
                proxy,
                ..self.config.dial.clone()
            },
        };
        let target = HostPort::new(Some(origin.host.clone()), origin.port);
        let (stream, peer) = net::open(&target, &options).await.map_err(|err| {
            if self.config.versions == HttpVersions::Http2 && refused_alpn(&err) {
                HttpError::NoHttp2 {
                    origin: origin.to_string(),
                }
            } else {
                err.into()
            }
        })?;
        let http2 = if origin.tls {
            negotiated_h2(&stream)
        } else {
            self.config.versions == HttpVersions::Http2
        };
        if origin.tls && !http2 && self.config.versions == HttpVersions::Http2 {
            return Err(HttpError::NoHttp2 {
                origin: origin.to_string(),
            });
        }
        let stream: net::BoxStream = if http2 {
            // h2 reads into an 8 KiB buffer a frame at a time (often less), and moves a frame
            // cut by a read to a fresh allocation. It reads whole frames from a buffer instead:
            // rustls's decrypted records on TLS; on TCP one read per filled buffer.
            Box::new(WholeFrames::new(net::buffered(
                stream,
                HTTP2_READ_BUFFER_BYTES,
            )))
        } else {
            stream
        };
        let stream: net::BoxStream = match &self.config.trace {
            Some(sink) => Box::new(HttpTraced::new(
                stream,
                peer.to_string(),
                sink.clone(),
                self.config.trace_secrets,
                http2,
            )),
            None => stream,
        };
        let protocol_error = |source| HttpError::Protocol {
            origin: origin.to_string(),
            source,
        };
        if http2 {
            let (hyper, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_frame_size(HTTP2_MAX_FRAME_BYTES)
                .handshake(TokioIo::new(stream))
                .await
                .map_err(protocol_error)?;
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    debug!(%err, "HTTP/2 connection ended");
                }
            });
            debug!(%origin, "HTTP/2 connection open");
            let mut slots = self.slots();
            slots.shared.insert(origin.clone(), hyper.clone());
            slots.http1_only.remove(origin);
            return Ok(Sender {
                handle: Handle::Http2(hyper),
            });
        }
        if self.offers_http2(origin) {
            self.slots().http1_only.insert(origin.clone());
        }
        let sent = Arc::new(SendState::default());
        let stream = Http1RequestFirst::new(stream, sent.clone());
        let (hyper, connection) = http1::Builder::new()
            .title_case_headers(true)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(protocol_error)?;
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
        Ok(Sender {
            handle: Handle::Http1(hyper, sent),
        })
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, NetError> {
        let mut slot = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(config) = slot.as_ref() {
            return Ok(config.clone());
        }
        let alpn: &[&[u8]] = match self.config.versions {
            HttpVersions::Negotiate => &[b"h2", b"http/1.1"],
            HttpVersions::Http1 => &[b"http/1.1"],
            HttpVersions::Http2 => &[b"h2"],
        };
        let config = match &self.config.client_cert {
            Some((cert, key)) => {
                tls::client_config_with_cert(&self.config.verify, alpn, cert, key)?
            }
            None => tls::client_config(&self.config.verify, alpn)?,
        };
        *slot = Some(config.clone());
        Ok(config)
    }

    /// What gives an HTTP/1.1 `sender` back to the pool once its response has been read;
    /// `None` for HTTP/2, whose connection stays shared in the pool all along.
    pub(crate) fn release(&self, origin: Origin, sender: Sender) -> Option<Release> {
        (!sender.is_http2()).then(|| Release {
            slots: self.slots.clone(),
            origin,
            sender,
        })
    }
}

/// Whether the server ended the handshake because it speaks none of the protocols offered.
fn refused_alpn(err: &NetError) -> bool {
    let NetError::Tls { source, .. } = err else {
        return false;
    };
    source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| {
            matches!(
                tls,
                rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
            )
        })
}

/// Whether TLS agreed on HTTP/2 by ALPN.
fn negotiated_h2(stream: &net::BoxStream) -> bool {
    net::alpn_protocol(stream) == Some(b"h2")
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
    slots: Arc<Mutex<Slots>>,
    origin: Origin,
    sender: Sender,
}

impl Release {
    pub(crate) fn give_back(self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.idle.entry(self.origin).or_default().push(self.sender);
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
