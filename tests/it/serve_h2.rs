//! `sockit serve` over HTTP/2: interop with nghttp2's tools, and hostile clients writing raw
//! frames (cleartext, prior knowledge) while a second client is timed: each flood costs only
//! the attacker's connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// HPACK for `GET http://127.0.0.1/hello.txt`: static-table indexed fields, literal values.
fn get_block() -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    for (index, value) in [(4u8, "/hello.txt"), (1, "127.0.0.1")] {
        // Literal without indexing, indexed name (:path, :authority).
        block.push(index);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

fn serve_dir() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hello world\n").unwrap();
    let server = Server::start(&["serve", dir.path().to_str().unwrap(), "--port", "0"]);
    (dir, server)
}

/// A connection that has sent the preface and its SETTINGS.
fn open(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    let mut hello = PREFACE.to_vec();
    frame(&mut hello, SETTINGS, 0, 0, &[]);
    stream.write_all(&hello).unwrap();
    stream
}

/// What the server did with a hostile connection.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// GOAWAY, then the end of the stream (or a reset).
    Closed,
    /// The request on stream 1 was refused on its own (a non-200 answer or a stream reset).
    Refused,
    /// The frames were taken in (or the server stopped reading them): nothing to see on
    /// this connection, the point is the other client's latency.
    Absorbed,
}

/// Reads frames until the server closes the connection or refuses stream 1; fails if that
/// takes longer than `WAIT` or if stream 1 is answered with 200.
fn outcome(stream: &mut TcpStream) -> Outcome {
    let began = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut goaway = false;
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, id) = (buf[3], u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]));
            let payload = &buf[9..9 + len];
            match (kind, id) {
                (GOAWAY, _) => goaway = true,
                // 0x88 is `:status 200` from the static table.
                (HEADERS, 1) if payload.first() != Some(&0x88) => return Outcome::Refused,
                (HEADERS, 1) => panic!("the hostile request was answered with 200"),
                (RST_STREAM, 1) if !goaway => return Outcome::Refused,
                _ => {}
            }
            buf.drain(..9 + len);
        }
        assert!(began.elapsed() < WAIT, "the connection is still open");
        match stream.read(&mut chunk) {
            Ok(0) => return Outcome::Closed,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the connection is still open after {:?}", began.elapsed())
            }
            Err(_) => return Outcome::Closed, // reset
        }
    }
}

/// Writes `frames` until the server stops reading (it closed the connection).
fn write_until_refused(stream: &mut TcpStream, frames: impl Iterator<Item = Vec<u8>>) {
    for batch in frames {
        if stream.write_all(&batch).is_err() {
            return;
        }
    }
}

/// HEADERS then RST_STREAM, thousands of times (CVE-2023-44487).
fn rapid_reset(addr: SocketAddr) -> Outcome {
    let mut stream = open(addr);
    let block = get_block();
    let batches = (0..100u32).map(|batch| {
        let mut out = Vec::new();
        for i in 0..100 {
            let id = 2 * (batch * 100 + i) + 1;
            frame(&mut out, HEADERS, END_HEADERS | END_STREAM, id, &block);
            frame(&mut out, RST_STREAM, 0, id, &8u32.to_be_bytes()); // CANCEL
        }
        out
    });
    write_until_refused(&mut stream, batches);
    let outcome = outcome(&mut stream);
    assert_eq!(outcome, Outcome::Closed, "rapid reset");
    outcome
}

/// HEADERS without END_HEADERS, then CONTINUATION frames without end (CVE-2024-27316).
fn continuation_flood(addr: SocketAddr) -> Outcome {
    let mut stream = open(addr);
    let mut first = Vec::new();
    frame(&mut first, HEADERS, END_STREAM, 1, &get_block());
    let filler = [0x40u8; 4096];
    let frames = std::iter::once(first).chain((0..25_000).map(|_| {
        let mut out = Vec::new();
        frame(&mut out, CONTINUATION, 0, 1, &filler);
        out
    }));
    write_until_refused(&mut stream, frames);
    let outcome = outcome(&mut stream);
    assert_eq!(outcome, Outcome::Closed, "CONTINUATION flood");
    outcome
}

/// One request whose header list is far past the limit (64 KiB of one field value).
fn oversized_headers(addr: SocketAddr) -> Outcome {
    let mut stream = open(addr);
    let mut block = get_block();
    // Literal without indexing, new name "x-big", a 64 KiB value (HPACK integer, 7-bit prefix).
    block.extend_from_slice(&[0x00, 5]);
    block.extend_from_slice(b"x-big");
    let len = 64 * 1024 - 127;
    block.push(0x7f);
    let mut rest = len;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
    block.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let mut out = Vec::new();
    let mut chunks = block.chunks(16 * 1024).peekable();
    let mut kind = HEADERS;
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let flags =
            if kind == HEADERS { END_STREAM } else { 0 } | if last { END_HEADERS } else { 0 };
        frame(&mut out, kind, flags, 1, chunk);
        kind = CONTINUATION;
    }
    write_until_refused(&mut stream, std::iter::once(out));
    outcome(&mut stream)
}

/// SETTINGS and PING frames, tens of thousands, by a client that never reads the ACKs.
fn settings_and_ping_flood(addr: SocketAddr) -> Outcome {
    let mut stream = open(addr);
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let batches = (0..200).map(|_| {
        let mut out = Vec::new();
        for i in 0..100u64 {
            // SETTINGS_MAX_CONCURRENT_STREAMS = 100, and a PING.
            frame(&mut out, SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
            frame(&mut out, 0x6, 0, 0, &i.to_be_bytes());
        }
        out
    });
    write_until_refused(&mut stream, batches);
    Outcome::Absorbed
}

/// Seconds curl takes for one GET of `url` over HTTP/1.1.
fn timed_get(url: &str) -> Duration {
    let (out, err, status) = run_cmd(
        std::process::Command::new("curl").args([
            "--http1.1",
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total}",
            url,
        ]),
        b"",
    );
    assert_eq!(status, Some(0), "curl: {err}");
    let out = String::from_utf8_lossy(&out);
    let (code, secs) = out.split_once(' ').expect("code and time");
    assert_eq!(code, "200");
    Duration::from_secs_f64(secs.parse().expect("seconds"))
}

fn median_latency(url: &str) -> Duration {
    let mut times: Vec<Duration> = (0..7).map(|_| timed_get(url)).collect();
    times.sort();
    times[times.len() / 2]
}

/// Runs `attack` over and over on new connections while a second client is timed: the
/// second client's median stays within 2× its unloaded one plus 50 ms.
fn attack_while_timing(attack: fn(SocketAddr) -> Outcome) {
    require("curl");
    let (_dir, server) = serve_dir();
    let url = format!("http://{}/hello.txt", server.addr);
    let unloaded = median_latency(&url);
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let attacker = {
        let (addr, stop, rounds) = (server.addr, stop.clone(), rounds.clone());
        std::thread::spawn(move || {
            // Bounded: each round ends within `WAIT` (or fails), and the timing ends.
            for _ in 0..1000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                attack(addr);
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // The first round under way before timing.
    std::thread::sleep(Duration::from_millis(100));
    let loaded = median_latency(&url);
    stop.store(true, Ordering::Relaxed);
    attacker.join().expect("every attack ended as it should");
    assert!(rounds.load(Ordering::Relaxed) >= 1);
    let bound = unloaded * 2 + Duration::from_millis(50);
    assert!(
        loaded <= bound,
        "median {loaded:?} under attack, {unloaded:?} without"
    );
    // The server still speaks HTTP/2 to a client that behaves.
    let (out, err, status) = run_cmd(
        std::process::Command::new("curl").args([
            "--http2-prior-knowledge",
            "-sS",
            "--max-time",
            "10",
            &url,
        ]),
        b"",
    );
    assert_eq!(status, Some(0), "curl: {err}");
    assert_eq!(out, b"hello world\n");
}

#[test]
fn rapid_reset_flood_costs_only_the_attackers_connection() {
    attack_while_timing(rapid_reset);
}

#[test]
fn continuation_flood_costs_only_the_attackers_connection() {
    attack_while_timing(continuation_flood);
}

#[test]
fn oversized_header_block_is_refused_and_costs_only_its_connection() {
    attack_while_timing(oversized_headers);
}

#[test]
fn settings_and_ping_floods_cost_only_the_attackers_connection() {
    attack_while_timing(settings_and_ping_flood);
}

#[test]
fn h2load_and_nghttp_are_served() {
    require("h2load");
    require("nghttp");
    let (_dir, server) = serve_dir();
    let url = format!("http://{}/hello.txt", server.addr);
    let (out, err, status) = run_cmd(
        std::process::Command::new("h2load").args(["-n", "200", "-c", "4", "-m", "10", &url]),
        b"",
    );
    let out = String::from_utf8_lossy(&out);
    assert_eq!(status, Some(0), "h2load: {err}");
    assert!(out.contains("200 succeeded, 0 failed"), "{out}");
    let (out, err, status) = run_cmd(std::process::Command::new("nghttp").args(["-v", &url]), b"");
    let out = String::from_utf8_lossy(&out);
    assert_eq!(status, Some(0), "nghttp: {err}");
    assert!(out.contains(":status: 200"), "{out}");
    assert!(out.contains("hello world"), "{out}");
}

#[test]
fn curl_over_tls_negotiates_h2_and_h2_answers_ranges() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hello world\n").unwrap();
    let server = Server::start(&[
        "serve",
        dir.path().to_str().unwrap(),
        "--port",
        "0",
        "--tls",
    ]);
    let url = format!("https://{}/hello.txt", server.addr);
    let (out, err, status) = run_cmd(
        std::process::Command::new("curl").args([
            "--http2",
            "-ksS",
            "-r",
            "6-10",
            "-w",
            " %{http_version} %{http_code}",
            &url,
        ]),
        b"",
    );
    assert_eq!(status, Some(0), "curl: {err}");
    assert_eq!(String::from_utf8_lossy(&out), "world 2 206");
}

/// `curl ARGS… URL -w ' %{http_version} %{http_code}'`: exit code and what it printed.
fn curl_code(args: &[&str], url: &str) -> (Option<i32>, String) {
    let (out, err, status) = run_cmd(
        std::process::Command::new("curl")
            .args(["-sS", "-k", "--max-time", "10"])
            .args(args)
            .args(["-w", " %{http_version} %{http_code}", url]),
        b"",
    );
    let text = String::from_utf8_lossy(&out).into_owned();
    (status, format!("{text}{err}"))
}

#[test]
fn http2_refuses_a_long_target_and_large_headers_as_http1_does() {
    require("curl");
    require("nghttp");
    let (_dir, server) = serve_dir();
    let base = format!("http://{}", server.addr);
    let long_9k = format!("{base}/{}", "a".repeat(9_000));
    let long_20k = format!("{base}/{}", "a".repeat(20_000));
    let big = format!("X-Big: {}", "b".repeat(17_000));
    let hello = format!("{base}/hello.txt");
    let cases: [(&[&str], &str, &str); 4] = [
        (&[], &long_9k, "request target too long\n 414"),
        (&[], &long_20k, "request target too long\n 414"),
        (
            &["-H", &big],
            &hello,
            "request header fields too large\n 431",
        ),
        (&[], &hello, "hello world\n 200"),
    ];
    for (args, url, expected) in cases {
        for (version, name) in [("--http1.1", "1.1"), ("--http2-prior-knowledge", "2")] {
            let (status, out) = curl_code(&[&[version][..], args].concat(), url);
            let (text, code) = expected.rsplit_once(' ').unwrap();
            assert_eq!(
                (status, out.as_str()),
                (Some(0), format!("{text} {name} {code}").as_str()),
                "{version} {args:?} {} bytes of URL",
                url.len()
            );
        }
    }
    let (out, err, status) = run_cmd(
        std::process::Command::new("nghttp").args(["-v", &long_9k]),
        b"",
    );
    let out = String::from_utf8_lossy(&out);
    assert_eq!(status, Some(0), "nghttp: {err}");
    assert!(out.contains(":status: 414"), "{out}");
    assert!(out.contains("request target too long"), "{out}");
}

/// Holds one connection open on `addr` (TLS: past the handshake) without a request, until
/// the returned guard drops.
struct Held(std::process::Child);

impl Held {
    fn open(addr: SocketAddr, tls: bool) -> Held {
        let script = "import socket, ssl, sys, time\n\
            s = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n\
            if sys.argv[3] == 'tls':\n\
            \x20   c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); c.check_hostname = False\n\
            \x20   c.verify_mode = ssl.CERT_NONE; s = c.wrap_socket(s)\n\
            print('held', flush=True)\n\
            time.sleep(30)\n";
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                script,
                &addr.ip().to_string(),
                &addr.port().to_string(),
            ])
            .arg(if tls { "tls" } else { "tcp" })
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
            let _ = tx.send(line);
        });
        assert_eq!(rx.recv_timeout(WAIT).as_deref(), Ok("held\n"));
        // The server takes its connection slot as soon as it has the stream.
        std::thread::sleep(Duration::from_millis(200));
        Held(child)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_connection_past_max_conns_gets_503_in_the_protocol_it_speaks() {
    require("curl");
    require("nghttp");
    require("python3");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hello world\n").unwrap();
    let root = dir.path().to_str().unwrap();
    for tls in [false, true] {
        let mut args = vec!["serve", root, "--port", "0", "--max-conns", "1"];
        if tls {
            args.push("--tls");
        }
        let server = Server::start(&args);
        let _held = Held::open(server.addr, tls);
        let (url, versions) = match tls {
            false => (
                format!("http://{}/hello.txt", server.addr),
                [("--http1.1", "1.1"), ("--http2-prior-knowledge", "2")],
            ),
            true => (
                format!("https://{}/hello.txt", server.addr),
                [("--http1.1", "1.1"), ("--http2", "2")],
            ),
        };
        for (version, name) in versions {
            let (status, out) = curl_code(&[version], &url);
            assert_eq!(
                (status, out.as_str()),
                (Some(0), format!("server too busy\r\n {name} 503").as_str()),
                "tls: {tls}, {version}"
            );
        }
        if !tls {
            let (out, err, status) =
                run_cmd(std::process::Command::new("nghttp").args(["-v", &url]), b"");
            let out = String::from_utf8_lossy(&out);
            assert_eq!(status, Some(0), "nghttp: {err}");
            assert!(out.contains(":status: 503"), "{out}");
            assert!(out.contains("retry-after: 1"), "{out}");
            assert!(out.contains("recv GOAWAY"), "{out}");
        }
    }
}
