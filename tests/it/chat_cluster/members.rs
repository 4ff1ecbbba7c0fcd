//! Names and presence across nodes: nicks, `/who`, `/msg`, nodes that die, browsers beside line clients.

use super::*;

#[test]
fn nicks_who_and_msg_span_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let mut alice = Client::join(a.addr, "alice");
    let mut bob = Client::join(b.addr, "bob");
    // A nick held on one node is taken on the other, whatever its case.
    let mut eve = Client::connect(b.addr);
    eve.expect("you joined #lobby");
    eve.send("/nick ALICE");
    eve.expect("the nickname ALICE is taken");
    // /who merges every node's members.
    let who = alice.who_until(WAIT, |who| who.contains("bob"));
    assert!(who.contains("alice") && who.contains("bob"), "{who}");
    // /msg reaches a member on another node, and only them.
    alice.send("/msg bob psst, over here");
    bob.expect("*alice* psst, over here");
    alice.expect("-> *bob* psst, over here");
    // /rooms counts every node's members.
    bob.send("/join rust");
    alice.send("/rooms");
    let rooms = alice.expect("* rooms:");
    assert!(rooms.contains("#lobby"), "{rooms}");
    // A nick given up on one node is free on the other.
    bob.send("/nick robert");
    bob.expect("is now robert");
    let deadline = Instant::now() + WAIT;
    loop {
        eve.send("/nick bob");
        let line = eve.expect("bob");
        if line.contains("is now bob") {
            break;
        }
        assert!(Instant::now() < deadline, "bob never became free: {line}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn nick_claims_outlive_their_expiry_while_their_owners_stay() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let _alice = Client::join(a.addr, "alice");
    let _carol = Client::join(a.addr, "carol");
    // Claims expire 1.5 s after their last refresh: past two of those, only the heartbeat's
    // refresh of every member's claim keeps both nicks node a's.
    std::thread::sleep(Duration::from_millis(3_500));
    let mut eve = Client::connect(b.addr);
    eve.expect("you joined #lobby");
    eve.send("/nick alice");
    eve.expect("the nickname alice is taken");
    eve.send("/nick CAROL");
    eve.expect("the nickname CAROL is taken");
}

#[test]
fn a_killed_node_leaves_who_within_two_heartbeats() {
    let redis = Redis::start();
    let a = node(&redis, "a");
    let mut b = node(&redis, "b");
    let mut alice = Client::join(a.addr, "alice");
    let _bob = Client::join(b.addr, "bob");
    alice.who_until(WAIT, |who| who.contains("bob"));
    b.child.kill().expect("SIGKILL node b");
    let killed = Instant::now();
    let gone = alice.expect_within("bob left (node b gone)", Duration::from_secs(5));
    let took = killed.elapsed();
    // README: two heartbeats (2 s by default); a little more for a loaded test machine.
    assert!(took < Duration::from_millis(2_600), "took {took:?}: {gone}");
    let who = alice.who_until(Duration::from_secs(1), |who| !who.contains("bob"));
    assert!(who.contains("(1): alice"), "{who}");
    // And the nick is free again.
    let mut bob_again = Client::join(a.addr, "bob");
    bob_again.send("hello again");
    alice.expect("<bob> hello again");
}

#[test]
fn a_silent_connection_is_not_a_member_on_other_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    // Says nothing: it only listens (a browser's spare connection, a port check).
    let mut silent = Client::connect(a.addr);
    let welcome = silent.expect("* welcome to sockit chat, ");
    let guest = welcome
        .split(", ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("the guest nick in the welcome")
        .to_owned();
    let _alice = Client::join(a.addr, "alice");
    let mut bob = Client::join(b.addr, "bob");
    // Node a's presence carries alice: the silent guest would have come with her.
    let who = bob.who_until(WAIT, |who| who.contains("alice"));
    assert!(
        !who.contains(&guest),
        "{guest} is listed before saying anything: {who}"
    );
    bob.send("/rooms");
    let rooms = bob.expect("* rooms:");
    assert!(rooms.contains("#lobby (2)"), "{rooms}");
    // Once it speaks, it is a member everywhere.
    silent.send("hello");
    bob.expect(&format!("<{guest}> hello"));
    let who = bob.who_until(WAIT, |who| who.contains(&guest));
    assert!(who.contains("(3)"), "{who}");
}

#[test]
fn browsers_and_line_clients_share_rooms_across_nodes_and_resume_anywhere() {
    require("python3");
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/fixtures/ws_cluster_peer.py"
    );
    let out = std::process::Command::new("python3")
        .args([
            script,
            &a.addr.port().to_string(),
            &b.addr.port().to_string(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON findings");
    // A line from node B reaches a page on node A, with the stream entry id as its id.
    assert_eq!(found["from_b"][0], "raw");
    assert_eq!(found["from_b"][1], "from b 你好");
    let id = found["from_b"][2].as_str().unwrap();
    let (ms, seq) = id.split_once('-').expect("an entry id MS-SEQ");
    assert!(
        ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok(),
        "{id}"
    );
    // The page's lines reach the line client on node B, in order.
    assert_eq!(
        found["raw"],
        serde_json::json!(["<web> web 0", "<web> web 1", "<web> web 2"])
    );
    // The page's member list counts members of the other node.
    let members = found["members"].to_string();
    assert!(
        members.contains("\"raw\"") && members.contains("\"web\""),
        "{members}"
    );
    // A page resuming on node B after an id seen on node A gets only what came after it.
    assert_eq!(
        found["resumed"],
        serde_json::json!(["web 1", "web 2", "marker"])
    );
}
