//! The [`Client`]: sends a request over a pooled connection, waits for the head with a
//! timeout, replays a request a kept-alive connection lost, and follows redirects.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::body::Incoming;
use tracing::{debug, warn};

use crate::http::client::cookies::CookieJar;
use crate::http::client::errors::HttpError;
use crate::http::client::origin::{Origin, parse_url};
use crate::http::client::pool::{Pool, Sender, connection_closes};
use crate::http::client::redirects::{Hop, next_request, redirect_target};
use crate::http::client::request::{
    Request, RequestBuilder, SentHead, build_hyper_request, move_credentials_to_header, prepare,
};
use crate::http::client::response::{Body, RawBody, Response, Timings};
use crate::net::proxy::ProxyPolicy;
use crate::net::tls::Verify;
use crate::net::trace::TraceSink;
use crate::net::{DialOptions, NetError};

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
    /// Which HTTP versions to speak.
    pub versions: HttpVersions,
    /// The route to servers: Unix socket, `--resolve`, `--connect-to`, source address. Its
    /// `proxy` is ignored: `proxy` below picks one per URL.
    pub dial: DialOptions,
    /// Which proxy each URL goes through.
    pub proxy: ProxyPolicy,
    /// Keep the cookies responses set and send them back where they belong (RFC 6265).
    pub cookies: Option<Arc<CookieJar>>,
    /// Headers sent to the first origin only, dropped on a redirect to another one (as
    /// `Authorization` and `Cookie` always are): a session's headers, for instance.
    pub origin_bound_headers: Vec<HeaderName>,
    /// A client certificate chain and its private key (PEM files) for servers that ask for
    /// one (mutual TLS).
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Which HTTP versions a [`Client`] speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HttpVersions {
    /// `https://`: HTTP/2 or HTTP/1.1, as the server picks by ALPN (curl's default);
    /// `http://`: HTTP/1.1.
    #[default]
    Negotiate,
    /// HTTP/1.1 only (`--http1.1`).
    Http1,
    /// HTTP/2 only (`--http2`): ALPN `h2` alone on `https://`, prior knowledge on `http://`.
    Http2,
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
            versions: HttpVersions::Negotiate,
            dial: DialOptions::default(),
            proxy: ProxyPolicy::default(),
            cookies: None,
            origin_bound_headers: Vec::new(),
            client_cert: None,
        }
    }
}

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

impl Client {
    /// A client with this configuration. TLS settings are loaded on the first `https` request.
    pub fn new(config: ClientConfig) -> Self {
        let config = Arc::new(config);
        Self {
            pool: Pool::new(config.clone()),
            config,
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

    /// The head `request` would go out with (defaults, credentials from the URL and the
    /// jar's cookies added), without sending anything: `--offline` and `--curl`.
    ///
    /// # Errors
    ///
    /// [`HttpError`] for a URL without host or with a scheme other than `http(s)`.
    pub fn head(&self, request: &Request) -> Result<SentHead, HttpError> {
        let mut request = request.clone();
        move_credentials_to_header(&mut request)?;
        let origin = Origin::of(&request.url)?;
        let mut head = prepare(&self.config, &request, &origin);
        if let Some(jar) = &self.config.cookies {
            add_jar_cookies(&mut head.headers, jar, &request.url);
        }
        Ok(head)
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
            let mut head = prepare(&self.config, &request, &origin);
            if let Some(jar) = &self.config.cookies {
                add_jar_cookies(&mut head.headers, jar, &request.url);
            }
            let (response, sender, connected) =
                self.exchange(&request, &head, &origin, started).await?;
            let timings = Timings {
                connected,
                head: started.elapsed(),
            };
            let (parts, incoming) = response.into_parts();
            if let Some(jar) = &self.config.cookies {
                jar.store(&request.url, &parts.headers);
            }
            debug!(status = %parts.status, url = %request.url, "response");
            let reusable =
                !connection_closes(parts.version, &parts.headers) && !sender.has_failed();
            let release = reusable
                .then(|| self.pool.release(origin.clone(), sender))
                .flatten();
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
                    seen_end: None,
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
                version: parts.version,
                status: parts.status,
                headers: parts.headers,
            });
            request = next_request(
                request,
                parts.status,
                next_url,
                &self.config.origin_bound_headers,
            );
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
                (self.pool.connect(origin).await?, Some(started.elapsed()))
            } else {
                self.pool.sender(origin, started).await?
            };
            let exchange =
                sender.send_request(build_hyper_request(request, head, sender.is_http2())?);
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
            let cut_short = sender.take_failure();
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
}

/// Joins the jar's cookies for `url` to a `Cookie` header the request has of its own.
fn add_jar_cookies(headers: &mut HeaderMap, jar: &CookieJar, url: &url::Url) {
    let Some(from_jar) = jar.header_for(url) else {
        return;
    };
    let joined = match headers.get(header::COOKIE).and_then(|v| v.to_str().ok()) {
        Some(own) if !own.is_empty() => format!("{own}; {from_jar}"),
        _ => from_jar,
    };
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.insert(header::COOKIE, value);
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
