//! `sockit serve`: a directory downloaded as a streamed tar or zip, checked with the real
//! `tar` and `unzip`, file by file against BLAKE3 hashes of the originals.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const MIB: u64 = 1 << 20;

/// `len` bytes that differ for every `seed` (BLAKE3's output stream: fast in debug builds).
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// A served directory `www` and what an archive of it must hold: relative path (under
/// `www/`) -> BLAKE3 of the bytes.
struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    expected: BTreeMap<Vec<u8>, blake3::Hash>,
    bytes: u64,
}

fn tree(files: usize, total_bytes: u64) -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    let mut expected = BTreeMap::new();
    let mut bytes = 0;
    let mut put = |rel: &[u8], data: &[u8]| {
        let path = root.join(OsStr::from_bytes(rel));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        expected.insert(rel.to_vec(), blake3::hash(data));
        bytes += data.len() as u64;
    };
    let average = total_bytes / files as u64;
    for i in 0..files {
        // Sizes from 0 to twice the average, some on a 512-byte boundary.
        let len = if i % 17 == 0 {
            (i % 5) * 512
        } else {
            ((i as u64 * 7919) % (2 * average)) as usize
        };
        let rel = format!("d{}/sub{}/f{i}.bin", i % 10, i % 3);
        put(rel.as_bytes(), &content(len, i as u64));
    }
    // Names only pax (long) or raw bytes (not UTF-8) can hold.
    let long = format!("{}/{}.txt", "l".repeat(120), "n".repeat(200));
    put(long.as_bytes(), b"long name\n");
    put(b"odd\xff name.bin", b"not utf-8\n");
    put(b"a.txt", b"a\n");
    std::fs::create_dir(root.join("empty")).unwrap();
    // What the listing leaves out, the archive leaves out.
    std::fs::write(root.join(".secret"), b"hidden\n").unwrap();
    std::fs::create_dir(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/config"), b"hidden\n").unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("passwd"), b"root:x:0:0\n").unwrap();
    std::os::unix::fs::symlink(outside.join("passwd"), root.join("escape-link")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape-dir")).unwrap();
    std::os::unix::fs::symlink(".", root.join("d0/loop")).unwrap();
    std::os::unix::fs::symlink("../../a.txt", root.join("d1/sub1/inside-link")).unwrap();
    expected.insert(b"d1/sub1/inside-link".to_vec(), blake3::hash(b"a\n"));
    nix::unistd::mkfifo(&root.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::fs::write(root.join("unreadable.txt"), b"secret\n").unwrap();
    std::fs::set_permissions(
        root.join("unreadable.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    Tree {
        _dir: dir,
        root,
        expected,
        bytes,
    }
}

/// `sockit serve ROOT ARGS…` without the capabilities that let root read every file, so that
/// an unreadable file is unreadable to it (the tests run as root).
fn serve_unprivileged(root: &Path, extra: &[&str]) -> Server {
    require("setpriv");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set=-all", "--inh-caps=-all"])
        .arg(env!("CARGO_BIN_EXE_sockit"))
        .args(["serve", root.to_str().unwrap(), "--port", "0"])
        .args(extra);
    Server::start_command(cmd, std::process::Stdio::null())
}

/// Downloads `url` with curl in `proto` to `out`; returns (curl's exit code, response head).
fn download(proto: Proto, url: &str, out: &Path, extra: &[&str]) -> (Option<i32>, String) {
    require("curl");
    let head = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("curl");
    cmd.arg(proto.curl_option(false))
        .args(["-sS", "--max-time", "60", "-D"])
        .arg(head.path())
        .arg("-o")
        .arg(out)
        .args(extra)
        .arg(url);
    let (_, _, code) = run_cmd(&mut cmd, b"");
    (code, std::fs::read_to_string(head.path()).unwrap())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Every regular file under `dir` (relative path -> BLAKE3), following no symlinks.
fn hashes(dir: &Path) -> BTreeMap<Vec<u8>, blake3::Hash> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for item in std::fs::read_dir(&at).unwrap() {
            let item = item.unwrap();
            let kind = item.file_type().unwrap();
            if kind.is_dir() {
                todo.push(item.path());
            } else {
                let rel = item
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec();
                out.insert(rel, blake3::hash(&std::fs::read(item.path()).unwrap()));
            }
        }
    }
    out
}

/// Peak and current resident memory of `pid`, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn run_ok(cmd: &mut Command) -> String {
    let (out, err, code) = run_cmd(cmd, b"");
    assert_eq!(code, Some(0), "{cmd:?}: {err}");
    String::from_utf8_lossy(&out).into_owned()
}

fn check_archive(proto: Proto, format: &str) {
    let tree = tree(300, 50 * MIB);
    let server = serve_unprivileged(&tree.root, &[]);
    let (before, _) = memory(server.child.id());
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join(format!("www.{format}"));
    let url = format!("http://{}/?download={format}", server.addr);
    let (code, head) = download(proto, &url, &file, &[]);
    assert_eq!(code, Some(0), "curl failed; head: {head}");
    assert!(head.starts_with(proto.status_line()), "{head}");
    assert!(head.contains(" 200"), "{head}");
    let disposition = format!("attachment; filename=\"www.{format}\"");
    assert_eq!(header(&head, "content-disposition"), Some(&*disposition));
    assert_eq!(header(&head, "content-length"), None, "{head}");
    if proto == Proto::Http1 {
        assert_eq!(header(&head, "transfer-encoding"), Some("chunked"));
    }
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(
        size > tree.bytes,
        "archive of {size} bytes for {} bytes",
        tree.bytes
    );

    // Memory: the server never held the archive. Its peak, not only its present size, grew by
    // far less than the archive (a debug build starts at about 16 MiB; a download adds a few
    // MiB, the same for 50 MiB as for 200).
    let (peak, now) = memory(server.child.id());
    assert!(
        peak - before < size / 4 && peak < size * 2 / 3,
        "server peak {} MiB (before {} MiB, now {} MiB) for a {} MiB archive",
        peak / MIB,
        before / MIB,
        now / MIB,
        size / MIB
    );

    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    if format == "tar" {
        let listing = run_ok(Command::new("tar").arg("-tf").arg(&file));
        assert!(listing.lines().any(|l| l == "www/empty/"), "{listing}");
        run_ok(
            Command::new("tar")
                .arg("-xf")
                .arg(&file)
                .arg("-C")
                .arg(&out),
        );
    } else {
        require("unzip");
        let tested = run_ok(Command::new("unzip").arg("-t").arg(&file));
        assert!(tested.contains("No errors detected"), "{tested}");
        run_ok(
            Command::new("unzip")
                .arg("-q")
                .arg(&file)
                .arg("-d")
                .arg(&out),
        );
    }
    assert!(out.join("www/empty").is_dir());
    let got = hashes(&out.join("www"));
    let mut expected = tree.expected.clone();
    if format == "zip" {
        // A zip name is text: bytes that are not UTF-8 are written as the listing shows them.
        let hash = expected.remove(&b"odd\xff name.bin"[..]).unwrap();
        expected.insert(b"odd\\xFF name.bin".to_vec(), hash);
    }
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {:?}, extra {:?}",
        missing
            .iter()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>(),
        extra
            .iter()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>()
    );
    for (path, hash) in &expected {
        assert_eq!(&got[path], hash, "{}", String::from_utf8_lossy(path));
    }
    server.stderr_line_with("left out a file it cannot read");
}

#[test]
fn directory_downloads_as_a_streamed_tar_that_tar_extracts_whole() {
    require("tar");
    check_archive(Proto::Http1, "tar");
}

#[test]
fn directory_downloads_as_a_streamed_tar_over_http2() {
    require("tar");
    check_archive(Proto::Http2, "tar");
}

#[test]
fn directory_downloads_as_a_streamed_zip_that_unzip_checks() {
    check_archive(Proto::Http1, "zip");
}

#[test]
fn a_file_that_shrinks_mid_archive_cuts_the_transfer_short() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    let big = root.join("big.bin");
    std::fs::write(&big, content(64 << 20, 1)).unwrap();
    let server = serve_unprivileged(&root, &[]);
    for (proto, format) in [(Proto::Http1, "tar"), (Proto::Http2, "zip")] {
        let out = dir.path().join(format!("cut.{format}"));
        let url = format!("http://{}/?download={format}", server.addr);
        let mut curl = Command::new("curl");
        curl.arg(proto.curl_option(false))
            .args(["-sS", "--max-time", "30", "--limit-rate", "4M", "-o"])
            .arg(&out)
            .arg(&url);
        let mut child = curl.spawn().unwrap();
        // Once the transfer is under way (the walker is a few MiB ahead at most), the file
        // shrinks under it.
        let deadline = std::time::Instant::now() + WAIT;
        while std::fs::metadata(&out).map_or(0, |m| m.len()) < MIB {
            assert!(std::time::Instant::now() < deadline, "no bytes arrived");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::write(&big, content(1000, 1)).unwrap();
        let status = wait_timeout(&mut child, Duration::from_secs(40)).expect("curl ends");
        assert!(
            !status.success(),
            "{proto:?}: a cut-off archive must not look whole"
        );
        server.stderr_line_with("shrank while being read");
        std::fs::write(&big, content(64 << 20, 1)).unwrap();
    }
}

#[test]
fn archives_are_linked_from_the_listing_and_guarded_like_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/a.txt"), b"a\n").unwrap();
    let server = serve_unprivileged(&root, &["--auth", "me:pw"]);
    let work = tempfile::tempdir().unwrap();
    let page = work.path().join("page.html");
    let base = format!("http://{}", server.addr);
    let (code, head) = download(
        Proto::Http1,
        &format!("{base}/sub/"),
        &page,
        &["-u", "me:pw"],
    );
    assert_eq!(code, Some(0), "{head}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("<a href=\"?download=tar\">download .tar</a>"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"?download=zip\">download .zip</a>"),
        "{html}"
    );
    let file = work.path().join("sub.tar");
    let (_, head) = download(
        Proto::Http1,
        &format!("{base}/sub/?download=tar"),
        &file,
        &[],
    );
    assert!(head.contains(" 401"), "{head}");
    let (code, head) = download(
        Proto::Http1,
        &format!("{base}/sub?download=tar"),
        &file,
        &["-u", "me:pw", "-L"],
    );
    assert_eq!(code, Some(0), "{head}");
    assert_eq!(
        header(
            head.rsplit("\r\n\r\n").nth(1).unwrap_or(&head),
            "content-disposition"
        ),
        Some("attachment; filename=\"sub.tar\"")
    );
    let listing = run_ok(Command::new("tar").arg("-tf").arg(&file));
    assert_eq!(listing, "sub/\nsub/a.txt\n");
}
