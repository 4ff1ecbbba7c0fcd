//! Small responses every route gives: plain text, redirects.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::http::server::body::Body;

pub(crate) static TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// A `text/plain` answer.
pub(crate) fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut res = Response::new(Body::bytes(Bytes::copy_from_slice(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, TEXT_PLAIN.clone());
    res
}

/// A redirect to `location`, which no cache keeps.
pub(crate) fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut res = text(status, "");
    // A directory may become a file: no cache keeps the redirect on a guess.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// Marks `res` as the last answer on its connection. HTTP/1 closes after it; HTTP/2 has no
/// such field (the connection driver drops it) and ends only the stream.
pub(crate) fn closing<B>(mut res: Response<B>) -> Response<B> {
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}
