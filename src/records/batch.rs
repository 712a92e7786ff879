//! Record batch v2 (magic 2) framing: header parsing, validation, splitting
//! a `records` blob into batches, and in-place header patching.
//!
//! Layout (big-endian), byte offsets from the start of the batch:
//! ```text
//!  0 baseOffset i64        8 batchLength i32      12 partitionLeaderEpoch i32
//! 16 magic i8             17 crc u32              21 attributes i16
//! 23 lastOffsetDelta i32  27 baseTimestamp i64    35 maxTimestamp i64
//! 43 producerId i64       51 producerEpoch i16    53 baseSequence i32
//! 57 recordsCount i32     61 records...
//! ```
//! `batchLength` counts the bytes after itself, so a batch occupies
//! `batchLength + 12` bytes. The CRC-32C covers bytes 21..end; the base offset
//! and partition leader epoch sit before it so the broker can assign them
//! without recomputing the checksum.
//!
//! Invariants: nothing here allocates or copies record data (splits are
//! zero-copy `Bytes` slices), nothing trusts a declared length beyond the
//! bytes actually present, and malformed input yields a `BatchError`, never a
//! panic.

use std::fmt;

use bytes::Bytes;

use super::compression::{Compression, CompressionError};
use super::varint::VarintError;

/// Size of the fixed v2 batch header, up to and including `recordsCount`.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before the part `batchLength` counts: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;
/// The only magic (message format version) this module reads or writes.
pub const CURRENT_MAGIC: i8 = 2;

pub const BASE_OFFSET_OFFSET: usize = 0;
pub const BATCH_LENGTH_OFFSET: usize = 8;
pub const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
pub const MAGIC_OFFSET: usize = 16;
pub const CRC_OFFSET: usize = 17;
pub const ATTRIBUTES_OFFSET: usize = 21;
pub const LAST_OFFSET_DELTA_OFFSET: usize = 23;
pub const BASE_TIMESTAMP_OFFSET: usize = 27;
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
pub const PRODUCER_ID_OFFSET: usize = 43;
pub const PRODUCER_EPOCH_OFFSET: usize = 51;
pub const BASE_SEQUENCE_OFFSET: usize = 53;
pub const RECORDS_COUNT_OFFSET: usize = 57;

/// Smallest legal `batchLength`: a header with no records.
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;

/// Sentinels Kafka uses for "absent" header fields.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;
pub const NO_TIMESTAMP: i64 = -1;

/// Attribute bit 3: timestamps are the broker's append time.
pub const TIMESTAMP_TYPE_MASK: i16 = 0x08;
/// Attribute bit 4: the batch belongs to a transaction.
pub const TRANSACTIONAL_MASK: i16 = 0x10;
/// Attribute bit 5: the batch holds control records (transaction markers).
pub const CONTROL_MASK: i16 = 0x20;
/// Attribute bit 6: `baseTimestamp` holds the compaction delete horizon (KIP-534).
pub const DELETE_HORIZON_MASK: i16 = 0x40;

/// How a batch's timestamps were assigned (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Timestamps are the producer's; each record's is `baseTimestamp + delta`.
    CreateTime,
    /// The broker stamped the batch; every record's timestamp is `maxTimestamp`.
    LogAppendTime,
}

/// The decoded fixed header of a v2 batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

/// Everything that can be wrong with a batch or the records inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the batch needs: `needed` in total, `available` present.
    /// At the end of a fetch response this is a legal partial batch.
    Truncated { needed: usize, available: usize },
    /// The slice holds `actual` bytes but the header declares `declared`.
    LengthMismatch { declared: usize, actual: usize },
    /// `batchLength` is negative or smaller than a v2 header.
    InvalidBatchLength(i32),
    /// Magic other than 2 (0 and 1 are the legacy message formats).
    UnsupportedMagic(i8),
    /// Stored CRC (`expected`) differs from the CRC-32C of the bytes (`actual`).
    CrcMismatch { expected: u32, actual: u32 },
    /// Attribute bits 0-2 name no codec.
    UnknownCompression(u8),
    /// `recordsCount` is negative or inconsistent with `lastOffsetDelta`.
    InvalidRecordCount {
        records_count: i32,
        last_offset_delta: i32,
    },
    /// `lastOffsetDelta` is negative.
    InvalidLastOffsetDelta(i32),
    /// Producer id, epoch and base sequence do not describe a valid producer state.
    InvalidProducerState {
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    },
    /// A client tried to produce a control batch; only the broker writes them.
    ControlBatchFromClient,
    /// A produce request's records held no batch at all.
    NoBatches,
    /// A produce request's records held more than one v2 batch.
    MultipleBatches,
    /// The batch's records could not be decompressed.
    Compression(CompressionError),
    /// Record number `index` (0-based) is malformed.
    InvalidRecord {
        index: usize,
        problem: RecordProblem,
    },
    /// The batch declares `declared` records but its data holds `found`
    /// (`found` counts complete records; trailing bytes make it `declared + 1`).
    RecordCountMismatch { declared: i32, found: usize },
    /// A builder was asked to append an offset delta that does not increase.
    OffsetDeltaNotIncreasing { previous: i32, offset_delta: i32 },
    /// A control record's key or value is malformed.
    InvalidControlRecord(&'static str),
}

/// What is wrong inside a single record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// A varint field could not be decoded.
    Varint {
        field: &'static str,
        error: VarintError,
    },
    /// The record's length prefix is negative.
    NegativeLength(i32),
    /// A length (record, key, value, header) points past the available bytes.
    Overrun {
        field: &'static str,
        length: i64,
        available: usize,
    },
    /// The fields consumed `read` bytes but the length prefix says `declared`.
    SizeMismatch { declared: usize, read: usize },
    /// The header count is negative or larger than the bytes left.
    InvalidHeaderCount(i32),
    /// A header key length is negative (keys cannot be null).
    NegativeHeaderKeyLength(i32),
    /// A header key is not valid UTF-8.
    HeaderKeyNotUtf8 { header_index: usize },
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordProblem::Varint { field, error } => write!(formatter, "{field}: {error}"),
            RecordProblem::NegativeLength(length) => {
                write!(formatter, "negative record length {length}")
            }
            RecordProblem::Overrun {
                field,
                length,
                available,
            } => {
                write!(
                    formatter,
                    "{field} length {length} exceeds the {available} bytes left"
                )
            }
            RecordProblem::SizeMismatch { declared, read } => {
                write!(
                    formatter,
                    "record declares {declared} bytes but its fields span {read}"
                )
            }
            RecordProblem::InvalidHeaderCount(count) => {
                write!(formatter, "invalid header count {count}")
            }
            RecordProblem::NegativeHeaderKeyLength(length) => {
                write!(formatter, "negative header key length {length}")
            }
            RecordProblem::HeaderKeyNotUtf8 { header_index } => {
                write!(formatter, "header {header_index} key is not valid UTF-8")
            }
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Truncated { needed, available } => {
                write!(formatter, "batch truncated: needs {needed} bytes, {available} present")
            }
            BatchError::LengthMismatch { declared, actual } => {
                write!(formatter, "batch declares {declared} bytes but the slice holds {actual}")
            }
            BatchError::InvalidBatchLength(length) => write!(formatter, "invalid batch length {length}"),
            BatchError::UnsupportedMagic(magic) => {
                write!(formatter, "unsupported record batch magic {magic} (only 2 is supported)")
            }
            BatchError::CrcMismatch { expected, actual } => {
                write!(formatter, "batch CRC mismatch: stored {expected:#010x}, computed {actual:#010x}")
            }
            BatchError::UnknownCompression(id) => write!(formatter, "unknown compression codec id {id}"),
            BatchError::InvalidRecordCount { records_count, last_offset_delta } => write!(
                formatter,
                "invalid record count {records_count} for last offset delta {last_offset_delta}"
            ),
            BatchError::InvalidLastOffsetDelta(delta) => write!(formatter, "invalid last offset delta {delta}"),
            BatchError::InvalidProducerState { producer_id, producer_epoch, base_sequence } => write!(
                formatter,
                "invalid producer state: id {producer_id}, epoch {producer_epoch}, base sequence {base_sequence}"
            ),
            BatchError::ControlBatchFromClient => formatter.write_str("clients may not produce control batches"),
            BatchError::NoBatches => formatter.write_str("records contain no batch"),
            BatchError::MultipleBatches => formatter.write_str("produce records contain more than one batch"),
            BatchError::Compression(error) => write!(formatter, "batch records: {error}"),
            BatchError::InvalidRecord { index, problem } => write!(formatter, "record {index}: {problem}"),
            BatchError::RecordCountMismatch { declared, found } => {
                write!(formatter, "batch declares {declared} records but holds {found}")
            }
            BatchError::OffsetDeltaNotIncreasing { previous, offset_delta } => write!(
                formatter,
                "offset delta {offset_delta} does not follow previous offset delta {previous}"
            ),
            BatchError::InvalidControlRecord(reason) => write!(formatter, "invalid control record: {reason}"),
        }
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BatchError::Compression(error) => Some(error),
            _ => None,
        }
    }
}

impl From<CompressionError> for BatchError {
    fn from(error: CompressionError) -> Self {
        BatchError::Compression(error)
    }
}

#[inline]
fn read_i16(buffer: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buffer[at], buffer[at + 1]])
}

#[inline]
fn read_i32(buffer: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([buffer[at], buffer[at + 1], buffer[at + 2], buffer[at + 3]])
}

#[inline]
fn read_i64(buffer: &[u8], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buffer[at..at + 8]);
    i64::from_be_bytes(bytes)
}

/// Declared total size (`batchLength + 12`) of the batch starting at `buffer`,
/// after checking the length field itself. Needs only the first 12 bytes.
#[inline]
fn declared_total_size(buffer: &[u8]) -> Result<usize, BatchError> {
    if buffer.len() < LOG_OVERHEAD {
        return Err(BatchError::Truncated {
            needed: LOG_OVERHEAD,
            available: buffer.len(),
        });
    }
    let batch_length = read_i32(buffer, BATCH_LENGTH_OFFSET);
    if batch_length < 0 {
        return Err(BatchError::InvalidBatchLength(batch_length));
    }
    Ok(batch_length as usize + LOG_OVERHEAD)
}

impl BatchHeader {
    /// Decodes the 61-byte header at the start of `buffer` (which may extend
    /// past the batch). Checks the magic, the codec id and that `batchLength`
    /// covers a header; does not check the CRC or that the whole batch is present.
    pub fn parse(buffer: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = BatchHeader::parse_frame(buffer)?;
        check_codec(&header)?;
        Ok(header)
    }

    /// `parse` without the codec check, so `validate` can let the CRC speak
    /// first about corrupted attributes.
    fn parse_frame(buffer: &[u8]) -> Result<BatchHeader, BatchError> {
        if buffer.len() < BATCH_HEADER_LEN {
            // Report legacy formats as such even when they are shorter than a v2 header.
            if let Some(&magic) = buffer.get(MAGIC_OFFSET) {
                if magic as i8 != CURRENT_MAGIC {
                    return Err(BatchError::UnsupportedMagic(magic as i8));
                }
            }
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_LEN,
                available: buffer.len(),
            });
        }
        let header = BatchHeader::decode_fields(buffer);
        if header.magic != CURRENT_MAGIC {
            return Err(BatchError::UnsupportedMagic(header.magic));
        }
        if header.batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::InvalidBatchLength(header.batch_length));
        }
        Ok(header)
    }

    /// Reads every field; `buffer` must hold at least `BATCH_HEADER_LEN` bytes.
    fn decode_fields(buffer: &[u8]) -> BatchHeader {
        BatchHeader {
            base_offset: read_i64(buffer, BASE_OFFSET_OFFSET),
            batch_length: read_i32(buffer, BATCH_LENGTH_OFFSET),
            partition_leader_epoch: read_i32(buffer, PARTITION_LEADER_EPOCH_OFFSET),
            magic: buffer[MAGIC_OFFSET] as i8,
            crc: read_i32(buffer, CRC_OFFSET) as u32,
            attributes: read_i16(buffer, ATTRIBUTES_OFFSET),
            last_offset_delta: read_i32(buffer, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: read_i64(buffer, BASE_TIMESTAMP_OFFSET),
            max_timestamp: read_i64(buffer, MAX_TIMESTAMP_OFFSET),
            producer_id: read_i64(buffer, PRODUCER_ID_OFFSET),
            producer_epoch: read_i16(buffer, PRODUCER_EPOCH_OFFSET),
            base_sequence: read_i32(buffer, BASE_SEQUENCE_OFFSET),
            records_count: read_i32(buffer, RECORDS_COUNT_OFFSET),
        }
    }

    /// Encodes every field, CRC included as stored in `self.crc`, in wire order.
    pub fn encode(&self) -> [u8; BATCH_HEADER_LEN] {
        let mut out = [0u8; BATCH_HEADER_LEN];
        out[BASE_OFFSET_OFFSET..][..8].copy_from_slice(&self.base_offset.to_be_bytes());
        out[BATCH_LENGTH_OFFSET..][..4].copy_from_slice(&self.batch_length.to_be_bytes());
        out[PARTITION_LEADER_EPOCH_OFFSET..][..4]
            .copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out[MAGIC_OFFSET] = self.magic as u8;
        out[CRC_OFFSET..][..4].copy_from_slice(&self.crc.to_be_bytes());
        out[ATTRIBUTES_OFFSET..][..2].copy_from_slice(&self.attributes.to_be_bytes());
        out[LAST_OFFSET_DELTA_OFFSET..][..4].copy_from_slice(&self.last_offset_delta.to_be_bytes());
        out[BASE_TIMESTAMP_OFFSET..][..8].copy_from_slice(&self.base_timestamp.to_be_bytes());
        out[MAX_TIMESTAMP_OFFSET..][..8].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[PRODUCER_ID_OFFSET..][..8].copy_from_slice(&self.producer_id.to_be_bytes());
        out[PRODUCER_EPOCH_OFFSET..][..2].copy_from_slice(&self.producer_epoch.to_be_bytes());
        out[BASE_SEQUENCE_OFFSET..][..4].copy_from_slice(&self.base_sequence.to_be_bytes());
        out[RECORDS_COUNT_OFFSET..][..4].copy_from_slice(&self.records_count.to_be_bytes());
        out
    }

    /// The codec of the records section. A header from `parse` always names a
    /// known codec; a hand-built one with ids 5-7 reports `Compression::None`.
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes).unwrap_or(Compression::None)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_MASK != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_MASK != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_MASK != 0
    }

    /// Whether `base_timestamp` is the compaction delete horizon (KIP-534).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_MASK != 0
    }

    /// The delete horizon in milliseconds, when the batch carries one.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        self.has_delete_horizon().then_some(self.base_timestamp)
    }

    /// Whether the batch came from an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id > NO_PRODUCER_ID
    }

    /// Offset of the last record (`base_offset + last_offset_delta`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The offset the next batch in the log starts at.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// Sequence number of the last record, wrapping past `i32::MAX` to 0 as
    /// Kafka's `DefaultRecordBatch.incrementSequence` does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// Bytes the whole batch occupies (`batch_length + 12`); 0 for a negative length.
    pub fn total_size(&self) -> usize {
        usize::try_from(self.batch_length).map_or(0, |length| length + LOG_OVERHEAD)
    }
}

/// Adds `increment` to a producer sequence, wrapping past `i32::MAX` to 0.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    // Widened so garbage (negative) deltas cannot overflow.
    let sum = i64::from(sequence) + i64::from(increment);
    if sum > i64::from(i32::MAX) {
        (sum - i64::from(i32::MAX) - 1) as i32
    } else {
        sum as i32
    }
}

/// CRC-32C of the checksummed part (attributes to end) of a complete batch.
#[inline]
fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Fully validates one batch occupying exactly `batch`: size, magic, codec,
/// CRC-32C and the record count / offset-delta relation that holds for every
/// batch a log may contain (`0 <= recordsCount <= lastOffsetDelta + 1`; fewer
/// records than the offset span is legal after compaction, and compaction
/// may leave an empty batch to preserve producer state). Produce requests
/// need the stricter `validate_produce`.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let declared = declared_total_size(batch)?;
    let header = BatchHeader::parse_frame(batch)?;
    if declared != batch.len() {
        return Err(BatchError::LengthMismatch {
            declared,
            actual: batch.len(),
        });
    }
    let actual = compute_crc(batch);
    if actual != header.crc {
        return Err(BatchError::CrcMismatch {
            expected: header.crc,
            actual,
        });
    }
    check_codec(&header)?;
    check_counts(&header)?;
    Ok(header)
}

fn check_codec(header: &BatchHeader) -> Result<(), BatchError> {
    if Compression::from_attributes(header.attributes).is_none() {
        let id = (header.attributes & super::compression::COMPRESSION_CODEC_MASK) as u8;
        return Err(BatchError::UnknownCompression(id));
    }
    Ok(())
}

fn check_counts(header: &BatchHeader) -> Result<(), BatchError> {
    if header.last_offset_delta < 0 {
        return Err(BatchError::InvalidLastOffsetDelta(header.last_offset_delta));
    }
    let span = i64::from(header.last_offset_delta) + 1;
    if header.records_count < 0 || i64::from(header.records_count) > span {
        return Err(BatchError::InvalidRecordCount {
            records_count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(())
}

/// Validates the `records` of a Produce request the way Kafka's broker does
/// for client-originated data: exactly one v2 batch, fully valid (`validate`),
/// at least one record with `lastOffsetDelta == recordsCount - 1`, not a
/// control batch, a non-negative base sequence whenever a producer id is
/// set, and a producer id on every transactional batch.
pub fn validate_produce(records: &[u8]) -> Result<BatchHeader, BatchError> {
    if records.is_empty() {
        return Err(BatchError::NoBatches);
    }
    let declared = declared_total_size(records)?;
    if declared < records.len() {
        return Err(BatchError::MultipleBatches);
    }
    if declared > records.len() {
        // Report an old format as such rather than as a length problem.
        BatchHeader::parse(records)?;
        return Err(BatchError::Truncated {
            needed: declared,
            available: records.len(),
        });
    }
    let header = validate(records)?;
    check_client_rules(&header)?;
    Ok(header)
}

fn check_client_rules(header: &BatchHeader) -> Result<(), BatchError> {
    if header.records_count <= 0
        || i64::from(header.last_offset_delta) != i64::from(header.records_count) - 1
    {
        return Err(BatchError::InvalidRecordCount {
            records_count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    if header.is_control() {
        return Err(BatchError::ControlBatchFromClient);
    }
    let sequence_missing = header.has_producer_id() && header.base_sequence < 0;
    let transaction_without_producer = header.is_transactional() && !header.has_producer_id();
    if sequence_missing || transaction_without_producer {
        return Err(BatchError::InvalidProducerState {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
        });
    }
    Ok(())
}

/// Walks the batches of a records blob held in a borrowed slice.
///
/// Yields each complete batch with its parsed header (no CRC check; call
/// `validate` for that). A final incomplete batch yields
/// `BatchError::Truncated` once — legal at the end of a fetch response —
/// and any error ends the walk.
#[derive(Debug, Clone)]
pub struct BatchSliceIter<'a> {
    remaining: &'a [u8],
    finished: bool,
}

/// Iterates the batches of `records` as borrowed slices.
pub fn split_slice(records: &[u8]) -> BatchSliceIter<'_> {
    BatchSliceIter {
        remaining: records,
        finished: false,
    }
}

impl<'a> BatchSliceIter<'a> {
    /// Bytes not yet yielded (after an error: starting at the faulty batch).
    pub fn remaining(&self) -> &'a [u8] {
        self.remaining
    }

    fn next_batch(&mut self) -> Result<(BatchHeader, &'a [u8]), BatchError> {
        let total = declared_total_size(self.remaining)?;
        let Some(batch) = self.remaining.get(..total) else {
            // Magic errors win over truncation so a legacy tail is named as such.
            if let Some(&magic) = self.remaining.get(MAGIC_OFFSET) {
                if magic as i8 != CURRENT_MAGIC {
                    return Err(BatchError::UnsupportedMagic(magic as i8));
                }
            }
            return Err(BatchError::Truncated {
                needed: total,
                available: self.remaining.len(),
            });
        };
        let header = BatchHeader::parse(batch)?;
        self.remaining = &self.remaining[total..];
        Ok((header, batch))
    }
}

impl<'a> Iterator for BatchSliceIter<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished || self.remaining.is_empty() {
            return None;
        }
        let result = self.next_batch();
        if result.is_err() {
            self.finished = true;
        }
        Some(result)
    }
}

impl std::iter::FusedIterator for BatchSliceIter<'_> {}

/// Walks the batches of a `Bytes` records blob, yielding zero-copy slices.
/// Same rules as `BatchSliceIter`.
#[derive(Debug, Clone)]
pub struct BatchIter {
    records: Bytes,
    position: usize,
    finished: bool,
}

/// Iterates the batches of a Produce/Fetch `records` blob.
pub fn split(records: &Bytes) -> BatchIter {
    BatchIter {
        records: records.clone(),
        position: 0,
        finished: false,
    }
}

impl BatchIter {
    /// Offset in the blob of the first byte not yet yielded.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl Iterator for BatchIter {
    type Item = Result<(BatchHeader, Bytes), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let mut slices = split_slice(&self.records[self.position..]);
        match slices.next()? {
            Ok((header, batch)) => {
                let start = self.position;
                self.position += batch.len();
                Some(Ok((header, self.records.slice(start..self.position))))
            }
            Err(error) => {
                self.finished = true;
                Some(Err(error))
            }
        }
    }
}

impl std::iter::FusedIterator for BatchIter {}

/// Checks that `buffer` starts with a complete v2 batch and returns its size.
fn patchable_size(buffer: &[u8]) -> Result<usize, BatchError> {
    let header = BatchHeader::parse(buffer)?;
    let total = header.total_size();
    if buffer.len() < total {
        return Err(BatchError::Truncated {
            needed: total,
            available: buffer.len(),
        });
    }
    Ok(total)
}

/// Requires `buffer` to hold at least `needed` bytes of a batch.
fn require_prefix(buffer: &[u8], needed: usize) -> Result<(), BatchError> {
    if buffer.len() < needed {
        return Err(BatchError::Truncated {
            needed,
            available: buffer.len(),
        });
    }
    Ok(())
}

/// Sets the base offset of the batch starting at `buffer`. Only the first
/// 8 bytes are touched (and required), so a copied header prefix can be
/// patched before a vectored write. Outside the CRC: the checksum stays valid.
pub fn set_base_offset(buffer: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    require_prefix(buffer, BASE_OFFSET_OFFSET + 8)?;
    buffer[BASE_OFFSET_OFFSET..BASE_OFFSET_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    Ok(())
}

/// Sets the partition leader epoch of the batch starting at `buffer`. Only
/// the first 16 bytes are touched (and required). Outside the CRC: the
/// checksum stays valid.
pub fn set_partition_leader_epoch(buffer: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    require_prefix(buffer, PARTITION_LEADER_EPOCH_OFFSET + 4)?;
    buffer[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4]
        .copy_from_slice(&epoch.to_be_bytes());
    Ok(())
}

/// Stamps the batch with the broker's append time, as Kafka does for
/// `message.timestamp.type=LogAppendTime`: sets attribute bit 3, sets
/// `maxTimestamp` to `timestamp` and recomputes the CRC. Record timestamp
/// deltas are left alone; readers use `maxTimestamp` for every record.
pub fn set_log_append_time(buffer: &mut [u8], timestamp: i64) -> Result<(), BatchError> {
    let total = patchable_size(buffer)?;
    let attributes = read_i16(buffer, ATTRIBUTES_OFFSET);
    let unchanged = attributes & TIMESTAMP_TYPE_MASK != 0
        && read_i64(buffer, MAX_TIMESTAMP_OFFSET) == timestamp;
    if unchanged {
        return Ok(());
    }
    let attributes = attributes | TIMESTAMP_TYPE_MASK;
    buffer[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    buffer[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&timestamp.to_be_bytes());
    write_crc(&mut buffer[..total]);
    Ok(())
}

/// Recomputes and stores the CRC of the batch at the start of `buffer`
/// (covering bytes 21 to the declared end; later bytes are not touched).
pub fn recompute_crc(buffer: &mut [u8]) -> Result<(), BatchError> {
    let total = patchable_size(buffer)?;
    write_crc(&mut buffer[..total]);
    Ok(())
}

/// Writes the CRC of a complete batch occupying exactly `batch`.
pub(super) fn write_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::super::builder::BatchBuilder;
    use super::*;

    /// Bitwise CRC-32C (reflected polynomial 0x82F63B78), independent of the
    /// `crc32c` crate, to check the known-answer batch.
    fn reference_crc32c(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
            }
        }
        !crc
    }

    /// One uncompressed record (key null, value "hi", no headers) assembled
    /// byte by byte from the protocol specification.
    fn known_answer_batch() -> Vec<u8> {
        let record: [u8; 9] = [
            0x10, // length 8 (zigzag varint)
            0x00, // attributes
            0x00, // timestampDelta 0
            0x00, // offsetDelta 0
            0x01, // key length -1: null
            0x04, // value length 2
            b'h', b'i', // value
            0x00, // header count 0
        ];
        let mut batch = Vec::new();
        batch.extend_from_slice(&42i64.to_be_bytes()); // baseOffset
        batch.extend_from_slice(&((49 + record.len()) as i32).to_be_bytes()); // batchLength
        batch.extend_from_slice(&7i32.to_be_bytes()); // partitionLeaderEpoch
        batch.push(2); // magic
        batch.extend_from_slice(&[0, 0, 0, 0]); // crc placeholder
        batch.extend_from_slice(&0i16.to_be_bytes()); // attributes
        batch.extend_from_slice(&0i32.to_be_bytes()); // lastOffsetDelta
        batch.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // baseTimestamp
        batch.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // maxTimestamp
        batch.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
        batch.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
        batch.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
        batch.extend_from_slice(&1i32.to_be_bytes()); // recordsCount
        batch.extend_from_slice(&record);
        let crc = reference_crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    #[test]
    fn reference_crc_matches_the_standard_check_value() {
        assert_eq!(reference_crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn known_answer_batch_parses_and_validates() {
        let batch = known_answer_batch();
        assert_eq!(batch.len(), 70);
        let header = validate(&batch).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.batch_length, 58);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.magic, 2);
        assert_eq!(header.crc, reference_crc32c(&batch[21..]));
        assert_eq!(header.compression(), Compression::None);
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        assert!(!header.is_transactional() && !header.is_control() && !header.has_delete_horizon());
        assert_eq!(header.records_count, 1);
        assert_eq!(header.last_offset(), 42);
        assert_eq!(header.next_offset(), 43);
        assert_eq!(header.total_size(), 70);
        assert_eq!(header.last_sequence(), NO_SEQUENCE);
        assert_eq!(validate_produce(&batch), Ok(header));
    }

    #[test]
    fn builder_output_equals_the_known_answer_bytes() {
        let mut builder =
            BatchBuilder::new(Compression::None, 42, 1_700_000_000_000).partition_leader_epoch(7);
        builder.append(1_700_000_000_000, None, Some(b"hi"), &[]);
        assert_eq!(
            builder.build().unwrap().as_ref(),
            known_answer_batch().as_slice()
        );
    }

    #[test]
    fn every_corrupted_byte_after_the_crc_field_is_detected() {
        let batch = known_answer_batch();
        for index in ATTRIBUTES_OFFSET..batch.len() {
            let mut corrupted = batch.clone();
            corrupted[index] ^= 0x01;
            assert!(
                matches!(validate(&corrupted), Err(BatchError::CrcMismatch { .. })),
                "flip at byte {index} went unnoticed"
            );
        }
        let mut corrupted = batch.clone();
        corrupted[CRC_OFFSET] ^= 0x80;
        assert!(matches!(
            validate(&corrupted),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn structural_errors_are_named() {
        let batch = known_answer_batch();
        assert_eq!(
            validate(&batch[..5]),
            Err(BatchError::Truncated {
                needed: 12,
                available: 5
            })
        );
        assert_eq!(
            validate(&batch[..69]),
            Err(BatchError::LengthMismatch {
                declared: 70,
                actual: 69
            })
        );
        let mut longer = batch.clone();
        longer.push(0);
        assert_eq!(
            validate(&longer),
            Err(BatchError::LengthMismatch {
                declared: 70,
                actual: 71
            })
        );

        let mut legacy = batch.clone();
        legacy[MAGIC_OFFSET] = 1;
        assert_eq!(validate(&legacy), Err(BatchError::UnsupportedMagic(1)));

        let mut short_length = batch.clone();
        short_length[8..12].copy_from_slice(&40i32.to_be_bytes());
        assert_eq!(
            validate(&short_length),
            Err(BatchError::InvalidBatchLength(40))
        );
        short_length[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(
            validate(&short_length),
            Err(BatchError::InvalidBatchLength(-5))
        );

        let mut codec = batch.clone();
        codec[ATTRIBUTES_OFFSET + 1] = 0x06;
        write_crc(&mut codec);
        assert_eq!(validate(&codec), Err(BatchError::UnknownCompression(6)));
    }

    fn with_counts(records_count: i32, last_offset_delta: i32) -> Vec<u8> {
        let mut batch = known_answer_batch();
        batch[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4]
            .copy_from_slice(&records_count.to_be_bytes());
        batch[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
            .copy_from_slice(&last_offset_delta.to_be_bytes());
        write_crc(&mut batch);
        batch
    }

    #[test]
    fn record_counts_follow_kafkas_rules() {
        // Compacted batches: fewer records than the offset span, or none at all.
        assert!(validate(&with_counts(1, 5)).is_ok());
        assert!(validate(&with_counts(0, 3)).is_ok());
        let too_many = with_counts(3, 1);
        assert_eq!(
            validate(&too_many),
            Err(BatchError::InvalidRecordCount {
                records_count: 3,
                last_offset_delta: 1
            })
        );
        assert!(matches!(
            validate(&with_counts(-1, 0)),
            Err(BatchError::InvalidRecordCount { .. })
        ));
        assert_eq!(
            validate(&with_counts(0, -1)),
            Err(BatchError::InvalidLastOffsetDelta(-1))
        );
        // Produce requests need lastOffsetDelta == count - 1 and count > 0.
        assert!(matches!(
            validate_produce(&with_counts(1, 5)),
            Err(BatchError::InvalidRecordCount { .. })
        ));
        assert!(matches!(
            validate_produce(&with_counts(0, 0)),
            Err(BatchError::InvalidRecordCount { .. })
        ));
    }

    #[test]
    fn produce_rules_reject_control_sequence_and_multiple_batches() {
        let mut control = known_answer_batch();
        control[ATTRIBUTES_OFFSET + 1] |= CONTROL_MASK as u8;
        write_crc(&mut control);
        assert!(validate(&control).is_ok());
        assert_eq!(
            validate_produce(&control),
            Err(BatchError::ControlBatchFromClient)
        );

        let mut no_sequence = known_answer_batch();
        no_sequence[PRODUCER_ID_OFFSET..PRODUCER_ID_OFFSET + 8]
            .copy_from_slice(&9i64.to_be_bytes());
        write_crc(&mut no_sequence);
        assert!(matches!(
            validate_produce(&no_sequence),
            Err(BatchError::InvalidProducerState { .. })
        ));

        let mut transactional = known_answer_batch();
        transactional[ATTRIBUTES_OFFSET + 1] |= TRANSACTIONAL_MASK as u8;
        write_crc(&mut transactional);
        assert!(matches!(
            validate_produce(&transactional),
            Err(BatchError::InvalidProducerState { .. })
        ));

        let mut two = known_answer_batch();
        two.extend(known_answer_batch());
        assert_eq!(validate_produce(&two), Err(BatchError::MultipleBatches));
        assert_eq!(validate_produce(&[]), Err(BatchError::NoBatches));
        let batch = known_answer_batch();
        assert_eq!(
            validate_produce(&batch[..65]),
            Err(BatchError::Truncated {
                needed: 70,
                available: 65
            })
        );
    }

    #[test]
    fn patching_offset_and_epoch_keeps_the_crc_valid() {
        let mut batch = known_answer_batch();
        let crc_before = validate(&batch).unwrap().crc;
        set_base_offset(&mut batch, 1_000_000).unwrap();
        set_partition_leader_epoch(&mut batch, 99).unwrap();
        let header = validate(&batch).unwrap();
        assert_eq!(header.base_offset, 1_000_000);
        assert_eq!(header.partition_leader_epoch, 99);
        assert_eq!(header.crc, crc_before);
    }

    #[test]
    fn patching_a_copied_prefix_matches_patching_the_batch() {
        // The storage layer patches a 16-byte copy and writes it before the rest.
        let batch = known_answer_batch();
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(&batch[..16]);
        set_base_offset(&mut prefix, 123).unwrap();
        set_partition_leader_epoch(&mut prefix, 4).unwrap();
        let mut joined = prefix.to_vec();
        joined.extend_from_slice(&batch[16..]);
        let header = validate(&joined).unwrap();
        assert_eq!(
            (header.base_offset, header.partition_leader_epoch),
            (123, 4)
        );
    }

    #[test]
    fn log_append_time_sets_the_bit_the_timestamp_and_a_valid_crc() {
        let mut batch = known_answer_batch();
        let crc_before = validate(&batch).unwrap().crc;
        set_log_append_time(&mut batch, 1_800_000_000_000).unwrap();
        let header = validate(&batch).unwrap();
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(header.max_timestamp, 1_800_000_000_000);
        assert_eq!(header.base_timestamp, 1_700_000_000_000);
        assert_ne!(header.crc, crc_before);
        assert_eq!(header.compression(), Compression::None);
    }

    #[test]
    fn patching_inside_a_larger_buffer_touches_only_the_batch() {
        let mut buffer = known_answer_batch();
        buffer.extend_from_slice(&[0xAB; 16]);
        set_log_append_time(&mut buffer, 5).unwrap();
        recompute_crc(&mut buffer).unwrap();
        assert!(validate(&buffer[..70]).is_ok());
        assert_eq!(&buffer[70..], &[0xAB; 16]);
    }

    #[test]
    fn patching_refuses_short_or_foreign_buffers() {
        let batch = known_answer_batch();
        let mut short = batch[..60].to_vec();
        assert!(matches!(
            set_log_append_time(&mut short, 1),
            Err(BatchError::Truncated { .. })
        ));
        let mut tiny = batch[..7].to_vec();
        assert_eq!(
            set_base_offset(&mut tiny, 1),
            Err(BatchError::Truncated {
                needed: 8,
                available: 7
            })
        );
        let mut fifteen = batch[..15].to_vec();
        assert_eq!(
            set_partition_leader_epoch(&mut fifteen, 1),
            Err(BatchError::Truncated {
                needed: 16,
                available: 15
            })
        );
        let mut partial = batch[..69].to_vec();
        assert!(matches!(
            recompute_crc(&mut partial),
            Err(BatchError::Truncated { .. })
        ));
        let mut legacy = batch.clone();
        legacy[MAGIC_OFFSET] = 0;
        assert_eq!(
            set_log_append_time(&mut legacy, 1),
            Err(BatchError::UnsupportedMagic(0))
        );
    }

    #[test]
    fn split_yields_each_batch_then_reports_a_partial_tail() {
        let batch = known_answer_batch();
        let mut blob = Vec::new();
        for base_offset in 0..3 {
            let mut copy = batch.clone();
            set_base_offset(&mut copy, base_offset * 10).unwrap();
            blob.extend(copy);
        }
        blob.extend_from_slice(&batch[..30]);
        let blob = Bytes::from(blob);
        let mut iterator = split(&blob);
        for expected in 0..3 {
            let (header, slice) = iterator.next().unwrap().unwrap();
            assert_eq!(header.base_offset, expected * 10);
            assert_eq!(slice.len(), 70);
            assert!(validate(&slice).is_ok());
        }
        assert_eq!(iterator.position(), 210);
        assert_eq!(
            iterator.next(),
            Some(Err(BatchError::Truncated {
                needed: 70,
                available: 30
            }))
        );
        assert_eq!(iterator.next(), None);
        assert_eq!(split(&Bytes::new()).count(), 0);
        assert_eq!(
            split(&blob.slice(..10)).next(),
            Some(Err(BatchError::Truncated {
                needed: 12,
                available: 10
            }))
        );
    }

    #[test]
    fn split_names_legacy_batches() {
        let mut legacy = known_answer_batch();
        legacy[MAGIC_OFFSET] = 1;
        let blob = Bytes::from(legacy);
        assert_eq!(
            split(&blob).next(),
            Some(Err(BatchError::UnsupportedMagic(1)))
        );
        assert_eq!(
            split(&blob.slice(..40)).next(),
            Some(Err(BatchError::UnsupportedMagic(1)))
        );
    }

    #[test]
    fn split_slice_matches_split() {
        let mut blob = known_answer_batch();
        blob.extend(known_answer_batch());
        let borrowed: Vec<_> = split_slice(&blob).map(|item| item.unwrap().0).collect();
        let owned: Vec<_> = split(&Bytes::from(blob.clone()))
            .map(|item| item.unwrap().0)
            .collect();
        assert_eq!(borrowed, owned);
        assert_eq!(borrowed.len(), 2);
    }

    #[test]
    fn sequence_wraps_like_kafka() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 3), 8);
    }
}
