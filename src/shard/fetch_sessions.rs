//! Incremental fetch sessions (KIP-227), per shard: a consumer's connection lands on one shard
//! and keeps its session there. A client that reconnects to another shard gets
//! FETCH_SESSION_ID_NOT_FOUND and starts a new full fetch, which Kafka clients handle.
//!
//! Rules follow Kafka's FetchManager: epoch -1 without a session id is a sessionless full fetch;
//! (0, 0) asks for a new session; (id, -1) closes it; (id, n > 0) is incremental and must carry
//! the session's next epoch. An incremental response lists only partitions with news (records,
//! a moved high watermark / log start / LSO, or an error). The cache is bounded by
//! `max.incremental.fetch.session.cache.slots`; when full, the least recently used session is
//! evicted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::protocol::error::ErrorCode;

pub const INITIAL_EPOCH: i32 = 0;
pub const FINAL_EPOCH: i32 = -1;

/// What a session remembers about one partition.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionPartition {
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    pub current_leader_epoch: i32,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

pub type SessionKey = (Arc<str>, i32);

pub struct FetchSession {
    pub id: i32,
    pub epoch: i32,
    pub partitions: BTreeMap<SessionKey, SessionPartition>,
    last_used: Instant,
}

/// How one fetch request relates to sessions.
#[derive(Debug, PartialEq)]
pub enum FetchContext {
    /// Full fetch, no session (response session id 0).
    Sessionless,
    /// Full fetch that created session `id`.
    NewSession(i32),
    /// Incremental fetch of session `id`.
    Incremental(i32),
    /// The request is refused with this error at the top level.
    Error(ErrorCode),
}

pub struct FetchSessions {
    sessions: HashMap<i32, FetchSession>,
    slots: usize,
}

impl FetchSessions {
    pub fn new(slots: usize) -> FetchSessions {
        FetchSessions {
            sessions: HashMap::new(),
            slots,
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Classifies a request; creates or closes sessions as the request says.
    pub fn open(&mut self, session_id: i32, epoch: i32) -> FetchContext {
        match (session_id, epoch) {
            (0, FINAL_EPOCH) => FetchContext::Sessionless,
            (0, INITIAL_EPOCH) => self.create(),
            (0, _) => FetchContext::Error(ErrorCode::InvalidFetchSessionEpoch),
            (id, FINAL_EPOCH) => {
                self.sessions.remove(&id);
                FetchContext::Sessionless
            }
            (id, INITIAL_EPOCH) => {
                // A client re-initialising: drop the old session, start a new one.
                self.sessions.remove(&id);
                self.create()
            }
            (id, epoch) => match self.sessions.get_mut(&id) {
                None => FetchContext::Error(ErrorCode::FetchSessionIdNotFound),
                Some(session) if session.epoch != epoch => {
                    FetchContext::Error(ErrorCode::InvalidFetchSessionEpoch)
                }
                Some(session) => {
                    session.last_used = Instant::now();
                    FetchContext::Incremental(id)
                }
            },
        }
    }

    fn create(&mut self) -> FetchContext {
        if self.slots == 0 {
            return FetchContext::Sessionless;
        }
        if self.sessions.len() >= self.slots {
            if let Some((&oldest, _)) = self.sessions.iter().min_by_key(|(_, s)| s.last_used) {
                self.sessions.remove(&oldest);
            }
        }
        let id = loop {
            let candidate = fastrand::i32(1..i32::MAX);
            if !self.sessions.contains_key(&candidate) {
                break candidate;
            }
        };
        self.sessions.insert(
            id,
            FetchSession {
                id,
                epoch: 1,
                partitions: BTreeMap::new(),
                last_used: Instant::now(),
            },
        );
        FetchContext::NewSession(id)
    }

    pub fn get_mut(&mut self, id: i32) -> Option<&mut FetchSession> {
        self.sessions.get_mut(&id)
    }
}

impl FetchSession {
    /// Records the partitions a request names (added or updated) and forgets the ones it lists
    /// as forgotten.
    pub fn update(
        &mut self,
        requested: impl IntoIterator<Item = (SessionKey, i64, i32, i32)>,
        forgotten: impl IntoIterator<Item = SessionKey>,
    ) {
        for key in forgotten {
            self.partitions.remove(&key);
        }
        for (key, fetch_offset, partition_max_bytes, current_leader_epoch) in requested {
            let entry = self.partitions.entry(key).or_insert(SessionPartition {
                fetch_offset,
                partition_max_bytes,
                current_leader_epoch,
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
            });
            entry.fetch_offset = fetch_offset;
            entry.partition_max_bytes = partition_max_bytes;
            entry.current_leader_epoch = current_leader_epoch;
        }
    }

    /// Whether a partition's result is news for this session; remembers what was sent.
    pub fn note_result(
        &mut self,
        key: &SessionKey,
        has_records: bool,
        error: bool,
        offsets: (i64, i64, i64),
    ) -> bool {
        let Some(entry) = self.partitions.get_mut(key) else {
            return true;
        };
        let (high_watermark, last_stable_offset, log_start_offset) = offsets;
        let changed = has_records
            || error
            || entry.high_watermark != high_watermark
            || entry.last_stable_offset != last_stable_offset
            || entry.log_start_offset != log_start_offset;
        entry.high_watermark = high_watermark;
        entry.last_stable_offset = last_stable_offset;
        entry.log_start_offset = log_start_offset;
        changed
    }

    /// Moves the epoch forward after a response.
    pub fn advance_epoch(&mut self) {
        self.epoch = if self.epoch == i32::MAX {
            1
        } else {
            self.epoch + 1
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(topic: &str, partition: i32) -> SessionKey {
        (Arc::from(topic), partition)
    }

    #[test]
    fn session_lifecycle_follows_kip_227() {
        let mut sessions = FetchSessions::new(10);
        assert_eq!(sessions.open(0, -1), FetchContext::Sessionless);
        let FetchContext::NewSession(id) = sessions.open(0, 0) else {
            panic!("expected a session")
        };
        assert_eq!(
            sessions.open(id, 2),
            FetchContext::Error(ErrorCode::InvalidFetchSessionEpoch)
        );
        assert_eq!(sessions.open(id, 1), FetchContext::Incremental(id));
        sessions.get_mut(id).unwrap().advance_epoch();
        assert_eq!(sessions.open(id, 2), FetchContext::Incremental(id));
        assert_eq!(
            sessions.open(12345, 1),
            FetchContext::Error(ErrorCode::FetchSessionIdNotFound)
        );
        assert_eq!(sessions.open(id, -1), FetchContext::Sessionless);
        assert_eq!(
            sessions.open(id, 3),
            FetchContext::Error(ErrorCode::FetchSessionIdNotFound)
        );
    }

    #[test]
    fn incremental_responses_carry_only_news() {
        let mut sessions = FetchSessions::new(10);
        let FetchContext::NewSession(id) = sessions.open(0, 0) else {
            panic!()
        };
        let session = sessions.get_mut(id).unwrap();
        session.update([(key("t", 0), 0, 1000, -1), (key("t", 1), 0, 1000, -1)], []);
        assert!(session.note_result(&key("t", 0), false, false, (5, 5, 0)));
        assert!(!session.note_result(&key("t", 0), false, false, (5, 5, 0)));
        assert!(session.note_result(&key("t", 0), true, false, (5, 5, 0)));
        assert!(session.note_result(&key("t", 0), false, false, (6, 6, 0)));
        session.update([], [key("t", 1)]);
        assert_eq!(session.partitions.len(), 1);
    }

    #[test]
    fn a_full_cache_evicts_the_least_recently_used() {
        let mut sessions = FetchSessions::new(2);
        let FetchContext::NewSession(a) = sessions.open(0, 0) else {
            panic!()
        };
        let FetchContext::NewSession(b) = sessions.open(0, 0) else {
            panic!()
        };
        assert_eq!(sessions.open(b, 1), FetchContext::Incremental(b));
        let FetchContext::NewSession(_) = sessions.open(0, 0) else {
            panic!()
        };
        assert_eq!(sessions.len(), 2);
        assert_eq!(
            sessions.open(a, 1),
            FetchContext::Error(ErrorCode::FetchSessionIdNotFound)
        );
    }

    #[test]
    fn zero_slots_means_sessionless() {
        let mut sessions = FetchSessions::new(0);
        assert_eq!(sessions.open(0, 0), FetchContext::Sessionless);
    }
}
