//! Upload answers: PUT of raw bytes and multipart POST, over `upload`'s safe writes.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
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
        match upload::put(&self.files, config, path, declared, req.into_body()).await {
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
            Err(error) => upload_failed(&error),
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
        if !content_type.starts_with("multipart/form-data") {
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
        match upload::post(&self.files, config, path, &content_type, req.into_body()).await {
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
            Err(error) => upload_failed(&error),
        }
    }
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
