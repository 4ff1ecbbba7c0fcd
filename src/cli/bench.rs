//! `sockit bench`: load generators with latency percentiles.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use sockit::bench::{Progress, Report, chat, echo, http};
use sockit::net::dial::Endpoint;
use sockit::net::{DEFAULT_CONNECT_HOST, DialOptions, HostPort};

use crate::cli::args::{AddrWord, RouteArgs, parse_bytes, parse_duration};
use crate::cli::output::{self, say_partial};

/// Measure a server: requests or round trips per second, latency percentiles, errors.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    mode: BenchMode,
    /// Print the result as JSON (for scripts)
    #[arg(long, global = true)]
    json: bool,
    /// Also list these latency percentiles, e.g. 50,90,99,99.9,99.99
    #[arg(long, global = true, value_name = "LIST", value_delimiter = ',', value_parser = parse_percentile)]
    percentiles: Vec<f64>,
    /// Write the latencies as an HdrHistogram interval log (one interval per second)
    #[arg(long, global = true, value_name = "FILE")]
    hdr_log: Option<std::path::PathBuf>,
    /// Write latency over time (p50, p99, max per second) as an SVG image
    #[arg(long, global = true, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
}

fn parse_percentile(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!("{text:?} is not a percentile between 0 and 100")),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!(
            "{text:?} is not a rate above 0 (operations per second)"
        )),
    }
}

#[derive(Debug, Subcommand)]
enum BenchMode {
    /// Load an echo server: round trips (-c, -n, --size), one --stream, or --udp datagrams
    #[command(after_help = "Examples:
  sockit bench echo :9000 -c 1000 -n 100 --size 64     round trips/s, p50/p99
  sockit bench echo :9000 --stream 512MiB              full-duplex MB/s
  sockit bench echo :9000 --udp -n 200000 --window 32  datagrams/s, lost, boundaries
  sockit bench echo :9000 -c 10 --rate 5000 -d 10s      open loop: latency from due time
  sockit bench echo --proxy socks5h://127.0.0.1:1080 host:9000   through a SOCKS5 proxy")]
    Echo(EchoArgs),
    /// Load an HTTP server with keep-alive requests (like wrk), or HTTP/2 streams (like h2load)
    #[command(after_help = "Examples:
  sockit bench http http://127.0.0.1:8080/ -c 64 -d 10s      requests/s, latency, errors
  sockit bench http :8080/index.html -n 100000 -t 2          a fixed number of requests
  sockit bench http :8080/api -H 'Authorization: Bearer x' --method POST --body '{}'
  sockit bench http :8080/ -c 16 --rate 2000 -d 30s --plot lat.svg   open loop, like wrk2
  sockit bench http https://127.0.0.1:8443/ --h2 -c 64 -m 10 -d 10s  HTTP/2, like h2load")]
    Http(Box<HttpArgs>),
    /// Load a chat server: N clients in a room, K senders; lost, duplicated, reordered lines
    #[command(after_help = "Examples:
  sockit bench chat :7777 --clients 100 --senders 10 --messages 1000        flat out
  sockit bench chat :7777 --clients 500 --rate 1000 --messages 300          paced, 1000 lines/s
  sockit bench chat :7777 --ws --clients 1000                               browsers: WebSocket /ws
  sockit bench chat :8080 --ws-raw --ws-path /                              a generic broadcast server
  sockit bench chat :7777 --ws --clients 10000 --idle 10s                   hold idle clients (memory)
  sockit bench chat :7777 --json                                            for scripts
  sockit bench chat :7777 --server-pid 4242                                 the server's CPU beside the generator's
  sockit bench chat --proxy socks5h://127.0.0.1:1080 host:7777              through a proxy")]
    Chat(ChatBenchArgs),
}

#[derive(Debug, Args)]
struct HttpArgs {
    /// The URL: http://…, https://… (not verified), or :PORT/path for localhost
    url: String,
    /// Concurrent keep-alive connections
    #[arg(short = 'c', long, default_value_t = 64)]
    connections: usize,
    /// Run for this long
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// Stop after this many requests in all
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Worker threads generating the load (default: one per core)
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Extra request header, e.g. -H 'Accept: text/html' (repeatable)
    #[arg(short = 'H', long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Request method
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request body
    #[arg(long, default_value = "")]
    body: String,
    /// Give up after this long whatever -d or -n say
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    limit: Duration,
    /// A request without an answer after this long counts as timed out
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Requests per second in all (open loop: latency timed from when each was due)
    #[arg(short = 'R', long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Speak HTTP/2: ALPN h2 over https://, prior knowledge over http://
    #[arg(long)]
    h2: bool,
    /// With --h2: concurrent streams per connection (like h2load -m)
    #[arg(short = 'm', long = "streams", value_name = "STREAMS", default_value_t = 1,
          requires = "h2", value_parser = clap::value_parser!(u32).range(1..))]
    streams: u32,
    #[command(flatten)]
    route: RouteArgs,
}

impl HttpArgs {
    fn into_load(self) -> anyhow::Result<(http::HttpLoad, Option<usize>)> {
        let url = sockit::http::target_url(&self.url, "http")?;
        let mut headers = Vec::new();
        for h in &self.headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("invalid header {h:?}: expected NAME:VALUE"))?;
            headers.push((
                ::http::HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| anyhow::anyhow!("invalid header name in {h:?}"))?,
                ::http::HeaderValue::from_str(value.trim())
                    .map_err(|_| anyhow::anyhow!("invalid header value in {h:?}"))?,
            ));
        }
        let stop = match (self.duration, self.requests) {
            (_, Some(n)) => http::Stop::Requests(n),
            (Some(d), None) => http::Stop::After(d),
            (None, None) => http::Stop::After(Duration::from_secs(10)),
        };
        let host = url.host_str().unwrap_or(DEFAULT_CONNECT_HOST);
        let dial = self
            .route
            .dial_options(&HostPort::new(Some(host.to_owned()), 0))?;
        let method = ::http::Method::from_bytes(self.method.as_bytes())
            .map_err(|_| anyhow::anyhow!("invalid method {:?}", self.method))?;
        Ok((
            http::HttpLoad {
                url,
                connections: self.connections.max(1),
                stop,
                method,
                headers,
                body: self.body.into(),
                limit: self.limit,
                timeout: self.timeout,
                rate: self.rate,
                protocol: if self.h2 {
                    http::Protocol::Http2 {
                        streams: self.streams as usize,
                    }
                } else {
                    http::Protocol::Http1
                },
                dial,
            },
            self.threads,
        ))
    }
}

#[derive(Debug, Args)]
struct ChatBenchArgs {
    /// The chat server: HOST:PORT, [IPv6]:PORT, :PORT or PORT, or HOST PORT; several
    /// (nodes of one cluster) share the clients in turn
    #[arg(value_name = "ADDR", required = true, num_args = 1..)]
    addrs: Vec<AddrWord>,
    /// Clients connected at once (senders included)
    #[arg(short = 'c', long, default_value_t = 100)]
    clients: usize,
    /// How many clients send
    #[arg(short = 's', long, default_value_t = 10)]
    senders: usize,
    /// Lines per sender
    #[arg(short = 'n', long, default_value_t = 1000)]
    messages: u64,
    /// Lines per second from all senders together (0: flat out); paced lines carry their
    /// due time, so latency is timed from it
    #[arg(short = 'r', long, default_value_t = 0.0)]
    rate: f64,
    /// Bytes per line (at least 46: start mark and token)
    #[arg(long, default_value = "64", value_parser = parse_bytes)]
    size: usize,
    /// A line every client sends first, e.g. "PASS secret"
    #[arg(long, value_name = "LINE")]
    greeting: Option<String>,
    /// Give up (and report what arrived) after this long
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    limit: Duration,
    /// Clients are browsers: a WebSocket to a sockit chat (`say` requests out, `message`
    /// events in)
    #[arg(long, conflicts_with = "ws_raw")]
    ws: bool,
    /// Clients speak WebSocket to a generic broadcast server: each line goes out as a text
    /// frame, and every frame that comes back is a line
    #[arg(long)]
    ws_raw: bool,
    /// The WebSocket's path (default /ws with --ws, / with --ws-raw)
    #[arg(long, value_name = "PATH")]
    ws_path: Option<String>,
    /// Send nothing: hold the clients connected and silent this long, then report how many
    /// the server kept (watch its memory meanwhile)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    idle: Option<Duration>,
    /// Also report the CPU time of this process (the server) over the measured part, beside
    /// the generator's own: the side near a whole core set the rate (Linux)
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    #[command(flatten)]
    route: RouteArgs,
}

impl ChatBenchArgs {
    fn transport(&self) -> anyhow::Result<chat::Transport> {
        let path = |default: &str| {
            let path = self.ws_path.clone().unwrap_or_else(|| default.to_owned());
            if path.starts_with('/') {
                Ok(path)
            } else {
                Err(anyhow::anyhow!(
                    "invalid --ws-path {path:?}: a path starts with /"
                ))
            }
        };
        Ok(if self.ws {
            chat::Transport::ChatWebSocket { path: path("/ws")? }
        } else if self.ws_raw {
            chat::Transport::RawWebSocket { path: path("/")? }
        } else if self.ws_path.is_some() {
            anyhow::bail!("--ws-path needs --ws or --ws-raw");
        } else {
            chat::Transport::Lines
        })
    }
}

#[derive(Debug, Args)]
struct EchoArgs {
    /// The echo server: HOST:PORT, [IPv6]:PORT, :PORT or PORT, or HOST PORT, or unix:PATH
    addr: AddrWord,
    /// The port, when ADDR is a bare HOST (nc style)
    #[arg(value_name = "PORT")]
    port: Option<u16>,
    /// Concurrent connections
    #[arg(short = 'c', long, default_value_t = 100)]
    connections: usize,
    /// Round trips per connection (with --udp: datagrams in all); default 100, or no cap
    /// with -d
    #[arg(short = 'n', long)]
    round_trips: Option<u64>,
    /// Run round trips for this long
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = parse_duration, conflicts_with_all = ["stream", "udp"])]
    duration: Option<Duration>,
    /// Round trips per second in all (open loop: latency timed from when each was due);
    /// runs for -d (default 10s)
    #[arg(short = 'R', long, value_parser = parse_rate, conflicts_with_all = ["stream", "udp"])]
    rate: Option<f64>,
    /// Bytes per message or datagram
    #[arg(long, default_value = "64", value_parser = parse_bytes)]
    size: usize,
    /// Instead of round trips, push this many bytes through one connection, both ways at once
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, conflicts_with = "udp")]
    stream: Option<usize>,
    /// Use UDP datagrams
    #[arg(short, long)]
    udp: bool,
    /// UDP datagrams in flight at once
    #[arg(long, default_value_t = 32, requires = "udp")]
    window: usize,
    /// Give up (and fail) if the run takes longer than this
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    limit: Duration,
    /// A round trip not echoed after this long counts as timed out
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    route: RouteArgs,
}

pub(crate) async fn run(args: BenchArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let progress = Progress::new();
    let started = std::time::SystemTime::now();
    let ticker = live_progress(progress.clone(), args.mode.unit());
    let report = match args.mode {
        BenchMode::Echo(echo_args) => {
            let (target, route) = echo_args.target()?;
            let load = if let Some(bytes) = echo_args.stream {
                echo::EchoLoad::Stream {
                    bytes: bytes as u64,
                }
            } else if echo_args.udp {
                echo::EchoLoad::Udp {
                    datagrams: echo_args.round_trips.unwrap_or(100),
                    window: echo_args.window,
                    size: echo_args.size,
                }
            } else {
                let duration = match (echo_args.duration, echo_args.rate) {
                    (None, Some(_)) if echo_args.round_trips.is_none() => {
                        Some(Duration::from_secs(10))
                    }
                    (duration, _) => duration,
                };
                let cap = if duration.is_some() { u64::MAX } else { 100 };
                echo::EchoLoad::RoundTrips {
                    connections: echo_args.connections,
                    round_trips: echo_args.round_trips.unwrap_or(cap),
                    size: echo_args.size,
                    timeout: echo_args.timeout,
                    rate: echo_args.rate,
                    duration,
                }
            };
            tokio::select! {
                report = echo::run_via(&target, &route, &load, echo_args.limit, &progress) => report?,
                _ = stop.cancelled() => anyhow::bail!("interrupted"),
            }
        }
        BenchMode::Http(http_args) => {
            let (load, threads) = http_args.into_load()?;
            let run = async move {
                match threads {
                    // A runtime of its own, so -t sets exactly how many threads make load
                    // (with -t 1 the single-threaded scheduler, as on one usable core).
                    Some(threads) => {
                        tokio::task::spawn_blocking(move || {
                            crate::cli::runtime(threads)
                                .map_err(anyhow::Error::from)
                                .and_then(|rt| Ok(rt.block_on(http::run(load, &progress))?))
                        })
                        .await?
                    }
                    None => Ok(http::run(load, &progress).await?),
                }
            };
            tokio::select! {
                report = run => report?,
                _ = stop.cancelled() => anyhow::bail!("interrupted"),
            }
        }
        BenchMode::Chat(chat_args) => {
            let addrs: Vec<HostPort> = chat_addresses(&chat_args.addrs)?
                .into_iter()
                .map(|addr| addr.with_default_host(DEFAULT_CONNECT_HOST))
                .collect();
            // One route for every node; --noproxy is checked against the first.
            let route = chat_args.route.dial_options(&addrs[0])?;
            let load = chat::ChatLoad {
                transport: chat_args.transport()?,
                idle: chat_args.idle,
                clients: chat_args.clients,
                senders: chat_args.senders,
                messages: chat_args.messages,
                rate: chat_args.rate,
                size: chat_args.size,
                greeting: chat_args.greeting,
                server_pid: chat_args.server_pid,
                ..chat::ChatLoad::default()
            };
            tokio::select! {
                report = chat::run_via(&addrs, &route, &load, chat_args.limit, &progress) => report?,
                _ = stop.cancelled() => anyhow::bail!("interrupted"),
            }
        }
    };
    if let Some(ticker) = ticker {
        ticker.abort();
        say_partial(format_args!("\r\x1b[2K"));
    }
    let report = report.with_percentiles(&args.percentiles);
    if let Some(path) = &args.hdr_log {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        report
            .write_hdr_log(&mut file, started)
            .and_then(|()| std::io::Write::flush(&mut file))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, report.svg())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print_report(&report, args.json)?;
    // The report is out either way; the exit code says whether the server did the job.
    if !report.is_clean() {
        anyhow::bail!("the server failed the run: {}", report.problems.join("; "));
    }
    Ok(())
}

impl EchoArgs {
    /// The echo server and the route to it (a `unix:` address is a Unix socket).
    fn target(&self) -> anyhow::Result<(HostPort, DialOptions)> {
        match self.addr.endpoint(self.port)? {
            Endpoint::Tcp(target) => {
                let route = self.route.dial_options(&target)?;
                Ok((target, route))
            }
            Endpoint::Unix(unix) => {
                let mut route = self.route.dial_without_proxy()?;
                route.unix_socket = Some(unix);
                Ok((
                    HostPort::new(Some(DEFAULT_CONNECT_HOST.to_owned()), 0),
                    route,
                ))
            }
        }
    }
}

impl BenchMode {
    /// What the live progress line counts.
    fn unit(&self) -> &'static str {
        match self {
            BenchMode::Echo(a) if a.stream.is_some() => "bytes echoed",
            BenchMode::Echo(a) if a.udp => "datagrams",
            BenchMode::Echo(_) => "round trips",
            BenchMode::Http(_) => "responses",
            BenchMode::Chat(a) if a.idle.is_some() => "clients",
            BenchMode::Chat(_) => "deliveries",
        }
    }
}

/// On a terminal, a line on stderr that shows the count and rate twice a second.
fn live_progress(progress: Progress, unit: &'static str) -> Option<tokio::task::JoinHandle<()>> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let secs = start.elapsed().as_secs_f64();
            let done = progress.get();
            say_partial(format_args!(
                "\r\x1b[2K{secs:6.1} s  {done} {unit}  ({:.0}/s)",
                done as f64 / secs.max(1e-3)
            ));
        }
    }))
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    let text = if json {
        serde_json::to_string(report)? + "\n"
    } else {
        report.table()
    };
    Ok(output::print("the report", text.as_bytes())?)
}

/// The chat servers named by `words`: each an address, or a bare HOST followed by its PORT
/// (nc style).
fn chat_addresses(words: &[AddrWord]) -> anyhow::Result<Vec<HostPort>> {
    let mut addrs = Vec::with_capacity(words.len());
    let mut words = words.iter().peekable();
    while let Some(word) = words.next() {
        let addr = match word.with_port(None) {
            Ok(addr) => addr,
            Err(no_port) => match words.peek().map(|next| next.as_str().parse::<u16>()) {
                Some(Ok(port)) => {
                    words.next();
                    word.with_port(Some(port))?
                }
                _ => return Err(no_port),
            },
        };
        addrs.push(addr);
    }
    Ok(addrs)
}
