//! Shared test support: run the `sockit` binary as a server or client, with every wait bounded.

#![allow(dead_code, unreachable_pub)] // each test module uses its own subset; `pub` for them

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub mod browser;

/// Every network wait in the tests sits inside this.
pub const WAIT: Duration = Duration::from_secs(10);

/// The `sockit` binary built for these tests.
pub fn sockit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sockit"))
}

/// A `sockit` server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Lines of stderr after the first (fingerprint, hints, logs), as they arrive.
    pub stderr: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `sockit ARGS…` (which must include `--port 0` or an address with port 0) and
    /// waits for `sockit <mode> listening on IP:PORT` on stderr.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_stdin(args, Stdio::null())
    }

    pub fn start_with_stdin(args: &[&str], stdin: Stdio) -> Server {
        let mut cmd = sockit();
        cmd.args(args);
        Self::start_command(cmd, stdin)
    }

    /// `sockit send --raw FILE` on 127.0.0.1, a port of its own: every connection gets the file.
    pub fn raw_sender(file: &std::path::Path) -> Server {
        let file = file.to_str().expect("UTF-8 path");
        Self::start(&["send", "--raw", file, "--port", "0", "--bind", "127.0.0.1"])
    }

    /// Starts a command that runs sockit (under a wrapper such as `setpriv`), as [`Server::start`].
    pub fn start_command(mut cmd: Command, stdin: Stdio) -> Server {
        let args = format!("{cmd:?}");
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sockit");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("sockit {args:?} did not announce its address in time")
        });
        let addr = first
            .rsplit_once(" listening on ")
            .unwrap_or_else(|| panic!("unexpected first stderr line: {first:?}"))
            .1
            .parse()
            .expect("address in the first line");
        Server {
            child,
            addr,
            stderr: rx,
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub fn stderr_line_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(other) => seen.push(other),
                Err(_) => panic!("no stderr line containing {needle:?}; saw {seen:#?}"),
            }
        }
    }

    /// Waits for the process to exit by itself and returns its stdout and status.
    pub fn wait_output(mut self) -> (Vec<u8>, std::process::ExitStatus) {
        let mut stdout = self.child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let status = wait_timeout(&mut self.child, WAIT).expect("server exits in time");
        (reader.join().expect("reader thread"), status)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `limit` for `child` to exit; kills it and returns `None` past the limit.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Runs `sockit ARGS…` with `input` on stdin; returns (stdout, stderr, exit code), bounded by WAIT.
pub fn run(args: &[&str], input: &[u8]) -> (Vec<u8>, String, Option<i32>) {
    run_cmd(sockit().args(args), input)
}

/// Runs any command with `input` on stdin, bounded by WAIT.
pub fn run_cmd(cmd: &mut Command, input: &[u8]) -> (Vec<u8>, String, Option<i32>) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_timeout(&mut child, WAIT * 3).expect("command finished in time");
    let _ = writer.join();
    (
        out.join().expect("stdout"),
        err.join().expect("stderr"),
        status.code(),
    )
}

/// Random bytes from a fixed seed (reproducible failures).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// Whether a program is on PATH (CI installs the peers; locally a missing one fails loudly).
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed; .ci/run installs it (apt-get)"
    );
}

/// `httpbin` on `gunicorn`, bound to 127.0.0.1 port 0; killed when dropped.
pub struct Httpbin {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
}

impl Httpbin {
    /// Starts gunicorn with httpbin and waits for its `Listening at:` line.
    pub fn start() -> Httpbin {
        require("gunicorn");
        let mut child = Command::new("gunicorn")
            .args(["--bind", "127.0.0.1:0", "--workers", "2", "--threads", "4"])
            .args(["--log-level", "info", "httpbin:app"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gunicorn");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some((_, url)) = line.split_once("Listening at: ") {
                    let url = url.split_whitespace().next().unwrap_or_default().to_owned();
                    if tx.send(url).is_err() {
                        break;
                    }
                }
            }
        });
        let base = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("gunicorn did not announce its address in time (pip install gunicorn httpbin)")
        });
        // The workers boot after the listener: wait until one answers.
        let addr: SocketAddr = base
            .trim_start_matches("http://")
            .parse()
            .expect("gunicorn address");
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            use std::io::Write;
            if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                let _ = s.set_read_timeout(Some(WAIT));
                let _ = s.write_all(b"GET /status/200 HTTP/1.0\r\n\r\n");
                let mut head = [0u8; 12];
                // gunicorn answers an HTTP/1.0 request with HTTP/1.0.
                if s.read_exact(&mut head).is_ok()
                    && head.starts_with(b"HTTP/")
                    && head.ends_with(b" 200")
                {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "httpbin never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Httpbin { child, base }
    }

    /// `base` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Httpbin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The protocol curl speaks to a server: the tests listed in `over_both_protocols!` run once
/// with each; the others speak HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

thread_local! {
    // Every test runs on its own thread.
    static PROTO: Cell<Proto> = const { Cell::new(Proto::Http1) };
}

pub fn proto() -> Proto {
    PROTO.with(Cell::get)
}

impl Proto {
    pub fn run(self, test: fn()) {
        PROTO.with(|p| p.set(self));
        test();
    }

    /// curl's option for this protocol: HTTP/2 by ALPN over TLS, with prior knowledge on
    /// cleartext.
    pub fn curl_option(self, https: bool) -> &'static str {
        match (self, https) {
            (Proto::Http1, _) => "--http1.1",
            (Proto::Http2, true) => "--http2",
            (Proto::Http2, false) => "--http2-prior-knowledge",
        }
    }

    /// The start of a status line curl writes for this protocol.
    pub fn status_line(self) -> &'static str {
        match self {
            Proto::Http1 => "HTTP/1.1 ",
            Proto::Http2 => "HTTP/2 ",
        }
    }

    /// The protocol as the access log shows it.
    pub fn in_log(self) -> &'static str {
        match self {
            Proto::Http1 => "HTTP/1.1",
            Proto::Http2 => "HTTP/2.0",
        }
    }
}

/// Runs each named test (a plain `fn()`) once over HTTP/1.1 and once over HTTP/2.
macro_rules! over_both_protocols {
    ($($name:ident),* $(,)?) => {
        mod over_http1 {
            $(#[test] fn $name() { super::Proto::Http1.run(super::$name) })*
        }
        mod over_http2 {
            $(#[test] fn $name() { super::Proto::Http2.run(super::$name) })*
        }
    };
}
pub(crate) use over_both_protocols;

/// nginx serving a directory, on a port picked by binding port 0; killed when dropped.
/// Its access log (`access_log()`) has one line per request:
/// `CONNECTION PROTOCOL METHOD TARGET VERSION STATUS range=RANGE`,
/// so tests can count the TCP connections that carried their requests.
pub struct Nginx {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: std::path::PathBuf,
}

impl Nginx {
    /// The access log so far (nginx writes a line when a request ends).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ssl_certificate` and `ssl_certificate_key` for [`start_nginx`].
pub fn tls_directives(cert: &std::path::Path, key: &std::path::Path) -> String {
    format!(
        "ssl_certificate {}; ssl_certificate_key {};",
        cert.display(),
        key.display()
    )
}

/// nginx in `dir` (config, logs, pid) serving `www`. `listen` follows the address on the
/// `listen` line (`ssl`, `ssl http2`, `http2` for cleartext HTTP/2); `server` adds
/// directives to the server block (certificates, `gzip on;`, …).
pub fn start_nginx(
    dir: &std::path::Path,
    www: &std::path::Path,
    listen: &str,
    server: &str,
) -> Nginx {
    require("nginx");
    for _attempt in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("probe a free port")
            .port();
        let d = dir.display();
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  log_format conn '$connection $server_protocol $request $status range=$http_range';
  access_log {d}/access.log conn;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port} {listen};
    {server}
    root {};
  }}
}}
",
            www.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let mut child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break; // most likely the port was taken meanwhile: try another
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Nginx {
                    child,
                    port,
                    dir: dir.to_owned(),
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    panic!("nginx did not start: {log}");
}

/// A `redis-server` of the tests' own on a free loopback port, its files in a temporary
/// directory; killed (by PID) when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

impl Redis {
    /// Starts `redis-server` without persistence.
    pub fn start() -> Redis {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Starts `redis-server` with `args` added (persistence settings).
    pub fn start_with(args: &[&str]) -> Redis {
        require("redis-server");
        require("redis-cli");
        let dir = tempfile::tempdir().expect("temporary directory for redis");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        for _ in 0..5 {
            let port = free_port();
            let mut child = spawn_redis(port, dir.path(), &args);
            if wait_redis(&mut child, port) {
                return Redis {
                    child,
                    port,
                    dir,
                    args,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli ARGS…` against this server; returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} redis-server");
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and directory, with
    /// `args` instead of the first ones when given.
    pub fn restart(&mut self, args: Option<&[&str]>) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(args) = args {
            self.args = args.iter().map(|a| a.to_string()).collect();
        }
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            self.child = spawn_redis(self.port, self.dir.path(), &self.args);
            if wait_redis(&mut self.child, self.port) {
                return;
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        panic!("redis-server did not restart on port {}", self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the redis-server on `port` answers PING; `false` if it exited.
fn wait_redis(child: &mut Child, port: u16) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let pong = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "PING"])
            .output()
            .map(|o| o.stdout.starts_with(b"PONG"))
            .unwrap_or(false);
        if pong {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A loopback port that was free a moment ago (for servers that cannot be told port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn spawn_redis(port: u16, dir: &std::path::Path, args: &[String]) -> Child {
    Command::new("redis-server")
        .arg("--port")
        .arg(port.to_string())
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server")
}
