//! Requests: [`Request`] and its [`RequestBuilder`], the head as it goes on the wire
//! ([`SentHead`], with the client's default headers) and the conversion to hyper's type.

use base64::Engine as _;
use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::Full;
use url::Url;

use crate::http::client::errors::HttpError;
use crate::http::client::exchange::{Client, ClientConfig};
use crate::http::client::origin::Origin;
use crate::http::client::response::Response;

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

/// `user:password@` in the URL becomes `Authorization: Basic …` (unless the request has
/// its own) and leaves the URL, so it shows up in no log, redirect or `--json-meta` line.
pub(crate) fn move_credentials_to_header(request: &mut Request) -> Result<(), HttpError> {
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

pub(crate) fn build_hyper_request(
    request: &Request,
    head: &SentHead,
    http2: bool,
) -> Result<hyper::Request<Full<Bytes>>, HttpError> {
    let path = match request.url.query() {
        Some(q) => format!("{}?{q}", request.url.path()),
        None => request.url.path().to_owned(),
    };
    let mut headers = head.headers.clone();
    let uri = if http2 {
        // HTTP/2 carries the host as `:authority` (from `Host`, which a user may have set),
        // and the scheme as `:scheme`: both come from an absolute URI.
        let authority = headers
            .remove(header::HOST)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
            .unwrap_or_default();
        format!("{}://{authority}{path}", request.url.scheme())
    } else {
        path
    };
    let mut builder = hyper::Request::builder()
        .method(request.method.clone())
        .uri(uri);
    if http2 {
        builder = builder.version(http::Version::HTTP_2);
    }
    if let Some(slot) = builder.headers_mut() {
        *slot = headers;
    }
    builder
        .body(Full::new(request.body.clone()))
        .map_err(|e| HttpError::InvalidHeader(e.to_string()))
}

/// The head as it goes on the wire: the request's headers plus the defaults.
pub(crate) fn prepare(config: &ClientConfig, request: &Request, origin: &Origin) -> SentHead {
    let mut headers = HeaderMap::with_capacity(request.headers.len() + 5);
    if let Ok(value) = HeaderValue::from_str(&origin.authority(&request.url)) {
        headers.insert(header::HOST, value);
    }
    let mut defaults = vec![(header::ACCEPT, HeaderValue::from_static("*/*"))];
    if let Ok(ua) = HeaderValue::from_str(&config.user_agent) {
        defaults.push((header::USER_AGENT, ua));
    }
    if config.decompress {
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

/// Builds a [`Request`] step by step; errors surface at [`RequestBuilder::send`].
#[derive(Debug)]
pub struct RequestBuilder {
    pub(crate) client: Client,
    pub(crate) request: Result<Request, HttpError>,
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
