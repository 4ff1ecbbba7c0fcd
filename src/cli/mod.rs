//! The command line: clap structs and one `run` per command. No protocol logic lives here;
//! each command turns its arguments into library configs and calls the library.

mod args;
mod bench;
mod chat;
mod connect;
pub(crate) mod hints;
mod http;
mod listen;
pub(crate) mod output;
mod transfer;

pub(crate) use http::StatusError;

/// A command line that makes no sense (bad URL, bad request item): exit 2, like clap's own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) Box<dyn std::error::Error + Send + Sync + 'static>);
mod serve;
mod share;

/// A client stopped by Ctrl-C or SIGTERM before its job was done: exit 130, as a shell
/// reports for nc or curl killed by the signal, so that `sockit connect … && next` stops.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub(crate) struct Interrupted;

use clap::{CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Cores this process may use (a `taskset` mask counts).
pub(crate) fn usable_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `command` as a task of its own rather than as the future the runtime blocks on: the
/// one-thread runtime polls that future only between rounds of up to 61 ready tasks, so a
/// connection task that is ready all along (a download) would read megabytes ahead of the
/// command that takes the bytes. As a task, the command takes its turn after each of them.
async fn as_task<T: Send + 'static>(
    command: impl Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    match tokio::spawn(command).await {
        Ok(result) => result,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => Err(err.into()),
    }
}

/// A runtime with `threads` workers; with one, the single-threaded scheduler: no
/// cross-thread wake-ups, and ready tasks run in the order they became ready, which keeps
/// tail latency low on a pinned process or a small container.
pub(crate) fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// One fast, safe binary for TCP, UDP and TLS: connect, listen, echo, greet, measure.
#[derive(Debug, Parser)]
#[command(name = "sockit", version, about, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 ok · 1 error · 2 usage · 3/4/5 HTTP 3xx/4xx/5xx (--check-status) · 6 could not resolve host · \
7 could not connect · 23 cannot write the output · 28 timed out · 35 TLS failure"
)]
pub(crate) struct Cli {
    /// Say what goes over the wire (-v connections, -vv every message); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Full-duplex TCP/UDP/TLS client (like nc, ncat, telnet)
    Connect(connect::ConnectArgs),
    /// TCP/UDP server: one peer, --keep-open, --echo or --greet (like nc -l, ncat -lk)
    Listen(listen::ListenArgs),
    /// Multi-user chat: `chat serve` (nc and telnet can join) and `chat join`
    Chat(chat::ChatArgs),
    #[command(flatten)]
    Http(Box<http::HttpCommand>),
    /// HTTP file server: listings, ranges, caching, uploads (like python3 -m http.server)
    Serve(serve::ServeArgs),
    /// Offer files over HTTPS with a pinned certificate; prints the recv command
    Send(transfer::SendArgs),
    /// Fetch what sockit send offers: verified, resumable
    Recv(transfer::RecvArgs),
    /// Load generators for echo, HTTP and chat servers, with latency percentiles (like wrk)
    Bench(bench::BenchArgs),
    /// Print shell completions: sockit completions bash > /etc/bash_completion.d/sockit
    Completions {
        /// The shell to write completions for
        shell: clap_complete::Shell,
    },
}

impl Cli {
    /// Runs the chosen command until it ends or `stop` is cancelled.
    pub(crate) async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        match self.command {
            Command::Connect(args) => connect::run(args, self.verbose, stop).await,
            Command::Listen(args) => listen::run(args, stop).await,
            Command::Send(args) => transfer::send(args, stop).await,
            Command::Recv(args) => as_task(transfer::recv(args, stop)).await,
            Command::Bench(args) => bench::run(args, stop).await,
            Command::Http(command) => as_task(http::run(*command, self.verbose, stop)).await,
            Command::Serve(args) => serve::run(args, stop).await,
            Command::Chat(args) => chat::run(args, stop).await,
            Command::Completions { shell } => {
                // Into memory first: clap_complete panics when its writer fails.
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "sockit", &mut script);
                Ok(output::print("the completion script", &script)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_each_address_form_and_rejects_garbage() {
        for addr in ["example.com:80", "[::1]:80", ":80", "80"] {
            Cli::try_parse_from(["sockit", "connect", addr]).unwrap();
        }
        Cli::try_parse_from(["sockit", "connect", "example.com", "80"]).unwrap();
        Cli::try_parse_from(["sockit", "connect", "-z", "example.com", "1-1024,8080"]).unwrap();
        let err = Cli::try_parse_from(["sockit", "connect", "no pe"]).unwrap_err();
        assert!(err.to_string().contains("spaces"), "{err}");
        let err = Cli::try_parse_from(["sockit", "connect", "http://x/"]).unwrap_err();
        assert!(err.to_string().contains("URLs are not addresses"), "{err}");
    }

    #[test]
    fn conflicting_flags_are_refused() {
        assert!(Cli::try_parse_from(["sockit", "connect", "--udp", "--tls", ":1"]).is_err());
        assert!(Cli::try_parse_from(["sockit", "listen", "--echo", "--greet", "x"]).is_err());
        assert!(Cli::try_parse_from(["sockit", "listen", "--cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from(["sockit", "connect", "--pin", "sha256:00", ":1"]).is_err());
        assert!(Cli::try_parse_from(["sockit", "connect", "-z", "-u", "x", "1"]).is_err());
        assert!(Cli::try_parse_from(["sockit", "connect", "--json", "x", "1"]).is_err());
    }
}
