//! ApiVersions (key 18), v0–4. Answered before anything else, even for versions we do not know:
//! an unsupported version gets UNSUPPORTED_VERSION with our ranges in a v0 response (KIP-511), so
//! the client can retry with a version we speak. The response carries no tagged fields: Debian's
//! librdkafka 2.0.2 (kcat) breaks on them.

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::Decodable;

use super::handler::{Framed, RequestError, Versions};
use crate::codes;
use crate::response::{self, OutFrame};

pub const VERSIONS: Versions = Versions { min: 0, max: 4 };

/// `supported`: every API the broker serves, with its version range (the dispatcher's table).
pub fn handle(frame: Bytes, version: i16, supported: &[(ApiKey, Versions)]) -> Framed {
    let version_served = (VERSIONS.min..=VERSIONS.max).contains(&version);
    // Header v2 for flexible versions (3+); an unknown version is read as v1 to find the
    // correlation id, which comes before anything version-specific.
    let header_version = if version_served { ApiKey::ApiVersions.request_header_version(version) } else { 1 };
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, header_version).map_err(|error| RequestError::Decode {
        api: ApiKey::ApiVersions,
        version,
        reason: error.to_string(),
    })?;
    let mut response = ApiVersionsResponse::default();
    response.api_keys = api_table(supported);
    if !version_served {
        response.error_code = codes::UNSUPPORTED_VERSION;
        let bytes = response::encode_with_header_version(0, 0, header.correlation_id, &response)?;
        return Ok(OutFrame::encoded(bytes));
    }
    if version >= 3 {
        // Validate the client software fields as Kafka does; a bad body is INVALID_REQUEST.
        let valid = ApiVersionsRequest::decode(&mut body, version).is_ok_and(|request| {
            valid_software_field(request.client_software_name.as_str())
                && valid_software_field(request.client_software_version.as_str())
        });
        if !valid {
            response.error_code = codes::INVALID_REQUEST;
            response.api_keys.clear();
        }
    }
    // ApiVersions responses always use header v0.
    let bytes = response::encode_with_header_version(0, version, header.correlation_id, &response)?;
    Ok(OutFrame::encoded(bytes))
}

fn api_table(supported: &[(ApiKey, Versions)]) -> Vec<ApiVersion> {
    supported
        .iter()
        .map(|(key, versions)| {
            let mut entry = ApiVersion::default();
            entry.api_key = *key as i16;
            entry.min_version = versions.min;
            entry.max_version = versions.max;
            entry
        })
        .collect()
}

/// KIP-511: client software name and version match `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn valid_software_field(value: &str) -> bool {
    let bytes = value.as_bytes();
    let edge = |byte: &u8| byte.is_ascii_alphanumeric();
    let inner = |byte: &u8| byte.is_ascii_alphanumeric() || *byte == b'-' || *byte == b'.';
    match bytes {
        [] => false,
        [only] => edge(only),
        [first, middle @ .., last] => edge(first) && edge(last) && middle.iter().all(inner),
    }
}

#[cfg(test)]
mod tests {
    use super::valid_software_field;

    #[test]
    fn client_software_fields_follow_kip_511() {
        for good in ["librdkafka", "2.0.2", "apache-kafka-java", "a"] {
            assert!(valid_software_field(good), "{good}");
        }
        for bad in ["", "bad name!", "-x", "x-", ".x"] {
            assert!(!valid_software_field(bad), "{bad}");
        }
    }
}
