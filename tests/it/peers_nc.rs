//! `sockit connect` / `sockit listen` against nc, ncat, socat and themselves, run the way a
//! script runs them: the background side has stdin from /dev/null (or a file), data goes
//! through files, every wait is bounded. Each test is one cell of the half-close matrix in
//! README ("Who closes when").

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Bytes moved in each matrix cell: several socket buffers, so that a relay that stops at
/// the peer's EOF loses some of them.
const CELL_BYTES: usize = 4 << 20;

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `len` random bytes to `name` and returns its path.
    fn random_file(&self, name: &str, len: usize, seed: u64) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, random_bytes(len, seed)).expect("write input");
        path
    }
}

fn input(path: Option<&Path>) -> Stdio {
    match path {
        Some(path) => File::open(path).expect("open input").into(),
        None => Stdio::null(),
    }
}

fn output(path: &Path) -> Stdio {
    File::create(path).expect("create output").into()
}

fn hash(path: &Path) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(File::open(path).expect("open for hashing"))
        .expect("hash file");
    hasher.finalize()
}

fn assert_same(got: &Path, want: &Path) {
    let (got_len, want_len) = (
        std::fs::metadata(got).expect("output").len(),
        std::fs::metadata(want).expect("input").len(),
    );
    assert_eq!(got_len, want_len, "{} is cut short", got.display());
    assert_eq!(hash(got), hash(want), "{} differs", got.display());
}

/// A process killed on drop unless it has been waited for.
struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    fn spawn(cmd: &mut Command, name: &str) -> Proc {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            child,
            name: name.to_owned(),
        }
    }

    /// Waits (bounded) and asserts a zero exit.
    fn succeeds(mut self, limit: Duration) {
        let status = wait_timeout(&mut self.child, limit)
            .unwrap_or_else(|| panic!("{} did not finish within {limit:?}", self.name));
        assert!(status.success(), "{} exited with {status}", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sockit listen ARGS… --port 0` with stdin and stdout as given; returns it and its address.
fn sockit_listen(args: &[&str], stdin: Stdio, stdout: Stdio) -> (Proc, SocketAddr) {
    let mut cmd = sockit();
    cmd.arg("listen")
        .args(args)
        .args(["--port", "0"])
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped());
    let mut proc = Proc::spawn(&mut cmd, "sockit listen");
    let stderr = proc.child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {} // keep draining so the process never blocks on stderr
    });
    let first = rx
        .recv_timeout(WAIT)
        .expect("sockit listen announces itself");
    let addr = first
        .rsplit_once(" listening on ")
        .expect("announcement")
        .1
        .parse()
        .expect("address");
    (proc, addr)
}

/// A port that was free a moment ago, for peers that cannot be told to pick one.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// Waits until something listens on 127.0.0.1:`port`, without connecting (a one-shot
/// listener such as `nc -l` would take the probe for its peer).
fn wait_listening(port: u16) {
    let needle = format!("0100007F:{port:04X} 00000000:0000 0A");
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        if table.contains(&needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port}");
}

/// A peer program as a listener on `port`.
fn peer_listen(peer: &str, port: u16) -> Command {
    require(peer);
    let port = port.to_string();
    let mut cmd = Command::new(peer);
    match peer {
        "nc" => cmd.args(["-N", "-l", "127.0.0.1", &port]),
        "ncat" => cmd.args(["-l", "127.0.0.1", &port]),
        "socat" => cmd.args([
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"),
            "STDIO",
        ]),
        other => panic!("no listener recipe for {other}"),
    };
    cmd
}

/// A peer program as a client of `addr`.
fn peer_connect(peer: &str, addr: SocketAddr) -> Command {
    let (program, args): (&str, Vec<String>) = match peer {
        "nc" => ("nc", vec!["127.0.0.1".into(), addr.port().to_string()]),
        "nc -N" => (
            "nc",
            vec!["-N".into(), "127.0.0.1".into(), addr.port().to_string()],
        ),
        "ncat" => ("ncat", vec!["127.0.0.1".into(), addr.port().to_string()]),
        "socat" => ("socat", vec!["STDIO".into(), format!("TCP:{addr}")]),
        "sockit" => {
            let mut cmd = sockit();
            cmd.args(["connect", &addr.to_string()]);
            return cmd;
        }
        other => panic!("no client recipe for {other}"),
    };
    require(program);
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

/// `sockit listen > got` in the background (stdin /dev/null, so it half-closes at once);
/// `PEER < file` sends: every byte arrives and both exit 0.
fn listen_receives_from(peer: &str) {
    let dir = Dir::new();
    let sent = dir.random_file("sent", CELL_BYTES, 11);
    let got = dir.path("got");
    let (listen, addr) = sockit_listen(&[], Stdio::null(), output(&got));
    let mut cmd = peer_connect(peer, addr);
    cmd.stdin(input(Some(&sent)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Proc::spawn(&mut cmd, peer).succeeds(WAIT);
    listen.succeeds(WAIT);
    assert_same(&got, &sent);
}

#[test]
fn listen_in_background_receives_all_from_sockit_connect() {
    listen_receives_from("sockit");
}

#[test]
fn listen_in_background_receives_all_from_nc() {
    listen_receives_from("nc");
}

#[test]
fn listen_in_background_receives_all_from_nc_dash_n() {
    listen_receives_from("nc -N");
}

#[test]
fn listen_in_background_receives_all_from_ncat() {
    listen_receives_from("ncat");
}

#[test]
fn listen_in_background_receives_all_from_socat() {
    listen_receives_from("socat");
}

/// `sockit listen < file` in the background; `PEER > got` with stdin /dev/null receives it
/// whole, and both exit 0.
fn listen_sends_to(peer: &str) {
    let dir = Dir::new();
    let sent = dir.random_file("sent", CELL_BYTES, 12);
    let got = dir.path("got");
    let (listen, addr) = sockit_listen(&[], input(Some(&sent)), Stdio::null());
    let mut cmd = peer_connect(peer, addr);
    cmd.stdin(Stdio::null())
        .stdout(output(&got))
        .stderr(Stdio::null());
    Proc::spawn(&mut cmd, peer).succeeds(WAIT);
    listen.succeeds(WAIT);
    assert_same(&got, &sent);
}

#[test]
fn listen_sends_all_to_sockit_connect() {
    listen_sends_to("sockit");
}

#[test]
fn listen_sends_all_to_nc() {
    listen_sends_to("nc");
}

#[test]
fn listen_sends_all_to_nc_dash_n() {
    listen_sends_to("nc -N");
}

#[test]
fn listen_sends_all_to_ncat() {
    listen_sends_to("ncat");
}

#[test]
fn listen_sends_all_to_socat() {
    listen_sends_to("socat");
}

/// `PEER -l > got` in the background (stdin /dev/null: it half-closes at once);
/// `sockit connect < file` still sends every byte and exits 0.
fn connect_sends_to_listener(peer: &str) {
    let dir = Dir::new();
    let sent = dir.random_file("sent", CELL_BYTES, 13);
    let got = dir.path("got");
    let port = free_port();
    let mut cmd = peer_listen(peer, port);
    cmd.stdin(Stdio::null())
        .stdout(output(&got))
        .stderr(Stdio::null());
    let listener = Proc::spawn(&mut cmd, peer);
    wait_listening(port);
    let mut connect = sockit();
    connect
        .args(["connect", &format!("127.0.0.1:{port}")])
        .stdin(input(Some(&sent)))
        .stdout(Stdio::null());
    Proc::spawn(&mut connect, "sockit connect").succeeds(WAIT);
    listener.succeeds(WAIT);
    assert_same(&got, &sent);
}

#[test]
fn connect_sends_all_to_nc_listening() {
    connect_sends_to_listener("nc");
}

#[test]
fn connect_sends_all_to_ncat_listening() {
    connect_sends_to_listener("ncat");
}

#[test]
fn connect_sends_all_to_socat_listening() {
    connect_sends_to_listener("socat");
}

/// `PEER -l < file` in the background; `sockit connect [FLAGS] > got` with stdin /dev/null
/// receives it whole. nc -l and ncat -l quit at the first EOF they read, so against them the
/// receiver holds its EOF back with --no-shutdown.
fn connect_receives_from_listener(peer: &str, flags: &[&str]) {
    let dir = Dir::new();
    let sent = dir.random_file("sent", CELL_BYTES, 14);
    let got = dir.path("got");
    let port = free_port();
    let mut cmd = peer_listen(peer, port);
    cmd.stdin(input(Some(&sent)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let listener = Proc::spawn(&mut cmd, peer);
    wait_listening(port);
    let mut connect = sockit();
    connect
        .arg("connect")
        .args(flags)
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(output(&got));
    Proc::spawn(&mut connect, "sockit connect").succeeds(WAIT);
    listener.succeeds(WAIT);
    assert_same(&got, &sent);
}

#[test]
fn connect_receives_all_from_nc_listening() {
    connect_receives_from_listener("nc", &["--no-shutdown"]);
}

#[test]
fn connect_receives_all_from_ncat_listening() {
    connect_receives_from_listener("ncat", &["--no-shutdown"]);
}

#[test]
fn connect_receives_all_from_socat_listening() {
    connect_receives_from_listener("socat", &[]);
}

/// Both directions at once between two sockit processes, every byte accounted for.
#[test]
fn listen_and_connect_exchange_files_both_ways_at_once() {
    let dir = Dir::new();
    let (a, b) = (
        dir.random_file("a", CELL_BYTES, 15),
        dir.random_file("b", CELL_BYTES / 3, 16),
    );
    let (got_a, got_b) = (dir.path("got_a"), dir.path("got_b"));
    let (listen, addr) = sockit_listen(&[], input(Some(&a)), output(&got_a));
    let mut connect = sockit();
    connect
        .args(["connect", &addr.to_string()])
        .stdin(input(Some(&b)))
        .stdout(output(&got_b));
    Proc::spawn(&mut connect, "sockit connect").succeeds(WAIT);
    listen.succeeds(WAIT);
    assert_same(&got_a, &b);
    assert_same(&got_b, &a);
}

/// The scripted pipeline of the README, 100 MiB each way: `sockit listen > file &` (stdin
/// /dev/null) while `sockit connect < file`; then `sockit listen < file &` while
/// `sockit connect > file`. Byte-exact, both exit 0.
#[test]
fn hundred_mib_scripted_pipeline_is_byte_exact_both_ways() {
    let dir = Dir::new();
    let big = dir.random_file("big", 100 << 20, 17);
    let limit = WAIT * 6;

    let got = dir.path("into_listen");
    let (listen, addr) = sockit_listen(&[], Stdio::null(), output(&got));
    let mut connect = sockit();
    connect
        .args(["connect", &addr.to_string()])
        .stdin(input(Some(&big)))
        .stdout(Stdio::null());
    Proc::spawn(&mut connect, "sockit connect").succeeds(limit);
    listen.succeeds(limit);
    assert_same(&got, &big);

    let got = dir.path("from_listen");
    let (listen, addr) = sockit_listen(&[], input(Some(&big)), Stdio::null());
    let mut connect = sockit();
    connect
        .args(["connect", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(output(&got));
    Proc::spawn(&mut connect, "sockit connect").succeeds(limit);
    listen.succeeds(limit);
    assert_same(&got, &big);
}

/// `sockit listen --tls` with one peer: the peer gets every byte, then `close_notify`, so a
/// pinned `sockit connect` exits 0 — in both directions.
#[test]
fn listen_tls_one_peer_and_pinned_connect_move_everything_both_ways() {
    let dir = Dir::new();
    let sent = dir.random_file("sent", CELL_BYTES, 18);
    for listen_sends in [true, false] {
        let got = dir.path("got");
        let mut cmd = sockit();
        cmd.args(["listen", "--tls", "--port", "0"])
            .stdin(input(listen_sends.then_some(sent.as_path())))
            .stdout(if listen_sends {
                Stdio::null()
            } else {
                output(&got)
            })
            .stderr(Stdio::piped());
        let mut listen = Proc::spawn(&mut cmd, "sockit listen --tls");
        let stderr = listen.child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let first = lines.next().expect("announcement").expect("utf-8");
        let addr = first
            .rsplit_once(" listening on ")
            .expect("address")
            .1
            .to_owned();
        let pin_line = lines.next().expect("fingerprint line").expect("utf-8");
        let pin = pin_line.rsplit_once(' ').expect("fingerprint").1.to_owned();
        std::thread::spawn(move || for _ in lines {});
        let mut connect = sockit();
        connect
            .args(["connect", "--pin", &pin, &addr])
            .stdin(input((!listen_sends).then_some(sent.as_path())))
            .stdout(if listen_sends {
                output(&got)
            } else {
                Stdio::null()
            });
        Proc::spawn(&mut connect, "sockit connect --pin").succeeds(WAIT);
        listen.succeeds(WAIT);
        assert_same(&got, &sent);
    }
}

/// socat's TLS client ends with `close_notify` like sockit does: all bytes, exit 0 on both sides.
#[test]
fn listen_tls_sends_all_to_socat_openssl() {
    require("socat");
    let dir = Dir::new();
    let sent = dir.random_file("sent", CELL_BYTES, 19);
    let got = dir.path("got");
    let (listen, addr) = sockit_listen(&["--tls"], input(Some(&sent)), Stdio::null());
    let mut socat = Command::new("socat");
    socat
        .args(["STDIO", &format!("OPENSSL:{addr},verify=0")])
        .stdin(Stdio::null())
        .stdout(output(&got))
        .stderr(Stdio::null());
    Proc::spawn(&mut socat, "socat").succeeds(WAIT);
    listen.succeeds(WAIT);
    assert_same(&got, &sent);
}

/// ncat --ssl closes without `close_notify`: every byte is still written out, but sockit
/// cannot tell that from a cut connection, so it says so and exits 1 (as curl does).
#[test]
fn tls_end_without_close_notify_keeps_the_data_and_fails_loudly() {
    require("ncat");
    let dir = Dir::new();
    let sent = dir.random_file("sent", CELL_BYTES, 20);
    let got = dir.path("got");
    let mut cmd = sockit();
    cmd.args(["listen", "--tls", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(output(&got))
        .stderr(Stdio::piped());
    let mut listen = Proc::spawn(&mut cmd, "sockit listen --tls");
    let stderr = listen.child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(WAIT).expect("announcement");
    let addr: SocketAddr = first
        .rsplit_once(" listening on ")
        .expect("address")
        .1
        .parse()
        .expect("address");
    let mut ncat = Command::new("ncat");
    ncat.args(["--ssl", "127.0.0.1", &addr.port().to_string()])
        .stdin(input(Some(&sent)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Proc::spawn(&mut ncat, "ncat --ssl").succeeds(WAIT);
    let status = wait_timeout(&mut listen.child, WAIT).expect("listen ends");
    assert_eq!(status.code(), Some(1));
    // The reader thread may still be forwarding the last lines: read until stderr closes.
    let err: Vec<String> = std::iter::from_fn(|| rx.recv_timeout(WAIT).ok()).collect();
    assert!(
        err.iter().any(|l| l.contains("without close_notify")),
        "{err:#?}"
    );
    assert_same(&got, &sent);
}

/// `sockit send --raw FILE` for the raw receive tests.
fn raw_sender(dir: &Dir, len: usize) -> (Server, PathBuf) {
    let file = dir.random_file("offered", len, 21);
    (Server::raw_sender(&file), file)
}

fn mkfifo(path: &Path) {
    require("mkfifo");
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false)
}

#[test]
fn recv_raw_writes_to_dev_null_in_place() {
    let dir = Dir::new();
    let (server, _) = raw_sender(&dir, CELL_BYTES);
    let (_, err, code) = run(
        &["recv", "--raw", &server.addr.to_string(), "-o", "/dev/null"],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&format!("{CELL_BYTES} bytes")), "{err}");
    assert!(!Path::new("/dev/null.part").exists());
}

/// A FIFO with a reader gets the bytes whole, and stays a FIFO, with --overwrite or not.
#[test]
fn recv_raw_writes_into_a_fifo_and_never_replaces_it() {
    let dir = Dir::new();
    let (server, offered) = raw_sender(&dir, CELL_BYTES);
    let fifo = dir.path("pipe");
    mkfifo(&fifo);
    for extra in [&[][..], &["--overwrite"][..]] {
        let got = dir.path("from_fifo");
        let reader = {
            let (fifo, got) = (fifo.clone(), got.clone());
            std::thread::spawn(move || {
                let mut from = File::open(&fifo).expect("open fifo for reading");
                let mut to = File::create(&got).expect("create copy");
                std::io::copy(&mut from, &mut to).expect("copy from fifo")
            })
        };
        let mut args = vec!["recv", "--raw"];
        let addr = server.addr.to_string();
        args.push(&addr);
        args.extend(["-o", fifo.to_str().expect("utf-8 path")]);
        args.extend_from_slice(extra);
        let (_, err, code) = run(&args, b"");
        assert_eq!(code, Some(0), "{extra:?}: {err}");
        assert_eq!(reader.join().expect("reader"), CELL_BYTES as u64);
        assert_same(&got, &offered);
        assert!(is_fifo(&fifo), "{extra:?} replaced the FIFO");
        assert!(!dir.path("pipe.part").exists());
    }
}
