//! Per-shard metrics: plain `Cell`s and histograms touched only by the shard's own thread (no
//! atomics, no locks on the hot path). A scrape of `/metrics` asks every shard for a
//! [`MetricsSnapshot`] over the mesh and renders them as Prometheus text, one series per shard.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write;

use hdrhistogram::Histogram;

use super::Shard;

/// Latency and count of one API key on one shard.
pub struct RequestStats {
    pub count: u64,
    pub errors: u64,
    pub latency_micros: Histogram<u64>,
}

impl RequestStats {
    fn new() -> RequestStats {
        RequestStats {
            count: 0,
            errors: 0,
            latency_micros: Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .expect("valid histogram bounds"),
        }
    }
}

#[derive(Default)]
pub struct ShardMetrics {
    pub requests: RefCell<BTreeMap<&'static str, RequestStats>>,
    pub produce_bytes: Cell<u64>,
    pub produce_batches: Cell<u64>,
    pub produce_records: Cell<u64>,
    pub produce_errors: Cell<u64>,
    pub fetch_bytes: Cell<u64>,
    pub connections_accepted: Cell<u64>,
    pub connections_rejected: Cell<u64>,
    pub frames_rejected: Cell<u64>,
    pub cross_shard_messages: Cell<u64>,
    pub retention_segments_deleted: Cell<u64>,
    pub cleaner_runs: Cell<u64>,
    pub cleaner_bytes_read: Cell<u64>,
    pub cleaner_bytes_written: Cell<u64>,
    pub cleaner_segments_cleaned: Cell<u64>,
    pub cleaner_records_removed: Cell<u64>,
    /// Largest dirty ratio over the shard's compacted partitions at the cleaner's last check.
    pub cleaner_max_dirty_ratio: Cell<f64>,
    pub txn_committed: Cell<u64>,
    pub txn_aborted: Cell<u64>,
    pub txn_timed_out: Cell<u64>,
    pub txn_markers: Cell<u64>,
}

impl ShardMetrics {
    pub fn record_request(&self, api: &'static str, micros: u64, failed: bool) {
        let mut requests = self.requests.borrow_mut();
        let stats = requests.entry(api).or_insert_with(RequestStats::new);
        stats.count += 1;
        if failed {
            stats.errors += 1;
        }
        let _ = stats.latency_micros.record(micros.max(1));
    }

    pub fn add(cell: &Cell<u64>, value: u64) {
        cell.set(cell.get().wrapping_add(value));
    }
}

/// One partition's gauges.
#[derive(Clone, Debug)]
pub struct PartitionSample {
    pub topic: String,
    pub partition: i32,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub size_bytes: u64,
    pub segments: usize,
    pub cache_bytes: usize,
    pub producers: usize,
    pub last_stable_offset: i64,
}

/// One API's request statistics on one shard; latencies in microseconds.
#[derive(Clone, Debug)]
pub struct RequestSample {
    pub api: &'static str,
    pub count: u64,
    pub errors: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub sum: f64,
}

/// A `Send` copy of one shard's metrics for rendering on the scraping shard.
#[derive(Clone, Debug, Default)]
pub struct MetricsSnapshot {
    pub shard: usize,
    pub requests: Vec<RequestSample>,
    pub counters: Vec<(&'static str, &'static str, u64)>,
    pub gauges: Vec<(&'static str, &'static str, f64)>,
    pub flush_quantiles: Option<(u64, u64, u64, u64)>,
    pub partitions: Vec<PartitionSample>,
    pub groups: Vec<super::group_coordinator::GroupSample>,
}

impl Shard {
    /// Copies this shard's metrics.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let m = &self.metrics;
        let requests = m
            .requests
            .borrow()
            .iter()
            .map(|(&api, s)| {
                let h = &s.latency_micros;
                RequestSample {
                    api,
                    count: s.count,
                    errors: s.errors,
                    p50: h.value_at_quantile(0.5),
                    p99: h.value_at_quantile(0.99),
                    p999: h.value_at_quantile(0.999),
                    max: h.max(),
                    sum: h.mean() * h.len() as f64,
                }
            })
            .collect();
        let flusher = &self.flusher.stats;
        let counters = vec![
            (
                "weir_produce_bytes_total",
                "Record batch bytes appended",
                m.produce_bytes.get(),
            ),
            (
                "weir_produce_batches_total",
                "Record batches appended",
                m.produce_batches.get(),
            ),
            (
                "weir_produce_records_total",
                "Records appended",
                m.produce_records.get(),
            ),
            (
                "weir_produce_errors_total",
                "Produce partitions refused",
                m.produce_errors.get(),
            ),
            (
                "weir_fetch_bytes_total",
                "Record bytes returned to fetchers",
                m.fetch_bytes.get(),
            ),
            (
                "weir_connections_accepted_total",
                "Client connections accepted",
                m.connections_accepted.get(),
            ),
            (
                "weir_connections_rejected_total",
                "Connections refused by max.connections",
                m.connections_rejected.get(),
            ),
            (
                "weir_frames_rejected_total",
                "Request frames refused (oversized, malformed, unknown API)",
                m.frames_rejected.get(),
            ),
            (
                "weir_cross_shard_messages_total",
                "Work items sent to other shards",
                m.cross_shard_messages.get(),
            ),
            (
                "weir_flush_rounds_total",
                "Group-commit rounds that wrote data",
                flusher.rounds.get(),
            ),
            (
                "weir_flush_bytes_total",
                "Bytes written by group commit",
                flusher.bytes.get(),
            ),
            (
                "weir_retention_segments_deleted_total",
                "Segments deleted by retention",
                m.retention_segments_deleted.get(),
            ),
            (
                "weir_cleaner_runs_total",
                "Compaction passes run",
                m.cleaner_runs.get(),
            ),
            (
                "weir_cleaner_bytes_read_total",
                "Bytes read by the log cleaner",
                m.cleaner_bytes_read.get(),
            ),
            (
                "weir_cleaner_bytes_written_total",
                "Bytes of cleaned segments written",
                m.cleaner_bytes_written.get(),
            ),
            (
                "weir_cleaner_segments_cleaned_total",
                "Segments rewritten by compaction",
                m.cleaner_segments_cleaned.get(),
            ),
            (
                "weir_cleaner_records_removed_total",
                "Records removed by compaction",
                m.cleaner_records_removed.get(),
            ),
            (
                "weir_transactions_committed_total",
                "Transactions this shard coordinated to CompleteCommit",
                m.txn_committed.get(),
            ),
            (
                "weir_transactions_aborted_total",
                "Transactions this shard coordinated to CompleteAbort (by the client, a timeout or fencing)",
                m.txn_aborted.get(),
            ),
            (
                "weir_transactions_timed_out_total",
                "Transactions aborted because they were open past their timeout",
                m.txn_timed_out.get(),
            ),
            (
                "weir_transaction_markers_total",
                "COMMIT/ABORT markers the coordinator had written to partitions",
                m.txn_markers.get(),
            ),
        ];
        let gauges = vec![
            (
                "weir_connections",
                "Open client connections",
                self.connections.get() as f64,
            ),
            (
                "weir_unflushed_bytes",
                "Appended bytes not yet handed to the disk",
                self.flusher.unflushed_bytes() as f64,
            ),
            (
                "weir_fetch_sessions",
                "Incremental fetch sessions",
                self.fetch_sessions.borrow().len() as f64,
            ),
            (
                "weir_partitions",
                "Partitions owned by the shard",
                self.partitions.borrow().len() as f64,
            ),
            (
                "weir_cleaner_max_dirty_ratio",
                "Largest dirty ratio (dirty bytes / cleanable bytes) of the shard's compacted partitions",
                m.cleaner_max_dirty_ratio.get(),
            ),
            (
                "weir_transactions_open",
                "Transactional ids of this shard with a transaction in progress (Ongoing or being completed)",
                self.txns.open_count() as f64,
            ),
        ];
        let flush_quantiles = flusher
            .latency
            .borrow()
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| {
                (
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.value_at_quantile(0.999),
                    h.max(),
                )
            });
        let partitions = self
            .partitions()
            .iter()
            .map(|p| {
                let log = p.log.borrow();
                PartitionSample {
                    topic: p.topic.to_string(),
                    partition: p.index,
                    high_watermark: p.high_watermark(),
                    log_start_offset: log.log_start_offset,
                    log_end_offset: log.log_end_offset,
                    size_bytes: log.size_bytes(),
                    segments: log.segment_count(),
                    cache_bytes: log.cache_bytes(),
                    producers: p.producer_count(),
                    last_stable_offset: p.last_stable_offset(),
                }
            })
            .collect();
        MetricsSnapshot {
            shard: self.id,
            requests,
            counters,
            gauges,
            flush_quantiles,
            partitions,
            groups: self.groups.samples(),
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A per-partition gauge: name, help, and how to read it from a sample.
type PartitionGauge = (&'static str, &'static str, fn(&PartitionSample) -> f64);

/// Renders snapshots of all shards in Prometheus' text exposition format.
pub fn render(snapshots: &[MetricsSnapshot]) -> String {
    let mut out = String::new();
    if let Some(first) = snapshots.first() {
        for (index, (name, help, _)) in first.counters.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for s in snapshots {
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{}\"}} {}",
                    s.shard, s.counters[index].2
                );
            }
        }
        for (index, (name, help, _)) in first.gauges.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for s in snapshots {
                let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, s.gauges[index].2);
            }
        }
    }
    let _ = writeln!(out, "# HELP weir_request_latency_seconds Request handling time by API, until the response is ready to send (includes an acks=all wait and a fetch long poll)");
    let _ = writeln!(out, "# TYPE weir_request_latency_seconds summary");
    for s in snapshots {
        for RequestSample {
            api,
            count,
            p50,
            p99,
            p999,
            sum,
            ..
        } in &s.requests
        {
            for (q, v) in [("0.5", p50), ("0.99", p99), ("0.999", p999)] {
                let _ = writeln!(
                    out,
                    "weir_request_latency_seconds{{shard=\"{}\",api=\"{api}\",quantile=\"{q}\"}} {}",
                    s.shard,
                    *v as f64 / 1e6
                );
            }
            let _ = writeln!(
                out,
                "weir_request_latency_seconds_sum{{shard=\"{}\",api=\"{api}\"}} {}",
                s.shard,
                sum / 1e6
            );
            let _ = writeln!(
                out,
                "weir_request_latency_seconds_count{{shard=\"{}\",api=\"{api}\"}} {count}",
                s.shard
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP weir_request_errors_total Requests answered with an error or dropped"
    );
    let _ = writeln!(out, "# TYPE weir_request_errors_total counter");
    for s in snapshots {
        for RequestSample { api, errors, .. } in &s.requests {
            let _ = writeln!(
                out,
                "weir_request_errors_total{{shard=\"{}\",api=\"{api}\"}} {errors}",
                s.shard
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP weir_flush_latency_seconds Group-commit round time (writes + fdatasync)"
    );
    let _ = writeln!(out, "# TYPE weir_flush_latency_seconds summary");
    for s in snapshots {
        if let Some((p50, p99, p999, _)) = s.flush_quantiles {
            for (q, v) in [("0.5", p50), ("0.99", p99), ("0.999", p999)] {
                let _ = writeln!(
                    out,
                    "weir_flush_latency_seconds{{shard=\"{}\",quantile=\"{q}\"}} {}",
                    s.shard,
                    v as f64 / 1e6
                );
            }
        }
    }
    let partition_gauges: [PartitionGauge; 8] = [
        ("weir_partition_high_watermark", "High watermark", |p| {
            p.high_watermark as f64
        }),
        (
            "weir_partition_last_stable_offset",
            "Last stable offset (where read_committed consumers stop: the first open transaction, or the high watermark)",
            |p| p.last_stable_offset as f64,
        ),
        ("weir_partition_log_start_offset", "Log start offset", |p| {
            p.log_start_offset as f64
        }),
        ("weir_partition_log_end_offset", "Log end offset", |p| {
            p.log_end_offset as f64
        }),
        ("weir_partition_size_bytes", "Bytes in segments", |p| {
            p.size_bytes as f64
        }),
        ("weir_partition_segments", "Segments", |p| p.segments as f64),
        (
            "weir_partition_cache_bytes",
            "Bytes of recent batches cached",
            |p| p.cache_bytes as f64,
        ),
        (
            "weir_partition_producers",
            "Idempotent producers tracked",
            |p| p.producers as f64,
        ),
    ];
    for (name, help, value) in partition_gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for s in snapshots {
            for p in &s.partitions {
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
                    s.shard,
                    escape(&p.topic),
                    p.partition,
                    value(p)
                );
            }
        }
    }
    super::group_coordinator::render(&mut out, snapshots);
    out
}
