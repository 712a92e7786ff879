//! DescribeCluster (key 60), versions 0-1: this broker, the cluster id, and the controller (this
//! broker too: a single node runs in combined mode).

use super::topics::{AUTHORIZED_OPERATIONS_OMITTED, CLUSTER_AUTHORIZED_OPERATIONS};
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::describe_cluster_response::DescribeClusterBroker;
use crate::protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};
use crate::protocol::ApiKey;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DescribeCluster,
    min_version: 0,
    max_version: 1,
    advertised_min: 0,
    note: "supported (brokers and controller endpoint types)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: DescribeClusterRequest = request.decode()?;
    let image = request.shard.metadata();
    let (host, port) = request
        .shard
        .broker
        .advertised()
        .unwrap_or(("127.0.0.1".into(), 9092));
    let (error_code, error_message) = if body.endpoint_type == 1 || body.endpoint_type == 2 {
        (ErrorCode::None, None)
    } else {
        (
            ErrorCode::UnsupportedEndpointType,
            Some(format!(
                "endpoint type {} is not 1 (brokers) or 2 (controllers)",
                body.endpoint_type
            )),
        )
    };
    let response = DescribeClusterResponse {
        error_code: error_code.code(),
        error_message,
        endpoint_type: body.endpoint_type,
        cluster_id: image.cluster_id.clone(),
        controller_id: image.node_id,
        brokers: vec![DescribeClusterBroker {
            broker_id: image.node_id,
            host,
            port: port as i32,
            rack: None,
            ..Default::default()
        }],
        cluster_authorized_operations: if body.include_cluster_authorized_operations {
            CLUSTER_AUTHORIZED_OPERATIONS
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        },
        ..Default::default()
    };
    request.respond(&response)
}
