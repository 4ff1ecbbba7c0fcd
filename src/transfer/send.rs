//! The sending side: collect and hash the offered files, then answer `GET /TOKEN/manifest`
//! and `GET /TOKEN/f/<index>` (single `Range`, 206/416) over HTTPS, plus `POST /TOKEN/done`
//! from receivers that finished. TLS and the accept loop come from `net`; range resolution and
//! response bodies from the file server (`http::server`); this module keeps only its routes.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Seek};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::http::server::connection::{Driver, Handler, SendfileBody};
use crate::http::server::{Body, Limits, RangeAnswer, conformance, resolve_range};
use crate::net::{BoxStream, ServerConfig, serve};
use crate::transfer::code::Token;
use crate::transfer::manifest::{Digest, Entry, Manifest, ManifestError, shown};

/// Why files could not be offered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A file or directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The path on disk.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A name that cannot travel in a manifest (not UTF-8, control characters, …).
    #[error("cannot offer {path}")]
    Name {
        /// The path on disk.
        path: PathBuf,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// The names together do not make a valid manifest (the same name twice, …).
    #[error("cannot offer these files together")]
    Manifest(#[from] ManifestError),
    /// Nothing to send.
    #[error("no files to send")]
    Empty,
}

/// The files on offer: the manifest and where each entry lives on disk.
#[derive(Debug, Clone)]
pub struct Offer {
    /// What receivers see.
    pub manifest: Manifest,
    sources: Vec<PathBuf>,
}

impl Offer {
    /// Walks `paths` (files, and directories recursively), hashing every file with BLAKE3.
    /// A directory keeps its own name as the first path component. Symlinks inside
    /// directories and special files are skipped; a path named directly is followed.
    /// Blocking: run it off the async runtime.
    ///
    /// # Errors
    ///
    /// [`SendError`] for unreadable files, names that cannot be sent, clashing names, or
    /// nothing to send.
    pub fn collect(paths: &[PathBuf]) -> Result<Self, SendError> {
        let mut found = Vec::new();
        for path in paths {
            let read = |source| SendError::Read {
                path: path.clone(),
                source,
            };
            let meta = std::fs::metadata(path).map_err(read)?;
            let name = std::fs::canonicalize(path)
                .map_err(read)?
                .file_name()
                .map(|n| n.to_owned())
                .ok_or_else(|| {
                    read(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "has no name to send it under",
                    ))
                })?;
            let name = utf8(path, &name)?;
            if meta.is_dir() {
                walk(path, &name, &mut found)?;
            } else {
                found.push((name, path.clone()));
            }
        }
        if found.is_empty() {
            return Err(SendError::Empty);
        }
        let mut files = Vec::with_capacity(found.len());
        let mut sources = Vec::with_capacity(found.len());
        for (rel, disk) in found {
            let (size, blake3) = hash_file(&disk)?;
            files.push(Entry {
                path: rel,
                size,
                blake3,
            });
            sources.push(disk);
        }
        let manifest = Manifest::new(files)?;
        Ok(Self { manifest, sources })
    }
}

fn utf8(path: &Path, name: &std::ffi::OsStr) -> Result<String, SendError> {
    name.to_str()
        .map(str::to_owned)
        .ok_or_else(|| SendError::Name {
            path: path.to_owned(),
            source: ManifestError::UnsafePath {
                path: shown(&name.to_string_lossy()),
                reason: "name is not UTF-8",
            },
        })
}

fn walk(dir: &Path, rel: &str, found: &mut Vec<(String, PathBuf)>) -> Result<(), SendError> {
    let read = |source| SendError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = utf8(&path, &entry.file_name())?;
        let kind = entry.file_type().map_err(read)?;
        let child = format!("{rel}/{name}");
        if kind.is_dir() {
            walk(&path, &child, found)?;
        } else if kind.is_file() {
            found.push((child, path));
        } else {
            warn!(path = %path.display(), "skipping a symlink or special file");
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> Result<(u64, Digest), SendError> {
    let read = |source| SendError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut hasher = blake3::Hasher::new();
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut size = 0u64;
    loop {
        let chunk = io::BufRead::fill_buf(&mut reader).map_err(read)?;
        if chunk.is_empty() {
            break;
        }
        hasher.update(chunk);
        let n = chunk.len();
        size += n as u64;
        io::BufRead::consume(&mut reader, n);
    }
    Ok((size, hasher.finalize().into()))
}

/// Limits of a sender.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Receivers (distinct peer addresses) served at once; others get 503.
    pub max_receivers: usize,
    /// Bytes per second per response, to share a slow link (`None`: as fast as possible).
    pub limit_rate: Option<u64>,
    /// TLS, limits and drain of the accept loop.
    pub server: ServerConfig,
}

impl Default for SendConfig {
    fn default() -> Self {
        Self {
            max_receivers: 8,
            limit_rate: None,
            server: ServerConfig {
                max_conns: 256,
                ..ServerConfig::default()
            },
        }
    }
}

/// What the sender knows about one receiver (by address).
#[derive(Debug, Clone, Default)]
pub struct PeerStats {
    /// Connections open now.
    pub connections: usize,
    /// Times it fetched the manifest (the start of a receive).
    pub started: u32,
    /// Body bytes handed to this receiver so far.
    pub bytes_sent: u64,
    /// Times it reported a complete, verified receive.
    pub completed: u32,
}

/// A running offer: the files, the token, and what receivers have done.
#[derive(Debug)]
pub struct Sender {
    offer: Offer,
    token: Token,
    limit_rate: Option<u64>,
    max_receivers: usize,
    peers: Mutex<HashMap<IpAddr, PeerStats>>,
    completed: watch::Sender<u32>,
}

impl Sender {
    /// A sender of `offer`, reachable under `token`.
    pub fn new(offer: Offer, token: Token, config: &SendConfig) -> Self {
        Self {
            offer,
            token,
            limit_rate: config.limit_rate,
            max_receivers: config.max_receivers.max(1),
            peers: Mutex::new(HashMap::new()),
            completed: watch::channel(0).0,
        }
    }

    /// The manifest on offer.
    pub fn manifest(&self) -> &Manifest {
        &self.offer.manifest
    }

    /// A snapshot of every receiver seen so far.
    pub fn peers(&self) -> Vec<(IpAddr, PeerStats)> {
        let peers = self
            .peers
            .lock()
            .expect("peer table lock is never poisoned");
        let mut list: Vec<_> = peers.iter().map(|(ip, s)| (*ip, s.clone())).collect();
        list.sort_by_key(|(ip, _)| *ip);
        list
    }

    /// Watches the number of complete receives reported so far (for `--once`).
    pub fn completed(&self) -> watch::Receiver<u32> {
        self.completed.subscribe()
    }

    fn with_peer<T>(&self, ip: IpAddr, f: impl FnOnce(&mut PeerStats) -> T) -> T {
        let mut peers = self
            .peers
            .lock()
            .expect("peer table lock is never poisoned");
        f(peers.entry(ip).or_default())
    }

    /// Registers a connection; false when it would exceed the receiver limit.
    fn admit(&self, ip: IpAddr) -> bool {
        let mut peers = self
            .peers
            .lock()
            .expect("peer table lock is never poisoned");
        let active = peers.values().filter(|p| p.connections > 0).count();
        let known_active = peers.get(&ip).is_some_and(|p| p.connections > 0);
        if !known_active && active >= self.max_receivers {
            return false;
        }
        peers.entry(ip).or_default().connections += 1;
        true
    }

    /// Whether a connection from `ip` was admitted (and is still open).
    fn is_admitted(&self, ip: IpAddr) -> bool {
        self.with_peer(ip, |p| p.connections > 0)
    }

    fn leave(&self, ip: IpAddr) {
        self.with_peer(ip, |p| p.connections = p.connections.saturating_sub(1));
    }
}

/// Serves `sender` on `listener` until `stop` is cancelled.
///
/// Answers `GET /TOKEN/manifest`, `GET /TOKEN/f/<index>` (with `Range`) and
/// `POST /TOKEN/done`; anything else, or a wrong token, gets 404.
///
/// # Examples
///
/// See [`crate::transfer::receive`], whose example runs both sides.
pub async fn serve_offer(
    listener: TcpListener,
    sender: Arc<Sender>,
    config: ServerConfig,
    stop: CancellationToken,
) {
    let limits = Limits {
        // Receivers may be slow to send a head; the receiver limit, not this, turns them away.
        header_timeout: Duration::from_secs(30),
        max_conns: usize::MAX,
        ..Limits::default()
    };
    let driver = Arc::new(Driver::new(Routes { sender }, limits));
    serve(listener, config, stop, move |stream, peer, stop| {
        connection(driver.clone(), stream, peer, stop)
    })
    .await;
}

/// The methods the sender's routes answer.
const ALLOW: &str = "GET, HEAD, POST, OPTIONS";

/// The sender's routes, served by the file server's connection driver (HTTP/1.1 or HTTP/2).
struct Routes {
    sender: Arc<Sender>,
}

impl Handler for Routes {
    type Body = Reply;
    type Answer = Pin<Box<dyn Future<Output = Response<Reply>> + Send>>;

    fn answer(self: &Arc<Self>, request: Request<Incoming>, peer: SocketAddr) -> Self::Answer {
        let sender = self.sender.clone();
        Box::pin(async move {
            let method = request.method().clone();
            let mut response = if let Some(refused) = conformance::refuse(&request, ALLOW) {
                refused.map(Reply::plain)
            } else if sender.is_admitted(peer.ip()) {
                respond(&sender, request, peer.ip()).await
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "too many receivers\n")
            };
            conformance::finish(&method, &mut response);
            response
        })
    }
}

async fn connection(
    driver: Arc<Driver<Routes>>,
    stream: BoxStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let sender = driver.handler().sender.clone();
    let admitted = sender.admit(peer.ip());
    if !admitted {
        warn!(
            limit = sender.max_receivers,
            "receiver limit reached; answering 503"
        );
    }
    driver.serve(stream, peer, stop).await;
    if admitted {
        sender.leave(peer.ip());
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Reply> {
    let mut response = Response::new(Reply::plain(Body::bytes(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn respond(sender: &Arc<Sender>, request: Request<Incoming>, ip: IpAddr) -> Response<Reply> {
    let path = request.uri().path();
    let Some((_, rest)) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(token, _)| sender.token.matches(token))
    else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let method = request.method().clone();
    debug!(%method, route = rest, "request");
    match (rest, &method) {
        ("manifest", &Method::GET | &Method::HEAD) => {
            info!(%ip, "manifest fetched");
            sender.with_peer(ip, |p| p.started += 1);
            // The same body for HEAD: hyper sends its length and leaves it out.
            let mut response =
                Response::new(Reply::plain(Body::bytes(sender.offer.manifest.to_json())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        ("done", &Method::POST) => {
            info!(%ip, "receiver reports a complete transfer");
            sender.with_peer(ip, |p| p.completed += 1);
            sender.completed.send_modify(|n| *n += 1);
            text(StatusCode::NO_CONTENT, "")
        }
        (route, &Method::GET | &Method::HEAD) => {
            let index = route
                .strip_prefix("f/")
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|&i| i < sender.offer.sources.len());
            match index {
                Some(index) => file_response(sender, index, &request, ip).await,
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            }
        }
        _ => conformance::not_allowed(ALLOW).map(Reply::plain),
    }
}

async fn file_response(
    sender: &Arc<Sender>,
    index: usize,
    request: &Request<Incoming>,
    ip: IpAddr,
) -> Response<Reply> {
    let entry = &sender.offer.manifest.files[index];
    let path = sender.offer.sources[index].clone();
    let size = entry.size;
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(RangeAnswer::Full, |v| resolve_range(v, size));
    let mut response = Response::new(Reply::plain(Body::empty()));
    let (start, len) = match range.apply(size, &mut response) {
        Ok(part) => part,
        Err(refused) => return (*refused).map(Reply::plain),
    };
    let opened = tokio::task::spawn_blocking(move || -> io::Result<std::fs::File> {
        let mut file = std::fs::File::open(&path)?;
        if file.metadata()?.len() != size {
            return Err(io::Error::other(
                "the file changed size since it was offered",
            ));
        }
        file.seek(io::SeekFrom::Start(start))?;
        Ok(file)
    })
    .await
    .unwrap_or_else(|e| Err(io::Error::other(e)));
    let file = match opened {
        Ok(file) => file,
        Err(error) => {
            warn!(file = %shown(&entry.path), %error, "cannot serve file");
            return text(
                StatusCode::CONFLICT,
                "file changed or unreadable on the sender\n",
            );
        }
    };
    if request.method() != Method::HEAD {
        *response.body_mut() = Reply::metered(
            Body::file(tokio::fs::File::from_std(file), len),
            sender.clone(),
            ip,
        );
    }
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let name = entry.path.rsplit('/').next().unwrap_or(&entry.path);
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename*=UTF-8''{}",
        percent_encode(name)
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// RFC 8187 `attr-char` escaping for `filename*`.
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A response body: the file server's [`Body`], and for file contents a meter that counts
/// the bytes into the receiver's [`PeerStats`] and holds them to `--limit-rate`.
struct Reply {
    body: Body,
    meter: Option<Meter>,
}

// Files are sent through `Body::file`, never from the cache `sendfile` knows.
impl SendfileBody for Reply {}

struct Meter {
    sender: Arc<Sender>,
    ip: IpAddr,
    began: tokio::time::Instant,
    sent: u64,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Reply {
    fn plain(body: Body) -> Self {
        Self { body, meter: None }
    }

    fn metered(body: Body, sender: Arc<Sender>, ip: IpAddr) -> Self {
        Self {
            body,
            meter: Some(Meter {
                sender,
                ip,
                began: tokio::time::Instant::now(),
                sent: 0,
                pause: None,
            }),
        }
    }
}

impl http_body::Body for Reply {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(pause) = this.meter.as_mut().and_then(|m| m.pause.as_mut()) {
            ready!(pause.as_mut().poll(cx));
            if let Some(meter) = this.meter.as_mut() {
                meter.pause = None;
            }
        }
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        if let (Some(meter), Some(Ok(frame))) = (this.meter.as_mut(), &frame) {
            if let Some(data) = frame.data_ref() {
                let n = data.len() as u64;
                meter.sent += n;
                meter.sender.with_peer(meter.ip, |p| p.bytes_sent += n);
                if let Some(rate) = meter.sender.limit_rate.filter(|&r| r > 0) {
                    let due = Duration::from_secs_f64(meter.sent as f64 / rate as f64);
                    if meter.began.elapsed() < due {
                        meter.pause = Some(Box::pin(tokio::time::sleep_until(meter.began + due)));
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_beyond_the_limit_are_turned_away_until_one_leaves() {
        let offer = Offer {
            manifest: Manifest::new(vec![]).unwrap(),
            sources: vec![],
        };
        let config = SendConfig {
            max_receivers: 1,
            ..SendConfig::default()
        };
        let sender = Sender::new(offer, Token::from([7; 16]), &config);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(sender.admit(a));
        assert!(sender.admit(a), "a second connection of the same receiver");
        assert!(!sender.admit(b));
        sender.leave(a);
        sender.leave(a);
        assert!(sender.admit(b));
        assert_eq!(sender.peers().len(), 2);
    }

    #[tokio::test]
    async fn file_bodies_are_counted_and_held_to_the_rate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 512 << 10]).unwrap();
        let offer = Offer {
            manifest: Manifest::new(vec![]).unwrap(),
            sources: vec![],
        };
        let config = SendConfig {
            limit_rate: Some(2 << 20),
            ..SendConfig::default()
        };
        let sender = Arc::new(Sender::new(offer, Token::from([7; 16]), &config));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let file = tokio::fs::File::open(&path).await.unwrap();
        let body = Reply::metered(Body::file(file, 512 << 10), sender.clone(), ip);
        let began = std::time::Instant::now();
        let got = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(got.len(), 512 << 10);
        assert!(
            began.elapsed() >= Duration::from_millis(200),
            "{:?}",
            began.elapsed()
        );
        assert_eq!(sender.peers()[0].1.bytes_sent, 512 << 10);
    }

    #[test]
    fn filenames_are_percent_encoded() {
        assert_eq!(percent_encode("a b\"ü.txt"), "a%20b%22%C3%BC.txt");
    }
}
