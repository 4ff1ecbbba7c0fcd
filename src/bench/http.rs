//! HTTP/1.1 keep-alive load (`sockit bench http`): N connections, each sending requests
//! back to back for a duration or a count, with latency percentiles and errors counted
//! apart from non-2xx answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::bench::timeline::{Pace, Recorder, Timeline};
use crate::bench::{Progress, Report};
use crate::http::{Http1RequestFirst, SendState};
use crate::net::tls::{Verify, client_config};
use crate::net::{ClientOptions, HostPort, NetError, open};

/// When a load run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this long.
    After(Duration),
    /// After this many requests in all.
    Requests(u64),
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
}

struct Target {
    host_port: HostPort,
    options: ClientOptions,
    host_header: HeaderValue,
    /// Parsed once: every request of the run goes to the same target.
    uri: http::Uri,
}

/// Runs the load and returns its report (counters: `non-2xx`, `errors`); `progress` counts
/// responses as they arrive.
///
/// # Errors
///
/// [`HttpBenchError`] when the URL is unusable or the very first connection fails.
pub async fn run(load: HttpLoad, progress: &Progress) -> Result<Report, HttpBenchError> {
    let target = Arc::new(target_of(&load.url)?);
    // Fail fast, with the real reason, when the server is not there at all.
    let (probe, _) = open(&target.host_port, &target.options)
        .await
        .map_err(HttpBenchError::Connect)?;
    drop(probe);

    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        last_answer_micros: AtomicU64::new(0),
        is_stalled: std::sync::atomic::AtomicBool::new(false),
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
    let load = Arc::new(load);
    let timeline = Timeline::new(start, load.rate.is_some());
    let mut workers = JoinSet::new();
    for index in 0..load.connections {
        let (target, load, issued) = (target.clone(), load.clone(), issued.clone());
        workers.spawn(worker(
            target,
            load,
            issued,
            budget,
            deadline,
            shared.clone(),
            Connection {
                index,
                recorder: Recorder::new(timeline.clone()),
                progress: progress.clone(),
            },
        ));
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
    let mut report = Report::new(
        format!(
            "http {} {}: {} connections{mode}",
            load.method, load.url, load.connections
        ),
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
    is_stalled: std::sync::atomic::AtomicBool,
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

fn target_of(url: &url::Url) -> Result<Target, HttpBenchError> {
    let bad = || HttpBenchError::Url(url.to_string());
    let tls = match url.scheme() {
        "http" => None,
        "https" => Some(
            client_config(&Verify::Insecure, &[b"http/1.1"]).map_err(HttpBenchError::Connect)?,
        ),
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
            ..ClientOptions::default()
        },
        host_header: HeaderValue::from_str(&host_header).map_err(|_| bad())?,
        uri: path.parse().map_err(|_| bad())?,
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

/// One keep-alive connection sending requests back to back; reconnects after an error.
async fn worker(
    target: Arc<Target>,
    load: Arc<HttpLoad>,
    issued: Arc<AtomicU64>,
    budget: u64,
    deadline: Instant,
    shared: Arc<Shared>,
    mut connection: Connection,
) -> Tally {
    let mut tally = Tally::default();
    let mut pace = load
        .rate
        .map(|rate| Pace::new(shared.start, rate, load.connections, connection.index));
    let mut free_since = Instant::now();
    // One timer per worker, reset for each request, rather than one per request.
    let expiry = tokio::time::sleep_until(deadline);
    tokio::pin!(expiry);
    'connections: while Instant::now() < deadline && !shared.is_stalled.load(Ordering::Relaxed) {
        let connect_by = deadline.min(Instant::now() + load.timeout);
        // The client's stream wrapper: a server may answer before the request is read
        // (or written), or answer and close while the body is still going out; either way
        // its answer is counted, not a hyper error or a broken pipe.
        let request_state = Arc::new(SendState::default());
        let connected = tokio::time::timeout_at(connect_by, async {
            let (stream, _) = open(&target.host_port, &target.options)
                .await
                .map_err(|_| ())?;
            let stream = Http1RequestFirst::new(stream, request_state.clone());
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|_| ())
        })
        .await;
        let (mut sender, conn) = match connected {
            Ok(Ok(connection)) => connection,
            Ok(Err(())) => {
                tally.errors += 1;
                // A refused connection must not turn into a busy loop.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) if Instant::now() >= deadline => break,
            Err(_) => {
                tally.timeouts += 1;
                continue;
            }
        };
        let conn = tokio::spawn(conn);
        free_since = free_since.max(Instant::now());
        loop {
            let is_on = match &pace {
                // Requests due before the end go out even when a busy connection made them
                // late, but not past the grace of one timeout.
                Some(pace) if pace.due() < deadline => {
                    if Instant::now() >= deadline + load.timeout {
                        tally.timeouts += pace.left_before(deadline);
                        false
                    } else {
                        true
                    }
                }
                Some(_) => false,
                None => Instant::now() < deadline,
            };
            if !is_on
                || issued.fetch_add(1, Ordering::Relaxed) >= budget
                || shared.is_stalled.load(Ordering::Relaxed)
            {
                conn.abort();
                break 'connections;
            }
            let (due, sent) = match &mut pace {
                Some(pace) => {
                    let sent = pace.next(free_since).await;
                    connection.recorder.sent(&sent);
                    (sent.due, sent.at)
                }
                None => {
                    let now = Instant::now();
                    (now, now)
                }
            };
            let request = build_request(&target, &load);
            // A request in flight at the deadline still gets its whole timeout: it was sent,
            // so it is counted, answered or not.
            expiry.as_mut().reset(sent + load.timeout);
            let exchange = async {
                let response = sender.send_request(request).await?;
                let status = response.status();
                let closes = closes_connection(&response);
                let body = response.into_body().collect().await?;
                Ok::<_, hyper::Error>((status, body.to_bytes().len(), closes))
            };
            let outcome = tokio::select! {
                biased;
                outcome = exchange => Some(outcome),
                () = &mut expiry => None,
            };
            match outcome {
                Some(Ok((status, len, closes))) => {
                    connection.recorder.done(due, sent);
                    free_since = Instant::now();
                    shared.answered();
                    tally.responses += 1;
                    connection.progress.add(1);
                    tally.bytes += len as u64;
                    if !status.is_success() {
                        tally.non_2xx += 1;
                    }
                    if !(status.is_success() || status.is_redirection()) {
                        tally.failed_status += 1;
                    }
                    if status.is_server_error() {
                        tally.server_errors += 1;
                    }
                    // A server without keep-alive (HTTP/1.0, `Connection: close`) is not an
                    // error: open the next connection. Nor is one that answered before it
                    // took the whole request, but its connection cannot carry another.
                    if closes || request_state.has_failed() {
                        conn.abort();
                        continue 'connections;
                    }
                }
                Some(Err(_)) => {
                    tally.errors += 1;
                    conn.abort();
                    free_since = Instant::now();
                    continue 'connections;
                }
                None => {
                    tally.timeouts += 1;
                    conn.abort();
                    shared.check_stalled(load.timeout);
                    free_since = Instant::now();
                    continue 'connections;
                }
            }
        }
    }
    tally
}

/// What one connection of the load keeps across reconnects.
struct Connection {
    index: usize,
    recorder: Recorder,
    progress: Progress,
}

fn closes_connection<B>(response: &http::Response<B>) -> bool {
    let connection = response
        .headers()
        .get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    match response.version() {
        http::Version::HTTP_10 => connection.as_deref() != Some("keep-alive"),
        _ => connection.as_deref() == Some("close"),
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
