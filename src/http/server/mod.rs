//! The static file server behind `sockit serve`: GET/HEAD of files and directory listings,
//! conditional and range requests, compression, optional uploads and Basic auth, over
//! hyper's HTTP/1.1 (keep-alive, pipelining) on the accept loop of [`crate::net`].
//!
//! Safe by default: request paths are checked before they touch the disk ([`RequestPath`]),
//! symlinks that leave the directory and hidden files are refused, and every connection is
//! bounded in time and size ([`Limits`]).
//!
//! Fast like nginx: small files are served from memory, cached files of 32 KiB or more go
//! out with `sendfile` on plain TCP (the bytes never pass through user space), and a
//! keep-alive connection between requests holds no HTTP buffers.
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

mod auth;
mod body;
mod conditional;
pub(crate) mod conformance;
pub(crate) mod heads;
mod idle;
mod listing;
mod log;
mod path;
mod range;
mod static_files;
mod upload;
mod zero_copy;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use auth::{Credentials, CredentialsError};
pub use body::Body;
pub use conditional::{Precondition, Validators, evaluate};
pub use listing::ListEntry;
pub use log::AccessLog;
pub use path::{PathError, RequestPath, encode_segment};
pub use range::{RangeAnswer, resolve_range};
pub use upload::UploadConfig;

use crate::net::{BoxStream, ServerConfig};
use static_files::{Coding, FileEntry, Files, Found, Uncached};

/// Limits every connection lives within.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request head (or the first one after a keep-alive pause) must arrive within this
    /// (slowloris); it also bounds how long an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// A connection on which no byte moves for this long is closed (stalled transfers).
    pub idle_timeout: Duration,
    /// Connections served at once; the next ones get a 503 and are closed.
    pub max_conns: usize,
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Longest request target; longer gets 414.
    pub max_uri_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_conns: 10_000,
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
        }
    }
}

/// A fixed answer to every request (`--text`, `--status`).
#[derive(Debug, Clone)]
pub struct FixedAnswer {
    /// The status of every response.
    pub status: StatusCode,
    /// The body of every response (`text/plain`).
    pub body: Bytes,
}

/// What the server serves and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory to serve.
    pub root: PathBuf,
    /// Serve and list hidden (dot) files.
    pub show_hidden: bool,
    /// Follow symlinks that lead out of `root`.
    pub follow_symlinks: bool,
    /// Compress text responses (gzip, br) for clients that accept it.
    pub compress: bool,
    /// Accept uploads (PUT, multipart POST).
    pub upload: Option<UploadConfig>,
    /// Require these credentials.
    pub auth: Option<Credentials>,
    /// Require `auth` for uploads only.
    pub auth_writes_only: bool,
    /// Answer everything with this instead of serving files.
    pub fixed: Option<FixedAnswer>,
    /// Per-connection limits.
    pub limits: Limits,
    /// Where to write the access log, if anywhere.
    pub access_log: Option<AccessLog>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            root: PathBuf::from("."),
            show_hidden: false,
            follow_symlinks: false,
            compress: true,
            upload: None,
            auth: None,
            auth_writes_only: false,
            fixed: None,
            limits: Limits::default(),
            access_log: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The directory to serve is missing or unreadable.
    #[error("cannot serve {path}")]
    Root {
        /// The directory asked for.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The path to serve is not a directory.
    #[error("not a directory: {0}")]
    NotADirectory(PathBuf),
}

/// Serves `config` on `listener` until `stop` is cancelled, then drains (bounded by `net`).
///
/// # Errors
///
/// [`ServeError`] when the directory cannot be served; nothing is accepted then.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    mut net: ServerConfig,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let root = if config.fixed.is_some() {
        config.root.clone()
    } else {
        let root = config
            .root
            .canonicalize()
            .map_err(|source| ServeError::Root {
                path: config.root.clone(),
                source,
            })?;
        if !root.is_dir() {
            return Err(ServeError::NotADirectory(config.root.clone()));
        }
        root
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .keep_alive(true)
        // A client that sends its requests and then half-closes still gets every answer.
        .half_close(true)
        // Pipelined requests are answered in order either way; hyper's `pipeline_flush`
        // would batch their flushes but (hyper 1.x) loses its automatic 400/414/431 answers.
        .pipeline_flush(false)
        // The connection's stream times request heads out (`idle::IdleIo`): hyper's own
        // timer would cost an allocation and a timer-wheel entry per request.
        .header_read_timeout(None)
        .max_header_size(config.limits.max_header_bytes)
        .max_buf_size(config.limits.max_header_bytes.max(8192) + 256 * 1024);
    // Our limit answers 503; the accept loop's, a little higher, only closes.
    net.max_conns = config.limits.max_conns.saturating_add(1024);
    let site = Arc::new(Site {
        files: Files::new(root, config.show_hidden, config.follow_symlinks),
        conns: Arc::new(Semaphore::new(config.limits.max_conns)),
        sessions: Arc::new(idle::Sessions::new(CROWDED_SESSIONS)),
        http,
        config,
    });
    crate::net::serve(listener, net, stop, move |stream, peer, stop| {
        let site = site.clone();
        async move { site.connection(stream, peer, stop).await }
    })
    .await;
    Ok(())
}

struct Site {
    config: Config,
    files: Files,
    conns: Arc<Semaphore>,
    sessions: Arc<idle::Sessions>,
    http: hyper::server::conn::http1::Builder,
}

/// A keep-alive connection quiet for this long hands its socket back from hyper (see
/// `Site::connection`).
const PARK_AFTER: Duration = Duration::from_millis(50);
/// Past this many connections in a session at once (about 17 KiB of buffers each), quiet
/// ones park without the pause.
const CROWDED_SESSIONS: usize = 1024;

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 17\r\nRetry-After: 1\r\nConnection: close\r\n\r\nserver too busy\r\n";

impl Site {
    async fn connection(
        self: Arc<Self>,
        mut stream: BoxStream,
        peer: SocketAddr,
        stop: CancellationToken,
    ) {
        let Ok(_permit) = self.conns.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = self.config.limits.max_conns, "connection limit reached; answering 503");
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = stream.write_all(BUSY).await;
            })
            .await;
            heads::linger(&mut stream, None, &stop).await;
            return;
        };
        // hyper allocates its buffers up front and keeps them while a keep-alive connection
        // waits: a connection is handed to hyper only once a request starts, and handed back
        // (parked) once it has been quiet for a moment, so a silent or idle connection costs
        // only this wait (bounded like a request head), however many there are.
        let activity = Arc::new(idle::Activity::default());
        let offers = Arc::new(zero_copy::Offers::default());
        let mut waiting = Waiting {
            stream: zero_copy::ZeroCopy::new(stream, offers.clone()),
            prefix: Bytes::new(),
            since: tokio::time::Instant::now(),
        };
        loop {
            if waiting.prefix.is_empty() {
                let wait = self
                    .config
                    .limits
                    .header_timeout
                    .saturating_sub(waiting.since.elapsed());
                let mut first = [0u8; 1];
                let read = tokio::select! {
                    read = tokio::time::timeout(wait, waiting.stream.read(&mut first)) => read,
                    _ = stop.cancelled() => return,
                };
                if !matches!(read, Ok(Ok(1))) {
                    return; // closed, failed, or silent past the head timeout
                }
                waiting.prefix = Bytes::copy_from_slice(&first);
            }
            // Boxed: a waiting connection then holds only what the lines above need, and
            // the session's state (hyper's connection) exists only while it talks.
            let session = self.session(waiting, &activity, &offers, peer, &stop);
            match Box::pin(session).await {
                Some(parked) => waiting = parked,
                None => return,
            }
        }
    }

    /// Serves requests on a connection that has started one, until the connection ends
    /// (`None`) or parks.
    async fn session(
        self: &Arc<Self>,
        waiting: Waiting,
        activity: &Arc<idle::Activity>,
        offers: &Arc<zero_copy::Offers>,
        peer: SocketAddr,
        stop: &CancellationToken,
    ) -> Option<Waiting> {
        let head_timeout = (self.config.limits.header_timeout, waiting.since);
        let limits = heads::HeadLimits {
            max_target_bytes: self.config.limits.max_uri_bytes,
            max_head_bytes: self.config.limits.max_header_bytes,
        };
        let io = idle::IdleIo::new(
            heads::HeadCheck::new(idle::Rewind::new(waiting.prefix, waiting.stream), limits),
            self.config.limits.idle_timeout,
        )
        .parking(
            PARK_AFTER,
            activity.clone(),
            self.sessions.enter(),
            head_timeout,
        );
        let site = self.clone();
        let requests = activity.clone();
        let offered = offers.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let in_flight = requests.start(!http_body::Body::is_end_stream(req.body()));
            let logged = site.logged(&req);
            let method = req.method().clone();
            match site.answer_now(&req) {
                // Most requests (cached files): answered here, with no future to allocate.
                Ok(res) => Either::Left(std::future::ready(Ok::<_, Infallible>(
                    site.sent(&method, res, logged, peer, &offered, in_flight),
                ))),
                Err(later) => {
                    let site = site.clone();
                    let offers = offered.clone();
                    Either::Right(Box::pin(async move {
                        let res = site.answer_later(req, later).await;
                        Ok(site.sent(&method, res, logged, peer, &offers, in_flight))
                    }))
                }
            }
        });
        let mut conn = self.http.serve_connection(TokioIo::new(io), service);
        let result = tokio::select! {
            // The connection first: it is what wakes this task almost every time.
            biased;
            result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => result,
            _ = stop.cancelled() => {
                std::pin::Pin::new(&mut conn).graceful_shutdown();
                std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)).await
            }
        };
        if let Err(error) = &result {
            debug!(%error, "connection ended with an error");
        }
        let parts = conn.into_parts();
        let io = parts.io.into_inner();
        let parked = result.is_ok() && io.parked() && !stop.is_cancelled();
        let since = io.last_progress();
        let (refusal, rewind, checking) = io.into_inner().into_parts();
        let (unread, mut stream) = rewind.into_parts();
        offers.clear();
        if !parked {
            heads::linger(&mut stream, refusal, stop).await;
            return None;
        }
        // Nothing is left over when parking; anything that is goes first all the same,
        // copied: an empty `read_buf` still holds hyper's whole read buffer.
        let prefix = match (
            parts.read_buf.is_empty(),
            checking.is_empty(),
            unread.is_empty(),
        ) {
            (true, true, true) => Bytes::new(),
            (false, true, true) => Bytes::copy_from_slice(&parts.read_buf),
            (true, true, false) => Bytes::copy_from_slice(&unread),
            _ => [&parts.read_buf[..], &checking[..], &unread[..]]
                .concat()
                .into(),
        };
        Some(Waiting {
            stream,
            prefix,
            since,
        })
    }

    /// Fits `res` to its status and `method` ([`conformance::finish`]), logs it, offers its body to the connection's stream (`offers`), and ties the end
    /// of the request to the end of its body.
    fn sent(
        &self,
        method: &Method,
        res: Response<Body>,
        logged: Option<Logged>,
        peer: SocketAddr,
        offers: &zero_copy::Offers,
        in_flight: idle::InFlight,
    ) -> Response<idle::Tracked> {
        let mut res = res;
        conformance::finish(method, &mut res);
        if let (Some(log), Some(logged)) = (&self.config.access_log, logged) {
            let bytes = res
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .or_else(|| http_body::Body::size_hint(res.body()).exact());
            log.record(&log::Entry {
                peer,
                user: logged.user.as_deref(),
                method: logged.method.as_str(),
                target: &logged.target,
                version: logged.version,
                status: res.status().as_u16(),
                bytes,
            });
        }
        if let Some(sendable) = res.body().sendable() {
            offers.offer(sendable);
        }
        res.map(|body| idle::Tracked::new(body, in_flight))
    }

    /// The methods this server answers.
    fn allow(&self) -> &'static str {
        if self.config.fixed.is_some() {
            // A fixed answer is given to every method a client may send.
            "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"
        } else if self.config.upload.is_some() {
            "GET, HEAD, PUT, POST, OPTIONS"
        } else {
            "GET, HEAD, OPTIONS"
        }
    }

    /// What the access log needs to know of `req`, when there is an access log.
    fn logged(&self, req: &Request<Incoming>) -> Option<Logged> {
        self.config.access_log.as_ref()?;
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().to_string(), |pq| pq.as_str().to_owned());
        let user = self.config.auth.as_ref().and_then(|creds| {
            req.headers()
                .get(header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .filter(|h| creds.accepts_header(h))
                .map(|_| creds.user().to_owned())
        });
        Some(Logged {
            method: req.method().clone(),
            version: req.version(),
            target,
            user,
        })
    }

    /// The answer to `req` when it needs no waiting: a cached file, a redirect, a refusal.
    /// Otherwise what is left to do, for [`Site::answer_later`].
    fn answer_now(&self, req: &Request<Incoming>) -> Result<Response<Body>, Later> {
        if let Some(res) = conformance::refuse(req, self.allow()) {
            return Ok(res);
        }
        let is_write = matches!(*req.method(), Method::PUT | Method::POST);
        if let Some(creds) = &self.config.auth {
            if is_write || !self.config.auth_writes_only {
                let ok = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|h| h.to_str().ok())
                    .is_some_and(|h| creds.accepts_header(h));
                if !ok {
                    let mut res = text(StatusCode::UNAUTHORIZED, "authentication required\n");
                    res.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"sockit\", charset=\"UTF-8\""),
                    );
                    return Ok(res);
                }
            }
        }
        if let Some(fixed) = &self.config.fixed {
            let mut res = Response::new(if req.method() == Method::HEAD {
                Body::empty()
            } else {
                Body::bytes(fixed.body.clone())
            });
            *res.status_mut() = fixed.status;
            let headers = res.headers_mut();
            headers.insert(header::CONTENT_TYPE, TEXT_PLAIN.clone());
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(fixed.body.len()));
            return Ok(res);
        }
        let path = match RequestPath::parse(req.uri().path()) {
            Ok(path) => path,
            Err(error) => {
                return Ok(text(
                    StatusCode::BAD_REQUEST,
                    &format!("bad request: {error}\n"),
                ));
            }
        };
        match (req.method(), &self.config.upload) {
            (&Method::GET | &Method::HEAD, _) => match self.files.lookup_cached(&path) {
                Ok(found) => self.found(req, path, found),
                Err(uncached) => Err(Later::Lookup(path, uncached)),
            },
            (&Method::PUT, Some(upload)) => Err(Later::Put(path, upload.clone())),
            (&Method::POST, Some(upload)) => Err(Later::Post(path, upload.clone())),
            _ => Ok(conformance::not_allowed(self.allow())),
        }
    }

    /// The rest of [`Site::answer_now`]: lookups past the cache, directories, compressed
    /// forms, files read from disk, uploads.
    async fn answer_later(&self, req: Request<Incoming>, mut later: Later) -> Response<Body> {
        loop {
            later = match later {
                Later::Lookup(path, uncached) => {
                    let found = self.files.lookup_uncached(uncached).await;
                    match self.found(&req, path, found) {
                        Ok(res) => return res,
                        Err(later) => later,
                    }
                }
                Later::Dir(path, dir) => {
                    let index = self.files.lookup(&path.join("index.html")).await;
                    return match index {
                        Found::File(index) => self.file(&req, &path, index).await,
                        _ => self.listing(&req, &path, &dir).await,
                    };
                }
                Later::File(path, entry) => return self.file(&req, &path, entry).await,
                Later::Open(open) => return open.finish().await,
                Later::Put(path, upload) => return self.put(req, &path, &upload).await,
                Later::Post(path, upload) => return self.post(req, &path, &upload).await,
            };
        }
    }

    /// The answer for what a GET or HEAD of `path` found, when it needs no waiting.
    fn found(
        &self,
        req: &Request<Incoming>,
        path: RequestPath,
        found: Found,
    ) -> Result<Response<Body>, Later> {
        match found {
            Found::File(entry) => {
                let headers = req.headers();
                if entry.compressible
                    && headers.contains_key(header::ACCEPT_ENCODING)
                    && !headers.contains_key(header::RANGE)
                {
                    // A compressed form may be chosen, which may take a lookup or compressing.
                    return Err(Later::File(path, entry));
                }
                self.file_answer(req, &entry, Representation::identity(entry.clone()))
                    .map_err(Later::Open)
            }
            Found::Dir(_) if !path.has_trailing_slash() => {
                let mut location = path.to_href(true);
                if let Some(query) = req.uri().query() {
                    location.push('?');
                    location.push_str(query);
                }
                Ok(redirect(StatusCode::MOVED_PERMANENTLY, &location))
            }
            Found::Dir(dir) => Err(Later::Dir(path, dir)),
            Found::Missing => Ok(text(StatusCode::NOT_FOUND, "not found\n")),
            Found::Forbidden => Ok(text(StatusCode::FORBIDDEN, "forbidden\n")),
        }
    }

    async fn listing(
        &self,
        req: &Request<Incoming>,
        path: &RequestPath,
        dir: &std::path::Path,
    ) -> Response<Body> {
        let entries = match listing::read(&self.files, dir).await {
            Ok(entries) => entries,
            Err(_) => return text(StatusCode::FORBIDDEN, "cannot read directory\n"),
        };
        let wants_json = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "format=json"));
        let (body, content_type) = if wants_json {
            (listing::to_json(&entries), "application/json")
        } else {
            (
                listing::to_html(path, &entries, self.config.upload.is_some()),
                "text/html; charset=utf-8",
            )
        };
        let len = body.len();
        let mut res = Response::new(if req.method() == Method::HEAD {
            Body::empty()
        } else {
            Body::bytes(body)
        });
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        // Made anew for every request, with no validator to revalidate it by.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }

    /// A file, in the form the client asked for and accepts.
    async fn file(
        &self,
        req: &Request<Incoming>,
        path: &RequestPath,
        entry: Arc<FileEntry>,
    ) -> Response<Body> {
        let headers = req.headers();
        // A Range applies to the identity form; compressed forms are sent whole.
        let mut chosen = None;
        if !headers.contains_key(header::RANGE) && entry.compressible {
            for coding in accepted_codings(headers) {
                chosen = self.encoded(path, &entry, coding).await;
                if chosen.is_some() {
                    break;
                }
            }
        }
        let chosen = chosen.unwrap_or_else(|| Representation::identity(entry.clone()));
        match self.file_answer(req, &entry, chosen) {
            Ok(res) => res,
            Err(open) => open.finish().await,
        }
    }

    /// The answer with `chosen`, a form of `entry` (conditional requests, ranges, headers);
    /// `Err` when its body is still to be opened on disk.
    fn file_answer(
        &self,
        req: &Request<Incoming>,
        entry: &FileEntry,
        chosen: Representation,
    ) -> Result<Response<Body>, Box<OpenLater>> {
        let headers = req.headers();
        let precondition = evaluate(
            headers,
            Validators {
                etag: chosen.etag(),
                modified: entry.modified,
            },
        );
        let mut res = Response::new(Body::empty());
        // Room for every header set below, so the map never grows.
        *res.headers_mut() = http::HeaderMap::with_capacity(10);
        let out = res.headers_mut();
        out.insert(header::ETAG, chosen.etag_header());
        out.insert(header::LAST_MODIFIED, entry.last_modified.clone());
        // Files change under a file server: caches revalidate (a cheap 304) rather than
        // guess a freshness lifetime from Last-Modified.
        out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if entry.compressible && (self.config.compress || chosen.coding.is_some()) {
            out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        let use_range = match precondition {
            Precondition::NotModified => {
                *res.status_mut() = StatusCode::NOT_MODIFIED;
                return Ok(res);
            }
            Precondition::Failed => {
                return Ok(text(
                    StatusCode::PRECONDITION_FAILED,
                    "precondition failed\n",
                ));
            }
            Precondition::Proceed { use_range } => use_range,
        };
        out.insert(header::CONTENT_TYPE, entry.content_type.clone());
        out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(coding) = chosen.coding {
            out.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(coding.name()),
            );
        }
        let len = chosen.len();
        let answer = match headers.get(header::RANGE).and_then(|h| h.to_str().ok()) {
            Some(range) if use_range && chosen.coding.is_none() => resolve_range(range, len),
            _ => RangeAnswer::Full,
        };
        let (start, count) = match answer {
            RangeAnswer::Full => (0, len),
            RangeAnswer::Partial { start, end } => {
                *res.status_mut() = StatusCode::PARTIAL_CONTENT;
                let value = format!("bytes {start}-{end}/{len}");
                if let Ok(v) = HeaderValue::from_str(&value) {
                    res.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                (start, end - start + 1)
            }
            RangeAnswer::Unsatisfiable => {
                let mut res = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    res.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(res);
            }
        };
        let content_length = match &chosen.compressed {
            None if count == chosen.entry.len => chosen.entry.content_length.clone(),
            _ => HeaderValue::from(count),
        };
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, content_length);
        if req.method() == Method::HEAD {
            return Ok(res);
        }
        // Both bounds lie within the bytes, which hold `len` bytes.
        let (from, to) = (start as usize, (start + count) as usize);
        let form = &chosen.entry;
        *res.body_mut() = match (&chosen.compressed, &form.content, &form.open_file) {
            (Some((_, _, bytes)), _, _) => Body::bytes(bytes.slice(from..to)),
            // The connection's stream may send these bytes straight from the file.
            (None, Some(bytes), Some(file)) => {
                Body::cached(bytes.slice(from..to), file.clone(), start)
            }
            (None, Some(bytes), None) => Body::bytes(bytes.slice(from..to)),
            (None, None, _) => {
                return Err(Box::new(OpenLater {
                    res,
                    path: form.path.clone(),
                    start,
                    count,
                }));
            }
        };
        Ok(res)
    }

    /// The `coding` form of `entry`: a pre-compressed sibling (`name.br`, `name.gz`) when one
    /// exists, else compressed here when allowed.
    async fn encoded(
        &self,
        path: &RequestPath,
        entry: &Arc<FileEntry>,
        coding: Coding,
    ) -> Option<Representation> {
        let name = path.file_name()?;
        let sibling = path.parent().join(&format!("{name}{}", coding.suffix()));
        if let Found::File(packed) = self.files.lookup(&sibling).await {
            let mut rep = Representation::identity(packed);
            rep.coding = Some(coding);
            return Some(rep);
        }
        if !self.config.compress {
            return None;
        }
        let bytes = entry.compressed(coding).await?;
        let etag = format!("{}-{}\"", entry.etag.trim_end_matches('"'), coding.name());
        let header = HeaderValue::from_str(&etag).ok()?;
        Some(Representation {
            entry: entry.clone(),
            compressed: Some((etag, header, bytes)),
            coding: Some(coding),
        })
    }

    async fn put(
        &self,
        req: Request<Incoming>,
        path: &RequestPath,
        config: &UploadConfig,
    ) -> Response<Body> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        match upload::put(&self.files, config, path, declared, req.into_body()).await {
            Ok(saved) => {
                let status = if saved.replaced {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                let href = saved.path.to_href(false);
                let mut res = text(status, &format!("saved {href}\n"));
                if let Ok(v) = HeaderValue::from_str(&href) {
                    res.headers_mut().insert(header::LOCATION, v);
                }
                res
            }
            Err(error) => upload_failed(&error),
        }
    }

    async fn post(
        &self,
        req: Request<Incoming>,
        path: &RequestPath,
        config: &UploadConfig,
    ) -> Response<Body> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !content_type.starts_with("multipart/form-data") {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "POST expects multipart/form-data; use PUT for raw bytes\n",
            );
        }
        let wants_html = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        match upload::post(&self.files, config, path, &content_type, req.into_body()).await {
            Ok(saved) if wants_html => {
                // Back to the listing, which now shows the new files.
                debug!(files = saved.len(), "form upload saved");
                redirect(StatusCode::SEE_OTHER, &path.to_href(true))
            }
            Ok(saved) => {
                let mut body = String::new();
                for file in &saved {
                    body.push_str("saved ");
                    body.push_str(&file.path.to_href(false));
                    body.push('\n');
                }
                text(StatusCode::CREATED, &body)
            }
            Err(error) => upload_failed(&error),
        }
    }
}

fn upload_failed(error: &upload::UploadError) -> Response<Body> {
    debug!(%error, "upload refused");
    let mut res = text(error.status(), &format!("upload failed: {error}\n"));
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of an over-large body is not worth reading.
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// A connection between requests: its stream, the bytes of its next request already read,
/// and since when it has waited for that request.
struct Waiting {
    stream: zero_copy::ZeroCopy,
    prefix: Bytes,
    since: tokio::time::Instant,
}

/// What is left to answer a request once [`Site::answer_now`] could not.
enum Later {
    /// A GET or HEAD whose path the cache could not answer.
    Lookup(RequestPath, Uncached),
    /// A directory asked for with its trailing slash: its index or its listing.
    Dir(RequestPath, PathBuf),
    /// A file that may be sent compressed.
    File(RequestPath, Arc<FileEntry>),
    /// A response whose body is read from disk.
    Open(Box<OpenLater>),
    /// An upload, allowed by this configuration.
    Put(RequestPath, UploadConfig),
    Post(RequestPath, UploadConfig),
}

/// A response but for its body, `count` bytes of the file at `path` from `start`.
struct OpenLater {
    res: Response<Body>,
    path: PathBuf,
    start: u64,
    count: u64,
}

impl OpenLater {
    async fn finish(self: Box<Self>) -> Response<Body> {
        let Self {
            mut res,
            path,
            start,
            count,
        } = *self;
        match open_at(path, start).await {
            Ok(file) => {
                *res.body_mut() = Body::file(file, count);
                res
            }
            Err(_) => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// What the access log says of a request, taken before the request is answered.
struct Logged {
    method: Method,
    version: http::Version,
    target: String,
    user: Option<String>,
}

/// One form of a file: identity, a pre-compressed sibling, or compressed here.
struct Representation {
    /// The file whose validators (and, unless `compressed`, bytes) this form uses.
    entry: Arc<FileEntry>,
    /// Bytes compressed here, with their own entity tag.
    compressed: Option<(String, HeaderValue, Bytes)>,
    coding: Option<Coding>,
}

impl Representation {
    fn identity(entry: Arc<FileEntry>) -> Self {
        Self {
            entry,
            compressed: None,
            coding: None,
        }
    }

    fn etag(&self) -> &str {
        self.compressed
            .as_ref()
            .map_or(&self.entry.etag, |(etag, _, _)| etag)
    }

    fn etag_header(&self) -> HeaderValue {
        self.compressed
            .as_ref()
            .map_or(&self.entry.etag_header, |(_, header, _)| header)
            .clone()
    }

    fn len(&self) -> u64 {
        self.compressed
            .as_ref()
            .map_or(self.entry.len, |(_, _, bytes)| bytes.len() as u64)
    }
}

/// The codings the client accepts, best first (br, then gzip).
fn accepted_codings(headers: &http::HeaderMap) -> Vec<Coding> {
    let Some(accept) = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return Vec::new();
    };
    let mut br = None;
    let mut gzip = None;
    let mut star = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        let accepted = q > 0.0;
        match token.as_str() {
            "br" => br = Some(accepted),
            "gzip" | "x-gzip" => gzip = Some(accepted),
            "*" => star = Some(accepted),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if br.or(star).unwrap_or(false) {
        out.push(Coding::Brotli);
    }
    if gzip.or(star).unwrap_or(false) {
        out.push(Coding::Gzip);
    }
    out
}

async fn open_at(path: PathBuf, start: u64) -> std::io::Result<tokio::fs::File> {
    let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        use std::io::{Seek, SeekFrom};
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(start))?;
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(tokio::fs::File::from_std(file))
}

static TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut res = Response::new(Body::bytes(Bytes::copy_from_slice(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, TEXT_PLAIN.clone());
    res
}

fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut res = text(status, "");
    // A directory may become a file: no cache keeps the redirect on a guess.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_preferences() {
        let codings = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
            accepted_codings(&headers)
        };
        assert_eq!(codings("gzip, deflate, br"), [Coding::Brotli, Coding::Gzip]);
        assert_eq!(codings("gzip"), [Coding::Gzip]);
        assert_eq!(codings("br;q=0, gzip;q=0.5"), [Coding::Gzip]);
        assert_eq!(codings("*"), [Coding::Brotli, Coding::Gzip]);
        assert_eq!(codings("*, gzip;q=0"), [Coding::Brotli]);
        assert_eq!(codings("identity"), []);
    }
}
