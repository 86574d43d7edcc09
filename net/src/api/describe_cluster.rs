//! DescribeCluster (key 60), v0–1: cluster id, controller, brokers (KIP-700).

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use super::{respond, RequestError, Versions};
use crate::context::ShardContext;
use crate::response::OutFrame;

pub const VERSIONS: Versions = Versions { min: 0, max: 1 };

/// DescribeCluster v1 endpoint types: 1 = brokers, 2 = controllers.
const ENDPOINT_TYPE_BROKERS: i8 = 1;
const UNSUPPORTED_ENDPOINT_TYPE: i16 = 119;

pub fn handle(ctx: &Rc<ShardContext>, header: &RequestHeader, request: DescribeClusterRequest) -> Result<OutFrame, RequestError> {
    let image = ctx.image();
    let mut response = DescribeClusterResponse::default();
    response.endpoint_type = request.endpoint_type;
    if header.request_api_version >= 1 && request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        response.error_code = UNSUPPORTED_ENDPOINT_TYPE;
        response.error_message = Some(StrBytes::from_static_str("Only broker endpoints are served."));
        return respond(header, &response);
    }
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
