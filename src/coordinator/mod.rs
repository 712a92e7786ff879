//! Coordinators: state machines over internal topics. Pure logic and record formats here; the
//! shard glue (loading, appending, timers) lives with the shards.
//!
//! - [`assignor`]: the server-side assignors of the consumer group protocol (KIP-848).
//! - [`consumer_group`]: that protocol's group state: epochs, target assignment, reconciliation.

pub mod assignor;
pub mod consumer_group;
