//! Our own stdout and stderr. Writes to stdout go through [`Stdout`], whose errors are typed,
//! so the binary can tell "our reader went away" (`| head`: a normal end) from every other
//! broken pipe, which is a real failure.

use std::io::{self, Write};

/// A failed write to our own stdout, with what was being written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutputError {
    /// Writing to stdout failed: closed by its reader, closed at launch, full, …
    #[error("writing {what} to stdout")]
    Write {
        /// What was being written (`the response body`).
        what: &'static str,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A binary body was not dumped onto a terminal.
    #[error(
        "binary body not shown on a terminal; use -o FILE to save it, or -o - to print it anyway"
    )]
    BinaryOnTerminal,
}

impl OutputError {
    /// Whether the reader of stdout closed it early (`sockit get … | head`): the one output
    /// error that is a normal end.
    pub(crate) fn is_closed_by_reader(&self) -> bool {
        matches!(self, OutputError::Write { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Unbuffered stdout: every write goes to the file descriptor at once (no line buffering
/// that would hold back a body until its next newline), and every error names `what`.
#[derive(Debug)]
pub(crate) struct Stdout {
    file: std::fs::File,
    what: &'static str,
}

impl Stdout {
    /// Stdout, for writing `what`.
    ///
    /// # Errors
    ///
    /// [`OutputError::Write`] when stdout was closed when sockit started (`>&-`).
    pub(crate) fn open(what: &'static str) -> Result<Self, OutputError> {
        use std::os::fd::AsFd;
        let closed = |source| OutputError::Write { what, source };
        if was_closed_at_launch() {
            return Err(closed(io::Error::from_raw_os_error(libc::EBADF)));
        }
        // Anything the std handle buffered goes first.
        io::stdout().flush().map_err(closed)?;
        let fd = io::stdout().as_fd().try_clone_to_owned().map_err(closed)?;
        Ok(Self {
            file: std::fs::File::from(fd),
            what,
        })
    }

    /// Writes all of `bytes`.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<(), OutputError> {
        self.file
            .write_all(bytes)
            .map_err(|source| OutputError::Write {
                what: self.what,
                source,
            })
    }

    /// The same stdout, now writing `what`.
    pub(crate) fn writing(self, what: &'static str) -> Self {
        Self { what, ..self }
    }

    /// The file, for a writer thread (its errors are wrapped with [`OutputError::Write`]).
    pub(crate) fn into_file(self) -> std::fs::File {
        self.file
    }
}

/// Writes `bytes` to stdout at once, as `what`.
///
/// # Errors
///
/// [`OutputError::Write`].
pub(crate) fn print(what: &'static str, bytes: &[u8]) -> Result<(), OutputError> {
    Stdout::open(what)?.write_all(bytes)
}

/// Async stdout whose write errors carry an [`OutputError`] naming `what` (inside the
/// `io::Error`, same kind), for library code that only passes `io::Error`s up: the command
/// gets it back with [`OutputError::from_io`] and reports a failed output as such.
#[derive(Debug)]
pub(crate) struct TaggedStdout {
    inner: tokio::io::Stdout,
    what: &'static str,
}

impl TaggedStdout {
    /// Stdout, for writing `what`.
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            inner: tokio::io::stdout(),
            what,
        }
    }

    fn tag<T>(&self, result: io::Result<T>) -> io::Result<T> {
        result.map_err(|source| {
            io::Error::new(
                source.kind(),
                OutputError::Write {
                    what: self.what,
                    source,
                },
            )
        })
    }
}

impl tokio::io::AsyncWrite for TaggedStdout {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let result = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_write(cx, buf));
        std::task::Poll::Ready(self.tag(result))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let result = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_flush(cx));
        std::task::Poll::Ready(self.tag(result))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let result = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_shutdown(cx));
        std::task::Poll::Ready(self.tag(result))
    }
}

impl OutputError {
    /// The [`OutputError`] a [`TaggedStdout`] put into `err`, or `err` unchanged.
    pub(crate) fn from_io(err: io::Error) -> Result<OutputError, io::Error> {
        if !err.get_ref().is_some_and(|e| e.is::<OutputError>()) {
            return Err(err);
        }
        let kind = err.kind();
        let inner = err.into_inner().expect("a custom error, checked above");
        inner
            .downcast::<OutputError>()
            .map(|output| *output)
            .map_err(|other| io::Error::new(kind, other))
    }
}

/// Stdout for a relay's received bytes: shutting it down closes our stdout for its reader,
/// so `sockit connect … | consumer` lets the consumer see EOF as soon as the peer is done,
/// even while our stdin is still being sent. (Rust keeps fd 1 open for the whole process:
/// closing means putting `/dev/null` over it, after everything written was flushed.)
#[derive(Debug)]
pub(crate) struct ClosingStdout {
    inner: tokio::io::Stdout,
    is_closed: bool,
}

impl ClosingStdout {
    /// Our stdout, not yet closed.
    pub(crate) fn new() -> Self {
        Self {
            inner: tokio::io::stdout(),
            is_closed: false,
        }
    }
}

impl tokio::io::AsyncWrite for ClosingStdout {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_flush(cx))?;
        if !self.is_closed {
            close_stdout()?;
            self.is_closed = true;
        }
        std::task::Poll::Ready(Ok(()))
    }
}

/// Closes fd 1 for its reader, keeping the descriptor itself valid (on `/dev/null`).
fn close_stdout() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let null = std::fs::File::options().write(true).open("/dev/null")?;
        nix::unistd::dup2_stdout(&null).map_err(io::Error::from)?;
    }
    Ok(())
}

/// Writes one line to stderr; a failure to do so has nowhere to be reported, and must not
/// panic as `eprintln!` would.
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr
        .write_fmt(line)
        .and_then(|()| stderr.write_all(b"\n"));
}

/// Writes `text` to stderr with no newline (a progress line redrawn in place); like [`say`],
/// a failure is ignored rather than a panic.
pub(crate) fn say_partial(text: std::fmt::Arguments<'_>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_fmt(text).and_then(|()| stderr.flush());
}

/// Whether stdout was closed when the process started (`>&-`). Output to a closed stdout
/// must fail like a write to a bad descriptor (curl: exit 23), not vanish.
///
/// The Rust runtime puts `/dev/null`, opened read-write, on a closed stdio descriptor
/// before `main`; a shell's `> /dev/null` opens it write-only. A daemon that points all
/// three descriptors at a read-write `/dev/null` (`daemon(3)`) meant them to be silent:
/// so a stdout like that counts as closed only when stderr is not one too.
pub(crate) fn was_closed_at_launch() -> bool {
    #[cfg(target_os = "linux")]
    {
        let null_read_write = |fd: u8| {
            const O_ACCMODE: u32 = 0o3;
            const O_RDWR: u32 = 0o2;
            let is_dev_null = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .is_ok_and(|p| p.as_os_str() == "/dev/null");
            let flags = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
                .ok()
                .and_then(|info| {
                    info.lines()
                        .find_map(|l| l.strip_prefix("flags:"))
                        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
                });
            is_dev_null && flags.is_some_and(|f| f & O_ACCMODE == O_RDWR)
        };
        null_read_write(1) && !null_read_write(2)
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}
