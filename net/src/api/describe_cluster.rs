//! DescribeCluster (key 60), v0–1: cluster id, controller, brokers (KIP-700).

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use super::handler::{respond, Framed, Versions};
use crate::codes;
use crate::context::ShardContext;

pub const VERSIONS: Versions = Versions { min: 0, max: 1 };

/// DescribeCluster v1 endpoint types (KIP-919): 1 = brokers, 2 = controllers.
const ENDPOINT_TYPE_BROKERS: i8 = 1;
const ENDPOINT_TYPE_CONTROLLERS: i8 = 2;

pub fn handle(ctx: &Rc<ShardContext>, header: &RequestHeader, request: DescribeClusterRequest) -> Framed {
    let image = ctx.image();
    let mut response = DescribeClusterResponse::default();
    response.endpoint_type = ENDPOINT_TYPE_BROKERS;
    if header.request_api_version >= 1 && request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        // As Kafka: a broker asked for controller endpoints answers MISMATCHED_ENDPOINT_TYPE.
        let (code, message) = if request.endpoint_type == ENDPOINT_TYPE_CONTROLLERS {
            (
                codes::MISMATCHED_ENDPOINT_TYPE,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER",
            )
        } else {
            (codes::UNSUPPORTED_ENDPOINT_TYPE, "Unsupported endpoint type")
        };
        response.error_code = code;
        response.error_message = Some(StrBytes::from_static_str(message));
        return respond(header, &response);
    }
    response.error_message = None;
    response.cluster_id = StrBytes::from_string(image.cluster_id.clone());
    response.controller_id = BrokerId(ctx.settings.node_id);
    response.cluster_authorized_operations =
        if request.include_cluster_authorized_operations { super::metadata::CLUSTER_OPERATIONS_ALL } else { i32::MIN };
    response.brokers = image
        .brokers
        .values()
        .map(|broker| {
            let mut entry = DescribeClusterBroker::default();
            entry.broker_id = BrokerId(broker.node_id);
            entry.host = StrBytes::from_string(broker.host.clone());
            entry.port = broker.port as i32;
            entry.rack = broker.rack.clone().map(StrBytes::from_string);
            entry
        })
        .collect();
    respond(header, &response)
}
