//! Our own stdout or stderr failing (`>/dev/full`, `2>/dev/full`): no command panics, and
//! data that cannot be written to stdout is an error (exit 23) that says what failed.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Server, WAIT, require, sockit, wait_timeout};

/// Rust's exit code for a panic.
const PANICKED: i32 = 101;

fn full() -> Stdio {
    Stdio::from(
        File::options()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full"),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts TCP connections on `port`.
fn wait_listening(port: u16) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn terminate(child: &mut Child) -> ExitStatus {
    require("kill");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_timeout(child, WAIT).expect("exits at SIGTERM")
}

/// A server command, `--port PORT` appended, with stderr on /dev/full: it serves, and a
/// SIGTERM ends it with 0 (no panic on its startup lines).
fn server_survives_a_full_stderr(args: &[&str]) {
    let port = free_port();
    let mut child = sockit()
        .args(args)
        .args(["--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(full())
        .spawn()
        .unwrap();
    wait_listening(port);
    let status = terminate(&mut child);
    assert_ne!(status.code(), Some(PANICKED), "{args:?} panicked");
    assert_eq!(status.code(), Some(0), "{args:?}: {status}");
}

#[test]
fn serve_with_a_full_stderr_serves_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    server_survives_a_full_stderr(&["serve", dir.path().to_str().unwrap()]);
}

#[test]
fn listen_with_a_full_stderr_serves_and_exits_cleanly() {
    server_survives_a_full_stderr(&["listen", "--echo"]);
}

#[test]
fn chat_serve_with_a_full_stderr_serves_and_exits_cleanly() {
    server_survives_a_full_stderr(&["chat", "serve"]);
}

#[test]
fn send_with_a_full_stderr_offers_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, b"some bytes").unwrap();
    server_survives_a_full_stderr(&["send", "--bind", "127.0.0.1", file.to_str().unwrap()]);
    server_survives_a_full_stderr(&[
        "send",
        "--raw",
        "--bind",
        "127.0.0.1",
        file.to_str().unwrap(),
    ]);
}

/// Runs `sockit ARGS…` with stdout on /dev/full; returns (exit code, stderr).
fn run_with_full_stdout(args: &[&str], stdin: &[u8]) -> (Option<i32>, String) {
    let mut child = sockit()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(full())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_timeout(&mut child, WAIT).expect("exits by itself");
    let _ = writer.join();
    (status.code(), reader.join().unwrap())
}

/// Runs `sockit ARGS…` with stderr on /dev/full; returns the exit code.
fn run_with_full_stderr(args: &[&str]) -> Option<i32> {
    let mut child = sockit()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(full())
        .spawn()
        .unwrap();
    wait_timeout(&mut child, WAIT)
        .expect("exits by itself")
        .code()
}

fn assert_write_failure(code: Option<i32>, stderr: &str, what: &str) {
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, Some(23), "{stderr}");
    assert!(
        stderr.contains(what) && stderr.contains("No space left on device"),
        "says what failed: {stderr}"
    );
}

#[test]
fn bench_report_to_a_full_stdout_exits_23_and_says_so() {
    let server = Server::start(&["listen", "--port", "0", "--echo"]);
    let addr = server.addr.to_string();
    let args = ["bench", "echo", &addr, "-c", "2", "-n", "5"];
    let (code, stderr) = run_with_full_stdout(&args, b"");
    assert_write_failure(code, &stderr, "writing the report to stdout");
    let code = run_with_full_stderr(&args);
    assert_eq!(code, Some(0), "a full stderr does not fail the run");
}

#[test]
fn completions_to_a_full_stdout_exit_23_and_say_so() {
    let (code, stderr) = run_with_full_stdout(&["completions", "zsh"], b"");
    assert_write_failure(code, &stderr, "writing the completion script to stdout");
    assert_eq!(run_with_full_stderr(&["completions", "zsh"]), Some(0));
}

#[test]
fn connect_to_a_full_stdout_exits_23_and_says_so() {
    let server = Server::start(&["listen", "--port", "0", "--echo"]);
    let addr = server.addr.to_string();
    let (code, stderr) = run_with_full_stdout(&["connect", &addr], b"echo me\n");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, Some(23), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
}

#[test]
fn connect_udp_to_a_full_stdout_exits_23_and_says_so() {
    let server = Server::start(&["listen", "--port", "0", "--udp", "--echo"]);
    let addr = server.addr.to_string();
    let (code, stderr) = run_with_full_stdout(&["connect", "--udp", &addr], b"echo me\n");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, Some(23), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
}

/// `listen` in every printing mode: a peer's bytes that cannot be written out end the
/// server with 23, not a panic and not a silent 0.
fn listen_to_a_full_stdout_exits_23(extra: &[&str], send: impl FnOnce(SocketAddr)) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = sockit()
        .args(["listen", "--port", &port.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(full())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    if extra.contains(&"--udp") {
        // Nothing to poll for UDP: give the socket a moment, then send.
        std::thread::sleep(Duration::from_millis(300));
    } else {
        let deadline = Instant::now() + WAIT;
        loop {
            std::thread::sleep(Duration::from_millis(50));
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break;
            }
            // `listen` without -k takes one peer only: connect once, when it is up.
            if std::fs::read_to_string("/proc/net/tcp")
                .unwrap_or_default()
                .contains(&format!(":{port:04X} 00000000:0000 0A"))
            {
                break;
            }
        }
    }
    send(addr);
    let status = wait_timeout(&mut child, WAIT).expect("exits by itself");
    let stderr = reader.join().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.code(), Some(23), "{extra:?}: {stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
}

fn tcp_peer(addr: SocketAddr) {
    let mut peer = TcpStream::connect(addr).unwrap();
    peer.write_all(b"to a full stdout\n").unwrap();
    // Kept open until the server has failed: the failure is the output's, not the peer's.
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let mut rest = Vec::new();
    let _ = peer.read_to_end(&mut rest);
}

#[test]
fn listen_one_peer_to_a_full_stdout_exits_23() {
    listen_to_a_full_stdout_exits_23(&[], tcp_peer);
}

#[test]
fn listen_keep_open_to_a_full_stdout_exits_23() {
    listen_to_a_full_stdout_exits_23(&["--keep-open"], tcp_peer);
}

#[test]
fn listen_udp_to_a_full_stdout_exits_23() {
    listen_to_a_full_stdout_exits_23(&["--udp"], |addr| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.send_to(b"to a full stdout\n", addr).unwrap();
    });
}

#[test]
fn recv_raw_to_a_full_stdout_exits_23_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, crate::support::random_bytes(200_000, 3)).unwrap();
    let port = free_port();
    let mut sender = sockit()
        .args(["send", "--raw", "--bind", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    let addr = format!("127.0.0.1:{port}");
    let (code, stderr) = run_with_full_stdout(&["recv", "--raw", &addr], b"");
    let _ = sender.kill();
    let _ = sender.wait();
    assert_write_failure(code, &stderr, "writing the received bytes to stdout");
}

#[test]
fn chat_join_to_a_full_stdout_exits_23_and_says_so() {
    let server = Server::start(&["chat", "serve", "--port", "0"]);
    let addr = server.addr.to_string();
    let (code, stderr) = run_with_full_stdout(&["chat", "join", &addr, "--nick", "ann"], b"hi\n");
    assert_write_failure(code, &stderr, "writing the chat to stdout");
}
