//! Echo load: round trips of small messages over many connections, one full-duplex stream,
//! or UDP datagrams with a window in flight. Works against any echo server (sockit, socat,
//! ncat, python).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

use crate::bench::fine_timer::FineTimer;
use crate::bench::timeline::{Pace, Recorder, Timeline};
use crate::bench::{Latency, Progress, Report};
use crate::net::dial::{DialOptions, Dialed, dial};
use crate::net::relay::COPY_BUFFER_BYTES;
use crate::net::udp_batch::{RecvBatch, SendBatch};
use crate::net::{BoxStream, HostPort, NetError};

/// Send and receive buffer asked for by the stream load (Linux caps it at `wmem_max`).
const STREAM_SOCKET_BUFFER_BYTES: u32 = 4 * 1024 * 1024;

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
        /// A round trip not back after this long counts as timed out and ends its
        /// connection's part of the run.
        timeout: Duration,
        /// Round trips per second in all, spread over the connections (open loop, latency
        /// timed from when each was due); `None`: back to back (closed loop).
        rate: Option<f64>,
        /// Stop starting round trips after this long (then `round_trips` is only a cap).
        duration: Option<Duration>,
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
    /// A client could not reach the server (directly, through the proxy or the socket).
    #[error("connecting to the echo server {target}")]
    Connect {
        /// The server.
        target: HostPort,
        /// What failed.
        #[source]
        source: NetError,
    },
    /// A socket error.
    #[error("echo load against {target}")]
    Io {
        /// The server.
        target: HostPort,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// UDP was asked for over a route that carries TCP only.
    #[error("UDP goes direct: {0} carries TCP only")]
    UdpRoute(&'static str),
    /// The server answered with different bytes.
    #[error("the echo differs from what was sent ({0})")]
    Mismatch(String),
}

/// Runs `load` against the echo server at `addr`, connecting directly; the whole run is
/// bounded by `limit`. [`run_via`] takes a route (proxy, Unix socket, source address).
///
/// # Errors
///
/// As [`run_via`].
pub async fn run(
    addr: SocketAddr,
    load: &EchoLoad,
    limit: Duration,
    progress: &Progress,
) -> Result<Report, EchoBenchError> {
    let target = HostPort::new(Some(addr.ip().to_string()), addr.port());
    run_via(&target, &DialOptions::default(), load, limit, progress).await
}

/// Runs `load` against the echo server at `target`, reached by `route` (directly, through a
/// proxy or over a Unix socket; UDP goes direct); the whole run is bounded by `limit`.
/// `progress` counts round trips (or datagrams, or MB of a stream) as they complete.
///
/// # Errors
///
/// [`EchoBenchError::Stalled`] past `limit`, [`EchoBenchError::Connect`] when a client
/// cannot reach the server, [`EchoBenchError::Io`] on a socket error,
/// [`EchoBenchError::Mismatch`] when the echoed bytes differ, and
/// [`EchoBenchError::UdpRoute`] for UDP through a proxy or a Unix socket.
pub async fn run_via(
    target: &HostPort,
    route: &DialOptions,
    load: &EchoLoad,
    limit: Duration,
    progress: &Progress,
) -> Result<Report, EchoBenchError> {
    let server = EchoServer { target, route };
    let work = async {
        match *load {
            EchoLoad::RoundTrips {
                connections,
                round_trips,
                size,
                timeout,
                rate,
                duration,
            } => {
                let shape = Shape {
                    connections,
                    round_trips,
                    size,
                    timeout,
                    rate,
                    duration,
                };
                round_trip_load(&server, &shape, progress).await
            }
            EchoLoad::Stream { bytes } => stream_load(&server, bytes, progress).await,
            EchoLoad::Udp {
                datagrams,
                window,
                size,
            } => {
                let addr = server.udp_addr().await?;
                udp_load(addr, route.source, datagrams, window, size, progress)
                    .await
                    .map_err(|source| server.io(source))
            }
        }
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| EchoBenchError::Stalled(limit))?
}

/// The echo server and the route to it.
struct EchoServer<'a> {
    target: &'a HostPort,
    route: &'a DialOptions,
}

impl EchoServer<'_> {
    /// A connection by the route, within `timeout`.
    async fn connect(
        &self,
        route: &DialOptions,
        timeout: Duration,
    ) -> Result<Dialed, EchoBenchError> {
        let error = |source| EchoBenchError::Connect {
            target: self.target.clone(),
            source,
        };
        let dialed = tokio::time::timeout(timeout, dial(self.target, route))
            .await
            .map_err(|_| {
                error(NetError::Timeout {
                    what: format!("connecting to {}", self.target),
                    after: timeout,
                })
            })?;
        Ok(dialed.map_err(error)?.0)
    }

    /// The address datagrams go to: UDP takes no proxy and no Unix socket.
    async fn udp_addr(&self) -> Result<SocketAddr, EchoBenchError> {
        if self.route.proxy.is_some() {
            return Err(EchoBenchError::UdpRoute("a proxy"));
        }
        if self.route.unix_socket.is_some() {
            return Err(EchoBenchError::UdpRoute("a Unix socket"));
        }
        let addrs =
            self.route
                .resolve(self.target)
                .await
                .map_err(|source| EchoBenchError::Connect {
                    target: self.target.clone(),
                    source,
                })?;
        let source = self.route.source;
        // Resolving never gives an empty list; the family of `-s` is preferred.
        Ok(addrs
            .iter()
            .find(|a| source.is_none_or(|s| s.is_ipv4() == a.is_ipv4()))
            .unwrap_or(&addrs[0])
            .to_owned())
    }

    fn io(&self, source: std::io::Error) -> EchoBenchError {
        EchoBenchError::Io {
            target: self.target.clone(),
            source,
        }
    }
}

/// How long one connection of a stream load may take to open.
const STREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection of a round-trip load: its message and a reply buffer.
struct Pinger {
    stream: BoxStream,
    message: Vec<u8>,
    reply: Vec<u8>,
}

impl Pinger {
    async fn connect(
        server: &EchoServer<'_>,
        index: usize,
        size: usize,
        timeout: Duration,
    ) -> Result<Self, EchoBenchError> {
        // The dial layer sets TCP_NODELAY on every TCP connection it opens.
        let stream = server.connect(server.route, timeout).await?.into_boxed();
        Ok(Self {
            stream,
            message: (0..size).map(|j| (index + j) as u8).collect(),
            // Room for more than one reply: a read that leaves room tells the runtime the
            // socket is drained, which saves a failing read before every reply.
            reply: vec![0u8; size.max(4096)],
        })
    }

    /// Sends the message and waits for it to come back whole.
    async fn round_trip(&mut self) -> std::io::Result<()> {
        let size = self.message.len();
        self.stream.write_all(&self.message).await?;
        let mut got = 0;
        while got < size {
            match self.stream.read(&mut self.reply[got..]).await? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        if got != size || self.reply[..size] != self.message[..] {
            return Err(std::io::Error::other("reply differs"));
        }
        Ok(())
    }
}

/// The parameters of a round-trip load.
struct Shape {
    connections: usize,
    round_trips: u64,
    size: usize,
    timeout: Duration,
    rate: Option<f64>,
    duration: Option<Duration>,
}

async fn round_trip_load(
    server: &EchoServer<'_>,
    shape: &Shape,
    progress: &Progress,
) -> Result<Report, EchoBenchError> {
    let Shape {
        connections,
        round_trips,
        size,
        timeout,
        rate,
        duration,
    } = *shape;
    // Connect everyone first, with one unmeasured round trip each, so the server has
    // accepted every connection and the measured part is only round trips.
    let mut pingers = Vec::with_capacity(connections);
    for i in 0..connections {
        let mut pinger = Pinger::connect(server, i, size, timeout).await?;
        tokio::time::timeout(timeout, pinger.round_trip())
            .await
            .map_err(|_| EchoBenchError::Stalled(timeout))?
            .map_err(|source| server.io(source))?;
        pingers.push(pinger);
    }
    let start = Instant::now();
    let end = duration.map(|d| start + d);
    let timeline = Timeline::new(start, rate.is_some());
    let timer = rate.map(|_| FineTimer::start());
    let mut tasks = JoinSet::new();
    for (index, mut pinger) in pingers.into_iter().enumerate() {
        let progress = progress.clone();
        let mut recorder = Recorder::new(timeline.clone());
        let mut pace = rate
            .zip(timer.clone())
            .map(|(rate, timer)| Pace::new(start, rate, connections, index, timer));
        tasks.spawn(async move {
            let mut free_since = start;
            let mut watchdog = Watchdog::new(timeout);
            for _ in 0..round_trips {
                let (due, sent) = match &mut pace {
                    Some(pace) => {
                        if end.is_some_and(|end| pace.due() >= end) {
                            break;
                        }
                        let sent = pace.next(free_since).await;
                        recorder.sent(&sent);
                        (sent.due, sent.at)
                    }
                    None => {
                        let now = Instant::now();
                        if end.is_some_and(|end| now >= end) {
                            break;
                        }
                        (now, now)
                    }
                };
                match watchdog.bound(sent, pinger.round_trip()).await {
                    Some(Ok(())) => {}
                    Some(Err(_)) => return Ending::Error,
                    None => return Ending::Timeout,
                }
                recorder.done(due, sent);
                free_since = Instant::now();
                progress.add(1);
            }
            Ending::Done
        });
    }
    let (mut errors, mut timeouts) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(ending) => {
                errors += u64::from(ending == Ending::Error);
                timeouts += u64::from(ending == Ending::Timeout);
            }
            Err(_) => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    let mode = match rate {
        Some(rate) => format!(", {rate} round trips/s"),
        None => String::new(),
    };
    let mut report = Report::new(
        format!("echo round trips: {connections} connections × {size} B{mode}"),
        elapsed,
        0,
        0,
        None,
    )
    .with_timeline(&timeline, rate);
    let ops = report.timeline.iter().map(|s| s.ops).sum::<u64>();
    report.set_totals(ops, ops * size as u64 * 2);
    // With a duration, the count is only a cap: what was due is what the schedule held.
    let expected = if duration.is_some() {
        ops + timeouts
    } else {
        connections as u64 * round_trips
    };
    Ok(report
        .with_counter("errors", errors)
        .with_counter("timeouts", timeouts)
        .with_problem_if(errors, "connections failed (reset, closed or a wrong echo)")
        .with_problem_if(
            timeouts,
            &format!("connections got no echo within {timeout:?} (timed out)"),
        )
        .with_problem_if(
            expected.saturating_sub(ops),
            &format!("of {expected} round trips never completed"),
        ))
}

/// One timer per connection that bounds each of its round trips. It is re-armed only when
/// it fires before a round trip's deadline, so a round trip costs no timer insertion and
/// removal (a `timeout` per round trip does both, under the timer's lock).
struct Watchdog {
    sleep: Pin<Box<Sleep>>,
    limit: Duration,
}

impl Watchdog {
    fn new(limit: Duration) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }

    /// Runs `work`, which started at `since` (deadlines only ever move forward); `None`
    /// when it is not done `limit` after `since`.
    async fn bound<T>(&mut self, since: Instant, work: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(work);
        let deadline = since + self.limit;
        loop {
            tokio::select! {
                biased;
                out = &mut work => return Some(out),
                () = self.sleep.as_mut() => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    self.sleep.as_mut().reset(deadline);
                }
            }
        }
    }
}

/// How one connection's part of a round-trip load ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Done,
    Error,
    Timeout,
}

async fn stream_load(
    server: &EchoServer<'_>,
    bytes: u64,
    progress: &Progress,
) -> Result<Report, EchoBenchError> {
    // Socket buffers as large as the system allows by default: the load must not be what
    // limits a bulk echo. The server keeps whatever it chose.
    let route = DialOptions {
        socket_buffer_bytes: Some(STREAM_SOCKET_BUFFER_BYTES),
        ..server.route.clone()
    };
    let dialed = server.connect(&route, STREAM_CONNECT_TIMEOUT).await?;
    let start = Instant::now();
    let received = match dialed {
        // Owned halves of a TCP stream need no lock between the two directions.
        Dialed::Tcp(tcp) => {
            let (reader, writer) = tcp.into_split();
            push_and_check(reader, writer, bytes, progress).await
        }
        Dialed::Boxed(stream) => {
            let (reader, writer) = tokio::io::split(stream);
            push_and_check(reader, writer, bytes, progress).await
        }
    }
    .map_err(|source| server.io(source))?;
    Ok(Report::new(
        format!("echo stream: {bytes} B full duplex"),
        start.elapsed(),
        1,
        received,
        None,
    ))
}

/// Writes `bytes` of a pattern to `writer` while reading them back from `reader`, both at
/// once, and checks the echo; the bytes that came back.
async fn push_and_check(
    mut reader: impl AsyncRead + Unpin,
    mut writer: impl AsyncWrite + Unpin,
    bytes: u64,
    progress: &Progress,
) -> std::io::Result<u64> {
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
        // Compared with memcmp against the pattern: a per-byte loop would make this
        // client, not the server, the bottleneck.
        let pattern = vec![0x5a_u8; COPY_BUFFER_BYTES];
        let mut got = 0u64;
        while got < bytes {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("echo ended after {got} of {bytes} bytes"),
                ));
            }
            if buf[..n] != pattern[..n] {
                return Err(std::io::Error::other("echoed bytes differ"));
            }
            got += n as u64;
            progress.add(n as u64);
        }
        Ok(got)
    };
    let (sent, received) = tokio::join!(send, receive);
    sent?;
    received
}

async fn udp_load(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    datagrams: u64,
    window: usize,
    size: usize,
    progress: &Progress,
) -> std::io::Result<Report> {
    let size = size.max(8);
    let local = match source {
        Some(ip) => SocketAddr::new(ip, 0),
        None if addr.is_ipv4() => SocketAddr::from(([0, 0, 0, 0], 0)),
        None => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    // The window is refilled with one system call and replies are taken with one, so the
    // load costs little per datagram next to the server it measures.
    let mut outgoing: Vec<Vec<u8>> = (0..window.min(datagrams as usize))
        .map(|_| vec![0u8; size])
        .collect();
    let mut received = RecvBatch::new(65_536);
    let mut send = SendBatch::new();
    let mut sent_at = std::collections::HashMap::with_capacity(window);
    let mut latency = Latency::new();
    let (mut next, mut lost, mut bad_size) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    // A datagram not answered in this time is counted lost and its slot reused.
    let loss_timeout = Duration::from_millis(200);
    while next < datagrams || !sent_at.is_empty() {
        let free = (window - sent_at.len()).min((datagrams - next) as usize);
        if free > 0 {
            let now = Instant::now();
            for (seq, message) in (next..).zip(&mut outgoing[..free]) {
                message[..8].copy_from_slice(&seq.to_be_bytes());
                sent_at.insert(seq, now);
            }
            let batch: Vec<(&[u8], Option<SocketAddr>)> =
                outgoing[..free].iter().map(|m| (&m[..], None)).collect();
            let mut refused = None;
            send.send_all(&socket, &batch, |_, _, error| {
                refused.get_or_insert(error);
            })
            .await?;
            if let Some(error) = refused {
                return Err(error);
            }
            next += free as u64;
        }
        // Replies are usually waiting already: take them without arming a timer.
        match received.try_recv(&socket) {
            Ok(_) => {
                for (reply, _) in received.iter() {
                    if reply.len() != size {
                        bad_size += 1;
                    }
                    if let Some(seq) = reply.first_chunk::<8>().map(|b| u64::from_be_bytes(*b))
                        && let Some(t) = sent_at.remove(&seq)
                    {
                        latency.record(t.elapsed());
                        progress.add(1);
                    }
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(loss_timeout, socket.readable()).await {
                    Ok(ready) => ready?,
                    Err(_) => {
                        lost += sent_at.len() as u64;
                        sent_at.clear();
                    }
                }
            }
            Err(error) => return Err(error),
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
    .with_counter("wrong size", bad_size)
    .with_problem_if(lost, "datagrams lost (no echo within 200 ms)")
    .with_problem_if(bad_size, "datagrams echoed with a different size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn watchdog_bounds_each_round_trip_from_its_own_start() {
        let limit = Duration::from_secs(1);
        let mut watchdog = Watchdog::new(limit);
        // Round trips that each take most of the limit pass, however long the run lasts.
        for _ in 0..5 {
            let work = tokio::time::sleep(Duration::from_millis(900));
            assert_eq!(watchdog.bound(Instant::now(), work).await, Some(()));
        }
        let started = Instant::now();
        let stuck = std::future::pending::<()>();
        assert_eq!(watchdog.bound(started, stuck).await, None);
        assert_eq!(started.elapsed(), limit);
    }
}
