//! `weir transactions list|describe`: the transactional ids the brokers coordinate, over the
//! Kafka protocol (ListTransactions, FindCoordinator, DescribeTransactions), in the spirit of
//! Kafka's `kafka-transactions.sh`. `describe` shows how long the transaction in progress has
//! been open and which partitions it holds — what to look at when a read_committed consumer
//! stops at a last stable offset.

use std::io::{self, BufWriter, Write};

use clap::{Args, Subcommand};

use super::table::Table;
use super::{CliError, ConnectArgs};
use crate::client::transactions::{TransactionDescription, TransactionFilter};

#[derive(Args, Debug)]
pub struct TransactionsArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: TransactionsCommand,
}

#[derive(Subcommand, Debug)]
pub enum TransactionsCommand {
    /// Every transactional id, with its producer id and state.
    List(ListArgs),
    /// One transactional id: state, producer id and epoch, timeout, how long the transaction in
    /// progress has been open and its partitions.
    Describe(DescribeArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only ids in this state (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit,
    /// CompleteAbort; repeatable).
    #[arg(long = "state", value_name = "STATE")]
    pub states: Vec<String>,
    /// Only ids of this producer id (repeatable).
    #[arg(long = "producer-id", value_name = "ID")]
    pub producer_ids: Vec<i64>,
    /// Only transactions open for at least this long.
    #[arg(long, value_name = "MS")]
    pub min_duration_ms: Option<i64>,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    pub transactional_id: String,
}

pub fn run(args: &TransactionsArgs) -> Result<(), CliError> {
    let mut client = args.connect.connect()?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match &args.command {
        TransactionsCommand::List(list) => {
            let listed = client.list_transactions(&TransactionFilter {
                states: list.states.clone(),
                producer_ids: list.producer_ids.clone(),
                min_duration_ms: list.min_duration_ms,
            })?;
            let mut table = Table::new(&["TRANSACTIONAL ID", "PRODUCER ID", "STATE"]);
            for t in listed {
                table.row(vec![t.transactional_id, t.producer_id.to_string(), t.state]);
            }
            table.write(&mut out)?;
        }
        TransactionsCommand::Describe(describe) => {
            let described = client.describe_transaction(&describe.transactional_id)?;
            write_description(&mut out, &described, crate::event::now_ms())?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The description as one table row (Kafka's columns), then the partitions one per line.
pub fn write_description(
    out: &mut impl Write,
    d: &TransactionDescription,
    now_ms: i64,
) -> io::Result<()> {
    let mut table = Table::new(&[
        "COORDINATOR",
        "TRANSACTIONAL ID",
        "PRODUCER ID",
        "EPOCH",
        "STATE",
        "TIMEOUT MS",
        "START TIME MS",
        "DURATION MS",
    ]);
    let (start, duration) = if d.start_time_ms >= 0 && d.state == "Ongoing" {
        (
            d.start_time_ms.to_string(),
            (now_ms - d.start_time_ms).max(0).to_string(),
        )
    } else {
        ("-".to_string(), "-".to_string())
    };
    table.row(vec![
        d.coordinator.to_string(),
        d.transactional_id.clone(),
        d.producer_id.to_string(),
        d.producer_epoch.to_string(),
        d.state.clone(),
        d.timeout_ms.to_string(),
        start,
        duration,
    ]);
    table.write(out)?;
    if !d.partitions.is_empty() {
        writeln!(out, "\nPARTITIONS")?;
        for (topic, partition) in &d.partitions {
            writeln!(out, "{topic}-{partition}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_shows_the_open_duration_and_partitions() {
        let d = TransactionDescription {
            coordinator: 0,
            transactional_id: "app".into(),
            state: "Ongoing".into(),
            producer_id: 4001,
            producer_epoch: 3,
            timeout_ms: 60_000,
            start_time_ms: 1_000,
            partitions: vec![("orders".into(), 2), ("__consumer_offsets".into(), 7)],
        };
        let mut out = Vec::new();
        write_description(&mut out, &d, 5_500).unwrap();
        let text = String::from_utf8(out).unwrap();
        let row = text.lines().nth(1).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            ["0", "app", "4001", "3", "Ongoing", "60000", "1000", "4500"]
        );
        assert!(text.contains("\nPARTITIONS\norders-2\n__consumer_offsets-7\n"));
        let done = TransactionDescription {
            state: "CompleteCommit".into(),
            partitions: vec![],
            ..d
        };
        let mut out = Vec::new();
        write_description(&mut out, &done, 5_500).unwrap();
        let text = String::from_utf8(out).unwrap();
        let cells: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(&cells[4..], ["CompleteCommit", "60000", "-", "-"]);
        assert!(!text.contains("PARTITIONS"));
    }
}
