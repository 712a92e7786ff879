//! WriteTxnMarkers (key 27), versions 0-1: the transaction coordinator's request to write COMMIT
//! or ABORT markers into the partitions of a transaction. Each partition's marker is appended on
//! its owner shard and answered once durable (`shard::txn_markers`); errors are per partition, as
//! in Kafka's WriteTxnMarkersResponse.

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use crate::protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use crate::protocol::ApiKey;
use crate::shard::txn_markers::write_marker;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::WriteTxnMarkers,
    min_version: 0,
    max_version: 1,
    advertised_min: 0,
    note: "supported (COMMIT/ABORT control batches, durable before the response; epochs fenced)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: WriteTxnMarkersRequest = request.decode()?;
    let shard = request.shard.clone();
    let (correlation_id, api_key, version) =
        (request.correlation_id, request.api_key, request.version);
    Ok(Reply::Later(Box::pin(async move {
        let mut markers = Vec::with_capacity(body.markers.len());
        for marker in body.markers {
            let writes = marker.topics.iter().flat_map(|topic| {
                let shard = &shard;
                topic
                    .partition_indexes
                    .iter()
                    .map(move |&index| async move {
                        let outcome = write_marker(
                            shard,
                            &topic.name,
                            index,
                            marker.producer_id,
                            marker.producer_epoch,
                            marker.coordinator_epoch,
                            marker.transaction_result,
                        )
                        .await;
                        (index, outcome.err().map_or(0, |code| code.code()))
                    })
            });
            let results = futures::future::join_all(writes).await;
            let mut results = results.into_iter();
            let topics = marker
                .topics
                .iter()
                .map(|topic| WritableTxnMarkerTopicResult {
                    name: topic.name.clone(),
                    partitions: results
                        .by_ref()
                        .take(topic.partition_indexes.len())
                        .map(
                            |(partition_index, error_code)| WritableTxnMarkerPartitionResult {
                                partition_index,
                                error_code,
                                ..Default::default()
                            },
                        )
                        .collect(),
                    ..Default::default()
                })
                .collect();
            markers.push(WritableTxnMarkerResult {
                producer_id: marker.producer_id,
                topics,
                ..Default::default()
            });
        }
        let response = WriteTxnMarkersResponse {
            markers,
            ..Default::default()
        };
        crate::protocol::frame::encode_response(correlation_id, api_key, version, &response)
            .expect("a WriteTxnMarkers response encodes at the request's version")
    })))
}
