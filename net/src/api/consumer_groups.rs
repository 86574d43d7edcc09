//! The KIP-848 consumer group APIs: ConsumerGroupHeartbeat (key 68, v0–1) and
//! ConsumerGroupDescribe (69, v0–1). The state machine is fjord-group's `consumer` module, run by
//! the shard owning the group's `__consumer_offsets` partition (see [`crate::coordinator`]),
//! beside the classic groups of that partition.

use std::rc::Rc;

use fjord_group::consumer;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    GroupId, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use super::groups::{each_group, one, only_entry};
use super::handler::{respond, Answer, Versions};
use crate::codes;
use crate::message::GroupCall;
use crate::shard::Shard;

pub const HEARTBEAT_VERSIONS: Versions = Versions { min: consumer::HEARTBEAT_VERSION_MIN, max: consumer::HEARTBEAT_VERSION_MAX };
pub const DESCRIBE_VERSIONS: Versions = Versions { min: consumer::DESCRIBE_VERSION_MIN, max: consumer::DESCRIBE_VERSION_MAX };

pub async fn heartbeat(
    shard: Rc<Shard>,
    header: RequestHeader,
    request: ConsumerGroupHeartbeatRequest,
    client_host: Rc<str>,
) -> Answer {
    let response = if request.group_id.is_empty() {
        let mut response = ConsumerGroupHeartbeatResponse::default();
        response.error_code = codes::INVALID_GROUP_ID;
        response.error_message = Some(StrBytes::from_static_str("GroupId can't be empty."));
        response
    } else {
        let group_id = request.group_id.0.to_string();
        let call = GroupCall::ConsumerHeartbeat(request);
        let answer = one(&shard, &header, &group_id, &client_host, call).await;
        answer.unwrap_or_else(|code| ConsumerGroupHeartbeatResponse::default().with_error_code(code))
    };
    respond(&header, &response).map(Some)
}

/// One call per group (groups may live on different partitions), answers in request order.
pub async fn describe(
    shard: Rc<Shard>,
    header: RequestHeader,
    request: ConsumerGroupDescribeRequest,
    client_host: Rc<str>,
) -> Answer {
    let ask = |group_id: &GroupId| {
        if group_id.is_empty() {
            return Err(codes::INVALID_GROUP_ID);
        }
        let single = ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![group_id.clone()])
            .with_include_authorized_operations(request.include_authorized_operations);
        Ok((group_id.to_string(), GroupCall::ConsumerDescribe(single)))
    };
    let entry = |answer: ConsumerGroupDescribeResponse| only_entry(answer.groups);
    let failed = |group_id: &GroupId, code| {
        DescribedGroup::default().with_group_id(group_id.clone()).with_error_code(code).with_authorized_operations(i32::MIN)
    };
    let groups = each_group(&shard, &header, &client_host, &request.group_ids, ask, entry, failed).await;
    respond(&header, &ConsumerGroupDescribeResponse::default().with_groups(groups)).map(Some)
}
