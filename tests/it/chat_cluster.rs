//! `sockit chat serve --cluster`: several nodes (the binary) joined through a real
//! `redis-server` the tests start themselves; clients over raw TCP (as `nc` would be) and
//! `sockit chat join`. Faults are real: killed connections, a paused and a restarted Redis,
//! a node killed with SIGKILL.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::*;

/// Senders × lines each in the big tests.
const SENDERS: usize = 10;
const LINES: usize = 1_000;

/// How long the big tests may take to deliver everything.
const DELIVERY: Duration = Duration::from_secs(90);

fn node(redis: &Redis, name: &str) -> Server {
    Server::start(&[
        "chat",
        "serve",
        "--port",
        "0",
        "--cluster",
        &redis.url(),
        "--node",
        name,
        "--rate",
        "0",
        "--stats",
    ])
}

/// A raw line client.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect to a node");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// Connects and takes `nick`.
    fn join(addr: SocketAddr, nick: &str) -> Client {
        let mut client = Self::connect(addr);
        client.expect("you joined #lobby");
        client.send(&format!("/nick {nick}"));
        client.expect(&format!("is now {nick}"));
        client
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .expect("send a line");
    }

    /// The next line, or `None` at the deadline; panics at EOF.
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let mut line = String::new();
        while Instant::now() < deadline {
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!("the node closed the connection"),
                Ok(_) if line.ends_with('\n') => return Some(line.trim_end().to_owned()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
        None
    }

    /// Reads until a line contains `needle` (bounded) and returns it.
    fn expect(&mut self, needle: &str) -> String {
        self.expect_within(needle, WAIT)
    }

    fn expect_within(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(line) = self.next_line(deadline) {
            if line.contains(needle) {
                return line;
            }
            seen.push(line);
        }
        panic!("no line containing {needle:?} within {limit:?}; saw {seen:#?}");
    }

    /// Sends `/who` until its answer satisfies `is_done` (bounded by `limit`); returns it.
    fn who_until(&mut self, limit: Duration, is_done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while Instant::now() < deadline {
            self.send("/who");
            last = self.expect("* in #lobby");
            if is_done(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("/who never became right within {limit:?}; last: {last}");
    }
}

/// What one receiver saw: the senders' lines in order, and whether it stayed connected.
struct Seen {
    name: String,
    lines: Vec<String>,
    is_connected: bool,
    notices: Vec<String>,
}

/// Reads `client` until it has `expected` sender lines (`<sN> …`) or the deadline.
fn collect(name: String, mut client: Client, expected: usize) -> JoinHandle<Seen> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + DELIVERY;
        let mut lines = Vec::with_capacity(expected);
        let mut notices = Vec::new();
        let mut is_connected = true;
        while lines.len() < expected {
            let mut line = String::new();
            match client.reader.read_line(&mut line) {
                Ok(0) => {
                    is_connected = false;
                    break;
                }
                Ok(_) if line.starts_with("<s") => lines.push(line.trim_end().to_owned()),
                Ok(_) => notices.push(line.trim_end().to_owned()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    is_connected = false;
                    break;
                }
            }
            if Instant::now() > deadline {
                break;
            }
        }
        Seen {
            name,
            lines,
            is_connected,
            notices,
        }
    })
}

/// A `sockit chat join` client; its stdin stays open until it is dropped.
struct JoinClient {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl JoinClient {
    fn start(addr: SocketAddr, nick: &str) -> JoinClient {
        let mut child = sockit()
            .args(["chat", "join", &addr.to_string(), "--nick", nick])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sockit chat join");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut join = JoinClient { child, lines };
        join.expect(&format!("is now {nick}"));
        join
    }

    fn expect(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line.contains(needle) {
                return;
            }
        }
        panic!("sockit chat join never printed {needle:?}");
    }

    /// Collects `expected` sender lines, like [`collect`].
    fn collect(self, name: String, expected: usize) -> JoinHandle<Seen> {
        std::thread::spawn(move || {
            let mut this = self;
            let deadline = Instant::now() + DELIVERY;
            let mut lines = Vec::with_capacity(expected);
            let mut notices = Vec::new();
            let mut is_connected = true;
            while lines.len() < expected {
                let left = deadline.saturating_duration_since(Instant::now());
                match this.lines.recv_timeout(left) {
                    Ok(line) if line.starts_with("<s") => lines.push(line),
                    Ok(line) => notices.push(line),
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        is_connected = false;
                        break;
                    }
                }
            }
            if let Ok(Some(_)) = this.child.try_wait() {
                is_connected = false;
            }
            let _ = this.child.kill();
            let _ = this.child.wait();
            Seen {
                name,
                lines,
                is_connected,
                notices,
            }
        })
    }
}

/// The line sender `i` says as its `n`th.
fn said(i: usize, n: usize) -> String {
    format!("m {i} {n}")
}

/// Starts 30 clients over `nodes` (10 senders and 17 receivers over raw TCP, 3 `sockit chat
/// join`), then has each sender send its lines (pausing `pace` between two), running
/// `meanwhile` as they go; checks that every client got every other client's line exactly
/// once, in one order shared by all, and stayed connected.
fn every_line_once_in_one_order(nodes: &[Server], pace: Duration, meanwhile: impl FnOnce()) {
    let addr = |k: usize| nodes[k % nodes.len()].addr;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..SENDERS {
        let client = Client::join(addr(i), &format!("s{i}"));
        let writer = client.writer.try_clone().unwrap();
        senders.push(writer);
        receivers.push(collect(format!("s{i}"), client, (SENDERS - 1) * LINES));
    }
    for k in 0..17 {
        let client = Client::join(addr(k), &format!("r{k}"));
        receivers.push(collect(format!("r{k}"), client, SENDERS * LINES));
    }
    for k in 0..3 {
        let join = JoinClient::start(addr(k), &format!("j{k}"));
        receivers.push(join.collect(format!("j{k}"), SENDERS * LINES));
    }
    let sending: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, mut writer)| {
            std::thread::spawn(move || {
                for n in 0..LINES {
                    writer
                        .write_all(format!("{}\n", said(i, n)).as_bytes())
                        .expect("a sender stays connected");
                    if !pace.is_zero() {
                        std::thread::sleep(pace);
                    }
                }
                writer
            })
        })
        .collect();
    meanwhile();
    // Keep the senders' sockets open until everything is checked.
    let _writers: Vec<TcpStream> = sending.into_iter().map(|t| t.join().unwrap()).collect();
    let seen: Vec<Seen> = receivers.into_iter().map(|r| r.join().unwrap()).collect();
    let reference = seen
        .iter()
        .find(|s| s.name == "r0")
        .expect("r0 is a receiver")
        .lines
        .clone();
    let everything: HashSet<String> = (0..SENDERS)
        .flat_map(|i| (0..LINES).map(move |n| format!("<s{i}> {}", said(i, n))))
        .collect();
    for s in &seen {
        assert!(
            s.is_connected,
            "{} was disconnected; last notices: {:?}",
            s.name,
            s.notices.iter().rev().take(5).collect::<Vec<_>>()
        );
        let unique: HashSet<&String> = s.lines.iter().collect();
        let expected: HashSet<&String> = everything
            .iter()
            .filter(|l| !l.starts_with(&format!("<{}>", s.name)))
            .collect();
        let lost = expected.difference(&unique).count();
        let duplicated = s.lines.len() - unique.len();
        assert_eq!(
            (lost, duplicated),
            (0, 0),
            "{}: lost and duplicated lines (got {} lines)",
            s.name,
            s.lines.len()
        );
        let own = format!("<{}>", s.name);
        let in_reference_order: Vec<&String> =
            reference.iter().filter(|l| !l.starts_with(&own)).collect();
        let reordered = s
            .lines
            .iter()
            .zip(&in_reference_order)
            .filter(|(a, b)| a != *b)
            .count();
        assert_eq!(reordered, 0, "{}: lines in another order than r0's", s.name);
    }
}

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
fn a_fresh_node_replays_history_from_the_stream() {
    let redis = Redis::start();
    let a = node(&redis, "a");
    let mut alice = Client::join(a.addr, "alice");
    for n in 0..5 {
        alice.send(&format!("line {n}"));
    }
    alice.send("/join rust");
    alice.expect("you joined #rust");
    alice.send("in rust");
    // Lines reach history as they come back from the stream: wait until it holds this one.
    let deadline = Instant::now() + WAIT;
    while !redis
        .cli(&["XRANGE", "sockit:room:rust", "-", "+"])
        .contains("in rust")
    {
        assert!(
            Instant::now() < deadline,
            "the line never reached the stream"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A node started afterwards shows both rooms' past, from Redis.
    let b = node(&redis, "b");
    let mut carol = Client::connect(b.addr);
    carol.expect("last 5 lines of #lobby");
    for n in 0..5 {
        carol.expect(&format!("<alice> line {n}"));
    }
    carol.expect("end of history");
    carol.send("/join rust");
    carol.expect("<alice> in rust");
    // Line ids are the stream's entry ids.
    let ids = redis.cli(&["XRANGE", "sockit:room:lobby", "-", "+", "COUNT", "1"]);
    assert!(ids.contains('-'), "{ids}");
}

#[test]
fn entries_written_field_by_field_by_earlier_versions_still_show_as_history() {
    let redis = Redis::start();
    // Before entries were packed into one field, each field was its own (the line as
    // members see it).
    redis.cli(&["SADD", "sockit:rooms", "lobby"]);
    for (seq, kind, line) in [
        ("1", "m", "<olga> old line\n"),
        ("2", "a", "* olga waves\n"),
    ] {
        redis.cli(&[
            "XADD",
            "sockit:room:lobby",
            "*",
            "n",
            "old/1",
            "q",
            seq,
            "k",
            kind,
            "c",
            "0",
            "u",
            "olga",
            "t",
            "1700000000000",
            "l",
            line,
        ]);
    }
    let a = node(&redis, "a");
    let mut carol = Client::connect(a.addr);
    carol.expect("last 2 lines of #lobby");
    carol.expect("<olga> old line");
    carol.expect("* olga waves");
    carol.expect("end of history");
}

#[test]
fn history_is_read_past_the_first_page_of_entries() {
    let redis = Redis::start();
    redis.cli(&["SADD", "sockit:rooms", "lobby"]);
    // 150 entries of one line each, in the packed format README describes (a node appends
    // runs of lines; one line per entry makes the most entries per line of history).
    let script = r#"
        for i = 0, 149 do
            local body = "<olga> line " .. i .. "\n"
            local record = string.format("m %d 0 1700000000000 5 4 0 %d\nold/1olga%s", i + 1, #body, body)
            redis.call("XADD", KEYS[1], "*", "e", record)
        end
        return redis.call("XLEN", KEYS[1])
    "#;
    let len = redis.cli(&["EVAL", script, "1", "sockit:room:lobby"]);
    assert_eq!(len.trim(), "150");
    let a = node(&redis, "a");
    let mut carol = Client::connect(a.addr);
    // The default history is 100 lines: the newest 100, oldest first.
    carol.expect("last 100 lines of #lobby");
    for n in 50..150 {
        carol.expect(&format!("<olga> line {n}"));
    }
    carol.expect("end of history");
}

/// CPU time (user + system, clock ticks) a process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses: utime and stime are the 12th
    // and 13th of them.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = after
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    fields.iter().sum()
}

#[test]
fn an_entry_another_program_added_is_passed_over_without_spinning() {
    let redis = Redis::start();
    let a = node(&redis, "a");
    let mut alice = Client::join(a.addr, "alice");
    let mut bob = Client::join(a.addr, "bob");
    alice.send("before");
    bob.expect("<alice> before");
    // Not a sockit entry, and the newest in the stream: the reader must read past it, not
    // read it again and again.
    redis.cli(&["XADD", "sockit:room:lobby", "*", "foo", "bar"]);
    std::thread::sleep(Duration::from_millis(300));
    let start = cpu_ticks(a.child.id());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(a.child.id()) - start;
    assert!(
        used < 30,
        "the node used {used} ticks of CPU in a second doing nothing"
    );
    alice.send("after");
    bob.expect("<alice> after");
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
fn an_unreachable_redis_is_an_error_with_exit_code_7() {
    let (_, stderr, code) = run(
        &[
            "chat",
            "serve",
            "--port",
            "0",
            "--cluster",
            "redis://127.0.0.1:1",
        ],
        b"",
    );
    assert_eq!(code, Some(7), "{stderr}");
    assert!(
        stderr.starts_with("error: cannot reach redis at redis://127.0.0.1:1"),
        "{stderr}"
    );
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

#[test]
fn a_full_queue_slows_its_senders_and_loses_nothing() {
    let redis = Redis::start();
    let a = Server::start(&[
        "chat",
        "serve",
        "--port",
        "0",
        "--cluster",
        &redis.url(),
        "--node",
        "a",
        "--rate",
        "0",
        "--stats",
        "--cluster-queue",
        "5",
    ]);
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
fn a_password_in_the_url_works_and_a_wrong_one_exits_7_without_showing_it() {
    let redis = Redis::start();
    redis.cli(&["CONFIG", "SET", "requirepass", "s3cret-pw"]);
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}", redis.port);
    let a = Server::start(&[
        "chat",
        "serve",
        "--port",
        "0",
        "--cluster",
        &url,
        "--node",
        "a",
        "--rate",
        "0",
    ]);
    let mut alice = Client::join(a.addr, "alice");
    let mut bob = Client::join(a.addr, "bob");
    // Every line goes through Redis and back: this one proves the password was taken.
    alice.send("through redis");
    bob.expect("<alice> through redis");

    let wrong = format!("redis://:not-the-pw@127.0.0.1:{}", redis.port);
    let started = Instant::now();
    let (_, stderr, code) = run(&["chat", "serve", "--port", "0", "--cluster", &wrong], b"");
    assert_eq!(code, Some(7), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("error: redis at redis://:redacted@127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("refused this node: check the password in the url"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-pw"), "{stderr}");
    // Refused at once: a wrong password is not retried until the connect timeout.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn rediss_with_a_self_signed_certificate_and_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    // The plain port stays for the readiness check; nodes use only the TLS one.
    let _redis = Redis::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        key,
        "--tls-ca-cert-file",
        cert,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let a = Server::start(&[
        "chat",
        "serve",
        "--port",
        "0",
        "--cluster",
        &url,
        "--cluster-cacert",
        cert,
        "--node",
        "a",
        "--rate",
        "0",
    ]);
    let b = Server::start(&[
        "chat",
        "serve",
        "--port",
        "0",
        "--cluster",
        &url,
        "--cluster-cacert",
        cert,
        "--node",
        "b",
        "--rate",
        "0",
    ]);
    let mut alice = Client::join(a.addr, "alice");
    let mut bob = Client::join(b.addr, "bob");
    alice.send("over tls");
    bob.expect("<alice> over tls");
    // Without the CA, the system's roots do not vouch for a self-signed certificate.
    let (_, stderr, code) = run(&["chat", "serve", "--port", "0", "--cluster", &url], b"");
    assert_ne!(code, Some(0), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("error: cannot reach redis at rediss://"),
        "{stderr}"
    );
}
