//! Request heads checked in the connection's byte stream, before hyper parses them, for what
//! hyper hides from a service or answers only with a reset: a request with both
//! `Transfer-Encoding` and `Content-Length` (hyper drops one; RFC 9112 §6.1 allows a 400 and
//! asks for a close), a request target longer than the limit however long (414, even past
//! hyper's buffer), a head larger than the limit (431). Such a head never reaches hyper:
//! the requests before it are answered, hyper sees the end of the stream, and the
//! connection's owner then sends the refusal ([`Http1HeadCheck::into_parts`]) and closes with
//! [`linger`], so that the answer is read rather than destroyed by a reset.
//!
//! Parsing is httparse's, as in hyper; bodies are stepped over by their framing (length or
//! chunks) so that every head of a pipelined connection is seen. Anything httparse rejects
//! is left to hyper, which answers 400 and closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest method accepted with a target of the longest length (slack in the request line).
const REQUEST_LINE_SLACK: usize = 64;
/// Header lines in one head, as hyper's default.
const MAX_HEADERS: usize = 100;

/// Lingering close: how long, how quietly and how much of the client's bytes are read and
/// discarded after the last answer (nginx: `lingering_time`, `lingering_timeout`).
const LINGER_TIME: Duration = Duration::from_secs(10);
const LINGER_QUIET: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 256 << 20;

/// The sizes a request head must keep to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Http1HeadLimits {
    /// Longest request target; longer gets 414.
    pub(crate) max_target_bytes: usize,
    /// Largest head (request line and header fields); larger gets 431.
    pub(crate) max_head_bytes: usize,
}

impl Default for Http1HeadLimits {
    fn default() -> Self {
        Self {
            max_target_bytes: 8 * 1024,
            max_head_bytes: 16 * 1024,
        }
    }
}

/// Why a head was refused; [`Refusal::answer`] is what the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 400: both `Transfer-Encoding` and `Content-Length`.
    Smuggling,
    /// 414.
    TargetTooLong,
    /// 431.
    HeadTooLarge,
}

impl Refusal {
    /// The status of the answer (HTTP/2 gives the same for the same request).
    pub(crate) fn status(self) -> http::StatusCode {
        match self {
            Self::Smuggling => http::StatusCode::BAD_REQUEST,
            Self::TargetTooLong => http::StatusCode::URI_TOO_LONG,
            Self::HeadTooLarge => http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// The text of the answer's body.
    pub(crate) fn text(self) -> &'static str {
        match self {
            Self::Smuggling => "bad request: both Transfer-Encoding and Content-Length\n",
            Self::TargetTooLong => "request target too long\n",
            Self::HeadTooLarge => "request header fields too large\n",
        }
    }

    /// The whole answer, which closes the connection.
    pub(crate) fn answer(self) -> Bytes {
        let code = self.status();
        let status = format!(
            "{} {}",
            code.as_str(),
            code.canonical_reason().unwrap_or_default()
        );
        let text = self.text();
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\ndate: {date}\r\n\r\n{text}",
            text.len()
        )
        .into()
    }
}

/// Where the stream stands in the requests it carries.
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// At the start of a request head.
    Head,
    /// In a body of this many more bytes.
    Length(u64),
    /// In a chunked body.
    Chunk(Chunk),
    /// Past something hyper will refuse (it answers 400 and closes): nothing more is checked.
    Unchecked,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size,
    Data(u64),
    /// The line end after a chunk's data.
    DataEnd,
    Trailers,
}

/// `S` whose request heads are checked before they are read; see the module docs.
#[derive(Debug)]
pub(crate) struct Http1HeadCheck<S> {
    inner: S,
    limits: Http1HeadLimits,
    framing: Framing,
    /// Bytes read whose meaning is not known yet (an unfinished head or chunk line): they
    /// are passed on once complete and checked.
    held: BytesMut,
    /// Checked bytes to pass on before reading more.
    checked: Bytes,
    refusal: Option<Refusal>,
    ended: bool,
}

impl<S> Http1HeadCheck<S> {
    pub(crate) fn new(inner: S, limits: Http1HeadLimits) -> Self {
        Self {
            inner,
            limits,
            framing: Framing::Head,
            held: BytesMut::new(),
            checked: Bytes::new(),
            refusal: None,
            ended: false,
        }
    }

    /// The refusal to send, if a head was refused; the stream; and bytes read from it that
    /// were not passed on (the start of a head not yet complete), to go first next time.
    pub(crate) fn into_parts(self) -> (Option<Refusal>, S, Bytes) {
        let unread = if self.refusal.is_some() {
            Bytes::new()
        } else {
            match (self.checked.is_empty(), self.held.is_empty()) {
                (_, true) => self.checked,
                (true, false) => self.held.freeze(),
                (false, false) => [&self.checked[..], &self.held[..]].concat().into(),
            }
        };
        (self.refusal, self.inner, unread)
    }

    /// Steps over `data`, which starts where `framing` says; returns how many of its bytes
    /// may be passed on. The rest is an unfinished element to hold, or refused.
    fn scan(&mut self, data: &[u8]) -> usize {
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            match self.framing {
                Framing::Unchecked => return data.len(),
                Framing::Length(left) | Framing::Chunk(Chunk::Data(left)) => {
                    let step = left.min(rest.len() as u64);
                    at += step as usize;
                    self.framing = match (self.framing, left - step) {
                        (Framing::Length(_), 0) => Framing::Head,
                        (Framing::Length(_), left) => Framing::Length(left),
                        (_, 0) => Framing::Chunk(Chunk::DataEnd),
                        (_, left) => Framing::Chunk(Chunk::Data(left)),
                    };
                }
                Framing::Chunk(Chunk::DataEnd) => match rest.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        at += end + 1;
                        self.framing = Framing::Chunk(Chunk::Size);
                    }
                    None if rest.len() > 2 => self.framing = Framing::Unchecked,
                    None => return at,
                },
                Framing::Chunk(Chunk::Size) => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        at += used;
                        self.framing = Framing::Chunk(if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        });
                    }
                    Ok(httparse::Status::Partial) if rest.len() <= self.limits.max_head_bytes => {
                        return at;
                    }
                    _ => self.framing = Framing::Unchecked,
                },
                Framing::Chunk(Chunk::Trailers) => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(rest, &mut headers) {
                        Ok(httparse::Status::Complete((used, _))) => {
                            at += used;
                            self.framing = Framing::Head;
                        }
                        Ok(httparse::Status::Partial)
                            if rest.len() <= self.limits.max_head_bytes =>
                        {
                            return at;
                        }
                        _ => self.framing = Framing::Unchecked,
                    }
                }
                Framing::Head => match self.head(rest) {
                    Ok(Some(used)) => at += used,
                    Ok(None) => return at,
                    Err(refusal) => {
                        self.refusal = Some(refusal);
                        return at;
                    }
                },
            }
        }
        at
    }

    /// Checks the head at the start of `data`: its length when complete (and the framing
    /// of its body set), `None` while incomplete and within the limits.
    fn head(&mut self, data: &[u8]) -> Result<Option<usize>, Refusal> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(data) {
            Ok(httparse::Status::Complete(len)) => {
                if req.path.map_or(0, str::len) > self.limits.max_target_bytes {
                    return Err(Refusal::TargetTooLong);
                }
                if len > self.limits.max_head_bytes {
                    return Err(Refusal::HeadTooLarge);
                }
                let field = |name: &'static str| {
                    req.headers
                        .iter()
                        .filter(move |h| h.name.eq_ignore_ascii_case(name))
                };
                let length = field("content-length").next();
                let codings = field("transfer-encoding").next_back();
                self.framing = match (codings, length) {
                    (Some(_), Some(_)) => return Err(Refusal::Smuggling),
                    (Some(codings), None) => {
                        let last = std::str::from_utf8(codings.value)
                            .ok()
                            .and_then(|v| v.rsplit(',').next())
                            .map(str::trim);
                        if req.version == Some(1)
                            && last.is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
                        {
                            Framing::Chunk(Chunk::Size)
                        } else {
                            Framing::Unchecked
                        }
                    }
                    (None, Some(length)) => std::str::from_utf8(length.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .map_or(Framing::Unchecked, Framing::Length),
                    (None, None) => Framing::Head,
                };
                if matches!(self.framing, Framing::Length(0)) {
                    self.framing = Framing::Head;
                }
                Ok(Some(len))
            }
            Ok(httparse::Status::Partial) => {
                // Decided before the head is whole: a target of any length gets its 414.
                let line_end = data.iter().position(|&b| b == b'\n');
                let line = &data[..line_end.unwrap_or(data.len())];
                let target = line.split(|&b| b == b' ').nth(1).map_or(0, <[u8]>::len);
                let line_limit = self.limits.max_target_bytes + REQUEST_LINE_SLACK;
                if target > self.limits.max_target_bytes
                    || (line_end.is_none() && line.len() > line_limit)
                {
                    return Err(Refusal::TargetTooLong);
                }
                if data.len() > self.limits.max_head_bytes {
                    return Err(Refusal::HeadTooLarge);
                }
                Ok(None)
            }
            Err(_) => {
                self.framing = Framing::Unchecked;
                Ok(Some(data.len()))
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Http1HeadCheck<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.checked.is_empty() {
                let n = buf.remaining().min(this.checked.len());
                buf.put_slice(&this.checked.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.refusal.is_some() || this.ended || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.held.is_empty() {
                // Most reads: straight into the caller's buffer, checked in place.
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    this.ended = true;
                    return Poll::Ready(Ok(()));
                }
                let pass = this.scan(new);
                if this.refusal.is_none() {
                    this.held.extend_from_slice(&new[pass..]);
                }
                buf.set_filled(before + pass);
                if pass > 0 {
                    return Poll::Ready(Ok(()));
                }
            } else {
                let mut more = [0u8; 4096];
                let mut read = ReadBuf::new(&mut more);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                if read.filled().is_empty() {
                    // The client ended mid-head: hyper sees what there was, and the end.
                    this.ended = true;
                    this.checked = this.held.split().freeze();
                    continue;
                }
                this.held.extend_from_slice(read.filled());
                let held = std::mem::take(&mut this.held);
                let pass = this.scan(&held);
                let mut held = held;
                this.checked = held.split_to(pass).freeze();
                if this.refusal.is_none() {
                    this.held = held;
                }
            }
        }
    }
}

crate::net::forward_async_write!(Http1HeadCheck);

/// Ends a connection whose last answer has been written: sends `refusal` first if there is
/// one, then closes our side and reads and discards what the client still sends (bounded in
/// time and bytes, and cut short by `stop`) before the socket closes. Closing with unread
/// bytes would send a reset, which can destroy the answer before the client reads it (an
/// upload refused with 413 or 401 while its body is still coming).
pub(crate) async fn linger<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    refusal: Option<Refusal>,
    stop: &CancellationToken,
) {
    let deadline = Instant::now() + LINGER_TIME;
    let closed = async {
        if let Some(refusal) = refusal {
            stream.write_all(&refusal.answer()).await?;
        }
        stream.shutdown().await
    };
    if !matches!(tokio::time::timeout(LINGER_QUIET, closed).await, Ok(Ok(()))) {
        return;
    }
    let mut discarded = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    while discarded < LINGER_BYTES {
        let quiet = Instant::now() + LINGER_QUIET;
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline.min(quiet), stream.read(&mut buf)) => read,
            _ = stop.cancelled() => return,
        };
        match read {
            Ok(Ok(n)) if n > 0 => discarded += n as u64,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What passes through `Http1HeadCheck` when `input` arrives in pieces of `piece` bytes.
    async fn passed(
        input: &[u8],
        piece: usize,
        limits: Http1HeadLimits,
    ) -> (Vec<u8>, Option<Refusal>) {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        for chunk in input.chunks(piece) {
            client.write_all(chunk).await.unwrap();
        }
        drop(client);
        let mut check = Http1HeadCheck::new(server, limits);
        let mut out = Vec::new();
        check.read_to_end(&mut out).await.unwrap();
        (out, check.into_parts().0)
    }

    #[tokio::test]
    async fn pipelined_requests_with_bodies_pass_whole_in_any_pieces() {
        let input: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
            POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
            3;ext=1\r\nabc\r\n0\r\nTrailer: t\r\n\r\n\
            GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
        for piece in [1, 2, 7, 64, input.len()] {
            let (out, refusal) = passed(input, piece, Http1HeadLimits::default()).await;
            assert_eq!(out, input, "in pieces of {piece}");
            assert_eq!(refusal, None);
        }
    }

    #[tokio::test]
    async fn a_bad_head_stops_the_stream_after_the_requests_before_it() {
        let first: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let smuggled = [
            first,
            b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ]
        .concat();
        for piece in [1, 5, smuggled.len()] {
            let (out, refusal) = passed(&smuggled, piece, Http1HeadLimits::default()).await;
            assert_eq!((out.as_slice(), refusal), (first, Some(Refusal::Smuggling)));
        }
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000));
        let (out, refusal) = passed(long.as_bytes(), 1000, Http1HeadLimits::default()).await;
        assert_eq!((out.len(), refusal), (0, Some(Refusal::TargetTooLong)));
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "b".repeat(20_000)
        );
        let (out, refusal) = passed(big.as_bytes(), 1000, Http1HeadLimits::default()).await;
        assert_eq!((out.len(), refusal), (0, Some(Refusal::HeadTooLarge)));
    }

    #[tokio::test]
    async fn what_httparse_rejects_is_left_to_hyper() {
        let input: &[u8] = b"GET / HTTP/1.1\r\nHost : x\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let (out, refusal) = passed(input, 3, Http1HeadLimits::default()).await;
        assert_eq!((out.as_slice(), refusal), (input, None));
    }
}
