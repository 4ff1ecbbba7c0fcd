//! Many peers, one terminal (`listen --keep-open`): what peers send goes to one output, tagged
//! with the peer's address while several are connected; local input goes to every peer.
//!
//! Nothing read is dropped, and each peer's two directions end on their own, as in
//! [`relay`](crate::net::relay):
//!
//! | event | what happens |
//! |---|---|
//! | no peer connected | the input is not read: it waits (in its pipe, file or terminal) for the first peer, as with `ncat -l -k` |
//! | input read | each chunk goes to every peer connected at that moment, queued per peer |
//! | a peer reads slower than the input comes | the input is read more slowly (the queues are bounded); no peer is dropped |
//! | the input ends | each peer gets the rest of its queue, then EOF (TCP FIN; TLS `close_notify` first); a peer that connects later gets EOF at once. With [`KeepOpenConfig::keep_write_open`], the EOF waits until that peer closes |
//! | a peer half-closes | its last bytes are written out; it keeps receiving the input until the input ends, unless [`KeepOpenConfig::end_with_peer`] is set |
//! | a peer resets, or ends TLS without `close_notify` | that peer ends (with a warning); the others carry on |
//! | the output fails | [`RelayError::Output`]; every peer gets its EOF (bounded) |
//! | `stop` is cancelled | every peer gets its EOF (bounded by [`CLOSE_GRACE`]) |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::net::relay::{CLOSE_GRACE, COPY_BUFFER_BYTES, RelayError};
use crate::net::{BoxStream, ServerConfig, serve};

/// Chunks of local input queued per peer; when a peer's queue is full, the input waits.
const PEER_QUEUE_CHUNKS: usize = 64;

/// A partial line kept per peer (to tag whole lines) is flushed once it grows past this.
const MAX_PENDING_LINE_BYTES: usize = 64 * 1024;

/// How `keep_open` treats the ends of its peers' connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepOpenConfig {
    /// End a peer's connection as soon as that peer half-closes (input at a terminal: what a
    /// person types next cannot matter to a peer that has finished).
    pub end_with_peer: bool,
    /// At the input's end, send a peer its EOF only once it has closed (`--no-shutdown`).
    pub keep_write_open: bool,
}

/// The peers that get the input, and whether it has ended.
#[derive(Default)]
struct Audience {
    peers: HashMap<u64, mpsc::Sender<Bytes>>,
    input_ended: bool,
}

type Shared = Arc<(Mutex<Audience>, Notify)>;

/// What peer tasks tell the output task, in order per peer: joined, data…, left.
enum Event {
    Joined,
    Data(u64, SocketAddr, Bytes),
    Left(u64, SocketAddr),
}

/// Serves peers on `listener` until `stop` fires: their bytes to `output`, `input` to all
/// (see the module docs for who closes when).
///
/// # Errors
///
/// [`RelayError::Output`] when writing to `output` fails, [`RelayError::Input`] when reading
/// `input` does.
pub async fn keep_open<R, W>(
    listener: tokio::net::TcpListener,
    server_config: ServerConfig,
    config: KeepOpenConfig,
    input: R,
    mut output: W,
    stop: CancellationToken,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let stop = stop.child_token();
    let shared: Shared = Arc::default();
    let (events_tx, mut events) = mpsc::channel::<Event>(64);
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(0));

    let server = {
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(serve(
            listener,
            server_config,
            stop,
            move |stream, peer, stop| {
                let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (tx, rx) = mpsc::channel(PEER_QUEUE_CHUNKS);
                let (audience, joined) = &*shared;
                {
                    let mut audience = audience.lock().expect("audience lock");
                    if !audience.input_ended {
                        // Once the input has ended, `tx` is dropped here: the peer gets EOF.
                        audience.peers.insert(id, tx);
                    }
                }
                joined.notify_one();
                run_peer(id, peer, stream, rx, events_tx.clone(), config, stop)
            },
        ))
    };
    let mut broadcaster = tokio::spawn(broadcast(input, shared.clone()));
    let mut broadcasting = true;

    let mut pending: HashMap<u64, BytesMut> = HashMap::new();
    // Counted from events, not from the peer map, so a peer's last data is still tagged
    // even when it has already gone by the time its bytes are written.
    let mut connected = 0usize;
    let result = loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            event = events.recv() => match event { Some(e) => e, None => break Ok(()) },
            read = &mut broadcaster, if broadcasting => {
                broadcasting = false;
                match read {
                    Ok(Err(e)) => break Err(RelayError::Input(e)),
                    _ => continue,
                }
            }
        };
        let several = connected > 1;
        let write = match event {
            Event::Joined => {
                connected += 1;
                Ok(())
            }
            Event::Data(id, addr, bytes) => {
                let partial = pending.entry(id).or_default();
                if !several && partial.is_empty() {
                    output.write_all(&bytes).await
                } else {
                    partial.extend_from_slice(&bytes);
                    write_tagged_lines(&mut output, addr, partial).await
                }
            }
            Event::Left(id, addr) => {
                connected -= 1;
                match pending.remove(&id) {
                    Some(mut rest) if !rest.is_empty() => {
                        rest.extend_from_slice(b"\n");
                        write_tagged_lines(&mut output, addr, &mut rest).await
                    }
                    _ => Ok(()),
                }
            }
        };
        if let Err(e) = write.and(output.flush().await) {
            break Err(RelayError::Output(e));
        }
    };
    broadcaster.abort();
    stop.cancel();
    let _ = server.await;
    result
}

/// Local input → every connected peer's queue; read only while some peer is connected, so
/// every chunk read reaches at least one peer. At the input's end, every queue is closed.
async fn broadcast<R: AsyncRead + Unpin>(mut input: R, shared: Shared) -> std::io::Result<()> {
    let (audience, joined) = &*shared;
    let wait_for_peers = || async {
        loop {
            let peers: Vec<_> = {
                let mut audience = audience.lock().expect("audience lock");
                audience.peers.retain(|_, tx| !tx.is_closed());
                audience.peers.values().cloned().collect()
            };
            if !peers.is_empty() {
                return peers;
            }
            joined.notified().await;
        }
    };
    let mut buf = BytesMut::with_capacity(COPY_BUFFER_BYTES);
    let result = loop {
        wait_for_peers().await;
        buf.reserve(COPY_BUFFER_BYTES);
        match input.read_buf(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
        let chunk = buf.split().freeze();
        let mut delivered = false;
        while !delivered {
            // The peers of this moment; one that has left since the read is skipped, and
            // if all have, the chunk waits for the next one.
            for tx in wait_for_peers().await {
                delivered |= tx.send(chunk.clone()).await.is_ok();
            }
        }
    };
    let mut audience = audience.lock().expect("audience lock");
    audience.input_ended = true;
    audience.peers.clear();
    info!("input ended; each peer gets EOF after its data");
    result
}

/// Writes each complete line of `pending` as `[addr] line`; keeps the partial rest, unless it
/// has grown past the limit.
async fn write_tagged_lines<W: AsyncWrite + Unpin>(
    out: &mut W,
    addr: SocketAddr,
    pending: &mut BytesMut,
) -> std::io::Result<()> {
    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
        let line = pending.split_to(end + 1);
        out.write_all(format!("[{addr}] ").as_bytes()).await?;
        out.write_all(&line).await?;
    }
    if pending.len() > MAX_PENDING_LINE_BYTES {
        out.write_all(format!("[{addr}] ").as_bytes()).await?;
        out.write_all(&pending.split()).await?;
        out.write_all(b"\n").await?;
    }
    Ok(())
}

/// One peer: its bytes to the output task, its queue of input to it; each direction until
/// its own end (module docs).
async fn run_peer(
    id: u64,
    addr: SocketAddr,
    stream: BoxStream,
    mut to_peer: mpsc::Receiver<Bytes>,
    events: mpsc::Sender<Event>,
    config: KeepOpenConfig,
    stop: CancellationToken,
) {
    info!(peer = %addr, "peer connected");
    if events.send(Event::Joined).await.is_err() {
        return;
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut write_closed = false;
    let outcome = {
        let upload = async {
            while let Some(chunk) = to_peer.recv().await {
                writer.write_all(&chunk).await?;
                writer.flush().await?;
            }
            if !config.keep_write_open {
                writer.shutdown().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let download = async {
            let mut buf = BytesMut::with_capacity(COPY_BUFFER_BYTES);
            loop {
                buf.reserve(COPY_BUFFER_BYTES);
                if reader.read_buf(&mut buf).await? == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                if events
                    .send(Event::Data(id, addr, buf.split().freeze()))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
        };
        tokio::pin!(upload, download);
        let (mut upload_done, mut download_done) = (false, false);
        loop {
            tokio::select! {
                result = &mut upload, if !upload_done => {
                    if let Err(e) = result {
                        write_closed = true;
                        break Err(RelayError::Send(e));
                    }
                    upload_done = true;
                    write_closed = !config.keep_write_open;
                    if download_done {
                        break Ok(());
                    }
                }
                result = &mut download, if !download_done => {
                    if let Err(e) = result {
                        break Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                            RelayError::Truncated { received: 0 }
                        } else {
                            RelayError::Receive(e)
                        });
                    }
                    download_done = true;
                    info!(peer = %addr, "peer closed its side");
                    if upload_done || config.end_with_peer {
                        break Ok(());
                    }
                }
                _ = stop.cancelled() => break Ok(()),
            }
        }
    };
    if !write_closed {
        match tokio::time::timeout(CLOSE_GRACE, writer.shutdown()).await {
            Ok(Ok(())) => {}
            _ => info!(peer = %addr, "could not send EOF to the peer"),
        }
    }
    match outcome {
        Ok(()) => info!(peer = %addr, "peer disconnected"),
        Err(RelayError::Truncated { .. }) => warn!(
            peer = %addr,
            "peer closed the TLS connection without close_notify; its data may be cut short"
        ),
        Err(error) => {
            warn!(peer = %addr, error = %crate::net::error_chain(&error), "peer connection failed")
        }
    }
    let _ = events.send(Event::Left(id, addr)).await;
}
