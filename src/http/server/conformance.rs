//! What every HTTP server in the crate owes a client whatever its routes, checked before them
//! and applied after them: the `Host` rules of RFC 9112 §3.2, expectations (417), methods it
//! does not know (501) or does not allow (405, `TRACE` included), `OPTIONS` (also `*`), and
//! answers that carry no content (1xx, 204, 304: no `Content-Length`). Framing is hyper's;
//! what it leaves to the byte stream is in `heads`.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use crate::http::server::body::Body;
use crate::http::server::response::text;

/// An answer to `req` that no route gets to give, if it needs one; `allow` lists the
/// methods the server's routes answer (for `Allow` on 405 and `OPTIONS`).
pub(crate) fn refuse<B>(req: &Request<B>, allow: &'static str) -> Option<Response<Body>> {
    if let Err(why) = check_host(req) {
        return Some(text(
            StatusCode::BAD_REQUEST,
            &format!("bad request: {why}\n"),
        ));
    }
    let expect = req.headers().get_all(header::EXPECT);
    if expect
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        return Some(text(
            StatusCode::EXPECTATION_FAILED,
            "expectation failed: only 100-continue is supported\n",
        ));
    }
    let allowed = |status: StatusCode, why: &str| {
        let mut res = text(status, why);
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        Some(res)
    };
    let method = req.method();
    if *method == Method::OPTIONS {
        let mut res = allowed(StatusCode::NO_CONTENT, "")?;
        *res.body_mut() = Body::empty();
        res.headers_mut().remove(header::CONTENT_TYPE);
        return Some(res);
    }
    if req.uri() == "*" {
        return Some(text(
            StatusCode::BAD_REQUEST,
            "bad request: the target * is only for OPTIONS\n",
        ));
    }
    let known = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::TRACE,
        Method::PATCH,
    ];
    if !known.contains(method) {
        return Some(text(
            StatusCode::NOT_IMPLEMENTED,
            "method not implemented\n",
        ));
    }
    let listed = allow.split(", ").any(|m| m == method.as_str());
    if !listed || *method == Method::TRACE || *method == Method::CONNECT {
        return allowed(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    None
}

/// A 405 for a method the route does not take, with the server's `Allow`.
pub(crate) fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

/// Makes `res`, the answer to a `method` request, fit its status: 1xx, 204 and 304 carry
/// neither content nor its length (hyper drops the body, but writes a `Content-Length` it was
/// given), and an answer to HEAD carries the length a GET would get (hyper writes none for
/// an empty body).
pub(crate) fn finish<B: http_body::Body>(method: &Method, res: &mut Response<B>) {
    let status = res.status();
    if *method == Method::HEAD && !res.headers().contains_key(header::CONTENT_LENGTH) {
        if let Some(len) = res.body().size_hint().exact() {
            res.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
    }
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        let headers = res.headers_mut();
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::TRANSFER_ENCODING);
        if status != StatusCode::NOT_MODIFIED {
            headers.remove(header::CONTENT_TYPE);
        }
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one `Host`, an HTTP/2 one `:authority` or
/// `Host` (RFC 9113 §8.3.1), any request at most one `Host`, and
/// its value is a valid `uri-host [":" port]` (empty when the target has no authority). With
/// an absolute-form target the target's authority counts (§3.2.2), but the field must still
/// be there and valid.
fn check_host<B>(req: &Request<B>) -> Result<(), &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header field");
    }
    let Some(host) = host else {
        return match req.version() {
            Version::HTTP_09 | Version::HTTP_10 => Ok(()),
            // RFC 9113 §8.3.1: `:authority` stands for Host (hyper puts it in the target).
            Version::HTTP_2 | Version::HTTP_3 if req.uri().authority().is_some() => Ok(()),
            Version::HTTP_2 | Version::HTTP_3 => Err("no :authority or Host header field"),
            _ => Err("no Host header field"),
        };
    };
    if valid_host(host) {
        Ok(())
    } else {
        Err("invalid Host header field")
    }
}

fn valid_host(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return true;
    }
    if bytes.contains(&b'@') {
        return false;
    }
    match http::uri::Authority::try_from(bytes) {
        Ok(authority) => {
            // After an IPv6 literal's `]`, anything past a `:` is the port: digits only.
            let tail = authority.as_str().rsplit(']').next().unwrap_or_default();
            let port_ok = tail
                .split_once(':')
                .is_none_or(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()));
            !authority.host().is_empty() && port_ok
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, target: &str, hosts: &[&str]) -> Request<()> {
        let mut req = Request::builder().uri(target).version(version);
        for host in hosts {
            req = req.header(header::HOST, *host);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn host_rules_of_rfc_9112() {
        let status = |version, target, hosts: &[&str]| {
            refuse(&request(version, target, hosts), "GET, HEAD, OPTIONS").map(|r| r.status())
        };
        let bad = Some(StatusCode::BAD_REQUEST);
        assert_eq!(status(Version::HTTP_11, "/", &["example.com"]), None);
        assert_eq!(status(Version::HTTP_11, "/", &["127.0.0.1:8080"]), None);
        assert_eq!(status(Version::HTTP_11, "/", &["[::1]:80"]), None);
        assert_eq!(status(Version::HTTP_11, "/", &[""]), None);
        assert_eq!(status(Version::HTTP_10, "/", &[]), None);
        assert_eq!(status(Version::HTTP_11, "/", &[]), bad);
        assert_eq!(status(Version::HTTP_11, "/", &["a", "b"]), bad);
        assert_eq!(status(Version::HTTP_10, "/", &["a", "a"]), bad);
        for invalid in ["a b", "user@host", "host:port", "a/b", "[::1", ":80"] {
            assert_eq!(status(Version::HTTP_11, "/", &[invalid]), bad, "{invalid}");
        }
        // Absolute form: the target's authority counts, the field must still be valid.
        assert_eq!(
            status(Version::HTTP_11, "http://other/x", &["example.com"]),
            None
        );
        assert_eq!(status(Version::HTTP_11, "http://other/x", &[]), bad);
        // HTTP/2: `:authority` (the target's) stands for Host.
        assert_eq!(status(Version::HTTP_2, "https://example.com/x", &[]), None);
        assert_eq!(status(Version::HTTP_2, "/x", &[]), bad);
        assert_eq!(status(Version::HTTP_2, "/x", &["example.com"]), None);
    }
}
