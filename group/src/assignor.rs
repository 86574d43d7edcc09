//! Server-side partition assignors for KIP-848 consumer groups (uniform and range).
//!
//! An assignor is a pure function from an [`AssignmentSpec`] (members, what each subscribes to,
//! each member's previous *target* assignment, and the partition count of every subscribed topic)
//! to a [`GroupAssignment`]. Both assignors here are deterministic: the same spec gives the same
//! output, whatever order the members were given in, because members are always processed sorted
//! by id. The consumer group state machine (`consumer.rs`) only ever calls them on the shard that
//! owns the group; they hold no state.
//!
//! ```text
//!   spec.members ──┐                      ┌── member a: {t0:[0,1]}
//!   spec.topics  ──┼──► assign(spec) ─────┼── member b: {t0:[2,3]}
//!   (prev target) ─┘                      └── member c: {t0:[4,5]}
//! ```
//!
//! Invariants every assignor upholds (checked by `check_assignment` in tests and proptests):
//! every partition of every topic that at least one member subscribes to is assigned to exactly
//! one member, and only to a member subscribed to its topic.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id. Ordered maps keep encodings and iteration deterministic.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// Target assignment of a whole group: member id → partitions.
pub type GroupAssignment = BTreeMap<String, Assignment>;

/// Name of the default server assignor (Kafka's `group.consumer.assignors` default is uniform).
pub const UNIFORM_ASSIGNOR_NAME: &str = "uniform";
/// Name of the range assignor.
pub const RANGE_ASSIGNOR_NAME: &str = "range";

/// One member as the assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    pub member_id: String,
    /// Static members are ordered by instance id in the range assignor so that a restarted static
    /// member (new member id, same instance id) gets the same ranges back.
    pub instance_id: Option<String>,
    /// Topic ids the member subscribes to that exist (topics missing from `topics` are ignored).
    pub subscribed_topic_ids: BTreeSet<Uuid>,
    /// The member's previous target assignment; assignors use it to stay sticky.
    pub current: Assignment,
}

/// Everything an assignor needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignmentSpec {
    pub members: Vec<MemberSpec>,
    /// Topic id → partition count, for every topic any member subscribes to.
    pub topics: BTreeMap<Uuid, i32>,
}

/// A server-side assignor (KIP-848 `ConsumerGroupPartitionAssignor`).
pub trait PartitionAssignor {
    fn name(&self) -> &'static str;
    fn assign(&self, spec: &AssignmentSpec) -> GroupAssignment;
}

/// The assignors Fjord ships, by the name clients send in `server_assignor`.
pub fn assignor_by_name(name: &str) -> Option<&'static dyn PartitionAssignor> {
    match name {
        UNIFORM_ASSIGNOR_NAME => Some(&UniformAssignor),
        RANGE_ASSIGNOR_NAME => Some(&RangeAssignor),
        _ => None,
    }
}

/// Members sorted by id, with their subscriptions restricted to topics that exist.
fn sorted_members(spec: &AssignmentSpec) -> Vec<&MemberSpec> {
    let mut members: Vec<&MemberSpec> = spec.members.iter().collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    members
}

fn partition_valid(spec: &AssignmentSpec, member: &MemberSpec, topic_id: &Uuid, partition: i32) -> bool {
    member.subscribed_topic_ids.contains(topic_id)
        && spec.topics.get(topic_id).is_some_and(|count| partition >= 0 && partition < *count)
}

/// Balanced and sticky. Works in three passes:
///
/// 1. every member keeps the partitions of its previous target that are still valid (topic still
///    subscribed, partition still exists, not already kept by a member earlier in id order);
/// 2. each unassigned partition goes to the least-loaded member subscribed to its topic;
/// 3. while some member has two partitions more than another member that could take one of them,
///    one partition moves from the most-loaded to the least-loaded such member.
///
/// With homogeneous subscriptions pass 3 ends with loads within one of each other, and every move
/// goes from a member above its share to one below it, so adding a member moves only the
/// partitions the new member must get. With heterogeneous subscriptions the result is balanced
/// as far as a member can only take partitions of topics it subscribes to (a local optimum: moves
/// never chain through a third member).
#[derive(Debug, Clone, Copy, Default)]
pub struct UniformAssignor;

impl PartitionAssignor for UniformAssignor {
    fn name(&self) -> &'static str {
        UNIFORM_ASSIGNOR_NAME
    }

    fn assign(&self, spec: &AssignmentSpec) -> GroupAssignment {
        let members = sorted_members(spec);
        let mut loads: Vec<Assignment> = vec![Assignment::new(); members.len()];
        let mut counts: Vec<usize> = vec![0; members.len()];
        let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();

        // Pass 1: stickiness.
        for (index, member) in members.iter().enumerate() {
            for (topic_id, partitions) in &member.current {
                for &partition in partitions {
                    if partition_valid(spec, member, topic_id, partition) && taken.insert((*topic_id, partition)) {
                        loads[index].entry(*topic_id).or_default().insert(partition);
                        counts[index] += 1;
                    }
                }
            }
        }

        // Pass 2: hand out what nobody kept.
        for (topic_id, count) in &spec.topics {
            let subscribers: Vec<usize> =
                (0..members.len()).filter(|index| members[*index].subscribed_topic_ids.contains(topic_id)).collect();
            if subscribers.is_empty() {
                continue;
            }
            for partition in 0..*count {
                if taken.contains(&(*topic_id, partition)) {
                    continue;
                }
                let index = *subscribers.iter().min_by_key(|index| (counts[**index], **index)).expect("non-empty");
                loads[index].entry(*topic_id).or_default().insert(partition);
                counts[index] += 1;
                taken.insert((*topic_id, partition));
            }
        }

        // Pass 3: balance. Each move lowers the sum of squared loads, so the loop terminates; the
        // bound is a backstop against a bug, not a limit a correct run can reach.
        let moves_max = spec.topics.values().map(|count| *count as usize).sum::<usize>() * members.len().max(1);
        for _ in 0..moves_max {
            if !move_one_partition(&members, &mut loads, &mut counts) {
                break;
            }
        }

        members.iter().zip(loads).map(|(member, assignment)| (member.member_id.clone(), assignment)).collect()
    }
}

/// Moves one partition from the most-loaded member to the least-loaded member that can take one
/// of its partitions, if that improves balance. Returns whether a partition moved.
fn move_one_partition(members: &[&MemberSpec], loads: &mut [Assignment], counts: &mut [usize]) -> bool {
    let mut donors: Vec<usize> = (0..members.len()).collect();
    donors.sort_by_key(|index| (std::cmp::Reverse(counts[*index]), *index));
    let mut receivers: Vec<usize> = (0..members.len()).collect();
    receivers.sort_by_key(|index| (counts[*index], *index));
    for &donor in &donors {
        for &receiver in &receivers {
            if counts[donor] <= counts[receiver] + 1 {
                break;
            }
            // The donor gives up its highest partition of a topic the receiver subscribes to:
            // deterministic, and it leaves the low partitions where they were.
            let candidate = loads[donor]
                .iter()
                .rev()
                .filter(|(topic_id, partitions)| {
                    !partitions.is_empty() && members[receiver].subscribed_topic_ids.contains(*topic_id)
                })
                .find_map(|(topic_id, partitions)| partitions.last().map(|partition| (*topic_id, *partition)));
            if let Some((topic_id, partition)) = candidate {
                let donor_partitions = loads[donor].get_mut(&topic_id).expect("candidate topic is in the donor load");
                donor_partitions.remove(&partition);
                if donor_partitions.is_empty() {
                    loads[donor].remove(&topic_id);
                }
                counts[donor] -= 1;
                loads[receiver].entry(topic_id).or_default().insert(partition);
                counts[receiver] += 1;
                return true;
            }
        }
    }
    false
}

/// Kafka's range assignment per topic: the members subscribed to a topic, ordered by instance id
/// (static members) or member id, each get a contiguous range; the first `count % members` get one
/// extra. Members with the same position in two co-partitioned topics (same partition count,
/// same subscribers) get the same partition numbers of both, which is what joins rely on.
/// Not sticky beyond that: the ranges depend only on the member order.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl PartitionAssignor for RangeAssignor {
    fn name(&self) -> &'static str {
        RANGE_ASSIGNOR_NAME
    }

    fn assign(&self, spec: &AssignmentSpec) -> GroupAssignment {
        let mut members: Vec<&MemberSpec> = spec.members.iter().collect();
        members.sort_by(|a, b| {
            let key_a = (a.instance_id.as_deref().unwrap_or(&a.member_id), &a.member_id);
            let key_b = (b.instance_id.as_deref().unwrap_or(&b.member_id), &b.member_id);
            key_a.cmp(&key_b)
        });
        let mut result: GroupAssignment = members.iter().map(|member| (member.member_id.clone(), Assignment::new())).collect();
        for (topic_id, count) in &spec.topics {
            let subscribers: Vec<&&MemberSpec> =
                members.iter().filter(|member| member.subscribed_topic_ids.contains(topic_id)).collect();
            if subscribers.is_empty() || *count <= 0 {
                continue;
            }
            let count = *count as usize;
            let quota = count / subscribers.len();
            let extra = count % subscribers.len();
            let mut start = 0usize;
            for (position, member) in subscribers.iter().enumerate() {
                let length = quota + usize::from(position < extra);
                if length > 0 {
                    let partitions = (start..start + length).map(|partition| partition as i32).collect();
                    result.get_mut(&member.member_id).expect("every member has an entry").insert(*topic_id, partitions);
                }
                start += length;
            }
            assert_eq!(start, count, "range assignment must cover every partition");
        }
        result
    }
}

/// Checks the assignor contract: each subscribed partition is assigned exactly once, to a member
/// subscribed to its topic, and nothing else is assigned. Returns a description of the first
/// violation. Public so the state-machine tests can reuse it.
pub fn check_assignment(spec: &AssignmentSpec, assignment: &GroupAssignment) -> Result<(), String> {
    let mut seen: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for (member_id, partitions) in assignment {
        let Some(member) = spec.members.iter().find(|member| &member.member_id == member_id) else {
            return Err(format!("assignment names unknown member {member_id}"));
        };
        for (topic_id, topic_partitions) in partitions {
            if !member.subscribed_topic_ids.contains(topic_id) {
                return Err(format!("{member_id} got {topic_id} it does not subscribe to"));
            }
            for partition in topic_partitions {
                if !partition_valid(spec, member, topic_id, *partition) {
                    return Err(format!("{member_id} got invalid partition {topic_id}/{partition}"));
                }
                if !seen.insert((*topic_id, *partition)) {
                    return Err(format!("{topic_id}/{partition} assigned twice"));
                }
            }
        }
    }
    for (topic_id, count) in &spec.topics {
        let subscribed = spec.members.iter().any(|member| member.subscribed_topic_ids.contains(topic_id));
        for partition in 0..*count {
            if subscribed && !seen.contains(&(*topic_id, partition)) {
                return Err(format!("{topic_id}/{partition} unassigned"));
            }
        }
    }
    Ok(())
}

/// Number of partitions in an assignment.
pub fn partition_count(assignment: &Assignment) -> usize {
    assignment.values().map(BTreeSet::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic(index: u128) -> Uuid {
        Uuid::from_u128(index + 1)
    }

    fn member(id: &str, topics: &[u128], current: Assignment) -> MemberSpec {
        MemberSpec {
            member_id: id.to_string(),
            instance_id: None,
            subscribed_topic_ids: topics.iter().map(|index| topic(*index)).collect(),
            current,
        }
    }

    fn spec(members: Vec<MemberSpec>, topics: &[(u128, i32)]) -> AssignmentSpec {
        AssignmentSpec { members, topics: topics.iter().map(|(index, count)| (topic(*index), *count)).collect() }
    }

    fn counts(assignment: &GroupAssignment) -> Vec<usize> {
        assignment.values().map(partition_count).collect()
    }

    #[test]
    fn uniform_splits_six_partitions_over_three_members_evenly() {
        let spec = spec(
            vec![
                member("a", &[0], Assignment::new()),
                member("b", &[0], Assignment::new()),
                member("c", &[0], Assignment::new()),
            ],
            &[(0, 6)],
        );
        let result = UniformAssignor.assign(&spec);
        check_assignment(&spec, &result).unwrap();
        assert_eq!(counts(&result), vec![2, 2, 2]);
    }

    #[test]
    fn uniform_adding_member_moves_only_what_the_new_member_gets() {
        let first = spec(vec![member("a", &[0], Assignment::new()), member("b", &[0], Assignment::new())], &[(0, 6)]);
        let before = UniformAssignor.assign(&first);
        let mut members: Vec<MemberSpec> = before.iter().map(|(id, current)| member(id, &[0], current.clone())).collect();
        members.push(member("c", &[0], Assignment::new()));
        let second = spec(members, &[(0, 6)]);
        let after = UniformAssignor.assign(&second);
        check_assignment(&second, &after).unwrap();
        assert_eq!(counts(&after), vec![2, 2, 2]);
        for id in ["a", "b"] {
            assert!(after[id].values().flatten().all(|partition| before[id].values().flatten().any(|p| p == partition)));
        }
    }

    #[test]
    fn uniform_heterogeneous_subscriptions_respect_topics() {
        let spec = spec(
            vec![
                member("a", &[0], Assignment::new()),
                member("b", &[0, 1], Assignment::new()),
                member("c", &[1], Assignment::new()),
            ],
            &[(0, 4), (1, 4)],
        );
        let result = UniformAssignor.assign(&spec);
        check_assignment(&spec, &result).unwrap();
        assert!(counts(&result).iter().all(|count| *count >= 2 && *count <= 3));
    }

    #[test]
    fn range_gives_co_partitioned_topics_the_same_ranges() {
        let spec =
            spec(vec![member("b", &[0, 1], Assignment::new()), member("a", &[0, 1], Assignment::new())], &[(0, 3), (1, 3)]);
        let result = RangeAssignor.assign(&spec);
        check_assignment(&spec, &result).unwrap();
        let expected_a: Assignment = [(topic(0), [0, 1].into()), (topic(1), [0, 1].into())].into();
        let expected_b: Assignment = [(topic(0), [2].into()), (topic(1), [2].into())].into();
        assert_eq!(result["a"], expected_a);
        assert_eq!(result["b"], expected_b);
    }

    #[test]
    fn assignors_are_deterministic_regardless_of_member_order() {
        let forward =
            spec(vec![member("a", &[0, 1], Assignment::new()), member("b", &[1], Assignment::new())], &[(0, 5), (1, 7)]);
        let mut backward = forward.clone();
        backward.members.reverse();
        assert_eq!(UniformAssignor.assign(&forward), UniformAssignor.assign(&backward));
        assert_eq!(RangeAssignor.assign(&forward), RangeAssignor.assign(&backward));
    }

    fn arbitrary_spec() -> impl Strategy<Value = AssignmentSpec> {
        let topics = proptest::collection::vec(0i32..12, 1..4);
        let members = proptest::collection::vec(proptest::collection::btree_set(0u128..4, 0..4), 1..7);
        (topics, members).prop_map(|(counts, subscriptions)| {
            let topics: Vec<(u128, i32)> = counts.iter().enumerate().map(|(index, count)| (index as u128, *count)).collect();
            let members = subscriptions
                .iter()
                .enumerate()
                .map(|(index, subscribed)| {
                    let subscribed: Vec<u128> = subscribed.iter().copied().filter(|t| (*t as usize) < counts.len()).collect();
                    member(&format!("m{index}"), &subscribed, Assignment::new())
                })
                .collect();
            spec(members, &topics)
        })
    }

    proptest! {
        #[test]
        fn assignors_assign_every_subscribed_partition_exactly_once(spec in arbitrary_spec()) {
            let uniform = UniformAssignor.assign(&spec);
            prop_assert_eq!(check_assignment(&spec, &uniform), Ok(()));
            let range = RangeAssignor.assign(&spec);
            prop_assert_eq!(check_assignment(&spec, &range), Ok(()));
        }

        #[test]
        fn uniform_homogeneous_is_balanced_within_one_and_sticky(
            counts in proptest::collection::vec(0i32..20, 1..4),
            member_count in 1usize..8,
        ) {
            let all: Vec<u128> = (0..counts.len() as u128).collect();
            let topics: Vec<(u128, i32)> = counts.iter().enumerate().map(|(index, count)| (index as u128, *count)).collect();
            let members = (0..member_count).map(|index| member(&format!("m{index}"), &all, Assignment::new())).collect();
            let first = spec(members, &topics);
            let before = UniformAssignor.assign(&first);
            prop_assert_eq!(check_assignment(&first, &before), Ok(()));
            let loads = counts_of(&before);
            prop_assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1);

            // A new member joins: exactly the partitions it receives move, nothing else.
            let mut members: Vec<MemberSpec> = before.iter().map(|(id, current)| member(id, &all, current.clone())).collect();
            members.push(member("new", &all, Assignment::new()));
            let second = spec(members, &topics);
            let after = UniformAssignor.assign(&second);
            prop_assert_eq!(check_assignment(&second, &after), Ok(()));
            let loads = counts_of(&after);
            prop_assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1);
            let moved: usize = before.iter().map(|(id, old)| {
                old.iter().map(|(t, ps)| ps.iter().filter(|p| !after[id].get(t).is_some_and(|now| now.contains(p))).count()).sum::<usize>()
            }).sum();
            prop_assert_eq!(moved, partition_count(&after["new"]));
        }
    }

    fn counts_of(assignment: &GroupAssignment) -> Vec<usize> {
        assignment.values().map(partition_count).collect()
    }
}
