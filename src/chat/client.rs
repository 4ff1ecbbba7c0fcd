//! `sockit chat join`: a full-duplex chat client. Lines from the server are cleaned
//! ([`neutralise`]) before they are printed; nicknames get colours on a terminal.
//!
//! Two front ends share the connection logic: a plain line client for scripts (stdin lines
//! go out, server lines are printed, EOF on stdin quits), and a terminal editor that keeps
//! the line being typed intact below arriving messages (see [`tty`]).

mod keys;
pub mod tty;

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::chat::Password;
use crate::chat::line::{Incoming, LineDecoder, neutralise};

/// Longest line printed from the server (longer ones are cut and marked).
const MAX_PRINTED_LINE_BYTES: usize = 64 * 1024;
/// After `/quit` is sent, how long the server may stay silent before the client stops
/// waiting for its goodbye. Generous: a server working through a long piped input under
/// flood control says nothing until it reaches the `/quit`.
const LINGER: Duration = Duration::from_secs(30);

/// Why a session ended without the user quitting, or never started.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The first byte from the server was a TLS record (a handshake or an alert).
    #[error("the server speaks TLS")]
    SpeaksTls,
    /// The server asks for a password and none was given.
    #[error("the server requires a password")]
    PasswordRequired,
    /// The server refused the password.
    #[error("wrong password")]
    WrongPassword,
    /// The nickname asked for with `--nick` belongs to someone else.
    #[error("the nickname {0} is taken")]
    NickTaken(String),
    /// The server closed the connection although the user did not quit; with its last
    /// notice (`server shutting down`, `you were dropped: …`), if any.
    #[error("the server closed the connection{}", .last_notice.as_deref().map(|n| format!(" ({n})")).unwrap_or_default())]
    Closed {
        /// The server's last system notice before it closed.
        last_notice: Option<String>,
    },
    /// After `/quit`, the server neither said goodbye nor closed in time.
    #[error("no goodbye from the server within {0:?} after /quit")]
    NoGoodbye(Duration),
    /// Reading or writing the connection or the terminal failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl JoinError {
    /// What the user can do about it, when that is clear.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            JoinError::SpeaksTls => Some("add --tls, or --pin sha256:… for a self-signed server"),
            JoinError::PasswordRequired => Some("add --password"),
            JoinError::WrongPassword => Some("check --password"),
            JoinError::NickTaken(_) => Some("pick another with --nick"),
            _ => None,
        }
    }
}

/// Reads the server's notices for what matters to the client: a refused login, a taken
/// nickname, a goodbye. History replays are skipped (old lines say nothing about now).
#[derive(Debug, Default)]
pub(crate) struct Watch {
    has_password: bool,
    /// The `--nick` asked for and not yet granted or refused.
    pending_nick: Option<String>,
    /// A taken `--nick` is an error (scripts) rather than a notice (a person can pick).
    is_interactive: bool,
    is_in_replay: bool,
    /// The server said `bye`: the user's `/quit` was taken.
    pub(crate) said_bye: bool,
    last_notice: Option<String>,
}

impl Watch {
    pub(crate) fn new(config: &JoinConfig, is_interactive: bool) -> Self {
        Self {
            has_password: config.password.is_some(),
            pending_nick: config.nick.clone(),
            is_interactive,
            ..Self::default()
        }
    }

    /// Looks at one cleaned server line; an error ends the session.
    pub(crate) fn see(&mut self, line: &str) -> Result<(), JoinError> {
        let Some(text) = line.strip_prefix("* ") else {
            return Ok(());
        };
        if self.is_in_replay {
            self.is_in_replay = text != "end of history";
            return Ok(());
        }
        if text.starts_with("last ") && text.ends_with(':') && text.contains(" lines of #") {
            self.is_in_replay = true;
            return Ok(());
        }
        if text == "wrong password" {
            return Err(JoinError::WrongPassword);
        }
        if text.starts_with("password required") && !self.has_password {
            return Err(JoinError::PasswordRequired);
        }
        if let Some(nick) = &self.pending_nick {
            if text == format!("the nickname {nick} is taken") {
                let nick = self.pending_nick.take().unwrap_or_default();
                if !self.is_interactive {
                    return Err(JoinError::NickTaken(nick));
                }
            } else if text.ends_with(&format!(" is now {nick}"))
                || text.ends_with(&format!(" as {nick}"))
            {
                self.pending_nick = None;
            }
        }
        if text == "bye" {
            self.said_bye = true;
        }
        self.last_notice = Some(text.to_owned());
        Ok(())
    }

    /// The server closed the connection: fine after our `/quit`, an error otherwise.
    pub(crate) fn closed(&self) -> Result<(), JoinError> {
        if self.said_bye {
            Ok(())
        } else {
            Err(JoinError::Closed {
                last_notice: self.last_notice.clone(),
            })
        }
    }
}

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
///
/// # Errors
///
/// [`JoinError::SpeaksTls`] when the first byte is a TLS record (a TLS server answering
/// plain text), or an I/O error.
pub(crate) async fn read_lines<R, F>(mut server: R, mut print: F) -> Result<(), JoinError>
where
    R: AsyncRead + Unpin,
    F: FnMut(&str) -> std::io::Result<()>,
{
    let mut decoder = LineDecoder::new(MAX_PRINTED_LINE_BYTES);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut is_first = true;
    loop {
        let n = server.read_buf(&mut buf).await?;
        // 0x15 is a TLS alert record, 0x16 a handshake record: no chat line starts so.
        if is_first && n > 0 {
            is_first = false;
            if matches!(buf[0], 0x15 | 0x16) {
                return Err(JoinError::SpeaksTls);
            }
        }
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
/// At the end of `input` it sends `/quit` and prints what the server still says until it
/// closes (bounded by 30 s of silence).
///
/// # Errors
///
/// A [`JoinError`]: a refused login, a taken `--nick`, a TLS server, the server closing
/// before the user quit, or an I/O error on the connection or on `output`.
pub async fn run_lines<S, I, O>(
    stream: S,
    config: &JoinConfig,
    input: I,
    mut output: O,
    stop: CancellationToken,
) -> Result<(), JoinError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let (server_in, server_out) = tokio::io::split(stream);
    let mut server_out = ServerWriter::new(server_out);
    server_out.send(greeting(config).as_bytes()).await?;
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reading = read_lines(server_in, move |line| {
        let _ = lines_tx.send(line.to_owned());
        Ok(())
    });
    tokio::pin!(reading);
    let mut watch = Watch::new(config, false);
    let mut input = BufReader::new(input);
    let mut typed = Vec::new();
    let mut is_input_open = true;
    let linger = tokio::time::sleep(Duration::MAX);
    tokio::pin!(linger);
    let mut is_read_done = false;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                let _ = server_out.send(b"/quit\n").await;
                return Ok(());
            }
            Some(line) = lines_rx.recv() => {
                let seen = watch.see(&line);
                output.write_all(render(&line, config.colour).as_bytes()).await?;
                output.write_all(b"\n").await?;
                output.flush().await?;
                seen?;
                if !is_input_open {
                    linger.as_mut().reset(tokio::time::Instant::now() + LINGER);
                }
            }
            result = &mut reading, if !is_read_done => {
                is_read_done = true;
                result?;
            }
            read = input.read_until(b'\n', &mut typed), if is_input_open => {
                if read? == 0 {
                    is_input_open = false;
                    server_out.send(b"/quit\n").await?;
                    linger.as_mut().reset(tokio::time::Instant::now() + LINGER);
                    continue;
                }
                if !typed.ends_with(b"\n") {
                    typed.push(b'\n');
                }
                // What goes out is cleaned too: the server would do it anyway.
                let clean = neutralise(&typed[..typed.len() - 1]);
                typed.clear();
                server_out.send(clean.as_bytes()).await?;
                server_out.send(b"\n").await?;
                if server_out.is_closed {
                    // What the server said before it closed tells why; nothing more goes out.
                    is_input_open = false;
                    linger.as_mut().reset(tokio::time::Instant::now() + LINGER);
                }
            }
            _ = &mut linger, if !is_input_open => return Err(JoinError::NoGoodbye(LINGER)),
        }
        if is_read_done && lines_rx.is_empty() {
            return watch.closed();
        }
    }
}

/// The sending half of the connection. A server that closed (a refused login, a TLS
/// server answering plain text) makes writes fail with a broken pipe or a reset before its
/// last words are read; those failures only mark the half closed, so that the reading side
/// can still say why the session ended.
pub(crate) struct ServerWriter<W> {
    out: W,
    /// A write found the connection closed by the server.
    pub(crate) is_closed: bool,
}

impl<W: AsyncWrite + Unpin> ServerWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        Self {
            out,
            is_closed: false,
        }
    }

    /// Writes all of `bytes`, or nothing once the server has closed.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.is_closed {
            return Ok(());
        }
        match self.out.write_all(bytes).await {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                self.is_closed = true;
                Ok(())
            }
            other => other,
        }
    }

    /// Sends our EOF (a no-op once the server has closed).
    pub(crate) async fn shutdown(&mut self) -> std::io::Result<()> {
        if self.is_closed {
            return Ok(());
        }
        self.out.shutdown().await
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

    /// A server that answered and closed before our first write: the write fails, and
    /// what it said still decides the outcome (here: a TLS alert, not a broken pipe).
    #[tokio::test]
    async fn a_server_that_closed_before_our_write_is_still_heard() {
        let (client, mut server) = tokio::io::duplex(1024);
        server
            .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32])
            .await
            .unwrap();
        drop(server);
        let config = JoinConfig {
            nick: Some("x".into()),
            ..JoinConfig::default()
        };
        let got = run_lines(
            client,
            &config,
            &b"hello\n"[..],
            tokio::io::sink(),
            CancellationToken::new(),
        )
        .await;
        assert!(matches!(got, Err(JoinError::SpeaksTls)), "{got:?}");
    }

    fn watch_of(lines: &[&str], nick: Option<&str>, is_interactive: bool) -> Result<(), JoinError> {
        let config = JoinConfig {
            nick: nick.map(str::to_owned),
            ..JoinConfig::default()
        };
        let mut watch = Watch::new(&config, is_interactive);
        for line in lines {
            watch.see(line)?;
        }
        watch.closed()
    }

    #[test]
    fn the_watch_tells_refusals_from_goodbyes() {
        assert!(matches!(
            watch_of(&["* password required: send PASS <password>"], None, false),
            Err(JoinError::PasswordRequired)
        ));
        assert!(matches!(
            watch_of(&["* wrong password"], None, false),
            Err(JoinError::WrongPassword)
        ));
        let taken = [
            "* you joined #lobby as guest-2",
            "* the nickname ann is taken",
        ];
        assert!(matches!(
            watch_of(&taken, Some("ann"), false),
            Err(JoinError::NickTaken(n)) if n == "ann"
        ));
        // A person picks another name; the session goes on until the server closes.
        assert!(matches!(
            watch_of(&taken, Some("ann"), true),
            Err(JoinError::Closed { .. })
        ));
        // Old lines in a replay say nothing about now.
        let replay = [
            "* last 2 lines of #lobby:",
            "* the nickname ann is taken",
            "* bye",
            "* end of history",
            "* guest-2 is now ann",
            "* bye",
        ];
        assert!(watch_of(&replay, Some("ann"), false).is_ok());
        let err = watch_of(&["* server shutting down"], None, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the server closed the connection (server shutting down)"
        );
    }

    #[tokio::test]
    async fn a_tls_record_first_is_recognised() {
        let alert: &[u8] = b"\x15\x03\x01\x00\x02\x02\x50";
        let got = read_lines(alert, |_| Ok(())).await;
        assert!(matches!(got, Err(JoinError::SpeaksTls)), "{got:?}");
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
