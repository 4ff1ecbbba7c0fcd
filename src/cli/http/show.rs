//! What is printed besides the body: request and response heads (secrets masked) and the
//! `--json-meta` line.

use std::collections::HashMap;
use std::time::Duration;

use http::{HeaderMap, HeaderName, Method, StatusCode, Version, header};

use sockit::http::{Request, Response, SentHead};

use crate::cli::output::say;

/// What to print besides the body.
pub(super) struct Show {
    pub(super) request: bool,
    pub(super) response: bool,
    /// Header names as the user typed them, by lower-case name.
    pub(super) typed: HashMap<String, String>,
    /// Show credential and cookie values (`--trace-secrets`) instead of `*`s.
    pub(super) secrets: bool,
}

impl Show {
    pub(super) fn heads(&self, request: &Request, response: &Response) -> String {
        let mut text = String::new();
        for hop in response.history() {
            if self.request {
                text.push_str(&self.request_head(&hop.request, hop.version, None));
            }
            if self.response {
                text.push_str(&response_head(hop.version, hop.status, &hop.headers));
            }
        }
        if self.request {
            let body = (response.history().is_empty() || response.request().method != Method::GET)
                .then_some(&request.body[..]);
            text.push_str(&self.request_head(response.request(), response.version(), body));
        }
        if self.response {
            text.push_str(&response_head(
                response.version(),
                response.status(),
                response.headers(),
            ));
        }
        text
    }

    pub(super) fn request_head(
        &self,
        head: &SentHead,
        version: Version,
        body: Option<&[u8]>,
    ) -> String {
        let mut target = head.url.path().to_owned();
        if let Some(q) = head.url.query() {
            target.push('?');
            target.push_str(q);
        }
        // HTTP/1.0 answers still came to an HTTP/1.1 request.
        let sent = if version == Version::HTTP_2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let mut text = format!("{} {target} {}\n", head.method, version_name(sent));
        for (name, value) in &head.headers {
            let shown = self
                .typed
                .get(name.as_str())
                .cloned()
                .unwrap_or_else(|| title_case(name.as_str()));
            let value = String::from_utf8_lossy(value.as_bytes());
            let value = if self.secrets || !is_secret(name) {
                value.into_owned()
            } else {
                mask(&value)
            };
            text.push_str(&format!("{shown}: {value}\n"));
        }
        text.push('\n');
        if let Some(body) = body.filter(|b| !b.is_empty()) {
            match std::str::from_utf8(body) {
                Ok(s) if !s.contains('\0') => text.push_str(s),
                _ => text.push_str(&format!("[binary body, {} bytes]", body.len())),
            }
            text.push_str("\n\n");
        }
        text
    }
}

/// `HTTP/1.1`, `HTTP/2` as curl and xh print them.
pub(super) fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

pub(super) fn response_head(version: Version, status: StatusCode, headers: &HeaderMap) -> String {
    let mut text = format!(
        "{} {} {}\n",
        version_name(version),
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in headers {
        text.push_str(&format!(
            "{}: {}\n",
            title_case(name.as_str()),
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push('\n');
    text
}

/// Headers whose values are credentials: masked in `-v` as in `--trace`.
pub(super) fn is_secret(name: &HeaderName) -> bool {
    [
        header::AUTHORIZATION,
        header::PROXY_AUTHORIZATION,
        header::COOKIE,
    ]
    .contains(name)
}

/// Every character but spaces turned into `*`: the shape stays, the secret goes.
pub(super) fn mask(value: &str) -> String {
    value
        .chars()
        .map(|c| if c == ' ' { ' ' } else { '*' })
        .collect()
}

/// `content-type` → `Content-Type`, as hyper sends names with `title_case_headers`.
pub(super) fn title_case(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper { c.to_ascii_uppercase() } else { c };
            upper = c == '-';
            out
        })
        .collect()
}

/// Heads on stderr (when the body goes to a file); they end with an empty line already.
pub(super) fn eprint_heads(heads: &str) {
    if let Some(text) = heads.strip_suffix('\n') {
        say(format_args!("{text}"));
    }
}

/// One JSON line: status, headers, timings and size, for scripts.
pub(super) fn meta(response: &Response, body_bytes: u64, total: Duration) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in response.headers() {
        let value = serde_json::Value::String(String::from_utf8_lossy(value.as_bytes()).into());
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::Array(list)) => list.push(value),
            Some(first) => *first = serde_json::Value::Array(vec![first.clone(), value]),
            None => {
                headers.insert(name.as_str().to_owned(), value);
            }
        }
    }
    let timings = response.timings();
    serde_json::json!({
        "url": response.url().as_str(),
        "status": response.status().as_u16(),
        "http_version": version_name(response.version()),
        "headers": headers,
        "redirects": response.history().len(),
        "body_bytes": body_bytes,
        "timings_ms": {
            "connect": timings.connected.map(|d| d.as_secs_f64() * 1000.0),
            "first_byte": timings.head.as_secs_f64() * 1000.0,
            "total": total.as_secs_f64() * 1000.0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_heads() {
        assert_eq!(mask("Basic dTpw"), "***** ****");
        assert!(is_secret(&header::AUTHORIZATION));
        assert!(!is_secret(&header::ACCEPT));
    }
}
