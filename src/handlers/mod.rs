//! Request handlers: one file per Kafka API key, each with the version range it serves beside it.
//! [`APIS`] is the single table ApiVersions answers from and `docs/protocol-coverage.md` is
//! checked against.
//!
//! A handler runs on the shard of the connection. Its `handle` future is the request's first
//! phase: it runs to completion before the connection reads the next request (so state changes,
//! such as appends, happen in request order). What must wait — durability for acks=all, a
//! long-poll fetch — is returned as [`Reply::Later`] and awaited by the connection's writer,
//! letting the client pipeline.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_producers;
pub mod describe_transactions;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod groups;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub mod topics;
pub mod txn_offset_commit;
pub mod write_txn_markers;

use std::fmt::Write;
use std::rc::Rc;

use bytes::Bytes;
use futures::future::LocalBoxFuture;

use crate::protocol::frame::encode_response;
use crate::protocol::messages::RequestHeader;
use crate::protocol::{ApiKey, DecodeError, EncodeError, Message};
use crate::shard::Shard;

/// An encoded response frame, as chunks for the socket.
pub type Frame = Vec<Bytes>;

/// What a handler's first phase produced.
pub enum Reply {
    Now(Frame),
    Later(LocalBoxFuture<'static, Frame>),
    /// acks=0 produce: the client expects nothing.
    NoResponse,
}

#[derive(Debug)]
pub enum HandlerError {
    Decode(DecodeError),
    Encode(EncodeError),
    UnsupportedVersion { api: &'static str, version: i16 },
}

impl From<DecodeError> for HandlerError {
    fn from(e: DecodeError) -> Self {
        HandlerError::Decode(e)
    }
}
impl From<EncodeError> for HandlerError {
    fn from(e: EncodeError) -> Self {
        HandlerError::Encode(e)
    }
}

/// One decoded request header and its undecoded body.
pub struct Request {
    pub shard: Rc<Shard>,
    pub api_key: i16,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// "/" + the client's IP address (what groups report as a member's host).
    pub client_host: Rc<str>,
    pub body: Bytes,
}

impl Request {
    pub fn new(shard: Rc<Shard>, header: RequestHeader, body: Bytes) -> Request {
        Request {
            shard,
            api_key: header.request_api_key,
            version: header.request_api_version,
            correlation_id: header.correlation_id,
            client_id: header.client_id,
            client_host: Rc::from(""),
            body,
        }
    }

    pub fn api_name(&self) -> &'static str {
        ApiKey::from_i16(self.api_key)
            .map(ApiKey::name)
            .unwrap_or("Unknown")
    }

    /// Decodes the body as `M` at the request's version. Trailing bytes are ignored, as Kafka
    /// does (newer clients may append fields an older schema does not know).
    pub fn decode<M: Message>(&self) -> Result<M, HandlerError> {
        let mut body = self.body.clone();
        Ok(M::decode(&mut body, self.version)?)
    }

    /// Encodes a response at the request's version.
    pub fn encode<M: Message>(&self, response: &M) -> Result<Frame, HandlerError> {
        Ok(encode_response(
            self.correlation_id,
            self.api_key,
            self.version,
            response,
        )?)
    }

    pub fn respond<M: Message>(&self, response: &M) -> Result<Reply, HandlerError> {
        Ok(Reply::Now(self.encode(response)?))
    }
}

/// An API Weir serves: the versions it handles, and the range it advertises (Kafka 4 advertises
/// Produce from 0 while refusing v0-v2, for old clients that check ranges loosely).
pub struct ApiSpec {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
    pub advertised_min: i16,
    pub note: &'static str,
}

/// Every API Weir serves. ApiVersions and docs/protocol-coverage.md come from this table.
pub static APIS: &[ApiSpec] = &[
    produce::SPEC,
    fetch::SPEC,
    list_offsets::SPEC,
    metadata::SPEC,
    api_versions::SPEC,
    create_topics::SPEC,
    delete_topics::SPEC,
    delete_records::SPEC,
    init_producer_id::SPEC,
    offset_for_leader_epoch::SPEC,
    describe_configs::SPEC,
    alter_configs::SPEC,
    create_partitions::SPEC,
    alter_configs::INCREMENTAL_SPEC,
    describe_cluster::SPEC,
    offset_commit::SPEC,
    offset_fetch::SPEC,
    find_coordinator::SPEC,
    join_group::SPEC,
    heartbeat::SPEC,
    leave_group::SPEC,
    sync_group::SPEC,
    describe_groups::SPEC,
    list_groups::SPEC,
    delete_groups::SPEC,
    offset_delete::SPEC,
    consumer_group_heartbeat::SPEC,
    consumer_group_describe::SPEC,
    add_partitions_to_txn::SPEC,
    add_offsets_to_txn::SPEC,
    end_txn::SPEC,
    txn_offset_commit::SPEC,
    describe_transactions::SPEC,
    list_transactions::SPEC,
    write_txn_markers::SPEC,
    describe_producers::SPEC,
];

pub fn spec_for(api_key: i16) -> Option<&'static ApiSpec> {
    APIS.iter().find(|spec| spec.key.code() == api_key)
}

/// Runs the handler for the request's API key.
pub async fn dispatch(request: Request) -> Result<Reply, HandlerError> {
    let Some(spec) = spec_for(request.api_key) else {
        return Err(HandlerError::UnsupportedVersion {
            api: request.api_name(),
            version: request.version,
        });
    };
    if spec.key == ApiKey::ApiVersions {
        return api_versions::handle(request);
    }
    if request.version < spec.advertised_min || request.version > spec.max_version {
        return Err(HandlerError::UnsupportedVersion {
            api: spec.key.name(),
            version: request.version,
        });
    }
    match spec.key {
        ApiKey::Produce => produce::handle(request).await,
        ApiKey::Fetch => fetch::handle(request).await,
        ApiKey::ListOffsets => list_offsets::handle(request).await,
        ApiKey::Metadata => metadata::handle(request).await,
        ApiKey::CreateTopics => create_topics::handle(request).await,
        ApiKey::DeleteTopics => delete_topics::handle(request).await,
        ApiKey::DeleteRecords => delete_records::handle(request).await,
        ApiKey::InitProducerId => init_producer_id::handle(request).await,
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch::handle(request).await,
        ApiKey::DescribeConfigs => describe_configs::handle(request).await,
        ApiKey::AlterConfigs => alter_configs::handle(request, false).await,
        ApiKey::IncrementalAlterConfigs => alter_configs::handle(request, true).await,
        ApiKey::CreatePartitions => create_partitions::handle(request).await,
        ApiKey::DescribeCluster => describe_cluster::handle(request).await,
        ApiKey::OffsetCommit => offset_commit::handle(request).await,
        ApiKey::OffsetFetch => offset_fetch::handle(request).await,
        ApiKey::FindCoordinator => find_coordinator::handle(request).await,
        ApiKey::JoinGroup => join_group::handle(request).await,
        ApiKey::Heartbeat => heartbeat::handle(request).await,
        ApiKey::LeaveGroup => leave_group::handle(request).await,
        ApiKey::SyncGroup => sync_group::handle(request).await,
        ApiKey::DescribeGroups => describe_groups::handle(request).await,
        ApiKey::ListGroups => list_groups::handle(request).await,
        ApiKey::DeleteGroups => delete_groups::handle(request).await,
        ApiKey::OffsetDelete => offset_delete::handle(request).await,
        ApiKey::ConsumerGroupHeartbeat => consumer_group_heartbeat::handle(request).await,
        ApiKey::ConsumerGroupDescribe => consumer_group_describe::handle(request).await,
        ApiKey::AddPartitionsToTxn => add_partitions_to_txn::handle(request).await,
        ApiKey::AddOffsetsToTxn => add_offsets_to_txn::handle(request).await,
        ApiKey::EndTxn => end_txn::handle(request).await,
        ApiKey::TxnOffsetCommit => txn_offset_commit::handle(request).await,
        ApiKey::DescribeTransactions => describe_transactions::handle(request).await,
        ApiKey::ListTransactions => list_transactions::handle(request).await,
        ApiKey::WriteTxnMarkers => write_txn_markers::handle(request).await,
        ApiKey::DescribeProducers => describe_producers::handle(request).await,
        other => Err(HandlerError::UnsupportedVersion {
            api: other.name(),
            version: request.version,
        }),
    }
}

/// The markdown table of `docs/protocol-coverage.md`, derived from [`APIS`].
pub fn coverage_table() -> String {
    let mut out = String::from("| ApiKey | versions | status |\n|---|---|---|\n");
    let mut specs: Vec<&ApiSpec> = APIS.iter().collect();
    specs.sort_by_key(|s| s.key.code());
    for spec in specs {
        let versions = if spec.advertised_min < spec.min_version {
            format!(
                "{}-{} (advertised {}-{})",
                spec.min_version, spec.max_version, spec.advertised_min, spec.max_version
            )
        } else {
            format!("{}-{}", spec.min_version, spec.max_version)
        };
        let _ = writeln!(
            out,
            "| {} ({}) | {} | {} |",
            spec.key.name(),
            spec.key.code(),
            versions,
            spec.note
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_range_lies_within_the_schema() {
        for spec in APIS {
            let (schema_min, schema_max) = spec.key.versions();
            assert!(
                spec.advertised_min <= spec.min_version && spec.min_version <= spec.max_version,
                "{}",
                spec.key.name()
            );
            assert!(
                schema_min <= spec.advertised_min && spec.max_version <= schema_max,
                "{}",
                spec.key.name()
            );
        }
    }

    #[test]
    fn protocol_coverage_doc_matches_the_handler_table() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/protocol-coverage.md"
        ))
        .expect("docs/protocol-coverage.md exists");
        assert!(
            doc.contains(&coverage_table()),
            "docs/protocol-coverage.md is out of date; its table must be:\n{}",
            coverage_table()
        );
    }
}
