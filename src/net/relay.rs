//! Full-duplex relay between a stream and a local pair (stdin/stdout): both directions at
//! once, any size, binary-safe.
//!
//! Half-close policy: when the local input ends, the stream's write side is shut down (the
//! peer reads EOF) and the relay keeps copying the peer's bytes to the output until the peer
//! closes. When the peer closes first, the relay ends at once, whatever the input is doing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::net::NetError;

/// Copy buffer size: large enough that a fast link is not syscall-bound.
pub const COPY_BUFFER_BYTES: usize = 256 * 1024;

/// How a relay ended (without error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// The peer closed its side (EOF).
    PeerClosed,
    /// The stop token was cancelled (Ctrl-C).
    Stopped,
}

/// What a relay moved and why it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayReport {
    /// Bytes from the local input to the peer.
    pub sent: u64,
    /// Bytes from the peer to the local output.
    pub received: u64,
    /// Why it ended.
    pub end: RelayEnd,
}

/// Why a relay failed, by side: the binary treats a closed local output (`| head`) as a
/// normal end, but not a peer that went away.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading the local input failed.
    #[error("reading local input")]
    Input(#[source] std::io::Error),
    /// Writing the local output failed (e.g. a closed pipe).
    #[error("writing local output")]
    Output(#[source] std::io::Error),
    /// Writing to the peer failed.
    #[error("sending to the peer")]
    Send(#[source] std::io::Error),
    /// Reading from the peer failed.
    #[error("receiving from the peer")]
    Receive(#[source] std::io::Error),
    /// Nothing moved for longer than the idle timeout.
    #[error("gave up waiting")]
    Idle(#[source] NetError),
}

impl RelayError {
    /// Whether the local output was closed by its reader (`sockit connect … | head -1`).
    pub fn is_output_closed(&self) -> bool {
        matches!(self, RelayError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// An error on one side of a copy.
enum PumpError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Relays until the peer closes, `stop` is cancelled, or nothing moves for `idle_timeout`.
///
/// # Errors
///
/// A [`RelayError`] naming the side that failed, or [`RelayError::Idle`] when idle for
/// longer than `idle_timeout`.
pub async fn relay<S, R, W>(
    stream: S,
    input: R,
    mut output: W,
    idle_timeout: Option<Duration>,
    stop: CancellationToken,
) -> Result<RelayReport, RelayError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let start = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let (mut from_peer, mut to_peer) = tokio::io::split(stream);
    let mut input = input;
    let upload = async {
        let sent = pump(&mut input, &mut to_peer, &activity, start)
            .await
            .map_err(|e| match e {
                PumpError::Read(e) => RelayError::Input(e),
                PumpError::Write(e) => RelayError::Send(e),
            })?;
        to_peer.shutdown().await.map_err(RelayError::Send)?;
        info!(
            sent,
            "input ended; sent EOF to the peer, waiting for it to close"
        );
        Ok::<u64, RelayError>(sent)
    };
    let download = async {
        pump(&mut from_peer, &mut output, &activity, start)
            .await
            .map_err(|e| match e {
                PumpError::Read(e) => RelayError::Receive(e),
                PumpError::Write(e) => RelayError::Output(e),
            })
    };
    let idle = watch_idle(&activity, start, idle_timeout);
    tokio::pin!(upload, download, idle);

    let mut sent = None;
    loop {
        tokio::select! {
            result = &mut upload, if sent.is_none() => sent = Some(result?),
            result = &mut download => {
                let received = result?;
                info!(received, "peer closed the connection");
                return Ok(RelayReport { sent: sent.unwrap_or(0), received, end: RelayEnd::PeerClosed });
            }
            timeout = &mut idle => return Err(RelayError::Idle(timeout)),
            _ = stop.cancelled() => {
                info!("stopped");
                return Ok(RelayReport { sent: sent.unwrap_or(0), received: 0, end: RelayEnd::Stopped });
            }
        }
    }
}

/// Copies `from` to `to` until EOF, flushing after each chunk so interactive data shows at once.
async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    activity: &AtomicU64,
    start: Instant,
) -> Result<u64, PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await.map_err(PumpError::Read)?;
        if n == 0 {
            to.flush().await.map_err(PumpError::Write)?;
            return Ok(total);
        }
        activity.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        to.write_all(&buf[..n]).await.map_err(PumpError::Write)?;
        to.flush().await.map_err(PumpError::Write)?;
        total += n as u64;
    }
}

async fn watch_idle(activity: &AtomicU64, start: Instant, limit: Option<Duration>) -> NetError {
    let Some(limit) = limit else {
        return std::future::pending().await;
    };
    loop {
        let last = start + Duration::from_millis(activity.load(Ordering::Relaxed));
        if last.elapsed() >= limit {
            return NetError::Timeout {
                what: "no data in either direction".into(),
                after: limit,
            };
        }
        tokio::time::sleep_until(last + limit).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn input_eof_half_closes_and_peer_data_still_arrives() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let peer = tokio::spawn(async move {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).await.unwrap(); // ends only if we half-closed
            theirs.write_all(b"reply after your EOF").await.unwrap();
            got
        });
        let mut out = Vec::new();
        let report = relay(
            ours,
            &b"request"[..],
            &mut out,
            None,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(peer.await.unwrap(), b"request");
        assert_eq!(out, b"reply after your EOF");
        assert_eq!(report.end, RelayEnd::PeerClosed);
        assert_eq!((report.sent, report.received), (7, 20));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_fires_when_nothing_moves() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let (_keep_open, input) = tokio::io::duplex(64);
        let err = relay(
            ours,
            input,
            tokio::io::sink(),
            Some(Duration::from_secs(3)),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RelayError::Idle(_)), "{err}");
        let chain = crate::net::error_chain(&err);
        assert!(chain.contains("no data in either direction"), "{chain}");
        assert_eq!(
            crate::net::classify(&err),
            crate::net::FailureClass::Timeout
        );
    }
}
