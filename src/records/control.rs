//! Control records: the key and value encodings of transaction markers.
//!
//! A control batch (attribute bit 5) holds control records whose key is
//! `version: i16 (0) | type: i16` (Kafka's `ControlRecordType`: ABORT = 0,
//! COMMIT = 1, higher ids are KRaft-internal) and, for transaction markers,
//! whose value is `version: i16 (0) | coordinatorEpoch: i32`
//! (`EndTransactionMarker`). Parsing follows Kafka: negative versions are
//! corrupt, newer versions are read as version 0 (fields only get appended).

use super::batch::BatchError;

/// Key schema version written by this module.
pub const CONTROL_KEY_VERSION: i16 = 0;
/// End-transaction-marker value schema version written by this module.
pub const END_TRANSACTION_MARKER_VERSION: i16 = 0;
/// Encoded size of a version-0 control record key.
pub const CONTROL_KEY_LEN: usize = 4;
/// Encoded size of a version-0 end-transaction-marker value.
pub const END_TRANSACTION_MARKER_LEN: usize = 6;

/// Kind of transaction marker.
#[repr(i16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlType {
    Abort = 0,
    Commit = 1,
}

impl ControlType {
    /// The marker kind for a control type id; `None` for other control
    /// types (leader change, snapshot, KRaft) and unknown ids.
    pub fn from_id(id: i16) -> Option<ControlType> {
        match id {
            0 => Some(ControlType::Abort),
            1 => Some(ControlType::Commit),
            _ => None,
        }
    }

    pub fn id(self) -> i16 {
        self as i16
    }
}

/// Key and value of a transaction marker record.
pub fn control_record(
    kind: ControlType,
    coordinator_epoch: i32,
) -> ([u8; CONTROL_KEY_LEN], [u8; END_TRANSACTION_MARKER_LEN]) {
    (
        control_record_key(kind.id()),
        end_transaction_marker_value(coordinator_epoch),
    )
}

/// Encodes a version-0 control record key for control type `type_id`.
pub fn control_record_key(type_id: i16) -> [u8; CONTROL_KEY_LEN] {
    let mut key = [0u8; CONTROL_KEY_LEN];
    key[..2].copy_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key[2..].copy_from_slice(&type_id.to_be_bytes());
    key
}

/// Encodes a version-0 end-transaction-marker value.
pub fn end_transaction_marker_value(coordinator_epoch: i32) -> [u8; END_TRANSACTION_MARKER_LEN] {
    let mut value = [0u8; END_TRANSACTION_MARKER_LEN];
    value[..2].copy_from_slice(&END_TRANSACTION_MARKER_VERSION.to_be_bytes());
    value[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
    value
}

/// Reads the control type id from a control record key.
pub fn parse_control_record_key(key: &[u8]) -> Result<i16, BatchError> {
    if key.len() < CONTROL_KEY_LEN {
        return Err(BatchError::InvalidControlRecord(
            "control record key shorter than 4 bytes",
        ));
    }
    if i16::from_be_bytes([key[0], key[1]]) < 0 {
        return Err(BatchError::InvalidControlRecord(
            "negative control record key version",
        ));
    }
    Ok(i16::from_be_bytes([key[2], key[3]]))
}

/// A transaction marker as read back from a stored control batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub kind: ControlType,
    pub coordinator_epoch: i32,
}

/// Reads the transaction marker a control batch holds (its first record: Kafka writes exactly
/// one). `None` for other batches, other control types (leader change, KRaft) and malformed
/// records. Control batches are uncompressed and tiny, so the copy is cheap.
pub fn read_marker(batch: &[u8]) -> Option<TxnMarker> {
    let header = super::batch::BatchHeader::parse(batch).ok()?;
    if !header.is_control() || header.records_count <= 0 {
        return None;
    }
    let bytes = bytes::Bytes::copy_from_slice(batch.get(..header.total_size())?);
    let record = super::record::records(&bytes, 1 << 20).ok()?.next()?.ok()?;
    let kind = ControlType::from_id(parse_control_record_key(record.key.as_deref()?).ok()?)?;
    let coordinator_epoch = record
        .value
        .as_deref()
        .and_then(|v| parse_end_transaction_marker(v).ok())
        .unwrap_or(-1);
    Some(TxnMarker {
        kind,
        coordinator_epoch,
    })
}

/// Reads the coordinator epoch from an end-transaction-marker value.
pub fn parse_end_transaction_marker(value: &[u8]) -> Result<i32, BatchError> {
    if value.len() < END_TRANSACTION_MARKER_LEN {
        return Err(BatchError::InvalidControlRecord(
            "end transaction marker shorter than 6 bytes",
        ));
    }
    if i16::from_be_bytes([value[0], value[1]]) < 0 {
        return Err(BatchError::InvalidControlRecord(
            "negative end transaction marker version",
        ));
    }
    Ok(i32::from_be_bytes([value[2], value[3], value[4], value[5]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_encodings_match_kafka() {
        let (key, value) = control_record(ControlType::Commit, 0x0102_0304);
        assert_eq!(key, [0, 0, 0, 1]);
        assert_eq!(value, [0, 0, 1, 2, 3, 4]);
        let (key, _) = control_record(ControlType::Abort, 0);
        assert_eq!(key, [0, 0, 0, 0]);
    }

    #[test]
    fn parsing_round_trips_and_tolerates_newer_versions() {
        let (key, value) = control_record(ControlType::Abort, 17);
        assert_eq!(
            parse_control_record_key(&key).map(ControlType::from_id),
            Ok(Some(ControlType::Abort))
        );
        assert_eq!(parse_end_transaction_marker(&value), Ok(17));
        // Version 3 with an extra trailing field still parses.
        assert_eq!(parse_control_record_key(&[0, 3, 0, 1, 9, 9]), Ok(1));
        assert_eq!(parse_end_transaction_marker(&[0, 1, 0, 0, 0, 5, 7]), Ok(5));
        assert_eq!(ControlType::from_id(2), None);
    }

    #[test]
    fn markers_are_read_back_from_control_batches_only() {
        use crate::records::builder::{BatchBuilder, EndTransactionMarker};
        for kind in [ControlType::Abort, ControlType::Commit] {
            let marker = EndTransactionMarker {
                kind,
                coordinator_epoch: 7,
                producer_id: 42,
                producer_epoch: 3,
            };
            let batch = BatchBuilder::end_transaction_marker(&marker, 100, 1_000)
                .build()
                .unwrap();
            assert_eq!(
                read_marker(&batch),
                Some(TxnMarker {
                    kind,
                    coordinator_epoch: 7
                })
            );
        }
        let mut data = BatchBuilder::new(crate::records::Compression::None, 0, 1_000);
        data.append(1_000, Some(&[0, 0, 0, 1]), Some(b"v"), &[]);
        assert_eq!(read_marker(&data.build().unwrap()), None);
    }

    #[test]
    fn malformed_control_records_are_errors() {
        assert!(parse_control_record_key(&[0, 0, 1]).is_err());
        assert!(parse_control_record_key(&[0xff, 0xff, 0, 1]).is_err());
        assert!(parse_end_transaction_marker(&[0, 0, 0, 0, 1]).is_err());
        assert!(parse_end_transaction_marker(&[0x80, 0, 0, 0, 0, 1]).is_err());
    }
}
