//! The one error type of the load generator. Every failure ends the run with a message that says
//! which broker, which request and what went wrong, and a non-zero exit code.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// kafka-protocol reports codec failures as `anyhow::Error`; its rendered chain is kept here.
    #[error("{context}: cannot encode or decode: {detail}")]
    Codec { context: String, detail: String },
    #[error("{api} answered error code {code}{detail}")]
    Broker { api: &'static str, code: i16, detail: String },
    /// Talking to a broker failed: connection, framing, versions, or an error code.
    #[error(transparent)]
    Client(#[from] fjord_client::ClientError),
    #[error("protocol violation from {address}: {detail}")]
    Protocol { address: String, detail: String },
    #[error("workload: {0}")]
    Workload(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("the run failed:\n  {}", .0.join("\n  "))]
    Failed(Vec<String>),
    #[error("report: {0}")]
    Report(String),
}

impl BenchError {
    pub fn io(context: impl Into<String>, source: io::Error) -> BenchError {
        BenchError::Io { context: context.into(), source }
    }
    pub fn codec(context: impl Into<String>, error: impl std::fmt::Display) -> BenchError {
        BenchError::Codec { context: context.into(), detail: format!("{error:#}") }
    }
}

pub type Result<T> = std::result::Result<T, BenchError>;
