//! Chat line codec: bytes in, clean text lines out. Pure: no sockets (`session.rs` owns those).
//!
//! Framing and the length limit come from [`LineFramer`]; this module adds what chat needs on
//! top: invalid UTF-8 is replaced (never fatal), and control characters, ANSI escape
//! sequences and bidirectional overrides are neutralised, so a line can neither repaint
//! another user's terminal nor disguise itself.

use bytes::BytesMut;

use crate::net::line::{Frame, LineFramer};

/// Longest line accepted by default, in bytes (without the newline).
pub const DEFAULT_MAX_LINE_BYTES: usize = 8 * 1024;

/// One decoded input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A complete, cleaned line.
    Line(String),
    /// A line over the limit; it was skipped up to its newline.
    TooLong,
}

/// Splits a client's bytes into clean lines of at most `max_line_bytes`.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use sockit::chat::line::{Incoming, LineDecoder};
///
/// let mut decoder = LineDecoder::new(64);
/// let mut buf = BytesMut::from(&b"hi \x1b[31mred\x1b[0m\r\n\xff ok\npart"[..]);
/// assert_eq!(decoder.decode(&mut buf), Some(Incoming::Line("hi red".into())));
/// assert_eq!(decoder.decode(&mut buf), Some(Incoming::Line("\u{fffd} ok".into())));
/// assert_eq!(decoder.decode(&mut buf), None);
/// assert_eq!(decoder.decode_eof(&mut buf), Some(Incoming::Line("part".into())));
/// ```
#[derive(Debug, Clone)]
pub struct LineDecoder {
    framer: LineFramer,
}

impl LineDecoder {
    /// A decoder for lines up to `max_line_bytes` long.
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            framer: LineFramer::new(max_line_bytes),
        }
    }

    /// The longest line accepted.
    pub fn max_line_bytes(&self) -> usize {
        self.framer.max_line_bytes()
    }

    /// Takes the next line from the front of `buf`; `None` means "need more bytes".
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Incoming> {
        self.framer.decode(buf).map(clean_frame)
    }

    /// Like [`decode`](Self::decode), but at end of input a last line without newline counts.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Option<Incoming> {
        self.framer.decode_eof(buf).map(clean_frame)
    }

    /// After a pause with a partial line in `buf`: that line counts (see
    /// [`LineFramer::decode_pause`]).
    pub fn decode_pause(&mut self, buf: &mut BytesMut) -> Option<Incoming> {
        self.framer.decode_pause(buf).map(clean_frame)
    }

    /// Whether a pause would end a partial line now (the reader's cue to run its timer).
    pub fn is_partial(&self, buf: &BytesMut) -> bool {
        self.framer.is_partial(buf)
    }
}

fn clean_frame(frame: Frame) -> Incoming {
    match frame {
        Frame::Line(bytes) => Incoming::Line(neutralise(&bytes)),
        Frame::TooLong => Incoming::TooLong,
    }
}

/// Turns raw bytes into safe, printable text: invalid UTF-8 becomes U+FFFD, ANSI escape
/// sequences are removed, tabs become spaces, other control characters (C0, DEL, C1) and
/// bidirectional overrides are dropped.
///
/// The result holds no character for which [`char::is_control`] is true, and cleaning it
/// again changes nothing.
///
/// # Examples
///
/// ```
/// use sockit::chat::line::neutralise;
///
/// assert_eq!(neutralise(b"\x1b]0;pwned\x07hello\x00\tworld"), "hello world");
/// assert_eq!(neutralise("你好 👋".as_bytes()), "你好 👋");
/// ```
pub fn neutralise(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if !text.chars().any(needs_care) {
        return text.into_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => skip_escape(&mut chars),
            // A C1 CSI introduces the same sequences as ESC [.
            '\u{9b}' => skip_csi(&mut chars),
            '\t' => out.push(' '),
            c if is_unsafe(c) => {}
            c => out.push(c),
        }
    }
    out
}

fn needs_care(c: char) -> bool {
    c == '\t' || is_unsafe(c)
}

fn is_unsafe(c: char) -> bool {
    c.is_control()
        // Bidirectional embeddings, overrides and isolates reorder what follows them.
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// Skips what follows an ESC: a CSI sequence, an OSC/DCS/APC/PM/SOS string, or one character.
fn skip_escape(chars: &mut Chars<'_>) {
    match chars.peek() {
        Some('[') => {
            chars.next();
            skip_csi(chars);
        }
        Some(']' | 'P' | '_' | '^' | 'X') => {
            chars.next();
            // Strings end with BEL or ST (ESC \); a line end finishes them anyway.
            while let Some(c) = chars.next() {
                if c == '\x07' || c == '\u{9c}' {
                    break;
                }
                if c == '\x1b' {
                    if chars.peek() == Some(&'\\') {
                        chars.next();
                    }
                    break;
                }
            }
        }
        // Two-character escapes (ESC c, ESC 7, ESC ( B …): drop intermediates and the final.
        Some(_) => {
            while let Some(&c) = chars.peek() {
                chars.next();
                if !(' '..='/').contains(&c) {
                    break;
                }
            }
        }
        None => {}
    }
}

/// Skips CSI parameters and intermediates up to and including the final byte.
fn skip_csi(chars: &mut Chars<'_>) {
    while let Some(&c) = chars.peek() {
        if ('0'..='?').contains(&c) || (' '..='/').contains(&c) {
            chars.next();
        } else {
            if ('@'..='~').contains(&c) {
                chars.next();
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(max: usize, chunks: &[&[u8]]) -> Vec<Incoming> {
        let mut decoder = LineDecoder::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(line) = decoder.decode(&mut buf) {
                out.push(line);
            }
        }
        while let Some(line) = decoder.decode_eof(&mut buf) {
            out.push(line);
        }
        out
    }

    fn line(s: &str) -> Incoming {
        Incoming::Line(s.to_owned())
    }

    #[test]
    fn table_of_hostile_inputs() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain", "plain"),
            ("中文 ok 👋🏽".as_bytes(), "中文 ok 👋🏽"),
            (b"\x1b[31mred\x1b[0m", "red"),
            (b"\x1b[2J\x1b[Hclear", "clear"),
            (b"\x1b]0;title\x07after", "after"),
            (b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
            (b"bell\x07nul\x00del\x7f", "bellnuldel"),
            (b"a\tb", "a b"),
            (b"\xff\xfebad", "\u{fffd}\u{fffd}bad"),
            ("\u{9b}31mc1".as_bytes(), "c1"),
            ("evil\u{202e}txt.exe".as_bytes(), "eviltxt.exe"),
            (b"\x1bcreset", "reset"),
            (b"\x1b(Bcharset", "charset"),
            (b"trailing\x1b", "trailing"),
            (b"back\x08\x08space", "backspace"),
            (b"cr\rinside", "crinside"),
        ];
        for (raw, want) in cases {
            assert_eq!(neutralise(raw), *want, "input {raw:?}");
        }
    }

    #[test]
    fn lines_are_split_cleaned_and_limited() {
        let got = decode_all(
            16,
            &[b"ok\r\n\x1b[1mbold\x1b[0m\n", b"way too long a line\nnext"],
        );
        assert_eq!(
            got,
            vec![line("ok"), line("bold"), Incoming::TooLong, line("next")]
        );
    }

    #[test]
    fn a_huge_line_without_newline_costs_one_notice() {
        let huge = vec![b'x'; 1 << 20];
        let got = decode_all(8192, &[&huge[..1 << 19], &huge[1 << 19..], b"\nafter\n"]);
        assert_eq!(got, vec![Incoming::TooLong, line("after")]);
    }

    #[test]
    fn utf8_split_across_reads_stays_whole() {
        let bytes = "你好\n".as_bytes();
        let got = decode_all(64, &[&bytes[..2], &bytes[2..4], &bytes[4..]]);
        assert_eq!(got, vec![line("你好")]);
    }

    proptest! {
        #[test]
        fn output_never_holds_controls_and_cleaning_is_idempotent(
            raw in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let once = neutralise(&raw);
            prop_assert!(!once.chars().any(is_unsafe));
            prop_assert!(!once.contains('\x1b') && !once.contains('\n'));
            prop_assert_eq!(neutralise(once.as_bytes()), once.clone());
        }

        #[test]
        fn printable_text_passes_unchanged(text in "[^\\p{Cc}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}]{0,80}") {
            prop_assert_eq!(neutralise(text.as_bytes()), text);
        }

        #[test]
        fn chunking_does_not_change_the_lines(
            raw in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(0x1b), any::<u8>()], 0..300),
            cut in 1usize..50,
        ) {
            let whole = decode_all(32, &[&raw]);
            let chunks: Vec<&[u8]> = raw.chunks(cut).collect();
            prop_assert_eq!(whole, decode_all(32, &chunks));
        }
    }
}
