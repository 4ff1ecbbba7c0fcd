//! `sockit chat serve` and `sockit chat join`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use sockit::chat::client::{self, JoinConfig, JoinError};
use sockit::chat::{self, Config, Password, QueueLimits};
use sockit::net::dial::UnixAddr;
use sockit::net::unix::bind_unix;
use sockit::net::{HostPort, Listener, ServerConfig, bind_tcp, open};

use crate::cli::args::{
    AddrWord, BindArgs, ClientTlsArgs, RouteArgs, ServerTlsArgs, TraceArgs, announce, parse_bytes,
    parse_duration,
};
use crate::cli::output::{OutputError, TaggedStdout, say};

/// Multi-user chat: a server that nc and telnet can join, and a terminal client.
#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    #[command(subcommand)]
    command: ChatCommand,
}

#[derive(Debug, Subcommand)]
enum ChatCommand {
    /// Run a chat server (rooms, nicknames, history); any line client can join
    #[command(after_help = "Examples:
  sockit chat serve                          port 7777 on 127.0.0.1; join with nc 127.0.0.1 7777
  sockit chat serve --bind 0.0.0.0 --password s3cret
  sockit chat serve --tls --db chat.db       TLS, history kept across restarts
  sockit chat serve --port 0 --rate 0        free port, no flood control")]
    Serve(ServeArgs),
    /// Join a chat server: messages arrive while you type
    #[command(after_help = "Examples:
  sockit chat join :7777 --nick alice
  sockit chat join chat.example:7777 --tls --nick bob
  sockit chat join :7777 --pin sha256:ab12… --nick carol
  printf 'hello\\n' | sockit chat join :7777 --nick bot   one line, then quit")]
    Join(JoinArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    bind: BindArgs,
    /// Clients must send `PASS <password>` as their first line
    #[arg(long, value_name = "PASSWORD")]
    password: Option<String>,
    /// Lines of history kept per room and replayed on join (0: none)
    #[arg(long, value_name = "N", default_value_t = chat::DEFAULT_HISTORY_LINES)]
    history: usize,
    /// Keep history in this SQLite file, across restarts
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// Longest line accepted; longer ones are refused with a notice
    #[arg(long, value_name = "BYTES", default_value = "8KiB", value_parser = parse_bytes)]
    max_line: usize,
    /// Most clients at once; more are closed on arrival
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_clients: usize,
    /// Flood control: lines per second per client once its burst is spent (0: unlimited);
    /// a faster client is slowed down (the server stops reading it), never cut short
    #[arg(long, value_name = "MSGS/SEC", default_value_t = chat::DEFAULT_RATE)]
    rate: f64,
    /// Flood control: lines a client may send at once before --rate applies
    #[arg(long, value_name = "LINES", default_value_t = chat::DEFAULT_BURST)]
    burst: f64,
    /// Bytes queued for one client before it is dropped as too slow (nobody waits for it);
    /// each queued read counts 64 bytes more, so many tiny lines count what they hold
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = parse_bytes)]
    queue_bytes: usize,
    /// Show clients' IP addresses in join notices
    #[arg(long)]
    show_addrs: bool,
    /// Announce joins and leaves only in rooms of at most N members
    #[arg(long, value_name = "N", default_value_t = chat::hub::DEFAULT_ANNOUNCE_LIMIT)]
    announce_limit: usize,
    /// Take part from this terminal: see the chat, post as `server`
    #[arg(long)]
    console: bool,
    /// Also serve the browser page and its WebSocket (no line chat) on this address
    #[arg(long, value_name = "ADDR")]
    web: Option<HostPort>,
    /// Allow WebSocket connections from pages of this origin too (e.g. https://chat.example);
    /// by default only the chat's own page may connect; repeatable
    #[arg(long, value_name = "ORIGIN")]
    web_origin: Vec<String>,
    /// Share every room with other nodes through Redis: redis://[:PASSWORD@]HOST:PORT[/DB],
    /// rediss://… (TLS) or unix:/PATH
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// This node's name in the cluster (default: host name and port)
    #[arg(long, value_name = "NAME", requires = "cluster")]
    node: Option<String>,
    /// Lines kept while Redis is unreachable; past them senders are slowed, never dropped
    #[arg(long, value_name = "N", default_value_t = 10_000, requires = "cluster")]
    cluster_queue: usize,
    /// CA certificate(s), PEM, that a `rediss://` cluster's certificate must chain to
    #[arg(long, value_name = "FILE", requires = "cluster")]
    cluster_cacert: Option<PathBuf>,
    /// Let members ask /stats: the node's and the broker's health
    #[arg(long)]
    stats: bool,
    /// On stop, how long clients get to receive their last lines
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    drain: Duration,
    #[command(flatten)]
    tls: ServerTlsArgs,
    #[command(flatten)]
    trace: TraceArgs,
}

#[derive(Debug, Args)]
struct JoinArgs {
    /// The server: HOST:PORT, [IPv6]:PORT, :PORT or PORT (localhost), or HOST PORT
    #[arg(value_name = "ADDR")]
    addr: AddrWord,
    /// The port, when ADDR is a bare HOST (nc style)
    #[arg(value_name = "PORT")]
    port: Option<u16>,
    /// Your nickname
    #[arg(short, long)]
    nick: Option<String>,
    /// Room to join (default lobby)
    #[arg(short, long)]
    room: Option<String>,
    /// Server password (sent as `PASS …`)
    #[arg(long, value_name = "PASSWORD")]
    password: Option<String>,
    #[command(flatten)]
    tls: ClientTlsArgs,
    /// Give up connecting after this long
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    trace: TraceArgs,
    #[command(flatten)]
    route: RouteArgs,
}

impl TryFrom<&ServeArgs> for Config {
    type Error = anyhow::Error;

    fn try_from(args: &ServeArgs) -> anyhow::Result<Self> {
        if !(args.rate >= 0.0 && args.rate.is_finite()) {
            anyhow::bail!("--rate must be zero or a positive number");
        }
        if !(args.burst >= 1.0 && args.burst.is_finite()) {
            anyhow::bail!("--burst must be at least 1");
        }
        if args.max_line == 0 {
            anyhow::bail!("--max-line must be at least 1");
        }
        Ok(Config {
            server: ServerConfig {
                max_conns: args.max_clients,
                drain_timeout: args.drain,
                trace: args.trace.sink(),
                ..ServerConfig::default()
            },
            password: args.password.clone().map(Password),
            history_lines: args.history,
            db: args.db.clone(),
            max_line_bytes: args.max_line,
            rate: args.rate,
            burst: args.burst,
            queue: QueueLimits {
                max_bytes: args.queue_bytes.max(args.max_line + 64),
            },
            show_addrs: args.show_addrs,
            announce_limit: args.announce_limit,
            web_origins: args.web_origin.clone(),
            stats: args.stats,
            ..Config::default()
        })
    }
}

pub(crate) async fn run(args: ChatArgs, stop: CancellationToken) -> anyhow::Result<()> {
    match args.command {
        ChatCommand::Serve(args) => serve(args, stop).await,
        ChatCommand::Join(args) => join(args, stop).await,
    }
}

async fn serve(args: ServeArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let mut config = Config::try_from(&args)?;
    let unix = UnixAddr::parse_prefixed(&args.bind.bind);
    let addr = match &unix {
        Some(_) if args.tls.is_on() => {
            anyhow::bail!("--tls over a Unix socket is not supported")
        }
        Some(_) => None,
        None => Some(args.bind.resolve(None, chat::DEFAULT_PORT)?),
    };
    let identity = match addr {
        Some(addr) => args.tls.identity(addr, &[])?,
        None => None,
    };
    config.server.tls = identity.as_ref().map(|id| id.config.clone());
    let listener: Listener = match (&unix, addr) {
        (Some(unix), _) => bind_unix(unix)?.into(),
        (None, addr) => {
            bind_tcp(anyhow::Context::context(addr, "no address to listen on")?)?.into()
        }
    };
    #[cfg(not(feature = "cluster"))]
    if args.cluster.is_some() {
        anyhow::bail!(
            "this sockit was built without the `cluster` feature: --cluster is not available"
        );
    }
    #[cfg(feature = "cluster")]
    if let Some(url) = &args.cluster {
        if args.cluster_queue == 0 {
            anyhow::bail!("--cluster-queue must be at least 1");
        }
        let node = match (&args.node, &listener) {
            (Some(node), _) => node.clone(),
            (None, Listener::Tcp(tcp)) => default_node_name(tcp.local_addr()?.port()),
            (None, _) => default_node_name(0),
        };
        let mut cluster = chat::cluster::ClusterConfig::new(url.clone(), node);
        cluster.queue_posts = args.cluster_queue;
        if let Some(path) = &args.cluster_cacert {
            let pem = anyhow::Context::with_context(std::fs::read(path), || {
                format!("cannot read --cluster-cacert {}", path.display())
            })?;
            cluster.ca_pem = Some(pem);
        }
        config.cluster = Some(cluster);
    }
    // Said once the server is ready (with --cluster: Redis reached).
    let server = chat::Server::connect(config).await?;
    match (&listener, &unix) {
        (Listener::Tcp(tcp), _) => announce("chat", tcp.local_addr()?, identity.as_ref()),
        (_, Some(unix)) => say(format_args!("sockit chat listening on {unix}")),
        _ => {}
    }
    let web = match &args.web {
        Some(web) => {
            let web = bind_tcp(web.clone().with_default_host(&args.bind.bind).bind_addr()?)?;
            let scheme = if identity.is_some() { "https" } else { "http" };
            say(format_args!(
                "sockit chat web on {scheme}://{}/",
                web.local_addr()?
            ));
            Some(web)
        }
        None => None,
    };
    if args.console {
        let hub = server.hub();
        let stop = stop.clone();
        tokio::spawn(async move {
            let (stdin, stdout) = (tokio::io::stdin(), tokio::io::stdout());
            if let Err(err) = chat::Server::console(hub, stdin, stdout, stop).await {
                tracing::warn!(error = %err, "console closed");
            }
        });
    }
    server.serve_with_web(listener, web, stop).await;
    Ok(())
}

/// The host name and the port: a node's name unless `--node` says otherwise.
#[cfg(feature = "cluster")]
fn default_node_name(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{port}")
}

async fn join(args: JoinArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let addr = args.addr.with_port(args.port)?;
    let mut options = args.tls.client_options(args.timeout, &args.trace)?;
    options.dial = args.route.dial_options(&addr)?;
    // Ctrl-C ends the connect and the TLS handshake at once, not at --timeout.
    let (stream, peer) = tokio::select! {
        opened = open(&addr, &options) => match opened {
            Ok(opened) => opened,
            Err(err) => {
                let err = err.into();
                if options.tls.is_some() {
                    let name = args.tls.sni.as_deref().unwrap_or(addr.host_or("localhost"));
                    crate::cli::hints::after_failure(&err, &addr, &options.dial, name, true, "leave out --tls, --pin, --ca and -k", None).await;
                }
                return Err(err);
            }
        },
        _ = stop.cancelled() => return Ok(()),
    };
    tracing::info!(%peer, "connected");
    let is_tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let config = JoinConfig {
        nick: args.nick,
        password: args.password.map(Password),
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        room: args.room,
    };
    let outcome = if is_tty {
        client::tty::run(stream, &config, stop).await
    } else {
        client::run_lines(
            stream,
            &config,
            tokio::io::stdin(),
            TaggedStdout::new("the chat"),
            stop,
        )
        .await
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(JoinError::Io(err)) => match OutputError::from_io(err) {
            Ok(output) => Err(output.into()),
            Err(err) => Err(err.into()),
        },
        // The binary's error report gives each refusal its exit code and hint.
        Err(err) => Err(anyhow::Error::new(err).context(format!("joining {addr}"))),
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::Cli;
    use clap::Parser;

    #[test]
    fn chat_arguments() {
        Cli::try_parse_from(["sockit", "chat", "serve", "--port", "0", "--rate", "0"]).unwrap();
        Cli::try_parse_from([
            "sockit",
            "chat",
            "join",
            ":7777",
            "--nick",
            "a",
            "--pin",
            &format!("sha256:{}", "0".repeat(64)),
        ])
        .unwrap();
        assert!(Cli::try_parse_from(["sockit", "chat", "join"]).is_err());
        assert!(Cli::try_parse_from(["sockit", "chat", "serve", "--max-line", "lots"]).is_err());
    }
}
