//! Which partitions of a coordinator's internal topic (`__consumer_offsets`,
//! `__transaction_state`) this shard serves: a partition is claimed when the shard opens it,
//! replayed into the coordinator's store, and only then served. Until loaded, requests for its
//! keys get COORDINATOR_LOAD_IN_PROGRESS; keys of partitions other shards own, NOT_COORDINATOR.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::Shard;
use crate::metadata::MetadataImage;
use crate::protocol::error::ErrorCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    Loading,
    Loaded,
}

#[derive(Default)]
pub struct CoordinatorPartitions {
    states: RefCell<BTreeMap<i32, Load>>,
}

impl CoordinatorPartitions {
    /// Whether `partition` is served here and loaded.
    pub fn check(&self, partition: i32) -> Result<(), ErrorCode> {
        match self.states.borrow().get(&partition) {
            Some(Load::Loaded) => Ok(()),
            Some(Load::Loading) => Err(ErrorCode::CoordinatorLoadInProgress),
            None => Err(ErrorCode::NotCoordinator),
        }
    }

    /// Whether some partition is still loading.
    pub fn loading(&self) -> bool {
        self.states.borrow().values().any(|l| *l == Load::Loading)
    }

    /// Marks as loading the partitions of `topic` this shard owns and has opened but has not
    /// claimed yet, and returns them (the caller replays each, then calls [`Self::loaded`]).
    pub fn claim_new(&self, shard: &Shard, image: &MetadataImage, topic: &str) -> Vec<i32> {
        let Some(found) = image.topic(topic) else {
            return Vec::new();
        };
        let mut states = self.states.borrow_mut();
        let mut claimed = Vec::new();
        for partition in &found.partitions {
            let index = partition.index;
            if shard.owner_of(topic, index) == shard.id
                && !states.contains_key(&index)
                && shard.partition(topic, index).is_some()
            {
                states.insert(index, Load::Loading);
                claimed.push(index);
            }
        }
        claimed
    }

    /// The partition is replayed: its keys are served from now on.
    pub fn loaded(&self, partition: i32) {
        self.states.borrow_mut().insert(partition, Load::Loaded);
    }

    /// The partition went away before it was loaded.
    pub fn forget(&self, partition: i32) {
        self.states.borrow_mut().remove(&partition);
    }
}
