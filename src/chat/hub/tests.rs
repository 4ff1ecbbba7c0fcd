//! The hub's own tests: fan-out, drops, nicknames.

use std::sync::Arc;

use bytes::Bytes;

use crate::chat::framing::{Framing, LineKind};
use crate::chat::hub::members::Entry;
use crate::chat::hub::{ClientId, Departure, Hub, HubConfig};
use crate::chat::outbox::Outbox;
use crate::chat::outbox::{Next, QueueLimits};
use std::collections::VecDeque;

fn client(hub: &Hub, limits: QueueLimits) -> (ClientId, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::new(limits));
    let (id, _) = hub.enter(
        "127.0.0.1:1".parse().unwrap(),
        outbox.clone(),
        Framing::Lines,
        Entry::default(),
    );
    (id, outbox)
}

async fn drain(outbox: &Outbox) -> String {
    let mut batch = VecDeque::new();
    let mut out = Vec::new();
    outbox.close();
    while let Next::Write = outbox.next(&mut batch).await {
        for b in batch.drain(..) {
            out.extend_from_slice(&b);
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn lines_reach_others_once_and_land_in_history() {
    let hub = Hub::new(HubConfig::default());
    let (a, a_box) = client(&hub, QueueLimits::default());
    let (_b, b_box) = client(&hub, QueueLimits::default());
    hub.publish(
        a,
        LineKind::Message,
        &Bytes::from_static(b"<guest-1> one\n<guest-1> two\n"),
    );
    let b_text = drain(&b_box).await;
    assert!(
        b_text.ends_with("<guest-1> one\n<guest-1> two\n"),
        "{b_text}"
    );
    let a_text = drain(&a_box).await;
    assert!(!a_text.contains("<guest-1> one"), "no echo to the sender");
    let (_c, c_box) = client(&hub, QueueLimits::default());
    let c_text = drain(&c_box).await;
    assert!(
        c_text.contains("last 2 lines of #lobby:\n<guest-1> one\n<guest-1> two\n"),
        "{c_text}"
    );
}

#[tokio::test]
async fn a_full_queue_drops_only_that_client() {
    let hub = Hub::new(HubConfig::default());
    let (a, _a_box) = client(&hub, QueueLimits::default());
    let (_slow, slow_box) = client(
        &hub,
        QueueLimits {
            max_bytes: 8 * (64 + crate::chat::outbox::ENTRY_OVERHEAD_BYTES),
        },
    );
    let (_c, c_box) = client(&hub, QueueLimits::default());
    for _ in 0..10 {
        hub.publish(
            a,
            LineKind::Message,
            &Bytes::from_static(b"<guest-1> spam\n"),
        );
    }
    assert_eq!(hub.len(), 2);
    let c_text = drain(&c_box).await;
    assert!(c_text.contains("guest-2 was dropped"), "{c_text}");
    assert_eq!(c_text.matches("spam").count(), 10);
    assert_eq!(
        drain(&slow_box).await,
        "* you were dropped: not reading fast enough\n",
        "only its last line is left"
    );
}

#[tokio::test]
async fn nicknames_are_unique_without_regard_to_case() {
    let hub = Hub::new(HubConfig::default());
    let (a, _) = client(&hub, QueueLimits::default());
    let (b, b_box) = client(&hub, QueueLimits::default());
    assert_eq!(hub.rename(a, "Alice"), Some("Alice".into()));
    assert_eq!(hub.rename(b, "aLiCe"), None);
    assert!(drain(&b_box).await.contains("the nickname aLiCe is taken"));
    hub.leave(a, &Departure::Closed);
    let (c, _) = client(&hub, QueueLimits::default());
    assert_eq!(hub.rename(c, "alice"), Some("alice".into()));
}

#[test]
fn a_members_entry_stays_small() {
    // One per connected client, idle or not (its nick and room name are allocated apart).
    let bytes = std::mem::size_of::<crate::chat::hub::members::Member>();
    assert!(bytes <= 96, "a hub member is {bytes} bytes");
}
