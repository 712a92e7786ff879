//! Kafka record batches, format v2 (magic 2): pure, synchronous, no I/O.
//!
//! - `batch`: header layout, validation, splitting a `records` blob,
//!   in-place patching of base offset, leader epoch and append time.
//! - `record`: iterating the records of one batch (zero-copy slices).
//! - `builder`: writing batches, including transaction markers.
//! - `control`: control record key/value encodings.
//! - `compression`: gzip, snappy (xerial), lz4 (Kafka frame) and zstd, with
//!   bounded decompression.
//! - `varint`: the zigzag varints records use.
//! - `murmur2`: the Java client's key hash for partitioning.
//!
//! Invariants shared by every submodule: malformed input produces an error
//! value, never a panic; no allocation is sized from a declared length
//! beyond the bytes actually present; the hot paths (`BatchHeader::parse`,
//! `validate`, `split`, patching) do not allocate. Items refer to each other
//! through `super::` so this directory compiles both as `crate::records` and
//! as a standalone crate root.

pub mod batch;
pub mod builder;
pub mod compression;
pub mod control;
pub mod murmur2;
pub mod record;
pub mod varint;

#[cfg(test)]
mod tests;

pub use self::batch::{
    split, split_slice, validate, validate_produce, BatchError, BatchHeader, TimestampType,
};
pub use self::builder::BatchBuilder;
pub use self::compression::{Compression, CompressionError};
pub use self::record::{records, Header, Record};
