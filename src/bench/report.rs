//! The figures a bench run reports and how they are judged: latency summaries from
//! hdrhistograms, one [`PhaseResult`] per workload phase, the targets as ratios to the
//! machine's ceilings measured in the same run, medians over repeated runs, and the
//! human-readable rendering of all of it (the JSON is the same structs through serde).
//!
//! Pure: nothing here measures; everything takes numbers and returns numbers or text.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::ceilings::Ceilings;
use super::cpu::ProcessCpu;
use super::machine::MachineFacts;
use super::metrics_scrape::BrokerCounters;
use super::units::{Acks, BYTES_PER_MB};

/// Latency distribution in microseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl LatencySummary {
    /// Summary of a histogram of microsecond values; `None` when it is empty.
    pub fn from_histogram(histogram: &Histogram<u64>) -> Option<LatencySummary> {
        if histogram.is_empty() {
            return None;
        }
        Some(LatencySummary {
            samples: histogram.len(),
            p50_us: histogram.value_at_quantile(0.50) as f64,
            p99_us: histogram.value_at_quantile(0.99) as f64,
            p999_us: histogram.value_at_quantile(0.999) as f64,
            max_us: histogram.max() as f64,
            mean_us: histogram.mean(),
        })
    }
}

/// A histogram for microsecond latencies from 1 µs to 10 minutes, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Which workload a phase ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    Produce,
    Consume,
    E2e,
    /// Transactional produce: begin, N records, commit (see `bench::transactions`).
    Transactions,
}

/// The transactions of a transactional phase, over its measurement window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TransactionFigures {
    pub records_per_transaction: u64,
    pub committed: u64,
    pub aborted: u64,
    pub committed_per_second: f64,
    pub aborted_per_second: f64,
}

/// Everything measured in one phase, over its measurement window (after warm-up).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseResult {
    /// e.g. "produce acks=1".
    pub name: String,
    pub kind: PhaseKind,
    pub acks: Option<Acks>,
    pub topic: String,
    /// Records counted in the window (acknowledged for produce, received for consume/e2e).
    pub records: u64,
    /// Key + value bytes of those records.
    pub payload_bytes: u64,
    pub seconds: f64,
    pub mb_per_second: f64,
    pub records_per_second: f64,
    /// Produce: send → delivery report. E2e: timestamp in the record → consumer receive.
    pub latency: Option<LatencySummary>,
    pub errors: u64,
    pub broker_cpu: Option<ProcessCpu>,
    pub broker_cpu_seconds_per_gb: Option<f64>,
    /// The load generator's own CPU (this process, all threads, librdkafka included).
    pub client_cpu: ProcessCpu,
    pub client_cpu_seconds_per_gb: Option<f64>,
    /// Share of all CPUs busy during the window (0..=1), anyone's work included.
    pub machine_busy_share: f64,
    pub broker_counters: Option<BrokerCounters>,
    /// The librdkafka settings used.
    pub client_settings: Vec<(String, String)>,
    /// Transactional phases only; `latency` is then begin → commit returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions: Option<TransactionFigures>,
    pub notes: Vec<String>,
}

impl PhaseResult {
    pub fn p99_ms(&self) -> Option<f64> {
        self.latency.as_ref().map(|l| l.p99_us / 1e3)
    }
}

/// One target of the issue, judged against a ceiling from the same run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub phase: String,
    /// What was achieved, in `unit`.
    pub achieved: f64,
    /// The ceiling or bound it is compared with, in `unit`.
    pub reference: f64,
    pub unit: String,
    /// achieved ÷ ceiling for throughput targets; achieved − bound (ms) for the latency target.
    pub ratio: f64,
    /// The required ratio (throughput) or 0 (latency: achieved must not exceed the bound).
    pub required: f64,
    pub met: bool,
}

/// The throughput targets: phase → (ceiling name, required fraction).
const PRODUCE_LEADER_SHARE_OF_C_LO: f64 = 0.25;
const PRODUCE_ALL_SHARE_OF_D_SYNC: f64 = 0.3;
const CONSUME_SHARE_OF_C_LO: f64 = 0.5;
/// E2e p99 may exceed one write+fdatasync p99 by this much.
pub const E2E_P99_SLACK_MS: f64 = 2.0;

/// Judges every phase that has a target against `ceilings`.
pub fn check_targets(phases: &[PhaseResult], ceilings: &Ceilings) -> Vec<TargetCheck> {
    let mut checks = Vec::new();
    for phase in phases {
        let throughput = |ceiling: f64, name: &str, required: f64| {
            let ratio = if ceiling > 0.0 {
                phase.mb_per_second / ceiling
            } else {
                0.0
            };
            TargetCheck {
                target: format!("{} ≥ {required} × {name}", phase.name),
                phase: phase.name.clone(),
                achieved: phase.mb_per_second,
                reference: ceiling,
                unit: "MB/s".into(),
                ratio,
                required,
                met: ratio >= required,
            }
        };
        match (phase.kind, phase.acks) {
            (PhaseKind::Produce, Some(Acks::Leader)) => checks.push(throughput(
                ceilings.c_lo_mb_s,
                "C_lo",
                PRODUCE_LEADER_SHARE_OF_C_LO,
            )),
            (PhaseKind::Produce, Some(Acks::All)) => checks.push(throughput(
                ceilings.d_sync_mb_s,
                "D_sync",
                PRODUCE_ALL_SHARE_OF_D_SYNC,
            )),
            (PhaseKind::Consume, _) => checks.push(throughput(
                ceilings.c_lo_mb_s,
                "C_lo",
                CONSUME_SHARE_OF_C_LO,
            )),
            (PhaseKind::E2e, _) => {
                if let Some(p99_ms) = phase.p99_ms() {
                    let bound = ceilings.f_p99_us / 1e3 + E2E_P99_SLACK_MS;
                    checks.push(TargetCheck {
                        target: format!("{} p99 ≤ F_p99 + {E2E_P99_SLACK_MS} ms", phase.name),
                        phase: phase.name.clone(),
                        achieved: p99_ms,
                        reference: bound,
                        unit: "ms".into(),
                        ratio: p99_ms - bound,
                        required: 0.0,
                        met: p99_ms <= bound,
                    });
                }
            }
            _ => {}
        }
    }
    checks
}

/// Median of `values` (mean of the middle two for an even count); `None` when empty. NaNs sort
/// last and so only matter when they are the majority.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let middle = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    })
}

/// One complete run: the ceilings measured in it, its phases, and its target checks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub ceilings: Option<Ceilings>,
    pub phases: Vec<PhaseResult>,
    pub targets: Vec<TargetCheck>,
    /// Phases that failed, with why (the run goes on with the next phase).
    pub errors: Vec<String>,
}

/// Median of one figure over repeated runs, with the individual values.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MedianFigure {
    pub figure: String,
    pub median: f64,
    pub values: Vec<f64>,
}

/// Medians over runs of every headline figure, matched by phase name and target.
pub fn medians(runs: &[RunReport]) -> Vec<MedianFigure> {
    let mut figures: Vec<(String, Vec<f64>)> = Vec::new();
    let mut push = |name: String, value: Option<f64>| {
        let Some(value) = value else { return };
        match figures.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => figures.push((name, vec![value])),
        }
    };
    for run in runs {
        if let Some(c) = &run.ceilings {
            push("ceiling D_raw MB/s".into(), Some(c.d_raw_mb_s));
            push("ceiling D_sync MB/s".into(), Some(c.d_sync_mb_s));
            push("ceiling F_p50 µs".into(), Some(c.f_p50_us));
            push("ceiling F_p99 µs".into(), Some(c.f_p99_us));
            push("ceiling C_lo MB/s".into(), Some(c.c_lo_mb_s));
        }
        for phase in &run.phases {
            let n = &phase.name;
            push(format!("{n}: MB/s"), Some(phase.mb_per_second));
            push(format!("{n}: records/s"), Some(phase.records_per_second));
            if let Some(t) = &phase.transactions {
                push(
                    format!("{n}: committed txn/s"),
                    Some(t.committed_per_second),
                );
            }
            if let Some(l) = &phase.latency {
                push(format!("{n}: p50 ms"), Some(l.p50_us / 1e3));
                push(format!("{n}: p99 ms"), Some(l.p99_us / 1e3));
                push(format!("{n}: p99.9 ms"), Some(l.p999_us / 1e3));
                push(format!("{n}: max ms"), Some(l.max_us / 1e3));
            }
            push(
                format!("{n}: broker CPU-s/GB"),
                phase.broker_cpu_seconds_per_gb,
            );
            push(
                format!("{n}: client CPU-s/GB"),
                phase.client_cpu_seconds_per_gb,
            );
            push(
                format!("{n}: machine busy %"),
                Some(phase.machine_busy_share * 100.0),
            );
        }
        for target in &run.targets {
            push(
                format!("target {}: ratio", target.target),
                Some(target.ratio),
            );
        }
    }
    figures
        .into_iter()
        .filter_map(|(figure, values)| {
            median(&values).map(|median| MedianFigure {
                figure,
                median,
                values,
            })
        })
        .collect()
}

/// The whole report `--json` writes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub weir_version: String,
    pub command: String,
    pub started_unix_seconds: u64,
    pub machine: MachineFacts,
    /// What else ran on the machine when the run started (from `/proc/loadavg` and `ps`).
    pub load_before: String,
    pub runs: Vec<RunReport>,
    pub medians: Vec<MedianFigure>,
}

fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "–".into(),
    }
}

/// Human-readable ceilings block.
pub fn render_ceilings(c: &Ceilings) -> String {
    format!(
        "ceilings: D_raw {:.0} MB/s, D_sync {:.0} MB/s, F_p50 {:.0} µs, F_p99 {:.0} µs, \
         C_lo {:.0} MB/s (O_DIRECT alignment {})\n",
        c.d_raw_mb_s, c.d_sync_mb_s, c.f_p50_us, c.f_p99_us, c.c_lo_mb_s, c.o_direct_alignment
    )
}

/// Human-readable table of phases.
pub fn render_phases(phases: &[PhaseResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>6}",
        "phase",
        "MB/s",
        "records/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "brokerCPU",
        "clientCPU",
        "busy"
    );
    let _ = writeln!(
        out,
        "{:<22} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>6}",
        "", "", "", "", "", "", "", "s/GB", "s/GB", "%"
    );
    for p in phases {
        let l = p.latency.as_ref();
        let _ = writeln!(
            out,
            "{:<22} {:>9.1} {:>11.0} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>6.0}",
            p.name,
            p.mb_per_second,
            p.records_per_second,
            fmt_opt(l.map(|l| l.p50_us / 1e3), 2),
            fmt_opt(l.map(|l| l.p99_us / 1e3), 2),
            fmt_opt(l.map(|l| l.p999_us / 1e3), 2),
            fmt_opt(l.map(|l| l.max_us / 1e3), 2),
            fmt_opt(p.broker_cpu_seconds_per_gb, 2),
            fmt_opt(p.client_cpu_seconds_per_gb, 2),
            p.machine_busy_share * 100.0
        );
    }
    for p in phases {
        if let Some(counters) = &p.broker_counters {
            let _ = writeln!(out, "  {}: broker {}", p.name, counters.describe(p.seconds));
        }
        if let Some(t) = &p.transactions {
            let _ = writeln!(
                out,
                "  {}: {:.1} committed txn/s ({} committed, {} aborted, {} records each); \
                 latency = begin → commit returned",
                p.name, t.committed_per_second, t.committed, t.aborted, t.records_per_transaction
            );
        }
        if p.errors > 0 {
            let _ = writeln!(out, "  {}: {} errors", p.name, p.errors);
        }
        for note in &p.notes {
            let _ = writeln!(out, "  {}: {note}", p.name);
        }
    }
    out
}

/// Human-readable target checks.
pub fn render_targets(targets: &[TargetCheck]) -> String {
    let mut out = String::new();
    for t in targets {
        let verdict = if t.met { "met" } else { "MISSED" };
        if t.unit == "ms" {
            let _ = writeln!(
                out,
                "  {:<44} {:>8.2} ms vs bound {:>7.2} ms  [{verdict}]",
                t.target, t.achieved, t.reference
            );
        } else {
            let _ = writeln!(
                out,
                "  {:<44} {:>8.1} MB/s / {:>7.1} = {:>5.3}  [{verdict}]",
                t.target, t.achieved, t.reference, t.ratio
            );
        }
    }
    out
}

/// Human-readable medians.
pub fn render_medians(figures: &[MedianFigure]) -> String {
    let mut out = String::new();
    for f in figures {
        let values: Vec<String> = f.values.iter().map(|v| format!("{v:.3}")).collect();
        let _ = writeln!(
            out,
            "  {:<48} {:>12.3}   ({})",
            f.figure,
            f.median,
            values.join(", ")
        );
    }
    out
}

/// MB/s of `bytes` over `seconds`, for progress lines.
pub fn throughput_text(bytes: u64, seconds: f64) -> String {
    if seconds <= 0.0 {
        return "– MB/s".into();
    }
    format!("{:.1} MB/s", bytes as f64 / BYTES_PER_MB / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceilings() -> Ceilings {
        Ceilings {
            d_raw_mb_s: 2000.0,
            d_sync_mb_s: 1000.0,
            f_p50_us: 250.0,
            f_p99_us: 5000.0,
            c_lo_mb_s: 1200.0,
            o_direct_alignment: 512,
            notes: Vec::new(),
        }
    }

    fn phase(name: &str, kind: PhaseKind, acks: Option<Acks>, mb_s: f64) -> PhaseResult {
        PhaseResult {
            name: name.into(),
            kind,
            acks,
            topic: "t".into(),
            records: 1,
            payload_bytes: 1,
            seconds: 1.0,
            mb_per_second: mb_s,
            records_per_second: 1.0,
            latency: None,
            errors: 0,
            broker_cpu: None,
            broker_cpu_seconds_per_gb: None,
            client_cpu: ProcessCpu::default(),
            client_cpu_seconds_per_gb: None,
            machine_busy_share: 0.5,
            broker_counters: None,
            client_settings: Vec::new(),
            transactions: None,
            notes: Vec::new(),
        }
    }

    #[test]
    fn histogram_summary_reports_quantiles_in_microseconds() {
        let mut h = latency_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let s = LatencySummary::from_histogram(&h).unwrap();
        assert_eq!(s.samples, 1000);
        assert!((s.p50_us - 500.0).abs() <= 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() <= 1.0, "{s:?}");
        assert!((s.max_us - 1000.0).abs() <= 1.0, "{s:?}");
        assert!(LatencySummary::from_histogram(&latency_histogram()).is_none());
    }

    #[test]
    fn throughput_targets_are_ratios_to_the_matching_ceiling() {
        let phases = vec![
            phase(
                "produce acks=1",
                PhaseKind::Produce,
                Some(Acks::Leader),
                600.0,
            ),
            phase(
                "produce acks=all",
                PhaseKind::Produce,
                Some(Acks::All),
                250.0,
            ),
            phase("consume", PhaseKind::Consume, None, 500.0),
            phase(
                "produce acks=0",
                PhaseKind::Produce,
                Some(Acks::None),
                900.0,
            ),
        ];
        let checks = check_targets(&phases, &ceilings());
        assert_eq!(checks.len(), 3, "acks=0 has no target: {checks:?}");
        assert_eq!(checks[0].ratio, 0.5);
        assert!(checks[0].met);
        assert_eq!(checks[0].reference, 1200.0);
        assert_eq!(checks[1].ratio, 0.25);
        assert!(!checks[1].met, "0.25 < 0.3");
        assert!((checks[2].ratio - 500.0 / 1200.0).abs() < 1e-12);
        assert!(!checks[2].met, "0.42 < 0.5");
    }

    #[test]
    fn e2e_target_is_f_p99_plus_two_ms() {
        let mut e2e = phase(
            "e2e acks=all 20 MB/s",
            PhaseKind::E2e,
            Some(Acks::All),
            20.0,
        );
        e2e.latency = Some(LatencySummary {
            samples: 10,
            p50_us: 1000.0,
            p99_us: 6500.0,
            p999_us: 8000.0,
            max_us: 9000.0,
            mean_us: 1200.0,
        });
        let checks = check_targets(std::slice::from_ref(&e2e), &ceilings());
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].reference, 7.0);
        assert_eq!(checks[0].achieved, 6.5);
        assert!(checks[0].met);
        e2e.latency.as_mut().unwrap().p99_us = 7100.0;
        assert!(!check_targets(&[e2e], &ceilings())[0].met);
    }

    #[test]
    fn e2e_without_samples_has_no_verdict() {
        let e2e = phase("e2e", PhaseKind::E2e, Some(Acks::All), 0.0);
        assert!(check_targets(&[e2e], &ceilings()).is_empty());
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn medians_match_figures_by_phase_name_across_runs() {
        let run = |mb_s: f64, c_lo: f64| {
            let mut c = ceilings();
            c.c_lo_mb_s = c_lo;
            let phases = vec![phase(
                "produce acks=1",
                PhaseKind::Produce,
                Some(Acks::Leader),
                mb_s,
            )];
            let targets = check_targets(&phases, &c);
            RunReport {
                ceilings: Some(c),
                phases,
                targets,
                errors: Vec::new(),
            }
        };
        let runs = vec![run(300.0, 1000.0), run(600.0, 1200.0), run(400.0, 800.0)];
        let m = medians(&runs);
        let get = |name: &str| m.iter().find(|f| f.figure == name).unwrap().median;
        assert_eq!(get("produce acks=1: MB/s"), 400.0);
        assert_eq!(get("ceiling C_lo MB/s"), 1000.0);
        // Median of per-run ratios (0.3, 0.5, 0.5), not a ratio of medians.
        assert_eq!(get("target produce acks=1 ≥ 0.25 × C_lo: ratio"), 0.5);
    }

    #[test]
    fn rendering_mentions_every_phase_and_verdict() {
        let phases = vec![phase(
            "produce acks=1",
            PhaseKind::Produce,
            Some(Acks::Leader),
            600.0,
        )];
        let text = render_phases(&phases);
        assert!(text.contains("produce acks=1"), "{text}");
        let targets = render_targets(&check_targets(&phases, &ceilings()));
        assert!(targets.contains("[met]"), "{targets}");
        assert!(render_ceilings(&ceilings()).contains("C_lo 1200 MB/s"));
        assert_eq!(throughput_text(3_000_000, 2.0), "1.5 MB/s");
    }
}
