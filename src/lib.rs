//! Weir: an event streaming broker that speaks the Apache Kafka wire protocol, thread-per-core on
//! glommio (io_uring), with O_DIRECT segment appends and its own cache.
//!
//! Code map, top layer first (dependencies point down; nothing imports `server`):
//!
//! | module | owns | layer |
//! |---|---|---|
//! | [`broker`] | startup, data-dir lock, shard executors, clean shutdown | glue |
//! | [`server`] | listeners, connections: frames → handlers → in-order responses | glue (per shard) |
//! | [`admin`] | HTTP `/metrics`, `/health`, `/ready` on shard 0 | glue |
//! | [`bench`] | `weir bench`: load generation and the machine's ceilings | tool |
//! | [`cli`] | `weir topic`, `weir produce`, `weir consume`, `weir cluster`: the subcommands | tool |
//! | [`client`] | a blocking Kafka client over `std::net` (the tools' transport) | tool |
//! | [`handlers`] | one file per Kafka API key, with its version range; the ApiVersions table | glue (per shard) |
//! | [`shard`] | the per-core context, partition placement, the channel mesh, fetch sessions, metrics | async core |
//! | [`metadata`] | metadata records, the image, the controller (shard 0) | state machine |
//! | [`coordinator`] | consumer groups and committed offsets (`__consumer_offsets`) | state machine |
//! | [`partition`] | high watermark, produce/fetch rules, idempotent producer state, group commit | shard-owned state |
//! | [`storage`] | segments, indexes, O_DIRECT appender, recovery, cache, retention | shard-owned state |
//! | [`records`] | RecordBatch v2: validation, CRC-32C, records, compression, murmur2 | pure |
//! | [`protocol`] | Kafka codec generated from the JSON schemas, error codes, framing | pure |
//! | [`config`] | every setting and limit, Kafka names and defaults | pure |
//! | [`event`] | single-shard wake-ups and the clock | pure |

pub mod admin;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod coordinator;
pub mod event;
pub mod handlers;
pub mod metadata;
pub mod partition;
pub mod protocol;
pub mod records;
pub mod server;
pub mod shard;
pub mod storage;

#[cfg(test)]
pub mod testing;
