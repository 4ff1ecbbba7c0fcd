//! `sockit connect`: an interactive, full-duplex TCP/UDP/TLS client.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use tracing::info;

use sockit::net::crlf::CrlfReader;
use sockit::net::dial::Endpoint;
use sockit::net::echo::MAX_DATAGRAM_BYTES;
use sockit::net::relay::{RelayConfig, RelayEnd, relay};
use sockit::net::scan::{PortList, PortState, ScanConfig, scan};
use sockit::net::{DEFAULT_CONNECT_HOST, HostPort, bind_udp, open};

use crate::cli::output::{ClosingStdout, OutputError};
use crate::cli::{Interrupted, UsageError, hints};

use crate::cli::args::{AddrWord, ClientTlsArgs, RouteArgs, TraceArgs, parse_duration};
use crate::cli::output::Stdout;

/// Connect to ADDR (or HOST PORT); stdin goes to the peer and the peer's bytes to stdout,
/// both at once. With -z, probe ports instead and list the open ones.
///
/// Each direction runs until its own end: when stdin ends, sockit sends EOF to the peer (a
/// TCP half-close, TLS close_notify) and keeps printing; when the peer closes first, the rest
/// of stdin is still sent. sockit exits when both are done, or at the peer's close when stdin
/// is a terminal. Ctrl-C exits 130.
#[derive(Debug, Args)]
#[command(mut_arg("source", |a| a.short('s')))]
#[command(after_help = "Examples:
  sockit connect example.com:80             talk to a server by hand
  sockit connect example.com 80             the same, nc style
  sockit connect -C mail.test 25            send CRLF line endings (SMTP by hand)
  sockit connect -z 127.0.0.1 1-1024,8080   list the open ports (exit 1 when none is)
  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | sockit connect example.com:80
  sockit connect --tls example.com:443      TLS, verified against the web PKI
  sockit connect --pin sha256:ab12… :8443   TLS to a self-signed server, pinned
  sockit connect --udp :9000                each stdin line is one datagram
  sockit connect --trace :8000 < req.bin    hexdump every byte both ways
  sockit connect unix:/run/app.sock         a Unix socket, like nc -U
  sockit connect --proxy socks5h://127.0.0.1:1080 example.com:80
  sockit connect -s 127.0.0.2 :8000         send from 127.0.0.2")]
pub(crate) struct ConnectArgs {
    /// Where to connect: HOST:PORT, [IPv6]:PORT, :PORT or PORT (localhost), HOST with the
    /// port as the next argument, or unix:PATH
    #[arg(value_name = "ADDR")]
    addr: AddrWord,
    /// The port, when ADDR is a bare HOST (nc style); with -z, the ports to probe:
    /// 1-1024,8080
    #[arg(value_name = "PORT")]
    port: Option<String>,
    /// Probe the ports (PORT: a list and ranges) with a TCP connect and print the open
    /// ones on stdout, one `PORT open` line each; exit 1 when none is open (nc -z).
    /// -v also lists closed and filtered ports
    #[arg(short = 'z', long = "scan", conflicts_with_all = ["udp", "tls", "pin", "ca", "insecure", "no_shutdown", "crlf"])]
    scan: bool,
    /// -z: probes in flight at once (bounded by the open-files limit)
    #[arg(long, value_name = "N", default_value_t = 512, requires = "scan")]
    concurrency: usize,
    /// -z: print one JSON object instead of lines
    #[arg(long, requires = "scan")]
    json: bool,
    /// -z: probe every port with a full TCP connect, never with a raw SYN (which is used when
    /// the process may open raw sockets and the host is IPv4)
    #[arg(long, requires = "scan")]
    connect_scan: bool,
    /// Send CRLF line endings: each bare \n of stdin goes out as \r\n (nc -C)
    #[arg(short = 'C', long)]
    crlf: bool,
    /// Use UDP: each stdin line is one datagram, every reply is printed
    #[arg(short, long, conflicts_with_all = ["tls", "pin", "ca", "insecure"])]
    udp: bool,
    #[command(flatten)]
    tls: ClientTlsArgs,
    /// Give up connecting (and the TLS handshake) after this long [default: 10s, 1s per
    /// probe with -z]
    #[arg(long, visible_alias = "connect-timeout", value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Quit when nothing moves in either direction for this long
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// At stdin's end, wait for the peer to close before sending EOF (for nc -l / ncat -l
    /// peers, which quit at the first EOF and drop what they had left to send)
    #[arg(long)]
    no_shutdown: bool,
    /// UDP: after stdin ends, wait this long for more replies before exiting
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    linger: Duration,
    #[command(flatten)]
    trace: TraceArgs,
    #[command(flatten)]
    route: RouteArgs,
}

/// How long a connect may take unless `--timeout` says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn run(
    args: ConnectArgs,
    verbose: u8,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    if args.scan {
        return run_scan(args, verbose, stop).await;
    }
    let port = match &args.port {
        Some(word) => Some(word.parse::<u16>().map_err(|_| {
            UsageError(format!("invalid port {word:?} (1-65535; a list needs -z)").into())
        })?),
        None => None,
    };
    let endpoint = args.addr.endpoint(port)?;
    let addr = match &endpoint {
        Endpoint::Tcp(addr) => addr.clone(),
        Endpoint::Unix(_) if args.udp => anyhow::bail!("--udp needs HOST:PORT, not a Unix socket"),
        // The name TLS checks when none is given with --sni.
        Endpoint::Unix(_) => HostPort::new(Some(DEFAULT_CONNECT_HOST.to_owned()), 0),
    };
    if args.udp {
        return run_udp(args, addr, stop).await;
    }
    let mut options = args
        .tls
        .client_options(args.timeout.unwrap_or(CONNECT_TIMEOUT), &args.trace)?;
    options.dial = args.route.dial_options(&addr)?;
    if let Endpoint::Unix(unix) = endpoint {
        options.dial.unix_socket = Some(unix);
    }
    // Resolve, connect and handshake all give way to Ctrl-C at once.
    let (stream, peer) = tokio::select! {
        opened = open(&addr, &options) => match opened {
            Ok(opened) => opened,
            Err(err) => {
                let err = err.into();
                if options.tls.is_some() {
                    let name = args.tls.sni.as_deref().unwrap_or(addr.host_or(DEFAULT_CONNECT_HOST));
                    hints::after_failure(&err, &addr, &options.dial, name, true, "leave out --tls, --pin, --ca and -k", None).await;
                }
                return Err(err);
            }
        },
        _ = stop.cancelled() => return Err(Interrupted.into()),
    };
    info!(%peer, "connected");
    let config = RelayConfig {
        idle_timeout: args.idle_timeout,
        end_with_peer: std::io::stdin().is_terminal(),
        keep_write_open: args.no_shutdown,
    };
    let stdin: Box<dyn AsyncRead + Unpin + Send> = if args.crlf {
        Box::new(CrlfReader::new(tokio::io::stdin()))
    } else {
        Box::new(tokio::io::stdin())
    };
    let report = relay(stream, stdin, ClosingStdout::new(), config, stop)
        .await
        .with_context(|| format!("connection to {peer}"))?;
    if report.end == RelayEnd::Stopped {
        // The relay has already flushed stdout and sent its goodbye to the peer.
        return Err(Interrupted.into());
    }
    Ok(())
}

async fn run_udp(args: ConnectArgs, addr: HostPort, stop: CancellationToken) -> anyhow::Result<()> {
    if args.route.proxy.is_some() || args.route.unix_socket.is_some() {
        anyhow::bail!("--udp goes direct: --proxy and --unix-socket are for TCP");
    }
    // The route's overrides hold for datagrams too: --resolve, -4/-6.
    let peers = args.route.dial_without_proxy()?.resolve(&addr).await?;
    let peer = match args.route.source {
        Some(source) => peers
            .iter()
            .copied()
            .find(|p| p.is_ipv4() == source.is_ipv4())
            .unwrap_or(peers[0]),
        None => peers[0],
    };
    let local = match args.route.source {
        Some(ip) => SocketAddr::new(ip, 0),
        None if peer.is_ipv4() => SocketAddr::from(([0, 0, 0, 0], 0)),
        None => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = bind_udp(local).await?;
    socket
        .connect(peer)
        .await
        .with_context(|| format!("cannot reach {peer}"))?;
    info!(%peer, "sending datagrams");

    let stdin: Box<dyn AsyncRead + Unpin + Send> = if args.crlf {
        Box::new(CrlfReader::new(tokio::io::stdin()))
    } else {
        Box::new(tokio::io::stdin())
    };
    let mut stdin = BufReader::new(stdin);
    let mut stdout = tokio::io::stdout();
    let mut line = Vec::new();
    let mut reply = vec![0u8; MAX_DATAGRAM_BYTES + 1];
    let mut stdin_open = true;
    let linger = tokio::time::sleep(Duration::MAX);
    tokio::pin!(linger);
    let printed = |source| OutputError::Write {
        what: "the replies",
        source,
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Err(Interrupted.into()),
            read = stdin.read_until(b'\n', &mut line), if stdin_open => {
                if read.context("reading stdin")? == 0 {
                    stdin_open = false;
                    info!(linger = ?args.linger, "stdin ended; waiting for late replies");
                    linger.as_mut().reset(tokio::time::Instant::now() + args.linger);
                    continue;
                }
                send_datagram(&line, peer, socket.send(&line).await)?;
                line.clear();
            }
            received = socket.recv(&mut reply) => {
                let n = received.map_err(|e| refused(e, peer))?;
                stdout.write_all(&reply[..n]).await.map_err(printed)?;
                stdout.flush().await.map_err(printed)?;
                if !stdin_open {
                    linger.as_mut().reset(tokio::time::Instant::now() + args.linger);
                }
            }
            _ = &mut linger, if !stdin_open => return Ok(()),
        }
    }
}

/// Checks that one stdin line went out whole as one datagram: a line that cannot be sent
/// is an error, never a warning the script does not see.
pub(crate) fn send_datagram(
    line: &[u8],
    peer: SocketAddr,
    sent: std::io::Result<usize>,
) -> anyhow::Result<()> {
    if line.len() > MAX_DATAGRAM_BYTES {
        anyhow::bail!(
            "a line of {} bytes does not fit in one UDP datagram (at most {MAX_DATAGRAM_BYTES} \
             bytes); nothing of it was sent to {peer}",
            line.len()
        );
    }
    match sent {
        Ok(n) if n == line.len() => Ok(()),
        Ok(n) => anyhow::bail!("only {n} of {} bytes went out to {peer}", line.len()),
        Err(e) => Err(refused(e, peer)).with_context(|| format!("sending {} bytes", line.len())),
    }
}

/// An ICMP "port unreachable" reported on a connected UDP socket, named for what it means.
fn refused(error: std::io::Error, peer: SocketAddr) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::ConnectionRefused {
        anyhow::Error::new(error).context(format!(
            "no UDP service at {peer} (ICMP port unreachable); the datagrams were not delivered"
        ))
    } else {
        anyhow::Error::new(error).context(format!("UDP to {peer}"))
    }
}

/// How long one probe of `-z` waits unless `--timeout` says otherwise: a port that does
/// not answer within it counts as filtered.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// No port was open: nc's `-z` exits 1 then, and so does sockit.
#[derive(Debug, thiserror::Error)]
#[error("no open port among the {scanned} probed on {ip}")]
pub(crate) struct NoneOpen {
    scanned: usize,
    ip: std::net::IpAddr,
}

/// `-z HOST PORTS`: every port probed, the open ones printed in order.
async fn run_scan(args: ConnectArgs, verbose: u8, stop: CancellationToken) -> anyhow::Result<()> {
    let (host, spec) = match &args.port {
        Some(spec) => (args.addr.with_port(Some(1))?, spec.clone()),
        None => {
            let addr = args.addr.with_port(None).map_err(|_| {
                UsageError("-z needs HOST PORTS, e.g. sockit connect -z example.com 1-1024".into())
            })?;
            (addr.clone(), addr.port().to_string())
        }
    };
    let ports: PortList = spec.parse().map_err(|e| UsageError(Box::new(e)))?;
    // The probes are bare TCP connects from this host: a route they cannot take is refused,
    // never silently bypassed.
    let route = &args.route;
    for (is_set, flag) in [
        (
            route.proxy.as_deref().is_some_and(|p| !p.trim().is_empty()),
            "--proxy",
        ),
        (route.unix_socket.is_some(), "--unix-socket"),
        (!route.connect_to.is_empty(), "--connect-to"),
        (route.source.is_some(), "--source"),
    ] {
        if is_set {
            return Err(UsageError(
                format!("-z probes directly from this host; it cannot take {flag}").into(),
            )
            .into());
        }
    }
    let ip = route.dial_without_proxy()?.resolve(&host).await?[0].ip();
    let config = ScanConfig {
        concurrency: args.concurrency,
        timeout: args.timeout.unwrap_or(PROBE_TIMEOUT),
        syn: !args.connect_scan,
    };
    let started = std::time::Instant::now();
    let report = tokio::select! {
        report = scan(ip, &ports, &config) => report,
        _ = stop.cancelled() => return Err(Interrupted.into()),
    };
    info!(
        ports = ports.len(),
        concurrency = report.concurrency,
        method = report.method.name(),
        connect_probed = report.connect_probed,
        elapsed = ?started.elapsed(),
        "scan done"
    );
    let shown = |state: PortState| state == PortState::Open || verbose > 0;
    let text = if args.json {
        let mut object = serde_json::json!({
            "host": host.host_or(DEFAULT_CONNECT_HOST),
            "ip": ip.to_string(),
            "scanned": ports.len(),
            "method": report.method.name(),
            "open": report.open().collect::<Vec<_>>(),
            "closed": report.count(PortState::Closed),
            "filtered": report.count(PortState::Filtered),
            "unreachable": report.count(PortState::Unreachable),
            "failed": report.count(PortState::Failed),
            "elapsed_ms": started.elapsed().as_secs_f64() * 1000.0,
        });
        if verbose > 0 {
            object["ports"] = report
                .ports
                .iter()
                .map(|(port, state)| serde_json::json!({"port": port, "state": state.name()}))
                .collect();
        }
        format!("{object}\n")
    } else {
        let mut text = String::new();
        for (port, state) in report.ports.iter().filter(|(_, s)| shown(*s)) {
            text.push_str(&format!("{port} {}", state.name()));
            match state {
                PortState::Closed => text.push_str(" (connection refused)"),
                PortState::Filtered => text.push_str(&format!(
                    " (no answer in {}s)",
                    config.timeout.as_secs_f64()
                )),
                PortState::Unreachable => text.push_str(" (host or network unreachable)"),
                PortState::Failed => text.push_str(" (no socket: out of descriptors or ports)"),
                PortState::Open => {}
            }
            text.push('\n');
        }
        text
    };
    Stdout::open("the scan results")?.write_all(text.as_bytes())?;
    if report.open().next().is_none() {
        return Err(NoneOpen {
            scanned: ports.len(),
            ip,
        }
        .into());
    }
    Ok(())
}
