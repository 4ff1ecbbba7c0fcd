//! Turns parsed request [`Item`]s into what a request carries: headers, query parameters and
//! one body (JSON object, URL-encoded form, multipart form or raw bytes). Reads the files the
//! items name; stdin is given by the caller as bytes, so this never touches a terminal.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::http::items::Item;

/// How data fields are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyKind {
    /// A JSON object (`--json`, the default).
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`, or multipart when a file is attached (`--form`).
    Form,
    /// Always `multipart/form-data` (`--multipart`).
    Multipart,
}

/// Headers, query and body assembled from request items.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assembled {
    /// Headers in the order given, names as typed.
    pub headers: Vec<(String, String)>,
    /// Default headers not to send.
    pub unset: Vec<String>,
    /// Query parameters to append to the URL.
    pub query: Vec<(String, String)>,
    /// The body and its content type, if there is one.
    pub body: Option<(Bytes, Option<String>)>,
}

/// Why items could not become a request.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// A file named by an item could not be read.
    #[error("cannot read {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A `:=@file` that is not JSON.
    #[error("{} is not valid JSON", path.display())]
    JsonFile {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// Items that ask for two bodies, or a body and fields.
    #[error("{0}")]
    Conflict(&'static str),
    /// `key:=` with a form.
    #[error("raw JSON fields ({0}:=…) need a JSON body, not --form")]
    JsonInForm(String),
}

/// Assembles `items`; `stdin` is what `-` as a file name reads (already read by the caller).
///
/// # Examples
///
/// ```
/// use sockit::http::body::{assemble, BodyKind};
/// use sockit::http::items::parse;
///
/// let items = ["X-A:1", "name=Ada", "age:=36", "q==x"].map(|s| parse(s).unwrap());
/// let a = assemble(&items, BodyKind::Json, None).unwrap();
/// let (body, kind) = a.body.unwrap();
/// assert_eq!(&body[..], br#"{"name":"Ada","age":36}"#);
/// assert_eq!(kind.as_deref(), Some("application/json"));
/// assert_eq!(a.query, [("q".to_string(), "x".to_string())]);
/// ```
///
/// # Errors
///
/// [`BodyError`] when a file is missing or items conflict.
pub fn assemble(
    items: &[Item],
    kind: BodyKind,
    stdin: Option<&[u8]>,
) -> Result<Assembled, BodyError> {
    let mut out = Assembled::default();
    let mut fields: Vec<(String, serde_json::Value)> = Vec::new();
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut raw: Option<Bytes> = None;
    let read = |path: &Path| -> Result<Vec<u8>, BodyError> {
        if path == Path::new("-") {
            return Ok(stdin.unwrap_or_default().to_vec());
        }
        std::fs::read(path).map_err(|source| BodyError::File {
            path: path.to_owned(),
            source,
        })
    };
    for item in items {
        match item {
            Item::Header { name, value } => out.headers.push((name.clone(), value.clone())),
            Item::UnsetHeader { name } => out.unset.push(name.clone()),
            Item::Query { name, value } => out.query.push((name.clone(), value.clone())),
            Item::Data { name, value } => fields.push((name.clone(), value.clone().into())),
            Item::DataFile { name, path } => {
                let text = String::from_utf8_lossy(&read(path)?).into_owned();
                fields.push((name.clone(), text.into()));
            }
            Item::Json { name, value } => {
                if kind != BodyKind::Json {
                    return Err(BodyError::JsonInForm(name.clone()));
                }
                fields.push((name.clone(), value.clone()));
            }
            Item::JsonFile { name, path } => {
                if kind != BodyKind::Json {
                    return Err(BodyError::JsonInForm(name.clone()));
                }
                let value =
                    serde_json::from_slice(&read(path)?).map_err(|source| BodyError::JsonFile {
                        path: path.clone(),
                        source,
                    })?;
                fields.push((name.clone(), value));
            }
            Item::FormFile { name, path } => files.push((name.clone(), path.clone())),
            Item::Body { path } => {
                if raw.is_some() {
                    return Err(BodyError::Conflict("only one @file body can be sent"));
                }
                raw = Some(read(path)?.into());
            }
        }
    }
    if let Some(raw) = raw {
        if !fields.is_empty() || !files.is_empty() {
            return Err(BodyError::Conflict(
                "an @file body cannot be combined with data fields or files",
            ));
        }
        out.body = Some((raw, None));
        return Ok(out);
    }
    if !files.is_empty() || kind == BodyKind::Multipart {
        let boundary = boundary();
        let mut body = Vec::new();
        for (name, value) in &fields {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{text}\r\n",
                    quote(name)
                )
                .as_bytes(),
            );
        }
        for (name, path) in &files {
            let bytes = read(path)?;
            let file_name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "stdin".into());
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {mime}\r\n\r\n",
                    quote(name),
                    quote(&file_name)
                )
                .as_bytes(),
            );
            body.extend_from_slice(&bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        out.body = Some((
            body.into(),
            Some(format!("multipart/form-data; boundary={boundary}")),
        ));
        return Ok(out);
    }
    if fields.is_empty() {
        return Ok(out);
    }
    out.body = Some(match kind {
        BodyKind::Form => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in &fields {
                match value {
                    serde_json::Value::String(s) => form.append_pair(name, s),
                    other => form.append_pair(name, &other.to_string()),
                };
            }
            (
                form.finish().into(),
                Some("application/x-www-form-urlencoded".into()),
            )
        }
        _ => {
            let object: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
            (
                serde_json::Value::Object(object).to_string().into(),
                Some("application/json".into()),
            )
        }
    });
    Ok(out)
}

/// Quotes a name for a `Content-Disposition` parameter; CR/LF can never reach the head.
fn quote(name: &str) -> String {
    name.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(['\r', '\n'], " ")
}

fn boundary() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    // A predictable boundary only risks a clash with file content; fall back to the time.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes.copy_from_slice(&nanos.to_le_bytes()[..12]);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sockit-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::items::parse;

    fn items(args: &[&str]) -> Vec<Item> {
        args.iter().map(|a| parse(a).unwrap()).collect()
    }

    #[test]
    fn form_fields_are_url_encoded() {
        let a = assemble(&items(&["a=1 2", "b=&"]), BodyKind::Form, None).unwrap();
        let (body, kind) = a.body.unwrap();
        assert_eq!(&body[..], b"a=1+2&b=%26");
        assert_eq!(kind.unwrap(), "application/x-www-form-urlencoded");
    }

    #[test]
    fn files_make_a_multipart_body() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "file body").unwrap();
        let arg = format!("up@{}", path.display());
        let a = assemble(&items(&["x=1", &arg]), BodyKind::Json, None).unwrap();
        let (body, kind) = a.body.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(kind.unwrap().starts_with("multipart/form-data; boundary="));
        assert!(text.contains("name=\"up\"; filename=\"a.txt\"\r\nContent-Type: text/plain"));
        assert!(text.contains("\r\n\r\nfile body\r\n"));
    }

    #[test]
    fn missing_files_and_conflicts_are_errors() {
        assert!(matches!(
            assemble(&items(&["@/no/such/file"]), BodyKind::Json, None),
            Err(BodyError::File { .. })
        ));
        assert!(matches!(
            assemble(&items(&["@-", "a=1"]), BodyKind::Json, Some(b"x")),
            Err(BodyError::Conflict(_))
        ));
        assert!(matches!(
            assemble(&items(&["n:=1"]), BodyKind::Form, None),
            Err(BodyError::JsonInForm(_))
        ));
    }

    #[test]
    fn stdin_is_the_raw_body_for_at_dash() {
        let a = assemble(&items(&["@-"]), BodyKind::Json, Some(b"raw")).unwrap();
        assert_eq!(a.body, Some((Bytes::from_static(b"raw"), None)));
    }
}
