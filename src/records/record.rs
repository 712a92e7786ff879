//! Records inside a v2 batch (Kafka's `DefaultRecord`) and iteration over them.
//!
//! Record layout, all integers zigzag varints:
//! ```text
//! length varint | attributes i8 | timestampDelta varlong | offsetDelta varint
//! keyLength varint | key | valueLength varint | value
//! headerCount varint | [headerKeyLength varint | headerKey | headerValueLength varint | headerValue]...
//! ```
//! A negative key/value/header-value length means null (Kafka reads any
//! negative length as null); header keys are never null and must be UTF-8.
//!
//! Invariants: a compressed batch is decompressed once into one buffer
//! bounded by the caller's `max_decompressed`; every key, value and header
//! value is a zero-copy `Bytes` slice of that buffer (or of the input batch
//! when uncompressed). Every length is checked against the bytes left in its
//! record, each record must consume exactly its declared length, and the
//! batch must hold exactly `recordsCount` records with nothing after them.
//! Null (`None`) and empty (`Some(empty)`) stay distinct.

use bytes::Bytes;

use super::batch::{BatchError, BatchHeader, RecordProblem, TimestampType, BATCH_HEADER_LEN};
use super::compression::{decompress, Compression};
use super::varint::{read_varint, read_varlong};

/// One record header. Keys repeat freely; order is preserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// One record of a batch, with offset and timestamp relative to the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

impl Record {
    /// Absolute offset: `base_offset + offset_delta`.
    pub fn offset(&self, header: &BatchHeader) -> i64 {
        header
            .base_offset
            .wrapping_add(i64::from(self.offset_delta))
    }

    /// Absolute timestamp: the batch's `max_timestamp` for LogAppendTime
    /// batches, otherwise `base_timestamp + timestamp_delta`.
    pub fn timestamp(&self, header: &BatchHeader) -> i64 {
        match header.timestamp_type() {
            TimestampType::LogAppendTime => header.max_timestamp,
            TimestampType::CreateTime => header.base_timestamp.wrapping_add(self.timestamp_delta),
        }
    }

    /// Producer sequence number of this record, or -1 when the batch has none.
    pub fn sequence(&self, header: &BatchHeader) -> i32 {
        if header.base_sequence < 0 {
            return super::batch::NO_SEQUENCE;
        }
        super::batch::increment_sequence(header.base_sequence, self.offset_delta)
    }
}

/// Iterates the records of one batch; see `records`.
#[derive(Debug, Clone)]
pub struct RecordIter {
    header: BatchHeader,
    data: Bytes,
    position: usize,
    index: usize,
    finished: bool,
}

/// Opens the records of `batch`, which must be exactly one complete batch
/// (the CRC is not checked here; `validate` does that). Compressed records
/// are decompressed up front, refusing more than `max_decompressed` bytes.
pub fn records(batch: &Bytes, max_decompressed: usize) -> Result<RecordIter, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let total = header.total_size();
    if total != batch.len() {
        return Err(BatchError::LengthMismatch {
            declared: total,
            actual: batch.len(),
        });
    }
    if header.records_count < 0 {
        return Err(BatchError::InvalidRecordCount {
            records_count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    let data = match header.compression() {
        // Like Kafka, an empty batch (left by compaction) is not decompressed.
        _ if header.records_count == 0 => Bytes::new(),
        Compression::None => batch.slice(BATCH_HEADER_LEN..),
        codec => Bytes::from(decompress(
            codec,
            &batch[BATCH_HEADER_LEN..],
            max_decompressed,
        )?),
    };
    Ok(RecordIter {
        header,
        data,
        position: 0,
        index: 0,
        finished: false,
    })
}

impl RecordIter {
    /// The header of the batch being iterated.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// Records not yet yielded, as declared by the header.
    pub fn remaining_count(&self) -> usize {
        usize::try_from(self.header.records_count)
            .unwrap_or(0)
            .saturating_sub(self.index)
    }

    fn declared_count(&self) -> usize {
        usize::try_from(self.header.records_count).unwrap_or(0)
    }

    fn next_record(&mut self) -> Result<Record, BatchError> {
        let index = self.index;
        let mut cursor = Cursor {
            data: &self.data,
            position: self.position,
        };
        let record = cursor
            .record()
            .map_err(|problem| self.record_error(index, problem))?;
        self.position = cursor.position;
        self.index += 1;
        Ok(record)
    }

    /// Names a problem; running out of data means the count was too high.
    fn record_error(&self, index: usize, problem: RecordProblem) -> BatchError {
        if self.position >= self.data.len() {
            return BatchError::RecordCountMismatch {
                declared: self.header.records_count,
                found: index,
            };
        }
        BatchError::InvalidRecord { index, problem }
    }
}

impl Iterator for RecordIter {
    type Item = Result<Record, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        if self.index == self.declared_count() {
            self.finished = true;
            if self.position != self.data.len() {
                // Bytes after the last declared record: the count was too low.
                return Some(Err(BatchError::RecordCountMismatch {
                    declared: self.header.records_count,
                    found: self.index + 1,
                }));
            }
            return None;
        }
        let result = self.next_record();
        if result.is_err() {
            self.finished = true;
        }
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.finished {
            return (0, Some(0));
        }
        // One extra item is possible: the trailing-bytes error.
        (0, Some(self.remaining_count() + 1))
    }
}

impl std::iter::FusedIterator for RecordIter {}

/// Reads record fields from `data`, checking every length against `limit`.
struct Cursor<'a> {
    data: &'a Bytes,
    position: usize,
}

impl Cursor<'_> {
    fn record(&mut self) -> Result<Record, RecordProblem> {
        let length = self.varint("record length", self.data.len())?;
        if length < 0 {
            return Err(RecordProblem::NegativeLength(length));
        }
        let start = self.position;
        let available = self.data.len() - start;
        let length = length as usize;
        if length > available {
            return Err(RecordProblem::Overrun {
                field: "record",
                length: length as i64,
                available,
            });
        }
        let end = start + length;
        let record = self.record_body(end)?;
        if self.position != end {
            return Err(RecordProblem::SizeMismatch {
                declared: length,
                read: self.position - start,
            });
        }
        Ok(record)
    }

    fn record_body(&mut self, end: usize) -> Result<Record, RecordProblem> {
        self.byte("attributes", end)?;
        let timestamp_delta = self.varlong("timestamp delta", end)?;
        let offset_delta = self.varint("offset delta", end)?;
        let key = self.nullable_bytes("key", end)?;
        let value = self.nullable_bytes("value", end)?;
        let headers = self.headers(end)?;
        Ok(Record {
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers,
        })
    }

    fn headers(&mut self, end: usize) -> Result<Vec<Header>, RecordProblem> {
        let count = self.varint("header count", end)?;
        // Each header needs at least two bytes, so a count above the bytes
        // left is impossible; checking it bounds the allocation below.
        if count < 0 || count as usize > end - self.position {
            return Err(RecordProblem::InvalidHeaderCount(count));
        }
        let mut headers = Vec::with_capacity(count as usize);
        for header_index in 0..count as usize {
            headers.push(self.header(header_index, end)?);
        }
        Ok(headers)
    }

    fn header(&mut self, header_index: usize, end: usize) -> Result<Header, RecordProblem> {
        let key_length = self.varint("header key length", end)?;
        if key_length < 0 {
            return Err(RecordProblem::NegativeHeaderKeyLength(key_length));
        }
        // Borrowed, not a `Bytes` slice: the key is copied into a `String`
        // anyway, so a reference-count round trip would be wasted.
        let range = self.advance("header key", key_length as usize, end)?;
        let key = std::str::from_utf8(&self.data[range])
            .map_err(|_| RecordProblem::HeaderKeyNotUtf8 { header_index })?
            .to_owned();
        let value = self.nullable_bytes("header value", end)?;
        Ok(Header { key, value })
    }

    fn nullable_bytes(
        &mut self,
        field: &'static str,
        end: usize,
    ) -> Result<Option<Bytes>, RecordProblem> {
        let length = self.varint(field, end)?;
        if length < 0 {
            return Ok(None);
        }
        self.take(field, length as usize, end).map(Some)
    }

    fn take(
        &mut self,
        field: &'static str,
        length: usize,
        end: usize,
    ) -> Result<Bytes, RecordProblem> {
        let range = self.advance(field, length, end)?;
        Ok(self.data.slice(range))
    }

    /// Moves past `length` bytes of `field`, returning their range.
    fn advance(
        &mut self,
        field: &'static str,
        length: usize,
        end: usize,
    ) -> Result<std::ops::Range<usize>, RecordProblem> {
        let available = end - self.position;
        if length > available {
            return Err(RecordProblem::Overrun {
                field,
                length: length as i64,
                available,
            });
        }
        let start = self.position;
        self.position += length;
        Ok(start..self.position)
    }

    fn byte(&mut self, field: &'static str, end: usize) -> Result<u8, RecordProblem> {
        if self.position >= end {
            return Err(RecordProblem::Overrun {
                field,
                length: 1,
                available: 0,
            });
        }
        let byte = self.data[self.position];
        self.position += 1;
        Ok(byte)
    }

    fn varint(&mut self, field: &'static str, end: usize) -> Result<i32, RecordProblem> {
        let (value, length) = read_varint(&self.data[self.position..end])
            .map_err(|error| RecordProblem::Varint { field, error })?;
        self.position += length;
        Ok(value)
    }

    fn varlong(&mut self, field: &'static str, end: usize) -> Result<i64, RecordProblem> {
        let (value, length) = read_varlong(&self.data[self.position..end])
            .map_err(|error| RecordProblem::Varint { field, error })?;
        self.position += length;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::{self, set_log_append_time};
    use super::super::builder::BatchBuilder;
    use super::super::varint::{write_varint, write_varlong};
    use super::*;

    const LIMIT: usize = 1 << 20;

    /// A batch whose records section is `body`, claiming `count` records.
    fn raw_batch(count: i32, body: &[u8]) -> Bytes {
        let mut builder = BatchBuilder::new(Compression::None, 0, 1000);
        builder.append(1000, None, None, &[]);
        let mut bytes = builder.build().unwrap().to_vec();
        bytes.truncate(BATCH_HEADER_LEN);
        bytes.extend_from_slice(body);
        let batch_length = (bytes.len() - 12) as i32;
        bytes[8..12].copy_from_slice(&batch_length.to_be_bytes());
        bytes[batch::RECORDS_COUNT_OFFSET..batch::RECORDS_COUNT_OFFSET + 4]
            .copy_from_slice(&count.to_be_bytes());
        batch::recompute_crc(&mut bytes).unwrap();
        Bytes::from(bytes)
    }

    /// Encodes one record body with the given field encodings.
    fn record_bytes(fields: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(&mut out, fields.len() as i32);
        out.extend_from_slice(fields);
        out
    }

    fn simple_fields(key: Option<&[u8]>, value: Option<&[u8]>) -> Vec<u8> {
        let mut fields = vec![0u8];
        write_varlong(&mut fields, 0);
        write_varint(&mut fields, 0);
        for part in [key, value] {
            match part {
                None => write_varint(&mut fields, -1),
                Some(bytes) => {
                    write_varint(&mut fields, bytes.len() as i32);
                    fields.extend_from_slice(bytes);
                }
            }
        }
        write_varint(&mut fields, 0);
        fields
    }

    fn collect(batch: &Bytes) -> Result<Vec<Record>, BatchError> {
        records(batch, LIMIT)?.collect()
    }

    #[test]
    fn null_and_empty_stay_distinct() {
        let mut body = record_bytes(&simple_fields(None, Some(b"")));
        body.extend(record_bytes(&simple_fields(Some(b""), None)));
        let found = collect(&raw_batch(2, &body)).unwrap();
        assert_eq!(found[0].key, None);
        assert_eq!(found[0].value, Some(Bytes::new()));
        assert_eq!(found[1].key, Some(Bytes::new()));
        assert_eq!(found[1].value, None);
    }

    #[test]
    fn uncompressed_values_are_slices_of_the_input() {
        let body = record_bytes(&simple_fields(Some(b"key"), Some(b"value")));
        let batch = raw_batch(1, &body);
        let record = collect(&batch).unwrap().remove(0);
        let value = record.value.unwrap();
        let batch_range = batch.as_ptr() as usize..batch.as_ptr() as usize + batch.len();
        assert!(batch_range.contains(&(value.as_ptr() as usize)));
    }

    #[test]
    fn count_mismatches_are_errors() {
        let body = record_bytes(&simple_fields(None, Some(b"v")));
        let mut two = body.clone();
        two.extend(body.clone());
        assert_eq!(
            collect(&raw_batch(2, &body)),
            Err(BatchError::RecordCountMismatch {
                declared: 2,
                found: 1
            })
        );
        assert_eq!(
            collect(&raw_batch(1, &two)),
            Err(BatchError::RecordCountMismatch {
                declared: 1,
                found: 2
            })
        );
        assert_eq!(
            collect(&raw_batch(i32::MAX, &body)),
            Err(BatchError::RecordCountMismatch {
                declared: i32::MAX,
                found: 1
            })
        );
        assert!(matches!(
            records(&raw_batch(-1, &body), LIMIT),
            Err(BatchError::InvalidRecordCount { .. })
        ));
    }

    #[test]
    fn record_size_must_match_its_fields() {
        let fields = simple_fields(None, Some(b"v"));
        let mut padded = fields.clone();
        padded.push(0);
        let result = collect(&raw_batch(1, &record_bytes(&padded)));
        assert!(matches!(
            result,
            Err(BatchError::InvalidRecord {
                index: 0,
                problem: RecordProblem::SizeMismatch { .. }
            })
        ));
    }

    #[test]
    fn lengths_past_the_record_are_overruns() {
        let mut fields = vec![0u8, 0, 0];
        write_varint(&mut fields, 1_000_000); // key length far beyond the data
        fields.extend_from_slice(b"abc");
        let result = collect(&raw_batch(1, &record_bytes(&fields)));
        assert!(matches!(
            result,
            Err(BatchError::InvalidRecord {
                index: 0,
                problem: RecordProblem::Overrun { field: "key", .. }
            })
        ));
    }

    #[test]
    fn header_rules_are_enforced() {
        let mut fields = simple_fields(None, None);
        fields.pop();
        write_varint(&mut fields, 1_000); // more headers than bytes
        let result = collect(&raw_batch(1, &record_bytes(&fields)));
        assert!(matches!(
            result,
            Err(BatchError::InvalidRecord {
                problem: RecordProblem::InvalidHeaderCount(1000),
                ..
            })
        ));

        let mut fields = simple_fields(None, None);
        fields.pop();
        write_varint(&mut fields, 1);
        write_varint(&mut fields, -1); // null header key
        write_varint(&mut fields, -1);
        let result = collect(&raw_batch(1, &record_bytes(&fields)));
        assert!(matches!(
            result,
            Err(BatchError::InvalidRecord {
                problem: RecordProblem::NegativeHeaderKeyLength(-1),
                ..
            })
        ));

        let mut fields = simple_fields(None, None);
        fields.pop();
        write_varint(&mut fields, 1);
        write_varint(&mut fields, 2);
        fields.extend_from_slice(&[0xc3, 0x28]); // invalid UTF-8
        write_varint(&mut fields, -1);
        let result = collect(&raw_batch(1, &record_bytes(&fields)));
        assert!(matches!(
            result,
            Err(BatchError::InvalidRecord {
                problem: RecordProblem::HeaderKeyNotUtf8 { header_index: 0 },
                ..
            })
        ));
    }

    #[test]
    fn absolute_offsets_and_timestamps() {
        let mut builder = BatchBuilder::new(Compression::None, 500, 10_000);
        builder.append(10_000, None, Some(b"a"), &[]);
        builder.append(9_000, None, Some(b"b"), &[]);
        builder.append(12_000, None, Some(b"c"), &[]);
        let batch = builder.build().unwrap();
        let iterator = records(&batch, LIMIT).unwrap();
        let header = *iterator.header();
        assert_eq!(header.max_timestamp, 12_000);
        let found: Vec<Record> = iterator.collect::<Result<_, _>>().unwrap();
        let offsets: Vec<i64> = found.iter().map(|record| record.offset(&header)).collect();
        let timestamps: Vec<i64> = found
            .iter()
            .map(|record| record.timestamp(&header))
            .collect();
        assert_eq!(offsets, vec![500, 501, 502]);
        assert_eq!(timestamps, vec![10_000, 9_000, 12_000]);

        let mut stamped = batch.to_vec();
        set_log_append_time(&mut stamped, 77_777).unwrap();
        let stamped = Bytes::from(stamped);
        let iterator = records(&stamped, LIMIT).unwrap();
        let header = *iterator.header();
        for record in iterator {
            assert_eq!(record.unwrap().timestamp(&header), 77_777);
        }
    }

    #[test]
    fn sequences_follow_offset_deltas() {
        let mut builder = BatchBuilder::new(Compression::None, 0, 0).producer(7, 1, i32::MAX - 1);
        for _ in 0..3 {
            builder.append(0, None, None, &[]);
        }
        let batch = builder.build().unwrap();
        let iterator = records(&batch, LIMIT).unwrap();
        let header = *iterator.header();
        let sequences: Vec<i32> = iterator
            .map(|record| record.unwrap().sequence(&header))
            .collect();
        assert_eq!(sequences, vec![i32::MAX - 1, i32::MAX, 0]);
        assert_eq!(header.last_sequence(), 0);
    }

    #[test]
    fn compressed_bombs_are_refused() {
        let big = vec![0u8; 4 << 20];
        let mut builder = BatchBuilder::new(Compression::Gzip, 0, 0);
        builder.append(0, None, Some(&big), &[]);
        let batch = builder.build().unwrap();
        assert!(batch.len() < 64 * 1024);
        assert!(matches!(
            records(&batch, LIMIT),
            Err(BatchError::Compression(
                super::super::compression::CompressionError::OutputTooLarge { .. }
            ))
        ));
        assert_eq!(
            collect_with(&batch, 8 << 20).unwrap()[0]
                .value
                .as_ref()
                .unwrap()
                .len(),
            4 << 20
        );
    }

    fn collect_with(batch: &Bytes, limit: usize) -> Result<Vec<Record>, BatchError> {
        records(batch, limit)?.collect()
    }

    #[test]
    fn batch_must_be_exactly_one_batch() {
        let mut builder = BatchBuilder::new(Compression::None, 0, 0);
        builder.append(0, None, None, &[]);
        let batch = builder.build().unwrap();
        let mut longer = batch.to_vec();
        longer.push(0);
        assert!(matches!(
            records(&Bytes::from(longer), LIMIT),
            Err(BatchError::LengthMismatch { .. })
        ));
        assert!(matches!(
            records(&batch.slice(..40), LIMIT),
            Err(BatchError::Truncated { .. })
        ));
    }
}
