//! Load generators (`sockit bench …`) and their latency report.
//!
//! Every run is bounded in count and in time. Generators return a [`Report`]; printing
//! it (table or JSON) is the caller's business.

pub mod chat;
mod chat_line;
mod chat_wire;
mod cpu;
pub mod echo;
mod fine_timer;
pub mod http;
mod http1_wire;
mod plot;
mod report;
pub mod timeline;

pub use cpu::{CpuUse, NoSuchProcess};
pub use report::{
    Latency, LatencySummary, PercentileRow, Progress, Report, ScheduleSummary, SecondSummary,
};
