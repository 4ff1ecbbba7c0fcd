//! `sockit serve`: the static file server (optionally uploads, auth, TLS, a fixed answer).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use tokio_util::sync::CancellationToken;

use sockit::http::server::{
    self, AccessLog, Config, Credentials, FixedAnswer, Limits, UploadConfig,
};
use sockit::net::dial::UnixAddr;
use sockit::net::unix::bind_unix;
use sockit::net::{ServerConfig, bind_tcp};

use crate::cli::args::{BindArgs, ServerTlsArgs, TraceArgs, announce, parse_bytes, parse_duration};
use crate::cli::output::say;

/// Serve a directory over HTTP: listings, ranges, caching headers, optional uploads.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  sockit serve                              this directory on http://127.0.0.1:8000/
  sockit serve ~/public --port 0            another directory on a free port
  sockit serve . --bind 0.0.0.0             share with the local network
  sockit serve drop --upload --auth me:pw   accept PUT and form uploads with a password
  sockit serve --tls                        HTTPS with a fresh self-signed certificate
  sockit serve --text 'hello world'         answer every request with a fixed text
  sockit serve dist --spa --cors            a single-page app any page may fetch from
  sockit serve -H 'Cache-Control: no-cache' a header on every response
  curl -T file.txt http://127.0.0.1:8000/   upload with curl (needs --upload)")]
pub(crate) struct ServeArgs {
    /// Directory to serve
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    #[command(flatten)]
    bind: BindArgs,
    /// Serve and list hidden (dot) files
    #[arg(long)]
    hidden: bool,
    /// Follow symlinks that lead out of DIR (refused with 403 by default)
    #[arg(long)]
    follow_symlinks: bool,
    /// Never compress responses (pre-compressed .gz/.br siblings are still served)
    #[arg(long)]
    no_compress: bool,
    /// Accept uploads: PUT /path/name and multipart POST to a directory
    #[arg(long)]
    upload: bool,
    /// Largest uploaded file
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_bytes, requires = "upload")]
    max_upload: usize,
    /// Let uploads replace existing files
    #[arg(long, requires = "upload")]
    overwrite: bool,
    /// Let uploads create missing directories
    #[arg(long, requires = "upload")]
    mkdir: bool,
    /// Require HTTP Basic auth: USER:PASSWORD or USER:sha256:HEX
    #[arg(long, value_name = "USER:PASS")]
    auth: Option<Credentials>,
    /// With --auth: protect uploads only, let anyone read
    #[arg(long, requires = "auth")]
    auth_writes_only: bool,
    /// Answer every request with this text instead of serving files
    #[arg(long, value_name = "TEXT")]
    text: Option<String>,
    /// Status code of every answer (with --text, or alone)
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(200..=599))]
    status: Option<u16>,
    /// Time a client has to send a request head; also the keep-alive idle limit
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Close a connection when no byte has moved for this long (stalled transfers)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Most connections served at once; more get 503
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_conns: usize,
    /// Largest request head (request line and headers); larger gets 431
    #[arg(long, value_name = "SIZE", default_value = "16KiB", value_parser = parse_bytes)]
    max_header: usize,
    /// Worker threads; 1 runs everything on one thread (default: the CPUs this process may use)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Add this header to every response ('Name: value'; repeatable; replaces the server's)
    #[arg(short = 'H', long = "header", value_name = "HEADER", value_parser = parse_header_arg)]
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Let web pages of any origin read (Access-Control-Allow-Origin: *) and answer preflights
    #[arg(long)]
    cors: bool,
    /// Single-page app: paths that match no file get the root index.html (200), not 404
    #[arg(long)]
    spa: bool,
    /// No access log on stderr
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    tls: ServerTlsArgs,
    #[command(flatten)]
    trace: TraceArgs,
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let fixed = match (&self.text, self.status) {
            (None, None) => None,
            (text, status) => {
                let status = http::StatusCode::from_u16(status.unwrap_or(200))
                    .context("invalid --status")?;
                let body = match text {
                    Some(text) => text.clone(),
                    None => format!("{}\n", status.canonical_reason().unwrap_or("")),
                };
                Some(FixedAnswer {
                    status,
                    body: Bytes::from(body),
                })
            }
        };
        Ok(Config {
            root: self.dir.clone(),
            show_hidden: self.hidden,
            follow_symlinks: self.follow_symlinks,
            compress: !self.no_compress,
            upload: self.upload.then_some(UploadConfig {
                max_file_bytes: self.max_upload as u64,
                overwrite: self.overwrite,
                mkdir: self.mkdir,
            }),
            auth: self.auth.clone(),
            auth_writes_only: self.auth_writes_only,
            fixed,
            limits: Limits {
                header_timeout: self.header_timeout,
                idle_timeout: self.idle_timeout,
                max_conns: self.max_conns,
                max_header_bytes: self.max_header.max(1024),
                ..Limits::default()
            },
            access_log: (!self.quiet).then(|| AccessLog::new(std::io::stderr())),
            headers: self.headers.clone(),
            cors: self.cors,
            spa: self.spa,
        })
    }
}

fn parse_header_arg(line: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    server::parse_header_line(line).map_err(|e| e.to_string())
}

pub(crate) async fn run(args: ServeArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let threads = args.threads.map_or_else(super::usable_cores, usize::from);
    // The server gets a runtime sized for it; the caller's runtime only waits.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sockit-serve".into())
        .spawn(move || {
            let result = match super::runtime(threads) {
                Ok(runtime) => {
                    let result = runtime.block_on(serve(args, stop));
                    runtime.shutdown_background();
                    result
                }
                Err(error) => Err(anyhow::Error::new(error).context("starting the server runtime")),
            };
            let _ = done_tx.send(result);
        })
        .context("starting the server thread")?;
    done_rx
        .await
        .context("the server thread ended unexpectedly")?
}

async fn serve(args: ServeArgs, stop: CancellationToken) -> anyhow::Result<()> {
    if let Some(unix) = UnixAddr::parse_prefixed(&args.bind.bind) {
        return serve_unix(args, unix, stop).await;
    }
    let addr = args.bind.resolve(None, 8000)?;
    if args.upload && args.auth.is_none() && !addr.ip().is_loopback() {
        anyhow::bail!(
            "uploads on {} would let anyone on the network write files; add --auth USER:PASS",
            addr.ip()
        );
    }
    let config = args.config()?;
    if config.fixed.is_none() && !args.dir.is_dir() {
        anyhow::bail!("not a directory: {}", args.dir.display());
    }
    let identity = args.tls.identity(addr, sockit::http::server::ALPN)?;
    let listener = bind_tcp(addr)?;
    let local = listener.local_addr()?;
    let scheme = if identity.is_some() { "https" } else { "http" };
    announce("serve", local, identity.as_ref());
    if local.ip().is_unspecified() {
        crate::cli::share::announce_urls(scheme, local);
    } else {
        say(format_args!("open {scheme}://{local}/"));
    }
    let net = ServerConfig {
        tls: identity.map(|id| id.config),
        trace: args.trace.sink(),
        ..ServerConfig::default()
    };
    server::serve(listener, config, net, stop)
        .await
        .with_context(|| format!("serving {}", args.dir.display()))
}

/// `serve --bind unix:PATH`: the same site on a Unix socket (for a reverse proxy in front,
/// or `curl --unix-socket`). Plain HTTP: the socket file's permissions guard it.
async fn serve_unix(
    args: ServeArgs,
    unix: UnixAddr,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    if args.tls.is_on() {
        anyhow::bail!("--tls over a Unix socket is not supported; serve plain HTTP there");
    }
    let config = args.config()?;
    if config.fixed.is_none() && !args.dir.is_dir() {
        anyhow::bail!("not a directory: {}", args.dir.display());
    }
    let listener = bind_unix(&unix)?;
    say(format_args!("sockit serve listening on {unix}"));
    if let UnixAddr::Path(path) = &unix {
        say(format_args!(
            "try: curl --unix-socket {} http://localhost/",
            path.display()
        ));
    }
    let net = ServerConfig {
        trace: args.trace.sink(),
        ..ServerConfig::default()
    };
    server::serve(listener, config, net, stop)
        .await
        .with_context(|| format!("serving {}", args.dir.display()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::Cli;

    #[test]
    fn upload_flags_need_upload_and_auth_flags_need_auth() {
        assert!(Cli::try_parse_from(["sockit", "serve", "--overwrite"]).is_err());
        assert!(Cli::try_parse_from(["sockit", "serve", "--auth-writes-only"]).is_err());
        assert!(Cli::try_parse_from(["sockit", "serve", "--auth", "nocolon"]).is_err());
        assert!(Cli::try_parse_from(["sockit", "serve", "--status", "99"]).is_err());
        Cli::try_parse_from([
            "sockit",
            "serve",
            "dir",
            "--upload",
            "--overwrite",
            "--mkdir",
            "--auth",
            "a:b",
            "--auth-writes-only",
            "--max-upload",
            "10MiB",
            "--port",
            "0",
        ])
        .unwrap();
    }
}
