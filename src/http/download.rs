//! Downloads to a file: the body goes to `FILE.part`, which is renamed to `FILE` only when
//! it is complete; an interrupted `.part` is resumed with `Range` and `If-Range`.
//!
//! The `.part` file's modification time keeps the server's `Last-Modified` (whole seconds),
//! which is what `If-Range` sends back on resume: if the file changed on the server, the
//! server answers 200 with the whole new file and the download starts over.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{StatusCode, header};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::http::part_file::PartFile;
use crate::http::{Client, HttpError, Request, Response};

/// Why a download did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The request or the body read failed; the `.part` file is kept for `--continue`.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The server answered with a status that is not a success.
    #[error("server answered {0}")]
    Status(StatusCode),
    /// The file could not be written.
    #[error("cannot write {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A `206` for another range than asked for.
    #[error("the server resumed at the wrong offset ({0})")]
    BadRange(String),
    /// Stopped by the user; the `.part` file is kept.
    #[error("interrupted; run again with --continue to resume")]
    Interrupted,
}

/// How far a download has come, for progress bars.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Bytes in the file so far (including a resumed prefix).
    pub done: u64,
    /// The full size, when the server said.
    pub total: Option<u64>,
}

/// What a finished download did.
#[derive(Debug)]
pub struct Downloaded {
    /// The final file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Bytes that were already there and were kept (resume).
    pub resumed_from: u64,
    /// The response's status and headers (body consumed).
    pub status: StatusCode,
    /// The response's headers.
    pub headers: http::HeaderMap,
}

pub use crate::http::part_file::part_path;

/// Downloads `request` to `path` through `path.part`; with `resume`, continues an existing
/// `.part`. With no `path`, the file is named by the server or the URL ([`file_name`]) in
/// the current directory, without replacing a file ([`unused_name`]).
/// `on_progress` sees every chunk; `stop` cancels, keeping the `.part`.
///
/// # Errors
///
/// [`DownloadError`]; on any error `path` is untouched and only the `.part` may exist.
pub async fn download(
    client: &Client,
    mut request: Request,
    path: Option<&Path>,
    resume: bool,
    stop: &CancellationToken,
    on_progress: &mut (dyn FnMut(Progress, &Response) + Send),
) -> Result<Downloaded, DownloadError> {
    let resume = resume && path.is_some();
    if let Some(path) = path {
        // A destination that cannot be written costs no request.
        check_destination(path)?;
    }
    let part = path.map(PartFile::new);
    // Byte ranges of a compressed body make no sense; ask for the file as it is.
    request.headers.insert(
        header::ACCEPT_ENCODING,
        header::HeaderValue::from_static("identity"),
    );
    let existing = match &part {
        Some(part) if resume => part.kept(),
        _ => 0,
    };
    let mut ask = request.clone();
    if existing > 0 {
        ask.headers.insert(
            header::RANGE,
            header::HeaderValue::from_str(&format!("bytes={existing}-"))
                .expect("digits are a valid header value"),
        );
        if let Some(date) = part.as_ref().and_then(|p| validator(p.path())) {
            if let Ok(value) = header::HeaderValue::from_str(&httpdate::fmt_http_date(date)) {
                ask.headers.insert(header::IF_RANGE, value);
            }
        }
    }
    let mut response = client.send(ask).await?;
    let status = response.status();
    let mut offset = 0;
    if existing > 0 && status == StatusCode::RANGE_NOT_SATISFIABLE {
        let total = response
            .headers()
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes */"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(path), Some(part), true) = (path, &part, total == Some(existing)) {
            // The .part already holds the whole file.
            let headers = response.headers().clone();
            drop(response);
            part.commit().map_err(|source| DownloadError::File {
                path: path.to_owned(),
                source,
            })?;
            return Ok(Downloaded {
                path: path.to_owned(),
                bytes: existing,
                resumed_from: existing,
                status,
                headers,
            });
        }
        // The .part is not a prefix of what the server has: start over.
        drop(response);
        response = client.send(request).await?;
    } else if status == StatusCode::PARTIAL_CONTENT && existing > 0 {
        let range = response
            .headers()
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if content_range_start(&range) != Some(existing) {
            return Err(DownloadError::BadRange(range));
        }
        offset = existing;
    }
    let status = response.status();
    if !status.is_success() {
        return Err(DownloadError::Status(status));
    }
    let path = match path {
        Some(path) => path.to_owned(),
        None => {
            let disposition = response
                .headers()
                .get(header::CONTENT_DISPOSITION)
                .and_then(|v| v.to_str().ok());
            unused_name(Path::new("."), &file_name(disposition, response.url()))
        }
    };
    let part = PartFile::new(&path);
    let file_err = |source| DownloadError::File {
        path: part.path().to_owned(),
        source,
    };
    let total = response.content_length().map(|len| len + offset);
    let last_modified = response
        .headers()
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let file = {
        // Opening a FIFO waits for its reader: off the runtime, and Ctrl-C ends the wait.
        let part = part.clone();
        let open = tokio::task::spawn_blocking(move || part.open(offset));
        tokio::select! {
            _ = stop.cancelled() => return Err(DownloadError::Interrupted),
            file = open => file.map_err(|e| file_err(io::Error::other(e)))?.map_err(file_err)?,
        }
    };
    let mut writer = Writer::for_file(file);
    let mut done = offset;
    on_progress(Progress { done, total }, &response);
    let result = loop {
        let chunks = tokio::select! {
            _ = stop.cancelled() => break Err(DownloadError::Interrupted),
            chunks = response.ready_chunks(BATCH_BYTES) => chunks,
        };
        match chunks {
            Ok(Some(chunks)) => {
                done += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                if !writer.send(chunks).await {
                    break Ok(());
                }
                on_progress(Progress { done, total }, &response);
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.into()),
        }
    };
    let written = writer.finish().await;
    if let Some(date) = last_modified {
        mark_validator(&part, date);
    }
    result?;
    written.map_err(file_err)?;
    part.commit().map_err(|source| DownloadError::File {
        path: path.clone(),
        source,
    })?;
    Ok(Downloaded {
        path,
        bytes: done,
        resumed_from: offset,
        status,
        headers: response.headers().clone(),
    })
}

/// Fails early when `path` is a directory or its directory does not exist.
fn check_destination(path: &Path) -> Result<(), DownloadError> {
    let refuse = |kind, why: &str| {
        Err(DownloadError::File {
            path: path.to_owned(),
            source: io::Error::new(kind, why.to_owned()),
        })
    };
    if path.is_dir() {
        return refuse(io::ErrorKind::IsADirectory, "it is a directory");
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return refuse(io::ErrorKind::NotFound, "its directory does not exist");
    }
    Ok(())
}

/// A `Last-Modified` kept in the `.part` file's mtime: whole seconds, in the past.
fn validator(part: &Path) -> Option<SystemTime> {
    let modified = std::fs::metadata(part).ok()?.modified().ok()?;
    let since_epoch = modified.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    (since_epoch.subsec_nanos() == 0).then_some(modified)
}

fn mark_validator(part: &PartFile, date: SystemTime) {
    let whole = date
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()));
    if let Ok(date) = whole {
        // Without it a resume still works, just without the If-Range safety check.
        let _ = part.set_modified(date);
    }
}

/// The first byte of `bytes START-END/TOTAL`.
fn content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes ")?;
    range.split_once('-')?.0.trim().parse().ok()
}

/// Most body bytes read in one go before they are written: one write per batch of DATA
/// frames or reads, and at most `WRITER_BATCHES` batches held in memory.
pub const BATCH_BYTES: usize = 1 << 20;

/// Batches queued for the writer thread before reading waits for it.
const WRITER_BATCHES: usize = 4;

/// Writes batches of chunks, each in vectored writes without copying them together first.
/// A regular file or a device such as `/dev/null` takes a write at once: it is written in
/// place, as curl does (a hand-off to another thread per batch costs more than the write).
/// Anything that can make a writer wait (a pipe, a FIFO, a socket, a terminal) is written
/// on a thread of its own, so that it never blocks the runtime.
#[derive(Debug)]
pub struct Writer {
    to: WriteTo,
}

#[derive(Debug)]
enum WriteTo {
    InPlace {
        out: std::fs::File,
        /// The first write error; later batches are dropped.
        failed: Option<io::Error>,
    },
    Thread {
        tx: tokio::sync::mpsc::Sender<Vec<Bytes>>,
        done: tokio::sync::oneshot::Receiver<io::Result<()>>,
    },
}

impl Writer {
    /// A writer for `file`: in place when writing it never waits for a reader.
    pub fn for_file(file: std::fs::File) -> Self {
        if never_waits(&file) {
            Self {
                to: WriteTo::InPlace {
                    out: file,
                    failed: None,
                },
            }
        } else {
            Self::spawn(file)
        }
    }

    /// Starts the thread that writes to `out`.
    pub fn spawn(mut out: impl Write + Send + 'static) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(WRITER_BATCHES);
        let (done_tx, done) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut result = Ok(());
            while let Some(chunks) = rx.blocking_recv() {
                if let Err(e) = write_chunks(&mut out, &chunks) {
                    result = Err(e);
                    break;
                }
            }
            let result = result.and_then(|()| out.flush());
            let _ = done_tx.send(result);
        });
        Self {
            to: WriteTo::Thread { tx, done },
        }
    }

    /// Writes (or queues) a batch of chunks; `false` when the writer has stopped (its error
    /// comes from `finish`).
    pub async fn send(&mut self, chunks: Vec<Bytes>) -> bool {
        match &mut self.to {
            WriteTo::InPlace { out, failed } => {
                if failed.is_none() {
                    if let Err(e) = write_chunks(out, &chunks) {
                        *failed = Some(e);
                    }
                }
                failed.is_none()
            }
            WriteTo::Thread { tx, .. } => tx.send(chunks).await.is_ok(),
        }
    }

    /// Waits until everything queued is written.
    ///
    /// # Errors
    ///
    /// The first write error.
    pub async fn finish(self) -> io::Result<()> {
        match self.to {
            WriteTo::InPlace { mut out, failed } => match failed {
                Some(e) => Err(e),
                None => out.flush(),
            },
            WriteTo::Thread { tx, done } => {
                drop(tx);
                done.await
                    .unwrap_or_else(|_| Err(io::Error::other("the writer thread stopped")))
            }
        }
    }
}

/// Whether writing `file` never waits for someone else: a regular file, or a character
/// device that is not a terminal (`/dev/null`). Pipes, FIFOs, sockets and terminals can.
fn never_waits(file: &std::fs::File) -> bool {
    use std::io::IsTerminal;
    use std::os::unix::fs::FileTypeExt;
    file.metadata().is_ok_and(|m| {
        let kind = m.file_type();
        kind.is_file() || (kind.is_char_device() && !file.is_terminal())
    })
}

/// Writes all of `chunks`, in as few vectored writes as `out` allows.
fn write_chunks(out: &mut impl Write, chunks: &[Bytes]) -> io::Result<()> {
    // The kernel takes at most IOV_MAX (1024) slices per call.
    for group in chunks.chunks(1024) {
        let mut slices: Vec<io::IoSlice<'_>> = group
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| io::IoSlice::new(c))
            .collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match out.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => io::IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The file name for `--download`: from `Content-Disposition`, else the URL's last path
/// segment, else `index.html`; always a plain name in the current directory.
///
/// # Examples
///
/// ```
/// use sockit::http::download::file_name;
/// let url = url::Url::parse("http://x/a/report%20v2.pdf?x=1").unwrap();
/// assert_eq!(file_name(None, &url), "report v2.pdf");
/// assert_eq!(file_name(Some("attachment; filename=\"../../etc/passwd\""), &url), "passwd");
/// ```
pub fn file_name(content_disposition: Option<&str>, url: &Url) -> String {
    let from_header = content_disposition.and_then(disposition_name);
    let from_url = || {
        url.path_segments()
            .and_then(|mut s| s.next_back().map(str::to_owned))
            .map(|s| percent_decode(&s))
    };
    let raw = from_header.or_else(from_url).unwrap_or_default();
    let clean = sanitize(&raw);
    if clean.is_empty() {
        "index.html".to_owned()
    } else {
        clean
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn disposition_name(value: &str) -> Option<String> {
    let mut plain = None;
    for param in value.split(';').map(str::trim) {
        let Some((key, val)) = param.split_once('=') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "filename*" => {
                // RFC 5987: charset'lang'percent-encoded
                let encoded = val.trim().splitn(3, '\'').nth(2)?;
                return Some(percent_decode(encoded));
            }
            "filename" => plain = Some(val.trim().trim_matches('"').to_owned()),
            _ => {}
        }
    }
    plain
}

/// The last path component, without control characters and never `.` or `..`.
fn sanitize(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim().trim_start_matches('.').to_owned();
    if clean.is_empty() {
        String::new()
    } else {
        clean
    }
}

/// A name in `dir` not taken yet: `name`, then `name-1`, `name-2`, …
pub fn unused_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() && !part_path(&first).exists() {
        return first;
    }
    (1..10_000)
        .map(|i| dir.join(format!("{name}-{i}")))
        .find(|p| !p.exists() && !part_path(p).exists())
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised() {
        let url = Url::parse("http://h/dir/").unwrap();
        assert_eq!(file_name(None, &url), "index.html");
        for (header, expected) in [
            ("attachment; filename=\"a.txt\"", "a.txt"),
            ("attachment; filename=..", "index.html"),
            ("attachment; filename=\"..\\\\evil.exe\"", "evil.exe"),
            ("attachment; filename=\".bashrc\"", "bashrc"),
            (
                "attachment; filename*=UTF-8''%E2%82%AC%20rates.txt",
                "€ rates.txt",
            ),
            ("attachment; filename=\"a\u{1b}[31mb\"", "a[31mb"),
        ] {
            assert_eq!(file_name(Some(header), &url), expected, "{header}");
        }
    }

    /// Takes at most 3 bytes per call, vectored or not.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_batch_is_written_whole_through_short_writes() {
        let chunks: Vec<Bytes> = (0..2000u32)
            .map(|i| Bytes::from(format!("{i},").repeat((i % 4) as usize)))
            .collect();
        let mut out = Trickle(Vec::new());
        write_chunks(&mut out, &chunks).unwrap();
        assert_eq!(out.0, chunks.concat());
    }

    #[test]
    fn files_and_dev_null_are_written_in_place_fifos_on_a_thread() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("out")).unwrap();
        assert!(never_waits(&file), "a regular file");
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        assert!(never_waits(&null), "/dev/null");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // Read and write: opening does not wait for a reader.
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        assert!(!never_waits(&fifo), "a FIFO waits for its reader");
    }

    #[test]
    fn content_range_start_is_read() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
    }
}
