//! For curl users: the request as a curl command line (`--curl`), and curl's flags whose
//! letter means something else here.

use http::{Method, header};

use sockit::http::SentHead;
use sockit::http::items::Item;

use crate::cli::UsageError;
use crate::cli::http::args::HttpOptions;
use crate::cli::http::show::title_case;
use crate::cli::output::say;

/// The request as a curl command line, each word shell-quoted.
pub(super) fn curl_command(head: &SentHead, body: &[u8], opts: &HttpOptions) -> String {
    let mut words = vec!["curl".to_owned()];
    if head.method != Method::GET || !body.is_empty() {
        words.extend(["-X".to_owned(), head.method.to_string()]);
    }
    if opts.http1_1 {
        words.push("--http1.1".to_owned());
    } else if opts.http2 {
        words.push(if head.url.scheme() == "https" {
            "--http2".to_owned()
        } else {
            "--http2-prior-knowledge".to_owned()
        });
    }
    if opts.follow {
        words.extend([
            "-L".to_owned(),
            "--max-redirs".to_owned(),
            opts.max_redirects.to_string(),
        ]);
    }
    if opts.insecure {
        words.push("-k".to_owned());
    }
    if let Some(ca) = &opts.ca {
        words.extend(["--cacert".to_owned(), ca.display().to_string()]);
    }
    if !opts.no_decompress {
        words.push("--compressed".to_owned());
    }
    for (name, value) in &head.headers {
        // curl writes these itself, from the URL and the body.
        if matches!(*name, header::HOST | header::CONTENT_LENGTH) {
            continue;
        }
        words.push("-H".to_owned());
        let value = String::from_utf8_lossy(value.as_bytes());
        words.push(if value.is_empty() {
            format!("{};", title_case(name.as_str()))
        } else {
            format!("{}: {value}", title_case(name.as_str()))
        });
    }
    for name in [header::ACCEPT, header::USER_AGENT] {
        if !head.headers.contains_key(&name) {
            // A default the user removed: curl's `-H 'Name:'` removes curl's own.
            words.extend(["-H".to_owned(), format!("{}:", title_case(name.as_str()))]);
        }
    }
    if !body.is_empty() {
        words.extend([
            "--data-binary".to_owned(),
            String::from_utf8_lossy(body).into_owned(),
        ]);
    }
    words.push(head.url.to_string());
    let mut line = words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    line.push('\n');
    line
}

/// `word` as a POSIX shell reads it back: bare when it is plain, else in single quotes.
pub(super) fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// curl flags whose letter means something else here: refused or hinted when the command
/// line reads as curl's.
pub(super) fn curl_habits(opts: &HttpOptions, items: &[Item]) -> anyhow::Result<()> {
    // curl's `-d 'a=1&b=2'` is a form body; here -d is --download and the text an item.
    let curl_data = items.iter().any(|i| match i {
        Item::Data { value, .. } => value.contains('&') && value.contains('='),
        _ => false,
    });
    if opts.download && curl_data {
        return Err(UsageError(
            "-d here is --download, and 'a=1&b=2' is one field; for curl's -d form body give \
             the fields as items with --form (sockit post URL --form a=1 b=2) or --raw 'a=1&b=2'"
                .into(),
        )
        .into());
    }
    // curl's `-F 'file=@x'` uploads a file; here -F is --follow and `key=@file` puts the
    // file's text in a JSON field.
    let data_file = items.iter().any(|i| matches!(i, Item::DataFile { .. }));
    if opts.follow && data_file && !opts.form && !opts.multipart {
        say(format_args!(
            "hint: -F here is --follow, and key=@file sends the file's text as a JSON field; \
             for curl's -F 'file=@x' upload write file@x (multipart)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_reads_back_as_the_same_word() {
        assert_eq!(shell_quote("http://a.test/x?y=1"), "'http://a.test/x?y=1'");
        assert_eq!(shell_quote("-H"), "-H");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
