//! What `sockit serve` serves and how ([`Config`]), and why it may not start.

use std::path::PathBuf;

use bytes::Bytes;
use http::StatusCode;
use http::header::{HeaderName, HeaderValue};

use crate::http::server::auth::Credentials;
use crate::http::server::connection::Limits;
use crate::http::server::log::AccessLog;
use crate::http::server::upload::UploadConfig;

/// A fixed answer to every request (`--text`, `--status`).
#[derive(Debug, Clone)]
pub struct FixedAnswer {
    /// The status of every response.
    pub status: StatusCode,
    /// The body of every response (`text/plain`).
    pub body: Bytes,
}

/// What the server serves and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory to serve.
    pub root: PathBuf,
    /// Serve and list hidden (dot) files.
    pub show_hidden: bool,
    /// Follow symlinks that lead out of `root`.
    pub follow_symlinks: bool,
    /// Compress text responses (gzip, br) for clients that accept it.
    pub compress: bool,
    /// Accept uploads (PUT, multipart POST).
    pub upload: Option<UploadConfig>,
    /// Require these credentials.
    pub auth: Option<Credentials>,
    /// Require `auth` for uploads only.
    pub auth_writes_only: bool,
    /// Answer everything with this instead of serving files.
    pub fixed: Option<FixedAnswer>,
    /// Per-connection limits.
    pub limits: Limits,
    /// Where to write the access log, if anywhere.
    pub access_log: Option<AccessLog>,
    /// Fields added to every answer (`--header`), replacing the server's of the same name.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Let any origin read (`Access-Control-Allow-Origin: *`) and answer CORS preflights.
    pub cors: bool,
    /// Single-page application: a GET of a path that matches nothing gets the root
    /// `index.html` (200) instead of a 404, for the page's own router.
    pub spa: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            root: PathBuf::from("."),
            show_hidden: false,
            follow_symlinks: false,
            compress: true,
            upload: None,
            auth: None,
            auth_writes_only: false,
            fixed: None,
            limits: Limits::default(),
            access_log: None,
            headers: Vec::new(),
            cors: false,
            spa: false,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The directory to serve is missing or unreadable.
    #[error("cannot serve {path}")]
    Root {
        /// The directory asked for.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The path to serve is not a directory.
    #[error("not a directory: {0}")]
    NotADirectory(PathBuf),
}
