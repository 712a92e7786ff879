//! Cross-module properties: build → validate → split → iterate round trips
//! for every codec, and robustness of `split`/`records` against truncation,
//! corruption and garbage. Per-module unit tests live beside their code.

use bytes::Bytes;
use proptest::prelude::*;

use super::batch::{self, split, split_slice, validate, BatchError, BatchHeader};
use super::builder::BatchBuilder;
use super::compression::Compression;
use super::record::{records, Record};

const LIMIT: usize = 16 << 20;

type OwnedHeader = (String, Option<Vec<u8>>);

#[derive(Debug, Clone)]
struct OwnedRecord {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<OwnedHeader>,
}

fn nullable_bytes(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Vec::new())),
        4 => proptest::collection::vec(any::<u8>(), 0..max).prop_map(Some),
    ]
}

fn header_strategy() -> impl Strategy<Value = OwnedHeader> {
    // A tiny key alphabet makes duplicate keys common.
    let key = prop_oneof![
        Just(String::new()),
        Just("k".to_owned()),
        Just("trace-id".to_owned()),
        "\\PC{0,6}"
    ];
    (key, nullable_bytes(16))
}

fn record_strategy() -> impl Strategy<Value = OwnedRecord> {
    (
        1_600_000_000_000i64..1_600_000_100_000,
        nullable_bytes(24),
        nullable_bytes(200),
        proptest::collection::vec(header_strategy(), 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| OwnedRecord {
            timestamp,
            key,
            value,
            headers,
        })
}

fn codec_strategy() -> impl Strategy<Value = Compression> {
    prop::sample::select(Compression::ALL.to_vec())
}

fn build(codec: Compression, base_offset: i64, input: &[OwnedRecord]) -> Bytes {
    let base_timestamp = input.first().map_or(0, |record| record.timestamp);
    let mut builder = BatchBuilder::new(codec, base_offset, base_timestamp);
    for record in input {
        let headers: Vec<(&str, Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_deref()))
            .collect();
        builder.append(
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &headers,
        );
    }
    builder.build().unwrap()
}

fn assert_same(header: &BatchHeader, expected: &OwnedRecord, actual: &Record, index: usize) {
    assert_eq!(actual.offset(header), header.base_offset + index as i64);
    assert_eq!(actual.timestamp(header), expected.timestamp);
    assert_eq!(actual.key.as_deref(), expected.key.as_deref());
    assert_eq!(actual.value.as_deref(), expected.value.as_deref());
    let headers: Vec<(&str, Option<&[u8]>)> = actual
        .headers
        .iter()
        .map(|header| (header.key.as_str(), header.value.as_deref()))
        .collect();
    let expected_headers: Vec<(&str, Option<&[u8]>)> = expected
        .headers
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_deref()))
        .collect();
    assert_eq!(headers, expected_headers);
}

fn round_trip(codec: Compression, input: &[OwnedRecord]) {
    let batch = build(codec, 1000, input);
    let header = validate(&batch).unwrap();
    assert_eq!(header.compression(), codec);
    assert_eq!(header.records_count as usize, input.len());
    let iterator = records(&batch, LIMIT).unwrap();
    let found: Vec<Record> = iterator.collect::<Result<_, _>>().unwrap();
    assert_eq!(found.len(), input.len());
    for (index, (expected, actual)) in input.iter().zip(&found).enumerate() {
        assert_same(&header, expected, actual, index);
    }
}

#[test]
fn every_codec_round_trips_many_records() {
    let input: Vec<OwnedRecord> = (0..5_000)
        .map(|index| OwnedRecord {
            timestamp: 1_700_000_000_000 + index,
            key: (index % 3 != 0).then(|| format!("key-{index}").into_bytes()),
            value: match index % 4 {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(vec![(index % 256) as u8; (index % 97) as usize]),
            },
            headers: vec![
                ("dup".to_owned(), Some(vec![0, 255, 1])),
                ("dup".to_owned(), None),
                ("bin".to_owned(), Some(vec![0xff; (index % 5) as usize])),
            ],
        })
        .collect();
    for codec in Compression::ALL {
        round_trip(codec, &input);
    }
}

#[test]
fn concatenated_batches_of_every_codec_split_and_validate() {
    let record = OwnedRecord {
        timestamp: 5,
        key: Some(b"k".to_vec()),
        value: Some(b"v".to_vec()),
        headers: vec![],
    };
    let mut blob = Vec::new();
    for (index, codec) in Compression::ALL.iter().enumerate() {
        blob.extend_from_slice(&build(
            *codec,
            index as i64 * 10,
            &[record.clone(), record.clone()],
        ));
    }
    let blob = Bytes::from(blob);
    let mut count = 0;
    for item in split(&blob) {
        let (header, slice) = item.unwrap();
        assert_eq!(validate(&slice), Ok(header));
        assert_eq!(header.base_offset, count * 10);
        assert_eq!(records(&slice, LIMIT).unwrap().count(), 2);
        count += 1;
    }
    assert_eq!(count, 5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn build_validate_iterate_round_trips(
        codec in codec_strategy(),
        input in proptest::collection::vec(record_strategy(), 1..40),
    ) {
        round_trip(codec, &input);
    }

    #[test]
    fn any_corrupted_byte_after_the_crc_is_a_crc_mismatch(
        codec in codec_strategy(),
        input in proptest::collection::vec(record_strategy(), 1..8),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut batch = build(codec, 0, &input).to_vec();
        let index = batch::ATTRIBUTES_OFFSET + position.index(batch.len() - batch::ATTRIBUTES_OFFSET);
        batch[index] ^= flip;
        let is_crc_mismatch = matches!(validate(&batch), Err(BatchError::CrcMismatch { .. }));
        prop_assert!(is_crc_mismatch);
    }

    #[test]
    fn patched_batches_stay_valid(
        codec in codec_strategy(),
        input in proptest::collection::vec(record_strategy(), 1..8),
        base_offset in 0i64..i64::MAX / 2,
        epoch: i32,
        append_time: i64,
    ) {
        let mut batch = build(codec, 0, &input).to_vec();
        batch::set_base_offset(&mut batch, base_offset).unwrap();
        batch::set_partition_leader_epoch(&mut batch, epoch).unwrap();
        batch::set_log_append_time(&mut batch, append_time).unwrap();
        let header = validate(&batch).unwrap();
        prop_assert_eq!(header.base_offset, base_offset);
        prop_assert_eq!(header.partition_leader_epoch, epoch);
        prop_assert_eq!(header.max_timestamp, append_time);
        prop_assert_eq!(header.compression(), codec);
        let batch = Bytes::from(batch);
        for record in records(&batch, LIMIT).unwrap() {
            prop_assert_eq!(record.unwrap().timestamp(&header), append_time);
        }
    }

    #[test]
    fn truncated_blobs_yield_whole_batches_then_one_truncation(
        sizes in proptest::collection::vec(1usize..6, 1..5),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut blob = Vec::new();
        let mut ends = Vec::new();
        for (index, size) in sizes.iter().enumerate() {
            let input: Vec<OwnedRecord> = (0..*size)
                .map(|n| OwnedRecord { timestamp: n as i64, key: None, value: Some(vec![n as u8; n]), headers: vec![] })
                .collect();
            blob.extend_from_slice(&build(Compression::ALL[index % 5], index as i64, &input));
            ends.push(blob.len());
        }
        let cut = cut.index(blob.len() + 1);
        let truncated = Bytes::from(blob).slice(..cut);
        let complete = ends.iter().filter(|&&end| end <= cut).count();
        let items: Vec<_> = split(&truncated).collect();
        for item in &items[..complete] {
            let (_, slice) = item.as_ref().unwrap();
            prop_assert!(validate(slice).is_ok());
        }
        let at_boundary = cut == 0 || ends.contains(&cut);
        if at_boundary {
            prop_assert_eq!(items.len(), complete);
        } else {
            prop_assert_eq!(items.len(), complete + 1);
            let is_truncated = matches!(items[complete], Err(BatchError::Truncated { .. }));
            prop_assert!(is_truncated);
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let blob = Bytes::from(bytes);
        // `split` stops after its first error, so flattening loses nothing.
        for (_, slice) in split(&blob).flatten() {
            let _ = validate(&slice);
            if let Ok(iterator) = records(&slice, 1 << 16) {
                for record in iterator.take(1000) {
                    let _ = record;
                }
            }
        }
        let _ = split_slice(&blob).count();
        let _ = batch::validate_produce(&blob);
        let _ = BatchHeader::parse(&blob);
    }

    #[test]
    fn garbage_behind_a_valid_header_never_panics(
        codec in codec_strategy(),
        count in -3i32..2000,
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        // A well-formed header and CRC around arbitrary record bytes, so
        // record parsing (not the CRC) is what meets the garbage.
        let mut builder = BatchBuilder::new(codec, 0, 0);
        builder.append(0, None, None, &[]);
        let mut batch = builder.build().unwrap().to_vec();
        batch.truncate(batch::BATCH_HEADER_LEN);
        batch.extend_from_slice(&body);
        let length = (batch.len() - batch::LOG_OVERHEAD) as i32;
        batch[batch::BATCH_LENGTH_OFFSET..][..4].copy_from_slice(&length.to_be_bytes());
        batch[batch::RECORDS_COUNT_OFFSET..][..4].copy_from_slice(&count.to_be_bytes());
        batch::recompute_crc(&mut batch).unwrap();
        let batch = Bytes::from(batch);
        if let Ok(iterator) = records(&batch, 1 << 16) {
            let mut yielded = 0usize;
            for record in iterator {
                yielded += 1;
                prop_assert!(yielded <= count.max(0) as usize + 1);
                if record.is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn corrupted_records_with_fixed_crc_never_panic(
        codec in codec_strategy(),
        input in proptest::collection::vec(record_strategy(), 1..6),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
    ) {
        let mut batch = build(codec, 0, &input).to_vec();
        let body_length = batch.len() - batch::BATCH_HEADER_LEN;
        for (position, flip) in flips {
            batch[batch::BATCH_HEADER_LEN + position.index(body_length)] ^= flip;
        }
        batch::recompute_crc(&mut batch).unwrap();
        prop_assert!(validate(&batch).is_ok());
        let batch = Bytes::from(batch);
        if let Ok(iterator) = records(&batch, 1 << 20) {
            for record in iterator {
                if record.is_err() {
                    break;
                }
            }
        }
    }
}
