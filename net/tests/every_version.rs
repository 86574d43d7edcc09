//! Advertised and served can never drift: for every API and every version the broker's own
//! ApiVersions response advertises, a request encodes, is accepted and is answered with a
//! response that decodes at that version and ends where its frame ends. Versions just outside
//! an advertised range close the connection, as Kafka does for a version it cannot parse.
//!
//! The table is generated from the ApiVersions response, not from a list kept here: an API the
//! broker starts advertising without a request below fails the test by name.

mod support;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use support::{request_header, size_prefixed, Broker, Client};

/// A request of `api` that any version can carry: defaults, with the few fields whose default
/// would get no answer (acks=0) or no quick one changed. `None` for an API this test cannot build.
fn request_for(api: ApiKey, version: i16) -> Option<RequestKind> {
    use kafka_protocol::messages::*;
    let group = || GroupId(StrBytes::from_static_str("every-version-group"));
    let request: RequestKind = match api {
        // acks=0 would get no response at all.
        ApiKey::Produce => ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).into(),
        ApiKey::Fetch => FetchRequest::default().with_max_wait_ms(0).with_replica_id(BrokerId(-1)).into(),
        ApiKey::ListOffsets => ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).into(),
        ApiKey::Metadata => MetadataRequest::default().with_topics(Some(Vec::new())).into(),
        ApiKey::OffsetCommit => OffsetCommitRequest::default().with_group_id(group()).into(),
        ApiKey::OffsetFetch if version < 8 => OffsetFetchRequest::default().with_group_id(group()).into(),
        ApiKey::OffsetFetch => OffsetFetchRequest::default()
            .with_groups(vec![offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(group())])
            .into(),
        ApiKey::FindCoordinator if version < 4 => {
            FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("every-version-group")).into()
        }
        ApiKey::FindCoordinator => {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![StrBytes::from_static_str("every-version-group")]).into()
        }
        ApiKey::ApiVersions if version < 3 => ApiVersionsRequest::default().into(),
        ApiKey::ApiVersions => ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("fjord-test"))
            .with_client_software_version(StrBytes::from_static_str("1.0"))
            .into(),
        ApiKey::CreateTopics => CreateTopicsRequest::default().with_timeout_ms(1000).into(),
        ApiKey::DeleteTopics => DeleteTopicsRequest::default().with_timeout_ms(1000).into(),
        ApiKey::DeleteRecords => DeleteRecordsRequest::default().with_timeout_ms(1000).into(),
        ApiKey::InitProducerId => InitProducerIdRequest::default().with_transaction_timeout_ms(60_000).into(),
        ApiKey::TxnOffsetCommit => TxnOffsetCommitRequest::default().with_group_id(group()).into(),
        ApiKey::CreatePartitions => CreatePartitionsRequest::default().with_timeout_ms(1000).into(),
        ApiKey::OffsetDelete => OffsetDeleteRequest::default().with_group_id(group()).into(),
        // Every other API this test knows: its default request as it is.
        ApiKey::JoinGroup => JoinGroupRequest::default().into(),
        ApiKey::Heartbeat => HeartbeatRequest::default().into(),
        ApiKey::LeaveGroup => LeaveGroupRequest::default().into(),
        ApiKey::SyncGroup => SyncGroupRequest::default().into(),
        ApiKey::DescribeGroups => DescribeGroupsRequest::default().into(),
        ApiKey::ListGroups => ListGroupsRequest::default().into(),
        ApiKey::AddPartitionsToTxn => AddPartitionsToTxnRequest::default().into(),
        ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::default().into(),
        ApiKey::EndTxn => EndTxnRequest::default().into(),
        ApiKey::WriteTxnMarkers => WriteTxnMarkersRequest::default().into(),
        ApiKey::DescribeConfigs => DescribeConfigsRequest::default().into(),
        ApiKey::AlterConfigs => AlterConfigsRequest::default().into(),
        ApiKey::DeleteGroups => DeleteGroupsRequest::default().into(),
        ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::default().into(),
        ApiKey::DescribeCluster => DescribeClusterRequest::default().into(),
        ApiKey::DescribeProducers => DescribeProducersRequest::default().into(),
        ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::default().into(),
        ApiKey::DescribeTransactions => DescribeTransactionsRequest::default().into(),
        ApiKey::ListTransactions => ListTransactionsRequest::default().into(),
        ApiKey::ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::default().into(),
        ApiKey::ConsumerGroupDescribe => ConsumerGroupDescribeRequest::default().into(),
        _ => return None,
    };
    Some(request)
}

/// One frame: size prefix, header at the API's header version, body at `version`.
fn frame(api: ApiKey, version: i16, correlation_id: i32, request: &RequestKind) -> Vec<u8> {
    let mut payload = BytesMut::new();
    request_header(api as i16, version, correlation_id)
        .encode(&mut payload, api.request_header_version(version))
        .expect("encode request header");
    request.encode(&mut payload, version).unwrap_or_else(|error| panic!("encode {api:?} v{version}: {error}"));
    size_prefixed(&payload)
}

fn advertised(client: &mut Client) -> Vec<(ApiKey, i16, i16)> {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("fjord-test"))
        .with_client_software_version(StrBytes::from_static_str("1.0"));
    let response: ApiVersionsResponse = client.send(3, &request);
    assert_eq!(response.error_code, 0, "ApiVersions v3 error");
    response
        .api_keys
        .iter()
        .map(|entry| {
            let api = ApiKey::try_from(entry.api_key).unwrap_or_else(|_| panic!("advertised unknown API key {}", entry.api_key));
            assert!(
                entry.min_version <= entry.max_version,
                "{api:?}: advertised range {}..={}",
                entry.min_version,
                entry.max_version
            );
            (api, entry.min_version, entry.max_version)
        })
        .collect()
}

#[test]
fn every_advertised_version_of_every_api_is_accepted_and_answered() {
    let broker = Broker::start();
    let mut client = broker.connect();
    let table = advertised(&mut client);
    assert!(table.len() >= 30, "ApiVersions advertised only {} APIs", table.len());
    let mut correlation_id = 1000;
    let mut checked = 0;
    for (api, min, max) in table {
        for version in min..=max {
            let request =
                request_for(api, version).unwrap_or_else(|| panic!("{api:?} is advertised but this test cannot build a request"));
            correlation_id += 1;
            client.stream.write_all_frame(&frame(api, version, correlation_id, &request));
            let answer = client.read_frame().unwrap_or_else(|error| {
                panic!(
                    "{api:?} v{version} is advertised but the broker closed or stalled ({error}); its log:\n{}",
                    broker.log_text()
                )
            });
            let mut body = Bytes::copy_from_slice(&answer[4..]);
            let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
                .unwrap_or_else(|error| panic!("{api:?} v{version}: response header: {error}"));
            assert_eq!(header.correlation_id, correlation_id, "{api:?} v{version}: correlation id");
            ResponseKind::decode(api, &mut body, version)
                .unwrap_or_else(|error| panic!("{api:?} v{version}: response body: {error}"));
            assert!(body.is_empty(), "{api:?} v{version}: {} bytes after the response body", body.len());
            checked += 1;
        }
    }
    assert!(checked >= 150, "only {checked} (API, version) pairs checked");
}

#[test]
fn a_version_just_outside_the_advertised_range_closes_the_connection() {
    let broker = Broker::start();
    let table = advertised(&mut broker.connect());
    for (api, min, max) in table {
        if api == ApiKey::ApiVersions {
            continue; // answered with UNSUPPORTED_VERSION instead (KIP-511), tested by the golden files
        }
        // Below the range only if the codec can still encode it; above it always can be tried as
        // the codec's own maximum or beyond is refused the same way.
        let mut outside = vec![max + 1];
        if min > 0 {
            outside.push(min - 1);
        }
        for version in outside {
            let mut framed = BytesMut::new();
            let header_version = api.request_header_version(version.clamp(min, max));
            request_header(api as i16, version, 7).encode(&mut framed, header_version).expect("encode header");
            // The body at the nearest served version: the broker must refuse by version alone.
            let request = request_for(api, version.clamp(min, max)).expect("every advertised API has a request");
            request.encode(&mut framed, version.clamp(min, max)).expect("encode body");
            let mut client = broker.connect();
            client.stream.write_all_frame(&size_prefixed(&framed));
            match client.read_frame() {
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Err(error) => panic!("{api:?} v{version} (outside {min}..={max}): expected a close, got {error}"),
                Ok(answer) => {
                    panic!("{api:?} v{version} (outside {min}..={max}): expected a close, got a {}-byte answer", answer.len())
                }
            }
        }
    }
}

trait WriteFrame {
    fn write_all_frame(&mut self, frame: &[u8]);
}

impl WriteFrame for std::net::TcpStream {
    fn write_all_frame(&mut self, frame: &[u8]) {
        use std::io::Write;
        self.write_all(frame).expect("send request");
    }
}
