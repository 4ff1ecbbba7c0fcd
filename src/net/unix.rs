//! Listening on Unix sockets: a stale socket file is replaced only when it is a socket that
//! nobody listens on (never a regular file, never a live server's socket), and the file this
//! process created is removed when its listener is dropped.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info};

use crate::net::NetError;
use crate::net::dial::UnixAddr;

/// A listening Unix socket; dropping it removes the socket file it created (if that file is
/// still the one it created).
#[derive(Debug)]
pub struct UnixServerSocket {
    listener: UnixListener,
    addr: UnixAddr,
    /// The file to remove at exit, with its device and inode, so a file someone put there
    /// later is left alone.
    created: Option<(PathBuf, u64, u64)>,
}

impl UnixServerSocket {
    /// The address listened on.
    pub fn addr(&self) -> &UnixAddr {
        &self.addr
    }

    /// Accepts the next client; errors that concern one client are retried.
    pub async fn accept(&self) -> UnixStream {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => return stream,
                Err(error) => {
                    debug!(%error, "unix accept failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl Drop for UnixServerSocket {
    fn drop(&mut self) {
        if let Some((path, dev, ino)) = &self.created {
            let ours = std::fs::symlink_metadata(path)
                .is_ok_and(|m| m.file_type().is_socket() && m.dev() == *dev && m.ino() == *ino);
            if ours {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Binds a Unix socket at `addr`.
///
/// A socket file already at the path is removed first only if nothing accepts connections on
/// it (a server that died without cleaning up).
///
/// # Errors
///
/// [`NetError::UnixBind`] when the path holds something that is not a socket, when a server
/// listens there, or when the OS refuses.
pub fn bind_unix(addr: &UnixAddr) -> Result<UnixServerSocket, NetError> {
    let error = |reason: String, source: Option<io::Error>| NetError::UnixBind {
        addr: addr.to_string(),
        reason,
        source,
    };
    match addr {
        UnixAddr::Path(path) => {
            remove_if_stale(path).map_err(|(reason, source)| error(reason, source))?;
            let listener =
                UnixListener::bind(path).map_err(|e| error("cannot bind".to_owned(), Some(e)))?;
            let meta = std::fs::symlink_metadata(path)
                .map_err(|e| error("cannot read the new socket".to_owned(), Some(e)))?;
            Ok(UnixServerSocket {
                listener,
                addr: addr.clone(),
                created: Some((path.clone(), meta.dev(), meta.ino())),
            })
        }
        UnixAddr::Abstract(name) => {
            let listener =
                bind_abstract(name).map_err(|e| error("cannot bind".to_owned(), Some(e)))?;
            Ok(UnixServerSocket {
                listener,
                addr: addr.clone(),
                created: None,
            })
        }
    }
}

fn remove_if_stale(path: &Path) -> Result<(), (String, Option<io::Error>)> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(("cannot inspect the path".to_owned(), Some(e))),
    };
    if !meta.file_type().is_socket() {
        return Err((
            "the path exists and is not a socket; it was left as it is (remove it or pick \
             another path)"
                .to_owned(),
            None,
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err((
            "a server is listening on it already (stop it or pick another path)".to_owned(),
            None,
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            info!(path = %path.display(), "removing a stale socket nobody listens on");
            std::fs::remove_file(path)
                .map_err(|e| ("cannot remove the stale socket".to_owned(), Some(e)))
        }
        Err(e) => Err((
            "cannot tell whether the socket is in use".to_owned(),
            Some(e),
        )),
    }
}

#[cfg(target_os = "linux")]
fn bind_abstract(name: &str) -> io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

#[cfg(not(target_os = "linux"))]
fn bind_abstract(_name: &str) -> io::Result<UnixListener> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract Unix sockets exist on Linux only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_regular_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, b"precious").unwrap();
        let err = bind_unix(&UnixAddr::Path(path.clone())).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[tokio::test]
    async fn a_live_socket_is_refused_a_stale_one_replaced_and_ours_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let addr = UnixAddr::Path(path.clone());
        let live = bind_unix(&addr).unwrap();
        let err = bind_unix(&addr).unwrap_err();
        assert!(err.to_string().contains("listening on it already"), "{err}");
        drop(live);
        assert!(!path.exists(), "our socket file is removed at drop");
        // A socket left behind by a dead server: bound, never listened on by anyone now.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let again = bind_unix(&addr).unwrap();
        drop(again);
        assert!(!path.exists());
    }
}
