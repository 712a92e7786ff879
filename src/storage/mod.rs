//! The partition log on disk, Kafka's layout: `<data>/<topic>-<partition>/<20-digit base
//! offset>.log|.index|.timeindex`, batches stored exactly as producers sent them (only the base
//! offset and partition leader epoch patched). Written with O_DIRECT through aligned buffers
//! ([`appender`]), never through the page cache; recent batches are served from memory, cold
//! reads use DMA reads with read-ahead ([`log`]). Byte layouts and the recovery procedure are in
//! `docs/storage-format.md`.
//!
//! Owned by one shard: nothing here is `Send`.

pub mod appender;
pub mod index;
pub mod log;
pub mod segment;
