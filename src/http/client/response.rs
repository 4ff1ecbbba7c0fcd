//! Responses: [`Response`] (status, headers, a body read on demand, whole or in chunks,
//! decoded from gzip, deflate or br) and the [`Timings`] of the exchange.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::{self, HeaderMap};
use http::{StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt};
use url::Url;

use crate::http::client::errors::HttpError;
use crate::http::client::pool::Release;
use crate::http::client::redirects::Hop;
use crate::http::client::request::SentHead;

/// How long the parts of an exchange took, from the start of the first request.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// When the last connection was ready (`None` when one from the pool was reused).
    pub connected: Option<Duration>,
    /// When the final response head arrived.
    pub head: Duration,
}

/// The body as hyper delivers it, with the read timeout and the way back to the pool.
pub(crate) struct RawBody {
    pub(crate) incoming: Incoming,
    pub(crate) release: Option<Release>,
    pub(crate) read_timeout: Option<Duration>,
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
    pub(crate) async fn drain(&mut self, limit: usize) {
        let mut seen = 0;
        while seen <= limit {
            match self.next().await {
                Ok(Some(chunk)) => seen += chunk.len(),
                _ => return,
            }
        }
    }
}

pub(crate) enum Body {
    Raw(RawBody),
    Decoded(Pin<Box<dyn AsyncRead + Send>>),
}

impl Body {
    pub(crate) fn decoding(raw: RawBody, headers: &HeaderMap) -> Self {
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
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) url: Url,
    pub(crate) body: Body,
    pub(crate) request: SentHead,
    pub(crate) history: Vec<Hop>,
    pub(crate) timings: Timings,
    /// The end or the error that [`Response::ready_chunks`] met after the pieces it
    /// returned: the next read reports it.
    pub(crate) seen_end: Option<BodyEnd>,
}

/// How a body ended, once seen.
pub(crate) enum BodyEnd {
    /// The whole body was read.
    Complete,
    /// The read failed.
    Failed(HttpError),
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
        match self.seen_end.take() {
            Some(BodyEnd::Complete) => {
                self.seen_end = Some(BodyEnd::Complete);
                return Ok(None);
            }
            Some(BodyEnd::Failed(err)) => return Err(err),
            None => {}
        }
        match &mut self.body {
            Body::Raw(raw) => raw.next().await.map_err(HttpError::Body),
            Body::Decoded(reader) => {
                let mut buf = BytesMut::with_capacity(64 * 1024);
                let n = reader.read_buf(&mut buf).await.map_err(HttpError::Body)?;
                Ok((n > 0).then(|| buf.freeze()))
            }
        }
    }

    /// The pieces of the body that are ready: waits for the first one, then takes those
    /// already received, without waiting, up to about `max_bytes` in all; `None` at the end
    /// of the body. A body that trickles in still comes out piece by piece as it arrives,
    /// while a fast one comes in batches that cost one write and one wake-up each instead
    /// of one per HTTP/2 DATA frame or read.
    ///
    /// # Errors
    ///
    /// As [`Response::chunk`]; an error met after the first piece is returned by the next call.
    pub async fn ready_chunks(
        &mut self,
        max_bytes: usize,
    ) -> Result<Option<Vec<Bytes>>, HttpError> {
        let Some(first) = self.chunk().await? else {
            return Ok(None);
        };
        let mut size = first.len();
        let mut chunks = vec![first];
        while size < max_bytes {
            match self.chunk().now_or_never() {
                Some(Ok(Some(chunk))) => {
                    size += chunk.len();
                    chunks.push(chunk);
                }
                Some(Ok(None)) => {
                    self.seen_end = Some(BodyEnd::Complete);
                    break;
                }
                Some(Err(err)) => {
                    self.seen_end = Some(BodyEnd::Failed(err));
                    break;
                }
                None => break,
            }
        }
        Ok(Some(chunks))
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
