//! Unix sockets (with curl and nc) and the address overrides: `--resolve`, `--connect-to`,
//! `-s` (source address).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// A `sockit` server on a Unix socket, killed when dropped; its first stderr line is checked.
struct UnixServer {
    child: Child,
}

impl UnixServer {
    fn start(args: &[&str], socket: &Path, stdin: Stdio) -> UnixServer {
        let mut child = sockit()
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sockit");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let _ = stderr.read_line(&mut first);
            let _ = tx.send(first);
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
        });
        let first = rx.recv_timeout(WAIT).expect("the server announced itself");
        let expected = format!("listening on unix:{}", socket.display());
        assert!(first.contains(&expected), "{first:?}");
        UnixServer { child }
    }

    fn stdout(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        wait_timeout(&mut self.child, WAIT).expect("the server exited");
        let _ = self
            .child
            .stdout
            .take()
            .expect("piped")
            .read_to_end(&mut out);
        out
    }
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn curl_and_get_reach_serve_on_a_unix_socket_and_the_url_host_is_the_host_header() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    let data = random_bytes(1 << 20, 3);
    std::fs::write(site.join("f.bin"), &data).unwrap();
    let socket = dir.path().join("http.sock");
    let bind = format!("unix:{}", socket.display());
    let _server = UnixServer::start(
        &["serve", site.to_str().unwrap(), "--bind", &bind],
        &socket,
        Stdio::null(),
    );
    let (out, err, code) = run_cmd(
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--unix-socket"])
            .arg(&socket)
            .arg("http://localhost/f.bin"),
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out == data, "curl got other bytes");

    let socket_text = socket.to_str().unwrap();
    let (out, err, code) = run(
        &[
            "get",
            "--unix-socket",
            socket_text,
            "http://files.test/f.bin",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out == data, "sockit get got other bytes");
    let (out, err, code) = run(
        &[
            "get",
            "-v",
            "--unix-socket",
            socket_text,
            "http://files.test:8080/f.bin",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    // -v shows the request head on stdout: the Host header comes from the URL.
    let text = String::from_utf8_lossy(&out[..out.len().min(4096)]);
    assert!(text.contains("Host: files.test:8080"), "{text}");
}

#[test]
fn nc_reaches_listen_on_a_unix_socket_and_connect_reaches_nc() {
    require("nc");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("l.sock");
    let addr = format!("unix:{}", socket.display());
    let mut server = UnixServer::start(&["listen", &addr], &socket, Stdio::null());
    let (_, err, code) = run_cmd(
        Command::new("nc").arg("-N").arg("-U").arg(&socket),
        b"from nc over a unix socket\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(server.stdout(), b"from nc over a unix socket\n");
    assert!(
        !socket.exists(),
        "listen removes the socket file it created"
    );

    // connect unix:… against `nc -lU`.
    let socket = dir.path().join("nc.sock");
    let mut nc = Command::new("nc")
        .arg("-lU")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nc");
    let deadline = Instant::now() + WAIT;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "nc -lU did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let target = format!("unix:{}", socket.display());
    let (_, err, code) = run(&["connect", &target], b"from sockit connect\n");
    assert_eq!(code, Some(0), "{err}");
    wait_timeout(&mut nc, WAIT).expect("nc exited");
    let mut got = Vec::new();
    nc.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    assert_eq!(got, b"from sockit connect\n");
}

#[test]
fn a_regular_file_at_the_socket_path_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, b"keep me").unwrap();
    let addr = format!("unix:{}", path.display());
    let (_, err, code) = run(&["listen", &addr], b"");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");

    // A live server's socket is refused too; a stale one (nobody listening) is replaced.
    let live = dir.path().join("live.sock");
    let listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
    let (_, err, code) = run(&["listen", &format!("unix:{}", live.display())], b"");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("listening on it already"), "{err}");
    drop(listener);
    assert!(
        live.exists(),
        "a dropped std listener leaves its file behind: a stale socket"
    );
    let mut server = UnixServer::start(
        &["listen", &format!("unix:{}", live.display())],
        &live,
        Stdio::null(),
    );
    let mut conn = std::os::unix::net::UnixStream::connect(&live).unwrap();
    conn.write_all(b"stale socket replaced\n").unwrap();
    drop(conn);
    assert_eq!(server.stdout(), b"stale socket replaced\n");
}

#[test]
fn connect_to_an_abstract_socket() {
    let name = format!("sockit-test-{}", std::process::id());
    let mut server = UnixServer::start(
        &["listen", &format!("unix:@{name}")],
        Path::new(&format!("@{name}")),
        Stdio::null(),
    );
    let (_, err, code) = run(&["connect", &format!("unix:@{name}")], b"abstract\n");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(server.stdout(), b"abstract\n");
}

/// A certificate for `sockit.test` (a name no DNS knows) and its PEM files.
fn named_cert(dir: &Path) -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["sockit.test".to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
    )
}

#[test]
fn resolve_and_connect_to_keep_tls_checking_the_original_name() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("a.txt"), b"named\n").unwrap();
    let (cert, key) = named_cert(dir.path());
    let server = Server::start(&[
        "serve",
        site.to_str().unwrap(),
        "--port",
        "0",
        "--cert",
        &cert,
        "--key",
        &key,
    ]);
    let port = server.addr.port();

    // --resolve: the name is sockit.test (SNI, certificate, Host), the address 127.0.0.1.
    let url = format!("https://sockit.test:{port}/a.txt");
    let resolve = format!("sockit.test:{port}:127.0.0.1");
    let (out, err, code) = run(&["get", "--ca", &cert, "--resolve", &resolve, &url], b"");
    assert_eq!((out.as_slice(), code), (&b"named\n"[..], Some(0)), "{err}");
    // Without it, the name does not resolve (exit 6).
    let (_, err, code) = run(&["get", "--ca", &cert, &url], b"");
    assert_eq!(code, Some(6), "{err}");

    // --connect-to: sockit.test:443 goes to 127.0.0.1:PORT; TLS still checks sockit.test.
    let connect_to = format!("sockit.test:443:127.0.0.1:{port}");
    let (out, err, code) = run(
        &[
            "get",
            "--ca",
            &cert,
            "--connect-to",
            &connect_to,
            "https://sockit.test/a.txt",
        ],
        b"",
    );
    assert_eq!((out.as_slice(), code), (&b"named\n"[..], Some(0)), "{err}");
    // The same route under a name the certificate does not hold fails verification.
    let connect_to = format!("other.test:443:127.0.0.1:{port}");
    let (_, err, code) = run(
        &[
            "get",
            "--ca",
            &cert,
            "--connect-to",
            &connect_to,
            "https://other.test/a.txt",
        ],
        b"",
    );
    assert_eq!(code, Some(35), "{err}");
}

#[test]
fn source_address_is_what_the_server_sees() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        (peer, got)
    });
    let (_, err, code) = run(&["connect", "-s", "127.0.0.2", &addr.to_string()], b"hi");
    assert_eq!(code, Some(0), "{err}");
    let (peer, got) = server.join().unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.2");
    assert_eq!(got, b"hi");
    // -6 with an IPv4-only target: a clear error, nothing sent.
    let (_, err, code) = run(&["connect", "-6", &addr.to_string()], b"hi");
    assert_ne!(code, Some(0));
    assert!(err.contains("no IPv6 address"), "{err}");
}

#[test]
fn chat_serve_on_a_unix_socket_takes_nc_clients() {
    require("nc");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("chat.sock");
    let bind = format!("unix:{}", socket.display());
    let _server = UnixServer::start(&["chat", "serve", "--bind", &bind], &socket, Stdio::null());
    let (out, err, code) = run_cmd(
        Command::new("nc").arg("-N").arg("-U").arg(&socket),
        b"/nick ada\n/quit\n",
    );
    assert_eq!(code, Some(0), "{err}");
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("is now ada"), "{text}");
}

#[test]
fn bench_echo_loads_a_unix_socket_echo_server() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("echo.sock");
    let addr = format!("unix:{}", socket.display());
    let _server = UnixServer::start(&["listen", &addr, "--echo"], &socket, Stdio::null());
    let (out, err, code) = run(
        &["bench", "echo", "--json", &addr, "-c", "3", "-n", "10"],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["ops"], 30, "{report}");
    let (out, err, code) = run(&["bench", "echo", "--json", &addr, "--stream", "2MiB"], b"");
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["bytes"], 2 << 20, "{report}");
}

#[test]
fn connect_udp_takes_resolve_overrides_too() {
    let echo = Server::start(&["listen", "--port", "0", "--udp", "--echo"]);
    let port = echo.addr.port();
    let rule = format!("echo.invalid:{port}:127.0.0.1");
    let target = format!("echo.invalid:{port}");
    let (out, err, code) = run(
        &[
            "connect",
            "--udp",
            "--linger",
            "300ms",
            "--resolve",
            &rule,
            &target,
        ],
        b"over udp\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"over udp\n");
}
