//! The shard's group commit: one task that writes out every dirty partition and fdatasyncs,
//! round after round. A round covers every batch appended before it started, so under load one
//! fdatasync per partition file serves many produce requests.
//!
//! One per shard; partitions mark themselves dirty on append. `reserve` is the back-pressure:
//! producers wait while the shard holds more than `weir.unflushed.bytes.max` unwritten bytes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::Partition;
use crate::event::{listen_with_timeout, Event};

/// How long an idle flusher sleeps before re-checking write-caching partitions' flush.ms.
const IDLE_TICK: Duration = Duration::from_millis(20);

pub struct Flusher {
    dirty: RefCell<Vec<Rc<Partition>>>,
    work: Event,
    space: Event,
    unflushed_bytes: Cell<u64>,
    unflushed_limit: u64,
    stopped: Cell<bool>,
    pub stats: FlushStats,
}

/// Counters the metrics endpoint reads.
#[derive(Default)]
pub struct FlushStats {
    pub rounds: Cell<u64>,
    pub bytes: Cell<u64>,
    pub last_round_micros: Cell<u64>,
    pub round_micros_total: Cell<u64>,
    pub latency: RefCell<Option<hdrhistogram::Histogram<u64>>>,
}

impl Flusher {
    pub fn new(unflushed_limit: u64) -> Rc<Flusher> {
        Rc::new(Flusher {
            dirty: RefCell::new(Vec::new()),
            work: Event::default(),
            space: Event::default(),
            unflushed_bytes: Cell::new(0),
            unflushed_limit,
            stopped: Cell::new(false),
            stats: FlushStats {
                latency: RefCell::new(
                    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2).ok(),
                ),
                ..Default::default()
            },
        })
    }

    /// Queues `partition` for the next round; `bytes` were just appended to it.
    pub fn mark_dirty(&self, partition: &Rc<Partition>, bytes: u64) {
        self.unflushed_bytes.set(self.unflushed_bytes.get() + bytes);
        if !partition.dirty.replace(true) {
            self.dirty.borrow_mut().push(partition.clone());
            self.work.notify();
        }
    }

    /// Waits while the shard holds too many unwritten bytes.
    pub async fn reserve(&self) {
        loop {
            let listener = self.space.listen();
            if self.unflushed_bytes.get() < self.unflushed_limit || self.stopped.get() {
                return;
            }
            listener.await;
        }
    }

    /// Fires when unflushed bytes drop (tests order wake-ups against it).
    #[cfg(test)]
    pub fn space_event(&self) -> &Event {
        &self.space
    }

    pub fn unflushed_bytes(&self) -> u64 {
        self.unflushed_bytes.get()
    }

    /// Runs rounds until [`Flusher::stop`].
    pub async fn run(self: Rc<Self>) {
        while !self.stopped.get() {
            let listener = self.work.listen();
            let round: Vec<Rc<Partition>> = std::mem::take(&mut *self.dirty.borrow_mut());
            if round.is_empty() {
                listen_with_timeout(listener, IDLE_TICK).await;
                continue;
            }
            let did_io = self.flush_round(round).await;
            if !did_io {
                // Only write-caching partitions waiting for flush.ms: do not spin.
                listen_with_timeout(self.work.listen(), IDLE_TICK).await;
            }
        }
    }

    /// Flushes the partitions of one round concurrently. Returns whether any bytes moved.
    async fn flush_round(&self, round: Vec<Rc<Partition>>) -> bool {
        let started = Instant::now();
        let now = crate::event::now_ms();
        for partition in &round {
            partition.dirty.set(false);
        }
        let results = futures::future::join_all(round.iter().map(|p| p.flush(now, false))).await;
        let mut moved = 0u64;
        for (partition, (bytes, more)) in round.iter().zip(results) {
            moved += bytes;
            if more && !partition.dirty.replace(true) {
                self.dirty.borrow_mut().push(partition.clone());
            }
        }
        self.unflushed_bytes
            .set(self.unflushed_bytes.get().saturating_sub(moved));
        self.space.notify();
        if moved > 0 {
            let micros = started.elapsed().as_micros() as u64;
            self.stats.rounds.set(self.stats.rounds.get() + 1);
            self.stats.bytes.set(self.stats.bytes.get() + moved);
            self.stats.last_round_micros.set(micros);
            self.stats
                .round_micros_total
                .set(self.stats.round_micros_total.get() + micros);
            if let Some(histogram) = self.stats.latency.borrow_mut().as_mut() {
                let _ = histogram.record(micros.max(1));
            }
        }
        moved > 0
    }

    /// Stops the loop after its current round; producers blocked in `reserve` are released.
    pub fn stop(&self) {
        self.stopped.set(true);
        self.work.notify();
        self.space.notify();
    }
}
