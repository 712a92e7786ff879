use std::collections::BTreeMap;

use proptest::prelude::*;

use super::records::{decode, encode};
use super::*;

const ID: &str = "txn-1";

fn partitions(list: &[(&str, i32)]) -> TxnPartitions {
    let mut out = TxnPartitions::new();
    for (topic, p) in list {
        out.entry(topic.to_string()).or_default().insert(*p);
    }
    out
}

/// Plans, begins and completes (as a durable write would) one transition.
fn persist(store: &mut TxnStore, target: TxnMetadata) {
    store.begin(&target);
    store.complete(target, true);
}

fn init(store: &mut TxnStore, next_pid: &mut i64, now: i64) -> Result<InitPlan, ErrorCode> {
    let pid = store.needs_producer_id(ID, None).then(|| {
        *next_pid += 1;
        *next_pid
    });
    let plan = store.plan_init(ID, 60_000, None, pid, now)?;
    match &plan {
        InitPlan::Ready(t) | InitPlan::AbortOngoing(t) => persist(store, t.clone()),
    }
    Ok(plan)
}

#[test]
fn a_new_id_gets_epoch_0_and_each_init_bumps_the_epoch() {
    let mut store = TxnStore::default();
    let mut pid = 1000;
    let InitPlan::Ready(first) = init(&mut store, &mut pid, 1).unwrap() else {
        panic!("a new id is ready at once")
    };
    assert_eq!((first.producer_id, first.producer_epoch), (1001, 0));
    let InitPlan::Ready(second) = init(&mut store, &mut pid, 2).unwrap() else {
        panic!("an Empty id is ready at once")
    };
    assert_eq!((second.producer_id, second.producer_epoch), (1001, 1));
}

#[test]
fn init_during_an_open_transaction_fences_and_aborts_it_first() {
    let mut store = TxnStore::default();
    let mut pid = 0;
    init(&mut store, &mut pid, 1).unwrap();
    let add = store
        .plan_add_partitions(ID, 1, 0, &partitions(&[("t", 0)]), 2)
        .unwrap()
        .unwrap();
    persist(&mut store, add);
    let InitPlan::AbortOngoing(abort) = init(&mut store, &mut pid, 3).unwrap() else {
        panic!("an Ongoing transaction must be aborted first")
    };
    assert_eq!(abort.state, TxnState::PrepareAbort);
    assert_eq!(abort.producer_epoch, 1, "the old producer is fenced");
    assert_eq!(abort.partition_count(), 1, "markers go to its partitions");
    // The old producer can no longer end it.
    assert_eq!(
        store.plan_end(ID, 1, 0, true, 4),
        Err(ErrorCode::ProducerFenced)
    );
    // Until the markers are written, a retry is told to wait.
    assert_eq!(
        store.plan_init(ID, 60_000, None, None, 5),
        Err(ErrorCode::ConcurrentTransactions)
    );
    let complete = store.plan_complete(ID, 6).unwrap();
    assert_eq!(complete.state, TxnState::CompleteAbort);
    persist(&mut store, complete);
    let InitPlan::Ready(ready) = init(&mut store, &mut pid, 7).unwrap() else {
        panic!("ready after the abort")
    };
    assert_eq!(ready.producer_epoch, 2);
}

#[test]
fn end_txn_rules() {
    let mut store = TxnStore::default();
    let mut pid = 0;
    init(&mut store, &mut pid, 1).unwrap();
    assert_eq!(
        store.plan_end(ID, 1, 0, true, 2),
        Err(ErrorCode::InvalidTxnState),
        "nothing to commit in Empty"
    );
    assert_eq!(
        store.plan_end(ID, 9, 0, true, 2),
        Err(ErrorCode::InvalidProducerIdMapping)
    );
    let add = store
        .plan_add_partitions(ID, 1, 0, &partitions(&[("t", 0), ("t", 1)]), 2)
        .unwrap()
        .unwrap();
    persist(&mut store, add);
    assert_eq!(
        store.plan_add_partitions(ID, 1, 0, &partitions(&[("t", 1)]), 3),
        Ok(None),
        "already in the transaction: nothing to write"
    );
    let EndPlan::Prepare(prepare) = store.plan_end(ID, 1, 0, true, 4).unwrap() else {
        panic!("Ongoing → PrepareCommit")
    };
    persist(&mut store, prepare);
    assert_eq!(
        store.plan_end(ID, 1, 0, true, 5),
        Err(ErrorCode::ConcurrentTransactions)
    );
    assert_eq!(
        store.plan_end(ID, 1, 0, false, 5),
        Err(ErrorCode::InvalidTxnState)
    );
    assert_eq!(
        store.plan_add_partitions(ID, 1, 0, &partitions(&[("t", 2)]), 5),
        Err(ErrorCode::ConcurrentTransactions)
    );
    let complete = store.plan_complete(ID, 6).unwrap();
    persist(&mut store, complete);
    assert_eq!(store.plan_end(ID, 1, 0, true, 7), Ok(EndPlan::AlreadyDone));
    assert_eq!(
        store.plan_end(ID, 1, 0, false, 7),
        Err(ErrorCode::InvalidTxnState)
    );
    // A new transaction after the commit starts from no partitions.
    let next = store
        .plan_add_partitions(ID, 1, 0, &partitions(&[("u", 0)]), 8)
        .unwrap()
        .unwrap();
    assert_eq!(next.partitions, partitions(&[("u", 0)]));
    assert_eq!(next.start_ms, 8);
}

#[test]
fn a_pending_transition_makes_others_wait_and_a_failed_write_changes_nothing() {
    let mut store = TxnStore::default();
    let mut pid = 0;
    init(&mut store, &mut pid, 1).unwrap();
    let before = store.clone();
    let add = store
        .plan_add_partitions(ID, 1, 0, &partitions(&[("t", 0)]), 2)
        .unwrap()
        .unwrap();
    store.begin(&add);
    assert_eq!(
        store.plan_end(ID, 1, 0, false, 3),
        Err(ErrorCode::ConcurrentTransactions)
    );
    store.complete(add, false);
    assert_eq!(store, before);
    // A new id whose first write fails is forgotten.
    let plan = store
        .plan_init("other", 1000, None, Some(77), 4)
        .unwrap();
    let InitPlan::Ready(target) = plan else {
        panic!()
    };
    store.begin(&target);
    assert_eq!(
        store.plan_init("other", 1000, None, None, 4),
        Err(ErrorCode::ConcurrentTransactions)
    );
    store.complete(target, false);
    assert!(store.get("other").is_none());
}

#[test]
fn timeouts_abort_with_the_epoch_bumped() {
    let mut store = TxnStore::default();
    let mut pid = 0;
    init(&mut store, &mut pid, 0).unwrap();
    let add = store
        .plan_add_partitions(ID, 1, 0, &partitions(&[("t", 0)]), 100)
        .unwrap()
        .unwrap();
    persist(&mut store, add);
    assert!(store.timed_out(60_100).is_empty());
    assert_eq!(store.timed_out(60_101), vec![ID.to_string()]);
    let abort = store.plan_timeout_abort(ID, 60_101).unwrap();
    assert_eq!((abort.state, abort.producer_epoch), (TxnState::PrepareAbort, 1));
}

#[test]
fn exhausted_epochs_rotate_the_producer_id() {
    let mut store = TxnStore::default();
    let mut pid = 0;
    init(&mut store, &mut pid, 0).unwrap();
    let mut meta = store.get(ID).unwrap().clone();
    meta.producer_epoch = i16::MAX - 1;
    store.apply(ID.to_string(), Some(meta));
    assert!(store.needs_producer_id(ID, None));
    let InitPlan::Ready(rotated) = init(&mut store, &mut pid, 1).unwrap() else {
        panic!()
    };
    assert_eq!(
        (rotated.producer_id, rotated.producer_epoch, rotated.previous_producer_id),
        (2, 0, 1)
    );
}

#[test]
fn kip360_expected_epoch_bumps_or_is_fenced() {
    let mut store = TxnStore::default();
    let mut pid = 0;
    init(&mut store, &mut pid, 0).unwrap(); // (1, 0)
    let plan = store.plan_init(ID, 1000, Some((1, 0)), None, 1).unwrap();
    let InitPlan::Ready(bumped) = plan else { panic!() };
    assert_eq!((bumped.producer_epoch, bumped.last_producer_epoch), (1, 0));
    persist(&mut store, bumped);
    // The retry of that call (its answer lost) gets the same epoch.
    let InitPlan::Ready(retry) = store.plan_init(ID, 1000, Some((1, 0)), None, 2).unwrap() else {
        panic!()
    };
    assert_eq!(retry.producer_epoch, 1);
    assert_eq!(
        store.plan_init(ID, 1000, Some((5, 0)), None, 2),
        Err(ErrorCode::ProducerFenced)
    );
}

#[test]
fn records_round_trip_in_kafkas_format() {
    let meta = TxnMetadata {
        transactional_id: "app-1".into(),
        producer_id: 4000,
        previous_producer_id: -1,
        producer_epoch: 7,
        last_producer_epoch: NO_EPOCH,
        timeout_ms: 60_000,
        state: TxnState::Ongoing,
        partitions: partitions(&[("orders", 0), ("orders", 3), ("__consumer_offsets", 12)]),
        start_ms: 1_700_000_000_000,
        last_update_ms: 1_700_000_000_500,
    };
    let (key, value) = encode(&meta);
    // Key: version 0, then the id as a classic string.
    assert_eq!(&key[..4], &[0, 0, 0, 5]);
    assert_eq!(&key[4..], b"app-1");
    let value = value.unwrap();
    // Value: version 0, producer id, epoch, timeout, status.
    assert_eq!(&value[..2], &[0, 0]);
    assert_eq!(i64::from_be_bytes(value[2..10].try_into().unwrap()), 4000);
    assert_eq!(i16::from_be_bytes(value[10..12].try_into().unwrap()), 7);
    assert_eq!(value[16], TxnState::Ongoing.id() as u8);
    assert_eq!(decode(&key, Some(&value)), Some(("app-1".into(), Some(meta))));
    assert_eq!(decode(&key, None), Some(("app-1".into(), None)));
    assert_eq!(decode(&bytes::Bytes::from_static(&[0, 1, 0]), None), None);
}

// ---------------------------------------------------------------------------------------------
// Property: any interleaving of init / add / produce / commit / abort / timeout / marker
// delivery / failed writes / crashes leaves the coordinator's log and the partitions consistent.

#[derive(Clone, Debug)]
enum Op {
    Init { client: usize, write: Write },
    Add { client: usize, partition: usize, write: Write },
    Produce { client: usize, partition: usize },
    End { client: usize, commit: bool, write: Write },
    /// Time passes by this many ms (timeouts fire).
    Tick(i64),
    /// One prepared transaction gets its markers and completes.
    Markers { write: Write },
    Crash,
}

/// How the coordinator's record write goes.
#[derive(Clone, Copy, Debug)]
enum Write {
    Durable,
    /// Not written; the client gets an error.
    Fails,
    /// Written, then the broker dies before answering.
    CrashAfter,
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        8 => Just(Write::Durable),
        1 => Just(Write::Fails),
        1 => Just(Write::CrashAfter),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..2usize, write()).prop_map(|(client, write)| Op::Init { client, write }),
        4 => (0..2usize, 0..3usize, write())
            .prop_map(|(client, partition, write)| Op::Add { client, partition, write }),
        4 => (0..2usize, 0..3usize).prop_map(|(client, partition)| Op::Produce { client, partition }),
        3 => (0..2usize, any::<bool>(), write())
            .prop_map(|(client, commit, write)| Op::End { client, commit, write }),
        1 => (0..40_000i64).prop_map(Op::Tick),
        3 => write().prop_map(|write| Op::Markers { write }),
        1 => Just(Op::Crash),
    ]
}

#[derive(Clone, Debug, PartialEq)]
enum Entry {
    /// A record of a client's transaction number `txn`.
    Data { pid: i64, epoch: i16, txn: u64 },
    Marker { pid: i64, epoch: i16, commit: bool },
}

#[derive(Default)]
struct Client {
    producer: Option<(i64, i16)>,
    /// Partitions the coordinator confirmed for the current transaction.
    added: Vec<usize>,
    txn: u64,
}

struct Sim {
    store: TxnStore,
    log: Vec<(String, Option<TxnMetadata>)>,
    partitions: Vec<Vec<Entry>>,
    /// Highest epoch each partition has seen per producer id.
    known: Vec<BTreeMap<i64, i16>>,
    clients: [Client; 2],
    next_pid: i64,
    next_txn: u64,
    now: i64,
    /// Transactions (pid, txn) whose commit a client was told succeeded.
    acked_commits: Vec<(i64, u64)>,
}

const TOPIC: &str = "t";

impl Sim {
    fn new() -> Sim {
        Sim {
            store: TxnStore::default(),
            log: Vec::new(),
            partitions: vec![Vec::new(); 3],
            known: vec![BTreeMap::new(); 3],
            clients: [Client::default(), Client::default()],
            next_pid: 0,
            next_txn: 0,
            now: 0,
            acked_commits: Vec::new(),
        }
    }

    fn replay(&self) -> TxnStore {
        let mut store = TxnStore::default();
        for (id, value) in &self.log {
            store.apply(id.clone(), value.clone());
        }
        store
    }

    /// Persists a planned transition; true when the caller may answer success.
    fn persist(&mut self, target: TxnMetadata, write: Write) -> bool {
        self.store.begin(&target);
        match write {
            Write::Durable => {
                self.log
                    .push((target.transactional_id.clone(), Some(target.clone())));
                self.store.complete(target, true);
                true
            }
            Write::Fails => {
                self.store.complete(target, false);
                false
            }
            Write::CrashAfter => {
                self.log
                    .push((target.transactional_id.clone(), Some(target.clone())));
                self.crash();
                false
            }
        }
    }

    fn crash(&mut self) {
        self.store = self.replay();
    }

    fn new_txn(&mut self, client: usize) {
        self.next_txn += 1;
        self.clients[client].txn = self.next_txn;
        self.clients[client].added.clear();
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Init { client, write } => {
                let pid = self.store.needs_producer_id(ID, None).then(|| {
                    self.next_pid += 1;
                    self.next_pid
                });
                match self.store.plan_init(ID, 10_000, None, pid, self.now) {
                    Ok(InitPlan::Ready(target)) => {
                        let given = (target.producer_id, target.producer_epoch);
                        if self.persist(target, write) {
                            self.clients[client].producer = Some(given);
                            self.new_txn(client);
                        }
                    }
                    Ok(InitPlan::AbortOngoing(target)) => {
                        self.persist(target, write);
                    }
                    Err(_) => {}
                }
            }
            Op::Add {
                client,
                partition,
                write,
            } => {
                let Some((pid, epoch)) = self.clients[client].producer else {
                    return;
                };
                let wanted = partitions(&[(TOPIC, partition as i32)]);
                match self
                    .store
                    .plan_add_partitions(ID, pid, epoch, &wanted, self.now)
                {
                    Ok(None) => self.clients[client].added.push(partition),
                    Ok(Some(target)) => {
                        let fresh = self.store.get(ID).unwrap().state != TxnState::Ongoing;
                        if self.persist(target, write) {
                            if fresh {
                                self.new_txn(client);
                            }
                            self.clients[client].added.push(partition);
                        }
                    }
                    Err(_) => {}
                }
            }
            Op::Produce { client, partition } => {
                let c = &self.clients[client];
                let Some((pid, epoch)) = c.producer else { return };
                if !c.added.contains(&partition) {
                    return;
                }
                let known = self.known[partition].entry(pid).or_insert(epoch);
                if epoch < *known {
                    return; // INVALID_PRODUCER_EPOCH: the producer is fenced here
                }
                *known = epoch;
                let txn = c.txn;
                self.partitions[partition].push(Entry::Data { pid, epoch, txn });
            }
            Op::End {
                client,
                commit,
                write,
            } => {
                let Some((pid, epoch)) = self.clients[client].producer else {
                    return;
                };
                let txn = self.clients[client].txn;
                match self.store.plan_end(ID, pid, epoch, commit, self.now) {
                    Ok(EndPlan::Prepare(target)) => {
                        // Whatever the answer, the client produces nothing more for this
                        // transaction once it has asked to end it.
                        self.clients[client].added.clear();
                        if self.persist(target, write) {
                            if commit {
                                self.acked_commits.push((pid, txn));
                            }
                            self.new_txn(client);
                        }
                    }
                    Ok(EndPlan::AlreadyDone) => {
                        if commit {
                            self.acked_commits.push((pid, txn));
                        }
                        self.new_txn(client);
                    }
                    Err(_) => {}
                }
            }
            Op::Tick(ms) => {
                self.now += ms;
                for id in self.store.timed_out(self.now) {
                    if let Some(target) = self.store.plan_timeout_abort(&id, self.now) {
                        self.persist(target, Write::Durable);
                    }
                }
            }
            Op::Markers { write } => {
                let Some(id) = self.store.prepared().into_iter().next() else {
                    return;
                };
                let meta = self.store.get(&id).unwrap().clone();
                let commit = meta.state == TxnState::PrepareCommit;
                for ids in meta.partitions.values() {
                    for &p in ids {
                        let p = p as usize;
                        let known = self.known[p].entry(meta.producer_id).or_insert(0);
                        assert!(
                            meta.producer_epoch >= *known,
                            "a marker carries the newest epoch"
                        );
                        *known = meta.producer_epoch;
                        self.partitions[p].push(Entry::Marker {
                            pid: meta.producer_id,
                            epoch: meta.producer_epoch,
                            commit,
                        });
                    }
                }
                let target = self.store.plan_complete(&id, self.now).unwrap();
                self.persist(target, write);
            }
            Op::Crash => self.crash(),
        }
    }

    /// Ends everything left open: time runs past every timeout, markers are delivered.
    fn drain(&mut self) {
        for _ in 0..10 {
            self.step(Op::Tick(1_000_000));
            while !self.store.prepared().is_empty() {
                self.step(Op::Markers {
                    write: Write::Durable,
                });
            }
        }
    }

    fn check(&self) {
        let without_volatile = |s: &TxnStore| -> Vec<TxnMetadata> {
            s.txns
                .values()
                .map(|e| TxnMetadata {
                    last_producer_epoch: NO_EPOCH,
                    ..e.meta.clone()
                })
                .collect()
        };
        assert_eq!(
            without_volatile(&self.replay()),
            without_volatile(&self.store),
            "the log replays to the coordinator's state"
        );
        let mut last_epoch = BTreeMap::new();
        for (_, meta) in &self.log {
            let meta = meta.as_ref().unwrap();
            let previous = last_epoch.insert(meta.producer_id, meta.producer_epoch);
            assert!(
                previous.is_none_or(|e| e <= meta.producer_epoch),
                "epochs never go back in the log"
            );
        }
        for entries in &self.partitions {
            for (i, entry) in entries.iter().enumerate() {
                let Entry::Data { pid, epoch, txn } = entry else {
                    continue;
                };
                let marker = entries[i + 1..].iter().find_map(|e| match e {
                    Entry::Marker {
                        pid: p,
                        epoch: e,
                        commit,
                    } if p == pid => Some((*e, *commit)),
                    _ => None,
                });
                let Some((marker_epoch, commit)) = marker else {
                    panic!("data of {pid}/{epoch} (txn {txn}) never got a marker: LSO stuck");
                };
                assert!(marker_epoch >= *epoch);
                if self.acked_commits.contains(&(*pid, *txn)) {
                    assert!(commit, "a commit the client saw succeed was aborted");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]
    #[test]
    fn any_interleaving_leaves_log_and_partitions_consistent(ops in prop::collection::vec(op(), 1..60)) {
        let mut sim = Sim::new();
        for op in ops {
            sim.step(op);
        }
        sim.drain();
        sim.check();
    }
}
