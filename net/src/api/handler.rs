//! What every API handler shares: the version range it declares, how it answers (now, or by
//! a future that waits), and why a request ends its connection instead.

use std::future::Future;
use std::pin::Pin;

use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Encodable;

use crate::response::{self, OutFrame};

/// A version range an API module serves.
#[derive(Debug, Clone, Copy)]
pub struct Versions {
    pub min: i16,
    pub max: i16,
}

/// What a handler answering at once produces: its response frame, or why the connection must
/// close.
pub type Framed = Result<OutFrame, RequestError>;

/// What a deferred handler produces: its response frame (none for acks=0), or why the
/// connection must close.
pub type Answer = Result<Option<OutFrame>, RequestError>;

/// The response half still to come.
pub type Deferred = Pin<Box<dyn Future<Output = Answer>>>;

pub enum Dispatched {
    /// Response ready (or none, for acks=0).
    Ready(Option<OutFrame>),
    /// Response computed by a future that may wait (durability, long poll).
    Deferred(Deferred),
}

/// Why a request ends its connection instead of getting a response.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request of {0} bytes is too short for its API key and version")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} version {version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("cannot decode {api:?} v{version} request: {reason}")]
    Decode { api: ApiKey, version: i16, reason: String },
    #[error(transparent)]
    Encode(#[from] response::EncodeError),
}

/// Encodes a plain response for `header`'s API and version.
pub fn respond<R: Encodable>(header: &RequestHeader, body: &R) -> Framed {
    let api = ApiKey::try_from(header.request_api_key).map_err(|_| RequestError::UnknownApiKey(header.request_api_key))?;
    let bytes = response::encode(api, header.request_api_version, header.correlation_id, body)?;
    Ok(OutFrame::encoded(bytes))
}
