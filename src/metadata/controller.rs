//! The controller: validates metadata changes, writes them as records to `__cluster_metadata`,
//! fsyncs, and applies them to the image. Lives on shard 0; other shards reach it by message.
//!
//! The `plan_*` functions are pure (image in, records or a Kafka error out) so their rules are
//! tested without I/O; [`Controller::commit`] is the only writer, serialized by a FIFO lock.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::{
    random_uuid, validate_topic_name, MetadataImage, MetadataRecord, RESOURCE_BROKER,
    RESOURCE_TOPIC,
};
use crate::config::{self, BrokerConfig, TopicConfig};
use crate::protocol::error::ErrorCode;
use crate::protocol::Uuid;
use crate::records::batch;
use crate::records::builder::BatchBuilder;
use crate::records::compression::Compression;
use crate::storage::log::{Log, LogOptions};

/// Directory of the metadata log inside the data directory (Kafka's name).
pub const METADATA_DIR: &str = "__cluster_metadata-0";
/// Producer ids are handed out in blocks recorded in the log, as Kafka's ProducerIdsRecord.
const PRODUCER_ID_BLOCK: i64 = 1000;
/// Upper bound on partitions one topic may have (a limit on everything).
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;

/// A refused metadata change: Kafka's error code and a message that says what to do.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct CreateTopicSpec {
    pub name: String,
    /// -1: the broker's num.partitions.
    pub num_partitions: i32,
    /// -1: the broker's default.replication.factor.
    pub replication_factor: i16,
    /// Manual replica assignment: (partition, broker ids).
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub configs: Vec<(String, Option<String>)>,
}

/// One change of AlterConfigs / IncrementalAlterConfigs.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigOp {
    Set(String),
    Delete,
    Append(String),
    Subtract(String),
}

/// An existing topic whose name equals `name` once '.' and '_' are unified, as Kafka refuses
/// (the two would share metric names).
fn colliding_topic<'a>(image: &'a MetadataImage, name: &str) -> Option<&'a str> {
    if !name.contains(['.', '_']) {
        return None;
    }
    let unified = |n: &str| n.replace('.', "_");
    let target = unified(name);
    image
        .topics
        .keys()
        .map(|existing| &**existing)
        .find(|existing| {
            *existing != name && existing.len() == name.len() && unified(existing) == target
        })
}

/// Plans the records creating a topic.
pub fn plan_create_topic(
    image: &MetadataImage,
    broker: &BrokerConfig,
    spec: &CreateTopicSpec,
) -> Result<(Vec<MetadataRecord>, Uuid, i32), ApiError> {
    validate_topic_name(&spec.name)
        .map_err(|m| ApiError::new(ErrorCode::InvalidTopicException, m))?;
    if image.topic(&spec.name).is_some() {
        return Err(ApiError::new(
            ErrorCode::TopicAlreadyExists,
            format!("Topic '{}' already exists.", spec.name),
        ));
    }
    if let Some(existing) = colliding_topic(image, &spec.name) {
        return Err(ApiError::new(
            ErrorCode::InvalidTopicException,
            format!(
                "Topic '{}' collides with existing topic: {existing}",
                spec.name
            ),
        ));
    }
    let partitions = if !spec.assignments.is_empty() {
        if spec.num_partitions != -1 || spec.replication_factor != -1 {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        validate_assignments(image, &spec.assignments, 0)?;
        spec.assignments.len() as i32
    } else {
        let partitions = if spec.num_partitions == -1 {
            broker.num_partitions()
        } else {
            spec.num_partitions
        };
        if partitions <= 0 {
            return Err(ApiError::new(
                ErrorCode::InvalidPartitions,
                "Number of partitions must be larger than 0.",
            ));
        }
        let replication = if spec.replication_factor == -1 {
            1
        } else {
            spec.replication_factor
        };
        if replication <= 0 {
            return Err(ApiError::new(
                ErrorCode::InvalidReplicationFactor,
                "Replication factor must be larger than 0.",
            ));
        }
        if replication > 1 {
            return Err(ApiError::new(
                ErrorCode::InvalidReplicationFactor,
                format!("Unable to replicate the partition {replication} time(s): The target replication factor of {replication} cannot be reached because only 1 broker(s) are registered."),
            ));
        }
        partitions
    };
    check_partition_limits(image, broker, partitions)?;
    let mut configs = BTreeMap::new();
    for (name, value) in &spec.configs {
        let Some(value) = value else {
            return Err(ApiError::new(
                ErrorCode::InvalidConfig,
                format!("Null value not supported for topic configs: {name}"),
            ));
        };
        config::validate_topic_config(name, value)
            .map_err(|e| ApiError::new(ErrorCode::InvalidConfig, e.0))?;
        configs.insert(name.clone(), value.clone());
    }
    let id = random_uuid();
    let mut records = vec![MetadataRecord::Topic {
        name: spec.name.clone(),
        id,
    }];
    for (name, value) in configs {
        records.push(MetadataRecord::Config {
            resource_type: RESOURCE_TOPIC,
            resource_name: spec.name.clone(),
            name,
            value: Some(value),
        });
    }
    for partition in 0..partitions {
        records.push(partition_record(image, id, partition));
    }
    Ok((records, id, partitions))
}

/// Refuses partitions beyond the per-topic bound and the broker's `weir.max.partitions`.
fn check_partition_limits(
    image: &MetadataImage,
    broker: &BrokerConfig,
    adding: i32,
) -> Result<(), ApiError> {
    if adding > MAX_PARTITIONS_PER_TOPIC {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!("{adding} partitions is more than Weir's limit of {MAX_PARTITIONS_PER_TOPIC} per topic"),
        ));
    }
    let existing: usize = image.topics.values().map(|t| t.partitions.len()).sum();
    let limit = broker.max_partitions();
    if existing + adding as usize > limit {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!(
                "{adding} more partitions would make {} on this broker, above weir.max.partitions={limit}; \
                 raise it (and `ulimit -n`: every partition keeps files open) or use fewer partitions",
                existing + adding as usize
            ),
        ));
    }
    Ok(())
}

fn partition_record(image: &MetadataImage, topic_id: Uuid, partition: i32) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id,
        partition,
        leader: image.node_id,
        leader_epoch: 0,
        replicas: vec![image.node_id],
    }
}

fn validate_assignments(
    image: &MetadataImage,
    assignments: &[(i32, Vec<i32>)],
    first: i32,
) -> Result<(), ApiError> {
    for (position, (partition, replicas)) in assignments.iter().enumerate() {
        if *partition != first + position as i32 {
            return Err(ApiError::new(
                ErrorCode::InvalidReplicaAssignment,
                "Partitions must be assigned consecutively from 0",
            ));
        }
        if replicas.is_empty() || replicas.iter().any(|&b| b != image.node_id) || replicas.len() > 1
        {
            return Err(ApiError::new(
                ErrorCode::InvalidReplicaAssignment,
                format!("replica assignment {replicas:?} names brokers that do not exist (only {} is registered)", image.node_id),
            ));
        }
    }
    Ok(())
}

/// Plans the records deleting a topic.
pub fn plan_delete_topic(
    image: &MetadataImage,
    broker: &BrokerConfig,
    name: &str,
) -> Result<Vec<MetadataRecord>, ApiError> {
    if !broker.delete_topic_enable() {
        return Err(ApiError::new(
            ErrorCode::TopicDeletionDisabled,
            "Topic deletion is disabled (delete.topic.enable=false).",
        ));
    }
    let topic = image.topic(name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            "This server does not host this topic-partition.",
        )
    })?;
    if topic.is_internal() {
        // Deleting it would lose every group's offsets (Kafka's tools refuse it too).
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("Topic '{name}' is an internal topic and cannot be deleted."),
        ));
    }
    Ok(vec![MetadataRecord::RemoveTopic { topic_id: topic.id }])
}

/// Plans CreatePartitions: growing `name` to `count` partitions.
pub fn plan_create_partitions(
    image: &MetadataImage,
    broker: &BrokerConfig,
    name: &str,
    count: i32,
    assignments: &[(i32, Vec<i32>)],
) -> Result<Vec<MetadataRecord>, ApiError> {
    let topic = image.topic(name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            "This server does not host this topic-partition.",
        )
    })?;
    let current = topic.partitions.len() as i32;
    if count < current {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!("Topic currently has {current} partitions, which is higher than the requested {count}; partitions cannot be removed."),
        ));
    }
    if count == current {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!("Topic already has {current} partitions."),
        ));
    }
    if count > MAX_PARTITIONS_PER_TOPIC {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!("{count} partitions is more than Weir's limit of {MAX_PARTITIONS_PER_TOPIC} per topic"),
        ));
    }
    check_partition_limits(image, broker, count - current)?;
    if !assignments.is_empty() {
        if assignments.len() as i32 != count - current {
            return Err(ApiError::new(
                ErrorCode::InvalidReplicaAssignment,
                format!(
                    "Increasing the number of partitions by {} but {} assignments provided.",
                    count - current,
                    assignments.len()
                ),
            ));
        }
        validate_assignments(image, assignments, current)?;
    }
    Ok((current..count)
        .map(|p| partition_record(image, topic.id, p))
        .collect())
}

/// Plans a config change of a topic (`incremental`: IncrementalAlterConfigs; otherwise
/// AlterConfigs, which replaces every override with the given set).
pub fn plan_topic_configs(
    image: &MetadataImage,
    name: &str,
    changes: &[(String, ConfigOp)],
    incremental: bool,
) -> Result<Vec<MetadataRecord>, ApiError> {
    let topic = image.topic(name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("Topic '{name}' does not exist."),
        )
    })?;
    let mut next = if incremental {
        topic.configs.clone()
    } else {
        BTreeMap::new()
    };
    for (key, op) in changes {
        let def = config::topic_config_def(key).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidConfig,
                format!("Unknown topic config name: {key}"),
            )
        })?;
        apply_op(
            &mut next,
            key,
            op,
            def.def.kind == config::ConfigKind::List,
            def.def.default,
        )?;
    }
    for (key, value) in &next {
        config::validate_topic_config(key, value)
            .map_err(|e| ApiError::new(ErrorCode::InvalidConfig, e.0))?;
    }
    Ok(diff_configs(RESOURCE_TOPIC, name, &topic.configs, &next))
}

/// Plans a change of dynamic cluster-wide broker defaults.
pub fn plan_broker_configs(
    image: &MetadataImage,
    changes: &[(String, ConfigOp)],
    incremental: bool,
) -> Result<Vec<MetadataRecord>, ApiError> {
    let mut next = if incremental {
        image.broker_configs.clone()
    } else {
        BTreeMap::new()
    };
    for (key, op) in changes {
        let def = config::broker_config_def(key).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidConfig,
                format!("Unknown broker config name: {key}"),
            )
        })?;
        if !config::is_dynamic_broker_config(key) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("Cannot update these configs dynamically: {key} (set it in the config file and restart)"),
            ));
        }
        apply_op(
            &mut next,
            key,
            op,
            def.kind == config::ConfigKind::List,
            def.default,
        )?;
        if let Some(value) = next.get(key.as_str()) {
            let topic_name = config::TOPIC_CONFIGS
                .iter()
                .find(|d| d.broker_name == key)
                .map(|d| d.def.name)
                .unwrap_or(key);
            config::validate_topic_config(topic_name, value)
                .map_err(|e| ApiError::new(ErrorCode::InvalidConfig, e.0))?;
        }
    }
    Ok(diff_configs(
        RESOURCE_BROKER,
        "",
        &image.broker_configs,
        &next,
    ))
}

fn apply_op(
    configs: &mut BTreeMap<String, String>,
    key: &str,
    op: &ConfigOp,
    is_list: bool,
    default: &str,
) -> Result<(), ApiError> {
    match op {
        ConfigOp::Set(value) => {
            configs.insert(key.to_string(), value.clone());
        }
        ConfigOp::Delete => {
            configs.remove(key);
        }
        ConfigOp::Append(value) | ConfigOp::Subtract(value) => {
            if !is_list {
                return Err(ApiError::new(
                    ErrorCode::InvalidConfig,
                    format!("Config value append/subtract is not allowed for config key {key}"),
                ));
            }
            let current = configs
                .get(key)
                .cloned()
                .unwrap_or_else(|| default.to_string());
            let mut items: Vec<String> = current
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if matches!(op, ConfigOp::Append(_)) {
                    if !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    }
                } else {
                    items.retain(|i| i != item);
                }
            }
            configs.insert(key.to_string(), items.join(","));
        }
    }
    Ok(())
}

fn diff_configs(
    resource_type: i8,
    resource_name: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for (name, value) in new {
        if old.get(name) != Some(value) {
            records.push(MetadataRecord::Config {
                resource_type,
                resource_name: resource_name.to_string(),
                name: name.clone(),
                value: Some(value.clone()),
            });
        }
    }
    for name in old.keys().filter(|k| !new.contains_key(*k)) {
        records.push(MetadataRecord::Config {
            resource_type,
            resource_name: resource_name.to_string(),
            name: name.clone(),
            value: None,
        });
    }
    records
}

/// The metadata log writer. One instance, on shard 0.
pub struct Controller {
    log: RefCell<Log>,
    image: RefCell<Arc<MetadataImage>>,
    /// Serializes changes in the order they were asked for.
    lock: crate::event::OrderedLock,
    pub broker: Arc<BrokerConfig>,
    producer_ids: Cell<(i64, i64)>,
}

impl Controller {
    /// Opens the metadata log and replays it into an image.
    pub async fn open(
        data_dir: &Path,
        broker: Arc<BrokerConfig>,
        cluster_id: String,
        clean_shutdown: bool,
    ) -> std::io::Result<Controller> {
        let config = TopicConfig {
            retention_ms: -1,
            retention_bytes: -1,
            cleanup_delete: false,
            ..TopicConfig::default()
        };
        let (log, report) = Log::open(
            &data_dir.join(METADATA_DIR),
            config,
            LogOptions::default(),
            clean_shutdown,
            crate::event::now_ms(),
        )
        .await?;
        let log = RefCell::new(log);
        let mut image = MetadataImage::new(cluster_id, broker.node_id());
        let mut offset = 0;
        let mut applied = 0usize;
        loop {
            let end = log.borrow().log_end_offset;
            if offset >= end {
                break;
            }
            let chunk = Log::read(&log, offset, 4 << 20, end, true)
                .await
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            if chunk.is_empty() {
                break;
            }
            for item in batch::split(&chunk) {
                let (header, bytes) =
                    item.map_err(|e| std::io::Error::other(format!("metadata log: {e}")))?;
                offset = header.last_offset() + 1;
                let records = crate::records::record::records(&bytes, 64 << 20)
                    .map_err(|e| std::io::Error::other(format!("metadata log: {e}")))?;
                for record in records {
                    let record =
                        record.map_err(|e| std::io::Error::other(format!("metadata log: {e}")))?;
                    let Some(value) = record.value else { continue };
                    match MetadataRecord::decode(&value) {
                        Ok(Some(decoded)) => {
                            image.apply(&decoded);
                            applied += 1;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            return Err(std::io::Error::other(format!(
                                "metadata record at {}: {e}",
                                header.base_offset
                            )))
                        }
                    }
                }
                image.offset = header.last_offset();
            }
        }
        tracing::info!(
            "metadata: replayed {applied} records ({} topics) from {} (scanned {} bytes)",
            image.topics.len(),
            METADATA_DIR,
            report.scanned_bytes
        );
        let next = image.next_producer_id;
        Ok(Controller {
            log,
            image: RefCell::new(Arc::new(image)),
            lock: crate::event::OrderedLock::new(),
            broker,
            producer_ids: Cell::new((next, next)),
        })
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Runs `plan` against the current image and commits its records, serialized with every
    /// other change. Returns the new image and what `plan` returned.
    pub async fn change<T>(
        &self,
        plan: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ApiError>,
    ) -> Result<(Arc<MetadataImage>, T), ApiError> {
        let _permit =
            self.lock.lock().await.map_err(|_| {
                ApiError::new(ErrorCode::NotController, "controller is shutting down")
            })?;
        let current = self.image();
        let (records, value) = plan(&current)?;
        if records.is_empty() {
            return Ok((current, value));
        }
        let image = self.commit(&current, records).await.map_err(|e| {
            tracing::error!("metadata log write failed: {e}");
            ApiError::new(
                ErrorCode::KafkaStorageError,
                format!("metadata log write failed: {e}"),
            )
        })?;
        Ok((image, value))
    }

    async fn commit(
        &self,
        current: &MetadataImage,
        records: Vec<MetadataRecord>,
    ) -> std::io::Result<Arc<MetadataImage>> {
        let now = crate::event::now_ms();
        let mut builder = BatchBuilder::new(Compression::None, 0, now);
        for record in &records {
            builder.append(now, None, Some(&record.encode()), &[]);
        }
        let batch_bytes: Bytes = builder
            .build()
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let header =
            batch::validate(&batch_bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        Log::roll_if_needed(&self.log, batch_bytes.len(), now).await?;
        let info = self.log.borrow_mut().append(&header, &batch_bytes, 0, None);
        Log::flush(&self.log, true, now).await?;
        let mut image = current.clone();
        for record in &records {
            image.apply(record);
        }
        image.offset = info.last_offset;
        let image = Arc::new(image);
        *self.image.borrow_mut() = image.clone();
        Ok(image)
    }

    /// Hands out a producer id, writing a new ProducerIdsRecord block when one is used up.
    pub async fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        let (next, end) = self.producer_ids.get();
        if next < end {
            self.producer_ids.set((next + 1, end));
            return Ok(next);
        }
        let (image, start) = self
            .change(|image| {
                let start = image.next_producer_id;
                Ok((
                    vec![MetadataRecord::ProducerIds {
                        next_producer_id: start + PRODUCER_ID_BLOCK,
                    }],
                    start,
                ))
            })
            .await?;
        self.producer_ids.set((start + 1, image.next_producer_id));
        Ok(start)
    }

    /// Flushes and closes the metadata log (clean shutdown).
    pub async fn close(&self) -> std::io::Result<()> {
        let _permit = self.lock.lock().await;
        Log::close(&self.log, crate::event::now_ms()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_topic(name: &str, partitions: i32) -> MetadataImage {
        let mut image = MetadataImage::new("c".into(), 1);
        let spec = CreateTopicSpec {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: -1,
            ..Default::default()
        };
        let (records, _, _) = plan_create_topic(&image, &BrokerConfig::default(), &spec).unwrap();
        for r in &records {
            image.apply(r);
        }
        image
    }

    #[test]
    fn names_colliding_once_dots_and_underscores_are_unified_are_refused() {
        let image = image_with_topic("orders.eu_west", 1);
        let broker = BrokerConfig::default();
        let spec = |name: &str| CreateTopicSpec {
            name: name.into(),
            num_partitions: 1,
            replication_factor: -1,
            ..Default::default()
        };
        for colliding in ["orders_eu_west", "orders.eu.west", "orders_eu.west"] {
            let error = plan_create_topic(&image, &broker, &spec(colliding)).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidTopicException, "{colliding}");
            assert_eq!(
                error.message,
                format!("Topic '{colliding}' collides with existing topic: orders.eu_west")
            );
        }
        assert_eq!(
            plan_create_topic(&image, &broker, &spec("orders.eu_west"))
                .unwrap_err()
                .code,
            ErrorCode::TopicAlreadyExists
        );
        for fine in ["orders-eu-west", "orders.eu_wes", "orders.eu_west2"] {
            assert!(
                plan_create_topic(&image, &broker, &spec(fine)).is_ok(),
                "{fine}"
            );
        }
    }

    #[test]
    fn create_topic_errors_match_kafka() {
        let image = image_with_topic("t", 3);
        let broker = BrokerConfig::default();
        let spec = |name: &str, n: i32| CreateTopicSpec {
            name: name.into(),
            num_partitions: n,
            replication_factor: -1,
            ..Default::default()
        };
        assert_eq!(
            plan_create_topic(&image, &broker, &spec("t", 1))
                .unwrap_err()
                .code,
            ErrorCode::TopicAlreadyExists
        );
        assert_eq!(
            plan_create_topic(&image, &broker, &spec("u", 0))
                .unwrap_err()
                .code,
            ErrorCode::InvalidPartitions
        );
        assert_eq!(
            plan_create_topic(&image, &broker, &spec("u", -5))
                .unwrap_err()
                .code,
            ErrorCode::InvalidPartitions
        );
        assert_eq!(
            plan_create_topic(&image, &broker, &spec("bad name", 1))
                .unwrap_err()
                .code,
            ErrorCode::InvalidTopicException
        );
        let (records, _, count) = plan_create_topic(&image, &broker, &spec("u", -1)).unwrap();
        assert_eq!(count, 1, "num.partitions default");
        assert_eq!(records.len(), 2);
        let mut with_config = spec("v", 2);
        with_config.configs = vec![("retention.ms".into(), Some("nope".into()))];
        assert_eq!(
            plan_create_topic(&image, &broker, &with_config)
                .unwrap_err()
                .code,
            ErrorCode::InvalidConfig
        );
        let mut rf3 = spec("w", 1);
        rf3.replication_factor = 3;
        assert_eq!(
            plan_create_topic(&image, &broker, &rf3).unwrap_err().code,
            ErrorCode::InvalidReplicationFactor
        );
    }

    #[test]
    fn partitions_only_grow_within_the_broker_limit() {
        let image = image_with_topic("t", 3);
        let broker = BrokerConfig::default();
        let code = |count| {
            plan_create_partitions(&image, &broker, "t", count, &[])
                .unwrap_err()
                .code
        };
        assert_eq!(code(2), ErrorCode::InvalidPartitions);
        assert_eq!(code(3), ErrorCode::InvalidPartitions);
        assert_eq!(
            plan_create_partitions(&image, &broker, "t", 5, &[])
                .unwrap()
                .len(),
            2
        );
        let unknown = plan_create_partitions(&image, &broker, "nope", 5, &[]).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::UnknownTopicOrPartition);
        let mut small = BrokerConfig::default();
        small.set("weir.max.partitions", "4").unwrap();
        let error = plan_create_partitions(&image, &small, "t", 5, &[]).unwrap_err();
        assert!(
            error.message.contains("weir.max.partitions=4"),
            "{}",
            error.message
        );
        let spec = CreateTopicSpec {
            name: "u".into(),
            num_partitions: 2,
            replication_factor: -1,
            ..Default::default()
        };
        assert_eq!(
            plan_create_topic(&image, &small, &spec).unwrap_err().code,
            ErrorCode::InvalidPartitions
        );
    }

    #[test]
    fn alter_configs_replaces_and_incremental_merges() {
        let mut image = image_with_topic("t", 1);
        let set = |k: &str, v: &str| (k.to_string(), ConfigOp::Set(v.to_string()));
        for r in plan_topic_configs(
            &image,
            "t",
            &[set("retention.ms", "10"), set("segment.ms", "20")],
            true,
        )
        .unwrap()
        {
            image.apply(&r);
        }
        assert_eq!(image.topic("t").unwrap().configs.len(), 2);
        let records = plan_topic_configs(&image, "t", &[set("retention.ms", "11")], false).unwrap();
        for r in &records {
            image.apply(r);
        }
        let configs = &image.topic("t").unwrap().configs;
        assert_eq!(configs.get("retention.ms").map(String::as_str), Some("11"));
        assert!(
            !configs.contains_key("segment.ms"),
            "non-incremental AlterConfigs drops unlisted overrides"
        );
        let append = (
            "cleanup.policy".to_string(),
            ConfigOp::Append("compact".into()),
        );
        for r in plan_topic_configs(&image, "t", &[append], true).unwrap() {
            image.apply(&r);
        }
        assert_eq!(
            image
                .topic("t")
                .unwrap()
                .configs
                .get("cleanup.policy")
                .map(String::as_str),
            Some("delete,compact")
        );
        assert_eq!(
            plan_topic_configs(&image, "t", &[set("bogus", "1")], true)
                .unwrap_err()
                .code,
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            plan_topic_configs(&image, "t", &[set("retention.ms", "x")], true)
                .unwrap_err()
                .code,
            ErrorCode::InvalidConfig
        );
    }

    #[test]
    fn broker_configs_only_dynamic_ones() {
        let image = MetadataImage::new("c".into(), 1);
        let set = |k: &str, v: &str| (k.to_string(), ConfigOp::Set(v.to_string()));
        assert_eq!(
            plan_broker_configs(&image, &[set("log.retention.ms", "5")], true)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            plan_broker_configs(&image, &[set("log.dirs", "/x")], true)
                .unwrap_err()
                .code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            plan_broker_configs(&image, &[set("log.retention.ms", "x")], true)
                .unwrap_err()
                .code,
            ErrorCode::InvalidConfig
        );
    }
}
