//! The KIP-848 consumer group APIs: ConsumerGroupHeartbeat (key 68, v0–1) and
//! ConsumerGroupDescribe (69, v0–1). The state machine is fjord-group's `consumer` module, run by
//! the shard owning the group's `__consumer_offsets` partition (see [`crate::coordinator`]),
//! beside the classic groups of that partition.

use std::rc::Rc;

use fjord_group::consumer;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use super::handler::{respond, Answer, Versions};
use crate::codes;
use crate::coordinator::groups::expect;
use crate::message::{GroupCall, GroupReply};
use crate::shard::Shard;

pub const HEARTBEAT_VERSIONS: Versions = Versions { min: consumer::HEARTBEAT_VERSION_MIN, max: consumer::HEARTBEAT_VERSION_MAX };
pub const DESCRIBE_VERSIONS: Versions = Versions { min: consumer::DESCRIBE_VERSION_MIN, max: consumer::DESCRIBE_VERSION_MAX };

fn client_id(header: &RequestHeader) -> String {
    header.client_id.as_ref().map(|id| id.to_string()).unwrap_or_default()
}

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
        let answer = shard.groups.route(&group_id, call, header.request_api_version, &client_id(&header), &client_host).await;
        match answer.and_then(|reply| {
            expect(reply, |reply| match reply {
                GroupReply::ConsumerHeartbeat(response) => Some(response),
                _ => None,
            })
        }) {
            Ok(response) => response,
            Err(code) => {
                let mut response = ConsumerGroupHeartbeatResponse::default();
                response.error_code = code;
                response
            }
        }
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
    let mut response = ConsumerGroupDescribeResponse::default();
    for group_id in &request.group_ids {
        let mut single = ConsumerGroupDescribeRequest::default();
        single.group_ids = vec![group_id.clone()];
        single.include_authorized_operations = request.include_authorized_operations;
        let answer = if group_id.is_empty() {
            Err(codes::INVALID_GROUP_ID)
        } else {
            let call = GroupCall::ConsumerDescribe(single);
            shard.groups.route(group_id, call, header.request_api_version, &client_id(&header), &client_host).await.and_then(
                |reply| {
                    expect(reply, |reply| match reply {
                        GroupReply::ConsumerDescribe(response) => Some(response),
                        _ => None,
                    })
                },
            )
        };
        match answer {
            Ok(mut answer) if !answer.groups.is_empty() => response.groups.push(answer.groups.remove(0)),
            Ok(_) | Err(_) => {
                let mut failed = DescribedGroup::default();
                failed.group_id = group_id.clone();
                failed.error_code = answer.err().unwrap_or(codes::COORDINATOR_NOT_AVAILABLE);
                failed.authorized_operations = i32::MIN;
                response.groups.push(failed);
            }
        }
    }
    respond(&header, &response).map(Some)
}
