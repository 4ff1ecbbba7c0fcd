//! Uploads: `PUT /dir/name` with the bytes as the body, and `POST /dir/` with a
//! `multipart/form-data` form (the listing page's). Each file is written to a hidden temp file
//! next to its destination and renamed only once complete, so a failed or cut-off upload
//! leaves nothing behind; an existing file is kept unless overwriting is allowed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;

use crate::http::server::path::RequestPath;
use crate::http::server::path::{display_name, is_plain_name};
use crate::http::server::static_files::{Files, Inside};

/// What uploads may do.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Largest file accepted, in bytes.
    pub max_file_bytes: u64,
    /// Replace existing files.
    pub overwrite: bool,
    /// Create missing directories on the way to the destination.
    pub mkdir: bool,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 1 << 30,
            overwrite: false,
            mkdir: false,
        }
    }
}

/// Why an upload was refused; each maps to a status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    #[error("file is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("{0} exists (the server does not overwrite files)")]
    Exists(String),
    #[error("{0} is a directory")]
    IsDir(String),
    #[error("invalid file name \"{0}\"")]
    BadName(String),
    #[error("directory {0} does not exist")]
    NoDir(String),
    #[error("destination leaves the served directory")]
    Escapes,
    #[error("request body: {0}")]
    Body(String),
    #[error("cannot write the file")]
    Io(#[from] std::io::Error),
}

impl UploadError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            UploadError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UploadError::Exists(_) | UploadError::IsDir(_) => StatusCode::CONFLICT,
            UploadError::BadName(_) | UploadError::Body(_) => StatusCode::BAD_REQUEST,
            UploadError::NoDir(_) => StatusCode::NOT_FOUND,
            UploadError::Escapes => StatusCode::FORBIDDEN,
            UploadError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A file saved by an upload.
#[derive(Debug)]
pub(crate) struct Saved {
    pub(crate) path: RequestPath,
    pub(crate) replaced: bool,
}

/// `PUT`: the whole body becomes the file `path`.
pub(crate) async fn put(
    files: &Files,
    config: &UploadConfig,
    path: &RequestPath,
    declared_len: Option<u64>,
    body: &mut Incoming,
) -> Result<Saved, UploadError> {
    let name = path
        .file_name()
        .ok_or_else(|| UploadError::IsDir("/".into()))?;
    check_name(files, name)?;
    if declared_len.is_some_and(|len| len > config.max_file_bytes) {
        return Err(UploadError::TooLarge(config.max_file_bytes));
    }
    let dir = destination_dir(files, config, &path.parent()).await?;
    let mut temp = TempFile::create(&dir).await?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| UploadError::Body(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            temp.write(&data, config.max_file_bytes).await?;
        }
    }
    let replaced = temp.finish(&dir.join(name), config.overwrite, name).await?;
    Ok(Saved {
        path: path.clone(),
        replaced,
    })
}

/// `POST` of a `multipart/form-data` form to the directory `dir`: every file part is saved.
pub(crate) async fn post(
    files: &Files,
    config: &UploadConfig,
    dir: &RequestPath,
    content_type: &str,
    body: &mut Incoming,
) -> Result<Vec<Saved>, UploadError> {
    let boundary =
        multer::parse_boundary(content_type).map_err(|e| UploadError::Body(e.to_string()))?;
    let full_dir = destination_dir(files, config, dir).await?;
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut saved = Vec::new();
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| UploadError::Body(e.to_string()))?
    {
        let Some(raw_name) = field.file_name() else {
            continue; // a plain form field
        };
        // Browsers may send a path; only its last part names the file.
        let name = raw_name
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            continue; // the form was sent with no file chosen
        }
        let name = OsStr::new(&name);
        check_name(files, name)?;
        let mut temp = TempFile::create(&full_dir).await?;
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| UploadError::Body(e.to_string()))?
        {
            temp.write(&chunk, config.max_file_bytes).await?;
        }
        let replaced = temp
            .finish(&full_dir.join(name), config.overwrite, name)
            .await?;
        saved.push(Saved {
            path: dir.join(name),
            replaced,
        });
    }
    if saved.is_empty() {
        return Err(UploadError::Body("the form holds no file".into()));
    }
    Ok(saved)
}

fn check_name(files: &Files, name: &OsStr) -> Result<(), UploadError> {
    use std::os::unix::ffi::OsStrExt;
    if !is_plain_name(name) || (name.as_bytes().starts_with(b".") && !files.show_hidden()) {
        return Err(UploadError::BadName(display_name(name.as_bytes())));
    }
    Ok(())
}

/// The directory a file goes to, created with `mkdir`, and checked to be inside the root.
async fn destination_dir(
    files: &Files,
    config: &UploadConfig,
    dir: &RequestPath,
) -> Result<PathBuf, UploadError> {
    if dir.is_hidden() && !files.show_hidden() {
        return Err(UploadError::BadName(dir.to_href(true)));
    }
    let full = files.root().join(dir.to_relative());
    // Check what exists before creating anything: a symlinked parent must not let `mkdir`
    // create directories outside the root.
    let mut existing = full.clone();
    while !existing.exists() {
        if !existing.pop() || !existing.starts_with(files.root()) {
            return Err(UploadError::Escapes);
        }
    }
    if files.check_inside(&existing).await != Inside::Yes {
        return Err(UploadError::Escapes);
    }
    if existing != full {
        if !config.mkdir {
            return Err(UploadError::NoDir(dir.to_href(true)));
        }
        tokio::fs::create_dir_all(&full).await?;
    }
    if !tokio::fs::metadata(&full).await?.is_dir() {
        return Err(UploadError::NoDir(dir.to_href(true)));
    }
    if files.check_inside(&full).await != Inside::Yes {
        return Err(UploadError::Escapes);
    }
    Ok(full)
}

/// A hidden file next to the destination, removed on drop unless renamed into place.
struct TempFile {
    path: Option<PathBuf>,
    file: tokio::fs::File,
    written: u64,
}

impl TempFile {
    async fn create(dir: &Path) -> Result<Self, UploadError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            ".sockit-upload-{}-{}-{nanos:x}.part",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(Self {
            path: Some(path),
            file,
            written: 0,
        })
    }

    async fn write(&mut self, data: &Bytes, max_bytes: u64) -> Result<(), UploadError> {
        self.written += data.len() as u64;
        if self.written > max_bytes {
            return Err(UploadError::TooLarge(max_bytes));
        }
        self.file.write_all(data).await?;
        Ok(())
    }

    /// Moves the finished file to `dest`; returns whether it replaced a file.
    async fn finish(
        mut self,
        dest: &Path,
        overwrite: bool,
        name: &OsStr,
    ) -> Result<bool, UploadError> {
        use std::os::unix::ffi::OsStrExt;
        let name = display_name(name.as_bytes());
        self.file.flush().await?;
        self.file.sync_all().await?;
        let temp = self.path.clone().expect("set until finished");
        if let Ok(meta) = tokio::fs::symlink_metadata(dest).await {
            if meta.is_dir() {
                return Err(UploadError::IsDir(name));
            }
            if !overwrite {
                return Err(UploadError::Exists(name));
            }
            tokio::fs::rename(&temp, dest).await?;
            self.path = None;
            return Ok(true);
        }
        // A hard link fails if the name was taken meanwhile: no race overwrites a file.
        match tokio::fs::hard_link(&temp, dest).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(UploadError::Exists(name));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(false)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Best effort: a leftover hidden temp file is neither listed nor served.
            let _ = std::fs::remove_file(path);
        }
    }
}
