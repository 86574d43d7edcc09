//! Helpers shared by the group coordinator's integration tests.

use bytes::BytesMut;
use fjord_group::classic::Reply;
use kafka_protocol::protocol::Encodable;

/// Panics unless `reply` encodes at `version`: a reply the state machine builds must be one the
/// client's version can carry.
#[track_caller]
pub fn assert_reply_encodes(reply: &Reply, version: i16) {
    let mut buf = BytesMut::new();
    let encoded = match reply {
        Reply::JoinGroup(r) => r.encode(&mut buf, version),
        Reply::SyncGroup(r) => r.encode(&mut buf, version),
        Reply::Heartbeat(r) => r.encode(&mut buf, version),
        Reply::LeaveGroup(r) => r.encode(&mut buf, version),
        Reply::OffsetCommit(r) => r.encode(&mut buf, version),
        Reply::OffsetFetch(r) => r.encode(&mut buf, version),
        Reply::DescribeGroups(r) => r.encode(&mut buf, version),
        Reply::ListGroups(r) => r.encode(&mut buf, version),
        Reply::DeleteGroups(r) => r.encode(&mut buf, version),
        Reply::OffsetDelete(r) => r.encode(&mut buf, version),
    };
    encoded.unwrap_or_else(|e| panic!("reply {reply:?} does not encode at v{version}: {e}"));
}
