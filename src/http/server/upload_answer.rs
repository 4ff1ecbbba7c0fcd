//! Upload answers: PUT of raw bytes and multipart POST, over `upload`'s safe writes.

use http::header::{self, HeaderValue};
use std::time::Duration;

use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::debug;

use crate::http::server::body::Body;
use crate::http::server::path::RequestPath;
use crate::http::server::response::{closing, redirect, text};
use crate::http::server::site::Site;
use crate::http::server::upload::{self, UploadConfig};

impl Site {
    pub(crate) async fn put(
        &self,
        req: Request<Incoming>,
        path: &RequestPath,
        config: &UploadConfig,
    ) -> Response<Body> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let version = req.version();
        let mut body = req.into_body();
        match upload::put(&self.files, config, path, declared, &mut body).await {
            Ok(saved) => {
                let status = if saved.replaced {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                let href = saved.path.to_href(false);
                let mut res = text(status, &format!("saved {href}\n"));
                if let Ok(v) = HeaderValue::from_str(&href) {
                    res.headers_mut().insert(header::LOCATION, v);
                }
                res
            }
            Err(error) => {
                read_refused_body(version, &mut body).await;
                upload_failed(&error)
            }
        }
    }

    pub(crate) async fn post(
        &self,
        req: Request<Incoming>,
        path: &RequestPath,
        config: &UploadConfig,
    ) -> Response<Body> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let version = req.version();
        if !content_type.starts_with("multipart/form-data") {
            read_refused_body(version, &mut req.into_body()).await;
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "POST expects multipart/form-data; use PUT for raw bytes\n",
            );
        }
        let wants_html = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        let mut body = req.into_body();
        match upload::post(&self.files, config, path, &content_type, &mut body).await {
            Ok(saved) if wants_html => {
                // Back to the listing, which now shows the new files.
                debug!(files = saved.len(), "form upload saved");
                redirect(StatusCode::SEE_OTHER, &path.to_href(true))
            }
            Ok(saved) => {
                let mut body = String::new();
                for file in &saved {
                    body.push_str("saved ");
                    body.push_str(&file.path.to_href(false));
                    body.push('\n');
                }
                text(StatusCode::CREATED, &body)
            }
            Err(error) => {
                read_refused_body(version, &mut body).await;
                upload_failed(&error)
            }
        }
    }
}

/// HTTP/2: the rest of a refused upload's body is read (within bounds) before the refusal
/// goes out, so that a client still sending reads the answer rather than a reset of its
/// stream. HTTP/1 does this for the whole connection (lingering close, `http1_heads`).
pub(crate) async fn read_refused_body(version: Version, body: &mut Incoming) {
    if version != Version::HTTP_2 {
        return;
    }
    let mut left: usize = 64 << 20;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(frame)) = body.frame().await {
            let len = frame.data_ref().map_or(0, |d| d.len());
            left = left.saturating_sub(len);
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

fn upload_failed(error: &upload::UploadError) -> Response<Body> {
    debug!(%error, "upload refused");
    let res = text(error.status(), &format!("upload failed: {error}\n"));
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of an over-large body is not worth reading.
        return closing(res);
    }
    res
}
