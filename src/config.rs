//! Every setting and limit of the broker: names, defaults, validation, and how a value is resolved.
//!
//! Kafka's names are the interface (`retention.ms`, `log.retention.ms`, `num.partitions`, …), so
//! operators' habits and tools carry over. Weir-only settings live under `weir.*`.
//!
//! Resolution order for a topic setting: topic override → dynamic broker default (set with
//! AlterConfigs on the broker resource, stored in the metadata log) → static broker setting (TOML
//! file, `--flag`, `WEIR_*` environment) → built-in default. [`TopicConfig`] is the typed result the
//! storage layer reads; it is rebuilt whenever metadata changes, never parsed on the hot path.
//!
//! Built once at startup and shared read-only (`Arc`) by every shard.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Kafka's `ConfigType` as DescribeConfigs v3+ reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigKind {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One named setting.
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigKind,
    pub default: &'static str,
    /// Checks a value beyond its type (ranges, enumerations).
    pub check: fn(&str) -> Result<(), String>,
    pub doc: &'static str,
}

/// A topic-level setting and the broker-level setting that provides its default.
pub struct TopicConfigDef {
    pub def: ConfigDef,
    pub broker_name: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";

fn any(_: &str) -> Result<(), String> {
    Ok(())
}
fn non_negative(v: &str) -> Result<(), String> {
    at_least(v, 0)
}
fn positive(v: &str) -> Result<(), String> {
    at_least(v, 1)
}
fn at_least(v: &str, min: i64) -> Result<(), String> {
    match v.trim().parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(n) => Err(format!("{n} is below the minimum {min}")),
        Err(_) => Err(format!("'{v}' is not an integer")),
    }
}
fn at_least_minus_one(v: &str) -> Result<(), String> {
    at_least(v, -1)
}
fn segment_bytes(v: &str) -> Result<(), String> {
    at_least(v, 1 << 20)
}
fn index_bytes(v: &str) -> Result<(), String> {
    at_least(v, 4)
}
fn ratio(v: &str) -> Result<(), String> {
    match v.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
        _ => Err(format!("'{v}' is not a number between 0 and 1")),
    }
}
fn positive_number(v: &str) -> Result<(), String> {
    match v.trim().parse::<f64>() {
        Ok(r) if r > 0.0 => Ok(()),
        _ => Err(format!("'{v}' is not a positive number")),
    }
}
fn boolean(v: &str) -> Result<(), String> {
    match v.trim() {
        "true" | "false" => Ok(()),
        _ => Err(format!("'{v}' is not 'true' or 'false'")),
    }
}
fn cleanup_policy(v: &str) -> Result<(), String> {
    for item in v.split(',') {
        match item.trim() {
            "delete" | "compact" => {}
            other => {
                return Err(format!(
                    "'{other}' is not a valid cleanup.policy (delete, compact)"
                ))
            }
        }
    }
    Ok(())
}
fn compression_type(v: &str) -> Result<(), String> {
    match v.trim() {
        "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
        _ => Err(format!(
            "'{v}' is not a valid compression.type (producer, uncompressed, gzip, snappy, lz4, zstd)"
        )),
    }
}
fn timestamp_type(v: &str) -> Result<(), String> {
    match v.trim() {
        "CreateTime" | "LogAppendTime" => Ok(()),
        _ => Err(format!(
            "'{v}' is not a valid message.timestamp.type (CreateTime, LogAppendTime)"
        )),
    }
}

macro_rules! topic_config {
    ($name:expr, $broker:expr, $kind:ident, $default:expr, $check:expr, $doc:expr) => {
        TopicConfigDef {
            def: ConfigDef {
                name: $name,
                kind: ConfigKind::$kind,
                default: $default,
                check: $check,
                doc: $doc,
            },
            broker_name: $broker,
        }
    };
}

/// Topic configs Weir honours, with Kafka 4.0's names, defaults and broker synonyms.
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    topic_config!("cleanup.policy", "log.cleanup.policy", List, "delete", cleanup_policy,
        "delete: drop old segments by retention; compact: keep the latest record per key."),
    topic_config!("compression.type", "compression.type", String, "producer", compression_type,
        "Accepted for compatibility; Weir stores batches as the producer compressed them (it never re-encodes)."),
    topic_config!("delete.retention.ms", "log.cleaner.delete.retention.ms", Long, "86400000", non_negative,
        "How long tombstones are kept in compacted topics."),
    topic_config!("file.delete.delay.ms", "log.segment.delete.delay.ms", Long, "60000", non_negative,
        "Delay before a deleted segment's files are removed."),
    topic_config!("flush.messages", "log.flush.interval.messages", Long, LONG_MAX, positive,
        "Kafka's explicit flush interval; Weir flushes by group commit (see write.caching)."),
    topic_config!("flush.ms", "log.flush.interval.ms", Long, "1000", non_negative,
        "With write.caching=true: the longest time written data waits for fdatasync."),
    topic_config!("index.interval.bytes", "log.index.interval.bytes", Int, "4096", non_negative,
        "Bytes of log between two offset-index entries."),
    topic_config!("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", Long, LONG_MAX, positive,
        "Longest time a record stays ineligible for compaction."),
    topic_config!("max.message.bytes", "message.max.bytes", Int, "1048588", non_negative,
        "Largest record batch the topic accepts (after the producer's compression)."),
    topic_config!("message.timestamp.after.max.ms", "log.message.timestamp.after.max.ms", Long, "3600000",
        non_negative, "How far in the future a CreateTime timestamp may be."),
    topic_config!("message.timestamp.before.max.ms", "log.message.timestamp.before.max.ms", Long, LONG_MAX,
        non_negative, "How far in the past a CreateTime timestamp may be."),
    topic_config!("message.timestamp.type", "log.message.timestamp.type", String, "CreateTime", timestamp_type,
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's clock."),
    topic_config!("min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", Double, "0.5", ratio,
        "Dirty fraction of a compacted log that triggers cleaning."),
    topic_config!("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms", Long, "0", non_negative,
        "Shortest time a record stays uncompacted."),
    topic_config!("min.insync.replicas", "min.insync.replicas", Int, "1", positive,
        "Replicas that must have a record before acks=all succeeds."),
    topic_config!("preallocate", "log.preallocate", Boolean, "false", boolean,
        "Accepted for compatibility; Weir always writes zeros ahead of the appends (weir.preallocate.bytes)."),
    topic_config!("retention.bytes", "log.retention.bytes", Long, "-1", at_least_minus_one,
        "Largest size of a partition before old closed segments are deleted (-1: no limit)."),
    topic_config!("retention.ms", "log.retention.ms", Long, "604800000", at_least_minus_one,
        "Age after which closed segments are deleted (-1: forever)."),
    topic_config!("segment.bytes", "log.segment.bytes", Int, "1073741824", segment_bytes,
        "Size at which the active segment is rolled (at least 1 MiB, as in Kafka 4)."),
    topic_config!("segment.index.bytes", "log.index.size.max.bytes", Int, "10485760", index_bytes,
        "Largest offset index of one segment; a full index rolls the segment."),
    topic_config!("segment.jitter.ms", "log.roll.jitter.ms", Long, "0", non_negative,
        "Random jitter subtracted from segment.ms."),
    topic_config!("segment.ms", "log.roll.ms", Long, "604800000", positive,
        "Age at which the active segment is rolled."),
    topic_config!("unclean.leader.election.enable", "unclean.leader.election.enable", Boolean, "false", boolean,
        "Allow an out-of-sync replica to become leader (cluster mode)."),
    topic_config!("write.caching", "log.write.caching", Boolean, "false", boolean,
        "Weir: acknowledge acks=all once written (O_DIRECT, survives a process crash) and fdatasync \
         within flush.ms, like Kafka's page-cache semantics. false: acknowledge after fdatasync."),
];

/// Broker-only settings (the topic defaults above are broker settings too, under broker_name).
pub static BROKER_CONFIGS: &[ConfigDef] = &[
    ConfigDef { name: "node.id", kind: ConfigKind::Int, default: "1", check: non_negative,
        doc: "This broker's id." },
    ConfigDef { name: "listeners", kind: ConfigKind::String, default: "PLAINTEXT://127.0.0.1:9092", check: any,
        doc: "Address the Kafka protocol listens on (host:port, optionally PLAINTEXT://)." },
    ConfigDef { name: "advertised.listeners", kind: ConfigKind::String, default: "", check: any,
        doc: "Address given to clients in Metadata; empty: the listener address." },
    ConfigDef { name: "log.dirs", kind: ConfigKind::String, default: "./data", check: any,
        doc: "Data directory." },
    ConfigDef { name: "num.partitions", kind: ConfigKind::Int, default: "1", check: positive,
        doc: "Partitions of an auto-created topic, and of CreateTopics with partitions -1." },
    ConfigDef { name: "default.replication.factor", kind: ConfigKind::Short, default: "1", check: positive,
        doc: "Replication factor when a client asks for the default." },
    ConfigDef { name: "auto.create.topics.enable", kind: ConfigKind::Boolean, default: "true", check: boolean,
        doc: "Create a topic when Metadata or Produce names an unknown one." },
    ConfigDef { name: "delete.topic.enable", kind: ConfigKind::Boolean, default: "true", check: boolean,
        doc: "Allow DeleteTopics." },
    ConfigDef { name: "socket.request.max.bytes", kind: ConfigKind::Int, default: "104857600", check: positive,
        doc: "Largest request frame; a larger one closes the connection before anything is allocated." },
    ConfigDef { name: "log.retention.check.interval.ms", kind: ConfigKind::Long, default: "30000", check: positive,
        doc: "How often retention runs on every partition." },
    ConfigDef { name: "log.cleaner.enable", kind: ConfigKind::Boolean, default: "true", check: boolean,
        doc: "Run the log cleaner (compaction of cleanup.policy=compact topics) on every shard." },
    ConfigDef { name: "log.cleaner.backoff.ms", kind: ConfigKind::Long, default: "15000", check: positive,
        doc: "Pause of a shard's cleaner between passes over its compacted partitions." },
    ConfigDef { name: "log.cleaner.dedupe.buffer.size", kind: ConfigKind::Long, default: "134217728", check: positive,
        doc: "Bytes of the key → offset map of one cleaning pass, per shard (keys plus ~48 bytes each); a log whose dirty keys do not fit is cleaned over several passes." },
    ConfigDef { name: "log.cleaner.io.max.bytes.per.second", kind: ConfigKind::Double, default: "1.7976931348623157E308", check: positive_number,
        doc: "Bound on the bytes a shard's cleaner reads plus writes per second (unbounded by default, as in Kafka); lower it when cleaning disturbs produce latency." },
    ConfigDef { name: "weir.cleaner.shares", kind: ConfigKind::Int, default: "100", check: positive,
        doc: "glommio shares of each shard's cleaner task queue (request handling has 1000): the cleaner's CPU share when the shard is busy." },
    ConfigDef { name: "max.incremental.fetch.session.cache.slots", kind: ConfigKind::Int, default: "1000",
        check: non_negative, doc: "Fetch sessions kept per shard." },
    ConfigDef { name: "fetch.max.bytes", kind: ConfigKind::Int, default: "57671680", check: positive,
        doc: "Broker cap on the bytes of one Fetch response." },
    ConfigDef { name: "producer.id.expiration.ms", kind: ConfigKind::Int, default: "86400000", check: positive,
        doc: "Idle time after which a producer's idempotence state is forgotten." },
    ConfigDef { name: "max.connections", kind: ConfigKind::Int, default: "10000", check: positive,
        doc: "Open client connections, over all shards." },
    ConfigDef { name: "offsets.topic.num.partitions", kind: ConfigKind::Int, default: "50", check: positive,
        doc: "Partitions of __consumer_offsets." },
    ConfigDef { name: "offsets.topic.segment.bytes", kind: ConfigKind::Int, default: "104857600", check: segment_bytes,
        doc: "segment.bytes of __consumer_offsets when it is created." },
    ConfigDef { name: "offsets.retention.minutes", kind: ConfigKind::Int, default: "10080", check: positive,
        doc: "Committed offsets of an Empty group (or of a topic the group stopped consuming) are deleted after this long." },
    ConfigDef { name: "offsets.retention.check.interval.ms", kind: ConfigKind::Long, default: "600000", check: positive,
        doc: "How often expired offsets are looked for." },
    ConfigDef { name: "offsets.commit.timeout.ms", kind: ConfigKind::Int, default: "5000", check: positive,
        doc: "How long an offset commit (or a group's metadata write) waits to be durable before it fails." },
    ConfigDef { name: "offset.metadata.max.bytes", kind: ConfigKind::Int, default: "4096", check: non_negative,
        doc: "Largest metadata string of a committed offset (OFFSET_METADATA_TOO_LARGE beyond)." },
    ConfigDef { name: "group.min.session.timeout.ms", kind: ConfigKind::Int, default: "6000", check: non_negative,
        doc: "Smallest session.timeout.ms a group member may ask for (INVALID_SESSION_TIMEOUT below)." },
    ConfigDef { name: "group.max.session.timeout.ms", kind: ConfigKind::Int, default: "1800000", check: positive,
        doc: "Largest session.timeout.ms a group member may ask for." },
    ConfigDef { name: "group.initial.rebalance.delay.ms", kind: ConfigKind::Int, default: "3000", check: non_negative,
        doc: "How long the first rebalance of an empty group waits for more members to join." },
    ConfigDef { name: "group.max.size", kind: ConfigKind::Int, default: "2147483647", check: positive,
        doc: "Members a classic group may have (GROUP_MAX_SIZE_REACHED beyond)." },
    ConfigDef { name: "group.consumer.session.timeout.ms", kind: ConfigKind::Int, default: "45000", check: positive,
        doc: "Consumer-protocol (KIP-848) members are removed after this long without a heartbeat." },
    ConfigDef { name: "group.consumer.heartbeat.interval.ms", kind: ConfigKind::Int, default: "5000", check: positive,
        doc: "Heartbeat interval the broker gives consumer-protocol members (how fast they see a new assignment)." },
    ConfigDef { name: "group.consumer.max.size", kind: ConfigKind::Int, default: "2147483647", check: positive,
        doc: "Members a consumer-protocol group may have (GROUP_MAX_SIZE_REACHED beyond)." },
    ConfigDef { name: "transaction.state.log.num.partitions", kind: ConfigKind::Int, default: "50",
        check: positive, doc: "Partitions of __transaction_state." },
    ConfigDef { name: "transaction.state.log.segment.bytes", kind: ConfigKind::Int, default: "104857600", check: segment_bytes,
        doc: "segment.bytes of __transaction_state when it is created." },
    ConfigDef { name: "transaction.max.timeout.ms", kind: ConfigKind::Int, default: "900000", check: positive,
        doc: "Largest transaction.timeout.ms a producer may ask for (INVALID_TRANSACTION_TIMEOUT beyond)." },
    ConfigDef { name: "transaction.abort.timed.out.transaction.cleanup.interval.ms", kind: ConfigKind::Int, default: "10000", check: positive,
        doc: "How often open transactions are checked against their timeout (and aborted past it)." },
    ConfigDef { name: "transactional.id.expiration.ms", kind: ConfigKind::Int, default: "604800000", check: positive,
        doc: "A transactional id with no transaction in progress is forgotten after this long without a request." },
    ConfigDef { name: "transaction.remove.expired.transaction.cleanup.interval.ms", kind: ConfigKind::Int, default: "3600000", check: positive,
        doc: "How often expired transactional ids are looked for." },
    ConfigDef { name: "weir.max.partitions", kind: ConfigKind::Int, default: "10000", check: positive,
        doc: "Partitions this broker hosts at most, over all topics (each holds open files: raise `ulimit -n` with it)." },
    ConfigDef { name: "weir.smp", kind: ConfigKind::Int, default: "0", check: non_negative,
        doc: "Shards (pinned executors); 0: one per available core." },
    ConfigDef { name: "weir.admin.listen", kind: ConfigKind::String, default: "127.0.0.1:9644", check: any,
        doc: "HTTP admin endpoint (/metrics, /health); empty disables it." },
    ConfigDef { name: "weir.connection.max.inflight.requests", kind: ConfigKind::Int, default: "100",
        check: positive, doc: "Requests of one connection being processed or awaiting their response." },
    ConfigDef { name: "weir.cache.bytes", kind: ConfigKind::Long, default: "268435456", check: non_negative,
        doc: "Batch cache per shard (recent batches served to consumers without disk reads)." },
    ConfigDef { name: "weir.write.buffer.bytes", kind: ConfigKind::Int, default: "262144", check: positive,
        doc: "Aligned write buffer of an active segment (one O_DIRECT write when full)." },
    ConfigDef { name: "weir.unflushed.bytes.max", kind: ConfigKind::Long, default: "67108864", check: positive,
        doc: "Appended-but-unwritten bytes per shard before producers wait for the flusher." },
    ConfigDef { name: "weir.readahead.bytes", kind: ConfigKind::Int, default: "1048576", check: positive,
        doc: "Read size for cold (uncached) fetches and for each read-ahead window (up to two per partition are read ahead of a sequential consumer; per shard at most 64 MiB or 8 windows)." },
    ConfigDef { name: "weir.preallocate.bytes", kind: ConfigKind::Int, default: "8388608", check: positive,
        doc: "Largest step by which an active segment file is extended with zeros ahead of the appends (appends then overwrite allocated blocks: no allocation, no size change); smaller while the segment is small, none while it is empty." },
];

/// Looks up a topic config definition by its topic-level name.
pub fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.def.name == name)
}

/// Looks up any broker-level setting: broker-only or the broker synonym of a topic config.
pub fn broker_config_def(name: &str) -> Option<&'static ConfigDef> {
    BROKER_CONFIGS.iter().find(|d| d.name == name).or_else(|| {
        TOPIC_CONFIGS
            .iter()
            .find(|d| d.broker_name == name)
            .map(|d| &d.def)
    })
}

/// Broker settings that AlterConfigs may change at runtime: the topic defaults.
pub fn is_dynamic_broker_config(name: &str) -> bool {
    TOPIC_CONFIGS.iter().any(|d| d.broker_name == name)
}

/// Why a configuration was refused; the message names the setting and the fix.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ConfigError {}

/// Validates one topic config entry (name known, value well-formed).
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), ConfigError> {
    let def = topic_config_def(name)
        .ok_or_else(|| ConfigError(format!("Unknown topic config name: {name}")))?;
    validate_value(&def.def, value)
}

fn validate_value(def: &ConfigDef, value: &str) -> Result<(), ConfigError> {
    let typed = match def.kind {
        ConfigKind::Boolean => boolean(value),
        ConfigKind::Int => value
            .trim()
            .parse::<i32>()
            .map(|_| ())
            .map_err(|_| format!("'{value}' is not a 32-bit integer")),
        ConfigKind::Short => value
            .trim()
            .parse::<i16>()
            .map(|_| ())
            .map_err(|_| format!("'{value}' is not a 16-bit integer")),
        ConfigKind::Long => value
            .trim()
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| format!("'{value}' is not a 64-bit integer")),
        ConfigKind::Double => value
            .trim()
            .parse::<f64>()
            .map(|_| ())
            .map_err(|_| format!("'{value}' is not a number")),
        ConfigKind::String | ConfigKind::List => Ok(()),
    };
    typed.and_then(|_| (def.check)(value)).map_err(|why| {
        ConfigError(format!(
            "Invalid value {value} for configuration {}: {why}",
            def.name
        ))
    })
}

/// Static broker configuration: the TOML file, then flags and environment on top.
#[derive(Clone, Debug, Default)]
pub struct BrokerConfig {
    values: BTreeMap<String, String>,
}

impl BrokerConfig {
    /// Reads a TOML file. Keys are Kafka/Weir names; nested tables join with dots, so
    /// `log.retention.ms = 1000` and `[log] retention.ms = 1000` mean the same.
    pub fn from_toml_file(path: &Path) -> Result<BrokerConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Self::from_toml_str(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    pub fn from_toml_str(text: &str) -> Result<BrokerConfig, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e| ConfigError(format!("invalid TOML: {e}")))?;
        let mut config = BrokerConfig::default();
        flatten_toml("", &toml::Value::Table(table), &mut config.values)?;
        let names: Vec<String> = config.values.keys().cloned().collect();
        for name in names {
            let value = config.values[&name].clone();
            config.set(&name, &value)?;
        }
        Ok(config)
    }

    /// Sets one setting after checking its name and value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let name = if name == "broker.id" { "node.id" } else { name };
        let def = broker_config_def(name).ok_or_else(|| {
            ConfigError(format!(
                "unknown broker setting '{name}' (see docs/configuration.md for the list)"
            ))
        })?;
        validate_value(def, value)?;
        self.values
            .insert(name.to_string(), value.trim().to_string());
        Ok(())
    }

    /// Applies `WEIR_<NAME>` environment variables (dots as underscores, upper case).
    pub fn apply_env(
        &mut self,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (key, value) in env {
            let Some(rest) = key.strip_prefix("WEIR_") else {
                continue;
            };
            let name = rest.to_ascii_lowercase().replace('_', ".");
            if broker_config_def(&name).is_some() {
                self.set(&name, &value)?;
            }
        }
        Ok(())
    }

    /// The effective value: explicitly set, else the built-in default.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .or_else(|| broker_config_def(name).map(|d| d.default))
    }

    /// Whether the value came from the file, a flag or the environment (vs. the default).
    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    fn get_i64(&self, name: &str) -> i64 {
        self.get(name)
            .and_then(|v| v.trim().parse().ok())
            .expect("validated integer setting")
    }

    fn get_bool(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }

    pub fn node_id(&self) -> i32 {
        self.get_i64("node.id") as i32
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_listener(self.get("listeners").unwrap_or_default())
    }

    /// Host and port clients are told to connect to.
    pub fn advertised(&self) -> Result<(String, u16), ConfigError> {
        let advertised = self.get("advertised.listeners").unwrap_or_default();
        let text = if advertised.is_empty() {
            self.get("listeners").unwrap_or_default()
        } else {
            advertised
        };
        let text = text.split(',').next().unwrap_or_default().trim();
        let text = text.split_once("://").map(|(_, rest)| rest).unwrap_or(text);
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| ConfigError(format!("listener '{text}' must be host:port")))?;
        let port = port
            .parse()
            .map_err(|_| ConfigError(format!("listener '{text}' has an invalid port")))?;
        let host = if host.is_empty() || host == "0.0.0.0" {
            "127.0.0.1"
        } else {
            host
        };
        Ok((host.trim_matches(['[', ']']).to_string(), port))
    }

    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(
            self.get("log.dirs")
                .unwrap_or("./data")
                .split(',')
                .next()
                .unwrap_or("./data"),
        )
    }

    pub fn num_partitions(&self) -> i32 {
        self.get_i64("num.partitions") as i32
    }
    pub fn auto_create_topics(&self) -> bool {
        self.get_bool("auto.create.topics.enable")
    }
    pub fn delete_topic_enable(&self) -> bool {
        self.get_bool("delete.topic.enable")
    }
    pub fn socket_request_max_bytes(&self) -> usize {
        self.get_i64("socket.request.max.bytes") as usize
    }
    pub fn retention_check_interval_ms(&self) -> u64 {
        self.get_i64("log.retention.check.interval.ms") as u64
    }
    pub fn cleaner_enable(&self) -> bool {
        self.get_bool("log.cleaner.enable")
    }
    pub fn cleaner_backoff_ms(&self) -> u64 {
        self.get_i64("log.cleaner.backoff.ms") as u64
    }
    pub fn cleaner_dedupe_buffer_bytes(&self) -> usize {
        self.get_i64("log.cleaner.dedupe.buffer.size") as usize
    }
    pub fn cleaner_io_max_bytes_per_second(&self) -> f64 {
        self.get("log.cleaner.io.max.bytes.per.second")
            .and_then(|v| v.trim().parse().ok())
            .expect("validated number setting")
    }
    pub fn cleaner_shares(&self) -> usize {
        self.get_i64("weir.cleaner.shares") as usize
    }
    pub fn fetch_session_slots(&self) -> usize {
        self.get_i64("max.incremental.fetch.session.cache.slots") as usize
    }
    pub fn fetch_max_bytes(&self) -> i32 {
        self.get_i64("fetch.max.bytes") as i32
    }
    pub fn producer_id_expiration_ms(&self) -> i64 {
        self.get_i64("producer.id.expiration.ms")
    }
    pub fn max_connections(&self) -> usize {
        self.get_i64("max.connections") as usize
    }
    pub fn max_partitions(&self) -> usize {
        self.get_i64("weir.max.partitions") as usize
    }
    pub fn smp(&self) -> usize {
        self.get_i64("weir.smp") as usize
    }
    pub fn admin_listen(&self) -> Option<&str> {
        self.get("weir.admin.listen").filter(|v| !v.is_empty())
    }
    pub fn max_inflight_requests(&self) -> usize {
        self.get_i64("weir.connection.max.inflight.requests") as usize
    }
    pub fn cache_bytes(&self) -> usize {
        self.get_i64("weir.cache.bytes") as usize
    }
    pub fn write_buffer_bytes(&self) -> usize {
        self.get_i64("weir.write.buffer.bytes") as usize
    }
    pub fn unflushed_bytes_max(&self) -> usize {
        self.get_i64("weir.unflushed.bytes.max") as usize
    }
    pub fn readahead_bytes(&self) -> usize {
        self.get_i64("weir.readahead.bytes") as usize
    }
    pub fn offsets_topic_num_partitions(&self) -> i32 {
        self.get_i64("offsets.topic.num.partitions") as i32
    }
    pub fn offsets_topic_segment_bytes(&self) -> i64 {
        self.get_i64("offsets.topic.segment.bytes")
    }
    pub fn offsets_retention_ms(&self) -> i64 {
        self.get_i64("offsets.retention.minutes")
            .saturating_mul(60_000)
    }
    pub fn offsets_retention_check_interval_ms(&self) -> u64 {
        self.get_i64("offsets.retention.check.interval.ms") as u64
    }
    pub fn offsets_commit_timeout_ms(&self) -> u64 {
        self.get_i64("offsets.commit.timeout.ms") as u64
    }
    pub fn offset_metadata_max_bytes(&self) -> usize {
        self.get_i64("offset.metadata.max.bytes") as usize
    }
    pub fn group_min_session_timeout_ms(&self) -> i32 {
        self.get_i64("group.min.session.timeout.ms") as i32
    }
    pub fn group_max_session_timeout_ms(&self) -> i32 {
        self.get_i64("group.max.session.timeout.ms") as i32
    }
    pub fn group_initial_rebalance_delay_ms(&self) -> i32 {
        self.get_i64("group.initial.rebalance.delay.ms") as i32
    }
    pub fn transaction_state_log_num_partitions(&self) -> i32 {
        self.get_i64("transaction.state.log.num.partitions") as i32
    }
    pub fn transaction_state_log_segment_bytes(&self) -> i64 {
        self.get_i64("transaction.state.log.segment.bytes")
    }
    pub fn transaction_max_timeout_ms(&self) -> i32 {
        self.get_i64("transaction.max.timeout.ms") as i32
    }
    pub fn transaction_abort_timed_out_transaction_cleanup_interval_ms(&self) -> u64 {
        self.get_i64("transaction.abort.timed.out.transaction.cleanup.interval.ms") as u64
    }
    pub fn transactional_id_expiration_ms(&self) -> i64 {
        self.get_i64("transactional.id.expiration.ms")
    }
    pub fn transaction_remove_expired_transaction_cleanup_interval_ms(&self) -> i64 {
        self.get_i64("transaction.remove.expired.transaction.cleanup.interval.ms")
    }
    pub fn group_max_size(&self) -> usize {
        self.get_i64("group.max.size") as usize
    }
    pub fn group_consumer_session_timeout_ms(&self) -> i64 {
        self.get_i64("group.consumer.session.timeout.ms")
    }
    pub fn group_consumer_heartbeat_interval_ms(&self) -> i32 {
        self.get_i64("group.consumer.heartbeat.interval.ms") as i32
    }
    pub fn group_consumer_max_size(&self) -> usize {
        self.get_i64("group.consumer.max.size") as usize
    }
    pub fn preallocate_bytes(&self) -> u64 {
        self.get_i64("weir.preallocate.bytes") as u64
    }

    /// All settings with their effective values, for DescribeConfigs on the broker.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &str, bool)> + '_ {
        let broker = BROKER_CONFIGS.iter().map(|d| d.name);
        let topic_defaults = TOPIC_CONFIGS.iter().map(|d| d.broker_name);
        broker
            .chain(topic_defaults)
            .map(move |name| (name, self.get(name).unwrap_or_default(), self.is_set(name)))
    }
}

fn parse_listener(text: &str) -> Result<SocketAddr, ConfigError> {
    let first = text.split(',').next().unwrap_or_default().trim();
    let address = first
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(first);
    use std::net::ToSocketAddrs;
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ConfigError(format!("listener '{text}' is not a valid host:port")))
}

fn flatten_toml(
    prefix: &str,
    value: &toml::Value,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::Table(table) => {
            for (key, inner) in table {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_toml(&name, inner, out)?;
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        toml::Value::Integer(i) => {
            out.insert(prefix.to_string(), i.to_string());
        }
        toml::Value::Float(f) => {
            out.insert(prefix.to_string(), f.to_string());
        }
        toml::Value::Boolean(b) => {
            out.insert(prefix.to_string(), b.to_string());
        }
        toml::Value::Array(items) => {
            let joined: Vec<String> = items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.insert(prefix.to_string(), joined.join(","));
        }
        toml::Value::Datetime(d) => {
            return Err(ConfigError(format!(
                "setting '{prefix}' cannot be a date ({d})"
            )));
        }
    }
    Ok(())
}

/// Where an effective topic setting came from (Kafka's `ConfigSource`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    TopicConfig = 1,
    DynamicBrokerConfig = 2,
    DynamicDefaultBrokerConfig = 3,
    StaticBrokerConfig = 4,
    DefaultConfig = 5,
}

/// Resolves one topic setting through the override chain.
pub fn resolve_topic_setting<'a>(
    def: &'static TopicConfigDef,
    topic: &'a BTreeMap<String, String>,
    dynamic_broker: &'a BTreeMap<String, String>,
    static_broker: &'a BrokerConfig,
) -> (&'a str, ConfigSource) {
    if let Some(v) = topic.get(def.def.name) {
        (v, ConfigSource::TopicConfig)
    } else if let Some(v) = dynamic_broker.get(def.broker_name) {
        (v, ConfigSource::DynamicDefaultBrokerConfig)
    } else if static_broker.is_set(def.broker_name) {
        (
            static_broker
                .get(def.broker_name)
                .unwrap_or(def.def.default),
            ConfigSource::StaticBrokerConfig,
        )
    } else {
        (def.def.default, ConfigSource::DefaultConfig)
    }
}

/// Typed topic settings the storage and partition layers read.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicConfig {
    pub cleanup_delete: bool,
    pub cleanup_compact: bool,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub flush_ms: i64,
    pub index_interval_bytes: u32,
    pub max_message_bytes: i32,
    pub timestamp_after_max_ms: i64,
    pub timestamp_before_max_ms: i64,
    pub log_append_time: bool,
    pub min_insync_replicas: i32,
    pub retention_bytes: i64,
    pub retention_ms: i64,
    pub segment_bytes: u64,
    pub segment_index_bytes: u32,
    pub segment_ms: i64,
    pub segment_jitter_ms: i64,
    pub write_caching: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig::resolve(&BTreeMap::new(), &BTreeMap::new(), &BrokerConfig::default())
    }
}

impl TopicConfig {
    /// Builds the typed view; every value was validated when it was stored.
    pub fn resolve(
        topic: &BTreeMap<String, String>,
        dynamic_broker: &BTreeMap<String, String>,
        static_broker: &BrokerConfig,
    ) -> TopicConfig {
        let get = |name: &str| -> String {
            let def = topic_config_def(name).expect("known topic config");
            resolve_topic_setting(def, topic, dynamic_broker, static_broker)
                .0
                .trim()
                .to_string()
        };
        let long = |name: &str| -> i64 {
            let text = get(name);
            text.parse()
                .unwrap_or_else(|_| topic_config_def(name).unwrap().def.default.parse().unwrap())
        };
        let policy = get("cleanup.policy");
        TopicConfig {
            cleanup_delete: policy.split(',').any(|p| p.trim() == "delete"),
            cleanup_compact: policy.split(',').any(|p| p.trim() == "compact"),
            delete_retention_ms: long("delete.retention.ms"),
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio").parse().unwrap_or(0.5),
            min_compaction_lag_ms: long("min.compaction.lag.ms"),
            max_compaction_lag_ms: long("max.compaction.lag.ms"),
            flush_ms: long("flush.ms"),
            index_interval_bytes: long("index.interval.bytes").clamp(0, u32::MAX as i64) as u32,
            max_message_bytes: long("max.message.bytes").clamp(0, i32::MAX as i64) as i32,
            timestamp_after_max_ms: long("message.timestamp.after.max.ms"),
            timestamp_before_max_ms: long("message.timestamp.before.max.ms"),
            log_append_time: get("message.timestamp.type") == "LogAppendTime",
            min_insync_replicas: long("min.insync.replicas") as i32,
            retention_bytes: long("retention.bytes"),
            retention_ms: long("retention.ms"),
            segment_bytes: long("segment.bytes").max(1 << 20) as u64,
            segment_index_bytes: long("segment.index.bytes").clamp(4, i32::MAX as i64) as u32,
            segment_ms: long("segment.ms"),
            segment_jitter_ms: long("segment.jitter.ms"),
            write_caching: get("write.caching") == "true",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_dotted_and_nested_toml_when_loaded_should_mean_the_same() {
        let a = BrokerConfig::from_toml_str("log.retention.ms = 1000\nnum.partitions = 3").unwrap();
        let b =
            BrokerConfig::from_toml_str("[log]\n\"retention.ms\" = 1000\n[num]\npartitions = 3")
                .unwrap();
        assert_eq!(a.get("log.retention.ms"), Some("1000"));
        assert_eq!(b.get("log.retention.ms"), Some("1000"));
        assert_eq!(a.num_partitions(), 3);
        assert_eq!(b.num_partitions(), 3);
    }

    #[test]
    fn given_unknown_or_bad_setting_should_name_it() {
        let err = BrokerConfig::from_toml_str("no.such.thing = 1").unwrap_err();
        assert!(err.0.contains("no.such.thing"), "{err}");
        let err = BrokerConfig::from_toml_str("num.partitions = 0").unwrap_err();
        assert!(err.0.contains("num.partitions"), "{err}");
        let err = BrokerConfig::from_toml_str("auto.create.topics.enable = \"maybe\"").unwrap_err();
        assert!(err.0.contains("auto.create.topics.enable"), "{err}");
    }

    #[test]
    fn topic_setting_resolution_follows_kafka_order() {
        let mut broker = BrokerConfig::default();
        let def = topic_config_def("retention.ms").unwrap();
        let empty = BTreeMap::new();
        assert_eq!(
            resolve_topic_setting(def, &empty, &empty, &broker),
            ("604800000", ConfigSource::DefaultConfig)
        );
        broker.set("log.retention.ms", "5").unwrap();
        assert_eq!(
            resolve_topic_setting(def, &empty, &empty, &broker),
            ("5", ConfigSource::StaticBrokerConfig)
        );
        let dynamic = BTreeMap::from([("log.retention.ms".to_string(), "6".to_string())]);
        assert_eq!(
            resolve_topic_setting(def, &empty, &dynamic, &broker),
            ("6", ConfigSource::DynamicDefaultBrokerConfig)
        );
        let topic = BTreeMap::from([("retention.ms".to_string(), "7".to_string())]);
        assert_eq!(
            resolve_topic_setting(def, &topic, &dynamic, &broker),
            ("7", ConfigSource::TopicConfig)
        );
        assert_eq!(
            TopicConfig::resolve(&topic, &dynamic, &broker).retention_ms,
            7
        );
    }

    #[test]
    fn topic_config_validation_rejects_bad_values() {
        assert!(validate_topic_config("retention.ms", "100").is_ok());
        assert!(validate_topic_config("retention.ms", "abc").is_err());
        assert!(validate_topic_config("segment.bytes", "100").is_err());
        assert!(validate_topic_config("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_topic_config("cleanup.policy", "shred").is_err());
        assert!(validate_topic_config("no.such", "1")
            .unwrap_err()
            .0
            .contains("Unknown topic config"));
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "1.5").is_err());
    }

    #[test]
    fn listener_forms_are_accepted() {
        let mut c = BrokerConfig::default();
        assert_eq!(c.listen_addr().unwrap().port(), 9092);
        c.set("listeners", "127.0.0.1:19092").unwrap();
        assert_eq!(c.listen_addr().unwrap().port(), 19092);
        assert_eq!(c.advertised().unwrap(), ("127.0.0.1".to_string(), 19092));
        c.set("listeners", "PLAINTEXT://0.0.0.0:9093").unwrap();
        assert_eq!(c.advertised().unwrap(), ("127.0.0.1".to_string(), 9093));
    }

    #[test]
    fn env_overrides_use_weir_prefix() {
        let mut c = BrokerConfig::default();
        c.apply_env([("WEIR_NUM_PARTITIONS".to_string(), "4".to_string())].into_iter())
            .unwrap();
        assert_eq!(c.num_partitions(), 4);
    }
}

/// The markdown tables of `docs/configuration.md`, derived from the definitions above.
pub fn reference_tables() -> String {
    use std::fmt::Write;
    let mut out =
        String::from("### Broker settings\n\n| name | default | meaning |\n|---|---|---|\n");
    for def in BROKER_CONFIGS {
        let _ = writeln!(out, "| `{}` | `{}` | {} |", def.name, def.default, def.doc);
    }
    out.push_str("\n### Topic settings (and the broker setting that sets their default)\n\n");
    out.push_str(
        "| topic setting | broker default setting | default | meaning |\n|---|---|---|---|\n",
    );
    for def in TOPIC_CONFIGS {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | `{}` | {} |",
            def.def.name,
            def.broker_name,
            def.def.default,
            def.def.doc.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    out
}

#[cfg(test)]
mod reference_tests {
    #[test]
    fn configuration_doc_lists_every_setting_with_its_default() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/configuration.md"
        ))
        .expect("docs/configuration.md exists");
        let tables = super::reference_tables();
        if std::env::var_os("WEIR_BLESS").is_some() && !doc.contains(&tables) {
            // Regenerate: everything from "### Broker settings" up to "## Limits".
            let start = doc.find("### Broker settings").expect("broker section");
            let end = doc.find("## Limits").expect("limits section");
            let fresh = format!("{}{}\n{}", &doc[..start], tables, &doc[end..]);
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md"),
                fresh,
            )
            .expect("write docs/configuration.md");
            return;
        }
        assert!(
            doc.contains(&super::reference_tables()),
            "docs/configuration.md is out of date (WEIR_BLESS=1 cargo test --lib configuration_doc rewrites it); its tables must be:\n{}",
            super::reference_tables()
        );
    }
}
