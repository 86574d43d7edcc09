//! The broker's ApiVersions table and the choice of a version for each request.
//!
//! The client speaks, for each API, the highest version that both it (the `kafka-protocol`
//! codecs, narrowed where the client relies on later semantics) and the broker support.

use std::collections::BTreeMap;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

/// Version ranges a broker advertised, by API key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiVersionTable {
    ranges: BTreeMap<i16, VersionRange>,
}

/// Why no version could be chosen for an API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("the broker does not list it")]
    NotListed,
    #[error("broker supports {broker_min}..={broker_max}, client {client_min}..={client_max}")]
    Disjoint { broker_min: i16, broker_max: i16, client_min: i16, client_max: i16 },
}

impl ApiVersionTable {
    /// The table advertised in an ApiVersions response.
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        let ranges =
            response.api_keys.iter().map(|k| (k.api_key, VersionRange { min: k.min_version, max: k.max_version })).collect();
        ApiVersionTable { ranges }
    }

    /// The broker's range for an API key, if it lists it.
    pub fn broker_range(&self, api_key: i16) -> Option<VersionRange> {
        self.ranges.get(&api_key).copied()
    }

    /// Every (api key, broker range) pair, by ascending key.
    pub fn entries(&self) -> impl Iterator<Item = (i16, VersionRange)> + '_ {
        self.ranges.iter().map(|(k, r)| (*k, *r))
    }

    /// The highest version of `api` supported by both sides.
    pub fn choose(&self, api: ApiKey) -> Result<i16, NegotiationError> {
        let broker = self.broker_range(api as i16).ok_or(NegotiationError::NotListed)?;
        let client = client_range(api);
        let common = broker.intersect(&client);
        if common.is_empty() {
            return Err(NegotiationError::Disjoint {
                broker_min: broker.min,
                broker_max: broker.max,
                client_min: client.min,
                client_max: client.max,
            });
        }
        Ok(common.max)
    }
}

/// Versions this client speaks: the codec's range, raised where the client needs newer rules.
pub fn client_range(api: ApiKey) -> VersionRange {
    let codec = api.valid_versions();
    let floor = match api {
        // v0 has no way to ask for "all topics" (a null topic list arrived in v1).
        ApiKey::Metadata => 1,
        _ => codec.min,
    };
    VersionRange { min: codec.min.max(floor), max: codec.max }
}

/// Kafka's name for an API key, e.g. `ApiVersions`; unknown keys show as `Unknown(N)`.
pub fn api_name(api_key: i16) -> String {
    match ApiKey::try_from(api_key) {
        Ok(api) => format!("{api:?}"),
        Err(()) => format!("Unknown({api_key})"),
    }
}

/// Test helper: asserts `request` encodes at every version the client may choose for `api`.
#[cfg(test)]
pub fn assert_encodes_at_every_client_version<R: kafka_protocol::protocol::Encodable>(api: ApiKey, request: &R) {
    let range = client_range(api);
    for version in range.min..=range.max {
        let mut buf = bytes::BytesMut::new();
        if let Err(e) = request.encode(&mut buf, version) {
            panic!("{api:?} v{version} does not encode: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    fn table(entries: &[(ApiKey, i16, i16)]) -> ApiVersionTable {
        let mut response = ApiVersionsResponse::default();
        response.api_keys = entries
            .iter()
            .map(|(k, min, max)| ApiVersion::default().with_api_key(*k as i16).with_min_version(*min).with_max_version(*max))
            .collect();
        ApiVersionTable::from_response(&response)
    }

    #[test]
    fn choose_picks_highest_version_both_sides_support() {
        let client_max = ApiKey::Fetch.valid_versions().max;
        let older_broker = table(&[(ApiKey::Fetch, 0, 11)]);
        assert_eq!(older_broker.choose(ApiKey::Fetch), Ok(11));
        let newer_broker = table(&[(ApiKey::Fetch, 0, client_max + 5)]);
        assert_eq!(newer_broker.choose(ApiKey::Fetch), Ok(client_max));
    }

    #[test]
    fn choose_fails_when_broker_lacks_the_api_or_ranges_do_not_meet() {
        let broker = table(&[(ApiKey::Fetch, 0, 2)]);
        assert_eq!(broker.choose(ApiKey::Produce), Err(NegotiationError::NotListed));
        assert!(matches!(broker.choose(ApiKey::Fetch), Err(NegotiationError::Disjoint { .. })));
    }

    #[test]
    fn metadata_is_never_spoken_below_v1() {
        let broker = table(&[(ApiKey::Metadata, 0, 0)]);
        assert!(broker.choose(ApiKey::Metadata).is_err());
        assert_eq!(client_range(ApiKey::Metadata).min, 1);
    }

    #[test]
    fn api_names_follow_kafka_and_unknown_keys_are_shown_by_number() {
        assert_eq!(api_name(18), "ApiVersions");
        assert_eq!(api_name(0), "Produce");
        assert_eq!(api_name(9999), "Unknown(9999)");
    }
}
