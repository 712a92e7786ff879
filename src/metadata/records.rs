//! Metadata records as stored in `__cluster_metadata`: Kafka's MetadataRecordSerde framing
//! (unsigned varint frame version 1, record type = the schema's apiKey, record version, then the
//! record in its flexible encoding), one record per Kafka record in a RecordBatch v2.

use bytes::{Buf, Bytes};

use crate::protocol::generated::metadata::{
    config_record::ConfigRecord, partition_record::PartitionRecord,
    producer_ids_record::ProducerIdsRecord, remove_topic_record::RemoveTopicRecord,
    topic_record::TopicRecord,
};
use crate::protocol::{Encoder, Message, Uuid};

const FRAME_VERSION: u32 = 1;
const TOPIC_RECORD: u32 = 2;
const PARTITION_RECORD: u32 = 3;
const CONFIG_RECORD: u32 = 4;
const REMOVE_TOPIC_RECORD: u32 = 9;
const PRODUCER_IDS_RECORD: u32 = 15;

/// The subset of Kafka's metadata records a single-node Weir writes.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataRecord {
    Topic {
        name: String,
        id: Uuid,
    },
    Partition {
        topic_id: Uuid,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        replicas: Vec<i32>,
    },
    Config {
        resource_type: i8,
        resource_name: String,
        name: String,
        value: Option<String>,
    },
    RemoveTopic {
        topic_id: Uuid,
    },
    ProducerIds {
        next_producer_id: i64,
    },
}

#[derive(Debug)]
pub struct RecordDecodeError(pub String);

impl std::fmt::Display for RecordDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn put_unsigned_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_unsigned_varint(buf: &mut Bytes) -> Result<u32, RecordDecodeError> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        if !buf.has_remaining() {
            return Err(RecordDecodeError("truncated varint".into()));
        }
        let byte = buf.get_u8();
        value |= ((byte & 0x7f) as u32) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(RecordDecodeError("varint longer than 5 bytes".into()))
}

fn frame<M: Message>(record_type: u32, version: i16, message: &M) -> Vec<u8> {
    let mut out = Vec::new();
    put_unsigned_varint(&mut out, FRAME_VERSION);
    put_unsigned_varint(&mut out, record_type);
    put_unsigned_varint(&mut out, version as u32);
    let mut encoder = Encoder::new();
    message
        .encode(&mut encoder, version)
        .expect("metadata record encodes at its own version");
    out.extend_from_slice(&encoder.into_single());
    out
}

impl MetadataRecord {
    /// The record's value bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            MetadataRecord::Topic { name, id } => frame(
                TOPIC_RECORD,
                0,
                &TopicRecord {
                    name: name.clone(),
                    topic_id: *id,
                    ..Default::default()
                },
            ),
            MetadataRecord::Partition {
                topic_id,
                partition,
                leader,
                leader_epoch,
                replicas,
            } => frame(
                PARTITION_RECORD,
                0,
                &PartitionRecord {
                    partition_id: *partition,
                    topic_id: *topic_id,
                    replicas: replicas.clone(),
                    isr: replicas.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: 0,
                    ..Default::default()
                },
            ),
            MetadataRecord::Config {
                resource_type,
                resource_name,
                name,
                value,
            } => frame(
                CONFIG_RECORD,
                0,
                &ConfigRecord {
                    resource_type: *resource_type,
                    resource_name: resource_name.clone(),
                    name: name.clone(),
                    value: value.clone(),
                    ..Default::default()
                },
            ),
            MetadataRecord::RemoveTopic { topic_id } => frame(
                REMOVE_TOPIC_RECORD,
                0,
                &RemoveTopicRecord {
                    topic_id: *topic_id,
                    ..Default::default()
                },
            ),
            MetadataRecord::ProducerIds { next_producer_id } => frame(
                PRODUCER_IDS_RECORD,
                0,
                &ProducerIdsRecord {
                    broker_id: 0,
                    broker_epoch: 0,
                    next_producer_id: *next_producer_id,
                    ..Default::default()
                },
            ),
        }
    }

    /// Parses a record value. Unknown record types are `Ok(None)`: Kafka's other metadata records
    /// (features, brokers, …) may appear once the cluster writes them and are skipped here.
    pub fn decode(value: &Bytes) -> Result<Option<MetadataRecord>, RecordDecodeError> {
        let mut buf = value.clone();
        let frame_version = get_unsigned_varint(&mut buf)?;
        if frame_version != FRAME_VERSION {
            return Err(RecordDecodeError(format!(
                "unknown metadata frame version {frame_version}"
            )));
        }
        let record_type = get_unsigned_varint(&mut buf)?;
        let version = get_unsigned_varint(&mut buf)? as i16;
        let bad = |e: crate::protocol::DecodeError| {
            RecordDecodeError(format!("record type {record_type}: {e:?}"))
        };
        let record = match record_type {
            TOPIC_RECORD => {
                let r = TopicRecord::decode(&mut buf, version).map_err(bad)?;
                MetadataRecord::Topic {
                    name: r.name,
                    id: r.topic_id,
                }
            }
            PARTITION_RECORD => {
                let r = PartitionRecord::decode(&mut buf, version).map_err(bad)?;
                MetadataRecord::Partition {
                    topic_id: r.topic_id,
                    partition: r.partition_id,
                    leader: r.leader,
                    leader_epoch: r.leader_epoch,
                    replicas: r.replicas,
                }
            }
            CONFIG_RECORD => {
                let r = ConfigRecord::decode(&mut buf, version).map_err(bad)?;
                MetadataRecord::Config {
                    resource_type: r.resource_type,
                    resource_name: r.resource_name,
                    name: r.name,
                    value: r.value,
                }
            }
            REMOVE_TOPIC_RECORD => {
                let r = RemoveTopicRecord::decode(&mut buf, version).map_err(bad)?;
                MetadataRecord::RemoveTopic {
                    topic_id: r.topic_id,
                }
            }
            PRODUCER_IDS_RECORD => {
                let r = ProducerIdsRecord::decode(&mut buf, version).map_err(bad)?;
                MetadataRecord::ProducerIds {
                    next_producer_id: r.next_producer_id,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_round_trips_through_kafka_framing() {
        let id = super::super::random_uuid();
        let records = [
            MetadataRecord::Topic {
                name: "orders".into(),
                id,
            },
            MetadataRecord::Partition {
                topic_id: id,
                partition: 3,
                leader: 1,
                leader_epoch: 0,
                replicas: vec![1],
            },
            MetadataRecord::Config {
                resource_type: super::super::RESOURCE_TOPIC,
                resource_name: "orders".into(),
                name: "retention.ms".into(),
                value: None,
            },
            MetadataRecord::RemoveTopic { topic_id: id },
            MetadataRecord::ProducerIds {
                next_producer_id: 5000,
            },
        ];
        for record in records {
            let bytes = Bytes::from(record.encode());
            assert_eq!(bytes[0], 1, "frame version");
            assert_eq!(MetadataRecord::decode(&bytes).unwrap(), Some(record));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for garbage in [
            &b""[..],
            &b"\x01"[..],
            &b"\x01\x02"[..],
            &b"\x01\x02\x00\xff\xff"[..],
            &b"\x07\x02\x00"[..],
        ] {
            assert!(MetadataRecord::decode(&Bytes::copy_from_slice(garbage)).is_err());
        }
        assert_eq!(
            MetadataRecord::decode(&Bytes::from_static(b"\x01\x63\x00")).unwrap(),
            None
        );
    }
}
