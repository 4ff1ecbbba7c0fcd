//! `sockit connect` and `sockit listen` over real sockets, with real peers (nc, python3).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

#[test]
fn connect_through_listen_echo_is_byte_exact() {
    let server = Server::start(&["listen", "--port", "0", "--echo"]);
    let data = random_bytes(8 << 20, 1);
    let (out, err, code) = run(&["connect", &server.addr.to_string()], &data);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.len(), data.len());
    assert!(out == data, "echoed bytes differ");
}

/// stdin EOF → FIN to the peer; the reply the peer sends after that is still printed.
#[test]
fn stdin_eof_half_closes_and_late_reply_is_printed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap(); // returns only once the client half-closed
        conn.write_all(b"late reply\n").unwrap();
        got
    });
    let (out, err, code) = run(&["connect", "-v", &addr.to_string()], b"request");
    assert_eq!(peer.join().unwrap(), b"request");
    assert_eq!(out, b"late reply\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("sent EOF to the peer"), "{err}");
    assert!(err.contains("peer closed its side"), "{err}");
}

/// The peer half-closing first ends only what it sends: the rest of stdin still reaches it.
#[test]
fn peer_eof_first_still_gets_the_whole_of_stdin() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        conn.write_all(b"bye\n").unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        got
    });
    let data = random_bytes(8 << 20, 2);
    let (out, err, code) = run(&["connect", "-v", &addr.to_string()], &data);
    let got = peer.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"bye\n");
    assert_eq!(got.len(), data.len(), "stdin cut short at the peer's EOF");
    assert!(got == data);
    assert!(err.contains("peer closed its side"), "{err}");
}

/// With stdin a pipe that stays open, the peer's close does not end `connect`; the end of
/// stdin does, with exit 0.
#[test]
fn peer_close_waits_for_stdin_to_end_when_it_is_not_a_terminal() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"bye\n").unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
    });
    let mut child = sockit()
        .args(["connect", &addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let mut stdout = child.stdout.take().unwrap();
    let mut bye = [0u8; 4];
    stdout.read_exact(&mut bye).unwrap();
    assert_eq!(&bye, b"bye\n");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "stdin is still open");
    drop(stdin);
    let status = wait_timeout(&mut child, WAIT).expect("connect exits when stdin ends");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_echo_clients_are_all_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&["listen", "--port", "0", "--echo"]);
    let addr = server.addr;
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..500u32 {
        clients.spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let message = format!("client {i} says hello\n");
            for _ in 0..3 {
                stream.write_all(message.as_bytes()).await.unwrap();
                let mut reply = vec![0; message.len()];
                stream.read_exact(&mut reply).await.unwrap();
                assert_eq!(reply, message.as_bytes());
            }
        });
    }
    let all = async {
        let mut answered = 0;
        while let Some(r) = clients.join_next().await {
            r.unwrap();
            answered += 1;
        }
        answered
    };
    assert_eq!(tokio::time::timeout(WAIT * 3, all).await.unwrap(), 500);
}

#[test]
fn greet_answers_each_line_including_utf8_and_invalid_utf8() {
    let server = Server::start(&["listen", "--port", "0", "--greet", "你好 {}！"]);
    let mut conn = TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    let mut input = "世界\nworld\r\n\u{1F600}\n".as_bytes().to_vec();
    input.extend_from_slice(b"\xff\xfe\nlast");
    conn.write_all(&input).unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    let mut out = Vec::new();
    conn.read_to_end(&mut out).unwrap();
    let mut expected = "你好 世界！\n你好 world！\n你好 \u{1F600}！\n你好 "
        .as_bytes()
        .to_vec();
    expected.extend_from_slice(b"\xff\xfe");
    expected.extend_from_slice("！\n你好 last！\n".as_bytes());
    assert_eq!(out, expected);
}

#[test]
fn greet_rejects_an_over_long_line_and_keeps_the_connection() {
    let server = Server::start(&[
        "listen",
        "--port",
        "0",
        "--greet",
        "hi {}",
        "--max-line",
        "16",
    ]);
    let mut conn = TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    conn.write_all(&[b'x'; 100_000]).unwrap();
    conn.write_all(b"\nok\n").unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    assert_eq!(out, "error: line longer than 16 bytes\nhi ok\n");
}

#[test]
fn udp_echo_serves_three_peers_at_once_keeping_boundaries() {
    let server = Server::start(&["listen", "--port", "0", "--udp", "--echo"]);
    let handles: Vec<_> = (0..3usize)
        .map(|peer| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.set_read_timeout(Some(WAIT)).unwrap();
                for round in 0..20usize {
                    let size = 1 + peer * 1000 + round * 7;
                    let message = random_bytes(size, (peer * 100 + round) as u64);
                    socket.send_to(&message, addr).unwrap();
                    let mut buf = [0u8; 65_536];
                    let (n, from) = socket.recv_from(&mut buf).unwrap();
                    assert_eq!(from, addr);
                    assert_eq!(&buf[..n], &message[..], "peer {peer} round {round}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn udp_greet_answers_each_datagram_of_a_burst_to_its_sender() {
    let server = Server::start(&["listen", "--port", "0", "--udp", "--greet", "你好 {}!"]);
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(WAIT)).unwrap();
    }
    // A burst from two peers lands in one batch on the server; each gets its own answers,
    // in order, invalid UTF-8 answered byte for byte.
    for i in 0..40 {
        a.send_to(format!("a{i}\n").as_bytes(), server.addr)
            .unwrap();
        b.send_to(&[b'b', 0xff, b'0' + (i % 10) as u8], server.addr)
            .unwrap();
    }
    let mut buf = [0u8; 1024];
    for i in 0..40 {
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("你好 a{i}!\n").as_bytes());
        let n = b.recv(&mut buf).unwrap();
        let mut want = "你好 ".as_bytes().to_vec();
        want.extend_from_slice(&[b'b', 0xff, b'0' + (i % 10) as u8]);
        want.extend_from_slice(b"!\n");
        assert_eq!(&buf[..n], &want[..]);
    }
}

#[test]
fn udp_largest_datagram_is_echoed_whole() {
    let server = Server::start(&["listen", "--port", "0", "--udp", "--echo"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let message = random_bytes(65_507, 9);
    socket.send_to(&message, server.addr).unwrap();
    let mut buf = vec![0u8; 70_000];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(n, 65_507);
    assert!(buf[..n] == message[..]);
}

#[test]
fn udp_connect_sends_lines_as_datagrams_and_prints_replies() {
    let server = Server::start(&["listen", "--port", "0", "--udp", "--greet", "got {}"]);
    let (out, err, code) = run(
        &[
            "connect",
            "--udp",
            "--linger",
            "300ms",
            &server.addr.to_string(),
        ],
        b"one\ntwo\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out), "got one\ngot two\n");
}

fn tls_server() -> (Server, String) {
    let server = Server::start(&["listen", "--port", "0", "--tls", "--echo"]);
    let line = server.stderr_line_with("TLS certificate");
    let fingerprint = line.rsplit(' ').next().unwrap().to_owned();
    assert!(
        fingerprint.starts_with("sha256:") && fingerprint.len() == 71,
        "{line}"
    );
    (server, fingerprint)
}

#[test]
fn tls_with_the_right_pin_is_accepted() {
    let (server, fingerprint) = tls_server();
    let data = random_bytes(1 << 20, 3);
    let (out, err, code) = run(
        &["connect", "--pin", &fingerprint, &server.addr.to_string()],
        &data,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out == data, "TLS echo differs");
}

#[test]
fn tls_with_a_wrong_pin_or_an_untrusted_certificate_is_refused() {
    let (server, fingerprint) = tls_server();
    let wrong = format!("sha256:{}", "00".repeat(32));
    assert_ne!(wrong, fingerprint);
    let (out, err, code) = run(
        &["connect", "--pin", &wrong, &server.addr.to_string()],
        b"secret",
    );
    assert_eq!(code, Some(35), "{err}");
    assert!(out.is_empty());
    assert!(err.starts_with("error: TLS handshake with"), "{err}");
    assert!(err.contains("does not match the pinned"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let (_, err, code) = run(&["connect", "--tls", &server.addr.to_string()], b"secret");
    assert_eq!(code, Some(35), "{err}");
    assert!(err.contains("certificate"), "{err}");
}

#[test]
fn refused_unknown_host_and_timeout_have_clear_errors_and_codes() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, err, code) = run(&["connect", &format!("127.0.0.1:{port}")], b"");
    assert_eq!(code, Some(7));
    assert_eq!(
        err,
        format!("error: connection refused: 127.0.0.1:{port}\n")
    );

    let (_, err, code) = run(&["connect", "no-such-host.invalid:80"], b"");
    assert_eq!(code, Some(6), "{err}");
    assert!(
        err.starts_with("error: could not resolve host: no-such-host.invalid"),
        "{err}"
    );

    // A TCP server that never speaks TLS: the handshake times out.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let (_, err, code) = run(
        &[
            "connect",
            "--tls",
            "--timeout",
            "300ms",
            &silent.local_addr().unwrap().to_string(),
        ],
        b"",
    );
    assert_eq!(code, Some(28), "{err}");
    assert!(err.contains("timed out after 0.3s"), "{err}");
}

#[test]
fn garbage_addresses_are_usage_errors_not_panics() {
    for addr in [
        "",
        "nope",
        "1.2.3.4:99999",
        "[::1",
        "::1:80",
        "http://x:80",
        "a b:1",
        "\u{1b}[31m:80",
    ] {
        let (_, err, code) = run(&["connect", addr], b"");
        assert_eq!(code, Some(2), "{addr:?}: {err}");
        assert!(err.contains("invalid"), "{addr:?}: {err}");
        assert!(!err.contains("panicked"), "{addr:?}: {err}");
    }
}

#[test]
fn a_peer_reset_mid_stream_is_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf);
        conn.write_all(b"partial").unwrap();
        // Unread data in the receive buffer makes close() send RST instead of FIN.
        std::thread::sleep(Duration::from_millis(200));
        drop(conn);
    });
    let data = random_bytes(4 << 20, 4);
    let (_, err, code) = run(&["connect", &addr.to_string()], &data);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, Some(1), "a reset is never a success: {err}");
    assert!(
        err.starts_with(&format!("error: connection to {addr}")),
        "{err}"
    );
}

#[test]
fn closed_stdout_is_a_normal_end() {
    let server = Server::start(&["listen", "--port", "0", "--echo"]);
    let mut child = sockit()
        .args(["connect", &server.addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..256 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then the pipe closes, like `| head`
    let status = wait_timeout(&mut child, WAIT).expect("exits once its output is closed");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(err, "");
    writer.join().unwrap();
}

#[test]
fn nc_client_talks_to_listen_and_listen_prints_it() {
    require("nc");
    let server = Server::start_with_stdin(&["listen", "--port", "0"], Stdio::null());
    let port = server.addr.port().to_string();
    let (_, err, code) = run_cmd(
        std::process::Command::new("nc").args(["-N", "127.0.0.1", &port]),
        b"hello from nc\n",
    );
    assert_eq!(code, Some(0), "{err}");
    let (out, status) = server.wait_output();
    assert!(status.success());
    assert_eq!(out, b"hello from nc\n");
}

#[test]
fn connect_talks_to_a_python3_server() {
    require("python3");
    let script = "import socket,sys\n\
        s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(1)\n\
        print(s.getsockname()[1], flush=True)\n\
        c,_=s.accept(); data=b''\n\
        while True:\n    d=c.recv(65536)\n    if not d: break\n    data+=d\n\
        c.sendall(data.upper()); c.close()\n";
    let mut py = std::process::Command::new("python3")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    let mut stdout = py.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        port.push(byte[0] as char);
    }
    let (out, err, code) = run(&["connect", &format!("127.0.0.1:{port}")], b"shout this");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"SHOUT THIS");
    assert!(wait_timeout(&mut py, WAIT).is_some_and(|s| s.success()));
}

#[test]
fn keep_open_tags_lines_from_several_peers_and_broadcasts_stdin() {
    let mut server = Server::start_with_stdin(
        &["listen", "-v", "--port", "0", "--keep-open"],
        Stdio::piped(),
    );
    let mut a = TcpStream::connect(server.addr).unwrap();
    let mut b = TcpStream::connect(server.addr).unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(WAIT)).unwrap();
    }
    server.stderr_line_with("peer connected");
    server.stderr_line_with("peer connected");
    let mut stdin = server.child.stdin.take().unwrap();
    stdin.write_all(b"to everyone\n").unwrap();
    stdin.flush().unwrap();
    for s in [&mut a, &mut b] {
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"to everyone\n");
    }
    a.write_all(b"from a\n").unwrap();
    b.write_all(b"from b\n").unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    // Tagging applies while both are connected: let both lines arrive before either leaves.
    std::thread::sleep(Duration::from_millis(300));
    drop((a, b));
    std::thread::sleep(Duration::from_millis(300));
    server.child.kill().unwrap();
    let (out, _) = server.wait_output();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains(&format!("[{a_addr}] from a\n")), "{out}");
    assert!(out.contains(&format!("[{b_addr}] from b\n")), "{out}");
}

#[test]
fn max_conns_closes_the_excess_connection_only() {
    let server = Server::start(&["listen", "--port", "0", "--echo", "--max-conns", "1"]);
    let mut first = TcpStream::connect(server.addr).unwrap();
    first.set_read_timeout(Some(WAIT)).unwrap();
    first.write_all(b"1").unwrap();
    let mut one = [0u8; 1];
    first.read_exact(&mut one).unwrap();
    let mut second = TcpStream::connect(server.addr).unwrap();
    second.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 8];
    let closed = matches!(second.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "the connection over the limit is closed");
    first.write_all(b"2").unwrap();
    first.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"2");
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let server = Server::start(&["listen", "--port", "0", "--echo", "--idle-timeout", "300ms"]);
    let mut conn = TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(conn.read(&mut buf).unwrap(), 0);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

/// A server that accepts TCP and never answers the TLS handshake: Ctrl-C ends `connect` at
/// once (not at the 10 s handshake timeout), with 130 like a client killed by SIGINT.
#[test]
fn ctrl_c_during_a_tls_handshake_exits_at_once_with_130() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        accepted_tx.send(()).unwrap();
        std::thread::sleep(WAIT * 2); // holds the connection, says nothing
        drop(conn);
    });
    let mut child = sockit()
        .args(["connect", "--insecure", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    accepted.recv_timeout(WAIT).expect("sockit connected");
    std::thread::sleep(Duration::from_millis(200)); // now inside the handshake
    let started = std::time::Instant::now();
    let pid = child.id().to_string();
    let (_, err, code) = run_cmd(std::process::Command::new("kill").args(["-INT", &pid]), b"");
    assert_eq!(code, Some(0), "{err}");
    let status = wait_timeout(&mut child, Duration::from_secs(2)).expect("exits on Ctrl-C");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{status:?}");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start(&["listen", "--port", "0", "--echo"]);
    let pid = server.child.id().to_string();
    let (_, err, code) = run_cmd(
        std::process::Command::new("kill").args(["-TERM", &pid]),
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let status = wait_timeout(&mut server.child, WAIT).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn listen_serves_a_pem_certificate_and_key() {
    let dir = std::env::temp_dir().join(format!("sockit-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    let expected = sockit::net::tls::Fingerprint::of(generated.cert.der()).to_string();

    let server = Server::start(&[
        "listen",
        "--port",
        "0",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--greet",
        "hi {}",
    ]);
    let printed = server.stderr_line_with("TLS certificate");
    assert!(printed.ends_with(&expected), "{printed} vs {expected}");
    let (out, err, code) = run(
        &["connect", "--pin", &expected, &server.addr.to_string()],
        b"tls\n",
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"hi tls\n");
}

#[test]
fn trace_shows_the_bytes_both_ways() {
    let server = Server::start(&["listen", "--port", "0", "--echo"]);
    let (out, err, code) = run(
        &["connect", "--trace", &server.addr.to_string()],
        b"GET / HTTP/1.1\r\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"GET / HTTP/1.1\r\n");
    let peer = server.addr.to_string();
    assert!(
        err.contains(&format!("> {peer} sent 16 bytes at offset 0")),
        "{err}"
    );
    assert!(
        err.contains(&format!("< {peer} received 16 bytes at offset 0")),
        "{err}"
    );
    assert!(
        err.contains("47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|"),
        "{err}"
    );
}

#[test]
fn ipv6_loopback_works_both_ways() {
    let server = Server::start(&["listen", "[::1]:0", "--echo"]);
    assert!(server.addr.is_ipv6());
    let (out, err, code) = run(&["connect", &server.addr.to_string()], b"six");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"six");
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let (out, err, code) = run(&["completions", shell], b"");
        assert_eq!(code, Some(0), "{err}");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("listen") && text.contains("connect"),
            "{shell}"
        );
    }
}
