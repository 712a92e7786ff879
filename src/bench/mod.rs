//! `weir bench`: load generation against a broker through librdkafka, and the machine's ceilings
//! (raw O_DIRECT write, fdatasync, loopback TCP) measured in the same run, so every figure is
//! reported beside what the machine can do.
//!
//! Subcommands: `produce`, `consume`, `e2e` (one workload each), `ceilings` (the machine only),
//! `groups` (the group coordinator, see [`groups`]), `transactions` (transactional producers,
//! see [`transactions`]) and `suite` (the whole set the benchmark
//! report uses: ceilings, produce acks=1, produce acks=all, consume of the acks=1 data, e2e at
//! 20 MB/s acks=all). A run either targets a broker
//! already running (`--bootstrap`, and `--broker-pid` for its CPU) or starts one
//! (`--spawn-broker`). `--json FILE` writes every figure; `--repeat N` repeats the run and
//! reports medians.
//!
//! Layout: pure parts (units, rate limiter, CPU accounting, report maths, machine facts,
//! counter scraping) are plain modules with unit tests; the librdkafka driver (`client`,
//! `phases`, `session`) needs the `bench` feature.

pub mod broker_process;
pub mod ceilings;
pub mod cpu;
pub mod groups;
pub mod machine;
pub mod metrics_scrape;
pub mod progress;
pub mod rate;
pub mod report;
pub mod transactions;
pub mod units;

#[cfg(feature = "bench")]
pub mod client;
#[cfg(feature = "bench")]
pub mod phases;
#[cfg(feature = "bench")]
pub mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use units::{parse_acks, parse_bytes, parse_duration, parse_rate, parse_setting, Acks, Rate};

/// `weir bench …` (arguments boxed: the enum sits inside the CLI's command enum).
#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Produce records and measure acknowledged throughput and acknowledgement latency.
    Produce(Box<ProduceArgs>),
    /// Read a topic from its start and measure fetch throughput.
    Consume(Box<ConsumeArgs>),
    /// Produce at a fixed rate while consuming; measure record timestamp → consumer latency.
    E2e(Box<E2eArgs>),
    /// Measure the machine's ceilings only (O_DIRECT write, fdatasync, loopback TCP).
    Ceilings(Box<CeilingsArgs>),
    /// Everything the benchmark report needs: ceilings, produce acks=1 and acks=all, consume of
    /// the acks=1 data, e2e at a fixed rate with acks=all.
    Suite(Box<SuiteArgs>),
    /// The group coordinator: a group of N members joining, rebalancing for one more member, and
    /// committing offsets (lean protocol-level members, no librdkafka).
    Groups(Box<groups::GroupsArgs>),
    /// Transactional producers: begin, N records, commit in a loop; committed transactions per
    /// second and begin → commit latency.
    Transactions(Box<transactions::TransactionsArgs>),
}

/// Which broker to load, and how to see its CPU.
#[derive(clap::Args, Debug, Clone)]
pub struct BrokerArgs {
    /// Kafka bootstrap address of a running broker (ignored with --spawn-broker).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Start a broker (`weir start`) for this run, with its data under --data-dir.
    #[arg(long)]
    pub spawn_broker: bool,
    /// The executable --spawn-broker runs (default: this one).
    #[arg(long, value_name = "PATH")]
    pub broker_bin: Option<PathBuf>,
    /// Shards of the spawned broker.
    #[arg(long, default_value_t = 2)]
    pub smp: usize,
    /// A setting of the spawned broker, NAME=VALUE (repeatable).
    #[arg(long = "broker-set", value_name = "NAME=VALUE", value_parser = parse_setting)]
    pub broker_settings: Vec<(String, String)>,
    /// Keep the spawned broker's data directory and log afterwards.
    #[arg(long)]
    pub keep_broker_data: bool,
    /// Pid of a running broker, for its CPU-seconds per GB (from /proc/<pid>/stat).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Admin endpoint (host:port) of a running broker, for its counters.
    #[arg(long)]
    pub broker_admin: Option<SocketAddr>,
    /// A librdkafka setting for every client, NAME=VALUE (repeatable; wins over the bench's).
    #[arg(long = "client-set", value_name = "NAME=VALUE", value_parser = parse_setting)]
    pub client_settings: Vec<(String, String)>,
}

/// Ceilings, repeats and output.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// Directory on the broker's data disk: ceilings are measured there and a spawned broker
    /// keeps its data there (created if missing).
    #[arg(long, default_value = "./weir-bench-data")]
    pub data_dir: PathBuf,
    /// Measure the machine's ceilings in the same run (default).
    #[arg(long, overrides_with = "no_ceilings")]
    pub ceilings: bool,
    /// Skip the ceilings (no ratios in the report).
    #[arg(long)]
    pub no_ceilings: bool,
    /// Time per ceiling measurement.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub ceiling_duration: Duration,
    /// Byte cap per disk ceiling measurement.
    #[arg(long, value_parser = parse_bytes, default_value = "2GiB")]
    pub ceiling_max_bytes: u64,
    /// Write every figure as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Run everything this many times and report medians.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
}

/// The topic a workload uses.
#[derive(clap::Args, Debug, Clone)]
pub struct TopicArgs {
    /// Topic (created if missing).
    #[arg(long, default_value = "weir-bench")]
    pub topic: String,
    /// Partitions of a topic the bench creates.
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
    /// A config of a topic the bench creates, NAME=VALUE (repeatable).
    #[arg(long = "topic-config", value_name = "NAME=VALUE", value_parser = parse_setting)]
    pub topic_configs: Vec<(String, String)>,
}

/// How partitions are chosen for the (unkeyed) records.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// The bench sets the partition, rotating over all partitions record by record.
    RoundRobin,
    /// librdkafka's partitioner for null keys (sticky batches).
    Client,
}

/// Compression codec of produced batches.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// Producer-side workload options; unset ones take the subcommand's defaults.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Value size of each record.
    #[arg(long, value_parser = parse_bytes, default_value = "1KiB")]
    pub record_size: u64,
    /// Key the records with this many distinct keys (`key-00000042`, cycling; the records of a
    /// compacted topic need keys) [default: null keys].
    #[arg(long)]
    pub keys: Option<u64>,
    /// Stop after this many records (instead of --duration).
    #[arg(long, conflicts_with = "duration")]
    pub records: Option<u64>,
    /// Measure for this long after the warm-up [default: 20s; e2e 30s].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Run this long before measuring (duration runs only).
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub warmup: Duration,
    /// Offered load: max, N rec/s, or a size per second like 20MB/s [default: max; e2e 20MB/s].
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<Rate>,
    /// Producer threads, each with its own librdkafka producer.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// librdkafka linger.ms [default: 5; e2e 1].
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// librdkafka batch.size (bytes per partition batch).
    #[arg(long, value_parser = parse_bytes)]
    pub batch_size: Option<u64>,
    #[arg(long, value_enum, default_value_t = Codec::None)]
    pub compression: Codec,
    #[arg(long, value_enum, default_value_t = Partitioning::RoundRobin)]
    pub partitioning: Partitioning,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub topic: TopicArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// 0, 1 or all.
    #[arg(long, value_parser = parse_acks, default_value = "1")]
    pub acks: Acks,
    /// librdkafka enable.idempotence (needs --acks all).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub idempotence: bool,
}

/// Consumer isolation level (librdkafka `isolation.level`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Up to the high watermark, aborted records included.
    #[value(name = "read_uncommitted", alias = "read-uncommitted")]
    ReadUncommitted,
    /// Up to the last stable offset, aborted records filtered out.
    #[value(name = "read_committed", alias = "read-committed")]
    ReadCommitted,
}

impl Isolation {
    pub fn client_value(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "read_uncommitted",
            Isolation::ReadCommitted => "read_committed",
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub topic: TopicArgs,
    /// Consumer threads (partitions are split between them).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Stop after this many records [default: all between the watermarks at the start].
    #[arg(long, conflicts_with = "duration")]
    pub records: Option<u64>,
    /// Stop after this long.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// First produce this much (acks=1, max rate, --record-size records) to the topic.
    #[arg(long, value_parser = parse_bytes)]
    pub preload: Option<u64>,
    /// Record size of --preload.
    #[arg(long, value_parser = parse_bytes, default_value = "1KiB")]
    pub record_size: u64,
    /// Preload with a transactional producer committing every this many records (instead of
    /// plain acks=1 records).
    #[arg(long, requires = "preload", value_parser = clap::value_parser!(u64).range(1..))]
    pub preload_records_per_txn: Option<u64>,
    /// Isolation level of the consumers.
    #[arg(long, value_enum, default_value_t = Isolation::ReadUncommitted)]
    pub isolation: Isolation,
}

#[derive(clap::Args, Debug, Clone)]
pub struct E2eArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub topic: TopicArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// 0, 1 or all.
    #[arg(long, value_parser = parse_acks, default_value = "all")]
    pub acks: Acks,
    /// Consumer threads (partitions are split between them).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CeilingsArgs {
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct SuiteArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub topic: TopicArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Offered rate of the e2e phase.
    #[arg(long, value_parser = parse_rate, default_value = "20MB/s")]
    pub e2e_rate: Rate,
    /// Measured time of the e2e phase.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub e2e_duration: Duration,
    /// librdkafka linger.ms of the e2e phase.
    #[arg(long, default_value_t = 1)]
    pub e2e_linger_ms: u64,
    /// Partitioning of the e2e phase [default: client, librdkafka's sticky partitioner, what
    /// an application producing unkeyed records gets].
    #[arg(long, value_enum, default_value_t = Partitioning::Client)]
    pub e2e_partitioning: Partitioning,
    /// Consumer threads of the e2e phase.
    #[arg(long, default_value_t = 1)]
    pub e2e_consumers: usize,
    /// Consumer threads of the consume phase (one librdkafka consumer keeps one fetch in
    /// flight, so one consumer measures the fetch round trip more than the broker).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Keep the suite's topics (default: deleted after each repeat to free the disk).
    #[arg(long)]
    pub keep_topics: bool,
}

/// Runs a `weir bench` subcommand.
pub fn run(command: BenchCommand) -> Result<(), String> {
    match command {
        BenchCommand::Ceilings(args) => run_ceilings(&args.report),
        BenchCommand::Groups(args) => groups::run(*args),
        #[cfg(feature = "bench")]
        other => session::run(other),
        #[cfg(not(feature = "bench"))]
        _ => Err(
            "this weir was built without the `bench` feature (librdkafka); rebuild with \
                  default features for produce/consume/e2e/suite"
                .into(),
        ),
    }
}

/// Measures and prints the ceilings only.
fn run_ceilings(args: &ReportArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("creating {}: {e}", args.data_dir.display()))?;
    let facts = machine::collect(&args.data_dir);
    let load_before = machine::load_snapshot();
    print!("{}", machine::render(&facts));
    println!("{load_before}");
    let mut runs = Vec::new();
    for repeat in 0..args.repeat.max(1) {
        let ceilings = measure_ceilings(args)?;
        if args.repeat > 1 {
            print!("run {}: ", repeat + 1);
        }
        print!("{}", report::render_ceilings(&ceilings));
        runs.push(report::RunReport {
            ceilings: Some(ceilings),
            phases: Vec::new(),
            targets: Vec::new(),
            errors: Vec::new(),
        });
    }
    let medians = report::medians(&runs);
    if runs.len() > 1 {
        println!("medians over {} runs:", runs.len());
        print!("{}", report::render_medians(&medians));
    }
    write_json(
        args,
        &report::BenchReport {
            weir_version: env!("CARGO_PKG_VERSION").into(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            started_unix_seconds: unix_seconds(),
            machine: facts,
            load_before,
            runs,
            medians,
        },
    )
}

/// Measures the ceilings in the data dir, printing progress lines to stderr.
pub fn measure_ceilings(args: &ReportArgs) -> Result<ceilings::Ceilings, String> {
    let options = ceilings::CeilingOptions {
        dir: args.data_dir.clone(),
        duration: args.ceiling_duration,
        max_bytes: args.ceiling_max_bytes,
    };
    eprintln!("measuring ceilings in {}…", args.data_dir.display());
    ceilings::measure(&options, &mut |line| eprintln!("  {line}"))
        .map_err(|e| format!("measuring ceilings in {}: {e}", args.data_dir.display()))
}

/// Writes the report as JSON when `--json` was given.
pub fn write_json(args: &ReportArgs, report: &report::BenchReport) -> Result<(), String> {
    let Some(path) = &args.json else {
        return Ok(());
    };
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: BenchCommand,
    }

    fn parse(args: &[&str]) -> Result<BenchCommand, String> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|c| c.command)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn produce_defaults_match_the_issue() {
        let BenchCommand::Produce(args) = parse(&["produce"]).unwrap() else {
            panic!("not produce")
        };
        assert_eq!(args.topic.partitions, 12);
        assert_eq!(args.load.record_size, 1024);
        assert_eq!(args.acks, Acks::Leader);
        assert_eq!(args.load.rate, None);
        assert!(!args.report.no_ceilings);
        assert_eq!(args.broker.smp, 2);
    }

    #[test]
    fn produce_options_parse() {
        let BenchCommand::Produce(args) = parse(&[
            "produce",
            "--acks",
            "all",
            "--rate",
            "20MB/s",
            "--record-size",
            "4KiB",
            "--duration",
            "10s",
            "--compression",
            "lz4",
            "--client-set",
            "linger.ms=20",
            "--spawn-broker",
            "--broker-set",
            "weir.cache.bytes=1000",
            "--json",
            "out.json",
            "--no-ceilings",
        ])
        .unwrap() else {
            panic!("not produce")
        };
        assert_eq!(args.acks, Acks::All);
        assert_eq!(args.load.rate, Some(Rate::BytesPerSecond(20e6)));
        assert_eq!(args.load.record_size, 4096);
        assert_eq!(args.load.duration, Some(Duration::from_secs(10)));
        assert_eq!(args.load.compression, Codec::Lz4);
        assert_eq!(
            args.broker.client_settings,
            vec![("linger.ms".to_string(), "20".to_string())]
        );
        assert!(args.broker.spawn_broker);
        assert!(args.report.no_ceilings);
        assert_eq!(args.report.json, Some(PathBuf::from("out.json")));
    }

    #[test]
    fn records_and_duration_conflict() {
        assert!(parse(&["produce", "--records", "10", "--duration", "5s"]).is_err());
        assert!(parse(&["produce", "--acks", "2"]).is_err());
        assert!(parse(&["produce", "--rate", "fast"]).is_err());
    }

    #[test]
    fn idempotence_and_isolation_options() {
        let BenchCommand::Produce(args) = parse(&["produce"]).unwrap() else {
            panic!("not produce")
        };
        assert!(!args.idempotence);
        let BenchCommand::Produce(args) =
            parse(&["produce", "--acks", "all", "--idempotence", "true"]).unwrap()
        else {
            panic!("not produce")
        };
        assert!(args.idempotence);
        assert!(parse(&["produce", "--idempotence", "maybe"]).is_err());
        let BenchCommand::Consume(args) = parse(&["consume"]).unwrap() else {
            panic!("not consume")
        };
        assert_eq!(args.isolation, Isolation::ReadUncommitted);
        assert_eq!(args.preload_records_per_txn, None);
        let BenchCommand::Consume(args) = parse(&[
            "consume",
            "--isolation",
            "read_committed",
            "--preload",
            "1GB",
            "--preload-records-per-txn",
            "100",
        ])
        .unwrap() else {
            panic!("not consume")
        };
        assert_eq!(args.isolation.client_value(), "read_committed");
        assert_eq!(args.preload_records_per_txn, Some(100));
        assert!(parse(&["consume", "--preload-records-per-txn", "100"]).is_err());
        assert!(parse(&[
            "consume",
            "--preload",
            "1MB",
            "--preload-records-per-txn",
            "0"
        ])
        .is_err());
    }

    #[test]
    fn e2e_and_suite_defaults() {
        let BenchCommand::E2e(args) = parse(&["e2e"]).unwrap() else {
            panic!("not e2e")
        };
        assert_eq!(args.acks, Acks::All);
        let BenchCommand::Suite(args) = parse(&["suite", "--repeat", "3"]).unwrap() else {
            panic!("not suite")
        };
        assert_eq!(args.e2e_rate, Rate::BytesPerSecond(20e6));
        assert_eq!(args.report.repeat, 3);
        assert!(matches!(
            parse(&["ceilings", "--data-dir", "/x"]).unwrap(),
            BenchCommand::Ceilings(_)
        ));
    }
}
