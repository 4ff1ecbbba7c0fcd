//! Line framing with a length limit: bytes in, whole lines out. Pure: no I/O.
//!
//! A line over the limit is reported once and skipped up to its newline, so one bad line
//! costs its sender that line and nothing more.

use bytes::BytesMut;

/// One result of [`LineFramer::decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its `\n` or `\r\n`.
    Line(BytesMut),
    /// A line went over the limit; it is being skipped up to the next newline.
    TooLong,
}

/// Splits a byte stream into lines of at most `max_line_bytes` (excluding the newline).
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use sockit::net::line::{Frame, LineFramer};
///
/// let mut framer = LineFramer::new(8);
/// let mut buf = BytesMut::from(&b"hi\r\nthis one is too long\nok\npartial"[..]);
/// assert_eq!(framer.decode(&mut buf), Some(Frame::Line(BytesMut::from(&b"hi"[..]))));
/// assert_eq!(framer.decode(&mut buf), Some(Frame::TooLong));
/// assert_eq!(framer.decode(&mut buf), Some(Frame::Line(BytesMut::from(&b"ok"[..]))));
/// assert_eq!(framer.decode(&mut buf), None); // "partial" waits for its newline
/// assert_eq!(framer.decode_eof(&mut buf), Some(Frame::Line(BytesMut::from(&b"partial"[..]))));
/// ```
#[derive(Debug, Clone)]
pub struct LineFramer {
    max_line_bytes: usize,
    /// Bytes of `buf` already searched for a newline (so each byte is scanned once).
    scanned: usize,
    /// Inside an over-long line: drop everything up to the next newline.
    is_discarding: bool,
}

impl LineFramer {
    /// A framer that accepts lines up to `max_line_bytes` long.
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes,
            scanned: 0,
            is_discarding: false,
        }
    }

    /// The longest line accepted.
    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    /// Takes the next frame from the front of `buf`; `None` means "need more bytes".
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        loop {
            match memchr(b'\n', &buf[self.scanned..]) {
                Some(i) => {
                    let end = self.scanned + i;
                    self.scanned = 0;
                    let mut line = buf.split_to(end + 1);
                    if self.is_discarding {
                        self.is_discarding = false;
                        continue;
                    }
                    line.truncate(end);
                    if line.last() == Some(&b'\r') {
                        line.truncate(end - 1);
                    }
                    if line.len() > self.max_line_bytes {
                        return Some(Frame::TooLong);
                    }
                    return Some(Frame::Line(line));
                }
                None if self.is_discarding => {
                    buf.clear();
                    self.scanned = 0;
                    return None;
                }
                // +1: the line may still end in '\r' that will be stripped.
                None if buf.len() > self.max_line_bytes + 1 => {
                    buf.clear();
                    self.scanned = 0;
                    self.is_discarding = true;
                    return Some(Frame::TooLong);
                }
                None => {
                    self.scanned = buf.len();
                    return None;
                }
            }
        }
    }

    /// Like [`decode`](Self::decode), but at end of input a last line without newline counts.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        if let Some(frame) = self.decode(buf) {
            return Some(frame);
        }
        self.scanned = 0;
        let was_discarding = std::mem::take(&mut self.is_discarding);
        if buf.is_empty() || was_discarding {
            buf.clear();
            return None;
        }
        let mut line = buf.split();
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > self.max_line_bytes {
            return Some(Frame::TooLong);
        }
        Some(Frame::Line(line))
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines_of(framer: &mut LineFramer, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(f) = framer.decode(&mut buf) {
                out.push(f);
            }
        }
        while let Some(f) = framer.decode_eof(&mut buf) {
            out.push(f);
        }
        out
    }

    fn line(s: &[u8]) -> Frame {
        Frame::Line(BytesMut::from(s))
    }

    #[test]
    fn splits_across_reads_and_strips_crlf() {
        let got = lines_of(
            &mut LineFramer::new(100),
            &[b"he", b"llo\r", b"\nwor", b"ld\n\n"],
        );
        assert_eq!(got, vec![line(b"hello"), line(b"world"), line(b"")]);
    }

    #[test]
    fn over_long_line_is_reported_once_and_skipped() {
        let long = vec![b'x'; 50];
        let got = lines_of(&mut LineFramer::new(10), &[&long, &long, b"\nnext\n"]);
        assert_eq!(got, vec![Frame::TooLong, line(b"next")]);
    }

    #[test]
    fn line_of_exactly_the_limit_passes_with_crlf() {
        let got = lines_of(&mut LineFramer::new(4), &[b"abcd\r", b"\nabcde\n"]);
        assert_eq!(got, vec![line(b"abcd"), Frame::TooLong]);
    }

    #[test]
    fn non_utf8_is_passed_through() {
        let got = lines_of(&mut LineFramer::new(10), &[b"\xff\xfe\n"]);
        assert_eq!(got, vec![line(b"\xff\xfe")]);
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_lines(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..300),
            cut in 1usize..40,
        ) {
            let whole = lines_of(&mut LineFramer::new(16), &[&data]);
            let chunks: Vec<&[u8]> = data.chunks(cut).collect();
            let pieces = lines_of(&mut LineFramer::new(16), &chunks);
            prop_assert_eq!(whole, pieces);
        }

        #[test]
        fn lines_never_exceed_the_limit_nor_hold_newlines(
            data in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            for frame in lines_of(&mut LineFramer::new(8), &[&data]) {
                if let Frame::Line(l) = frame {
                    prop_assert!(l.len() <= 8);
                    prop_assert!(!l.contains(&b'\n'));
                }
            }
        }
    }
}
