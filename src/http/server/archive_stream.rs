//! `?download=tar` and `?download=zip` on a directory: the tree read and sent as one archive
//! at once, never built in memory. One walker on the blocking pool reads the tree in order and
//! hands chunks of at most `CHUNK_BYTES` to the response body through a queue of
//! `QUEUE_CHUNKS`: memory stays bounded whatever the tree's size, and a slow client slows the
//! walker (it waits on the queue) rather than filling memory.
//!
//! The tree is what the listing shows: hidden names only with `--hidden`, symlinks that lead
//! out of the served directory left out unless `--follow-symlinks`, FIFOs, sockets and devices
//! left out, a directory reached again through a symlink (a loop) left out. A file the server
//! may not read is left out with a warning in the server's log. A file that changes size
//! while it is read ends the stream with an error, so the client sees a cut-off transfer
//! rather than a well-formed archive with wrong bytes in it.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::http::server::archive::{Encoder, Format, Member};
use crate::http::server::body::Body;
use crate::http::server::path::{RequestPath, display_name, encode_segment};
use crate::http::server::site::Site;
use crate::http::server::static_files::{Inside, TreeRules};

/// Bytes the walker gathers before handing them over.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks waiting for the connection: with `CHUNK_BYTES`, a quarter MiB per download.
const QUEUE_CHUNKS: usize = 4;

const FINISHED_LAST: &str = "the encoder is taken only once the walk is done";

/// The chunks of the archive of `dir` (its members under `top/`), or an error that ends it.
pub(crate) type Chunks = mpsc::Receiver<io::Result<Bytes>>;

impl Site {
    /// The directory `dir` (asked for as `path`) as an archive of `format`, its members in a
    /// folder named as the directory.
    pub(crate) fn archive(
        &self,
        req: &Request<Incoming>,
        path: &RequestPath,
        dir: PathBuf,
        format: Format,
    ) -> Response<Body> {
        let top = match path.file_name() {
            Some(name) => name.as_bytes().to_vec(),
            None => self
                .files
                .root()
                .file_name()
                .map_or_else(|| b"site".to_vec(), |name| name.as_bytes().to_vec()),
        };
        let mut res = Response::new(if req.method() == Method::HEAD {
            Body::chunks(None)
        } else {
            Body::chunks(Some(start(self.files.rules(), dir, top.clone(), format)))
        });
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        if let Ok(value) = HeaderValue::from_str(&disposition(&top, format.extension())) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
        // Made anew for every request, with no validator to revalidate it by.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// `attachment; filename="NAME.EXT"`, with a plain-ASCII stand-in for a name that holds
/// anything else, and the exact name in `filename*` (RFC 6266) when it is UTF-8.
fn disposition(name: &[u8], extension: &str) -> String {
    let plain: String = name
        .iter()
        .map(|&b| match b {
            b'"' | b'\\' | b'%' | b'/' => '_',
            0x20..=0x7e => b as char,
            _ => '_',
        })
        .collect();
    let mut value = format!("attachment; filename=\"{plain}.{extension}\"");
    if plain.as_bytes() != name && std::str::from_utf8(name).is_ok() {
        value.push_str("; filename*=UTF-8''");
        encode_segment(name, &mut value);
        value.push('.');
        value.push_str(extension);
    }
    value
}

/// Starts reading `dir` into an archive of `format`; the walk stops when the receiver is
/// dropped (the client left).
pub(crate) fn start(rules: TreeRules, dir: PathBuf, top: Vec<u8>, format: Format) -> Chunks {
    let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let mut walker = Walker {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES + 4096),
            encoder: Some(Encoder::new(format)),
            rules,
            ancestors: Vec::new(),
        };
        match walker.archive(&dir, &top) {
            Ok(()) => {}
            Err(Stop::ClientGone) => debug!("archive download ended by the client"),
            Err(Stop::Failed(error)) => {
                warn!(dir = %dir.display(), %error, "archive cut short");
                let _ = walker.tx.blocking_send(Err(error));
            }
        }
    });
    rx
}

/// Why a walk ended early.
enum Stop {
    /// The response body was dropped: nobody reads any more.
    ClientGone,
    /// The archive cannot be finished truthfully.
    Failed(io::Error),
}

impl From<io::Error> for Stop {
    fn from(error: io::Error) -> Self {
        Stop::Failed(error)
    }
}

struct Walker {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    /// Taken at the end, to write the archive's end.
    encoder: Option<Encoder>,
    rules: TreeRules,
    /// (device, inode) of the directories being walked: a symlink back to one is a loop.
    ancestors: Vec<(u64, u64)>,
}

impl Walker {
    fn archive(&mut self, dir: &Path, top: &[u8]) -> Result<(), Stop> {
        let meta = std::fs::metadata(dir)?;
        self.directory(dir, top, &meta)?;
        if let Some(encoder) = self.encoder.take() {
            encoder.finish(&mut self.buf);
        }
        self.send()
    }

    fn directory(&mut self, dir: &Path, path: &[u8], meta: &std::fs::Metadata) -> Result<(), Stop> {
        let member = member(path, true, meta);
        let encoder = self.encoder.as_mut().expect(FINISHED_LAST);
        encoder.begin(&member, &mut self.buf);
        encoder.end(&member, &mut self.buf);
        let names = match read_names(dir) {
            Ok(names) => names,
            Err(error) => {
                warn!(dir = %dir.display(), %error, "archive: left out a directory it cannot read");
                return Ok(());
            }
        };
        self.ancestors.push((meta.dev(), meta.ino()));
        for name in names {
            if name.as_bytes().starts_with(b".") && !self.rules.show_hidden {
                continue;
            }
            let full = dir.join(&name);
            let mut inner = path.to_vec();
            inner.push(b'/');
            inner.extend_from_slice(name.as_bytes());
            self.entry(&full, &inner)?;
        }
        self.ancestors.pop();
        Ok(())
    }

    fn entry(&mut self, full: &Path, path: &[u8]) -> Result<(), Stop> {
        let Ok(link_meta) = std::fs::symlink_metadata(full) else {
            return Ok(()); // gone since the directory was read
        };
        if link_meta.file_type().is_symlink() {
            // The same rule as for serving the link's path: inside the root, not hidden.
            if self.rules.check_inside_blocking(full) != Inside::Yes {
                debug!(path = %full.display(), "archive: left out a symlink");
                return Ok(());
            }
        }
        let Ok(meta) = std::fs::metadata(full) else {
            return Ok(()); // a dangling symlink
        };
        if meta.is_dir() {
            if self.ancestors.contains(&(meta.dev(), meta.ino())) {
                debug!(path = %full.display(), "archive: left out a symlink loop");
                return Ok(());
            }
            return self.directory(full, path, &meta);
        }
        if meta.is_file() {
            return self.file(full, path);
        }
        Ok(())
    }

    fn file(&mut self, full: &Path, path: &[u8]) -> Result<(), Stop> {
        let opened = File::open(full).and_then(|file| {
            let meta = file.metadata()?;
            Ok((file, meta))
        });
        let (mut file, meta) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                warn!(
                    file = %display_name(full.as_os_str().as_bytes()),
                    %error,
                    "archive: left out a file it cannot read"
                );
                return Ok(());
            }
        };
        let member = member(path, false, &meta);
        let encoder = self.encoder.as_mut().expect(FINISHED_LAST);
        encoder.begin(&member, &mut self.buf);
        let mut remaining = member.size;
        while remaining > 0 {
            let start = self.buf.len();
            let room = CHUNK_BYTES.saturating_sub(start).max(4096);
            let want = usize::try_from(remaining).unwrap_or(usize::MAX).min(room);
            self.buf.resize(start + want, 0);
            let n = match file.read(&mut self.buf[start..]) {
                Ok(n) => n,
                Err(error) => {
                    self.buf.truncate(start);
                    if error.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(Stop::Failed(changed(full, error.to_string())));
                }
            };
            self.buf.truncate(start + n);
            if n == 0 {
                return Err(Stop::Failed(changed(
                    full,
                    "it shrank while being read".into(),
                )));
            }
            let encoder = self.encoder.as_mut().expect(FINISHED_LAST);
            encoder.data(&self.buf[start..]);
            remaining -= n as u64;
            if self.buf.len() >= CHUNK_BYTES {
                self.send()?;
            }
        }
        // One byte more than its size shows a file that grew.
        if file.read(&mut [0u8; 1]).is_ok_and(|n| n > 0) {
            return Err(Stop::Failed(changed(
                full,
                "it grew while being read".into(),
            )));
        }
        let encoder = self.encoder.as_mut().expect(FINISHED_LAST);
        encoder.end(&member, &mut self.buf);
        Ok(())
    }

    /// Hands what is gathered to the connection, waiting while the queue is full.
    fn send(&mut self) -> Result<(), Stop> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES + 4096));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| Stop::ClientGone)
    }
}

fn changed(full: &Path, why: String) -> io::Error {
    io::Error::other(format!(
        "{}: {why}",
        display_name(full.as_os_str().as_bytes())
    ))
}

/// The names in `dir`, in byte order, so that an archive of one tree is always the same.
fn read_names(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names: Vec<OsString> = std::fs::read_dir(dir)?
        .filter_map(|item| item.ok().map(|item| item.file_name()))
        .collect();
    names.sort();
    Ok(names)
}

fn member<'a>(path: &'a [u8], is_dir: bool, meta: &std::fs::Metadata) -> Member<'a> {
    Member {
        path,
        is_dir,
        size: if is_dir { 0 } else { meta.len() },
        mode: meta.permissions().mode(),
        mtime: meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_name_offered_is_plain_ascii_with_the_exact_name_beside_it() {
        assert_eq!(
            disposition(b"www", "tar"),
            "attachment; filename=\"www.tar\""
        );
        assert_eq!(
            disposition("a \"b\" ü".as_bytes(), "zip"),
            "attachment; filename=\"a _b_ __.zip\"; filename*=UTF-8''a%20%22b%22%20%C3%BC.zip"
        );
        assert_eq!(
            disposition(b"d\xfe", "tar"),
            "attachment; filename=\"d_.tar\""
        );
    }
}
