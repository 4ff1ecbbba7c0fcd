//! A node: the state its bus and tasks share, joining the cluster (`Node::connect`), and
//! running the node's three tasks until it leaves (`Node::run`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use redis::aio::ConnectionManager;
use redis::{IntoConnectionInfo, pipe};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::chat::cluster::connection::{
    ClusterConfig, ClusterError, Health, WRITE_TIMEOUT, joining_failed, manager,
};
use crate::chat::cluster::outbound::{Outgoing, RedisBus, append_loop};
use crate::chat::cluster::presence::{RELEASE, heartbeat_loop, nick_claim_key};
use crate::chat::cluster::reader::{ReadState, open_wanted, read_loop};
use crate::chat::framing::now_ms;
use crate::chat::hub::{Hub, HubConfig};

/// The state the bus and the node's tasks share.
pub(super) struct Shared {
    pub(super) config: ClusterConfig,
    /// This node's name and start time: what its entries, claims and keys carry.
    pub(super) incarnation: String,
    pub(super) history_lines: usize,
    pub(super) out: Mutex<Outgoing>,
    /// Wakes the appender.
    pub(super) queued: Notify,
    /// Wakes senders waiting for room in the queue.
    pub(super) appended: Notify,
    /// Rooms the reader reads (and so the appender may write: a room is read before this
    /// node writes into it, so none of its own lines is taken for history).
    pub(super) opened: Mutex<HashSet<String>>,
    pub(super) opened_changed: Notify,
    /// Rooms this node needs read.
    pub(super) wanted: Mutex<HashSet<String>>,
    pub(super) releases: Mutex<Vec<String>>,
    pub(super) health: Mutex<Health>,
    pub(super) writer: ConnectionManager,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect("cluster locks are never poisoned")
}

pub(super) fn room_key(room: &str) -> String {
    format!("sockit:room:{room}")
}

pub(super) fn inbox_key(node: &str) -> String {
    format!("sockit:inbox:{node}")
}

/// A node of a chat cluster: its hub (with the Redis bus) and its tasks, ready to run.
pub(crate) struct Node {
    pub(super) shared: Arc<Shared>,
    pub(super) hub: Arc<Hub>,
    pub(super) reader: ConnectionManager,
    pub(super) state: ReadState,
    pub(super) epoch: String,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("incarnation", &self.shared.incarnation)
            .finish()
    }
}

impl Node {
    /// Connects to Redis, builds the hub on the Redis bus and loads every room's history.
    pub(crate) async fn connect(
        config: ClusterConfig,
        hub_config: HubConfig,
    ) -> Result<Node, ClusterError> {
        let url = config.url.clone();
        let url_error = |source| ClusterError::Url {
            url: url.clone(),
            source,
        };
        // Nagle's algorithm would hold a small command back while an earlier one waits for
        // Redis's (delayed) acknowledgement: lines would wait up to 40 ms on a quiet room.
        let info = config
            .url
            .0
            .as_str()
            .into_connection_info()
            .map_err(url_error)?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = match &config.ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(info),
        }
        .map_err(url_error)?;
        let mut writer = manager(&client, WRITE_TIMEOUT, &url).await?;
        // The reader blocks in Redis for READ_BLOCK_MS at a time.
        let reader = manager(&client, WRITE_TIMEOUT, &url).await?;
        let connect_err = |source| joining_failed(&url, source);
        let incarnation = format!("{}/{}", config.node, now_ms());
        let (epoch, guests, rooms): (String, u64, Vec<String>) = pipe()
            .cmd("SET")
            .arg("sockit:epoch")
            .arg(format!("{incarnation}/{}", std::process::id()))
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg("sockit:epoch")
            .cmd("INCRBY")
            .arg("sockit:guests")
            .arg(100)
            .cmd("SMEMBERS")
            .arg("sockit:rooms")
            .query_async(&mut writer)
            .await
            .map_err(connect_err)?;
        let history_lines = hub_config.history_lines;
        let shared = Arc::new(Shared {
            incarnation: incarnation.clone(),
            history_lines,
            out: Mutex::new(Outgoing {
                guests: (guests - 99, guests + 1),
                ..Outgoing::default()
            }),
            queued: Notify::new(),
            appended: Notify::new(),
            opened: Mutex::new(HashSet::new()),
            opened_changed: Notify::new(),
            wanted: Mutex::new(rooms.into_iter().collect()),
            releases: Mutex::new(Vec::new()),
            health: Mutex::new(Health::default()),
            writer,
            config,
        });
        let hub = Arc::new(Hub::with_bus(
            hub_config,
            Box::new(RedisBus(shared.clone())),
        ));
        let mut node = Node {
            shared,
            hub,
            reader,
            state: ReadState::default(),
            epoch,
        };
        node.state
            .last
            .insert(inbox_key(&incarnation), "0-0".to_owned());
        open_wanted(&node.shared, &node.hub, &mut node.reader, &mut node.state)
            .await
            .map_err(connect_err)?;
        info!(node = %node.shared.config.node, url = %url, "joined the chat cluster");
        Ok(node)
    }

    /// The node's hub.
    pub(crate) fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Runs the node's tasks until `stop`; then sends what is still queued (bounded) and
    /// takes this node's presence out of Redis.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let Node {
            shared,
            hub,
            reader,
            state,
            epoch,
        } = self;
        let reading = read_loop(shared.clone(), hub.clone(), reader, state, stop.clone());
        let appending = append_loop(shared.clone(), stop.clone());
        let beating = heartbeat_loop(shared.clone(), hub, epoch, stop);
        tokio::join!(reading, appending, beating);
        let mut conn = shared.writer.clone();
        let inc = &shared.incarnation;
        let mut leaving = pipe();
        leaving
            .cmd("DEL")
            .arg(format!("sockit:node:{inc}"))
            .arg(format!("sockit:presence:{inc}"))
            .arg(inbox_key(inc))
            .ignore()
            .cmd("SREM")
            .arg("sockit:nodes")
            .arg(inc)
            .ignore();
        for nick in lock(&shared.releases).drain(..) {
            leaving
                .cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(nick_claim_key(&nick))
                .arg(inc)
                .ignore();
        }
        let _ = tokio::time::timeout(WRITE_TIMEOUT, leaving.query_async::<()>(&mut conn)).await;
        info!("left the chat cluster");
    }
}
