//! The receiving side: pin the sender's certificate, fetch and check the manifest, plan every
//! file against what is already on disk (skip, resume, refuse), then fetch a few files at a
//! time into `NAME.part`, verify BLAKE3 and rename. All HTTP goes through
//! [`crate::http::Client`], with the certificate pinned and without decompression, so the
//! bytes counted are the bytes of the files.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, header};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::http::part_file::{PartFile, part_path};
use crate::http::{Client, ClientConfig, HttpError, HttpVersions, Response};
use crate::net::proxy::ProxyPolicy;
use crate::net::tls::Verify;
use crate::net::{DialOptions, NetError};
use crate::transfer::code::Code;
use crate::transfer::manifest::{
    Digest, Entry, MAX_MANIFEST_BYTES, Manifest, ManifestError, shown,
};

/// Options of a receiver.
#[derive(Debug, Clone)]
pub struct RecvConfig {
    /// Directory the files land in (created if missing). Nothing is written outside it.
    pub out_dir: PathBuf,
    /// Replace existing files whose content differs, instead of refusing.
    pub overwrite: bool,
    /// Files fetched at once: streams of one HTTP/2 connection when the sender speaks
    /// HTTP/2 (ALPN `h2`), else one HTTP/1.1 connection each.
    pub parallel: usize,
    /// Limit for connecting and the TLS handshake.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response.
    pub idle_timeout: Duration,
    /// The route to the sender (proxy, source address, …).
    pub dial: DialOptions,
}

impl Default for RecvConfig {
    fn default() -> Self {
        Self {
            out_dir: PathBuf::from("."),
            overwrite: false,
            parallel: 4,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            dial: DialOptions::default(),
        }
    }
}

/// Byte counters a progress display can read while a receive runs.
#[derive(Debug, Default)]
pub struct Progress {
    total: AtomicU64,
    present: AtomicU64,
    fetched: AtomicU64,
}

impl Progress {
    /// Bytes of the whole transfer (0 until the manifest arrived, or unknown in raw mode).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Bytes on disk so far: skipped files, resumed prefixes and fetched bytes.
    pub fn present(&self) -> u64 {
        self.present.load(Ordering::Relaxed)
    }

    /// Bytes that came over the network.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    pub(crate) fn add_fetched(&self, n: u64) {
        self.fetched.fetch_add(n, Ordering::Relaxed);
        self.present.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a finished receive did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Files in the manifest.
    pub files: usize,
    /// Files already present with the right content.
    pub skipped: usize,
    /// Files continued from a `.part`.
    pub resumed: usize,
    /// Bytes of all files.
    pub bytes: u64,
    /// Bytes that came over the network.
    pub fetched: u64,
}

/// Why a receive failed.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// Connecting or the TLS handshake failed (a wrong fingerprint lands here).
    #[error("{0}")]
    Net(#[from] NetError),
    /// The HTTP exchange broke.
    #[error("{what}")]
    Http {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The sender answered with an unexpected status.
    #[error("{what}: the sender answered {status}")]
    Status {
        /// What was asked for.
        what: String,
        /// The answer.
        status: StatusCode,
    },
    /// The manifest was refused.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Reading or writing a local file failed.
    #[error("{}", path.display())]
    Io {
        /// The local path.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Writing the received bytes to our stdout failed (`recv --raw` without `-o`).
    #[error("writing the received bytes to stdout")]
    Stdout(#[source] io::Error),
    /// Reading from the sender failed (the connection broke).
    #[error("receiving from the sender")]
    Receive(#[source] io::Error),
    /// A symlink or another non-directory is in the way of a path.
    #[error("refusing to write {path}: {reason}")]
    Unsafe {
        /// The relative path, neutralised.
        path: String,
        /// What is in the way.
        reason: &'static str,
    },
    /// A different file is already there.
    #[error("{path} already exists with different content (use --overwrite to replace it)")]
    Exists {
        /// The relative path, neutralised.
        path: String,
    },
    /// The bytes received do not hash to the manifest's BLAKE3.
    #[error(
        "{path}: BLAKE3 mismatch (the file changed on the sender or was tampered with); nothing was kept"
    )]
    Mismatch {
        /// The relative path, neutralised.
        path: String,
    },
    /// The sender sent fewer or more bytes than the manifest said.
    #[error("{path}: got {got} bytes, expected {want}; run again to resume")]
    Size {
        /// The relative path, neutralised.
        path: String,
        /// Bytes now in the `.part` file.
        got: u64,
        /// Size from the manifest.
        want: u64,
    },
    /// No bytes for longer than the idle timeout.
    #[error("timed out after {}s: {what}", after.as_secs_f64())]
    Timeout {
        /// What was awaited.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// Several files failed; the first failure is the source.
    #[error("{failed} of {files} files failed")]
    Incomplete {
        /// How many failed.
        failed: usize,
        /// Files in the transfer.
        files: usize,
        /// The first failure.
        #[source]
        first: Box<RecvError>,
    },
    /// Stopped by Ctrl-C.
    #[error("interrupted; run the same command again to resume")]
    Interrupted,
}

/// Most bytes handed to the writer thread at once, and batches queued for it before receiving
/// waits: one wake-up of the thread per batch, while the bytes in flight (about 384 KiB) stay
/// small enough to be written and hashed from the CPU's cache, not fetched again from memory.
const BATCH_BYTES: usize = 128 * 1024;
const WRITER_BATCHES: usize = 2;

/// Bytes per write to the file when the writer hashes, each piece hashed right after it is
/// written (still in cache). Larger writes make the page cache take larger folios, which on
/// the VMs measured (Linux 6.18, ext4) cost up to three times as much kernel time per byte,
/// and only sometimes: `dd bs=16K` of 1 GiB took 1.1–1.3 s each time, `bs=32K`/`64K`/`128K`
/// anywhere from 0.6 to 4.3 s. A writer that does not hash (`--raw`) writes each piece whole:
/// split into 16 KiB writes, a 1 GiB `--raw` receive took 1.31–1.79 s against 0.86–1.74 s
/// with each piece written whole (4 runs each, alternating).
const FILE_WRITE_BYTES: usize = 16 * 1024;

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RecvError + '_ {
    move |source| RecvError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An HTTP failure as a receive error: connection and TLS failures (a wrong fingerprint)
/// stay [`RecvError::Net`], a body that stalls is a [`RecvError::Timeout`].
fn http_error(what: String, idle: Duration) -> impl FnOnce(HttpError) -> RecvError {
    move |error| match error {
        HttpError::Net(net) => RecvError::Net(net),
        HttpError::Body(io) if io.kind() == io::ErrorKind::TimedOut => {
            RecvError::Timeout { what, after: idle }
        }
        other => RecvError::Http {
            what,
            source: Box::new(other),
        },
    }
}

/// The sender's routes below its token, over one client that pins its certificate and
/// offers HTTP/2 and HTTP/1.1: with HTTP/2, every file is a stream of one connection.
#[derive(Clone)]
struct Remote {
    client: Client,
    code: Code,
    idle_timeout: Duration,
}

impl Remote {
    fn new(code: &Code, config: &RecvConfig) -> Self {
        let client = Client::new(ClientConfig {
            connect_timeout: config.connect_timeout,
            read_timeout: Some(config.idle_timeout),
            verify: Verify::Pin(code.fingerprint),
            follow_redirects: false,
            decompress: false,
            versions: HttpVersions::Negotiate,
            proxy: ProxyPolicy::fixed(config.dial.proxy.clone()),
            dial: config.dial.clone(),
            ..ClientConfig::default()
        });
        Self {
            client,
            code: code.clone(),
            idle_timeout: config.idle_timeout,
        }
    }

    /// Sends `method` to `route`, from byte `from` on when given, and waits for the head.
    async fn request(
        &self,
        method: Method,
        route: &str,
        from: Option<u64>,
    ) -> Result<Response, RecvError> {
        let mut request = self.client.request(method, &self.code.https_url(route));
        if let Some(from) = from {
            request = request.header(header::RANGE.as_str(), &format!("bytes={from}-"));
        }
        request
            .send()
            .await
            .map_err(http_error(format!("requesting {route}"), self.idle_timeout))
    }

    async fn manifest(&self) -> Result<Manifest, RecvError> {
        let mut response = self.request(Method::GET, "manifest", None).await?;
        if response.status() != StatusCode::OK {
            return Err(RecvError::Status {
                what: "fetching the manifest".into(),
                status: response.status(),
            });
        }
        let too_large = |n: u64| n > MAX_MANIFEST_BYTES as u64;
        if response.content_length().is_some_and(too_large) {
            return Err(ManifestError::TooLarge.into());
        }
        let mut bytes = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(http_error("reading the manifest".into(), self.idle_timeout))?
        {
            bytes.extend_from_slice(&chunk);
            if too_large(bytes.len() as u64) {
                return Err(ManifestError::TooLarge.into());
            }
        }
        Ok(Manifest::from_json(&bytes)?)
    }
}

/// Receives the transfer `code` points to into `config.out_dir`.
///
/// Existing complete files are skipped when their hash matches and refused otherwise (unless
/// `overwrite`); `.part` files are resumed with `Range`. Every file is verified against its
/// BLAKE3 before it is renamed into place.
///
/// # Examples
///
/// A sender and a receiver in one process:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use sockit::net::{self, ServerConfig, tls::ServerIdentity};
/// use sockit::transfer::{self, Code, Offer, Progress, RecvConfig, SendConfig, Sender, Token};
/// use tokio_util::sync::CancellationToken;
///
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("hello.txt"), b"hello")?;
/// let offer = Offer::collect(&[dir.path().join("hello.txt")])?;
/// let identity = ServerIdentity::self_signed(&[], &[b"http/1.1"])?;
/// let listener = net::bind_tcp("127.0.0.1:0".parse()?)?;
/// let code = Code {
///     addr: listener.local_addr()?.to_string().parse()?,
///     token: Token::random()?,
///     fingerprint: identity.fingerprint,
/// };
/// let sender = Arc::new(Sender::new(offer, code.token, &SendConfig::default()));
/// let tls = ServerConfig { tls: Some(identity.config), ..ServerConfig::default() };
/// let stop = CancellationToken::new();
/// let server = tokio::spawn(transfer::serve_offer(listener, sender, tls, stop.clone()));
///
/// let config = RecvConfig { out_dir: dir.path().join("out"), ..RecvConfig::default() };
/// let progress = Arc::new(Progress::default());
/// let outcome = transfer::receive(&code, &config, &progress, CancellationToken::new()).await?;
/// assert_eq!((outcome.files, outcome.fetched), (1, 5));
/// assert_eq!(std::fs::read(dir.path().join("out/hello.txt"))?, b"hello");
///
/// stop.cancel();
/// server.await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`RecvError`]: connection and TLS failures (a wrong fingerprint fails before any data),
/// an unsafe manifest, an existing different file, a hash mismatch, I/O errors.
pub async fn receive(
    code: &Code,
    config: &RecvConfig,
    progress: &Arc<Progress>,
    stop: CancellationToken,
) -> Result<Outcome, RecvError> {
    tokio::select! {
        result = receive_all(code, config, progress) => result,
        _ = stop.cancelled() => Err(RecvError::Interrupted),
    }
}

/// What to do about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Already here with the right content.
    Skip,
    /// Fetch from this offset (bytes kept from an earlier `.part`).
    Fetch { from: u64 },
}

async fn receive_all(
    code: &Code,
    config: &RecvConfig,
    progress: &Arc<Progress>,
) -> Result<Outcome, RecvError> {
    let remote = Remote::new(code, config);
    let manifest = Arc::new(remote.manifest().await?);

    let out_dir = config.out_dir.clone();
    let overwrite = config.overwrite;
    let planned = {
        let (manifest, out_dir) = (manifest.clone(), out_dir.clone());
        tokio::task::spawn_blocking(move || -> Result<Vec<Plan>, RecvError> {
            std::fs::create_dir_all(&out_dir).map_err(io_error(&out_dir))?;
            manifest
                .files
                .iter()
                .map(|entry| plan(&out_dir, entry, overwrite))
                .collect()
        })
        .await
        .map_err(|e| io_error(&config.out_dir)(io::Error::other(e)))??
    };

    let mut outcome = Outcome {
        files: manifest.files.len(),
        bytes: manifest.total_bytes(),
        ..Outcome::default()
    };
    progress.total.store(outcome.bytes, Ordering::Relaxed);
    let mut queue = VecDeque::new();
    for (index, (entry, plan)) in manifest.files.iter().zip(&planned).enumerate() {
        match *plan {
            Plan::Skip => {
                outcome.skipped += 1;
                progress.present.fetch_add(entry.size, Ordering::Relaxed);
            }
            Plan::Fetch { from } => {
                if from > 0 {
                    outcome.resumed += 1;
                    progress.present.fetch_add(from, Ordering::Relaxed);
                }
                queue.push_back((index, from));
            }
        }
    }

    let workers = config.parallel.clamp(1, 16).min(queue.len());
    let queue = Arc::new(Mutex::new(queue));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let worker = Worker {
            remote: remote.clone(),
            config: config.clone(),
            manifest: manifest.clone(),
            progress: progress.clone(),
        };
        tasks.spawn(worker.run(queue.clone()));
    }
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(failures) => errors.extend(failures),
            Err(e) => errors.push(io_error(&config.out_dir)(io::Error::other(e))),
        }
    }
    outcome.fetched = progress.fetched();
    if !errors.is_empty() {
        let failed = errors.len();
        let first = errors.swap_remove(0);
        if failed == 1 {
            return Err(first);
        }
        return Err(RecvError::Incomplete {
            failed,
            files: outcome.files,
            first: Box::new(first),
        });
    }
    // Tell the sender (for `--once`); it is a courtesy, so failures are only logged.
    let report = remote.request(Method::POST, "done", None);
    match tokio::time::timeout(Duration::from_secs(5), report).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => debug!(%error, "could not report completion"),
        Err(_) => debug!("reporting completion timed out"),
    }
    Ok(outcome)
}

struct Worker {
    remote: Remote,
    config: RecvConfig,
    manifest: Arc<Manifest>,
    progress: Arc<Progress>,
}

impl Worker {
    async fn run(self, queue: Arc<Mutex<VecDeque<(usize, u64)>>>) -> Vec<RecvError> {
        let mut errors = Vec::new();
        loop {
            let next = queue
                .lock()
                .expect("queue lock is never poisoned")
                .pop_front();
            let Some((index, from)) = next else { break };
            let manifest = self.manifest.clone();
            let entry = &manifest.files[index];
            if let Err(error) = self.fetch(index, from).await {
                // A connection left half-way through a body is closed, not pooled.
                warn!(file = %shown(&entry.path), error = %crate::net::error_chain(&error), "file failed");
                errors.push(error);
            }
        }
        errors
    }

    async fn fetch(&self, index: usize, from: u64) -> Result<(), RecvError> {
        let entry = self.manifest.files[index].clone();
        let out_dir = self.config.out_dir.clone();
        let dest = out_dir.join(&entry.path);
        let part = PartFile::new(&dest);
        {
            let (out_dir, rel) = (out_dir.clone(), entry.path.clone());
            tokio::task::spawn_blocking(move || make_parents(&out_dir, &rel))
                .await
                .map_err(|e| io_error(&dest)(io::Error::other(e)))??;
        }

        let mut from = from;
        let mut response = None;
        if from < entry.size {
            let route = format!("f/{index}");
            let got = self
                .remote
                .request(Method::GET, &route, (from > 0).then_some(from))
                .await?;
            match got.status() {
                StatusCode::PARTIAL_CONTENT if starts_at(&got, from) => {}
                StatusCode::OK => {
                    // The sender ignored the range: start over.
                    self.progress.present.fetch_sub(from, Ordering::Relaxed);
                    from = 0;
                }
                status => {
                    return Err(RecvError::Status {
                        what: format!("fetching {}", shown(&entry.path)),
                        status,
                    });
                }
            }
            response = Some(got);
        }

        let file = {
            let part = part.clone();
            tokio::task::spawn_blocking(move || part.open(from))
                .await
                .map_err(|e| io_error(&dest)(io::Error::other(e)))?
        };
        let (tx, done) = spawn_writer(file.map_err(io_error(part.path()))?, from, true);
        if let Some(mut response) = response {
            let idle = self.config.idle_timeout;
            loop {
                let chunks = response
                    .ready_chunks(BATCH_BYTES)
                    .await
                    .map_err(http_error(
                        format!("receiving {}", shown(&entry.path)),
                        idle,
                    ))?;
                let Some(chunks) = chunks else { break };
                let n: usize = chunks.iter().map(Bytes::len).sum();
                self.progress.add_fetched(n as u64);
                if tx.send(chunks).await.is_err() {
                    break; // the writer failed; its error comes from `done`
                }
            }
        }
        drop(tx);
        let (written, hash) = done
            .await
            .map_err(|e| io_error(part.path())(io::Error::other(e)))?
            .map_err(io_error(part.path()))?;
        finish(&entry, &part, &dest, written, hash)
    }
}

fn starts_at(response: &Response, from: u64) -> bool {
    response
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split_once('-'))
        .and_then(|(start, _)| start.parse::<u64>().ok())
        == Some(from)
}

/// Checks size and hash, then renames `NAME.part` to `NAME`. A wrong hash removes the `.part`
/// (resuming it could only fail again); a short file keeps it for the next run.
fn finish(
    entry: &Entry,
    part: &PartFile,
    dest: &Path,
    written: u64,
    hash: Option<blake3::Hash>,
) -> Result<(), RecvError> {
    if written != entry.size {
        return Err(RecvError::Size {
            path: shown(&entry.path),
            got: written,
            want: entry.size,
        });
    }
    if hash.map(Digest::from) != Some(entry.blake3) {
        part.discard();
        return Err(RecvError::Mismatch {
            path: shown(&entry.path),
        });
    }
    part.commit().map_err(io_error(dest))
}

/// Decides what to do about `entry`, looking at what is on disk below `out_dir`.
fn plan(out_dir: &Path, entry: &Entry, overwrite: bool) -> Result<Plan, RecvError> {
    let refuse = |reason| RecvError::Unsafe {
        path: shown(&entry.path),
        reason,
    };
    check_parents(out_dir, &entry.path)?;
    let dest = out_dir.join(&entry.path);
    match std::fs::symlink_metadata(&dest) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(refuse("it is a symlink")),
        Ok(meta) if meta.is_dir() => return Err(refuse("it is a directory")),
        Ok(meta) if meta.is_file() => {
            let same = meta.len() == entry.size
                && hash_existing(&dest).map_err(io_error(&dest))? == entry.blake3;
            if same {
                return Ok(Plan::Skip);
            }
            if !overwrite {
                return Err(RecvError::Exists {
                    path: shown(&entry.path),
                });
            }
        }
        Ok(_) => return Err(refuse("it is not a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&dest)(e)),
    }
    let part = part_path(&dest);
    match std::fs::symlink_metadata(&part) {
        Ok(meta) if meta.file_type().is_symlink() => Err(refuse("its .part file is a symlink")),
        Ok(meta) if meta.is_file() => Ok(Plan::Fetch {
            from: if meta.len() <= entry.size {
                meta.len()
            } else {
                0
            },
        }),
        Ok(_) => Err(refuse("its .part file is not a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Plan::Fetch { from: 0 }),
        Err(e) => Err(io_error(&part)(e)),
    }
}

fn hash_existing(path: &Path) -> io::Result<Digest> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(File::open(path)?)?;
    Ok(hasher.finalize().into())
}

/// Every existing directory on the way to `rel` must be a real directory, not a symlink.
fn check_parents(out_dir: &Path, rel: &str) -> Result<(), RecvError> {
    let mut dir = out_dir.to_owned();
    let mut parts: Vec<&str> = rel.split('/').collect();
    parts.pop();
    for part in parts {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(RecvError::Unsafe {
                    path: shown(rel),
                    reason: "a directory on its path is a symlink",
                });
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(RecvError::Unsafe {
                    path: shown(rel),
                    reason: "a file is in the way of its directory",
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(&dir)(e)),
        }
    }
    Ok(())
}

/// Creates the directories of `rel` below `out_dir` one at a time, refusing symlinks.
fn make_parents(out_dir: &Path, rel: &str) -> Result<(), RecvError> {
    let mut dir = out_dir.to_owned();
    let mut parts: Vec<&str> = rel.split('/').collect();
    parts.pop();
    for part in parts {
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(&dir)(e)),
        }
        let meta = std::fs::symlink_metadata(&dir).map_err(io_error(&dir))?;
        if meta.file_type().is_symlink() || !meta.is_dir() {
            return Err(RecvError::Unsafe {
                path: shown(rel),
                reason: "a directory on its path is a symlink or a file",
            });
        }
    }
    Ok(())
}

/// A thread that writes (and optionally hashes) what it is sent, so disk and hashing run
/// beside the network. The file's first `prefix` bytes are hashed first; returns the final
/// length and hash. Each message is a batch of pieces.
pub(crate) type WriterDone = tokio::task::JoinHandle<io::Result<(u64, Option<blake3::Hash>)>>;

pub(crate) fn spawn_writer(
    mut file: File,
    prefix: u64,
    hash: bool,
) -> (mpsc::Sender<Vec<Bytes>>, WriterDone) {
    let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(WRITER_BATCHES);
    let done = tokio::task::spawn_blocking(move || {
        let mut hasher = hash.then(blake3::Hasher::new);
        if let Some(hasher) = hasher.as_mut().filter(|_| prefix > 0) {
            file.seek(SeekFrom::Start(0))?;
            let copied = io::copy(&mut (&mut file).take(prefix), hasher)?;
            if copied != prefix {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the .part file shrank",
                ));
            }
        }
        file.seek(SeekFrom::Start(prefix))?;
        let mut written = prefix;
        let piece_bytes = if hasher.is_some() {
            FILE_WRITE_BYTES
        } else {
            usize::MAX
        };
        while let Some(chunks) = rx.blocking_recv() {
            for piece in chunks.iter().flat_map(|chunk| chunk.chunks(piece_bytes)) {
                file.write_all(piece)?;
                if let Some(hasher) = hasher.as_mut() {
                    hasher.update(piece);
                }
                written += piece.len() as u64;
            }
        }
        Ok((written, hasher.map(|h| h.finalize())))
    });
    (tx, done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::part_file::open_part;

    fn entry(path: &str, content: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            size: content.len() as u64,
            blake3: Digest::of(content),
        }
    }

    #[test]
    fn plans_skip_resume_refuse_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        std::fs::write(out.join("same"), b"hello").unwrap();
        std::fs::write(out.join("other"), b"HELLO").unwrap();
        std::fs::write(out.join("half.part"), b"hel").unwrap();
        std::fs::write(out.join("long.part"), b"hello world").unwrap();
        assert_eq!(
            plan(out, &entry("same", b"hello"), false).unwrap(),
            Plan::Skip
        );
        assert!(matches!(
            plan(out, &entry("other", b"hello"), false),
            Err(RecvError::Exists { .. })
        ));
        assert_eq!(
            plan(out, &entry("other", b"hello"), true).unwrap(),
            Plan::Fetch { from: 0 }
        );
        assert_eq!(
            plan(out, &entry("half", b"hello"), false).unwrap(),
            Plan::Fetch { from: 3 }
        );
        assert_eq!(
            plan(out, &entry("long", b"hello"), false).unwrap(),
            Plan::Fetch { from: 0 }
        );
        assert_eq!(
            plan(out, &entry("new/dir/file", b"x"), false).unwrap(),
            Plan::Fetch { from: 0 }
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_on_the_way_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let out = dir.path();
        std::os::unix::fs::symlink(outside.path(), out.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), out.join("file")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("y"), out.join("p.part")).unwrap();
        for rel in ["link/x", "file", "p"] {
            let err = plan(out, &entry(rel, b"x"), true).expect_err(rel);
            assert!(matches!(err, RecvError::Unsafe { .. }), "{rel}: {err}");
        }
        assert!(make_parents(out, "link/x").is_err());
        // O_NOFOLLOW: even a .part that turns into a symlink later is not followed.
        assert!(open_part(&out.join("p.part"), 0).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn http_failures_keep_their_class() {
        let idle = Duration::from_secs(3);
        let tls = NetError::TlsConfig("pin".into());
        let err = http_error("requesting manifest".into(), idle)(HttpError::Net(tls));
        assert!(
            matches!(err, RecvError::Net(NetError::TlsConfig(_))),
            "{err}"
        );
        let stalled = io::Error::new(io::ErrorKind::TimedOut, "no data");
        let err = http_error("receiving f".into(), idle)(HttpError::Body(stalled));
        assert!(
            matches!(err, RecvError::Timeout { after, .. } if after == idle),
            "{err}"
        );
        let cut = io::Error::other("cut short");
        let err = http_error("receiving f".into(), idle)(HttpError::Body(cut));
        assert!(matches!(err, RecvError::Http { .. }), "{err}");
    }

    #[tokio::test]
    async fn writer_hashes_the_kept_prefix_and_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        std::fs::write(&part, b"hello, garbage").unwrap();
        let file = open_part(&part, 7).unwrap();
        let (tx, done) = spawn_writer(file, 7, true);
        tx.send(vec![Bytes::from_static(b"wor"), Bytes::from_static(b"ld")])
            .await
            .unwrap();
        drop(tx);
        let (written, hash) = done.await.unwrap().unwrap();
        assert_eq!(written, 12);
        assert_eq!(hash.unwrap(), blake3::hash(b"hello, world"));
        assert_eq!(std::fs::read(&part).unwrap(), b"hello, world");
    }

    /// Sends `data[from..]` to a writer over a `.part` that holds `data[..from]` and
    /// garbage after it, in batches of uneven pieces, several batches larger than the
    /// writer's and the receiver's buffers.
    async fn write_through(
        data: &[u8],
        from: usize,
        drop_byte: Option<usize>,
    ) -> (Vec<u8>, u64, blake3::Hash) {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        let mut kept = data[..from].to_vec();
        kept.extend_from_slice(b"garbage from a run that went wrong");
        std::fs::write(&part, &kept).unwrap();
        let file = open_part(&part, from as u64).unwrap();
        let (tx, done) = spawn_writer(file, from as u64, true);
        let mut rest = Bytes::copy_from_slice(&data[from..]);
        if let Some(at) = drop_byte {
            let mut cut = data[from..from + at].to_vec();
            cut.extend_from_slice(&data[from + at + 1..]);
            rest = Bytes::from(cut);
        }
        let mut piece = 1usize;
        while !rest.is_empty() {
            let mut batch = Vec::new();
            let mut size = 0;
            while size < BATCH_BYTES + 12_345 && !rest.is_empty() {
                piece = piece * 7 % 70_001 + 1;
                let chunk = rest.split_to(piece.min(rest.len()));
                size += chunk.len();
                batch.push(chunk);
            }
            tx.send(batch).await.unwrap();
        }
        drop(tx);
        let (written, hash) = done.await.unwrap().unwrap();
        (std::fs::read(&part).unwrap(), written, hash.unwrap())
    }

    #[tokio::test]
    async fn a_resumed_file_larger_than_the_buffers_is_written_and_hashed_whole() {
        let data: Vec<u8> = (0..5_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let from = 1_234_567;
        let (on_disk, written, hash) = write_through(&data, from, None).await;
        assert_eq!(written, data.len() as u64);
        assert!(on_disk == data, "the file differs");
        assert_eq!(hash, blake3::hash(&data));

        // One byte missing in the middle of a batch: the length and the hash both tell.
        let (on_disk, written, hash) = write_through(&data, from, Some(2_000_001)).await;
        assert_eq!(written, data.len() as u64 - 1);
        assert_ne!(hash, blake3::hash(&data));
        assert!(on_disk != data);
    }

    #[test]
    fn a_part_file_starts_empty_or_keeps_its_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        // New, kept as it is, cut to a prefix, and started over.
        let mut file = open_part(&part, 0).unwrap();
        file.write_all(b"0123456789").unwrap();
        drop(file);
        assert_eq!(open_part(&part, 10).unwrap().metadata().unwrap().len(), 10);
        drop(open_part(&part, 4).unwrap());
        assert_eq!(std::fs::read(&part).unwrap(), b"0123");
        let file = open_part(&part, 0).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 0);
        assert_eq!(std::fs::read(&part).unwrap(), b"");
    }
}
