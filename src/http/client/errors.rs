//! What went wrong with an HTTP exchange: one error type for the whole client.

use std::io;

use http::StatusCode;

use crate::net::NetError;

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
    /// `--http2` on `https://`, and the server did not agree to `h2` by ALPN.
    #[error("{origin} does not speak HTTP/2 over TLS (it did not accept ALPN h2)")]
    NoHttp2 {
        /// `scheme://host:port`.
        origin: String,
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
