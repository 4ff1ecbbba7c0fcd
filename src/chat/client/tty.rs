//! The terminal front end: a small line editor in raw mode. Arriving lines are printed above
//! the prompt, which is then redrawn with what was being typed, so messages never garble the
//! line being edited.
//!
//! Keys: Enter sends, Backspace, Ctrl-U clears, Ctrl-W deletes a word, Ctrl-C or Ctrl-D (on
//! an empty line) quits. Bracketed paste is on while the client runs: a paste of any size
//! arrives whole; each of its lines is sent as a line, and a last line without newline
//! stays in the editor. Keys are decoded by the sibling `keys` module from what the terminal
//! gives at each read, so nothing waits for a later key press.

use std::io::{Read as _, Write as _};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::chat::client::keys::{Key, KeyDecoder};
use crate::chat::client::{
    JoinConfig, JoinError, ServerWriter, Watch, greeting, read_lines, render,
};
use crate::chat::line::neutralise;

const PROMPT: &str = "> ";

/// Raw mode and bracketed paste; both undone when dropped (also on error paths).
struct RawMode;

impl RawMode {
    fn enable() -> std::io::Result<Self> {
        crossterm::terminal::enable_raw_mode()?;
        let mut stdout = std::io::stdout();
        stdout.write_all(b"\x1b[?2004h")?;
        stdout.flush()?;
        Ok(Self)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(b"\x1b[?2004l");
        let _ = stdout.flush();
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// The line being typed and what is known about us.
#[derive(Debug, Default)]
struct Editor {
    typed: String,
    nick: Option<String>,
}

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Redraw,
    /// Lines to send, in order.
    Send(Vec<String>),
    Quit,
    Nothing,
}

impl Editor {
    fn key(&mut self, key: Key) -> Action {
        match key {
            Key::Interrupt => Action::Quit,
            Key::EndOfInput if self.typed.is_empty() => Action::Quit,
            Key::EndOfInput => Action::Nothing,
            Key::ClearLine => {
                self.typed.clear();
                Action::Redraw
            }
            Key::DeleteWord => {
                let kept = self.typed.trim_end().rfind(' ').map_or(0, |i| i + 1);
                self.typed.truncate(kept);
                Action::Redraw
            }
            Key::Char(c) => {
                self.typed.push(c);
                Action::Redraw
            }
            Key::Backspace => {
                self.typed.pop();
                Action::Redraw
            }
            Key::Enter => Action::Send(vec![std::mem::take(&mut self.typed)]),
            Key::Paste(text) => {
                let text = text.replace("\r\n", "\n").replace('\r', "\n");
                let mut lines: Vec<&str> = text.split('\n').collect();
                let last = lines.pop().unwrap_or_default();
                let mut sent = Vec::with_capacity(lines.len());
                for line in lines {
                    self.typed.push_str(&neutralise(line.as_bytes()));
                    sent.push(std::mem::take(&mut self.typed));
                }
                self.typed.push_str(&neutralise(last.as_bytes()));
                if sent.is_empty() {
                    Action::Redraw
                } else {
                    Action::Send(sent)
                }
            }
        }
    }

    /// Learns our nickname from the server's notices.
    fn learn(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("* you joined #")
            && let Some((_, nick)) = rest.split_once(" as ")
        {
            self.nick = Some(nick.to_owned());
        } else if let Some(rest) = line.strip_prefix("* ")
            && let Some((old, new)) = rest.split_once(" is now ")
            && self.nick.as_deref() == Some(old)
        {
            self.nick = Some(new.to_owned());
        }
    }

    /// The prompt line: as much of the end of the typed text as fits in `width` columns.
    fn prompt(&self, width: usize) -> String {
        let room = width.saturating_sub(PROMPT.len() + 1).max(1);
        let chars: Vec<char> = self.typed.chars().collect();
        let tail: String = chars[chars.len().saturating_sub(room)..].iter().collect();
        format!("{PROMPT}{tail}")
    }
}

fn redraw(out: &mut Vec<u8>, editor: &Editor) {
    let width = crossterm::terminal::size().map_or(80, |(w, _)| usize::from(w));
    out.extend_from_slice(b"\r\x1b[2K");
    out.extend_from_slice(editor.prompt(width).as_bytes());
}

/// Runs the terminal client on `stream` until `/quit`, Ctrl-C/Ctrl-D or the server closes.
///
/// # Errors
///
/// A [`JoinError`]: a refused login, a TLS server, the server closing before the user quit,
/// or an I/O error on the connection or the terminal. A taken `--nick` is shown as the
/// server's notice; the user picks another with `/nick`.
pub async fn run<S>(
    stream: S,
    config: &JoinConfig,
    stop: CancellationToken,
) -> Result<(), JoinError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (server_in, server_out) = tokio::io::split(stream);
    let mut server_out = ServerWriter::new(server_out);
    server_out.send(greeting(config).as_bytes()).await?;
    let _raw = RawMode::enable()?;
    let (keys_tx, mut typed) = mpsc::channel::<Vec<u8>>(64);
    // Terminal reads block: give them their own thread. Each read takes all that is there.
    std::thread::Builder::new()
        .name("chat-keys".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || keys_tx.blocking_send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        })?;
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
    let reading = read_lines(server_in, move |line| {
        let _ = lines_tx.send(line.to_owned());
        Ok(())
    });
    tokio::pin!(reading);
    let mut watch = Watch::new(config, true);
    let mut editor = Editor::default();
    let mut decoder = KeyDecoder::default();
    let mut keys = Vec::new();
    let mut stdout = std::io::stdout();
    let mut screen = Vec::new();
    redraw(&mut screen, &editor);
    stdout.write_all(&screen)?;
    stdout.flush()?;
    let mut is_read_done = false;
    let mut outcome = Ok(());
    'session: loop {
        screen.clear();
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(line) = lines.recv() => {
                editor.learn(&line);
                let seen = watch.see(&line);
                screen.extend_from_slice(b"\r\x1b[2K");
                screen.extend_from_slice(render(&line, config.colour).as_bytes());
                screen.extend_from_slice(b"\r\n");
                redraw(&mut screen, &editor);
                if let Err(err) = seen {
                    outcome = Err(err);
                    stdout.write_all(&screen)?;
                    break;
                }
            }
            result = &mut reading, if !is_read_done => {
                is_read_done = true;
                if let Err(err) = result {
                    outcome = Err(err);
                    break;
                }
            }
            Some(bytes) = typed.recv() => {
                keys.clear();
                decoder.feed(&bytes, &mut keys);
                for key in keys.drain(..) {
                    match editor.key(key) {
                        Action::Nothing => {}
                        Action::Redraw => redraw(&mut screen, &editor),
                        Action::Quit => {
                            stdout.write_all(&screen)?;
                            break 'session;
                        }
                        Action::Send(texts) => {
                            let mut out = String::new();
                            for text in texts {
                                let clean = neutralise(text.as_bytes());
                                out.push_str(&clean);
                                out.push('\n');
                                if !clean.trim().is_empty() && !clean.starts_with('/') {
                                    let me = editor.nick.clone().unwrap_or_else(|| "me".into());
                                    screen.extend_from_slice(b"\r\x1b[2K");
                                    screen.extend_from_slice(render(&format!("<{me}> {clean}"), config.colour).as_bytes());
                                    screen.extend_from_slice(b"\r\n");
                                }
                            }
                            server_out.send(out.as_bytes()).await?;
                            redraw(&mut screen, &editor);
                        }
                    }
                }
            }
        }
        stdout.write_all(&screen)?;
        stdout.flush()?;
        if is_read_done && lines.is_empty() {
            outcome = watch.closed();
            break;
        }
    }
    let _ = server_out.send(b"/quit\n").await;
    let _ = server_out.shutdown().await;
    stdout.write_all(b"\r\x1b[2K")?;
    stdout.flush()?;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing_keys() {
        let mut e = Editor::default();
        for c in "hello big world".chars() {
            e.key(Key::Char(c));
        }
        e.key(Key::DeleteWord);
        assert_eq!(e.typed, "hello big ");
        e.key(Key::Backspace);
        assert_eq!(e.typed, "hello big");
        assert_eq!(e.key(Key::Enter), Action::Send(vec!["hello big".into()]));
        assert_eq!(e.key(Key::EndOfInput), Action::Quit);
    }

    #[test]
    fn a_paste_sends_its_lines_and_keeps_the_last_partial_one() {
        let mut e = Editor::default();
        e.key(Key::Char('>'));
        let action = e.key(Key::Paste("one\r\ntwo\x1b[31m\nthree".into()));
        assert_eq!(action, Action::Send(vec![">one".into(), "two".into()]));
        assert_eq!(e.typed, "three");
        assert_eq!(e.key(Key::Paste(" more".into())), Action::Redraw);
        assert_eq!(e.typed, "three more");
    }

    #[test]
    fn learns_its_nick_and_fits_the_prompt() {
        let mut e = Editor::default();
        e.learn("* you joined #lobby as guest-4");
        e.learn("* guest-4 is now 小明");
        assert_eq!(e.nick.as_deref(), Some("小明"));
        e.learn("* bob is now carol");
        assert_eq!(e.nick.as_deref(), Some("小明"));
        e.typed = "abcdefghij".into();
        assert_eq!(e.prompt(8), "> fghij");
    }
}
