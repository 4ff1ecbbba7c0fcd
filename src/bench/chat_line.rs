//! The line a chat sender writes, and how a receiver finds it again: a start mark, padding
//! and a token of fixed widths (run, sender, sequence number, send time). A line cut short or
//! spliced into another is found out by its marks.

/// A parsed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token {
    pub(super) run: u32,
    pub(super) sender: u32,
    pub(super) seq: u64,
    pub(super) micros: u64,
}

/// Appends one line (padding, token, newline) of `size` bytes plus newline.
pub(super) fn write_line(out: &mut Vec<u8>, size: usize, token: Token) {
    let mut tok = [0u8; 64];
    let len = write_token(&mut tok, token);
    out.extend_from_slice(START);
    out.extend(std::iter::repeat_n(
        b'x',
        size.saturating_sub(len + START.len()),
    ));
    out.extend_from_slice(&tok[..len]);
    out.push(b'\n');
}

/// Writes `~sb<run>.<sender>.<seq>.<micros>~` into `tok` (fields zero-padded to their widths,
/// wider when a number needs it); returns its length. Digits are written by hand: the
/// formatter cost the senders a few percent of the generator's time.
fn write_token(tok: &mut [u8; 64], token: Token) -> usize {
    const WIDTHS: [usize; 3] = [5, 10, 13];
    let fields = [u64::from(token.sender), token.seq, token.micros];
    if fields
        .iter()
        .zip(WIDTHS)
        .any(|(&n, width)| n >= 10u64.pow(width as u32))
    {
        use std::io::Write as _;
        let mut cursor = std::io::Cursor::new(&mut tok[..]);
        let _ = write!(
            cursor,
            "~sb{:08x}.{:05}.{:010}.{:013}~",
            token.run, token.sender, token.seq, token.micros
        );
        return cursor.position() as usize;
    }
    tok[..3].copy_from_slice(b"~sb");
    for (i, digit) in tok[3..11].iter_mut().enumerate() {
        let nibble = (token.run >> (28 - 4 * i)) & 0xf;
        *digit = b"0123456789abcdef"[nibble as usize];
    }
    let mut at = 11;
    for (n, width) in fields.into_iter().zip(WIDTHS) {
        tok[at] = b'.';
        let mut n = n;
        for digit in tok[at + 1..at + 1 + width].iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
        at += 1 + width;
    }
    tok[at] = b'~';
    at + 1
}

/// What a received line holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// No token at all (a notice, a join message).
    Nothing,
    /// One whole token with intact padding.
    Token(Token),
    /// A damaged or spliced line.
    Malformed,
}

/// Where a line starts: a line cut or spliced into another shows a missing or second start.
pub(super) const START: &[u8] = b"~sl";

pub(super) fn find_one(
    finder: &memchr::memmem::Finder<'_>,
    line: &[u8],
) -> Result<Option<usize>, ()> {
    let mut found = finder.find_iter(line);
    match (found.next(), found.next()) {
        (None, _) => Ok(None),
        (Some(at), None) => Ok(Some(at)),
        (Some(_), Some(_)) => Err(()),
    }
}

pub(super) fn find_token(line: &[u8], pad: usize) -> Found {
    if let Some(token) = whole_token(line, pad) {
        return Found::Token(token);
    }
    find_token_anywhere(line, pad)
}

/// The usual case, checked in place: a prefix without `~`, the start mark, `pad` bytes of
/// `x`, and a token of fixed widths that ends the line. Anything else is left to
/// [`find_token_anywhere`].
pub(super) fn whole_token(line: &[u8], pad: usize) -> Option<Token> {
    let start = line.len().checked_sub(START.len() + pad + TOKEN_BYTES)?;
    let (prefix, rest) = line.split_at(start);
    let (mark, rest) = rest.split_at(START.len());
    let (padding, tok) = rest.split_at(pad);
    // Branch-free checks: every line of a run goes through here.
    let bad_padding = padding.iter().fold(0u8, |acc, &b| acc | (b ^ b'x'));
    if mark != START
        || bad_padding != 0
        || memchr::memchr(b'~', prefix).is_some()
        || tok[..3] != *b"~sb"
        || [tok[11], tok[17], tok[28], tok[42]] != *b"...~"
    {
        return None;
    }
    let hex = |digits: &[u8]| {
        let mut bad = false;
        let n = digits.iter().fold(0u64, |n, &d| {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                _ => {
                    bad = true;
                    0
                }
            };
            n << 4 | u64::from(v)
        });
        (!bad).then_some(n)
    };
    Some(Token {
        run: u32::try_from(hex(&tok[3..11])?).ok()?,
        sender: u32::try_from(decimal::<5>(tok[12..17].try_into().ok()?)?).ok()?,
        seq: decimal::<10>(tok[18..28].try_into().ok()?)?,
        micros: decimal::<13>(tok[29..42].try_into().ok()?)?,
    })
}

/// Any line: exactly one start mark and one token, the token at the end.
pub(super) fn find_token_anywhere(line: &[u8], pad: usize) -> Found {
    static TOKEN: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"~sb"));
    static LINE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(START));
    let (Ok(start), Ok(at)) = (find_one(&LINE, line), find_one(&TOKEN, line)) else {
        return Found::Malformed;
    };
    let (start, at) = match (start, at) {
        (None, None) => return Found::Nothing,
        (Some(start), Some(at)) => (start, at),
        _ => return Found::Malformed,
    };
    let Some(body) = line[at + 3..].strip_suffix(b"~") else {
        return Found::Malformed;
    };
    let padding = start + START.len();
    if at != padding + pad || !line[padding..at].iter().all(|&b| b == b'x') {
        return Found::Malformed;
    }
    let Ok(body) = std::str::from_utf8(body) else {
        return Found::Malformed;
    };
    let mut parts = body.split('.');
    let mut next = || parts.next();
    let parsed = (|| {
        let run = u32::from_str_radix(next()?, 16).ok()?;
        let sender = next()?.parse().ok()?;
        let seq = next()?.parse().ok()?;
        let micros = next()?.parse().ok()?;
        Some(Token {
            run,
            sender,
            seq,
            micros,
        })
    })();
    match (parsed, parts.next()) {
        (Some(token), None) => Found::Token(token),
        _ => Found::Malformed,
    }
}

/// The lines of one run as a receiver expects them: everything from the start mark to the
/// sequence number is the same in every line of the run (mark, padding, `~sb`, the run in
/// hex, `.`), so a line is checked by one comparison with those bytes, three separators and
/// three numbers of fixed width. Any other line (another run, a notice, a cut or spliced
/// line, a prefix with a `~`) goes the slow way, [`find_token`], which decides it.
///
/// The lines of one sender's batch (one send time) relayed with one prefix differ only in
/// their sequence numbers, so the last line accepted is kept: a line equal to it but for
/// those ten digits is the same sender's, of the same run and time, checked by two
/// comparisons and one number.
#[derive(Debug, Clone)]
pub(super) struct LineShape {
    run: u32,
    pad: usize,
    /// `~sl`, the padding, `~sb`, the run, `.`.
    head: Vec<u8>,
    /// The last line [`this_run`](Self::this_run) accepted, and its token.
    last: Vec<u8>,
    last_token: Option<Token>,
}

/// Bytes of a token after the run: `SSSSS.QQQQQQQQQQ.MMMMMMMMMMMMM~`.
const TAIL_BYTES: usize = 31;

impl LineShape {
    pub(super) fn new(run: u32, pad: usize) -> Self {
        let mut head = Vec::with_capacity(START.len() + pad + 12);
        head.extend_from_slice(START);
        head.extend(std::iter::repeat_n(b'x', pad));
        head.extend_from_slice(format!("~sb{run:08x}.").as_bytes());
        Self {
            run,
            pad,
            head,
            last: Vec::new(),
            last_token: None,
        }
    }

    /// The run whose lines these are.
    pub(super) fn run(&self) -> u32 {
        self.run
    }

    /// What `line` holds, as [`find_token`] would say, the usual line of this run in place.
    pub(super) fn find(&mut self, line: &[u8]) -> Found {
        if let Some(token) = self.like_last(line) {
            return Found::Token(token);
        }
        match self.this_run(line) {
            Some(token) => {
                self.last.clear();
                self.last.extend_from_slice(line);
                self.last_token = Some(token);
                Found::Token(token)
            }
            None => find_token(line, self.pad),
        }
    }

    /// The first line of `lines` (whole lines, each ending in `\n`) without its end, the rest
    /// after it, and its token when the line is like the last one accepted (see
    /// [`like_last`](Self::like_last)): then its end is known without a search, since that
    /// line held no newline and digits are none.
    pub(super) fn first_line<'a>(&self, lines: &'a [u8]) -> (&'a [u8], &'a [u8], Option<Token>) {
        let len = self.last.len();
        if self.last_token.is_some()
            && lines.get(len) == Some(&b'\n')
            && let Some(token) = self.like_last(&lines[..len])
        {
            return (&lines[..len], &lines[len + 1..], Some(token));
        }
        let end = memchr::memchr(b'\n', lines).unwrap_or(lines.len());
        let line = &lines[..end];
        let rest = lines.get(end + 1..).unwrap_or_default();
        (line.strip_suffix(b"\r").unwrap_or(line), rest, None)
    }

    /// A line equal to the last one accepted but for the digits of its sequence number: what
    /// [`this_run`](Self::this_run) would say of it, since everything it checks but those
    /// digits is the same.
    fn like_last(&self, line: &[u8]) -> Option<Token> {
        let last = self.last_token?;
        if line.len() != self.last.len() {
            return None;
        }
        let seq_at = line.len() - TAIL_BYTES + 6;
        let (before, rest) = line.split_at(seq_at);
        let (seq, after) = rest.split_at(10);
        if before != &self.last[..seq_at] || after != &self.last[seq_at + 10..] {
            return None;
        }
        Some(Token {
            seq: decimal::<10>(seq.try_into().ok()?)?,
            ..last
        })
    }

    /// A line of this run with a prefix free of `~` (a spliced line shows a second mark
    /// there), intact padding and a well-formed token that ends the line.
    fn this_run(&self, line: &[u8]) -> Option<Token> {
        let tail_at = line.len().checked_sub(TAIL_BYTES)?;
        let head_at = tail_at.checked_sub(self.head.len())?;
        let (prefix, rest) = line.split_at(head_at);
        let (head, tail) = rest.split_at(self.head.len());
        // A prefix is a few bytes (`<guest-12> `): a plain pass over it, no search.
        let has_tilde = prefix.iter().fold(false, |seen, &b| seen | (b == b'~'));
        if head != self.head.as_slice() || [tail[5], tail[16], tail[30]] != *b"..~" || has_tilde {
            return None;
        }
        Some(Token {
            run: self.run,
            sender: u32::try_from(decimal::<5>(tail[..5].try_into().ok()?)?).ok()?,
            seq: decimal::<10>(tail[6..16].try_into().ok()?)?,
            micros: decimal::<13>(tail[17..30].try_into().ok()?)?,
        })
    }
}

/// The number written in `N` (at most 16) ASCII digits, eight at a time; `None` when any
/// byte is not a digit. The width is fixed, so the digits move into place without a loop
/// or a call.
#[inline]
fn decimal<const N: usize>(digits: &[u8; N]) -> Option<u64> {
    const { assert!(N <= 16) };
    let mut all = [b'0'; 16];
    all[16 - N..].copy_from_slice(digits);
    let (high, low) = all.split_at(8);
    let low = eight_digits(low.try_into().ok()?)?;
    if N <= 8 {
        return Some(low);
    }
    Some(eight_digits(high.try_into().ok()?)? * 100_000_000 + low)
}

/// Eight ASCII digits, most significant first, in a few word operations instead of a
/// multiply per digit: pairs, then quads, then the eight (all lanes stay below their width).
#[inline]
fn eight_digits(chunk: [u8; 8]) -> Option<u64> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    const HIGH_NIBBLES: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    let word = u64::from_le_bytes(chunk);
    // Every byte 0x30..=0x39: its high nibble is 3, and still 3 with 6 added.
    let is_digits = word & HIGH_NIBBLES == ZEROS
        && word.wrapping_add(0x0606_0606_0606_0606) & HIGH_NIBBLES == ZEROS;
    let d = word.wrapping_sub(ZEROS);
    let d = (d.wrapping_mul(10).wrapping_add(d >> 8)) & 0x00ff_00ff_00ff_00ff;
    let d = (d.wrapping_mul(100).wrapping_add(d >> 16)) & 0x0000_ffff_0000_ffff;
    let d = (d.wrapping_mul(10_000).wrapping_add(d >> 32)) & 0xffff_ffff;
    is_digits.then_some(d)
}

/// Bytes of a token: its fields have fixed widths, so the padding of every line is the same.
const TOKEN_BYTES: usize = 43;
/// The shortest line: start mark and token, no padding.
pub const MIN_LINE_BYTES: usize = TOKEN_BYTES + START.len();

#[cfg(test)]
mod tests {
    use super::*;

    fn line(size: usize, token: Token) -> Vec<u8> {
        let mut out = Vec::new();
        write_line(&mut out, size, token);
        out.pop();
        out
    }

    const T: Token = Token {
        run: 0xabc,
        sender: 3,
        seq: 42,
        micros: 123_456,
    };

    #[test]
    fn tokens_are_found_behind_any_prefix() {
        let l = line(64, T);
        assert_eq!(l.len(), 64);
        let pad = 64 - MIN_LINE_BYTES;
        assert_eq!(
            line(
                0,
                Token {
                    seq: 9_999_999_999,
                    ..T
                }
            )
            .len(),
            MIN_LINE_BYTES
        );
        assert_eq!(find_token(&l, pad), Found::Token(T));
        let mut prefixed = b"<user5> ".to_vec();
        prefixed.extend_from_slice(&l);
        assert_eq!(find_token(&prefixed, pad), Found::Token(T));
        assert_eq!(
            whole_token(&prefixed, pad),
            Some(T),
            "the usual case is the quick one"
        );
        assert_eq!(find_token(b"* bob joined #lobby", pad), Found::Nothing);
        let mut tilde = b"<a~b> ".to_vec();
        tilde.extend_from_slice(&l);
        assert_eq!(whole_token(&tilde, pad), None);
        assert_eq!(
            find_token(&tilde, pad),
            Found::Token(T),
            "found the slow way"
        );
    }

    #[test]
    fn the_shape_of_a_run_says_what_find_token_says_of_any_damage() {
        let pad = 64 - MIN_LINE_BYTES;
        let mut shape = LineShape::new(T.run, pad);
        let mut l = b"<guest-17> ".to_vec();
        l.extend_from_slice(&line(64, T));
        assert_eq!(shape.find(&l), Found::Token(T));
        assert_eq!(
            shape.this_run(&l),
            Some(T),
            "the usual line is the quick one"
        );
        // Every byte of the line replaced by every kind of byte: the quick checks (in place,
        // and against the last line accepted) accept only what the whole check accepts,
        // with the same token.
        for at in 0..l.len() {
            for b in [
                b'x', b'~', b'0', b'9', b'a', b'f', b'.', b'/', b':', b' ', 0xff,
            ] {
                let mut damaged = l.clone();
                damaged[at] = b;
                let whole = find_token(&damaged, pad);
                let what = format!("byte {at} as {b:#x}: {}", String::from_utf8_lossy(&damaged));
                let mut fresh = LineShape::new(T.run, pad);
                assert_eq!(fresh.find(&damaged), whole, "in place, {what}");
                assert_eq!(shape.find(&l), Found::Token(T));
                assert_eq!(shape.find(&damaged), whole, "like the last, {what}");
            }
        }
        for cut in 0..l.len() {
            assert_eq!(shape.find(&l[cut..]), find_token(&l[cut..], pad), "{cut}");
            assert_eq!(shape.find(&l[..cut]), find_token(&l[..cut], pad), "{cut}");
        }
        let other_run = line(64, Token { run: 0xabd, ..T });
        assert_eq!(shape.this_run(&other_run), None);
        assert_eq!(
            shape.find(&other_run),
            Found::Token(Token { run: 0xabd, ..T }),
            "another run's line is found the slow way"
        );
        assert_eq!(shape.find(b"* bob joined #lobby"), Found::Nothing);
    }

    #[test]
    fn lines_of_one_batch_are_read_like_the_last_one() {
        let pad = 64 - MIN_LINE_BYTES;
        let mut shape = LineShape::new(T.run, pad);
        let relayed = |prefix: &str, token: Token| {
            let mut l = prefix.as_bytes().to_vec();
            l.extend_from_slice(&line(64, token));
            l
        };
        assert_eq!(
            shape.like_last(&relayed("<guest-3> ", T)),
            None,
            "no last line yet"
        );
        assert_eq!(shape.find(&relayed("<guest-3> ", T)), Found::Token(T));
        let next = Token { seq: 43, ..T };
        assert_eq!(shape.like_last(&relayed("<guest-3> ", next)), Some(next));
        assert_eq!(shape.find(&relayed("<guest-3> ", next)), Found::Token(next));
        // Another sender, time or prefix is read in place, and becomes the last line.
        for other in [
            relayed("<guest-3> ", Token { sender: 4, ..T }),
            relayed(
                "<guest-3> ",
                Token {
                    micros: 123_457,
                    ..T
                },
            ),
            relayed("<guest-4> ", T),
            relayed("<guest-33> ", T),
        ] {
            assert_eq!(shape.like_last(&other), None);
            assert!(matches!(shape.find(&other), Found::Token(_)));
            assert_eq!(shape.last, other);
        }
    }

    #[test]
    fn lines_are_split_as_a_newline_search_splits_them() {
        let pad = 64 - MIN_LINE_BYTES;
        let mut block = Vec::new();
        for (prefix, seq) in [("<guest-3> ", 1), ("<guest-3> ", 2), ("<guest-13> ", 3)] {
            block.extend_from_slice(prefix.as_bytes());
            write_line(&mut block, 64, Token { seq, ..T });
        }
        block.extend_from_slice(b"* bob joined #lobby\r\n\n");
        let mut second = block.clone();
        // A newline inside the second line, where the last line's length would not see it.
        second[80] = b'\n';
        for bytes in [block, second] {
            let mut shape = LineShape::new(T.run, pad);
            let mut rest = &bytes[..];
            let mut split = Vec::new();
            while !rest.is_empty() {
                let (line, next, quick) = shape.first_line(rest);
                let found = shape.find(line);
                if let Some(token) = quick {
                    assert_eq!(found, Found::Token(token));
                }
                split.push(line.to_vec());
                rest = next;
            }
            let searched: Vec<&[u8]> = bytes[..bytes.len() - 1]
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .collect();
            assert_eq!(split, searched);
        }
    }

    #[test]
    fn tokens_are_written_at_their_widths_and_wider_when_needed() {
        let written = |token: Token| line(0, token);
        assert_eq!(
            written(T),
            b"~sl~sb00000abc.00003.0000000042.0000000123456~"
        );
        let widest = Token {
            run: u32::MAX,
            sender: 99_999,
            seq: 9_999_999_999,
            micros: 9_999_999_999_999,
        };
        assert_eq!(
            written(widest),
            b"~sl~sbffffffff.99999.9999999999.9999999999999~"
        );
        let wider = Token {
            sender: 100_000,
            seq: 10_000_000_000,
            ..widest
        };
        assert_eq!(
            written(wider),
            b"~sl~sbffffffff.100000.10000000000.9999999999999~"
        );
    }

    #[test]
    fn numbers_of_every_width_read_back() {
        for n in [
            0u64,
            1,
            9,
            10,
            99_999,
            12_345_678,
            100_000_000,
            9_999_999_999_999,
        ] {
            let text = format!("{n:016}");
            let digits = |width: usize| &text.as_bytes()[16 - width..];
            assert_eq!(decimal::<16>(digits(16).try_into().unwrap()), Some(n));
            if n < 10_000_000_000_000 {
                assert_eq!(decimal::<13>(digits(13).try_into().unwrap()), Some(n));
            }
            if n < 10_000_000_000 {
                assert_eq!(decimal::<10>(digits(10).try_into().unwrap()), Some(n));
            }
            if n < 100_000 {
                assert_eq!(decimal::<5>(digits(5).try_into().unwrap()), Some(n));
            }
        }
        assert_eq!(decimal(b"12a45"), None);
        assert_eq!(decimal(b" 1234"), None);
        assert_eq!(decimal(b"1234567/"), None);
        assert_eq!(decimal(b"/000000000"), None);
        assert_eq!(decimal(b"00000:0000"), None);
        assert_eq!(decimal(b"0000000000000\xff"), None);
    }

    #[test]
    fn spliced_or_cut_lines_are_malformed() {
        let l = line(64, T);
        let pad = 64 - MIN_LINE_BYTES;
        assert_eq!(find_token(&l, pad), Found::Token(T));
        let mut spliced = l[..10].to_vec();
        spliced.extend_from_slice(b"<user6> ");
        spliced.extend_from_slice(&l);
        assert_eq!(find_token(&spliced, pad), Found::Malformed);
        assert_eq!(find_token(&l[..l.len() - 1], pad), Found::Malformed);
        let mut doubled = l.clone();
        doubled.extend_from_slice(&l);
        assert_eq!(find_token(&doubled, pad), Found::Malformed);
        assert_eq!(find_token(&l[10..], pad), Found::Malformed, "start cut off");
    }
}
