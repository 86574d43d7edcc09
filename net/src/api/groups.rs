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
    BrokerId, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, RequestHeader, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::handler::{respond, Answer, Framed, Versions};
use super::per_partition;
use crate::codes;
use crate::context::ShardContext;
use fjord_group::classic::Reply;

use crate::coordinator::groups::offset_commit_error;
use crate::message::{GroupCall, GroupReply};
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

pub async fn find_coordinator(shard: &Rc<Shard>, header: &RequestHeader, request: FindCoordinatorRequest) -> Framed {
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

/// A response one [`GroupReply`] variant carries.
pub trait GroupAnswer: Sized {
    fn pick(reply: GroupReply) -> Option<Self>;
}

/// A response with a top-level error code: its answer when the call fails as a whole.
pub trait FailedAnswer {
    fn failed(code: i16) -> Self;
}

/// `classic Variant => Response;` for a classic [`Reply`] variant, `group Variant => Response;`
/// for a [`GroupReply`] one.
macro_rules! group_answers {
    ($($kind:ident $variant:ident => $response:ty;)*) => {$(
        impl GroupAnswer for $response {
            fn pick(reply: GroupReply) -> Option<Self> {
                match reply {
                    group_answers!(@pattern $kind $variant response) => Some(response),
                    _ => None,
                }
            }
        }
    )*};
    (@pattern classic $variant:ident $response:ident) => { GroupReply::Classic(Reply::$variant($response)) };
    (@pattern group $variant:ident $response:ident) => { GroupReply::$variant($response) };
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

group_answers! {
    classic JoinGroup => JoinGroupResponse;
    classic SyncGroup => SyncGroupResponse;
    classic Heartbeat => HeartbeatResponse;
    classic LeaveGroup => LeaveGroupResponse;
    classic OffsetCommit => OffsetCommitResponse;
    classic OffsetFetch => OffsetFetchResponse;
    classic DescribeGroups => DescribeGroupsResponse;
    classic ListGroups => ListGroupsResponse;
    classic DeleteGroups => DeleteGroupsResponse;
    classic OffsetDelete => OffsetDeleteResponse;
    group ConsumerHeartbeat => ConsumerGroupHeartbeatResponse;
    group ConsumerDescribe => ConsumerGroupDescribeResponse;
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
/// request (COORDINATOR_NOT_AVAILABLE if the state machine answered another kind).
pub(super) async fn one<T: GroupAnswer>(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    group_id: &str,
    client_host: &str,
    call: GroupCall,
) -> Result<T, i16> {
    let reply = shard.groups.route(group_id, call, header.request_api_version, &client_id(header), client_host).await?;
    T::pick(reply).ok_or(codes::COORDINATOR_NOT_AVAILABLE)
}

/// A request naming several groups, served one group at a time (the groups may live on
/// different partitions), entries in request order. `ask` names a group's id and single-group
/// call (or fails it with a code), `entry` takes the group's entry out of its answer, and
/// `failed` stands in for a group whose call failed.
pub(super) async fn each_group<G, T: GroupAnswer, E>(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    client_host: &str,
    groups: &[G],
    ask: impl Fn(&G) -> Result<(String, GroupCall), i16>,
    entry: impl Fn(T) -> Result<E, i16>,
    failed: impl Fn(&G, i16) -> E,
) -> Vec<E> {
    let mut entries = Vec::with_capacity(groups.len());
    for group in groups {
        let answer = match ask(group) {
            Ok((group_id, call)) => one(shard, header, &group_id, client_host, call).await.and_then(&entry),
            Err(code) => Err(code),
        };
        entries.push(answer.unwrap_or_else(|code| failed(group, code)));
    }
    entries
}

/// The one entry of a single-group answer; COORDINATOR_NOT_AVAILABLE if it has none.
pub(super) fn only_entry<E>(mut entries: Vec<E>) -> Result<E, i16> {
    entries.pop().ok_or(codes::COORDINATOR_NOT_AVAILABLE)
}

/// A request naming one group, answered by one response kind: JoinGroup, SyncGroup, Heartbeat,
/// LeaveGroup and OffsetFetch before v8.
pub trait SingleGroupRequest {
    type Response: GroupAnswer + FailedAnswer + Encodable;
    fn group_id(&self) -> String;
    fn into_call(self) -> GroupCall;
}

macro_rules! single_group_requests {
    ($($request:ty => $call:ident, $response:ty;)*) => {$(
        impl SingleGroupRequest for $request {
            type Response = $response;
            fn group_id(&self) -> String {
                self.group_id.to_string()
            }
            fn into_call(self) -> GroupCall {
                GroupCall::$call(self)
            }
        }
    )*};
}

single_group_requests! {
    JoinGroupRequest => Join, JoinGroupResponse;
    SyncGroupRequest => Sync, SyncGroupResponse;
    HeartbeatRequest => Heartbeat, HeartbeatResponse;
    LeaveGroupRequest => Leave, LeaveGroupResponse;
    OffsetFetchRequest => OffsetFetch, OffsetFetchResponse;
}

/// One call for the request's group, its failure answered in the response's own error code.
pub async fn single_group<R: SingleGroupRequest>(
    shard: Rc<Shard>,
    header: RequestHeader,
    request: R,
    client_host: Rc<str>,
) -> Answer {
    let group_id = request.group_id();
    let answer = one(&shard, &header, &group_id, &client_host, request.into_call()).await;
    respond(&header, &answer.unwrap_or_else(R::Response::failed)).map(Some)
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
        return single_group(shard, header, request, client_host).await;
    }
    // v8+: one call per group; a group whose answer lists none gets the answer's error code.
    let ask = |group: &OffsetFetchRequestGroup| {
        let single = OffsetFetchRequest::default().with_require_stable(request.require_stable).with_groups(vec![group.clone()]);
        Ok((group.group_id.to_string(), GroupCall::OffsetFetch(single)))
    };
    let entry = |mut answer: OffsetFetchResponse| answer.groups.pop().ok_or(answer.error_code);
    let failed = |group: &OffsetFetchRequestGroup, code| {
        OffsetFetchResponseGroup::default().with_group_id(group.group_id.clone()).with_error_code(code)
    };
    let groups = each_group(&shard, &header, &client_host, &request.groups, ask, entry, failed).await;
    respond(&header, &OffsetFetchResponse::default().with_groups(groups)).map(Some)
}

pub async fn describe_groups(
    shard: Rc<Shard>,
    header: RequestHeader,
    request: DescribeGroupsRequest,
    client_host: Rc<str>,
) -> Answer {
    let ask = |group_id: &GroupId| {
        let single = DescribeGroupsRequest::default()
            .with_groups(vec![group_id.clone()])
            .with_include_authorized_operations(request.include_authorized_operations);
        Ok((group_id.to_string(), GroupCall::Describe(single)))
    };
    let entry = |answer: DescribeGroupsResponse| only_entry(answer.groups);
    let failed = |group_id: &GroupId, code| DescribedGroup::default().with_group_id(group_id.clone()).with_error_code(code);
    let groups = each_group(&shard, &header, &client_host, &request.groups, ask, entry, failed).await;
    respond(&header, &DescribeGroupsResponse::default().with_groups(groups)).map(Some)
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
                match reply.and_then(|reply| ListGroupsResponse::pick(reply).ok_or(codes::COORDINATOR_NOT_AVAILABLE)) {
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
    let ask = |group_id: &GroupId| {
        let single = DeleteGroupsRequest::default().with_groups_names(vec![group_id.clone()]);
        Ok((group_id.to_string(), GroupCall::Delete(single)))
    };
    let entry = |answer: DeleteGroupsResponse| only_entry(answer.results);
    let failed = |group_id: &GroupId, code| DeletableGroupResult::default().with_group_id(group_id.clone()).with_error_code(code);
    let results = each_group(&shard, &header, &client_host, &request.groups_names, ask, entry, failed).await;
    respond(&header, &DeleteGroupsResponse::default().with_results(results)).map(Some)
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
