//! Terminal input in raw mode: bytes in, keys out. Pure: no I/O (`tty.rs` reads the terminal).
//!
//! The client reads the terminal itself, as much as is there at each wake-up, and decodes
//! only what its editor needs: text (UTF-8, possibly split across reads), Enter, Backspace,
//! the control keys it binds, and bracketed pastes (`ESC [200~ … ESC [201~`), which arrive
//! whole however large they are. Other escape sequences (arrows, function keys) are skipped.

/// One decoded key or paste.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// A printable character.
    Char(char),
    /// Enter (CR or LF).
    Enter,
    /// Backspace (DEL or BS).
    Backspace,
    /// Ctrl-C.
    Interrupt,
    /// Ctrl-D.
    EndOfInput,
    /// Ctrl-U.
    ClearLine,
    /// Ctrl-W.
    DeleteWord,
    /// A bracketed paste, as pasted (newlines kept).
    Paste(String),
}

const PASTE_START: &[u8] = b"\x1b[200~";
const PASTE_END: &[u8] = b"\x1b[201~";

/// Turns terminal bytes into [`Key`]s; keeps an incomplete sequence for the next read.
#[derive(Debug, Default)]
pub(crate) struct KeyDecoder {
    pending: Vec<u8>,
    /// Inside a bracketed paste: bytes are text up to [`PASTE_END`].
    is_pasting: bool,
    /// The last byte was CR: a LF right after it is the same Enter.
    is_after_cr: bool,
}

impl KeyDecoder {
    /// Decodes `bytes` (and what was left from before) into `out`.
    pub(crate) fn feed(&mut self, bytes: &[u8], out: &mut Vec<Key>) {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        while at < self.pending.len() {
            match self.step(at, out) {
                Some(next) => at = next,
                None => break,
            }
        }
        self.pending.drain(..at);
    }

    /// Decodes one item at `at`; returns where the next starts, `None` when more bytes are
    /// needed.
    fn step(&mut self, at: usize, out: &mut Vec<Key>) -> Option<usize> {
        let rest = &self.pending[at..];
        if self.is_pasting {
            let end = find(rest, PASTE_END)?;
            let text = String::from_utf8_lossy(&rest[..end]).into_owned();
            out.push(Key::Paste(text));
            self.is_pasting = false;
            return Some(at + end + PASTE_END.len());
        }
        let is_after_cr = std::mem::take(&mut self.is_after_cr);
        let byte = rest[0];
        let key = match byte {
            b'\r' => {
                self.is_after_cr = true;
                Some(Key::Enter)
            }
            b'\n' if is_after_cr => None,
            b'\n' => Some(Key::Enter),
            0x7f | 0x08 => Some(Key::Backspace),
            0x03 => Some(Key::Interrupt),
            0x04 => Some(Key::EndOfInput),
            0x15 => Some(Key::ClearLine),
            0x17 => Some(Key::DeleteWord),
            0x1b => return self.escape(at),
            b if b < 0x20 => None,
            _ => {
                let len = utf8_len(byte);
                if rest.len() < len {
                    return None;
                }
                return match std::str::from_utf8(&rest[..len]) {
                    Ok(text) => {
                        out.extend(text.chars().map(Key::Char));
                        Some(at + len)
                    }
                    Err(_) => {
                        out.push(Key::Char('\u{fffd}'));
                        Some(at + 1)
                    }
                };
            }
        };
        out.extend(key);
        Some(at + 1)
    }

    /// An escape sequence at `at`: a paste start, a CSI or SS3 sequence (skipped) or an
    /// Alt-key (skipped).
    fn escape(&mut self, at: usize) -> Option<usize> {
        let rest = &self.pending[at..];
        if rest.starts_with(PASTE_START) {
            self.is_pasting = true;
            return Some(at + PASTE_START.len());
        }
        match rest.get(1)? {
            b'[' => {
                let end = rest[2..].iter().position(|b| (0x40..=0x7e).contains(b))?;
                Some(at + 2 + end + 1)
            }
            b'O' => rest.get(2).map(|_| at + 3),
            _ => Some(at + 2),
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(chunks: &[&[u8]]) -> Vec<Key> {
        let mut decoder = KeyDecoder::default();
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut out);
        }
        out
    }

    #[test]
    fn text_control_keys_and_utf8_split_across_reads() {
        let got = keys(&[b"h\xc3", b"\xa9\x7f\r\n\x03\x04\x15\x17x\r"]);
        assert_eq!(
            got,
            [
                Key::Char('h'),
                Key::Char('é'),
                Key::Backspace,
                Key::Enter,
                Key::Interrupt,
                Key::EndOfInput,
                Key::ClearLine,
                Key::DeleteWord,
                Key::Char('x'),
                Key::Enter,
            ]
        );
    }

    #[test]
    fn a_large_paste_in_many_reads_is_one_paste() {
        let text: String = (0..200).map(|i| format!("line {i} 你好\n")).collect();
        let mut bytes = PASTE_START.to_vec();
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(PASTE_END);
        bytes.extend_from_slice(b"z");
        let chunks: Vec<&[u8]> = bytes.chunks(1000).collect();
        assert_eq!(keys(&chunks), [Key::Paste(text), Key::Char('z')]);
    }

    #[test]
    fn other_escape_sequences_are_skipped() {
        let got = keys(&[b"\x1b[A\x1b[1;5", b"C\x1bOPa\x1bbc"]);
        assert_eq!(got, [Key::Char('a'), Key::Char('c')]);
    }
}
