//! The arguments of `sockit http`, `get` and `post`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use sockit::net::tls::Fingerprint;

use crate::cli::args::{RouteArgs, parse_duration};

pub(super) const EXAMPLES: &str = "Examples:
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
    pub(super) words: Vec<String>,
    #[command(flatten)]
    pub(super) opts: HttpOptions,
}

/// `sockit get URL [ITEM…]` and `sockit post URL [ITEM…]`.
#[derive(Debug, Args)]
pub(crate) struct ShortcutArgs {
    /// http(s)://HOST[:PORT]/PATH, HOST/PATH, :PORT/PATH or PORT (localhost); USER:PW@ works
    #[arg(value_name = "URL")]
    pub(super) url: String,
    /// Request items: Header:Value, key=value, key:=json, key==query, field@file, @file
    #[arg(value_name = "ITEM")]
    pub(super) items: Vec<String>,
    #[command(flatten)]
    pub(super) opts: HttpOptions,
}

/// Options common to the HTTP commands.
#[derive(Debug, Args)]
pub(crate) struct HttpOptions {
    /// Send data fields as a JSON object (the default)
    #[arg(short, long, conflicts_with_all = ["form", "multipart"])]
    pub(super) json: bool,
    /// Send data fields as a form (multipart when a file is attached)
    #[arg(short, long, conflicts_with = "multipart")]
    pub(super) form: bool,
    /// Send data fields as multipart/form-data
    #[arg(long)]
    pub(super) multipart: bool,
    /// Send this text as the body
    #[arg(long, value_name = "BODY")]
    pub(super) raw: Option<String>,
    /// Never read the body from a piped stdin
    #[arg(long)]
    pub(super) ignore_stdin: bool,
    /// Print the response head before the body
    #[arg(short = 'i', long)]
    pub(super) include: bool,
    /// Save the body to FILE (through FILE.part, renamed when complete)
    #[arg(short, long, value_name = "FILE")]
    pub(super) output: Option<PathBuf>,
    /// Save the body to a file named by the server or the URL (-O as in curl)
    #[arg(short, long, visible_short_alias = 'O')]
    pub(super) download: bool,
    /// Resume an interrupted download of -o FILE from FILE.part
    #[arg(short = 'c', long = "continue", requires = "output")]
    pub(super) resume: bool,
    /// Follow redirects (-L as in curl)
    #[arg(short = 'F', long, visible_short_alias = 'L')]
    pub(super) follow: bool,
    /// At most this many redirects with --follow
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub(super) max_redirects: usize,
    /// Longest wait for the response and between body reads
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub(super) timeout: Duration,
    /// Give up connecting (resolve, TCP and TLS handshake) after this long
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(super) connect_timeout: Duration,
    /// Basic authentication: USER:PASSWORD
    #[arg(
        short = 'u',
        visible_short_alias = 'a',
        long = "auth",
        value_name = "USER:PASSWORD"
    )]
    pub(super) auth: Option<String>,
    /// Exit 3, 4 or 5 when the status is 3xx, 4xx or 5xx
    #[arg(long)]
    pub(super) check_status: bool,
    /// After the exchange, print status, headers and timings as one JSON line on stderr
    #[arg(long)]
    pub(super) json_meta: bool,
    /// Do not ask for compressed bodies
    #[arg(long)]
    pub(super) no_decompress: bool,
    /// Trust only the certificate with this SHA-256 fingerprint (https:// unless a scheme is given)
    #[arg(long, value_name = "sha256:HEX")]
    pub(super) pin: Option<Fingerprint>,
    /// Also trust the CA certificates in this PEM file (https:// unless a scheme is given)
    #[arg(long, value_name = "FILE")]
    pub(super) ca: Option<PathBuf>,
    /// Do not verify the server's certificate (https:// unless a scheme is given)
    #[arg(short = 'k', long, conflicts_with_all = ["pin", "ca"])]
    pub(super) insecure: bool,
    /// Print every byte of the HTTP exchange as a hexdump on stderr (secrets masked)
    #[arg(long)]
    pub(super) trace: bool,
    /// Show Authorization, Cookie and Proxy-Authorization values in --trace and -v
    #[arg(long, requires = "trace")]
    pub(super) trace_secrets: bool,
    /// Speak HTTP/1.1 only (no HTTP/2 by ALPN on https://)
    #[arg(long = "http1.1", conflicts_with = "http2")]
    pub(super) http1_1: bool,
    /// Speak HTTP/2 only: ALPN h2 on https://, prior knowledge on http://
    #[arg(long)]
    pub(super) http2: bool,
    #[command(flatten)]
    pub(super) route: RouteArgs,
    /// A header as curl takes it: 'Name: value', 'Name:' (do not send it), 'Name;' (empty)
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub(super) headers: Vec<String>,
    /// The method, as curl's -X (wins over the command's own)
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub(super) request_method: Option<String>,
    /// Print the request that would be sent, and send nothing
    #[arg(long, conflicts_with = "curl")]
    pub(super) offline: bool,
    /// Print the same request as a curl command line (shell-quoted), and send nothing
    #[arg(long)]
    pub(super) curl: bool,
    /// Send these cookies ('a=1; b=2', as curl's -b); only to the URL's origin
    #[arg(short = 'b', long = "cookie", value_name = "NAME=VALUE")]
    pub(super) cookies: Vec<String>,
    /// Keep headers, credentials and cookies between runs: a NAME (kept per host in the
    /// config directory) or a FILE (with a / or .json)
    #[arg(long, value_name = "NAME|FILE")]
    pub(super) session: Option<String>,
    /// After the exchange, write the cookies to FILE in the Netscape format (curl's -c)
    #[arg(long, value_name = "FILE")]
    pub(super) cookie_jar: Option<PathBuf>,
    /// Client certificate chain (PEM) for servers that ask for one (mutual TLS)
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(super) cert: Option<PathBuf>,
    /// Private key (PEM) of --cert
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(super) key: Option<PathBuf>,
}
