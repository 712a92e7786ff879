//! `weir topic create|list|describe|delete|alter-config|add-partitions`: topic administration
//! over CreateTopics, Metadata, ListOffsets, DescribeConfigs, DeleteTopics,
//! IncrementalAlterConfigs and CreatePartitions, in the spirit of `kafka-topics.sh` and
//! `kafka-configs.sh`. Confirmations go to stdout; errors name the topic and the fix.

use std::io::{self, BufWriter, Write};

use clap::{Args, Subcommand};

use super::parse::{config_name, config_pair};
use super::table::Table;
use super::{CliError, ConnectArgs};
use crate::client::{
    Client, ConfigChange, ConfigOp, ConfigResource, ConfigSource, NewTopic, OffsetSpec,
    TopicMetadata,
};
use crate::protocol::ErrorCode;

#[derive(Args, Debug)]
pub struct TopicArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names.
    List(ListArgs),
    /// Show a topic's partitions (leader, epoch, offsets) and its configs with their source.
    Describe(DescribeArgs),
    /// Delete a topic and all its records.
    Delete(DeleteArgs),
    /// Set or remove topic config overrides.
    AlterConfig(AlterConfigArgs),
    /// Add partitions to a topic (they can never be removed).
    AddPartitions(AddPartitionsArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Topic name (letters, digits, '.', '_', '-').
    pub name: String,
    /// Number of partitions [default: the broker's num.partitions].
    #[arg(short, long, value_name = "N")]
    pub partitions: Option<i32>,
    /// Replicas per partition [default: the broker's default.replication.factor].
    #[arg(short = 'r', long, value_name = "N")]
    pub replication_factor: Option<i16>,
    /// A topic config, e.g. --config retention.ms=86400000 (repeatable).
    #[arg(short, long = "config", value_name = "NAME=VALUE", value_parser = config_pair)]
    pub configs: Vec<(String, String)>,
    /// Succeed without changes if the topic already exists.
    #[arg(long)]
    pub if_not_exists: bool,
    /// Check the request with the broker without creating anything.
    #[arg(long)]
    pub validate_only: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Also print partition count, replication factor and topic id.
    #[arg(short, long)]
    pub long: bool,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    pub name: String,
    /// Print only configs set on the topic itself.
    #[arg(long)]
    pub overrides: bool,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    pub name: String,
    /// Succeed without changes if the topic does not exist.
    #[arg(long)]
    pub if_exists: bool,
}

#[derive(Args, Debug)]
pub struct AlterConfigArgs {
    pub name: String,
    /// Set a config override (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = config_pair)]
    pub set: Vec<(String, String)>,
    /// Remove an override, going back to the broker's value (repeatable).
    #[arg(long = "delete", value_name = "NAME", value_parser = config_name)]
    pub delete: Vec<String>,
    /// Add items to a list config, e.g. --append cleanup.policy=compact (repeatable).
    #[arg(long = "append", value_name = "NAME=ITEMS", value_parser = config_pair)]
    pub append: Vec<(String, String)>,
    /// Remove items from a list config (repeatable).
    #[arg(long = "subtract", value_name = "NAME=ITEMS", value_parser = config_pair)]
    pub subtract: Vec<(String, String)>,
    /// Check the change with the broker without applying it.
    #[arg(long)]
    pub validate_only: bool,
}

#[derive(Args, Debug)]
pub struct AddPartitionsArgs {
    pub name: String,
    /// The partition count the topic should have afterwards.
    #[arg(long, value_name = "N")]
    pub total: i32,
    /// Check the change with the broker without applying it.
    #[arg(long)]
    pub validate_only: bool,
}

pub fn run(args: &TopicArgs) -> Result<(), CliError> {
    // Checked before connecting: a value the wire would read as "broker default".
    if let TopicCommand::Create(create) = &args.command {
        if let Some(partitions) = create.partitions.filter(|p| *p < 1) {
            return Err(CliError::new(format!(
                "--partitions must be at least 1, not {partitions}"
            )));
        }
        if let Some(replicas) = create.replication_factor.filter(|r| *r < 1) {
            return Err(CliError::new(format!(
                "--replication-factor must be at least 1, not {replicas}"
            )));
        }
    }
    let mut client = args.connect.connect()?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match &args.command {
        TopicCommand::Create(create) => run_create(&mut client, create, &mut out)?,
        TopicCommand::List(list) => run_list(&mut client, list, &mut out)?,
        TopicCommand::Describe(describe) => run_describe(&mut client, describe, &mut out)?,
        TopicCommand::Delete(delete) => run_delete(&mut client, delete, &mut out)?,
        TopicCommand::AlterConfig(alter) => run_alter(&mut client, alter, &mut out)?,
        TopicCommand::AddPartitions(add) => run_add_partitions(&mut client, add, &mut out)?,
    }
    out.flush()?;
    Ok(())
}

fn run_create(
    client: &mut Client,
    args: &CreateArgs,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let topic = NewTopic {
        name: args.name.clone(),
        partitions: args.partitions,
        replication_factor: args.replication_factor,
        configs: args.configs.clone(),
    };
    let created = match client.create_topic(&topic, args.validate_only) {
        Ok(created) => created,
        Err(error) if error.is_kafka(ErrorCode::TopicAlreadyExists) => {
            if args.if_not_exists {
                writeln!(out, "topic '{}' already exists; nothing to do", args.name)?;
                return Ok(());
            }
            return Err(CliError::new(format!(
                "topic '{}' already exists (use --if-not-exists to accept that)",
                args.name
            )));
        }
        Err(error) => return Err(error.into()),
    };
    let partitions = if created.partitions > 0 {
        created.partitions.to_string()
    } else {
        args.partitions
            .map_or_else(|| "the default number of".into(), |p| p.to_string())
    };
    if args.validate_only {
        writeln!(
            out,
            "topic '{}' is valid: it would be created with {partitions} partitions",
            args.name
        )?;
        return Ok(());
    }
    write!(
        out,
        "created topic '{}' with {partitions} partitions",
        args.name
    )?;
    if created.replication_factor > 0 {
        write!(out, ", replication factor {}", created.replication_factor)?;
    }
    if !created.id.is_zero() {
        write!(out, " (id {})", created.id)?;
    }
    writeln!(out)?;
    Ok(())
}

fn run_list(client: &mut Client, args: &ListArgs, out: &mut impl Write) -> Result<(), CliError> {
    let topics = client.list_topics()?;
    if !args.long {
        for topic in &topics {
            writeln!(out, "{}", topic.name)?;
        }
        return Ok(());
    }
    let mut table = Table::new(&["TOPIC", "PARTITIONS", "REPLICATION", "ID"]);
    for topic in &topics {
        table.row(vec![
            topic.name.clone(),
            topic.partition_count().to_string(),
            topic.replication_factor().to_string(),
            topic.id.to_string(),
        ]);
    }
    table.write(out)?;
    Ok(())
}

/// Metadata of `name`, with "does not exist" worded for a topic command.
fn existing_topic(client: &mut Client, name: &str) -> Result<TopicMetadata, CliError> {
    client.topic(name, false).map_err(CliError::from)
}

fn node_list(nodes: &[i32]) -> String {
    if nodes.is_empty() {
        return "-".into();
    }
    nodes
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn run_describe(
    client: &mut Client,
    args: &DescribeArgs,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let topic = existing_topic(client, &args.name)?;
    let indexes: Vec<i32> = topic.partitions.iter().map(|p| p.partition).collect();
    let low = client.list_offsets(&topic.name, &indexes, OffsetSpec::Earliest)?;
    let high = client.list_offsets(&topic.name, &indexes, OffsetSpec::Latest)?;
    let configs = client.describe_configs(&ConfigResource::Topic(topic.name.clone()), None)?;

    writeln!(out, "topic:        {}", topic.name)?;
    writeln!(out, "id:           {}", topic.id)?;
    writeln!(out, "partitions:   {}", topic.partition_count())?;
    writeln!(out, "replication:  {}", topic.replication_factor())?;
    if topic.internal {
        writeln!(out, "internal:     yes")?;
    }
    let records: i64 = indexes
        .iter()
        .map(|p| {
            offset_of(&high, *p)
                .saturating_sub(offset_of(&low, *p))
                .max(0)
        })
        .sum();
    writeln!(out, "records:      {records}")?;
    writeln!(out)?;

    let mut table = Table::new(&[
        "PARTITION",
        "LEADER",
        "EPOCH",
        "REPLICAS",
        "ISR",
        "LOW",
        "HIGH",
    ]);
    for partition in &topic.partitions {
        table.row(vec![
            partition.partition.to_string(),
            if partition.leader < 0 {
                "none".into()
            } else {
                partition.leader.to_string()
            },
            partition.leader_epoch.to_string(),
            node_list(&partition.replicas),
            node_list(&partition.isr),
            offset_of(&low, partition.partition).to_string(),
            offset_of(&high, partition.partition).to_string(),
        ]);
    }
    table.write(out)?;
    writeln!(out)?;

    let mut table = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
    for entry in configs
        .iter()
        .filter(|entry| !args.overrides || entry.source == ConfigSource::DynamicTopic)
    {
        let value = match (&entry.value, entry.sensitive) {
            (_, true) => "(sensitive)".to_string(),
            (Some(value), false) => value.clone(),
            (None, false) => "(null)".to_string(),
        };
        table.row(vec![
            entry.name.clone(),
            value,
            entry.source.label().to_string(),
        ]);
    }
    table.write(out)?;
    Ok(())
}

fn offset_of(offsets: &[crate::client::ListedOffset], partition: i32) -> i64 {
    offsets
        .iter()
        .find(|o| o.partition == partition)
        .map_or(-1, |o| o.offset)
}

fn run_delete(
    client: &mut Client,
    args: &DeleteArgs,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match client.delete_topic(&args.name) {
        Ok(()) => writeln!(out, "deleted topic '{}'", args.name)?,
        Err(error) if args.if_exists && error.is_kafka(ErrorCode::UnknownTopicOrPartition) => {
            writeln!(
                out,
                "topic '{}' does not exist; nothing to delete",
                args.name
            )?
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// The changes `alter-config` asks for, in a fixed order: set, append, subtract, delete.
fn config_changes(args: &AlterConfigArgs) -> Vec<ConfigChange> {
    let pairs = |list: &[(String, String)], op: fn(String) -> ConfigOp| {
        list.iter()
            .map(|(name, value)| ConfigChange {
                name: name.clone(),
                op: op(value.clone()),
            })
            .collect::<Vec<_>>()
    };
    let mut changes = pairs(&args.set, ConfigOp::Set);
    changes.extend(pairs(&args.append, ConfigOp::Append));
    changes.extend(pairs(&args.subtract, ConfigOp::Subtract));
    changes.extend(args.delete.iter().map(|name| ConfigChange {
        name: name.clone(),
        op: ConfigOp::Delete,
    }));
    changes
}

fn describe_change(change: &ConfigChange) -> String {
    match &change.op {
        ConfigOp::Set(value) => format!("set {}={value}", change.name),
        ConfigOp::Delete => format!("removed the override of {}", change.name),
        ConfigOp::Append(value) => format!("appended {value} to {}", change.name),
        ConfigOp::Subtract(value) => format!("removed {value} from {}", change.name),
    }
}

fn run_alter(
    client: &mut Client,
    args: &AlterConfigArgs,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let changes = config_changes(args);
    if changes.is_empty() {
        return Err(CliError::new(
            "nothing to change: give --set NAME=VALUE, --delete NAME, --append or --subtract",
        ));
    }
    let mut names: Vec<&str> = changes.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(CliError::new(format!(
            "config {} is changed twice; give each config once",
            pair[0]
        )));
    }
    let resource = ConfigResource::Topic(args.name.clone());
    client.alter_configs(&resource, &changes, args.validate_only)?;
    let summary: Vec<String> = changes.iter().map(describe_change).collect();
    if args.validate_only {
        writeln!(
            out,
            "valid change to topic '{}': would have {}",
            args.name,
            summary.join("; ")
        )?;
    } else {
        writeln!(out, "topic '{}': {}", args.name, summary.join("; "))?;
    }
    Ok(())
}

fn run_add_partitions(
    client: &mut Client,
    args: &AddPartitionsArgs,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let current = existing_topic(client, &args.name)?.partition_count();
    if let Err(error) = client.create_partitions(&args.name, args.total, args.validate_only) {
        if error.is_kafka(ErrorCode::InvalidPartitions) {
            let name = &args.name;
            let total = args.total;
            let message = if total < current {
                format!(
                    "topic '{name}' has {current} partitions; cannot reduce to {total} \
                     (partitions can only be added)"
                )
            } else if total == current {
                format!("topic '{name}' already has {current} partitions; nothing to add")
            } else {
                super::explain(&error)
            };
            return Err(CliError::new(message));
        }
        return Err(error.into());
    }
    if args.validate_only {
        writeln!(
            out,
            "valid: topic '{}' can grow from {current} to {} partitions",
            args.name, args.total
        )?;
    } else {
        writeln!(
            out,
            "topic '{}' now has {} partitions (was {current})",
            args.name, args.total
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alter_config_changes_keep_a_fixed_order() {
        let args = AlterConfigArgs {
            name: "t".into(),
            set: vec![("retention.ms".into(), "1000".into())],
            delete: vec!["segment.bytes".into()],
            append: vec![("cleanup.policy".into(), "compact".into())],
            subtract: vec![],
            validate_only: false,
        };
        let changes = config_changes(&args);
        let described: Vec<String> = changes.iter().map(describe_change).collect();
        assert_eq!(
            described,
            vec![
                "set retention.ms=1000",
                "appended compact to cleanup.policy",
                "removed the override of segment.bytes",
            ]
        );
    }

    #[test]
    fn node_lists_are_comma_separated() {
        assert_eq!(node_list(&[1, 2, 3]), "1,2,3");
        assert_eq!(node_list(&[]), "-");
    }
}
