//! `weir bench groups`: the group coordinator under a group of many members, driven over the
//! Kafka protocol by lean classic-protocol members (one thread and one connection each), so the
//! figures are the coordinator's rather than a client library's timers:
//!
//! 1. **cold start**: N-1 members join an empty group at once; time from the first JoinGroup to
//!    the last SyncGroup answer (includes the broker's `group.initial.rebalance.delay.ms`);
//! 2. **one more member**: while the N-1 heartbeat every `--heartbeat-interval`, member N joins;
//!    time from its first JoinGroup until all N members hold their assignment of the new
//!    generation (the members learn of the rebalance from a heartbeat, so up to one interval of
//!    it is the members' own);
//! 3. **commits**: every member commits its partition's offset in a loop for `--commit-duration`
//!    (each commit is durable before it is answered, like acks=all); commits per second and the
//!    commit latency percentiles.
//!
//! Members leave at the end (LeaveGroup), and the group is deleted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::broker_process::{SpawnOptions, SpawnedBroker};
use super::report::{latency_histogram, LatencySummary};
use super::units::parse_duration;
use super::BrokerArgs;
use crate::client::admin::NewTopic;
use crate::client::connection::Connection;
use crate::client::{Client, ClientConfig, ClientError};
use crate::protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use crate::protocol::messages::join_group_request::JoinGroupRequestProtocol;
use crate::protocol::messages::leave_group_request::MemberIdentity;
use crate::protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use crate::protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use crate::protocol::messages::*;
use crate::protocol::{ApiKey, ErrorCode};

#[derive(clap::Args, Debug, Clone)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Members of the group at the end of the join phases.
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// How often the members heartbeat (librdkafka's default is 3 s).
    #[arg(long, value_parser = parse_duration, default_value = "100ms")]
    pub heartbeat_interval: Duration,
    /// How long every member commits offsets in a loop.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub commit_duration: Duration,
    /// Parent of a spawned broker's data directory.
    #[arg(long, default_value = "./weir-bench-data")]
    pub data_dir: std::path::PathBuf,
    /// Write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupsReport {
    pub members: usize,
    pub heartbeat_interval_ms: u64,
    /// N-1 members joining an empty group: first JoinGroup → last SyncGroup answer.
    pub cold_start_ms: f64,
    /// Member N joining the stable group of N-1: its first JoinGroup → all N synced.
    pub join_to_stable_ms: f64,
    pub commits: u64,
    pub commits_per_s: f64,
    pub commit_latency: Option<LatencySummary>,
}

const TOPIC: &str = "weir-bench-groups";
const GROUP: &str = "weir-bench-group";
const SESSION_TIMEOUT_MS: i32 = 30_000;

pub fn run(args: GroupsArgs) -> Result<(), String> {
    if args.members < 2 {
        return Err("--members must be at least 2".into());
    }
    let spawned = if args.broker.spawn_broker {
        std::fs::create_dir_all(&args.data_dir)
            .map_err(|e| format!("creating {}: {e}", args.data_dir.display()))?;
        let binary = match &args.broker.broker_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe().map_err(|e| format!("finding weir: {e}"))?,
        };
        let broker = SpawnedBroker::start(&SpawnOptions {
            binary,
            parent_dir: args.data_dir.clone(),
            shards: args.broker.smp,
            settings: args.broker.broker_settings.clone(),
            keep_data: args.broker.keep_broker_data,
        })?;
        println!("spawned broker pid {}: {}", broker.pid, broker.command_line);
        Some(broker)
    } else {
        None
    };
    let bootstrap = spawned
        .as_ref()
        .map_or_else(|| args.broker.bootstrap.clone(), |b| b.bootstrap.clone());
    let result = measure(&args, &bootstrap);
    if let Some(broker) = spawned {
        broker.stop()?;
    }
    let report = result?;
    println!("{}", render(&report));
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

pub fn render(r: &GroupsReport) -> String {
    let latency = r.commit_latency.as_ref().map_or_else(
        || "no commits".to_string(),
        |l| {
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
                l.p50_us / 1e3,
                l.p99_us / 1e3,
                l.p999_us / 1e3
            )
        },
    );
    format!(
        "groups: {} members, heartbeat every {} ms\n  cold start of {} members: {:.1} ms\n  \
         member {} joins a stable group: stable again after {:.1} ms\n  offset commits: {:.0}/s \
         ({} in total), latency {latency}",
        r.members,
        r.heartbeat_interval_ms,
        r.members - 1,
        r.cold_start_ms,
        r.members,
        r.join_to_stable_ms,
        r.commits_per_s,
        r.commits
    )
}

fn err(e: ClientError) -> String {
    e.to_string()
}

/// A response's error code (UNKNOWN_SERVER_ERROR for a code Kafka does not define).
fn code(code: i16) -> ErrorCode {
    ErrorCode::from_code(code).unwrap_or(ErrorCode::UnknownServerError)
}

fn measure(args: &GroupsArgs, bootstrap: &str) -> Result<GroupsReport, String> {
    let n = args.members;
    let mut admin = Client::connect(bootstrap).map_err(err)?;
    let _ = admin.delete_group(GROUP);
    let _ = admin.delete_topic(TOPIC);
    admin
        .create_topic(
            &NewTopic {
                name: TOPIC.into(),
                partitions: Some(n as i32),
                replication_factor: None,
                configs: Vec::new(),
            },
            false,
        )
        .map_err(err)?;
    let node = admin.find_group_coordinator(GROUP).map_err(err)?;
    let address = admin.broker(node).map_err(err)?.address().to_string();
    let config = ClientConfig {
        client_id: "weir-bench-groups".into(),
        request_timeout: Duration::from_secs(60),
        ..ClientConfig::default()
    };
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        members.push(Member::new(
            Connection::open(&address, &config).map_err(err)?,
        )?);
    }
    println!("{n} members connected to the coordinator (node {node} at {address})");

    // 1. Cold start of N-1 members.
    let (first, rest) = members.split_at_mut(n - 1);
    let newcomer = &mut rest[0];
    let started = Instant::now();
    let synced_at = std::thread::scope(|scope| {
        let barrier = Arc::new(Barrier::new(first.len()));
        let handles: Vec<_> = first
            .iter_mut()
            .map(|member| {
                let barrier = barrier.clone();
                scope.spawn(move || {
                    barrier.wait();
                    member.join_and_sync()?;
                    Ok::<Instant, String>(Instant::now())
                })
            })
            .collect();
        collect(handles)
    })?;
    let cold_start = synced_at
        .iter()
        .max()
        .expect("members")
        .duration_since(started);
    println!(
        "cold start: {} members stable at generation {} after {:.1} ms",
        n - 1,
        first[0].generation,
        cold_start.as_secs_f64() * 1e3
    );

    // 2. Member N joins while the others heartbeat.
    let generation_before = first[0].generation;
    let stop = AtomicBool::new(false);
    let synced = AtomicUsize::new(0);
    let heartbeat = args.heartbeat_interval;
    let (join_started, all_synced) = std::thread::scope(|scope| {
        let handles: Vec<_> = first
            .iter_mut()
            .map(|member| {
                let (stop, synced) = (&stop, &synced);
                scope.spawn(move || {
                    member.heartbeat_until(stop, heartbeat, generation_before, synced)?;
                    Ok::<Instant, String>(Instant::now())
                })
            })
            .collect();
        let join_started = Instant::now();
        let joined = newcomer.join_and_sync().map(|()| {
            synced.fetch_add(1, Ordering::SeqCst);
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while joined.is_ok() && synced.load(Ordering::SeqCst) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        let all_synced = Instant::now();
        stop.store(true, Ordering::SeqCst);
        let members = collect(handles);
        joined?;
        members?;
        if synced.load(Ordering::SeqCst) < n {
            return Err(format!(
                "only {} of {n} members synced within 120 s",
                synced.load(Ordering::SeqCst)
            ));
        }
        Ok((join_started, all_synced))
    })?;
    let join_to_stable = all_synced.duration_since(join_started);
    println!(
        "member {n} joined: {n} members stable at generation {} after {:.1} ms",
        newcomer.generation,
        join_to_stable.as_secs_f64() * 1e3
    );

    // 3. Commits.
    let until = Instant::now() + args.commit_duration;
    let commit_started = Instant::now();
    let histograms = std::thread::scope(|scope| {
        let handles: Vec<_> = members
            .iter_mut()
            .map(|member| scope.spawn(move || member.commit_until(until, heartbeat)))
            .collect();
        collect(handles)
    })?;
    let elapsed = commit_started.elapsed().as_secs_f64();
    let mut latency = latency_histogram();
    for h in &histograms {
        latency.add(h).map_err(|e| e.to_string())?;
    }
    let commits = latency.len();
    for member in &mut members {
        member.leave()?;
    }
    let _ = admin.delete_group(GROUP);
    let _ = admin.delete_topic(TOPIC);
    Ok(GroupsReport {
        members: n,
        heartbeat_interval_ms: heartbeat.as_millis() as u64,
        cold_start_ms: cold_start.as_secs_f64() * 1e3,
        join_to_stable_ms: join_to_stable.as_secs_f64() * 1e3,
        commits,
        commits_per_s: commits as f64 / elapsed,
        commit_latency: LatencySummary::from_histogram(&latency),
    })
}

fn collect<T>(
    handles: Vec<std::thread::ScopedJoinHandle<'_, Result<T, String>>>,
) -> Result<Vec<T>, String> {
    let mut out = Vec::with_capacity(handles.len());
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(value)) => out.push(value),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert_with(|| "a member thread panicked".to_string());
            }
        }
    }
    first_error.map_or(Ok(out), Err)
}

/// One classic-protocol member on its own connection to the coordinator.
struct Member {
    connection: Connection,
    member_id: String,
    generation: i32,
    /// Partitions of [`TOPIC`] assigned in the current generation.
    partitions: Vec<i32>,
    versions: [i16; 5],
    committed: i64,
}

impl Member {
    fn new(connection: Connection) -> Result<Member, String> {
        let version = |key| connection.version(key).map_err(err);
        let versions = [
            version(ApiKey::JoinGroup)?,
            version(ApiKey::SyncGroup)?,
            version(ApiKey::Heartbeat)?,
            version(ApiKey::OffsetCommit)?,
            version(ApiKey::LeaveGroup)?,
        ];
        Ok(Member {
            connection,
            member_id: String::new(),
            generation: -1,
            partitions: Vec::new(),
            versions,
            committed: 0,
        })
    }

    /// JoinGroup (again with the member id on MEMBER_ID_REQUIRED), then SyncGroup; the leader
    /// assigns the partitions round robin.
    fn join_and_sync(&mut self) -> Result<(), String> {
        loop {
            let request = JoinGroupRequest {
                group_id: GROUP.into(),
                session_timeout_ms: SESSION_TIMEOUT_MS,
                rebalance_timeout_ms: SESSION_TIMEOUT_MS,
                member_id: self.member_id.clone(),
                protocol_type: "consumer".into(),
                protocols: vec![JoinGroupRequestProtocol {
                    name: "range".into(),
                    metadata: subscription(),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let joined: JoinGroupResponse = self
                .connection
                .request(
                    ApiKey::JoinGroup,
                    self.versions[0],
                    &request,
                    Duration::ZERO,
                )
                .map_err(err)?;
            match code(joined.error_code) {
                ErrorCode::None => {}
                ErrorCode::MemberIdRequired => {
                    self.member_id = joined.member_id;
                    continue;
                }
                ErrorCode::RebalanceInProgress => continue,
                other => return Err(format!("JoinGroup: {other}")),
            }
            self.member_id = joined.member_id.clone();
            self.generation = joined.generation_id;
            let assignments = if joined.leader == joined.member_id {
                assign(joined.members.iter().map(|m| m.member_id.clone()).collect())
            } else {
                Vec::new()
            };
            let request = SyncGroupRequest {
                group_id: GROUP.into(),
                generation_id: self.generation,
                member_id: self.member_id.clone(),
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignments,
                ..Default::default()
            };
            let synced: SyncGroupResponse = self
                .connection
                .request(
                    ApiKey::SyncGroup,
                    self.versions[1],
                    &request,
                    Duration::ZERO,
                )
                .map_err(err)?;
            match code(synced.error_code) {
                ErrorCode::None => {
                    self.partitions = crate::client::groups::decode_assignment(&synced.assignment)?
                        .into_iter()
                        .flat_map(|(_, partitions)| partitions)
                        .collect();
                    return Ok(());
                }
                ErrorCode::RebalanceInProgress => continue,
                other => return Err(format!("SyncGroup: {other}")),
            }
        }
    }

    fn heartbeat(&mut self) -> Result<ErrorCode, String> {
        let beat: HeartbeatResponse = self
            .connection
            .request(
                ApiKey::Heartbeat,
                self.versions[2],
                &HeartbeatRequest {
                    group_id: GROUP.into(),
                    generation_id: self.generation,
                    member_id: self.member_id.clone(),
                    ..Default::default()
                },
                Duration::ZERO,
            )
            .map_err(err)?;
        Ok(code(beat.error_code))
    }

    /// Heartbeats every `interval` until `stop`; rejoins when a rebalance starts and counts
    /// itself in `synced` once it holds an assignment newer than `generation`.
    fn heartbeat_until(
        &mut self,
        stop: &AtomicBool,
        interval: Duration,
        generation: i32,
        synced: &AtomicUsize,
    ) -> Result<(), String> {
        let mut counted = false;
        while !stop.load(Ordering::SeqCst) {
            match self.heartbeat()? {
                ErrorCode::None => {}
                ErrorCode::RebalanceInProgress => {
                    self.join_and_sync()?;
                    if self.generation > generation && !counted {
                        counted = true;
                        synced.fetch_add(1, Ordering::SeqCst);
                    }
                    continue;
                }
                other => return Err(format!("Heartbeat: {other}")),
            }
            std::thread::sleep(interval);
        }
        Ok(())
    }

    /// Commits the next offset of each assigned partition in a loop until `until`, heartbeating
    /// every `interval` in between. Returns the commit latencies (µs).
    fn commit_until(
        &mut self,
        until: Instant,
        interval: Duration,
    ) -> Result<hdrhistogram::Histogram<u64>, String> {
        let mut latency = latency_histogram();
        let mut next_beat = Instant::now() + interval;
        while Instant::now() < until {
            if Instant::now() >= next_beat {
                match self.heartbeat()? {
                    ErrorCode::None => {}
                    other => return Err(format!("Heartbeat during commits: {other}")),
                }
                next_beat = Instant::now() + interval;
            }
            self.committed += 1;
            let request = OffsetCommitRequest {
                group_id: GROUP.into(),
                generation_id_or_member_epoch: self.generation,
                member_id: self.member_id.clone(),
                retention_time_ms: -1,
                topics: vec![OffsetCommitRequestTopic {
                    name: TOPIC.into(),
                    partitions: self
                        .partitions
                        .iter()
                        .map(|&partition_index| OffsetCommitRequestPartition {
                            partition_index,
                            committed_offset: self.committed,
                            committed_leader_epoch: -1,
                            commit_timestamp: -1,
                            committed_metadata: Some(String::new()),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let sent = Instant::now();
            let response: OffsetCommitResponse = self
                .connection
                .request(
                    ApiKey::OffsetCommit,
                    self.versions[3],
                    &request,
                    Duration::ZERO,
                )
                .map_err(err)?;
            let micros = sent.elapsed().as_micros() as u64;
            for topic in &response.topics {
                for p in &topic.partitions {
                    if p.error_code != 0 {
                        return Err(format!(
                            "OffsetCommit partition {}: {}",
                            p.partition_index,
                            code(p.error_code)
                        ));
                    }
                }
            }
            latency.saturating_record(micros.max(1));
        }
        Ok(latency)
    }

    fn leave(&mut self) -> Result<(), String> {
        let version = self.versions[4];
        let request = if version >= 3 {
            LeaveGroupRequest {
                group_id: GROUP.into(),
                members: vec![MemberIdentity {
                    member_id: self.member_id.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }
        } else {
            LeaveGroupRequest {
                group_id: GROUP.into(),
                member_id: self.member_id.clone(),
                ..Default::default()
            }
        };
        let _: LeaveGroupResponse = self
            .connection
            .request(ApiKey::LeaveGroup, version, &request, Duration::ZERO)
            .map_err(err)?;
        Ok(())
    }
}

/// A consumer-protocol subscription to [`TOPIC`] (version 0).
fn subscription() -> Bytes {
    let body = crate::protocol::wire::encode_to_bytes(
        &ConsumerProtocolSubscription {
            topics: vec![TOPIC.to_string()],
            ..Default::default()
        },
        0,
    )
    .expect("a subscription encodes");
    let mut out = BytesMut::new();
    out.put_i16(0);
    out.put_slice(&body);
    out.freeze()
}

/// The leader's assignment: the topic's partitions (one per member of the final group) round
/// robin over `members`.
fn assign(mut members: Vec<String>) -> Vec<SyncGroupRequestAssignment> {
    members.sort();
    let count = members.len();
    members
        .iter()
        .enumerate()
        .map(|(i, member)| {
            let partitions: Vec<i32> = (0..count)
                .filter(|p| p % count == i)
                .map(|p| p as i32)
                .collect();
            let body = crate::protocol::wire::encode_to_bytes(
                &ConsumerProtocolAssignment {
                    assigned_partitions: vec![AssignedTopic {
                        topic: TOPIC.to_string(),
                        partitions,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                0,
            )
            .expect("an assignment encodes");
            let mut bytes = BytesMut::new();
            bytes.put_i16(0);
            bytes.put_slice(&body);
            SyncGroupRequestAssignment {
                member_id: member.clone(),
                assignment: bytes.freeze(),
                ..Default::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_gives_every_member_its_partitions_and_each_partition_once() {
        let members: Vec<String> = (0..7).map(|i| format!("m-{i}")).collect();
        let assignments = assign(members.clone());
        let mut seen = Vec::new();
        for a in &assignments {
            let decoded = crate::client::groups::decode_assignment(&a.assignment).unwrap();
            assert_eq!(decoded.len(), 1);
            assert_eq!(decoded[0].0, TOPIC);
            assert_eq!(decoded[0].1.len(), 1, "one partition per member of seven");
            seen.extend(decoded[0].1.iter().copied());
        }
        seen.sort();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
    }
}
