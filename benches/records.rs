//! Benchmarks for the record-batch hot paths: CRC-32C throughput, whole
//! batch validation, and record iteration (uncompressed and lz4).
//!
//! In the main crate this reads `use weir::records::{...}`; the standalone
//! scratch crate that builds `src/records` names itself `weir_records_scratch`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weir::records::{batch, builder::BatchBuilder, compression::Compression, record};

const RECORD_COUNT: usize = 1_000;
const VALUE_SIZE: usize = 100;
const MAX_DECOMPRESSED: usize = 64 << 20;

/// A batch of `RECORD_COUNT` keyed records with one header each, values
/// mildly compressible like typical JSON-ish payloads.
fn sample_batch(codec: Compression) -> Bytes {
    let mut builder = BatchBuilder::new(codec, 0, 1_700_000_000_000);
    let mut value = vec![0u8; VALUE_SIZE];
    for index in 0..RECORD_COUNT {
        for (position, byte) in value.iter_mut().enumerate() {
            *byte = b'a' + ((index * 31 + position * 7) % 26) as u8;
        }
        let key = format!("key-{index}");
        builder.append(
            1_700_000_000_000 + index as i64,
            Some(key.as_bytes()),
            Some(&value),
            &[("source", Some(b"bench"))],
        );
    }
    builder.build().expect("benchmark batch builds")
}

fn crc32c_throughput(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("crc32c");
    for size in [1 << 10, 64 << 10, 1 << 20] {
        let data: Vec<u8> = (0..size).map(|index| (index * 131 % 251) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &data, |bencher, data| {
            bencher.iter(|| crc32c::crc32c(black_box(data)))
        });
    }
    group.finish();
}

fn validation(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("validate");
    for codec in [Compression::None, Compression::Lz4] {
        let batch = sample_batch(codec);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(codec.name()),
            &batch,
            |bencher, batch| {
                bencher.iter(|| batch::validate(black_box(batch)).expect("valid batch"))
            },
        );
    }
    let blob = {
        let mut joined = Vec::new();
        for _ in 0..16 {
            joined.extend_from_slice(&sample_batch(Compression::None));
        }
        Bytes::from(joined)
    };
    group.throughput(Throughput::Elements(16));
    group.bench_function("split_16_batches", |bencher| {
        bencher.iter(|| batch::split(black_box(&blob)).filter(Result::is_ok).count())
    });
    group.finish();
}

fn iteration(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("iterate_records");
    group.throughput(Throughput::Elements(RECORD_COUNT as u64));
    for codec in [Compression::None, Compression::Lz4] {
        let batch = sample_batch(codec);
        group.bench_with_input(
            BenchmarkId::from_parameter(codec.name()),
            &batch,
            |bencher, batch| {
                bencher.iter(|| {
                    let records = record::records(black_box(batch), MAX_DECOMPRESSED)
                        .expect("readable batch");
                    records
                        .map(|item| {
                            item.expect("valid record")
                                .value
                                .map_or(0, |value| value.len())
                        })
                        .sum::<usize>()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, crc32c_throughput, validation, iteration);
criterion_main!(benches);
