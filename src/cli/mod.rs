//! The Kafka-protocol subcommands of `weir`: `topic`, `produce`, `consume`, `cluster`, `group`. Each
//! talks to a broker through `crate::client` and follows one contract: data to stdout, errors to
//! stderr as one sentence that names the thing and the fix, exit status 1 on error and 0 on
//! success (a closed stdout, as in `weir consume t | head`, ends the command quietly).
//!
//! - `topic`: create, list, describe, delete, alter-config, add-partitions.
//! - `produce` / `consume`: lines in, records out, kcat-style.
//! - `cluster`: cluster id, controller, brokers, counts, broker configs.
//! - `group`: consumer groups: list, describe (members, offsets, lag), reset-offsets, delete.
//! - `transactions`: transactional ids: list, describe (state, producer, open partitions).
//! - `producers`: describe a partition's active (idempotent and transactional) producers.
//! - `parse`: argument values (`NAME=VALUE`, headers, start offsets); pure.
//! - `format`: the `--format` template of `consume`; pure.
//! - `table`: aligned columns for human-readable output.

pub mod cluster;
pub mod consume;
pub mod format;
pub mod group;
pub mod parse;
pub mod produce;
pub mod producers;
pub mod table;
pub mod topic;
pub mod transactions;

use std::fmt;
use std::io;
use std::process::ExitCode;
use std::time::Duration;

use crate::client::{Client, ClientConfig, ClientError, KafkaError};
use crate::protocol::ErrorCode;

/// Where a tool finds the cluster; flattened into every tool subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Broker to bootstrap from: HOST:PORT, or several separated by commas.
    #[arg(
        short = 'b',
        long,
        env = "WEIR_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT",
        global = true
    )]
    pub bootstrap: String,
    /// How long a broker has to answer a request, in milliseconds.
    #[arg(long, default_value_t = 30_000, value_name = "MS", global = true)]
    pub timeout_ms: u64,
}

impl ConnectArgs {
    pub fn client_config(&self) -> ClientConfig {
        let timeout = Duration::from_millis(self.timeout_ms.max(1));
        ClientConfig {
            connect_timeout: timeout.min(Duration::from_secs(10)),
            request_timeout: timeout,
            ..ClientConfig::default()
        }
    }

    /// Connects, turning failures into advice.
    pub fn connect(&self) -> Result<Client, CliError> {
        Client::connect_with(&self.bootstrap, self.client_config()).map_err(CliError::from)
    }
}

/// Why a command failed, worded for the person who ran it.
#[derive(Debug)]
pub enum CliError {
    Message(String),
    /// stdout was closed by its reader: stop without complaint.
    BrokenPipe,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError::Message(message.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Message(message) => f.write_str(message),
            CliError::BrokenPipe => f.write_str("output closed"),
        }
    }
}

impl From<io::Error> for CliError {
    fn from(error: io::Error) -> CliError {
        if error.kind() == io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Message(format!("cannot write the output: {error}"))
        }
    }
}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> CliError {
        CliError::Message(explain(&error))
    }
}

/// Prints the outcome the way every tool ends: the error on stderr and status 1, or status 0.
pub fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) | Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(CliError::Message(message)) => {
            eprintln!("weir: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A client error in words, with what to do about it.
pub fn explain(error: &ClientError) -> String {
    match error {
        ClientError::Connect { .. } => format!(
            "{error} — is `weir start` running? use --bootstrap HOST:PORT (or WEIR_BOOTSTRAP) \
             to point at another broker"
        ),
        ClientError::Address { .. } => {
            format!("{error}; check --bootstrap (HOST:PORT, e.g. 127.0.0.1:9092)")
        }
        ClientError::Timeout { .. } => format!(
            "{error}; the broker may be overloaded or stuck (see its log), or raise --timeout-ms"
        ),
        ClientError::Io { .. } => {
            format!("{error}; the broker closed the connection (see its log)")
        }
        ClientError::Protocol { .. } => {
            format!("{error}; is this a Kafka-compatible broker on the right port?")
        }
        ClientError::Unsupported { .. } => format!("{error}; upgrade the broker"),
        ClientError::Kafka(kafka) => explain_kafka(kafka),
        ClientError::Request(detail) => detail.clone(),
    }
}

/// A Kafka error code in words: what the broker said, and a hint for the common ones.
pub fn explain_kafka(error: &KafkaError) -> String {
    let code = error.error_code();
    let resource = &error.resource;
    let is_partition = resource.contains(" partition ");
    match code {
        Some(ErrorCode::UnknownTopicOrPartition) if is_partition => match &error.message {
            Some(message) => format!("{resource} does not exist: {message}"),
            None => {
                format!("{resource} does not exist; `weir topic describe` shows the partitions")
            }
        },
        Some(ErrorCode::UnknownTopicOrPartition) => {
            format!("{resource} does not exist; `weir topic list` shows the topics")
        }
        Some(ErrorCode::TopicAlreadyExists) => format!("{resource} already exists"),
        Some(ErrorCode::InvalidTopicException) => format!(
            "{resource} is not a valid topic name: {}; use letters, digits, '.', '_' and '-' \
             (at most 249)",
            broker_said(error)
        ),
        Some(ErrorCode::TopicDeletionDisabled) => format!(
            "{resource} cannot be deleted: topic deletion is disabled on the broker \
             (start it with --set delete.topic.enable=true)"
        ),
        Some(ErrorCode::InvalidReplicationFactor) => format!(
            "{resource}: {}; use --replication-factor with at most as many brokers as the \
             cluster has",
            broker_said(error)
        ),
        Some(ErrorCode::MessageTooLarge | ErrorCode::RecordListTooLarge) => format!(
            "{resource}: {}; send smaller records, or raise the topic's limit with \
             `weir topic alter-config TOPIC --set max.message.bytes=BYTES`",
            broker_said(error)
        ),
        Some(ErrorCode::InvalidConfig) => format!(
            "{resource}: invalid config: {}; `weir topic describe TOPIC` lists the configs",
            broker_said(error)
        ),
        Some(ErrorCode::NotEnoughReplicas | ErrorCode::NotEnoughReplicasAfterAppend) => format!(
            "{resource}: {}; fewer replicas are in sync than min.insync.replicas: use --acks 1, \
             or lower min.insync.replicas",
            broker_said(error)
        ),
        _ => format!("{resource}: {}", broker_said(error)),
    }
}

/// `message (NAME)`, or just the name when the broker gave no message.
fn broker_said(error: &KafkaError) -> String {
    match &error.message {
        Some(message) => format!("{message} ({})", error.name()),
        None => error.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_brokers_point_at_weir_start_and_bootstrap() {
        let error = ClientError::Connect {
            address: "127.0.0.1:9092".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
            timeout: Duration::from_secs(10),
        };
        let text = explain(&error);
        assert!(
            text.starts_with("cannot reach a broker at 127.0.0.1:9092: connection refused"),
            "{text}"
        );
        assert!(
            text.contains("`weir start`") && text.contains("--bootstrap"),
            "{text}"
        );
    }

    #[test]
    fn unknown_topics_and_partitions_say_where_to_look() {
        let topic = KafkaError::new("Metadata", "topic 'x'", 3);
        assert_eq!(
            explain_kafka(&topic),
            "topic 'x' does not exist; `weir topic list` shows the topics"
        );
        let partition = KafkaError::new("Metadata", "topic 'x' partition 7", 3)
            .with_message(Some("the topic has 3 partitions (0-2)".into()));
        assert_eq!(
            explain_kafka(&partition),
            "topic 'x' partition 7 does not exist: the topic has 3 partitions (0-2)"
        );
    }

    #[test]
    fn other_codes_keep_the_brokers_message_and_the_code_name() {
        let error = KafkaError::new("CreateTopics", "topic 'x'", 40)
            .with_message(Some("retention.ms must be a number".into()));
        let text = explain_kafka(&error);
        assert!(
            text.contains("retention.ms must be a number (INVALID_CONFIG)"),
            "{text}"
        );
        let bare = KafkaError::new("Produce", "topic 'x' partition 0", 87);
        assert_eq!(
            explain_kafka(&bare),
            "topic 'x' partition 0: INVALID_RECORD"
        );
    }
}
