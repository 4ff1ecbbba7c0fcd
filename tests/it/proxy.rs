//! Clients through real proxies (microsocks, dante, tinyproxy, ncat), the proxy environment
//! variables, and `sockit listen --socks5` under curl and sockit.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// A proxy process started by a test; stopped by PID (SIGTERM, so a forking proxy takes its
/// children with it), then killed if it lingers.
struct ProxyPeer {
    child: Child,
    port: u16,
}

impl ProxyPeer {
    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn url_with(&self, scheme: &str, userinfo: &str) -> String {
        format!("{scheme}://{userinfo}@127.0.0.1:{}", self.port)
    }
}

impl Drop for ProxyPeer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if wait_timeout(&mut self.child, Duration::from_secs(3)).is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago. The proxies here take a port number, not a socket, so
/// the usual "bind port 0 and keep it" cannot be used; a clash shows as a start-up failure.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts `command` (which listens on `port`) and waits until it accepts connections.
fn start_proxy(mut command: Command, port: u16) -> ProxyPeer {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn proxy");
    let mut peer = ProxyPeer { child, port };
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = peer.child.try_wait() {
            panic!("{command:?} exited at start: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{command:?} did not listen in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    peer
}

fn microsocks(auth: Option<(&str, &str)>) -> ProxyPeer {
    require("microsocks");
    let port = free_port();
    let mut command = Command::new("microsocks");
    command.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((user, password)) = auth {
        command.args(["-u", user, "-P", password]);
    }
    start_proxy(command, port)
}

fn danted(dir: &Path) -> ProxyPeer {
    danted_from(dir, "127.0.0.1")
}

/// dante, connecting out from `external`.
fn danted_from(dir: &Path, external: &str) -> ProxyPeer {
    require("danted");
    let port = free_port();
    let config = dir.join("sockd.conf");
    std::fs::write(
        &config,
        format!(
            "logoutput: stderr\ninternal: 127.0.0.1 port = {port}\nexternal: {external}\n\
             clientmethod: none\nsocksmethod: none\n\
             client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n\
             socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n"
        ),
    )
    .unwrap();
    let mut command = Command::new("danted");
    command.arg("-f").arg(&config);
    command.arg("-p").arg(dir.join("sockd.pid"));
    command.args(["-N", "1"]);
    start_proxy(command, port)
}

fn tinyproxy(dir: &Path, extra: &str) -> ProxyPeer {
    require("tinyproxy");
    let port = free_port();
    let config = dir.join("tinyproxy.conf");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\nAllow 127.0.0.1\n\
             LogLevel Critical\n{extra}"
        ),
    )
    .unwrap();
    let mut command = Command::new("tinyproxy");
    command.arg("-d").arg("-c").arg(&config);
    start_proxy(command, port)
}

fn ncat_http_proxy() -> ProxyPeer {
    require("ncat");
    let port = free_port();
    let mut command = Command::new("ncat");
    command.args([
        "-l",
        "-k",
        "--proxy-type",
        "http",
        "127.0.0.1",
        &port.to_string(),
    ]);
    start_proxy(command, port)
}

/// `sockit serve` on a directory holding `big.bin` (10 MiB of random bytes).
fn file_server(dir: &Path, tls: bool) -> (Server, Vec<u8>) {
    let data = random_bytes(10 << 20, 42);
    std::fs::write(dir.join("big.bin"), &data).unwrap();
    let mut args = vec!["serve", dir.to_str().unwrap(), "--port", "0"];
    if tls {
        args.push("--tls");
    }
    (Server::start(&args), data)
}

fn blake3(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// `sockit listen --tls --echo` and its certificate's fingerprint.
fn tls_echo() -> (Server, String) {
    let server = Server::start(&["listen", "--port", "0", "--tls", "--echo"]);
    let line = server.stderr_line_with("TLS certificate");
    let fingerprint = line.rsplit(' ').next().unwrap().to_owned();
    (server, fingerprint)
}

const WRONG_PIN: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// 10 MiB through `proxy`: `get` of a served file, and `connect --pin` from a one-peer TLS
/// server that sends `data` (the file `data_file`) and closes; both byte-exact (BLAKE3), the TLS
/// one verified end to end through the proxy: a wrong pin fails.
///
/// `connect --no-shutdown`: microsocks and tinyproxy end the whole tunnel at the first EOF,
/// so the client keeps its side open until the server has sent everything.
fn check_through(proxy: &str, files: &Server, data: &[u8], data_file: &Path, echo: &Server) {
    let url = format!("http://localhost:{}/big.bin", files.addr.port());
    let (out, err, code) = run(&["get", "--proxy", proxy, &url], b"");
    assert_eq!(code, Some(0), "get through {proxy}: {err}");
    assert_eq!(
        blake3(&out),
        blake3(data),
        "get through {proxy}: bytes differ"
    );

    let stdin = std::fs::File::open(data_file).unwrap();
    let sender = Server::start_with_stdin(&["listen", "--port", "0", "--tls"], stdin.into());
    let pin = sender
        .stderr_line_with("TLS certificate")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let target = format!("localhost:{}", sender.addr.port());
    let args = [
        "connect",
        "--no-shutdown",
        "--proxy",
        proxy,
        "--pin",
        &pin,
        &target,
    ];
    let (out, err, code) = run(&args, b"");
    assert_eq!(code, Some(0), "connect through {proxy}: {err}");
    assert_eq!(
        blake3(&out),
        blake3(data),
        "connect through {proxy}: bytes differ"
    );

    // A wrong pin fails: the TLS handshake is with the target, not with the proxy.
    let target = format!("localhost:{}", echo.addr.port());
    let (out, err, code) = run(
        &["connect", "--proxy", proxy, "--pin", WRONG_PIN, &target],
        b"x",
    );
    assert_eq!(code, Some(35), "wrong pin through {proxy} must fail: {err}");
    assert!(out.is_empty());
    assert!(err.contains("TLS handshake"), "{err}");
}

#[test]
fn microsocks_socks5h_and_socks5_with_and_without_password_carry_10_mib_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (files, data) = file_server(dir.path(), false);
    let data_file = dir.path().join("big.bin");
    let (echo, _) = tls_echo();
    let open = microsocks(None);
    let locked = microsocks(Some(("ada", "s3cret")));
    for scheme in ["socks5h", "socks5"] {
        check_through(&open.url(scheme), &files, &data, &data_file, &echo);
        check_through(
            &locked.url_with(scheme, "ada:s3cret"),
            &files,
            &data,
            &data_file,
            &echo,
        );
    }
}

#[test]
fn dante_carries_10_mib_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (files, data) = file_server(dir.path(), false);
    let data_file = dir.path().join("big.bin");
    let (echo, _) = tls_echo();
    let dante = danted(dir.path());
    check_through(&dante.url("socks5h"), &files, &data, &data_file, &echo);
    check_through(&dante.url("socks5"), &files, &data, &data_file, &echo);
}

#[test]
fn tinyproxy_and_ncat_http_connect_carry_10_mib_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (files, data) = file_server(dir.path(), false);
    let data_file = dir.path().join("big.bin");
    let (echo, _) = tls_echo();
    let tiny = tinyproxy(dir.path(), "");
    check_through(&tiny.url("http"), &files, &data, &data_file, &echo);
    let ncat = ncat_http_proxy();
    check_through(&ncat.url("http"), &files, &data, &data_file, &echo);
}

/// `ncat --ssl --proxy-type http`: an HTTPS proxy with its own certificate (for 127.0.0.1).
fn ncat_https_proxy(dir: &Path) -> (ProxyPeer, String) {
    require("ncat");
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = dir.join("proxy-cert.pem");
    let key = dir.join("proxy-key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    let port = free_port();
    let mut command = Command::new("ncat");
    command.args(["-l", "-k", "--proxy-type", "http", "--ssl"]);
    command
        .arg("--ssl-cert")
        .arg(&cert)
        .arg("--ssl-key")
        .arg(&key);
    command.args(["127.0.0.1", &port.to_string()]);
    (
        start_proxy(command, port),
        cert.to_str().unwrap().to_owned(),
    )
}

#[test]
fn an_https_proxy_is_verified_and_tls_to_the_server_runs_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let (files, data) = file_server(dir.path(), false);
    let data_file = dir.path().join("big.bin");
    let (echo, _) = tls_echo();
    let (proxy, proxy_ca) = ncat_https_proxy(dir.path());
    let url = format!("http://localhost:{}/big.bin", files.addr.port());

    // Not trusted by default: the proxy's certificate is checked like any server's.
    let (_, err, code) = run(&["get", "--proxy", &proxy.url("https"), &url], b"");
    assert_eq!(code, Some(35), "{err}");
    assert!(err.contains("cannot reach proxy https://"), "{err}");

    let (out, err, code) = run(
        &[
            "get",
            "--proxy",
            &proxy.url("https"),
            "--proxy-cacert",
            &proxy_ca,
            &url,
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(blake3(&out), blake3(&data));

    // TLS to the server inside TLS to the proxy, pinned; a wrong pin fails.
    let stdin = std::fs::File::open(&data_file).unwrap();
    let sender = Server::start_with_stdin(&["listen", "--port", "0", "--tls"], stdin.into());
    let pin = sender
        .stderr_line_with("TLS certificate")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let target = format!("localhost:{}", sender.addr.port());
    let proxy_url = proxy.url("https");
    let args = [
        "connect",
        "--no-shutdown",
        "--proxy",
        &proxy_url,
        "--proxy-cacert",
        &proxy_ca,
        "--pin",
        &pin,
        &target,
    ];
    let (out, err, code) = run(&args, b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(blake3(&out), blake3(&data));
    let target = format!("localhost:{}", echo.addr.port());
    let args = [
        "connect",
        "--proxy",
        &proxy_url,
        "--proxy-cacert",
        &proxy_ca,
        "--pin",
        WRONG_PIN,
        &target,
    ];
    let (_, err, code) = run(&args, b"x");
    assert_eq!(code, Some(35), "{err}");
    assert!(err.contains("TLS handshake with localhost"), "{err}");
}

#[test]
fn proxy_failures_name_the_proxy_and_the_step_with_curls_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let open = microsocks(None);
    let locked = microsocks(Some(("ada", "s3cret")));
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let dead_target = format!("127.0.0.1:{dead_port}");

    // The proxy is reached, but the destination refuses: SOCKS reply 5 in words, exit 97.
    let (_, err, code) = run(
        &["connect", "--proxy", &open.url("socks5"), &dead_target],
        b"",
    );
    assert_eq!(code, Some(97), "{err}");
    assert!(
        err.contains(&format!("proxy {}", open.url("socks5"))),
        "{err}"
    );
    assert!(err.contains("connection refused by destination"), "{err}");

    // Wrong password: auth failed, exit 97; the password never shows.
    let proxy = locked.url_with("socks5h", "ada:wrong");
    let (_, err, code) = run(&["get", "--proxy", &proxy, "http://localhost:1/"], b"");
    assert_eq!(code, Some(97), "{err}");
    assert!(err.contains("auth failed"), "{err}");
    assert!(!err.contains("wrong"), "the password leaked: {err}");

    // No password for a proxy that wants one.
    let (_, err, code) = run(
        &[
            "get",
            "--proxy",
            &locked.url("socks5h"),
            "http://localhost:1/",
        ],
        b"",
    );
    assert_eq!(code, Some(97), "{err}");
    assert!(err.contains("none of our authentication methods"), "{err}");

    // The proxy itself is down: exit 7; its name does not resolve: exit 5.
    let down = format!("socks5h://{dead_target}");
    let (_, err, code) = run(&["connect", "--proxy", &down, "localhost:1"], b"");
    assert_eq!(code, Some(7), "{err}");
    assert!(err.contains("cannot reach proxy"), "{err}");
    let (_, err, code) = run(
        &[
            "connect",
            "--proxy",
            "socks5h://no-such-proxy.invalid:1080",
            "localhost:1",
        ],
        b"",
    );
    assert_eq!(code, Some(5), "{err}");

    // An HTTP proxy that refuses the CONNECT: its status, exit 56 as curl.
    let tiny = tinyproxy(dir.path(), "ConnectPort 443\n");
    let (_, err, code) = run(
        &["connect", "--proxy", &tiny.url("http"), &dead_target],
        b"",
    );
    assert_eq!(code, Some(56), "{err}");
    assert!(
        err.contains("CONNECT to") && err.contains("proxy answered 403"),
        "{err}"
    );
}

#[test]
fn proxy_handshake_is_bounded_by_the_timeout() {
    // A "proxy" that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("socks5h://{}", silent.local_addr().unwrap());
    let began = Instant::now();
    let (_, err, code) = run(
        &[
            "connect",
            "--timeout",
            "500ms",
            "--proxy",
            &proxy,
            "localhost:1",
        ],
        b"",
    );
    assert_eq!(code, Some(28), "{err}");
    assert!(err.contains("through proxy"), "{err}");
    assert!(
        began.elapsed() < WAIT,
        "the timeout did not bound the handshake"
    );
    drop(silent);
}

/// Runs `sockit get URL` with exactly these proxy variables set (all others removed).
fn get_with_env(
    url: &str,
    vars: &[(&str, &str)],
    extra: &[&str],
) -> (Vec<u8>, String, Option<i32>) {
    let mut command = sockit();
    command.arg("get").arg(url).args(extra);
    for name in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        command.env_remove(name);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    run_cmd(&mut command, b"")
}

#[test]
fn environment_variables_are_read_as_curl_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"hello\n").unwrap();
    let plain = Server::start(&["serve", dir.path().to_str().unwrap(), "--port", "0"]);
    let tls = Server::start(&[
        "serve",
        dir.path().to_str().unwrap(),
        "--port",
        "0",
        "--tls",
    ]);
    let pin = tls
        .stderr_line_with("TLS certificate")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let socks = microsocks(None);
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("socks5h://{}", l.local_addr().unwrap())
    };
    let http_url = format!("http://localhost:{}/a.txt", plain.addr.port());
    let https_url = format!("https://localhost:{}/a.txt", tls.addr.port());
    let live = socks.url("socks5h");

    // http_proxy (lower case) is used: a dead one fails, a live one works.
    let (_, err, code) = get_with_env(&http_url, &[("http_proxy", &dead)], &[]);
    assert_eq!(code, Some(7), "{err}");
    let (out, err, code) = get_with_env(&http_url, &[("http_proxy", &live)], &[]);
    assert_eq!((out.as_slice(), code), (&b"hello\n"[..], Some(0)), "{err}");
    // HTTP_PROXY (upper case) is not: a CGI request could set it.
    let (out, err, code) = get_with_env(&http_url, &[("HTTP_PROXY", &dead)], &[]);
    assert_eq!((out.as_slice(), code), (&b"hello\n"[..], Some(0)), "{err}");

    // HTTPS_PROXY for https:// URLs, with TLS still checked against the server's pin.
    let (_, err, code) = get_with_env(&https_url, &[("HTTPS_PROXY", &dead)], &["--pin", &pin]);
    assert_eq!(code, Some(7), "{err}");
    let (out, err, code) = get_with_env(&https_url, &[("HTTPS_PROXY", &live)], &["--pin", &pin]);
    assert_eq!((out.as_slice(), code), (&b"hello\n"[..], Some(0)), "{err}");
    let (_, err, code) = get_with_env(&https_url, &[("HTTPS_PROXY", &live)], &["--pin", WRONG_PIN]);
    assert_eq!(code, Some(35), "{err}");

    // ALL_PROXY covers both; NO_PROXY, --noproxy and --proxy '' go direct.
    let (_, err, code) = get_with_env(&http_url, &[("ALL_PROXY", &dead)], &[]);
    assert_eq!(code, Some(7), "{err}");
    for (vars, extra) in [
        (
            vec![
                ("ALL_PROXY", dead.as_str()),
                ("NO_PROXY", "example.com,localhost"),
            ],
            vec![],
        ),
        (
            vec![("ALL_PROXY", dead.as_str()), ("NO_PROXY", "*")],
            vec![],
        ),
        (
            vec![("ALL_PROXY", dead.as_str())],
            vec!["--noproxy", "localhost"],
        ),
        (vec![("ALL_PROXY", dead.as_str())], vec!["--proxy", ""]),
    ] {
        let (out, err, code) = get_with_env(&http_url, &vars, &extra);
        assert_eq!(
            (out.as_slice(), code),
            (&b"hello\n"[..], Some(0)),
            "{vars:?} {extra:?}: {err}"
        );
    }
    // --proxy wins over the variables.
    let (out, err, code) = get_with_env(&http_url, &[("ALL_PROXY", &dead)], &["--proxy", &live]);
    assert_eq!((out.as_slice(), code), (&b"hello\n"[..], Some(0)), "{err}");
}

/// A server that reads its request to EOF (so it needs the client's half-close), then answers
/// with the byte count and closes.
fn eof_counting_server() -> (std::net::SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        conn.write_all(format!("got {} bytes\n", got.len()).as_bytes())
            .unwrap();
        got
    });
    (addr, handle)
}

#[test]
fn curl_through_listen_socks5_with_and_without_auth() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"through sockit\n").unwrap();
    let files = Server::start(&["serve", dir.path().to_str().unwrap(), "--port", "0"]);
    let url = format!("http://localhost:{}/a.txt", files.addr.port());
    let open = Server::start(&["listen", "--port", "0", "--socks5", "-v"]);
    let locked = Server::start(&["listen", "--port", "0", "--socks5", "--auth", "ada:s3cret"]);

    let curl = |args: &[&str]| {
        run_cmd(
            Command::new("curl")
                .args(["-sS", "--max-time", "10"])
                .args(args),
            b"",
        )
    };
    let (out, err, code) = curl(&["--socks5-hostname", &open.addr.to_string(), &url]);
    assert_eq!(
        (out.as_slice(), code),
        (&b"through sockit\n"[..], Some(0)),
        "{err}"
    );
    let line = open.stderr_line_with("socks5 CONNECT");
    assert!(
        line.contains(&format!("localhost:{}", files.addr.port())),
        "{line}"
    );

    let (out, err, code) = curl(&["-x", &format!("socks5h://{}", open.addr), &url]);
    assert_eq!(
        (out.as_slice(), code),
        (&b"through sockit\n"[..], Some(0)),
        "{err}"
    );

    let proxy = format!("socks5h://ada:s3cret@{}", locked.addr);
    let (out, err, code) = curl(&["-x", &proxy, &url]);
    assert_eq!(
        (out.as_slice(), code),
        (&b"through sockit\n"[..], Some(0)),
        "{err}"
    );
    let proxy = format!("socks5h://ada:nope@{}", locked.addr);
    let (out, _, code) = curl(&["-x", &proxy, &url]);
    assert_eq!(code, Some(97), "curl: a wrong password is refused");
    assert!(out.is_empty());
    let (_, _, code) = curl(&["--socks5-hostname", &locked.addr.to_string(), &url]);
    assert_eq!(code, Some(97), "curl: no password is refused");
}

#[test]
fn connect_through_listen_socks5_half_closes_both_ways() {
    let socks = Server::start(&["listen", "--port", "0", "--socks5", "--auth", "u:p"]);
    let (addr, server) = eof_counting_server();
    let data = random_bytes(10 << 20, 7);
    let proxy = format!("socks5h://u:p@{}", socks.addr);
    let (out, err, code) = run(
        &[
            "connect",
            "--proxy",
            &proxy,
            &format!("localhost:{}", addr.port()),
        ],
        &data,
    );
    assert_eq!(code, Some(0), "{err}");
    let got = server.join().unwrap();
    assert_eq!(blake3(&got), blake3(&data));
    assert_eq!(out, format!("got {} bytes\n", data.len()).as_bytes());
}

#[test]
fn listen_socks5_refuses_bind_and_udp_associate_with_command_not_supported() {
    let socks = Server::start(&["listen", "--port", "0", "--socks5"]);
    for command in [2u8, 3] {
        let mut conn = TcpStream::connect(socks.addr).unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        conn.write_all(&[5, 1, 0]).unwrap();
        let mut choice = [0u8; 2];
        conn.read_exact(&mut choice).unwrap();
        assert_eq!(choice, [5, 0]);
        conn.write_all(&[5, command, 0, 1, 127, 0, 0, 1, 0, 80])
            .unwrap();
        let mut reply = [0u8; 10];
        conn.read_exact(&mut reply).unwrap();
        assert_eq!(
            reply[1], 7,
            "command {command}: reply 7, command not supported"
        );
    }
    // Not SOCKS at all: closed without a reply.
    let mut conn = TcpStream::connect(socks.addr).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn recv_goes_through_a_proxy_and_still_pins_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(3 << 20, 11);
    let file = dir.path().join("f.bin");
    std::fs::write(&file, &data).unwrap();
    let sender = Server::start(&[
        "send",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        file.to_str().unwrap(),
    ]);
    let line = sender.stderr_line_with("sockit recv '");
    let code = line
        .strip_prefix("sockit recv '")
        .and_then(|rest| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("unexpected recv line {line:?}"))
        .to_owned();
    let socks = Server::start(&["listen", "--port", "0", "--socks5", "-v"]);
    let out = dir.path().join("out");
    let proxy = format!("socks5h://{}", socks.addr);
    let (_, err, status) = run(
        &[
            "recv",
            &code,
            "-o",
            out.to_str().unwrap(),
            "--proxy",
            &proxy,
        ],
        b"",
    );
    assert_eq!(status, Some(0), "{err}");
    assert_eq!(
        blake3(&std::fs::read(out.join("f.bin")).unwrap()),
        blake3(&data)
    );
    // The tunnel really went through the proxy.
    let access = socks.stderr_line_with("socks5 CONNECT");
    assert!(access.contains(&sender.addr.to_string()), "{access}");
}

/// A server (ncat or socat) that logs the source of every connection: the witness of the
/// route a client took.
struct Witness {
    peer: ProxyPeer,
    log: std::path::PathBuf,
}

impl Witness {
    /// `ncat -l -k -v ARGS` (`--chat`, `--ssl`…).
    fn ncat(dir: &Path, name: &str, args: &[&str]) -> Witness {
        require("ncat");
        let port = free_port();
        let mut command = Command::new("ncat");
        command
            .args(["-l", "-k", "-v"])
            .args(args)
            .args(["127.0.0.1", &port.to_string()]);
        Self::start(command, port, dir, name, "Listening on")
    }

    /// An echo server: socat with a pipe per connection, which carries half-close.
    fn socat_echo(dir: &Path) -> Witness {
        Self::socat(dir, "echo", "PIPE")
    }

    /// socat in front of `target` (HOST:PORT): it logs each client's source, then relays.
    fn socat_relay(dir: &Path, name: &str, target: &str) -> Witness {
        Self::socat(dir, name, &format!("TCP:{target}"))
    }

    fn socat(dir: &Path, name: &str, to: &str) -> Witness {
        require("socat");
        let port = free_port();
        let mut command = Command::new("socat");
        command.args([
            "-d",
            "-d",
            "-t",
            "10",
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"),
            to,
        ]);
        Self::start(command, port, dir, name, "listening on")
    }

    fn start(mut command: Command, port: u16, dir: &Path, name: &str, ready: &str) -> Witness {
        let log = dir.join(format!("{name}.log"));
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn the server");
        let witness = Witness {
            peer: ProxyPeer { child, port },
            log,
        };
        // Ready when it says so: a test connection would count as a client.
        let deadline = Instant::now() + WAIT;
        while !std::fs::read_to_string(&witness.log)
            .unwrap_or_default()
            .contains(ready)
        {
            assert!(Instant::now() < deadline, "{command:?} did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        witness
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.peer.port)
    }

    /// The source IP of every connection so far: ncat's `Connection from IP:PORT.`, socat's
    /// `accepting connection from AF=2 IP:PORT on …`.
    fn sources(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (_, from) = line
                    .split_once("Ncat: Connection from ")
                    .or_else(|| line.split_once("accepting connection from AF=2 "))?;
                let word = from.split_whitespace().next()?.trim_end_matches('.');
                // ncat logs each connection twice, without and with the port.
                word.rsplit_once(':').map(|(ip, _)| ip.to_owned())
            })
            .collect()
    }
}

/// microsocks connecting out from 127.0.0.3: a connection that arrives from anywhere else
/// did not go through it (dante does the same with `danted_from`).
fn microsocks_from_127_0_0_3() -> ProxyPeer {
    require("microsocks");
    let port = free_port();
    let mut command = Command::new("microsocks");
    command.args([
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-b",
        "127.0.0.3",
    ]);
    start_proxy(command, port)
}

fn assert_all_from_proxy(witness: &Witness, at_least: usize, what: &str) {
    let sources = witness.sources();
    assert!(
        sources.len() >= at_least,
        "{what}: {} connections at the server, expected {at_least}: {sources:?}",
        sources.len()
    );
    assert!(
        sources.iter().all(|ip| ip == "127.0.0.3"),
        "{what}: a connection bypassed the proxy (the proxy connects from 127.0.0.3): {sources:?}"
    );
}

#[test]
fn bench_echo_round_trips_and_stream_go_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let echo = Witness::socat_echo(dir.path());
    // dante carries the stream's half-close (microsocks would end the tunnel at it).
    let socks = danted_from(dir.path(), "127.0.0.3");
    let proxy = socks.url("socks5h");
    let target = echo.addr();
    let (out, err, code) = run(
        &[
            "bench", "echo", "--json", "--proxy", &proxy, &target, "-c", "4", "-n", "20",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["ops"], 80, "{report}");
    assert_all_from_proxy(&echo, 4, "bench echo -c 4");

    let (out, err, code) = run(
        &[
            "bench", "echo", "--json", "--proxy", &proxy, &target, "--stream", "4MiB",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["bytes"], 4 << 20, "{report}");
    assert_all_from_proxy(&echo, 5, "bench echo --stream");

    // UDP has no proxy to take: refused, not sent around it.
    let (_, err, code) = run(&["bench", "echo", "--udp", "--proxy", &proxy, &target], b"");
    assert_ne!(code, Some(0));
    assert!(err.contains("UDP goes direct"), "{err}");
}

#[test]
fn bench_chat_clients_go_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    // A real chat server behind a relay that sees where each client comes from.
    let server = Server::start(&["chat", "serve", "--port", "0", "--rate", "0"]);
    let chat = Witness::socat_relay(dir.path(), "chat", &server.addr.to_string());
    let socks = microsocks_from_127_0_0_3();
    let (out, err, code) = run(
        &[
            "bench",
            "chat",
            "--json",
            "--proxy",
            &socks.url("socks5h"),
            &chat.addr(),
            "--clients",
            "4",
            "--senders",
            "2",
            "--messages",
            "20",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    // Each line reaches everyone but its sender: 2 senders × 20 × 3 others.
    assert_eq!(report["ops"], 120, "{report}");
    assert_all_from_proxy(&chat, 4, "bench chat --clients 4");
}

#[test]
fn the_certificate_hint_probes_through_the_proxy_too() {
    let dir = tempfile::tempdir().unwrap();
    let tls = Witness::ncat(dir.path(), "tls", &["--ssl"]);
    let socks = microsocks_from_127_0_0_3();
    let (_, err, code) = run(
        &[
            "connect",
            "--tls",
            "--proxy",
            &socks.url("socks5h"),
            &tls.addr(),
        ],
        b"",
    );
    assert_eq!(code, Some(35), "{err}");
    assert!(err.contains("add --pin sha256:"), "{err}");
    // The failed handshake and the second look for the fingerprint: both by the proxy.
    assert_all_from_proxy(&tls, 2, "connect --tls and its hint");
}

#[test]
fn scan_refuses_a_route_it_cannot_take() {
    for flag in [
        ["--proxy", "socks5h://127.0.0.1:1080"],
        ["--unix-socket", "/tmp/x.sock"],
        ["--source", "127.0.0.2"],
    ] {
        let (out, err, code) = run(
            &["connect", "-z", flag[0], flag[1], "127.0.0.1", "1-10"],
            b"",
        );
        assert_eq!(code, Some(2), "{flag:?}: {err}");
        assert!(out.is_empty());
        assert!(err.contains("-z probes directly"), "{flag:?}: {err}");
    }
}
