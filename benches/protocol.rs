//! Benchmarks for the Kafka codec on the produce and fetch hot paths: decoding and encoding a
//! Produce request (12 partitions × one batch of 1 KiB records, as librdkafka sends them in the
//! `weir bench` workloads) and encoding and decoding a Fetch response whose record sets are
//! cached batches (chunks above the zero-copy threshold go out as their own `Bytes`).
//!
//! Records are `Bytes` slices of the frame on both sides (no copy), so the cost per request
//! hardly depends on the record bytes: throughput is in messages per second.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weir::protocol::frame;
use weir::protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use weir::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir::protocol::messages::{FetchResponse, ProduceRequest};
use weir::protocol::wire::{encode_to_bytes, Message};
use weir::records::builder::BatchBuilder;
use weir::records::compression::Compression;

const PARTITIONS: i32 = 12;
const RECORD_BYTES: usize = 1024;
const TIMESTAMP_MS: i64 = 1_790_000_000_000;

/// One uncompressed batch of `records` null-key records of 1 KiB.
fn batch(records: usize) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None, 0, TIMESTAMP_MS);
    let mut value = vec![0u8; RECORD_BYTES];
    for index in 0..records {
        for (position, byte) in value.iter_mut().enumerate() {
            *byte = (index * 131 + position * 7) as u8;
        }
        builder.append(TIMESTAMP_MS + index as i64, None, Some(&value), &[]);
    }
    builder.build().expect("benchmark batch builds")
}

fn produce_request(records_per_batch: usize) -> ProduceRequest {
    let records = batch(records_per_batch);
    ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "weir-bench".into(),
            partition_data: (0..PARTITIONS)
                .map(|index| PartitionProduceData {
                    index,
                    // A fresh copy per partition, as on the wire (no shared allocation).
                    records: Some(Bytes::copy_from_slice(&records)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn fetch_response(batch_bytes: &Bytes) -> FetchResponse {
    FetchResponse {
        responses: vec![FetchableTopicResponse {
            topic: "weir-bench".into(),
            partitions: (0..PARTITIONS)
                .map(|partition_index| PartitionData {
                    partition_index,
                    high_watermark: 1_000_000,
                    last_stable_offset: 1_000_000,
                    log_start_offset: 0,
                    records: Some(batch_bytes.clone()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn produce_codec(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("produce_request");
    // v7: classic encoding (librdkafka's usual pick); v9: flexible (compact, tagged fields).
    for version in [7i16, 9] {
        for records_per_batch in [1usize, 16] {
            let request = produce_request(records_per_batch);
            let encoded = encode_to_bytes(&request, version).expect("encodes");
            let id = format!("v{version}/12x{records_per_batch}KiB");
            group.throughput(Throughput::Elements(1));
            group.bench_with_input(BenchmarkId::new("decode", &id), &encoded, |b, encoded| {
                b.iter(|| {
                    let mut buf = encoded.clone();
                    ProduceRequest::decode(black_box(&mut buf), version).expect("decodes")
                })
            });
            group.bench_with_input(BenchmarkId::new("encode", &id), &request, |b, request| {
                b.iter(|| {
                    frame::encode_request(1, Some("bench"), 0, version, black_box(request))
                        .expect("encodes")
                })
            });
        }
    }
    group.finish();
}

fn fetch_codec(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("fetch_response");
    // 1 KiB: one small batch per partition (copied into the encoder); 256 KiB: a run of cached
    // batches per partition (zero-copy chunks).
    for (label, records_per_partition) in [("12x1KiB", 1usize), ("12x256KiB", 256)] {
        let mut joined = BytesMut::new();
        for _ in 0..records_per_partition.div_ceil(16) {
            joined.extend_from_slice(&batch(records_per_partition.min(16)));
        }
        let records = joined.freeze();
        let response = fetch_response(&records);
        for version in [11i16, 12] {
            let id = format!("v{version}/{label}");
            let encoded = encode_to_bytes(&response, version).expect("encodes");
            group.throughput(Throughput::Elements(1));
            group.bench_with_input(BenchmarkId::new("encode", &id), &response, |b, response| {
                b.iter(|| {
                    frame::encode_response(1, 1, version, black_box(response)).expect("encodes")
                })
            });
            group.bench_with_input(BenchmarkId::new("decode", &id), &encoded, |b, encoded| {
                b.iter(|| {
                    let mut buf = encoded.clone();
                    FetchResponse::decode(black_box(&mut buf), version).expect("decodes")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, produce_codec, fetch_codec);
criterion_main!(benches);
