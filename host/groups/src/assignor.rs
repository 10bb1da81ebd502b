//! Partition assignment strategies, as Kafka's clients define them: `range` (per topic,
//! contiguous ranges, the first members get one more) and `cooperative-sticky` (balanced, and
//! keeping every partition where it is unless balance needs it moved).
//!
//! Both are pure functions of (members and what they subscribe to, partition counts, who owns
//! what now), deterministic, and sorted by member id so every run agrees.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One partition of one topic (the topic as the tenant names it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Strategy {
    /// Kafka's `RangeAssignor` with the eager protocol: every member gives up everything at a
    /// rebalance.
    #[serde(rename = "range")]
    Range,
    /// Kafka's `CooperativeStickyAssignor`: only partitions that move are given up.
    #[default]
    #[serde(rename = "cooperative-sticky")]
    CooperativeSticky,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "range" => Some(Strategy::Range),
            "cooperative-sticky" | "sticky" => Some(Strategy::CooperativeSticky),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Range => "range",
            Strategy::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Is every partition revoked at a rebalance (Kafka's eager protocol)?
    pub fn eager(self) -> bool {
        self == Strategy::Range
    }

    /// The target assignment: member → partitions. `subscriptions`: member → topics;
    /// `partitions`: topic → partition count (topics missing there have none); `owned`: who
    /// holds what now (only the sticky strategy looks at it).
    pub fn assign(
        self,
        subscriptions: &BTreeMap<String, BTreeSet<String>>,
        partitions: &BTreeMap<String, u32>,
        owned: &BTreeMap<TopicPartition, String>,
    ) -> BTreeMap<String, BTreeSet<TopicPartition>> {
        match self {
            Strategy::Range => range(subscriptions, partitions),
            Strategy::CooperativeSticky => sticky(subscriptions, partitions, owned),
        }
    }
}

fn empty_assignment(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    subscriptions
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect()
}

fn range(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut out = empty_assignment(subscriptions);
    let topics: BTreeSet<&String> = subscriptions.values().flatten().collect();
    for topic in topics {
        let n = partitions.get(topic).copied().unwrap_or(0);
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, t)| t.contains(topic))
            .map(|(m, _)| m)
            .collect();
        let (each, extra) = (n / members.len() as u32, n % members.len() as u32);
        let mut next = 0;
        for (i, m) in members.into_iter().enumerate() {
            let count = each + u32::from((i as u32) < extra);
            let set = out.get_mut(m).expect("every member has an entry");
            set.extend((next..next + count).map(|p| TopicPartition::new(topic.clone(), p)));
            next += count;
        }
    }
    out
}

fn sticky(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
    owned: &BTreeMap<TopicPartition, String>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut out = empty_assignment(subscriptions);
    let eligible = |m: &str, tp: &TopicPartition| {
        subscriptions
            .get(m)
            .is_some_and(|topics| topics.contains(&tp.topic))
    };
    let all: Vec<TopicPartition> = subscriptions
        .values()
        .flatten()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .flat_map(|t| {
            let n = partitions.get(t).copied().unwrap_or(0);
            (0..n).map(move |p| TopicPartition::new(t.clone(), p))
        })
        .collect();
    // Keep what each member owns and may still have.
    let mut free = Vec::new();
    for tp in all {
        match owned.get(&tp) {
            Some(m) if eligible(m, &tp) => {
                out.get_mut(m).expect("member").insert(tp);
            }
            _ => free.push(tp),
        }
    }
    // Hand out the rest, each to the eligible member holding the fewest.
    for tp in free {
        let least = out
            .iter()
            .filter(|(m, _)| eligible(m, &tp))
            .min_by_key(|(m, set)| (set.len(), *m))
            .map(|(m, _)| m.clone());
        if let Some(m) = least {
            out.get_mut(&m).expect("member").insert(tp);
        }
    }
    // Move partitions from the fullest to the emptiest member that may take them, until no
    // move makes the counts closer. Each move strictly reduces the sum of squared counts, so
    // this ends.
    loop {
        let mut best: Option<(String, String, TopicPartition)> = None;
        let mut by_size: Vec<(&String, usize)> = out.iter().map(|(m, s)| (m, s.len())).collect();
        by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        'search: for (from, big) in &by_size {
            for (to, small) in by_size.iter().rev() {
                if big <= &(small + 1) {
                    break;
                }
                if let Some(tp) = out[*from].iter().rev().find(|tp| eligible(to, tp)) {
                    best = Some(((*from).clone(), (*to).clone(), tp.clone()));
                    break 'search;
                }
            }
        }
        let Some((from, to, tp)) = best else { break };
        out.get_mut(&from).expect("member").remove(&tp);
        out.get_mut(&to).expect("member").insert(tp);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(list: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        list.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn counts(a: &BTreeMap<String, BTreeSet<TopicPartition>>) -> Vec<usize> {
        a.values().map(BTreeSet::len).collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_and_the_extra_to_the_first() {
        let s = subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let p = BTreeMap::from([("t".to_string(), 7)]);
        let a = Strategy::Range.assign(&s, &p, &BTreeMap::new());
        let parts = |m: &str| a[m].iter().map(|tp| tp.partition).collect::<Vec<_>>();
        assert_eq!(parts("a"), vec![0, 1, 2]);
        assert_eq!(parts("b"), vec![3, 4]);
        assert_eq!(parts("c"), vec![5, 6]);
    }

    #[test]
    fn range_works_per_topic() {
        // Kafka's known imbalance: two topics of one partition both land on the first member.
        let s = subs(&[("a", &["x", "y"]), ("b", &["x", "y"])]);
        let p = BTreeMap::from([("x".to_string(), 1), ("y".to_string(), 1)]);
        let a = Strategy::Range.assign(&s, &p, &BTreeMap::new());
        assert_eq!(counts(&a), vec![2, 0]);
    }

    #[test]
    fn sticky_balances_and_keeps_what_it_can() {
        let p = BTreeMap::from([("t".to_string(), 6)]);
        let s = subs(&[("a", &["t"]), ("b", &["t"])]);
        let first = Strategy::CooperativeSticky.assign(&s, &p, &BTreeMap::new());
        assert_eq!(counts(&first), vec![3, 3]);
        let owned: BTreeMap<TopicPartition, String> = first
            .iter()
            .flat_map(|(m, set)| set.iter().map(move |tp| (tp.clone(), m.clone())))
            .collect();
        // A third member joins: each old member gives up exactly one partition.
        let s3 = subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let second = Strategy::CooperativeSticky.assign(&s3, &p, &owned);
        assert_eq!(counts(&second), vec![2, 2, 2]);
        let kept = ["a", "b"]
            .iter()
            .map(|m| second[*m].intersection(&first[*m]).count())
            .sum::<usize>();
        assert_eq!(kept, 4, "only the two partitions c needs moved");
    }

    #[test]
    fn sticky_respects_subscriptions() {
        let p = BTreeMap::from([("x".to_string(), 4), ("y".to_string(), 2)]);
        let s = subs(&[("a", &["x"]), ("b", &["x", "y"]), ("c", &["y"])]);
        let a = Strategy::CooperativeSticky.assign(&s, &p, &BTreeMap::new());
        assert!(a["a"].iter().all(|tp| tp.topic == "x"));
        assert!(a["c"].iter().all(|tp| tp.topic == "y"));
        assert_eq!(a.values().map(BTreeSet::len).sum::<usize>(), 6);
        assert_eq!(counts(&a), vec![2, 2, 2]);
    }

    #[test]
    fn partitions_of_unknown_topics_and_more_members_than_partitions() {
        let p = BTreeMap::from([("t".to_string(), 2)]);
        let s = subs(&[("a", &["t", "gone"]), ("b", &["t"]), ("c", &["t"])]);
        for strategy in [Strategy::Range, Strategy::CooperativeSticky] {
            let a = strategy.assign(&s, &p, &BTreeMap::new());
            assert_eq!(a.len(), 3);
            assert_eq!(a.values().map(BTreeSet::len).sum::<usize>(), 2);
        }
    }
}
