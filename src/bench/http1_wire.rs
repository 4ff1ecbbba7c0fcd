//! The load generator's HTTP/1.1 wire: the one request of a run made into bytes once,
//! responses taken apart in place in the read buffer, and the connection that carries them
//! ([`Http1Connection`]). Connecting and scheduling stay in `http.rs`.
//!
//! A load generator sends the same request all run long and wants only each answer's
//! status, body length and whether the connection stays open. Through hyper's client every
//! request was a `Request` with its own header map, a message to the connection's task and
//! one back, and every response a header map and a body channel: about two thirds of the
//! open loop's CPU per request (bench/results/before-after.md). Here a request is one
//! `write` of bytes made before the run, and a response is parsed where it was read: the
//! head by `httparse` (as hyper does), the body counted and skipped, chunk sizes read by
//! `httparse::parse_chunk_size`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::BoxStream;

/// The most headers a response may have (hyper's default is 100).
const MAX_HEADERS: usize = 100;
/// The longest response head, and the longest chunk-size or trailer line.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Why a response could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum WireError {
    /// The head is not HTTP/1.x.
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    /// The head is longer than [`MAX_HEAD_BYTES`].
    #[error("response head over {MAX_HEAD_BYTES} bytes")]
    HeadTooLong,
    /// `Content-Length` is not a number, or two of them differ.
    #[error("bad content-length")]
    ContentLength,
    /// A chunk of a chunked body is malformed.
    #[error("malformed chunked body")]
    Chunk,
    /// The connection closed before the response was whole.
    #[error("connection closed before the response was whole")]
    Cut,
}

/// The bytes of one request, written as they are for every request of a run.
///
/// A `Host` among `headers` replaces `host`. `Content-Length` is added for a body, and for
/// an empty one with POST, PUT or PATCH (as curl does), unless `headers` frame the body
/// themselves.
pub(crate) fn request_bytes(
    method: &Method,
    path_and_query: &str,
    host: &HeaderValue,
    headers: &[(HeaderName, HeaderValue)],
    body: &[u8],
) -> Bytes {
    let mut out = BytesMut::with_capacity(128 + body.len());
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(path_and_query.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    if !headers.iter().any(|(name, _)| name == http::header::HOST) {
        out.put_slice(b"host: ");
        out.put_slice(host.as_bytes());
        out.put_slice(b"\r\n");
    }
    let mut is_framed = false;
    for (name, value) in headers {
        is_framed |=
            name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING;
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    let wants_length =
        !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if wants_length && !is_framed {
        out.put_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out.freeze()
}

/// What a whole response came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    /// Body bytes (after chunked framing).
    pub(crate) body_bytes: u64,
    /// The connection cannot carry another request (`Connection: close`, HTTP/1.0 without
    /// keep-alive, a body that ends at the close).
    pub(crate) closes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// `left` body bytes to come.
    Length {
        left: u64,
    },
    Chunked(Chunk),
    /// The body ends when the connection does.
    ToClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// A chunk-size line is next.
    Size,
    /// `left` bytes of the chunk's data, then its CRLF.
    Data { left: u64 },
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines up to an empty one.
    Trailers,
}

/// Reads the responses of one connection, one after another, out of its read buffer.
#[derive(Debug)]
pub(crate) struct ResponseReader {
    /// Answers to HEAD have no body whatever their head says.
    is_head_request: bool,
    state: State,
    status: StatusCode,
    body_bytes: u64,
    closes: bool,
}

impl ResponseReader {
    pub(crate) fn new(method: &Method) -> Self {
        Self {
            is_head_request: *method == Method::HEAD,
            state: State::Head,
            status: StatusCode::OK,
            body_bytes: 0,
            closes: false,
        }
    }

    /// Takes what it can of the response in progress from the front of `buf`: the whole
    /// response when it is there (the rest of `buf` is left for the next), `Ok(None)` when
    /// more bytes are needed.
    ///
    /// # Errors
    ///
    /// [`WireError`] when the bytes are not an HTTP/1 response.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Response>, WireError> {
        loop {
            match self.state {
                State::Head => {
                    if !self.decode_head(buf)? {
                        return Ok(None);
                    }
                }
                State::Length { left } => {
                    let taken = self.skip_body(buf, left);
                    if taken < left {
                        self.state = State::Length { left: left - taken };
                        return Ok(None);
                    }
                    return Ok(Some(self.finish()));
                }
                State::ToClose => {
                    self.skip_body(buf, u64::MAX);
                    return Ok(None);
                }
                State::Chunked(chunk) => {
                    if !self.decode_chunked(buf, chunk)? {
                        return Ok(None);
                    }
                    if self.state == State::Head {
                        return Ok(Some(self.finish()));
                    }
                }
            }
        }
    }

    /// The connection closed with `buf` left over: the response that the close completes,
    /// or `Ok(None)` when none was begun.
    ///
    /// # Errors
    ///
    /// [`WireError::Cut`] when a response was cut short.
    pub(crate) fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Response>, WireError> {
        if let Some(response) = self.decode(buf)? {
            return Ok(Some(response));
        }
        match self.state {
            State::ToClose => {
                self.closes = true;
                Ok(Some(self.finish()))
            }
            State::Head if buf.is_empty() => Ok(None),
            _ => Err(WireError::Cut),
        }
    }

    fn finish(&mut self) -> Response {
        let response = Response {
            status: self.status,
            body_bytes: self.body_bytes,
            closes: self.closes,
        };
        self.state = State::Head;
        self.body_bytes = 0;
        self.closes = false;
        response
    }

    /// Counts and drops up to `most` body bytes; returns how many.
    fn skip_body(&mut self, buf: &mut BytesMut, most: u64) -> u64 {
        let taken = most.min(buf.len() as u64);
        buf.advance(taken as usize);
        self.body_bytes += taken;
        taken
    }

    /// Parses a head off `buf` and picks how its body is framed; false when it is not whole.
    fn decode_head(&mut self, buf: &mut BytesMut) -> Result<bool, WireError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Response::new(&mut headers);
        let len = match head.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Err(WireError::HeadTooLong);
            }
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(err) => return Err(WireError::Head(err)),
        };
        let code = head.code.unwrap_or(0);
        let status =
            StatusCode::from_u16(code).map_err(|_| WireError::Head(httparse::Error::Status))?;
        let mut content_length = None;
        let mut is_chunked = false;
        let mut has_transfer_encoding = false;
        let mut says_close = false;
        let mut says_keep_alive = false;
        for header in head.headers.iter() {
            let name = header.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or(WireError::ContentLength)?;
                if content_length.is_some_and(|m| m != n) {
                    return Err(WireError::ContentLength);
                }
                content_length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                has_transfer_encoding = true;
                // Chunked only when it is the last coding (RFC 9112 §6.3).
                is_chunked = last_token(header.value).eq_ignore_ascii_case(b"chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                for token in header.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    says_close |= token.eq_ignore_ascii_case(b"close");
                    says_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        let is_http10 = head.version == Some(0);
        buf.advance(len);
        // 1xx (but 101) are interim: the real answer follows.
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(true);
        }
        self.status = status;
        self.body_bytes = 0;
        self.closes = says_close || (is_http10 && !says_keep_alive);
        let has_no_body = self.is_head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        self.state = if has_no_body {
            // A 101 hands the connection to another protocol.
            self.closes |= status == StatusCode::SWITCHING_PROTOCOLS;
            State::Length { left: 0 }
        } else if is_chunked {
            State::Chunked(Chunk::Size)
        } else if has_transfer_encoding {
            // Another coding last: the body ends at the close.
            State::ToClose
        } else if let Some(n) = content_length {
            State::Length { left: n }
        } else {
            State::ToClose
        };
        if self.state == State::ToClose {
            self.closes = true;
        }
        Ok(true)
    }

    /// Goes through a chunked body from `chunk`; false when more bytes are needed. At the
    /// end of the body the state is back at [`State::Head`].
    fn decode_chunked(&mut self, buf: &mut BytesMut, mut chunk: Chunk) -> Result<bool, WireError> {
        loop {
            self.state = State::Chunked(chunk);
            chunk = match chunk {
                Chunk::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((len, 0))) => {
                        buf.advance(len);
                        Chunk::Trailers
                    }
                    Ok(httparse::Status::Complete((len, size))) => {
                        buf.advance(len);
                        Chunk::Data { left: size }
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                        return Err(WireError::Chunk);
                    }
                    Ok(httparse::Status::Partial) => return Ok(false),
                    Err(_) => return Err(WireError::Chunk),
                },
                Chunk::Data { left } => {
                    let taken = self.skip_body(buf, left);
                    if taken < left {
                        self.state = State::Chunked(Chunk::Data { left: left - taken });
                        return Ok(false);
                    }
                    Chunk::DataEnd
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(false);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunk);
                    }
                    buf.advance(2);
                    Chunk::Size
                }
                Chunk::Trailers => {
                    let Some(end) = memchr::memchr(b'\n', buf) else {
                        if buf.len() > MAX_HEAD_BYTES {
                            return Err(WireError::Chunk);
                        }
                        return Ok(false);
                    };
                    let is_last = buf[..end].trim_ascii().is_empty();
                    buf.advance(end + 1);
                    if is_last {
                        self.state = State::Head;
                        return Ok(true);
                    }
                    Chunk::Trailers
                }
            };
        }
    }
}

fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

/// The read buffer of an HTTP/1 connection: a whole small answer, or a large body in few
/// reads.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// One HTTP/1.1 connection of the load, owned by its lane's task: each request goes out in
/// one write of the bytes made before the run, and each answer is parsed where it is read
/// (no task, channel or header map per request).
pub(super) struct Http1Connection {
    stream: BoxStream,
    buf: BytesMut,
    reader: ResponseReader,
    /// A write failed because the server stopped reading (it answered early, or closed):
    /// its answer is still read, but the connection carries no other request.
    pub(super) is_cut: bool,
}

impl Http1Connection {
    pub(super) fn new(stream: BoxStream, method: &Method) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(READ_BUFFER_BYTES),
            reader: ResponseReader::new(method),
            is_cut: false,
        }
    }

    /// Sends `request` and reads its whole answer.
    pub(super) async fn exchange(&mut self, request: &[u8]) -> std::io::Result<Response> {
        let written = async {
            self.stream.write_all(request).await?;
            self.stream.flush().await
        };
        match written.await {
            Ok(()) => {}
            // The server may have answered before it read the request (then closed or
            // reset): that answer is what counts.
            Err(err) if peer_stopped_reading(&err) => self.is_cut = true,
            Err(err) => return Err(err),
        }
        let mut received = 0;
        loop {
            if let Some(response) = self
                .reader
                .decode(&mut self.buf)
                .map_err(std::io::Error::other)?
            {
                return Ok(response);
            }
            if self.buf.capacity() - self.buf.len() < READ_BUFFER_BYTES / 16 {
                self.buf.reserve(READ_BUFFER_BYTES);
            }
            let closed = match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => true,
                Ok(n) => {
                    received += n;
                    false
                }
                // Once the answer has begun, a reset ends it like a close (a server that
                // closes without reading the request makes the kernel send one).
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset && received > 0 => {
                    true
                }
                Err(err) => return Err(err),
            };
            if closed {
                return self
                    .reader
                    .decode_eof(&mut self.buf)
                    .map_err(std::io::Error::other)?
                    .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
        }
    }
}

fn peer_stopped_reading(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(reader: &mut ResponseReader, wire: &[u8], step: usize) -> Vec<Response> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(step) {
            buf.extend_from_slice(piece);
            while let Some(response) = reader.decode(&mut buf).expect("well formed") {
                out.push(response);
            }
        }
        if let Some(response) = reader.decode_eof(&mut buf).expect("well formed") {
            out.push(response);
        }
        out
    }

    fn ok(status: u16, body_bytes: u64, closes: bool) -> Response {
        Response {
            status: StatusCode::from_u16(status).expect("status"),
            body_bytes,
            closes,
        }
    }

    #[test]
    fn responses_of_every_framing_are_read_whole_in_pieces_of_any_size() {
        let wire: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n\
HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n\
HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n\
HTTP/1.0 200 OK\r\n\r\nto the end";
        let expected = [
            ok(200, 5, false),
            ok(404, 19, false),
            ok(204, 0, false),
            ok(200, 0, true),
            ok(200, 10, true),
        ];
        for step in [1, 2, 3, 7, 64, wire.len()] {
            let mut reader = ResponseReader::new(&Method::GET);
            assert_eq!(read_all(&mut reader, wire, step), expected, "step {step}");
        }
    }

    #[test]
    fn http10_keep_alive_stays_open_and_head_answers_have_no_body() {
        let wire = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        let mut head = ResponseReader::new(&Method::HEAD);
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(head.decode(&mut buf), Ok(Some(ok(200, 0, false))));
        assert_eq!(head.decode(&mut buf), Ok(Some(ok(200, 0, false))));
        assert!(buf.is_empty());
        let mut get = ResponseReader::new(&Method::GET);
        let mut buf = BytesMut::from(
            &b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc"[..],
        );
        assert_eq!(get.decode(&mut buf), Ok(Some(ok(200, 3, false))));
    }

    #[test]
    fn cut_and_malformed_responses_are_errors() {
        let cut = |wire: &[u8]| {
            let mut buf = BytesMut::from(wire);
            ResponseReader::new(&Method::GET).decode_eof(&mut buf)
        };
        assert_eq!(cut(b""), Ok(None));
        assert_eq!(cut(b"HTTP/1.1 200 OK\r\nContent-Le"), Err(WireError::Cut));
        assert_eq!(
            cut(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"),
            Err(WireError::Cut)
        );
        assert_eq!(
            cut(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"),
            Err(WireError::Cut)
        );
        assert_eq!(
            cut(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(WireError::ContentLength)
        );
        assert_eq!(
            cut(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(WireError::Chunk)
        );
        assert!(matches!(
            cut(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(WireError::Head(_))
        ));
        let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long.resize(MAX_HEAD_BYTES + 10, b'a');
        assert_eq!(cut(&long), Err(WireError::HeadTooLong));
    }

    #[test]
    fn the_request_is_framed_once_with_host_headers_and_length() {
        let host = HeaderValue::from_static("example.test:8080");
        let get = request_bytes(&Method::GET, "/a?b=1", &host, &[], b"");
        assert_eq!(
            &get[..],
            b"GET /a?b=1 HTTP/1.1\r\nhost: example.test:8080\r\n\r\n"
        );
        let headers = [(
            HeaderName::from_static("x-token"),
            HeaderValue::from_static("t"),
        )];
        let post = request_bytes(&Method::POST, "/", &host, &headers, b"hi");
        assert_eq!(
            &post[..],
            b"POST / HTTP/1.1\r\nhost: example.test:8080\r\nx-token: t\r\ncontent-length: 2\r\n\r\nhi"
        );
        let empty_put = request_bytes(&Method::PUT, "/", &host, &[], b"");
        assert!(empty_put.ends_with(b"content-length: 0\r\n\r\n"));
    }
}
