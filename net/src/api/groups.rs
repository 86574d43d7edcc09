//! The group APIs of the classic protocol: FindCoordinator (key 10, v0–6, batched keys from v4),
//! JoinGroup (11, v0–9), Heartbeat (12, v0–4), LeaveGroup (13, v0–5), SyncGroup (14, v0–5),
//! DescribeGroups (15, v0–5), ListGroups (16, v0–5), OffsetCommit (8, v2–9), OffsetFetch (9,
//! v1–9, several groups from v8), DeleteGroups (42, v0–2), OffsetDelete (47, v0).
//!
//! Each call goes to the shard owning the group's `__consumer_offsets` partition (see
//! [`crate::coordinator::groups`]); requests naming several groups are split per group and their answers
//! put back in request order. This single node coordinates every group.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::find_coordinator_response::Coordinator as FoundCoordinator;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, RequestHeader, SyncGroupResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::handler::{respond, Answer, RequestError, Versions};
use super::per_partition;
use crate::codes;
use crate::context::ShardContext;
use fjord_group::classic::Reply;

use crate::coordinator::groups::{expect_classic, offset_commit_error};
use crate::message::GroupCall;
use crate::response::OutFrame;
use crate::shard::Shard;

pub const FIND_COORDINATOR_VERSIONS: Versions = Versions { min: 0, max: 6 };
pub const JOIN_GROUP_VERSIONS: Versions = Versions { min: 0, max: 9 };
pub const HEARTBEAT_VERSIONS: Versions = Versions { min: 0, max: 4 };
pub const LEAVE_GROUP_VERSIONS: Versions = Versions { min: 0, max: 5 };
pub const SYNC_GROUP_VERSIONS: Versions = Versions { min: 0, max: 5 };
pub const DESCRIBE_GROUPS_VERSIONS: Versions = Versions { min: 0, max: 5 };
pub const LIST_GROUPS_VERSIONS: Versions = Versions { min: 0, max: 5 };
pub const OFFSET_COMMIT_VERSIONS: Versions = Versions { min: 2, max: 9 };
pub const OFFSET_FETCH_VERSIONS: Versions = Versions { min: 1, max: 9 };
pub const DELETE_GROUPS_VERSIONS: Versions = Versions { min: 0, max: 2 };
pub const OFFSET_DELETE_VERSIONS: Versions = Versions { min: 0, max: 0 };

/// FindCoordinator key types: 0 group, 1 transaction, 2 share group.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

fn client_id(header: &RequestHeader) -> String {
    header.client_id.as_ref().map(|id| id.to_string()).unwrap_or_default()
}

pub async fn find_coordinator(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    request: FindCoordinatorRequest,
) -> Result<OutFrame, RequestError> {
    let version = header.request_api_version;
    let keys: Vec<StrBytes> = if version >= 4 { request.coordinator_keys.clone() } else { vec![request.key.clone()] };
    let ready = match request.key_type {
        KEY_TYPE_GROUP => shard.groups.ensure_topic().await.err().unwrap_or(codes::NONE),
        KEY_TYPE_TRANSACTION => shard.transactions.ensure_topic().await.err().unwrap_or(codes::NONE),
        _ => codes::INVALID_REQUEST,
    };
    let settings = &shard.ctx.settings;
    let answer = |key: StrBytes| -> FoundCoordinator {
        let mut found = FoundCoordinator::default();
        found.key = key;
        let code = ready;
        found.error_code = code;
        if code == codes::NONE {
            found.node_id = BrokerId(settings.node_id);
            found.host = StrBytes::from_string(settings.advertised_host.clone());
            found.port = settings.advertised_port as i32;
        } else {
            found.node_id = BrokerId(-1);
            found.port = -1;
            found.error_message = Some(StrBytes::from_static_str(match request.key_type {
                KEY_TYPE_GROUP => "the group coordinator is not available yet",
                KEY_TYPE_TRANSACTION => "the transaction coordinator is not available yet",
                _ => "share groups are not supported",
            }));
        }
        found
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = keys.into_iter().map(answer).collect();
    } else {
        let found = answer(keys.into_iter().next().unwrap_or_default());
        response.error_code = found.error_code;
        response.error_message = found.error_message;
        response.node_id = found.node_id;
        response.host = found.host;
        response.port = found.port;
    }
    respond(header, &response)
}

/// A response one [`Reply`] variant carries.
pub trait ClassicAnswer: Sized {
    fn pick(reply: Reply) -> Option<Self>;
}

/// A response with a top-level error code: its answer when the call fails as a whole.
pub trait FailedAnswer {
    fn failed(code: i16) -> Self;
}

macro_rules! classic_answers {
    ($($variant:ident => $response:ty;)*) => {$(
        impl ClassicAnswer for $response {
            fn pick(reply: Reply) -> Option<Self> {
                match reply {
                    Reply::$variant(response) => Some(response),
                    _ => None,
                }
            }
        }
    )*};
}

macro_rules! failed_answers {
    ($($response:ty $(, $field:ident = $value:expr)?;)*) => {$(
        impl FailedAnswer for $response {
            fn failed(code: i16) -> Self {
                let mut response = <$response>::default();
                response.error_code = code;
                $(response.$field = $value;)?
                response
            }
        }
    )*};
}

classic_answers! {
    JoinGroup => JoinGroupResponse;
    SyncGroup => SyncGroupResponse;
    Heartbeat => HeartbeatResponse;
    LeaveGroup => LeaveGroupResponse;
    OffsetCommit => OffsetCommitResponse;
    OffsetFetch => OffsetFetchResponse;
    DescribeGroups => DescribeGroupsResponse;
    ListGroups => ListGroupsResponse;
    DeleteGroups => DeleteGroupsResponse;
    OffsetDelete => OffsetDeleteResponse;
}

failed_answers! {
    JoinGroupResponse, generation_id = -1;
    SyncGroupResponse;
    HeartbeatResponse;
    LeaveGroupResponse;
    OffsetFetchResponse;
    OffsetDeleteResponse;
}

/// One call for one group: the reply of the expected kind, or a Kafka error code for the whole
/// request.
async fn one<T: ClassicAnswer>(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    group_id: &str,
    client_host: &str,
    call: GroupCall,
) -> Result<T, i16> {
    let reply = shard.groups.route(group_id, call, header.request_api_version, &client_id(header), client_host).await?;
    expect_classic(reply, T::pick)
}

/// JoinGroup, SyncGroup, Heartbeat, LeaveGroup and OffsetFetch before v8: one call for the
/// request's group, its failure answered in the response's own error code.
pub async fn single_group<T: ClassicAnswer + FailedAnswer + Encodable>(
    shard: Rc<Shard>,
    header: RequestHeader,
    group_id: String,
    call: GroupCall,
    client_host: Rc<str>,
) -> Answer {
    let response: T = one(&shard, &header, &group_id, &client_host, call).await.unwrap_or_else(T::failed);
    respond(&header, &response).map(Some)
}

pub async fn offset_commit(
    shard: Rc<Shard>,
    header: RequestHeader,
    request: OffsetCommitRequest,
    client_host: Rc<str>,
) -> Answer {
    let group_id = request.group_id.0.to_string();
    // Only partitions that exist reach the coordinator (KafkaApis does the same); the others
    // answer UNKNOWN_TOPIC_OR_PARTITION and no topic is created.
    let mut known = request.clone();
    for topic in &mut known.topics {
        let name = topic.name.0.to_string();
        topic.partitions.retain(|partition| partition_exists(&shard.ctx, &name, partition.partition_index));
    }
    known.topics.retain(|topic| !topic.partitions.is_empty());
    let answered = if known.topics.is_empty() {
        OffsetCommitResponse::default()
    } else {
        // Kept for the error answer: every partition gets the code.
        let mut shape = OffsetCommitRequest::default();
        shape.topics = known.topics.clone();
        one(&shard, &header, &group_id, &client_host, GroupCall::OffsetCommit(known))
            .await
            .unwrap_or_else(|code| offset_commit_error(&shape, code))
    };
    let mut response = OffsetCommitResponse::default();
    response.throttle_time_ms = answered.throttle_time_ms;
    for topic in &request.topics {
        let mut out = OffsetCommitResponseTopic::default();
        out.name = topic.name.clone();
        for partition in &topic.partitions {
            let index = partition.partition_index;
            let code = answered_code(
                answered
                    .topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(move |p| (&*t.name.0, p.partition_index, p.error_code))),
                &topic.name.0,
                index,
            );
            out.partitions.push(OffsetCommitResponsePartition::default().with_partition_index(index).with_error_code(code));
        }
        response.topics.push(out);
    }
    respond(&header, &response).map(Some)
}

/// Whether `topic` exists with a partition `partition` (the broker's metadata image).
pub(crate) fn partition_exists(ctx: &ShardContext, topic: &str, partition: i32) -> bool {
    ctx.topic(topic).is_some_and(|info| (0..info.partition_count).contains(&partition))
}

/// The coordinator's code for `(topic, partition)` among `answered`, or UNKNOWN_TOPIC_OR_PARTITION
/// when it was not sent there (it does not exist).
pub(crate) fn answered_code<'a>(answered: impl Iterator<Item = (&'a str, i32, i16)>, topic: &str, partition: i32) -> i16 {
    answered
        .filter(|(name, index, _)| *name == topic && *index == partition)
        .map(|(_, _, code)| code)
        .next()
        .unwrap_or(codes::UNKNOWN_TOPIC_OR_PARTITION)
}

pub async fn offset_fetch(shard: Rc<Shard>, header: RequestHeader, request: OffsetFetchRequest, client_host: Rc<str>) -> Answer {
    if header.request_api_version < 8 {
        let group_id = request.group_id.0.to_string();
        return single_group::<OffsetFetchResponse>(shard, header, group_id, GroupCall::OffsetFetch(request), client_host).await;
    }
    // v8+: one call per group, answers in request order.
    let mut response = OffsetFetchResponse::default();
    for group in request.groups.iter() {
        let mut single = OffsetFetchRequest::default();
        single.require_stable = request.require_stable;
        let group_request: OffsetFetchRequestGroup = group.clone();
        single.groups = vec![group_request];
        let group_id = group.group_id.0.to_string();
        let answer: Result<OffsetFetchResponse, i16> =
            one(&shard, &header, &group_id, &client_host, GroupCall::OffsetFetch(single)).await;
        match answer.map(|mut answer| (answer.groups.pop(), answer.error_code)) {
            Ok((Some(answered), _)) => response.groups.push(answered),
            Ok((None, code)) | Err(code) => {
                let mut failed = OffsetFetchResponseGroup::default();
                failed.group_id = group.group_id.clone();
                failed.error_code = code;
                response.groups.push(failed);
            }
        }
    }
    respond(&header, &response).map(Some)
}

pub async fn describe_groups(
    shard: Rc<Shard>,
    header: RequestHeader,
    request: DescribeGroupsRequest,
    client_host: Rc<str>,
) -> Answer {
    let mut response = DescribeGroupsResponse::default();
    for group_id in &request.groups {
        let mut single = DescribeGroupsRequest::default();
        single.groups = vec![group_id.clone()];
        single.include_authorized_operations = request.include_authorized_operations;
        let answer: Result<DescribeGroupsResponse, i16> =
            one(&shard, &header, &group_id.0, &client_host, GroupCall::Describe(single)).await;
        match answer {
            Ok(mut answer) if !answer.groups.is_empty() => response.groups.push(answer.groups.remove(0)),
            Ok(_) => response.groups.push(failed_description(group_id, codes::COORDINATOR_NOT_AVAILABLE)),
            Err(code) => response.groups.push(failed_description(group_id, code)),
        }
    }
    respond(&header, &response).map(Some)
}

fn failed_description(group_id: &kafka_protocol::messages::GroupId, code: i16) -> DescribedGroup {
    let mut described = DescribedGroup::default();
    described.group_id = group_id.clone();
    described.error_code = code;
    described
}

pub async fn list_groups(shard: Rc<Shard>, header: RequestHeader, request: ListGroupsRequest, client_host: Rc<str>) -> Answer {
    let mut response = ListGroupsResponse::default();
    match shard.groups.ensure_topic().await {
        Err(code) => response.error_code = code,
        Ok(info) => {
            for partition in 0..info.partition_count {
                let call = GroupCall::List(request.clone());
                let reply = shard
                    .groups
                    .call_partition(partition, call, header.request_api_version, &client_id(&header), &client_host)
                    .await;
                match reply.and_then(|reply| expect_classic(reply, ListGroupsResponse::pick)) {
                    Ok(listed) if listed.error_code != codes::NONE => response.error_code = listed.error_code,
                    Ok(listed) => response.groups.extend(listed.groups),
                    Err(code) => response.error_code = code,
                }
            }
        }
    }
    respond(&header, &response).map(Some)
}

pub async fn delete_groups(
    shard: Rc<Shard>,
    header: RequestHeader,
    request: DeleteGroupsRequest,
    client_host: Rc<str>,
) -> Answer {
    let mut response = DeleteGroupsResponse::default();
    for group_id in &request.groups_names {
        let mut single = DeleteGroupsRequest::default();
        single.groups_names = vec![group_id.clone()];
        let answer: Result<DeleteGroupsResponse, i16> =
            one(&shard, &header, &group_id.0, &client_host, GroupCall::Delete(single)).await;
        match answer {
            Ok(mut answer) if !answer.results.is_empty() => response.results.push(answer.results.remove(0)),
            Ok(_) | Err(_) => {
                let mut failed = DeletableGroupResult::default();
                failed.group_id = group_id.clone();
                failed.error_code = answer.err().unwrap_or(codes::COORDINATOR_NOT_AVAILABLE);
                response.results.push(failed);
            }
        }
    }
    respond(&header, &response).map(Some)
}

pub async fn offset_delete(
    shard: Rc<Shard>,
    header: RequestHeader,
    request: OffsetDeleteRequest,
    client_host: Rc<str>,
) -> Answer {
    let group_id = request.group_id.0.to_string();
    let topics = request.topics.clone();
    let answer = one(&shard, &header, &group_id, &client_host, GroupCall::OffsetDelete(request)).await;
    let mut response = answer.unwrap_or_else(|code| {
        let named = topics.iter().map(|topic| (&topic.name, topic.partitions.iter().map(|partition| partition.partition_index)));
        OffsetDeleteResponse::failed(code).with_topics(per_partition::all_failed(named, code))
    });
    // Partitions that do not exist: UNKNOWN_TOPIC_OR_PARTITION, as KafkaApis answers them.
    if response.error_code == codes::NONE {
        for topic in &mut response.topics {
            let name = topic.name.0.to_string();
            for partition in &mut topic.partitions {
                if !partition_exists(&shard.ctx, &name, partition.partition_index) {
                    partition.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                }
            }
        }
    }
    respond(&header, &response).map(Some)
}
