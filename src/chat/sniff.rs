//! Tells a browser from a line client on the chat's own address, by the first line only: an
//! HTTP request line (`GET /path HTTP/1.1`) is a browser (or curl); anything else is chat,
//! even `GET x` typed by a user. A client that says nothing at first (telnet, nc, the
//! lessons' clients wait for the server to speak) is a line client after a short wait, and
//! a partial line followed by a pause is a message, as everywhere in chat. Such a client
//! only listens until it speaks, and a request line that comes after the greeting is not
//! chat (`session`): the greeting already sent makes an HTTP answer impossible.
//!
//! The wait grows with the connections arriving at once (`Arrivals`), up to 2 s: a burst of
//! new connections is programs (a load test, browsers reconnecting after a restart), and a
//! program busy opening hundreds of connections sends each request late.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::chat::session::read_lazily;
use crate::net::BoxStream;
use crate::net::line::MESSAGE_PAUSE;

/// How long a silent client may take before it is greeted as a line client, when it comes
/// alone. HTTP clients send their request at once; a line client waiting for its welcome
/// waits only this.
pub(crate) const FIRST_BYTES_WAIT: Duration = Duration::from_millis(100);

/// What each other connection still being told apart adds to the wait.
const WAIT_PER_ARRIVAL: Duration = Duration::from_millis(10);

/// The longest wait, however many arrive at once.
const MAX_FIRST_BYTES_WAIT: Duration = Duration::from_secs(2);

/// The connections of one listener whose kind is not known yet.
#[derive(Debug, Default)]
pub(crate) struct Arrivals(AtomicUsize);

impl Arrivals {
    /// Counts one connection in until the guard is dropped.
    fn arrive(self: &Arc<Self>) -> Arrival {
        self.0.fetch_add(1, Ordering::Relaxed);
        Arrival(self.clone())
    }

    /// How long a silent connection is given, with `others` arriving beside it.
    fn first_bytes_wait(others: usize) -> Duration {
        let extra = WAIT_PER_ARRIVAL.saturating_mul(u32::try_from(others).unwrap_or(u32::MAX));
        (FIRST_BYTES_WAIT + extra).min(MAX_FIRST_BYTES_WAIT)
    }
}

/// One connection counted in [`Arrivals`].
struct Arrival(Arc<Arrivals>);

impl Drop for Arrival {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The longest first line looked at; longer is chat.
const MAX_REQUEST_LINE_BYTES: usize = 8 * 1024;

/// What a connection turned out to be.
#[derive(Debug)]
pub(crate) enum Sniffed {
    /// An HTTP client; these bytes are already read.
    Http(BytesMut),
    /// A line client; these bytes are already read, and `is_paused` says they end in a
    /// partial line followed by a pause (a message of its own).
    Lines { first: BytesMut, is_paused: bool },
    /// Failed, or the server stops.
    Gone,
}

/// What the bytes so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guess {
    Http,
    Lines,
    /// The start of a request line, not yet whole.
    Undecided,
}

/// Reads the first bytes of `stream` until its kind is known; `arrivals` counts the
/// listener's connections doing the same.
pub(crate) async fn sniff(
    stream: &mut BoxStream,
    arrivals: &Arc<Arrivals>,
    stop: &CancellationToken,
) -> Sniffed {
    let _arrival = arrivals.arrive();
    let arrived_at = Instant::now();
    // Looked at again when it runs out: connections that arrive meanwhile are the same
    // burst, and the first of a burst needs the time as much as the last.
    let silent_until = || {
        let others = arrivals.0.load(Ordering::Relaxed).saturating_sub(1);
        arrived_at + Arrivals::first_bytes_wait(others)
    };
    // Taken only once bytes arrive: a silent client (the usual line client) holds none.
    let mut buf = BytesMut::new();
    loop {
        match guess(&buf) {
            Guess::Http => return Sniffed::Http(buf),
            Guess::Lines => {
                return Sniffed::Lines {
                    first: buf,
                    is_paused: false,
                };
            }
            Guess::Undecided => {}
        }
        let until = if buf.is_empty() {
            silent_until()
        } else {
            Instant::now() + MESSAGE_PAUSE
        };
        let read = tokio::select! {
            _ = stop.cancelled() => return Sniffed::Gone,
            read = tokio::time::timeout_at(until, read_lazily(stream, &mut buf, 1024)) => read,
        };
        match read {
            // More arrived while this one was silent: it gets their time too.
            Err(_) if buf.is_empty() && silent_until() > Instant::now() => {}
            // Silent, or a partial line and a pause: chat.
            Err(_) => {
                let is_paused = !buf.is_empty();
                return Sniffed::Lines {
                    first: buf,
                    is_paused,
                };
            }
            // The line session sees the end of input itself.
            Ok(Ok(0)) => {
                return Sniffed::Lines {
                    first: buf,
                    is_paused: false,
                };
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Sniffed::Gone,
        }
    }
}

/// Guesses from the first bytes of a connection (see the module docs).
pub(crate) fn guess(first: &[u8]) -> Guess {
    if first.is_empty() {
        return Guess::Undecided;
    }
    match memchr::memchr(b'\n', first) {
        Some(end) => {
            let line = &first[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if is_request_line(line) {
                Guess::Http
            } else {
                Guess::Lines
            }
        }
        None if first.len() <= MAX_REQUEST_LINE_BYTES && could_start_request_line(first) => {
            Guess::Undecided
        }
        None => Guess::Lines,
    }
}

const VERSIONS: [&[u8]; 3] = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"];

fn is_method(part: &[u8]) -> bool {
    (1..=16).contains(&part.len()) && part.iter().all(|b| b.is_ascii_uppercase() || *b == b'-')
}

fn is_target(part: &[u8]) -> bool {
    part.iter().all(|b| b.is_ascii_graphic())
}

/// `METHOD TARGET HTTP/1.x` (or the HTTP/2 preface's `PRI * HTTP/2.0`).
pub(crate) fn is_request_line(line: &[u8]) -> bool {
    let mut parts = line.split(|b| *b == b' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some(version), None) => {
            is_method(method)
                && !target.is_empty()
                && is_target(target)
                && VERSIONS.contains(&version)
        }
        _ => false,
    }
}

/// Whether `partial` (no newline yet) can still become a request line.
fn could_start_request_line(partial: &[u8]) -> bool {
    let partial = partial.strip_suffix(b"\r").unwrap_or(partial);
    let parts: Vec<&[u8]> = partial.split(|b| *b == b' ').collect();
    match parts[..] {
        [method] => method.is_empty() || is_method(method),
        [method, target] => is_method(method) && is_target(target),
        [method, target, version] => {
            is_method(method)
                && !target.is_empty()
                && is_target(target)
                && VERSIONS.iter().any(|v| v.starts_with(version))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lines_tell_the_kind() {
        let cases: &[(&[u8], Guess)] = &[
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Guess::Http),
            (b"GET /ws HTTP/1.1\n", Guess::Http),
            (b"HEAD /x?y=1 HTTP/1.0\r\n", Guess::Http),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Guess::Http),
            (b"GET x\n", Guess::Lines),
            (b"GET / HTTP/1.1 extra\n", Guess::Lines),
            (b"get / HTTP/1.1\n", Guess::Lines),
            (b"hello\n", Guess::Lines),
            (b"Hello", Guess::Lines),
            (b"PASS secret\n", Guess::Lines),
            (b"/nick alice\n", Guess::Lines),
            (b"\n", Guess::Lines),
            (b"GET", Guess::Undecided),
            (b"GET /index", Guess::Undecided),
            (b"GET / HTT", Guess::Undecided),
            (b"GET / HTTP/1.1\r", Guess::Undecided),
            (b"GET / HTTPX", Guess::Lines),
            (b"HELLO WORLD", Guess::Undecided),
            (b"HELLO WORLD AGAIN", Guess::Lines),
            (b"", Guess::Undecided),
        ];
        for (first, expected) in cases {
            assert_eq!(
                guess(first),
                *expected,
                "{:?}",
                String::from_utf8_lossy(first)
            );
        }
        let long = format!("GET /{}", "a".repeat(MAX_REQUEST_LINE_BYTES));
        assert_eq!(guess(long.as_bytes()), Guess::Lines);
    }

    #[test]
    fn a_burst_of_arrivals_waits_longer_within_a_bound() {
        assert_eq!(Arrivals::first_bytes_wait(0), FIRST_BYTES_WAIT);
        assert_eq!(
            Arrivals::first_bytes_wait(100),
            FIRST_BYTES_WAIT + Duration::from_secs(1)
        );
        assert_eq!(Arrivals::first_bytes_wait(10_000), MAX_FIRST_BYTES_WAIT);
        assert_eq!(Arrivals::first_bytes_wait(usize::MAX), MAX_FIRST_BYTES_WAIT);
        let arrivals = Arc::new(Arrivals::default());
        let (a, b) = (arrivals.arrive(), arrivals.arrive());
        assert_eq!(arrivals.0.load(Ordering::Relaxed), 2);
        drop((a, b));
        assert_eq!(arrivals.0.load(Ordering::Relaxed), 0, "guards count out");
    }
}
