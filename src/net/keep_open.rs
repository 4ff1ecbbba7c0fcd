//! Many peers, one terminal (`listen --keep-open`): what peers send goes to one output, tagged
//! with the peer's address while several are connected; local input goes to every peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::net::relay::COPY_BUFFER_BYTES;
use crate::net::{BoxStream, ServerConfig, serve};

/// Chunks of local input queued per peer; a peer that falls further behind is disconnected.
const PEER_QUEUE_CHUNKS: usize = 256;

/// A partial line kept per peer (to tag whole lines) is flushed once it grows past this.
const MAX_PENDING_LINE_BYTES: usize = 64 * 1024;

type Peers = Arc<Mutex<HashMap<u64, (SocketAddr, mpsc::Sender<Bytes>)>>>;

/// What peer tasks tell the output task, in order per peer: joined, data…, left.
enum Event {
    Joined,
    Data(u64, SocketAddr, Bytes),
    Left(u64, SocketAddr),
}

/// Serves peers on `listener` until `stop` fires: their bytes to `output`, `input` to all.
///
/// # Errors
///
/// An error writing to `output`.
pub async fn keep_open<R, W>(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    mut input: R,
    mut output: W,
    stop: CancellationToken,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let peers: Peers = Arc::default();
    let (events_tx, mut events) = mpsc::channel::<Event>(64);
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(0));

    let server = {
        let peers = peers.clone();
        let stop = stop.clone();
        tokio::spawn(serve(listener, config, stop, move |stream, peer, stop| {
            let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (tx, rx) = mpsc::channel(PEER_QUEUE_CHUNKS);
            peers.lock().expect("peer map lock").insert(id, (peer, tx));
            run_peer(id, peer, stream, rx, events_tx.clone(), peers.clone(), stop)
        }))
    };

    // Local input → every peer. Ends at input EOF; peers stay connected.
    let broadcaster = {
        let peers = peers.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(COPY_BUFFER_BYTES);
            loop {
                buf.reserve(COPY_BUFFER_BYTES);
                match input.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let chunk = buf.split().freeze();
                let mut map = peers.lock().expect("peer map lock");
                map.retain(|_, (addr, tx)| match tx.try_send(chunk.clone()) {
                    Ok(()) => true,
                    Err(_) => {
                        warn!(peer = %addr, "peer not reading; disconnecting it");
                        false
                    }
                });
            }
            info!("input ended; still serving peers");
        })
    };

    let mut pending: HashMap<u64, BytesMut> = HashMap::new();
    // Counted from events, not from the peer map, so a peer's last data is still tagged
    // even when it has already gone by the time its bytes are written.
    let mut connected = 0usize;
    let result = loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            event = events.recv() => match event { Some(e) => e, None => break Ok(()) },
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
            break Err(e);
        }
    };
    broadcaster.abort();
    stop.cancel();
    let _ = server.await;
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

async fn run_peer(
    id: u64,
    addr: SocketAddr,
    stream: BoxStream,
    mut to_peer: mpsc::Receiver<Bytes>,
    events: mpsc::Sender<Event>,
    peers: Peers,
    stop: CancellationToken,
) {
    info!(peer = %addr, "peer connected");
    if events.send(Event::Joined).await.is_err() {
        return;
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write_side = async {
        while let Some(chunk) = to_peer.recv().await {
            writer.write_all(&chunk).await?;
        }
        writer.shutdown().await
    };
    let read_side = async {
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
    let outcome = tokio::select! {
        r = read_side => r,
        r = write_side => r,
        _ = stop.cancelled() => Ok(()),
    };
    if let Err(error) = outcome {
        debug!(peer = %addr, %error, "peer connection ended with an error");
    }
    peers.lock().expect("peer map lock").remove(&id);
    let _ = events.send(Event::Left(id, addr)).await;
    info!(peer = %addr, "peer disconnected");
}
