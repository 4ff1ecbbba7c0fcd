//! Nothing accepted is dropped in silence: `listen --keep-open` and UDP either deliver what
//! they read, or fail with a message and a non-zero exit. Checked against nc, ncat and socat.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Server, WAIT, random_bytes, require, run, run_cmd, sockit, wait_timeout};

fn socat_udp_client(addr: SocketAddr) -> Command {
    require("socat");
    let mut cmd = Command::new("socat");
    cmd.args(["-T", "1", "-", &format!("UDP:{addr}")]);
    cmd
}

#[test]
fn udp_connect_to_a_port_nobody_serves_fails_with_7_and_says_why() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (_, stderr, code) = run(&["connect", "--udp", &addr], b"anyone there?\n");
    assert_eq!(code, Some(7), "{stderr}");
    assert!(
        stderr.contains(&format!("no UDP service at {addr}")),
        "{stderr}"
    );
}

#[test]
fn udp_connect_fails_on_a_line_too_long_for_one_datagram() {
    require("socat");
    let server = Server::start(&["listen", "--port", "0", "--udp", "--echo"]);
    let mut line = vec![b'x'; 70_000];
    line.push(b'\n');
    let (_, stderr, code) = run(&["connect", "--udp", &server.addr.to_string()], &line);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("a line of 70001 bytes does not fit in one UDP datagram"),
        "{stderr}"
    );
}

/// Lines on stdin before any peer has sent anything wait for the first peer.
#[test]
fn udp_listen_holds_stdin_lines_until_the_first_peer_then_sends_them_all() {
    let mut server = Server::start_with_stdin(&["listen", "--port", "0", "--udp"], Stdio::piped());
    let mut stdin = server.child.stdin.take().unwrap();
    stdin.write_all(b"early one\nearly two\n").unwrap();
    drop(stdin);
    std::thread::sleep(Duration::from_millis(300));
    let (out, err, code) = run_cmd(&mut socat_udp_client(server.addr), b"hello\n");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"early one\nearly two\n");
    drop(server.child.stdin.take());
    server.child.kill().unwrap();
    let (printed, _) = server.wait_output();
    assert_eq!(printed, b"hello\n");
}

#[test]
fn udp_listen_fails_on_a_stdin_line_too_long_for_one_datagram() {
    let mut server = Server::start_with_stdin(&["listen", "--port", "0", "--udp"], Stdio::piped());
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(b"hi\n", server.addr).unwrap();
    let mut stdin = server.child.stdin.take().unwrap();
    let mut line = vec![b'y'; 70_000];
    line.push(b'\n');
    let _ = stdin.write_all(&line);
    drop(stdin);
    let line = server.stderr_line_with("error:");
    assert!(line.contains("does not fit in one UDP datagram"), "{line}");
    let (_, status) = server.wait_output();
    assert_eq!(status.code(), Some(1));
}

/// `listen --keep-open` with stdin from a file and only then a peer: like `ncat -l -k`,
/// stdin waits for the first peer, which gets it whole and then EOF.
fn keep_open_delivers_a_file_to_a_late_peer(peer: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.bin");
    let data = random_bytes(3 * 1024 * 1024, 7);
    std::fs::write(&path, &data).unwrap();
    let server = Server::start_with_stdin(
        &["listen", "--port", "0", "--keep-open"],
        Stdio::from(std::fs::File::open(&path).unwrap()),
    );
    std::thread::sleep(Duration::from_millis(300));
    let port = server.addr.port().to_string();
    let mut cmd = match peer {
        "nc" => {
            require("nc");
            let mut c = Command::new("nc");
            c.args(["-N", "127.0.0.1", &port]);
            c
        }
        "ncat" => {
            require("ncat");
            let mut c = Command::new("ncat");
            c.args(["127.0.0.1", &port]);
            c
        }
        _ => {
            require("socat");
            let mut c = Command::new("socat");
            c.args(["-u", &format!("TCP:127.0.0.1:{port}"), "-"]);
            c
        }
    };
    let (out, err, code) = run_cmd(&mut cmd, b"");
    assert_eq!(code, Some(0), "{peer}: {err}");
    assert!(
        out == data,
        "{peer} got {} of {} bytes",
        out.len(),
        data.len()
    );
}

#[test]
fn keep_open_delivers_a_file_to_a_late_nc() {
    keep_open_delivers_a_file_to_a_late_peer("nc");
}

#[test]
fn keep_open_delivers_a_file_to_a_late_ncat() {
    keep_open_delivers_a_file_to_a_late_peer("ncat");
}

#[test]
fn keep_open_delivers_a_file_to_a_late_socat() {
    keep_open_delivers_a_file_to_a_late_peer("socat");
}

/// A peer that sends its data and half-closes at once still gets everything stdin has for
/// it, then EOF; its own bytes are printed whole.
#[test]
fn keep_open_peer_half_close_does_not_cut_its_stdin_short() {
    require("socat");
    let data = random_bytes(2 * 1024 * 1024, 9);
    let mut server =
        Server::start_with_stdin(&["listen", "--port", "0", "--keep-open"], Stdio::piped());
    let mut stdin = server.child.stdin.take().unwrap();
    let mut peer = TcpStream::connect(server.addr).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    peer.write_all(b"peer line\n").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let feeder = {
        let data = data.clone();
        std::thread::spawn(move || {
            stdin.write_all(&data).unwrap();
        })
    };
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    feeder.join().unwrap();
    assert!(got == data, "got {} of {} bytes", got.len(), data.len());
    server.child.kill().unwrap();
    let (out, _) = server.wait_output();
    assert_eq!(out, b"peer line\n");
}

/// A peer slower than stdin slows stdin down; it is not disconnected.
#[test]
fn keep_open_slow_peer_is_slowed_not_dropped() {
    let data = random_bytes(24 * 1024 * 1024, 11);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.bin");
    std::fs::write(&path, &data).unwrap();
    let server = Server::start_with_stdin(
        &["listen", "--port", "0", "--keep-open"],
        Stdio::from(std::fs::File::open(&path).unwrap()),
    );
    let mut peer = TcpStream::connect(server.addr).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    // Not reading for a while: sockit's queue and the socket buffers fill up.
    std::thread::sleep(Duration::from_millis(1500));
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert!(got == data, "got {} of {} bytes", got.len(), data.len());
}

/// Two peers connected: each gets all of stdin, then EOF (on TLS: close_notify, which
/// socat checks).
#[test]
fn keep_open_stdin_end_sends_eof_to_every_peer_after_its_data() {
    require("socat");
    let data = random_bytes(1024 * 1024, 13);
    let mut server = Server::start_with_stdin(
        &["listen", "-v", "--port", "0", "--keep-open", "--tls"],
        Stdio::piped(),
    );
    let addr = server.addr;
    let peers: Vec<_> = (0..2)
        .map(|_| {
            let mut c = Command::new("socat");
            c.args(["-u", &format!("OPENSSL:{addr},verify=0"), "-"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    server.stderr_line_with("peer connected");
    server.stderr_line_with("peer connected");
    let mut stdin = server.child.stdin.take().unwrap();
    stdin.write_all(&data).unwrap();
    drop(stdin);
    for mut peer in peers {
        let mut out = peer.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        });
        let status = wait_timeout(&mut peer, WAIT).expect("socat ends at our EOF");
        let mut err = String::new();
        let _ = peer.stderr.take().unwrap().read_to_string(&mut err);
        assert!(status.success(), "{err}");
        let got = reader.join().unwrap();
        assert!(got == data, "got {} of {} bytes", got.len(), data.len());
    }
}

/// The peer half-closes in `connect`: sockit closes its stdout at once, so the consumer of
/// `sockit connect … | consumer` sees EOF while sockit's stdin is still open.
#[test]
fn connect_closes_stdout_when_the_peer_is_done_while_stdin_stays_open() {
    require("socat");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"all of it\n").unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        // Keep reading: sockit's stdin is still open.
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
        rest
    });
    let mut child = sockit()
        .args(["connect", &addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let _ = stdout.read_to_end(&mut got);
        let _ = tx.send(got);
    });
    let got = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("stdout reaches EOF while stdin is still open");
    assert_eq!(got, b"all of it\n");
    stdin.write_all(b"still sent\n").unwrap();
    drop(stdin);
    let status = wait_timeout(&mut child, WAIT).expect("exits at stdin's end");
    assert!(status.success());
    assert_eq!(server.join().unwrap(), b"still sent\n");
}

/// The same for `listen` with one peer: its EOF closes our stdout while stdin stays open.
#[test]
fn listen_closes_stdout_when_the_peer_is_done_while_stdin_stays_open() {
    let mut server = Server::start_with_stdin(&["listen", "--port", "0"], Stdio::piped());
    let mut stdin = server.child.stdin.take().unwrap();
    let mut stdout = server.child.stdout.take().unwrap();
    let mut peer = TcpStream::connect(server.addr).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    peer.write_all(b"from the peer\n").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let _ = stdout.read_to_end(&mut got);
        let _ = tx.send(got);
    });
    let got = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("stdout reaches EOF while stdin is still open");
    assert_eq!(got, b"from the peer\n");
    stdin.write_all(b"still sent\n").unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"still sent\n");
    let status = wait_timeout(&mut server.child, WAIT).expect("exits at stdin's end");
    assert!(status.success());
}

/// After stdin's end, a new peer gets EOF at once, and what it sends is still printed.
#[test]
fn keep_open_peer_arriving_after_stdin_ended_gets_eof_and_is_heard() {
    require("nc");
    let server = Server::start(&["listen", "--port", "0", "--keep-open"]);
    let port = server.addr.port().to_string();
    // Let stdin's end be seen: it is read once a first peer is there.
    let first = TcpStream::connect(server.addr).unwrap();
    first.set_read_timeout(Some(WAIT)).unwrap();
    let mut rest = Vec::new();
    (&first).read_to_end(&mut rest).unwrap();
    drop(first);
    std::thread::sleep(Duration::from_millis(200));
    let (out, err, code) = run_cmd(
        Command::new("nc").args(["-N", "127.0.0.1", &port]),
        b"late\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"");
    std::thread::sleep(Duration::from_millis(300));
    let mut server = server;
    server.child.kill().unwrap();
    let (printed, _) = server.wait_output();
    assert_eq!(printed, b"late\n");
}

/// `--keep-open --no-shutdown`: at stdin's end a peer gets all the data but no EOF until it
/// closes itself (for peers that quit at the first EOF, dropping what they had to send).
#[test]
fn keep_open_no_shutdown_holds_each_peers_eof_until_it_closes() {
    let data = random_bytes(300_000, 17);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.bin");
    std::fs::write(&path, &data).unwrap();
    let server = Server::start_with_stdin(
        &["listen", "--port", "0", "--keep-open", "--no-shutdown"],
        Stdio::from(std::fs::File::open(&path).unwrap()),
    );
    let mut peer = TcpStream::connect(server.addr).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = vec![0u8; data.len()];
    peer.read_exact(&mut got).unwrap();
    assert!(got == data, "the data came whole");
    peer.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut one = [0u8; 1];
    let early = peer.read(&mut one);
    assert!(
        early
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "no EOF before the peer closes: {early:?}"
    );
    peer.write_all(b"last words\n").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(
        peer.read(&mut one).unwrap(),
        0,
        "EOF once the peer has closed"
    );
    std::thread::sleep(Duration::from_millis(200));
    let mut server = server;
    server.child.kill().unwrap();
    let (printed, _) = server.wait_output();
    assert_eq!(printed, b"last words\n");
}
