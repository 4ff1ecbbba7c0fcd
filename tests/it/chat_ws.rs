//! The chat's web side against a strict third-party client (Python `websockets`, driven by
//! `fixtures/ws_peer.py`), raw sockets, curl, and the line clients in the same rooms.

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Server, WAIT, require};

/// Runs `scenario` of the Python peer against `server`; returns its findings.
fn peer(scenario: &str, server: &Server) -> Value {
    require("python3");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures/ws_peer.py");
    let out = std::process::Command::new("python3")
        .args([script, scenario, &server.addr.port().to_string()])
        .arg(env!("CARGO_BIN_EXE_sockit"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{scenario}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the peer prints JSON")
}

fn chat(extra: &[&str]) -> Server {
    let mut args = vec!["chat", "serve", "--port", "0", "--rate", "0"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn websocket_protocol_fragments_ping_and_clean_close() {
    let found = peer("protocol", &chat(&[]));
    assert_eq!(found["fragmented"], "fragmented message", "reassembled");
    assert_eq!(found["pong"], true, "ping answered");
    assert_eq!(found["close_code"], 1000, "close handshake: {found}");
}

#[test]
fn websocket_errors_close_with_their_codes() {
    let found = peer("raw_errors", &chat(&[]));
    assert_eq!(found["status"], "HTTP/1.1 101 Switching Protocols");
    assert_eq!(found["invalid_utf8"], 1007);
    assert_eq!(found["unmasked"], 1002);
    let found = peer("oversize", &chat(&["--max-line", "8KiB"]));
    assert_eq!(found["code"], 1009);
}

#[test]
fn another_origin_is_refused_and_a_wrong_password_closes_with_1008() {
    let found = peer("origin", &chat(&[]));
    assert_eq!(found["evil"], 403);
    assert_eq!(found["same"], "welcome");
    let found = peer("password", &chat(&["--password", "s3cret"]));
    assert_eq!(found["events"][0]["kind"], "error");
    assert_eq!(found["events"][0]["code"], "password");
    assert_eq!(found["code"], 1008);
    assert_eq!(found["welcome"], "alice", "the right password enters");
}

#[test]
fn browser_raw_socket_and_terminal_client_share_a_room() {
    let found = peer("mixed", &chat(&[]));
    let texts = ["你好 🎉", "<img src=x onerror=alert(1)>", "third"];
    // Each sender's lines reach the others whole, literal and in order.
    let ws: Vec<(String, String)> = found["ws"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_str().unwrap().into(), e[1].as_str().unwrap().into()))
        .collect();
    for (nick, prefix) in [("raw", "tcp "), ("term", "term "), ("web", "")] {
        let got: Vec<&str> = ws
            .iter()
            .filter(|(n, _)| n == nick)
            .map(|(_, t)| t.as_str())
            .collect();
        let want: Vec<String> = texts.iter().map(|t| format!("{prefix}{t}")).collect();
        assert_eq!(got, want, "{nick} as the browser saw it");
    }
    let ids: Vec<u64> = found["ws"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[2].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let raw: Vec<&str> = found["raw"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let from_web: Vec<&&str> = raw.iter().filter(|l| l.starts_with("<web>")).collect();
    assert_eq!(
        from_web,
        [
            "<web> 你好 🎉",
            "<web> <img src=x onerror=alert(1)>",
            "<web> third"
        ]
        .iter()
        .collect::<Vec<_>>()
    );
    let term = found["term"].to_string();
    assert!(
        term.contains("<raw> tcp 你好 🎉") && term.contains("<web> <img src=x onerror=alert(1)>"),
        "{term}"
    );
    assert_eq!(found["private_tcp"], "*web* psst 秘密");
    assert_eq!(found["private_ws"]["text"], "back at you");
    assert_eq!(found["private_ws"]["to"], "web");
}

#[test]
fn history_on_join_and_resume_after_an_id() {
    let found = peer("resume", &chat(&[]));
    let history = found["history"].to_string();
    assert!(
        history.contains("line 0") && history.contains("line 4"),
        "{history}"
    );
    // `after` = the third line's id: only the two after it, then what is new.
    assert_eq!(
        found["resumed"],
        serde_json::json!(["line 3", "line 4", "marker"])
    );
}

#[test]
fn a_silent_line_client_is_greeted_at_once_and_get_x_is_chat() {
    let server = chat(&[]);
    let started = Instant::now();
    let stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("* welcome"), "{line}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    let mut typist = std::net::TcpStream::connect(server.addr).unwrap();
    typist.set_read_timeout(Some(WAIT)).unwrap();
    typist.write_all(b"GET x\n").unwrap();
    let mut seen = String::new();
    while !seen.contains("> GET x") {
        seen.clear();
        assert!(
            reader.read_line(&mut seen).unwrap() > 0,
            "the room sees GET x as chat"
        );
    }
}

#[test]
fn curl_gets_the_page_with_its_security_headers() {
    require("curl");
    let server = chat(&[]);
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", &format!("http://{}/", server.addr)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("content-security-policy: default-src 'none'; script-src 'self' 'sha256-"),
        "{text}"
    );
    assert!(text.contains("frame-ancestors 'none'"));
    assert!(text.contains("x-content-type-options: nosniff"));
    assert!(text.contains("cache-control: no-cache"));
    assert!(text.contains("referrer-policy: no-referrer"));
    assert!(text.contains("<!doctype html>"));
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{}/nope", server.addr),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
}

#[test]
fn web_listener_serves_the_page_and_websocket_but_not_line_chat() {
    require("curl");
    let server = Server::start(&["chat", "serve", "--port", "0", "--web", "127.0.0.1:0"]);
    let web_line = server.stderr_line_with("sockit chat web on");
    let web = web_line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{web}/"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    // A silent client on the web address is not greeted as a chat member.
    let addr = web.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    let read = std::io::Read::read(&mut stream, &mut buf);
    assert!(
        !matches!(read, Ok(n) if n > 0 && buf.starts_with(b"* welcome")),
        "{read:?}"
    );
}

/// The request of a WebSocket client that opened many connections at once comes late (its
/// own event loop is busy with the others): a burst of silent connections is given longer
/// before a silent one counts as a line client. A lone silent client is still greeted at
/// once (`a_silent_line_client_is_greeted_at_once_and_get_x_is_chat`).
#[test]
fn websocket_clients_arriving_in_a_burst_are_not_taken_for_line_clients() {
    let server = chat(&[]);
    let clients: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
        .collect();
    // Later than a lone silent client is waited for, as a busy client would be.
    std::thread::sleep(Duration::from_millis(250));
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for mut client in &clients {
        client.write_all(request.as_bytes()).unwrap();
    }
    for client in clients {
        client.set_read_timeout(Some(WAIT)).unwrap();
        let mut status = String::new();
        BufReader::new(client).read_line(&mut status).unwrap();
        let status = if status.starts_with("* welcome") {
            "* welcome (greeted as a line client)"
        } else {
            status.trim()
        };
        *statuses.entry(status.to_owned()).or_default() += 1;
    }
    assert_eq!(
        statuses,
        [("HTTP/1.1 101 Switching Protocols".to_owned(), 300)].into(),
        "every late request is answered as HTTP"
    );
}
