//! Coordinators: replicated state machines over internal topics. Pure logic and record formats
//! here; the shard glue (loading, appending, timers) in `shard::group_coordinator`.
//!
//! - [`group`]: consumer groups (classic protocol) and committed offsets in `__consumer_offsets`.

pub mod group;
