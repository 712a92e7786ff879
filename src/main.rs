//! The `weir` command: `weir start` runs a broker; the other subcommands are Kafka-protocol tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use weir::config::BrokerConfig;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Weir: a Kafka-compatible, thread-per-core event streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (Ctrl-C or SIGTERM shuts it down cleanly).
    Start(StartArgs),
    /// Create, list, describe, delete and configure topics on a running broker.
    Topic(weir::cli::topic::TopicArgs),
    /// Write records to a topic: one per stdin line, or one --value.
    Produce(weir::cli::produce::ProduceArgs),
    /// Print records of a topic.
    Consume(weir::cli::consume::ConsumeArgs),
    /// Show the cluster: id, controller, brokers, topic counts, broker configs.
    Cluster(weir::cli::cluster::ClusterArgs),
    /// Consumer groups: list, describe (members, offsets, lag), reset-offsets, delete.
    Group(weir::cli::group::GroupArgs),
    /// Transactions: list transactional ids, describe one (state, producer, open partitions).
    Transactions(weir::cli::transactions::TransactionsArgs),
    /// Active producers of a partition: ids, epochs, sequences, open transactions.
    Producers(weir::cli::producers::ProducersArgs),
    /// Benchmarks: load through librdkafka beside the machine's ceilings.
    Bench {
        #[command(subcommand)]
        command: weir::bench::BenchCommand,
    },
}

#[derive(clap::Args)]
struct StartArgs {
    /// Address to listen on for Kafka clients (host:port).
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: String,
    /// Data directory (segments, metadata log, lock file).
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Number of shards (pinned executors); 0 or absent: one per core.
    #[arg(long)]
    smp: Option<usize>,
    /// TOML file with Kafka/Weir settings (flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Any setting as name=value, e.g. --set num.partitions=3 (repeatable; overrides the file).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    settings: Vec<String>,
}

fn broker_config(args: &StartArgs) -> Result<BrokerConfig, String> {
    let mut config = match &args.config {
        Some(path) => BrokerConfig::from_toml_file(path).map_err(|e| e.0)?,
        None => BrokerConfig::default(),
    };
    config.apply_env(std::env::vars()).map_err(|e| e.0)?;
    let file_sets_listener = args.config.is_some() && config.is_set("listeners");
    let file_sets_data_dir = args.config.is_some() && config.is_set("log.dirs");
    // Flags win over the file, but a default flag does not undo a value the file set.
    if !file_sets_listener || args.listen != "127.0.0.1:9092" {
        config.set("listeners", &args.listen).map_err(|e| e.0)?;
    }
    if !file_sets_data_dir || args.data_dir.as_path() != std::path::Path::new("./data") {
        config
            .set("log.dirs", &args.data_dir.to_string_lossy())
            .map_err(|e| e.0)?;
    }
    if let Some(smp) = args.smp {
        config.set("weir.smp", &smp.to_string()).map_err(|e| e.0)?;
    }
    for setting in &args.settings {
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("--set {setting}: expected NAME=VALUE"))?;
        config.set(name.trim(), value.trim()).map_err(|e| e.0)?;
    }
    config.listen_addr().map_err(|e| e.0)?;
    Ok(config)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Start(args) => broker_config(&args).and_then(weir::broker::run),
        Command::Topic(args) => return weir::cli::finish(weir::cli::topic::run(&args)),
        Command::Produce(args) => return weir::cli::finish(weir::cli::produce::run(&args)),
        Command::Consume(args) => return weir::cli::finish(weir::cli::consume::run(&args)),
        Command::Cluster(args) => return weir::cli::finish(weir::cli::cluster::run(&args)),
        Command::Group(args) => return weir::cli::finish(weir::cli::group::run(&args)),
        Command::Transactions(args) => {
            return weir::cli::finish(weir::cli::transactions::run(&args))
        }
        Command::Producers(args) => return weir::cli::finish(weir::cli::producers::run(&args)),
        Command::Bench { command } => weir::bench::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weir: {error}");
            ExitCode::FAILURE
        }
    }
}
