//! `sockit chat`: servers in-process (library) and as the binary, clients over real TCP.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use sockit::chat::{self, QueueLimits};

use crate::support::*;

/// An in-process chat server on 127.0.0.1 port 0.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    pub(crate) async fn start(config: chat::Config) -> Running {
        let listener = sockit::net::bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = chat::Server::open(config).unwrap();
        let task = tokio::spawn(server.serve(listener, stop.clone()));
        Running { addr, stop, task }
    }

    pub(crate) async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server stops in time")
            .unwrap();
    }
}

fn fast_config() -> chat::Config {
    chat::Config {
        rate: 0.0,
        ..chat::Config::default()
    }
}

/// A raw line client, as `nc` would be.
struct Peer {
    reader: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Peer {
    async fn connect(addr: SocketAddr) -> Peer {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .unwrap();
        Self::from_stream(stream)
    }

    fn from_stream(stream: TcpStream) -> Peer {
        let (r, w) = stream.into_split();
        Peer {
            reader: tokio::io::BufReader::new(r),
            writer: w,
        }
    }

    /// Connects and waits for the welcome; with `nick`, also takes that nickname.
    async fn join(addr: SocketAddr, nick: &str) -> Peer {
        let mut peer = Self::connect(addr).await;
        peer.expect("you joined #lobby").await;
        peer.send(&format!("/nick {nick}")).await;
        peer.expect(&format!("is now {nick}")).await;
        peer
    }

    async fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes()).await;
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.writer.write_all(bytes))
            .await
            .expect("write in time")
            .unwrap();
    }

    /// The next line, or `None` at EOF.
    async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("a line in time")
            .unwrap();
        (n > 0).then(|| line.trim_end_matches('\n').to_owned())
    }

    /// Reads lines until one contains `needle`; returns it.
    async fn expect(&mut self, needle: &str) -> String {
        loop {
            match self.line().await {
                Some(line) if line.contains(needle) => return line,
                Some(_) => {}
                None => panic!("connection closed before a line with {needle:?}"),
            }
        }
    }

    /// Reads lines until EOF; returns them all.
    async fn until_eof(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = self.line().await {
            lines.push(line);
        }
        lines
    }
}

#[tokio::test]
async fn rooms_private_messages_and_commands() {
    let server = Running::start(fast_config()).await;
    let mut alice = Peer::join(server.addr, "alice").await;
    let mut bob = Peer::join(server.addr, "bob").await;
    alice.expect("bob").await;
    alice.send("hello bob").await;
    assert_eq!(bob.expect("hello").await, "<alice> hello bob");
    bob.send("/me waves").await;
    assert_eq!(alice.expect("waves").await, "* bob waves");
    bob.send("/msg ALICE psst").await;
    assert_eq!(alice.expect("psst").await, "*bob* psst");
    assert_eq!(bob.expect("psst").await, "-> *alice* psst");
    bob.send("/who").await;
    assert_eq!(bob.expect("in #lobby").await, "* in #lobby (2): alice, bob");
    bob.send("/join #Rust").await;
    assert_eq!(alice.expect("went to").await, "* bob went to #rust");
    bob.send("/rooms").await;
    assert_eq!(bob.expect("rooms:").await, "* rooms: #lobby (1), #rust (1)");
    bob.send("/bogus").await;
    bob.expect("unknown command /bogus").await;
    bob.send("/quit see you").await;
    bob.expect("* bye").await;
    assert!(bob.until_eof().await.is_empty());
    alice.send("/join rust").await;
    alice.expect("you joined #rust").await;
    server.shutdown().await;
}

#[test]
fn three_clients_with_the_binary_one_a_raw_socket() {
    let server = Server::start(&["chat", "serve", "--port", "0"]);
    let connect = || {
        let stream = std::net::TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        (BufReader::new(stream.try_clone().unwrap()), stream)
    };
    let expect = |r: &mut BufReader<std::net::TcpStream>, needle: &str| loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "EOF before {needle:?}");
        if line.contains(needle) {
            return line;
        }
    };
    let (mut alice_in, mut alice) = connect();
    expect(&mut alice_in, "you joined #lobby");
    alice.write_all(b"/nick alice\nhi all\n").unwrap();
    expect(&mut alice_in, "is now alice");
    let (mut carol_in, mut carol) = connect();
    expect(&mut carol_in, "<alice> hi all"); // history replay
    carol.write_all(b"/nick carol\n").unwrap();
    expect(&mut alice_in, "is now carol");

    let (out, err, code) = run(
        &["chat", "join", &server.addr.to_string(), "--nick", "bob"],
        "hello from bob\n".as_bytes(),
    );
    assert_eq!(code, Some(0), "{err}");
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("<alice> hi all"), "{out}");
    assert!(out.contains("* bye"), "{out}");
    assert!(
        !out.contains('\x1b'),
        "no colours without a terminal: {out}"
    );
    assert_eq!(
        expect(&mut alice_in, "from bob").trim_end(),
        "<bob> hello from bob"
    );
    expect(&mut carol_in, "<bob> hello from bob");
    expect(&mut carol_in, "bob left");
}

#[tokio::test]
async fn fifty_clients_get_every_line_once_and_in_order() {
    const CLIENTS: usize = 50;
    const MESSAGES: usize = 20;
    let server = Running::start(chat::Config {
        history_lines: 0,
        ..fast_config()
    })
    .await;
    let mut peers = Vec::new();
    for i in 0..CLIENTS {
        peers.push(Peer::join(server.addr, &format!("c{i}")).await);
    }
    let mut tasks = Vec::new();
    for (i, peer) in peers.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let (mut reader, mut writer) = (peer.reader, peer.writer);
            let sending = tokio::spawn(async move {
                for j in 0..MESSAGES {
                    writer
                        .write_all(format!("m {i} {j}\n").as_bytes())
                        .await
                        .unwrap();
                }
                writer
            });
            let mut next: HashMap<usize, usize> = HashMap::new();
            let mut received = 0;
            let mut line = String::new();
            while received < (CLIENTS - 1) * MESSAGES {
                line.clear();
                let n = tokio::time::timeout(WAIT, reader.read_line(&mut line))
                    .await
                    .expect("lines keep coming")
                    .unwrap();
                assert!(n > 0, "closed early");
                let Some(rest) = line.strip_prefix('<') else {
                    continue; // notices
                };
                let (_, text) = rest.split_once("> ").unwrap();
                let mut parts = text.trim_end().split(' ').skip(1);
                let from: usize = parts.next().unwrap().parse().unwrap();
                let seq: usize = parts.next().unwrap().parse().unwrap();
                assert_ne!(from, i, "no echo of one's own lines");
                let expected = next.entry(from).or_default();
                assert_eq!(seq, *expected, "client {i}: line from {from} out of order");
                *expected += 1;
                received += 1;
            }
            // Stay connected until our own lines are out.
            let _writer = sending.await.unwrap();
            assert!(next.values().all(|&n| n == MESSAGES));
        }));
    }
    for task in tasks {
        tokio::time::timeout(WAIT * 2, task)
            .await
            .expect("all delivered in time")
            .unwrap();
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_and_never_pauses_the_others() {
    const QUEUE_BYTES: usize = 256 * 1024;
    let server = Running::start(chat::Config {
        queue: QueueLimits {
            max_bytes: QUEUE_BYTES,
        },
        history_lines: 0,
        ..fast_config()
    })
    .await;
    let mut flooder = Peer::join(server.addr, "flooder").await;
    let mut ticker = Peer::join(server.addr, "ticker").await;
    let mut reader = Peer::join(server.addr, "reader").await;
    // The sleeper's receive window is small, so the server's queue for it fills up soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut sleeper = Peer::from_stream(socket.connect(server.addr).await.unwrap());
    sleeper.expect("you joined #lobby").await;
    // A member from its first line on (a client that never spoke only listens).
    sleeper.send("zzz").await;
    reader.expect("guest-4 joined").await;

    // The reader checks that every tick arrives within the bound, before, while and after
    // the sleeper's queue fills up and it is dropped.
    // Long enough for the flood to fill the sleeper's socket buffers and queue on a busy machine.
    const TICKS: usize = 150;
    const MAX_DELAY: Duration = Duration::from_millis(500);
    let epoch = tokio::time::Instant::now();
    let reading = tokio::spawn(async move {
        let (mut ticks, mut floods, mut worst) = (0, 0, Duration::ZERO);
        let mut dropped_after = None;
        while ticks < TICKS {
            let line = reader.line().await.expect("reader stays connected");
            if let Some(tick) = line.strip_prefix("<ticker> ") {
                let sent: u64 = tick.parse().unwrap();
                let delay = epoch.elapsed().saturating_sub(Duration::from_micros(sent));
                worst = worst.max(delay);
                ticks += 1;
            } else if line.starts_with("<flooder>") {
                floods += 1;
            } else if line.contains("guest-4 was dropped") {
                dropped_after = Some(ticks);
            }
        }
        (floods, worst, dropped_after)
    });
    let ticking = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..TICKS {
            interval.tick().await;
            ticker.send(&epoch.elapsed().as_micros().to_string()).await;
        }
        ticker
    });
    // Several times the sleeper's queue, sent flat out while the ticks go on.
    const FLOOD_LINES: usize = 8_000;
    let payload = "x".repeat(500);
    let mut batch = String::new();
    for i in 0..FLOOD_LINES {
        batch.push_str(&format!("{i} {payload}\n"));
        if batch.len() > 64 * 1024 {
            flooder.send_bytes(batch.as_bytes()).await;
            batch.clear();
        }
    }
    flooder.send_bytes(batch.as_bytes()).await;
    let (floods, worst, dropped_after) = tokio::time::timeout(WAIT * 2, reading)
        .await
        .expect("the reader gets every tick in time")
        .unwrap();
    let _ticker = ticking.await.unwrap();
    assert!(
        worst <= MAX_DELAY,
        "a tick took {worst:?} to arrive (bound {MAX_DELAY:?})"
    );
    assert!(floods > 0, "the flood reached the reader too");
    assert!(
        dropped_after.is_some_and(|t| t < TICKS),
        "the room is told the sleeper was dropped while ticks went on: {dropped_after:?} \
         ({floods} flood lines, worst tick {worst:?})"
    );
    // The sleeper's connection is closed by the server (whatever it had not read is lost).
    let closed = tokio::time::timeout(WAIT, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::io::AsyncReadExt::read(sleeper.reader.get_mut(), &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the sleeper's connection is closed");
    server.shutdown().await;
}

#[tokio::test]
async fn a_huge_line_is_refused_to_its_sender_who_stays() {
    let server = Running::start(fast_config()).await;
    let mut big = Peer::join(server.addr, "big").await;
    let mut other = Peer::join(server.addr, "other").await;
    big.send_bytes(&vec![b'x'; 1 << 20]).await;
    big.expect("line too long (at most 8192 bytes)").await;
    big.send_bytes(b"\nstill here\n").await;
    let line = other.expect("<big>").await;
    assert_eq!(line, "<big> still here");
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_and_escapes_are_neutralised_unicode_kept() {
    let server = Running::start(fast_config()).await;
    let mut eve = Peer::join(server.addr, "eve").await;
    let mut bob = Peer::join(server.addr, "bob").await;
    eve.send_bytes(
        b"\x1b[2J\x1b]0;owned\x07hi \xff\x00 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x91\x8b\r\n",
    )
    .await;
    let line = bob.expect("<eve>").await;
    assert_eq!(line, "<eve> hi \u{fffd} 你好 👋");
    server.shutdown().await;
}

#[tokio::test]
async fn nicknames_clash_without_regard_to_case() {
    let server = Running::start(fast_config()).await;
    let _alice = Peer::join(server.addr, "Alice").await;
    let mut other = Peer::connect(server.addr).await;
    other.send("/nick aLICE").await;
    other.expect("the nickname aLICE is taken").await;
    other.send("/nick bad name").await;
    other.expect("usage: /nick NAME").await;
    other.send("/nick -x").await;
    other.expect("starts with a letter or digit").await;
    server.shutdown().await;
}

#[tokio::test]
async fn flood_control_slows_the_excess_loses_nothing_and_stalls_nobody() {
    let server = Running::start(chat::Config {
        rate: 100.0,
        burst: 20.0,
        ..chat::Config::default()
    })
    .await;
    let mut flood = Peer::join(server.addr, "flood").await;
    let mut calm = Peer::join(server.addr, "calm").await;
    let mut other = Peer::join(server.addr, "other").await;
    calm.expect("is now other").await;
    let burst: String = (0..200).map(|i| format!("line {i}\n")).collect();
    flood.send_bytes(burst.as_bytes()).await;
    flood.expect("slow down").await;
    // While the flooder is held back, others talk at once.
    let sent_at = std::time::Instant::now();
    other.send("not stalled").await;
    let mut next = 0;
    let mut marker_seen_at = None;
    while next < 200 {
        let line = calm.line().await.expect("calm stays connected");
        if line == "<other> not stalled" {
            marker_seen_at = Some((next, sent_at.elapsed()));
        } else if let Some(text) = line.strip_prefix("<flood> ") {
            assert_eq!(text, format!("line {next}"), "lost or reordered");
            next += 1;
        }
    }
    let (position, delay) = marker_seen_at.expect("the other member's line arrived");
    assert!(
        position < 150,
        "the other line waited for the flood ({position})"
    );
    assert!(delay < Duration::from_millis(500), "took {delay:?}");
    // Told once per burst, and still connected.
    flood.send("/quit").await;
    let rest = flood.until_eof().await;
    assert!(rest.iter().any(|l| l == "* bye"), "{rest:?}");
    assert!(!rest.iter().any(|l| l.contains("slow down")), "{rest:?}");
    server.shutdown().await;
}

#[test]
fn a_thousand_piped_lines_all_arrive_in_order_with_default_limits() {
    let server = Server::start(&["chat", "serve", "--port", "0", "--history", "0"]);
    let stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut watcher = BufReader::new(stream.try_clone().unwrap());
    // A silent client is a member once greeted (the server first waits to see whether it
    // speaks HTTP).
    let mut greeting = String::new();
    while !greeting.contains("you joined #lobby") {
        greeting.clear();
        assert!(watcher.read_line(&mut greeting).unwrap() > 0);
    }
    let expect_lines = |watcher: &mut BufReader<std::net::TcpStream>, nick: &str| {
        let started = std::time::Instant::now();
        let mut next = 0;
        while next < 1000 {
            let mut line = String::new();
            assert!(watcher.read_line(&mut line).unwrap() > 0, "EOF at {next}");
            if let Some(text) = line.trim_end().strip_prefix(&format!("<{nick}> ")) {
                assert_eq!(text, format!("n {next}"), "lost or reordered");
                next += 1;
            }
        }
        assert!(started.elapsed() < WAIT, "took {:?}", started.elapsed());
    };
    let lines: String = (0..1000).map(|i| format!("n {i}\n")).collect();
    let addr = server.addr.to_string();
    let piping = std::thread::spawn({
        let lines = lines.clone();
        move || {
            run(
                &["chat", "join", &addr, "--nick", "piped"],
                lines.as_bytes(),
            )
        }
    });
    expect_lines(&mut watcher, "piped");
    let (out, err, code) = piping.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    let out = String::from_utf8_lossy(&out);
    assert_eq!(out.matches("slow down").count(), 1, "{out}");
    assert!(out.contains("* bye"), "{out}");

    // A raw socket client that writes everything at once is slowed, not dropped.
    let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    raw.write_all(format!("/nick raw\n{lines}/quit\n").as_bytes())
        .unwrap();
    expect_lines(&mut watcher, "raw");
    let mut said = String::new();
    std::io::Read::read_to_string(&mut raw, &mut said).unwrap();
    assert!(said.contains("* slow down"), "{said}");
    assert!(said.ends_with("* bye\n"), "{said}");
}

/// Reads `peer`'s lines up to the one containing `needle`; returns them all.
async fn lines_until(peer: &mut Peer, needle: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        match peer.line().await {
            Some(line) if line.contains(needle) => {
                lines.push(line);
                return lines;
            }
            Some(line) => lines.push(line),
            None => panic!("connection closed before {needle:?}; got {lines:?}"),
        }
    }
}

#[tokio::test]
async fn a_silent_client_hears_the_room_but_is_a_member_only_once_it_speaks() {
    let server = Running::start(fast_config()).await;
    let mut alice = Peer::join(server.addr, "alice").await;
    // Waits for the server to speak first, as telnet and the lessons' clients do.
    let started = std::time::Instant::now();
    let mut silent = Peer::connect(server.addr).await;
    silent.expect("* welcome").await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "welcomed after {:?}",
        started.elapsed()
    );
    let greeting = silent.expect("you joined #lobby").await;
    let ghost = greeting
        .rsplit(' ')
        .next()
        .expect("a nick in the greeting")
        .to_owned();
    // Long past the first-bytes wait: still nobody sees it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.send("/who").await;
    alice.send("/rooms").await;
    let seen = lines_until(&mut alice, "* rooms:").await;
    assert!(
        seen.contains(&"* in #lobby (1): alice".to_owned()),
        "{seen:?}"
    );
    assert!(seen.contains(&"* rooms: #lobby (1)".to_owned()), "{seen:?}");
    assert!(!seen.iter().any(|l| l.contains(&ghost)), "{seen:?}");
    // It hears the room meanwhile.
    alice.send("anyone there?").await;
    assert_eq!(silent.expect("anyone").await, "<alice> anyone there?");

    // Its first line makes it a member: announced, then heard, then listed.
    silent.send("hi").await;
    let seen = lines_until(&mut alice, "> hi").await;
    assert_eq!(
        seen,
        [format!("* {ghost} joined #lobby"), format!("<{ghost}> hi")]
    );
    alice.send("/who").await;
    assert_eq!(
        alice.expect("in #lobby").await,
        format!("* in #lobby (2): alice, {ghost}")
    );
    silent.send("/who").await;
    let own = lines_until(&mut silent, "in #lobby (2)").await;
    assert!(!own.iter().any(|l| l.contains("joined")), "{own:?}");

    // A listener that goes away unheard leaves unannounced.
    let mut spare = Peer::connect(server.addr).await;
    spare.expect("you joined #lobby").await;
    drop(spare);
    alice.send("/who").await;
    let seen = lines_until(&mut alice, "in #lobby").await;
    assert_eq!(seen, [format!("* in #lobby (2): alice, {ghost}")]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_late_http_request_is_never_chat_and_closes_quietly() {
    for password in [None, Some("secret")] {
        let server = Running::start(chat::Config {
            password: password.map(|p| chat::Password(p.into())),
            ..fast_config()
        })
        .await;
        let mut alice = Peer::connect(server.addr).await;
        if password.is_some() {
            alice.send("PASS secret").await;
        }
        alice.expect("you joined #lobby").await;
        alice.send("/nick alice").await;
        alice.expect("is now alice").await;

        // A browser slow to send its request: the greeting went out before it came.
        let mut late = Peer::connect(server.addr).await;
        late.expect("* ").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        late.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let rest = late.until_eof().await;
        assert!(
            !rest.iter().any(|l| l.contains("wrong password")),
            "{password:?}: {rest:?}"
        );

        alice.send("/history").await;
        alice.send("/who").await;
        let seen = lines_until(&mut alice, "in #lobby").await;
        assert_eq!(
            seen,
            ["* in #lobby (1): alice"],
            "{password:?}: no join, no chat line, no leave"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_message_without_newline_is_delivered_after_a_pause_or_at_eof() {
    let server = Running::start(fast_config()).await;
    let mut writer = Peer::join(server.addr, "writer").await;
    let mut reader = Peer::join(server.addr, "reader").await;
    writer.send_bytes(b"one message per send()").await;
    let started = std::time::Instant::now();
    assert_eq!(
        reader.expect("<writer>").await,
        "<writer> one message per send()"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // A line written in pieces, each within the pause, stays whole.
    for piece in ["a", "b", "c"] {
        writer.send_bytes(piece.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.send_bytes(b"\n").await;
    assert_eq!(reader.expect("<writer>").await, "<writer> abc");
    // A partial line, then EOF: it is delivered, then the writer leaves.
    writer.send_bytes(b"last words").await;
    writer.writer.shutdown().await.unwrap();
    assert_eq!(reader.expect("<writer>").await, "<writer> last words");
    reader.expect("writer left").await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_abrupt_reset_is_announced_and_cleaned_up() {
    let server = Running::start(fast_config()).await;
    let mut watcher = Peer::join(server.addr, "watcher").await;
    let gone = Peer::join(server.addr, "gone").await;
    let stream = gone.reader.into_inner().reunite(gone.writer).unwrap();
    stream.set_zero_linger().unwrap();
    drop(stream); // RST
    let line = watcher.expect("gone left").await;
    assert!(
        line == "* gone left (connection reset)" || line == "* gone left",
        "{line}"
    );
    watcher.send("/who").await;
    assert_eq!(
        watcher.expect("in #lobby").await,
        "* in #lobby (1): watcher"
    );
    // The nickname is free again.
    let _again = Peer::join(server.addr, "gone").await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_tells_everyone_and_closes() {
    let server = Running::start(fast_config()).await;
    let mut a = Peer::join(server.addr, "a").await;
    let mut b = Peer::join(server.addr, "b").await;
    server.shutdown().await;
    for peer in [&mut a, &mut b] {
        let rest = peer.until_eof().await;
        assert!(
            rest.iter().any(|l| l == "* server shutting down"),
            "{rest:?}"
        );
    }
}

#[test]
fn password_is_required_first() {
    let server = Server::start(&["chat", "serve", "--port", "0", "--password", "s3cret"]);
    let talk = |input: &[u8]| {
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.write_all(input).unwrap();
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stream, &mut out);
        out
    };
    let refused = talk(b"hello\n");
    assert!(refused.contains("* password required"), "{refused}");
    assert!(refused.contains("* wrong password"), "{refused}");
    assert!(!refused.contains("welcome"), "{refused}");
    let accepted = talk(b"PASS s3cret\n/quit\n");
    assert!(accepted.contains("* welcome"), "{accepted}");
    let (out, err, code) = run(
        &[
            "chat",
            "join",
            &server.addr.to_string(),
            "--password",
            "s3cret",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(String::from_utf8_lossy(&out).contains("* welcome"));
}

#[test]
fn tls_with_a_pinned_certificate() {
    let server = Server::start(&["chat", "serve", "--port", "0", "--tls"]);
    let pin = server
        .stderr_line_with("TLS certificate")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let addr = server.addr.to_string();
    let (out, err, code) = run(
        &["chat", "join", &addr, "--pin", &pin, "--nick", "tls1"],
        b"over tls\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(String::from_utf8_lossy(&out).contains("you joined #lobby as guest-1"));
    let (out, err, code) = run(&["chat", "join", &addr, "--pin", &pin], b"/history\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(String::from_utf8_lossy(&out).contains("<tls1> over tls"));
    // A wrong pin is a TLS failure (exit code 35).
    let wrong = format!("sha256:{}", "0".repeat(64));
    let (_, _, code) = run(&["chat", "join", &addr, "--pin", &wrong], b"");
    assert_eq!(code, Some(35));
}

#[test]
fn history_survives_a_restart_with_db() {
    let dir = std::env::temp_dir().join(format!("sockit-chat-db-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("chat.db");
    let db_arg = db.to_str().unwrap();
    {
        let server = Server::start(&["chat", "serve", "--port", "0", "--db", db_arg]);
        let (_, err, code) = run(
            &["chat", "join", &server.addr.to_string(), "--nick", "ann"],
            "remember me 记住\n".as_bytes(),
        );
        assert_eq!(code, Some(0), "{err}");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let (_, status) = server.wait_output();
        assert!(status.success(), "graceful stop exits 0");
    }
    let server = Server::start(&["chat", "serve", "--port", "0", "--db", db_arg]);
    let (out, err, code) = run(&["chat", "join", &server.addr.to_string()], b"");
    assert_eq!(code, Some(0), "{err}");
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("<ann> remember me 记住"), "{out}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_chat_counts_every_line_once() {
    use sockit::bench::chat::{ChatLoad, run};
    let server = Running::start(fast_config()).await;
    for rate in [0.0, 500.0] {
        let load = ChatLoad {
            clients: 20,
            senders: 3,
            messages: 100,
            rate,
            ..ChatLoad::default()
        };
        let report = run(&[server.addr], &load, WAIT, &sockit::bench::Progress::new())
            .await
            .unwrap();
        assert_eq!(report.counter("expected"), Some(3 * 100 * 19));
        assert_eq!(report.ops, 3 * 100 * 19, "{}", report.table());
        for counter in [
            "lost",
            "duplicated",
            "reordered",
            "malformed",
            "disconnected",
        ] {
            assert_eq!(report.counter(counter), Some(0), "{}", report.table());
        }
        assert!(report.latency.is_some());
    }
    server.shutdown().await;
}

#[test]
fn console_posts_as_server_and_sees_the_rooms() {
    let mut server = Server::start_with_stdin(
        &["chat", "serve", "--port", "0", "--console"],
        std::process::Stdio::piped(),
    );
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    while !line.contains("you joined") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0);
    }
    stream.write_all(b"/nick ann\nhi console\n").unwrap();
    let mut console = server.child.stdin.take().unwrap();
    console
        .write_all("hello from the console 你好\n".as_bytes())
        .unwrap();
    while !line.contains("<server>") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0);
    }
    assert_eq!(line.trim_end(), "<server> hello from the console 你好");
    drop(console); // EOF ends the console, not the server
    stream.write_all(b"/quit\n").unwrap();
    let mut out = server.child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("<ann> hi console") {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        assert!(n > 0, "console output ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// Runs `sockit chat join ADDR ARGS…` with `input`; returns (stdout, stderr, exit code).
fn join_with(addr: SocketAddr, args: &[&str], input: &[u8]) -> (String, String, Option<i32>) {
    let addr = addr.to_string();
    let mut all = vec!["chat", "join", addr.as_str()];
    all.extend_from_slice(args);
    let (out, err, code) = run(&all, input);
    (String::from_utf8_lossy(&out).into_owned(), err, code)
}

#[test]
fn join_refusals_are_errors_with_their_own_exit_codes_and_hints() {
    let guarded = Server::start(&["chat", "serve", "--port", "0", "--password", "s3cret"]);
    let (_, err, code) = join_with(guarded.addr, &["--password", "nope"], b"hi\n");
    assert_eq!(code, Some(67), "{err}");
    assert!(
        err.contains("error: joining") && err.contains("wrong password"),
        "{err}"
    );
    assert!(err.contains("hint: check --password"), "{err}");
    let (_, err, code) = join_with(guarded.addr, &[], b"hi\n");
    assert_eq!(code, Some(67), "{err}");
    assert!(err.contains("the server requires a password"), "{err}");
    assert!(err.contains("hint: add --password"), "{err}");

    let open = Server::start(&["chat", "serve", "--port", "0"]);
    let stream = std::net::TcpStream::connect(open.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut ann = BufReader::new(stream.try_clone().unwrap());
    (&stream).write_all(b"/nick ann\n").unwrap();
    let mut line = String::new();
    while !line.contains("is now ann") {
        line.clear();
        assert!(ann.read_line(&mut line).unwrap() > 0);
    }
    let (_, err, code) = join_with(open.addr, &["--nick", "ANN"], b"");
    assert_eq!(code, Some(73), "{err}");
    assert!(err.contains("the nickname ANN is taken"), "{err}");
    assert!(err.contains("hint: pick another with --nick"), "{err}");
    // `/quit` from a script is a normal end.
    let (out, err, code) = join_with(open.addr, &["--nick", "bob"], b"/quit\nnot sent\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("* bye"), "{out}");
}

#[test]
fn joining_a_tls_server_in_clear_says_so() {
    let server = Server::start(&["chat", "serve", "--port", "0", "--tls"]);
    let (out, err, code) = join_with(server.addr, &["--nick", "x"], b"hello\n");
    assert_eq!(code, Some(35), "{err}");
    assert!(err.contains("the server speaks TLS"), "{err}");
    assert!(err.contains("hint: add --tls, or --pin sha256:"), "{err}");
    assert!(out.is_empty(), "nothing printed as chat: {out:?}");
}

#[test]
fn the_server_closing_the_session_is_an_error_for_the_client() {
    let mut server = Server::start(&["chat", "serve", "--port", "0"]);
    let mut client = sockit()
        .args(["chat", "join", &server.addr.to_string(), "--nick", "kept"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("is now kept") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0);
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_timeout(&mut client, WAIT).expect("the client ends with the server");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut client.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(56), "{err}");
    assert!(
        err.contains("the server closed the connection (server shutting down)"),
        "{err}"
    );
    let _ = server.child.wait();
}

#[test]
fn console_lines_piped_before_anyone_joined_are_kept_in_history() {
    let mut server = Server::start_with_stdin(
        &["chat", "serve", "--port", "0", "--console"],
        std::process::Stdio::piped(),
    );
    let mut console = server.child.stdin.take().unwrap();
    console.write_all(b"early news\nlast words").unwrap();
    drop(console);
    std::thread::sleep(Duration::from_millis(300));
    let (out, err, code) = join_with(server.addr, &[], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("<server> early news"), "{out}");
    assert!(out.contains("<server> last words"), "{out}");
}
