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

use crate::bench::{Latency, Progress, Report};
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
}

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
    let mut workers = JoinSet::new();
    for _ in 0..load.connections {
        let (target, load, issued) = (target.clone(), load.clone(), issued.clone());
        workers.spawn(worker(
            target,
            load,
            issued,
            budget,
            deadline,
            progress.clone(),
        ));
    }
    let mut total = Tally::default();
    while let Some(joined) = workers.join_next().await {
        if let Ok(tally) = joined {
            total.merge(tally);
        }
    }
    let elapsed = start.elapsed();
    Ok(Report::new(
        format!(
            "http {} {}: {} connections",
            load.method, load.url, load.connections
        ),
        elapsed,
        total.responses,
        total.bytes,
        Some(&total.latency),
    )
    .with_counter("non-2xx", total.non_2xx)
    .with_counter("errors", total.errors))
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
    errors: u64,
    latency: Latency,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.responses += other.responses;
        self.bytes += other.bytes;
        self.non_2xx += other.non_2xx;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
    }
}

/// One keep-alive connection sending requests back to back; reconnects after an error.
async fn worker(
    target: Arc<Target>,
    load: Arc<HttpLoad>,
    issued: Arc<AtomicU64>,
    budget: u64,
    deadline: Instant,
    progress: Progress,
) -> Tally {
    let mut tally = Tally::default();
    // One timer per worker, not one per request: it is only polled on the hot path.
    let end = tokio::time::sleep_until(deadline);
    tokio::pin!(end);
    'connections: while Instant::now() < deadline {
        let connected =
            tokio::time::timeout_at(deadline, open(&target.host_port, &target.options)).await;
        let stream = match connected {
            Ok(Ok((stream, _))) => stream,
            Ok(Err(_)) => {
                tally.errors += 1;
                // A refused connection must not turn into a busy loop.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => break,
        };
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await
        else {
            tally.errors += 1;
            continue;
        };
        let conn = tokio::spawn(conn);
        loop {
            if issued.fetch_add(1, Ordering::Relaxed) >= budget {
                conn.abort();
                break 'connections;
            }
            let request = build_request(&target, &load);
            let sent = Instant::now();
            let exchange = async {
                let response = sender.send_request(request).await?;
                let status = response.status();
                let closes = closes_connection(&response);
                let body = response.into_body().collect().await?;
                Ok::<_, hyper::Error>((status, body.to_bytes().len(), closes))
            };
            let outcome = tokio::select! {
                biased;
                outcome = exchange => Ok(outcome),
                () = &mut end => Err(()),
            };
            match outcome {
                Ok(Ok((status, len, closes))) => {
                    tally.latency.record(sent.elapsed());
                    tally.responses += 1;
                    progress.add(1);
                    tally.bytes += len as u64;
                    if !status.is_success() {
                        tally.non_2xx += 1;
                    }
                    // A server without keep-alive (HTTP/1.0, `Connection: close`) is not an
                    // error: open the next connection.
                    if closes {
                        continue 'connections;
                    }
                }
                Ok(Err(_)) => {
                    tally.errors += 1;
                    conn.abort();
                    continue 'connections;
                }
                // The deadline passed with this request in flight: it does not count.
                Err(_) => {
                    conn.abort();
                    break 'connections;
                }
            }
        }
    }
    tally
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
