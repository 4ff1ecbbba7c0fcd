//! `sockit chat join` on a real terminal: tmux runs it in a pane, types, pastes (bracketed)
//! and presses Ctrl-C. Each test has its own tmux server (`-L`), killed at the end.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// A private tmux server with one 120×40 session; killed when dropped.
pub(crate) struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a pane that stays (dead) after the command exits.
    pub(crate) fn start(name: &str, command: &str) -> Tmux {
        require("tmux");
        let tmux = Tmux {
            socket: format!("sockit-{name}-{}", std::process::id()),
        };
        let started = tmux.run(&[
            "start-server",
            ";",
            "set-option",
            "-g",
            "remain-on-exit",
            "on",
            ";",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "120",
            "-y",
            "40",
            command,
        ]);
        assert!(started.status.success(), "tmux: {started:?}");
        tmux
    }

    pub(crate) fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    /// `None` while the pane's command runs, then its exit status.
    ///
    /// tmux may leave the command a zombie for seconds before it reaps it and knows the
    /// status, so the command's own `/proc` entry is read too (a zombie's wait status is
    /// its last field).
    pub(crate) fn exit_status(&self) -> Option<String> {
        let out = self.run(&[
            "display-message",
            "-p",
            "-t",
            "t",
            "#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}|#{pane_pid}",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let fields: Vec<&str> = text.split('|').collect();
        let [dead, status, signal, pid] = fields[..] else {
            return None;
        };
        // tmux calls a pane dead once its terminal closes, which can be before it has reaped
        // the command: the status is known only when one of the two fields is filled in.
        if dead == "1" && !status.is_empty() {
            return Some(status.to_owned());
        }
        if dead == "1" && !signal.is_empty() {
            return Some(format!("signal {signal}"));
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The state follows the parenthesised command name.
        let after_name = &stat[stat.rfind(')')? + 2..];
        if !after_name.starts_with('Z') {
            return None;
        }
        let wait_status: i32 = after_name.split_whitespace().last()?.parse().ok()?;
        Some(if wait_status & 0x7f != 0 {
            format!("signal {}", wait_status & 0x7f)
        } else {
            ((wait_status >> 8) & 0xff).to_string()
        })
    }

    pub(crate) fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    /// Pastes `text` as a terminal paste would (bracketed, since the client asks for it).
    fn paste(&self, text: &str) {
        let mut load = Command::new("tmux")
            .args(["-L", &self.socket, "load-buffer", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("tmux load-buffer");
        load.stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())
            .expect("write the buffer");
        assert!(load.wait().expect("load-buffer ends").success());
        assert!(
            self.run(&["paste-buffer", "-p", "-t", "t"])
                .status
                .success()
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn sockit_path() -> &'static str {
    env!("CARGO_BIN_EXE_sockit")
}

fn watcher(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    BufReader::new(stream)
}

fn expect_line(reader: &mut BufReader<TcpStream>, needle: &str) -> String {
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).expect("a line in time") > 0,
            "EOF before {needle:?}"
        );
        if line.contains(needle) {
            return line.trim_end().to_owned();
        }
    }
}

#[test]
fn a_4kib_multi_line_paste_arrives_whole_at_another_member() {
    let server = Server::start(&["chat", "serve", "--port", "0"]);
    let mut other = watcher(server.addr);
    expect_line(&mut other, "you joined");
    let tmux = Tmux::start(
        "paste",
        &format!("{} chat join {} --nick paster", sockit_path(), server.addr),
    );
    expect_line(&mut other, "is now paster");
    // 64 lines of 63 characters and a newline: 4 KiB, far over one 1 KiB terminal read.
    let lines: Vec<String> = (0..64)
        .map(|i| format!("{i:02} {}", "x".repeat(60)))
        .collect();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(text.len(), 4096);
    tmux.paste(&text);
    for line in &lines {
        assert_eq!(
            expect_line(&mut other, "<paster>"),
            format!("<paster> {line}")
        );
    }
    // Ctrl-C leaves; the client exits 0 and the others see it go.
    tmux.run(&["send-keys", "-t", "t", "C-c"]);
    expect_line(&mut other, "paster left");
    let deadline = Instant::now() + WAIT;
    while tmux.exit_status().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        tmux.exit_status().as_deref(),
        Some("0"),
        "{}",
        tmux.screen()
    );
}

#[test]
fn ctrl_c_during_a_tls_handshake_ends_the_client_at_once() {
    // A server that accepts and never answers: the handshake would wait for --timeout (10 s).
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("address");
    let tmux = Tmux::start(
        "tls",
        &format!("{} chat join {addr} --tls --nick a", sockit_path()),
    );
    silent.set_nonblocking(false).expect("blocking");
    let (_held, _) = silent.accept().expect("the client connects");
    // The client has sent its ClientHello and waits; give it a moment to sit in the wait.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(tmux.exit_status(), None, "{}", tmux.screen());
    let pressed = Instant::now();
    tmux.run(&["send-keys", "-t", "t", "C-c"]);
    while tmux.exit_status().is_none() && pressed.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = pressed.elapsed();
    assert!(
        tmux.exit_status().is_some(),
        "still running: {}",
        tmux.screen()
    );
    assert!(took < Duration::from_millis(1500), "Ctrl-C took {took:?}");
}
