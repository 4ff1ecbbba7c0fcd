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
    use std::io::Write as _;
    let mut tok = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut tok[..]);
    let _ = write!(
        cursor,
        "~sb{:08x}.{:05}.{:010}.{:013}~",
        token.run, token.sender, token.seq, token.micros
    );
    let len = cursor.position() as usize;
    out.extend_from_slice(START);
    out.extend(std::iter::repeat_n(
        b'x',
        size.saturating_sub(len + START.len()),
    ));
    out.extend_from_slice(&tok[..len]);
    out.push(b'\n');
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
    let dec = |digits: &[u8]| {
        let mut bad = 0u8;
        let n = digits.iter().fold(0u64, |n, &d| {
            let v = d.wrapping_sub(b'0');
            bad |= u8::from(v > 9);
            n * 10 + u64::from(v)
        });
        (bad == 0).then_some(n)
    };
    Some(Token {
        run: u32::try_from(hex(&tok[3..11])?).ok()?,
        sender: u32::try_from(dec(&tok[12..17])?).ok()?,
        seq: dec(&tok[18..28])?,
        micros: dec(&tok[29..42])?,
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
