//! CreatePartitions (key 37), v0–3: grow a topic to a new total, optionally validate only.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use super::handler::{respond, Framed, Versions};
use crate::admin;
use crate::context::ShardContext;

pub const VERSIONS: Versions = Versions { min: 0, max: 3 };

pub async fn handle(ctx: &Rc<ShardContext>, header: &RequestHeader, request: CreatePartitionsRequest) -> Framed {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        let assignments = topic.assignments.map(|assignments| {
            assignments.iter().map(|assignment| assignment.broker_ids.iter().map(|id| id.0).collect()).collect()
        });
        if let Err(error) =
            admin::create_partitions(ctx, topic.name.0.to_string(), topic.count, assignments, request.validate_only).await
        {
            result.error_code = error.code;
            result.error_message = Some(StrBytes::from_string(error.message));
        }
        response.results.push(result);
    }
    respond(header, &response)
}
