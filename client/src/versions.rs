//! The broker's ApiVersions table and the choice of a version for each request.
//!
//! A client speaks, for each API, the highest version that both it and the broker support. What
//! a client speaks is its [`ClientVersions`]: [`codec_versions`] (everything the `kafka-protocol`
//! codecs know, narrowed where a client relies on later semantics) or a narrower table of its own.

use std::collections::BTreeMap;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

/// The versions a client speaks for each API (an empty range for an API it does not use).
pub type ClientVersions = fn(ApiKey) -> VersionRange;

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

    /// The highest version of `api` supported by both the broker and `client`.
    pub fn choose(&self, api: ApiKey, client: ClientVersions) -> Result<i16, NegotiationError> {
        let broker = self.broker_range(api as i16).ok_or(NegotiationError::NotListed)?;
        let client = client(api);
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

/// Everything the codecs speak, raised where a client needs newer rules.
pub fn codec_versions(api: ApiKey) -> VersionRange {
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

/// Test helper: asserts `request` encodes at every version `client` may choose for `api`.
pub fn assert_encodes_at_every_version<R: kafka_protocol::protocol::Encodable>(api: ApiKey, client: ClientVersions, request: &R) {
    let range = client(api);
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
        assert_eq!(older_broker.choose(ApiKey::Fetch, codec_versions), Ok(11));
        let newer_broker = table(&[(ApiKey::Fetch, 0, client_max + 5)]);
        assert_eq!(newer_broker.choose(ApiKey::Fetch, codec_versions), Ok(client_max));
    }

    #[test]
    fn choose_fails_when_broker_lacks_the_api_or_ranges_do_not_meet() {
        let broker = table(&[(ApiKey::Fetch, 0, 2)]);
        assert_eq!(broker.choose(ApiKey::Produce, codec_versions), Err(NegotiationError::NotListed));
        assert!(matches!(broker.choose(ApiKey::Fetch, codec_versions), Err(NegotiationError::Disjoint { .. })));
    }

    #[test]
    fn a_narrower_client_table_caps_the_choice_and_refuses_apis_it_leaves_out() {
        fn capped(api: ApiKey) -> VersionRange {
            match api {
                ApiKey::Fetch => VersionRange { min: 4, max: 11 },
                _ => VersionRange { min: 0, max: -1 },
            }
        }
        let broker = table(&[(ApiKey::Fetch, 0, 16), (ApiKey::Produce, 0, 11)]);
        assert_eq!(broker.choose(ApiKey::Fetch, capped), Ok(11));
        assert!(matches!(broker.choose(ApiKey::Produce, capped), Err(NegotiationError::Disjoint { .. })));
    }

    #[test]
    fn metadata_is_never_spoken_below_v1() {
        let broker = table(&[(ApiKey::Metadata, 0, 0)]);
        assert!(broker.choose(ApiKey::Metadata, codec_versions).is_err());
        assert_eq!(codec_versions(ApiKey::Metadata).min, 1);
    }

    #[test]
    fn api_names_follow_kafka_and_unknown_keys_are_shown_by_number() {
        assert_eq!(api_name(18), "ApiVersions");
        assert_eq!(api_name(0), "Produce");
        assert_eq!(api_name(9999), "Unknown(9999)");
    }
}
