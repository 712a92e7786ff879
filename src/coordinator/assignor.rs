//! Server-side partition assignors of the consumer group protocol (KIP-848): `uniform` (the
//! default: balanced and sticky) and `range` (per topic, contiguous ranges in member order, so
//! co-partitioned topics line up). Pure functions of the members' subscriptions, the topics'
//! partition counts and the current assignment; the coordinator calls them when the group epoch
//! moves past the target assignment's epoch.

use std::collections::{BTreeMap, BTreeSet};

/// A member's partitions: topic → partition indexes (sorted).
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

/// What an assignor sees of one member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberSpec {
    /// Topics the member subscribes to (names; unknown topics are ignored).
    pub subscriptions: BTreeSet<String>,
    /// The member's current target assignment (for stickiness).
    pub current: Assignment,
}

/// The assignor names the broker offers, the first being the default.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// Computes the target assignment of every member. `partitions` gives each existing topic's
/// partition count. Every partition of a topic somebody subscribes to goes to exactly one member
/// subscribed to it; members without an eligible partition get an empty assignment.
pub fn assign(
    assignor: &str,
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<String, i32>,
) -> Result<BTreeMap<String, Assignment>, String> {
    match assignor {
        "uniform" => Ok(uniform(members, partitions)),
        "range" => Ok(range(members, partitions)),
        other => Err(format!(
            "unknown server assignor '{other}' (this broker has: {})",
            ASSIGNORS.join(", ")
        )),
    }
}

fn empty_result(members: &BTreeMap<String, MemberSpec>) -> BTreeMap<String, Assignment> {
    members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect()
}

/// Range: for each topic, its subscribers in member-id order each get a contiguous range;
/// the first `partitions % subscribers` get one more.
pub fn range(
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut result = empty_result(members);
    for (topic, &count) in partitions {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, spec)| spec.subscriptions.contains(topic))
            .map(|(id, _)| id)
            .collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        let n = subscribers.len() as i32;
        let (quota, extra) = (count / n, count % n);
        let mut next = 0;
        for (index, member) in subscribers.into_iter().enumerate() {
            let take = quota + i32::from((index as i32) < extra);
            if take > 0 {
                result
                    .get_mut(member)
                    .expect("every member has an entry")
                    .entry(topic.clone())
                    .or_default()
                    .extend(next..next + take);
            }
            next += take;
        }
    }
    result
}

/// Uniform: balanced and sticky. Partitions stay with their current owner while it is still
/// subscribed, new or orphaned partitions go to the least-loaded eligible member, and then
/// partitions move from the most to the least loaded eligible member until no move would make
/// two members' counts differ by less (for identical subscriptions: counts differ by at most 1).
pub fn uniform(
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let ids: Vec<&String> = members.keys().collect();
    let mut load: BTreeMap<&String, usize> = ids.iter().map(|id| (*id, 0)).collect();
    let mut owner: BTreeMap<(&String, i32), &String> = BTreeMap::new();

    // 1. Stickiness: keep what the current assignment gives a still-subscribed member.
    for (id, spec) in members {
        for (topic, owned) in &spec.current {
            let Some((topic_key, &count)) = partitions.get_key_value(topic) else {
                continue;
            };
            if !spec.subscriptions.contains(topic) {
                continue;
            }
            for &partition in owned {
                if partition < count && !owner.contains_key(&(topic_key, partition)) {
                    owner.insert((topic_key, partition), id);
                    *load.get_mut(id).expect("member") += 1;
                }
            }
        }
    }
    // 2. Everything unowned to the least-loaded eligible member (ties: member id order).
    for (topic, &count) in partitions {
        let eligible: Vec<&String> = members
            .iter()
            .filter(|(_, spec)| spec.subscriptions.contains(topic))
            .map(|(id, _)| id)
            .collect();
        if eligible.is_empty() {
            continue;
        }
        for partition in 0..count.max(0) {
            if owner.contains_key(&(topic, partition)) {
                continue;
            }
            let chosen = *eligible
                .iter()
                .min_by_key(|id| (load[**id], **id))
                .expect("eligible is not empty");
            owner.insert((topic, partition), chosen);
            *load.get_mut(chosen).expect("member") += 1;
        }
    }
    // 3. Balance: move a partition from a member to an eligible one with at least two fewer,
    // most loaded member first. Each move lowers the sum of squared loads, so this ends.
    let mut owned_by: BTreeMap<&String, BTreeSet<(&String, i32)>> =
        ids.iter().map(|id| (*id, BTreeSet::new())).collect();
    for (&key, &id) in &owner {
        owned_by.get_mut(id).expect("member").insert(key);
    }
    loop {
        let mut order: Vec<&String> = ids.clone();
        order.sort_by_key(|id| (std::cmp::Reverse(load[*id]), *id));
        let mut chosen = None;
        'search: for from in order {
            for &(topic, partition) in &owned_by[from] {
                let target = members
                    .iter()
                    .filter(|(id, spec)| *id != from && spec.subscriptions.contains(topic))
                    .map(|(id, _)| id)
                    .min_by_key(|id| (load[*id], *id));
                if let Some(to) = target {
                    if load[from] >= load[to] + 2 {
                        chosen = Some(((topic, partition), from, to));
                        break 'search;
                    }
                }
            }
        }
        let Some((key, from, to)) = chosen else { break };
        owner.insert(key, to);
        owned_by.get_mut(from).expect("member").remove(&key);
        owned_by.get_mut(to).expect("member").insert(key);
        *load.get_mut(from).expect("member") -= 1;
        *load.get_mut(to).expect("member") += 1;
    }

    let mut result = empty_result(members);
    for ((topic, partition), id) in owner {
        result
            .get_mut(id)
            .expect("member")
            .entry(topic.clone())
            .or_default()
            .insert(partition);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(topics: &[&str], current: &[(&str, &[i32])]) -> MemberSpec {
        MemberSpec {
            subscriptions: topics.iter().map(|t| t.to_string()).collect(),
            current: current
                .iter()
                .map(|(t, p)| (t.to_string(), p.iter().copied().collect()))
                .collect(),
        }
    }

    fn counts(result: &BTreeMap<String, Assignment>) -> Vec<usize> {
        result
            .values()
            .map(|a| a.values().map(BTreeSet::len).sum())
            .collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_order() {
        let members: BTreeMap<String, MemberSpec> = [
            ("a".to_string(), spec(&["t", "u"], &[])),
            ("b".to_string(), spec(&["t", "u"], &[])),
            ("c".to_string(), spec(&["t"], &[])),
        ]
        .into_iter()
        .collect();
        let partitions: BTreeMap<String, i32> = [("t".to_string(), 7), ("u".to_string(), 4)]
            .into_iter()
            .collect();
        let result = range(&members, &partitions);
        let get = |m: &str, t: &str| -> Vec<i32> {
            result[m]
                .get(t)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default()
        };
        assert_eq!(get("a", "t"), vec![0, 1, 2]);
        assert_eq!(get("b", "t"), vec![3, 4]);
        assert_eq!(get("c", "t"), vec![5, 6]);
        assert_eq!(get("a", "u"), vec![0, 1]);
        assert_eq!(get("b", "u"), vec![2, 3]);
        assert!(get("c", "u").is_empty());
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let mut members: BTreeMap<String, MemberSpec> = BTreeMap::new();
        members.insert("a".into(), spec(&["t"], &[]));
        members.insert("b".into(), spec(&["t"], &[]));
        let partitions: BTreeMap<String, i32> = [("t".to_string(), 12)].into_iter().collect();
        let first = uniform(&members, &partitions);
        assert_eq!(counts(&first), vec![6, 6]);
        for (id, assignment) in &first {
            members.get_mut(id).unwrap().current = assignment.clone();
        }
        members.insert("c".into(), spec(&["t"], &[]));
        let second = uniform(&members, &partitions);
        assert_eq!(counts(&second), vec![4, 4, 4]);
        // a and b only gave partitions away; nothing moved between them.
        for id in ["a", "b"] {
            assert!(second[id]["t"].is_subset(&first[id]["t"]), "{id}");
        }
    }

    #[test]
    fn unknown_assignors_are_named() {
        let error = assign("sticky", &BTreeMap::new(), &BTreeMap::new()).unwrap_err();
        assert!(error.contains("uniform, range"), "{error}");
    }

    fn scenario() -> impl Strategy<Value = (BTreeMap<String, MemberSpec>, BTreeMap<String, i32>)> {
        let topics = proptest::collection::btree_map("[a-d]", 0i32..9, 1..4);
        topics.prop_flat_map(|partitions| {
            let names: Vec<String> = partitions.keys().cloned().collect();
            let member = (
                proptest::sample::subsequence(names.clone(), 0..=names.len()),
                proptest::collection::vec(
                    (proptest::sample::select(names.clone()), 0i32..10),
                    0..6,
                ),
            );
            let members = proptest::collection::btree_map("m[0-9]{1,2}", member, 0..8);
            (members, Just(partitions)).prop_map(|(members, partitions)| {
                let members = members
                    .into_iter()
                    .map(|(id, (subs, current))| {
                        let mut assignment = Assignment::new();
                        for (topic, partition) in current {
                            assignment.entry(topic).or_default().insert(partition);
                        }
                        (
                            id,
                            MemberSpec {
                                subscriptions: subs.into_iter().collect(),
                                current: assignment,
                            },
                        )
                    })
                    .collect();
                (members, partitions)
            })
        })
    }

    fn check_complete(
        members: &BTreeMap<String, MemberSpec>,
        partitions: &BTreeMap<String, i32>,
        result: &BTreeMap<String, Assignment>,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            result.keys().collect::<Vec<_>>(),
            members.keys().collect::<Vec<_>>()
        );
        let mut seen = BTreeSet::new();
        for (id, assignment) in result {
            for (topic, owned) in assignment {
                prop_assert!(members[id].subscriptions.contains(topic));
                for &p in owned {
                    prop_assert!(p >= 0 && p < partitions[topic]);
                    prop_assert!(seen.insert((topic.clone(), p)), "{topic}-{p} twice");
                }
            }
        }
        for (topic, &count) in partitions {
            if members.values().any(|m| m.subscriptions.contains(topic)) {
                for p in 0..count {
                    prop_assert!(seen.contains(&(topic.clone(), p)), "{topic}-{p} unassigned");
                }
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn every_subscribed_partition_has_exactly_one_eligible_owner((members, partitions) in scenario()) {
            for name in ASSIGNORS {
                let result = assign(name, &members, &partitions).unwrap();
                check_complete(&members, &partitions, &result)?;
            }
        }

        #[test]
        fn uniform_balances_identical_subscriptions_and_is_stable((members, partitions) in scenario()) {
            let all: BTreeSet<String> = partitions.keys().cloned().collect();
            let members: BTreeMap<String, MemberSpec> = members
                .into_iter()
                .map(|(id, mut spec)| { spec.subscriptions = all.clone(); (id, spec) })
                .collect();
            let result = uniform(&members, &partitions);
            let loads = counts(&result);
            if let (Some(max), Some(min)) = (loads.iter().max(), loads.iter().min()) {
                prop_assert!(max - min <= 1, "{loads:?}");
            }
            // Running it again on its own output moves nothing.
            let again_members: BTreeMap<String, MemberSpec> = members
                .iter()
                .map(|(id, spec)| (id.clone(), MemberSpec { current: result[id].clone(), ..spec.clone() }))
                .collect();
            prop_assert_eq!(uniform(&again_members, &partitions), result);
        }
    }
}
