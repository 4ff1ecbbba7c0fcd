//! Full-duplex relay between a stream and a local pair (stdin/stdout): both directions at
//! once, any size, binary-safe, with real half-close semantics.
//!
//! Each direction runs until its own source ends:
//!
//! | event | what the relay does |
//! |---|---|
//! | local input ends (EOF) | the rest is sent, then the stream's write side is shut down (TCP FIN, TLS `close_notify` first); the peer's bytes keep coming. With [`RelayConfig::keep_write_open`] the shutdown waits for the peer's close |
//! | the peer half-closes (FIN, or TLS `close_notify`) | the output is flushed and shut down (its reader sees EOF); the local input keeps being sent until it ends |
//! | both directions ended | the relay returns [`RelayEnd::Finished`] |
//! | the peer closes and [`RelayConfig::end_with_peer`] is set (a person typing at a terminal) | the write side is shut down and the relay returns [`RelayEnd::PeerClosed`] |
//! | the peer resets, or TLS ends without `close_notify` | an error: the data may be incomplete |
//! | the local output is closed (`| head`) | an error that [`RelayError::is_output_closed`] recognises |
//! | `stop` is cancelled | the write side is shut down (bounded) and the relay returns [`RelayEnd::Stopped`] |
//!
//! Every way out shuts the write side down (bounded by [`CLOSE_GRACE`]), so a TLS peer always
//! gets `close_notify` unless the connection itself broke.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::net::NetError;

/// Copy buffer size: large enough that a fast link is not syscall-bound.
pub const COPY_BUFFER_BYTES: usize = 256 * 1024;

/// How long a closing relay waits to send its FIN or `close_notify` after a stop or an error.
pub const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// How a relay behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayConfig {
    /// Fail with [`RelayError::Idle`] when nothing moves in either direction for this long.
    pub idle_timeout: Option<Duration>,
    /// End as soon as the peer closes, even while the input is still open. Meant for a
    /// person typing at a terminal: what they would type next cannot matter to a peer that
    /// has finished. Off, the input is sent until it ends (nothing is lost).
    pub end_with_peer: bool,
    /// Keep the write side open when the input ends, and shut it down only once the peer
    /// has closed (ncat's `--no-shutdown`): for peers such as `nc -l` and `ncat -l` that
    /// quit at the first EOF they read, dropping what they still had to send.
    pub keep_write_open: bool,
}

/// How a relay ended (without error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both directions reached their end: the input was sent whole and the peer closed.
    Finished,
    /// The peer closed first and [`RelayConfig::end_with_peer`] ended the relay.
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
    /// The peer ended a TLS connection without `close_notify`: the bytes received so far
    /// were written out, but nothing proves they are all the peer sent.
    #[error(
        "the peer closed the TLS connection without close_notify after {received} bytes; \
         the data may be cut short"
    )]
    Truncated {
        /// Bytes received (and written out) before the unannounced end.
        received: u64,
    },
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

/// Relays until both directions have ended, `stop` is cancelled, or nothing moves for the
/// idle timeout (see the module docs for who closes when).
///
/// # Errors
///
/// A [`RelayError`] naming the side that failed, [`RelayError::Truncated`] for a TLS peer
/// that ended without `close_notify`, or [`RelayError::Idle`].
pub async fn relay<S, R, W>(
    stream: S,
    mut input: R,
    mut output: W,
    config: RelayConfig,
    stop: CancellationToken,
) -> Result<RelayReport, RelayError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let start = Instant::now();
    let activity = AtomicU64::new(0);
    let sent = AtomicU64::new(0);
    let received = AtomicU64::new(0);
    let (mut from_peer, mut to_peer) = tokio::io::split(stream);
    let mut write_closed = false;
    let outcome = {
        let upload = async {
            pump(&mut input, &mut to_peer, &activity, start, &sent)
                .await
                .map_err(|e| match e {
                    PumpError::Read(e) => RelayError::Input(e),
                    PumpError::Write(e) => RelayError::Send(e),
                })?;
            if config.keep_write_open {
                to_peer.flush().await.map_err(RelayError::Send)?;
                info!(
                    sent = sent.load(Ordering::Relaxed),
                    "input ended; EOF goes to the peer once it closes"
                );
            } else {
                to_peer.shutdown().await.map_err(RelayError::Send)?;
                info!(
                    sent = sent.load(Ordering::Relaxed),
                    "input ended; sent EOF to the peer"
                );
            }
            Ok::<(), RelayError>(())
        };
        let download = async {
            pump(&mut from_peer, &mut output, &activity, start, &received)
                .await
                .map_err(|e| match e {
                    PumpError::Read(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        RelayError::Truncated {
                            received: received.load(Ordering::Relaxed),
                        }
                    }
                    PumpError::Read(e) => RelayError::Receive(e),
                    PumpError::Write(e) => RelayError::Output(e),
                })?;
            // Our output is done too: its reader (`| consumer`) sees EOF now, not at the
            // end of the input.
            output.shutdown().await.map_err(RelayError::Output)?;
            info!(
                received = received.load(Ordering::Relaxed),
                "peer closed its side"
            );
            Ok::<(), RelayError>(())
        };
        let idle = watch_idle(&activity, start, config.idle_timeout);
        tokio::pin!(upload, download, idle);
        let (mut upload_done, mut download_done) = (false, false);
        loop {
            tokio::select! {
                result = &mut upload, if !upload_done => {
                    if let Err(e) = result {
                        // A failed send leaves nothing worth closing politely.
                        write_closed = matches!(e, RelayError::Send(_));
                        break Err(e);
                    }
                    upload_done = true;
                    write_closed = !config.keep_write_open;
                    if download_done {
                        break Ok(RelayEnd::Finished);
                    }
                }
                result = &mut download, if !download_done => {
                    if let Err(e) = result {
                        break Err(e);
                    }
                    download_done = true;
                    if upload_done {
                        break Ok(RelayEnd::Finished);
                    }
                    if config.end_with_peer {
                        break Ok(RelayEnd::PeerClosed);
                    }
                    info!("still sending input; the peer reads until it ends");
                }
                timeout = &mut idle => break Err(RelayError::Idle(timeout)),
                _ = stop.cancelled() => {
                    info!("stopped");
                    break Ok(RelayEnd::Stopped);
                }
            }
        }
    };
    if !write_closed {
        close_write(&mut to_peer).await;
    }
    let end = outcome?;
    Ok(RelayReport {
        sent: sent.load(Ordering::Relaxed),
        received: received.load(Ordering::Relaxed),
        end,
    })
}

/// Shuts down the write side (FIN; `close_notify` first on TLS) within [`CLOSE_GRACE`].
async fn close_write<W: AsyncWrite + Unpin>(to_peer: &mut W) {
    match tokio::time::timeout(CLOSE_GRACE, to_peer.shutdown()).await {
        Ok(Ok(())) => debug!("write side shut down"),
        Ok(Err(error)) => debug!(%error, "could not shut the write side down"),
        Err(_) => debug!("peer not reading; closed without a goodbye"),
    }
}

/// Copies `from` to `to` until EOF, flushing after each chunk so interactive data shows at once.
async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    activity: &AtomicU64,
    start: Instant,
    total: &AtomicU64,
) -> Result<(), PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    loop {
        let n = from.read(&mut buf).await.map_err(PumpError::Read)?;
        if n == 0 {
            to.flush().await.map_err(PumpError::Write)?;
            return Ok(());
        }
        activity.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        to.write_all(&buf[..n]).await.map_err(PumpError::Write)?;
        to.flush().await.map_err(PumpError::Write)?;
        total.fetch_add(n as u64, Ordering::Relaxed);
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
            RelayConfig::default(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(peer.await.unwrap(), b"request");
        assert_eq!(out, b"reply after your EOF");
        assert_eq!(report.end, RelayEnd::Finished);
        assert_eq!((report.sent, report.received), (7, 20));
    }

    /// The peer half-closes before reading anything: every byte of the input still reaches it.
    #[tokio::test]
    async fn peer_eof_first_does_not_cut_the_input_short() {
        let (ours, theirs) = tokio::io::duplex(1024);
        let (mut their_read, mut their_write) = tokio::io::split(theirs);
        their_write.shutdown().await.unwrap();
        let peer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut got = Vec::new();
            their_read.read_to_end(&mut got).await.unwrap();
            got
        });
        let input: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let report = relay(
            ours,
            &input[..],
            tokio::io::sink(),
            RelayConfig::default(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(report.end, RelayEnd::Finished);
        assert_eq!(report.sent, input.len() as u64);
        assert!(peer.await.unwrap() == input, "the peer got the input whole");
    }

    #[tokio::test]
    async fn end_with_peer_stops_at_the_peer_eof_and_still_closes_our_side() {
        let (ours, theirs) = tokio::io::duplex(64);
        let (mut their_read, mut their_write) = tokio::io::split(theirs);
        their_write.write_all(b"bye").await.unwrap();
        their_write.shutdown().await.unwrap();
        let (_typing, input) = tokio::io::duplex(64); // a terminal nobody types at
        let mut out = Vec::new();
        let config = RelayConfig {
            end_with_peer: true,
            ..RelayConfig::default()
        };
        let report = relay(ours, input, &mut out, config, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(report.end, RelayEnd::PeerClosed);
        assert_eq!(out, b"bye");
        let mut rest = Vec::new();
        their_read.read_to_end(&mut rest).await.unwrap(); // our FIN arrived
    }

    #[tokio::test]
    async fn an_unannounced_end_is_reported_as_truncation() {
        struct CutShort(bool);
        impl AsyncRead for CutShort {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                if self.0 {
                    return std::task::Poll::Ready(Err(std::io::ErrorKind::UnexpectedEof.into()));
                }
                self.0 = true;
                buf.put_slice(b"part");
                std::task::Poll::Ready(Ok(()))
            }
        }
        impl AsyncWrite for CutShort {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::task::Poll::Ready(Ok(buf.len()))
            }
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
        }
        let mut out = Vec::new();
        let err = relay(
            CutShort(false),
            tokio::io::empty(),
            &mut out,
            RelayConfig::default(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, RelayError::Truncated { received: 4 }),
            "{err}"
        );
        assert_eq!(out, b"part", "what arrived is still written out");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_fires_when_nothing_moves() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let (_keep_open, input) = tokio::io::duplex(64);
        let config = RelayConfig {
            idle_timeout: Some(Duration::from_secs(3)),
            ..RelayConfig::default()
        };
        let err = relay(
            ours,
            input,
            tokio::io::sink(),
            config,
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
