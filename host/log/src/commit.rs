//! Commit records: the unit of durability and of fencing.
//!
//! Every change to the log (a topic created, records appended, a partition trimmed) is an [`Op`]
//! inside a [`Commit`] at `wal/{seq}`, created only if absent (`PutMode::Create` on object
//! stores, `link()` on a local directory: see `commits.rs`). Sequence numbers are dense;
//! whoever creates `wal/{n}` first owns position `n`, so two writers can never both commit it.
//! A writer starts by committing a [`Op::Claim`] with a higher epoch than any before it; a writer
//! that then finds its next position taken by a later epoch knows it has been fenced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::paths::DataId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    pub seq: u64,
    pub epoch: u64,
    /// Wall-clock time of the commit (ms), for operators; never used for ordering.
    pub time_ms: i64,
    pub ops: Vec<Op>,
}

/// What a topic is, as created. Names are unique among live topics; ids are never reused, so a
/// topic deleted and created again never sees the old one's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub id: u64,
    pub name: String,
    pub partitions: u32,
    pub config: BTreeMap<String, Value>,
    /// The rest of the topic document (owner, description, schemaConfig, ...), kept as given.
    #[serde(default)]
    pub spec: Value,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// A writer takes ownership of the log with this epoch.
    Claim {
        epoch: u64,
    },
    CreateTopic {
        topic: TopicMeta,
    },
    UpdateTopic {
        name: String,
        partitions: u32,
        config: BTreeMap<String, Value>,
        spec: Value,
    },
    DeleteTopic {
        name: String,
    },
    /// Records `base_offset..=last_offset` of one partition sit at `pos..pos+len` of `data`.
    Append {
        topic: u64,
        partition: u32,
        base_offset: u64,
        last_offset: u64,
        max_ts: i64,
        data: DataId,
        pos: u64,
        len: u64,
        /// `(offset, event_id)` of the records whose producer gave an id, so idempotent produce
        /// survives a restart.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ids: Vec<(u64, String)>,
    },
    /// Records below `start_offset` are gone (retention).
    Trim {
        topic: u64,
        partition: u32,
        start_offset: u64,
    },
    /// Data objects were copied into larger ones: every run in `from` now sits `shift` bytes
    /// further into `to` (the merger of small flush objects).
    Relocate {
        moves: Vec<Relocation>,
    },
    /// Compaction rewrote the runs of one partition that lie within `from..=to` (whole index
    /// entries): they give way to `with`, which hold the surviving records of those offsets
    /// (the others are gone; offsets never move). Records below `cleaned_offset` are compacted.
    Compact {
        topic: u64,
        partition: u32,
        from: u64,
        to: u64,
        with: Vec<IndexEntry>,
        cleaned_offset: u64,
    },
}

/// Where one run of a partition's records is stored (an entry of the partition's index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub base_offset: u64,
    pub last_offset: u64,
    pub max_ts: i64,
    pub data: DataId,
    pub pos: u64,
    pub len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relocation {
    pub from: DataId,
    pub to: DataId,
    pub shift: u64,
}

impl Commit {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("commit serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Commit, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
