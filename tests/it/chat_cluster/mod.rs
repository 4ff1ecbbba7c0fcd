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
    node_at(&redis.url(), name, &["--stats"])
}

/// A node named `name` joined through the Redis at `url`, flood control off, with `extra`
/// arguments.
fn node_at(url: &str, name: &str, extra: &[&str]) -> Server {
    let mut args = vec![
        "chat",
        "serve",
        "--port",
        "0",
        "--cluster",
        url,
        "--node",
        name,
        "--rate",
        "0",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
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

mod connection;
mod delivery;
mod members;
mod stream;
