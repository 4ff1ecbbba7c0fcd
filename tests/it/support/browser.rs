//! A real browser for the tests: Debian's `chromium`, driven over WebDriver by `chromedriver`
//! (package `chromium-driver`), headless, on loopback. Every wait is bounded by [`WAIT`]; a
//! failed wait says what the page showed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::{WAIT, require};

/// Browser tests start Chromium processes; on a small machine they run one at a time, so that
/// their bounded waits measure the page, not the scheduler.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for the browser's turn, for a test that runs `chromium` by itself.
pub async fn take_turn() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}

/// Window size of every session: a desktop layout (the page also has a phone layout).
pub const WINDOW: (u32, u32) = (1100, 700);

/// One `chromedriver` on a free loopback port. It runs in its own process group, which the
/// browsers it starts join: dropping it ends the whole group by that id.
pub struct Driver {
    child: Child,
    url: String,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Driver {
    /// Starts `chromedriver --port=0` and reads the port it picked from its stdout.
    pub async fn start() -> Driver {
        require("chromedriver");
        require("chromium");
        let turn = ONE_AT_A_TIME.lock().await;
        let mut child = {
            use std::os::unix::process::CommandExt;
            Command::new("chromedriver")
                .args(["--port=0", "--allowed-ips=127.0.0.1"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("spawn chromedriver")
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // "ChromeDriver was started successfully on port 42023."
                if let Some((_, port)) = line.split_once("successfully on port ") {
                    let _ = tx.send(port.trim_end_matches('.').to_owned());
                }
            }
        });
        let Ok(port) = rx.recv_timeout(WAIT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromedriver did not say its port in time");
        };
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _turn: turn,
        }
    }

    /// Opens a headless Chromium session with a fresh profile and [`WINDOW`] size.
    pub async fn open(&self) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args = vec![
            "--headless=new".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            "--lang=en-GB".to_owned(),
        ];
        if nix::unistd::geteuid().is_root() {
            args.push("--no-sandbox".to_owned());
        }
        let capabilities = json!({
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            WAIT * 3,
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&self.url),
        )
        .await
        .expect("browser session opens in time")
        .expect("browser session");
        client
            .set_window_size(WINDOW.0, WINDOW.1)
            .await
            .expect("set window size");
        Browser {
            client,
            _profile: profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// One browser session (a window with its own profile).
pub struct Browser {
    pub client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Navigates to `url` (bounded).
    pub async fn open_url(&self, url: &str) {
        let Ok(loaded) = tokio::time::timeout(WAIT, self.client.goto(url)).await else {
            panic!("{url} did not load in time");
        };
        if let Err(err) = loaded {
            panic!("cannot open {url}: {err}");
        }
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        tokio::time::timeout(WAIT, self.client.execute(script, args))
            .await
            .expect("script ran in time")
            .unwrap_or_else(|err| panic!("script failed: {err}\n{script}"))
    }

    /// `textContent` of the first element matching `selector`, or `None` when there is none.
    pub async fn text_of(&self, selector: &str) -> Option<String> {
        let value = self
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                vec![json!(selector)],
            )
            .await;
        value.as_str().map(str::to_owned)
    }

    /// What the page shows, for failure messages.
    pub async fn page_text(&self) -> String {
        self.execute(
            "return document.body ? document.body.innerText : document.documentElement.outerHTML;",
            vec![],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until an element matches `selector`; returns it.
    pub async fn wait_for(&self, selector: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(selector)).await {
                return element;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no element matches {selector:?} after {WAIT:?}; the page shows:\n{}",
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `textContent` of `selector` satisfies `is_ready`; returns that text.
    pub async fn wait_until(
        &self,
        selector: &str,
        what: &str,
        is_ready: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text_of(selector).await;
            if let Some(text) = &text {
                if is_ready(text) {
                    return text.clone();
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "{selector:?} did not show {what} after {WAIT:?}; it holds {text:?}; the page shows:\n{}",
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `textContent` of `selector` contains `needle`; returns that text.
    pub async fn wait_for_text(&self, selector: &str, needle: &str) -> String {
        self.wait_until(selector, &format!("{needle:?}"), |text| {
            text.contains(needle)
        })
        .await
    }

    /// Clicks into the element matching `selector`, types `text` and presses Enter.
    pub async fn type_line(&self, selector: &str, text: &str) {
        let element = self.wait_for(selector).await;
        self.type_keys(&element, &format!("{text}\u{e007}")).await;
    }

    /// Sends `keys` (WebDriver key codes allowed: `\u{e007}` Enter, `\u{e013}` Up, …).
    pub async fn type_keys(&self, element: &Element, keys: &str) {
        tokio::time::timeout(WAIT, element.send_keys(keys))
            .await
            .expect("typing in time")
            .expect("typing");
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        tokio::time::timeout(WAIT, self.client.screenshot())
            .await
            .expect("screenshot in time")
            .expect("screenshot")
    }

    /// Ends the session (its Chromium exits).
    pub async fn close(self) {
        let _ = tokio::time::timeout(WAIT, self.client.close()).await;
    }
}
