//! The chat's browser page in a real headless Chromium, beside `nc`-style and `sockit chat join`
//! clients in the same rooms.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::browser::{Browser, Driver, take_turn};
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
    start_chat_on(0, extra)
}

/// Starts `sockit chat serve --port PORT --rate 0 EXTRA…`.
fn start_chat_on(port: u16, extra: &[&str]) -> Server {
    let port = port.to_string();
    let mut args = vec![
        "chat", "serve", "--port", &port, "--rate", "0", "--drain", "1s",
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
    // Members are the four clients, nobody else: a browser's idle spare connection to the
    // chat's port is no member.
    for page in [&alice, &bob] {
        page.wait_until(
            "#members",
            "exactly alice, bob, carol and dave",
            |members| members == NICKS.concat(),
        )
        .await;
    }
    carol.send("/who");
    carol
        .seen
        .wait_for("carol", "in #lobby (4): alice, bob, carol, dave")
        .await;
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

/// `chromium --headless=new --dump-dom URL` with a fresh profile: a cold start, which may
/// connect long before it sends its request (or open spare connections it never uses).
fn dump_dom_cold(url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut args = vec![
        "--headless=new".to_owned(),
        format!("--user-data-dir={}", profile.path().display()),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--no-first-run".to_owned(),
    ];
    if nix::unistd::geteuid().is_root() {
        args.push("--no-sandbox".to_owned());
    }
    args.extend(["--dump-dom".to_owned(), url.to_owned()]);
    let mut child = std::process::Command::new("chromium")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reading = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        out
    });
    let deadline = Instant::now() + WAIT * 6;
    loop {
        if child.try_wait().expect("chromium status").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium --dump-dom did not finish in {:?}", WAIT * 6);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reading.join().expect("stdout reader")
}

#[tokio::test]
async fn a_cold_browser_gets_the_page_and_posts_nothing_into_the_room() {
    require("chromium");
    let _turn = take_turn().await;
    let server = start_chat(&[]);
    let url = page_url(&server);
    let mut carol = LinePeer::join(server.addr, "carol", &[]).await;
    for run in 1..=2 {
        let dom = tokio::task::spawn_blocking({
            let url = url.clone();
            move || dump_dom_cold(&url)
        })
        .await
        .expect("chromium run");
        assert!(
            dom.contains("<title>sockit chat</title>"),
            "run {run}: no page: {dom:?}"
        );
    }
    carol.send("/history");
    carol.send("/who");
    let lines = carol
        .seen
        .wait_until("carol", "the /who answer", |l| {
            l.iter().any(|l| l.starts_with("* in #lobby"))
        })
        .await;
    assert!(
        lines.iter().any(|l| l == "* in #lobby (1): carol"),
        "{lines:?}"
    );
    // Nothing of the browser's connections in the room: no join, no leave, no request
    // head as chat lines, nothing in the history.
    let after_rename = lines
        .iter()
        .position(|l| l.ends_with("is now carol"))
        .expect("carol's rename");
    let others = lines[after_rename + 1..]
        .iter()
        .filter(|l| l.contains("joined") || l.contains("left") || l.starts_with('<'))
        .filter(|l| !l.contains("carol"))
        .count();
    assert_eq!(others, 0, "the browser showed in the room: {lines:?}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("HTTP/1.1") || l.starts_with("* last ")),
        "the browser showed in the room: {lines:?}"
    );
}

const IMG: &str = r#"<img src=x onerror="window.pwned=1">"#;
const SCRIPT: &str = "<script>window.pwned=2</script>";
const BOLD: &str = r#"<b onmouseover="window.pwned=3">bold</b>"#;

/// Markup in a message, from a line client or typed on a page, shows literally on every page
/// and never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_messages_is_shown_as_text_and_never_runs() {
    let server = start_chat(&[]);
    let url = page_url(&server);
    let driver = Driver::start().await;
    let alice = driver.open().await;
    let bob = driver.open().await;
    enter(&alice, &url, "alice").await;
    enter(&bob, &url, "bob").await;
    let mut carol = LinePeer::join(server.addr, "carol", &[]).await;

    carol.send(IMG);
    carol.send(SCRIPT);
    alice.type_line("#input", BOLD).await;

    for (page, me) in [(&alice, "alice"), (&bob, "bob")] {
        let lines = wait_for_lines(page, "the three lines", |l| l.len() >= 3).await;
        assert_eq!(texts_of(&lines, "carol"), [IMG, SCRIPT], "{me}'s page");
        assert_eq!(texts_of(&lines, "alice"), [BOLD], "{me}'s page");
        let found = page
            .execute(
                "return {
                   elements: document.querySelectorAll('#log img, #log script, #log b').length,
                   pwned: typeof window.pwned,
                 };",
                vec![],
            )
            .await;
        assert_eq!(
            found,
            json!({"elements": 0, "pwned": "undefined"}),
            "{me}'s page"
        );
    }
    carol
        .seen
        .wait_for("carol", &format!("<alice> {BOLD}"))
        .await;
    alice.close().await;
    bob.close().await;
}

/// Enter sends, Up and Down recall sent lines, and the focus stays in the message box.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_from_the_keyboard_alone() {
    let server = start_chat(&[]);
    let driver = Driver::start().await;
    let alice = driver.open().await;
    alice.open_url(&page_url(&server)).await;
    // The nick box has the focus on arrival: typing alone joins.
    let focused = alice
        .client
        .active_element()
        .await
        .expect("focused element");
    alice.type_keys(&focused, "alice\u{e007}").await;
    alice.wait_for_text("#where", "alice in #lobby").await;

    let input = alice.wait_for("#input").await;
    for line in ["first", "second"] {
        let focused = alice
            .client
            .active_element()
            .await
            .expect("focused element");
        assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("input"));
        alice.type_keys(&focused, &format!("{line}\u{e007}")).await;
    }
    wait_for_lines(&alice, "both lines", |l| l.len() >= 2).await;
    let value = || async { input.prop("value").await.unwrap().unwrap_or_default() };
    let (up, down) = ("\u{e013}", "\u{e015}");
    alice.type_keys(&input, up).await;
    assert_eq!(value().await, "second");
    alice.type_keys(&input, up).await;
    assert_eq!(value().await, "first");
    alice.type_keys(&input, up).await;
    assert_eq!(value().await, "first", "the oldest line stays");
    alice.type_keys(&input, down).await;
    assert_eq!(value().await, "second");
    alice.type_keys(&input, down).await;
    assert_eq!(value().await, "", "past the newest line: an empty box");

    // A key pressed with the focus elsewhere lands in the message box.
    alice
        .execute("document.activeElement.blur();", vec![])
        .await;
    let body = alice.wait_for("body").await;
    alice.type_keys(&body, "x").await;
    let focused = alice
        .client
        .active_element()
        .await
        .expect("focused element");
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("input"));
    assert_eq!(value().await, "x", "the key itself lands there too");

    // `/quit` leaves for good: the join form comes back, no reconnecting.
    alice.type_line("#input", "\u{e003}/quit").await;
    alice
        .wait_for_text("#login-error", "You left the chat")
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        alice.text_of("#status").await.as_deref(),
        Some("not connected")
    );
    alice.close().await;
}

/// History shows on arrival; after the server is stopped and started again on the same port
/// with the same `--db`, the page says it is reconnecting, comes back by itself, shows new
/// lines, and shows none of the old ones twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_history_and_resumes_after_a_restart_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let db = db.to_str().unwrap();
    let server = start_chat(&["--db", db]);
    let port = server.addr.port();
    let url = page_url(&server);
    let mut carol = LinePeer::join(server.addr, "carol", &[]).await;
    for i in 1..=3 {
        carol.send(&format!("before {i}"));
    }

    let driver = Driver::start().await;
    let alice = driver.open().await;
    enter(&alice, &url, "alice").await;
    wait_for_lines(&alice, "the history", |l| l.len() >= 3).await;
    alice.type_line("#input", "from the page").await;
    wait_for_lines(&alice, "its own line", |l| l.len() >= 4).await;

    stop_gracefully(server);
    drop(carol);
    alice.wait_for_text("#status", "reconnecting").await;

    let server = start_chat_on(port, &["--db", db]);
    alice.wait_for_text("#status", "reconnected").await;
    let mut carol = LinePeer::join(server.addr, "carol", &[]).await;
    carol.send("after the restart");
    alice.type_line("#input", "page after the restart").await;
    wait_for_lines(&alice, "the new lines", |l| l.len() >= 6).await;
    // A moment more, so that a late duplicate would show too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = page_lines(&alice).await;
    let texts: Vec<&str> = lines.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        texts,
        [
            "before 1",
            "before 2",
            "before 3",
            "from the page",
            "after the restart",
            "page after the restart"
        ],
        "each line once, in order"
    );
    carol
        .seen
        .wait_for("carol", "<alice> page after the restart")
        .await;
    alice.close().await;
}

/// SIGTERM, then waits (bounded) for the server to exit.
fn stop_gracefully(mut server: Server) {
    use nix::sys::signal::{Signal, kill};
    let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
    kill(pid, Signal::SIGTERM).expect("signal the server");
    let status = wait_timeout(&mut server.child, WAIT).expect("the server stops in time");
    assert!(status.success(), "a stopped server exits 0: {status}");
}

/// A page without the password is asked for it; a wrong one is refused with a visible
/// message; the right one then joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_on_the_page_and_the_right_one_joins() {
    let server = start_chat(&["--password", "s3cret"]);
    let carol = LinePeer::join(server.addr, "carol", &["PASS s3cret"]).await;
    let driver = Driver::start().await;
    let alice = driver.open().await;
    alice.open_url(&page_url(&server)).await;
    alice.type_line("#nick", "alice").await;
    let message = alice.wait_for_text("#login-error", "password").await;
    assert!(message.contains("needs a password"), "{message}");
    let password = alice.wait_for("#password").await;
    assert!(
        password.is_displayed().await.unwrap(),
        "the password box shows"
    );

    alice.type_line("#password", "wrong").await;
    alice.wait_for_text("#login-error", "password").await;
    assert_eq!(
        alice.text_of("#status").await.as_deref(),
        Some("not connected")
    );
    let is_chat_hidden = alice
        .execute(
            "return document.getElementById('chat-view').hidden;",
            vec![],
        )
        .await;
    assert_eq!(is_chat_hidden, json!(true), "no chat without the password");

    alice
        .execute("document.getElementById('password').value = '';", vec![])
        .await;
    alice.type_line("#password", "s3cret").await;
    alice.wait_for_text("#where", "alice in #lobby").await;
    alice.type_line("#input", "in with the password").await;
    carol
        .seen
        .wait_for("carol", "<alice> in with the password")
        .await;
    alice.close().await;
}

/// README's picture of the chat: a page, an `nc`-style client and `sockit chat join` in one
/// room. It is taken again when the page changes: `docs/chat-web.png.page-hash` holds the
/// BLAKE3 of the page it shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_screenshot_shows_the_current_page() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read(root.join("src/chat/web/page.html")).unwrap();
    let page_hash = blake3::hash(&page).to_hex().to_string();
    let (png_path, hash_path) = (
        root.join("docs/chat-web.png"),
        root.join("docs/chat-web.png.page-hash"),
    );
    let is_update = std::env::var_os("SOCKIT_UPDATE_SCREENSHOT").is_some_and(|v| v == "1");
    if !is_update {
        let shown = std::fs::read_to_string(&hash_path).unwrap_or_default();
        assert_eq!(
            shown.trim(),
            page_hash,
            "docs/chat-web.png shows an older src/chat/web/page.html: refresh it with \
             `SOCKIT_UPDATE_SCREENSHOT=1 cargo test --test it \
             chat_browser::readme_screenshot_shows_the_current_page` and commit both files"
        );
    }

    let server = start_chat(&[]);
    let driver = Driver::start().await;
    let alice = driver.open().await;
    alice.client.set_window_size(960, 600).await.unwrap();
    enter(&alice, &page_url(&server), "alice").await;
    let mut carol = LinePeer::join(server.addr, "carol", &[]).await;
    let mut dave = JoinClient::start(server.addr, "dave", &[]).await;
    // One line at a time, each seen on the page before the next: the picture's order.
    let lines = [
        "hi all, I'm on plain nc",
        "and I'm in a terminal: sockit chat join :7777",
        "hello from the browser 👋",
        "waves back",
        "你好 — Unicode and emoji arrive intact 🎉",
    ];
    carol.send(lines[0]);
    wait_for_lines(&alice, "carol's line", |l| !l.is_empty()).await;
    dave.send(lines[1]);
    wait_for_lines(&alice, "dave's line", |l| l.len() >= 2).await;
    say(&alice, lines[2]).await;
    wait_for_lines(&alice, "alice's line", |l| l.len() >= 3).await;
    carol.send(&format!("/me {}", lines[3]));
    wait_for_lines(&alice, "carol's action", |l| l.len() >= 4).await;
    say(&alice, lines[4]).await;
    let shown = wait_for_lines(&alice, "the conversation", |l| l.len() >= 5).await;
    let texts: Vec<&str> = shown.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, lines);
    alice.wait_for_text("#members", "dave").await;
    alice.wait_for_text("#rooms", "lobby").await;
    let png = alice.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    if is_update {
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(&png_path, &png).unwrap();
        std::fs::write(&hash_path, format!("{page_hash}\n")).unwrap();
    }
    alice.close().await;
}

/// A burst of lines keeps the page responsive (layout is read once per frame, not per line),
/// and the page keeps the last lines, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_lines_keeps_the_page_responsive() {
    const LINES: usize = 3000;
    const KEPT: usize = 500; // lines the page keeps per room
    let server = start_chat(&["--history", "0"]);
    let driver = Driver::start().await;
    let alice = driver.open().await;
    enter(&alice, &page_url(&server), "alice").await;
    let mut carol = LinePeer::join(server.addr, "carol", &[]).await;
    let padding = "·".repeat(60);
    let sent: Vec<String> = numbered("carol", LINES)
        .iter()
        .map(|line| format!("{line} {padding}"))
        .collect();
    let burst: String = sent.iter().map(|line| format!("{line}\n")).collect();
    carol.stream.write_all(burst.as_bytes()).unwrap();

    // Each look at the page is a script that must run within WAIT: a page busy laying out
    // every line fails here.
    let lines = wait_for_lines(&alice, "the last line", |l| {
        l.last().is_some_and(|(_, text)| *text == sent[LINES - 1])
    })
    .await;
    assert_eq!(texts_of(&lines, "carol"), sent[LINES - KEPT..]);
    alice.close().await;
}

/// `/join` moves the page to the room (its own log, its members, the room list); a click on a
/// room in the list goes back, where the lines seen before show once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_room_changes_and_shows_each_line_once() {
    let server = start_chat(&[]);
    let driver = Driver::start().await;
    let alice = driver.open().await;
    enter(&alice, &page_url(&server), "alice").await;
    let mut bob = LinePeer::join(server.addr, "bob", &[]).await;
    bob.send("in the lobby");
    wait_for_lines(&alice, "bob's lobby line", |l| l.len() == 1).await;

    alice.type_line("#input", "/join rust").await;
    alice.wait_for_text("#room-name", "rust").await;
    alice.wait_for_text("#where", "alice in #rust").await;
    alice.wait_for_text("#rooms", "#rust").await;
    bob.send("/join rust");
    bob.seen.wait_for("bob", "you joined #rust").await;
    bob.send("in rust");
    let lines = wait_for_lines(&alice, "bob's rust line", |l| !l.is_empty()).await;
    assert_eq!(
        texts_of(&lines, "bob"),
        ["in rust"],
        "the rust log holds rust only"
    );
    alice.wait_for_text("#members", "bob").await;

    let lobby = alice
        .client
        .find(fantoccini::Locator::XPath(
            "//ul[@id='rooms']//button[text()='#lobby']",
        ))
        .await;
    let lobby = match lobby {
        Ok(button) => button,
        Err(err) => panic!(
            "no #lobby in the room list ({err}): {}",
            alice.page_text().await
        ),
    };
    lobby.click().await.unwrap();
    alice.wait_for_text("#where", "alice in #lobby").await;
    let focused = alice.client.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("input"));
    // The lobby's history is replayed on the way back: the line seen before shows once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(texts_of(&page_lines(&alice).await, "bob"), ["in the lobby"]);
    alice.close().await;
}
