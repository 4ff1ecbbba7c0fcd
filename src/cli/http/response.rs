//! The response: its body printed as it arrives (JSON indented on a terminal) or saved with
//! `-o`/`--download` through a `.part` file, and the exit status `--check-status` gives it.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::bail;
use http::{StatusCode, header};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use sockit::http::download::{self, DownloadError, Progress};
use sockit::http::{Client, Request, Response};

use crate::cli::http::args::HttpOptions;
use crate::cli::http::show::{Show, eprint_heads, meta};
use crate::cli::output::{OutputError, Stdout, say};

/// The exit status for `--check-status`: 3, 4 or 5 like HTTPie.
#[derive(Debug, thiserror::Error)]
#[error("server answered {0}")]
pub(crate) struct StatusError(pub(crate) StatusCode);

impl StatusError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self.0.as_u16() {
            300..=399 => 3,
            400..=499 => 4,
            _ => 5,
        }
    }
}

pub(super) fn check(opts: &HttpOptions, status: StatusCode) -> anyhow::Result<()> {
    if opts.check_status && (status.is_redirection() || status.as_u16() >= 400) {
        return Err(StatusError(status).into());
    }
    Ok(())
}

/// Largest JSON body that is held to be indented on a terminal; a larger one is shown
/// as it comes.
pub(super) const PRETTY_JSON_LIMIT: usize = 16 << 20;

/// Writes the body to stdout as it arrives, in a pipe and on a terminal alike. On a
/// terminal a JSON body (up to [`PRETTY_JSON_LIMIT`]) is indented and coloured, and a
/// binary body is not dumped: like curl, sockit stops with an error (exit 23) at the
/// first chunk with a NUL byte, before writing it.
pub(super) async fn print_body(
    response: &mut Response,
    mut out: Stdout,
    stop: &CancellationToken,
) -> anyhow::Result<u64> {
    let is_tty = std::io::stdout().is_terminal();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    let mut total = 0u64;
    let mut last = 0u8;
    if is_tty && is_json {
        let mut held = Vec::new();
        let mut complete = true;
        while let Some(chunk) = next_chunk(response, stop).await? {
            held.extend_from_slice(&chunk);
            if held.len() > PRETTY_JSON_LIMIT {
                complete = false;
                break;
            }
        }
        total = held.len() as u64;
        if complete {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&held) {
                let mut text = String::new();
                pretty(&value, 0, std::env::var_os("NO_COLOR").is_none(), &mut text);
                text.push('\n');
                out.write_all(text.as_bytes())?;
                return Ok(total);
            }
        }
        if held.contains(&0) {
            return Err(OutputError::BinaryOnTerminal.into());
        }
        out.write_all(&held)?;
        last = held.last().copied().unwrap_or(b'\n');
    }
    let what = "the response body";
    let mut writer = download::Writer::for_file(out.into_file());
    let result = loop {
        match next_chunks(response, stop).await {
            Ok(Some(mut chunks)) => {
                if is_tty {
                    // Like curl: stop before the first chunk with a NUL byte.
                    if let Some(binary) = chunks.iter().position(|c| c.contains(&0)) {
                        chunks.truncate(binary);
                        total += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                        writer.send(chunks).await;
                        break Err(OutputError::BinaryOnTerminal.into());
                    }
                }
                total += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                last = chunks
                    .iter()
                    .rev()
                    .find_map(|c| c.last().copied())
                    .unwrap_or(last);
                if !writer.send(chunks).await {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let written = writer.finish().await;
    written.map_err(|source| OutputError::Write { what, source })?;
    result?;
    if is_tty && total > 0 && last != b'\n' {
        // Keep the prompt on a line of its own.
        let mut out = Stdout::open(what)?;
        out.write_all(b"\n")?;
    }
    Ok(total)
}

pub(super) async fn next_chunk(
    response: &mut Response,
    stop: &CancellationToken,
) -> anyhow::Result<Option<bytes::Bytes>> {
    tokio::select! {
        _ = stop.cancelled() => bail!("interrupted"),
        chunk = response.chunk() => Ok(chunk?),
    }
}

/// The body pieces ready now, in one batch for one write ([`Response::ready_chunks`]).
pub(super) async fn next_chunks(
    response: &mut Response,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Vec<bytes::Bytes>>> {
    tokio::select! {
        _ = stop.cancelled() => bail!("interrupted"),
        chunks = response.ready_chunks(download::BATCH_BYTES) => Ok(chunks?),
    }
}

/// Indented JSON with ANSI colours: keys blue, strings green, numbers and literals yellow.
pub(super) fn pretty(value: &serde_json::Value, depth: usize, color: bool, out: &mut String) {
    use serde_json::Value;
    let paint = |code: &str, text: &str, out: &mut String| {
        if color {
            out.push_str(&format!("\x1b[{code}m{text}\x1b[0m"));
        } else {
            out.push_str(text);
        }
    };
    let pad = |d: usize| "    ".repeat(d);
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push_str("{\n");
            for (i, (k, v)) in map.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                paint("34", &Value::String(k.clone()).to_string(), out);
                out.push_str(": ");
                pretty(v, depth + 1, color, out);
                out.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (i, v) in items.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                pretty(v, depth + 1, color, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push(']');
        }
        Value::String(_) => paint("32", &value.to_string(), out),
        Value::Number(_) | Value::Bool(_) | Value::Null => paint("33", &value.to_string(), out),
        _ => out.push_str(&value.to_string()),
    }
}

/// `-o FILE` or `--download`: through `.part`, with a progress bar on a terminal.
pub(super) async fn save(
    client: &Client,
    request: Request,
    opts: &HttpOptions,
    show: &Show,
    stop: &CancellationToken,
    started: Instant,
) -> anyhow::Result<()> {
    // `-o -` writes to stdout: nothing to rename or resume. `-o /dev/null` and FIFOs go
    // through `download`, which writes them in place.
    if opts.output.as_ref().is_some_and(|p| p.as_os_str() == "-") {
        let out = Stdout::open("the response body")?.into_file();
        let mut response = client.send(request.clone()).await?;
        eprint_heads(&show.heads(&request, &response));
        if !response.status().is_success() {
            return Err(StatusError(response.status()).into());
        }
        let mut writer = download::Writer::for_file(out);
        let mut total = 0;
        let result = loop {
            match next_chunks(&mut response, stop).await {
                Ok(Some(chunks)) => {
                    total += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                    if !writer.send(chunks).await {
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        writer.finish().await.map_err(|source| OutputError::Write {
            what: "the response body",
            source,
        })?;
        result?;
        if opts.json_meta {
            say(format_args!(
                "{}",
                meta(&response, total, started.elapsed())
            ));
        }
        return Ok(());
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{bytes}/{total_bytes} {wide_bar} {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut printed = false;
    let mut meta_line = None;
    let mut on_progress = |progress: Progress, response: &Response| {
        if !printed {
            printed = true;
            eprint_heads(&show.heads(&request, response));
            if let Some(bar) = &bar {
                match progress.total {
                    Some(total) => bar.set_length(total),
                    None => bar.set_style(
                        ProgressStyle::with_template("{bytes} {binary_bytes_per_sec} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
                }
            }
        }
        if let Some(bar) = &bar {
            bar.set_position(progress.done);
        }
        if opts.json_meta && meta_line.is_none() {
            meta_line = Some(meta(response, 0, started.elapsed()));
        }
    };
    let result = download::download(
        client,
        request.clone(),
        opts.output.as_deref(),
        opts.resume,
        stop,
        &mut on_progress,
    )
    .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(done) => {
            if let Some(mut line) = meta_line {
                line["body_bytes"] = done.bytes.into();
                line["timings_ms"]["total"] = (started.elapsed().as_secs_f64() * 1000.0).into();
                say(format_args!("{line}"));
            }
            if std::io::stderr().is_terminal() {
                say(format_args!(
                    "saved {} ({} bytes{})",
                    done.path.display(),
                    done.bytes,
                    if done.resumed_from > 0 {
                        format!(", resumed at {}", done.resumed_from)
                    } else {
                        String::new()
                    }
                ));
            }
            Ok(())
        }
        Err(DownloadError::Status(status)) => Err(StatusError(status).into()),
        Err(e) => {
            let part = opts.output.as_deref().map(download::part_path);
            Err(match part.filter(|p| p.exists()) {
                Some(part) => anyhow::Error::new(e)
                    .context(format!("download incomplete, kept {}", part.display())),
                None => e.into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_pick_the_exit_code() {
        assert_eq!(StatusError(StatusCode::FOUND).exit_code(), 3);
        assert_eq!(StatusError(StatusCode::NOT_FOUND).exit_code(), 4);
        assert_eq!(StatusError(StatusCode::BAD_GATEWAY).exit_code(), 5);
    }
    #[test]
    fn json_is_indented_without_colour_when_asked() {
        let mut out = String::new();
        pretty(
            &serde_json::json!({"a": [1, "x"], "b": {}}),
            0,
            false,
            &mut out,
        );
        assert_eq!(
            out,
            "{\n    \"a\": [\n        1,\n        \"x\"\n    ],\n    \"b\": {}\n}"
        );
    }
}
