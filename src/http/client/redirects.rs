//! Redirects: where one points, and the request to send next (method, body and
//! credentials as RFC 9110 and browsers have it).

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode, Version};
use url::Url;

use crate::http::client::errors::HttpError;
use crate::http::client::origin::Origin;
use crate::http::client::request::{Request, SentHead};

/// One redirect that was followed: what was sent and what came back.
#[derive(Debug, Clone)]
pub struct Hop {
    /// The request.
    pub request: SentHead,
    /// The HTTP version of the exchange.
    pub version: Version,
    /// The redirect status.
    pub status: StatusCode,
    /// The redirect response's headers.
    pub headers: HeaderMap,
}

/// Where a redirect points, or `None` when the status is not a redirect.
pub(crate) fn redirect_target(
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
pub(crate) fn next_request(
    mut request: Request,
    status: StatusCode,
    url: Url,
    origin_bound: &[header::HeaderName],
) -> Request {
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
        for name in origin_bound {
            request.headers.remove(name);
        }
    }
    request.url = url;
    request
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::header::{self, HeaderMap, HeaderValue};
    use http::{Method, StatusCode};
    use url::Url;

    use crate::http::client::redirects::next_request;
    use crate::http::client::request::Request;

    fn request(method: Method, url: &str) -> Request {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic x"));
        headers.insert(header::COOKIE, HeaderValue::from_static("a=b"));
        headers.insert("x-session", HeaderValue::from_static("s"));
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
            &[],
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
            &[],
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
                &[header::HeaderName::from_static("x-session")],
            );
            assert!(
                !next.headers.contains_key(header::AUTHORIZATION),
                "{target}"
            );
            assert!(!next.headers.contains_key(header::COOKIE), "{target}");
            assert!(!next.headers.contains_key("x-session"), "{target}");
        }
    }
}
