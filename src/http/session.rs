//! `--session NAME|FILE`, as HTTPie and xh keep it: the headers (credentials included) and
//! cookies of one host, saved as JSON between invocations. A named session lives in the
//! user's config directory under the host and port it was made for, so it is never offered
//! to another host; the file is created `0600`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use url::Url;

use crate::http::client::Cookie;

/// What a session keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    /// Headers sent with every request of the session (`Authorization` included), in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The cookie jar.
    #[serde(default)]
    pub cookies: Vec<Cookie>,
}

/// Why a session could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Reading or writing the file failed.
    #[error("session file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a session.
    #[error("session file {path} is not valid session JSON")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// No config directory to keep a named session in.
    #[error("no config directory for named sessions (set HOME or XDG_CONFIG_HOME)")]
    NoConfigDir,
}

/// The file of a session: `NAME` is kept in `$XDG_CONFIG_HOME/sockit/sessions/HOST_PORT/
/// NAME.json` (`~/.config` by default); anything with a `/` or ending in `.json` is a path.
///
/// # Errors
///
/// [`SessionError::NoConfigDir`] for a name when neither variable is set.
pub fn path_for(name_or_file: &str, url: &Url) -> Result<PathBuf, SessionError> {
    if name_or_file.contains('/') || name_or_file.ends_with(".json") {
        return Ok(PathBuf::from(name_or_file));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .ok_or(SessionError::NoConfigDir)?;
    let host = url.host_str().unwrap_or("localhost").replace(':', "_");
    let port = url.port_or_known_default().unwrap_or(0);
    Ok(config
        .join("sockit")
        .join("sessions")
        .join(format!("{host}_{port}"))
        .join(format!("{name_or_file}.json")))
}

impl Session {
    /// The session in `path`; an empty one when the file does not exist yet.
    ///
    /// # Errors
    ///
    /// [`SessionError`] when the file cannot be read or is not a session.
    pub fn load(path: &Path) -> Result<Self, SessionError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| SessionError::Json {
                path: path.to_owned(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(SessionError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes the session to `path` (mode `0600`, its directory `0700`), whole or not at all.
    ///
    /// # Errors
    ///
    /// [`SessionError::Io`] when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), SessionError> {
        let io = |source| SessionError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let json = serde_json::to_vec_pretty(self).map_err(|source| SessionError::Json {
            path: path.to_owned(),
            source,
        })?;
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io)?;
        file.write_all(&json).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temp, path).map_err(io)
    }

    /// Sets `name` to `value`, replacing a header of that name (any case).
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_sessions_are_kept_per_host_and_port_files_as_given() {
        let url = Url::parse("http://api.test:8080/x").unwrap();
        let named = path_for("work", &url).unwrap();
        assert!(
            named.ends_with("sockit/sessions/api.test_8080/work.json"),
            "{named:?}"
        );
        assert_eq!(
            path_for("./s.json", &url).unwrap(),
            PathBuf::from("./s.json")
        );
    }

    #[test]
    fn a_saved_session_loads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/s.json");
        assert_eq!(Session::load(&path).unwrap(), Session::default());
        let mut session = Session::default();
        session.set_header("X-Key", "1");
        session.set_header("x-key", "2");
        session.save(&path).unwrap();
        assert_eq!(
            Session::load(&path).unwrap().headers,
            vec![("x-key".into(), "2".into())]
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
