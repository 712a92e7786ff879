//! The classic group protocol as a pure state machine: Kafka's `GroupCoordinator` /
//! `ClassicGroup` rules (Empty → PreparingRebalance → CompletingRebalance → Stable, Dead), with
//! no I/O and no clock of its own.
//!
//! Every operation takes `now_ms` and an [`Effects`] to fill: the replies to hand to waiting
//! requests (a JoinGroup or SyncGroup waits here, as a `W` — a oneshot sender in the broker, a
//! plain token in tests) and the `GroupMetadataValue` records to persist. Timeouts (session,
//! rebalance, initial rebalance delay, pending members, pending syncs) fire from [`ClassicGroup::tick`].
//! The caller owns durability: it appends the records and reports back with
//! [`ClassicGroup::persisted`], which is when the leader's assignment takes effect.
//!
//! Invariants (checked by the property tests): every member of a Stable group holds an
//! assignment of the current generation; the generation grows by one per completed rebalance;
//! a Dead group has no members; at most one member per `group.instance.id`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::protocol::error::ErrorCode;
use crate::protocol::group_coordinator::group_metadata_value::MemberMetadata;
use crate::protocol::group_coordinator::GroupMetadataValue;

/// Kafka's `ClassicGroupState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    pub const ALL: [GroupState; 5] = [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
    ];
}

/// The broker settings the protocol depends on.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub initial_rebalance_delay_ms: i32,
    pub max_size: usize,
    /// How long a new member may wait in its first JoinGroup (Kafka's fixed 5 minutes).
    pub new_member_join_timeout_ms: i64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            new_member_join_timeout_ms: 300_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Debug)]
pub struct Member<W> {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    join_waiter: Option<W>,
    sync_waiter: Option<W>,
    is_new: bool,
    heartbeat_deadline_ms: i64,
}

impl<W> Member<W> {
    pub fn awaiting_join(&self) -> bool {
        self.join_waiter.is_some()
    }
    pub fn awaiting_sync(&self) -> bool {
        self.sync_waiter.is_some()
    }
    /// The member's metadata for `protocol` (empty if it does not support it).
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }
    fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }
    /// Kafka's `hasSatisfiedHeartbeat`: a member parked in a join or sync is alive, unless it is
    /// new (its first join has its own, longer timeout).
    fn survives_expiry(&self) -> bool {
        !self.is_new && (self.awaiting_join() || self.awaiting_sync())
    }
}

/// A committed offset (OffsetCommitValue).
#[derive(Clone, Debug, PartialEq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Set only by OffsetCommit v1's explicit retention.
    pub expire_timestamp_ms: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Clone, Debug, PartialEq)]
pub struct JoinResult {
    pub error: ErrorCode,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    pub fn error(member_id: &str, error: ErrorCode) -> JoinResult {
        JoinResult {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SyncResult {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ErrorCode) -> SyncResult {
        SyncResult {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum GroupReply {
    Join(JoinResult),
    Sync(SyncResult),
}

/// What to do once a GroupMetadataValue record is durable.
#[derive(Clone, Debug, PartialEq)]
pub enum AfterPersist {
    /// The leader's assignment of `generation`: hand it to the members, become Stable.
    Assignment {
        generation: i32,
        assignment: BTreeMap<String, Bytes>,
    },
    /// A static member replaced its old member id in a Stable group: answer its join.
    StaticRejoin {
        member_id: String,
        old_member_id: String,
        leader: String,
    },
    Nothing,
}

#[derive(Debug, PartialEq)]
pub struct Persist {
    pub value: GroupMetadataValue,
    pub after: AfterPersist,
}

/// Output of an operation: replies to waiting requests, records to write.
#[derive(Debug)]
pub struct Effects<W> {
    pub replies: Vec<(W, GroupReply)>,
    pub persist: Vec<Persist>,
}

impl<W> Default for Effects<W> {
    fn default() -> Self {
        Effects {
            replies: Vec::new(),
            persist: Vec::new(),
        }
    }
}

impl<W> Effects<W> {
    fn join(&mut self, waiter: W, result: JoinResult) {
        self.replies.push((waiter, GroupReply::Join(result)));
    }
    fn sync(&mut self, waiter: W, result: SyncResult) {
        self.replies.push((waiter, GroupReply::Sync(result)));
    }
}

/// A JoinGroup as the state machine sees it.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: an unknown member first gets its id in MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// Counters for metrics.
#[derive(Clone, Debug, Default)]
pub struct RebalanceStats {
    pub rebalances_total: u64,
    pub started_ms: Option<i64>,
    pub last_duration_ms: i64,
    pub duration_ms_total: i64,
}

#[derive(Debug)]
pub struct ClassicGroup<W> {
    pub id: String,
    pub state: GroupState,
    pub state_timestamp_ms: i64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member<W>>,
    /// group.instance.id → member id.
    pub static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they expire.
    pending_members: BTreeMap<String, i64>,
    /// Members of the current generation that have not sent their SyncGroup yet.
    pending_sync: BTreeSet<String>,
    sync_deadline_ms: Option<i64>,
    join_deadline_ms: Option<i64>,
    /// (deadline, rebalance time remaining after it) of Kafka's InitialDelayedJoin.
    initial_delay: Option<(i64, i64)>,
    new_member_added: bool,
    /// The leader's assignment waits for its record to be durable.
    assignment_in_flight: bool,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    pub stats: RebalanceStats,
}

impl<W> ClassicGroup<W> {
    pub fn new(id: String, now_ms: i64) -> ClassicGroup<W> {
        ClassicGroup {
            id,
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            sync_deadline_ms: None,
            join_deadline_ms: None,
            initial_delay: None,
            new_member_added: false,
            assignment_in_flight: false,
            offsets: BTreeMap::new(),
            stats: RebalanceStats::default(),
        }
    }

    fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    pub fn pending_member_count(&self) -> usize {
        self.pending_members.len()
    }

    /// The largest rebalance timeout of the members (Kafka's group rebalance timeout).
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0)
    }

    fn awaiting_join_count(&self) -> usize {
        self.members.values().filter(|m| m.awaiting_join()).count()
    }

    fn all_members_joined(&self) -> bool {
        self.members.len() == self.awaiting_join_count() && self.pending_members.is_empty()
    }

    /// Kafka's `supportsProtocols`.
    fn supports(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.is(GroupState::Empty) {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|p| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|q| q.name == p.name))
            })
    }

    /// The protocol every member supports with the most first-choice votes.
    pub fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|q| q.name == *name))
            })
            .collect();
        let mut best: Option<(&str, usize)> = None;
        for candidate in &candidates {
            let votes = self
                .members
                .values()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .find(|p| candidates.contains(&p.name.as_str()))
                        .is_some_and(|p| p.name == *candidate)
                })
                .count();
            if best.is_none_or(|(_, most)| votes > most) {
                best = Some((candidate, votes));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    /// Kafka's `isStaticMemberFenced`: the instance id belongs to another member id.
    fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|current| current != member_id)
    }

    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Option<ErrorCode> {
        if self.is_fenced(instance_id, member_id) {
            Some(ErrorCode::FencedInstanceId)
        } else if !self.members.contains_key(member_id) {
            Some(ErrorCode::UnknownMemberId)
        } else {
            None
        }
    }

    fn can_rebalance(&self) -> bool {
        matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        )
    }

    /// Kafka's `acceptJoiningMember` (group.max.size).
    fn accepts_member(&self, member_id: &str, config: &GroupConfig) -> bool {
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                self.members
                    .get(member_id)
                    .is_some_and(|m| m.awaiting_join())
                    || self.awaiting_join_count() < config.max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < config.max_size
            }
        }
    }

    fn schedule_heartbeat(member: &mut Member<W>, now_ms: i64, config: &GroupConfig) {
        member.heartbeat_deadline_ms = if member.is_new {
            now_ms + config.new_member_join_timeout_ms
        } else {
            now_ms + member.session_timeout_ms as i64
        };
    }

    /// JoinGroup. The reply (now or after the rebalance) goes to `waiter` through `fx`.
    pub fn join(
        &mut self,
        request: JoinRequest,
        waiter: W,
        now_ms: i64,
        config: &GroupConfig,
        new_member_id: impl FnOnce(&str) -> String,
        fx: &mut Effects<W>,
    ) {
        let member_id = request.member_id.clone();
        if request.session_timeout_ms < config.min_session_timeout_ms
            || request.session_timeout_ms > config.max_session_timeout_ms
        {
            return fx.join(
                waiter,
                JoinResult::error(&member_id, ErrorCode::InvalidSessionTimeout),
            );
        }
        if self.is(GroupState::Dead) {
            return fx.join(
                waiter,
                JoinResult::error(&member_id, ErrorCode::CoordinatorNotAvailable),
            );
        }
        if !self.accepts_member(&member_id, config) {
            return fx.join(
                waiter,
                JoinResult::error(&member_id, ErrorCode::GroupMaxSizeReached),
            );
        }
        if !self.supports(&request.protocol_type, &request.protocols) {
            return fx.join(
                waiter,
                JoinResult::error(&member_id, ErrorCode::InconsistentGroupProtocol),
            );
        }
        if member_id.is_empty() {
            self.join_new_member(request, waiter, now_ms, config, new_member_id, fx)
        } else {
            self.join_known_member(request, waiter, now_ms, config, fx)
        }
    }

    fn join_new_member(
        &mut self,
        request: JoinRequest,
        waiter: W,
        now_ms: i64,
        config: &GroupConfig,
        new_member_id: impl FnOnce(&str) -> String,
        fx: &mut Effects<W>,
    ) {
        let member_id = new_member_id(&request.client_id);
        if let Some(instance_id) = request.instance_id.clone() {
            if let Some(old_member_id) = self.static_members.get(&instance_id).cloned() {
                return self.replace_static_member(
                    request,
                    old_member_id,
                    member_id,
                    waiter,
                    now_ms,
                    config,
                    fx,
                );
            }
        } else if request.require_known_member_id {
            self.pending_members.insert(
                member_id.clone(),
                now_ms + request.session_timeout_ms as i64,
            );
            return fx.join(
                waiter,
                JoinResult::error(&member_id, ErrorCode::MemberIdRequired),
            );
        }
        self.add_member_and_rebalance(request, member_id, waiter, now_ms, config, fx);
    }

    fn join_known_member(
        &mut self,
        request: JoinRequest,
        waiter: W,
        now_ms: i64,
        config: &GroupConfig,
        fx: &mut Effects<W>,
    ) {
        let member_id = request.member_id.clone();
        if self.pending_members.remove(&member_id).is_some() {
            return self.add_member_and_rebalance(request, member_id, waiter, now_ms, config, fx);
        }
        if let Some(error) = self.validate_member(&member_id, request.instance_id.as_deref()) {
            return fx.join(waiter, JoinResult::error(&member_id, error));
        }
        let member = self.members.get(&member_id).expect("validated member");
        let unchanged = member.matches(&request.protocols);
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(request, waiter, now_ms, config, fx)
            }
            GroupState::CompletingRebalance if unchanged => {
                // The join response was lost: send it again.
                let result = self.join_result_for(&member_id);
                fx.join(waiter, result);
            }
            GroupState::Stable if unchanged && !is_leader => {
                let result = self.join_result_for(&member_id);
                fx.join(waiter, result);
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(request, waiter, now_ms, config, fx)
            }
            GroupState::Empty | GroupState::Dead => fx.join(
                waiter,
                JoinResult::error(&member_id, ErrorCode::UnknownMemberId),
            ),
        }
    }

    fn join_result_for(&self, member_id: &str) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResult {
            error: ErrorCode::None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.current_member_metadata()
            } else {
                Vec::new()
            },
        }
    }

    fn current_member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    }

    fn add_member_and_rebalance(
        &mut self,
        request: JoinRequest,
        member_id: String,
        waiter: W,
        now_ms: i64,
        config: &GroupConfig,
        fx: &mut Effects<W>,
    ) {
        let mut member = Member {
            id: member_id.clone(),
            instance_id: request.instance_id.clone(),
            client_id: request.client_id,
            client_host: request.client_host,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            session_timeout_ms: request.session_timeout_ms,
            protocol_type: request.protocol_type.clone(),
            protocols: request.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(waiter),
            sync_waiter: None,
            is_new: true,
            heartbeat_deadline_ms: 0,
        };
        Self::schedule_heartbeat(&mut member, now_ms, config);
        if self.is(GroupState::PreparingRebalance) && self.generation == 0 {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type);
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        if let Some(instance_id) = request.instance_id {
            self.static_members.insert(instance_id, member_id.clone());
        }
        self.members.insert(member_id, member);
        self.maybe_prepare_rebalance(now_ms, config, fx);
        self.try_complete_join(now_ms, fx);
    }

    fn update_member_and_rebalance(
        &mut self,
        request: JoinRequest,
        waiter: W,
        now_ms: i64,
        config: &GroupConfig,
        fx: &mut Effects<W>,
    ) {
        let member = self
            .members
            .get_mut(&request.member_id)
            .expect("known member");
        member.protocols = request.protocols;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.session_timeout_ms = request.session_timeout_ms;
        if let Some(previous) = member.join_waiter.replace(waiter) {
            // A second JoinGroup while the first waits: the first is answered as Kafka does.
            fx.join(
                previous,
                JoinResult::error(&request.member_id, ErrorCode::RebalanceInProgress),
            );
        }
        self.maybe_prepare_rebalance(now_ms, config, fx);
        self.try_complete_join(now_ms, fx);
    }

    #[allow(clippy::too_many_arguments)]
    fn replace_static_member(
        &mut self,
        request: JoinRequest,
        old_member_id: String,
        new_member_id: String,
        waiter: W,
        now_ms: i64,
        config: &GroupConfig,
        fx: &mut Effects<W>,
    ) {
        let current_leader = self.leader.clone().unwrap_or_default();
        let mut member = self.members.remove(&old_member_id).expect("static member");
        if let Some(old_waiter) = member.join_waiter.take() {
            fx.join(
                old_waiter,
                JoinResult::error(&old_member_id, ErrorCode::FencedInstanceId),
            );
        }
        if let Some(old_waiter) = member.sync_waiter.take() {
            fx.sync(old_waiter, SyncResult::error(ErrorCode::FencedInstanceId));
        }
        member.protocols = request.protocols.clone();
        member.id = new_member_id.clone();
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.session_timeout_ms = request.session_timeout_ms;
        Self::schedule_heartbeat(&mut member, now_ms, config);
        if self.leader.as_deref() == Some(old_member_id.as_str()) {
            self.leader = Some(new_member_id.clone());
        }
        if self.pending_sync.remove(&old_member_id) {
            self.pending_sync.insert(new_member_id.clone());
        }
        self.static_members.insert(
            request.instance_id.clone().expect("static member"),
            new_member_id.clone(),
        );
        self.members.insert(new_member_id.clone(), member);
        match self.state {
            GroupState::Stable if self.protocol.as_deref() == self.select_protocol().as_deref() => {
                self.members
                    .get_mut(&new_member_id)
                    .expect("inserted")
                    .join_waiter = Some(waiter);
                let mut value = self.metadata_value(now_ms, None);
                value.leader = self.leader.clone();
                fx.persist.push(Persist {
                    value,
                    after: AfterPersist::StaticRejoin {
                        member_id: new_member_id,
                        old_member_id,
                        leader: current_leader,
                    },
                });
            }
            _ => {
                self.members
                    .get_mut(&new_member_id)
                    .expect("inserted")
                    .join_waiter = Some(waiter);
                self.maybe_prepare_rebalance(now_ms, config, fx);
                self.try_complete_join(now_ms, fx);
            }
        }
    }

    fn maybe_prepare_rebalance(&mut self, now_ms: i64, config: &GroupConfig, fx: &mut Effects<W>) {
        if self.can_rebalance() {
            self.prepare_rebalance(now_ms, config, fx);
        }
    }

    fn prepare_rebalance(&mut self, now_ms: i64, config: &GroupConfig, fx: &mut Effects<W>) {
        if self.is(GroupState::CompletingRebalance) {
            self.reset_and_propagate_error(ErrorCode::RebalanceInProgress, fx);
        }
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        let rebalance_timeout = self.rebalance_timeout_ms();
        if self.is(GroupState::Empty) {
            let delay = (config.initial_rebalance_delay_ms as i64).min(rebalance_timeout);
            self.initial_delay = Some((now_ms + delay, (rebalance_timeout - delay).max(0)));
            self.join_deadline_ms = None;
        } else {
            self.initial_delay = None;
            self.join_deadline_ms = Some(now_ms + rebalance_timeout);
        }
        self.stats.started_ms = Some(now_ms);
        self.transition(GroupState::PreparingRebalance, now_ms);
    }

    /// Answers every waiting SyncGroup with `error` and forgets the assignment.
    fn reset_and_propagate_error(&mut self, error: ErrorCode, fx: &mut Effects<W>) {
        self.assignment_in_flight = false;
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
            if let Some(waiter) = member.sync_waiter.take() {
                fx.sync(waiter, SyncResult::error(error));
            }
        }
    }

    fn try_complete_join(&mut self, now_ms: i64, fx: &mut Effects<W>) {
        if self.is(GroupState::PreparingRebalance)
            && self.initial_delay.is_none()
            && self.all_members_joined()
        {
            self.complete_join(now_ms, fx);
        }
    }

    /// Kafka's `onCompleteJoin`.
    fn complete_join(&mut self, now_ms: i64, fx: &mut Effects<W>) {
        self.join_deadline_ms = None;
        self.initial_delay = None;
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for member_id in missing {
            self.remove_member(&member_id, fx);
        }
        if self.is(GroupState::Dead) {
            return;
        }
        if !self.elect_joined_leader() && !self.members.is_empty() {
            // Nobody rejoined (only absent static members are left): wait another round.
            self.join_deadline_ms = Some(now_ms + self.rebalance_timeout_ms());
            return;
        }
        self.generation += 1;
        self.stats.rebalances_total += 1;
        if let Some(started) = self.stats.started_ms.take() {
            self.stats.last_duration_ms = now_ms - started;
            self.stats.duration_ms_total += now_ms - started;
        }
        if self.members.is_empty() {
            self.protocol = None;
            self.transition(GroupState::Empty, now_ms);
            fx.persist.push(Persist {
                value: self.metadata_value(now_ms, None),
                after: AfterPersist::Nothing,
            });
            return;
        }
        self.protocol = self.select_protocol();
        self.transition(GroupState::CompletingRebalance, now_ms);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in &ids {
            let result = self.join_result_for(member_id);
            let member = self.members.get_mut(member_id).expect("member");
            member.assignment = Bytes::new();
            member.is_new = false;
            member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms as i64;
            if let Some(waiter) = member.join_waiter.take() {
                fx.join(waiter, result);
            }
        }
        self.pending_sync = ids.into_iter().collect();
        self.sync_deadline_ms = Some(now_ms + self.rebalance_timeout_ms());
    }

    /// Kafka's `maybeElectNewJoinedLeader`.
    fn elect_joined_leader(&mut self) -> bool {
        let leader_joined = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.awaiting_join());
        if leader_joined {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join()) {
            Some(member) => {
                self.leader = Some(member.id.clone());
                true
            }
            None => false,
        }
    }

    /// Removes a member (leave, expiry, missed rebalance); its waiting requests get
    /// UNKNOWN_MEMBER_ID. Does not trigger a rebalance by itself.
    fn remove_member(&mut self, member_id: &str, fx: &mut Effects<W>) {
        let Some(mut member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(waiter) = member.join_waiter.take() {
            fx.join(waiter, JoinResult::error("", ErrorCode::UnknownMemberId));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            fx.sync(waiter, SyncResult::error(ErrorCode::UnknownMemberId));
        }
        if let Some(instance_id) = &member.instance_id {
            if self.static_members.get(instance_id).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance_id);
            }
        }
        self.pending_sync.remove(member_id);
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// Kafka's `removeMemberAndUpdateGroup`.
    fn remove_member_and_update(
        &mut self,
        member_id: &str,
        now_ms: i64,
        config: &GroupConfig,
        fx: &mut Effects<W>,
    ) {
        self.remove_member(member_id, fx);
        match self.state {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(now_ms, config, fx);
                // A group left with nobody completes at once (to Empty, generation + 1).
                self.try_complete_join(now_ms, fx);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, fx),
        }
    }

    /// SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        waiter: W,
        now_ms: i64,
        fx: &mut Effects<W>,
    ) {
        let error = if self.is(GroupState::Dead) {
            Some(ErrorCode::CoordinatorNotAvailable)
        } else if let Some(error) = self.validate_member(member_id, instance_id) {
            Some(error)
        } else if generation != self.generation {
            Some(ErrorCode::IllegalGeneration)
        } else if protocol_type.is_some_and(|t| self.protocol_type.as_deref() != Some(t))
            || protocol_name.is_some_and(|n| self.protocol.as_deref() != Some(n))
        {
            Some(ErrorCode::InconsistentGroupProtocol)
        } else {
            match self.state {
                GroupState::Empty => Some(ErrorCode::UnknownMemberId),
                GroupState::PreparingRebalance => Some(ErrorCode::RebalanceInProgress),
                _ => None,
            }
        };
        if let Some(error) = error {
            return fx.sync(waiter, SyncResult::error(error));
        }
        self.pending_sync.remove(member_id);
        if self.is(GroupState::Stable) {
            let member = &self.members[member_id];
            return fx.sync(
                waiter,
                SyncResult {
                    error: ErrorCode::None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    assignment: member.assignment.clone(),
                },
            );
        }
        // CompletingRebalance: park until the leader's assignment is durable.
        let member = self.members.get_mut(member_id).expect("validated member");
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms as i64;
        if let Some(previous) = member.sync_waiter.replace(waiter) {
            fx.sync(previous, SyncResult::error(ErrorCode::RebalanceInProgress));
        }
        let is_leader = self.leader.as_deref() == Some(member_id);
        if is_leader && !self.assignment_in_flight {
            let mut assignment: BTreeMap<String, Bytes> = BTreeMap::new();
            for (id, bytes) in assignments {
                if self.members.contains_key(&id) {
                    assignment.insert(id, bytes);
                }
            }
            for id in self.members.keys() {
                assignment.entry(id.clone()).or_default();
            }
            self.assignment_in_flight = true;
            fx.persist.push(Persist {
                value: self.metadata_value(now_ms, Some(&assignment)),
                after: AfterPersist::Assignment {
                    generation: self.generation,
                    assignment,
                },
            });
        }
    }

    /// The outcome of writing a record from [`Effects::persist`].
    pub fn persisted(
        &mut self,
        after: AfterPersist,
        error: Option<ErrorCode>,
        now_ms: i64,
        config: &GroupConfig,
        fx: &mut Effects<W>,
    ) {
        match after {
            AfterPersist::Assignment {
                generation,
                assignment,
            } => {
                if generation != self.generation || !self.is(GroupState::CompletingRebalance) {
                    return;
                }
                self.assignment_in_flight = false;
                if let Some(error) = error {
                    self.reset_and_propagate_error(error, fx);
                    self.maybe_prepare_rebalance(now_ms, config, fx);
                    return;
                }
                for (id, bytes) in assignment {
                    if let Some(member) = self.members.get_mut(&id) {
                        member.assignment = bytes;
                    }
                }
                for member in self.members.values_mut() {
                    if let Some(waiter) = member.sync_waiter.take() {
                        fx.sync(
                            waiter,
                            SyncResult {
                                error: ErrorCode::None,
                                protocol_type: self.protocol_type.clone(),
                                protocol_name: self.protocol.clone(),
                                assignment: member.assignment.clone(),
                            },
                        );
                    }
                }
                self.transition(GroupState::Stable, now_ms);
            }
            AfterPersist::StaticRejoin {
                member_id,
                old_member_id: _,
                leader,
            } => {
                let Some(member) = self.members.get_mut(&member_id) else {
                    return;
                };
                let Some(waiter) = member.join_waiter.take() else {
                    return;
                };
                let result = match error {
                    Some(error) => JoinResult::error(&member_id, error),
                    None => JoinResult {
                        error: ErrorCode::None,
                        generation_id: self.generation,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol.clone(),
                        // The old leader id: a rejoining static leader must not reassign in a
                        // Stable group (Kafka does the same).
                        leader,
                        member_id,
                        members: Vec::new(),
                    },
                };
                fx.join(waiter, result);
            }
            AfterPersist::Nothing => {}
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> ErrorCode {
        if self.is(GroupState::Dead) {
            return ErrorCode::CoordinatorNotAvailable;
        }
        if let Some(error) = self.validate_member(member_id, instance_id) {
            return error;
        }
        if generation != self.generation {
            return ErrorCode::IllegalGeneration;
        }
        let state = self.state;
        let member = self.members.get_mut(member_id).expect("validated member");
        match state {
            GroupState::Empty | GroupState::Dead => ErrorCode::UnknownMemberId,
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms as i64;
                ErrorCode::None
            }
            GroupState::PreparingRebalance => {
                member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms as i64;
                ErrorCode::RebalanceInProgress
            }
        }
    }

    /// LeaveGroup of one member (by member id, or by instance id with an empty member id).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
        config: &GroupConfig,
        fx: &mut Effects<W>,
    ) -> ErrorCode {
        if self.is(GroupState::Dead) {
            return ErrorCode::CoordinatorNotAvailable;
        }
        let member_id = if member_id.is_empty() {
            match instance_id.and_then(|i| self.static_members.get(i)) {
                Some(id) => id.clone(),
                None => return ErrorCode::UnknownMemberId,
            }
        } else {
            member_id.to_string()
        };
        if self.pending_members.remove(&member_id).is_some() {
            self.try_complete_join(now_ms, fx);
            return ErrorCode::None;
        }
        if let Some(error) = self.validate_member(&member_id, instance_id) {
            return error;
        }
        self.remove_member_and_update(&member_id, now_ms, config, fx);
        ErrorCode::None
    }

    /// OffsetCommit's checks (Kafka's `doCommitOffsets` order). Ok: the commit may be written.
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), ErrorCode> {
        if self.is(GroupState::Dead) {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if self.is_fenced(instance_id, member_id) {
            return Err(ErrorCode::FencedInstanceId);
        }
        if generation < 0 && self.is(GroupState::Empty) {
            return Ok(());
        }
        if self.is(GroupState::CompletingRebalance) {
            return Err(ErrorCode::RebalanceInProgress);
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return Err(ErrorCode::UnknownMemberId);
        };
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms as i64;
        Ok(())
    }

    /// Kafka's checks of a TxnOffsetCommit: looser than a plain commit (a member id or
    /// generation is only checked when given; no rebalance check).
    pub fn validate_txn_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ErrorCode> {
        if self.is(GroupState::Dead) {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if self.is_fenced(instance_id, member_id) {
            return Err(ErrorCode::FencedInstanceId);
        }
        if !member_id.is_empty() && !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation >= 0 && generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    /// Fires the timeouts due at `now_ms`.
    pub fn tick(&mut self, now_ms: i64, config: &GroupConfig, fx: &mut Effects<W>) {
        if self.is(GroupState::Dead) {
            return;
        }
        let expired_pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, deadline)| **deadline <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired_pending {
            self.pending_members.remove(&id);
            self.try_complete_join(now_ms, fx);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.heartbeat_deadline_ms <= now_ms && !m.survives_expiry())
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            self.remove_member_and_update(&id, now_ms, config, fx);
        }
        if self.is(GroupState::PreparingRebalance) {
            if let Some((deadline, remaining)) = self.initial_delay {
                if deadline <= now_ms {
                    if self.new_member_added && remaining > 0 {
                        self.new_member_added = false;
                        let delay = (config.initial_rebalance_delay_ms as i64).min(remaining);
                        self.initial_delay = Some((now_ms + delay, (remaining - delay).max(0)));
                    } else {
                        self.complete_join(now_ms, fx);
                    }
                }
            } else if self.join_deadline_ms.is_some_and(|d| d <= now_ms) {
                self.complete_join(now_ms, fx);
            }
        }
        if matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) && self.sync_deadline_ms.is_some_and(|d| d <= now_ms)
        {
            self.sync_deadline_ms = None;
            let missing: Vec<String> = std::mem::take(&mut self.pending_sync).into_iter().collect();
            if !missing.is_empty() {
                for id in &missing {
                    self.remove_member(id, fx);
                }
                self.maybe_prepare_rebalance(now_ms, config, fx);
                self.try_complete_join(now_ms, fx);
            }
        }
    }

    /// The group's GroupMetadataValue (version 3), with `assignment` in place of the members'
    /// current assignments when given.
    pub fn metadata_value(
        &self,
        now_ms: i64,
        assignment: Option<&BTreeMap<String, Bytes>>,
    ) -> GroupMetadataValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if self.is(GroupState::Empty) || self.is(GroupState::Dead) {
            Vec::new()
        } else {
            self.members
                .values()
                .map(|m| MemberMetadata {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout: m.rebalance_timeout_ms,
                    session_timeout: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: assignment
                        .and_then(|a| a.get(&m.id).cloned())
                        .unwrap_or_else(|| m.assignment.clone()),
                    ..Default::default()
                })
                .collect()
        };
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: now_ms,
            members,
            ..Default::default()
        }
    }

    /// Replay of a GroupMetadataValue (startup load). Members come back as Kafka loads them:
    /// with their subscription and assignment, their session timer started now; a group with
    /// members is Stable, without them Empty.
    pub fn load(&mut self, value: &GroupMetadataValue, now_ms: i64) {
        self.generation = value.generation;
        self.protocol_type = if value.protocol_type.is_empty() {
            None
        } else {
            Some(value.protocol_type.clone())
        };
        self.protocol = value.protocol.clone();
        self.leader = value.leader.clone();
        self.members.clear();
        self.static_members.clear();
        self.pending_members.clear();
        self.pending_sync.clear();
        let protocol = value.protocol.clone().unwrap_or_default();
        for m in &value.members {
            if let Some(instance_id) = &m.group_instance_id {
                self.static_members
                    .insert(instance_id.clone(), m.member_id.clone());
            }
            self.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id.clone(),
                    instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout,
                    session_timeout_ms: m.session_timeout,
                    protocol_type: value.protocol_type.clone(),
                    protocols: vec![Protocol {
                        name: protocol.clone(),
                        metadata: m.subscription.clone(),
                    }],
                    assignment: m.assignment.clone(),
                    join_waiter: None,
                    sync_waiter: None,
                    is_new: false,
                    heartbeat_deadline_ms: now_ms + m.session_timeout as i64,
                },
            );
        }
        let state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.state = state;
        self.state_timestamp_ms = if value.current_state_timestamp > 0 {
            value.current_state_timestamp
        } else {
            now_ms
        };
    }

    /// Marks the group Dead (deleted): every waiting request is answered, members dropped.
    pub fn mark_dead(&mut self, now_ms: i64, fx: &mut Effects<W>) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.remove_member(&id, fx);
        }
        self.pending_members.clear();
        self.transition(GroupState::Dead, now_ms);
    }

    /// Topics the members subscribe to, for consumer groups (None: unknown protocol).
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.clone()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(super::records::subscription_topics(
                &member.metadata(&protocol),
            )?);
        }
        Some(topics)
    }

    /// Offsets past retention (Kafka's `cleanupGroupMetadata` rules): for an Empty group every
    /// offset once the group has been Empty for `retention_ms`; for a group without a
    /// protocol (manual commits) each offset `retention_ms` after its commit; for a live
    /// consumer group, offsets of topics nobody subscribes to any more.
    pub fn expired_offsets(&self, now_ms: i64, retention_ms: i64) -> Vec<(String, i32)> {
        let subscribed = if self.is(GroupState::Stable) {
            self.subscribed_topics()
        } else {
            None
        };
        self.offsets
            .iter()
            .filter(|((topic, _), committed)| {
                if let Some(expire) = committed.expire_timestamp_ms {
                    return expire <= now_ms;
                }
                let base = match self.state {
                    GroupState::Empty if self.protocol_type.is_some() => self.state_timestamp_ms,
                    GroupState::Empty => committed.commit_timestamp_ms,
                    GroupState::Stable => match &subscribed {
                        Some(topics) if !topics.contains(topic) => committed.commit_timestamp_ms,
                        _ => return false,
                    },
                    _ => return false,
                };
                base + retention_ms <= now_ms
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Number of members whose assignment is of the current generation (test helper for the
    /// Stable invariant).
    pub fn member_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    pub fn pending_sync_count(&self) -> usize {
        self.pending_sync.len()
    }
}
