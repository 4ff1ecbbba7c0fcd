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

/// A browser member over tokio-tungstenite (a strict client: it answers pings while read).
struct Browser {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
}

impl Browser {
    /// Opens `/ws`, says hello as `nick` and waits for the welcome.
    async fn join(addr: std::net::SocketAddr, nick: &str) -> Browser {
        let opening = async {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream).await
        };
        let (ws, _) = tokio::time::timeout(WAIT, opening)
            .await
            .expect("handshake in time")
            .expect("handshake");
        let mut browser = Browser { ws };
        browser
            .send(&serde_json::json!({"kind": "hello", "nick": nick}).to_string())
            .await;
        browser.until(|e| e["kind"] == "welcome").await;
        browser
    }

    async fn send(&mut self, text: &str) {
        use futures_util::SinkExt;
        tokio::time::timeout(WAIT, self.ws.send(Message::text(text)))
            .await
            .expect("sent in time")
            .expect("sent");
    }

    async fn say(&mut self, text: &str) {
        self.send(&serde_json::json!({"kind": "say", "text": text}).to_string())
            .await;
    }

    /// The next JSON event; `None` once the server closed.
    async fn event(&mut self) -> Option<Value> {
        use futures_util::StreamExt;
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("an event in time");
            match message {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).ok(),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Events until one matches `pred` (returned last).
    async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let event = self
                .event()
                .await
                .unwrap_or_else(|| panic!("closed before the event looked for: {seen:?}"));
            let is_it = pred(&event);
            seen.push(event);
            if is_it {
                return seen;
            }
        }
    }
}

use tokio_tungstenite::tungstenite::Message;

/// A WebSocket client by hand on a raw socket: it does only what the test makes it do (never
/// answers a ping, never reads unless asked). `recv_buffer` shrinks its receive window.
async fn raw_browser(
    addr: std::net::SocketAddr,
    nick: &str,
    recv_buffer: Option<u32>,
) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    let mut stream = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect in time")
        .unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(WAIT, stream.read_exact(&mut byte))
            .await
            .expect("answer in time")
            .unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    let hello = serde_json::json!({"kind": "hello", "nick": nick}).to_string();
    stream
        .write_all(&client_frame(0x1, hello.as_bytes()))
        .await
        .unwrap();
    stream
}

/// One masked, final client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// The next server frame (unmasked): opcode and payload.
async fn server_frame(stream: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await?;
        let len = match head[1] & 0x7f {
            126 => u64::from(stream.read_u16().await?),
            127 => stream.read_u64().await?,
            n => u64::from(n),
        };
        let mut payload = vec![0; len as usize];
        stream.read_exact(&mut payload).await?;
        std::io::Result::Ok((head[0] & 0x0f, payload))
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a frame in time")
        .expect("a frame")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_browser_is_pinged_and_one_that_never_answers_is_dropped() {
    const PING: Duration = Duration::from_millis(300);
    const PONG: Duration = Duration::from_millis(300);
    let server = crate::chat::Running::start(sockit::chat::Config {
        ping_interval: PING,
        pong_timeout: PONG,
        rate: 0.0,
        ..sockit::chat::Config::default()
    })
    .await;
    let mut alive = Browser::join(server.addr, "alive").await;
    let mut mute = raw_browser(server.addr, "mute", None).await;
    let started = tokio::time::Instant::now();
    // The browser that answers (tungstenite pongs while it reads) reads all along, as a page
    // does, and outlives several pings.
    let answering = tokio::spawn(async move {
        alive
            .until(|e| {
                e["kind"] == "notice"
                    && e["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("mute left (no answer to ping)"))
            })
            .await;
        while started.elapsed() < PING * 5 {
            let _ = tokio::time::timeout(PING / 3, alive.event()).await;
        }
        alive.say("still here").await;
        alive
            .until(|e| e["kind"] == "message" && e["text"] == "still here")
            .await;
    });
    // Ping first, after the idle interval.
    let mut before_ping = Vec::new();
    let pinged_after = loop {
        let (opcode, payload) = server_frame(&mut mute).await;
        if opcode == 0x9 {
            break started.elapsed();
        }
        assert_ne!(opcode, 0x8, "closed before any ping: {before_ping:?}");
        before_ping.push(String::from_utf8_lossy(&payload).into_owned());
    };
    assert!(
        pinged_after >= PING - Duration::from_millis(50) && pinged_after < PING * 4,
        "pinged after {pinged_after:?}"
    );
    // No pong: an error, then a close with 1001, after the pong timeout.
    let mut last_words = Vec::new();
    let code = loop {
        let (opcode, payload) = server_frame(&mut mute).await;
        if opcode == 0x8 {
            break u16::from_be_bytes([payload[0], payload[1]]);
        }
        last_words.push(String::from_utf8_lossy(&payload).into_owned());
    };
    assert_eq!(code, 1001, "going away: {last_words:?}");
    assert!(
        last_words.iter().any(|w| w.contains("no answer to ping")),
        "{last_words:?}"
    );
    assert!(
        started.elapsed() >= pinged_after + PONG - Duration::from_millis(50),
        "dropped only after the pong timeout: {:?}",
        started.elapsed()
    );
    tokio::time::timeout(WAIT, answering)
        .await
        .expect("the answering browser is done in time")
        .expect("the answering browser stays");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_browser_is_slowed_never_dropped_and_everything_it_sent_arrives() {
    const LINES: usize = 100;
    const BURST: usize = 20;
    const RATE: f64 = 50.0;
    let server = crate::chat::Running::start(sockit::chat::Config {
        rate: RATE,
        burst: BURST as f64,
        history_lines: 0,
        ..sockit::chat::Config::default()
    })
    .await;
    let mut reader = Browser::join(server.addr, "reader").await;
    let mut flooder = Browser::join(server.addr, "flooder").await;
    reader
        .until(|e| e["kind"] == "members" && e["nicks"].to_string().contains("flooder"))
        .await;
    let started = tokio::time::Instant::now();
    {
        use futures_util::SinkExt;
        for i in 0..LINES {
            let say = serde_json::json!({"kind": "say", "text": format!("flood {i}")});
            flooder
                .ws
                .feed(Message::text(say.to_string()))
                .await
                .unwrap();
        }
        flooder.ws.flush().await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < LINES {
        let event = reader.event().await.expect("the reader stays connected");
        if event["kind"] == "message" && event["nick"] == "flooder" {
            got.push(event["text"].as_str().unwrap().to_owned());
        }
    }
    let took = started.elapsed();
    let want: Vec<String> = (0..LINES).map(|i| format!("flood {i}")).collect();
    assert_eq!(got, want, "every line, once, in order");
    // Past the burst, the rest came at the rate: slowed, not cut.
    let at_rate = Duration::from_secs_f64((LINES - BURST) as f64 / RATE);
    assert!(took >= at_rate.mul_f64(0.8), "took {took:?}");
    // The flooder was told once, stays a member and gets its own lines back.
    let seen = flooder
        .until(|e| e["kind"] == "message" && e["text"] == format!("flood {}", LINES - 1))
        .await;
    let slow_downs = seen
        .iter()
        .filter(|e| e["text"].as_str().is_some_and(|t| t.contains("slow down")))
        .count();
    assert_eq!(slow_downs, 1, "{seen:?}");
    flooder.say("still here").await;
    flooder
        .until(|e| e["kind"] == "message" && e["text"] == "still here")
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_that_never_reads_is_dropped_while_the_others_keep_receiving() {
    const LINES: usize = 8_000;
    let server = crate::chat::Running::start(sockit::chat::Config {
        rate: 0.0,
        history_lines: 0,
        queue: sockit::chat::QueueLimits {
            max_bytes: 256 * 1024,
        },
        ..sockit::chat::Config::default()
    })
    .await;
    let mut reader = Browser::join(server.addr, "reader").await;
    let _slow = raw_browser(server.addr, "slowtab", Some(4096)).await;
    // The flooder is a line client: line clients do not get their own lines back.
    let mut flooder = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    {
        use tokio::io::AsyncWriteExt;
        flooder.write_all(b"/nick flooder\n").await.unwrap();
    }
    reader
        .until(|e| {
            e["kind"] == "members"
                && e["nicks"].to_string().contains("slowtab")
                && e["nicks"].to_string().contains("flooder")
        })
        .await;
    let payload = "x".repeat(500);
    let sending = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut batch = String::new();
        for i in 0..LINES {
            batch.push_str(&format!("{i} {payload}\n"));
            if batch.len() > 32 * 1024 || i == LINES - 1 {
                flooder.write_all(batch.as_bytes()).await.unwrap();
                batch.clear();
            }
        }
        flooder
    });
    let (mut next, mut dropped_notice) = (0, None);
    while next < LINES {
        let event = reader.event().await.expect("the reader stays connected");
        if event["kind"] == "message" && event["nick"] == "flooder" {
            let text = event["text"].as_str().unwrap();
            assert!(text.starts_with(&format!("{next} ")), "line {next} next");
            next += 1;
        } else if event["text"]
            .as_str()
            .is_some_and(|t| t.contains("slowtab was dropped (not reading fast enough)"))
        {
            dropped_notice = Some(next);
        }
    }
    assert!(
        dropped_notice.is_some_and(|at| at < LINES),
        "the room was told while lines still flowed: {dropped_notice:?}"
    );
    let _flooder = sending.await.unwrap();
    server.shutdown().await;
}

#[test]
fn with_tls_the_page_is_https_and_the_websocket_wss_on_both_addresses() {
    require("curl");
    require("python3");
    let server = Server::start(&[
        "chat",
        "serve",
        "--port",
        "0",
        "--tls",
        "--web",
        "127.0.0.1:0",
    ]);
    let fingerprint = server
        .stderr_line_with("TLS certificate")
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let web_url = server
        .stderr_line_with("sockit chat web on")
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    assert!(web_url.starts_with("https://"), "{web_url}");
    let web_port: u16 = web_url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for url in [web_url.clone(), format!("https://{}/", server.addr)] {
        let out = std::process::Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{scheme}",
                &url,
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200 HTTPS", "{url}");
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures/ws_peer.py");
    let out = std::process::Command::new("python3")
        .args([script, "wss", &web_port.to_string()])
        .env("SOCKIT_FINGERPRINT", &fingerprint)
        .env("CHAT_PORT", server.addr.port().to_string())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found["welcome"], "alice");
    assert_eq!(
        found["pinned"],
        serde_json::json!([true, true]),
        "the printed certificate"
    );
    assert_eq!(
        found["from"], "bob",
        "wss on the chat's address reaches wss on --web"
    );
}

#[test]
fn websocket_over_http2_is_refused_with_a_clear_answer() {
    require("curl");
    let server = chat(&[]);
    // curl cannot send RFC 8441's extended CONNECT (nor would a browser, which the server does
    // not offer it to): a GET /ws over HTTP/2 is what tools send.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .arg(format!("http://{}/ws", server.addr))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n400 2"), "{text}");
    assert!(
        text.contains("WebSocket over HTTP/2 (RFC 8441) is not supported")
            && text.contains("over HTTP/1.1"),
        "{text}"
    );
}
