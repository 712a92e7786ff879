//! `weir consume TOPIC`: prints records of some or all partitions, like `kcat -C`.
//!
//! Start positions are resolved once with ListOffsets (`--from`); an absolute offset outside
//! the log is refused up front with the log's range. Then Fetch runs in a loop over the
//! partitions not yet finished, printing each record through the `--format` template. With
//! `--exit-at-end` a partition is finished when it reaches its high watermark (as of the latest
//! fetch, or of the start when it is already there); `--max N` stops after N records. Without
//! either the command follows the topic until interrupted.
//!
//! A partition whose position falls out of the log (retention deleted records under it) resumes
//! at the log start, with a note on stderr, as `auto.offset.reset=earliest` would.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Write};
use std::time::Duration;

use clap::Args;

use super::format::Format;
use super::parse::{start_offset, StartAt};
use super::{explain_kafka, CliError, ConnectArgs};
use crate::client::{Client, FetchOptions, FetchedPartition, KafkaError, OffsetSpec};
use crate::protocol::ErrorCode;

/// Consecutive fetches that may fail with retriable errors (leader moving) before giving up.
const RETRIABLE_FAILURES_MAX: u32 = 100;

/// Pause after a retriable fetch error.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Topic to read.
    pub topic: String,
    /// A partition to read (repeatable) [default: every partition].
    #[arg(short, long = "partition", value_name = "P")]
    pub partitions: Vec<i32>,
    /// Where to start: beginning, end, an OFFSET, -N (N records before the end) or
    /// @TIMESTAMP_MS (the first record at or after that time).
    #[arg(
        short = 'o',
        long,
        default_value = "beginning",
        allow_hyphen_values = true
    )]
    pub from: StartAt,
    /// Exit once every partition is read up to its end.
    #[arg(short, long)]
    pub exit_at_end: bool,
    /// Exit after printing N records.
    #[arg(short = 'c', long, value_name = "N")]
    pub max: Option<u64>,
    /// Output template per record: %k key, %v value, %h headers, %t topic, %p partition,
    /// %o offset, %T timestamp, %K/%S key/value length, %% percent; \n \t escapes. A newline
    /// follows every record.
    #[arg(short, long, default_value = "%v", value_name = "TEMPLATE")]
    pub format: String,
    /// What a null key, value or header value prints as (empty prints nothing).
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub null: String,
    /// Notes on stderr: where each partition starts and ends.
    #[arg(short, long)]
    pub verbose: bool,
}

/// The partitions to read: all, or the ones asked for (each checked, duplicates dropped).
fn select_partitions(topic: &str, count: i32, wanted: &[i32]) -> Result<Vec<i32>, CliError> {
    if wanted.is_empty() {
        return Ok((0..count).collect());
    }
    let mut selected = BTreeSet::new();
    for &partition in wanted {
        if !(0..count).contains(&partition) {
            return Err(CliError::new(format!(
                "topic '{topic}' partition {partition} does not exist: the topic has {count} \
                 partitions (0-{})",
                count - 1
            )));
        }
        selected.insert(partition);
    }
    Ok(selected.into_iter().collect())
}

/// Offsets of `spec` by partition.
fn offsets(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    spec: OffsetSpec,
) -> Result<BTreeMap<i32, i64>, CliError> {
    Ok(client
        .list_offsets(topic, partitions, spec)?
        .into_iter()
        .map(|listed| (listed.partition, listed.offset))
        .collect())
}

/// Start offset and high watermark (at the start) of every partition.
#[derive(Debug, Default)]
struct Plan {
    start: BTreeMap<i32, i64>,
    end: BTreeMap<i32, i64>,
}

fn plan(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    from: StartAt,
) -> Result<Plan, CliError> {
    let low = offsets(client, topic, partitions, OffsetSpec::Earliest)?;
    let high = offsets(client, topic, partitions, OffsetSpec::Latest)?;
    let by_timestamp = match from {
        StartAt::Timestamp(ms) => Some(offsets(
            client,
            topic,
            partitions,
            OffsetSpec::Timestamp(ms),
        )?),
        _ => None,
    };
    let mut result = Plan::default();
    for &partition in partitions {
        let log_start = low.get(&partition).copied().unwrap_or(0);
        let high_watermark = high.get(&partition).copied().unwrap_or(0);
        let found = by_timestamp
            .as_ref()
            .and_then(|found| found.get(&partition).copied());
        let start = start_offset(from, log_start, high_watermark, found).map_err(|reason| {
            CliError::new(format!(
                "topic '{topic}' partition {partition}: {reason}; use --from beginning, end or \
                 an offset in that range"
            ))
        })?;
        result.start.insert(partition, start);
        result.end.insert(partition, high_watermark);
    }
    Ok(result)
}

pub fn run(args: &ConsumeArgs) -> Result<(), CliError> {
    let format = Format::parse(&args.format, &args.null).map_err(CliError::new)?;
    let mut client = args.connect.connect()?;
    let topic = client.topic(&args.topic, false)?;
    let partitions = select_partitions(&topic.name, topic.partition_count(), &args.partitions)?;
    let plan = plan(&mut client, &topic.name, &partitions, args.from)?;
    let mut consumer = Consumer {
        client,
        topic: topic.name.clone(),
        positions: plan.start.clone(),
        finished: BTreeSet::new(),
        options: FetchOptions::default(),
        verbose: args.verbose,
    };
    for (&partition, &start) in &plan.start {
        let end = plan.end.get(&partition).copied().unwrap_or(0);
        consumer.note(format_args!(
            "partition {partition}: starting at offset {start} (end {end})"
        ));
        if args.exit_at_end && start >= end {
            consumer.finish(partition, start);
        }
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut failures = 0u32;
    while args.max.is_none_or(|max| printed < max) {
        let Some(fetched) = consumer.fetch()? else {
            break;
        };
        let mut retriable = false;
        for partition in fetched {
            if let Some(error) = &partition.error {
                retriable |= consumer.recover(partition.partition, error)?;
                continue;
            }
            for record in &partition.records {
                if args.max.is_some_and(|max| printed >= max) {
                    break;
                }
                format.write(&mut out, &consumer.topic, record)?;
                printed += 1;
            }
            consumer.advance(&partition, args.exit_at_end)?;
        }
        out.flush()?;
        if retriable {
            failures += 1;
            if failures >= RETRIABLE_FAILURES_MAX {
                return Err(CliError::new(format!(
                    "topic '{}': fetches kept failing with retriable errors; is the cluster \
                     electing leaders? (see the broker log)",
                    consumer.topic
                )));
            }
            std::thread::sleep(RETRY_PAUSE);
        } else {
            failures = 0;
        }
    }
    out.flush()?;
    Ok(())
}

/// Fetch positions of the partitions being read.
struct Consumer {
    client: Client,
    topic: String,
    positions: BTreeMap<i32, i64>,
    finished: BTreeSet<i32>,
    options: FetchOptions,
    verbose: bool,
}

impl Consumer {
    fn note(&self, message: std::fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("weir: {message}");
        }
    }

    fn finish(&mut self, partition: i32, offset: i64) {
        self.note(format_args!(
            "partition {partition}: reached the end at offset {offset}"
        ));
        self.finished.insert(partition);
    }

    /// One fetch of every unfinished partition; `None` when all are finished.
    fn fetch(&mut self) -> Result<Option<Vec<FetchedPartition>>, CliError> {
        let active: Vec<(i32, i64)> = self
            .positions
            .iter()
            .filter(|(partition, _)| !self.finished.contains(partition))
            .map(|(partition, offset)| (*partition, *offset))
            .collect();
        if active.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.client.fetch(
            &self.topic,
            &active,
            &self.options,
        )?))
    }

    /// Moves past what `fetched` returned; grows the partition byte limit for a batch that
    /// did not fit.
    fn advance(&mut self, fetched: &FetchedPartition, exit_at_end: bool) -> Result<(), CliError> {
        let partition = fetched.partition;
        self.positions.insert(partition, fetched.next_offset);
        if let Some(needed) = fetched.oversized_batch_bytes {
            let needed = i32::try_from(needed).unwrap_or(i32::MAX);
            if needed > self.options.max_bytes {
                return Err(CliError::new(format!(
                    "topic '{}' partition {partition} offset {}: a batch of {needed} bytes is \
                     larger than the fetch limit of {} bytes",
                    self.topic, fetched.next_offset, self.options.max_bytes
                )));
            }
            self.options.partition_max_bytes = self.options.partition_max_bytes.max(needed);
        }
        if exit_at_end && fetched.next_offset >= fetched.high_watermark {
            self.finish(partition, fetched.next_offset);
        }
        Ok(())
    }

    /// Handles a partition's fetch error: `Ok(true)` to retry after a pause, `Ok(false)` when
    /// the position was reset, `Err` when there is no way on.
    fn recover(&mut self, partition: i32, error: &KafkaError) -> Result<bool, CliError> {
        if error.is(ErrorCode::OffsetOutOfRange) {
            let position = self.positions.get(&partition).copied().unwrap_or(0);
            let low = offsets(
                &mut self.client,
                &self.topic,
                &[partition],
                OffsetSpec::Earliest,
            )?;
            let high = offsets(
                &mut self.client,
                &self.topic,
                &[partition],
                OffsetSpec::Latest,
            )?;
            let low = low.get(&partition).copied().unwrap_or(0);
            let high = high.get(&partition).copied().unwrap_or(0);
            let resumed = if position < low { low } else { high };
            eprintln!(
                "weir: topic '{}' partition {partition}: offset {position} is no longer in the \
                 log ({low}-{high}); continuing at {resumed}",
                self.topic
            );
            self.positions.insert(partition, resumed);
            return Ok(false);
        }
        if error.is_retriable() && !error.is(ErrorCode::UnknownTopicOrPartition) {
            self.client.invalidate(&self.topic);
            return Ok(true);
        }
        Err(CliError::new(explain_kafka(error)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_default_to_all_and_are_checked() {
        assert_eq!(select_partitions("t", 3, &[]).unwrap(), vec![0, 1, 2]);
        assert_eq!(select_partitions("t", 3, &[2, 0, 2]).unwrap(), vec![0, 2]);
        let error = select_partitions("t", 3, &[3]).unwrap_err().to_string();
        assert_eq!(
            error,
            "topic 't' partition 3 does not exist: the topic has 3 partitions (0-2)"
        );
        assert!(select_partitions("t", 3, &[-1]).is_err());
    }
}
