//! `weir produce TOPIC`: one record per stdin line (or one `--value`), like `kcat -P`.
//!
//! Lines are bytes (no UTF-8 requirement) split at `\n`, which is not part of the record; a
//! last line without `\n` still counts. `--key-separator SEP` splits a line at its first SEP
//! into key and value (no SEP: null key). Empty stays empty unless `--null-empty` (`-Z`) makes
//! empty keys and values null. Records are batched per partition and sent whenever the input
//! has nothing more buffered (so an interactive line goes out at once, a pipe goes in large
//! batches) or a batch is full. Partition and offsets are reported on stdout at the end, per
//! record with `-v`; with `--acks 0` the broker reports nothing, so neither can we.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;

use super::parse::{compression, header, HeaderArg};
use super::{CliError, ConnectArgs};
use crate::client::{Acks, Delivery, OutgoingRecord, Producer, ProducerConfig};
use crate::protocol::ErrorCode;
use crate::records::Compression;

/// Read buffer for stdin: a pipe delivers at most this much between flushes.
const STDIN_BUFFER_BYTES: usize = 256 * 1024;

#[derive(Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Topic to write to (created if it does not exist and the broker auto-creates topics).
    pub topic: String,
    /// Split each line at the first SEP into key and value; lines without SEP get a null key.
    #[arg(short = 'K', long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// A header on every record: KEY=VALUE, or KEY alone for a null value (repeatable).
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE", value_parser = header)]
    pub headers: Vec<HeaderArg>,
    /// Write every record to this partition instead of choosing by key.
    #[arg(short, long, value_name = "P")]
    pub partition: Option<i32>,
    /// Acknowledgement to wait for: 0 (none), 1 (the leader) or all (every in-sync replica).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: Acks,
    /// Batch compression: none, gzip, snappy, lz4 or zstd.
    #[arg(short = 'z', long, default_value = "none", value_parser = compression)]
    pub compression: Compression,
    /// Record timestamp in ms since the epoch [default: the time each line is read].
    #[arg(long, value_name = "MS")]
    pub timestamp: Option<i64>,
    /// Produce one record with this value instead of reading stdin.
    #[arg(long, conflicts_with = "key_separator")]
    pub value: Option<String>,
    /// Key of the --value record.
    #[arg(long, requires = "value")]
    pub key: Option<String>,
    /// Send empty keys and values as null.
    #[arg(short = 'Z', long)]
    pub null_empty: bool,
    /// Print the partition and offset of every record.
    #[arg(short, long)]
    pub verbose: bool,
    /// Longest input line accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub max_line_bytes: usize,
    /// Largest batch before compression, in bytes.
    #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
    pub batch_bytes: usize,
}

fn parse_acks(text: &str) -> Result<Acks, String> {
    text.parse()
}

/// Why a line could not be read.
#[derive(Debug)]
pub enum LineError {
    TooLong,
    Io(io::Error),
}

/// Reads the next line (without its `\n`) into `line`; `Ok(false)` at the end of input.
/// A line longer than `max_bytes` is refused before it is buffered whole.
pub fn read_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max_bytes: usize,
) -> Result<bool, LineError> {
    line.clear();
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(LineError::Io(error)),
        };
        if available.is_empty() {
            return Ok(!line.is_empty());
        }
        let (chunk, consumed, complete) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..end], end + 1, true),
            None => (available, available.len(), false),
        };
        if line.len() + chunk.len() > max_bytes {
            return Err(LineError::TooLong);
        }
        line.extend_from_slice(chunk);
        reader.consume(consumed);
        if complete {
            return Ok(true);
        }
    }
}

/// Splits `line` into key and value at the first `separator`.
pub fn split_line<'a>(line: &'a [u8], separator: Option<&[u8]>) -> (Option<&'a [u8]>, &'a [u8]) {
    let Some(separator) = separator.filter(|s| !s.is_empty()) else {
        return (None, line);
    };
    match line
        .windows(separator.len())
        .position(|window| window == separator)
    {
        Some(at) => (Some(&line[..at]), &line[at + separator.len()..]),
        None => (None, line),
    }
}

/// `None` for an empty field when `null_empty` is set.
fn nullable(field: Option<&[u8]>, null_empty: bool) -> Option<&[u8]> {
    field.filter(|bytes| !(null_empty && bytes.is_empty()))
}

/// The record for one input: key and value with `--null-empty` applied, the shared headers,
/// `--timestamp` or the time now, `--partition` if given.
fn outgoing<'a>(
    args: &ProduceArgs,
    headers: &'a [(&'a str, Option<&'a [u8]>)],
    key: Option<&'a [u8]>,
    value: &'a [u8],
) -> OutgoingRecord<'a> {
    OutgoingRecord {
        key: nullable(key, args.null_empty),
        value: nullable(Some(value), args.null_empty),
        headers,
        timestamp: args.timestamp.unwrap_or_else(now_ms),
        partition: args.partition,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Records delivered so far, per partition: (count, first offset, last offset).
#[derive(Debug, Default)]
struct Report {
    partitions: BTreeMap<i32, (usize, Option<i64>, Option<i64>)>,
}

impl Report {
    fn add(
        &mut self,
        deliveries: &[Delivery],
        verbose: bool,
        out: &mut impl Write,
    ) -> io::Result<()> {
        for delivery in deliveries {
            let entry = self.partitions.entry(delivery.partition).or_default();
            entry.0 += delivery.record_count;
            match delivery.offsets() {
                Some(offsets) => {
                    entry.1 = Some(
                        entry
                            .1
                            .map_or(*offsets.start(), |f| f.min(*offsets.start())),
                    );
                    entry.2 = Some(entry.2.map_or(*offsets.end(), |l| l.max(*offsets.end())));
                    if verbose {
                        for offset in offsets {
                            writeln!(out, "partition {} offset {offset}", delivery.partition)?;
                        }
                    }
                }
                None if verbose => {
                    for _ in 0..delivery.record_count {
                        writeln!(
                            out,
                            "partition {} (acks=0: offset unknown)",
                            delivery.partition
                        )?;
                    }
                }
                None => {}
            }
        }
        Ok(())
    }

    fn summary(&self, topic: &str, out: &mut impl Write) -> io::Result<()> {
        if self.partitions.is_empty() {
            return writeln!(out, "no records produced to '{topic}' (empty input)");
        }
        for (partition, (count, first, last)) in &self.partitions {
            match (first, last) {
                (Some(first), Some(last)) => writeln!(
                    out,
                    "produced {count} records to '{topic}' partition {partition}, offsets {first}-{last}"
                )?,
                _ => writeln!(
                    out,
                    "sent {count} records to '{topic}' partition {partition} (acks=0: offsets unknown)"
                )?,
            }
        }
        Ok(())
    }
}

pub fn run(args: &ProduceArgs) -> Result<(), CliError> {
    let client = args.connect.connect()?;
    let config = ProducerConfig {
        acks: args.acks,
        compression: args.compression,
        batch_bytes_max: args.batch_bytes.max(1),
        timeout: args.connect.client_config().request_timeout,
        allow_auto_create: true,
    };
    let mut producer = Producer::new(client, &args.topic, config).map_err(|error| {
        if error.is_kafka(ErrorCode::UnknownTopicOrPartition) {
            CliError::new(format!(
                "topic '{}' does not exist and the broker does not create topics on use; \
                 create it with `weir topic create {}`",
                args.topic, args.topic
            ))
        } else {
            CliError::from(error)
        }
    })?;
    if let Some(partition) = args.partition {
        let count = producer.partition_count();
        if !(0..count).contains(&partition) {
            return Err(CliError::new(format!(
                "topic '{}' partition {partition} does not exist: the topic has {count} \
                 partitions (0-{})",
                args.topic,
                count - 1
            )));
        }
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut report = Report::default();
    let result = produce_all(args, &mut producer, &mut report, &mut out);
    // What was acknowledged is reported even when a later batch failed.
    report.summary(&args.topic, &mut out)?;
    out.flush()?;
    result
}

fn produce_all(
    args: &ProduceArgs,
    producer: &mut Producer,
    report: &mut Report,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let headers: Vec<(&str, Option<&[u8]>)> = args
        .headers
        .iter()
        .map(|h| (h.key.as_str(), h.value.as_deref()))
        .collect();
    if let Some(value) = &args.value {
        let key = args.key.as_deref().map(str::as_bytes);
        let sent = producer.send(&outgoing(args, &headers, key, value.as_bytes()))?;
        report.add(&sent, args.verbose, out)?;
        let sent = producer.flush()?;
        return Ok(report.add(&sent, args.verbose, out)?);
    }
    let stdin = io::stdin();
    let mut reader = BufReader::with_capacity(STDIN_BUFFER_BYTES, stdin.lock());
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        number += 1;
        match read_line(&mut reader, &mut line, args.max_line_bytes) {
            Ok(true) => {}
            Ok(false) => break,
            Err(LineError::TooLong) => {
                return Err(CliError::new(format!(
                    "line {number} is longer than {} bytes; raise --max-line-bytes",
                    args.max_line_bytes
                )))
            }
            Err(LineError::Io(error)) => {
                return Err(CliError::new(format!("cannot read stdin: {error}")))
            }
        }
        let (key, value) = split_line(&line, separator);
        let sent = producer.send(&outgoing(args, &headers, key, value))?;
        report.add(&sent, args.verbose, out)?;
        if reader.buffer().is_empty() {
            // Nothing more is buffered: the next read may wait, so send what we have.
            let sent = producer.flush()?;
            report.add(&sent, args.verbose, out)?;
            out.flush()?;
        }
    }
    let sent = producer.flush()?;
    Ok(report.add(&sent, args.verbose, out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `input`, read through a tiny buffer so lines span refills.
    fn lines_of(input: &[u8], max_bytes: usize) -> Result<Vec<Vec<u8>>, LineError> {
        let mut buffered = BufReader::with_capacity(3, input);
        let mut lines = Vec::new();
        let mut line = Vec::new();
        while read_line(&mut buffered, &mut line, max_bytes)? {
            lines.push(line.clone());
        }
        Ok(lines)
    }

    #[test]
    fn lines_split_at_newlines_and_keep_everything_else() {
        let lines = lines_of(&b"a\n\nbinary\x00\xff\r\nlast"[..], 100).unwrap();
        assert_eq!(
            lines,
            vec![
                b"a".to_vec(),
                Vec::new(),
                b"binary\x00\xff\r".to_vec(),
                b"last".to_vec()
            ]
        );
        assert!(lines_of(&b""[..], 100).unwrap().is_empty());
        assert_eq!(lines_of(&b"x\n"[..], 100).unwrap(), vec![b"x".to_vec()]);
    }

    #[test]
    fn long_lines_are_refused_across_buffer_refills() {
        assert!(matches!(
            lines_of(&b"short\nmuch too long\n"[..], 8),
            Err(LineError::TooLong)
        ));
        assert_eq!(
            lines_of(&b"12345678\n"[..], 8).unwrap(),
            vec![b"12345678".to_vec()]
        );
    }

    #[test]
    fn key_separators_split_at_the_first_occurrence() {
        assert_eq!(
            split_line(b"k:v:w", Some(b":")),
            (Some(&b"k"[..]), &b"v:w"[..])
        );
        assert_eq!(split_line(b":v", Some(b":")), (Some(&b""[..]), &b"v"[..]));
        assert_eq!(split_line(b"k:", Some(b":")), (Some(&b"k"[..]), &b""[..]));
        assert_eq!(split_line(b"novalue", Some(b":")), (None, &b"novalue"[..]));
        assert_eq!(
            split_line(b"a::b", Some(b"::")),
            (Some(&b"a"[..]), &b"b"[..])
        );
        assert_eq!(split_line(b"k:v", None), (None, &b"k:v"[..]));
        assert_eq!(split_line(b"k:v", Some(b"")), (None, &b"k:v"[..]));
    }

    #[test]
    fn empty_becomes_null_only_when_asked() {
        assert_eq!(nullable(Some(b""), false), Some(&b""[..]));
        assert_eq!(nullable(Some(b""), true), None);
        assert_eq!(nullable(Some(b"x"), true), Some(&b"x"[..]));
        assert_eq!(nullable(None, false), None);
    }

    #[test]
    fn reports_count_offsets_per_partition() {
        let mut report = Report::default();
        let mut out = Vec::new();
        let deliveries = [
            Delivery {
                partition: 1,
                base_offset: Some(5),
                record_count: 2,
            },
            Delivery {
                partition: 0,
                base_offset: Some(0),
                record_count: 1,
            },
            Delivery {
                partition: 1,
                base_offset: Some(7),
                record_count: 1,
            },
        ];
        report.add(&deliveries, true, &mut out).unwrap();
        report.summary("t", &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "partition 1 offset 5\npartition 1 offset 6\npartition 0 offset 0\n\
             partition 1 offset 7\n\
             produced 1 records to 't' partition 0, offsets 0-0\n\
             produced 3 records to 't' partition 1, offsets 5-7\n"
        );
    }
}
