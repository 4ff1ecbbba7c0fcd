//! Request items, as HTTPie and xh spell them: `Header:Value`, `key=value`, `key:=<json>`,
//! `key==value`, `field@file`, `@file`. Pure: text in, [`Item`] out. Reading the files named
//! by items is left to [`crate::http::body`].
//!
//! The separator is the first one found scanning left to right; at one position the longest
//! wins (`:=@` before `:=` before `:`). A backslash escapes a separator character in the key
//! (`a\:b=c` is the field `a:b`); elsewhere a backslash is kept as typed.

use std::fmt;
use std::path::PathBuf;

/// One request item from the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `Name:Value` — a request header (`Name;` sends it with an empty value).
    Header {
        /// The name, as typed.
        name: String,
        /// The value, leading spaces removed.
        value: String,
    },
    /// `Name:` — do not send this header (e.g. the default `User-Agent`).
    UnsetHeader {
        /// The name, as typed.
        name: String,
    },
    /// `key==value` — a URL query parameter.
    Query {
        /// Parameter name.
        name: String,
        /// Parameter value.
        value: String,
    },
    /// `key=value` — a JSON string field (or form field with `--form`).
    Data {
        /// Field name.
        name: String,
        /// Field value.
        value: String,
    },
    /// `key=@file` — a string field read from a file.
    DataFile {
        /// Field name.
        name: String,
        /// File to read.
        path: PathBuf,
    },
    /// `key:=<json>` — a raw JSON field.
    Json {
        /// Field name.
        name: String,
        /// The parsed JSON value.
        value: serde_json::Value,
    },
    /// `key:=@file` — a raw JSON field read from a file.
    JsonFile {
        /// Field name.
        name: String,
        /// File to read.
        path: PathBuf,
    },
    /// `field@file` — a file part of a multipart form.
    FormFile {
        /// Field name.
        name: String,
        /// File to upload (`-` is stdin).
        path: PathBuf,
    },
    /// `@file` — the file's bytes are the whole request body (`@-` is stdin).
    Body {
        /// File to send (`-` is stdin).
        path: PathBuf,
    },
}

/// Why a request item was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// No separator: not a header, field, query or file item.
    #[error(
        "invalid request item {0:?} (expected Header:Value, key=value, key:=json, key==value, field@file or @file)"
    )]
    NoSeparator(String),
    /// The part before the separator is empty where a name is required.
    #[error("request item {0:?} has an empty name")]
    EmptyName(String),
    /// A header name with characters HTTP does not allow.
    #[error("invalid header name {0:?}")]
    HeaderName(String),
    /// A header value with CR, LF or NUL: refused, it would inject headers.
    #[error("header {name:?} has a CR, LF or NUL in its value (refused: header injection)")]
    HeaderInjection {
        /// The header's name.
        name: String,
    },
    /// `key:=` followed by text that is not JSON.
    #[error("invalid JSON after {name}:= ({reason})")]
    Json {
        /// The field name.
        name: String,
        /// What the JSON parser said.
        reason: String,
    },
    /// `key=@` or `@` with no file name.
    #[error("request item {0:?} names no file after @")]
    EmptyPath(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sep {
    JsonFile,  // :=@
    Json,      // :=
    Query,     // ==
    DataFile,  // =@
    Data,      // =
    Header,    // :
    EmptyHead, // ; (only as the last character)
    File,      // @
}

impl Sep {
    fn text(self) -> &'static str {
        match self {
            Sep::JsonFile => ":=@",
            Sep::Json => ":=",
            Sep::Query => "==",
            Sep::DataFile => "=@",
            Sep::Data => "=",
            Sep::Header => ":",
            Sep::EmptyHead => ";",
            Sep::File => "@",
        }
    }
}

/// Longest first, so that `:=` is never read as `:`.
const SEPARATORS: [Sep; 7] = [
    Sep::JsonFile,
    Sep::Json,
    Sep::Query,
    Sep::DataFile,
    Sep::Data,
    Sep::Header,
    Sep::File,
];

fn is_special(c: char) -> bool {
    matches!(c, ':' | '=' | '@' | ';' | '\\')
}

/// Parses one request item.
///
/// # Examples
///
/// ```
/// use sockit::http::items::{parse, Item};
///
/// assert_eq!(parse("X-Api-Key:abc").unwrap(),
///            Item::Header { name: "X-Api-Key".into(), value: "abc".into() });
/// assert_eq!(parse("q==rust lang").unwrap(),
///            Item::Query { name: "q".into(), value: "rust lang".into() });
/// assert_eq!(parse("n:=42").unwrap(),
///            Item::Json { name: "n".into(), value: 42.into() });
/// assert!(parse("X-Evil:a\r\nInjected: yes").is_err());
/// ```
///
/// # Errors
///
/// [`ItemError`] for an item without separator, an invalid header name, CR/LF/NUL in a
/// header value, invalid JSON after `:=`, or a missing file name after `@`.
pub fn parse(arg: &str) -> Result<Item, ItemError> {
    let (key, sep, value) = split(arg).ok_or_else(|| ItemError::NoSeparator(arg.to_owned()))?;
    let need_name = || {
        if key.is_empty() {
            Err(ItemError::EmptyName(arg.to_owned()))
        } else {
            Ok(key.clone())
        }
    };
    let need_path = |path: &str| {
        if path.is_empty() {
            Err(ItemError::EmptyPath(arg.to_owned()))
        } else {
            Ok(PathBuf::from(path))
        }
    };
    Ok(match sep {
        Sep::Header | Sep::EmptyHead => {
            let name = need_name()?;
            if !is_token(&name) {
                return Err(ItemError::HeaderName(name));
            }
            let value = value.trim_start_matches([' ', '\t']);
            if value.contains(['\r', '\n', '\0']) {
                return Err(ItemError::HeaderInjection { name });
            }
            if sep == Sep::Header && value.is_empty() {
                Item::UnsetHeader { name }
            } else {
                Item::Header {
                    name,
                    value: value.to_owned(),
                }
            }
        }
        Sep::Query => Item::Query {
            name: need_name()?,
            value: value.to_owned(),
        },
        Sep::Data => Item::Data {
            name: need_name()?,
            value: value.to_owned(),
        },
        Sep::DataFile => Item::DataFile {
            name: need_name()?,
            path: need_path(value)?,
        },
        Sep::Json => {
            let name = need_name()?;
            let value = serde_json::from_str(value).map_err(|e| ItemError::Json {
                name: name.clone(),
                reason: e.to_string(),
            })?;
            Item::Json { name, value }
        }
        Sep::JsonFile => Item::JsonFile {
            name: need_name()?,
            path: need_path(value)?,
        },
        Sep::File if key.is_empty() => Item::Body {
            path: need_path(value)?,
        },
        Sep::File => Item::FormFile {
            name: key,
            path: need_path(value)?,
        },
    })
}

/// Parses a header as curl's `-H` takes it: `Name: value`, `Name:` (do not send the
/// default header), `Name;` (send it with an empty value). The value is taken as written,
/// whatever separators it holds (`-H 'Authorization: Bearer a=b'`).
///
/// # Examples
///
/// ```
/// use sockit::http::items::{parse_header, Item};
///
/// assert_eq!(parse_header("Authorization: Bearer a=b").unwrap(),
///            Item::Header { name: "Authorization".into(), value: "Bearer a=b".into() });
/// assert_eq!(parse_header("User-Agent:").unwrap(), Item::UnsetHeader { name: "User-Agent".into() });
/// assert_eq!(parse_header("X-Empty;").unwrap(), Item::Header { name: "X-Empty".into(), value: "".into() });
/// ```
///
/// # Errors
///
/// [`ItemError::NoSeparator`] without `:` or a final `;`, [`ItemError::HeaderName`] and
/// [`ItemError::HeaderInjection`] as for a `Name:Value` item.
pub fn parse_header(arg: &str) -> Result<Item, ItemError> {
    let (name, value, is_empty_header) = match arg.split_once(':') {
        Some((name, value)) => (name, value, false),
        None => match arg.strip_suffix(';') {
            Some(name) => (name, "", true),
            None => return Err(ItemError::NoSeparator(arg.to_owned())),
        },
    };
    let name = name.trim_end().to_owned();
    if name.is_empty() {
        return Err(ItemError::EmptyName(arg.to_owned()));
    }
    if !is_token(&name) {
        return Err(ItemError::HeaderName(name));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.contains(['\r', '\n', '\0']) {
        return Err(ItemError::HeaderInjection { name });
    }
    Ok(if value.is_empty() && !is_empty_header {
        Item::UnsetHeader { name }
    } else {
        Item::Header {
            name,
            value: value.to_owned(),
        }
    })
}

/// Splits at the first unescaped separator: (unescaped key, separator, raw value).
fn split(arg: &str) -> Option<(String, Sep, &str)> {
    let mut key = String::new();
    let mut chars = arg.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some(&(_, next)) if is_special(next) => {
                    key.push(next);
                    chars.next();
                }
                _ => key.push('\\'),
            }
            continue;
        }
        let rest = &arg[i..];
        if let Some(sep) = SEPARATORS.iter().find(|s| rest.starts_with(s.text())) {
            return Some((key, *sep, &rest[sep.text().len()..]));
        }
        if c == ';' && rest.len() == 1 {
            return Some((key, Sep::EmptyHead, ""));
        }
        key.push(c);
    }
    None
}

/// RFC 9110 `token`: the characters allowed in a header name.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn escape_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        if is_special(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Item {
    /// The item as it would be typed: `parse(&item.to_string())` gives the item back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = escape_key;
        match self {
            Item::Header { name, value } if value.is_empty() => write!(f, "{};", k(name)),
            // The space keeps a value starting with '=' from reading as `:=`.
            Item::Header { name, value } => write!(f, "{}: {value}", k(name)),
            Item::UnsetHeader { name } => write!(f, "{}:", k(name)),
            Item::Query { name, value } => write!(f, "{}=={value}", k(name)),
            Item::Data { name, value } => write!(f, "{}={value}", k(name)),
            Item::DataFile { name, path } => write!(f, "{}=@{}", k(name), path.display()),
            Item::Json { name, value } => write!(f, "{}:={value}", k(name)),
            Item::JsonFile { name, path } => write!(f, "{}:=@{}", k(name), path.display()),
            Item::FormFile { name, path } => write!(f, "{}@{}", k(name), path.display()),
            Item::Body { path } => write!(f, "@{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(name: &str, value: &str) -> Item {
        Item::Header {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn each_separator_is_recognised() {
        let cases = [
            (
                "Accept:application/json",
                header("Accept", "application/json"),
            ),
            ("X-Token: a:b=c", header("X-Token", "a:b=c")),
            ("X-Empty;", header("X-Empty", "")),
            (
                "User-Agent:",
                Item::UnsetHeader {
                    name: "User-Agent".into(),
                },
            ),
            (
                "q==a=b",
                Item::Query {
                    name: "q".into(),
                    value: "a=b".into(),
                },
            ),
            (
                "name=Ada Lovelace",
                Item::Data {
                    name: "name".into(),
                    value: "Ada Lovelace".into(),
                },
            ),
            (
                "email=ada@example.com",
                Item::Data {
                    name: "email".into(),
                    value: "ada@example.com".into(),
                },
            ),
            (
                "bio=@bio.txt",
                Item::DataFile {
                    name: "bio".into(),
                    path: "bio.txt".into(),
                },
            ),
            (
                "tags:=[1, \"x\"]",
                Item::Json {
                    name: "tags".into(),
                    value: serde_json::json!([1, "x"]),
                },
            ),
            (
                "conf:=@c.json",
                Item::JsonFile {
                    name: "conf".into(),
                    path: "c.json".into(),
                },
            ),
            (
                "photo@me.jpg",
                Item::FormFile {
                    name: "photo".into(),
                    path: "me.jpg".into(),
                },
            ),
            (
                "@body.bin",
                Item::Body {
                    path: "body.bin".into(),
                },
            ),
            ("@-", Item::Body { path: "-".into() }),
            (
                "a\\:b=c",
                Item::Data {
                    name: "a:b".into(),
                    value: "c".into(),
                },
            ),
            (
                "C:\\dir=x",
                // An unescaped ':' ends the key first; the value keeps its backslash.
                header("C", "\\dir=x"),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), Ok(expected), "{input:?}");
        }
    }

    #[test]
    fn bad_items_are_refused_with_a_reason() {
        assert!(matches!(parse("plain"), Err(ItemError::NoSeparator(_))));
        assert!(matches!(parse("=v"), Err(ItemError::EmptyName(_))));
        assert!(matches!(parse("Bad Name:v"), Err(ItemError::HeaderName(_))));
        assert!(matches!(
            parse("X:a\r\nSet-Cookie: x"),
            Err(ItemError::HeaderInjection { .. })
        ));
        assert!(matches!(
            parse("X:a\nb"),
            Err(ItemError::HeaderInjection { .. })
        ));
        assert!(matches!(
            parse("X:a\0b"),
            Err(ItemError::HeaderInjection { .. })
        ));
        assert!(matches!(parse("n:={oops"), Err(ItemError::Json { .. })));
        assert!(matches!(parse("f@"), Err(ItemError::EmptyPath(_))));
        assert!(matches!(parse("@"), Err(ItemError::EmptyPath(_))));
    }

    fn any_item() -> impl Strategy<Value = Item> {
        let name = "[a-zA-Z0-9:=@;\\\\ _.-]{1,12}";
        let token = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}";
        let value = "[^\r\n\0]{0,20}";
        let path = "[a-z0-9/._ -]{1,12}";
        prop_oneof![
            (token, "[^\r\n\0 \t=][^\r\n\0]{0,20}")
                // `Name:=…` reads as a JSON field: `:=` is the longer separator.
                .prop_map(|(name, value)| Item::Header { name, value }),
            token.prop_map(|name| Item::UnsetHeader { name }),
            (name, value).prop_map(|(name, value)| Item::Query { name, value }),
            (name, value)
                // A value starting with '@' or '=' would read as `=@file` or `==query`.
                .prop_filter("not a file or query", |(_, v)| !v.starts_with(['@', '=']))
                .prop_map(|(name, value)| Item::Data { name, value }),
            (name, path).prop_map(|(name, p)| Item::DataFile {
                name,
                path: p.into()
            }),
            (name, any::<i64>()).prop_map(|(name, n)| Item::Json {
                name,
                value: n.into()
            }),
            (name, value).prop_map(|(name, s)| Item::Json {
                name,
                value: s.into()
            }),
            (name, path).prop_map(|(name, p)| Item::FormFile {
                name,
                path: p.into()
            }),
            path.prop_map(|p| Item::Body { path: p.into() }),
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = parse(&s);
        }

        #[test]
        fn display_then_parse_gives_the_item_back(item in any_item()) {
            let typed = item.to_string();
            prop_assert_eq!(parse(&typed), Ok(item), "typed as {:?}", typed);
        }

        #[test]
        fn whatever_parses_reads_back_the_same(s in "[a-z:=@;\\\\ \r\n\"{}\\[\\]0-9-]{0,24}") {
            if let Ok(item) = parse(&s) {
                prop_assert_eq!(parse(&item.to_string()), Ok(item));
            }
        }

        #[test]
        fn accepted_headers_never_carry_line_breaks(s in "[A-Za-z:\r\n\0 ;=]{0,30}") {
            if let Ok(Item::Header { name, value }) = parse(&s) {
                prop_assert!(!name.contains(['\r', '\n', '\0', ' ']));
                prop_assert!(!value.contains(['\r', '\n', '\0']));
            }
        }
    }
}
