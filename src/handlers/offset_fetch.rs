//! OffsetFetch (key 9), versions 1-9: committed offsets (offset, leader epoch, metadata; -1
//! when nothing is committed) of listed partitions or, with null topics (v2+), of every
//! partition the group committed. v8+ asks for several groups at once. With `require_stable`
//! (v7+), a partition whose offset a transaction has written but not yet committed answers
//! UNSTABLE_OFFSET_COMMIT (retriable) with no offset.
//! v9 carries a consumer-protocol member's id and epoch, checked as Kafka does.

use std::rc::Rc;

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::group::CommittedOffset;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use crate::protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use crate::protocol::ApiKey;
use crate::shard::group_coordinator::to_coordinator;
use crate::shard::Shard;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::OffsetFetch,
    min_version: 1,
    max_version: 9,
    advertised_min: 1,
    note: "supported (all topics with null, several groups v8+, require_stable: UNSTABLE_OFFSET_COMMIT while a transaction holds the offset)",
};

type Fetched = Vec<(String, Vec<(i32, Option<CommittedOffset>, ErrorCode)>)>;

/// The committed offsets of `group` for `topics` (None: all of them).
async fn fetch(
    shard: &Rc<Shard>,
    group: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
    member: Option<(Option<String>, i32)>,
    require_stable: bool,
) -> Result<Fetched, ErrorCode> {
    to_coordinator(shard, &group.clone(), move |shard| async move {
        let store = shard.groups.store.borrow();
        if let (Some(consumer), Some((member_id, epoch))) = (store.consumer.get(&group), member) {
            consumer.validate_offset_fetch(member_id.as_deref(), epoch)?;
        }
        let found = store.groups.get(&group);
        let pending = if require_stable {
            store.pending_offsets_of(&group)
        } else {
            Default::default()
        };
        let unstable = |topic: &str, partition: i32| {
            if pending.contains(&(topic.to_string(), partition)) {
                ErrorCode::UnstableOffsetCommit
            } else {
                ErrorCode::None
            }
        };
        Ok(match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let offsets = partitions
                        .into_iter()
                        .map(|p| {
                            let error = unstable(&topic, p);
                            let committed = found
                                .filter(|_| error == ErrorCode::None)
                                .and_then(|g| g.offsets.get(&(topic.clone(), p)))
                                .cloned();
                            (p, committed, error)
                        })
                        .collect();
                    (topic, offsets)
                })
                .collect(),
            None => {
                let mut all: Fetched = Vec::new();
                if let Some(g) = found {
                    for ((topic, partition), committed) in &g.offsets {
                        let error = unstable(topic, *partition);
                        let item = (
                            *partition,
                            (error == ErrorCode::None).then(|| committed.clone()),
                            error,
                        );
                        match all.last_mut() {
                            Some((last, list)) if last == topic => list.push(item),
                            _ => all.push((topic.clone(), vec![item])),
                        }
                    }
                }
                all
            }
        })
    })
    .await
}

fn values(committed: &Option<CommittedOffset>) -> (i64, i32, Option<String>) {
    match committed {
        Some(c) => (c.offset, c.leader_epoch, Some(c.metadata.clone())),
        None => (-1, -1, Some(String::new())),
    }
}

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: OffsetFetchRequest = request.decode()?;
    let shard = request.shard.clone();
    if request.version >= 8 {
        let mut groups = Vec::with_capacity(body.groups.len());
        for g in body.groups {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect()
            });
            let member = (request.version >= 9).then(|| (g.member_id.clone(), g.member_epoch));
            let outcome = fetch(
                &shard,
                g.group_id.clone(),
                topics,
                member,
                body.require_stable,
            )
            .await;
            groups.push(match outcome {
                Ok(fetched) => OffsetFetchResponseGroup {
                    group_id: g.group_id,
                    topics: fetched
                        .into_iter()
                        .map(|(name, partitions)| OffsetFetchResponseTopics {
                            name,
                            partitions: partitions
                                .into_iter()
                                .map(|(partition_index, committed, error)| {
                                    let (offset, epoch, metadata) = values(&committed);
                                    OffsetFetchResponsePartitions {
                                        partition_index,
                                        committed_offset: offset,
                                        committed_leader_epoch: epoch,
                                        metadata,
                                        error_code: error.code(),
                                        ..Default::default()
                                    }
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    error_code: 0,
                    ..Default::default()
                },
                Err(code) => OffsetFetchResponseGroup {
                    group_id: g.group_id,
                    error_code: code.code(),
                    ..Default::default()
                },
            });
        }
        return request.respond(&OffsetFetchResponse {
            groups,
            ..Default::default()
        });
    }
    let asked: Option<Vec<(String, Vec<i32>)>> = body.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let require_stable = request.version >= 7 && body.require_stable;
    let outcome = fetch(
        &shard,
        body.group_id.clone(),
        asked.clone(),
        None,
        require_stable,
    )
    .await;
    let (fetched, error) = match outcome {
        Ok(fetched) => (fetched, ErrorCode::None),
        // v1 has no top-level error: every asked partition carries it.
        Err(code) => (
            asked
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    (
                        t,
                        ps.into_iter().map(|p| (p, None, ErrorCode::None)).collect(),
                    )
                })
                .collect(),
            code,
        ),
    };
    let partition_error = if request.version < 2 {
        error
    } else {
        ErrorCode::None
    };
    let topics = fetched
        .into_iter()
        .map(|(name, partitions)| OffsetFetchResponseTopic {
            name,
            partitions: partitions
                .into_iter()
                .map(|(partition_index, committed, own)| {
                    let (offset, epoch, metadata) = values(&committed);
                    let error = if own != ErrorCode::None {
                        own
                    } else {
                        partition_error
                    };
                    OffsetFetchResponsePartition {
                        partition_index,
                        committed_offset: offset,
                        committed_leader_epoch: epoch,
                        metadata,
                        error_code: error.code(),
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    request.respond(&OffsetFetchResponse {
        topics,
        error_code: error.code(),
        ..Default::default()
    })
}
