//! `weir bench transactions`: librdkafka transactional producers, each with its own
//! `transactional.id` on its own thread, looping begin → N records → commit (or abort, with
//! `--abort-every`). Reports committed transactions per second, committed records and MB/s,
//! the latency from `begin_transaction` to `commit_transaction` returning, and the broker's
//! CPU-seconds per GB of committed payload. The same producer preloads transactional data for
//! `weir bench consume --preload-records-per-txn`.
//!
//! What one transaction costs the broker (what bounds the figures): AddPartitionsToTxn (a
//! durable `__transaction_state` append), the produce requests (acks=all: fdatasync), EndTxn
//! (another durable append), then one marker per partition written in the background; the
//! transactional id takes no new partitions until its markers are written
//! (CONCURRENT_TRANSACTIONS, which librdkafka retries after a backoff).
//!
//! Pure parts (arguments, the abort schedule, quotas in whole transactions, the figures) are
//! always built; the driver needs the `bench` feature.

use std::time::Duration;

use super::units::{parse_bytes, parse_duration};
use super::{BrokerArgs, Partitioning, ReportArgs, TopicArgs};
use crate::bench::report::TransactionFigures;

/// `weir bench transactions`.
#[derive(clap::Args, Debug, Clone)]
pub struct TransactionsArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub topic: TopicArgs,
    /// Records produced in each transaction.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub records_per_txn: u64,
    /// Value size of each record.
    #[arg(long, value_parser = parse_bytes, default_value = "1KiB")]
    pub record_size: u64,
    /// Producer threads, each a librdkafka producer with its own transactional.id.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub producers: u64,
    /// Stop after this many transactions in total (instead of --duration).
    #[arg(long, conflicts_with = "duration")]
    pub transactions: Option<u64>,
    /// Measure for this long after the warm-up [default: 20s].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Run this long before measuring (duration runs only).
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub warmup: Duration,
    /// Abort every N-th transaction of each producer instead of committing it [default: never].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub abort_every: Option<u64>,
    /// librdkafka linger.ms (commit_transaction flushes at once regardless).
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// librdkafka transaction.timeout.ms.
    #[arg(long, default_value_t = 60_000)]
    pub transaction_timeout_ms: u64,
    /// round-robin: each transaction's records rotate over the partitions (10 records touch
    /// 10 partitions); client: librdkafka's sticky partitioner (usually one partition per
    /// transaction).
    #[arg(long, value_enum, default_value_t = Partitioning::RoundRobin)]
    pub partitioning: Partitioning,
}

/// Whether transaction `index` (0-based, per producer) is aborted under `--abort-every N`:
/// the N-th, 2N-th, … are.
pub fn aborts(index: u64, abort_every: Option<u64>) -> bool {
    match abort_every {
        Some(n) if n > 0 => (index + 1) % n == 0,
        _ => false,
    }
}

/// Whole transactions that carry at least `records` records of `per_txn` each.
pub fn transactions_for_records(records: u64, per_txn: u64) -> u64 {
    records.div_ceil(per_txn.max(1))
}

/// The librdkafka settings of a transactional producer. `message.timeout.ms` stays below
/// `transaction.timeout.ms` (librdkafka refuses a larger one).
pub fn producer_settings(
    transactional_id: &str,
    linger_ms: u64,
    transaction_timeout_ms: u64,
) -> Vec<(&'static str, String)> {
    vec![
        ("transactional.id", transactional_id.to_string()),
        ("acks", "all".to_string()),
        ("linger.ms", linger_ms.to_string()),
        ("transaction.timeout.ms", transaction_timeout_ms.to_string()),
        (
            "message.timeout.ms",
            transaction_timeout_ms
                .saturating_sub(1000)
                .max(1000)
                .to_string(),
        ),
    ]
}

/// The figures of a window in which `records` committed records (`per_txn` each) and
/// `aborted` aborted transactions were counted over `seconds`.
pub fn figures(records: u64, aborted: u64, per_txn: u64, seconds: f64) -> TransactionFigures {
    let committed = records / per_txn.max(1);
    let rate = |n: u64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    TransactionFigures {
        records_per_transaction: per_txn,
        committed,
        aborted,
        committed_per_second: rate(committed),
        aborted_per_second: rate(aborted),
    }
}

#[cfg(feature = "bench")]
pub use driver::{preload, run_phase, TxnWorkload};

#[cfg(feature = "bench")]
mod driver {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use hdrhistogram::Histogram;
    use rdkafka::client::ClientContext;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

    use super::super::client::{self, ClientOptions, LiveCounters};
    use super::super::phases::{self, Goal, PhaseFacts, Probes, Threads};
    use super::super::report::{latency_histogram, PhaseKind, PhaseResult};
    use super::super::units::Acks;
    use super::{aborts, figures, producer_settings};

    /// Timeout of init, commit and abort (librdkafka retries inside it).
    const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(60);
    /// Retries of a commit that failed with a retriable error.
    const COMMIT_RETRIES: u32 = 5;

    /// A transactional produce phase.
    #[derive(Debug, Clone)]
    pub struct TxnWorkload {
        pub name: String,
        pub topic: String,
        pub partitions: i32,
        pub record_bytes: usize,
        pub records_per_txn: u64,
        pub producers: usize,
        /// `Records`: this many committed records in total, in whole transactions.
        pub goal: Goal,
        pub warmup: Duration,
        pub abort_every: Option<u64>,
        pub linger_ms: u64,
        pub transaction_timeout_ms: u64,
        pub round_robin: bool,
    }

    /// Counts delivery failures (they surface again as a failed commit).
    struct TxnContext {
        counters: Arc<LiveCounters>,
    }

    impl ClientContext for TxnContext {
        fn error(&self, error: KafkaError, reason: &str) {
            self.counters
                .error(format!("transactional producer: {error}: {reason}"));
        }
    }

    impl ProducerContext for TxnContext {
        type DeliveryOpaque = ();

        fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
            if let Err((error, _)) = result {
                self.counters
                    .error(format!("delivery in a transaction: {error}"));
            }
        }
    }

    /// What one producer thread needs besides the workload.
    struct TxnThread {
        index: usize,
        /// Transactions this thread runs; `None`: until `stop`.
        quota: Option<u64>,
        started: Instant,
        record_from: Duration,
        counters: Arc<LiveCounters>,
        aborted: Arc<AtomicU64>,
        transactional_id: String,
    }

    /// How a transaction ended.
    enum Outcome {
        Committed,
        Aborted,
    }

    fn send_all(
        producer: &BaseProducer<TxnContext>,
        workload: &TxnWorkload,
        payload: &mut [u8],
        partition: &mut i32,
    ) -> Result<(), KafkaError> {
        for _ in 0..workload.records_per_txn {
            if payload.len() >= 8 {
                payload[..8].copy_from_slice(&client::unix_nanos().to_le_bytes());
            }
            let mut pending = BaseRecord::<[u8], [u8], ()>::to(&workload.topic).payload(&*payload);
            if workload.round_robin {
                pending = pending.partition(*partition);
                *partition = (*partition + 1) % workload.partitions.max(1);
            }
            loop {
                match producer.send(pending) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        producer.poll(Duration::from_millis(1));
                        pending = back;
                    }
                    Err((error, _)) => return Err(error),
                }
            }
        }
        producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Aborts the open transaction. Its records are delivered first (flush serves the delivery
    /// reports, which librdkafka's abort needs served) so the log holds aborted data, as it does
    /// when an application aborts after sending; a flush failure still goes on to the abort.
    fn abort_transaction(producer: &BaseProducer<TxnContext>) -> Result<(), KafkaError> {
        let _ = producer.flush(TXN_CALL_TIMEOUT);
        producer.abort_transaction(TXN_CALL_TIMEOUT)
    }

    /// Commits, retrying retriable failures; aborts when the transaction must be aborted.
    /// `Err` only for a fatal error (the producer is unusable).
    fn commit(
        producer: &BaseProducer<TxnContext>,
        counters: &LiveCounters,
    ) -> Result<Outcome, String> {
        let mut attempts = 0;
        loop {
            let error = match producer.commit_transaction(TXN_CALL_TIMEOUT) {
                Ok(()) => return Ok(Outcome::Committed),
                Err(error) => error,
            };
            counters.error(format!("commit_transaction: {error}"));
            match &error {
                KafkaError::Transaction(e) if e.is_fatal() => {
                    return Err(format!("commit_transaction (fatal): {error}"))
                }
                KafkaError::Transaction(e) if e.is_retriable() && attempts < COMMIT_RETRIES => {
                    attempts += 1;
                }
                _ => {
                    abort_transaction(producer)
                        .map_err(|e| format!("abort after a failed commit ({error}): {e}"))?;
                    return Ok(Outcome::Aborted);
                }
            }
        }
    }

    /// One transactional producer: init, then begin → records → commit/abort until the quota
    /// or `stop`. Returns the begin → commit-returned histogram (µs) of committed transactions
    /// begun after `record_from`.
    fn run_producer(
        client: &ClientOptions,
        workload: &TxnWorkload,
        thread: TxnThread,
        stop: &AtomicBool,
    ) -> Result<Histogram<u64>, String> {
        let settings = producer_settings(
            &thread.transactional_id,
            workload.linger_ms,
            workload.transaction_timeout_ms,
        );
        let producer: BaseProducer<TxnContext> = client
            .config(&settings)
            .create_with_context(TxnContext {
                counters: thread.counters.clone(),
            })
            .map_err(|e| format!("creating a transactional producer: {e}"))?;
        producer
            .init_transactions(TXN_CALL_TIMEOUT)
            .map_err(|e| format!("init_transactions ({}): {e}", thread.transactional_id))?;
        let mut histogram = latency_histogram();
        let mut payload = client::noise(workload.record_bytes, thread.index as u64);
        let mut partition = thread.index as i32 % workload.partitions.max(1);
        let txn_bytes = workload.records_per_txn * workload.record_bytes as u64;
        let mut index: u64 = 0;
        while !stop.load(Ordering::Relaxed) && thread.quota.is_none_or(|quota| index < quota) {
            let begun = thread.started.elapsed();
            producer
                .begin_transaction()
                .map_err(|e| format!("begin_transaction: {e}"))?;
            let abort = aborts(index, workload.abort_every);
            let outcome = match send_all(&producer, workload, &mut payload, &mut partition) {
                Err(error) => {
                    thread
                        .counters
                        .error(format!("producing in a transaction: {error}"));
                    abort_transaction(&producer)
                        .map_err(|e| format!("abort after a failed send ({error}): {e}"))?;
                    Outcome::Aborted
                }
                Ok(()) if abort => {
                    abort_transaction(&producer).map_err(|e| format!("abort_transaction: {e}"))?;
                    Outcome::Aborted
                }
                Ok(()) => commit(&producer, &thread.counters)?,
            };
            match outcome {
                Outcome::Committed => {
                    let took = thread.started.elapsed().saturating_sub(begun);
                    if begun >= thread.record_from {
                        let _ = histogram.record((took.as_micros() as u64).max(1));
                    }
                    let counters = &thread.counters;
                    counters
                        .records
                        .fetch_add(workload.records_per_txn, Ordering::Relaxed);
                    counters.bytes.fetch_add(txn_bytes, Ordering::Relaxed);
                }
                Outcome::Aborted if begun >= thread.record_from => {
                    thread.aborted.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Aborted => {}
            }
            index += 1;
        }
        Ok(histogram)
    }

    fn spawn(
        client: &ClientOptions,
        workload: &TxnWorkload,
        started: Instant,
        record_from: Duration,
        counters: &Arc<LiveCounters>,
        aborted: &Arc<AtomicU64>,
        stop: &Arc<AtomicBool>,
    ) -> Threads {
        let run_id = format!("{}-{}", std::process::id(), super::super::unix_seconds());
        (0..workload.producers)
            .map(|index| {
                let quota = match workload.goal {
                    Goal::Records(records) => Some(phases::split_quota(
                        super::transactions_for_records(records, workload.records_per_txn),
                        workload.producers,
                        index,
                    )),
                    Goal::Duration(_) => None,
                };
                let thread = TxnThread {
                    index,
                    quota,
                    started,
                    record_from,
                    counters: counters.clone(),
                    aborted: aborted.clone(),
                    transactional_id: format!("weir-bench-txn-{run_id}-{index}"),
                };
                let (client, workload, stop) = (client.clone(), workload.clone(), stop.clone());
                std::thread::Builder::new()
                    .name(format!("bench-txn-producer-{index}"))
                    .spawn(move || run_producer(&client, &workload, thread, &stop))
                    .expect("spawning a transactional producer thread")
            })
            .collect()
    }

    /// Runs a transactional phase and measures committed transactions, records and bytes, and
    /// begin → commit latency.
    pub fn run_phase(
        client: &ClientOptions,
        probes: &Probes,
        workload: &TxnWorkload,
    ) -> Result<PhaseResult, String> {
        let live = Arc::new(LiveCounters::default());
        let aborted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let warmup = match workload.goal {
            Goal::Duration(_) => workload.warmup,
            Goal::Records(_) => Duration::ZERO,
        };
        let start_snapshot = probes.snapshot(&live);
        let started = Instant::now();
        let threads = spawn(client, workload, started, warmup, &live, &aborted, &stop);
        let progress = phases::progress_for(&workload.name, workload.goal, warmup, &live);
        let (a, b, threads) =
            phases::measure_window(probes, &live, started, warmup, workload.goal, threads);
        // Aborts are counted for transactions begun after the warm-up, read at the end of the
        // window (a record goal's window ends when the threads do).
        let aborted_in_window = aborted.load(Ordering::Relaxed);
        let a = a.unwrap_or(start_snapshot);
        stop.store(true, Ordering::Relaxed);
        let histogram = phases::join_merge(threads);
        let b = b.unwrap_or_else(|| probes.snapshot(&live));
        progress.finish();
        let histogram = histogram?;
        let mut notes = live.first_errors();
        notes.push(format!(
            "{} transactional producer(s), {} records of {} B per transaction, partitioning: {}",
            workload.producers,
            workload.records_per_txn,
            workload.record_bytes,
            if workload.round_robin {
                "round-robin over the partitions"
            } else {
                "librdkafka's sticky partitioner"
            }
        ));
        if let Some(n) = workload.abort_every {
            notes.push(format!(
                "1 in {n} transactions aborted (flushed, then aborted)"
            ));
        }
        let settings = producer_settings(
            "weir-bench-txn-<run>-<producer>",
            workload.linger_ms,
            workload.transaction_timeout_ms,
        );
        let facts = PhaseFacts {
            name: workload.name.clone(),
            kind: PhaseKind::Transactions,
            acks: Some(Acks::All),
            topic: workload.topic.clone(),
            latency: histogram,
            ack_latency: None,
            errors: live.errors.load(Ordering::Relaxed),
            settings,
            notes,
        };
        let mut result = phases::result(facts, probes, &a, &b);
        result.transactions = Some(figures(
            result.records,
            aborted_in_window,
            workload.records_per_txn,
            result.seconds,
        ));
        Ok(result)
    }

    /// Fills `topic` with `records` records in committed transactions of `per_txn` records
    /// (one producer, round-robin partitions, as fast as it goes).
    pub fn preload(
        client: &ClientOptions,
        probes: &Probes,
        topic: &str,
        partitions: i32,
        records: u64,
        record_bytes: usize,
        per_txn: u64,
    ) -> Result<PhaseResult, String> {
        let workload = TxnWorkload {
            name: format!("preload txn×{per_txn}"),
            topic: topic.to_string(),
            partitions,
            record_bytes,
            records_per_txn: per_txn,
            producers: 1,
            goal: Goal::Records(records),
            warmup: Duration::ZERO,
            abort_every: None,
            linger_ms: 5,
            transaction_timeout_ms: 60_000,
            round_robin: true,
        };
        run_phase(client, probes, &workload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::BenchCommand;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: BenchCommand,
    }

    fn parse(args: &[&str]) -> Result<TransactionsArgs, String> {
        match Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())) {
            Ok(Cli {
                command: BenchCommand::Transactions(args),
            }) => Ok(*args),
            Ok(other) => Err(format!("not transactions: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn defaults_are_ten_records_per_transaction_one_producer() {
        let args = parse(&["transactions"]).unwrap();
        assert_eq!(args.records_per_txn, 10);
        assert_eq!(args.producers, 1);
        assert_eq!(args.record_size, 1024);
        assert_eq!(args.abort_every, None);
        assert_eq!(args.partitioning, Partitioning::RoundRobin);
        assert_eq!(args.topic.partitions, 12);
        assert!(args.duration.is_none() && args.transactions.is_none());
    }

    #[test]
    fn options_parse_and_bad_values_are_refused() {
        let args = parse(&[
            "transactions",
            "--records-per-txn",
            "100",
            "--producers",
            "4",
            "--partitions",
            "3",
            "--record-size",
            "512",
            "--duration",
            "10s",
            "--abort-every",
            "5",
            "--spawn-broker",
            "--partitioning",
            "client",
        ])
        .unwrap();
        assert_eq!(args.records_per_txn, 100);
        assert_eq!(args.producers, 4);
        assert_eq!(args.topic.partitions, 3);
        assert_eq!(args.record_size, 512);
        assert_eq!(args.duration, Some(Duration::from_secs(10)));
        assert_eq!(args.abort_every, Some(5));
        assert!(args.broker.spawn_broker);
        assert_eq!(args.partitioning, Partitioning::Client);
        assert!(parse(&["transactions", "--records-per-txn", "0"]).is_err());
        assert!(parse(&["transactions", "--producers", "0"]).is_err());
        assert!(parse(&["transactions", "--abort-every", "0"]).is_err());
        assert!(parse(&["transactions", "--transactions", "5", "--duration", "1s"]).is_err());
    }

    #[test]
    fn every_nth_transaction_aborts() {
        let aborted: Vec<u64> = (0..12).filter(|&i| aborts(i, Some(4))).collect();
        assert_eq!(aborted, vec![3, 7, 11]);
        assert!((0..100).all(|i| !aborts(i, None)));
        assert!((0..10).all(|i| aborts(i, Some(1))));
    }

    #[test]
    fn quotas_are_whole_transactions() {
        assert_eq!(transactions_for_records(100, 10), 10);
        assert_eq!(transactions_for_records(101, 10), 11);
        assert_eq!(transactions_for_records(0, 10), 0);
        assert_eq!(transactions_for_records(5, 0), 5);
    }

    #[test]
    fn figures_count_committed_transactions_from_records() {
        let f = figures(2_000, 50, 10, 4.0);
        assert_eq!(f.committed, 200);
        assert_eq!(f.committed_per_second, 50.0);
        assert_eq!(f.aborted_per_second, 12.5);
        assert_eq!(figures(10, 0, 10, 0.0).committed_per_second, 0.0);
    }

    #[test]
    fn message_timeout_stays_below_the_transaction_timeout() {
        let settings = producer_settings("id", 5, 60_000);
        let get = |name: &str| {
            settings
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
        };
        assert!(get("message.timeout.ms") < get("transaction.timeout.ms"));
        assert_eq!(get("transaction.timeout.ms"), Some(60_000));
        assert_eq!(
            settings.iter().find(|(n, _)| *n == "acks").unwrap().1,
            "all"
        );
    }
}
