//! The `sockit` binary: parse arguments, set up logging and the runtime, run the command,
//! and turn the outcome into one line on stderr and an exit code.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use sockit::net::relay::RelayError;
use sockit::net::{FailureClass, classify, shutdown_signal};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    let runtime = match cli::runtime(cli::usable_cores()) {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let stop = CancellationToken::new();
    let result = runtime.block_on(async {
        let signal = shutdown_signal()?;
        let signal_stop = stop.clone();
        tokio::spawn(async move {
            signal.await;
            signal_stop.cancel();
        });
        cli.run(stop).await
    });
    // A read of stdin may still sit in a blocking thread; it must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("sockit={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .without_time()
        .with_target(false)
        .init();
}

/// One line on stderr with the cause chain, and the exit code for the failure class.
fn report(err: &anyhow::Error) -> ExitCode {
    if is_output_closed(err) {
        return ExitCode::SUCCESS;
    }
    if let Some(status) = err.downcast_ref::<cli::StatusError>() {
        eprintln!("error: {status}");
        return ExitCode::from(status.exit_code());
    }
    eprintln!("error: {}", sockit::net::error_chain(err.as_ref()));
    ExitCode::from(exit_code(classify(err.as_ref())))
}

/// Output piped into `head` and closed early is a normal end, not an error; a peer that
/// went away is not.
fn is_output_closed(err: &anyhow::Error) -> bool {
    for cause in err.chain() {
        if let Some(relay) = cause.downcast_ref::<RelayError>() {
            return relay.is_output_closed();
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::BrokenPipe;
        }
    }
    false
}

/// Exit codes follow curl's numbers, which scripts already know.
fn exit_code(class: FailureClass) -> u8 {
    match class {
        FailureClass::Resolve => 6,
        FailureClass::Connect => 7,
        FailureClass::Timeout => 28,
        FailureClass::Tls => 35,
        _ => 1,
    }
}
