//! One consumer group's state, applied from records (`Group::replay`), and member reconciliation
//! (Kafka's `CurrentAssignmentBuilder`).
//!
//! ```text
//!   group epoch ──(> target epoch)──► assignor ──► target assignment @ target epoch
//!                                                         │ per member
//!   member current assignment @ member epoch ◄─reconcile──┘
//!     Stable ──target moved──► UnrevokedPartitions ──client revoked──► Stable / UnreleasedPartitions
//!     UnreleasedPartitions ──previous owners released──► Stable
//! ```
//!
//! Every change to a group goes through `replay`, both live (the heartbeat path applies each
//! record it emits) and at load, so the in-memory state after a restart is the state the records
//! describe. The only state not in records is the member timers, which `ConsumerGroups` re-arms.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use super::record::{ConsumerRecord, CurrentAssignment, MemberMetadata, MemberState, TopicMetadata};
use super::topic_regex::TopicRegex;
use crate::assignor::Assignment;

/// Group state as ListGroups and ConsumerGroupDescribe report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's `ConsumerGroupState` display names.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::Assigning => "Assigning",
            GroupState::Reconciling => "Reconciling",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) metadata: MemberMetadata,
    pub(crate) current: CurrentAssignment,
}

/// Deadlines of one member; not persisted (re-armed after load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct MemberTimers {
    pub(crate) session_deadline_ms: i64,
    /// Set while the member is in UnrevokedPartitions: past it, the member is fenced.
    pub(crate) revocation_deadline_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) group_id: String,
    pub(crate) epoch: i32,
    /// Subscribed topics by name, as last persisted (key version 4).
    pub(crate) subscription: BTreeMap<String, TopicMetadata>,
    pub(crate) target_epoch: i32,
    pub(crate) members: BTreeMap<String, Member>,
    pub(crate) target: BTreeMap<String, Assignment>,
    /// Derived from members' current assignments: who holds each partition (assigned or pending
    /// revocation). A partition is handed to a member only when it is absent here.
    pub(crate) owners: HashMap<(Uuid, i32), String>,
    pub(crate) timers: HashMap<String, MemberTimers>,
}

/// Equality of what records describe: timers are excluded, `owners` is derived.
impl PartialEq for Group {
    fn eq(&self, other: &Group) -> bool {
        self.group_id == other.group_id
            && self.epoch == other.epoch
            && self.subscription == other.subscription
            && self.target_epoch == other.target_epoch
            && self.members == other.members
            && self.target == other.target
            && self.owners == other.owners
    }
}

impl Group {
    pub(crate) fn new(group_id: &str) -> Group {
        Group {
            group_id: group_id.to_string(),
            epoch: 0,
            subscription: BTreeMap::new(),
            target_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            owners: HashMap::new(),
            timers: HashMap::new(),
        }
    }

    pub(crate) fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.epoch != self.target_epoch {
            GroupState::Assigning
        } else if self
            .members
            .values()
            .any(|member| member.current.member_epoch != self.target_epoch || member.current.state != MemberState::Stable)
        {
            GroupState::Reconciling
        } else {
            GroupState::Stable
        }
    }

    pub(crate) fn member_by_instance(&self, instance_id: &str) -> Option<&Member> {
        self.members.values().find(|member| member.metadata.instance_id.as_deref() == Some(instance_id))
    }

    /// The server assignor most members ask for, else `default` (Kafka's preferred assignor).
    pub(crate) fn preferred_assignor<'a>(&'a self, default: &'a str) -> &'a str {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = member.metadata.server_assignor.as_deref() {
                *votes.entry(name).or_default() += 1;
            }
        }
        // Ties go to the smaller name so the choice does not depend on member order.
        votes.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))).map(|(name, _)| name).unwrap_or(default)
    }

    /// Topic ids a member subscribes to among the group's subscribed topics.
    pub(crate) fn member_topic_ids(&self, metadata: &MemberMetadata) -> BTreeSet<Uuid> {
        let regex = metadata.subscribed_topic_regex.as_deref().and_then(|pattern| TopicRegex::new(pattern).ok());
        self.subscription
            .values()
            .filter(|topic| {
                metadata.subscribed_topic_names.binary_search(&topic.topic_name).is_ok()
                    || regex.as_ref().is_some_and(|regex| regex.is_match(&topic.topic_name))
            })
            .map(|topic| topic.topic_id)
            .collect()
    }

    /// Applies one record of this group. Lenient about order (a member first seen in an
    /// assignment record is created) so a compacted log still loads.
    pub(crate) fn replay(&mut self, record: &ConsumerRecord) {
        debug_assert_eq!(record.group_id(), self.group_id);
        match record {
            ConsumerRecord::GroupMetadata { epoch, .. } => self.epoch = epoch.unwrap_or(0),
            ConsumerRecord::PartitionMetadata { topics, .. } => {
                self.subscription = topics.iter().flatten().map(|topic| (topic.topic_name.clone(), topic.clone())).collect();
            }
            ConsumerRecord::MemberMetadata { member_id, value: Some(value), .. } => {
                self.member_or_insert(member_id).metadata = value.clone();
            }
            ConsumerRecord::MemberMetadata { member_id, value: None, .. } => {
                if let Some(member) = self.members.remove(member_id) {
                    self.release(&member);
                }
                self.timers.remove(member_id);
            }
            ConsumerRecord::TargetAssignmentMetadata { assignment_epoch, .. } => {
                self.target_epoch = assignment_epoch.unwrap_or(0);
            }
            ConsumerRecord::TargetAssignmentMember { member_id, assignment, .. } => match assignment {
                Some(assignment) => {
                    self.target.insert(member_id.clone(), assignment.clone());
                }
                None => {
                    self.target.remove(member_id);
                }
            },
            ConsumerRecord::CurrentMemberAssignment { member_id, value, .. } => {
                let current = value.clone().unwrap_or_default();
                let old = self.member_or_insert(member_id).clone();
                self.release(&old);
                for (topic_id, partitions) in current.assigned.iter().chain(&current.pending_revocation) {
                    for partition in partitions {
                        if let Some(previous) = self.owners.insert((*topic_id, *partition), member_id.clone()) {
                            if &previous != member_id {
                                tracing::warn!(group = %self.group_id, %topic_id, partition, %previous, member = %member_id,
                                    "replayed assignment takes a partition another member holds");
                            }
                        }
                    }
                }
                self.members.get_mut(member_id).expect("inserted above").current = current;
            }
        }
    }

    fn member_or_insert(&mut self, member_id: &str) -> &mut Member {
        self.members.entry(member_id.to_string()).or_insert_with(|| Member {
            member_id: member_id.to_string(),
            metadata: MemberMetadata::default(),
            current: CurrentAssignment::default(),
        })
    }

    fn release(&mut self, member: &Member) {
        for (topic_id, partitions) in member.current.assigned.iter().chain(&member.current.pending_revocation) {
            for partition in partitions {
                let key = (*topic_id, *partition);
                if self.owners.get(&key) == Some(&member.member_id) {
                    self.owners.remove(&key);
                }
            }
        }
    }

    /// Whether another member holds the partition.
    pub(crate) fn held_by_other(&self, member_id: &str, topic_id: Uuid, partition: i32) -> bool {
        self.owners.get(&(topic_id, partition)).is_some_and(|owner| owner != member_id)
    }

    /// Next current assignment of a member (Kafka's `CurrentAssignmentBuilder.build`).
    /// `owned` is what the client reported owning in this heartbeat (`None`: not reported).
    pub(crate) fn reconcile(
        &self,
        member_id: &str,
        current: &CurrentAssignment,
        owned: Option<&Assignment>,
    ) -> CurrentAssignment {
        match current.state {
            MemberState::Stable if current.member_epoch == self.target_epoch => current.clone(),
            MemberState::UnrevokedPartitions if owns_any(owned, &current.pending_revocation) => current.clone(),
            _ => self.next_assignment(member_id, current, owned),
        }
    }

    fn next_assignment(&self, member_id: &str, current: &CurrentAssignment, owned: Option<&Assignment>) -> CurrentAssignment {
        let empty = Assignment::new();
        let target = self.target.get(member_id).unwrap_or(&empty);
        let mut keep = Assignment::new();
        let mut revoke = Assignment::new();
        for (topic_id, partitions) in &current.assigned {
            let target_partitions = target.get(topic_id);
            for partition in partitions {
                let side = if target_partitions.is_some_and(|t| t.contains(partition)) { &mut keep } else { &mut revoke };
                side.entry(*topic_id).or_default().insert(*partition);
            }
        }
        if !revoke.is_empty() && owns_any(owned, &revoke) {
            // Revoke first, at the current epoch; new partitions come once the client confirms.
            return CurrentAssignment {
                member_epoch: current.member_epoch,
                previous_member_epoch: current.previous_member_epoch,
                state: MemberState::UnrevokedPartitions,
                assigned: keep,
                pending_revocation: revoke,
            };
        }
        let mut unreleased = false;
        for (topic_id, partitions) in target {
            for partition in partitions {
                if keep.get(topic_id).is_some_and(|kept| kept.contains(partition)) {
                    continue;
                }
                if self.held_by_other(member_id, *topic_id, *partition) {
                    unreleased = true;
                } else {
                    keep.entry(*topic_id).or_default().insert(*partition);
                }
            }
        }
        let previous_member_epoch =
            if current.member_epoch != self.target_epoch { current.member_epoch } else { current.previous_member_epoch };
        CurrentAssignment {
            member_epoch: self.target_epoch,
            previous_member_epoch,
            state: if unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable },
            assigned: keep,
            pending_revocation: Assignment::new(),
        }
    }
}

/// Whether the client still owns any of `partitions`. Not knowing counts as owning: a member that
/// did not report its partitions cannot be assumed to have revoked them.
fn owns_any(owned: Option<&Assignment>, partitions: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    partitions.iter().any(|(topic_id, partitions)| {
        owned
            .get(topic_id)
            .is_some_and(|owned_partitions| partitions.iter().any(|partition| owned_partitions.contains(partition)))
    })
}

/// Whether every owned partition is in `assigned` (`None` is not a subset: nothing to check).
pub(crate) fn is_subset(owned: Option<&Assignment>, assigned: &Assignment) -> bool {
    let Some(owned) = owned else {
        return false;
    };
    owned.iter().all(|(topic_id, partitions)| {
        partitions.is_empty() || assigned.get(topic_id).is_some_and(|assigned| partitions.is_subset(assigned))
    })
}
