//! `sockit bench`: load generators with latency percentiles.

use std::time::Duration;

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use sockit::bench::{Report, chat, echo};
use sockit::net::{DEFAULT_CONNECT_HOST, HostPort};

use crate::cli::args::{parse_bytes, parse_duration};

/// Measure a server: requests or round trips per second, latency percentiles, errors.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    mode: BenchMode,
    /// Print the result as JSON (for scripts)
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum BenchMode {
    /// Load an echo server: round trips (-c, -n, --size), one --stream, or --udp datagrams
    #[command(after_help = "Examples:
  sockit bench echo :9000 -c 1000 -n 100 --size 64     round trips/s, p50/p99
  sockit bench echo :9000 --stream 512MiB              full-duplex MB/s
  sockit bench echo :9000 --udp -n 200000 --window 32  datagrams/s, lost, boundaries")]
    Echo(EchoArgs),
    /// Load a chat server: N clients in a room, K senders; lost, duplicated, reordered lines
    #[command(after_help = "Examples:
  sockit bench chat :7777 --clients 100 --senders 10 --messages 1000        flat out
  sockit bench chat :7777 --clients 500 --rate 100 --messages 300           paced p50/p99
  sockit bench chat :7777 --json                                            for scripts")]
    Chat(ChatBenchArgs),
}

#[derive(Debug, Args)]
struct ChatBenchArgs {
    /// The chat server: HOST:PORT, [IPv6]:PORT, :PORT or PORT
    addr: HostPort,
    /// Clients connected at once (senders included)
    #[arg(short = 'c', long, default_value_t = 100)]
    clients: usize,
    /// How many clients send
    #[arg(short = 's', long, default_value_t = 10)]
    senders: usize,
    /// Lines per sender
    #[arg(short = 'n', long, default_value_t = 1000)]
    messages: u64,
    /// Lines per second per sender (0: flat out)
    #[arg(short = 'r', long, default_value_t = 0.0)]
    rate: f64,
    /// Bytes per line (at least 46: start mark and token)
    #[arg(long, default_value = "64", value_parser = parse_bytes)]
    size: usize,
    /// A line every client sends first, e.g. "PASS secret"
    #[arg(long, value_name = "LINE")]
    greeting: Option<String>,
    /// Give up (and report what arrived) after this long
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    limit: Duration,
}

#[derive(Debug, Args)]
struct EchoArgs {
    /// The echo server: HOST:PORT, [IPv6]:PORT, :PORT or PORT
    addr: HostPort,
    /// Concurrent connections
    #[arg(short = 'c', long, default_value_t = 100)]
    connections: usize,
    /// Round trips per connection (with --udp: datagrams in all)
    #[arg(short = 'n', long, default_value_t = 100)]
    round_trips: u64,
    /// Bytes per message or datagram
    #[arg(long, default_value = "64", value_parser = parse_bytes)]
    size: usize,
    /// Instead of round trips, push this many bytes through one connection, both ways at once
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, conflicts_with = "udp")]
    stream: Option<usize>,
    /// Use UDP datagrams
    #[arg(short, long)]
    udp: bool,
    /// UDP datagrams in flight at once
    #[arg(long, default_value_t = 32, requires = "udp")]
    window: usize,
    /// Give up (and fail) if the run takes longer than this
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    limit: Duration,
}

pub(crate) async fn run(args: BenchArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let report = match args.mode {
        BenchMode::Echo(echo_args) => {
            let addr = echo_args.addr.resolve(DEFAULT_CONNECT_HOST).await?[0];
            let load = if let Some(bytes) = echo_args.stream {
                echo::EchoLoad::Stream {
                    bytes: bytes as u64,
                }
            } else if echo_args.udp {
                echo::EchoLoad::Udp {
                    datagrams: echo_args.round_trips,
                    window: echo_args.window,
                    size: echo_args.size,
                }
            } else {
                echo::EchoLoad::RoundTrips {
                    connections: echo_args.connections,
                    round_trips: echo_args.round_trips,
                    size: echo_args.size,
                }
            };
            tokio::select! {
                report = echo::run(addr, &load, echo_args.limit) => report?,
                _ = stop.cancelled() => anyhow::bail!("interrupted"),
            }
        }
        BenchMode::Chat(chat_args) => {
            let addr = chat_args.addr.resolve(DEFAULT_CONNECT_HOST).await?[0];
            let load = chat::ChatLoad {
                clients: chat_args.clients,
                senders: chat_args.senders,
                messages: chat_args.messages,
                rate: chat_args.rate,
                size: chat_args.size,
                greeting: chat_args.greeting,
                ..chat::ChatLoad::default()
            };
            tokio::select! {
                report = chat::run(addr, &load, chat_args.limit) => report?,
                _ = stop.cancelled() => anyhow::bail!("interrupted"),
            }
        }
    };
    print_report(&report, args.json)
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
