//! `weir group list|describe|reset-offsets|delete`: consumer groups over the Kafka protocol
//! (ListGroups, DescribeGroups, OffsetFetch, ListOffsets, OffsetCommit, DeleteGroups), in the
//! spirit of Kafka's `kafka-consumer-groups.sh`: `reset-offsets` prints its plan and changes
//! nothing unless given `--execute`, and refuses while the group has members.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Write};

use clap::{Args, Subcommand};

use super::parse::{start_offset, StartAt};
use super::table::Table;
use super::{CliError, ConnectArgs};
use crate::client::groups::{CommittedOffset, GroupDescription};
use crate::client::{Client, ClientError, OffsetSpec};
use crate::protocol::ErrorCode;

#[derive(Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Every consumer group, with its state and protocol type.
    List(ListArgs),
    /// A group's state, members and their partitions, and per partition the committed offset,
    /// the log end offset and the lag.
    Describe(DescribeArgs),
    /// Move a group's committed offsets (the group must have no members). Prints the plan;
    /// `--execute` applies it.
    ResetOffsets(ResetArgs),
    /// Delete a group and its committed offsets (the group must have no members).
    Delete(DeleteArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only groups in this state (Empty, Stable, PreparingRebalance, CompletingRebalance,
    /// Dead; repeatable).
    #[arg(long = "state", value_name = "STATE")]
    pub states: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    pub group: String,
}

#[derive(Args, Debug)]
pub struct ResetArgs {
    pub group: String,
    /// Topic whose offsets to reset, all its partitions or some: `TOPIC` or `TOPIC:0,2,5`
    /// (repeatable).
    #[arg(
        long = "topic",
        value_name = "TOPIC[:P,P…]",
        required_unless_present = "all_topics"
    )]
    pub topics: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long, conflicts_with = "topics")]
    pub all_topics: bool,
    /// Where to: earliest, latest, an OFFSET, -N (N records before the end) or @TIMESTAMP_MS
    /// (the first record at or after that time).
    #[arg(long, value_name = "POSITION")]
    pub to: StartAt,
    /// Apply the plan (without it, only print it).
    #[arg(long)]
    pub execute: bool,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    pub group: String,
}

pub fn run(args: &GroupArgs) -> Result<(), CliError> {
    let mut client = args.connect.connect()?;
    match &args.command {
        GroupCommand::List(list) => run_list(&mut client, list),
        GroupCommand::Describe(describe) => run_describe(&mut client, &describe.group),
        GroupCommand::ResetOffsets(reset) => run_reset(&mut client, reset),
        GroupCommand::Delete(delete) => run_delete(&mut client, &delete.group),
    }
}

fn run_list(client: &mut Client, args: &ListArgs) -> Result<(), CliError> {
    let groups = client.list_groups(&args.states)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut table = Table::new(&["GROUP", "STATE", "TYPE", "PROTOCOL"]);
    for group in groups {
        table.row(vec![
            group.group_id,
            dash(group.state),
            dash(group.group_type),
            dash(group.protocol_type),
        ]);
    }
    table.write(&mut out)?;
    out.flush()?;
    Ok(())
}

/// A partition row of `describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagRow {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub log_end: Option<i64>,
    pub owner: Option<String>,
}

impl LagRow {
    /// Log end − committed; unknown without both.
    pub fn lag(&self) -> Option<i64> {
        Some((self.log_end? - self.committed?).max(0))
    }
}

/// Joins committed offsets, assignments and log end offsets into one row per partition that
/// is either committed or assigned, sorted by topic and partition.
pub fn lag_rows(
    committed: &[CommittedOffset],
    description: &GroupDescription,
    log_ends: &BTreeMap<(String, i32), i64>,
) -> Vec<LagRow> {
    let mut rows: BTreeMap<(String, i32), LagRow> = BTreeMap::new();
    fn row<'a>(
        rows: &'a mut BTreeMap<(String, i32), LagRow>,
        log_ends: &BTreeMap<(String, i32), i64>,
        topic: &str,
        partition: i32,
    ) -> &'a mut LagRow {
        let key = (topic.to_string(), partition);
        let log_end = log_ends.get(&key).copied();
        rows.entry(key).or_insert_with(|| LagRow {
            topic: topic.to_string(),
            partition,
            committed: None,
            log_end,
            owner: None,
        })
    }
    for offset in committed {
        row(&mut rows, log_ends, &offset.topic, offset.partition).committed = Some(offset.offset);
    }
    for member in &description.members {
        for (topic, partitions) in &member.assignment {
            for &partition in partitions {
                row(&mut rows, log_ends, topic, partition).owner = Some(member.member_id.clone());
            }
        }
    }
    rows.into_values().collect()
}

fn run_describe(client: &mut Client, group: &str) -> Result<(), CliError> {
    let description = client.describe_group(group)?;
    let committed = client.group_offsets(group)?;
    if description.state == "Dead" && committed.is_empty() {
        return Err(CliError::new(format!(
            "group '{group}' does not exist; `weir group list` shows the groups"
        )));
    }
    let mut wanted: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for offset in &committed {
        wanted
            .entry(offset.topic.clone())
            .or_default()
            .insert(offset.partition);
    }
    for member in &description.members {
        for (topic, partitions) in &member.assignment {
            wanted.entry(topic.clone()).or_default().extend(partitions);
        }
    }
    let mut log_ends = BTreeMap::new();
    for (topic, partitions) in &wanted {
        let partitions: Vec<i32> = partitions.iter().copied().collect();
        // A deleted topic keeps its committed offsets; its log end is unknown.
        match client.list_offsets(topic, &partitions, OffsetSpec::Latest) {
            Ok(listed) => {
                for offset in listed {
                    log_ends.insert((topic.clone(), offset.partition), offset.offset);
                }
            }
            Err(error) if is_unknown_topic(&error) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let rows = lag_rows(&committed, &description, &log_ends);

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    writeln!(out, "group:     {}", description.group_id)?;
    writeln!(out, "state:     {}", description.state)?;
    writeln!(
        out,
        "protocol:  {}{}",
        dash(description.protocol_type.clone()),
        if description.protocol.is_empty() {
            String::new()
        } else {
            format!(" ({})", description.protocol)
        }
    )?;
    writeln!(out, "members:   {}", description.members.len())?;
    let total_lag: i64 = rows.iter().filter_map(LagRow::lag).sum();
    writeln!(out, "lag:       {total_lag}")?;
    if !description.members.is_empty() {
        writeln!(out)?;
        let mut table = Table::new(&["MEMBER", "INSTANCE", "CLIENT", "HOST", "PARTITIONS"]);
        for member in &description.members {
            let assigned = member
                .assignment
                .iter()
                .map(|(topic, partitions)| {
                    let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
                    format!("{topic}:{}", list.join(","))
                })
                .collect::<Vec<_>>()
                .join(" ");
            table.row(vec![
                member.member_id.clone(),
                member.instance_id.clone().unwrap_or_else(|| "-".into()),
                member.client_id.clone(),
                member.client_host.clone(),
                dash(assigned),
            ]);
        }
        table.write(&mut out)?;
    }
    if !rows.is_empty() {
        writeln!(out)?;
        let mut table = Table::new(&[
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "LOG-END",
            "LAG",
            "MEMBER",
        ]);
        for row in &rows {
            table.row(vec![
                row.topic.clone(),
                row.partition.to_string(),
                opt(row.committed),
                opt(row.log_end),
                opt(row.lag()),
                row.owner.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        table.write(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// `TOPIC` or `TOPIC:0,2,5`.
pub fn parse_topic_partitions(text: &str) -> Result<(String, Option<Vec<i32>>), String> {
    let (topic, partitions) = match text.split_once(':') {
        None => (text.trim(), None),
        Some((topic, list)) => {
            let parsed: Result<Vec<i32>, _> = list
                .split(',')
                .map(|p| p.trim().parse::<i32>().map_err(|_| p.trim().to_string()))
                .collect();
            match parsed {
                Ok(list) if !list.is_empty() && list.iter().all(|p| *p >= 0) => {
                    (topic.trim(), Some(list))
                }
                Ok(_) => return Err(format!("'{text}': partitions must be 0 or more")),
                Err(bad) => {
                    return Err(format!(
                        "'{text}': '{bad}' is not a partition number; use TOPIC or TOPIC:0,1,2"
                    ))
                }
            }
        }
    };
    if topic.is_empty() {
        return Err(format!("'{text}': the topic name is empty"));
    }
    Ok((topic.to_string(), partitions))
}

/// Groups with members cannot have their offsets reset or be deleted.
fn require_inactive(description: &GroupDescription, action: &str) -> Result<(), CliError> {
    if description.members.is_empty() {
        return Ok(());
    }
    Err(CliError::new(format!(
        "cannot {action} group '{}': it is active ({}, {} member{}); stop its consumers (or \
         wait for their session timeout) and try again",
        description.group_id,
        description.state,
        description.members.len(),
        if description.members.len() == 1 {
            ""
        } else {
            "s"
        }
    )))
}

fn run_reset(client: &mut Client, args: &ResetArgs) -> Result<(), CliError> {
    let group = args.group.as_str();
    let description = client.describe_group(group)?;
    require_inactive(&description, "reset the offsets of")?;
    let committed = client.group_offsets(group)?;
    let current: BTreeMap<(String, i32), i64> = committed
        .iter()
        .map(|c| ((c.topic.clone(), c.partition), c.offset))
        .collect();

    let mut targets: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    if args.all_topics {
        for c in &committed {
            targets
                .entry(c.topic.clone())
                .or_default()
                .push(c.partition);
        }
        if targets.is_empty() {
            return Err(CliError::new(format!(
                "group '{group}' has no committed offsets; name topics with --topic"
            )));
        }
    } else {
        for spec in &args.topics {
            let (topic, partitions) = parse_topic_partitions(spec).map_err(CliError::new)?;
            let metadata = client.topic(&topic, false)?;
            let all: Vec<i32> = metadata.partitions.iter().map(|p| p.partition).collect();
            let chosen = match partitions {
                None => all,
                Some(list) => {
                    if let Some(bad) = list.iter().find(|p| !all.contains(p)) {
                        return Err(CliError::new(format!(
                            "topic '{topic}' has no partition {bad} (it has {} partitions)",
                            all.len()
                        )));
                    }
                    list
                }
            };
            targets.entry(topic).or_default().extend(chosen);
        }
    }

    let mut plan: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (topic, partitions) in &mut targets {
        partitions.sort_unstable();
        partitions.dedup();
        let lows = client.list_offsets(topic, partitions, OffsetSpec::Earliest)?;
        let highs = client.list_offsets(topic, partitions, OffsetSpec::Latest)?;
        let by_time = match args.to {
            StartAt::Timestamp(ms) => {
                Some(client.list_offsets(topic, partitions, OffsetSpec::Timestamp(ms))?)
            }
            _ => None,
        };
        for (index, &partition) in partitions.iter().enumerate() {
            let low = lows[index].offset;
            let high = highs[index].offset;
            let found = by_time.as_ref().map(|listed| listed[index].offset);
            let offset = start_offset(args.to, low, high, found).map_err(|e| {
                CliError::new(format!("topic '{topic}' partition {partition}: {e}"))
            })?;
            plan.insert((topic.clone(), partition), offset);
        }
    }

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut table = Table::new(&["TOPIC", "PARTITION", "CURRENT", "NEW"]);
    for ((topic, partition), offset) in &plan {
        table.row(vec![
            topic.clone(),
            partition.to_string(),
            opt(current.get(&(topic.clone(), *partition)).copied()),
            offset.to_string(),
        ]);
    }
    table.write(&mut out)?;
    if args.execute {
        client.commit_group_offsets(group, &plan).map_err(|error| {
            match error.kafka().and_then(|k| k.error_code()) {
                Some(ErrorCode::UnknownMemberId | ErrorCode::IllegalGeneration
                | ErrorCode::RebalanceInProgress) => CliError::new(format!(
                    "group '{group}' became active while resetting; stop its consumers and try again"
                )),
                _ => CliError::from(error),
            }
        })?;
        writeln!(out, "\nreset {} offset(s) of group '{group}'", plan.len())?;
    } else {
        writeln!(out, "\ndry run: nothing changed; add --execute to apply")?;
    }
    out.flush()?;
    Ok(())
}

fn run_delete(client: &mut Client, group: &str) -> Result<(), CliError> {
    match client.delete_group(group) {
        Ok(()) => {
            println!("deleted group '{group}'");
            Ok(())
        }
        Err(error) => Err(match error.kafka().and_then(|k| k.error_code()) {
            Some(ErrorCode::NonEmptyGroup) => CliError::new(format!(
                "cannot delete group '{group}': it still has members; stop its consumers (or \
                 wait for their session timeout) and try again"
            )),
            Some(ErrorCode::GroupIdNotFound) => CliError::new(format!(
                "group '{group}' does not exist; `weir group list` shows the groups"
            )),
            _ => CliError::from(error),
        }),
    }
}

fn is_unknown_topic(error: &ClientError) -> bool {
    error
        .kafka()
        .is_some_and(|k| k.is(ErrorCode::UnknownTopicOrPartition))
}

fn dash(text: String) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text
    }
}

fn opt(value: Option<i64>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::groups::GroupMember;

    #[test]
    fn topic_partition_specs_parse() {
        assert_eq!(parse_topic_partitions("views"), Ok(("views".into(), None)));
        assert_eq!(
            parse_topic_partitions("views:0,2, 5"),
            Ok(("views".into(), Some(vec![0, 2, 5])))
        );
        assert!(parse_topic_partitions("views:").is_err());
        assert!(parse_topic_partitions("views:a")
            .unwrap_err()
            .contains("'a'"));
        assert!(parse_topic_partitions("views:-1").is_err());
        assert!(parse_topic_partitions(":1").is_err());
    }

    fn member(id: &str, assignment: &[(&str, &[i32])]) -> GroupMember {
        GroupMember {
            member_id: id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            assignment: assignment
                .iter()
                .map(|(t, p)| (t.to_string(), p.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn lag_rows_join_commits_assignments_and_log_ends() {
        let description = GroupDescription {
            group_id: "g".into(),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: vec![
                member("m1", &[("v", &[0, 1])]),
                member("m2", &[("v", &[2])]),
            ],
        };
        let committed = vec![
            CommittedOffset {
                topic: "v".into(),
                partition: 0,
                offset: 7,
                leader_epoch: -1,
                metadata: None,
            },
            CommittedOffset {
                topic: "old".into(),
                partition: 3,
                offset: 1,
                leader_epoch: -1,
                metadata: None,
            },
        ];
        let log_ends: BTreeMap<(String, i32), i64> = [
            (("v".to_string(), 0), 10),
            (("v".to_string(), 1), 4),
            (("v".to_string(), 2), 0),
        ]
        .into_iter()
        .collect();
        let rows = lag_rows(&committed, &description, &log_ends);
        type Summary = (String, i32, Option<i64>, Option<i64>, Option<String>);
        let summary: Vec<Summary> = rows
            .iter()
            .map(|r| {
                (
                    r.topic.clone(),
                    r.partition,
                    r.committed,
                    r.lag(),
                    r.owner.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("old".into(), 3, Some(1), None, None),
                ("v".into(), 0, Some(7), Some(3), Some("m1".into())),
                ("v".into(), 1, None, None, Some("m1".into())),
                ("v".into(), 2, None, None, Some("m2".into())),
            ]
        );
    }

    #[test]
    fn active_groups_are_refused_with_advice() {
        let description = GroupDescription {
            group_id: "g".into(),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: vec![member("m1", &[])],
        };
        let error = require_inactive(&description, "reset the offsets of")
            .unwrap_err()
            .to_string();
        assert!(error.contains("active (Stable, 1 member)"), "{error}");
        assert!(error.contains("stop its consumers"), "{error}");
        let empty = GroupDescription {
            members: vec![],
            state: "Empty".into(),
            ..description
        };
        assert!(require_inactive(&empty, "delete").is_ok());
    }
}
