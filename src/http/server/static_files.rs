//! The served directory: finds what a checked request path names, refuses symlinks that
//! leave the directory and hidden files, and keeps small files in memory.
//!
//! Every request costs one `stat` of the named path, made inline as nginx does (on a local
//! file system it is answered from the kernel's caches in a microsecond). Anything slower,
//! resolving symlinks, reading, listing, compressing, runs on the blocking pool. The cache
//! is keyed by path and checked against device, inode, length, mtime and ctime on
//! every hit, so a changed, replaced or re-pointed file is never served stale. Cached files
//! of `SENDFILE_MIN_BYTES` or more also stay open, so their bodies can be sent with
//! `sendfile` (see `http1_sendfile`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use http::HeaderValue;

use crate::http::server::path::RequestPath;

/// Files up to this size are kept in memory (and compressed once, when asked for).
const CACHE_FILE_MAX_BYTES: u64 = 512 * 1024;
/// The cache is emptied when it grows past this.
const CACHE_TOTAL_MAX_BYTES: u64 = 64 * 1024 * 1024;
const CACHE_MAX_ENTRIES: usize = 16 * 1024;
/// Cached files this large stay open for `sendfile`; below it, copying costs less than the
/// extra system call.
const SENDFILE_MIN_BYTES: u64 = 32 * 1024;
/// At most this many cached files are held open.
const CACHE_MAX_OPEN_FILES: usize = 256;
/// Text smaller than this is not worth compressing.
const COMPRESS_MIN_BYTES: u64 = 256;

/// What a request path names.
#[derive(Debug)]
pub(crate) enum Found {
    File(Arc<FileEntry>),
    Dir(PathBuf),
    /// Nothing there, or hidden.
    Missing,
    /// There, but not to be served: a symlink out of the directory, a FIFO, a socket or a
    /// device, or a file the server may not read.
    Forbidden,
}

impl Found {
    /// What a failed `stat` or `open` of a path means to the client: a file the server may
    /// not read is forbidden (403), anything else is not there (404).
    pub(crate) fn failed(error: &io::Error) -> Self {
        if error.kind() == io::ErrorKind::PermissionDenied {
            Found::Forbidden
        } else {
            Found::Missing
        }
    }
}

/// A path [`Files::lookup_cached`] could not answer, and what its `stat` said.
#[derive(Debug)]
pub(crate) struct Uncached {
    full: PathBuf,
    // Boxed: the rare case should not make every lookup's result large.
    meta: Box<std::fs::Metadata>,
}

/// Identity of one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// One regular file, its validators and, when small, its bytes.
#[derive(Debug)]
pub(crate) struct FileEntry {
    pub(crate) path: PathBuf,
    stamp: Stamp,
    pub(crate) len: u64,
    pub(crate) modified: SystemTime,
    pub(crate) etag: String,
    pub(crate) etag_header: HeaderValue,
    pub(crate) last_modified: HeaderValue,
    /// `Content-Length` of the whole file.
    pub(crate) content_length: HeaderValue,
    pub(crate) content_type: HeaderValue,
    pub(crate) compressible: bool,
    /// The whole file, for files up to `CACHE_FILE_MAX_BYTES`.
    pub(crate) content: Option<Bytes>,
    /// The file `content` was read from, kept open for files of `SENDFILE_MIN_BYTES` or more.
    pub(crate) open_file: Option<Arc<std::fs::File>>,
    gzip: OnceLock<Option<Bytes>>,
    brotli: OnceLock<Option<Bytes>>,
}

/// A content coding the server can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Gzip,
    Brotli,
}

impl Coding {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
        }
    }

    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Coding::Gzip => ".gz",
            Coding::Brotli => ".br",
        }
    }
}

impl FileEntry {
    /// The bytes of the file compressed with `coding`, made once and kept; `None` when the
    /// file is not compressible, not in memory, or does not shrink.
    pub(crate) async fn compressed(self: &Arc<Self>, coding: Coding) -> Option<Bytes> {
        let content = self.content.as_ref()?;
        if !self.compressible || self.len < COMPRESS_MIN_BYTES {
            return None;
        }
        let cell = match coding {
            Coding::Gzip => &self.gzip,
            Coding::Brotli => &self.brotli,
        };
        if let Some(done) = cell.get() {
            return done.clone();
        }
        let entry = self.clone();
        let content = content.clone();
        tokio::task::spawn_blocking(move || {
            let cell = match coding {
                Coding::Gzip => &entry.gzip,
                Coding::Brotli => &entry.brotli,
            };
            cell.get_or_init(|| compress(&content, coding)).clone()
        })
        .await
        .ok()
        .flatten()
    }
}

fn compress(data: &[u8], coding: Coding) -> Option<Bytes> {
    use std::io::Write;
    let out = match coding {
        Coding::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).ok()?;
            encoder.finish().ok()?
        }
        Coding::Brotli => {
            let mut out = Vec::new();
            {
                let mut encoder = brotli::CompressorWriter::new(&mut out, 64 * 1024, 5, 22);
                encoder.write_all(data).ok()?;
            }
            out
        }
    };
    (out.len() < data.len()).then(|| Bytes::from(out))
}

// Keyed by the path's bytes: hashing a `Path` walks its components, a byte string is one
// write.
#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<OsString, Arc<FileEntry>>,
    bytes: u64,
    open_files: usize,
}

/// The served directory.
#[derive(Debug)]
pub(crate) struct Files {
    root: PathBuf,
    show_hidden: bool,
    follow_symlinks: bool,
    cache: Mutex<Cache>,
    /// Files being read into the cache, by path: a burst of first requests for one file
    /// waits for one read instead of making one each.
    loading: Mutex<HashMap<OsString, Arc<tokio::sync::Mutex<()>>>>,
}

impl Files {
    /// `root` must already be canonical.
    pub(crate) fn new(root: PathBuf, show_hidden: bool, follow_symlinks: bool) -> Self {
        Self {
            root,
            show_hidden,
            follow_symlinks,
            cache: Mutex::new(Cache::default()),
            loading: Mutex::default(),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn show_hidden(&self) -> bool {
        self.show_hidden
    }

    /// Finds what `path` names.
    pub(crate) async fn lookup(&self, path: &RequestPath) -> Found {
        match self.lookup_cached(path) {
            Ok(found) => found,
            Err(uncached) => self.lookup_uncached(uncached).await,
        }
    }

    /// What `path` names, when finding out needs no waiting: a cached file, or nothing there.
    /// Otherwise what [`Files::lookup_uncached`] takes on from.
    pub(crate) fn lookup_cached(&self, path: &RequestPath) -> Result<Found, Uncached> {
        if !self.show_hidden && path.is_hidden() {
            return Ok(Found::Missing);
        }
        let len = path.segments().iter().map(|s| s.len() + 1).sum::<usize>();
        let mut full = PathBuf::with_capacity(self.root.as_os_str().len() + len);
        full.push(&self.root);
        for segment in path.segments() {
            full.push(segment);
        }
        // The one inline syscall per request (see the module docs).
        let meta = match std::fs::metadata(&full) {
            Ok(meta) => meta,
            Err(error) => return Ok(Found::failed(&error)),
        };
        if meta.is_file() {
            if let Some(entry) = self.cached(&full, Stamp::of(&meta)) {
                return Ok(Found::File(entry));
            }
        }
        Err(Uncached {
            full,
            meta: Box::new(meta),
        })
    }

    /// The rest of a lookup the cache could not answer: symlinks and hidden names on the
    /// way, then the file read into the cache.
    pub(crate) async fn lookup_uncached(&self, uncached: Uncached) -> Found {
        let Uncached { full, meta } = uncached;
        match self.check_inside(&full).await {
            Inside::Yes => {}
            Inside::Hidden | Inside::Gone => return Found::Missing,
            Inside::Escapes => return Found::Forbidden,
        }
        if meta.is_dir() {
            return Found::Dir(full);
        }
        if !meta.is_file() {
            return Found::Forbidden;
        }
        self.load_once(full, &meta).await
    }

    /// Loads `full` into the cache; lookups of the same path meanwhile wait for this one and
    /// take what it loaded.
    async fn load_once(&self, full: PathBuf, meta: &std::fs::Metadata) -> Found {
        let gate = {
            let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
            loading
                .entry(full.as_os_str().to_owned())
                .or_default()
                .clone()
        };
        let turn = gate.lock().await;
        let found = match self.cached(&full, Stamp::of(meta)) {
            Some(entry) => Found::File(entry),
            None => match load(full.clone(), meta).await {
                Ok(entry) => {
                    let entry = Arc::new(entry);
                    self.remember(full.clone(), entry.clone());
                    Found::File(entry)
                }
                Err(error) => Found::failed(&error),
            },
        };
        drop(turn);
        let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        // The last one out (only the map and this clone left) removes the gate.
        if Arc::strong_count(&gate) == 2 {
            loading.remove(full.as_os_str());
        }
        found
    }

    fn cached(&self, full: &Path, stamp: Stamp) -> Option<Arc<FileEntry>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entries
            .get(full.as_os_str())
            .filter(|entry| entry.stamp == stamp)
            .cloned()
    }

    fn remember(&self, full: PathBuf, entry: Arc<FileEntry>) {
        let size = |e: &FileEntry| e.content.as_ref().map_or(0, |c| c.len() as u64);
        let open = |e: &FileEntry| usize::from(e.open_file.is_some());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.bytes + size(&entry) > CACHE_TOTAL_MAX_BYTES
            || cache.entries.len() >= CACHE_MAX_ENTRIES
            || cache.open_files + open(&entry) > CACHE_MAX_OPEN_FILES
        {
            // Simple and bounded: start over rather than track recency on every hit.
            *cache = Cache::default();
        }
        cache.bytes += size(&entry);
        cache.open_files += open(&entry);
        if let Some(old) = cache.entries.insert(full.into_os_string(), entry) {
            cache.bytes -= size(&old);
            cache.open_files -= open(&old);
        }
    }

    /// Whether `full` (a path under the root) stays inside the root once symlinks are
    /// resolved, and names no hidden file there.
    pub(crate) async fn check_inside(&self, full: &Path) -> Inside {
        match tokio::fs::canonicalize(full).await {
            Ok(real) => self.rules().classify(&real),
            Err(_) => Inside::Gone,
        }
    }

    /// The rules of this directory, for work done away from it (archives, on the blocking
    /// pool).
    pub(crate) fn rules(&self) -> TreeRules {
        TreeRules {
            root: self.root.clone(),
            show_hidden: self.show_hidden,
            follow_symlinks: self.follow_symlinks,
        }
    }
}

/// What of the tree under `root` may be served: hidden names, symlinks that lead out.
#[derive(Debug, Clone)]
pub(crate) struct TreeRules {
    pub(crate) root: PathBuf,
    pub(crate) show_hidden: bool,
    pub(crate) follow_symlinks: bool,
}

impl TreeRules {
    /// Where `real`, a path with every symlink resolved, lies.
    pub(crate) fn classify(&self, real: &Path) -> Inside {
        match real.strip_prefix(&self.root) {
            Ok(rest) => {
                let hidden = rest
                    .components()
                    .any(|c| c.as_os_str().as_encoded_bytes().starts_with(b"."));
                if hidden && !self.show_hidden {
                    Inside::Hidden
                } else {
                    Inside::Yes
                }
            }
            Err(_) if self.follow_symlinks => Inside::Yes,
            Err(_) => Inside::Escapes,
        }
    }

    /// [`TreeRules::classify`] of `full` once resolved, blocking.
    pub(crate) fn check_inside_blocking(&self, full: &Path) -> Inside {
        match std::fs::canonicalize(full) {
            Ok(real) => self.classify(&real),
            Err(_) => Inside::Gone,
        }
    }
}

/// Where a path leads once symlinks are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inside {
    Yes,
    Hidden,
    Escapes,
    Gone,
}

async fn load(path: PathBuf, meta: &std::fs::Metadata) -> io::Result<FileEntry> {
    let stamp = Stamp::of(meta);
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let etag = format!(
        "\"{:x}-{:x}{:08x}\"",
        stamp.len, stamp.mtime.0, stamp.mtime.1
    );
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    let compressible = is_compressible(&mime);
    let content_type = if mime.type_() == mime_guess::mime::TEXT
        || mime.subtype() == mime_guess::mime::JAVASCRIPT
        || mime.subtype() == mime_guess::mime::JSON
    {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    let (content, open_file) = if stamp.len <= CACHE_FILE_MAX_BYTES {
        let path = path.clone();
        tokio::task::spawn_blocking(move || read_whole(&path, stamp))
            .await
            .map_err(io::Error::other)??
    } else {
        (None, None)
    };
    Ok(FileEntry {
        etag_header: HeaderValue::from_str(&etag).map_err(io::Error::other)?,
        etag,
        last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(modified))
            .map_err(io::Error::other)?,
        content_type: HeaderValue::from_str(&content_type).map_err(io::Error::other)?,
        content_length: HeaderValue::from(stamp.len),
        path,
        stamp,
        len: stamp.len,
        modified,
        compressible,
        content,
        open_file,
        gzip: OnceLock::new(),
        brotli: OnceLock::new(),
    })
}

/// The whole file at `path`, if it is still the version `stamp` describes, and the open file
/// too when it is worth sending with `sendfile`. `(None, None)` when the file changed since
/// it was looked at: it is served from disk this time rather than cached as a mix.
fn read_whole(
    path: &Path,
    stamp: Stamp,
) -> io::Result<(Option<Bytes>, Option<Arc<std::fs::File>>)> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    if Stamp::of(&file.metadata()?) != stamp {
        return Ok((None, None));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(stamp.len).map_err(io::Error::other)?);
    // One byte more than expected shows a file that grew.
    (&file).take(stamp.len + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != stamp.len {
        return Ok((None, None));
    }
    let open_file = (stamp.len >= SENDFILE_MIN_BYTES).then(|| Arc::new(file));
    Ok((Some(Bytes::from(bytes)), open_file))
}

fn is_compressible(mime: &mime_guess::Mime) -> bool {
    use mime_guess::mime;
    mime.type_() == mime::TEXT
        || matches!(
            mime.subtype().as_str(),
            "javascript" | "json" | "xml" | "wasm"
        )
        || mime.suffix() == Some(mime::XML)
        || mime.suffix() == Some(mime::JSON)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changed_files_are_never_served_stale() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let files = Files::new(root.clone(), false, false);
        let path = RequestPath::parse("/a.txt").unwrap();
        std::fs::write(root.join("a.txt"), "one").unwrap();
        let Found::File(first) = files.lookup(&path).await else {
            panic!("file expected")
        };
        assert_eq!(first.content.as_deref(), Some(&b"one"[..]));
        std::fs::write(root.join("a.txt"), "second").unwrap();
        let Found::File(second) = files.lookup(&path).await else {
            panic!("file expected")
        };
        assert_eq!(second.content.as_deref(), Some(&b"second"[..]));
        assert_ne!(first.etag, second.etag);
    }

    #[tokio::test]
    async fn a_burst_of_first_requests_reads_the_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("big.bin"), vec![7u8; 100 * 1024]).unwrap();
        let files = Files::new(root, false, false);
        let path = RequestPath::parse("/big.bin").unwrap();
        // On this one-thread runtime every lookup misses the cache before any read ends.
        let found = futures_util::future::join_all((0..16).map(|_| files.lookup(&path))).await;
        let entries: Vec<_> = found
            .into_iter()
            .map(|f| match f {
                Found::File(entry) => entry,
                other => panic!("file expected, got {other:?}"),
            })
            .collect();
        assert!(entries.iter().all(|e| Arc::ptr_eq(e, &entries[0])));
        assert!(files.loading.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn symlinks_out_of_the_root_and_hidden_files_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("link")).unwrap();
        std::fs::write(root.join(".hidden"), "h").unwrap();
        std::os::unix::fs::symlink(root.join(".hidden"), root.join("to-hidden")).unwrap();
        let strict = Files::new(root.clone(), false, false);
        let p = |s| RequestPath::parse(s).unwrap();
        assert!(matches!(strict.lookup(&p("/link")).await, Found::Forbidden));
        assert!(matches!(
            strict.lookup(&p("/.hidden")).await,
            Found::Missing
        ));
        assert!(matches!(
            strict.lookup(&p("/to-hidden")).await,
            Found::Missing
        ));
        let open = Files::new(root, true, true);
        assert!(matches!(open.lookup(&p("/link")).await, Found::File(_)));
        assert!(matches!(open.lookup(&p("/.hidden")).await, Found::File(_)));
    }

    #[test]
    fn text_compresses_and_shrinks() {
        let text = "hello world ".repeat(100);
        for coding in [Coding::Gzip, Coding::Brotli] {
            let packed = compress(text.as_bytes(), coding).unwrap();
            assert!(packed.len() < text.len());
        }
        assert!(compress(b"x", Coding::Gzip).is_none());
    }
}
