//! How the load generator connects: `fjord-client` connections as `fjord-bench`, one per worker
//! thread, with the run's timeouts and the version ranges below. Versions are negotiated with
//! ApiVersions on connect.

use std::time::Duration;

use fjord_client::ConnectionConfig;
pub use fjord_client::{Connection, ResponseReader};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;

use crate::error::Result;

/// No response we expect is larger than this (fetch responses are bounded by fetch_max_bytes).
pub const FRAME_BYTES_MAX: usize = 512 << 20;
pub const CLIENT_ID: &str = "fjord-bench";

/// The version range this client speaks per API. Capped below the versions that address topics by
/// id (Produce 13, Fetch 13) so the client needs only names.
pub fn client_versions(api: ApiKey) -> VersionRange {
    let (min, max) = match api {
        ApiKey::Produce => (3, 9),
        // v11, the last non-flexible version: Tansu 0.6 puts a v16-only tagged field (tag 0) into
        // its v12 responses, which a strict decoder refuses; every broker is read the same way.
        ApiKey::Fetch => (4, 11),
        ApiKey::ListOffsets => (1, 7),
        ApiKey::Metadata => (1, 12),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::ApiVersions => (0, 3),
        _ => (0, -1),
    };
    VersionRange { min, max }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub io: Duration,
}

impl Timeouts {
    /// The broker-side timeout to send: below the socket timeout, so a slow broker (acks=all)
    /// answers with an error instead of the socket giving up first.
    pub fn request_timeout_ms(&self) -> i32 {
        (self.io.as_millis() / 2).min(i32::MAX as u128) as i32
    }
}

/// Connects to one broker at `address` (HOST:PORT) and negotiates versions.
pub fn open(address: &str, timeouts: Timeouts) -> Result<Connection> {
    let config = ConnectionConfig {
        client_id: CLIENT_ID,
        versions: client_versions,
        connect_timeout: timeouts.connect,
        io_timeout: timeouts.io,
        frame_bytes_max: FRAME_BYTES_MAX,
    };
    Ok(Connection::open(address, config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_caps_lie_within_what_the_codecs_speak() {
        for api in
            [ApiKey::Produce, ApiKey::Fetch, ApiKey::ListOffsets, ApiKey::Metadata, ApiKey::CreateTopics, ApiKey::ApiVersions]
        {
            let (ours, codec) = (client_versions(api), api.valid_versions());
            assert!(!ours.is_empty() && ours.min >= codec.min && ours.max <= codec.max, "{api:?}: {ours:?} vs {codec:?}");
        }
        assert!(client_versions(ApiKey::DescribeCluster).is_empty());
    }
}
