//! Multi-user chat over plain text lines (`nc` and `telnet` are full clients) and, on the
//! same address, from a browser (a one-page client over WebSocket): nicknames, rooms,
//! private messages, history (in memory or SQLite), flood control, bounded per-client queues
//! so a stalled reader costs only itself, and a terminal client.
//!
//! | file | what it owns |
//! |---|---|
//! | [`line`](mod@line) | bytes → clean lines: limit, invalid UTF-8, control characters (pure) |
//! | [`command`] | clean line → text or `/command`; name rules (pure) |
//! | [`hub`] | rooms, nicknames, fan-out, the publish/subscribe seam ([`hub::Bus`]) |
//! | `framing` | what the server says, as text lines or as WebSocket JSON frames (pure) |
//! | `history` | last N lines per room, with ids and times, in memory and in SQLite |
//! | `talk` | a member's side whatever its transport: login, flood control, commands |
//! | `sniff` | a connection's first line: browser (HTTP) or line client |
//! | `session` | a line client's task: reads lines, writes its queue |
//! | `web` | the page and the WebSocket member's task |
//! | [`client`] | `sockit chat join`: full duplex, safe printing |
//! | `cluster` | many nodes through Redis: a stream per room, claims, presence, canary (feature `cluster`) |
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
//! use tokio_util::sync::CancellationToken;
//! use sockit::chat;
//!
//! let listener = sockit::net::bind_tcp("127.0.0.1:0".parse()?)?;
//! let addr = listener.local_addr()?;
//! let stop = CancellationToken::new();
//! let server = chat::Server::open(chat::Config::default())?;
//! let running = tokio::spawn(server.serve(listener, stop.clone()));
//!
//! let mut alice = BufReader::new(tokio::net::TcpStream::connect(addr).await?);
//! let mut line = String::new();
//! alice.read_line(&mut line).await?;
//! assert!(line.starts_with("* welcome"));
//! alice.get_mut().write_all(b"/nick alice\n/quit\n").await?;
//!
//! stop.cancel();
//! running.await?;
//! # Ok(()) }
//! ```

pub mod client;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod command;
mod framing;
mod history;
pub mod hub;
pub mod line;
mod outbox;
mod session;
mod sniff;
mod talk;
mod web;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::net::ServerConfig;

pub use history::{DEFAULT_HISTORY_LINES, HistoryError};
pub use hub::{Bus, Hub, HubConfig, LocalBus, Post};
pub use outbox::QueueLimits;

/// Default chat port.
pub const DEFAULT_PORT: u16 = 7777;

/// Default flood-control rate, in lines per second per client (after the burst).
pub const DEFAULT_RATE: f64 = 200.0;

/// Default flood-control burst, in lines: 1,000 piped lines take about 2.5 s.
pub const DEFAULT_BURST: f64 = 500.0;

/// A password; its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything a chat server can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Accept loop: max clients, TLS, drain time.
    pub server: ServerConfig,
    /// When set, a client's first line must be `PASS <password>`.
    pub password: Option<Password>,
    /// Lines of history per room (0: none).
    pub history_lines: usize,
    /// Keep history in this SQLite file across restarts.
    pub db: Option<PathBuf>,
    /// Longest line accepted, in bytes.
    pub max_line_bytes: usize,
    /// Lines per second per client, on average, once its burst is spent (0: no flood control).
    /// Past it the server stops reading that client until its budget refills: the sender is
    /// slowed by TCP back-pressure, and nothing it sent is lost.
    pub rate: f64,
    /// Lines a client may send at once before the rate applies.
    pub burst: f64,
    /// Each client's outbound queue: a client whose queue overflows is dropped; nobody ever
    /// waits for it.
    pub queue: QueueLimits,
    /// Show peers' addresses in join notices.
    pub show_addrs: bool,
    /// Announce joins and leaves only in rooms of at most this many members.
    pub announce_limit: usize,
    /// How long a client may take to send `PASS` when a password is required.
    pub login_timeout: Duration,
    /// Origins allowed to open the WebSocket besides the page's own (`https://host:port`).
    pub web_origins: Vec<String>,
    /// A WebSocket member silent this long is pinged.
    pub ping_interval: Duration,
    /// A pinged WebSocket member that stays silent this much longer is dropped.
    pub pong_timeout: Duration,
    /// Members may ask `/stats` (the node's and the broker's health).
    pub stats: bool,
    /// Join other nodes through Redis; see [`Server::connect`].
    #[cfg(feature = "cluster")]
    pub cluster: Option<cluster::ClusterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            password: None,
            history_lines: DEFAULT_HISTORY_LINES,
            db: None,
            max_line_bytes: line::DEFAULT_MAX_LINE_BYTES,
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
            queue: QueueLimits::default(),
            show_addrs: false,
            announce_limit: hub::DEFAULT_ANNOUNCE_LIMIT,
            login_timeout: Duration::from_secs(30),
            web_origins: Vec::new(),
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(30),
            stats: false,
            #[cfg(feature = "cluster")]
            cluster: None,
        }
    }
}

/// Why a chat server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The history database could not be opened.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The cluster could not be joined.
    #[cfg(feature = "cluster")]
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    /// History lives in the cluster's streams, not in a local database.
    #[error("--db and --cluster do not go together: with --cluster, history lives in redis")]
    DbInCluster,
}

/// A chat server, ready to serve: its hub (with history loaded) and its configuration.
#[derive(Debug)]
pub struct Server {
    hub: Arc<Hub>,
    config: Arc<Config>,
    #[cfg(feature = "cluster")]
    node: Option<cluster::Node>,
}

impl Server {
    /// Creates the hub and opens the history database, if any.
    ///
    /// # Errors
    ///
    /// [`ChatError::History`] when the database cannot be opened or read.
    pub fn open(config: Config) -> Result<Self, ChatError> {
        #[cfg(feature = "cluster")]
        if config.cluster.is_some() {
            return Err(ChatError::Cluster(cluster::ClusterError::NeedsConnect));
        }
        let hub = Arc::new(Hub::new(hub_config(&config)));
        if let Some(path) = &config.db {
            let (store, rooms) = history::Store::open(path, config.history_lines)?;
            hub.attach_store(store, rooms);
        }
        Ok(Self {
            hub,
            config: Arc::new(config),
            #[cfg(feature = "cluster")]
            node: None,
        })
    }

    /// Like [`open`](Self::open); with [`Config::cluster`] set, first joins the other nodes
    /// through Redis: connects, and loads every room's history from its stream.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); [`ChatError::Cluster`] when Redis cannot be reached.
    pub async fn connect(config: Config) -> Result<Self, ChatError> {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = config.cluster.clone() {
            if config.db.is_some() {
                return Err(ChatError::DbInCluster);
            }
            let node = cluster::Node::connect(cluster, hub_config(&config)).await?;
            return Ok(Self {
                hub: node.hub(),
                config: Arc::new(config),
                node: Some(node),
            });
        }
        Self::open(config)
    }

    /// The hub, to post as the server (`--console`) or to watch it.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Runs the server's console: lines from `input` are posted as `server` to every room;
    /// every room line is written to `output`. Ends on `stop` (the end of `input` only ends
    /// posting).
    ///
    /// # Errors
    ///
    /// An I/O error on `input` or `output`.
    pub async fn console<I, O>(
        hub: Arc<Hub>,
        input: I,
        mut output: O,
        stop: CancellationToken,
    ) -> std::io::Result<()>
    where
        I: tokio::io::AsyncRead + Unpin,
        O: tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::AsyncBufReadExt;
        let watched = Arc::new(outbox::Outbox::new(QueueLimits::default()));
        hub.watch(watched.clone());
        let mut lines = tokio::io::BufReader::new(input).lines();
        let printing = outbox::write_all_queued(&mut output, &watched);
        tokio::pin!(printing);
        let mut is_input_open = true;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                result = &mut printing => return result,
                line = lines.next_line(), if is_input_open => match line? {
                    Some(line) => {
                        let text = line::neutralise(line.as_bytes());
                        if !text.trim().is_empty() {
                            hub.say_as_server(&text);
                        }
                    }
                    None => is_input_open = false,
                },
            }
        }
    }

    /// Serves clients until `stop` is cancelled; then tells everyone, lets their queues drain
    /// (bounded) and writes the last history lines to the database. Line clients and
    /// browsers (page and WebSocket) share `listener`.
    pub async fn serve(self, listener: impl Into<crate::net::Listener>, stop: CancellationToken) {
        self.serve_with_web(listener, None, stop).await;
    }

    /// Like [`serve`](Self::serve), and serves only the web side (page and WebSocket) on
    /// `web` as well, when given (`--web`).
    pub async fn serve_with_web(
        self,
        listener: impl Into<crate::net::Listener>,
        web: Option<TcpListener>,
        stop: CancellationToken,
    ) {
        #[cfg(feature = "cluster")]
        let (node, node_stop) = (self.node, CancellationToken::new());
        #[cfg(feature = "cluster")]
        let node_task = node.map(|node| tokio::spawn(node.run(node_stop.clone())));
        let (hub, config) = (self.hub.clone(), self.config.clone());
        let is_tls = config.server.tls.is_some();
        let web_side = Arc::new(web::WebSide::new(
            hub.clone(),
            config.clone(),
            is_tls,
            stop.clone(),
        ));
        let on_web = web_side.clone();
        let arrivals = Arc::new(sniff::Arrivals::default());
        let chat = crate::net::serve(
            listener,
            self.config.server.clone(),
            stop.clone(),
            move |stream, peer, stop| {
                session::run(
                    stream,
                    peer,
                    hub.clone(),
                    config.clone(),
                    web_side.clone(),
                    arrivals.clone(),
                    stop,
                )
            },
        );
        let web_only = async move {
            if let Some(web) = web {
                crate::net::serve(
                    web,
                    self.config.server.clone(),
                    stop,
                    move |stream, peer, stop| {
                        let web = on_web.clone();
                        async move { web.serve(stream, BytesMut::new(), peer, stop).await }
                    },
                )
                .await;
            }
        };
        tokio::join!(chat, web_only);
        self.hub.close_store();
        // The node outlives the sessions, so their last lines still reach Redis.
        #[cfg(feature = "cluster")]
        if let Some(task) = node_task {
            node_stop.cancel();
            let _ = task.await;
        }
    }
}

fn hub_config(config: &Config) -> HubConfig {
    HubConfig {
        history_lines: config.history_lines,
        show_addrs: config.show_addrs,
        announce_limit: config.announce_limit,
    }
}

/// Opens a server with `config` and serves on `listener` until `stop` is cancelled.
///
/// # Errors
///
/// See [`Server::open`].
pub async fn serve(
    listener: TcpListener,
    config: Config,
    stop: CancellationToken,
) -> Result<(), ChatError> {
    Server::open(config)?.serve(listener, stop).await;
    Ok(())
}
