//! Files that are never seen half-written: the bytes for `NAME` go to `NAME.part`, opened
//! without following a symlink, and `NAME.part` becomes `NAME` only when the caller has
//! checked it (complete, verified). A destination that already exists and is not a regular
//! file — `/dev/null`, a FIFO, a terminal — is written in place instead: a rename would
//! replace the node with a regular file.
//!
//! `sockit get --download` and `sockit recv` both write through here.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// `FILE.part` for `FILE`.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use sockit::http::download::part_path;
/// assert_eq!(part_path(Path::new("dir/a.iso")), Path::new("dir/a.iso.part"));
/// ```
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Where the bytes for one destination go until they are verified.
#[derive(Debug, Clone)]
pub(crate) struct PartFile {
    dest: PathBuf,
    /// `None`: the destination is a device or FIFO, written in place.
    part: Option<PathBuf>,
}

impl PartFile {
    /// The way to `dest`: through `dest.part`, or in place when `dest` is a device, a FIFO
    /// or a socket (anything that exists and is neither a regular file nor a directory).
    pub(crate) fn new(dest: &Path) -> Self {
        let in_place = std::fs::metadata(dest).is_ok_and(|m| !m.is_file() && !m.is_dir());
        Self {
            dest: dest.to_owned(),
            part: (!in_place).then(|| part_path(dest)),
        }
    }

    /// The file the bytes are written to: the `.part`, or the destination itself.
    pub(crate) fn path(&self) -> &Path {
        self.part.as_deref().unwrap_or(&self.dest)
    }

    /// How many bytes an earlier, interrupted run left in the `.part` (0 when there is
    /// none, when it is not a regular file, or when writing in place).
    pub(crate) fn kept(&self) -> u64 {
        match &self.part {
            Some(part) => std::fs::symlink_metadata(part)
                .ok()
                .filter(|m| m.is_file())
                .map_or(0, |m| m.len()),
            None => 0,
        }
    }

    /// Opens the file to write at `keep`, keeping its first `keep` bytes (see [`open_part`]).
    /// In place, the destination is opened for writing as it is; opening a FIFO waits for
    /// its reader, so call this off the runtime's threads.
    pub(crate) fn open(&self, keep: u64) -> io::Result<File> {
        match &self.part {
            Some(part) => {
                let mut file = open_part(part, keep)?;
                file.seek(SeekFrom::Start(keep))?;
                Ok(file)
            }
            None => OpenOptions::new().write(true).open(&self.dest),
        }
    }

    /// Sets the `.part` file's modification time (nothing in place).
    pub(crate) fn set_modified(&self, time: std::time::SystemTime) -> io::Result<()> {
        match &self.part {
            Some(part) => no_follow(OpenOptions::new().write(true))
                .open(part)?
                .set_modified(time),
            None => Ok(()),
        }
    }

    /// Puts the finished file in place: renames the `.part` (nothing to do in place).
    pub(crate) fn commit(&self) -> io::Result<()> {
        match &self.part {
            Some(part) => std::fs::rename(part, &self.dest),
            None => Ok(()),
        }
    }

    /// Removes a `.part` whose content is known to be wrong (resuming it could only fail).
    pub(crate) fn discard(&self) {
        if let Some(part) = &self.part {
            let _ = std::fs::remove_file(part);
        }
    }
}

/// Opens `NAME.part` without following a symlink, keeping its first `keep` bytes.
pub(crate) fn open_part(part: &Path, keep: u64) -> io::Result<File> {
    let mut options = OpenOptions::new();
    no_follow(options.read(true).write(true).create(true));
    let file = options.open(part)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the .part file is not a regular file",
        ));
    }
    let len = file.metadata()?.len();
    if len == keep {
        return Ok(file);
    }
    if keep == 0 {
        // A new file rather than one cut to zero: ext4 (auto_da_alloc) writes a file that
        // was truncated to zero back to disk when it is closed, which costs about half a
        // second per GiB received. `create_new` follows no symlink either.
        drop(file);
        std::fs::remove_file(part)?;
        return options.create_new(true).open(part);
    }
    file.set_len(keep)?;
    Ok(file)
}

fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use crate::http::part_file::{PartFile, open_part};

    #[test]
    fn a_symlinked_part_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"keep me").unwrap();
        let dest = dir.path().join("x");
        std::os::unix::fs::symlink(&outside, dir.path().join("x.part")).unwrap();
        let part = PartFile::new(&dest);
        assert_eq!(part.kept(), 0);
        assert!(part.open(0).is_err());
        assert!(open_part(part.path(), 0).is_err());
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    }

    #[test]
    fn the_part_keeps_its_prefix_and_is_renamed_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x");
        std::fs::write(dir.path().join("x.part"), b"hello world").unwrap();
        let part = PartFile::new(&dest);
        assert_eq!(part.path(), dir.path().join("x.part"));
        assert_eq!(part.kept(), 11);
        let mut file = part.open(5).unwrap();
        file.write_all(b", you").unwrap();
        drop(file);
        assert!(!dest.exists());
        part.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello, you");
        assert!(!dir.path().join("x.part").exists());
    }

    #[test]
    fn devices_are_written_in_place_and_never_replaced() {
        let part = PartFile::new(std::path::Path::new("/dev/null"));
        assert_eq!(part.path(), std::path::Path::new("/dev/null"));
        assert_eq!(part.kept(), 0);
        part.open(0).unwrap().write_all(b"gone").unwrap();
        part.commit().unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
    }
}
