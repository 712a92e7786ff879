//! `__transaction_state` records in Kafka's format: key = version 0 + `TransactionLogKey`,
//! value = version + `TransactionLogValue` (written as version 0, which every Kafka reads;
//! versions 0 and 1 are read). A tombstone (null value) removes an expired id.

use bytes::{Buf, Bytes};

use super::{TxnMetadata, TxnPartitions, TxnState, NO_EPOCH};
use crate::protocol::transaction_coordinator::{
    transaction_log_value::PartitionsSchema, TransactionLogKey, TransactionLogValue,
};
use crate::protocol::wire::encode_to_bytes;
use crate::protocol::Message;

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

fn versioned<M: Message>(version: i16, message: &M) -> Bytes {
    let body = encode_to_bytes(message, version).expect("transaction records always encode");
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// The record key of `transactional_id`.
pub fn encode_key(transactional_id: &str) -> Bytes {
    versioned(
        KEY_VERSION,
        &TransactionLogKey {
            transactional_id: transactional_id.to_string(),
            ..Default::default()
        },
    )
}

/// (key, value) of `meta`'s record.
pub fn encode(meta: &TxnMetadata) -> (Bytes, Option<Bytes>) {
    // Kafka writes no partition list for an Empty transaction.
    let partitions = (meta.state != TxnState::Empty).then(|| {
        meta.partitions
            .iter()
            .map(|(topic, ids)| PartitionsSchema {
                topic: topic.clone(),
                partition_ids: ids.iter().copied().collect(),
                ..Default::default()
            })
            .collect()
    });
    let value = TransactionLogValue {
        producer_id: meta.producer_id,
        producer_epoch: meta.producer_epoch,
        transaction_timeout_ms: meta.timeout_ms,
        transaction_status: meta.state.id(),
        transaction_partitions: partitions,
        transaction_last_update_timestamp_ms: meta.last_update_ms,
        transaction_start_timestamp_ms: meta.start_ms,
        ..Default::default()
    };
    (
        encode_key(&meta.transactional_id),
        Some(versioned(VALUE_VERSION, &value)),
    )
}

/// Decodes a record: the transactional id and its metadata (`None`: tombstone). `None` overall
/// for a record that is not a transaction log record this version understands.
pub fn decode(key: &Bytes, value: Option<&Bytes>) -> Option<(String, Option<TxnMetadata>)> {
    let mut key = key.clone();
    if key.len() < 2 || key.get_i16() != KEY_VERSION {
        return None;
    }
    let id = TransactionLogKey::decode(&mut key, KEY_VERSION)
        .ok()?
        .transactional_id;
    let Some(value) = value else {
        return Some((id, None));
    };
    let mut value = value.clone();
    if value.len() < 2 {
        return None;
    }
    let version = value.get_i16();
    if !(0..=1).contains(&version) {
        return None;
    }
    let v = TransactionLogValue::decode(&mut value, version).ok()?;
    let state = TxnState::from_id(v.transaction_status)?;
    let mut partitions = TxnPartitions::new();
    for p in v.transaction_partitions.unwrap_or_default() {
        partitions
            .entry(p.topic)
            .or_default()
            .extend(p.partition_ids);
    }
    Some((
        id.clone(),
        Some(TxnMetadata {
            transactional_id: id,
            producer_id: v.producer_id,
            previous_producer_id: v.previous_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: NO_EPOCH,
            timeout_ms: v.transaction_timeout_ms,
            state,
            partitions,
            start_ms: v.transaction_start_timestamp_ms,
            last_update_ms: v.transaction_last_update_timestamp_ms,
        }),
    ))
}
