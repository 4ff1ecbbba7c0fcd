//! What a clean chat line asks for: plain text to say, or a `/command`. Pure: no I/O.
//!
//! Also the rules for names: nicknames and room names are checked here, once, so the hub
//! can trust what it stores.

use std::fmt;

/// Longest nickname, in characters.
pub const MAX_NICK_CHARS: usize = 24;
/// Longest room name, in characters.
pub const MAX_ROOM_CHARS: usize = 32;
/// The room everyone starts in.
pub const DEFAULT_ROOM: &str = "lobby";

/// One parsed client line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Text for the room (a leading `//` stands for a literal `/`).
    Say(String),
    /// A command.
    Command(Command),
}

/// A `/command` with its checked arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/nick NAME`: choose a nickname.
    Nick(String),
    /// `/join ROOM`: move to a room (created on first join); names are lower-cased.
    Join(String),
    /// `/rooms`: list rooms and their sizes.
    Rooms,
    /// `/who`: list the members of the current room.
    Who,
    /// `/me ACTION`: say an action (`* nick waves`).
    Me(String),
    /// `/msg NICK TEXT`: a private message.
    Msg {
        /// Recipient.
        nick: String,
        /// Message.
        text: String,
    },
    /// `/history [N]`: replay the last N lines of the room (all that is kept without N).
    History(Option<usize>),
    /// `/quit [REASON]`: leave.
    Quit(Option<String>),
    /// `/help`: list commands.
    Help,
    /// `/stats`: the server's health (with `chat serve --stats`).
    Stats,
}

/// Why a line could not be understood; the text goes back to its sender as a notice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not a known command.
    #[error("unknown command /{0}; /help lists them")]
    Unknown(String),
    /// A required argument is missing.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// A nickname breaks the rules.
    #[error("{0}")]
    Nick(#[from] NameError),
}

/// Why a nickname or room name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("a {0} cannot be empty")]
    Empty(NameKind),
    /// Too long.
    #[error("a {kind} has at most {max} characters")]
    TooLong {
        /// Nickname or room.
        kind: NameKind,
        /// The limit.
        max: usize,
    },
    /// A character outside letters, digits, `-`, `_` and `.`, or a first character that is
    /// not a letter or digit.
    #[error("a {0} holds letters, digits, '-', '_' and '.', and starts with a letter or digit")]
    BadChar(NameKind),
    /// Taken by the server itself.
    #[error("the nickname {0:?} is reserved")]
    Reserved(String),
}

/// Which kind of name a [`NameError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A nickname.
    Nick,
    /// A room name.
    Room,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Nick => "nickname",
            NameKind::Room => "room name",
        })
    }
}

/// The help text, one notice per line.
pub const HELP: &[&str] = &[
    "commands:",
    "  /nick NAME        choose your nickname",
    "  /join ROOM        move to ROOM (created on first join; default lobby)",
    "  /rooms            list rooms",
    "  /who              who is in this room",
    "  /me ACTION        say an action",
    "  /msg NICK TEXT    private message",
    "  /history [N]      replay the last N lines of this room",
    "  /stats            the server's health (when it allows it)",
    "  /quit [REASON]    leave",
    "  //text            say text that starts with /",
];

/// Parses one clean line (see [`crate::chat::line::neutralise`]).
///
/// # Errors
///
/// [`CommandError`] for an unknown command, a missing argument or a bad name.
///
/// # Examples
///
/// ```
/// use sockit::chat::command::{parse, Command, Input};
///
/// assert_eq!(parse("hello"), Ok(Input::Say("hello".into())));
/// assert_eq!(parse("/msg Bob hi there"), Ok(Input::Command(Command::Msg {
///     nick: "Bob".into(), text: "hi there".into() })));
/// assert_eq!(parse("/JOIN #Rust"), Ok(Input::Command(Command::Join("rust".into()))));
/// assert_eq!(parse("//etc/passwd"), Ok(Input::Say("/etc/passwd".into())));
/// assert!(parse("/frobnicate").is_err());
/// ```
pub fn parse(line: &str) -> Result<Input, CommandError> {
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Input::Say(line.to_owned()));
    };
    if rest.starts_with('/') {
        return Ok(Input::Say(rest.to_owned()));
    }
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim()),
        None => (rest, ""),
    };
    let command = match name.to_ascii_lowercase().as_str() {
        "nick" => Command::Nick(check_nick(one_word(args, "/nick NAME")?)?.to_owned()),
        "join" => Command::Join(room_name(one_word(args, "/join ROOM")?)?),
        "rooms" | "list" => Command::Rooms,
        "who" | "names" => Command::Who,
        "me" if !args.is_empty() => Command::Me(args.to_owned()),
        "me" => return Err(CommandError::Usage("/me ACTION")),
        "msg" | "tell" => {
            let (nick, text) = args
                .split_once(char::is_whitespace)
                .ok_or(CommandError::Usage("/msg NICK TEXT"))?;
            let text = text.trim();
            if text.is_empty() {
                return Err(CommandError::Usage("/msg NICK TEXT"));
            }
            Command::Msg {
                nick: nick.to_owned(),
                text: text.to_owned(),
            }
        }
        "history" => match args {
            "" => Command::History(None),
            n => Command::History(Some(
                n.parse().map_err(|_| CommandError::Usage("/history [N]"))?,
            )),
        },
        "quit" | "exit" | "bye" => Command::Quit((!args.is_empty()).then(|| args.to_owned())),
        "help" | "?" => Command::Help,
        "stats" => Command::Stats,
        _ => return Err(CommandError::Unknown(name.to_owned())),
    };
    Ok(Input::Command(command))
}

fn one_word<'a>(args: &'a str, usage: &'static str) -> Result<&'a str, CommandError> {
    if args.is_empty() || args.contains(char::is_whitespace) {
        return Err(CommandError::Usage(usage));
    }
    Ok(args)
}

fn check_chars(name: &str, kind: NameKind, max: usize) -> Result<(), NameError> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(NameError::Empty(kind));
    };
    if name.chars().count() > max {
        return Err(NameError::TooLong { kind, max });
    }
    let is_name_char = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !first.is_alphanumeric() || !chars.all(is_name_char) {
        return Err(NameError::BadChar(kind));
    }
    Ok(())
}

/// Checks a nickname: 1–24 letters (any script), digits, `-`, `_`, `.`, starting with a
/// letter or digit; `server` is reserved.
///
/// # Errors
///
/// [`NameError`] saying which rule was broken.
pub fn check_nick(nick: &str) -> Result<&str, NameError> {
    check_chars(nick, NameKind::Nick, MAX_NICK_CHARS)?;
    if nick.eq_ignore_ascii_case("server") {
        return Err(NameError::Reserved(nick.to_owned()));
    }
    Ok(nick)
}

/// The key under which a nickname is unique: nicknames compare case-insensitively.
pub fn nick_key(nick: &str) -> String {
    nick.to_lowercase()
}

/// Checks a room name and returns its canonical form: lower case, without a leading `#`.
///
/// # Errors
///
/// [`NameError`] saying which rule was broken.
pub fn room_name(room: &str) -> Result<String, NameError> {
    let room = room.strip_prefix('#').unwrap_or(room);
    check_chars(room, NameKind::Room, MAX_ROOM_CHARS)?;
    Ok(room.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cmd(c: Command) -> Result<Input, CommandError> {
        Ok(Input::Command(c))
    }

    #[test]
    fn table_of_lines() {
        assert_eq!(parse(""), Ok(Input::Say(String::new())));
        assert_eq!(parse("hi /there"), Ok(Input::Say("hi /there".into())));
        assert_eq!(parse("/nick 小明"), cmd(Command::Nick("小明".into())));
        assert_eq!(parse("/nick  alice "), cmd(Command::Nick("alice".into())));
        assert_eq!(parse("/join lobby"), cmd(Command::Join("lobby".into())));
        assert_eq!(parse("/rooms"), cmd(Command::Rooms));
        assert_eq!(parse("/who"), cmd(Command::Who));
        assert_eq!(parse("/me waves"), cmd(Command::Me("waves".into())));
        assert_eq!(parse("/history"), cmd(Command::History(None)));
        assert_eq!(parse("/history 5"), cmd(Command::History(Some(5))));
        assert_eq!(parse("/stats"), cmd(Command::Stats));
        assert_eq!(parse("/quit"), cmd(Command::Quit(None)));
        assert_eq!(
            parse("/quit gone fishing"),
            cmd(Command::Quit(Some("gone fishing".into())))
        );
        assert_eq!(parse("/help"), cmd(Command::Help));
        assert_eq!(parse("/HeLp"), cmd(Command::Help));
    }

    #[test]
    fn bad_commands_say_why() {
        assert_eq!(parse("/nope"), Err(CommandError::Unknown("nope".into())));
        assert_eq!(parse("/nick"), Err(CommandError::Usage("/nick NAME")));
        assert_eq!(
            parse("/nick two words"),
            Err(CommandError::Usage("/nick NAME"))
        );
        assert_eq!(
            parse("/msg bob"),
            Err(CommandError::Usage("/msg NICK TEXT"))
        );
        assert_eq!(
            parse("/msg bob   "),
            Err(CommandError::Usage("/msg NICK TEXT"))
        );
        assert_eq!(parse("/me"), Err(CommandError::Usage("/me ACTION")));
        assert_eq!(
            parse("/history x"),
            Err(CommandError::Usage("/history [N]"))
        );
        assert!(matches!(
            parse("/nick -dash"),
            Err(CommandError::Nick(NameError::BadChar(_)))
        ));
        assert!(matches!(
            parse("/nick Server"),
            Err(CommandError::Nick(NameError::Reserved(_)))
        ));
        let long = format!("/nick {}", "a".repeat(MAX_NICK_CHARS + 1));
        assert!(matches!(
            parse(&long),
            Err(CommandError::Nick(NameError::TooLong { .. }))
        ));
        assert!(parse("/join #").is_err());
        assert!(parse("/join a/b").is_err());
    }

    #[test]
    fn names_compare_case_insensitively() {
        assert_eq!(nick_key("Alice"), nick_key("aLICE"));
        assert_eq!(room_name("#Rust").unwrap(), "rust");
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_say_keeps_text(line in "\\PC{0,64}") {
            if let Ok(Input::Say(text)) = parse(&line) {
                prop_assert!(line.ends_with(&text));
            }
        }

        #[test]
        fn accepted_nicks_obey_the_rules(line in "/nick \\PC{0,40}") {
            if let Ok(Input::Command(Command::Nick(nick))) = parse(&line) {
                prop_assert!(!nick.is_empty() && nick.chars().count() <= MAX_NICK_CHARS);
                prop_assert!(nick.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c)));
                prop_assert_eq!(check_nick(&nick), Ok(nick.as_str()));
            }
        }

        #[test]
        fn room_names_are_canonical(name in "#?[A-Za-z0-9][A-Za-z0-9._-]{0,31}") {
            let room = room_name(&name).unwrap();
            prop_assert_eq!(room_name(&room).unwrap(), room.clone());
            prop_assert_eq!(room.to_lowercase(), room);
        }
    }
}
