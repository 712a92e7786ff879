//! Coordinators: replicated state machines over internal topics. Pure logic and record formats
//! here; the shard glue (loading, appending, timers) in `shard::group_coordinator`.
//!
//! - [`group`]: consumer groups (classic protocol) and committed offsets in `__consumer_offsets`.
//! - [`assignor`]: the server-side assignors of the consumer group protocol (KIP-848).
//! - [`consumer_group`]: that protocol's group state: epochs, target assignment, reconciliation,
//!   and its `__consumer_offsets` records (served by `shard::consumer_groups`).
//! - [`transaction`]: the transaction coordinator (KIP-98) and its `__transaction_state` records
//!   (served by `shard::txn_coordinator`).

pub mod assignor;
pub mod consumer_group;
pub mod group;
pub mod transaction;
