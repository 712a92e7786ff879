//! The librdkafka side of `weir bench` (the `rdkafka` crate): topic setup, producer threads that
//! record acknowledgement latency, and consumer threads that count fetched bytes and, for e2e,
//! the latency from the timestamp a producer wrote into each record to its arrival.
//!
//! Each producer thread owns one `BaseProducer` and polls it itself, so delivery callbacks run
//! on that thread (no extra poll thread to schedule on a 2-core machine). Each consumer thread
//! owns one `BaseConsumer` with a static assignment (`assign`, no group rebalance) of every
//! n-th partition. Live counters are atomics the progress bar and the measurement window read;
//! histograms are merged when the threads finish.
//!
//! Record layout: the value is `record_size` bytes; its first 8 bytes are the send time in
//! nanoseconds since the Unix epoch (little endian), the rest is incompressible noise. Keys
//! are null.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::rate::RateLimiter;
use super::report::latency_histogram;
use super::units::Rate;

/// Timeout of admin and metadata calls.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long producers may take to deliver what is queued when a phase ends.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// Token bucket burst of a rate-limited producer.
const RATE_BURST: Duration = Duration::from_millis(5);
/// Shortest blocking poll of a rate-limited producer (librdkafka's resolution).
const MIN_POLL_WAIT: Duration = Duration::from_millis(1);
/// Delivery callbacks are served every this many sends (and whenever the queue is full).
const POLL_EVERY_SENDS: u64 = 64;
/// Client errors kept for the report.
const ERRORS_KEPT: usize = 5;

/// Where the broker is and the librdkafka settings every client gets.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub bootstrap: String,
    /// Applied after the bench's own settings, so they win.
    pub settings: Vec<(String, String)>,
}

impl ClientOptions {
    pub(super) fn config(&self, own: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("broker.address.family", "v4")
            .set_log_level(RDKafkaLogLevel::Error);
        for (name, value) in own {
            config.set(*name, value);
        }
        for (name, value) in &self.settings {
            config.set(name, value);
            if name == "debug" {
                // librdkafka's debug contexts log at level 7; let them through (to the
                // `librdkafka` tracing target: WEIR_LOG=librdkafka=debug).
                config.set_log_level(RDKafkaLogLevel::Debug);
            }
        }
        config
    }
}

/// Counters shared by a phase's threads.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl LiveCounters {
    pub fn load(&self) -> (u64, u64) {
        (
            self.records.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    pub(super) fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.first_errors.lock().expect("error list lock");
        if kept.len() < ERRORS_KEPT {
            kept.push(message);
        }
    }

    pub fn first_errors(&self) -> Vec<String> {
        self.first_errors.lock().expect("error list lock").clone()
    }
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME, comparable across processes).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Creates `topic` with `partitions` (replication 1, `configs`) unless it exists; an existing
/// topic must have at least that many partitions. Waits until every partition has a leader.
pub fn ensure_topic(
    client: &ClientOptions,
    topic: &str,
    partitions: i32,
    configs: &[(String, String)],
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client
        .config(&[])
        .create()
        .map_err(|e| format!("admin client for {}: {e}", client.bootstrap))?;
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (name, value) in configs {
        new_topic = new_topic.set(name, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = futures::executor::block_on(admin.create_topics(&[new_topic], &options))
        .map_err(|e| format!("creating topic '{topic}' on {}: {e}", client.bootstrap))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("creating topic '{name}': {code}")),
        }
    }
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
            .map_err(|e| format!("metadata of '{topic}': {e}"))?;
        let led = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().iter().filter(|p| p.leader() >= 0).count())
            .unwrap_or(0);
        if led >= partitions as usize {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "topic '{topic}' has {led} partitions with a leader, {partitions} wanted: \
                 choose another --topic or --partitions"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deletes `topic` (the suite cleans up between repeats); a missing topic is fine.
pub fn delete_topic(client: &ClientOptions, topic: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client
        .config(&[])
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = futures::executor::block_on(admin.delete_topics(&[topic], &options))
        .map_err(|e| format!("deleting topic '{topic}': {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => return Err(format!("deleting topic '{name}': {code}")),
        }
    }
    Ok(())
}

/// Low and high watermark of every partition of `topic`.
pub fn watermarks(
    client: &ClientOptions,
    topic: &str,
    partitions: i32,
) -> Result<Vec<(i64, i64)>, String> {
    let consumer: BaseConsumer = client
        .config(&[("group.id", "weir-bench-watermarks".into())])
        .create()
        .map_err(|e| format!("consumer for watermarks: {e}"))?;
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, ADMIN_TIMEOUT)
                .map_err(|e| format!("watermarks of {topic}-{p}: {e}"))
        })
        .collect()
}

/// What one producer thread does.
#[derive(Debug, Clone)]
pub struct ProducerSpec {
    pub topic: String,
    pub partitions: i32,
    pub record_bytes: usize,
    /// librdkafka settings of this workload (acks, linger, compression, …).
    pub settings: Vec<(&'static str, String)>,
    /// Explicit round-robin partitioning (else librdkafka's partitioner for null keys).
    pub round_robin: bool,
    /// Distinct keys to cycle through; `None`: null keys.
    pub keys: Option<u64>,
    pub rate: Rate,
    /// Records this thread sends; `None`: until `stop`.
    pub records: Option<u64>,
}

/// Delivery accounting of one producer: shared with its callbacks.
struct DeliveryState {
    counters: Arc<LiveCounters>,
    histogram: Mutex<Histogram<u64>>,
    started: Instant,
    /// Sends before this many nanoseconds after `started` are not recorded (warm-up).
    record_from_nanos: u64,
    record_bytes: u64,
}

struct BenchProducerContext {
    state: Arc<DeliveryState>,
}

impl ClientContext for BenchProducerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.state
            .counters
            .error(format!("producer client: {error}: {reason}"));
    }
}

impl ProducerContext for BenchProducerContext {
    /// Nanoseconds after `started` at which the record was handed to librdkafka.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_nanos: usize) {
        let state = &self.state;
        match result {
            Ok(_) => {
                state.counters.records.fetch_add(1, Ordering::Relaxed);
                state
                    .counters
                    .bytes
                    .fetch_add(state.record_bytes, Ordering::Relaxed);
                let sent = sent_at_nanos as u64;
                if sent >= state.record_from_nanos {
                    let now = state.started.elapsed().as_nanos() as u64;
                    let micros = (now.saturating_sub(sent) / 1000).max(1);
                    let _ = state
                        .histogram
                        .lock()
                        .expect("histogram lock")
                        .record(micros);
                }
            }
            Err((error, _)) => state.counters.error(format!("delivery: {error}")),
        }
    }
}

/// Where one producer thread stands among its phase's threads.
#[derive(Debug, Clone)]
pub struct ProducerThread {
    pub index: usize,
    pub count: usize,
    /// The phase's clock.
    pub started: Instant,
    /// Acknowledgements of records sent before this (since `started`) are not recorded.
    pub record_from: Duration,
    pub counters: Arc<LiveCounters>,
}

/// Runs one producer until its record quota is sent or `stop` is set, then flushes. Returns the
/// histogram of acknowledgement latencies (µs) of records sent after `record_from`.
pub fn run_producer(
    client: &ClientOptions,
    spec: &ProducerSpec,
    thread: ProducerThread,
    stop: &AtomicBool,
) -> Result<Histogram<u64>, String> {
    let ProducerThread {
        index: thread_index,
        count: thread_count,
        started,
        record_from,
        counters,
    } = thread;
    let state = Arc::new(DeliveryState {
        counters: counters.clone(),
        histogram: Mutex::new(latency_histogram()),
        started,
        record_from_nanos: record_from.as_nanos() as u64,
        record_bytes: spec.record_bytes as u64,
    });
    let producer: BaseProducer<BenchProducerContext> = client
        .config(&spec.settings)
        .create_with_context(BenchProducerContext {
            state: state.clone(),
        })
        .map_err(|e| format!("creating a producer: {e}"))?;
    let mut limiter = spec
        .rate
        .records_per_second(spec.record_bytes as u64)
        .map(|r| RateLimiter::new(r / thread_count as f64, RATE_BURST));
    let mut payload = noise(spec.record_bytes, thread_index as u64);
    let mut sent: u64 = 0;
    let mut partition = thread_index as i32 % spec.partitions.max(1);
    let limiter_started = Instant::now();
    while !stop.load(Ordering::Relaxed) && spec.records.is_none_or(|quota| sent < quota) {
        if let Some(limiter) = limiter.as_mut() {
            let wait = limiter.acquire(limiter_started.elapsed(), 1.0);
            if !wait.is_zero() {
                // rd_kafka_poll takes whole milliseconds: a shorter timeout is 0 and the loop
                // would spin a core. It returns early for delivery reports, so acks are still
                // timed promptly; the limiter's burst absorbs the coarser pacing.
                producer.poll(wait.max(MIN_POLL_WAIT));
                continue;
            }
        }
        if payload.len() >= 8 {
            payload[..8].copy_from_slice(&unix_nanos().to_le_bytes());
        }
        let opaque = started.elapsed().as_nanos() as usize;
        let key = spec.keys.map(|keys| {
            let n = (sent * thread_count as u64 + thread_index as u64) % keys.max(1);
            format!("key-{n:08}")
        });
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&spec.topic, opaque)
            .payload(&payload[..]);
        if let Some(key) = &key {
            record = record.key(key.as_bytes());
        }
        if spec.round_robin {
            record = record.partition(partition);
            partition = (partition + 1) % spec.partitions.max(1);
        }
        let mut pending = record;
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    producer.poll(Duration::from_millis(1));
                    pending = back;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                Err((error, _)) => return Err(format!("producing to '{}': {error}", spec.topic)),
            }
        }
        sent += 1;
        if sent % POLL_EVERY_SENDS == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(FLUSH_TIMEOUT)
        .map_err(|e| format!("flushing the producer: {e}"))?;
    drop(producer);
    let histogram = state.histogram.lock().expect("histogram lock").clone();
    Ok(histogram)
}

/// Deterministic incompressible bytes (xorshift), different per thread.
pub fn noise(length: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut out = Vec::with_capacity(length + 8);
    while out.len() < length {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(length);
    out
}

/// What one consumer thread does.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub topic: String,
    /// (partition, first offset) this consumer reads.
    pub assignment: Vec<(i32, i64)>,
    pub settings: Vec<(&'static str, String)>,
    /// Stop after this many records (this consumer's share); `None`: until `stop`.
    pub records: Option<u64>,
    /// Also stop once every assigned partition reached its end (librdkafka's partition EOF:
    /// the high watermark, or the last stable offset under read_committed). Needed for
    /// transactional data, whose markers fill offsets that deliver no record.
    pub until_end: bool,
    /// Record e2e latency of records whose embedded timestamp is at or after this (Unix ns;
    /// set by the driver once the warm-up ends, `u64::MAX` until then).
    pub e2e_from_unix_nanos: Option<Arc<AtomicU64>>,
}

/// A consumer context that keeps partition-EOF events (asked for by `until_end`) out of the
/// error log: they are how a drain ends, not errors.
struct BenchConsumerContext;

impl ClientContext for BenchConsumerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for BenchConsumerContext {}

/// Consumes until the quota or `stop`. Returns the e2e latency histogram (µs), empty unless
/// `e2e_from_unix_nanos` was given.
pub fn run_consumer(
    client: &ClientOptions,
    spec: &ConsumerSpec,
    counters: Arc<LiveCounters>,
    stop: &AtomicBool,
) -> Result<Histogram<u64>, String> {
    let mut own = vec![
        ("group.id", format!("weir-bench-{}", std::process::id())),
        ("enable.auto.commit", "false".to_string()),
        ("enable.auto.offset.store", "false".to_string()),
        ("enable.partition.eof", "false".to_string()),
    ];
    if spec.until_end {
        own.push(("enable.partition.eof", "true".to_string()));
    }
    own.extend(spec.settings.iter().cloned());
    let consumer: BaseConsumer<BenchConsumerContext> = client
        .config(&own)
        .create_with_context(BenchConsumerContext)
        .map_err(|e| format!("creating a consumer: {e}"))?;
    let mut assignment = TopicPartitionList::new();
    for &(partition, offset) in &spec.assignment {
        assignment
            .add_partition_offset(&spec.topic, partition, Offset::Offset(offset))
            .map_err(|e| format!("assigning {}-{partition}: {e}", spec.topic))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("assigning {}: {e}", spec.topic))?;
    let mut histogram = latency_histogram();
    let mut received: u64 = 0;
    let mut at_end: Vec<i32> = Vec::new();
    while !stop.load(Ordering::Relaxed) && spec.records.is_none_or(|quota| received < quota) {
        if spec.until_end && at_end.len() >= spec.assignment.len() {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let payload = message.payload().unwrap_or_default();
                let bytes = payload.len() + message.key().map_or(0, <[u8]>::len);
                received += 1;
                counters.records.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                if let (Some(from), Some(stamp)) = (&spec.e2e_from_unix_nanos, payload.get(..8)) {
                    let sent = u64::from_le_bytes(stamp.try_into().expect("8 bytes"));
                    if sent >= from.load(Ordering::Relaxed) {
                        let micros = (unix_nanos().saturating_sub(sent) / 1000).max(1);
                        let _ = histogram.record(micros);
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) if !at_end.contains(&partition) => {
                at_end.push(partition);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(error)) => counters.error(format!("consumer: {error}")),
            None => {}
        }
    }
    Ok(histogram)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_has_the_length_asked_and_differs_per_seed() {
        let a = noise(1000, 1);
        assert_eq!(a.len(), 1000);
        assert_ne!(a, noise(1000, 2));
        assert_eq!(a, noise(1000, 1));
        assert_eq!(noise(3, 0).len(), 3);
    }

    #[test]
    fn a_debug_client_setting_lets_librdkafka_debug_lines_through() {
        let options = |settings: Vec<(String, String)>| ClientOptions {
            bootstrap: "127.0.0.1:1".into(),
            settings,
        };
        let debug = options(vec![("debug".into(), "eos".into())]).config(&[]);
        assert!(matches!(debug.log_level, RDKafkaLogLevel::Debug));
        assert_eq!(debug.get("debug"), Some("eos"));
        let quiet = options(vec![("linger.ms".into(), "0".into())]).config(&[]);
        assert!(matches!(quiet.log_level, RDKafkaLogLevel::Error));
    }

    #[test]
    fn unix_nanos_is_after_2020() {
        assert!(unix_nanos() > 1_577_836_800_000_000_000);
    }
}
