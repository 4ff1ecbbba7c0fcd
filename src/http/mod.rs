//! HTTP/1.1 on hyper: the client (`sockit get/post/http`) and the static file server
//! (`sockit serve`). hyper does the framing; this module adds the parts users see.
pub mod server;
