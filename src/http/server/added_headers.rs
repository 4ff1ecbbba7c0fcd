//! Headers the operator adds to every answer: `--header 'Name: value'` lines and CORS
//! (`--cors`: any origin may read, and preflight `OPTIONS` requests are answered).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request};

/// Fields that frame a message or belong to one connection: the server sets them itself,
/// and one given by hand would corrupt the answer or the connection.
const FRAMING: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "content-encoding",
    "content-range",
];

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE_SECS: u32 = 86_400;

/// Why a `Name: value` line is not a header field the server can add.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderLineError {
    /// No `:` between name and value.
    #[error("expected 'Name: value', got {0:?}")]
    NoColon(String),
    /// The name is not a valid field name.
    #[error("invalid header name {0:?}")]
    Name(String),
    /// The value holds bytes a field value cannot (control characters).
    #[error("invalid value for header {0}")]
    Value(String),
    /// A field the server frames its answers with.
    #[error("header {0} is set by the server (it frames the answer)")]
    Framing(String),
}

/// Parses one `--header` argument, `Name: value` (the value may be empty).
///
/// # Errors
///
/// [`HeaderLineError`] when the line is not a field the server may add.
///
/// # Examples
///
/// ```
/// let (name, value) = sockit::http::server::parse_header_line("X-Frame-Options: DENY")?;
/// assert_eq!((name.as_str(), value.to_str()?), ("x-frame-options", "DENY"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse_header_line(line: &str) -> Result<(HeaderName, HeaderValue), HeaderLineError> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| HeaderLineError::NoColon(line.to_owned()))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| HeaderLineError::Name(name.trim().to_owned()))?;
    if FRAMING.contains(&name.as_str()) {
        return Err(HeaderLineError::Framing(name.to_string()));
    }
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| HeaderLineError::Value(name.to_string()))?;
    Ok((name, value))
}

/// Puts the operator's fields into `headers`: each name given replaces the server's own
/// field of that name, and a name given twice keeps both values.
pub(crate) fn add(headers: &mut HeaderMap, added: &[(HeaderName, HeaderValue)], cors: bool) {
    for (name, _) in added {
        headers.remove(name);
    }
    for (name, value) in added {
        headers.append(name.clone(), value.clone());
    }
    if cors {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("*"),
        );
    }
}

/// Adds the answer to a CORS preflight (an `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`) to `headers`: the methods `allow`ed, the request
/// headers asked for, and how long to keep the answer.
pub(crate) fn answer_preflight<B>(req: &Request<B>, allow: &'static str, headers: &mut HeaderMap) {
    let asked = req.headers();
    if req.method() != Method::OPTIONS
        || !asked.contains_key(header::ORIGIN)
        || !asked.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return;
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(allow),
    );
    let wanted = asked
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, wanted);
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(PREFLIGHT_MAX_AGE_SECS),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_parse_or_say_why_not() {
        let ok = parse_header_line("Cache-Control:  no-cache ").unwrap();
        assert_eq!(ok.0, header::CACHE_CONTROL);
        assert_eq!(ok.1, "no-cache");
        assert_eq!(parse_header_line("X-Empty:").unwrap().1, "");
        assert!(matches!(
            parse_header_line("no colon"),
            Err(HeaderLineError::NoColon(_))
        ));
        assert!(matches!(
            parse_header_line("bad name: x"),
            Err(HeaderLineError::Name(_))
        ));
        assert!(matches!(
            parse_header_line("X-A: a\u{7}b"),
            Err(HeaderLineError::Value(_))
        ));
        assert!(matches!(
            parse_header_line("Content-Length: 5"),
            Err(HeaderLineError::Framing(_))
        ));
    }

    #[test]
    fn added_fields_replace_the_servers_and_repeat() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let added = [
            parse_header_line("Cache-Control: max-age=60").unwrap(),
            parse_header_line("Link: <a>").unwrap(),
            parse_header_line("Link: <b>").unwrap(),
        ];
        add(&mut headers, &added, true);
        assert_eq!(headers[header::CACHE_CONTROL], "max-age=60");
        assert_eq!(headers.get_all(header::LINK).iter().count(), 2);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }
}
