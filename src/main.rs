//! The `sockit` binary: parse arguments, set up logging and the runtime, run the command,
//! and turn the outcome into one line on stderr and an exit code.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use sockit::chat::client::JoinError;
use sockit::http::download::DownloadError;
use sockit::net::relay::RelayError;
use sockit::net::{FailureClass, classify, shutdown_signal};
use sockit::transfer::RecvError;

use crate::cli::output::{self, OutputError, say};

/// 128 + SIGINT, what a shell reports for a program killed by Ctrl-C.
const EXIT_INTERRUPTED: u8 = 130;

/// curl's "failure writing output to destination".
const EXIT_WRITE_FAILED: u8 = 23;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return report_clap(&err),
    };
    init_logging(cli.verbose);
    let runtime = match cli::runtime(cli::usable_cores()) {
        Ok(rt) => rt,
        Err(err) => {
            say(format_args!("error: cannot start the async runtime: {err}"));
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

/// `--help` and `--version` go to stdout (exit 0), usage errors to stderr (exit 2); a help
/// text that cannot be written is a write failure like any other.
fn report_clap(err: &clap::Error) -> ExitCode {
    let code = u8::try_from(err.exit_code()).unwrap_or(2);
    if err.use_stderr() {
        // A usage error: its exit code says it even if stderr is gone.
        let _ = err.print();
        return ExitCode::from(code);
    }
    if std::io::stdout().is_terminal() {
        // Styled, as clap prints it.
        let _ = err.print();
        return ExitCode::from(code);
    }
    let text = err.render().to_string();
    let what = match err.kind() {
        clap::error::ErrorKind::DisplayVersion => "the version",
        _ => "the help text",
    };
    match output::print(what, text.as_bytes()) {
        Ok(()) => ExitCode::from(code),
        Err(err) => report(&err.into()),
    }
}

/// One line on stderr with the cause chain, the hint a command left, and the exit code.
fn report(err: &anyhow::Error) -> ExitCode {
    let code = report_error(err);
    if let Some(hint) = cli::hints::take() {
        say(format_args!("hint: {hint}"));
    }
    code
}

/// One line on stderr with the cause chain, and the exit code for the failure class.
fn report_error(err: &anyhow::Error) -> ExitCode {
    if let Some(output) = find::<OutputError>(err) {
        if output.is_closed_by_reader() {
            // `sockit get … | head`: the reader has all it wanted.
            return ExitCode::SUCCESS;
        }
        say(format_args!(
            "error: {}",
            sockit::net::error_chain(err.as_ref())
        ));
        return ExitCode::from(EXIT_WRITE_FAILED);
    }
    if let Some(status) = err.downcast_ref::<cli::StatusError>() {
        say(format_args!("error: {status}"));
        return ExitCode::from(status.exit_code());
    }
    if find::<cli::Interrupted>(err).is_some() {
        // Ctrl-C needs no message; the shell shows it.
        return ExitCode::from(EXIT_INTERRUPTED);
    }
    if let Some(RecvError::Stdout(source)) = find::<RecvError>(err) {
        if source.kind() == std::io::ErrorKind::BrokenPipe {
            return ExitCode::SUCCESS;
        }
        say(format_args!(
            "error: {}",
            sockit::net::error_chain(err.as_ref())
        ));
        return ExitCode::from(EXIT_WRITE_FAILED);
    }
    if matches!(find::<RecvError>(err), Some(RecvError::Interrupted)) {
        say(format_args!("{}", sockit::net::error_chain(err.as_ref())));
        return ExitCode::from(EXIT_INTERRUPTED);
    }
    if let Some(join) = find::<JoinError>(err) {
        say(format_args!(
            "error: {}",
            sockit::net::error_chain(err.as_ref())
        ));
        if let Some(hint) = join.hint() {
            say(format_args!("hint: {hint}"));
        }
        return ExitCode::from(join_exit_code(join));
    }
    if let Some(relay) = find::<RelayError>(err) {
        if relay.is_output_closed() {
            return ExitCode::SUCCESS;
        }
    }
    say(format_args!(
        "error: {}",
        sockit::net::error_chain(err.as_ref())
    ));
    if matches!(find::<RelayError>(err), Some(RelayError::Output(_))) {
        return ExitCode::from(EXIT_WRITE_FAILED);
    }
    if matches!(find::<DownloadError>(err), Some(DownloadError::File { .. })) {
        return ExitCode::from(EXIT_WRITE_FAILED);
    }
    if find::<cli::UsageError>(err).is_some() {
        return ExitCode::from(2);
    }
    ExitCode::from(exit_code(classify(err.as_ref())))
}

/// The first error of type `E` in the chain.
fn find<E: std::error::Error + 'static>(err: &anyhow::Error) -> Option<&E> {
    err.chain().find_map(|cause| cause.downcast_ref::<E>())
}

/// A chat session the server refused or ended: curl's numbers where curl has one (README).
fn join_exit_code(err: &JoinError) -> u8 {
    match err {
        JoinError::SpeaksTls => 35,
        JoinError::PasswordRequired | JoinError::WrongPassword => 67,
        JoinError::NickTaken(_) => 73,
        JoinError::NoGoodbye(_) => 28,
        JoinError::Closed { .. } | JoinError::Io(_) => 56,
    }
}

/// Exit codes follow curl's numbers, which scripts already know.
fn exit_code(class: FailureClass) -> u8 {
    match class {
        FailureClass::Resolve => 6,
        FailureClass::Connect => 7,
        FailureClass::Timeout => 28,
        FailureClass::Tls => 35,
        // curl's numbers: couldn't resolve proxy, proxy handshake error, CONNECT refused.
        FailureClass::ProxyResolve => 5,
        FailureClass::Proxy => 97,
        FailureClass::ProxyTunnel => 56,
        _ => 1,
    }
}
