//! The manifest a sender serves at `GET /TOKEN/manifest`: every file's relative path, size
//! and BLAKE3 hash, as JSON. Pure: no I/O. The receiver owns paths, so every path is checked
//! here before anything touches the disk.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Largest manifest a receiver reads (bytes of JSON).
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;
/// Most files one manifest may list.
pub const MAX_FILES: usize = 100_000;
/// Longest relative path accepted (bytes).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single path component accepted (bytes); common file systems stop at 255.
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Deepest directory nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// The version this code writes and understands.
pub const VERSION: u32 = 1;

/// A BLAKE3 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The BLAKE3 hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

impl From<blake3::Hash> for Digest {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = parse_hex::<32>(s).ok_or_else(|| ManifestError::BadHash(shown(s)))?;
        Ok(Self(bytes))
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses exactly `N` bytes written as `2 * N` hex digits (either case).
pub(crate) fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// One file in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path with `/` separators, checked by [`check_path`].
    pub path: String,
    /// Length in bytes.
    pub size: u64,
    /// BLAKE3 of the whole content.
    pub blake3: Digest,
}

/// The list of files a sender offers. Entry `i` is served at `GET /TOKEN/f/i`.
///
/// # Examples
///
/// ```
/// use sockit::transfer::{Entry, Manifest, Digest};
///
/// let manifest = Manifest::new(vec![Entry {
///     path: "photos/cat 1.jpg".into(),
///     size: 5,
///     blake3: Digest::of(b"hello"),
/// }]).unwrap();
/// let json = manifest.to_json();
/// assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), manifest);
///
/// // A hostile path never gets past parsing.
/// let evil = json.replace("photos/cat 1.jpg", "../../.bashrc");
/// assert!(Manifest::from_json(evil.as_bytes()).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version; see [`VERSION`].
    pub version: u32,
    /// The files, in the order they are served.
    pub files: Vec<Entry>,
}

/// Why a manifest or a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON of the expected shape.
    #[error("malformed manifest: {0}")]
    Malformed(String),
    /// Written by a newer sockit.
    #[error("unsupported manifest version {0} (this sockit understands {VERSION})")]
    Version(u32),
    /// Larger than [`MAX_MANIFEST_BYTES`] or listing more than [`MAX_FILES`] files.
    #[error("manifest too large")]
    TooLarge,
    /// A path that could write outside the target directory, or that no file system takes.
    #[error("unsafe path in manifest: {path}: {reason}")]
    UnsafePath {
        /// The path, neutralised for display.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same path twice, or a path that is both a file and a directory.
    #[error("conflicting paths in manifest: {0}")]
    Conflict(String),
    /// A hash that is not 64 hex digits.
    #[error("invalid BLAKE3 hash {0}")]
    BadHash(String),
}

impl Manifest {
    /// A manifest of `files`, checked as [`Manifest::from_json`] would check it.
    ///
    /// # Errors
    ///
    /// See [`Manifest::check`].
    pub fn new(files: Vec<Entry>) -> Result<Self, ManifestError> {
        let manifest = Self {
            version: VERSION,
            files,
        };
        manifest.check()?;
        Ok(manifest)
    }

    /// Parses and checks a manifest received from a sender.
    ///
    /// # Errors
    ///
    /// [`ManifestError`] for malformed JSON, an unknown version, too many files, any unsafe
    /// path (see [`check_path`]) or conflicting paths: one bad entry refuses the whole manifest.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge);
        }
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if manifest.version != VERSION {
            return Err(ManifestError::Version(manifest.version));
        }
        manifest.check()?;
        Ok(manifest)
    }

    /// The JSON a sender serves.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a manifest always serialises")
    }

    /// Sum of all file sizes (saturating).
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.size))
    }

    /// Checks every path, and that no two entries collide: no path twice, no path that is
    /// also a directory of another, no `X` next to `X.part` (the receiver's temporary name).
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn check(&self) -> Result<(), ManifestError> {
        if self.files.len() > MAX_FILES {
            return Err(ManifestError::TooLarge);
        }
        let mut files = HashSet::with_capacity(self.files.len());
        let mut dirs = HashSet::new();
        for entry in &self.files {
            check_path(&entry.path)?;
            if !files.insert(entry.path.as_str()) {
                return Err(ManifestError::Conflict(shown(&entry.path)));
            }
            for (i, _) in entry.path.match_indices('/') {
                dirs.insert(&entry.path[..i]);
            }
        }
        for entry in &self.files {
            if dirs.contains(entry.path.as_str()) {
                return Err(ManifestError::Conflict(format!(
                    "{} is both a file and a directory",
                    shown(&entry.path)
                )));
            }
            if let Some(base) = entry.path.strip_suffix(".part") {
                if files.contains(base) {
                    return Err(ManifestError::Conflict(format!(
                        "{} collides with the temporary file of {}",
                        shown(&entry.path),
                        shown(base)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Checks that `path` is a safe relative path: `/`-separated, non-empty components, no `.`
/// or `..`, not absolute, no drive letter (`C:`), no backslash, no control characters, and
/// within the length limits. A path that passes can be joined below a directory and stays
/// below it (symlinks on the receiving disk are the receiver's to check).
///
/// # Examples
///
/// ```
/// use sockit::transfer::check_path;
///
/// assert!(check_path("docs/résumé 2024.pdf").is_ok());
/// for evil in ["../x", "/etc/passwd", "a/../../b", "C:/x", "a\\b", "a//b", "bell\u{7}"] {
///     assert!(check_path(evil).is_err(), "{evil:?}");
/// }
/// ```
///
/// # Errors
///
/// [`ManifestError::UnsafePath`] saying what is wrong.
pub fn check_path(path: &str) -> Result<(), ManifestError> {
    let refuse = |reason| {
        Err(ManifestError::UnsafePath {
            path: shown(path),
            reason,
        })
    };
    if path.is_empty() {
        return refuse("empty path");
    }
    if path.len() > MAX_PATH_BYTES {
        return refuse("path too long");
    }
    if path.starts_with('/') {
        return refuse("absolute path");
    }
    if path.contains('\\') {
        return refuse("backslash in path");
    }
    if path.chars().any(char::is_control) {
        return refuse("control character in path");
    }
    let first = path.split('/').next().unwrap_or_default().as_bytes();
    if first.len() >= 2 && first[0].is_ascii_alphabetic() && first[1] == b':' {
        return refuse("drive letter in path");
    }
    let mut depth = 0;
    for component in path.split('/') {
        depth += 1;
        match component {
            "" => return refuse("empty path component"),
            "." | ".." => return refuse("dot component in path"),
            c if c.len() > MAX_COMPONENT_BYTES => return refuse("path component too long"),
            _ => {}
        }
    }
    if depth > MAX_DEPTH {
        return refuse("path nested too deep");
    }
    Ok(())
}

/// A name made safe to print: control characters and backslashes are escaped, quotes added.
///
/// # Examples
///
/// ```
/// assert_eq!(sockit::transfer::shown("a\u{1b}[2Jb"), r#""a\u{1b}[2Jb""#);
/// ```
pub fn shown(name: &str) -> String {
    let cut: String = name.chars().take(200).collect();
    let mut text = format!("{cut:?}");
    if cut.len() < name.len() {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(path: &str) -> Entry {
        Entry {
            path: path.into(),
            size: 1,
            blake3: Digest::of(b"x"),
        }
    }

    #[test]
    fn safe_paths_pass() {
        for ok in [
            "a",
            "dir/sub/file.txt",
            "with space/ünïcödé 🎉.txt",
            ".hidden",
            "..dots..",
            "a.b",
            "12:30 notes",
            "x/C:",
        ] {
            check_path(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
    }

    #[test]
    fn hostile_paths_are_refused_with_a_reason() {
        let cases = [
            ("", "empty path"),
            ("/etc/passwd", "absolute path"),
            ("..", "dot component"),
            ("../x", "dot component"),
            ("a/../../x", "dot component"),
            ("a/./b", "dot component"),
            ("a/", "empty path component"),
            ("a//b", "empty path component"),
            ("a\\..\\b", "backslash"),
            ("C:/Windows", "drive letter"),
            ("c:evil", "drive letter"),
            ("a\nb", "control character"),
            ("\u{1b}[31mred", "control character"),
            ("nul\0byte", "control character"),
            ("del\u{7f}", "control character"),
            ("c1\u{9b}", "control character"),
        ];
        for (path, reason) in cases {
            let err = check_path(path).expect_err(path);
            assert!(err.to_string().contains(reason), "{path:?}: {err}");
            // What is printed never carries the raw control character.
            assert!(!err.to_string().chars().any(char::is_control), "{err:?}");
        }
        assert!(check_path(&"a".repeat(256)).is_err());
        assert!(check_path("a/".repeat(70).trim_end_matches('/')).is_err());
    }

    #[test]
    fn conflicts_are_refused() {
        for paths in [
            &["a", "a"][..],
            &["a", "a/b"],
            &["d/x", "d"],
            &["f", "f.part"],
        ] {
            let files = paths.iter().map(|p| entry(p)).collect();
            assert!(
                matches!(Manifest::new(files), Err(ManifestError::Conflict(_))),
                "{paths:?}"
            );
        }
        Manifest::new(vec![entry("a/b"), entry("a/c"), entry("ab")]).unwrap();
    }

    #[test]
    fn json_shape_is_stable() {
        let m = Manifest::new(vec![Entry {
            path: "a b/c".into(),
            size: 3,
            blake3: Digest::of(b"abc"),
        }])
        .unwrap();
        let json = m.to_json();
        assert_eq!(
            json,
            format!(
                r#"{{"version":1,"files":[{{"path":"a b/c","size":3,"blake3":"{}"}}]}}"#,
                blake3::hash(b"abc").to_hex()
            )
        );
    }

    #[test]
    fn bad_json_is_refused() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"version":2,"files":[]}"#,
            br#"{"version":1,"files":[{"path":"a","size":-1,"blake3":"00"}]}"#,
            br#"{"version":1,"files":[{"path":"a","size":1,"blake3":"zz"}]}"#,
            br#"{"version":1,"files":[{"path":"/a","size":1,"blake3":"0000000000000000000000000000000000000000000000000000000000000000"}]}"#,
        ] {
            assert!(
                Manifest::from_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn component() -> impl Strategy<Value = String> {
        "[^/\\\\\\p{Cc}]{1,20}".prop_filter("not a dot component", |c| c != "." && c != "..")
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Manifest::from_json(&bytes);
        }

        #[test]
        fn check_path_never_panics(path in "\\PC{0,40}|.{0,40}") {
            let _ = check_path(&path);
        }

        #[test]
        fn accepted_paths_stay_below_the_root(path in "(\\.\\.|\\.|[a-z]|/|\\\\|:|C:|\\PC){0,12}") {
            if check_path(&path).is_ok() {
                let joined = std::path::Path::new("/root/out").join(&path);
                let mut depth = 0i32;
                for c in std::path::Path::new(&path).components() {
                    match c {
                        std::path::Component::Normal(_) => depth += 1,
                        other => prop_assert!(false, "{path:?} has {other:?}"),
                    }
                }
                prop_assert!(depth >= 1);
                prop_assert!(joined.starts_with("/root/out"));
            }
        }

        #[test]
        fn json_round_trips(paths in proptest::collection::btree_set(
            proptest::collection::vec(component(), 1..4).prop_map(|c| c.join("/")), 0..8),
            size in any::<u64>())
        {
            let files: Vec<Entry> = paths.iter().enumerate().map(|(i, p)| Entry {
                path: format!("{i}/{p}"),
                size,
                blake3: Digest::of(p.as_bytes()),
            }).collect();
            let m = Manifest::new(files).unwrap();
            prop_assert_eq!(Manifest::from_json(m.to_json().as_bytes()).unwrap(), m);
        }
    }
}
