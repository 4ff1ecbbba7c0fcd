//! The HTTP/1.1 client: [`Client`] (keep-alive pool, timeouts, redirects, TLS options),
//! [`RequestBuilder`] and [`Response`] (status, headers, streaming or whole body, JSON).
//! hyper does the framing; `net::open` makes the connections (TCP, TLS, pinning).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::{debug, info, warn};
use url::Url;

use crate::http::request_first::{RequestFirst, SendState};
use crate::http::trace::HttpTraced;
use crate::net::tls::{self, Verify};
use crate::net::trace::TraceSink;
use crate::net::{
    self, AddrError, ClientOptions, DEFAULT_CONNECT_HOST, HostPort, NetError, Target,
};

/// What went wrong with an HTTP exchange.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL could not be parsed.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// What was given.
        url: String,
        /// What the URL parser said.
        reason: String,
    },
    /// Only `http` and `https` are spoken here.
    #[error("unsupported URL scheme {0:?} (use http:// or https://)")]
    UnsupportedScheme(String),
    /// Connecting, resolving, TLS or a timeout.
    #[error("{0}")]
    Net(#[from] NetError),
    /// The server broke the HTTP protocol or closed the connection early.
    #[error("HTTP exchange with {origin} failed")]
    Protocol {
        /// `scheme://host:port`.
        origin: String,
        /// hyper's reason.
        #[source]
        source: hyper::Error,
    },
    /// The server stopped taking the request (broken pipe, reset) and sent no answer.
    #[error("sending the request to {origin} failed, and no response came")]
    Send {
        /// `scheme://host:port`.
        origin: String,
        /// The write error.
        #[source]
        source: io::Error,
    },
    /// Reading the body failed or it was cut short.
    #[error("reading the response body")]
    Body(#[source] io::Error),
    /// More redirects than allowed.
    #[error("too many redirects (more than {0})")]
    TooManyRedirects(usize),
    /// A redirect whose `Location` is missing or unusable.
    #[error("redirect {status} with a bad Location header: {reason}")]
    BadRedirect {
        /// The redirect's status.
        status: StatusCode,
        /// What is wrong.
        reason: String,
    },
    /// A header name or value that HTTP does not allow.
    #[error("invalid header {0}")]
    InvalidHeader(String),
    /// The body is not the JSON asked for.
    #[error("the response body is not valid JSON for this type")]
    Json(#[source] serde_json::Error),
    /// Serialising a JSON request body failed.
    #[error("cannot encode the request body as JSON")]
    JsonEncode(#[source] serde_json::Error),
}

/// How a [`Client`] behaves. `Default` is what `sockit get` uses without flags.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Limit for resolving, connecting and the TLS handshake.
    pub connect_timeout: Duration,
    /// Longest wait for the response head and between two reads of the body (`None`: no limit).
    pub read_timeout: Option<Duration>,
    /// How the server's certificate is checked.
    pub verify: Verify,
    /// Follow redirects (`--follow`).
    pub follow_redirects: bool,
    /// At most this many redirects are followed.
    pub max_redirects: usize,
    /// Ask for and decode gzip, deflate and br bodies.
    pub decompress: bool,
    /// Record the plain HTTP bytes of every connection here (`--trace`).
    pub trace: Option<TraceSink>,
    /// Show `Authorization`, `Cookie`, … in the trace instead of `*`s.
    pub trace_secrets: bool,
    /// The `User-Agent` header sent unless a request sets its own.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Some(Duration::from_secs(30)),
            verify: Verify::WebPki,
            follow_redirects: false,
            max_redirects: 10,
            decompress: true,
            trace: None,
            trace_secrets: false,
            user_agent: concat!("sockit/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// `scheme://host:port`: connections are reused within one origin only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    tls: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn of(url: &Url) -> Result<Self, HttpError> {
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(HttpError::UnsupportedScheme(other.to_owned())),
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => {
                return Err(HttpError::InvalidUrl {
                    url: url.to_string(),
                    reason: "no host".into(),
                });
            }
        };
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { tls, host, port })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// One connection: hyper's handle and what became of the request bytes written on it.
struct Sender {
    hyper: SendRequest<Full<Bytes>>,
    sent: Arc<SendState>,
}

type Pool = Arc<Mutex<HashMap<Origin, Vec<Sender>>>>;

/// An HTTP/1.1 client with a keep-alive pool. Cloning is cheap and shares the pool.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let addr = listener.local_addr()?;
/// # tokio::spawn(async move {
/// #     let (mut s, _) = listener.accept().await.unwrap();
/// #     let mut buf = [0; 1024];
/// #     let _ = s.read(&mut buf).await;
/// #     s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").await.unwrap();
/// # });
/// use sockit::http::{Client, ClientConfig};
///
/// let client = Client::new(ClientConfig { follow_redirects: true, ..Default::default() });
/// let response = client.get(&format!("http://{addr}/")).header("Accept", "text/plain").send().await?;
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.text().await?, "hi");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
    tls: Arc<Mutex<Option<Arc<rustls::ClientConfig>>>>,
    pool: Pool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new(ClientConfig::default())
    }
}

/// A request ready to send: method, URL, headers and a body held in memory.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The absolute `http`/`https` URL.
    pub url: Url,
    /// Headers to send (the client adds `Host`, `User-Agent`, `Accept`, `Accept-Encoding`
    /// and `Content-Length` when absent).
    pub headers: HeaderMap,
    /// The body; empty for none.
    pub body: Bytes,
    /// Default headers not to send (`User-Agent:` on the command line).
    pub unset: Vec<HeaderName>,
}

/// The head of a request as it was sent (for `-v`).
#[derive(Debug, Clone)]
pub struct SentHead {
    /// The method.
    pub method: Method,
    /// The URL asked for.
    pub url: Url,
    /// Every header sent, `Host` first.
    pub headers: HeaderMap,
}

/// One redirect that was followed: what was sent and what came back.
#[derive(Debug, Clone)]
pub struct Hop {
    /// The request.
    pub request: SentHead,
    /// The redirect status.
    pub status: StatusCode,
    /// The redirect response's headers.
    pub headers: HeaderMap,
}

/// How long the parts of an exchange took, from the start of the first request.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// When the last connection was ready (`None` when one from the pool was reused).
    pub connected: Option<Duration>,
    /// When the final response head arrived.
    pub head: Duration,
}

impl Client {
    /// A client with this configuration. TLS settings are loaded on the first `https` request.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config: Arc::new(config),
            tls: Arc::default(),
            pool: Arc::default(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Starts a request with any method.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let request = parse_url(url).map(|url| Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            unset: Vec::new(),
        });
        RequestBuilder {
            client: self.clone(),
            request,
        }
    }

    /// Starts a `GET`.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// Starts a `POST`.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// Sends `request`, following redirects when configured, and returns the response once
    /// its head has arrived; the body is read from the [`Response`].
    ///
    /// # Errors
    ///
    /// [`HttpError`]: connection, TLS, timeout, protocol or redirect failures.
    pub async fn send(&self, mut request: Request) -> Result<Response, HttpError> {
        let started = Instant::now();
        let mut history = Vec::new();
        loop {
            move_credentials_to_header(&mut request)?;
            let origin = Origin::of(&request.url)?;
            let head = self.prepare(&request, &origin);
            let (response, sender, connected) =
                self.exchange(&request, &head, &origin, started).await?;
            let timings = Timings {
                connected,
                head: started.elapsed(),
            };
            let (parts, incoming) = response.into_parts();
            debug!(status = %parts.status, url = %request.url, "response");
            let reusable =
                !connection_closes(parts.version, &parts.headers) && !sender.sent.has_failed();
            let release = reusable.then(|| Release {
                pool: self.pool.clone(),
                origin: origin.clone(),
                sender,
            });
            let raw = RawBody {
                incoming,
                release,
                read_timeout: self.config.read_timeout,
            };
            let redirect = self
                .config
                .follow_redirects
                .then(|| redirect_target(&request, parts.status, &parts.headers))
                .transpose()?
                .flatten();
            let Some(next_url) = redirect else {
                let body = if self.config.decompress {
                    Body::decoding(raw, &parts.headers)
                } else {
                    Body::Raw(raw)
                };
                return Ok(Response {
                    status: parts.status,
                    version: parts.version,
                    headers: parts.headers,
                    url: request.url,
                    body,
                    request: head,
                    history,
                    timings,
                });
            };
            if history.len() >= self.config.max_redirects {
                return Err(HttpError::TooManyRedirects(self.config.max_redirects));
            }
            // Read the small redirect body so that the connection can serve the next request.
            let mut raw = raw;
            raw.drain(64 * 1024).await;
            history.push(Hop {
                request: head,
                status: parts.status,
                headers: parts.headers,
            });
            request = next_request(request, parts.status, next_url);
        }
    }

    /// Sends one request and waits for its head. A kept-alive connection that the server
    /// closed meanwhile is replaced once, when the request is safe to send again.
    async fn exchange(
        &self,
        request: &Request,
        head: &SentHead,
        origin: &Origin,
        started: Instant,
    ) -> Result<(hyper::Response<Incoming>, Sender, Option<Duration>), HttpError> {
        let replayable = request.body.is_empty()
            || matches!(
                request.method,
                Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
            );
        let mut fresh_only = false;
        loop {
            let (mut sender, connected) = if fresh_only {
                (self.connect(origin).await?, Some(started.elapsed()))
            } else {
                self.sender(origin, started).await?
            };
            let exchange = sender
                .hyper
                .send_request(build_hyper_request(request, head)?);
            let result =
                match self.config.read_timeout {
                    Some(limit) => tokio::time::timeout(limit, exchange).await.map_err(|_| {
                        NetError::Timeout {
                            what: format!("waiting for the response from {origin}"),
                            after: limit,
                        }
                    })?,
                    None => exchange.await,
                };
            let cut_short = sender.sent.take_failure();
            if let (Some(err), Ok(response)) = (&cut_short, &result) {
                warn!(
                    %origin,
                    status = %response.status(),
                    "the server answered before it took the whole request ({err})"
                );
            }
            match result {
                Ok(response) => return Ok((response, sender, connected)),
                Err(err)
                    if connected.is_none()
                        && replayable
                        && (err.is_canceled()
                            || err.is_incomplete_message()
                            || cut_short.is_some()) =>
                {
                    debug!(%origin, %err, "kept-alive connection was closed; reconnecting");
                    fresh_only = true;
                }
                Err(source) => {
                    let origin = origin.to_string();
                    return Err(match cut_short {
                        Some(source) => HttpError::Send { origin, source },
                        None => HttpError::Protocol { origin, source },
                    });
                }
            }
        }
    }

    /// A ready connection to `origin`: one from the pool, or a new one.
    async fn sender(
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
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let senders = pool.get_mut(origin)?;
        while let Some(sender) = senders.pop() {
            if !sender.hyper.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self, origin: &Origin) -> Result<Sender, HttpError> {
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

    /// The head as it goes on the wire: the request's headers plus the defaults.
    fn prepare(&self, request: &Request, origin: &Origin) -> SentHead {
        let mut headers = HeaderMap::with_capacity(request.headers.len() + 5);
        let default_port = if origin.tls { 443 } else { 80 };
        let host = match (request.url.host_str(), origin.port) {
            (Some(h), p) if p == default_port => h.to_owned(),
            (Some(h), p) => format!("{h}:{p}"),
            (None, _) => String::new(),
        };
        if let Ok(value) = HeaderValue::from_str(&host) {
            headers.insert(header::HOST, value);
        }
        let mut defaults = vec![(header::ACCEPT, HeaderValue::from_static("*/*"))];
        if let Ok(ua) = HeaderValue::from_str(&self.config.user_agent) {
            defaults.push((header::USER_AGENT, ua));
        }
        if self.config.decompress {
            defaults.push((
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("gzip, deflate, br"),
            ));
        }
        for (name, value) in defaults {
            if !request.headers.contains_key(&name) && !request.unset.contains(&name) {
                headers.insert(name, value);
            }
        }
        for (name, value) in &request.headers {
            headers.append(name.clone(), value.clone());
        }
        if !request.body.is_empty() || matches!(request.method, Method::POST | Method::PUT) {
            headers
                .entry(header::CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(request.body.len()));
        }
        SentHead {
            method: request.method.clone(),
            url: request.url.clone(),
            headers,
        }
    }
}

fn parse_url(url: &str) -> Result<Url, HttpError> {
    target_url(url, "http")
}

/// The URL for what the user typed, in any form every command accepts ([`Target`]):
/// `https://x/a`, `x/a` (`default_scheme` is added), `:8080/a` and `8080` (localhost),
/// `user:password@x/` (the credentials are sent as Basic authentication).
///
/// # Examples
///
/// ```
/// use sockit::http::target_url;
///
/// assert_eq!(target_url("18000", "http").unwrap().as_str(), "http://localhost:18000/");
/// assert_eq!(target_url(":8443/a?b=c", "https").unwrap().as_str(), "https://localhost:8443/a?b=c");
/// assert_eq!(
///     target_url("x.test/?next=http://y/", "http").unwrap().as_str(),
///     "http://x.test/?next=http://y/"
/// );
/// ```
///
/// # Errors
///
/// [`HttpError::InvalidUrl`] for malformed text,
/// [`HttpError::UnsupportedScheme`] for a scheme other than `http` and `https`.
pub fn target_url(input: &str, default_scheme: &str) -> Result<Url, HttpError> {
    let target = Target::parse(input).map_err(|e| match e {
        AddrError::Invalid { reason, .. } => HttpError::InvalidUrl {
            url: input.to_owned(),
            reason: reason.to_owned(),
        },
        other => HttpError::Net(other.into()),
    })?;
    let scheme = target.scheme.as_deref().unwrap_or(default_scheme);
    if !matches!(scheme, "http" | "https") {
        return Err(HttpError::UnsupportedScheme(scheme.to_owned()));
    }
    let host = match target.host.as_deref() {
        Some(host) if host.contains(':') => format!("[{host}]"),
        Some(host) => host.to_owned(),
        None => DEFAULT_CONNECT_HOST.to_owned(),
    };
    let mut text = format!("{scheme}://{host}");
    if let Some(port) = target.port {
        text.push_str(&format!(":{port}"));
    }
    if !target.rest.starts_with('/') {
        text.push('/');
    }
    text.push_str(&target.rest);
    let invalid = |reason: String| HttpError::InvalidUrl {
        url: input.to_owned(),
        reason,
    };
    let mut url = Url::parse(&text).map_err(|e| invalid(e.to_string()))?;
    if let Some(userinfo) = &target.userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo.as_str(), None),
        };
        url.set_username(user)
            .and_then(|()| url.set_password(password))
            .map_err(|()| invalid("this URL cannot carry a user name".into()))?;
    }
    Origin::of(&url)?;
    Ok(url)
}

/// `user:password@` in the URL becomes `Authorization: Basic …` (unless the request has
/// its own) and leaves the URL, so it shows up in no log, redirect or `--json-meta` line.
fn move_credentials_to_header(request: &mut Request) -> Result<(), HttpError> {
    if request.url.username().is_empty() && request.url.password().is_none() {
        return Ok(());
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(request.url.username());
    let password = decode(request.url.password().unwrap_or_default());
    if !request.headers.contains_key(header::AUTHORIZATION) {
        request
            .headers
            .insert(header::AUTHORIZATION, basic_auth_value(&user, &password)?);
    }
    // Cannot fail: the URL has a host (checked by `Origin::of`).
    let _ = request.url.set_username("");
    let _ = request.url.set_password(None);
    Ok(())
}

fn basic_auth_value(user: &str, password: &str) -> Result<HeaderValue, HttpError> {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    HeaderValue::from_str(&format!("Basic {token}"))
        .map_err(|_| HttpError::InvalidHeader("Authorization".into()))
}

fn build_hyper_request(
    request: &Request,
    head: &SentHead,
) -> Result<hyper::Request<Full<Bytes>>, HttpError> {
    let path = match request.url.query() {
        Some(q) => format!("{}?{q}", request.url.path()),
        None => request.url.path().to_owned(),
    };
    let mut builder = hyper::Request::builder()
        .method(request.method.clone())
        .uri(path);
    if let Some(headers) = builder.headers_mut() {
        *headers = head.headers.clone();
    }
    builder
        .body(Full::new(request.body.clone()))
        .map_err(|e| HttpError::InvalidHeader(e.to_string()))
}

fn connection_closes(version: Version, headers: &HeaderMap) -> bool {
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

/// Where a redirect points, or `None` when the status is not a redirect.
fn redirect_target(
    request: &Request,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<Option<Url>, HttpError> {
    if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
        return Ok(None);
    }
    let bad = |reason: String| HttpError::BadRedirect { status, reason };
    let location = headers
        .get(header::LOCATION)
        .ok_or_else(|| bad("no Location".into()))?
        .to_str()
        .map_err(|_| bad("not ASCII".into()))?;
    let url = request
        .url
        .join(location)
        .map_err(|e| bad(format!("{location:?}: {e}")))?;
    Origin::of(&url)?;
    Ok(Some(url))
}

/// The request to send after a redirect (RFC 9110 15.4 and what browsers do).
fn next_request(mut request: Request, status: StatusCode, url: Url) -> Request {
    let to_get = match status.as_u16() {
        303 => request.method != Method::HEAD,
        301 | 302 => request.method == Method::POST,
        _ => false,
    };
    if to_get {
        request.method = Method::GET;
        request.body = Bytes::new();
        for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH] {
            request.headers.remove(name);
        }
    }
    let same_origin = Origin::of(&request.url).ok() == Origin::of(&url).ok();
    if !same_origin {
        // Credentials and cookies were meant for the first origin only.
        for name in [
            header::AUTHORIZATION,
            header::COOKIE,
            header::PROXY_AUTHORIZATION,
        ] {
            request.headers.remove(name);
        }
    }
    request.url = url;
    request
}

/// Builds a [`Request`] step by step; errors surface at [`RequestBuilder::send`].
#[derive(Debug)]
pub struct RequestBuilder {
    client: Client,
    request: Result<Request, HttpError>,
}

impl RequestBuilder {
    /// Adds a header (several with one name are all sent).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Ok(request) = &mut self.request {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(n), Ok(v)) => {
                    request.headers.append(n, v);
                }
                _ => self.request = Err(HttpError::InvalidHeader(format!("{name}: {value:?}"))),
            }
        }
        self
    }

    /// Sets the body bytes.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        if let Ok(request) = &mut self.request {
            request.body = body.into();
        }
        self
    }

    /// Sets a JSON body and its `Content-Type`.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => {
                self = self.body(bytes);
                if let Ok(request) = &mut self.request {
                    request.headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
            }
            Err(e) => self.request = Err(HttpError::JsonEncode(e)),
        }
        self
    }

    /// Sets `Authorization: Basic …`.
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("Authorization", &format!("Basic {token}"))
    }

    /// The request built so far.
    ///
    /// # Errors
    ///
    /// The first error met while building (bad URL, header or JSON).
    pub fn build(self) -> Result<Request, HttpError> {
        self.request
    }

    /// Sends the request (see [`Client::send`]).
    ///
    /// # Errors
    ///
    /// As [`Client::send`], plus any error met while building.
    pub async fn send(self) -> Result<Response, HttpError> {
        self.client.send(self.request?).await
    }
}

/// Gives a connection back to the pool once its response body has been read to the end.
struct Release {
    pool: Pool,
    origin: Origin,
    sender: Sender,
}

impl Release {
    fn give_back(self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.entry(self.origin).or_default().push(self.sender);
    }
}

/// The body as hyper delivers it, with the read timeout and the way back to the pool.
struct RawBody {
    incoming: Incoming,
    release: Option<Release>,
    read_timeout: Option<Duration>,
}

impl RawBody {
    async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let frame = match self.read_timeout {
                Some(limit) => tokio::time::timeout(limit, self.incoming.frame())
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "no data for {}s while reading the body",
                                limit.as_secs_f64()
                            ),
                        )
                    })?,
                None => self.incoming.frame().await,
            };
            match frame {
                None => {
                    if let Some(release) = self.release.take() {
                        release.give_back();
                    }
                    return Ok(None);
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
                Some(Err(err)) => return Err(io::Error::other(err)),
            }
        }
    }

    /// Reads and drops up to `limit` bytes, so the connection can be reused.
    async fn drain(&mut self, limit: usize) {
        let mut seen = 0;
        while seen <= limit {
            match self.next().await {
                Ok(Some(chunk)) => seen += chunk.len(),
                _ => return,
            }
        }
    }
}

enum Body {
    Raw(RawBody),
    Decoded(Pin<Box<dyn AsyncRead + Send>>),
}

impl Body {
    fn decoding(raw: RawBody, headers: &HeaderMap) -> Self {
        use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder};
        let encoding = headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let Some(encoding) = encoding else {
            return Body::Raw(raw);
        };
        let stream = futures_util::stream::unfold(raw, |mut raw| async move {
            match raw.next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), raw)),
                Ok(None) => None,
                Err(e) => Some((Err(e), raw)),
            }
        });
        let reader = tokio_util::io::StreamReader::new(Box::pin(stream));
        match encoding.as_str() {
            "gzip" | "x-gzip" => Body::Decoded(Box::pin(GzipDecoder::new(reader))),
            "deflate" => Body::Decoded(Box::pin(ZlibDecoder::new(reader))),
            "br" => Body::Decoded(Box::pin(BrotliDecoder::new(reader))),
            _ => Body::Decoded(Box::pin(reader)),
        }
    }
}

/// A response whose head has arrived; the body is read on demand.
pub struct Response {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    url: Url,
    body: Body,
    request: SentHead,
    history: Vec<Hop>,
    timings: Timings,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("url", &self.url.as_str())
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Response {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The HTTP version the server answered with.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The URL that gave this response (after redirects).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The final request's head, as sent.
    pub fn request(&self) -> &SentHead {
        &self.request
    }

    /// The redirects followed to get here, in order.
    pub fn history(&self) -> &[Hop] {
        &self.history
    }

    /// Connection and first-byte times.
    pub fn timings(&self) -> Timings {
        self.timings
    }

    /// The `Content-Length` the server announced, if any (of the encoded body).
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    /// The next piece of the (decoded) body; `None` at its end.
    ///
    /// # Errors
    ///
    /// [`HttpError::Body`] when the connection fails, the body is cut short, the read
    /// timeout passes or the encoding is corrupt.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        match &mut self.body {
            Body::Raw(raw) => raw.next().await.map_err(HttpError::Body),
            Body::Decoded(reader) => {
                let mut buf = BytesMut::with_capacity(64 * 1024);
                let n = reader.read_buf(&mut buf).await.map_err(HttpError::Body)?;
                Ok((n > 0).then(|| buf.freeze()))
            }
        }
    }

    /// The whole (decoded) body.
    ///
    /// # Errors
    ///
    /// As [`Response::chunk`].
    pub async fn bytes(mut self) -> Result<Bytes, HttpError> {
        let mut all = BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }

    /// The whole body as text (invalid UTF-8 is replaced).
    ///
    /// # Errors
    ///
    /// As [`Response::chunk`].
    pub async fn text(self) -> Result<String, HttpError> {
        let bytes = self.bytes().await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The whole body parsed as JSON.
    ///
    /// # Errors
    ///
    /// As [`Response::chunk`], and [`HttpError::Json`] when it does not parse into `T`.
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, HttpError> {
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(HttpError::Json)
    }
}

/// `GET url` with a default [`Client`].
///
/// # Errors
///
/// As [`Client::send`].
pub async fn get(url: &str) -> Result<Response, HttpError> {
    Client::default().get(url).send().await
}

/// `POST url` with a JSON body, with a default [`Client`].
///
/// # Errors
///
/// As [`Client::send`].
pub async fn post<T: serde::Serialize + ?Sized>(
    url: &str,
    json: &T,
) -> Result<Response, HttpError> {
    Client::default().post(url).json(json).send().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, url: &str) -> Request {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic x"));
        headers.insert(header::COOKIE, HeaderValue::from_static("a=b"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Request {
            method,
            url: Url::parse(url).unwrap(),
            headers,
            body: Bytes::from_static(b"{}"),
            unset: Vec::new(),
        }
    }

    #[test]
    fn see_other_turns_post_into_get_without_body() {
        let next = next_request(
            request(Method::POST, "http://a.test/x"),
            StatusCode::SEE_OTHER,
            Url::parse("http://a.test/y").unwrap(),
        );
        assert_eq!(next.method, Method::GET);
        assert!(next.body.is_empty());
        assert!(!next.headers.contains_key(header::CONTENT_TYPE));
        assert!(next.headers.contains_key(header::AUTHORIZATION));
    }

    #[test]
    fn temporary_redirect_keeps_method_and_body() {
        let next = next_request(
            request(Method::POST, "http://a.test/x"),
            StatusCode::TEMPORARY_REDIRECT,
            Url::parse("http://a.test/y").unwrap(),
        );
        assert_eq!(next.method, Method::POST);
        assert_eq!(&next.body[..], b"{}");
    }

    #[test]
    fn cross_origin_redirect_drops_credentials_and_cookies() {
        for target in [
            "http://b.test/y",
            "https://a.test/x",
            "http://a.test:8080/x",
        ] {
            let next = next_request(
                request(Method::GET, "http://a.test/x"),
                StatusCode::FOUND,
                Url::parse(target).unwrap(),
            );
            assert!(
                !next.headers.contains_key(header::AUTHORIZATION),
                "{target}"
            );
            assert!(!next.headers.contains_key(header::COOKIE), "{target}");
        }
    }

    #[test]
    fn only_http_and_https_are_accepted() {
        assert!(matches!(
            parse_url("ftp://x/"),
            Err(HttpError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            parse_url("http://[::1/"),
            Err(HttpError::InvalidUrl { .. })
        ));
        assert!(matches!(
            parse_url("http://a<b/"),
            Err(HttpError::InvalidUrl { .. })
        ));
        assert!(matches!(
            parse_url("ftp.test/x?u=gopher://y/"),
            Ok(url) if url.as_str() == "http://ftp.test/x?u=gopher://y/"
        ));
        assert!(parse_url("https://[::1]:8443/a?b=c").is_ok());
    }

    #[test]
    fn keep_alive_rules_follow_the_version() {
        let mut h = HeaderMap::new();
        assert!(connection_closes(Version::HTTP_10, &h));
        assert!(!connection_closes(Version::HTTP_11, &h));
        h.insert(header::CONNECTION, HeaderValue::from_static("Close"));
        assert!(connection_closes(Version::HTTP_11, &h));
    }
}
