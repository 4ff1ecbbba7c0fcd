//! Conditional requests (RFC 9110 §13): `If-Match`, `If-Unmodified-Since`, `If-None-Match`,
//! `If-Modified-Since` and `If-Range`, evaluated in the order the RFC prescribes. Pure.

use std::time::SystemTime;

use http::HeaderMap;
use http::header::{
    IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE,
};

/// The validators of the selected representation.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// The strong entity tag, quotes included (`"1f-5a2b"`).
    pub etag: &'a str,
    /// Modification time, truncated to whole seconds as `Last-Modified` shows it.
    pub modified: SystemTime,
}

/// The outcome of the preconditions for a GET or HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Serve normally; `use_range` says whether a `Range` header may be honoured.
    Proceed {
        /// False when `If-Range` does not match (send the whole representation).
        use_range: bool,
    },
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates the conditional headers of a GET/HEAD against `v`.
pub fn evaluate(headers: &HeaderMap, v: Validators<'_>) -> Precondition {
    let text = |name| headers.get(name).and_then(|h| h.to_str().ok());
    let modified = truncate(v.modified);
    if let Some(list) = text(IF_MATCH) {
        if !matches_any(list, v.etag, true) {
            return Precondition::Failed;
        }
    } else if let Some(date) = text(IF_UNMODIFIED_SINCE).and_then(parse_date) {
        if modified > date {
            return Precondition::Failed;
        }
    }
    if let Some(list) = text(IF_NONE_MATCH) {
        if matches_any(list, v.etag, false) {
            return Precondition::NotModified;
        }
    } else if let Some(date) = text(IF_MODIFIED_SINCE).and_then(parse_date) {
        if modified <= date {
            return Precondition::NotModified;
        }
    }
    let use_range = match (headers.contains_key(RANGE), text(IF_RANGE)) {
        (false, _) | (true, None) => true,
        (true, Some(cond)) => {
            let cond = cond.trim();
            if cond.starts_with('"') {
                // Strong comparison only; a weak tag never matches If-Range.
                cond == v.etag
            } else {
                // A date matches only when it is exactly the Last-Modified date.
                parse_date(cond) == Some(modified)
            }
        }
    };
    Precondition::Proceed { use_range }
}

fn matches_any(list: &str, etag: &str, strong: bool) -> bool {
    let list = list.trim();
    if list == "*" {
        return true;
    }
    list.split(',').map(str::trim).any(|candidate| {
        match candidate.strip_prefix("W/") {
            // Weak tags match only under weak comparison (If-None-Match).
            Some(weak) => !strong && weak == etag,
            None => candidate == etag,
        }
    })
}

fn parse_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok()
}

fn truncate(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs()),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    const ETAG: &str = "\"a-1\"";

    fn check(headers: &[(http::HeaderName, &str)]) -> Precondition {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        let modified = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000_500);
        evaluate(
            &map,
            Validators {
                etag: ETAG,
                modified,
            },
        )
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn rfc_9110_order() {
        use Precondition::*;
        let go = Proceed { use_range: true };
        assert_eq!(check(&[]), go);
        assert_eq!(check(&[(IF_NONE_MATCH, ETAG)]), NotModified);
        assert_eq!(check(&[(IF_NONE_MATCH, "\"x\", W/\"a-1\"")]), NotModified);
        assert_eq!(check(&[(IF_NONE_MATCH, "*")]), NotModified);
        assert_eq!(check(&[(IF_NONE_MATCH, "\"other\"")]), go);
        assert_eq!(check(&[(IF_MODIFIED_SINCE, &date(1_000_000))]), NotModified);
        assert_eq!(check(&[(IF_MODIFIED_SINCE, &date(999_999))]), go);
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            check(&[
                (IF_NONE_MATCH, "\"other\""),
                (IF_MODIFIED_SINCE, &date(2_000_000))
            ]),
            go
        );
        assert_eq!(check(&[(IF_MATCH, "\"other\"")]), Failed);
        assert_eq!(check(&[(IF_MATCH, "W/\"a-1\"")]), Failed);
        assert_eq!(check(&[(IF_MATCH, ETAG)]), go);
        assert_eq!(check(&[(IF_UNMODIFIED_SINCE, &date(999_999))]), Failed);
        assert_eq!(check(&[(IF_MODIFIED_SINCE, "garbage")]), go);
    }

    #[test]
    fn if_range_needs_an_exact_match() {
        use Precondition::*;
        let range = (RANGE, "bytes=0-1");
        assert_eq!(
            check(&[range.clone(), (IF_RANGE, ETAG)]),
            Proceed { use_range: true }
        );
        assert_eq!(
            check(&[range.clone(), (IF_RANGE, "\"old\"")]),
            Proceed { use_range: false }
        );
        assert_eq!(
            check(&[range.clone(), (IF_RANGE, "W/\"a-1\"")]),
            Proceed { use_range: false }
        );
        assert_eq!(
            check(&[range.clone(), (IF_RANGE, &date(1_000_000))]),
            Proceed { use_range: true }
        );
        assert_eq!(
            check(&[range, (IF_RANGE, &date(1_000_001))]),
            Proceed { use_range: false }
        );
    }
}
