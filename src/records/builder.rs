//! Building v2 record batches: the CLI producer, compaction, transaction
//! markers and tests all write batches through `BatchBuilder`.
//!
//! Records are encoded as they are appended into one buffer that already
//! reserves the 61-byte header, so an uncompressed batch is finished in place
//! without copying. `build` fills the header (counts, offset delta, max
//! timestamp, attributes), compresses the records section when asked, and
//! computes the CRC-32C. Invariants: offset deltas strictly increase, and a
//! batch that cannot be described by the format's 32-bit lengths is an
//! error at `build`, never a wrapped length.

use bytes::Bytes;

use super::batch::{
    write_crc, BatchError, BatchHeader, BATCH_HEADER_LEN, CONTROL_MASK, CURRENT_MAGIC,
    LOG_OVERHEAD, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
    NO_TIMESTAMP, TIMESTAMP_TYPE_MASK, TRANSACTIONAL_MASK,
};
use super::compression::{compress, Compression, CompressionError};
use super::varint::{varint_size, varlong_size, write_varint, write_varlong};

pub use super::control::{control_record, ControlType};

/// A transaction marker to write as a control batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTransactionMarker {
    pub kind: ControlType,
    pub coordinator_epoch: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// Accumulates records and produces one encoded batch.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    base_offset: i64,
    base_timestamp: i64,
    max_timestamp: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    /// Header placeholder followed by the encoded (uncompressed) records.
    buffer: Vec<u8>,
    record_count: usize,
    last_offset_delta: Option<i32>,
    /// Size of a field too large for the format, reported by `build`.
    oversized: Option<usize>,
}

impl BatchBuilder {
    /// Starts a batch whose first offset is `base_offset`; record timestamps
    /// are stored relative to `base_timestamp` (Kafka uses the first
    /// record's timestamp). No producer id, not transactional, not control.
    pub fn new(compression: Compression, base_offset: i64, base_timestamp: i64) -> BatchBuilder {
        BatchBuilder {
            compression,
            base_offset,
            base_timestamp,
            max_timestamp: NO_TIMESTAMP,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            control: false,
            buffer: vec![0u8; BATCH_HEADER_LEN],
            record_count: 0,
            last_offset_delta: None,
            oversized: None,
        }
    }

    /// Sets the idempotent/transactional producer identity of the batch.
    pub fn producer(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> BatchBuilder {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn transactional(mut self, transactional: bool) -> BatchBuilder {
        self.transactional = transactional;
        self
    }

    pub fn control(mut self, control: bool) -> BatchBuilder {
        self.control = control;
        self
    }

    /// Sets the partition leader epoch (default -1, "unknown").
    pub fn partition_leader_epoch(mut self, epoch: i32) -> BatchBuilder {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Starts a control batch holding one transaction marker, as Kafka's
    /// `MemoryRecords.withEndTransactionMarker` writes it: transactional,
    /// control, uncompressed, no base sequence.
    pub fn end_transaction_marker(
        marker: &EndTransactionMarker,
        base_offset: i64,
        timestamp: i64,
    ) -> BatchBuilder {
        let mut builder = BatchBuilder::new(Compression::None, base_offset, timestamp)
            .producer(marker.producer_id, marker.producer_epoch, NO_SEQUENCE)
            .transactional(true)
            .control(true);
        let (key, value) = control_record(marker.kind, marker.coordinator_epoch);
        builder.append(timestamp, Some(&key), Some(&value), &[]);
        builder
    }

    /// Appends a record at the next offset (0 for the first record).
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        let offset_delta = match self.last_offset_delta {
            None => 0,
            Some(previous) => previous.saturating_add(1),
        };
        if self.last_offset_delta == Some(i32::MAX) {
            // The offset span no longer fits; `build` reports it.
            self.oversized = Some(usize::MAX);
        }
        self.push_record(offset_delta, timestamp, key, value, headers);
    }

    /// Appends a record at `offset_delta` past the base offset, which must
    /// exceed the previous record's (compaction keeps original offsets).
    pub fn append_with_offset_delta(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Result<(), BatchError> {
        let previous = self.last_offset_delta.unwrap_or(-1);
        if offset_delta <= previous {
            return Err(BatchError::OffsetDeltaNotIncreasing {
                previous,
                offset_delta,
            });
        }
        self.push_record(offset_delta, timestamp, key, value, headers);
        Ok(())
    }

    /// Number of records appended so far.
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Size of the batch if built uncompressed, header included.
    pub fn uncompressed_size(&self) -> usize {
        self.buffer.len()
    }

    fn push_record(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        let timestamp_delta = timestamp.wrapping_sub(self.base_timestamp);
        let record = RecordFields {
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers,
        };
        match record.body_size() {
            Some(body_size) => record.encode(&mut self.buffer, body_size),
            None => self.oversized = Some(record.largest_field()),
        }
        self.max_timestamp = if self.record_count == 0 {
            timestamp
        } else {
            self.max_timestamp.max(timestamp)
        };
        self.record_count += 1;
        self.last_offset_delta = Some(offset_delta);
    }

    /// Finishes the batch. With no records this returns an empty `Bytes`
    /// (no batch at all), as Kafka's `MemoryRecordsBuilder` does; use
    /// `empty_batch_like` for a header-only batch.
    pub fn build(self) -> Result<Bytes, CompressionError> {
        let codec = self.compression;
        let Some(last_offset_delta) = self.last_offset_delta else {
            return Ok(Bytes::new());
        };
        let too_large = |length| CompressionError::InputTooLarge { codec, length };
        if let Some(length) = self.oversized {
            return Err(too_large(length));
        }
        let records_count =
            i32::try_from(self.record_count).map_err(|_| too_large(self.record_count))?;
        let header = BatchHeader {
            base_offset: self.base_offset,
            batch_length: 0,
            partition_leader_epoch: self.partition_leader_epoch,
            magic: CURRENT_MAGIC,
            crc: 0,
            attributes: self.attributes(),
            last_offset_delta,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            records_count,
        };
        let mut buffer = match codec {
            Compression::None => self.buffer,
            _ => {
                let compressed = compress(codec, &self.buffer[BATCH_HEADER_LEN..])?;
                let mut buffer = Vec::with_capacity(BATCH_HEADER_LEN + compressed.len());
                buffer.resize(BATCH_HEADER_LEN, 0);
                buffer.extend_from_slice(&compressed);
                buffer
            }
        };
        finish(&mut buffer, header, codec)?;
        Ok(Bytes::from(buffer))
    }

    fn attributes(&self) -> i16 {
        let mut attributes = i16::from(self.compression.id());
        if self.transactional {
            attributes |= TRANSACTIONAL_MASK;
        }
        if self.control {
            attributes |= CONTROL_MASK;
        }
        attributes
    }
}

/// Writes `header` with the real length into `buffer[..61]` and stamps the CRC.
fn finish(
    buffer: &mut [u8],
    mut header: BatchHeader,
    codec: Compression,
) -> Result<(), CompressionError> {
    let batch_length = i32::try_from(buffer.len() - LOG_OVERHEAD).map_err(|_| {
        CompressionError::InputTooLarge {
            codec,
            length: buffer.len(),
        }
    })?;
    header.batch_length = batch_length;
    buffer[..BATCH_HEADER_LEN].copy_from_slice(&header.encode());
    write_crc(buffer);
    Ok(())
}

/// A header-only batch (no records) that keeps `original`'s offsets,
/// producer state, flags, timestamp type and max timestamp: what Kafka's log
/// cleaner writes when compaction removes every record of a batch whose
/// producer state must survive. Base timestamp becomes -1, as in Kafka.
pub fn empty_batch_like(original: &BatchHeader) -> Bytes {
    let keep = TRANSACTIONAL_MASK | CONTROL_MASK | TIMESTAMP_TYPE_MASK;
    let header = BatchHeader {
        magic: CURRENT_MAGIC,
        attributes: original.attributes & keep,
        base_timestamp: NO_TIMESTAMP,
        records_count: 0,
        crc: 0,
        batch_length: 0,
        ..*original
    };
    let mut buffer = vec![0u8; BATCH_HEADER_LEN];
    // A bare header always fits the 32-bit length.
    let _ = finish(&mut buffer, header, Compression::None);
    Bytes::from(buffer)
}

/// The fields of one record about to be encoded.
struct RecordFields<'a> {
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// Encoded size of a nullable byte field, if its length fits an `i32`.
fn nullable_size(field: Option<&[u8]>) -> Option<usize> {
    match field {
        None => Some(1),
        Some(bytes) => {
            let length = i32::try_from(bytes.len()).ok()?;
            Some(varint_size(length) + bytes.len())
        }
    }
}

fn write_nullable(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => write_varint(out, -1),
        Some(bytes) => {
            // Lengths were checked by `body_size`.
            write_varint(out, bytes.len() as i32);
            out.extend_from_slice(bytes);
        }
    }
}

impl RecordFields<'_> {
    /// Size of the record after its length prefix; `None` if any length
    /// exceeds what a varint `i32` can express.
    fn body_size(&self) -> Option<usize> {
        let header_count = i32::try_from(self.headers.len()).ok()?;
        let mut size = 1 + varlong_size(self.timestamp_delta) + varint_size(self.offset_delta);
        size = size.checked_add(nullable_size(self.key)?)?;
        size = size.checked_add(nullable_size(self.value)?)?;
        size += varint_size(header_count);
        for (header_key, header_value) in self.headers {
            size = size.checked_add(nullable_size(Some(header_key.as_bytes()))?)?;
            size = size.checked_add(nullable_size(*header_value)?)?;
        }
        i32::try_from(size).ok()?;
        Some(size)
    }

    fn largest_field(&self) -> usize {
        let header_sizes = self
            .headers
            .iter()
            .map(|(key, value)| key.len().max(value.map_or(0, <[u8]>::len)));
        [
            self.key.map_or(0, <[u8]>::len),
            self.value.map_or(0, <[u8]>::len),
            self.headers.len(),
        ]
        .into_iter()
        .chain(header_sizes)
        .max()
        .unwrap_or(0)
    }

    fn encode(&self, out: &mut Vec<u8>, body_size: usize) {
        out.reserve(body_size + 5);
        write_varint(out, body_size as i32);
        out.push(0); // record attributes: unused in v2
        write_varlong(out, self.timestamp_delta);
        write_varint(out, self.offset_delta);
        write_nullable(out, self.key);
        write_nullable(out, self.value);
        write_varint(out, self.headers.len() as i32);
        for (header_key, header_value) in self.headers {
            write_nullable(out, Some(header_key.as_bytes()));
            write_nullable(out, *header_value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::{validate, validate_produce, TimestampType};
    use super::super::control::{parse_control_record_key, parse_end_transaction_marker};
    use super::super::record::records;
    use super::*;

    #[test]
    fn header_fields_reflect_the_builder() {
        let mut builder = BatchBuilder::new(Compression::Lz4, 100, 5_000)
            .producer(42, 3, 17)
            .transactional(true)
            .partition_leader_epoch(9);
        builder.append(5_000, Some(b"k"), Some(b"v"), &[]);
        builder.append(7_000, None, Some(b"w"), &[]);
        builder.append(6_000, None, None, &[]);
        let batch = builder.build().unwrap();
        let header = validate(&batch).unwrap();
        assert_eq!(header.base_offset, 100);
        assert_eq!(header.partition_leader_epoch, 9);
        assert_eq!(header.compression(), Compression::Lz4);
        assert!(header.is_transactional() && !header.is_control());
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.records_count, 3);
        assert_eq!(header.base_timestamp, 5_000);
        assert_eq!(header.max_timestamp, 7_000);
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (42, 3, 17)
        );
        assert_eq!(header.last_sequence(), 19);
        assert_eq!(validate_produce(&batch), Ok(header));
    }

    #[test]
    fn no_records_builds_nothing() {
        assert!(BatchBuilder::new(Compression::Zstd, 0, 0)
            .build()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn offset_deltas_must_increase() {
        let mut builder = BatchBuilder::new(Compression::None, 1000, 0);
        builder
            .append_with_offset_delta(3, 0, None, Some(b"a"), &[])
            .unwrap();
        builder
            .append_with_offset_delta(9, 0, None, Some(b"b"), &[])
            .unwrap();
        assert_eq!(
            builder.append_with_offset_delta(9, 0, None, None, &[]),
            Err(BatchError::OffsetDeltaNotIncreasing {
                previous: 9,
                offset_delta: 9
            })
        );
        builder.append(0, None, Some(b"c"), &[]);
        let batch = builder.build().unwrap();
        let header = validate(&batch).unwrap();
        assert_eq!(header.last_offset_delta, 10);
        assert_eq!(header.records_count, 3);
        let iterator = records(&batch, 1 << 20).unwrap();
        let offsets: Vec<i64> = iterator
            .map(|record| record.unwrap().offset(&header))
            .collect();
        assert_eq!(offsets, vec![1003, 1009, 1010]);
        // Gaps are legal in the log but not from a producer.
        assert!(validate_produce(&batch).is_err());
    }

    #[test]
    fn end_transaction_marker_batches_match_kafka() {
        let marker = EndTransactionMarker {
            kind: ControlType::Commit,
            coordinator_epoch: 5,
            producer_id: 77,
            producer_epoch: 2,
        };
        let batch = BatchBuilder::end_transaction_marker(&marker, 500, 1_234)
            .partition_leader_epoch(3)
            .build()
            .unwrap();
        let header = validate(&batch).unwrap();
        assert!(header.is_control() && header.is_transactional());
        assert_eq!(header.base_sequence, NO_SEQUENCE);
        assert_eq!((header.producer_id, header.producer_epoch), (77, 2));
        assert_eq!(header.compression(), Compression::None);
        assert_eq!(
            validate_produce(&batch),
            Err(BatchError::ControlBatchFromClient)
        );
        let record = records(&batch, 1024).unwrap().next().unwrap().unwrap();
        assert_eq!(
            parse_control_record_key(record.key.as_ref().unwrap()),
            Ok(ControlType::Commit.id())
        );
        assert_eq!(
            parse_end_transaction_marker(record.value.as_ref().unwrap()),
            Ok(5)
        );
        assert_eq!(record.timestamp(&header), 1_234);
    }

    #[test]
    fn empty_batch_keeps_producer_state_and_offsets() {
        let mut builder = BatchBuilder::new(Compression::Gzip, 50, 10)
            .producer(8, 1, 40)
            .transactional(true);
        for timestamp in 10..15 {
            builder.append(timestamp, None, Some(b"x"), &[]);
        }
        let original = validate(&builder.build().unwrap()).unwrap();
        let empty = empty_batch_like(&original);
        let header = validate(&empty).unwrap();
        assert_eq!(empty.len(), BATCH_HEADER_LEN);
        assert_eq!(header.records_count, 0);
        assert_eq!(header.last_offset(), original.last_offset());
        assert_eq!(header.last_sequence(), original.last_sequence());
        assert_eq!(header.max_timestamp, 14);
        assert_eq!(header.base_timestamp, NO_TIMESTAMP);
        assert!(header.is_transactional());
        assert_eq!(header.compression(), Compression::None);
        assert_eq!(records(&empty, 1024).unwrap().count(), 0);
    }

    #[test]
    fn record_body_size_matches_the_encoding() {
        let headers: [(&str, Option<&[u8]>); 2] = [("a", Some(b"1")), ("é", None)];
        let fields = RecordFields {
            offset_delta: 300,
            timestamp_delta: -5_000_000_000,
            key: Some(&[7u8; 200]),
            value: None,
            headers: &headers,
        };
        let size = fields.body_size().unwrap();
        let mut out = Vec::new();
        fields.encode(&mut out, size);
        assert_eq!(out.len(), size + varint_size(size as i32));
    }
}
