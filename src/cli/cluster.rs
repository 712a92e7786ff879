//! `weir cluster info`: cluster id, controller, brokers, topic and partition counts, and the
//! broker's configs that differ from their defaults (all of them with `--all-configs`), from
//! DescribeCluster (or Metadata), Metadata and DescribeConfigs.

use std::io::{self, BufWriter, Write};

use clap::{Args, Subcommand};

use super::table::Table;
use super::{CliError, ConnectArgs};
use crate::client::{ConfigResource, ConfigSource};

#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Cluster id, controller, brokers, topic counts and broker configs.
    Info(InfoArgs),
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// List every broker config, not only those set away from their defaults.
    #[arg(long)]
    pub all_configs: bool,
}

pub fn run(args: &ClusterArgs) -> Result<(), CliError> {
    match &args.command {
        ClusterCommand::Info(info) => run_info(&args.connect, info),
    }
}

fn run_info(connect: &ConnectArgs, args: &InfoArgs) -> Result<(), CliError> {
    let mut client = connect.connect()?;
    let cluster = client.describe_cluster()?;
    let topics = client.list_topics()?;
    // Configs of the controller, or of the first broker when the controller is not listed.
    let config_broker = cluster
        .brokers
        .iter()
        .find(|b| b.node_id == cluster.controller_id)
        .or_else(|| cluster.brokers.first())
        .map(|b| b.node_id);
    let configs = match config_broker {
        Some(node) => client.describe_configs(&ConfigResource::Broker(node.to_string()), None)?,
        None => Vec::new(),
    };

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let partitions: i64 = topics.iter().map(|t| i64::from(t.partition_count())).sum();
    let internal = topics.iter().filter(|t| t.internal).count();
    writeln!(
        out,
        "cluster id:  {}",
        cluster.cluster_id.as_deref().unwrap_or("(none)")
    )?;
    if cluster.controller_id >= 0 {
        writeln!(out, "controller:  {}", cluster.controller_id)?;
    } else {
        writeln!(out, "controller:  (unknown)")?;
    }
    writeln!(out, "brokers:     {}", cluster.brokers.len())?;
    write!(out, "topics:      {}", topics.len())?;
    if internal > 0 {
        write!(out, " ({internal} internal)")?;
    }
    writeln!(out)?;
    writeln!(out, "partitions:  {partitions}")?;
    writeln!(out)?;

    let mut table = Table::new(&["BROKER", "ADDRESS", "RACK", "ROLE"]);
    for broker in &cluster.brokers {
        table.row(vec![
            broker.node_id.to_string(),
            broker.address(),
            broker.rack.clone().unwrap_or_else(|| "-".into()),
            if broker.node_id == cluster.controller_id {
                "controller".into()
            } else {
                String::new()
            },
        ]);
    }
    table.write(&mut out)?;

    if let Some(node) = config_broker {
        writeln!(out)?;
        let shown: Vec<_> = configs
            .iter()
            .filter(|entry| args.all_configs || entry.source != ConfigSource::Default)
            .collect();
        if shown.is_empty() {
            writeln!(
                out,
                "broker {node} runs with default configs (--all-configs lists them)"
            )?;
        } else {
            let mut table = Table::new(&["BROKER CONFIG", "VALUE", "SOURCE"]);
            for entry in shown {
                let value = if entry.sensitive {
                    "(sensitive)".to_string()
                } else {
                    entry.value.clone().unwrap_or_else(|| "(null)".into())
                };
                table.row(vec![entry.name.clone(), value, entry.source.label().into()]);
            }
            table.write(&mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}
