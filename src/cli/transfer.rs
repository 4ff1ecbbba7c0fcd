//! `sockit send` and `sockit recv`: arguments, the printed code, progress display.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use sockit::net::tls::ServerIdentity;
use sockit::net::{HostPort, ServerConfig, bind_tcp};
use sockit::transfer::{
    Code, Offer, Progress, RecvConfig, SendConfig, Sender, Token, receive, receive_raw,
    serve_offer, serve_raw, shown,
};

use crate::cli::UsageError;
use crate::cli::args::{AddrWord, RouteArgs, announce, kept_identity, parse_bytes, parse_duration};
use crate::cli::output;

/// Offer files and directories over HTTPS with a pinned certificate; prints the recv command.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  sockit send photo.jpg                     prints: sockit recv 'sockit://IP:7070/…#sha256:…'
  sockit send docs/ notes.txt --once        exit after the first complete receive
  sockit send --raw image.png --port 9000   classic mode: every client gets the bytes (nc IP 9000 > f)")]
pub(crate) struct SendArgs {
    /// Files and directories to offer
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Port to listen on; 0 picks a free one
    #[arg(short, long, default_value_t = 7070)]
    port: u16,
    /// Address to bind; the transfer is protected by TLS and a random token
    #[arg(short, long, value_name = "IP", default_value = "0.0.0.0")]
    bind: String,
    /// Host or IP to write in the printed code (default: this machine's address)
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Exit after the first complete receive (reported by sockit recv; with --raw, the first client)
    #[arg(long)]
    once: bool,
    /// Receivers (distinct addresses) served at once; others get 503
    #[arg(long, value_name = "N", default_value_t = 8)]
    max_receivers: usize,
    /// Send at most this many bytes per second per file (e.g. 10MiB)
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    limit_rate: Option<usize>,
    /// Classic mode: every TCP client gets the file's bytes, then EOF (no TLS, no checks)
    #[arg(long)]
    raw: bool,
    /// Keep the self-signed certificate and key in FILE: made on the first run (mode 0600),
    /// loaded on later ones, so the code's #sha256: fingerprint survives restarts
    #[arg(long = "identity", value_name = "FILE", conflicts_with = "raw")]
    identity_file: Option<PathBuf>,
}

/// Fetch what `sockit send` offers: verified, resumable, into a directory.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  sockit recv 'sockit://192.0.2.7:7070/4f2c…#sha256:9a…'          into the current directory
  sockit recv 'sockit://…' -o downloads                           run it again to resume
  sockit recv --raw 192.0.2.7:9000 -o image.png                   classic mode (or: nc … > f)")]
pub(crate) struct RecvArgs {
    /// The code printed by sockit send (with --raw: HOST:PORT)
    #[arg(value_name = "CODE")]
    code: String,
    /// With --raw, the port when CODE is a bare HOST (nc style: recv --raw HOST PORT)
    #[arg(value_name = "PORT", requires = "raw")]
    port: Option<u16>,
    /// Directory to write into (default: .); with --raw, the file to write (default, or -:
    /// stdout)
    #[arg(short, long, value_name = "DIR|FILE")]
    output: Option<PathBuf>,
    /// Replace existing files whose content differs (otherwise they are refused)
    #[arg(long)]
    overwrite: bool,
    /// Classic mode: read the bytes a raw sender gives until EOF
    #[arg(long)]
    raw: bool,
    /// Files fetched at once
    #[arg(long, value_name = "N", default_value_t = 4)]
    parallel: usize,
    /// Limit for connecting and the TLS handshake
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
    #[command(flatten)]
    route: RouteArgs,
}

pub(crate) async fn send(args: SendArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let bind = HostPort::new(Some(args.bind.clone()), args.port).bind_addr()?;
    if args.raw {
        return send_raw(args, bind, stop).await;
    }
    let paths = args.paths.clone();
    let offer = tokio::task::spawn_blocking(move || Offer::collect(&paths))
        .await
        .context("hashing the files")??;
    let listener = bind_tcp(bind)?;
    let local = listener.local_addr()?;
    let host = args
        .host
        .clone()
        .unwrap_or_else(|| advertised_ip(local).to_string());
    let names = std::slice::from_ref(&host);
    let identity = match &args.identity_file {
        Some(file) => kept_identity(file, names, sockit::http::server::ALPN)?,
        None => ServerIdentity::self_signed(names, sockit::http::server::ALPN)?,
    };
    let code = Code {
        addr: HostPort::new(Some(host), local.port()),
        token: Token::random()?,
        fingerprint: identity.fingerprint,
    };
    announce("send", local, None);
    output::say(format_args!("sockit recv '{code}'"));
    let manifest = &offer.manifest;
    match manifest.files.as_slice() {
        [only] => {
            let name = only.path.rsplit('/').next().unwrap_or(&only.path);
            output::say(format_args!(
                "curl -k -o {} {}",
                quoted(name),
                quoted(&code.https_url("f/0"))
            ));
        }
        files => output::say(format_args!(
            "curl -k {}   (lists {} files; file N is at …/f/N)",
            quoted(&code.https_url("manifest")),
            files.len()
        )),
    }
    output::say(format_args!(
        "offering {} file(s), {} bytes",
        manifest.files.len(),
        manifest.total_bytes()
    ));
    let config = SendConfig {
        max_receivers: args.max_receivers,
        limit_rate: args.limit_rate.map(|r| r as u64),
        ..SendConfig::default()
    };
    let server = ServerConfig {
        tls: Some(identity.config),
        ..config.server.clone()
    };
    let sender = Arc::new(Sender::new(offer, code.token, &config));
    let serving = stop.child_token();
    let reporter = tokio::spawn(report_receivers(sender.clone(), args.once, serving.clone()));
    serve_offer(listener, sender, server, serving.clone()).await;
    serving.cancel();
    let _ = reporter.await;
    Ok(())
}

async fn send_raw(args: SendArgs, bind: SocketAddr, stop: CancellationToken) -> anyhow::Result<()> {
    let [path] = args.paths.as_slice() else {
        anyhow::bail!("--raw sends exactly one file");
    };
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!("--raw sends one regular file; {} is not", path.display());
    }
    let listener = bind_tcp(bind)?;
    let local = listener.local_addr()?;
    let host = args
        .host
        .clone()
        .unwrap_or_else(|| advertised_ip(local).to_string());
    let target = HostPort::new(Some(host), local.port());
    announce("send", local, None);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    output::say(format_args!(
        "sockit recv --raw {target} -o {}   (or: nc {} {} > {})",
        quoted(&name),
        target.host().unwrap_or_default(),
        target.port(),
        quoted(&name)
    ));
    output::say(format_args!(
        "raw mode: {} bytes to every client, no encryption, no verification",
        meta.len()
    ));
    let (served, mut count) = tokio::sync::watch::channel(0u32);
    let serving = stop.child_token();
    if args.once {
        let serving = serving.clone();
        tokio::spawn(async move {
            if count.wait_for(|&n| n >= 1).await.is_ok() {
                serving.cancel();
            }
        });
    }
    let server = ServerConfig {
        max_conns: 256,
        ..ServerConfig::default()
    };
    serve_raw(listener, path.clone(), server, served, serving).await;
    Ok(())
}

/// The address to print when bound to all interfaces: the one this machine would use to
/// reach others. A UDP "connect" sends no packet; it only asks the routing table.
fn advertised_ip(bound: SocketAddr) -> IpAddr {
    if !bound.ip().is_unspecified() {
        return bound.ip();
    }
    let (any, probe): (SocketAddr, SocketAddr) = if bound.is_ipv4() {
        (([0, 0, 0, 0], 0).into(), ([192, 0, 2, 1], 9).into())
    } else {
        (
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            (std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 9).into(),
        )
    };
    std::net::UdpSocket::bind(any)
        .and_then(|socket| {
            socket.connect(probe)?;
            socket.local_addr()
        })
        .map(|addr| addr.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(if bound.is_ipv4() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        })
}

/// Single-quotes `text` for a POSIX shell.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn is_tty() -> bool {
    std::io::stderr().is_terminal()
}

fn byte_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Progress per receiver: a bar each on a TTY, a line per finished receive otherwise.
/// Cancels `serving` after the first complete receive when `once`.
async fn report_receivers(sender: Arc<Sender>, once: bool, serving: CancellationToken) {
    let total = sender.manifest().total_bytes();
    let bars = is_tty().then(MultiProgress::new);
    let mut shown_bars: Vec<(IpAddr, ProgressBar)> = Vec::new();
    let mut completed = sender.completed();
    let mut reported = std::collections::HashMap::new();
    loop {
        let finished = tokio::select! {
            _ = serving.cancelled() => true,
            _ = tokio::time::sleep(Duration::from_millis(200)) => false,
            changed = completed.changed() => changed.is_err(),
        };
        for (ip, stats) in sender.peers() {
            if let Some(bars) = &bars {
                let bar = match shown_bars.iter().find(|(seen, _)| *seen == ip) {
                    Some((_, bar)) => bar.clone(),
                    None => {
                        let bar = bars.add(ProgressBar::new(total));
                        bar.set_style(byte_style(
                            "{prefix} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec}",
                        ));
                        bar.set_prefix(ip.to_string());
                        shown_bars.push((ip, bar.clone()));
                        bar
                    }
                };
                bar.set_position(stats.bytes_sent.min(total));
            }
            let (started, seen) = reported.entry(ip).or_insert((0, 0));
            if stats.started > *started {
                *started = stats.started;
                say(&bars, format!("{ip} started receiving"));
            }
            if stats.completed > *seen {
                *seen = stats.completed;
                say(
                    &bars,
                    format!(
                        "{ip} received everything ({} bytes sent to it so far)",
                        stats.bytes_sent
                    ),
                );
                if once {
                    serving.cancel();
                }
            }
        }
        if finished {
            break;
        }
    }
    for (_, bar) in shown_bars {
        bar.abandon();
    }
}

/// A line on stderr, above the progress bars when there are some.
fn say(bars: &Option<MultiProgress>, line: String) {
    match bars {
        Some(bars) => {
            let _ = bars.println(line);
        }
        None => output::say(format_args!("{line}")),
    }
}

pub(crate) async fn recv(args: RecvArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let progress = Arc::new(Progress::default());
    let began = Instant::now();
    let display = show_progress(progress.clone(), args.raw);
    if args.raw {
        let addr = args
            .code
            .parse::<AddrWord>()
            .map_err(|e| UsageError(e.into()))?
            .with_port(args.port)?;
        let result = receive_raw(
            &addr,
            args.output.as_deref().filter(|p| p.as_os_str() != "-"),
            args.overwrite,
            &progress,
            args.connect_timeout,
            &args.route.dial_options(&addr)?,
            stop,
        )
        .await;
        display.finish();
        let bytes = result?;
        output::say(format_args!(
            "sockit recv: {bytes} bytes in {:.2}s ({})",
            began.elapsed().as_secs_f64(),
            rate(bytes, began.elapsed())
        ));
        return Ok(());
    }
    let code: Code = args.code.parse()?;
    let out_dir = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
    let route = args.route.dial_options(&code.addr)?;
    let config = RecvConfig {
        out_dir: out_dir.clone(),
        overwrite: args.overwrite,
        parallel: args.parallel,
        connect_timeout: args.connect_timeout,
        dial: route.clone(),
        ..RecvConfig::default()
    };
    let result = receive(&code, &config, &progress, stop).await;
    display.finish();
    let outcome = match result.with_context(|| format!("receiving from {}", code.addr)) {
        Ok(outcome) => outcome,
        Err(err) => {
            let name = code.addr.host_or("localhost").to_owned();
            crate::cli::hints::after_failure(
                &err,
                &code.addr,
                &route,
                &name,
                true,
                "nothing sockit send started listens there; check the code it printed",
                None,
            )
            .await;
            return Err(err);
        }
    };
    output::say(format_args!(
        "sockit recv: {} file(s), {} bytes into {} — fetched {} bytes, {} resumed, {} skipped, verified, in {:.2}s ({})",
        outcome.files,
        outcome.bytes,
        shown(&out_dir.display().to_string()),
        outcome.fetched,
        outcome.resumed,
        outcome.skipped,
        began.elapsed().as_secs_f64(),
        rate(outcome.fetched, began.elapsed())
    ));
    Ok(())
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    let per_second = bytes as f64 / elapsed.as_secs_f64().max(1e-9);
    format!("{:.1} MB/s", per_second / 1e6)
}

/// A progress bar on a TTY (bytes, rate, ETA; a spinner when the size is unknown).
struct Display {
    bar: Option<ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Display {
    fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn show_progress(progress: Arc<Progress>, size_unknown: bool) -> Display {
    if !is_tty() {
        return Display {
            bar: None,
            task: None,
        };
    }
    let bar = if size_unknown {
        let bar = ProgressBar::new_spinner();
        bar.set_style(byte_style(
            "{spinner} {bytes} {binary_bytes_per_sec} {elapsed}",
        ));
        bar
    } else {
        let bar = ProgressBar::new(0);
        bar.set_style(byte_style(
            "{wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        ));
        bar
    };
    let task = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                if !size_unknown {
                    bar.set_length(progress.total());
                }
                bar.set_position(progress.present());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    Display {
        bar: Some(bar),
        task: Some(task),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quoted("it's"), r"'it'\''s'");
    }

    #[test]
    fn bound_address_is_advertised_unless_unspecified() {
        let addr: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        assert_eq!(advertised_ip(addr), addr.ip());
        assert!(!advertised_ip("0.0.0.0:7070".parse().unwrap()).is_unspecified());
    }
}
