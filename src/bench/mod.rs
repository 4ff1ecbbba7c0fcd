//! Load generators (`sockit bench …`) and their latency report.
//!
//! Every run is bounded in count and in time. Generators return a [`Report`]; printing
//! it (table or JSON) is the caller's business.

pub mod chat;
pub mod echo;
pub mod http;
mod report;

pub use report::{Latency, LatencySummary, Progress, Report};
