//! `sockit connect`: an interactive, full-duplex TCP/UDP/TLS client.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use tracing::info;

use sockit::net::dial::Endpoint;
use sockit::net::echo::MAX_DATAGRAM_BYTES;
use sockit::net::relay::{RelayConfig, RelayEnd, relay};
use sockit::net::{DEFAULT_CONNECT_HOST, HostPort, bind_udp, open};

use crate::cli::Interrupted;
use crate::cli::output::{ClosingStdout, OutputError};

use crate::cli::args::{ClientTlsArgs, RouteArgs, TraceArgs, parse_duration};

/// Connect to ADDR; stdin goes to the peer and the peer's bytes to stdout, both at once.
///
/// Each direction runs until its own end: when stdin ends, sockit sends EOF to the peer (a
/// TCP half-close, TLS close_notify) and keeps printing; when the peer closes first, the rest
/// of stdin is still sent. sockit exits when both are done, or at the peer's close when stdin
/// is a terminal. Ctrl-C exits 130.
#[derive(Debug, Args)]
#[command(mut_arg("source", |a| a.short('s')))]
#[command(after_help = "Examples:
  sockit connect example.com:80             talk to a server by hand
  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | sockit connect example.com:80
  sockit connect --tls example.com:443      TLS, verified against the web PKI
  sockit connect --pin sha256:ab12… :8443   TLS to a self-signed server, pinned
  sockit connect --udp :9000                each stdin line is one datagram
  sockit connect --trace :8000 < req.bin    hexdump every byte both ways
  sockit connect unix:/run/app.sock         a Unix socket, like nc -U
  sockit connect --proxy socks5h://127.0.0.1:1080 example.com:80
  sockit connect -s 127.0.0.2 :8000         send from 127.0.0.2")]
pub(crate) struct ConnectArgs {
    /// Where to connect: HOST:PORT, [IPv6]:PORT, :PORT or PORT (localhost), or unix:PATH
    #[arg(value_name = "ADDR")]
    addr: Endpoint,
    /// Use UDP: each stdin line is one datagram, every reply is printed
    #[arg(short, long, conflicts_with_all = ["tls", "pin", "ca", "insecure"])]
    udp: bool,
    #[command(flatten)]
    tls: ClientTlsArgs,
    /// Give up connecting (and the TLS handshake) after this long
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
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

pub(crate) async fn run(args: ConnectArgs, stop: CancellationToken) -> anyhow::Result<()> {
    if args.udp {
        return run_udp(args, stop).await;
    }
    let mut options = args.tls.client_options(args.timeout, &args.trace)?;
    let target = match &args.addr {
        Endpoint::Tcp(addr) => addr.clone(),
        // The name TLS checks when none is given with --sni.
        Endpoint::Unix(_) => HostPort::new(Some(DEFAULT_CONNECT_HOST.to_owned()), 0),
    };
    options.dial = args.route.dial_options(&target)?;
    if let Endpoint::Unix(unix) = &args.addr {
        options.dial.unix_socket = Some(unix.clone());
    }
    // Resolve, connect and handshake all give way to Ctrl-C at once.
    let (stream, peer) = tokio::select! {
        opened = open(&target, &options) => opened?,
        _ = stop.cancelled() => return Err(Interrupted.into()),
    };
    info!(%peer, "connected");
    let config = RelayConfig {
        idle_timeout: args.idle_timeout,
        end_with_peer: std::io::stdin().is_terminal(),
        keep_write_open: args.no_shutdown,
    };
    let report = relay(
        stream,
        tokio::io::stdin(),
        ClosingStdout::new(),
        config,
        stop,
    )
    .await
    .with_context(|| format!("connection to {peer}"))?;
    if report.end == RelayEnd::Stopped {
        // The relay has already flushed stdout and sent its goodbye to the peer.
        return Err(Interrupted.into());
    }
    Ok(())
}

async fn run_udp(args: ConnectArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let Endpoint::Tcp(addr) = &args.addr else {
        anyhow::bail!("--udp needs HOST:PORT, not a Unix socket");
    };
    if args.route.proxy.is_some() || args.route.unix_socket.is_some() {
        anyhow::bail!("--udp goes direct: --proxy and --unix-socket are for TCP");
    }
    let peers = args.addr_family_filter(addr.resolve(DEFAULT_CONNECT_HOST).await?)?;
    let peer = peers[0];
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

    let mut stdin = BufReader::new(tokio::io::stdin());
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

impl ConnectArgs {
    /// Keeps the addresses of the family asked for with -4/-6.
    fn addr_family_filter(&self, addrs: Vec<SocketAddr>) -> anyhow::Result<Vec<SocketAddr>> {
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| (!self.route.ipv4 || a.is_ipv4()) && (!self.route.ipv6 || a.is_ipv6()))
            .collect();
        if kept.is_empty() {
            anyhow::bail!("{} has no address of the family asked for", self.addr);
        }
        Ok(kept)
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
