//! The terminal front end: a small line editor in raw mode. Arriving lines are printed above
//! the prompt, which is then redrawn with what was being typed, so messages never garble the
//! line being edited.
//!
//! Keys: Enter sends, Backspace, Ctrl-U clears, Ctrl-W deletes a word, Ctrl-C or Ctrl-D (on
//! an empty line) quits; pasted text is inserted.

use std::io::Write as _;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::chat::client::{JoinConfig, greeting, read_lines, render};
use crate::chat::line::neutralise;

const PROMPT: &str = "> ";

/// Puts the terminal back in cooked mode when dropped (also on error paths).
struct RawMode;

impl RawMode {
    fn enable() -> std::io::Result<Self> {
        crossterm::terminal::enable_raw_mode()?;
        Ok(Self)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
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
    Send(String),
    Quit,
    Nothing,
}

impl Editor {
    fn key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Nothing;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => Action::Quit,
            KeyCode::Char('d') if ctrl && self.typed.is_empty() => Action::Quit,
            KeyCode::Char('u') if ctrl => {
                self.typed.clear();
                Action::Redraw
            }
            KeyCode::Char('w') if ctrl => {
                let kept = self.typed.trim_end().rfind(' ').map_or(0, |i| i + 1);
                self.typed.truncate(kept);
                Action::Redraw
            }
            KeyCode::Char(c) if !ctrl => {
                self.typed.push(c);
                Action::Redraw
            }
            KeyCode::Backspace => {
                self.typed.pop();
                Action::Redraw
            }
            KeyCode::Enter => Action::Send(std::mem::take(&mut self.typed)),
            _ => Action::Nothing,
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
/// An I/O error on the connection or the terminal.
pub async fn run<S>(stream: S, config: &JoinConfig, stop: CancellationToken) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (server_in, mut server_out) = tokio::io::split(stream);
    server_out.write_all(greeting(config).as_bytes()).await?;
    let _raw = RawMode::enable()?;
    let (keys_tx, mut keys) = mpsc::channel::<Event>(64);
    // crossterm reads the terminal with blocking calls: give them their own thread.
    std::thread::Builder::new()
        .name("chat-keys".into())
        .spawn(move || {
            while let Ok(event) = crossterm::event::read() {
                if keys_tx.blocking_send(event).is_err() {
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
    let mut editor = Editor::default();
    let mut stdout = std::io::stdout();
    let mut screen = Vec::new();
    redraw(&mut screen, &editor);
    stdout.write_all(&screen)?;
    stdout.flush()?;
    let mut is_read_done = false;
    loop {
        screen.clear();
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(line) = lines.recv() => {
                editor.learn(&line);
                screen.extend_from_slice(b"\r\x1b[2K");
                screen.extend_from_slice(render(&line, config.colour).as_bytes());
                screen.extend_from_slice(b"\r\n");
                redraw(&mut screen, &editor);
            }
            result = &mut reading, if !is_read_done => {
                is_read_done = true;
                result?;
            }
            Some(event) = keys.recv() => {
                let action = match event {
                    Event::Key(key) => editor.key(key),
                    Event::Paste(text) => {
                        editor.typed.push_str(&neutralise(text.replace(['\r', '\n'], " ").as_bytes()));
                        Action::Redraw
                    }
                    Event::Resize(..) => Action::Redraw,
                    _ => Action::Nothing,
                };
                match action {
                    Action::Nothing => {}
                    Action::Redraw => redraw(&mut screen, &editor),
                    Action::Quit => break,
                    Action::Send(text) => {
                        let clean = neutralise(text.as_bytes());
                        server_out.write_all(format!("{clean}\n").as_bytes()).await?;
                        if !clean.trim().is_empty() && !clean.starts_with('/') {
                            let me = editor.nick.clone().unwrap_or_else(|| "me".into());
                            screen.extend_from_slice(b"\r\x1b[2K");
                            screen.extend_from_slice(render(&format!("<{me}> {clean}"), config.colour).as_bytes());
                            screen.extend_from_slice(b"\r\n");
                        }
                        redraw(&mut screen, &editor);
                    }
                }
            }
        }
        stdout.write_all(&screen)?;
        stdout.flush()?;
        if is_read_done && lines.is_empty() {
            break;
        }
    }
    let _ = server_out.write_all(b"/quit\n").await;
    let _ = server_out.shutdown().await;
    stdout.write_all(b"\r\x1b[2K")?;
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn editing_keys() {
        let mut e = Editor::default();
        for c in "hello big world".chars() {
            e.key(key(KeyCode::Char(c), KeyModifiers::NONE));
        }
        e.key(key(KeyCode::Char('w'), KeyModifiers::CONTROL));
        assert_eq!(e.typed, "hello big ");
        e.key(key(KeyCode::Backspace, KeyModifiers::NONE));
        assert_eq!(e.typed, "hello big");
        assert_eq!(
            e.key(key(KeyCode::Enter, KeyModifiers::NONE)),
            Action::Send("hello big".into())
        );
        assert_eq!(
            e.key(key(KeyCode::Char('d'), KeyModifiers::CONTROL)),
            Action::Quit
        );
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
