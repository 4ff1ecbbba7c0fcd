//! File answers: the form of a file a client gets (identity, a pre-compressed sibling, or
//! compressed here), with validators, conditional requests and ranges, its body from memory or
//! from disk.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::http::server::body::Body;
use crate::http::server::conditional::{Precondition, Validators, evaluate};
use crate::http::server::path::RequestPath;
use crate::http::server::range::{RangeAnswer, resolve_range};
use crate::http::server::response::text;
use crate::http::server::site::Site;
use crate::http::server::static_files::{Coding, FileEntry, Found};

impl Site {
    /// A file, in the form the client asked for and accepts.
    pub(crate) async fn file(
        &self,
        req: &Request<Incoming>,
        path: &RequestPath,
        entry: Arc<FileEntry>,
    ) -> Response<Body> {
        let headers = req.headers();
        // A Range applies to the identity form; compressed forms are sent whole.
        let mut chosen = None;
        if !headers.contains_key(header::RANGE) && entry.compressible {
            for coding in accepted_codings(headers) {
                chosen = self.encoded(path, &entry, coding).await;
                if chosen.is_some() {
                    break;
                }
            }
        }
        let chosen = chosen.unwrap_or_else(|| Representation::identity(entry.clone()));
        match self.file_answer(req, &entry, chosen) {
            Ok(res) => res,
            Err(open) => open.finish().await,
        }
    }

    /// The answer with `chosen`, a form of `entry` (conditional requests, ranges, headers);
    /// `Err` when its body is still to be opened on disk.
    pub(crate) fn file_answer(
        &self,
        req: &Request<Incoming>,
        entry: &FileEntry,
        chosen: Representation,
    ) -> Result<Response<Body>, Box<OpenLater>> {
        let headers = req.headers();
        let precondition = evaluate(
            headers,
            Validators {
                etag: chosen.etag(),
                modified: entry.modified,
            },
        );
        let mut res = Response::new(Body::empty());
        // Room for every header set below, so the map never grows.
        *res.headers_mut() = http::HeaderMap::with_capacity(10);
        let out = res.headers_mut();
        out.insert(header::ETAG, chosen.etag_header());
        out.insert(header::LAST_MODIFIED, entry.last_modified.clone());
        // Files change under a file server: caches revalidate (a cheap 304) rather than
        // guess a freshness lifetime from Last-Modified.
        out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if entry.compressible && (self.config.compress || chosen.coding.is_some()) {
            out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        let use_range = match precondition {
            Precondition::NotModified => {
                *res.status_mut() = StatusCode::NOT_MODIFIED;
                return Ok(res);
            }
            Precondition::Failed => {
                return Ok(text(
                    StatusCode::PRECONDITION_FAILED,
                    "precondition failed\n",
                ));
            }
            Precondition::Proceed { use_range } => use_range,
        };
        out.insert(header::CONTENT_TYPE, entry.content_type.clone());
        out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(coding) = chosen.coding {
            out.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(coding.name()),
            );
        }
        let len = chosen.len();
        let answer = match headers.get(header::RANGE).and_then(|h| h.to_str().ok()) {
            Some(range) if use_range && chosen.coding.is_none() => resolve_range(range, len),
            _ => RangeAnswer::Full,
        };
        let (start, count) = match answer.apply(len, &mut res) {
            Ok(part) => part,
            Err(refused) => return Ok(*refused),
        };
        let content_length = match &chosen.compressed {
            None if count == chosen.entry.len => chosen.entry.content_length.clone(),
            _ => HeaderValue::from(count),
        };
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, content_length);
        if req.method() == Method::HEAD {
            return Ok(res);
        }
        // Both bounds lie within the bytes, which hold `len` bytes.
        let (from, to) = (start as usize, (start + count) as usize);
        let form = &chosen.entry;
        *res.body_mut() = match (&chosen.compressed, &form.content, &form.open_file) {
            (Some((_, _, bytes)), _, _) => Body::bytes(bytes.slice(from..to)),
            // The connection's stream may send these bytes straight from the file.
            (None, Some(bytes), Some(file)) => {
                Body::cached(bytes.slice(from..to), file.clone(), start)
            }
            (None, Some(bytes), None) => Body::bytes(bytes.slice(from..to)),
            (None, None, _) => {
                return Err(Box::new(OpenLater {
                    res,
                    path: form.path.clone(),
                    start,
                    count,
                }));
            }
        };
        Ok(res)
    }

    /// The `coding` form of `entry`: a pre-compressed sibling (`name.br`, `name.gz`) when one
    /// exists, else compressed here when allowed.
    async fn encoded(
        &self,
        path: &RequestPath,
        entry: &Arc<FileEntry>,
        coding: Coding,
    ) -> Option<Representation> {
        let mut sibling_name = path.file_name()?.to_owned();
        sibling_name.push(coding.suffix());
        let sibling = path.parent().join(sibling_name);
        if let Found::File(packed) = self.files.lookup(&sibling).await {
            let mut rep = Representation::identity(packed);
            rep.coding = Some(coding);
            return Some(rep);
        }
        if !self.config.compress {
            return None;
        }
        let bytes = entry.compressed(coding).await?;
        let etag = format!("{}-{}\"", entry.etag.trim_end_matches('"'), coding.name());
        let header = HeaderValue::from_str(&etag).ok()?;
        Some(Representation {
            entry: entry.clone(),
            compressed: Some((etag, header, bytes)),
            coding: Some(coding),
        })
    }
}

/// A response but for its body, `count` bytes of the file at `path` from `start`.
pub(crate) struct OpenLater {
    res: Response<Body>,
    path: PathBuf,
    start: u64,
    count: u64,
}

impl OpenLater {
    pub(crate) async fn finish(self: Box<Self>) -> Response<Body> {
        let Self {
            mut res,
            path,
            start,
            count,
        } = *self;
        match open_at(path, start).await {
            Ok(file) => {
                *res.body_mut() = Body::file(file, count);
                res
            }
            Err(error) => match Found::failed(&error) {
                Found::Forbidden => text(StatusCode::FORBIDDEN, "forbidden\n"),
                _ => text(StatusCode::NOT_FOUND, "not found\n"),
            },
        }
    }
}

/// One form of a file: identity, a pre-compressed sibling, or compressed here.
pub(crate) struct Representation {
    /// The file whose validators (and, unless `compressed`, bytes) this form uses.
    entry: Arc<FileEntry>,
    /// Bytes compressed here, with their own entity tag.
    compressed: Option<(String, HeaderValue, Bytes)>,
    coding: Option<Coding>,
}

impl Representation {
    pub(crate) fn identity(entry: Arc<FileEntry>) -> Self {
        Self {
            entry,
            compressed: None,
            coding: None,
        }
    }

    fn etag(&self) -> &str {
        self.compressed
            .as_ref()
            .map_or(&self.entry.etag, |(etag, _, _)| etag)
    }

    fn etag_header(&self) -> HeaderValue {
        self.compressed
            .as_ref()
            .map_or(&self.entry.etag_header, |(_, header, _)| header)
            .clone()
    }

    fn len(&self) -> u64 {
        self.compressed
            .as_ref()
            .map_or(self.entry.len, |(_, _, bytes)| bytes.len() as u64)
    }
}

/// The codings the client accepts, best first (br, then gzip).
fn accepted_codings(headers: &http::HeaderMap) -> Vec<Coding> {
    let Some(accept) = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return Vec::new();
    };
    let mut br = None;
    let mut gzip = None;
    let mut star = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        let accepted = q > 0.0;
        match token.as_str() {
            "br" => br = Some(accepted),
            "gzip" | "x-gzip" => gzip = Some(accepted),
            "*" => star = Some(accepted),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if br.or(star).unwrap_or(false) {
        out.push(Coding::Brotli);
    }
    if gzip.or(star).unwrap_or(false) {
        out.push(Coding::Gzip);
    }
    out
}

async fn open_at(path: PathBuf, start: u64) -> std::io::Result<tokio::fs::File> {
    let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        use std::io::{Seek, SeekFrom};
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(start))?;
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(tokio::fs::File::from_std(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_preferences() {
        let codings = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
            accepted_codings(&headers)
        };
        assert_eq!(codings("gzip, deflate, br"), [Coding::Brotli, Coding::Gzip]);
        assert_eq!(codings("gzip"), [Coding::Gzip]);
        assert_eq!(codings("br;q=0, gzip;q=0.5"), [Coding::Gzip]);
        assert_eq!(codings("*"), [Coding::Brotli, Coding::Gzip]);
        assert_eq!(codings("*, gzip;q=0"), [Coding::Brotli]);
        assert_eq!(codings("identity"), []);
    }
}
