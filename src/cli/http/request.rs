//! The request from the arguments: items, body (stdin included), password prompt, and the
//! session's cookies and headers merged in.

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};
use http::{HeaderName, HeaderValue, Method, header};

use sockit::http::body::{self, BodyKind};
use sockit::http::items::Item;
use sockit::http::session::Session;
use sockit::http::{Client, Request};
use sockit::http::{Cookie, CookieJar};

use crate::cli::UsageError;
use crate::cli::http::args::HttpOptions;

/// Merges the session into `request` and the jar, and what this run adds into the session.
/// Returns the headers bound to the request's origin: every session header.
pub(super) fn use_session(
    request: &mut Request,
    saved: &mut Session,
    jar: &CookieJar,
    opts: &HttpOptions,
) -> anyhow::Result<Vec<HeaderName>> {
    for cookie in saved.cookies.drain(..) {
        jar.insert(cookie);
    }
    // `-b` cookies go to this origin only: a `Cookie` header, dropped on a cross-origin
    // redirect; a session keeps them for this host.
    let typed_cookies: Vec<&str> = opts
        .cookies
        .iter()
        .flat_map(|c| c.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if !typed_cookies.is_empty() {
        for pair in &typed_cookies {
            if !pair.contains('=') {
                return Err(UsageError(
                    format!("invalid cookie {pair:?} (expected NAME=VALUE)").into(),
                )
                .into());
            }
        }
        let value = typed_cookies.join("; ");
        request.headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&value)
                .map_err(|_| UsageError(format!("invalid cookie {value:?}").into()))?,
        );
    }
    if opts.session.is_none() {
        return Ok(Vec::new());
    }
    let host = request
        .url
        .host_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    for pair in typed_cookies {
        if let Some((name, value)) = pair.split_once('=') {
            saved.cookies.retain(|c| c.name != name.trim());
            jar.insert(Cookie {
                name: name.trim().to_owned(),
                value: value.trim().to_owned(),
                domain: host.clone(),
                host_only: true,
                path: "/".to_owned(),
                secure: false,
                expires: None,
            });
        }
    }
    request.headers.remove(header::COOKIE);
    // What is typed now wins over what the session has, and is kept in it.
    let mut bound = Vec::new();
    for (name, value) in saved.headers.clone() {
        let name = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("invalid header name {name:?} in the session"))?;
        if !request.headers.contains_key(&name) {
            request
                .headers
                .insert(name.clone(), HeaderValue::from_str(&value)?);
        }
    }
    for (name, value) in &request.headers {
        if matches!(
            *name,
            header::CONTENT_TYPE | header::CONTENT_LENGTH | header::HOST | header::COOKIE
        ) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            saved.set_header(name.as_str(), value);
        }
    }
    for (name, _) in &saved.headers {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            bound.push(name);
        }
    }
    Ok(bound)
}

/// Whether stdin is a pipe or a file: then it may carry a body. A terminal or `/dev/null`
/// (cron) is never read implicitly.
pub(super) fn stdin_may_have_body() -> bool {
    use std::os::unix::fs::FileTypeExt;
    if std::io::stdin().is_terminal() {
        return false;
    }
    std::fs::metadata("/dev/stdin")
        .map(|m| m.file_type().is_fifo() || m.file_type().is_file())
        .unwrap_or(false)
}

pub(super) async fn read_stdin() -> anyhow::Result<Vec<u8>> {
    tokio::task::spawn_blocking(|| {
        let mut data = Vec::new();
        std::io::stdin().lock().read_to_end(&mut data).map(|_| data)
    })
    .await?
    .context("reading stdin")
}

pub(super) async fn build_request(
    method: Option<Method>,
    url: &str,
    items: &[Item],
    opts: &HttpOptions,
) -> anyhow::Result<Request> {
    let names_stdin = items.iter().any(|i| match i {
        Item::Body { path }
        | Item::FormFile { path, .. }
        | Item::DataFile { path, .. }
        | Item::JsonFile { path, .. } => path.as_os_str() == "-",
        _ => false,
    });
    let stdin = if names_stdin {
        Some(read_stdin().await?)
    } else {
        None
    };
    let kind = if opts.multipart {
        BodyKind::Multipart
    } else if opts.form {
        BodyKind::Form
    } else {
        BodyKind::Json
    };
    let assembled = body::assemble(items, kind, stdin.as_deref())?;
    let mut body = assembled.body;
    if let Some(raw) = &opts.raw {
        if body.is_some() {
            bail!("--raw cannot be combined with data fields or an @file body");
        }
        body = Some((raw.clone().into_bytes().into(), None));
    }
    // An explicit GET or HEAD never eats stdin: `while read …; do sockit get …; done` works.
    let wants_body = !matches!(method, Some(Method::GET | Method::HEAD));
    let may_read_stdin = wants_body && body.is_none() && !names_stdin && !opts.ignore_stdin;
    if may_read_stdin && stdin_may_have_body() {
        let data = read_stdin().await?;
        if !data.is_empty() {
            body = Some((data.into(), None));
        }
    }
    let method = method.unwrap_or(if body.is_some() {
        Method::POST
    } else {
        Method::GET
    });
    let client = Client::default();
    let mut builder = client.request(method, url);
    for (name, value) in &assembled.headers {
        builder = builder.header(name, value);
    }
    if let Some(auth) = &opts.auth {
        let (user, password) = match auth.split_once(':') {
            Some((user, password)) => (user.to_owned(), password.to_owned()),
            None => (auth.clone(), ask_password(auth).await?),
        };
        builder = builder.basic_auth(&user, &password);
    }
    let mut request = builder.build()?;
    if !assembled.query.is_empty() {
        let mut pairs = request.url.query_pairs_mut();
        for (k, v) in &assembled.query {
            pairs.append_pair(k, v);
        }
    }
    for name in &assembled.unset {
        let name = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("invalid header name {name:?}"))?;
        request.headers.remove(&name);
        request.unset.push(name);
    }
    if let Some((bytes, content_type)) = body {
        if let Some(ct) = content_type {
            if !request.headers.contains_key(header::CONTENT_TYPE) {
                request
                    .headers
                    .insert(header::CONTENT_TYPE, HeaderValue::from_str(&ct)?);
            }
            if ct == "application/json" && !request.headers.contains_key(header::ACCEPT) {
                request.headers.insert(
                    header::ACCEPT,
                    HeaderValue::from_static("application/json, */*;q=0.5"),
                );
            }
        }
        request.body = bytes;
    }
    Ok(request)
}

/// `-u USER` without a password: asked on the terminal without echo, as curl does.
pub(super) async fn ask_password(user: &str) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(
            format!(
                "-u {user} has no password and stdin is not a terminal to ask for it; \
                 give -u {user}:PASSWORD"
            )
            .into(),
        )
        .into());
    }
    let prompt = format!("password for {user}: ");
    tokio::task::spawn_blocking(move || read_password(&prompt))
        .await?
        .context("reading the password from the terminal")
}

/// Reads one line from the terminal in raw mode, echoing nothing; Ctrl-C gives up.
pub(super) fn read_password(prompt: &str) -> anyhow::Result<String> {
    use crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers, read};
    use std::io::Write;
    let mut stderr = std::io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    crossterm::terminal::enable_raw_mode()?;
    let mut password = String::new();
    let result = loop {
        match read() {
            Ok(Event::Key(key)) if key.kind != KeyEventKind::Release => match key.code {
                KeyCode::Enter => break Ok(()),
                KeyCode::Char('c' | 'd') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                    break Err(anyhow::Error::new(crate::cli::Interrupted));
                }
                KeyCode::Backspace => {
                    password.pop();
                }
                KeyCode::Char(c) => password.push(c),
                _ => {}
            },
            Ok(Event::Paste(text)) => password.push_str(&text),
            Ok(_) => {}
            Err(e) => break Err(e.into()),
        }
    };
    let restored = crossterm::terminal::disable_raw_mode();
    let _ = writeln!(stderr);
    result?;
    restored?;
    Ok(password)
}
