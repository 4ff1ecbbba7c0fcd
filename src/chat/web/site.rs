//! The web side's routes: `/` is the page, `/ws` the WebSocket upgrade (Origin checked),
//! anything else 404.

use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::chat::Config;
use crate::chat::hub::Hub;
use crate::chat::web::socket;
use crate::http::server::Body;
use crate::http::server::conformance;
use crate::http::server::connection::{Handler, Takeover};
use crate::http::server::response::text;

/// The page, embedded in the binary.
pub(crate) const PAGE: &str = include_str!("page.html");

/// The page's Content-Security-Policy: nothing but its own inline script and style (by
/// hash), its WebSocket and its own images.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let scripts = inline_hashes(PAGE, "script");
    let styles = inline_hashes(PAGE, "style");
    let policy = format!(
        "default-src 'none'; script-src 'self'{scripts}; connect-src 'self'; \
         style-src 'self'{styles}; img-src 'self' data:; frame-ancestors 'none'; \
         base-uri 'none'; form-action 'none'"
    );
    HeaderValue::from_str(&policy).expect("hashes are base64, the rest ASCII")
});

/// ` 'sha256-…'` for every inline `<tag>` element of `page`.
fn inline_hashes(page: &str, tag: &str) -> String {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut hashes = String::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start..];
        let Some(body_start) = after.find('>') else {
            break;
        };
        let body = &after[body_start + 1..];
        let Some(end) = body.find(&close) else { break };
        // An element with `src` loads a file: 'self' covers it.
        if !after[..body_start].contains("src=") {
            let digest = ring::digest::digest(&ring::digest::SHA256, &body.as_bytes()[..end]);
            let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
            hashes.push_str(&format!(" 'sha256-{hash}'"));
        }
        rest = &body[end..];
    }
    hashes
}

/// Routes of the chat's web side.
pub(crate) struct ChatSite {
    hub: Arc<Hub>,
    config: Arc<Config>,
    is_tls: bool,
    stop: CancellationToken,
}

impl ChatSite {
    pub(crate) fn new(
        hub: Arc<Hub>,
        config: Arc<Config>,
        is_tls: bool,
        stop: CancellationToken,
    ) -> Self {
        Self {
            hub,
            config,
            is_tls,
            stop,
        }
    }

    fn page(&self) -> Response<Body> {
        let mut res = Response::new(Body::bytes(PAGE));
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        res
    }

    /// The answer to `GET /ws`: `101` and a takeover, or why not.
    fn upgrade(&self, req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let headers = req.headers();
        if req.version() != Version::HTTP_11 {
            return not_http11();
        }
        let is_upgrade = has_token(headers, header::CONNECTION, "upgrade")
            && has_token(headers, header::UPGRADE, "websocket");
        if !is_upgrade {
            let mut res = text(
                StatusCode::UPGRADE_REQUIRED,
                "this is the chat's WebSocket; the page is at /\n",
            );
            res.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            return res;
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v != "13")
        {
            let mut res = text(
                StatusCode::UPGRADE_REQUIRED,
                "unsupported WebSocket version\n",
            );
            res.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return res;
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
        };
        if let Some(origin) = headers.get(header::ORIGIN)
            && !self.is_allowed_origin(origin.as_bytes(), headers.get(header::HOST))
        {
            warn!(%peer, origin = %String::from_utf8_lossy(origin.as_bytes()), "WebSocket from another origin refused");
            return text(
                StatusCode::FORBIDDEN,
                "this origin may not open the chat (the server allows others with --web-origin)\n",
            );
        }
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = res.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        let (hub, config, stop) = (self.hub.clone(), self.config.clone(), self.stop.clone());
        res.extensions_mut().insert(Takeover::new(move |stream| {
            socket::run(stream, peer, hub, config, stop)
        }));
        res
    }

    /// Same origin as the `Host` the browser asked for, or one of `--web-origin`.
    fn is_allowed_origin(&self, origin: &[u8], host: Option<&HeaderValue>) -> bool {
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        let origin = normalise_origin(origin);
        if self
            .config
            .web_origins
            .iter()
            .any(|allowed| normalise_origin(allowed) == origin)
        {
            return true;
        }
        let Some(host) = host.and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let scheme = if self.is_tls { "https" } else { "http" };
        origin == normalise_origin(&format!("{scheme}://{host}"))
    }
}

/// The answer to `/ws` over anything but HTTP/1.1. Browsers open a WebSocket over HTTP/2
/// only where the server offers extended CONNECT (RFC 8441), which this one does not, so a
/// request here is a tool's: it gets the reason and what to do.
fn not_http11() -> Response<Body> {
    text(
        StatusCode::BAD_REQUEST,
        "the chat's WebSocket needs HTTP/1.1 (RFC 6455): WebSocket over HTTP/2 \
         (RFC 8441) is not supported; connect to /ws over HTTP/1.1\n",
    )
}

/// An origin compared as RFC 6454 says: lower case, default port left out, no trailing `/`.
fn normalise_origin(origin: &str) -> String {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if origin.starts_with(scheme)
            && let Some(bare) = origin.strip_suffix(port)
        {
            return bare.to_owned();
        }
    }
    origin
}

/// Whether `name` lists `token` (comma-separated, any case).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

impl Handler for ChatSite {
    type Body = Body;
    type Answer = Ready<Response<Body>>;

    fn answer(self: &Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Self::Answer {
        let method = req.method().clone();
        let mut res = match (req.uri().path(), &method) {
            ("/", &Method::GET | &Method::HEAD) => self.page(),
            ("/ws", &Method::GET) => self.upgrade(&req, peer),
            ("/" | "/ws", _) => {
                let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                let allow = if req.uri().path() == "/" {
                    "GET, HEAD"
                } else {
                    "GET"
                };
                res.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                res
            }
            _ => text(StatusCode::NOT_FOUND, "not found; the chat is at /\n"),
        };
        if res.status() != StatusCode::SWITCHING_PROTOCOLS {
            conformance::finish(&method, &mut res);
        }
        ready(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_like_browsers_send_them() {
        assert_eq!(
            normalise_origin("HTTP://Example.com:80/"),
            "http://example.com"
        );
        assert_eq!(normalise_origin("https://a.b:443"), "https://a.b");
        assert_eq!(normalise_origin("https://a.b:8443"), "https://a.b:8443");
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_script_and_style() {
        let page = "<style>a{}</style><script>x()</script><script src=\"/a.js\"></script>";
        let hashes = inline_hashes(page, "script");
        assert_eq!(hashes.matches("'sha256-").count(), 1);
        let expected = ring::digest::digest(&ring::digest::SHA256, b"x()");
        let expected = base64::engine::general_purpose::STANDARD.encode(expected.as_ref());
        assert_eq!(hashes, format!(" 'sha256-{expected}'"));
        assert!(CSP.to_str().unwrap().contains("frame-ancestors 'none'"));
        assert_eq!(
            CSP.to_str().unwrap().matches("'sha256-").count(),
            2,
            "the page's script and style"
        );
    }
}
