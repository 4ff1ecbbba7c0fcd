//! Echo load: round trips of small messages over many connections, one full-duplex stream,
//! or UDP datagrams with a window in flight. Works against any echo server (sockit, socat,
//! ncat, python).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::bench::{Latency, Progress, Report};
use crate::net::relay::COPY_BUFFER_BYTES;

/// What to measure against an echo server.
#[derive(Debug, Clone)]
pub enum EchoLoad {
    /// `connections` clients at once, each doing `round_trips` of `size`-byte messages.
    RoundTrips {
        /// Concurrent connections.
        connections: usize,
        /// Round trips per connection.
        round_trips: u64,
        /// Bytes per message.
        size: usize,
    },
    /// One connection that writes `bytes` while reading the echo, both at once.
    Stream {
        /// Bytes to push through.
        bytes: u64,
    },
    /// UDP datagrams of `size` bytes, `window` in flight, `datagrams` in all.
    Udp {
        /// Datagrams to send.
        datagrams: u64,
        /// Datagrams in flight at once.
        window: usize,
        /// Bytes per datagram.
        size: usize,
    },
}

/// Why an echo run failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum EchoBenchError {
    /// The run did not finish within its time limit (a stalled or deadlocked server).
    #[error("no progress within {0:?}: the server stalled (or deadlocked)")]
    Stalled(Duration),
    /// A socket error.
    #[error("echo load against {addr}")]
    Io {
        /// The server.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with different bytes.
    #[error("the echo differs from what was sent ({0})")]
    Mismatch(String),
}

/// Runs `load` against the echo server at `addr`; the whole run is bounded by `limit`.
/// `progress` counts round trips (or datagrams, or MB of a stream) as they complete.
///
/// # Errors
///
/// [`EchoBenchError::Stalled`] past `limit`, [`EchoBenchError::Io`] on a socket error,
/// [`EchoBenchError::Mismatch`] when the echoed bytes differ.
pub async fn run(
    addr: SocketAddr,
    load: &EchoLoad,
    limit: Duration,
    progress: &Progress,
) -> Result<Report, EchoBenchError> {
    let io = |source| EchoBenchError::Io { addr, source };
    let work = async {
        match *load {
            EchoLoad::RoundTrips {
                connections,
                round_trips,
                size,
            } => round_trip_load(addr, connections, round_trips, size, progress).await,
            EchoLoad::Stream { bytes } => stream_load(addr, bytes, progress).await.map_err(io),
            EchoLoad::Udp {
                datagrams,
                window,
                size,
            } => udp_load(addr, datagrams, window, size, progress)
                .await
                .map_err(io),
        }
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| EchoBenchError::Stalled(limit))?
}

async fn round_trip_load(
    addr: SocketAddr,
    connections: usize,
    round_trips: u64,
    size: usize,
    progress: &Progress,
) -> Result<Report, EchoBenchError> {
    // Connect everyone first so the measured part is only round trips.
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| EchoBenchError::Io { addr, source })?;
        stream
            .set_nodelay(true)
            .map_err(|source| EchoBenchError::Io { addr, source })?;
        streams.push(stream);
    }
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (i, mut stream) in streams.into_iter().enumerate() {
        let progress = progress.clone();
        tasks.spawn(async move {
            let mut latency = Latency::new();
            let message: Vec<u8> = (0..size).map(|j| (i + j) as u8).collect();
            let mut reply = vec![0u8; size];
            for _ in 0..round_trips {
                let sent = Instant::now();
                stream.write_all(&message).await?;
                stream.read_exact(&mut reply).await?;
                latency.record(sent.elapsed());
                progress.add(1);
                if reply != message {
                    return Err(std::io::Error::other("reply differs"));
                }
            }
            Ok::<Latency, std::io::Error>(latency)
        });
    }
    let mut latency = Latency::new();
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(l)) => latency.merge(&l),
            _ => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    let ops = latency.count();
    Ok(Report::new(
        format!("echo round trips: {connections} connections × {round_trips} × {size} B"),
        elapsed,
        ops,
        ops * size as u64 * 2,
        Some(&latency),
    )
    .with_counter("errors", errors))
}

async fn stream_load(addr: SocketAddr, bytes: u64, progress: &Progress) -> std::io::Result<Report> {
    let stream = TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    let start = Instant::now();
    let send = async move {
        let chunk = vec![0x5a_u8; COPY_BUFFER_BYTES];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            writer.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        writer.shutdown().await
    };
    let receive = async move {
        let mut buf = vec![0u8; COPY_BUFFER_BYTES];
        let mut got = 0u64;
        while got < bytes {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("echo ended after {got} of {bytes} bytes"),
                ));
            }
            if buf[..n].iter().any(|&b| b != 0x5a) {
                return Err(std::io::Error::other("echoed bytes differ"));
            }
            got += n as u64;
            progress.add(n as u64);
        }
        Ok(got)
    };
    let (sent, received) = tokio::join!(send, receive);
    sent?;
    let received = received?;
    Ok(Report::new(
        format!("echo stream: {bytes} B full duplex"),
        start.elapsed(),
        1,
        received,
        None,
    ))
}

async fn udp_load(
    addr: SocketAddr,
    datagrams: u64,
    window: usize,
    size: usize,
    progress: &Progress,
) -> std::io::Result<Report> {
    let size = size.max(8);
    let local: SocketAddr = if addr.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .expect("literal");
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    let mut message = vec![0u8; size];
    let mut reply = vec![0u8; 65_536];
    let mut sent_at = std::collections::HashMap::with_capacity(window);
    let mut latency = Latency::new();
    let (mut next, mut lost, mut bad_size) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    // A datagram not answered in this time is counted lost and its slot reused.
    let loss_timeout = Duration::from_millis(200);
    while next < datagrams || !sent_at.is_empty() {
        while sent_at.len() < window && next < datagrams {
            message[..8].copy_from_slice(&next.to_be_bytes());
            socket.send(&message).await?;
            sent_at.insert(next, Instant::now());
            next += 1;
        }
        // Replies are usually waiting already: take them without arming a timer.
        let received = match socket.try_recv(&mut reply) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::timeout(loss_timeout, socket.recv(&mut reply)).await
            }
            other => Ok(other),
        };
        match received {
            Ok(received) => {
                let n = received?;
                if n != size {
                    bad_size += 1;
                }
                if n >= 8 {
                    let seq = u64::from_be_bytes(reply[..8].try_into().expect("8 bytes"));
                    if let Some(t) = sent_at.remove(&seq) {
                        latency.record(t.elapsed());
                        progress.add(1);
                    }
                }
            }
            Err(_) => {
                lost += sent_at.len() as u64;
                sent_at.clear();
            }
        }
    }
    let ops = latency.count();
    Ok(Report::new(
        format!("udp echo: {datagrams} × {size} B, {window} in flight"),
        start.elapsed(),
        ops,
        ops * size as u64 * 2,
        Some(&latency),
    )
    .with_counter("lost", lost)
    .with_counter("wrong size", bad_size))
}
