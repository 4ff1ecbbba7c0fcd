//! Reaching Redis: the URL (its password hidden), the node's settings, why joining fails,
//! the connection managers, and the node's health as the canary shows it.

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tracing::{info, warn};

use crate::chat::cluster::node::{Shared, lock};

/// How often a node proves it is alive and sends a canary, by default.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// Posts a node keeps while Redis cannot take them, by default; past it senders are slowed.
pub const DEFAULT_QUEUE_POSTS: usize = 10_000;

/// One Redis round trip may take this long before it counts as failed and is retried.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a node waits for Redis at start.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A canary missing this long while writes succeed is reported: with a canary a second
/// and a check every half heartbeat, a broker that stops delivering is reported within 3 s.
pub(super) const CANARY_ALARM: Duration = Duration::from_secs(2);

/// The Redis URL; its `Debug` and `Display` forms hide a password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(pub String);

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("redacted"));
                f.write_str(url.as_str())
            }
            _ => f.write_str(&self.0),
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// How a node joins the others.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`, `rediss://…` or `unix:/PATH`.
    pub url: RedisUrl,
    /// This node's name, shown when it is gone (default: host name and port).
    pub node: String,
    /// Presence is refreshed every half heartbeat and expires after one and a half; a
    /// canary goes through Redis every heartbeat. A node killed outright is announced gone
    /// within two heartbeats.
    pub heartbeat: Duration,
    /// Posts kept while Redis cannot take them; past it senders are slowed, never dropped.
    pub queue_posts: usize,
    /// CA certificates (PEM) a `rediss://` server's certificate must chain to, instead of
    /// the system's roots (`--cluster-cacert`).
    pub ca_pem: Option<Vec<u8>>,
}

impl ClusterConfig {
    /// A configuration with defaults for everything but the URL and the node name.
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            url: RedisUrl(url.into()),
            node: node.into(),
            heartbeat: DEFAULT_HEARTBEAT,
            queue_posts: DEFAULT_QUEUE_POSTS,
            ca_pem: None,
        }
    }

    pub(super) fn ttl(&self) -> Duration {
        self.heartbeat * 3 / 2
    }
}

/// Why a node could not join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL is not a Redis URL.
    #[error("bad redis url {url}")]
    Url {
        /// The URL (password hidden).
        url: RedisUrl,
        /// What the client said.
        #[source]
        source: redis::RedisError,
    },
    /// Redis did not answer.
    #[error("cannot reach redis at {url}")]
    Connect {
        /// The URL (password hidden).
        url: RedisUrl,
        /// What went wrong, as an I/O error of the right kind (refused, timed out…).
        #[source]
        source: std::io::Error,
    },
    /// A cluster node is made with `Server::connect`, which reaches Redis first.
    #[error("a chat cluster node must be started with Server::connect")]
    NeedsConnect,
    /// Redis refused the password in the URL, or wants one it was not given.
    #[error("redis at {url} refused this node: check the password in the url")]
    Password {
        /// The URL (password hidden).
        url: RedisUrl,
        /// What Redis said, as a refusal (exit codes).
        #[source]
        source: std::io::Error,
    },
    /// Redis did not answer in time.
    #[error("cannot reach redis at {url}: no answer within {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout {
        /// The URL (password hidden).
        url: RedisUrl,
    },
}

/// What the node knows of its own health (`/stats`, the canary alarm).
#[derive(Debug, Default)]
pub(super) struct Health {
    pub(super) appended: u64,
    pub(super) delivered: u64,
    pub(super) duplicates_skipped: u64,
    pub(super) last_write_ok: Option<Instant>,
    pub(super) write_error: Option<String>,
    pub(super) read_error: Option<String>,
    pub(super) canary_sent: Option<Instant>,
    pub(super) canary_seen: Option<Instant>,
    pub(super) canary_latency_ms: Option<i64>,
    /// Since when every heartbeat reached Redis in time.
    pub(super) in_contact_since: Option<Instant>,
    pub(super) is_alarmed: bool,
    pub(super) history_resets: u64,
}

pub(super) async fn manager(
    client: &redis::Client,
    response_timeout: Duration,
    url: &RedisUrl,
) -> Result<ConnectionManager, ClusterError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(response_timeout))
        .set_max_delay(Duration::from_millis(500));
    let connecting = ConnectionManager::new_with_config(client.clone(), config);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) => Err(joining_failed(url, source)),
        Err(_) => Err(ClusterError::Timeout { url: url.clone() }),
    }
}

/// Why joining failed, from what Redis (or the way to it) said.
pub(super) fn joining_failed(url: &RedisUrl, err: redis::RedisError) -> ClusterError {
    let is_password = err.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("NOAUTH" | "WRONGPASS"));
    if is_password {
        // A refusal, as the exit code says; the password itself is in no message.
        let source = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, err);
        return ClusterError::Password {
            url: url.clone(),
            source,
        };
    }
    ClusterError::Connect {
        url: url.clone(),
        source: as_io(err),
    }
}

/// A Redis error as an I/O error whose kind tells a refusal or a timeout (exit codes).
pub(super) fn as_io(err: redis::RedisError) -> std::io::Error {
    let kind = if err.is_connection_refusal() {
        std::io::ErrorKind::ConnectionRefused
    } else if err.is_timeout() {
        std::io::ErrorKind::TimedOut
    } else {
        std::io::ErrorKind::Other
    };
    std::io::Error::new(kind, err)
}

/// Reports (once per episode) a broker that takes writes but delivers nothing.
pub(super) fn check_canary(shared: &Shared) {
    let mut h = lock(&shared.health);
    let (Some(sent), Some(write_ok)) = (h.canary_sent, h.last_write_ok) else {
        return;
    };
    let seen_since = h
        .canary_seen
        .map_or(sent.elapsed() + CANARY_ALARM, |s| s.elapsed());
    let is_stuck = write_ok.elapsed() < CANARY_ALARM && seen_since >= CANARY_ALARM;
    if is_stuck && !h.is_alarmed {
        warn!(
            silent_secs = seen_since.as_secs(),
            "redis takes writes but delivers nothing: no canary back"
        );
        h.is_alarmed = true;
    } else if !is_stuck && h.is_alarmed && seen_since < CANARY_ALARM {
        info!("redis delivers again: canary back");
        h.is_alarmed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_hides_its_password() {
        let url = RedisUrl("redis://:s3cret@127.0.0.1:6379/2".into());
        assert!(!format!("{url} {url:?}").contains("s3cret"));
        assert!(url.to_string().contains("127.0.0.1:6379/2"));
    }
}
