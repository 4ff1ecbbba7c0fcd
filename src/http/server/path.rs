//! Request paths to file-system paths, safely: pure code, no I/O.
//!
//! The raw path of the request target is percent-decoded exactly once and split on `/`.
//! Empty segments collapse (`//a` is `/a`); `.` and `..`, NUL, backslashes and malformed
//! escapes are refused outright, so the result, joined under the served directory, can only
//! name something below it. Symlinks are the file layer's business (`static_files.rs`).
//!
//! Segments are bytes, as Unix file names are: a name that is not UTF-8 is served by its
//! percent-encoded href like any other ([`encode_segment`]) and shown to people with its
//! odd bytes visibly escaped ([`display_name`]).

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Why a request path was refused (always answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/` (`*`, or a relative target).
    #[error("request path must start with /")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-escape in request path")]
    BadEscape,
    /// A NUL byte, decoded or not.
    #[error("NUL byte in request path")]
    Nul,
    /// A backslash: a path separator on some systems, never accepted here.
    #[error("backslash in request path")]
    Backslash,
    /// A `.` or `..` segment.
    #[error("dot segment in request path")]
    DotSegment,
}

/// A checked request path: decoded segments that are safe to join under the served directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    segments: Vec<OsString>,
    trailing_slash: bool,
}

impl RequestPath {
    /// Checks and decodes the path of a request target (without the query).
    ///
    /// # Examples
    ///
    /// ```
    /// use sockit::http::server::RequestPath;
    ///
    /// let p = RequestPath::parse("/docs//a%20b.txt").unwrap();
    /// assert_eq!(p.segments(), ["docs", "a b.txt"]);
    /// assert!(RequestPath::parse("/a/%2e%2e/b").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// A [`PathError`] for anything that could name a place outside the served directory or
    /// that is malformed.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let bytes = raw.as_bytes();
        if bytes.first() != Some(&b'/') {
            return Err(PathError::NotAbsolute);
        }
        // Most paths hold no escape: check them in place instead of copying.
        let text: std::borrow::Cow<'_, [u8]> = if bytes.contains(&b'%') {
            let mut decoded = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                let b = bytes[i];
                if b == b'%' {
                    let hi = bytes.get(i + 1).and_then(|&c| hex_value(c));
                    let lo = bytes.get(i + 2).and_then(|&c| hex_value(c));
                    match (hi, lo) {
                        (Some(hi), Some(lo)) => decoded.push(hi << 4 | lo),
                        _ => return Err(PathError::BadEscape),
                    }
                    i += 3;
                } else {
                    decoded.push(b);
                    i += 1;
                }
            }
            decoded.into()
        } else {
            bytes.into()
        };
        if text.contains(&0) {
            return Err(PathError::Nul);
        }
        if text.contains(&b'\\') {
            return Err(PathError::Backslash);
        }
        let trailing_slash = text.len() > 1 && text.ends_with(b"/");
        let mut segments = Vec::new();
        for segment in text.split(|&b| b == b'/') {
            match segment {
                b"" => {}
                b"." | b".." => return Err(PathError::DotSegment),
                s => segments.push(OsStr::from_bytes(s).to_owned()),
            }
        }
        Ok(Self {
            segments,
            trailing_slash,
        })
    }

    /// The root of the served directory (`/`).
    pub fn root() -> Self {
        Self {
            segments: Vec::new(),
            trailing_slash: false,
        }
    }

    /// The decoded segments, none empty, `.` or `..`, none holding `/`, `\` or NUL; any
    /// other bytes, UTF-8 or not.
    pub fn segments(&self) -> &[OsString] {
        &self.segments
    }

    /// Whether the request ended in `/` (a directory was asked for).
    pub fn has_trailing_slash(&self) -> bool {
        self.trailing_slash || self.segments.is_empty()
    }

    /// Whether any segment is a hidden (dot) name.
    pub fn is_hidden(&self) -> bool {
        self.segments.iter().any(|s| s.as_bytes().starts_with(b"."))
    }

    /// The path relative to the served directory (empty for the root).
    pub fn to_relative(&self) -> PathBuf {
        self.segments.iter().collect()
    }

    /// This path with one more segment.
    pub(crate) fn join(&self, segment: impl AsRef<OsStr>) -> Self {
        let mut segments = self.segments.clone();
        segments.push(segment.as_ref().to_owned());
        Self {
            segments,
            trailing_slash: false,
        }
    }

    /// The last segment, or `None` for the root.
    pub fn file_name(&self) -> Option<&OsStr> {
        self.segments.last().map(OsString::as_os_str)
    }

    /// The parent path (the root's parent is the root).
    pub fn parent(&self) -> Self {
        let mut segments = self.segments.clone();
        segments.pop();
        Self {
            segments,
            trailing_slash: true,
        }
    }

    /// The path as a URL path, every segment percent-encoded, with a trailing `/` when `dir`.
    ///
    /// It always starts with exactly one `/` followed by a non-empty segment or nothing, so it
    /// can never be read as `//host` (no open redirect).
    pub fn to_href(&self, dir: bool) -> String {
        let mut href = String::from("/");
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                href.push('/');
            }
            encode_segment(segment.as_bytes(), &mut href);
        }
        if dir && !self.segments.is_empty() {
            href.push('/');
        }
        href
    }

    /// The path as people read it: `/`-separated, each segment as [`display_name`] shows it.
    pub fn to_display(&self) -> String {
        let mut out = String::from("/");
        for segment in &self.segments {
            out.push_str(&display_name(segment.as_bytes()));
            out.push('/');
        }
        out
    }
}

/// Percent-encodes one path segment, whatever its bytes: everything but unreserved
/// characters, so the result holds no `/`, `?`, `#`, `:`, quotes or angle brackets.
///
/// # Examples
///
/// ```
/// let mut href = String::new();
/// sockit::http::server::encode_segment(b"a b\xff", &mut href);
/// assert_eq!(href, "a%20b%FF");
/// ```
pub fn encode_segment(segment: impl AsRef<[u8]>, out: &mut String) {
    for &b in segment.as_ref() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// A file name as people read it, for a page or a message: UTF-8 text as it is, but every
/// byte that is not UTF-8 shown as `\xFF` and every control character (ESC, newline, DEL,
/// C1 controls) as `\n`, `\t`, `\r` or `\u{1b}`-like `\x1B`, so that no name can draw on a
/// terminal or pass for another line. Lossy on purpose: the href is the exact name.
///
/// # Examples
///
/// ```
/// use sockit::http::server::display_name;
///
/// assert_eq!(display_name(b"caf\xc3\xa9.txt"), "café.txt");
/// assert_eq!(display_name(b"a\xffb\nc\x1b[31m"), "a\\xFFb\\nc\\x1B[31m");
/// ```
pub fn display_name(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let _ = write!(out, "\\x{:02X}", u32::from(c));
                }
                // Bidirectional overrides and isolates: they reorder what follows on screen.
                '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => {
                    let _ = write!(out, "\\u{{{:X}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    out
}

/// Whether `name` is acceptable as one file name created by an upload.
pub(crate) fn is_plain_name(name: &OsStr) -> bool {
    let name = name.as_bytes();
    !name.is_empty()
        && name != b"."
        && name != b".."
        && name.len() <= 255
        && !name.iter().any(|&b| b == b'/' || b == b'\\' || b == 0)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_paths_decode_once() {
        let p = RequestPath::parse("/a%20b/c%2520d").unwrap();
        assert_eq!(p.segments(), ["a b", "c%20d"]);
        assert!(!p.has_trailing_slash());
        let p = RequestPath::parse("/dir/").unwrap();
        assert!(p.has_trailing_slash());
        assert!(RequestPath::parse("/").unwrap().segments().is_empty());
        assert_eq!(
            RequestPath::parse("/%E2%9C%93").unwrap().segments(),
            ["\u{2713}"]
        );
    }

    #[test]
    fn names_that_are_not_utf8_round_trip_through_their_href() {
        let p = RequestPath::parse("/d%FFir/a%0Ab%1B.txt").unwrap();
        assert_eq!(p.segments()[0].as_bytes(), b"d\xffir");
        assert_eq!(p.file_name().unwrap().as_bytes(), b"a\nb\x1b.txt");
        assert_eq!(p.to_href(false), "/d%FFir/a%0Ab%1B.txt");
        assert_eq!(p.to_display(), "/d\\xFFir/a\\nb\\x1B.txt/");
        assert_eq!(
            display_name("\u{202E}gpj.exe".as_bytes()),
            "\\u{202E}gpj.exe"
        );
        assert_eq!(display_name(b"\x7f\xc2\x9b"), "\\x7F\\x9B");
    }

    #[test]
    fn escapes_and_tricks_are_refused() {
        use PathError::*;
        let cases = [
            ("*", NotAbsolute),
            ("a/b", NotAbsolute),
            ("", NotAbsolute),
            ("/..", DotSegment),
            ("/a/../../etc/passwd", DotSegment),
            ("/%2e%2e/etc/passwd", DotSegment),
            ("/%2E%2E%2Fetc", DotSegment),
            ("/.%2e/x", DotSegment),
            ("/./a", DotSegment),
            ("/a\\..\\b", Backslash),
            ("/%5c..%5cb", Backslash),
            ("/a%00.txt", Nul),
            ("/a%zz", BadEscape),
            ("/a%2", BadEscape),
        ];
        for (raw, want) in cases {
            assert_eq!(RequestPath::parse(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn double_slashes_collapse_and_never_make_a_host() {
        let p = RequestPath::parse("//evil.example/x").unwrap();
        assert_eq!(p.segments(), ["evil.example", "x"]);
        assert_eq!(p.to_href(true), "/evil.example/x/");
        assert_eq!(RequestPath::root().to_href(true), "/");
    }

    #[test]
    fn hidden_segments_are_detected() {
        assert!(RequestPath::parse("/a/.git/config").unwrap().is_hidden());
        assert!(!RequestPath::parse("/a/b.c").unwrap().is_hidden());
    }

    #[test]
    fn hrefs_encode_everything_dangerous() {
        let p = RequestPath::parse("/a%3Cscript%3E/%22q%27%20%23%3F%25").unwrap();
        assert_eq!(p.to_href(false), "/a%3Cscript%3E/%22q%27%20%23%3F%25");
    }

    fn check_invariants(p: &RequestPath) -> Result<(), TestCaseError> {
        for s in p.segments() {
            prop_assert!(!s.is_empty() && s != "." && s != "..");
            prop_assert!(!s.as_bytes().iter().any(|b| matches!(b, b'/' | b'\\' | 0)));
        }
        let rel = p.to_relative();
        prop_assert!(rel.is_relative());
        prop_assert_eq!(rel.components().count(), p.segments().len());
        prop_assert!(
            rel.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        );
        let root = std::path::Path::new("/srv/www");
        prop_assert!(root.join(&rel).starts_with(root));
        let href = p.to_href(p.has_trailing_slash());
        prop_assert!(!href.starts_with("//"));
        let again = RequestPath::parse(&href).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again.segments(), p.segments());
        prop_assert_eq!(again.has_trailing_slash(), p.has_trailing_slash());
        Ok(())
    }

    proptest! {
        #[test]
        fn parsed_segments_are_always_safe(raw in "/[a-zA-Z0-9%./\\\\:~_ -]{0,40}") {
            if let Ok(p) = RequestPath::parse(&raw) {
                for s in p.segments() {
                    prop_assert!(!s.is_empty() && s != "." && s != "..");
                    prop_assert!(!s.as_bytes().iter().any(|b| matches!(b, b'/' | b'\\' | 0)));
                }
                let rel = p.to_relative();
                prop_assert!(rel.is_relative());
                prop_assert!(rel.components().all(|c| matches!(c, std::path::Component::Normal(_))));
            }
        }

        #[test]
        fn href_round_trips(segments in proptest::collection::vec("[^/\\\\\\x00]{1,20}", 0..4)) {
            let segments: Vec<OsString> = segments.into_iter()
                .filter(|s| s != "." && s != "..").map(OsString::from).collect();
            let p = RequestPath { segments: segments.clone(), trailing_slash: false };
            let again = RequestPath::parse(&p.to_href(false)).unwrap();
            prop_assert_eq!(again.segments(), &segments[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(raw in "\\PC{0,60}") {
            let _ = RequestPath::parse(&raw);
        }

        /// The invariants the fuzz target `fuzz_path` checks, on targets built from the
        /// pieces traversal attempts are made of.
        #[test]
        fn hostile_targets_stay_below_the_root(
            pieces in proptest::collection::vec(prop_oneof![
                Just("/"), Just("//"), Just("."), Just(".."), Just("%2e"), Just("%2E"),
                Just("%2f"), Just("%5c"), Just("\\"), Just("%00"), Just("%"), Just("%zz"),
                Just("%ff"), Just("%e2%9c%93"), Just("?"), Just(":"), Just("a"), Just("b.txt"),
                Just(".git"), Just(" "), Just("\u{2713}"),
            ], 0..16),
            lead in any::<bool>(),
        ) {
            let raw = format!("{}{}", if lead { "/" } else { "" }, pieces.concat());
            let Ok(p) = RequestPath::parse(&raw) else { return Ok(()) };
            for form in [p.clone(), p.parent(), p.join("index.html")] {
                check_invariants(&form)?;
            }
            if let Some(name) = p.file_name() {
                let mut packed = name.to_owned();
                packed.push(".gz");
                check_invariants(&p.parent().join(packed))?;
            }
        }
    }
}
