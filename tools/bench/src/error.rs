//! The one error type of the load tool: what stops a run before or instead of a report.
//! Failures of single requests during a run are not errors here: they are counted by kind
//! ([`crate::stats::Failure`]) and reported.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A NameServer or broker request during setup failed.
    #[error("{context}: {source}")]
    Remote { context: String, source: rockshard::Error },
    /// Setup found something the run cannot work with (no route, no master, ...).
    #[error("{0}")]
    Setup(String),
    #[error("cannot start a glommio executor: {0}")]
    Executor(String),
    #[error("writing the report to {}: {source}", path.display())]
    Report { path: PathBuf, source: io::Error },
}

impl BenchError {
    /// Adapter for `map_err` on remoting calls.
    pub fn remote(context: impl Into<String>) -> impl FnOnce(rockshard::Error) -> BenchError {
        let context = context.into();
        move |source| BenchError::Remote { context, source }
    }
}
