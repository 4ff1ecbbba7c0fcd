//! What nc users type first: `connect -z HOST PORTS`, `HOST PORT` as two arguments, `-C`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use crate::support::*;

/// Listeners on a block of seven ports: the first, third and sixth are open, the others
/// were free when the block was picked (their listeners are closed again).
struct PortBlock {
    first: u16,
    open: Vec<TcpListener>,
}

impl PortBlock {
    fn new() -> PortBlock {
        for _attempt in 0..50 {
            let first = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            let base = first.local_addr().expect("bound").port();
            if base > u16::MAX - 8 {
                continue;
            }
            let rest: Vec<_> = (1..7)
                .map(|i| TcpListener::bind(("127.0.0.1", base + i)))
                .collect();
            if rest.iter().all(Result::is_ok) {
                let mut open = vec![first];
                for (i, listener) in rest.into_iter().enumerate() {
                    // Offsets 2 and 5 stay open; the rest close now and refuse.
                    if i + 1 == 2 || i + 1 == 5 {
                        open.push(listener.expect("checked"));
                    }
                }
                return PortBlock { first: base, open };
            }
        }
        panic!("no block of 7 free ports on 127.0.0.1");
    }

    fn range(&self) -> String {
        format!("{}-{}", self.first, self.first + 6)
    }

    fn open_ports(&self) -> Vec<u16> {
        self.open
            .iter()
            .map(|l| l.local_addr().expect("bound").port())
            .collect()
    }
}

fn open_lines(stdout: &[u8]) -> Vec<u16> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(" open"))
        .map(|p| p.parse().expect("a port number"))
        .collect()
}

#[test]
fn scan_lists_exactly_the_open_ports_in_order_and_exits_0() {
    let block = PortBlock::new();
    let (out, err, code) = run(&["connect", "-z", "127.0.0.1", &block.range()], b"");
    assert_eq!(code, Some(0), "{err}");
    let text = String::from_utf8_lossy(&out);
    assert_eq!(
        text,
        block
            .open_ports()
            .iter()
            .map(|p| format!("{p} open\n"))
            .collect::<String>()
    );
}

#[test]
fn scan_verbose_adds_closed_ports_with_their_reason() {
    let block = PortBlock::new();
    let (out, err, code) = run(&["-v", "connect", "-z", "127.0.0.1", &block.range()], b"");
    assert_eq!(code, Some(0), "{err}");
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    let closed = block.first + 1;
    assert!(
        lines.contains(&format!("{closed} closed (connection refused)").as_str()),
        "{text}"
    );
}

#[test]
fn scan_with_nothing_open_exits_1_and_says_so() {
    let block = PortBlock::new();
    let closed = format!("{},{}", block.first + 1, block.first + 3);
    let (out, err, code) = run(&["connect", "-z", "127.0.0.1", &closed], b"");
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty());
    assert!(err.contains("no open port among the 2 probed"), "{err}");
}

#[test]
fn scan_json_has_the_open_list_and_counts() {
    let block = PortBlock::new();
    let (out, err, code) = run(
        &["connect", "-z", "--json", "127.0.0.1", &block.range()],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&out).expect("one JSON object");
    assert_eq!(json["ip"], "127.0.0.1");
    assert_eq!(json["scanned"], 7);
    assert_eq!(json["open"], serde_json::json!(block.open_ports()));
    assert_eq!(json["closed"], 4);
    assert_eq!(json["filtered"], 0);
}

/// As root (CAP_NET_RAW) the probe is a raw SYN, for anyone else a connect; `--connect-scan`
/// makes it a connect. Both find the same ports.
#[test]
fn scan_json_names_the_probe_method_and_both_methods_agree() {
    let block = PortBlock::new();
    let default = if nix::unistd::geteuid().is_root() {
        "syn"
    } else {
        "connect"
    };
    for (flag, method) in [(None, default), (Some("--connect-scan"), "connect")] {
        let mut args = vec!["-v", "connect", "-z", "--json"];
        args.extend(flag);
        let range = block.range();
        args.extend(["127.0.0.1", &range]);
        let (out, err, code) = run(&args, b"");
        assert_eq!(code, Some(0), "{err}");
        let json: serde_json::Value = serde_json::from_slice(&out).expect("one JSON object");
        assert_eq!(json["method"], method, "{json}");
        assert_eq!(
            json["open"],
            serde_json::json!(block.open_ports()),
            "{method}"
        );
        assert_eq!(json["closed"], 4, "{method}");
    }
}

#[test]
fn scan_finds_the_same_open_ports_as_nc_z() {
    require("nc");
    let block = PortBlock::new();
    let nc = Command::new("nc")
        .args(["-z", "-v", "-w", "2", "127.0.0.1", &block.range()])
        .output()
        .expect("run nc");
    let by_nc: Vec<u16> = String::from_utf8_lossy(&nc.stderr)
        .lines()
        .filter(|l| l.ends_with("succeeded!"))
        .map(|l| {
            l.split_whitespace()
                .nth(3)
                .and_then(|p| p.parse().ok())
                .expect("nc names the port fourth")
        })
        .collect();
    let (out, err, code) = run(&["connect", "-z", "127.0.0.1", &block.range()], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(open_lines(&out), by_nc);
    assert_eq!(by_nc, block.open_ports());
}

#[test]
fn scan_refuses_a_bad_port_list_with_exit_2() {
    let (_, err, code) = run(&["connect", "-z", "127.0.0.1", "90-80"], b"");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("runs backwards"), "{err}");
}

#[test]
fn connect_takes_host_and_port_as_two_arguments() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("bound").port().to_string();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read");
        s.write_all(b"bye\n").expect("write");
        got
    });
    let (out, err, code) = run(&["connect", "127.0.0.1", &port], b"hello\n");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"bye\n");
    assert_eq!(server.join().expect("server"), b"hello\n");
}

#[test]
fn a_bare_host_without_a_port_says_how_to_give_one() {
    let (_, err, code) = run(&["connect", "localhost"], b"");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("missing :PORT"), "{err}");
    assert!(err.contains("HOST PORT"), "{err}");
    let (_, err, code) = run(&["connect", "localhost:1", "2"], b"");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not both"), "{err}");
}

#[test]
fn crlf_turns_each_newline_into_crlf_as_nc_c() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("bound").to_string();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read");
        got
    });
    let (_, err, code) = run(&["connect", "-C", &addr], b"HELO x\nQUIT\r\nlast");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(server.join().expect("server"), b"HELO x\r\nQUIT\r\nlast");
}

#[test]
fn listen_bench_recv_and_chat_join_take_host_and_port_as_two_arguments() {
    let echo = Server::start(&["listen", "127.0.0.1", "0", "--echo"]);
    let port = echo.addr.port().to_string();
    let (_, err, code) = run(
        &["bench", "echo", "127.0.0.1", &port, "-c", "1", "-n", "3"],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");

    let raw = Server::start_with_stdin(
        &["listen", "127.0.0.1", "0"],
        std::process::Stdio::from(tempfile_with(b"payload")),
    );
    let port = raw.addr.port().to_string();
    let (out, err, code) = run(&["recv", "--raw", "127.0.0.1", &port, "-o", "-"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"payload");

    let chat = Server::start(&["chat", "serve", "--port", "0"]);
    let port = chat.addr.port().to_string();
    let (out, err, code) = run(
        &["chat", "join", "127.0.0.1", &port, "--nick", "ada"],
        b"hello\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(String::from_utf8_lossy(&out).contains("* bye"), "{err}");
}

/// A file holding `bytes`, opened for reading (a child's stdin).
fn tempfile_with(bytes: &[u8]) -> std::fs::File {
    let mut file = tempfile::tempfile().expect("temp file");
    file.write_all(bytes).expect("write temp file");
    std::io::Seek::rewind(&mut file).expect("rewind");
    file
}

#[test]
fn listen_no_shutdown_holds_its_eof_until_the_peer_closes() {
    let server = Server::start(&["listen", "--port", "0", "--no-shutdown"]);
    let mut peer = std::net::TcpStream::connect(server.addr).expect("connect");
    peer.write_all(b"from peer\n").expect("write");
    // stdin (/dev/null) ended at once; without --no-shutdown the EOF would come now.
    peer.set_read_timeout(Some(std::time::Duration::from_millis(400)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    let early = peer.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "EOF came before the peer closed: {early:?}"
    );
    peer.shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    peer.set_read_timeout(Some(WAIT)).expect("timeout");
    assert_eq!(peer.read(&mut byte).expect("EOF after ours"), 0);
    let (out, status) = server.wait_output();
    assert!(status.success());
    assert_eq!(out, b"from peer\n");
}
