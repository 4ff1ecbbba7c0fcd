//! Directory listings: HTML for people, JSON for scripts. Names are escaped for their place
//! (percent-encoded in links, HTML-escaped in text), whatever bytes they hold: a name that is
//! not UTF-8, or holds control characters, is linked by its exact bytes and shown with those
//! bytes visibly escaped ([`display_name`]).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use crate::http::server::path::RequestPath;
use crate::http::server::path::{display_name, encode_segment};
use crate::http::server::static_files::{Files, Inside};

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    /// The file name as text: exact when it is UTF-8, else with U+FFFD for the bytes that
    /// are not (`href` has them all).
    pub name: String,
    /// The link to the entry, relative to the directory: the exact name, percent-encoded,
    /// with a `/` after a directory's.
    pub href: String,
    /// The file name's bytes, exactly (JSON carries them in `href`).
    #[serde(skip)]
    pub raw_name: OsString,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub modified: u64,
}

/// Reads `dir`: hidden names and symlinks out of the root left out, directories first, then
/// by name.
pub(crate) async fn read(files: &Files, dir: &Path) -> std::io::Result<Vec<ListEntry>> {
    let dir = dir.to_owned();
    let show_hidden = files.show_hidden();
    let raw = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<_>> {
        let mut out = Vec::new();
        for item in std::fs::read_dir(&dir)? {
            let Ok(item) = item else { continue };
            let name = item.file_name();
            if name.as_bytes().starts_with(b".") && !show_hidden {
                continue;
            }
            let is_link = item.file_type().is_ok_and(|t| t.is_symlink());
            let Ok(meta) = std::fs::metadata(item.path()) else {
                continue; // a dangling symlink
            };
            if !meta.is_dir() && !meta.is_file() {
                continue;
            }
            out.push((item.path(), is_link, name, meta));
        }
        Ok(out)
    })
    .await
    .map_err(std::io::Error::other)??;
    let mut entries = Vec::with_capacity(raw.len());
    for (path, is_link, name, meta) in raw {
        if is_link && files.check_inside(&path).await != Inside::Yes {
            continue;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        entries.push(ListEntry::new(name, &meta, modified));
    }
    entries.sort_by(|a, b| {
        b.is_dir
            .cmp(&a.is_dir)
            .then_with(|| a.raw_name.cmp(&b.raw_name))
    });
    Ok(entries)
}

impl ListEntry {
    fn new(raw_name: OsString, meta: &std::fs::Metadata, modified: u64) -> Self {
        let mut href = String::new();
        encode_segment(raw_name.as_bytes(), &mut href);
        if meta.is_dir() {
            href.push('/');
        }
        Self {
            name: String::from_utf8_lossy(raw_name.as_bytes()).into_owned(),
            href,
            raw_name,
            is_dir: meta.is_dir(),
            size: if meta.is_dir() { 0 } else { meta.len() },
            modified,
        }
    }
}

/// The listing as JSON: an array of entries.
pub(crate) fn to_json(entries: &[ListEntry]) -> String {
    serde_json::to_string(entries).unwrap_or_else(|_| "[]".to_owned())
}

/// The listing as an HTML page; `upload` adds a form that posts files to this directory.
pub(crate) fn to_html(path: &RequestPath, entries: &[ListEntry], upload: bool) -> String {
    let title = escape_html(&path.to_display());
    let mut page = String::with_capacity(1024 + entries.len() * 160);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>Index of {title}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td{{padding:0 1em 0 0}}\
         td.n{{text-align:right}}</style></head>\n<body><h1>Index of {title}</h1>\n\
         <p><a href=\"?download=tar\">download .tar</a> \
         <a href=\"?download=zip\">download .zip</a></p>\n"
    );
    if upload {
        page.push_str(
            "<form method=\"post\" enctype=\"multipart/form-data\">\
             <input type=\"file\" name=\"file\" multiple> <button>Upload</button></form>\n",
        );
    }
    page.push_str("<table>\n<tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>\n");
    if !path.segments().is_empty() {
        page.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for entry in entries {
        // "./" keeps a name like "javascript:x" from reading as a URL scheme.
        let href = format!("./{}", entry.href);
        let slash = if entry.is_dir { "/" } else { "" };
        let size = if entry.is_dir {
            String::from("-")
        } else {
            human_size(entry.size)
        };
        let _ = writeln!(
            page,
            "<tr><td><a href=\"{href}\">{}{slash}</a></td><td class=\"n\">{size}</td>\
             <td>{}</td></tr>",
            escape_html(&display_name(entry.raw_name.as_bytes())),
            civil_time(entry.modified),
        );
    }
    page.push_str("</table>\n</body></html>\n");
    page
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `YYYY-MM-DD HH:MM` in UTC for seconds since the epoch.
fn civil_time(secs: u64) -> String {
    let (year, month, day, hour, minute, _) = civil(secs);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

/// (year, month, day, hour, minute, second) in UTC for seconds since the epoch.
pub(crate) fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, is_dir: bool) -> ListEntry {
        entry_bytes(name.as_bytes(), is_dir)
    }

    fn entry_bytes(name: &[u8], is_dir: bool) -> ListEntry {
        let mut href = String::new();
        encode_segment(name, &mut href);
        if is_dir {
            href.push('/');
        }
        ListEntry {
            name: String::from_utf8_lossy(name).into_owned(),
            href,
            raw_name: std::ffi::OsStr::from_bytes(name).to_owned(),
            is_dir,
            size: 1536,
            modified: 0,
        }
    }

    #[test]
    fn names_that_are_not_utf8_or_hold_controls_are_linked_exactly_and_shown_escaped() {
        let html = to_html(
            &RequestPath::root(),
            &[
                entry_bytes(b"bad\xff.bin", false),
                entry_bytes(b"a\nb\x1b[31m", false),
            ],
            false,
        );
        assert!(html.contains("href=\"./bad%FF.bin\">bad\\xFF.bin</a>"));
        assert!(html.contains("href=\"./a%0Ab%1B%5B31m\">a\\nb\\x1B[31m</a>"));
        assert!(!html.contains('\x1b'));
        let json = to_json(&[entry_bytes(b"bad\xff.bin", false)]);
        assert!(json.contains("\"name\":\"bad\u{FFFD}.bin\",\"href\":\"bad%FF.bin\""));
    }

    #[test]
    fn hostile_names_are_escaped_in_links_and_text() {
        let path = RequestPath::parse("/a%3Cb%3E/").unwrap();
        let html = to_html(
            &path,
            &[
                entry("<script>alert(1)</script>", false),
                entry("q\"'#?%.txt", false),
                entry("javascript:alert(1)", true),
            ],
            false,
        );
        assert!(!html.contains("<script>"));
        assert!(html.contains("href=\"./%3Cscript%3Ealert%281%29%3C%2Fscript%3E\""));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("href=\"./q%22%27%23%3F%25.txt\""));
        assert!(html.contains("q&quot;&#39;#?%.txt"));
        assert!(html.contains("href=\"./javascript%3Aalert%281%29/\""));
        assert!(html.contains("Index of /a&lt;b&gt;/"));
    }

    #[test]
    fn sizes_and_dates_read_well() {
        assert_eq!(human_size(13), "13 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(civil_time(0), "1970-01-01 00:00");
        assert_eq!(civil_time(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(civil_time(951_782_400), "2000-02-29 00:00");
    }

    #[test]
    fn json_lists_every_field() {
        let json = to_json(&[entry("a b", false)]);
        assert_eq!(
            json,
            r#"[{"name":"a b","href":"a%20b","is_dir":false,"size":1536,"modified":0}]"#
        );
    }
}
