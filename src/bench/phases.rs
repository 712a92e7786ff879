//! The three workloads as measured phases: produce, consume and end-to-end. Each starts its
//! client threads, waits out the warm-up, takes a snapshot (client counters, broker and client
//! CPU, machine CPU, broker counters), waits for the goal, takes a second snapshot, stops and
//! joins the threads, and turns the two snapshots and the merged histograms into a
//! [`PhaseResult`]. Everything between the snapshots is the measurement window.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::client::{
    self, ClientOptions, ConsumerSpec, LiveCounters, ProducerSpec, ProducerThread,
};
use super::cpu::{self, MachineCpu, ProcessCpu};
use super::metrics_scrape::{self, BrokerCounters};
use super::progress::{Progress, ProgressGoal};
use super::report::{latency_histogram, LatencySummary, PhaseKind, PhaseResult};
use super::units::{mb_per_second, Acks, Rate};

/// How often the driver checks on its threads while waiting.
const WAIT_TICK: Duration = Duration::from_millis(20);
/// How long e2e consumers get to catch up with the producers after the window.
const E2E_DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Time e2e consumers get to connect and start fetching before producers start.
const E2E_CONSUMER_SETTLE: Duration = Duration::from_secs(1);

/// Where to read broker CPU and counters from (both optional).
#[derive(Debug, Clone, Default)]
pub struct Probes {
    pub broker_pid: Option<u32>,
    pub broker_admin: Option<SocketAddr>,
}

/// When a phase ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// This many records in total (all threads), then stop.
    Records(u64),
    /// Measure for this long after the warm-up.
    Duration(Duration),
}

pub(super) struct Snapshot {
    at: Instant,
    records: u64,
    bytes: u64,
    broker: Option<ProcessCpu>,
    client: ProcessCpu,
    machine: Option<MachineCpu>,
    counters: Option<BrokerCounters>,
}

impl Probes {
    pub(super) fn snapshot(&self, live: &LiveCounters) -> Snapshot {
        let (records, bytes) = live.load();
        Snapshot {
            at: Instant::now(),
            records,
            bytes,
            broker: self.broker_pid.and_then(|pid| cpu::read_process(pid).ok()),
            client: cpu::read_process(std::process::id()).unwrap_or_default(),
            machine: cpu::read_machine().ok(),
            counters: self
                .broker_admin
                .and_then(|admin| metrics_scrape::scrape(admin).ok()),
        }
    }
}

/// The parts of a result that are not read from the snapshots.
pub(super) struct PhaseFacts {
    pub(super) name: String,
    pub(super) kind: PhaseKind,
    pub(super) acks: Option<Acks>,
    pub(super) topic: String,
    pub(super) latency: Histogram<u64>,
    pub(super) ack_latency: Option<Histogram<u64>>,
    pub(super) errors: u64,
    pub(super) settings: Vec<(&'static str, String)>,
    pub(super) notes: Vec<String>,
}

pub(super) fn result(
    facts: PhaseFacts,
    probes: &Probes,
    a: &Snapshot,
    b: &Snapshot,
) -> PhaseResult {
    let seconds = b.at.duration_since(a.at).as_secs_f64();
    let records = b.records - a.records;
    let bytes = b.bytes - a.bytes;
    let broker_cpu = match (&a.broker, &b.broker) {
        (Some(a), Some(b)) => Some(b.since(a)),
        _ => None,
    };
    let client_cpu = b.client.since(&a.client);
    let mut notes = facts.notes;
    if probes.broker_pid.is_none() {
        notes.push("broker CPU not measured: pass --broker-pid or --spawn-broker".into());
    }
    if let Some(ack) = facts
        .ack_latency
        .as_ref()
        .and_then(LatencySummary::from_histogram)
    {
        notes.push(format!(
            "produce ack latency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            ack.p50_us / 1e3,
            ack.p99_us / 1e3,
            ack.p999_us / 1e3,
            ack.max_us / 1e3
        ));
    }
    PhaseResult {
        name: facts.name,
        kind: facts.kind,
        acks: facts.acks,
        topic: facts.topic,
        records,
        payload_bytes: bytes,
        seconds,
        mb_per_second: mb_per_second(bytes, seconds),
        records_per_second: if seconds > 0.0 {
            records as f64 / seconds
        } else {
            0.0
        },
        latency: LatencySummary::from_histogram(&facts.latency),
        errors: facts.errors,
        broker_cpu_seconds_per_gb: broker_cpu
            .and_then(|c| cpu::cpu_seconds_per_gb(c.total_seconds(), bytes)),
        broker_cpu,
        client_cpu_seconds_per_gb: cpu::cpu_seconds_per_gb(client_cpu.total_seconds(), bytes),
        client_cpu,
        machine_busy_share: match (&a.machine, &b.machine) {
            (Some(a), Some(b)) => b.busy_share_since(a),
            _ => 0.0,
        },
        broker_counters: match (&a.counters, &b.counters) {
            (Some(a), Some(b)) => Some(b.since(a)),
            _ => None,
        },
        client_settings: facts
            .settings
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        transactions: None,
        notes,
    }
}

/// Waits until `deadline`, returning early (false) if any thread finished.
fn sleep_until(deadline: Instant, threads: &[JoinHandle<Result<Histogram<u64>, String>>]) -> bool {
    while Instant::now() < deadline {
        if threads.iter().any(JoinHandle::is_finished) {
            return false;
        }
        std::thread::sleep(WAIT_TICK.min(deadline.saturating_duration_since(Instant::now())));
    }
    true
}

/// Joins threads and merges their histograms; the first error wins.
pub(super) fn join_merge(
    threads: Vec<JoinHandle<Result<Histogram<u64>, String>>>,
) -> Result<Histogram<u64>, String> {
    let mut merged = latency_histogram();
    let mut first_error = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(histogram)) => {
                let _ = merged.add(&histogram);
            }
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(_) => {
                first_error.get_or_insert("a load generator thread panicked".to_string());
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(merged),
    }
}

/// How a produce workload generated its load, for the notes.
fn workload_note(workload: &ProduceWorkload) -> String {
    let how = if workload.producer.round_robin {
        "round-robin, set by the bench record by record"
    } else {
        "librdkafka's partitioner (sticky for null keys)"
    };
    format!(
        "{} producer thread(s), {} B records, partitioning: {how}",
        workload.producers, workload.producer.record_bytes
    )
}

/// Splits `total` into `parts` shares that differ by at most one.
pub fn split_quota(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts.max(1) as u64;
    total / parts + u64::from((index as u64) < total % parts)
}

/// A produce phase.
#[derive(Debug, Clone)]
pub struct ProduceWorkload {
    pub name: String,
    pub producer: ProducerSpec,
    pub acks: Acks,
    pub producers: usize,
    pub goal: Goal,
    pub warmup: Duration,
}

fn spawn_producers(
    client: &ClientOptions,
    workload: &ProduceWorkload,
    started: Instant,
    record_from: Duration,
    live: &Arc<LiveCounters>,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<Result<Histogram<u64>, String>>> {
    (0..workload.producers)
        .map(|index| {
            let mut spec = workload.producer.clone();
            if let Goal::Records(total) = workload.goal {
                spec.records = Some(split_quota(total, workload.producers, index));
            }
            let (client, live, stop) = (client.clone(), live.clone(), stop.clone());
            let count = workload.producers;
            std::thread::Builder::new()
                .name(format!("bench-producer-{index}"))
                .spawn(move || {
                    let thread = ProducerThread {
                        index,
                        count,
                        started,
                        record_from,
                        counters: live,
                    };
                    client::run_producer(&client, &spec, thread, &stop)
                })
                .expect("spawning a producer thread")
        })
        .collect()
}

/// Runs a produce phase and measures acknowledged throughput and ack latency.
pub fn produce(
    client: &ClientOptions,
    probes: &Probes,
    workload: &ProduceWorkload,
) -> Result<PhaseResult, String> {
    let live = Arc::new(LiveCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let warmup = match workload.goal {
        Goal::Duration(_) => workload.warmup,
        Goal::Records(_) => Duration::ZERO,
    };
    let start_snapshot = probes.snapshot(&live);
    let started = Instant::now();
    let threads = spawn_producers(client, workload, started, warmup, &live, &stop);
    let progress = progress_for(&workload.name, workload.goal, warmup, &live);
    let (a, b, threads) = measure_window(probes, &live, started, warmup, workload.goal, threads);
    let a = a.unwrap_or(start_snapshot);
    stop.store(true, Ordering::Relaxed);
    let histogram = join_merge(threads);
    let b = match b {
        Some(b) => b,
        None => probes.snapshot(&live),
    };
    progress.finish();
    let histogram = histogram?;
    let mut notes = live.first_errors();
    notes.push(workload_note(workload));
    if let Rate::BytesPerSecond(_) | Rate::RecordsPerSecond(_) = workload.producer.rate {
        notes.push(format!("offered rate {}", workload.producer.rate));
    }
    let facts = PhaseFacts {
        name: workload.name.clone(),
        kind: PhaseKind::Produce,
        acks: Some(workload.acks),
        topic: workload.producer.topic.clone(),
        latency: histogram,
        ack_latency: None,
        errors: live.errors.load(Ordering::Relaxed),
        settings: workload.producer.settings.clone(),
        notes,
    };
    Ok(result(facts, probes, &a, &b))
}

pub(super) type Threads = Vec<JoinHandle<Result<Histogram<u64>, String>>>;

/// Waits out the warm-up and the goal. Returns the window's start snapshot (`None`: take the
/// one from before the threads started), its end snapshot (`None` for a record goal: taken
/// after the threads are joined, so the final flush counts), and the threads.
pub(super) fn measure_window(
    probes: &Probes,
    live: &LiveCounters,
    started: Instant,
    warmup: Duration,
    goal: Goal,
    threads: Threads,
) -> (Option<Snapshot>, Option<Snapshot>, Threads) {
    let a = if warmup.is_zero() {
        None
    } else {
        sleep_until(started + warmup, &threads);
        Some(probes.snapshot(live))
    };
    match goal {
        Goal::Duration(duration) => {
            sleep_until(started + warmup + duration, &threads);
            (a, Some(probes.snapshot(live)), threads)
        }
        Goal::Records(_) => {
            while !threads.iter().all(JoinHandle::is_finished) {
                std::thread::sleep(WAIT_TICK);
            }
            (a, None, threads)
        }
    }
}

pub(super) fn progress_for(
    name: &str,
    goal: Goal,
    warmup: Duration,
    live: &Arc<LiveCounters>,
) -> Progress {
    let progress_goal = match goal {
        Goal::Records(n) => ProgressGoal::Records(n),
        Goal::Duration(d) => ProgressGoal::Duration(d + warmup),
    };
    let live = live.clone();
    Progress::start(name, progress_goal, move || live.load())
}

/// Where a consume phase reads.
#[derive(Debug, Clone)]
pub struct ConsumeWorkload {
    pub name: String,
    pub topic: String,
    pub partitions: i32,
    pub consumers: usize,
    pub settings: Vec<(&'static str, String)>,
    /// `None`: everything between the low and high watermarks at the start.
    pub goal: Option<Goal>,
}

/// Reads the topic from its start and measures fetch throughput.
pub fn consume(
    client: &ClientOptions,
    probes: &Probes,
    workload: &ConsumeWorkload,
) -> Result<PhaseResult, String> {
    let marks = client::watermarks(client, &workload.topic, workload.partitions)?;
    let available: u64 = marks
        .iter()
        .map(|(low, high)| (high - low).max(0) as u64)
        .sum();
    if available == 0 {
        return Err(format!(
            "topic '{}' is empty: produce to it first (weir bench produce --topic {}), or pass \
             --preload",
            workload.topic, workload.topic
        ));
    }
    let consumers = workload
        .consumers
        .clamp(1, workload.partitions.max(1) as usize);
    let goal = match workload.goal {
        None => Goal::Records(available),
        Some(Goal::Records(n)) => Goal::Records(n.min(available)),
        Some(goal) => goal,
    };
    let live = Arc::new(LiveCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let specs: Vec<ConsumerSpec> = (0..consumers)
        .map(|index| {
            let assignment: Vec<(i32, i64)> = marks
                .iter()
                .enumerate()
                .filter(|(p, _)| p % consumers == index)
                .map(|(p, &(low, _))| (p as i32, low))
                .collect();
            let mine: u64 = marks
                .iter()
                .enumerate()
                .filter(|(p, _)| p % consumers == index)
                .map(|(_, &(low, high))| (high - low).max(0) as u64)
                .sum();
            let records = match goal {
                Goal::Records(n) if n >= available => Some(mine),
                Goal::Records(n) => Some(split_quota(n, consumers, index).min(mine)),
                Goal::Duration(_) => None,
            };
            ConsumerSpec {
                topic: workload.topic.clone(),
                assignment,
                settings: workload.settings.clone(),
                records,
                until_end: workload.goal.is_none(),
                e2e_from_unix_nanos: None,
            }
        })
        .collect();
    let a = probes.snapshot(&live);
    let started = Instant::now();
    let threads: Threads = specs
        .into_iter()
        .enumerate()
        .map(|(index, spec)| {
            let (client, live, stop) = (client.clone(), live.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("bench-consumer-{index}"))
                .spawn(move || client::run_consumer(&client, &spec, live, &stop))
                .expect("spawning a consumer thread")
        })
        .collect();
    let progress = progress_for(&workload.name, goal, Duration::ZERO, &live);
    let (_, b, threads) = measure_window(probes, &live, started, Duration::ZERO, goal, threads);
    stop.store(true, Ordering::Relaxed);
    let joined = join_merge(threads);
    let b = b.unwrap_or_else(|| probes.snapshot(&live));
    progress.finish();
    joined?;
    let mut notes = live.first_errors();
    notes.push(format!(
        "{available} records between the watermarks at the start; read from the low watermark"
    ));
    let facts = PhaseFacts {
        name: workload.name.clone(),
        kind: PhaseKind::Consume,
        acks: None,
        topic: workload.topic.clone(),
        latency: latency_histogram(),
        ack_latency: None,
        errors: live.errors.load(Ordering::Relaxed),
        settings: workload.settings.clone(),
        notes,
    };
    Ok(result(facts, probes, &a, &b))
}

/// An end-to-end phase: producers at a fixed rate, consumers reading the new records.
#[derive(Debug, Clone)]
pub struct E2eWorkload {
    pub produce: ProduceWorkload,
    pub consumers: usize,
    pub consumer_settings: Vec<(&'static str, String)>,
}

/// Produces at the offered rate while consumers tail the topic; measures the latency from the
/// timestamp in each record to its arrival at a consumer.
pub fn e2e(
    client: &ClientOptions,
    probes: &Probes,
    workload: &E2eWorkload,
) -> Result<PhaseResult, String> {
    let produce = &workload.produce;
    let Goal::Duration(duration) = produce.goal else {
        return Err("e2e runs for a --duration".into());
    };
    let topic = &produce.producer.topic;
    let partitions = produce.producer.partitions;
    let marks = client::watermarks(client, topic, partitions)?;
    let consumers = workload.consumers.clamp(1, partitions.max(1) as usize);
    let e2e_from = Arc::new(AtomicU64::new(u64::MAX));
    let consumed = Arc::new(LiveCounters::default());
    let consumer_stop = Arc::new(AtomicBool::new(false));
    let consumer_threads: Threads = (0..consumers)
        .map(|index| {
            let spec = ConsumerSpec {
                topic: topic.clone(),
                assignment: marks
                    .iter()
                    .enumerate()
                    .filter(|(p, _)| p % consumers == index)
                    .map(|(p, &(_, high))| (p as i32, high))
                    .collect(),
                settings: workload.consumer_settings.clone(),
                records: None,
                until_end: false,
                e2e_from_unix_nanos: Some(e2e_from.clone()),
            };
            let (client, live, stop) = (client.clone(), consumed.clone(), consumer_stop.clone());
            std::thread::Builder::new()
                .name(format!("bench-e2e-consumer-{index}"))
                .spawn(move || client::run_consumer(&client, &spec, live, &stop))
                .expect("spawning a consumer thread")
        })
        .collect();
    std::thread::sleep(E2E_CONSUMER_SETTLE);

    let acked = Arc::new(LiveCounters::default());
    let producer_stop = Arc::new(AtomicBool::new(false));
    let warmup = produce.warmup;
    let started = Instant::now();
    e2e_from.store(
        client::unix_nanos() + warmup.as_nanos() as u64,
        Ordering::Relaxed,
    );
    let producer_threads =
        spawn_producers(client, produce, started, warmup, &acked, &producer_stop);
    let progress = progress_for(&produce.name, produce.goal, warmup, &consumed);
    let (a, b, producer_threads) = measure_window(
        probes,
        &consumed,
        started,
        warmup,
        produce.goal,
        producer_threads,
    );
    producer_stop.store(true, Ordering::Relaxed);
    let ack_histogram = join_merge(producer_threads);
    let produced = acked.records.load(Ordering::Relaxed);
    let drain_deadline = Instant::now() + E2E_DRAIN_TIMEOUT;
    while consumed.records.load(Ordering::Relaxed) < produced && Instant::now() < drain_deadline {
        std::thread::sleep(WAIT_TICK);
    }
    let drained = consumed.records.load(Ordering::Relaxed);
    consumer_stop.store(true, Ordering::Relaxed);
    let e2e_histogram = join_merge(consumer_threads);
    progress.finish();
    let ack_histogram = ack_histogram?;
    let e2e_histogram = e2e_histogram?;
    let (a, b) = (
        a.unwrap_or_else(|| probes.snapshot(&consumed)),
        b.expect("a duration goal ends with a snapshot"),
    );
    let mut notes = acked.first_errors();
    notes.extend(consumed.first_errors());
    notes.push(workload_note(produce));
    notes.push(format!(
        "offered rate {}, {consumers} consumer thread(s)",
        produce.producer.rate
    ));
    if drained < produced {
        notes.push(format!(
            "consumers received {drained} of {produced} acknowledged records within {} s of \
             the end",
            E2E_DRAIN_TIMEOUT.as_secs()
        ));
    }
    let _ = duration;
    let facts = PhaseFacts {
        name: produce.name.clone(),
        kind: PhaseKind::E2e,
        acks: Some(produce.acks),
        topic: topic.clone(),
        latency: e2e_histogram,
        ack_latency: Some(ack_histogram),
        errors: acked.errors.load(Ordering::Relaxed) + consumed.errors.load(Ordering::Relaxed),
        settings: produce
            .producer
            .settings
            .iter()
            .cloned()
            .chain(workload.consumer_settings.iter().cloned())
            .collect(),
        notes,
    };
    Ok(result(facts, probes, &a, &b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_split_evenly_and_add_up() {
        for (total, parts) in [(10u64, 3usize), (0, 2), (7, 7), (5, 8), (1_000_001, 4)] {
            let shares: Vec<u64> = (0..parts).map(|i| split_quota(total, parts, i)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total, "{shares:?}");
            let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(max - min <= 1, "{shares:?}");
        }
        assert_eq!(split_quota(5, 0, 0), 5);
    }
}
