//! `weir producers describe TOPIC PARTITION`: the active producers of a partition over
//! DescribeProducers (KIP-664), as Kafka's `kafka-transactions.sh describe-producers` shows them:
//! producer id, epoch, last sequence, last timestamp, coordinator epoch and the start offset of
//! its open transaction ("-" when none). The request goes to the partition's leader.

use std::io::{self, BufWriter, Write};
use std::time::Duration;

use clap::{Args, Subcommand};

use super::table::Table;
use super::{CliError, ConnectArgs};
use crate::client::error::check;
use crate::client::{Client, ClientError, KafkaError};
use crate::protocol::messages::describe_producers_request::TopicRequest;
use crate::protocol::messages::describe_producers_response::ProducerState;
use crate::protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};
use crate::protocol::{ApiKey, ErrorCode};

#[derive(Args, Debug)]
pub struct ProducersArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: ProducersCommand,
}

#[derive(Subcommand, Debug)]
pub enum ProducersCommand {
    /// The active producers of one partition: id, epoch, last sequence, last timestamp,
    /// coordinator epoch and the first offset of the open transaction.
    Describe(DescribeArgs),
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    pub topic: String,
    pub partition: i32,
}

pub fn run(args: &ProducersArgs) -> Result<(), CliError> {
    let mut client = args.connect.connect()?;
    match &args.command {
        ProducersCommand::Describe(describe) => {
            let producers = describe_producers(&mut client, &describe.topic, describe.partition)?;
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            producer_table(&producers).write(&mut out)?;
            out.flush()?;
            Ok(())
        }
    }
}

/// DescribeProducers for one partition, sent to its leader.
pub fn describe_producers(
    client: &mut Client,
    topic: &str,
    partition: i32,
) -> Result<Vec<ProducerState>, ClientError> {
    let key = ApiKey::DescribeProducers;
    let resource = || format!("topic '{topic}' partition {partition}");
    let metadata = client.cached_topic(topic)?;
    let Some(found) = metadata.partition(partition) else {
        return Err(ClientError::Kafka(
            KafkaError::new(
                key.name(),
                resource(),
                ErrorCode::UnknownTopicOrPartition.code(),
            )
            .with_message(Some(format!(
                "the topic has {} partitions",
                metadata.partition_count()
            ))),
        ));
    };
    let connection = client.broker(found.leader)?;
    let version = connection.version(key)?;
    let request = DescribeProducersRequest {
        topics: vec![TopicRequest {
            name: topic.to_string(),
            partition_indexes: vec![partition],
            ..Default::default()
        }],
        ..Default::default()
    };
    let response: DescribeProducersResponse =
        connection.request(key, version, &request, Duration::ZERO)?;
    let answer = response
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition);
    let Some(answer) = answer else {
        return Err(ClientError::Kafka(KafkaError::new(
            key.name(),
            resource(),
            ErrorCode::UnknownServerError.code(),
        )));
    };
    check(
        key.name(),
        resource,
        answer.error_code,
        answer.error_message,
    )?;
    Ok(answer.active_producers)
}

/// The human-readable table, one row per producer.
pub fn producer_table(producers: &[ProducerState]) -> Table {
    let mut table = Table::new(&[
        "PRODUCER-ID",
        "EPOCH",
        "LAST-SEQUENCE",
        "LAST-TIMESTAMP",
        "COORDINATOR-EPOCH",
        "TXN-START-OFFSET",
    ]);
    for p in producers {
        let txn_start = if p.current_txn_start_offset < 0 {
            "-".to_string()
        } else {
            p.current_txn_start_offset.to_string()
        };
        table.row(vec![
            p.producer_id.to_string(),
            p.producer_epoch.to_string(),
            p.last_sequence.to_string(),
            p.last_timestamp.to_string(),
            p.coordinator_epoch.to_string(),
            txn_start,
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_open_transactions_and_dashes_for_none() {
        let producers = [
            ProducerState {
                producer_id: 7,
                producer_epoch: 2,
                last_sequence: 41,
                last_timestamp: 1_700_000_000_000,
                coordinator_epoch: 3,
                current_txn_start_offset: 120,
                ..Default::default()
            },
            ProducerState {
                producer_id: 8,
                producer_epoch: 0,
                last_sequence: 0,
                last_timestamp: 5,
                coordinator_epoch: -1,
                current_txn_start_offset: -1,
                ..Default::default()
            },
        ];
        let mut out = Vec::new();
        producer_table(&producers).write(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("PRODUCER-ID"));
        let first: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(first, ["7", "2", "41", "1700000000000", "3", "120"]);
        let second: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(second, ["8", "0", "0", "5", "-1", "-"]);
    }
}
