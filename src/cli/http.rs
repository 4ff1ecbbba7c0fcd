//! `sockit http [METHOD] URL [ITEM…]`, `sockit get` and `sockit post`: arguments to a
//! [`sockit::http::Request`], then the response printed, saved or summarised.

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use sockit::http::body::{self, BodyKind};
use sockit::http::download::{self, DownloadError, Progress};
use sockit::http::items::{self, Item};
use sockit::http::{Client, ClientConfig, Request, Response, SentHead};
use sockit::net::tls::{Fingerprint, Verify};
use sockit::net::trace::TraceSink;

use crate::cli::args::parse_duration;

const EXAMPLES: &str = "Examples:
  sockit get example.com                         GET http://example.com/
  sockit get :8080/api q==rust Accept:text/html  query parameter and header
  sockit post :8080/users name=Ada age:=36       JSON body {\"name\":\"Ada\",\"age\":36}
  sockit post :8080/upload --form photo@me.jpg   multipart upload
  sockit http PUT :8080/doc @doc.txt             raw body from a file
  sockit get https://x.test/big.iso -o big.iso   download with a progress bar
  sockit get https://x.test/big.iso -o big.iso -c   resume an interrupted download
  sockit get -v --follow :8080/old               request and response heads, redirects

Items: Header:Value · Header: (unset) · key=value · key:=<json> · key==query ·
  field@file (multipart) · key=@file · key:=@file · @file (raw body, @- is stdin)

Exit codes with --check-status: 3 for 3xx, 4 for 4xx, 5 for 5xx.";

/// The HTTP commands.
#[derive(Debug, Subcommand)]
pub(crate) enum HttpCommand {
    /// HTTP request with any method: sockit http [METHOD] URL [ITEM…] (like curl, HTTPie)
    #[command(after_help = EXAMPLES)]
    Http(HttpArgs),
    /// HTTP GET (download with -o or --download)
    #[command(after_help = EXAMPLES)]
    Get(ShortcutArgs),
    /// HTTP POST, JSON body from key=value items (--form for a form)
    #[command(after_help = EXAMPLES)]
    Post(ShortcutArgs),
}

/// `sockit http [METHOD] URL [ITEM…]`.
#[derive(Debug, Args)]
pub(crate) struct HttpArgs {
    /// [METHOD] URL [ITEM…]: the method is optional (GET, or POST when there is a body)
    #[arg(value_name = "[METHOD] URL [ITEM]", required = true, num_args = 1..)]
    words: Vec<String>,
    #[command(flatten)]
    opts: HttpOptions,
}

/// `sockit get URL [ITEM…]` and `sockit post URL [ITEM…]`.
#[derive(Debug, Args)]
pub(crate) struct ShortcutArgs {
    /// http(s)://HOST[:PORT]/PATH, HOST/PATH or :PORT/PATH (localhost)
    #[arg(value_name = "URL")]
    url: String,
    /// Request items: Header:Value, key=value, key:=json, key==query, field@file, @file
    #[arg(value_name = "ITEM")]
    items: Vec<String>,
    #[command(flatten)]
    opts: HttpOptions,
}

/// Options common to the HTTP commands.
#[derive(Debug, Args)]
pub(crate) struct HttpOptions {
    /// Send data fields as a JSON object (the default)
    #[arg(short, long, conflicts_with_all = ["form", "multipart"])]
    json: bool,
    /// Send data fields as a form (multipart when a file is attached)
    #[arg(short, long, conflicts_with = "multipart")]
    form: bool,
    /// Send data fields as multipart/form-data
    #[arg(long)]
    multipart: bool,
    /// Send this text as the body
    #[arg(long, value_name = "BODY")]
    raw: Option<String>,
    /// Never read the body from a piped stdin
    #[arg(long)]
    ignore_stdin: bool,
    /// Print the response head before the body
    #[arg(short = 'i', long)]
    include: bool,
    /// Save the body to FILE (through FILE.part, renamed when complete)
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Save the body to a file named by the server or the URL
    #[arg(short, long)]
    download: bool,
    /// Resume an interrupted download of -o FILE from FILE.part
    #[arg(short = 'c', long = "continue", requires = "output")]
    resume: bool,
    /// Follow redirects
    #[arg(short = 'F', long)]
    follow: bool,
    /// At most this many redirects with --follow
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_redirects: usize,
    /// Longest wait for the response and between body reads
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Give up connecting (resolve, TCP and TLS handshake) after this long
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Basic authentication: USER:PASSWORD
    #[arg(short = 'u', long = "auth", value_name = "USER:PASSWORD")]
    auth: Option<String>,
    /// Exit 3, 4 or 5 when the status is 3xx, 4xx or 5xx
    #[arg(long)]
    check_status: bool,
    /// After the exchange, print status, headers and timings as one JSON line on stderr
    #[arg(long)]
    json_meta: bool,
    /// Do not ask for compressed bodies
    #[arg(long)]
    no_decompress: bool,
    /// Trust only the certificate with this SHA-256 fingerprint
    #[arg(long, value_name = "sha256:HEX")]
    pin: Option<Fingerprint>,
    /// Also trust the CA certificates in this PEM file
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Do not verify the server's certificate (encrypted, not authenticated)
    #[arg(short = 'k', long, conflicts_with_all = ["pin", "ca"])]
    insecure: bool,
    /// Print every byte of the HTTP exchange as a hexdump on stderr (secrets masked)
    #[arg(long)]
    trace: bool,
    /// Show Authorization, Cookie and Proxy-Authorization values in --trace
    #[arg(long, requires = "trace")]
    trace_secrets: bool,
}

/// The exit status for `--check-status`: 3, 4 or 5 like HTTPie.
#[derive(Debug, thiserror::Error)]
#[error("server answered {0}")]
pub(crate) struct StatusError(pub(crate) StatusCode);

impl StatusError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self.0.as_u16() {
            300..=399 => 3,
            400..=499 => 4,
            _ => 5,
        }
    }
}

/// Runs one HTTP command; `verbose` is the global `-v` count (heads are shown from 1).
pub(crate) async fn run(
    command: HttpCommand,
    verbose: u8,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (method, url, words, opts) = match command {
        HttpCommand::Http(args) => {
            let mut words = args.words.into_iter();
            let first = words.next().unwrap_or_default();
            if looks_like_method(&first) && words.len() > 0 {
                let url = words.next().unwrap_or_default();
                let method = Method::from_bytes(first.as_bytes())
                    .with_context(|| format!("invalid method {first:?}"))?;
                (Some(method), url, words.collect(), args.opts)
            } else {
                (None, first, words.collect(), args.opts)
            }
        }
        HttpCommand::Get(args) => (Some(Method::GET), args.url, args.items, args.opts),
        HttpCommand::Post(args) => (Some(Method::POST), args.url, args.items, args.opts),
    };
    let url = normalize_url(&url);
    let items = words
        .iter()
        .map(|w| items::parse(w))
        .collect::<Result<Vec<Item>, _>>()?;
    let request = build_request(method, &url, &items, &opts).await?;
    let client = Client::new(ClientConfig {
        connect_timeout: opts.connect_timeout,
        read_timeout: Some(opts.timeout),
        verify: if let Some(pin) = opts.pin {
            Verify::Pin(pin)
        } else if opts.insecure {
            Verify::Insecure
        } else if let Some(ca) = &opts.ca {
            Verify::CaFile(ca.clone())
        } else {
            Verify::WebPki
        },
        follow_redirects: opts.follow,
        max_redirects: opts.max_redirects,
        decompress: !opts.no_decompress,
        trace: opts.trace.then(TraceSink::stderr),
        trace_secrets: opts.trace_secrets,
        ..ClientConfig::default()
    });
    let typed: HashMap<String, String> = items
        .iter()
        .filter_map(|i| match i {
            Item::Header { name, .. } => Some((name.to_ascii_lowercase(), name.clone())),
            _ => None,
        })
        .collect();
    let show = Show {
        request: verbose > 0,
        response: verbose > 0 || opts.include,
        typed,
    };
    let started = Instant::now();
    if opts.output.is_some() || opts.download {
        return save(&client, request, &opts, &show, &stop, started).await;
    }
    let mut response = tokio::select! {
        _ = stop.cancelled() => bail!("interrupted"),
        r = client.send(request.clone()) => r?,
    };
    let mut out = std::io::stdout();
    let heads = show.heads(&request, &response);
    out.write_all(heads.as_bytes())?;
    out.flush()?;
    let body_bytes = print_body(&mut response, &stop).await?;
    if opts.json_meta {
        eprintln!("{}", meta(&response, body_bytes, started.elapsed()));
    }
    check(&opts, response.status())
}

fn check(opts: &HttpOptions, status: StatusCode) -> anyhow::Result<()> {
    if opts.check_status && (status.is_redirection() || status.as_u16() >= 400) {
        return Err(StatusError(status).into());
    }
    Ok(())
}

fn looks_like_method(word: &str) -> bool {
    !word.is_empty() && word.len() <= 16 && word.bytes().all(|b| b.is_ascii_uppercase())
}

/// `:8080/x` → `http://localhost:8080/x`; `example.com` → `http://example.com`.
fn normalize_url(url: &str) -> String {
    if url.contains("://") {
        url.to_owned()
    } else if let Some(rest) = url.strip_prefix(':') {
        if rest.starts_with('/') || rest.is_empty() {
            format!("http://localhost{rest}")
        } else {
            format!("http://localhost:{rest}")
        }
    } else {
        format!("http://{url}")
    }
}

/// Whether stdin is a pipe or a file: then it may carry a body. A terminal or `/dev/null`
/// (cron) is never read implicitly.
fn stdin_may_have_body() -> bool {
    use std::os::unix::fs::FileTypeExt;
    if std::io::stdin().is_terminal() {
        return false;
    }
    std::fs::metadata("/dev/stdin")
        .map(|m| m.file_type().is_fifo() || m.file_type().is_file())
        .unwrap_or(false)
}

async fn read_stdin() -> anyhow::Result<Vec<u8>> {
    tokio::task::spawn_blocking(|| {
        let mut data = Vec::new();
        std::io::stdin().lock().read_to_end(&mut data).map(|_| data)
    })
    .await?
    .context("reading stdin")
}

async fn build_request(
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
        let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
        builder = builder.basic_auth(user, password);
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

/// What to print besides the body.
struct Show {
    request: bool,
    response: bool,
    /// Header names as the user typed them, by lower-case name.
    typed: HashMap<String, String>,
}

impl Show {
    fn heads(&self, request: &Request, response: &Response) -> String {
        let mut text = String::new();
        for hop in response.history() {
            if self.request {
                text.push_str(&self.request_head(&hop.request, None));
            }
            if self.response {
                text.push_str(&response_head(Version::HTTP_11, hop.status, &hop.headers));
            }
        }
        if self.request {
            let body = (response.history().is_empty() || response.request().method != Method::GET)
                .then_some(&request.body[..]);
            text.push_str(&self.request_head(response.request(), body));
        }
        if self.response {
            text.push_str(&response_head(
                response.version(),
                response.status(),
                response.headers(),
            ));
        }
        text
    }

    fn request_head(&self, head: &SentHead, body: Option<&[u8]>) -> String {
        let mut target = head.url.path().to_owned();
        if let Some(q) = head.url.query() {
            target.push('?');
            target.push_str(q);
        }
        let mut text = format!("{} {target} HTTP/1.1\n", head.method);
        for (name, value) in &head.headers {
            let shown = self
                .typed
                .get(name.as_str())
                .cloned()
                .unwrap_or_else(|| title_case(name.as_str()));
            text.push_str(&format!(
                "{shown}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        text.push('\n');
        if let Some(body) = body.filter(|b| !b.is_empty()) {
            match std::str::from_utf8(body) {
                Ok(s) if !s.contains('\0') => text.push_str(s),
                _ => text.push_str(&format!("[binary body, {} bytes]", body.len())),
            }
            text.push_str("\n\n");
        }
        text
    }
}

fn response_head(version: Version, status: StatusCode, headers: &HeaderMap) -> String {
    let mut text = format!(
        "{version:?} {} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in headers {
        text.push_str(&format!(
            "{}: {}\n",
            title_case(name.as_str()),
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push('\n');
    text
}

/// `content-type` → `Content-Type`, as hyper sends names with `title_case_headers`.
fn title_case(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper { c.to_ascii_uppercase() } else { c };
            upper = c == '-';
            out
        })
        .collect()
}

/// Prints the body to stdout: JSON pretty and coloured on a terminal, raw otherwise.
async fn print_body(response: &mut Response, stop: &CancellationToken) -> anyhow::Result<u64> {
    let stdout = std::io::stdout();
    let is_tty = stdout.is_terminal();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    if is_tty {
        // Read whole (bounded) so JSON can be formatted and binary noticed.
        const LIMIT: usize = 16 << 20;
        let mut all = Vec::new();
        while let Some(chunk) = next_chunk(response, stop).await? {
            all.extend_from_slice(&chunk);
            if all.len() > LIMIT {
                break;
            }
        }
        let mut out = stdout.lock();
        if all.contains(&0) {
            writeln!(
                out,
                "[binary body, {} bytes, not shown on a terminal; use -o FILE]",
                all.len()
            )?;
            return Ok(all.len() as u64);
        }
        let color = std::env::var_os("NO_COLOR").is_none();
        match serde_json::from_slice::<serde_json::Value>(&all) {
            Ok(value) if is_json => {
                let mut text = String::new();
                pretty(&value, 0, color, &mut text);
                writeln!(out, "{text}")?;
            }
            _ => {
                out.write_all(&all)?;
                if !all.ends_with(b"\n") && !all.is_empty() {
                    writeln!(out)?;
                }
            }
        }
        return Ok(all.len() as u64);
    }
    let writer = download::Writer::spawn(stdout);
    let mut total = 0u64;
    let result = loop {
        match next_chunk(response, stop).await {
            Ok(Some(chunk)) => {
                total += chunk.len() as u64;
                if !writer.send(chunk).await {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let written = writer.finish().await;
    result?;
    written.context("writing to stdout")?;
    Ok(total)
}

async fn next_chunk(
    response: &mut Response,
    stop: &CancellationToken,
) -> anyhow::Result<Option<bytes::Bytes>> {
    tokio::select! {
        _ = stop.cancelled() => bail!("interrupted"),
        chunk = response.chunk() => Ok(chunk?),
    }
}

/// Indented JSON with ANSI colours: keys blue, strings green, numbers and literals yellow.
fn pretty(value: &serde_json::Value, depth: usize, color: bool, out: &mut String) {
    use serde_json::Value;
    let paint = |code: &str, text: &str, out: &mut String| {
        if color {
            out.push_str(&format!("\x1b[{code}m{text}\x1b[0m"));
        } else {
            out.push_str(text);
        }
    };
    let pad = |d: usize| "    ".repeat(d);
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push_str("{\n");
            for (i, (k, v)) in map.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                paint("34", &Value::String(k.clone()).to_string(), out);
                out.push_str(": ");
                pretty(v, depth + 1, color, out);
                out.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (i, v) in items.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                pretty(v, depth + 1, color, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push(']');
        }
        Value::String(_) => paint("32", &value.to_string(), out),
        Value::Number(_) | Value::Bool(_) | Value::Null => paint("33", &value.to_string(), out),
        _ => out.push_str(&value.to_string()),
    }
}

/// `-o FILE` or `--download`: through `.part`, with a progress bar on a terminal.
async fn save(
    client: &Client,
    request: Request,
    opts: &HttpOptions,
    show: &Show,
    stop: &CancellationToken,
    started: Instant,
) -> anyhow::Result<()> {
    let special = opts
        .output
        .as_ref()
        .filter(|p| p.as_os_str() == "-" || std::fs::metadata(p).is_ok_and(|m| !m.is_file()));
    if let Some(path) = special {
        // `-o /dev/null`, a FIFO or `-`: nothing to rename or resume, just write.
        let mut response = client.send(request.clone()).await?;
        eprint!("{}", show.heads(&request, &response));
        if !response.status().is_success() {
            return Err(StatusError(response.status()).into());
        }
        let out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?,
            )
        };
        let writer = download::Writer::spawn(out);
        let mut total = 0;
        let result = loop {
            match next_chunk(&mut response, stop).await {
                Ok(Some(chunk)) => {
                    total += chunk.len() as u64;
                    if !writer.send(chunk).await {
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let written = writer.finish().await;
        result?;
        written.with_context(|| format!("writing {}", path.display()))?;
        if opts.json_meta {
            eprintln!("{}", meta(&response, total, started.elapsed()));
        }
        return Ok(());
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{bytes}/{total_bytes} {wide_bar} {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut printed = false;
    let mut meta_line = None;
    let mut on_progress = |progress: Progress, response: &Response| {
        if !printed {
            printed = true;
            eprint!("{}", show.heads(&request, response));
            if let Some(bar) = &bar {
                match progress.total {
                    Some(total) => bar.set_length(total),
                    None => bar.set_style(
                        ProgressStyle::with_template("{bytes} {binary_bytes_per_sec} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
                }
            }
        }
        if let Some(bar) = &bar {
            bar.set_position(progress.done);
        }
        if opts.json_meta && meta_line.is_none() {
            meta_line = Some(meta(response, 0, started.elapsed()));
        }
    };
    let result = download::download(
        client,
        request.clone(),
        opts.output.as_deref(),
        opts.resume,
        stop,
        &mut on_progress,
    )
    .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(done) => {
            if let Some(mut line) = meta_line {
                line["body_bytes"] = done.bytes.into();
                line["timings_ms"]["total"] = (started.elapsed().as_secs_f64() * 1000.0).into();
                eprintln!("{line}");
            }
            if std::io::stderr().is_terminal() {
                eprintln!(
                    "saved {} ({} bytes{})",
                    done.path.display(),
                    done.bytes,
                    if done.resumed_from > 0 {
                        format!(", resumed at {}", done.resumed_from)
                    } else {
                        String::new()
                    }
                );
            }
            Ok(())
        }
        Err(DownloadError::Status(status)) => Err(StatusError(status).into()),
        Err(e) => {
            let part = opts.output.as_deref().map(download::part_path);
            Err(match part.filter(|p| p.exists()) {
                Some(part) => anyhow::Error::new(e)
                    .context(format!("download incomplete, kept {}", part.display())),
                None => e.into(),
            })
        }
    }
}

/// One JSON line: status, headers, timings and size, for scripts.
fn meta(response: &Response, body_bytes: u64, total: Duration) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in response.headers() {
        let value = serde_json::Value::String(String::from_utf8_lossy(value.as_bytes()).into());
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::Array(list)) => list.push(value),
            Some(first) => *first = serde_json::Value::Array(vec![first.clone(), value]),
            None => {
                headers.insert(name.as_str().to_owned(), value);
            }
        }
    }
    let timings = response.timings();
    serde_json::json!({
        "url": response.url().as_str(),
        "status": response.status().as_u16(),
        "http_version": format!("{:?}", response.version()),
        "headers": headers,
        "redirects": response.history().len(),
        "body_bytes": body_bytes,
        "timings_ms": {
            "connect": timings.connected.map(|d| d.as_secs_f64() * 1000.0),
            "first_byte": timings.head.as_secs_f64() * 1000.0,
            "total": total.as_secs_f64() * 1000.0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    #[test]
    fn url_shorthands() {
        assert_eq!(normalize_url(":8080/x"), "http://localhost:8080/x");
        assert_eq!(normalize_url(":/x"), "http://localhost/x");
        assert_eq!(normalize_url("example.com/a"), "http://example.com/a");
        assert_eq!(normalize_url("https://a/"), "https://a/");
    }

    #[test]
    fn commands_parse() {
        Cli::try_parse_from(["sockit", "get", ":8080", "a==b", "-i", "--check-status"]).unwrap();
        Cli::try_parse_from(["sockit", "post", ":8080", "a=b", "--form"]).unwrap();
        Cli::try_parse_from(["sockit", "http", "PUT", ":8080", "@f"]).unwrap();
        Cli::try_parse_from(["sockit", "get", "-v", "-o", "f", "-c", ":1"]).unwrap();
        assert!(Cli::try_parse_from(["sockit", "get", "-k", "--pin", "sha256:00", ":1"]).is_err());
        assert!(Cli::try_parse_from(["sockit", "post", "--form", "--multipart", ":1"]).is_err());
        assert!(Cli::try_parse_from(["sockit", "get", "--trace-secrets", ":1"]).is_err());
    }

    #[test]
    fn methods_are_upper_case_words() {
        assert!(looks_like_method("GET"));
        assert!(looks_like_method("PROPFIND"));
        assert!(!looks_like_method("example.com"));
        assert!(!looks_like_method("get"));
    }

    #[test]
    fn status_classes_pick_the_exit_code() {
        assert_eq!(StatusError(StatusCode::FOUND).exit_code(), 3);
        assert_eq!(StatusError(StatusCode::NOT_FOUND).exit_code(), 4);
        assert_eq!(StatusError(StatusCode::BAD_GATEWAY).exit_code(), 5);
    }

    #[test]
    fn json_is_indented_without_colour_when_asked() {
        let mut out = String::new();
        pretty(
            &serde_json::json!({"a": [1, "x"], "b": {}}),
            0,
            false,
            &mut out,
        );
        assert_eq!(
            out,
            "{\n    \"a\": [\n        1,\n        \"x\"\n    ],\n    \"b\": {}\n}"
        );
    }
}
