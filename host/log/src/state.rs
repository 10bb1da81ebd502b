//! The log's state: topics, partitions and their indexes, as of one commit sequence.
//!
//! Recovery and the live writer change it through the same [`LogState::apply`], so what a
//! restart rebuilds is exactly what the writer had. A checkpoint (manifest) is this struct
//! serialized.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::commit::{Op, TopicMeta};
use crate::paths::DataId;
use crate::topic::TopicConfig;

pub use crate::commit::IndexEntry;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionState {
    /// First offset still readable (raised by retention).
    pub start_offset: u64,
    /// Offset the next appended record gets (the high watermark).
    pub next_offset: u64,
    /// Runs of records in offset order. Between `start_offset` and `next_offset` an offset
    /// that no entry covers was removed by compaction.
    pub entries: VecDeque<IndexEntry>,
    /// Bytes referenced by `entries`.
    pub bytes: u64,
    /// Compacted topics: records below this offset have been through compaction (the rest is
    /// "dirty").
    #[serde(default)]
    pub cleaned_offset: u64,
}

impl PartitionState {
    /// The index positions of the runs lying wholly within offsets `from..=to`; `None` when a
    /// run straddles either edge.
    pub fn runs_within(&self, from: u64, to: u64) -> Option<std::ops::Range<usize>> {
        let first = self.entries.partition_point(|e| e.base_offset < from);
        let end = self.entries.partition_point(|e| e.last_offset <= to);
        let straddles_from = first > 0 && self.entries[first - 1].last_offset >= from;
        let straddles_to = self.entries.get(end).is_some_and(|e| e.base_offset <= to);
        (first <= end && !straddles_from && !straddles_to).then_some(first..end)
    }

    /// The share of the partition's bytes not yet through compaction, and the newest-record
    /// time of the oldest such run.
    pub fn dirty(&self) -> (f64, Option<i64>) {
        let first = self
            .entries
            .partition_point(|e| e.last_offset < self.cleaned_offset);
        let dirty: u64 = self.entries.iter().skip(first).map(|e| e.len).sum();
        let ratio = if self.bytes == 0 {
            0.0
        } else {
            dirty as f64 / self.bytes as f64
        };
        (ratio, self.entries.get(first).map(|e| e.max_ts))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicState {
    pub meta: TopicMeta,
    #[serde(skip)]
    pub config: TopicConfig,
    pub partitions: Vec<PartitionState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogState {
    /// The last commit applied.
    pub seq: u64,
    /// The highest writer epoch claimed so far.
    pub epoch: u64,
    pub next_topic_id: u64,
    pub topics: BTreeMap<String, TopicState>,
    /// Topic id → name, for ops that address topics by id.
    #[serde(skip)]
    names: HashMap<u64, String>,
    /// How many index entries point into each data object (retention deletes at zero).
    #[serde(skip)]
    pub data_refs: BTreeMap<DataId, u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("commit {seq} does not apply: {reason}")]
pub struct ApplyError {
    pub seq: u64,
    pub reason: String,
}

impl LogState {
    /// Rebuild derived fields after deserializing a checkpoint.
    pub fn restore(mut self) -> Result<LogState, ApplyError> {
        self.names.clear();
        self.data_refs.clear();
        for (name, t) in &mut self.topics {
            t.config = TopicConfig::parse(&t.meta.config).map_err(|e| ApplyError {
                seq: self.seq,
                reason: e.to_string(),
            })?;
            self.names.insert(t.meta.id, name.clone());
            for p in &t.partitions {
                for e in &p.entries {
                    *self.data_refs.entry(e.data).or_default() += 1;
                }
            }
        }
        Ok(self)
    }

    pub fn topic_by_id(&self, id: u64) -> Option<&TopicState> {
        self.names.get(&id).and_then(|n| self.topics.get(n))
    }

    /// Apply one committed op. Ops were validated before they were committed, so a failure here
    /// means the stored log is inconsistent.
    pub fn apply(&mut self, seq: u64, op: &Op) -> Result<(), ApplyError> {
        let fail = |reason: String| ApplyError { seq, reason };
        match op {
            Op::Claim { epoch } => {
                if *epoch <= self.epoch {
                    return Err(fail(format!(
                        "claim of epoch {epoch} after epoch {}",
                        self.epoch
                    )));
                }
                self.epoch = *epoch;
            }
            Op::CreateTopic { topic } => {
                if self.topics.contains_key(&topic.name) {
                    return Err(fail(format!("topic {} exists", topic.name)));
                }
                let config = TopicConfig::parse(&topic.config).map_err(|e| fail(e.to_string()))?;
                self.next_topic_id = self.next_topic_id.max(topic.id + 1);
                self.names.insert(topic.id, topic.name.clone());
                self.topics.insert(
                    topic.name.clone(),
                    TopicState {
                        meta: topic.clone(),
                        config,
                        partitions: vec![PartitionState::default(); topic.partitions as usize],
                    },
                );
            }
            Op::UpdateTopic {
                name,
                partitions,
                config,
                spec,
            } => {
                let t = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| fail(format!("no topic {name}")))?;
                t.config = TopicConfig::parse(config).map_err(|e| fail(e.to_string()))?;
                t.meta.config = config.clone();
                t.meta.spec = spec.clone();
                if (*partitions as usize) < t.partitions.len() {
                    return Err(fail("partition count cannot shrink".into()));
                }
                t.partitions
                    .resize(*partitions as usize, PartitionState::default());
                t.meta.partitions = *partitions;
            }
            Op::DeleteTopic { name } => {
                let t = self
                    .topics
                    .remove(name)
                    .ok_or_else(|| fail(format!("no topic {name}")))?;
                self.names.remove(&t.meta.id);
                for p in &t.partitions {
                    for e in &p.entries {
                        self.unref(e.data);
                    }
                }
            }
            Op::Append {
                topic,
                partition,
                base_offset,
                last_offset,
                max_ts,
                data,
                pos,
                len,
                ..
            } => {
                let name = self
                    .names
                    .get(topic)
                    .ok_or_else(|| fail(format!("no topic id {topic}")))?;
                let t = self.topics.get_mut(name).expect("names and topics agree");
                let p = t
                    .partitions
                    .get_mut(*partition as usize)
                    .ok_or_else(|| fail(format!("no partition {partition} in {name}")))?;
                if *base_offset != p.next_offset || last_offset < base_offset {
                    return Err(fail(format!(
                        "append {base_offset}..={last_offset} to {name}/{partition} at {}",
                        p.next_offset
                    )));
                }
                p.entries.push_back(IndexEntry {
                    base_offset: *base_offset,
                    last_offset: *last_offset,
                    max_ts: *max_ts,
                    data: *data,
                    pos: *pos,
                    len: *len,
                });
                p.next_offset = last_offset + 1;
                p.bytes += len;
                *self.data_refs.entry(*data).or_default() += 1;
            }
            Op::Trim {
                topic,
                partition,
                start_offset,
            } => {
                let Some(name) = self.names.get(topic).cloned() else {
                    return Ok(()); // the topic was deleted since; nothing to trim
                };
                let t = self.topics.get_mut(&name).expect("names and topics agree");
                let Some(p) = t.partitions.get_mut(*partition as usize) else {
                    return Err(fail(format!("no partition {partition} in {name}")));
                };
                let mut dropped = Vec::new();
                while let Some(e) = p.entries.front() {
                    if e.last_offset >= *start_offset {
                        break;
                    }
                    p.bytes -= e.len;
                    dropped.push(e.data);
                    p.entries.pop_front();
                }
                p.start_offset = p.start_offset.max((*start_offset).min(p.next_offset));
                for d in dropped {
                    self.unref(d);
                }
            }
            Op::Compact {
                topic,
                partition,
                from,
                to,
                with,
                cleaned_offset,
            } => {
                let Some(name) = self.names.get(topic).cloned() else {
                    return Err(fail(format!("no topic id {topic}")));
                };
                let t = self.topics.get_mut(&name).expect("names and topics agree");
                let p = t
                    .partitions
                    .get_mut(*partition as usize)
                    .ok_or_else(|| fail(format!("no partition {partition} in {name}")))?;
                let Some(runs) = p.runs_within(*from, *to) else {
                    return Err(fail(format!(
                        "compaction of {name}/{partition} {from}..={to} splits a run"
                    )));
                };
                let old: Vec<IndexEntry> = p
                    .entries
                    .splice_range(runs.start, runs.end, with.iter().copied())
                    .collect();
                for e in &old {
                    p.bytes -= e.len;
                }
                p.bytes += with.iter().map(|e| e.len).sum::<u64>();
                p.cleaned_offset = p.cleaned_offset.max(*cleaned_offset);
                for e in old {
                    self.unref(e.data);
                }
                for e in with {
                    *self.data_refs.entry(e.data).or_default() += 1;
                }
            }
            Op::Relocate { moves } => {
                let map: HashMap<DataId, (DataId, u64)> =
                    moves.iter().map(|m| (m.from, (m.to, m.shift))).collect();
                let mut moved = Vec::new();
                for t in self.topics.values_mut() {
                    for p in &mut t.partitions {
                        for e in &mut p.entries {
                            if let Some(&(to, shift)) = map.get(&e.data) {
                                moved.push((e.data, to));
                                e.data = to;
                                e.pos += shift;
                            }
                        }
                    }
                }
                for (from, to) in moved {
                    self.unref(from);
                    *self.data_refs.entry(to).or_default() += 1;
                }
            }
        }
        self.seq = seq;
        Ok(())
    }

    fn unref(&mut self, data: DataId) {
        if let Some(n) = self.data_refs.get_mut(&data) {
            *n -= 1;
            if *n == 0 {
                self.data_refs.remove(&data);
            }
        }
    }
}

/// `VecDeque` has no `splice`: replace `entries[first..end]` with `with`, returning the old.
trait SpliceRange<T> {
    fn splice_range(
        &mut self,
        first: usize,
        end: usize,
        with: impl Iterator<Item = T>,
    ) -> std::vec::IntoIter<T>;
}

impl<T> SpliceRange<T> for VecDeque<T> {
    fn splice_range(
        &mut self,
        first: usize,
        end: usize,
        with: impl Iterator<Item = T>,
    ) -> std::vec::IntoIter<T> {
        let tail = self.split_off(end);
        let old: Vec<T> = self.drain(first..).collect();
        self.extend(with);
        self.extend(tail);
        old.into_iter()
    }
}
