//! `--raw`, the classic image-server mode: every TCP client gets the bytes of one file and
//! then EOF; the receiving side reads to EOF into `FILE.part` and renames it. No name, no
//! size, no hash: interoperable with plain `nc`. On plain TCP (Linux) the sender's bytes never
//! pass through user memory (`sendfile`); the receiver reads in large buffers, with a thread
//! that writes the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::http::part_file::{open_part, part_path};
use crate::net::{BoxStream, ClientOptions, DialOptions, HostPort, ServerConfig, open, serve};
use crate::transfer::recv::{Progress, RecvError, spawn_writer};

/// Size of each read and write.
pub const RAW_BUFFER_BYTES: usize = 256 << 10;

/// Serves `path` to every client on `listener` until `stop`; `served` counts complete sends.
pub async fn serve_raw(
    listener: TcpListener,
    path: PathBuf,
    config: ServerConfig,
    served: watch::Sender<u32>,
    stop: CancellationToken,
) {
    let path = Arc::new(path);
    let served = Arc::new(served);
    serve(listener, config, stop, move |mut stream, peer, _stop| {
        let (path, served) = (path.clone(), served.clone());
        async move {
            let copied = async {
                let file = tokio::fs::File::open(path.as_ref()).await?;
                let n = send_whole(&mut stream, file).await?;
                stream.shutdown().await?;
                Ok::<_, std::io::Error>(n)
            };
            match copied.await {
                Ok(bytes) => {
                    info!(%peer, bytes, "file sent");
                    served.send_modify(|n| *n += 1);
                }
                Err(error) => warn!(%peer, %error, "raw send failed"),
            }
        }
    })
    .await;
}

/// Writes all of `file` to `stream`: with `sendfile` on plain TCP (Linux), the bytes never
/// pass through user memory; otherwise (`--trace`, other systems) through a buffer.
async fn send_whole(stream: &mut BoxStream, file: tokio::fs::File) -> std::io::Result<u64> {
    #[cfg(target_os = "linux")]
    if let Some(tcp) = crate::net::plain_tcp(&**stream) {
        let file = file.into_std().await;
        return crate::net::send_file(tcp, &file).await;
    }
    let mut reader = BufReader::with_capacity(RAW_BUFFER_BYTES, file);
    tokio::io::copy_buf(&mut reader, stream).await
}

/// Connects to `addr` (by the route `dial` gives) and reads to EOF into `out` (through `out.part`, renamed at the end), or
/// to stdout when `out` is `None`. Returns the byte count.
///
/// An `out` that exists and is not a regular file or a directory — `/dev/null`, a FIFO, a
/// terminal — is written in place, never replaced, `overwrite` or not.
///
/// # Errors
///
/// [`RecvError`] for connect failures, an existing regular `out` without `overwrite`, and I/O
/// errors; [`RecvError::Interrupted`] when `stop` fires in any phase. On an error the
/// `.part` file stays for inspection.
pub async fn receive_raw(
    addr: &HostPort,
    out: Option<&Path>,
    overwrite: bool,
    progress: &Arc<Progress>,
    connect_timeout: Duration,
    dial: &DialOptions,
    stop: CancellationToken,
) -> Result<u64, RecvError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| RecvError::Io { path, source }
    };
    let in_place = match out {
        Some(out) => match std::fs::metadata(out) {
            // Devices and FIFOs take bytes as they come; a `.part` and a rename would
            // replace the node with a regular file.
            Ok(meta) if !meta.is_file() && !meta.is_dir() => true,
            _ if !overwrite && std::fs::symlink_metadata(out).is_ok() => {
                return Err(RecvError::Exists {
                    path: out.display().to_string(),
                });
            }
            _ => false,
        },
        None => true,
    };
    let options = ClientOptions {
        connect_timeout,
        dial: dial.clone(),
        ..ClientOptions::default()
    };
    let mut tcp = tokio::select! {
        opened = open(addr, &options) => opened?.0,
        _ = stop.cancelled() => return Err(RecvError::Interrupted),
    };
    let mut buf = BytesMut::with_capacity(RAW_BUFFER_BYTES);
    let Some(out) = out.filter(|_| !in_place) else {
        let (mut sink, name): (Box<dyn AsyncWrite + Unpin + Send>, &Path) = match out {
            None => (Box::new(tokio::io::stdout()), Path::new("-")),
            Some(out) => {
                // Opening a FIFO waits for its reader: Ctrl-C must still end that wait.
                let mut options = tokio::fs::OpenOptions::new();
                options.write(true);
                let file = tokio::select! {
                    file = options.open(out) => file.map_err(io_error(out))?,
                    _ = stop.cancelled() => return Err(RecvError::Interrupted),
                };
                (Box::new(file), out)
            }
        };
        let is_stdout = out.is_none();
        // A failed write names its destination: our stdout, or the device or FIFO.
        let written = |source: std::io::Error| match is_stdout {
            true => RecvError::Stdout(source),
            false => io_error(name)(source),
        };
        let copy = async {
            loop {
                buf.reserve(RAW_BUFFER_BYTES);
                let n = tcp.read_buf(&mut buf).await.map_err(RecvError::Receive)?;
                if n == 0 {
                    break;
                }
                progress.add_fetched(n as u64);
                sink.write_all(&buf).await.map_err(written)?;
                buf.clear();
            }
            sink.flush().await.map_err(written)
        };
        tokio::select! {
            result = copy => result?,
            _ = stop.cancelled() => return Err(RecvError::Interrupted),
        }
        return Ok(progress.fetched());
    };
    let part = part_path(out);
    let file = open_part(&part, 0).map_err(io_error(&part))?;
    // Not `splice(2)` socket → pipe → file: it halves this side's CPU when the sender uses
    // `sendfile`, but doubles it when the sender writes from a buffer (nc), and on loopback
    // the sender waited for ACKs (bench/results/before-after.md, `--raw`).
    let (tx, done) = spawn_writer(file, 0, false);
    let read = async {
        loop {
            buf.reserve(RAW_BUFFER_BYTES);
            let n = tcp.read_buf(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            progress.add_fetched(n as u64);
            if tx.send(vec![buf.split().freeze()]).await.is_err() {
                return Ok(()); // the writer failed; its error comes from `done`
            }
        }
    };
    tokio::select! {
        result = read => result.map_err(RecvError::Receive)?,
        _ = stop.cancelled() => return Err(RecvError::Interrupted),
    }
    drop(tx);
    let (written, _) = done
        .await
        .map_err(|e| io_error(&part)(std::io::Error::other(e)))?
        .map_err(io_error(&part))?;
    std::fs::rename(&part, out).map_err(io_error(out))?;
    debug!(bytes = written, "raw receive complete");
    Ok(written)
}
