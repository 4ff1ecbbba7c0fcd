//! `sockit chat join`: a full-duplex chat client. Lines from the server are cleaned
//! ([`neutralise`]) before they are printed; nicknames get colours on a terminal.
//!
//! Two front ends share the connection logic: a plain line client for scripts (stdin lines
//! go out, server lines are printed, EOF on stdin quits), and a terminal editor that keeps
//! the line being typed intact below arriving messages (see [`tty`]).

pub mod tty;

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::chat::Password;
use crate::chat::line::{Incoming, LineDecoder, neutralise};

/// Longest line printed from the server (longer ones are cut and marked).
const MAX_PRINTED_LINE_BYTES: usize = 64 * 1024;
/// After stdin ends and `/quit` is sent, how long to wait for the server's last lines.
const LINGER: Duration = Duration::from_secs(3);

/// How the client introduces itself.
#[derive(Debug, Clone, Default)]
pub struct JoinConfig {
    /// Nickname to ask for right after connecting.
    pub nick: Option<String>,
    /// Sent as `PASS <password>` first.
    pub password: Option<Password>,
    /// Colour nicknames (ANSI); only on a terminal without `NO_COLOR`.
    pub colour: bool,
    /// Room to join right after connecting.
    pub room: Option<String>,
}

/// The first lines the client sends: `PASS`, `/nick`, `/join`.
pub fn greeting(config: &JoinConfig) -> String {
    let mut out = String::new();
    if let Some(password) = &config.password {
        out.push_str(&format!("PASS {}\n", password.0));
    }
    if let Some(nick) = &config.nick {
        out.push_str(&format!("/nick {nick}\n"));
    }
    if let Some(room) = &config.room {
        out.push_str(&format!("/join {room}\n"));
    }
    out
}

/// Formats one cleaned server line for printing: nick colours when `colour` is set.
///
/// # Examples
///
/// ```
/// use sockit::chat::client::render;
///
/// assert_eq!(render("<bob> hi", false), "<bob> hi");
/// assert!(render("<bob> hi", true).contains("\x1b["));
/// assert!(render("* bob joined #lobby", true).starts_with("\x1b[2m"));
/// ```
pub fn render(line: &str, colour: bool) -> String {
    if !colour {
        return line.to_owned();
    }
    if line.starts_with("* ") {
        return format!("\x1b[2m{line}\x1b[0m");
    }
    if let Some(rest) = line.strip_prefix('<')
        && let Some((nick, text)) = rest.split_once("> ")
    {
        return format!("\x1b[1;{}m<{nick}>\x1b[0m {text}", nick_colour(nick));
    }
    line.to_owned()
}

/// One of six ANSI colours, chosen by the nickname (stable across runs).
fn nick_colour(nick: &str) -> u8 {
    let hash = nick.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    31 + (hash % 6) as u8
}

/// Reads server lines from `server`, cleans them and hands each to `print`, until EOF.
pub(crate) async fn read_lines<R, F>(mut server: R, mut print: F) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    F: FnMut(&str) -> std::io::Result<()>,
{
    let mut decoder = LineDecoder::new(MAX_PRINTED_LINE_BYTES);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let n = server.read_buf(&mut buf).await?;
        loop {
            let line = if n == 0 {
                decoder.decode_eof(&mut buf)
            } else {
                decoder.decode(&mut buf)
            };
            match line {
                Some(Incoming::Line(text)) => print(&text)?,
                Some(Incoming::TooLong) => print("* (a line too long to show was skipped)")?,
                None => break,
            }
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// The plain line client: `input` lines go to the server, server lines (cleaned) to `output`.
/// At the end of `input` it sends `/quit` and prints what the server still says (bounded).
///
/// # Errors
///
/// An I/O error on the connection or on `output`.
pub async fn run_lines<S, I, O>(
    stream: S,
    config: &JoinConfig,
    input: I,
    mut output: O,
    stop: CancellationToken,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let (server_in, mut server_out) = tokio::io::split(stream);
    server_out.write_all(greeting(config).as_bytes()).await?;
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reading = read_lines(server_in, move |line| {
        let _ = lines_tx.send(line.to_owned());
        Ok(())
    });
    tokio::pin!(reading);
    let mut input = BufReader::new(input);
    let mut typed = Vec::new();
    let mut is_input_open = true;
    let linger = tokio::time::sleep(Duration::MAX);
    tokio::pin!(linger);
    let mut is_read_done = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = server_out.write_all(b"/quit\n").await;
                return Ok(());
            }
            Some(line) = lines_rx.recv() => {
                output.write_all(render(&line, config.colour).as_bytes()).await?;
                output.write_all(b"\n").await?;
                output.flush().await?;
            }
            result = &mut reading, if !is_read_done => {
                is_read_done = true;
                result?;
            }
            read = input.read_until(b'\n', &mut typed), if is_input_open => {
                if read? == 0 {
                    is_input_open = false;
                    server_out.write_all(b"/quit\n").await?;
                    linger.as_mut().reset(tokio::time::Instant::now() + LINGER);
                    continue;
                }
                if !typed.ends_with(b"\n") {
                    typed.push(b'\n');
                }
                // What goes out is cleaned too: the server would do it anyway.
                let clean = neutralise(&typed[..typed.len() - 1]);
                typed.clear();
                server_out.write_all(clean.as_bytes()).await?;
                server_out.write_all(b"\n").await?;
            }
            _ = &mut linger, if !is_input_open => return Ok(()),
            else => return Ok(()),
        }
        if is_read_done && lines_rx.is_empty() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_sends_pass_nick_room_in_order() {
        let config = JoinConfig {
            nick: Some("alice".into()),
            password: Some(Password("pw".into())),
            room: Some("rust".into()),
            colour: false,
        };
        assert_eq!(greeting(&config), "PASS pw\n/nick alice\n/join rust\n");
    }

    #[test]
    fn colours_are_stable_per_nick() {
        assert_eq!(nick_colour("alice"), nick_colour("alice"));
        assert_eq!(render("plain text", true), "plain text");
    }

    #[tokio::test]
    async fn server_lines_are_cleaned_before_printing() {
        let mut printed = Vec::new();
        let data: &[u8] = b"<eve> \x1b[2Jgotcha\x07\n<bob> \xffhi\nno newline";
        read_lines(data, |l| {
            printed.push(l.to_owned());
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(printed, ["<eve> gotcha", "<bob> \u{fffd}hi", "no newline"]);
    }
}
