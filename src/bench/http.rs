//! HTTP load (`sockit bench http`): N keep-alive connections, each sending requests back
//! to back (or on a schedule) for a duration or a count, with latency percentiles and
//! errors counted apart from non-2xx answers. Over HTTP/1.1 a connection carries one
//! request at a time; over HTTP/2 it carries up to M streams at once, each a lane of its
//! own with its own schedule (like h2load's `-m`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::bench::fine_timer::FineTimer;
use crate::bench::http1_wire::{Http1Connection, request_bytes};
use crate::bench::timeline::{Pace, Recorder, Timeline};
use crate::bench::{Progress, Report};
use crate::net::tls::{Verify, client_config};
use crate::net::{BoxStream, ClientOptions, DialOptions, HostPort, NetError, open};

/// When a load run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this long.
    After(Duration),
    /// After this many requests in all.
    Requests(u64),
}

/// The protocol of a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// HTTP/1.1: one request at a time per connection.
    #[default]
    Http1,
    /// HTTP/2 (ALPN `h2` over https, prior knowledge over http): each connection carries up
    /// to `streams` requests at once.
    Http2 {
        /// Concurrent streams per connection.
        streams: usize,
    },
}

/// An HTTP load to generate.
#[derive(Debug, Clone)]
pub struct HttpLoad {
    /// The URL to request (http or https; https certificates are not verified: it is a load test).
    pub url: url::Url,
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// When to stop.
    pub stop: Stop,
    /// Request method.
    pub method: Method,
    /// Extra request headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Request body.
    pub body: Bytes,
    /// Hard limit for the whole run, whatever `stop` says.
    pub limit: Duration,
    /// A request without a whole answer after this long counts as timed out and its
    /// connection is replaced. Requests in flight when the run ends get this long too, so a
    /// run ends at most this long after its duration.
    pub timeout: Duration,
    /// Requests per second in all, spread over the connections (open loop, latency timed
    /// from when each request was due); `None` sends back to back (closed loop, like wrk).
    pub rate: Option<f64>,
    /// HTTP/1.1 or HTTP/2.
    pub protocol: Protocol,
    /// The route to the server (proxy, Unix socket, overrides); direct by default.
    pub dial: DialOptions,
}

/// The default of [`HttpLoad::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a load could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpBenchError {
    /// The URL cannot be loaded.
    #[error("cannot load {0}: only http:// and https:// URLs with a host")]
    Url(String),
    /// No connection could be made at all.
    #[error("cannot connect")]
    Connect(#[source] NetError),
    /// The server does not speak HTTP/2 (`reason` says how it showed).
    #[error("{url} does not speak HTTP/2: {reason}")]
    NotHttp2 {
        /// The URL of the load.
        url: String,
        /// What the server did instead.
        reason: String,
    },
}

struct Target {
    host_port: HostPort,
    options: ClientOptions,
    host_header: HeaderValue,
    /// Parsed once: every request of the run goes to the same target.
    uri: http::Uri,
    /// The same, as it goes into an HTTP/1 request line.
    path_and_query: String,
}

/// Runs the load and returns its report (counters: `non-2xx`, `errors`); `progress` counts
/// responses as they arrive.
///
/// # Errors
///
/// [`HttpBenchError`] when the URL is unusable or the very first connection fails.
pub async fn run(load: HttpLoad, progress: &Progress) -> Result<Report, HttpBenchError> {
    let target = Arc::new(target_of(&load.url, load.protocol, &load.dial)?);
    // Fail fast, with the real reason, when the server is not there at all (or does not
    // speak HTTP/2 when asked to).
    let (probe, _) = open(&target.host_port, &target.options)
        .await
        .map_err(HttpBenchError::Connect)?;
    if let Protocol::Http2 { .. } = load.protocol {
        confirm_h2(probe, target.options.tls.is_some(), load.timeout)
            .await
            .map_err(|reason| HttpBenchError::NotHttp2 {
                url: load.url.to_string(),
                reason,
            })?;
    } else {
        drop(probe);
    }

    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        last_answer_micros: AtomicU64::new(0),
        is_stalled: AtomicBool::new(false),
        timer: match load.rate {
            Some(_) => FineTimer::start(),
            None => FineTimer::coarse(),
        },
    });
    let deadline = start
        + match load.stop {
            Stop::After(d) => d.min(load.limit),
            Stop::Requests(_) => load.limit,
        };
    let budget = match load.stop {
        Stop::Requests(n) => n,
        Stop::After(_) => u64::MAX,
    };
    let request = request_bytes(
        &load.method,
        &target.path_and_query,
        &target.host_header,
        &load.headers,
        &load.body,
    );
    let load = Arc::new(load);
    let timeline = Timeline::new(start, load.rate.is_some());
    let mut workers = JoinSet::new();
    let lanes_per_connection = match load.protocol {
        Protocol::Http1 => 1,
        Protocol::Http2 { streams } => streams.max(1),
    };
    for index in 0..load.connections {
        let run = Run {
            target: target.clone(),
            request: request.clone(),
            load: load.clone(),
            issued: issued.clone(),
            budget,
            deadline,
            shared: shared.clone(),
        };
        let mut lanes = (0..lanes_per_connection).map(|stream| Lane {
            index: index * lanes_per_connection + stream,
            recorder: Recorder::new(timeline.clone()),
            progress: progress.clone(),
        });
        match load.protocol {
            Protocol::Http1 => {
                let lane = lanes.next().expect("one lane per HTTP/1 connection");
                workers.spawn(worker(run, lane));
            }
            Protocol::Http2 { .. } => {
                workers.spawn(h2_worker(run, lanes.collect()));
            }
        }
    }
    let mut total = Tally::default();
    while let Some(joined) = workers.join_next().await {
        if let Ok(tally) = joined {
            total.merge(tally);
        }
    }
    let elapsed = start.elapsed();
    let mode = match load.rate {
        Some(rate) => format!(", {rate} requests/s"),
        None => String::new(),
    };
    let shape = match load.protocol {
        Protocol::Http1 => format!("{} connections", load.connections),
        Protocol::Http2 { streams } => format!(
            "HTTP/2, {} connections \u{d7} {streams} streams",
            load.connections
        ),
    };
    let mut report = Report::new(
        format!("http {} {}: {shape}{mode}", load.method, load.url),
        elapsed,
        total.responses,
        total.bytes,
        None,
    )
    .with_timeline(&timeline, load.rate)
    .with_counter("non-2xx", total.non_2xx)
    .with_counter("5xx", total.server_errors)
    .with_counter("errors", total.errors)
    .with_counter("timeouts", total.timeouts)
    .with_problem_if(total.errors, "socket errors (connect, reset, bad response)")
    .with_problem_if(
        total.timeouts,
        &format!(
            "requests without an answer within {:?} (timed out)",
            load.timeout
        ),
    )
    .with_problem_if(total.server_errors, "responses with a 5xx status");
    if shared.is_stalled.load(Ordering::Relaxed) {
        report.problems.push(format!(
            "the server stalled: no answer on any connection for {:?}",
            load.timeout
        ));
    }
    if total.succeeded() == 0 {
        report.problems.push(if total.responses == 0 {
            "no request got an answer".to_owned()
        } else {
            format!(
                "no request succeeded: all {} answers were not 2xx or 3xx",
                total.responses
            )
        });
    }
    Ok(report)
}

/// What the workers of one run share besides the request count.
struct Shared {
    start: Instant,
    /// When any connection last got a whole answer, in µs since `start`.
    last_answer_micros: AtomicU64,
    /// Set when no connection got an answer for a whole timeout: nobody starts another request.
    is_stalled: AtomicBool,
    /// What every paced lane waits on.
    timer: FineTimer,
}

impl Shared {
    fn answered(&self) {
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_answer_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// After a timeout: whether the whole server went quiet for as long (then say so).
    fn check_stalled(&self, timeout: Duration) -> bool {
        let last = Duration::from_micros(self.last_answer_micros.load(Ordering::Relaxed));
        if self.start.elapsed().saturating_sub(last) >= timeout {
            self.is_stalled.store(true, Ordering::Relaxed);
        }
        self.is_stalled.load(Ordering::Relaxed)
    }
}

fn target_of(
    url: &url::Url,
    protocol: Protocol,
    dial: &DialOptions,
) -> Result<Target, HttpBenchError> {
    let bad = || HttpBenchError::Url(url.to_string());
    let alpn: &[u8] = match protocol {
        Protocol::Http1 => b"http/1.1",
        Protocol::Http2 { .. } => b"h2",
    };
    let tls = match url.scheme() {
        "http" => None,
        "https" => {
            Some(client_config(&Verify::Insecure, &[alpn]).map_err(HttpBenchError::Connect)?)
        }
        _ => return Err(bad()),
    };
    let host = url.host_str().ok_or_else(bad)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().ok_or_else(bad)?;
    let host_header = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok(Target {
        host_port: HostPort::new(Some(host.clone()), port),
        options: ClientOptions {
            tls,
            server_name: Some(host),
            dial: dial.clone(),
            ..ClientOptions::default()
        },
        host_header: HeaderValue::from_str(&host_header).map_err(|_| bad())?,
        uri: path.parse().map_err(|_| bad())?,
        path_and_query: path,
    })
}

#[derive(Default)]
struct Tally {
    responses: u64,
    bytes: u64,
    non_2xx: u64,
    /// Answers that were neither 2xx nor 3xx.
    failed_status: u64,
    server_errors: u64,
    errors: u64,
    timeouts: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.responses += other.responses;
        self.bytes += other.bytes;
        self.non_2xx += other.non_2xx;
        self.failed_status += other.failed_status;
        self.server_errors += other.server_errors;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
    }

    /// Answers with a 2xx or 3xx status.
    fn succeeded(&self) -> u64 {
        self.responses - self.failed_status
    }
}

/// What every connection of one run shares.
struct Run {
    target: Arc<Target>,
    /// The bytes of every HTTP/1 request of the run.
    request: Bytes,
    load: Arc<HttpLoad>,
    issued: Arc<AtomicU64>,
    budget: u64,
    deadline: Instant,
    shared: Arc<Shared>,
}

/// One sequence of requests, each sent when the last is answered (or on its schedule): an
/// HTTP/1 connection, or one stream slot of an HTTP/2 connection. It outlives reconnects.
struct Lane {
    /// Its place among all lanes of the run (for the schedule's stagger).
    index: usize,
    recorder: Recorder,
    progress: Progress,
}

/// The schedule and timer of one lane.
struct Clock {
    pace: Option<Pace>,
    free_since: Instant,
}

impl Clock {
    fn new(run: &Run, lanes: usize, index: usize) -> Self {
        Self {
            pace: run.load.rate.map(|rate| {
                Pace::new(
                    run.shared.start,
                    rate,
                    lanes,
                    index,
                    run.shared.timer.clone(),
                )
            }),
            free_since: Instant::now(),
        }
    }

    /// Whether the lane sends another request (not yet counting it against the budget).
    /// Requests due before the end go out even when a busy lane made them late, but not
    /// past the grace of one timeout; those left then count as timed out.
    fn is_on(&self, run: &Run, tally: &mut Tally) -> bool {
        match &self.pace {
            Some(pace) if pace.due() < run.deadline => {
                if Instant::now() >= run.deadline + run.load.timeout {
                    tally.timeouts += pace.left_before(run.deadline);
                    false
                } else {
                    true
                }
            }
            Some(_) => false,
            None => Instant::now() < run.deadline,
        }
    }

    /// Waits for the next request's due time: returns it and when it went out.
    async fn next(&mut self, recorder: &mut Recorder) -> (Instant, Instant) {
        match &mut self.pace {
            Some(pace) => {
                let sent = pace.next(self.free_since).await;
                recorder.sent(&sent);
                (sent.due, sent.at)
            }
            None => {
                let now = Instant::now();
                (now, now)
            }
        }
    }
}

impl Run {
    /// Whether one more request may go out: the run is on, the budget not spent, the
    /// server not stalled. Counts the request when it may.
    fn may_send(&self, clock: &Clock, tally: &mut Tally) -> bool {
        clock.is_on(self, tally)
            && self.issued.fetch_add(1, Ordering::Relaxed) < self.budget
            && !self.shared.is_stalled.load(Ordering::Relaxed)
    }

    /// After a failed connect: whether to try again (a refusal must not be a busy loop).
    async fn connect_failed(&self, failure: Option<()>, tally: &mut Tally) -> bool {
        match failure {
            Some(()) => {
                tally.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                true
            }
            None if Instant::now() >= self.deadline => false,
            None => {
                tally.timeouts += 1;
                true
            }
        }
    }

    fn is_running(&self) -> bool {
        Instant::now() < self.deadline && !self.shared.is_stalled.load(Ordering::Relaxed)
    }
}

impl Tally {
    /// A whole answer arrived.
    fn answered(&mut self, status: StatusCode, body_bytes: u64) {
        self.responses += 1;
        self.bytes += body_bytes;
        if !status.is_success() {
            self.non_2xx += 1;
        }
        if !(status.is_success() || status.is_redirection()) {
            self.failed_status += 1;
        }
        if status.is_server_error() {
            self.server_errors += 1;
        }
    }
}

/// Reads a response body to its end, counting its bytes without keeping them.
async fn drain(mut body: hyper::body::Incoming) -> Result<u64, hyper::Error> {
    let mut bytes = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            bytes += data.len() as u64;
        }
    }
    Ok(bytes)
}

/// One HTTP/1.1 keep-alive connection sending requests back to back (or on its schedule);
/// reconnects after an error.
async fn worker(run: Run, mut lane: Lane) -> Tally {
    let (target, load, shared) = (run.target.clone(), run.load.clone(), run.shared.clone());
    let mut tally = Tally::default();
    let mut clock = Clock::new(&run, load.connections, lane.index);
    // One timer per worker, reset for each request, rather than one per request.
    let expiry = tokio::time::sleep_until(run.deadline);
    tokio::pin!(expiry);
    'connections: while run.is_running() {
        let connect_by = run.deadline.min(Instant::now() + load.timeout);
        let connected =
            tokio::time::timeout_at(connect_by, open(&target.host_port, &target.options)).await;
        let mut conn = match connected {
            Ok(Ok((stream, _))) => Http1Connection::new(stream, &load.method),
            // A refusal (`Some`) or a timeout (`None`).
            failed => match run.connect_failed(failed.ok().map(drop), &mut tally).await {
                true => continue,
                false => break,
            },
        };
        clock.free_since = clock.free_since.max(Instant::now());
        loop {
            if !run.may_send(&clock, &mut tally) {
                break 'connections;
            }
            let (due, sent) = clock.next(&mut lane.recorder).await;
            // A request in flight at the deadline still gets its whole timeout: it was sent,
            // so it is counted, answered or not.
            expiry.as_mut().reset(sent + load.timeout);
            let outcome = tokio::select! {
                biased;
                outcome = conn.exchange(&run.request) => Some(outcome),
                () = &mut expiry => None,
            };
            clock.free_since = Instant::now();
            match outcome {
                Some(Ok(response)) => {
                    lane.recorder.done(due, sent);
                    shared.answered();
                    lane.progress.add(1);
                    tally.answered(response.status, response.body_bytes);
                    // A server without keep-alive (HTTP/1.0, `Connection: close`) is not an
                    // error: open the next connection. Nor is one that answered before it
                    // took the whole request, but its connection cannot carry another.
                    if response.closes || conn.is_cut {
                        continue 'connections;
                    }
                }
                Some(Err(_)) => {
                    tally.errors += 1;
                    continue 'connections;
                }
                None => {
                    tally.timeouts += 1;
                    shared.check_stalled(load.timeout);
                    continue 'connections;
                }
            }
        }
    }
    tally
}

/// Why a lane of an HTTP/2 connection stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LaneEnd {
    /// The run is over for it.
    Done,
    /// Its connection is gone or being replaced: go on over a new one.
    Reconnect,
}

/// One HTTP/2 connection whose lanes (streams) send requests at once, each back to back
/// (or on its own schedule). A connection error or a timed-out stream replaces the
/// connection: the other lanes finish the request they have in flight, then move over.
async fn h2_worker(run: Run, mut lanes: Vec<Lane>) -> Tally {
    let mut tally = Tally::default();
    let all_lanes = run.load.connections * lanes.len();
    let mut clocks: Vec<Clock> = lanes
        .iter()
        .map(|lane| Clock::new(&run, all_lanes, lane.index))
        .collect();
    while run.is_running() {
        let connect_by = run.deadline.min(Instant::now() + run.load.timeout);
        let connected = tokio::time::timeout_at(connect_by, async {
            let (stream, _) = open(&run.target.host_port, &run.target.options)
                .await
                .map_err(|_| ())?;
            hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
                TokioExecutor::new(),
                TokioIo::new(stream),
            )
            .await
            .map_err(|_| ())
        })
        .await;
        let (sender, conn) = match connected {
            Ok(Ok(connection)) => connection,
            // A refusal (`Some`) or a timeout (`None`).
            failed => match run.connect_failed(failed.ok().map(drop), &mut tally).await {
                true => continue,
                false => break,
            },
        };
        let conn = tokio::spawn(conn);
        let is_replaced = AtomicBool::new(false);
        let ends = futures_util::future::join_all(lanes.iter_mut().zip(clocks.iter_mut()).map(
            |(lane, clock)| {
                clock.free_since = clock.free_since.max(Instant::now());
                h2_lane(&run, lane, clock, sender.clone(), &is_replaced)
            },
        ))
        .await;
        conn.abort();
        let mut is_over = true;
        for (end, lane_tally) in ends {
            tally.merge(lane_tally);
            is_over &= end == LaneEnd::Done;
        }
        if is_over {
            break;
        }
    }
    tally
}

/// One stream slot of an HTTP/2 connection: requests one after another until the run ends
/// for it or the connection must be replaced.
async fn h2_lane(
    run: &Run,
    lane: &mut Lane,
    clock: &mut Clock,
    mut sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    is_replaced: &AtomicBool,
) -> (LaneEnd, Tally) {
    let mut tally = Tally::default();
    let expiry = tokio::time::sleep_until(run.deadline);
    tokio::pin!(expiry);
    loop {
        if is_replaced.load(Ordering::Relaxed) || sender.is_closed() {
            return (LaneEnd::Reconnect, tally);
        }
        if !run.may_send(clock, &mut tally) {
            return (LaneEnd::Done, tally);
        }
        let (due, sent) = clock.next(&mut lane.recorder).await;
        let request = build_request(&run.target, &run.load);
        expiry.as_mut().reset(sent + run.load.timeout);
        let exchange = async {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let len = drain(response.into_body()).await?;
            Ok::<_, hyper::Error>((status, len))
        };
        let outcome = tokio::select! {
            biased;
            outcome = exchange => Some(outcome),
            () = &mut expiry => None,
        };
        clock.free_since = Instant::now();
        match outcome {
            Some(Ok((status, len))) => {
                lane.recorder.done(due, sent);
                run.shared.answered();
                lane.progress.add(1);
                tally.answered(status, len);
            }
            // A reset stream leaves the connection usable; a dead connection shows at the
            // top of the loop.
            Some(Err(_)) => tally.errors += 1,
            None => {
                // The dropped exchange resets its stream. A server that lets one stream
                // hang may hang the connection: the lanes move to a new one.
                tally.timeouts += 1;
                run.shared.check_stalled(run.load.timeout);
                is_replaced.store(true, Ordering::Relaxed);
                return (LaneEnd::Reconnect, tally);
            }
        }
    }
}

/// Checks that the server at the other end of `stream` speaks HTTP/2: over TLS it must
/// have picked `h2` by ALPN, and whatever the transport it must answer the connection
/// preface with a SETTINGS frame (a server that speaks only HTTP/1 answers 400 or closes).
async fn confirm_h2(mut stream: BoxStream, is_tls: bool, timeout: Duration) -> Result<(), String> {
    if is_tls && crate::net::alpn_protocol(&stream) != Some(b"h2") {
        return Err("it did not choose h2 in the TLS handshake (ALPN)".to_owned());
    }
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
    let mut first = [0_u8; 9];
    let exchange = async {
        stream.write_all(PREFACE).await?;
        stream.flush().await?;
        stream.read_exact(&mut first).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err(format!(
            "no answer to the HTTP/2 preface within {timeout:?}"
        )),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err("it closed the connection on the HTTP/2 preface".to_owned())
        }
        Ok(Err(e)) => Err(format!("the HTTP/2 preface failed: {e}")),
        // A frame header: 3 bytes length, type 4 (SETTINGS), flags, stream 0.
        Ok(Ok(_)) if first[3] == 4 && first[5..9] == [0; 4] => Ok(()),
        Ok(Ok(_))
            if first
                .iter()
                .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) =>
        {
            Err(format!(
                "it answered the HTTP/2 preface in HTTP/1 ({:?}); drop --h2 for HTTP/1.1",
                String::from_utf8_lossy(&first)
            ))
        }
        Ok(Ok(_)) => Err("its answer to the HTTP/2 preface is not a SETTINGS frame".to_owned()),
    }
}

fn build_request(target: &Target, load: &HttpLoad) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(load.body.clone()));
    *request.method_mut() = load.method.clone();
    *request.uri_mut() = target.uri.clone();
    let headers = request.headers_mut();
    headers.insert(http::header::HOST, target.host_header.clone());
    for (name, value) in &load.headers {
        headers.append(name.clone(), value.clone());
    }
    request
}
