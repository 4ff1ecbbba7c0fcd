//! `sockit listen`: a TCP/UDP server that prints, echoes, greets or keeps open.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use tracing::info;

use sockit::net::dial::Endpoint;
use sockit::net::echo::{self, ServiceConfig, Template, UdpReply};
use sockit::net::keep_open::{KeepOpenConfig, keep_open};
use sockit::net::proxy::Credentials;
use sockit::net::relay::{RelayConfig, relay};
use sockit::net::socks_server::{SocksConfig, serve_socks5};
use sockit::net::unix::bind_unix;
use sockit::net::{Listener, ServerConfig, bind_tcp, bind_udp, secure, serve};

use crate::cli::args::{
    AddrWord, BindArgs, ServerTlsArgs, TraceArgs, announce, parse_bytes, parse_duration,
};
use crate::cli::connect::send_datagram;
use crate::cli::output::{ClosingStdout, OutputError, say};

/// Listen for connections. By default: one peer, stdin to it and its bytes to stdout (nc -l).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  sockit listen 9000                        one peer, like nc -l (127.0.0.1:9000)
  sockit listen 9000 --keep-open            many peers; stdin goes to all of them
  sockit listen --port 0 --echo             concurrent echo server on a free port
  sockit listen 9000 --greet 'hello {}'     answer each line with a template
  sockit listen 9000 --udp --echo           UDP echo for any number of peers
  sockit listen 9443 --tls --echo           TLS with a fresh self-signed certificate
  sockit listen 0.0.0.0:9000                accept other machines too
  sockit listen unix:/tmp/app.sock          a Unix socket, like nc -lU
  sockit listen 1080 --socks5 --auth u:pw   a SOCKS5 proxy for this machine")]
pub(crate) struct ListenArgs {
    /// Where to listen: PORT, :PORT, IP:PORT or [IPv6]:PORT (default 127.0.0.1, port 0), or
    /// unix:PATH (unix:@NAME: a Linux abstract socket), or IP PORT
    #[arg(value_name = "ADDR")]
    addr: Option<AddrWord>,
    /// The port, when ADDR is a bare IP (nc style: listen 127.0.0.1 9000)
    #[arg(value_name = "PORT", requires = "addr")]
    port_word: Option<u16>,
    #[command(flatten)]
    bind: BindArgs,
    /// Keep accepting peers; their data is printed tagged with their address when several are
    /// connected; stdin goes to every peer (read only while one is connected), then EOF
    #[arg(short, long)]
    keep_open: bool,
    /// Echo every byte back to its sender (many peers at once)
    #[arg(short, long, conflicts_with = "greet")]
    echo: bool,
    /// Answer each received line with TEMPLATE, `{}` replaced by the line (many peers at once)
    #[arg(short, long, value_name = "TEMPLATE")]
    greet: Option<String>,
    /// Use UDP: one socket serves every peer
    #[arg(short, long, conflicts_with_all = ["tls", "cert", "identity_file"])]
    udp: bool,
    /// Most connections served at once; more are closed on arrival
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_conns: usize,
    /// Close a connection after this long without data
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// At stdin's end, wait for the peer to close before sending EOF (for nc -l / ncat -l
    /// peers, which quit at the first EOF and drop what they had left to send)
    #[arg(long)]
    no_shutdown: bool,
    /// Longest line --greet answers; longer ones get an error line
    #[arg(long, value_name = "BYTES", default_value = "64KiB", value_parser = parse_bytes)]
    max_line: usize,
    #[command(flatten)]
    tls: ServerTlsArgs,
    #[command(flatten)]
    trace: TraceArgs,
    /// Be a SOCKS5 proxy (CONNECT only; many clients at once)
    #[arg(long, conflicts_with_all = ["echo", "greet", "udp", "keep_open", "tls", "cert", "identity_file"])]
    socks5: bool,
    /// With --socks5: require this user name and password (RFC 1929)
    #[arg(long, value_name = "USER:PASS", requires = "socks5")]
    auth: Option<String>,
}

pub(crate) async fn run(args: ListenArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let endpoint = match &args.addr {
        Some(word) => Some(word.endpoint(args.port_word)?),
        None => None,
    };
    let tcp_addr = match &endpoint {
        Some(Endpoint::Unix(unix)) => {
            if args.udp || args.keep_open {
                anyhow::bail!("--udp and --keep-open need an IP address, not a Unix socket");
            }
            if args.tls.is_on() {
                anyhow::bail!("--tls over a Unix socket is not supported; listen on an IP address");
            }
            let listener = bind_unix(unix)?;
            say(format_args!("sockit listen listening on {unix}"));
            return serve_stream(args, listener.into(), None, stop).await;
        }
        Some(Endpoint::Tcp(addr)) => Some(addr),
        None => None,
    };
    let addr = args.bind.resolve(tcp_addr, 0)?;
    if args.udp {
        let socket = bind_udp(addr).await?;
        announce("listen", socket.local_addr()?, None);
        let reply = match (&args.greet, args.echo) {
            (Some(template), _) => UdpReply::Greet(Template::new(template)),
            (None, true) => UdpReply::Echo,
            (None, false) => return udp_print(socket, stop).await,
        };
        echo::serve_udp(socket, reply, stop).await;
        return Ok(());
    }

    let identity = args.tls.identity(addr, &[])?;
    let listener = bind_tcp(addr)?;
    announce("listen", listener.local_addr()?, identity.as_ref());
    if args.keep_open {
        let server = ServerConfig {
            max_conns: args.max_conns,
            tls: identity.map(|id| id.config),
            trace: args.trace.sink(),
            ..ServerConfig::default()
        };
        let config = KeepOpenConfig {
            end_with_peer: std::io::stdin().is_terminal(),
            keep_write_open: args.no_shutdown,
        };
        return keep_open(
            listener,
            server,
            config,
            tokio::io::stdin(),
            tokio::io::stdout(),
            stop,
        )
        .await
        .map_err(Into::into);
    }
    serve_stream(args, listener.into(), identity, stop).await
}

/// Serves a stream listener (TCP or Unix) in the mode the flags pick: SOCKS5, echo, greet or
/// one peer relayed to stdin/stdout.
async fn serve_stream(
    args: ListenArgs,
    listener: Listener,
    identity: Option<sockit::net::tls::ServerIdentity>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let service = ServiceConfig {
        idle_timeout: args.idle_timeout,
        max_line_bytes: args.max_line,
    };
    let server = ServerConfig {
        max_conns: args.max_conns,
        tls: identity.map(|id| id.config),
        trace: args.trace.sink(),
        ..ServerConfig::default()
    };

    if args.socks5 {
        let credentials = match &args.auth {
            Some(auth) => {
                let (user, password) = auth.split_once(':').context("--auth takes USER:PASS")?;
                if user.len() > 255 || password.len() > 255 {
                    anyhow::bail!("SOCKS5 user names and passwords are at most 255 bytes");
                }
                Some(Credentials {
                    user: user.to_owned(),
                    password: password.to_owned(),
                })
            }
            None => None,
        };
        let config = Arc::new(SocksConfig {
            credentials,
            idle_timeout: args.idle_timeout,
            ..SocksConfig::default()
        });
        serve(listener, server, stop, move |stream, peer, stop| {
            let config = config.clone();
            async move { serve_socks5(stream, peer, &config, stop).await }
        })
        .await;
    } else if args.echo {
        let service = Arc::new(service);
        serve(listener, server, stop, move |stream, _, stop| {
            let service = service.clone();
            async move { echo::echo(stream, &service, stop).await }
        })
        .await;
    } else if let Some(template) = &args.greet {
        let template = Template::new(template);
        let service = Arc::new(service);
        serve(listener, server, stop, move |stream, _, stop| {
            let (template, service) = (template.clone(), service.clone());
            async move { echo::greet(stream, &template, &service, stop).await }
        })
        .await;
    } else {
        // One peer, like `nc -l`: accept, stop listening, relay until both sides are done.
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            conn = listener.accept() => conn,
        };
        drop(listener);
        info!(%peer, "peer connected");
        let handshake = secure(
            tcp,
            peer,
            server.tls.as_ref(),
            &server.trace,
            server.handshake_timeout,
        );
        let stream = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            stream = handshake => stream?,
        };
        let config = RelayConfig {
            idle_timeout: args.idle_timeout,
            end_with_peer: std::io::stdin().is_terminal(),
            keep_write_open: args.no_shutdown,
        };
        relay(
            stream,
            tokio::io::stdin(),
            ClosingStdout::new(),
            config,
            stop,
        )
        .await
        .with_context(|| format!("connection from {peer}"))?;
    }
    Ok(())
}

/// UDP without --echo/--greet: print every datagram; stdin lines go to the latest sender.
/// Stdin is not read before a peer has sent something, so lines wait (in the pipe or the
/// terminal) for someone to receive them instead of being dropped.
async fn udp_print(socket: tokio::net::UdpSocket, stop: CancellationToken) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; echo::MAX_DATAGRAM_BYTES + 1];
    let mut line = Vec::new();
    let mut latest = None;
    let mut stdin_open = true;
    let printed = |source| OutputError::Write {
        what: "the datagrams received",
        source,
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            received = socket.recv_from(&mut buf) => {
                let Ok((n, peer)) = received else { continue };
                if latest != Some(peer) {
                    info!(%peer, "datagrams from a new peer");
                    latest = Some(peer);
                }
                stdout.write_all(&buf[..n]).await.map_err(printed)?;
                stdout.flush().await.map_err(printed)?;
            }
            read = stdin.read_until(b'\n', &mut line), if stdin_open && latest.is_some() => {
                if read.context("reading stdin")? == 0 {
                    stdin_open = false;
                    info!("stdin ended; still printing datagrams");
                    continue;
                }
                let peer = latest.expect("stdin is read only once a peer is known");
                send_datagram(&line, peer, socket.send_to(&line, peer).await)?;
                line.clear();
            }
        }
    }
}
