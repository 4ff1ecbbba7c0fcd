//! Presence and nicks: every half heartbeat this node's members and nick claims go into
//! Redis (expiring keys) and the other nodes' come out; gone nodes are announced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use redis::aio::ConnectionManager;
use redis::{Value, cmd, pipe};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::chat::cluster::connection::{WRITE_TIMEOUT, check_canary};
use crate::chat::cluster::node::{Shared, lock};
use crate::chat::cluster::outbound::Outbound;
use crate::chat::command::nick_key;
use crate::chat::framing::now_ms;
use crate::chat::hub::{Hub, RemoteMember};

/// A nick is claimed, or its claim refreshed, if free or already this node's.
pub(super) const CLAIM: &str = "local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1";

/// [`CLAIM`] for every key at once (the heartbeat's refresh; a nick taken meanwhile by another
/// node stays theirs).
const REFRESH: &str = "for _, k in ipairs(KEYS) do
local v = redis.call('GET', k)
if v == ARGV[1] then redis.call('PEXPIRE', k, ARGV[2])
elseif not v then redis.call('SET', k, ARGV[1], 'PX', ARGV[2]) end
end return 1";

/// A nick claim is dropped only by its owner.
pub(super) const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

pub(super) fn nick_claim_key(nick: &str) -> String {
    format!("sockit:nick:{}", nick_key(nick))
}

/// Every half heartbeat: this node's presence, claims and rooms into Redis; the other
/// nodes' presence out of it; gone nodes announced; the epoch and the canary checked.
pub(super) async fn heartbeat_loop(
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    mut epoch: String,
    stop: CancellationToken,
) {
    let mut conn = shared.writer.clone();
    let tick = shared.config.heartbeat / 2;
    let ttl_ms = shared.config.ttl().as_millis() as u64;
    let inc = shared.incarnation.clone();
    let mut ticks = 0u64;
    // Nodes seen alive, with their members as last seen.
    let mut alive: HashMap<String, Vec<RemoteMember>> = HashMap::new();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        ticks += 1;
        if ticks % 2 == 0 {
            shared.push(|seq| Outbound::Canary {
                seq,
                at_ms: now_ms(),
            });
        }
        check_canary(&shared);
        let started = Instant::now();
        let beat = beat(&shared, &hub, &mut conn, &inc, ttl_ms);
        let Ok(Ok(beat)) = tokio::time::timeout(tick.max(WRITE_TIMEOUT / 2), beat).await else {
            lock(&shared.health).in_contact_since = None;
            continue;
        };
        let in_contact_since = {
            let mut h = lock(&shared.health);
            if started.elapsed() > tick {
                h.in_contact_since = None;
            }
            *h.in_contact_since.get_or_insert(started)
        };
        // Redis lost its data (restarted without persistence): say so once, carry on.
        if beat.epoch != epoch {
            if !epoch.is_empty() {
                warn!("redis restarted empty: room history was reset");
                hub.clear_history();
                hub.tell_everyone_here("the chat broker restarted empty: history was reset");
                lock(&shared.health).history_resets += 1;
            }
            epoch = beat.epoch.clone();
        }
        for room in beat.rooms {
            if !lock(&shared.opened).contains(&room) {
                lock(&shared.wanted).insert(room);
            }
        }
        // Only a node that has itself been in touch with Redis for a whole expiry period
        // may judge others gone: after a pause of Redis every key looks expired for a while.
        let may_judge = in_contact_since.elapsed() >= shared.config.ttl();
        let mut remote = Vec::new();
        let mut now_alive = HashMap::new();
        for (node, members) in beat.nodes {
            if node == inc {
                continue;
            }
            match members {
                Some(members) => {
                    remote.extend(members.iter().cloned());
                    now_alive.insert(node, members);
                }
                None if may_judge => {
                    let name = node.rsplit_once('/').map_or(node.as_str(), |(n, _)| n);
                    info!(node = name, "node gone");
                    for member in alive.get(&node).into_iter().flatten() {
                        hub.remote_left(
                            &member.room,
                            &format!("{} left (node {name} gone)", member.nick),
                        );
                    }
                    let _ = cmd("SREM")
                        .arg("sockit:nodes")
                        .arg(&node)
                        .query_async::<()>(&mut conn)
                        .await;
                }
                None => {
                    // Not judged yet: keep what was known.
                    if let Some(members) = alive.get(&node) {
                        remote.extend(members.iter().cloned());
                        now_alive.insert(node, members.clone());
                    }
                }
            }
        }
        alive = now_alive;
        hub.set_remote(remote);
    }
}

/// What one heartbeat learned.
pub(super) struct Beat {
    pub(super) epoch: String,
    pub(super) rooms: Vec<String>,
    /// Every registered node, with its members, or `None` when its key expired.
    pub(super) nodes: Vec<(String, Option<Vec<RemoteMember>>)>,
}

pub(super) async fn beat(
    shared: &Shared,
    hub: &Hub,
    conn: &mut ConnectionManager,
    inc: &str,
    ttl_ms: u64,
) -> redis::RedisResult<Beat> {
    let here = hub.members_here();
    let presence = format!("sockit:presence:{inc}");
    let mut p = pipe();
    p.cmd("SET")
        .arg(format!("sockit:node:{inc}"))
        .arg(&shared.config.node)
        .arg("PX")
        .arg(ttl_ms)
        .ignore();
    p.cmd("SADD").arg("sockit:nodes").arg(inc).ignore();
    p.atomic();
    p.cmd("DEL").arg(&presence).ignore();
    if !here.is_empty() {
        let c = p.cmd("HSET").arg(&presence);
        for (nick, room) in &here {
            c.arg(nick).arg(room);
        }
        c.ignore();
    }
    p.cmd("PEXPIRE").arg(&presence).arg(ttl_ms).ignore();
    let mut rooms_here: Vec<&str> = here.iter().map(|(_, r)| r.as_str()).collect();
    rooms_here.sort_unstable();
    rooms_here.dedup();
    for room in rooms_here {
        p.cmd("SADD").arg("sockit:rooms").arg(room).ignore();
    }
    let nicks = hub.nicks_here();
    if !nicks.is_empty() {
        // One script for every claim: a script call per member held Redis for most of a
        // millisecond per heartbeat with a hundred members, and every node's lines waited.
        let c = p.cmd("EVAL").arg(REFRESH).arg(nicks.len());
        for nick in &nicks {
            c.arg(nick_claim_key(nick));
        }
        c.arg(inc).arg(ttl_ms).ignore();
    }
    let releases: Vec<String> = std::mem::take(&mut *lock(&shared.releases));
    for nick in releases.iter().filter(|n| !hub.has_nick(n)) {
        p.cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(nick_claim_key(nick))
            .arg(inc)
            .ignore();
    }
    // A Redis that lost its data has no epoch: the first node back sets a new one.
    p.cmd("SET")
        .arg("sockit:epoch")
        .arg(format!("{inc}/{}", now_ms()))
        .arg("NX")
        .ignore();
    p.cmd("GET").arg("sockit:epoch");
    p.cmd("SMEMBERS").arg("sockit:rooms");
    p.cmd("SMEMBERS").arg("sockit:nodes");
    let is_low = {
        let out = lock(&shared.out);
        out.guests.1 - out.guests.0 < 20
    };
    if is_low {
        p.cmd("INCRBY").arg("sockit:guests").arg(100);
    } else {
        p.cmd("GET").arg("sockit:guests");
    }
    let (epoch, rooms, nodes, guests): (String, Vec<String>, Vec<String>, Option<u64>) =
        p.query_async(conn).await?;
    match guests {
        Some(guests) if is_low => lock(&shared.out).guests = (guests - 99, guests + 1),
        // Redis lost its data: take a new range above the one in hand.
        None => {
            let above = lock(&shared.out).guests.1 + 100;
            let reserved: u64 = cmd("INCRBY")
                .arg("sockit:guests")
                .arg(above)
                .query_async(conn)
                .await?;
            lock(&shared.out).guests = (reserved - 99, reserved + 1);
        }
        Some(_) => {}
    }
    let mut p = pipe();
    for node in &nodes {
        p.cmd("EXISTS").arg(format!("sockit:node:{node}"));
        p.cmd("HGETALL").arg(format!("sockit:presence:{node}"));
    }
    let replies: Vec<Value> = if nodes.is_empty() {
        Vec::new()
    } else {
        p.query_async(conn).await?
    };
    let mut known = Vec::new();
    for (node, pair) in nodes.into_iter().zip(replies.chunks(2)) {
        let exists: i64 = redis::from_redis_value_ref(&pair[0]).unwrap_or(0);
        let members: HashMap<String, String> =
            redis::from_redis_value_ref(&pair[1]).unwrap_or_default();
        let members = (exists == 1).then(|| {
            members
                .into_iter()
                .map(|(nick, room)| RemoteMember {
                    nick,
                    room,
                    node: node.clone(),
                })
                .collect()
        });
        known.push((node, members));
    }
    Ok(Beat {
        epoch,
        rooms,
        nodes: known,
    })
}
