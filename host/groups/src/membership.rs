//! One consumer group's membership and partition ownership: Kafka's group protocol, driven by
//! the members' calls instead of JoinGroup/SyncGroup requests.
//!
//! - A member joins with its subscription and leaves by name, or is dropped when it has not
//!   been heard from for its session timeout.
//! - Every membership or subscription change starts a new generation with a new target
//!   assignment (see [`Strategy::assign`]).
//! - Ownership moves only through the owners: a partition is taken from a member on that
//!   member's own poll (so it stops fetching it and its position can be committed first) or
//!   when it leaves or times out; only then may the partition's new owner have it. So a
//!   partition is never owned by two members, even for a moment. The eager `range` protocol
//!   also waits until every member has given everything up before anyone gets anything.
//!
//! Pure: the time is an argument and storage is the caller's business.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::assignor::{Strategy, TopicPartition};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

#[derive(Debug, Clone)]
pub struct Member {
    /// Topics it subscribes to (resolved, for a pattern, by the caller).
    pub topics: BTreeSet<String>,
    pub session_timeout_ms: u64,
    pub last_seen_ms: i64,
    pub joined_ms: i64,
    /// The newest generation whose target it owns in full.
    synced: u32,
}

#[derive(Debug, Clone)]
struct Owner {
    member: String,
    generation: u32,
}

/// What a member's poll changed: partitions it no longer owns (commit their positions now),
/// partitions newly granted (find their starting positions), and everything it owns.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Poll {
    pub revoked: Vec<TopicPartition>,
    pub granted: Vec<TopicPartition>,
    pub owned: Vec<TopicPartition>,
}

#[derive(Debug, Clone)]
pub struct Membership {
    pub strategy: Strategy,
    pub generation: u32,
    members: BTreeMap<String, Member>,
    owners: BTreeMap<TopicPartition, Owner>,
    target: BTreeMap<String, BTreeSet<TopicPartition>>,
    /// The partition counts the target was computed from.
    partitions: BTreeMap<String, u32>,
}

impl Membership {
    pub fn new(strategy: Strategy) -> Membership {
        Membership {
            strategy,
            generation: 0,
            members: BTreeMap::new(),
            owners: BTreeMap::new(),
            target: BTreeMap::new(),
            partitions: BTreeMap::new(),
        }
    }

    pub fn members(&self) -> &BTreeMap<String, Member> {
        &self.members
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.get(id)
    }

    /// Partitions of the subscribed topics the last target was computed from.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.topics.clone())
            .collect()
    }

    /// Join, or change an existing member's subscription; either starts a rebalance.
    pub fn join(
        &mut self,
        id: &str,
        topics: BTreeSet<String>,
        session_timeout_ms: u64,
        now_ms: i64,
        partitions: BTreeMap<String, u32>,
    ) {
        match self.members.get_mut(id) {
            Some(m) if m.topics == topics => {
                m.last_seen_ms = now_ms;
                m.session_timeout_ms = session_timeout_ms;
                return;
            }
            Some(m) => {
                m.topics = topics;
                m.last_seen_ms = now_ms;
                m.session_timeout_ms = session_timeout_ms;
            }
            None => {
                self.members.insert(
                    id.to_owned(),
                    Member {
                        topics,
                        session_timeout_ms,
                        last_seen_ms: now_ms,
                        joined_ms: now_ms,
                        synced: 0,
                    },
                );
            }
        }
        self.rebalance(partitions);
    }

    /// A member leaves (or is removed): what it owned is free at once. Returns what it owned.
    pub fn leave(&mut self, id: &str, partitions: BTreeMap<String, u32>) -> Vec<TopicPartition> {
        if self.members.remove(id).is_none() {
            return Vec::new();
        }
        let released = self.release(id);
        self.rebalance(partitions);
        released
    }

    /// Drop members not heard from within their session timeout; returns them with what they
    /// owned.
    pub fn expire(
        &mut self,
        now_ms: i64,
        partitions: impl FnOnce() -> BTreeMap<String, u32>,
    ) -> Vec<(String, Vec<TopicPartition>)> {
        let dead: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now_ms - m.last_seen_ms > m.session_timeout_ms as i64)
            .map(|(id, _)| id.clone())
            .collect();
        if dead.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for id in dead {
            self.members.remove(&id);
            let released = self.release(&id);
            out.push((id, released));
        }
        self.rebalance(partitions());
        out
    }

    /// Recompute the target when the subscribed topics' partition counts changed (a topic was
    /// created, deleted or grew). Returns whether it did.
    pub fn refresh(&mut self, partitions: BTreeMap<String, u32>) -> bool {
        if partitions == self.partitions {
            return false;
        }
        self.rebalance(partitions);
        true
    }

    fn release(&mut self, id: &str) -> Vec<TopicPartition> {
        let mine: Vec<TopicPartition> = self
            .owners
            .iter()
            .filter(|(_, o)| o.member == id)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in &mine {
            self.owners.remove(tp);
        }
        mine
    }

    fn rebalance(&mut self, partitions: BTreeMap<String, u32>) {
        self.generation += 1;
        let subscriptions = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.topics.clone()))
            .collect();
        let owned = self
            .owners
            .iter()
            .map(|(tp, o)| (tp.clone(), o.member.clone()))
            .collect();
        self.target = self.strategy.assign(&subscriptions, &partitions, &owned);
        self.partitions = partitions;
    }

    /// Must `member` give `tp` up at its next poll?
    fn must_revoke(&self, tp: &TopicPartition, owner: &Owner) -> bool {
        let targeted = self
            .target
            .get(&owner.member)
            .is_some_and(|t| t.contains(tp));
        !targeted || (self.strategy.eager() && owner.generation < self.generation)
    }

    /// A member's call: its heartbeat, and the moment ownership changes for it. `None` when
    /// the member is not in the group.
    pub fn poll(&mut self, id: &str, now_ms: i64) -> Option<Poll> {
        let member = self.members.get_mut(id)?;
        member.last_seen_ms = now_ms;
        let mut out = Poll::default();
        let mine: Vec<(TopicPartition, Owner)> = self
            .owners
            .iter()
            .filter(|(_, o)| o.member == id)
            .map(|(tp, o)| (tp.clone(), o.clone()))
            .collect();
        for (tp, owner) in mine {
            if self.must_revoke(&tp, &owner) {
                self.owners.remove(&tp);
                out.revoked.push(tp);
            } else if let Some(o) = self.owners.get_mut(&tp) {
                o.generation = self.generation;
            }
        }
        // Eager: nobody gets anything while anyone still holds a partition of an older
        // generation.
        let barrier =
            self.strategy.eager() && self.owners.values().any(|o| o.generation < self.generation);
        let target = self.target.get(id).cloned().unwrap_or_default();
        if !barrier {
            for tp in &target {
                if !self.owners.contains_key(tp) {
                    self.owners.insert(
                        tp.clone(),
                        Owner {
                            member: id.to_owned(),
                            generation: self.generation,
                        },
                    );
                    out.granted.push(tp.clone());
                }
            }
        }
        out.owned = self.owned(id);
        if out.owned.len() == target.len() && out.owned.iter().all(|tp| target.contains(tp)) {
            self.members.get_mut(id).expect("member").synced = self.generation;
        }
        Some(out)
    }

    /// What `id` owns now.
    pub fn owned(&self, id: &str) -> Vec<TopicPartition> {
        self.owners
            .iter()
            .filter(|(_, o)| o.member == id)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Who owns `tp` now.
    pub fn owner(&self, tp: &TopicPartition) -> Option<&str> {
        self.owners.get(tp).map(|o| o.member.as_str())
    }

    /// The current generation's target for `id`.
    pub fn target(&self, id: &str) -> BTreeSet<TopicPartition> {
        self.target.get(id).cloned().unwrap_or_default()
    }

    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.owners.iter().any(|(tp, o)| self.must_revoke(tp, o)) {
            GroupState::PreparingRebalance
        } else if self.members.values().any(|m| m.synced < self.generation) {
            GroupState::CompletingRebalance
        } else {
            GroupState::Stable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn topics(t: &[&str]) -> BTreeSet<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    fn counts(n: u32) -> BTreeMap<String, u32> {
        BTreeMap::from([("t".to_string(), n)])
    }

    fn settle(g: &mut Membership, now: i64) {
        let ids: Vec<String> = g.members().keys().cloned().collect();
        for _ in 0..4 {
            for id in &ids {
                g.poll(id, now);
            }
        }
    }

    #[test]
    fn a_single_member_gets_everything_and_the_group_is_stable() {
        let mut g = Membership::new(Strategy::CooperativeSticky);
        assert_eq!(g.state(), GroupState::Empty);
        g.join("a", topics(&["t"]), 10_000, 0, counts(4));
        assert_eq!(g.state(), GroupState::CompletingRebalance);
        let p = g.poll("a", 1).unwrap();
        assert_eq!(p.granted.len(), 4);
        assert_eq!(g.state(), GroupState::Stable);
        assert_eq!(g.poll("nobody", 1), None);
    }

    #[test]
    fn cooperative_moves_a_partition_only_after_its_owner_gave_it_up() {
        let mut g = Membership::new(Strategy::CooperativeSticky);
        g.join("a", topics(&["t"]), 10_000, 0, counts(4));
        g.poll("a", 0);
        g.join("b", topics(&["t"]), 10_000, 0, counts(4));
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        // b asks first: nothing is free yet.
        assert!(g.poll("b", 1).unwrap().owned.is_empty());
        let a = g.poll("a", 2).unwrap();
        assert_eq!(a.revoked.len(), 2);
        assert_eq!(a.owned.len(), 2);
        assert_eq!(g.state(), GroupState::CompletingRebalance);
        let b = g.poll("b", 3).unwrap();
        assert_eq!(b.granted, a.revoked);
        assert_eq!(g.state(), GroupState::Stable);
    }

    #[test]
    fn eager_revokes_everything_and_waits_for_everyone() {
        let mut g = Membership::new(Strategy::Range);
        g.join("a", topics(&["t"]), 10_000, 0, counts(4));
        g.poll("a", 0);
        g.join("b", topics(&["t"]), 10_000, 0, counts(4));
        assert!(g.poll("b", 1).unwrap().owned.is_empty());
        let a = g.poll("a", 2).unwrap();
        assert_eq!(a.revoked.len(), 4, "eager gives up everything");
        assert_eq!(a.granted.len(), 2, "and takes its new range back");
        let b = g.poll("b", 3).unwrap();
        assert_eq!(b.granted.len(), 2);
        assert_eq!(g.state(), GroupState::Stable);
    }

    #[test]
    fn a_member_that_stops_calling_times_out_and_its_partitions_move() {
        let mut g = Membership::new(Strategy::CooperativeSticky);
        g.join("a", topics(&["t"]), 1_000, 0, counts(2));
        g.join("b", topics(&["t"]), 1_000, 0, counts(2));
        settle(&mut g, 0);
        assert_eq!(g.owned("a").len(), 1);
        g.poll("a", 900);
        assert!(g.expire(1_000, || counts(2)).is_empty());
        let gone = g.expire(1_500, || counts(2));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, "b");
        assert_eq!(g.poll("a", 1_500).unwrap().owned.len(), 2);
    }

    #[test]
    fn a_leaving_member_frees_its_partitions_at_once() {
        let mut g = Membership::new(Strategy::Range);
        g.join("a", topics(&["t"]), 10_000, 0, counts(3));
        g.join("b", topics(&["t"]), 10_000, 0, counts(3));
        settle(&mut g, 0);
        let held = g.owned("a");
        assert_eq!(g.leave("a", counts(3)), held);
        settle(&mut g, 1);
        assert_eq!(g.owned("b").len(), 3);
        assert_eq!(g.state(), GroupState::Stable);
        g.leave("b", counts(3));
        assert_eq!(g.state(), GroupState::Empty);
    }

    #[test]
    fn new_partitions_are_assigned_after_a_refresh() {
        let mut g = Membership::new(Strategy::CooperativeSticky);
        g.join("a", topics(&["t"]), 10_000, 0, counts(2));
        g.poll("a", 0);
        assert!(!g.refresh(counts(2)));
        assert!(g.refresh(counts(3)));
        assert_eq!(g.poll("a", 1).unwrap().granted.len(), 1);
    }

    /// Members join, leave, poll and time out at random; what each member believes it owns
    /// (the `owned` of its last poll, minus what it gave up) never overlaps another's, and the
    /// group always settles into a full, balanced assignment.
    #[test]
    fn no_partition_is_ever_owned_twice() {
        for strategy in [Strategy::Range, Strategy::CooperativeSticky] {
            let mut rng = StdRng::seed_from_u64(7);
            let mut g = Membership::new(strategy);
            let mut believed: BTreeMap<String, BTreeSet<TopicPartition>> = BTreeMap::new();
            let mut now = 0i64;
            for step in 0..5_000 {
                now += rng.random_range(0..200);
                let who = format!("m{}", rng.random_range(0..6));
                match rng.random_range(0..10) {
                    0 => {
                        g.join(&who, topics(&["t"]), 1_000, now, counts(12));
                        believed.entry(who).or_default();
                    }
                    1 => {
                        g.leave(&who, counts(12));
                        believed.remove(&who);
                    }
                    2 => {
                        for (id, _) in g.expire(now, || counts(12)) {
                            believed.remove(&id);
                        }
                    }
                    _ => {
                        if let Some(p) = g.poll(&who, now) {
                            believed.insert(who, p.owned.into_iter().collect());
                        }
                    }
                }
                let mut seen = BTreeSet::new();
                for set in believed.values() {
                    for tp in set {
                        assert!(seen.insert(tp.clone()), "step {step}: {tp:?} owned twice");
                    }
                }
            }
            // Everyone polls; the group settles.
            for id in believed.keys().cloned().collect::<Vec<_>>() {
                g.join(&id, topics(&["t"]), 1_000, now, counts(12));
            }
            settle(&mut g, now);
            if !g.members().is_empty() {
                assert_eq!(g.state(), GroupState::Stable, "{strategy:?}");
                let sizes: Vec<usize> = g.members().keys().map(|m| g.owned(m).len()).collect();
                assert_eq!(sizes.iter().sum::<usize>(), 12);
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{strategy:?} balanced: {sizes:?}");
            }
        }
    }
}
