//! The group coordinator (classic protocol): pure state and records; the shard glue that
//! loads, persists and times it lives in `shard::group_coordinator`.
//!
//! Placement: group `g` belongs to partition `abs(javaHash(g)) % partitions` of
//! `__consumer_offsets` (Kafka's `partitionFor`), and its state lives on the shard that owns that
//! partition. Nothing else touches it; other shards send a message there.
//!
//! - [`state`]: the classic group state machine (join, sync, heartbeat, leave, timeouts).
//! - [`records`]: `__consumer_offsets` keys/values in Kafka's format, and the replay.

pub mod records;
pub mod state;

#[cfg(test)]
mod tests;

pub use records::{GroupRecord, GroupStore};
pub use state::{ClassicGroup, CommittedOffset, GroupConfig, GroupReply, GroupState};

/// Kafka's internal topic of committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode` (over UTF-16 code units).
pub fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(unit as i32)
    })
}

/// The `__consumer_offsets` partition of `group` (Kafka's `Utils.abs(hash) % partitions`, where
/// `Utils.abs(Integer.MIN_VALUE)` is 0).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = java_string_hash(group);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}
