//! Every line to every member once and in one order, through Redis faults and full queues.

use super::*;

#[test]
fn three_nodes_thirty_clients_every_line_once_in_one_order() {
    let redis = Redis::start();
    let nodes = [node(&redis, "a"), node(&redis, "b"), node(&redis, "c")];
    every_line_once_in_one_order(&nodes, Duration::ZERO, || {});
}

#[test]
fn broker_faults_lose_nothing() {
    let mut redis = Redis::start_with(&[
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]);
    let nodes = [node(&redis, "a"), node(&redis, "b"), node(&redis, "c")];
    let port = redis.port;
    every_line_once_in_one_order(&nodes, Duration::from_millis(6), || {
        std::thread::sleep(Duration::from_millis(800));
        // (a) every node's connections killed
        let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        assert!(
            killed.trim().parse::<u32>().unwrap_or(0) >= 3,
            "killed: {killed}"
        );
        redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        std::thread::sleep(Duration::from_millis(700));
        // (b) Redis paused for 2 s
        redis.signal("STOP");
        std::thread::sleep(Duration::from_secs(2));
        redis.signal("CONT");
        std::thread::sleep(Duration::from_millis(700));
        // (c) Redis killed and restarted from its AOF
        redis.restart(None);
        assert_eq!(redis.port, port);
    });
    for node in &nodes {
        // Each node noticed at least one of the faults and came back.
        node.stderr_line_with("redis");
    }
}

#[test]
fn a_full_queue_slows_its_senders_and_loses_nothing() {
    let redis = Redis::start();
    let a = node_at(&redis.url(), "a", &["--stats", "--cluster-queue", "5"]);
    let mut alice = Client::join(a.addr, "alice");
    let mut bob = Client::join(a.addr, "bob");
    redis.signal("STOP");
    for n in 0..50 {
        alice.send(&format!("q {n}"));
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(500));
    bob.send("/stats");
    let stats = bob.expect("queued ");
    let queued: usize = stats
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {stats:?}"));
    // The bound, one post of the sender past it, and the canaries of the pause.
    assert!(queued <= 10, "the queue grew past its bound: {stats}");
    redis.signal("CONT");
    for n in 0..50 {
        bob.expect_within(&format!("<alice> q {n}"), Duration::from_secs(20));
    }
}

#[test]
fn redis_restarted_empty_is_told_and_chat_goes_on() {
    let mut redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let mut alice = Client::join(a.addr, "alice");
    let mut bob = Client::join(b.addr, "bob");
    alice.send("before");
    bob.expect("<alice> before");
    redis.restart(None);
    alice.expect("history was reset");
    bob.expect("history was reset");
    alice.send("after");
    bob.expect("<alice> after");
    bob.send("/history");
    let line = bob.expect("<alice>");
    assert_eq!(line, "<alice> after", "the old history is gone");
}

#[test]
fn a_broker_that_takes_writes_but_delivers_nothing_is_reported_within_3_s() {
    let redis = Redis::start();
    let a = node(&redis, "a");
    let mut alice = Client::join(a.addr, "alice");
    alice.send("/stats");
    alice.expect("canary: sent");
    // Appends still work, reads are refused: the canary never comes back.
    assert_eq!(
        redis.cli(&["ACL", "SETUSER", "default", "-xread"]).trim(),
        "OK"
    );
    let cut = Instant::now();
    a.stderr_line_with("redis takes writes but delivers nothing");
    let took = cut.elapsed();
    assert!(
        took < Duration::from_millis(3_500),
        "reported after {took:?}"
    );
    alice.send("/stats");
    alice.expect("alarm: redis takes writes but delivers nothing");
    redis.cli(&["ACL", "SETUSER", "default", "+xread"]);
    // The canary comes back.
    let deadline = Instant::now() + WAIT;
    loop {
        alice.send("/stats");
        let canary = alice.expect("canary:");
        if canary.contains("seen 0.") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the canary never came back: {canary}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bench_chat_spreads_its_clients_over_the_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());
    let (out, stderr, code) = run(
        &[
            "bench",
            "chat",
            &a_addr,
            &b_addr,
            "--clients",
            "6",
            "--senders",
            "2",
            "--messages",
            "50",
            "--limit",
            "30s",
            "--json",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out).expect("one JSON report");
    let counters: std::collections::HashMap<String, u64> =
        serde_json::from_value(serde_json::Value::Object(
            report["counters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (c[0].as_str().unwrap().to_owned(), c[1].clone()))
                .collect(),
        ))
        .unwrap();
    assert_eq!(counters["expected"], 500, "{report}");
    for bad in ["lost", "duplicated", "reordered", "disconnected"] {
        assert_eq!(counters[bad], 0, "{bad}: {report}");
    }
}
