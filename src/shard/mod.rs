//! Shards: one glommio executor pinned per core, each owning a set of partitions outright.
//!
//! A [`Shard`] is the per-core context every task on that core shares (`Rc`, never sent). It owns
//! its partitions, its flusher (group commit), its fetch sessions and its metrics; it holds a
//! pointer to the current [`MetadataImage`] (the same `Arc` on every shard). Work for another
//! shard's partitions is a closure sent over the glommio channel mesh ([`Shard::dispatch`]), run
//! there as a local task, its result sent back on a oneshot channel. Nothing is shared mutably
//! between cores; there is no Mutex or RwLock on the produce or fetch path.
//!
//! Placement: partition `p` of topic `t` lives on shard `(fnv1a(t) + p) mod shards`, so a
//! topic's partitions spread over all cores and every shard computes the same owner. The metadata
//! log and the controller live on shard 0.

pub mod consumer_groups;
pub mod coordinator_load;
pub mod fetch_sessions;
pub mod group_coordinator;
pub mod metrics;
pub mod txn_coordinator;
pub mod txn_markers;

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use futures::channel::oneshot;
use glommio::channels::channel_mesh::Senders;

use crate::config::BrokerConfig;
use crate::event::Event;
use crate::metadata::controller::Controller;
use crate::metadata::MetadataImage;
use crate::partition::flusher::Flusher;
use crate::partition::{partition_dir, Partition};
use crate::storage::log::LogOptions;
use fetch_sessions::FetchSessions;
use group_coordinator::ShardGroups;
use metrics::ShardMetrics;

/// A unit of work sent to another shard: runs there with that shard's context.
pub type Job = Box<dyn FnOnce(Rc<Shard>) + Send>;

/// Key of a partition in a shard's table.
pub type PartitionKey = (Arc<str>, i32);

/// The shard that owns partition `partition` of `topic` among `shards`.
pub fn owner_of(topic: &str, partition: i32, shards: usize) -> usize {
    let mut hash: u32 = 0x811c9dc5;
    for byte in topic.bytes() {
        hash ^= byte as u32;
        hash = hash.wrapping_mul(0x01000193);
    }
    ((hash as u64 + partition as u64) % shards as u64) as usize
}

/// Error when a shard cannot be reached (it is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardGone;

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub broker: Arc<BrokerConfig>,
    pub data_dir: PathBuf,
    pub log_options: LogOptions,
    metadata: RefCell<Arc<MetadataImage>>,
    partitions: RefCell<HashMap<PartitionKey, Rc<Partition>>>,
    pub flusher: Rc<Flusher>,
    senders: Senders<Job>,
    pub controller: OnceCell<Rc<Controller>>,
    pub clean_start: bool,
    pub fetch_sessions: RefCell<FetchSessions>,
    pub metrics: ShardMetrics,
    /// Groups of the `__consumer_offsets` partitions this shard owns.
    pub groups: ShardGroups,
    /// Transactional ids of the `__transaction_state` partitions this shard owns.
    pub txns: txn_coordinator::ShardTxns,
    pub connections: Cell<usize>,
    /// Fired when the metadata image changes (fetch long-polls re-check their partitions).
    pub metadata_event: Event,
    pub stopping: Cell<bool>,
    pub stop_event: Event,
    /// Set when the shard's executor should finish (after a clean shutdown).
    pub exit_requested: Cell<bool>,
    pub exit_event: Event,
}

impl Shard {
    pub fn new(
        id: usize,
        count: usize,
        broker: Arc<BrokerConfig>,
        senders: Senders<Job>,
        clean_start: bool,
    ) -> Rc<Shard> {
        let log_options = LogOptions {
            write_buffer_bytes: broker.write_buffer_bytes(),
            readahead_bytes: broker.readahead_bytes(),
            preallocate_bytes: broker.preallocate_bytes(),
        };
        Rc::new(Shard {
            id,
            count,
            data_dir: broker.data_dir(),
            log_options,
            metadata: RefCell::new(Arc::new(MetadataImage::default())),
            partitions: RefCell::new(HashMap::new()),
            flusher: Flusher::new(broker.unflushed_bytes_max() as u64),
            senders,
            controller: OnceCell::new(),
            clean_start,
            fetch_sessions: RefCell::new(FetchSessions::new(broker.fetch_session_slots())),
            metrics: ShardMetrics::default(),
            groups: ShardGroups::new(&broker),
            txns: txn_coordinator::ShardTxns::default(),
            connections: Cell::new(0),
            metadata_event: Event::default(),
            stopping: Cell::new(false),
            stop_event: Event::default(),
            exit_requested: Cell::new(false),
            exit_event: Event::default(),
            broker,
        })
    }

    pub fn metadata(&self) -> Arc<MetadataImage> {
        self.metadata.borrow().clone()
    }

    pub fn owner_of(&self, topic: &str, partition: i32) -> usize {
        owner_of(topic, partition, self.count)
    }

    /// A partition this shard owns.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(&(Arc::from(topic), partition))
            .cloned()
    }

    pub fn partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Starts `work` on shard `target` now (in call order, per target) and returns a receiver of
    /// its result. Local work is spawned as a task; remote work is queued on the mesh.
    pub async fn dispatch<R, F, Fut>(
        self: &Rc<Self>,
        target: usize,
        work: F,
    ) -> oneshot::Receiver<R>
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let job: Job = Box::new(move |shard: Rc<Shard>| {
            glommio::spawn_local(async move {
                let _ = sender.send(work(shard).await);
            })
            .detach();
        });
        if target == self.id {
            job(self.clone());
        } else {
            self.metrics
                .cross_shard_messages
                .set(self.metrics.cross_shard_messages.get() + 1);
            // A closed mesh means the target is shutting down; the dropped sender tells the caller.
            let _ = self.senders.send_to(target, job).await;
        }
        receiver
    }

    /// Runs `work` on shard `target` and waits for its result.
    pub async fn submit_to<R, F, Fut>(
        self: &Rc<Self>,
        target: usize,
        work: F,
    ) -> Result<R, ShardGone>
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        self.dispatch(target, work)
            .await
            .await
            .map_err(|_| ShardGone)
    }

    /// Runs `work` on every shard and collects the results in shard order.
    pub async fn broadcast<R, F, Fut>(self: &Rc<Self>, work: F) -> Vec<Result<R, ShardGone>>
    where
        F: Fn(Rc<Shard>) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        let mut receivers = Vec::with_capacity(self.count);
        for target in 0..self.count {
            let work = work.clone();
            receivers.push(self.dispatch(target, work).await);
        }
        let mut results = Vec::with_capacity(self.count);
        for receiver in receivers {
            results.push(receiver.await.map_err(|_| ShardGone));
        }
        results
    }

    /// The controller, reached from any shard: runs `work` on shard 0 with it.
    pub async fn with_controller<R, F, Fut>(self: &Rc<Self>, work: F) -> Result<R, ShardGone>
    where
        F: FnOnce(Rc<Shard>, Rc<Controller>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        self.submit_to(0, move |shard: Rc<Shard>| {
            let controller = shard
                .controller
                .get()
                .cloned()
                .expect("controller lives on shard 0");
            work(shard, controller)
        })
        .await
    }

    /// Publishes a new metadata image to every shard and waits until each has opened, updated or
    /// removed its partitions accordingly. Called on shard 0 after every metadata change.
    pub async fn publish_metadata(self: &Rc<Self>, image: Arc<MetadataImage>) {
        let results = self
            .broadcast(move |shard: Rc<Shard>| {
                let image = image.clone();
                async move { shard.install_metadata(image).await }
            })
            .await;
        for (shard, result) in results.into_iter().enumerate() {
            if result.is_err() {
                tracing::warn!("shard {shard} did not take the new metadata (shutting down)");
            }
        }
    }

    /// Makes this shard's partitions match `image`: opens new ones it owns, removes deleted ones,
    /// applies config changes.
    pub async fn install_metadata(self: &Rc<Self>, image: Arc<MetadataImage>) {
        *self.metadata.borrow_mut() = image.clone();
        let current: Vec<(PartitionKey, Rc<Partition>)> = self
            .partitions
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, partition) in current {
            let keep = image
                .topic(&key.0)
                .filter(|topic| topic.id == partition.topic_id)
                .and_then(|topic| {
                    topic
                        .partitions
                        .iter()
                        .find(|p| p.index == key.1)
                        .map(|p| (topic, p))
                });
            match keep {
                Some((topic, partition_image)) => {
                    partition.set_config(image.topic_config(topic, &self.broker));
                    partition.set_leader_epoch(partition_image.leader_epoch);
                }
                None => self.remove_partition(&key, partition).await,
            }
        }
        let mut to_open = Vec::new();
        for topic in image.topics.values() {
            for partition in &topic.partitions {
                let key = (topic.name.clone(), partition.index);
                if self.owner_of(&topic.name, partition.index) == self.id
                    && !self.partitions.borrow().contains_key(&key)
                {
                    to_open.push((topic.clone(), partition.clone()));
                }
            }
        }
        let started = std::time::Instant::now();
        let total = to_open.len();
        for (done, chunk) in to_open.chunks(16).enumerate() {
            let opens = chunk.iter().map(|(topic, partition)| {
                let config = image.topic_config(topic, &self.broker);
                Partition::open(
                    &self.data_dir,
                    topic.name.clone(),
                    partition.index,
                    topic.id,
                    partition.leader_epoch,
                    config,
                    self.log_options.clone(),
                    self.clean_start,
                )
            });
            for ((topic, partition_image), result) in
                chunk.iter().zip(futures::future::join_all(opens).await)
            {
                match result {
                    Ok((partition, report)) => {
                        if report.truncated_bytes > 0 || !report.notes.is_empty() {
                            tracing::warn!(
                                "recovered {}-{}: scanned {} bytes, truncated {} bytes: {}",
                                topic.name,
                                partition_image.index,
                                report.scanned_bytes,
                                report.truncated_bytes,
                                report.notes.join("; ")
                            );
                        }
                        self.partitions
                            .borrow_mut()
                            .insert((topic.name.clone(), partition_image.index), partition);
                    }
                    Err(error) => tracing::error!(
                        "cannot open partition {}-{}: {error}; it stays offline",
                        topic.name,
                        partition_image.index
                    ),
                }
            }
            if total > 64 {
                tracing::info!(
                    "shard {}: opened {}/{} partitions ({:.1}s)",
                    self.id,
                    ((done + 1) * 16).min(total),
                    total,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        self.rebalance_cache();
        group_coordinator::on_metadata(self, &image);
        txn_coordinator::on_metadata(self, &image);
        self.metadata_event.notify();
    }

    async fn remove_partition(&self, key: &PartitionKey, partition: Rc<Partition>) {
        self.partitions.borrow_mut().remove(key);
        partition.mark_deleted();
        let dir = partition_dir(&self.data_dir, &key.0, key.1);
        let grave =
            dir.with_file_name(format!("{}-{}.{}-delete", key.0, key.1, partition.topic_id));
        let result = crate::storage::segment::blocking(move || {
            std::fs::rename(&dir, &grave)?;
            std::fs::remove_dir_all(&grave)
        })
        .await;
        if let Err(error) = result {
            tracing::warn!("removing {}-{}: {error}", key.0, key.1);
        }
        tracing::info!("deleted partition {}-{}", key.0, key.1);
    }

    /// Splits the shard's cache budget evenly over its partitions.
    fn rebalance_cache(&self) {
        let partitions = self.partitions.borrow();
        let each = self.broker.cache_bytes() / partitions.len().max(1);
        for partition in partitions.values() {
            partition.log.borrow_mut().set_cache_limit(each);
        }
    }

    /// Stops accepting connections and wakes long polls.
    pub fn stop_serving(&self) {
        self.stopping.set(true);
        self.stop_event.notify();
    }

    /// Lets the shard's main task return, ending its executor.
    pub fn request_exit(&self) {
        self.exit_requested.set(true);
        self.exit_event.notify();
    }

    /// Waits until [`Shard::request_exit`].
    pub async fn wait_for_exit(&self) {
        loop {
            let listener = self.exit_event.listen();
            if self.exit_requested.get() {
                return;
            }
            listener.await;
        }
    }

    /// Deletes closed segments past retention and forgets idle producers, on every partition
    /// of this shard, every `log.retention.check.interval.ms`.
    pub async fn retention_loop(self: Rc<Self>) {
        let interval = std::time::Duration::from_millis(self.broker.retention_check_interval_ms());
        let expiration = self.broker.producer_id_expiration_ms();
        loop {
            let stopped = self.stop_event.listen();
            if crate::event::listen_with_timeout(stopped, interval).await || self.stopping.get() {
                return;
            }
            let now = crate::event::now_ms();
            for partition in self.partitions() {
                let deleted = partition.apply_retention(now).await;
                ShardMetrics::add(&self.metrics.retention_segments_deleted, deleted as u64);
                partition.expire_producers(now, expiration);
            }
        }
    }

    /// Compacts this shard's `cleanup.policy=compact` partitions every `log.cleaner.backoff.ms`.
    /// Spawned into the shard's cleaner task queue (`weir.cleaner.shares`), so request handling
    /// keeps its share of the core while a pass runs.
    pub async fn cleaner_loop(self: Rc<Self>) {
        let interval = std::time::Duration::from_millis(self.broker.cleaner_backoff_ms());
        let options = crate::storage::cleaner::CleanerOptions {
            dedupe_buffer_bytes: self.broker.cleaner_dedupe_buffer_bytes(),
            throttle: Rc::new(crate::storage::cleaner::IoThrottle::new(
                self.broker.cleaner_io_max_bytes_per_second(),
            )),
            ..Default::default()
        };
        tracing::info!(
            "shard {}: log cleaner every {} ms, dedupe buffer {} bytes",
            self.id,
            interval.as_millis(),
            options.dedupe_buffer_bytes
        );
        loop {
            let stopped = self.stop_event.listen();
            if crate::event::listen_with_timeout(stopped, interval).await || self.stopping.get() {
                return;
            }
            let mut max_ratio: f64 = 0.0;
            for partition in self.partitions() {
                if !partition.config().cleanup_compact || self.stopping.get() {
                    continue;
                }
                match partition.clean(crate::event::now_ms(), &options).await {
                    Ok(stats) => {
                        if stats.ran {
                            tracing::info!(
                                "compacted {}-{}: dirty ratio {:.2}, {} segments rewritten, \
                                 {} records removed, {} bytes read, {} bytes written",
                                partition.topic,
                                partition.index,
                                stats.dirty_ratio,
                                stats.segments_cleaned,
                                stats.records_removed,
                                stats.bytes_read,
                                stats.bytes_written
                            );
                        }
                        max_ratio = max_ratio.max(stats.dirty_ratio);
                        let m = &self.metrics;
                        ShardMetrics::add(&m.cleaner_runs, stats.ran as u64);
                        ShardMetrics::add(&m.cleaner_bytes_read, stats.bytes_read);
                        ShardMetrics::add(&m.cleaner_bytes_written, stats.bytes_written);
                        ShardMetrics::add(&m.cleaner_segments_cleaned, stats.segments_cleaned);
                        ShardMetrics::add(&m.cleaner_records_removed, stats.records_removed);
                    }
                    Err(error) => tracing::warn!(
                        "cleaning {}-{} failed (retried next pass): {error}",
                        partition.topic,
                        partition.index
                    ),
                }
            }
            self.metrics.cleaner_max_dirty_ratio.set(max_ratio);
        }
    }

    /// Clean shutdown of this shard's partitions: flush, seal indexes, snapshot producers.
    pub async fn close_partitions(&self) {
        self.flusher.stop();
        let partitions = self.partitions();
        let closes = partitions.iter().map(|p| async move {
            if let Err(error) = p.close().await {
                tracing::error!("closing {}-{}: {error}", p.topic, p.index);
            }
        });
        futures::future::join_all(closes).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_a_topics_partitions_over_shards() {
        for shards in 1..=8 {
            let mut counts = vec![0; shards];
            for p in 0..(shards as i32 * 4) {
                counts[owner_of("orders", p, shards)] += 1;
            }
            assert!(counts.iter().all(|&c| c == 4), "{counts:?}");
        }
        assert_eq!(owner_of("a", 0, 2), owner_of("a", 0, 2));
    }
}
