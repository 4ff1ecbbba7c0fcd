//! `Range: bytes=…` parsing and resolution against a file length (RFC 9110 §14), and the
//! one place the server's range answers (206 with `Content-Range`, 416) are made.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::http::server::body::Body;
use crate::http::server::response::text;

/// What to send for a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable range (absent, malformed, another unit, or several ranges): the whole file.
    Full,
    /// One satisfiable range, inclusive `start..=end`: 206 with `Content-Range`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// No range overlaps the file: 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Resolves the value of a `Range` header against a file of `len` bytes.
///
/// Several ranges get the whole file (a plain 200), which never sends more than the file.
///
/// # Examples
///
/// ```
/// use sockit::http::server::{resolve_range, RangeAnswer};
///
/// assert_eq!(resolve_range("bytes=0-9", 100), RangeAnswer::Partial { start: 0, end: 9 });
/// assert_eq!(resolve_range("bytes=-10", 100), RangeAnswer::Partial { start: 90, end: 99 });
/// assert_eq!(resolve_range("bytes=100-", 100), RangeAnswer::Unsatisfiable);
/// ```
pub fn resolve_range(header: &str, len: u64) -> RangeAnswer {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    let mut parsed = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match parse_one(part) {
            Some(r) => parsed.push(r),
            // A syntactically invalid Range header is ignored as a whole.
            None => return RangeAnswer::Full,
        }
    }
    let satisfiable: Vec<(u64, u64)> = parsed.iter().filter_map(|r| r.clamp(len)).collect();
    match (parsed.len(), satisfiable.as_slice()) {
        (0, _) => RangeAnswer::Full,
        (_, []) => RangeAnswer::Unsatisfiable,
        (_, [(start, end)]) => RangeAnswer::Partial {
            start: *start,
            end: *end,
        },
        _ => RangeAnswer::Full,
    }
}

impl RangeAnswer {
    /// Fits `res`, the whole answer for a representation of `len` bytes, to this range: for
    /// a partial answer its status becomes 206 with a `Content-Range`. Returns the first byte
    /// and the number of bytes to send, or the 416 answer to give instead.
    pub(crate) fn apply<B>(
        self,
        len: u64,
        res: &mut Response<B>,
    ) -> Result<(u64, u64), Box<Response<Body>>> {
        match self {
            Self::Full => Ok((0, len)),
            Self::Partial { start, end } => {
                *res.status_mut() = StatusCode::PARTIAL_CONTENT;
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                    res.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                Ok((start, end - start + 1))
            }
            Self::Unsatisfiable => {
                let mut res = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    res.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                Err(Box::new(res))
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Spec {
    From(u64, Option<u64>),
    Suffix(u64),
}

impl Spec {
    fn clamp(self, len: u64) -> Option<(u64, u64)> {
        match self {
            Spec::From(start, end) => {
                if start >= len {
                    return None;
                }
                let end = end.map_or(len - 1, |e| e.min(len - 1));
                Some((start, end))
            }
            Spec::Suffix(0) => None,
            Spec::Suffix(n) => {
                if len == 0 {
                    return None;
                }
                Some((len.saturating_sub(n), len - 1))
            }
        }
    }
}

fn parse_one(part: &str) -> Option<Spec> {
    let (first, last) = part.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if first.is_empty() {
        return number(last).map(Spec::Suffix);
    }
    let start = number(first)?;
    if last.is_empty() {
        return Some(Spec::From(start, None));
    }
    let end = number(last)?;
    (end >= start).then_some(Spec::From(start, Some(end)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let cases = [
            ("bytes=0-0", 10, Partial { start: 0, end: 0 }),
            ("bytes=2-", 10, Partial { start: 2, end: 9 }),
            ("bytes=5-100", 10, Partial { start: 5, end: 9 }),
            ("bytes=-3", 10, Partial { start: 7, end: 9 }),
            ("bytes=-30", 10, Partial { start: 0, end: 9 }),
            ("bytes=10-", 10, Unsatisfiable),
            ("bytes=-0", 10, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=0-1,3-4", 10, Full),
            ("bytes=0-1, 30-40", 10, Partial { start: 0, end: 1 }),
            ("bytes=20-30,40-50", 10, Unsatisfiable),
            ("bytes=5-2", 10, Full),
            ("bytes=a-b", 10, Full),
            ("bytes=+1-2", 10, Full),
            ("items=0-1", 10, Full),
            ("bytes=", 10, Full),
            ("bytes=99999999999999999999999-", 10, Full),
        ];
        for (header, len, want) in cases {
            assert_eq!(resolve_range(header, len), want, "{header} of {len}");
        }
    }

    proptest! {
        #[test]
        fn partial_ranges_lie_inside_the_file(header in "bytes=[0-9,-]{0,20}", len in 0u64..1000) {
            if let Partial { start, end } = resolve_range(&header, len) {
                prop_assert!(start <= end && end < len);
            }
        }
    }
}
