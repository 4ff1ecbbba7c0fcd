//! `sockit listen --echo` under bulk streams: a read that fills the buffer switches a plain
//! TCP connection to echoing through a pipe (`splice`), and everything the copying loop
//! promised must still hold there: exact bytes, small messages answered at once, the peer's
//! half-close, the idle timeout and a graceful stop.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;

/// Writes `data` from a thread while reading the echo here (both at once, as a bulk echo
/// needs: neither side's buffers hold a whole stream), and returns what came back.
fn echo_duplex(conn: &TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = conn.try_clone().unwrap();
    let sent = data.to_vec();
    let writing = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    let mut back = vec![0u8; data.len()];
    (&*conn).read_exact(&mut back).unwrap();
    writing.join().unwrap();
    back
}

#[test]
fn bulk_echo_then_small_messages_are_still_answered_at_once() {
    let server = Server::start(&["listen", "--port", "0", "--echo", "-vv"]);
    let conn = TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    let data = random_bytes(16 << 20, 11);
    assert!(echo_duplex(&conn, &data) == data, "bulk echo differs");
    server.stderr_line_with("echoing through a pipe");
    // The connection now echoes through a pipe: each small message must come back alone,
    // without waiting for more bytes or for the peer to close.
    let mut reply = [0u8; 200];
    for size in 1..=200 {
        let message: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        (&conn).write_all(&message).unwrap();
        (&conn).read_exact(&mut reply[..size]).unwrap();
        assert_eq!(&reply[..size], &message[..], "message of {size} bytes");
    }
    conn.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        (&conn).read(&mut reply).unwrap(),
        0,
        "server closes after our EOF"
    );
}

/// socat sends a file and half-closes; the server must echo every byte after that EOF and
/// only then close, so that socat's copy of the echo is whole.
#[test]
fn socat_gets_a_whole_bulk_echo_after_its_half_close() {
    require("socat");
    let server = Server::start(&["listen", "--port", "0", "--echo"]);
    let data = random_bytes(24 << 20, 12);
    let target = format!("TCP:{}", server.addr);
    // -t: how long socat waits for the echo to end after its own EOF (the server's close
    // ends it sooner).
    let (out, err, code) = run_cmd(
        std::process::Command::new("socat").args(["-t", "10", "-", &target]),
        &data,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.len(), data.len(), "echo cut short");
    assert!(out == data, "echoed bytes differ");
}

#[test]
fn idle_timeout_still_closes_a_connection_after_a_bulk_stream() {
    // Made before connecting: the server's idle clock starts at once.
    let data = random_bytes(4 << 20, 13);
    let server = Server::start(&["listen", "--port", "0", "--echo", "--idle-timeout", "300ms"]);
    let conn = TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    assert!(echo_duplex(&conn, &data) == data, "bulk echo differs");
    let quiet_since = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!((&conn).read(&mut buf).unwrap(), 0, "closed when idle");
    let waited = quiet_since.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < WAIT,
        "closed after {waited:?}"
    );
}

/// SIGTERM while a bulk connection is open: the server closes it (EOF, not a reset) and
/// exits 0.
#[test]
fn sigterm_closes_a_bulk_echo_connection_cleanly() {
    let mut server = Server::start(&["listen", "--port", "0", "--echo"]);
    let conn = TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    let data = random_bytes(4 << 20, 14);
    assert!(echo_duplex(&conn, &data) == data, "bulk echo differs");
    let pid = server.child.id().to_string();
    let (_, err, code) = run_cmd(
        std::process::Command::new("kill").args(["-TERM", &pid]),
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let mut buf = [0u8; 16];
    assert_eq!((&conn).read(&mut buf).unwrap(), 0, "EOF on stop");
    let status = wait_timeout(&mut server.child, WAIT).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// TLS cannot be spliced: a bulk stream over TLS takes the copying loop and is exact too.
#[test]
fn tls_bulk_echo_is_exact() {
    let server = Server::start(&["listen", "--port", "0", "--tls", "--echo"]);
    let line = server.stderr_line_with("TLS certificate");
    let fingerprint = line.rsplit(' ').next().unwrap().to_owned();
    let data = random_bytes(8 << 20, 15);
    let (out, err, code) = run(
        &["connect", "--pin", &fingerprint, &server.addr.to_string()],
        &data,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.len(), data.len());
    assert!(out == data, "TLS echo differs");
}
