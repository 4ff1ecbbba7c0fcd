//! `sockit http [METHOD] URL [ITEM…]`, `sockit get` and `sockit post`: arguments to a
//! [`sockit::http::Request`], then the response printed, saved or summarised.

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use sockit::http::body::{self, BodyKind};
use sockit::http::download::{self, DownloadError, Progress};
use sockit::http::items::{self, Item};
use sockit::http::session::{self, Session};
use sockit::http::{Client, ClientConfig, HttpVersions, Request, Response, SentHead, target_url};
use sockit::http::{Cookie, CookieJar};
use sockit::net::tls::{Fingerprint, Verify};
use sockit::net::trace::TraceSink;

use crate::cli::args::{RouteArgs, parse_duration};
use crate::cli::output::{OutputError, Stdout, say};
use crate::cli::{UsageError, hints};
use sockit::net::HostPort;

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
    /// http(s)://HOST[:PORT]/PATH, HOST/PATH, :PORT/PATH or PORT (localhost); USER:PW@ works
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
    /// Save the body to a file named by the server or the URL (-O as in curl)
    #[arg(short, long, visible_short_alias = 'O')]
    download: bool,
    /// Resume an interrupted download of -o FILE from FILE.part
    #[arg(short = 'c', long = "continue", requires = "output")]
    resume: bool,
    /// Follow redirects (-L as in curl)
    #[arg(short = 'F', long, visible_short_alias = 'L')]
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
    #[arg(
        short = 'u',
        visible_short_alias = 'a',
        long = "auth",
        value_name = "USER:PASSWORD"
    )]
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
    /// Trust only the certificate with this SHA-256 fingerprint (https:// unless a scheme is given)
    #[arg(long, value_name = "sha256:HEX")]
    pin: Option<Fingerprint>,
    /// Also trust the CA certificates in this PEM file (https:// unless a scheme is given)
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Do not verify the server's certificate (https:// unless a scheme is given)
    #[arg(short = 'k', long, conflicts_with_all = ["pin", "ca"])]
    insecure: bool,
    /// Print every byte of the HTTP exchange as a hexdump on stderr (secrets masked)
    #[arg(long)]
    trace: bool,
    /// Show Authorization, Cookie and Proxy-Authorization values in --trace and -v
    #[arg(long, requires = "trace")]
    trace_secrets: bool,
    /// Speak HTTP/1.1 only (no HTTP/2 by ALPN on https://)
    #[arg(long = "http1.1", conflicts_with = "http2")]
    http1_1: bool,
    /// Speak HTTP/2 only: ALPN h2 on https://, prior knowledge on http://
    #[arg(long)]
    http2: bool,
    #[command(flatten)]
    route: RouteArgs,
    /// A header as curl takes it: 'Name: value', 'Name:' (do not send it), 'Name;' (empty)
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// The method, as curl's -X (wins over the command's own)
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    request_method: Option<String>,
    /// Print the request that would be sent, and send nothing
    #[arg(long, conflicts_with = "curl")]
    offline: bool,
    /// Print the same request as a curl command line (shell-quoted), and send nothing
    #[arg(long)]
    curl: bool,
    /// Send these cookies ('a=1; b=2', as curl's -b); only to the URL's origin
    #[arg(short = 'b', long = "cookie", value_name = "NAME=VALUE")]
    cookies: Vec<String>,
    /// Keep headers, credentials and cookies between runs: a NAME (kept per host in the
    /// config directory) or a FILE (with a / or .json)
    #[arg(long, value_name = "NAME|FILE")]
    session: Option<String>,
    /// After the exchange, write the cookies to FILE in the Netscape format (curl's -c)
    #[arg(long, value_name = "FILE")]
    cookie_jar: Option<PathBuf>,
    /// Client certificate chain (PEM) for servers that ask for one (mutual TLS)
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
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
                let method = Method::from_bytes(first.to_ascii_uppercase().as_bytes())
                    .with_context(|| format!("invalid method {first:?}"))?;
                (Some(method), url, words.collect(), args.opts)
            } else {
                (None, first, words.collect(), args.opts)
            }
        }
        HttpCommand::Get(args) => (Some(Method::GET), args.url, args.items, args.opts),
        HttpCommand::Post(args) => (Some(Method::POST), args.url, args.items, args.opts),
    };
    let method = match &opts.request_method {
        Some(word) => Some(
            Method::from_bytes(word.to_ascii_uppercase().as_bytes())
                .map_err(|_| UsageError(format!("invalid method {word:?}").into()))?,
        ),
        None => method,
    };
    // TLS options mean TLS: `--pin … :8443/x` is `https://localhost:8443/x`.
    let tls_wanted = opts.pin.is_some() || opts.ca.is_some() || opts.insecure;
    let url = target_url(&url, if tls_wanted { "https" } else { "http" })
        .map_err(|e| UsageError(e.into()))?;
    let mut items = words
        .iter()
        .map(|w| items::parse(w))
        .collect::<Result<Vec<Item>, _>>()
        .map_err(|e| UsageError(e.into()))?;
    curl_habits(&opts, &items)?;
    for header in &opts.headers {
        items.push(items::parse_header(header).map_err(|e| UsageError(e.into()))?);
    }
    let mut request = build_request(method, url.as_str(), &items, &opts).await?;
    let jar = Arc::new(CookieJar::new());
    let session_path = match &opts.session {
        Some(name) => Some(session::path_for(name, &request.url)?),
        None => None,
    };
    let mut saved = match &session_path {
        Some(path) => Session::load(path)?,
        None => Session::default(),
    };
    let origin_bound = use_session(&mut request, &mut saved, &jar, &opts)?;
    let client = Client::new(ClientConfig {
        cookies: Some(jar.clone()),
        client_cert: opts.cert.clone().zip(opts.key.clone()),
        origin_bound_headers: origin_bound,
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
        versions: if opts.http1_1 {
            HttpVersions::Http1
        } else if opts.http2 {
            HttpVersions::Http2
        } else {
            HttpVersions::Negotiate
        },
        dial: opts.route.dial_without_proxy()?,
        proxy: opts.route.policy(true)?,
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
        secrets: opts.trace_secrets || opts.offline,
    };
    if opts.offline || opts.curl {
        let head = client.head(&request)?;
        let text = if opts.curl {
            curl_command(&head, &request.body, &opts)
        } else {
            show.request_head(&head, Version::HTTP_11, Some(&request.body))
        };
        return Ok(Stdout::open("the request")?.write_all(text.as_bytes())?);
    }
    let target = HostPort::new(
        request
            .url
            .host_str()
            .map(|h| h.trim_matches(['[', ']']).to_owned()),
        request.url.port_or_known_default().unwrap_or(80),
    );
    let server_name = target.host_or("localhost").to_owned();
    let spoke_tls = request.url.scheme() == "https";
    // The second look for a hint takes the request's own route, proxy included.
    let hint_route = opts.route.dial_without_proxy().ok().and_then(|mut route| {
        let policy = opts.route.policy(true).ok()?;
        route.proxy = policy.proxy_for(request.url.scheme(), &server_name).ok()?;
        Some(route)
    });
    let result = send_and_print(&client, request, &opts, &show, &stop).await;
    if let (Err(err), Some(route)) = (&result, &hint_route) {
        hints::after_failure(
            err,
            &target,
            route,
            &server_name,
            spoke_tls,
            "use http://",
            Some("use https://"),
        )
        .await;
    }
    if let Some(path) = &opts.cookie_jar {
        std::fs::write(path, sockit::http::netscape_format(&jar.cookies()))
            .with_context(|| format!("writing the cookie jar {}", path.display()))?;
    }
    if let Some(path) = &session_path {
        // A request that got an answer (whatever its status) updates the session.
        if result.is_ok() || result.as_ref().is_err_and(|e| e.is::<StatusError>()) {
            saved.cookies = jar.cookies();
            saved.save(path)?;
        }
    }
    result
}

/// Sends the request and prints (or saves) the response.
async fn send_and_print(
    client: &Client,
    request: Request,
    opts: &HttpOptions,
    show: &Show,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let client = client.clone();
    let started = Instant::now();
    if opts.output.is_some() || opts.download {
        return save(&client, request, opts, show, stop, started).await;
    }
    let mut response = tokio::select! {
        _ = stop.cancelled() => bail!("interrupted"),
        r = client.send(request.clone()) => r?,
    };
    let heads = show.heads(&request, &response);
    let mut out = Stdout::open(if heads.is_empty() {
        "the response body"
    } else {
        "the response head"
    })?;
    out.write_all(heads.as_bytes())?;
    let body_bytes = print_body(&mut response, out.writing("the response body"), stop).await?;
    if opts.json_meta {
        say(format_args!(
            "{}",
            meta(&response, body_bytes, started.elapsed())
        ));
    }
    check(opts, response.status())
}

/// Merges the session into `request` and the jar, and what this run adds into the session.
/// Returns the headers bound to the request's origin: every session header.
fn use_session(
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

/// The request as a curl command line, each word shell-quoted.
fn curl_command(head: &SentHead, body: &[u8], opts: &HttpOptions) -> String {
    let mut words = vec!["curl".to_owned()];
    if head.method != Method::GET || !body.is_empty() {
        words.extend(["-X".to_owned(), head.method.to_string()]);
    }
    if opts.http1_1 {
        words.push("--http1.1".to_owned());
    } else if opts.http2 {
        words.push(if head.url.scheme() == "https" {
            "--http2".to_owned()
        } else {
            "--http2-prior-knowledge".to_owned()
        });
    }
    if opts.follow {
        words.extend([
            "-L".to_owned(),
            "--max-redirs".to_owned(),
            opts.max_redirects.to_string(),
        ]);
    }
    if opts.insecure {
        words.push("-k".to_owned());
    }
    if let Some(ca) = &opts.ca {
        words.extend(["--cacert".to_owned(), ca.display().to_string()]);
    }
    if !opts.no_decompress {
        words.push("--compressed".to_owned());
    }
    for (name, value) in &head.headers {
        // curl writes these itself, from the URL and the body.
        if matches!(*name, header::HOST | header::CONTENT_LENGTH) {
            continue;
        }
        words.push("-H".to_owned());
        let value = String::from_utf8_lossy(value.as_bytes());
        words.push(if value.is_empty() {
            format!("{};", title_case(name.as_str()))
        } else {
            format!("{}: {value}", title_case(name.as_str()))
        });
    }
    for name in [header::ACCEPT, header::USER_AGENT] {
        if !head.headers.contains_key(&name) {
            // A default the user removed: curl's `-H 'Name:'` removes curl's own.
            words.extend(["-H".to_owned(), format!("{}:", title_case(name.as_str()))]);
        }
    }
    if !body.is_empty() {
        words.extend([
            "--data-binary".to_owned(),
            String::from_utf8_lossy(body).into_owned(),
        ]);
    }
    words.push(head.url.to_string());
    let mut line = words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    line.push('\n');
    line
}

/// `word` as a POSIX shell reads it back: bare when it is plain, else in single quotes.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn check(opts: &HttpOptions, status: StatusCode) -> anyhow::Result<()> {
    if opts.check_status && (status.is_redirection() || status.as_u16() >= 400) {
        return Err(StatusError(status).into());
    }
    Ok(())
}

/// `GET`, `PROPFIND`: any upper-case word; `get`, `put`: the standard methods in lower case
/// too (a lower-case word could be a host name, so only these).
fn looks_like_method(word: &str) -> bool {
    const STANDARD: [&str; 9] = [
        "get", "head", "post", "put", "patch", "delete", "options", "trace", "connect",
    ];
    (!word.is_empty() && word.len() <= 16 && word.bytes().all(|b| b.is_ascii_uppercase()))
        || STANDARD.contains(&word)
}

/// curl flags whose letter means something else here: refused or hinted when the command
/// line reads as curl's.
fn curl_habits(opts: &HttpOptions, items: &[Item]) -> anyhow::Result<()> {
    // curl's `-d 'a=1&b=2'` is a form body; here -d is --download and the text an item.
    let curl_data = items.iter().any(|i| match i {
        Item::Data { value, .. } => value.contains('&') && value.contains('='),
        _ => false,
    });
    if opts.download && curl_data {
        return Err(UsageError(
            "-d here is --download, and 'a=1&b=2' is one field; for curl's -d form body give \
             the fields as items with --form (sockit post URL --form a=1 b=2) or --raw 'a=1&b=2'"
                .into(),
        )
        .into());
    }
    // curl's `-F 'file=@x'` uploads a file; here -F is --follow and `key=@file` puts the
    // file's text in a JSON field.
    let data_file = items.iter().any(|i| matches!(i, Item::DataFile { .. }));
    if opts.follow && data_file && !opts.form && !opts.multipart {
        say(format_args!(
            "hint: -F here is --follow, and key=@file sends the file's text as a JSON field; \
             for curl's -F 'file=@x' upload write file@x (multipart)"
        ));
    }
    Ok(())
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
async fn ask_password(user: &str) -> anyhow::Result<String> {
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
fn read_password(prompt: &str) -> anyhow::Result<String> {
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

/// What to print besides the body.
struct Show {
    request: bool,
    response: bool,
    /// Header names as the user typed them, by lower-case name.
    typed: HashMap<String, String>,
    /// Show credential and cookie values (`--trace-secrets`) instead of `*`s.
    secrets: bool,
}

impl Show {
    fn heads(&self, request: &Request, response: &Response) -> String {
        let mut text = String::new();
        for hop in response.history() {
            if self.request {
                text.push_str(&self.request_head(&hop.request, hop.version, None));
            }
            if self.response {
                text.push_str(&response_head(hop.version, hop.status, &hop.headers));
            }
        }
        if self.request {
            let body = (response.history().is_empty() || response.request().method != Method::GET)
                .then_some(&request.body[..]);
            text.push_str(&self.request_head(response.request(), response.version(), body));
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

    fn request_head(&self, head: &SentHead, version: Version, body: Option<&[u8]>) -> String {
        let mut target = head.url.path().to_owned();
        if let Some(q) = head.url.query() {
            target.push('?');
            target.push_str(q);
        }
        // HTTP/1.0 answers still came to an HTTP/1.1 request.
        let sent = if version == Version::HTTP_2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let mut text = format!("{} {target} {}\n", head.method, version_name(sent));
        for (name, value) in &head.headers {
            let shown = self
                .typed
                .get(name.as_str())
                .cloned()
                .unwrap_or_else(|| title_case(name.as_str()));
            let value = String::from_utf8_lossy(value.as_bytes());
            let value = if self.secrets || !is_secret(name) {
                value.into_owned()
            } else {
                mask(&value)
            };
            text.push_str(&format!("{shown}: {value}\n"));
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

/// `HTTP/1.1`, `HTTP/2` as curl and xh print them.
fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

fn response_head(version: Version, status: StatusCode, headers: &HeaderMap) -> String {
    let mut text = format!(
        "{} {} {}\n",
        version_name(version),
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

/// Headers whose values are credentials: masked in `-v` as in `--trace`.
fn is_secret(name: &HeaderName) -> bool {
    [
        header::AUTHORIZATION,
        header::PROXY_AUTHORIZATION,
        header::COOKIE,
    ]
    .contains(name)
}

/// Every character but spaces turned into `*`: the shape stays, the secret goes.
fn mask(value: &str) -> String {
    value
        .chars()
        .map(|c| if c == ' ' { ' ' } else { '*' })
        .collect()
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

/// Largest JSON body that is held to be indented on a terminal; a larger one is shown
/// as it comes.
const PRETTY_JSON_LIMIT: usize = 16 << 20;

/// Writes the body to stdout as it arrives, in a pipe and on a terminal alike. On a
/// terminal a JSON body (up to [`PRETTY_JSON_LIMIT`]) is indented and coloured, and a
/// binary body is not dumped: like curl, sockit stops with an error (exit 23) at the
/// first chunk with a NUL byte, before writing it.
async fn print_body(
    response: &mut Response,
    mut out: Stdout,
    stop: &CancellationToken,
) -> anyhow::Result<u64> {
    let is_tty = std::io::stdout().is_terminal();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    let mut total = 0u64;
    let mut last = 0u8;
    if is_tty && is_json {
        let mut held = Vec::new();
        let mut complete = true;
        while let Some(chunk) = next_chunk(response, stop).await? {
            held.extend_from_slice(&chunk);
            if held.len() > PRETTY_JSON_LIMIT {
                complete = false;
                break;
            }
        }
        total = held.len() as u64;
        if complete {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&held) {
                let mut text = String::new();
                pretty(&value, 0, std::env::var_os("NO_COLOR").is_none(), &mut text);
                text.push('\n');
                out.write_all(text.as_bytes())?;
                return Ok(total);
            }
        }
        if held.contains(&0) {
            return Err(OutputError::BinaryOnTerminal.into());
        }
        out.write_all(&held)?;
        last = held.last().copied().unwrap_or(b'\n');
    }
    let what = "the response body";
    let mut writer = download::Writer::for_file(out.into_file());
    let result = loop {
        match next_chunks(response, stop).await {
            Ok(Some(mut chunks)) => {
                if is_tty {
                    // Like curl: stop before the first chunk with a NUL byte.
                    if let Some(binary) = chunks.iter().position(|c| c.contains(&0)) {
                        chunks.truncate(binary);
                        total += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                        writer.send(chunks).await;
                        break Err(OutputError::BinaryOnTerminal.into());
                    }
                }
                total += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                last = chunks
                    .iter()
                    .rev()
                    .find_map(|c| c.last().copied())
                    .unwrap_or(last);
                if !writer.send(chunks).await {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let written = writer.finish().await;
    written.map_err(|source| OutputError::Write { what, source })?;
    result?;
    if is_tty && total > 0 && last != b'\n' {
        // Keep the prompt on a line of its own.
        let mut out = Stdout::open(what)?;
        out.write_all(b"\n")?;
    }
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

/// The body pieces ready now, in one batch for one write ([`Response::ready_chunks`]).
async fn next_chunks(
    response: &mut Response,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Vec<bytes::Bytes>>> {
    tokio::select! {
        _ = stop.cancelled() => bail!("interrupted"),
        chunks = response.ready_chunks(download::BATCH_BYTES) => Ok(chunks?),
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
    // `-o -` writes to stdout: nothing to rename or resume. `-o /dev/null` and FIFOs go
    // through `download`, which writes them in place.
    if opts.output.as_ref().is_some_and(|p| p.as_os_str() == "-") {
        let out = Stdout::open("the response body")?.into_file();
        let mut response = client.send(request.clone()).await?;
        eprint_heads(&show.heads(&request, &response));
        if !response.status().is_success() {
            return Err(StatusError(response.status()).into());
        }
        let mut writer = download::Writer::for_file(out);
        let mut total = 0;
        let result = loop {
            match next_chunks(&mut response, stop).await {
                Ok(Some(chunks)) => {
                    total += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                    if !writer.send(chunks).await {
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        writer.finish().await.map_err(|source| OutputError::Write {
            what: "the response body",
            source,
        })?;
        result?;
        if opts.json_meta {
            say(format_args!(
                "{}",
                meta(&response, total, started.elapsed())
            ));
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
            eprint_heads(&show.heads(&request, response));
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
                say(format_args!("{line}"));
            }
            if std::io::stderr().is_terminal() {
                say(format_args!(
                    "saved {} ({} bytes{})",
                    done.path.display(),
                    done.bytes,
                    if done.resumed_from > 0 {
                        format!(", resumed at {}", done.resumed_from)
                    } else {
                        String::new()
                    }
                ));
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

/// Heads on stderr (when the body goes to a file); they end with an empty line already.
fn eprint_heads(heads: &str) {
    if let Some(text) = heads.strip_suffix('\n') {
        say(format_args!("{text}"));
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
        "http_version": version_name(response.version()),
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
        for (input, scheme, want) in [
            (":8080/x", "http", "http://localhost:8080/x"),
            (":/x", "http", "http://localhost/x"),
            ("18000", "http", "http://localhost:18000/"),
            ("example.com/a", "http", "http://example.com/a"),
            ("https://a/", "http", "https://a/"),
            (":8443/x", "https", "https://localhost:8443/x"),
            (
                "a.test?next=http://b/",
                "http",
                "http://a.test/?next=http://b/",
            ),
            ("u:p%40ss@a.test/", "http", "http://u:p%40ss@a.test/"),
        ] {
            assert_eq!(target_url(input, scheme).unwrap().as_str(), want, "{input}");
        }
    }

    #[test]
    fn secrets_are_masked_in_heads() {
        assert_eq!(mask("Basic dTpw"), "***** ****");
        assert!(is_secret(&header::AUTHORIZATION));
        assert!(!is_secret(&header::ACCEPT));
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
        assert!(looks_like_method("get"));
        assert!(looks_like_method("delete"));
        assert!(!looks_like_method("getter"));
        assert!(!looks_like_method("localhost"));
    }

    #[test]
    fn shell_quoting_reads_back_as_the_same_word() {
        assert_eq!(shell_quote("http://a.test/x?y=1"), "'http://a.test/x?y=1'");
        assert_eq!(shell_quote("-H"), "-H");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
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
