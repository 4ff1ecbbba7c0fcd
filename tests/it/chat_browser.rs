//! The chat's browser page in a real headless Chromium, beside `nc`-style and `sockit chat join`
//! clients in the same rooms.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::browser::{Browser, Driver};
use crate::support::*;

/// The harness itself: a page served by `sockit serve`, typed into, read back and
/// photographed through WebDriver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_harness_types_reads_and_photographs_a_page() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        r#"<!doctype html><meta charset=utf-8><title>echo</title>
<input id=in aria-label=in><ol id=out></ol>
<script>
document.getElementById('in').addEventListener('keydown', e => {
  if (e.key !== 'Enter') return;
  const li = document.createElement('li');
  li.textContent = e.target.value;
  document.getElementById('out').append(li);
  e.target.value = '';
});
</script>"#,
    )
    .unwrap();
    let server = Server::start(&["serve", dir.path().to_str().unwrap(), "--port", "0"]);
    let driver = Driver::start().await;
    let browser = driver.open().await;
    browser.open_url(&format!("http://{}/", server.addr)).await;
    browser.type_line("#in", "héllo 你好 🙂").await;
    let text = browser.wait_for_text("#out", "héllo").await;
    assert_eq!(text, "héllo 你好 🙂");
    assert_eq!(browser.execute("return 6 * 7;", vec![]).await, json!(42));
    assert_eq!(browser.text_of("#nothing").await, None);
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    browser.close().await;
}

// --- the chat page ---------------------------------------------------------------------------

/// Starts `sockit chat serve --port 0 --rate 0 EXTRA…`.
fn start_chat(extra: &[&str]) -> Server {
    let mut args = vec![
        "chat", "serve", "--port", "0", "--rate", "0", "--drain", "1s",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn page_url(server: &Server) -> String {
    format!("http://{}/", server.addr)
}

/// Opens the page, types `nick` and Enter, and waits until the page says it is in the lobby.
async fn enter(browser: &Browser, url: &str, nick: &str) {
    browser.open_url(url).await;
    browser.type_line("#nick", nick).await;
    browser
        .wait_for_text("#where", &format!("{nick} in #lobby"))
        .await;
}

/// Puts `text` in the message box (any Unicode: chromedriver types only the BMP) and
/// presses Enter.
async fn say(browser: &Browser, text: &str) {
    let input = browser.wait_for("#input").await;
    browser
        .execute(
            "document.getElementById('input').value = arguments[0];",
            vec![json!(text)],
        )
        .await;
    browser.type_keys(&input, "\u{e007}").await;
}

/// The chat lines the page shows, as (nick, text).
async fn page_lines(browser: &Browser) -> Vec<(String, String)> {
    let value = browser
        .execute(
            "return Array.from(document.querySelectorAll('#log li.msg, #log li.action'))
               .map(li => [li.querySelector('.nick').textContent,
                           li.querySelector('.text').textContent]);",
            vec![],
        )
        .await;
    serde_json::from_value(value).expect("pairs of strings")
}

/// Waits until the page's chat lines satisfy `is_ready`; returns them.
async fn wait_for_lines(
    browser: &Browser,
    what: &str,
    is_ready: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = page_lines(browser).await;
        if is_ready(&lines) {
            return lines;
        }
        if Instant::now() >= deadline {
            panic!(
                "the page did not show {what} after {WAIT:?}; it shows:\n{}",
                browser.page_text().await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lines seen by a line client (raw TCP or `sockit chat join`), gathered by a thread.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn gather(&self, reader: impl std::io::Read + Send + 'static) {
        let seen = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                seen.lock().unwrap().push(line);
            }
        });
    }

    /// Waits until the lines satisfy `is_ready`; returns them.
    async fn wait_until(
        &self,
        who: &str,
        what: &str,
        is_ready: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = self.0.lock().unwrap().clone();
            if is_ready(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{who} did not see {what} after {WAIT:?}; it saw:\n{}",
                lines.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_for(&self, who: &str, needle: &str) {
        self.wait_until(who, &format!("{needle:?}"), |lines| {
            lines.iter().any(|l| l.contains(needle))
        })
        .await;
    }
}

/// A raw TCP client, as `nc` would be.
struct LinePeer {
    stream: TcpStream,
    seen: Seen,
}

impl LinePeer {
    /// Connects (sending `first` lines, e.g. `PASS …`), takes `nick` and waits for the rename.
    async fn join(addr: SocketAddr, nick: &str, first: &[&str]) -> LinePeer {
        let stream = TcpStream::connect(addr).expect("connect to the chat");
        let seen = Seen::default();
        seen.gather(stream.try_clone().expect("clone socket"));
        let mut peer = LinePeer { stream, seen };
        for line in first {
            peer.send(line);
        }
        peer.seen.wait_for(nick, "you joined #lobby").await;
        peer.send(&format!("/nick {nick}"));
        peer.seen.wait_for(nick, &format!("is now {nick}")).await;
        peer
    }

    fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the chat");
    }
}

/// `sockit chat join ADDR --nick NICK`, its stdin a pipe and its stdout gathered.
struct JoinClient {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    seen: Seen,
}

impl JoinClient {
    async fn start(addr: SocketAddr, nick: &str, extra: &[&str]) -> JoinClient {
        let mut child = sockit()
            .args(["chat", "join", &addr.to_string(), "--nick", nick])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sockit chat join");
        let stdin = child.stdin.take().expect("piped stdin");
        let seen = Seen::default();
        seen.gather(child.stdout.take().expect("piped stdout"));
        seen.wait_for(nick, "you joined #lobby").await;
        JoinClient { child, stdin, seen }
    }

    fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to sockit chat join");
    }
}

impl Drop for JoinClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(nick, text)` of a line client's `<nick> text` lines.
fn said(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|line| {
            let (nick, text) = line.strip_prefix('<')?.split_once("> ")?;
            Some((nick.to_owned(), text.to_owned()))
        })
        .collect()
}

/// The texts `nick` said, in the order they were shown.
fn texts_of(lines: &[(String, String)], nick: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|(n, _)| n == nick)
        .map(|(_, t)| t.clone())
        .collect()
}

fn numbered(nick: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{nick} {i}")).collect()
}

const LINES_EACH: usize = 20;
const NICKS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const UNICODE: &str = "你好，世界 🌏👋🏽 naïve café";

/// Two pages, a raw TCP client and `sockit chat join` in one room: each sees every other's
/// lines exactly once and in the order they were sent; Chinese text and emoji arrive intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_line_clients_see_each_others_lines_in_order() {
    let server = start_chat(&[]);
    let url = page_url(&server);
    let driver = Driver::start().await;
    let alice = driver.open().await;
    let bob = driver.open().await;
    enter(&alice, &url, "alice").await;
    enter(&bob, &url, "bob").await;
    let mut carol = LinePeer::join(server.addr, "carol", &[]).await;
    let mut dave = JoinClient::start(server.addr, "dave", &[]).await;

    // Interleaved, as people type: each sender's own order is what must hold.
    for i in 1..=LINES_EACH {
        alice.type_line("#input", &format!("alice {i}")).await;
        carol.send(&format!("carol {i}"));
        bob.type_line("#input", &format!("bob {i}")).await;
        dave.send(&format!("dave {i}"));
    }
    say(&alice, &format!("alice {UNICODE}")).await;
    carol.send(&format!("carol {UNICODE}"));
    dave.send(&format!("dave {UNICODE}"));

    let expected = |nick: &str| {
        let mut lines = numbered(nick, LINES_EACH);
        if nick != "bob" {
            lines.push(format!("{nick} {UNICODE}"));
        }
        lines
    };
    let everyone_said = |lines: &[(String, String)], me: &str| {
        NICKS
            .iter()
            .filter(|&&n| n != me)
            .all(|n| texts_of(lines, n).len() >= expected(n).len())
    };
    for (page, me) in [(&alice, "alice"), (&bob, "bob")] {
        let lines = wait_for_lines(page, "every line", |l| everyone_said(l, me)).await;
        for nick in NICKS.iter().filter(|&&n| n != me) {
            assert_eq!(
                texts_of(&lines, nick),
                expected(nick),
                "{me}'s page, lines of {nick}"
            );
        }
    }
    for (seen, me) in [(&carol.seen, "carol"), (&dave.seen, "dave")] {
        let lines = seen
            .wait_until(me, "every line", |l| everyone_said(&said(l), me))
            .await;
        let lines = said(&lines);
        for nick in NICKS.iter().filter(|&&n| n != me) {
            assert_eq!(
                texts_of(&lines, nick),
                expected(nick),
                "{me}'s lines of {nick}"
            );
        }
    }
    alice.close().await;
    bob.close().await;
}
