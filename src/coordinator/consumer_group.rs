//! The consumer group protocol of KIP-848 (`group.protocol=consumer`): the broker computes the
//! assignment, and each member converges to it through heartbeats. Pure state: no I/O, time and
//! topic metadata come in as arguments, so property tests can drive it.
//!
//! Epochs: the *group epoch* moves whenever membership, a subscription, the assignor or the
//! partition count of a subscribed topic changes. When it passes the *assignment epoch*, the
//! assignor computes a new *target assignment* (at the group epoch). Each member then moves from
//! its current assignment to its target in steps that never let two members own a partition:
//!
//! - partitions the member must give up are taken away first: the member stays at its epoch
//!   (`UnrevokedPartitions`) until a heartbeat reports it no longer owns them;
//! - then it moves to the assignment epoch with the partitions it keeps plus those of its target
//!   that nobody else still owns; the rest come on a later heartbeat, once released
//!   (`UnreleasedPartitions`), otherwise it is `Stable`.
//!
//! A member that does not revoke within its rebalance timeout, or stops heartbeating for the
//! session timeout, is removed (its partitions become free). Requests from an older member epoch
//! are fenced (FENCED_MEMBER_EPOCH) so a zombie cannot commit or consume as the current owner.

use std::collections::{BTreeMap, BTreeSet};

use super::assignor::{self, Assignment, MemberSpec};
use crate::protocol::ErrorCode;

pub mod records;

/// Member epoch of a heartbeat that joins (or rejoins) the group.
pub const JOIN_EPOCH: i32 = 0;
/// Member epoch of a heartbeat that leaves the group.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member leaving temporarily (it keeps its assignment for the
/// session timeout, waiting for a member with the same instance id).
pub const STATIC_LEAVE_EPOCH: i32 = -2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    /// Waiting for the member to revoke `pending_revocation`.
    UnrevokedPartitions,
    /// At the assignment epoch, waiting for partitions other members still own.
    UnreleasedPartitions,
}

impl MemberState {
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "stable",
            MemberState::UnrevokedPartitions => "unrevoked_partitions",
            MemberState::UnreleasedPartitions => "unreleased_partitions",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscriptions: BTreeSet<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    /// What the member owns at `member_epoch` (as last told).
    pub assigned: Assignment,
    /// What it was told to give up and has not confirmed yet.
    pub pending_revocation: Assignment,
    pub session_deadline_ms: i64,
    pub revocation_deadline_ms: Option<i64>,
    /// Left with STATIC_LEAVE_EPOCH: kept for its instance id until the session deadline.
    pub static_left: bool,
    /// The assignment last sent, to send it again only when it changes.
    sent: Option<(i32, Assignment)>,
}

impl ConsumerMember {
    /// A member as replay first creates it, before its metadata and assignment records.
    pub fn restored(id: String) -> ConsumerMember {
        ConsumerMember {
            id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscriptions: BTreeSet::new(),
            server_assignor: None,
            rebalance_timeout_ms: 0,
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            session_deadline_ms: 0,
            revocation_deadline_ms: None,
            static_left: false,
            sent: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupConfig {
    pub session_timeout_ms: i64,
    pub heartbeat_interval_ms: i32,
    pub max_size: usize,
    /// The assignor used when members name none (the first of the broker's list).
    pub default_assignor: String,
}

impl Default for ConsumerGroupConfig {
    /// Kafka's defaults: `group.consumer.session.timeout.ms` 45 s,
    /// `group.consumer.heartbeat.interval.ms` 5 s, `group.consumer.max.size` unlimited,
    /// `group.consumer.assignors` uniform then range.
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: i32::MAX as usize,
            default_assignor: assignor::ASSIGNORS[0].to_string(),
        }
    }
}

/// A ConsumerGroupHeartbeat, with topic ids already turned into names by the handler.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged since the last heartbeat.
    pub subscriptions: Option<BTreeSet<String>>,
    pub server_assignor: Option<String>,
    /// What the member owns now; `None`: unchanged.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's assignment, when it changed (or the member asked by sending what it owns).
    pub assignment: Option<Assignment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroup {
    pub id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// Target assignment at `assignment_epoch`, per member.
    pub target: BTreeMap<String, Assignment>,
    /// Partition counts of the subscribed topics the group epoch last saw.
    pub topics_seen: BTreeMap<String, i32>,
}

/// What a heartbeat changed, for the coordinator to persist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub group_epoch_bumped: bool,
    pub target_recomputed: bool,
    /// Members whose current assignment or epoch changed.
    pub members_updated: BTreeSet<String>,
    /// Members removed (left, expired, fenced, replaced).
    pub members_removed: BTreeSet<String>,
}

impl ConsumerGroup {
    pub fn new(id: String) -> ConsumerGroup {
        ConsumerGroup {
            id,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            topics_seen: BTreeMap::new(),
        }
    }

    /// Kafka's ConsumerGroupDescribe states: empty, assigning, reconciling, stable.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "empty"
        } else if self.group_epoch > self.assignment_epoch {
            "assigning"
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "reconciling"
        } else {
            "stable"
        }
    }

    /// Every topic some member subscribes to.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscriptions.iter().cloned())
            .collect()
    }

    /// Handles one heartbeat at `now_ms`. `topics` gives the partition counts of the existing
    /// topics among those subscribed (by the members or this request) or seen before;
    /// `new_member_id` is used when a joining member brings no id (version 0 of the API).
    pub fn heartbeat(
        &mut self,
        request: Heartbeat,
        now_ms: i64,
        topics: &BTreeMap<String, i32>,
        config: &ConsumerGroupConfig,
        new_member_id: impl FnOnce() -> String,
        changes: &mut Changes,
    ) -> Result<HeartbeatReply, ErrorCode> {
        if let Some(assignor_name) = &request.server_assignor {
            if !assignor::ASSIGNORS.contains(&assignor_name.as_str()) {
                return Err(ErrorCode::UnsupportedAssignor);
            }
        }
        let member_id = match request.member_epoch {
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => {
                return self.leave(request, now_ms, config, changes)
            }
            JOIN_EPOCH => self.join(&request, now_ms, config, new_member_id, changes)?,
            epoch if epoch > 0 => {
                self.check_member(&request)?;
                request.member_id.clone()
            }
            _ => return Err(ErrorCode::InvalidRequest),
        };
        let Some(member) = self.members.get_mut(&member_id) else {
            return Err(ErrorCode::UnknownMemberId);
        };
        member.session_deadline_ms = now_ms + config.session_timeout_ms;
        let mut bump = false;
        if let Some(subscriptions) = &request.subscriptions {
            if *subscriptions != member.subscriptions {
                member.subscriptions = subscriptions.clone();
                bump = true;
            }
        }
        if request.server_assignor.is_some() && request.server_assignor != member.server_assignor {
            member.server_assignor = request.server_assignor.clone();
            bump = true;
        }
        if request.rebalance_timeout_ms > 0 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if request.rack_id.is_some() {
            member.rack_id = request.rack_id.clone();
        }
        // A subscribed topic created, deleted or grown also moves the group epoch.
        let seen: BTreeMap<String, i32> = self
            .subscribed_topics()
            .into_iter()
            .filter_map(|t| topics.get(&t).map(|&count| (t, count)))
            .collect();
        if seen != self.topics_seen {
            self.topics_seen = seen;
            bump = true;
        }
        if bump {
            self.bump(changes);
        }
        self.refresh_target(topics, config, changes);
        let owned = request.owned.clone();
        self.reconcile(&member_id, owned.as_ref(), now_ms, changes);
        let member = self.members.get_mut(&member_id).expect("member exists");
        let current = (member.member_epoch, member.assigned.clone());
        let resend = request.member_epoch == JOIN_EPOCH
            || owned.as_ref().is_some_and(|o| *o != member.assigned);
        let assignment = if resend || member.sent.as_ref() != Some(&current) {
            member.sent = Some(current.clone());
            Some(current.1)
        } else {
            None
        };
        Ok(HeartbeatReply {
            member_id,
            member_epoch: current.0,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment,
        })
    }

    /// Moves the group epoch once per operation (Kafka bumps it once per heartbeat however many
    /// things changed).
    fn bump(&mut self, changes: &mut Changes) {
        if !changes.group_epoch_bumped {
            self.group_epoch += 1;
            changes.group_epoch_bumped = true;
        }
    }

    fn join(
        &mut self,
        request: &Heartbeat,
        now_ms: i64,
        config: &ConsumerGroupConfig,
        new_member_id: impl FnOnce() -> String,
        changes: &mut Changes,
    ) -> Result<String, ErrorCode> {
        let Some(subscriptions) = &request.subscriptions else {
            return Err(ErrorCode::InvalidRequest);
        };
        let member_id = if request.member_id.is_empty() {
            new_member_id()
        } else {
            request.member_id.clone()
        };
        // A static member replacing its earlier incarnation takes over its assignment and
        // epoch: no rebalance.
        if let Some(instance) = &request.instance_id {
            let previous = self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance) && m.id != member_id)
                .map(|m| (m.id.clone(), m.static_left));
            if let Some((previous_id, left)) = previous {
                if !left {
                    return Err(ErrorCode::UnreleasedInstanceId);
                }
                let mut member = self.members.remove(&previous_id).expect("found above");
                changes.members_removed.insert(previous_id.clone());
                member.id = member_id.clone();
                member.static_left = false;
                member.sent = None;
                member.client_id = request.client_id.clone();
                member.client_host = request.client_host.clone();
                member.session_deadline_ms = now_ms + config.session_timeout_ms;
                if let Some(target) = self.target.remove(&previous_id) {
                    self.target.insert(member_id.clone(), target);
                }
                self.members.insert(member_id.clone(), member);
                changes.members_updated.insert(member_id.clone());
                return Ok(member_id);
            }
        }
        if self.members.contains_key(&member_id) {
            // Rejoining (after being fenced, or a restart of the client): start over.
            self.remove_member(&member_id, changes);
        } else if self.members.len() >= config.max_size {
            return Err(ErrorCode::GroupMaxSizeReached);
        }
        self.members.insert(
            member_id.clone(),
            ConsumerMember {
                id: member_id.clone(),
                instance_id: request.instance_id.clone(),
                rack_id: request.rack_id.clone(),
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                subscriptions: subscriptions.clone(),
                server_assignor: request.server_assignor.clone(),
                rebalance_timeout_ms: request.rebalance_timeout_ms.max(0),
                member_epoch: 0,
                previous_member_epoch: 0,
                state: MemberState::Stable,
                assigned: Assignment::new(),
                pending_revocation: Assignment::new(),
                session_deadline_ms: now_ms + config.session_timeout_ms,
                revocation_deadline_ms: None,
                static_left: false,
                sent: None,
            },
        );
        changes.members_removed.remove(&member_id);
        changes.members_updated.insert(member_id.clone());
        self.bump(changes);
        Ok(member_id)
    }

    fn check_member(&self, request: &Heartbeat) -> Result<(), ErrorCode> {
        let Some(member) = self.members.get(&request.member_id) else {
            return Err(ErrorCode::UnknownMemberId);
        };
        if member.static_left {
            return Err(ErrorCode::UnknownMemberId);
        }
        if request.member_epoch == member.member_epoch {
            return Ok(());
        }
        // The member may have missed the response that moved it on: accept its previous epoch
        // while what it owns is still within what it has.
        let owned_fits = request
            .owned
            .as_ref()
            .is_some_and(|owned| is_subset(owned, &member.assigned));
        if request.member_epoch == member.previous_member_epoch && owned_fits {
            return Ok(());
        }
        Err(ErrorCode::FencedMemberEpoch)
    }

    fn leave(
        &mut self,
        request: Heartbeat,
        now_ms: i64,
        config: &ConsumerGroupConfig,
        changes: &mut Changes,
    ) -> Result<HeartbeatReply, ErrorCode> {
        let member_id = match self.members.contains_key(&request.member_id) {
            true => request.member_id.clone(),
            false => match &request.instance_id {
                Some(instance) => self
                    .members
                    .values()
                    .find(|m| m.instance_id.as_ref() == Some(instance))
                    .map(|m| m.id.clone())
                    .ok_or(ErrorCode::UnknownMemberId)?,
                None => return Err(ErrorCode::UnknownMemberId),
            },
        };
        let is_static = self.members[&member_id].instance_id.is_some();
        if request.member_epoch == STATIC_LEAVE_EPOCH && is_static {
            let member = self.members.get_mut(&member_id).expect("found");
            member.static_left = true;
            member.session_deadline_ms = now_ms + config.session_timeout_ms;
        } else {
            self.remove_member(&member_id, changes);
        }
        Ok(HeartbeatReply {
            member_id,
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    fn remove_member(&mut self, member_id: &str, changes: &mut Changes) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            changes.members_removed.insert(member_id.to_string());
            changes.members_updated.remove(member_id);
            self.bump(changes);
        }
    }

    /// Removes members past their session or revocation deadline; true if any was.
    pub fn expire(&mut self, now_ms: i64, changes: &mut Changes) -> bool {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline_ms <= now_ms
                    || m.revocation_deadline_ms.is_some_and(|d| d <= now_ms)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove_member(id, changes);
        }
        !expired.is_empty()
    }

    /// The assignor the group uses: the one most members name, else the broker's default.
    pub fn assignor_name(&self, config: &ConsumerGroupConfig) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = &member.server_assignor {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, count)| (*count, std::cmp::Reverse(*name)))
            .map(|(name, _)| name.to_string())
            .unwrap_or_else(|| config.default_assignor.clone())
    }

    /// Recomputes the target assignment if the group epoch moved past it.
    fn refresh_target(
        &mut self,
        topics: &BTreeMap<String, i32>,
        config: &ConsumerGroupConfig,
        changes: &mut Changes,
    ) {
        if self.group_epoch <= self.assignment_epoch && !self.target.is_empty() {
            return;
        }
        if self.group_epoch <= self.assignment_epoch && self.members.is_empty() {
            return;
        }
        let specs: BTreeMap<String, MemberSpec> = self
            .members
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    MemberSpec {
                        subscriptions: m.subscriptions.clone(),
                        current: self.target.get(id).cloned().unwrap_or_default(),
                    },
                )
            })
            .collect();
        let subscribed = self.subscribed_topics();
        let partitions: BTreeMap<String, i32> = topics
            .iter()
            .filter(|(t, _)| subscribed.contains(*t))
            .map(|(t, c)| (t.clone(), *c))
            .collect();
        let name = self.assignor_name(config);
        self.target = assignor::assign(&name, &specs, &partitions)
            .unwrap_or_else(|_| assignor::uniform(&specs, &partitions));
        self.assignment_epoch = self.group_epoch;
        changes.target_recomputed = true;
    }

    /// Who owns what right now, other than `except`: assigned plus pending revocation.
    fn owned_by_others(&self, except: &str) -> BTreeSet<(String, i32)> {
        let mut out = BTreeSet::new();
        for member in self.members.values().filter(|m| m.id != except) {
            for set in [&member.assigned, &member.pending_revocation] {
                for (topic, partitions) in set {
                    for &p in partitions {
                        out.insert((topic.clone(), p));
                    }
                }
            }
        }
        out
    }

    /// Moves `member_id` one safe step toward its target.
    fn reconcile(
        &mut self,
        member_id: &str,
        owned: Option<&Assignment>,
        now_ms: i64,
        changes: &mut Changes,
    ) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let others = self.owned_by_others(member_id);
        let assignment_epoch = self.assignment_epoch;
        let member = self.members.get_mut(member_id).expect("member exists");
        let before = (member.member_epoch, member.assigned.clone(), member.state);
        if member.state == MemberState::UnrevokedPartitions {
            let revoked =
                owned.is_some_and(|o| intersect(o, &member.pending_revocation).is_empty());
            if !revoked {
                return;
            }
            member.pending_revocation.clear();
            member.revocation_deadline_ms = None;
        }
        if member.member_epoch == assignment_epoch && member.state == MemberState::Stable {
            return;
        }
        let keep = intersect(&member.assigned, &target);
        let revoke = difference(&member.assigned, &target);
        if !is_empty(&revoke) {
            member.assigned = keep;
            member.pending_revocation = revoke;
            member.state = MemberState::UnrevokedPartitions;
            member.revocation_deadline_ms = Some(now_ms + i64::from(member.rebalance_timeout_ms));
        } else {
            let mut next = keep;
            let mut all_free = true;
            for (topic, partitions) in &target {
                for &p in partitions {
                    if others.contains(&(topic.clone(), p)) {
                        all_free = false;
                    } else {
                        next.entry(topic.clone()).or_default().insert(p);
                    }
                }
            }
            member.assigned = next;
            if member.member_epoch != assignment_epoch {
                member.previous_member_epoch = member.member_epoch;
                member.member_epoch = assignment_epoch;
            }
            member.state = if all_free {
                MemberState::Stable
            } else {
                MemberState::UnreleasedPartitions
            };
        }
        if (member.member_epoch, member.assigned.clone(), member.state) != before {
            changes.members_updated.insert(member_id.to_string());
        }
    }
}

impl ConsumerGroup {
    /// Kafka's check of an OffsetCommit against a consumer group: a member id and epoch from a
    /// member (v9+), or an admin/simple commit (epoch < 0) while the group has no members.
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        api_version: i16,
    ) -> Result<(), ErrorCode> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let Some(member) = self.members.get(member_id) else {
            return Err(ErrorCode::UnknownMemberId);
        };
        if api_version < 9 {
            return Err(ErrorCode::UnsupportedVersion);
        }
        check_epoch(member_epoch, member.member_epoch)
    }

    /// Kafka's check of an OffsetFetch (v9+) against a consumer group: admin fetches (no member
    /// id, epoch < 0) always pass; a member must be known and at its current epoch.
    pub fn validate_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ErrorCode> {
        let Some(member_id) = member_id else {
            return if member_epoch < 0 {
                Ok(())
            } else {
                Err(ErrorCode::UnknownMemberId)
            };
        };
        if member_epoch < 0 && member_id.is_empty() {
            return Ok(());
        }
        let Some(member) = self.members.get(member_id) else {
            return Err(ErrorCode::UnknownMemberId);
        };
        check_epoch(member_epoch, member.member_epoch)
    }
}

/// A newer epoch than the member has is fenced; an older one is stale.
fn check_epoch(received: i32, expected: i32) -> Result<(), ErrorCode> {
    match received.cmp(&expected) {
        std::cmp::Ordering::Greater => Err(ErrorCode::FencedMemberEpoch),
        std::cmp::Ordering::Less => Err(ErrorCode::StaleMemberEpoch),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

fn is_empty(a: &Assignment) -> bool {
    a.values().all(BTreeSet::is_empty)
}

fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    a.iter().all(|(topic, partitions)| {
        partitions.is_empty() || b.get(topic).is_some_and(|set| partitions.is_subset(set))
    })
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(topic, partitions)| {
            let common: BTreeSet<i32> = b
                .get(topic)
                .map(|set| partitions.intersection(set).copied().collect())
                .unwrap_or_default();
            (!common.is_empty()).then(|| (topic.clone(), common))
        })
        .collect()
}

fn difference(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(topic, partitions)| {
            let rest: BTreeSet<i32> = match b.get(topic) {
                Some(set) => partitions.difference(set).copied().collect(),
                None => partitions.clone(),
            };
            (!rest.is_empty()).then(|| (topic.clone(), rest))
        })
        .collect()
}

#[cfg(test)]
mod tests;
