//! InitProducerId (key 22), v0–5, for idempotent producers.
//!
//! Without a transactional id Kafka "always blindly accepts the request and returns a new
//! producerId" with epoch 0 (`TransactionCoordinator.handleInitProducerId`), also when a v3+
//! request names its current id and epoch (KIP-360): an idempotent producer bumps its epoch
//! itself and asks for a new id only when the epoch would overflow. Ids come from the
//! controller's durable blocks, so they are unique across restarts of this node.
//!
//! A transactional id goes to its transaction coordinator ([`super::transactions`]); an empty one
//! gets INVALID_REQUEST, as Kafka answers.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader};

use super::handler::{respond, Answer, Versions};
use crate::codes;
use crate::context::ShardContext;
use crate::shard::Shard;

pub const VERSIONS: Versions = Versions { min: 0, max: 5 };

pub async fn handle(shard: Rc<Shard>, header: RequestHeader, request: InitProducerIdRequest) -> Answer {
    let transactional = request.transactional_id.as_ref().is_some_and(|id| !id.0.is_empty());
    let named = (request.producer_id.0, request.producer_epoch);
    if transactional && (named.0 == -1) == (named.1 == -1) {
        let response = super::transactions::init_producer_id(&shard, &header, request).await;
        return respond(&header, &response).map(Some);
    }
    let (error_code, producer_id, producer_epoch) = answer(&shard.ctx, &request).await;
    let mut response = InitProducerIdResponse::default();
    response.error_code = error_code;
    response.producer_id = ProducerId(producer_id);
    response.producer_epoch = producer_epoch;
    respond(&header, &response).map(Some)
}

async fn answer(ctx: &ShardContext, request: &InitProducerIdRequest) -> (i16, i64, i16) {
    const NONE: (i64, i16) = (-1, -1);
    // Kafka's KafkaApis: the current id and epoch come both or neither.
    let named = (request.producer_id.0, request.producer_epoch);
    if (named.0 == -1) != (named.1 == -1) {
        return (codes::INVALID_REQUEST, NONE.0, NONE.1);
    }
    match &request.transactional_id {
        None => match crate::admin::next_producer_id(ctx).await {
            Ok(producer_id) => (codes::NONE, producer_id, 0),
            Err(code) => (code, NONE.0, NONE.1),
        },
        Some(id) if id.0.is_empty() => (codes::INVALID_REQUEST, NONE.0, NONE.1),
        // Transactional ids are answered by their coordinator (see `handle`).
        Some(_) => (codes::INVALID_REQUEST, NONE.0, NONE.1),
    }
}
