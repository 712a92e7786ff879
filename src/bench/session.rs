//! One `weir bench produce|consume|e2e|suite` invocation: machine facts, the broker (running or
//! spawned), then per repeat the ceilings and the workload phases, the target checks, the
//! printed report, and at the end medians over repeats and the JSON file.

use std::time::Duration;

use super::broker_process::{SpawnOptions, SpawnedBroker};
use super::client::{self, ClientOptions, ProducerSpec};
use super::phases::{self, ConsumeWorkload, E2eWorkload, Goal, Probes, ProduceWorkload};
use super::report::{self, BenchReport, PhaseResult, RunReport};
use super::units::{Acks, Rate};
use super::{
    machine, BenchCommand, BrokerArgs, ConsumeArgs, E2eArgs, LoadArgs, Partitioning, ProduceArgs,
    ReportArgs, SuiteArgs, TopicArgs,
};
use super::{transactions, Isolation};

const DEFAULT_DURATION: Duration = Duration::from_secs(20);
const DEFAULT_E2E_DURATION: Duration = Duration::from_secs(30);
const DEFAULT_LINGER_MS: u64 = 5;
const DEFAULT_E2E_LINGER_MS: u64 = 1;
const DEFAULT_E2E_RATE: Rate = Rate::BytesPerSecond(20e6);

/// What the phases of one repeat need.
struct Context {
    client: ClientOptions,
    probes: Probes,
}

pub fn run(command: BenchCommand) -> Result<(), String> {
    let (broker, report_args) = match &command {
        BenchCommand::Produce(a) => (&a.broker, &a.report),
        BenchCommand::Consume(a) => (&a.broker, &a.report),
        BenchCommand::E2e(a) => (&a.broker, &a.report),
        BenchCommand::Suite(a) => (&a.broker, &a.report),
        BenchCommand::Transactions(a) => (&a.broker, &a.report),
        BenchCommand::Ceilings(_) | BenchCommand::Groups(_) => {
            unreachable!("ceilings and groups run without a session")
        }
    };
    std::fs::create_dir_all(&report_args.data_dir)
        .map_err(|e| format!("creating {}: {e}", report_args.data_dir.display()))?;
    let facts = machine::collect(&report_args.data_dir);
    let load_before = machine::load_snapshot();
    print!("{}", machine::render(&facts));
    println!("{load_before}");
    let spawned = spawn(broker, report_args)?;
    let context = Context {
        client: ClientOptions {
            bootstrap: spawned
                .as_ref()
                .map_or_else(|| broker.bootstrap.clone(), |b| b.bootstrap.clone()),
            settings: broker.client_settings.clone(),
        },
        probes: Probes {
            broker_pid: spawned.as_ref().map(|b| b.pid).or(broker.broker_pid),
            broker_admin: spawned.as_ref().map(|b| b.admin).or(broker.broker_admin),
        },
    };
    if let Some(b) = &spawned {
        println!("spawned broker pid {}: {}", b.pid, b.command_line);
    }
    let mut runs = Vec::new();
    let repeats = report_args.repeat.max(1);
    for repeat in 0..repeats {
        if repeats > 1 {
            println!("\n== run {} of {repeats} ==", repeat + 1);
        }
        let ceilings = if report_args.no_ceilings {
            None
        } else {
            Some(super::measure_ceilings(report_args)?)
        };
        if let Some(c) = &ceilings {
            print!("{}", report::render_ceilings(c));
        }
        let mut errors = Vec::new();
        let mut keep = |result: Result<PhaseResult, String>| match result {
            Ok(phase) => {
                if matches!(command, BenchCommand::Suite(_)) {
                    print!("{}", report::render_phases(std::slice::from_ref(&phase)));
                }
                Some(phase)
            }
            Err(error) => {
                eprintln!("weir bench: {error}");
                errors.push(error);
                None
            }
        };
        let phases: Vec<PhaseResult> = match &command {
            BenchCommand::Produce(a) => keep(produce_command(&context, a)).into_iter().collect(),
            BenchCommand::Consume(a) => keep(consume_command(&context, a)).into_iter().collect(),
            BenchCommand::E2e(a) => keep(e2e_command(&context, a)).into_iter().collect(),
            BenchCommand::Suite(a) => suite(&context, a, repeat, &mut keep),
            BenchCommand::Transactions(a) => keep(transactions_command(&context, a))
                .into_iter()
                .collect(),
            BenchCommand::Ceilings(_) | BenchCommand::Groups(_) => unreachable!(),
        };
        let targets = ceilings
            .as_ref()
            .map(|c| report::check_targets(&phases, c))
            .unwrap_or_default();
        print!("{}", report::render_phases(&phases));
        if !targets.is_empty() {
            println!("targets (same-run ceilings):");
            print!("{}", report::render_targets(&targets));
        }
        runs.push(RunReport {
            ceilings,
            phases,
            targets,
            errors,
        });
    }
    let failures: Vec<String> = runs.iter().flat_map(|r| r.errors.clone()).collect();
    let medians = report::medians(&runs);
    if runs.len() > 1 {
        println!("\nmedians over {} runs:", runs.len());
        print!("{}", report::render_medians(&medians));
    }
    let outcome = super::write_json(
        report_args,
        &BenchReport {
            weir_version: env!("CARGO_PKG_VERSION").into(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            started_unix_seconds: super::unix_seconds(),
            machine: facts,
            load_before,
            runs,
            medians,
        },
    );
    if let Some(b) = spawned {
        b.stop()?;
    }
    outcome?;
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "{} phase(s) failed; first: {first}",
            failures.len()
        )),
    }
}

fn spawn(broker: &BrokerArgs, report: &ReportArgs) -> Result<Option<SpawnedBroker>, String> {
    if !broker.spawn_broker {
        return Ok(None);
    }
    let binary = match &broker.broker_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?,
    };
    eprintln!("starting a broker ({} shards)…", broker.smp);
    SpawnedBroker::start(&SpawnOptions {
        binary,
        parent_dir: report.data_dir.clone(),
        shards: broker.smp,
        settings: broker.broker_settings.clone(),
        keep_data: broker.keep_broker_data,
    })
    .map(Some)
}

/// librdkafka producer settings of a workload.
fn producer_settings(load: &LoadArgs, acks: Acks, linger_ms: u64) -> Vec<(&'static str, String)> {
    let mut settings = vec![
        ("acks", acks.client_value().to_string()),
        ("linger.ms", linger_ms.to_string()),
        ("compression.type", load.compression.name().to_string()),
        ("message.timeout.ms", "120000".to_string()),
    ];
    if let Some(batch) = load.batch_size {
        settings.push(("batch.size", batch.to_string()));
    }
    settings
}

/// The settings that differ between the produce workloads of one command.
#[derive(Debug, Clone, Copy)]
struct Shape {
    acks: Acks,
    rate: Rate,
    linger_ms: u64,
}

fn produce_workload(
    name: String,
    topic: &str,
    topic_args: &TopicArgs,
    load: &LoadArgs,
    shape: Shape,
    goal: Goal,
) -> ProduceWorkload {
    let Shape {
        acks,
        rate,
        linger_ms,
    } = shape;
    ProduceWorkload {
        name,
        producer: ProducerSpec {
            topic: topic.to_string(),
            partitions: topic_args.partitions,
            record_bytes: load.record_size as usize,
            settings: producer_settings(load, acks, linger_ms),
            round_robin: load.partitioning == Partitioning::RoundRobin,
            keys: load.keys,
            rate,
            records: None,
        },
        acks,
        producers: load.producers.max(1),
        goal,
        warmup: load.warmup,
    }
}

fn goal(load: &LoadArgs, default: Duration) -> Goal {
    match (load.records, load.duration) {
        (Some(records), _) => Goal::Records(records),
        (None, Some(duration)) => Goal::Duration(duration),
        (None, None) => Goal::Duration(default),
    }
}

fn produce_command(context: &Context, args: &ProduceArgs) -> Result<PhaseResult, String> {
    if args.idempotence && args.acks != Acks::All {
        return Err("--idempotence true needs --acks all (librdkafka refuses it otherwise)".into());
    }
    let topic = &args.topic.topic;
    client::ensure_topic(
        &context.client,
        topic,
        args.topic.partitions,
        &args.topic.topic_configs,
    )?;
    let workload = produce_workload(
        format!("produce {}", args.acks),
        topic,
        &args.topic,
        &args.load,
        Shape {
            acks: args.acks,
            rate: args.load.rate.unwrap_or(Rate::Max),
            linger_ms: args.load.linger_ms.unwrap_or(DEFAULT_LINGER_MS),
        },
        goal(&args.load, DEFAULT_DURATION),
    );
    let mut workload = workload;
    workload
        .producer
        .settings
        .push(("enable.idempotence", args.idempotence.to_string()));
    if args.idempotence {
        workload.name = format!("produce {} idempotent", args.acks);
    }
    phases::produce(&context.client, &context.probes, &workload)
}

fn consume_workload(
    name: &str,
    topic: &TopicArgs,
    consumers: usize,
    goal: Option<Goal>,
    isolation: Isolation,
) -> ConsumeWorkload {
    ConsumeWorkload {
        name: name.to_string(),
        topic: topic.topic.clone(),
        partitions: topic.partitions,
        consumers,
        settings: vec![("isolation.level", isolation.client_value().to_string())],
        goal,
    }
}

fn consume_command(context: &Context, args: &ConsumeArgs) -> Result<PhaseResult, String> {
    if let (Some(bytes), Some(per_txn)) = (args.preload, args.preload_records_per_txn) {
        client::ensure_topic(
            &context.client,
            &args.topic.topic,
            args.topic.partitions,
            &args.topic.topic_configs,
        )?;
        let done = transactions::preload(
            &context.client,
            &context.probes,
            &args.topic.topic,
            args.topic.partitions,
            bytes / args.record_size.max(1),
            args.record_size as usize,
            per_txn,
        )?;
        println!(
            "preloaded {} records in transactions of {per_txn} ({:.1} MB/s)",
            done.records, done.mb_per_second
        );
    } else if let Some(bytes) = args.preload {
        client::ensure_topic(
            &context.client,
            &args.topic.topic,
            args.topic.partitions,
            &args.topic.topic_configs,
        )?;
        let load = LoadArgs {
            record_size: args.record_size,
            records: Some(bytes / args.record_size.max(1)),
            keys: None,
            duration: None,
            warmup: Duration::ZERO,
            rate: None,
            producers: 1,
            linger_ms: None,
            batch_size: None,
            compression: super::Codec::None,
            partitioning: Partitioning::RoundRobin,
        };
        let preload = produce_workload(
            "preload acks=1".into(),
            &args.topic.topic,
            &args.topic,
            &load,
            Shape {
                acks: Acks::Leader,
                rate: Rate::Max,
                linger_ms: DEFAULT_LINGER_MS,
            },
            goal(&load, DEFAULT_DURATION),
        );
        let done = phases::produce(&context.client, &context.probes, &preload)?;
        println!(
            "preloaded {} records ({:.1} MB/s)",
            done.records, done.mb_per_second
        );
    }
    let goal = match (args.records, args.duration) {
        (Some(n), _) => Some(Goal::Records(n)),
        (None, Some(d)) => Some(Goal::Duration(d)),
        (None, None) => None,
    };
    let name = format!("consume {}", args.isolation.client_value());
    let workload = consume_workload(&name, &args.topic, args.consumers, goal, args.isolation);
    phases::consume(&context.client, &context.probes, &workload)
}

fn e2e_workload(
    topic: &str,
    topic_args: &TopicArgs,
    load: &LoadArgs,
    shape: Shape,
    duration: Duration,
    consumers: usize,
) -> E2eWorkload {
    E2eWorkload {
        produce: produce_workload(
            format!("e2e {} {}", shape.acks, shape.rate),
            topic,
            topic_args,
            load,
            shape,
            Goal::Duration(duration),
        ),
        consumers,
        consumer_settings: Vec::new(),
    }
}

fn e2e_command(context: &Context, args: &E2eArgs) -> Result<PhaseResult, String> {
    if args.load.records.is_some() {
        return Err("e2e runs for a --duration, not a record count".into());
    }
    let topic = &args.topic.topic;
    client::ensure_topic(
        &context.client,
        topic,
        args.topic.partitions,
        &args.topic.topic_configs,
    )?;
    let workload = e2e_workload(
        topic,
        &args.topic,
        &args.load,
        Shape {
            acks: args.acks,
            rate: args.load.rate.unwrap_or(DEFAULT_E2E_RATE),
            linger_ms: args.load.linger_ms.unwrap_or(DEFAULT_E2E_LINGER_MS),
        },
        args.load.duration.unwrap_or(DEFAULT_E2E_DURATION),
        args.consumers,
    );
    phases::e2e(&context.client, &context.probes, &workload)
}

/// One repeat of the suite: produce acks=1, produce acks=all, consume the acks=1 topic (cold by
/// then: the acks=all phase went through the batch cache after it), e2e.
fn suite(
    context: &Context,
    args: &SuiteArgs,
    repeat: usize,
    keep: &mut dyn FnMut(Result<PhaseResult, String>) -> Option<PhaseResult>,
) -> Vec<PhaseResult> {
    let base = &args.topic.topic;
    let leader_topic = format!("{base}-r{repeat}-acks1");
    let all_topic = format!("{base}-r{repeat}-acksall");
    let e2e_topic = format!("{base}-r{repeat}-e2e");
    let topics = [&leader_topic, &all_topic, &e2e_topic];
    for topic in topics {
        let created = client::ensure_topic(
            &context.client,
            topic,
            args.topic.partitions,
            &args.topic.topic_configs,
        );
        if let Err(error) = created {
            keep(Err(error));
            return Vec::new();
        }
    }
    let load = &args.load;
    let rate = load.rate.unwrap_or(Rate::Max);
    let linger = load.linger_ms.unwrap_or(DEFAULT_LINGER_MS);
    let duration = goal(load, DEFAULT_DURATION);
    let mut results = Vec::new();
    for (acks, topic) in [(Acks::Leader, &leader_topic), (Acks::All, &all_topic)] {
        let workload = produce_workload(
            format!("produce {acks}"),
            topic,
            &args.topic,
            load,
            Shape {
                acks,
                rate,
                linger_ms: linger,
            },
            duration,
        );
        results.extend(keep(phases::produce(
            &context.client,
            &context.probes,
            &workload,
        )));
    }
    let mut consume_topic = args.topic.clone();
    consume_topic.topic = leader_topic.clone();
    // librdkafka's default isolation, what the suite has always measured.
    let consume = consume_workload(
        "consume",
        &consume_topic,
        args.consumers,
        None,
        Isolation::ReadCommitted,
    );
    results.extend(keep(phases::consume(
        &context.client,
        &context.probes,
        &consume,
    )));
    let e2e_load = LoadArgs {
        partitioning: args.e2e_partitioning,
        ..load.clone()
    };
    let e2e = e2e_workload(
        &e2e_topic,
        &args.topic,
        &e2e_load,
        Shape {
            acks: Acks::All,
            rate: args.e2e_rate,
            linger_ms: args.e2e_linger_ms,
        },
        args.e2e_duration,
        args.e2e_consumers,
    );
    results.extend(keep(phases::e2e(&context.client, &context.probes, &e2e)));
    if !args.keep_topics {
        for topic in topics {
            if let Err(error) = client::delete_topic(&context.client, topic) {
                eprintln!("weir bench: {error}");
            }
        }
    }
    results
}

fn transactions_command(
    context: &Context,
    args: &transactions::TransactionsArgs,
) -> Result<PhaseResult, String> {
    let topic = &args.topic.topic;
    client::ensure_topic(
        &context.client,
        topic,
        args.topic.partitions,
        &args.topic.topic_configs,
    )?;
    let goal = match (args.transactions, args.duration) {
        (Some(n), _) => Goal::Records(n.saturating_mul(args.records_per_txn)),
        (None, Some(duration)) => Goal::Duration(duration),
        (None, None) => Goal::Duration(DEFAULT_DURATION),
    };
    let workload = transactions::TxnWorkload {
        name: format!("txn×{}", args.records_per_txn),
        topic: topic.clone(),
        partitions: args.topic.partitions,
        record_bytes: args.record_size as usize,
        records_per_txn: args.records_per_txn,
        producers: args.producers as usize,
        goal,
        warmup: args.warmup,
        abort_every: args.abort_every,
        linger_ms: args.linger_ms,
        transaction_timeout_ms: args.transaction_timeout_ms,
        round_robin: args.partitioning == Partitioning::RoundRobin,
    };
    transactions::run_phase(&context.client, &context.probes, &workload)
}
