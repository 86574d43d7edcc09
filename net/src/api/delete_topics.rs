//! DeleteTopics (key 20), v1–6: by name, or by topic id from v6. Data is removed on every shard,
//! and the topic's committed offsets from every group, before the response goes out.

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::handler::{respond, Framed, Versions};
use crate::admin;
use crate::codes;
use crate::shard::Shard;

pub const VERSIONS: Versions = Versions { min: 1, max: 6 };

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: DeleteTopicsRequest) -> Framed {
    let mut targets: Vec<(Option<String>, Uuid)> = Vec::new();
    if header.request_api_version >= 6 {
        targets.extend(request.topics.iter().map(|topic| (topic.name.as_ref().map(|name| name.0.to_string()), topic.topic_id)));
    } else {
        targets.extend(request.topic_names.iter().map(|name| (Some(name.0.to_string()), Uuid::nil())));
    }
    let mut response = DeleteTopicsResponse::default();
    for (name, id) in targets {
        let mut result = DeletableTopicResult::default();
        result.topic_id = id;
        let resolved = match name {
            Some(name) => Some(name),
            None => shard.ctx.image().topic_ids.get(id.as_bytes()).cloned(),
        };
        result.name = resolved.clone().map(|name| TopicName(StrBytes::from_string(name)));
        match resolved {
            None => result.error_code = codes::UNKNOWN_TOPIC_ID,
            Some(name) => match admin::delete_topic(&shard.ctx, name.clone()).await {
                Ok(deleted) => {
                    shard.groups.topic_deleted(&name).await;
                    result.topic_id = Uuid::from_bytes(deleted.id)
                }
                Err(error) => {
                    result.error_code = error.code;
                    result.error_message = Some(StrBytes::from_string(error.message));
                }
            },
        }
        if header.request_api_version < 6 {
            result.topic_id = Uuid::nil();
        }
        if header.request_api_version < 5 {
            result.error_message = None;
        }
        response.responses.push(result);
    }
    respond(header, &response)
}
