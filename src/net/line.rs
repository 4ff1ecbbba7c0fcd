//! Line framing with a length limit: bytes in, whole lines out. Pure: no I/O.
//!
//! A message ends at a newline, at the end of input ([`LineFramer::decode_eof`]), or when a
//! partial line is followed by a pause of [`MESSAGE_PAUSE`] ([`LineFramer::decode_pause`]):
//! programs that write one message per `send()` without a newline, then wait for the answer
//! (the classic lessons' clients do), are answered too. The codec only says what a pause
//! means; the I/O half (the reader) owns the timer, restarts it on every read, so a line
//! that is still growing is never cut, and never runs it while it is not reading.
//!
//! A line over the limit is reported once and skipped up to its newline, so one bad line
//! costs its sender that line and nothing more.

use std::time::Duration;

use bytes::BytesMut;

/// How long a partial line may sit without a new byte before it counts as a whole message.
///
/// Long enough that a line written in pieces over a busy network stays whole, short enough
/// that a person waiting for an answer does not notice it.
pub const MESSAGE_PAUSE: Duration = Duration::from_millis(200);

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
    /// A pause cut a line that ended in `\r`: a `\n` arriving next belongs to it.
    is_after_cut_cr: bool,
}

impl LineFramer {
    /// A framer that accepts lines up to `max_line_bytes` long.
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes,
            scanned: 0,
            is_discarding: false,
            is_after_cut_cr: false,
        }
    }

    /// The longest line accepted.
    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    /// Takes the next frame from the front of `buf`; `None` means "need more bytes".
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        if self.is_after_cut_cr && !buf.is_empty() {
            self.is_after_cut_cr = false;
            if buf[0] == b'\n' {
                let _ = buf.split_to(1);
            }
        }
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
        self.decode_partial(buf)
    }

    /// Like [`decode_eof`](Self::decode_eof), after the peer paused for [`MESSAGE_PAUSE`]
    /// with a partial line in `buf`: that line is a whole message. An over-long line being
    /// skipped ends there too. More bytes may follow; a `\n` right after a cut `\r` is
    /// taken as that line's end, not as an empty line.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use sockit::net::line::{Frame, LineFramer};
    ///
    /// let mut framer = LineFramer::new(64);
    /// let mut buf = BytesMut::from(&b"zy"[..]);
    /// assert_eq!(framer.decode(&mut buf), None);
    /// assert!(framer.is_partial(&buf));
    /// // ... no byte for MESSAGE_PAUSE:
    /// assert_eq!(framer.decode_pause(&mut buf), Some(Frame::Line(BytesMut::from(&b"zy"[..]))));
    /// assert!(!framer.is_partial(&buf));
    /// ```
    pub fn decode_pause(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        if let Some(frame) = self.decode(buf) {
            return Some(frame);
        }
        let is_cut_at_cr = buf.last() == Some(&b'\r');
        let frame = self.decode_partial(buf);
        if frame.is_some() {
            self.is_after_cut_cr = is_cut_at_cr;
        }
        frame
    }

    /// Whether `buf` holds the start of a line (or of an over-long line being skipped) that a
    /// pause would end: the reader runs its pause timer only then.
    pub fn is_partial(&self, buf: &BytesMut) -> bool {
        !buf.is_empty() || self.is_discarding
    }

    fn decode_partial(&mut self, buf: &mut BytesMut) -> Option<Frame> {
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
    fn a_pause_ends_a_partial_line_and_the_next_bytes_start_a_new_one() {
        let mut framer = LineFramer::new(10);
        let mut buf = BytesMut::from(&b"a\nzy"[..]);
        assert_eq!(framer.decode(&mut buf), Some(line(b"a")));
        assert_eq!(framer.decode(&mut buf), None);
        assert!(framer.is_partial(&buf));
        assert_eq!(framer.decode_pause(&mut buf), Some(line(b"zy")));
        assert_eq!(framer.decode_pause(&mut buf), None);
        buf.extend_from_slice(b"next\n");
        assert_eq!(framer.decode(&mut buf), Some(line(b"next")));
    }

    #[test]
    fn a_newline_after_a_cut_cr_is_not_an_empty_line() {
        let mut framer = LineFramer::new(10);
        let mut buf = BytesMut::from(&b"zy\r"[..]);
        assert_eq!(framer.decode(&mut buf), None);
        assert_eq!(framer.decode_pause(&mut buf), Some(line(b"zy")));
        assert_eq!(framer.decode_pause(&mut buf), None);
        buf.extend_from_slice(b"\nok\n\n");
        assert_eq!(framer.decode(&mut buf), Some(line(b"ok")));
        assert_eq!(framer.decode(&mut buf), Some(line(b"")));
    }

    #[test]
    fn a_pause_ends_the_skipping_of_an_over_long_line() {
        let mut framer = LineFramer::new(4);
        let mut buf = BytesMut::from(&b"toolong"[..]);
        assert_eq!(framer.decode(&mut buf), Some(Frame::TooLong));
        buf.extend_from_slice(b"more");
        assert_eq!(framer.decode(&mut buf), None);
        assert!(framer.is_partial(&buf));
        assert_eq!(framer.decode_pause(&mut buf), None);
        assert!(!framer.is_partial(&buf));
        buf.extend_from_slice(b"hi");
        assert_eq!(framer.decode_pause(&mut buf), Some(line(b"hi")));
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
