//! Key compaction (`cleanup.policy = compact` or `delete,compact`), as Kafka does it: the newest
//! record per key survives, a null value (a tombstone) deletes its key and is itself removed
//! once older than `delete.retention.ms`, and offsets never change (a compacted offset is simply
//! absent).
//!
//! Which records survive is a [`Policy`]'s decision; the log does all the I/O:
//!
//! 1. the *cleanable* range is the partition's runs from its start up to the first run holding
//!    a record younger than `min.compaction.lag.ms`, whole runs only;
//! 2. the policy sees every record of the range once ([`Policy::observe`]), then again, in the
//!    same batches, and answers which survive ([`Policy::survivors`]);
//! 3. survivors are written into new data objects (sparse batches: their offsets, with gaps);
//! 4. one commit replaces the range's index entries with the new ones ([`Op::Compact`]), after
//!    the writer checked that nothing (retention, a merge) changed them meanwhile; otherwise
//!    the run is abandoned and its objects collected;
//! 5. the old objects are deleted once nothing references them.
//!
//! A reader sees the old runs or the new ones, never both: it looks runs up in the index under
//! its lock, and a run deleted under it is looked up again.
//!
//! Memory: a policy keeps what it needs per key (the built-in one, the newest offset of each
//! key); the runs are read a chunk at a time and the output written an object at a time.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use object_store::ObjectStoreExt;

use crate::commit::Op;
use crate::format::{self, EncodedRecords};
use crate::paths::{self, DataId};
use crate::record::Record;
use crate::state::IndexEntry;
use crate::{Log, LogError, now_ms};

/// Runs read at once while compacting.
const READ_CHUNK_BYTES: u64 = 1 << 20;
/// A new data object is closed once its survivors take this much.
const OBJECT_BYTES: usize = 32 << 20;
/// Records per batch in a compacted object.
const BATCH_RECORDS: usize = 4096;
/// Keys the built-in policies remember per run; past it the run ends early (at a run
/// boundary) and the rest waits for the next run.
pub const DEFAULT_MAX_KEYS: usize = 4_000_000;

/// What a policy sees of one record.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub headers: &'a [(String, Bytes)],
    /// `None`: a null value, a tombstone.
    pub value: Option<&'a [u8]>,
}

impl RecordView<'_> {
    /// A tombstone deletes its key: a null value, or (the explicit flag, for JSON documents
    /// that carry their deletion) a JSON object whose top-level `deleted` is `true`.
    pub fn tombstone(&self) -> bool {
        match self.value {
            None => true,
            Some(v) => flagged_deleted(v),
        }
    }
}

/// `{"deleted": true, ...}` at the top level; parsed only when the bytes name the field.
fn flagged_deleted(value: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Flag {
        #[serde(default)]
        deleted: bool,
    }
    value.first() == Some(&b'{')
        && value.windows(9).any(|w| w == b"\"deleted\"")
        && serde_json::from_slice::<Flag>(value).is_ok_and(|f| f.deleted)
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy cannot go on (a component that trapped, answered garbage, ...): the run is
    /// abandoned and retried later.
    #[error("compaction policy failed: {0}")]
    Failed(String),
}

/// What a policy's step resolves to (policies may call out: a WebAssembly component).
pub type PolicyFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, PolicyError>> + Send + 'a>>;

/// Decides which records survive a compaction run.
pub trait Policy: Send {
    /// First pass over the cleanable range, oldest first. `Ok(false)`: the policy cannot take
    /// more (its memory bound); the run ends after this batch.
    fn observe<'a, 'r: 'a>(&'a mut self, batch: &'a [RecordView<'r>]) -> PolicyFuture<'a, bool>;
    /// Second pass, the same batches in the same order: one answer per record, `true` to keep.
    fn survivors<'a, 'r: 'a>(
        &'a mut self,
        batch: &'a [RecordView<'r>],
    ) -> PolicyFuture<'a, Vec<bool>>;
}

/// Kafka's policy: the newest record per key survives; a newest record that is a tombstone
/// survives until `delete.retention.ms` after its timestamp. Keyless records are kept (nothing
/// can supersede them).
pub struct LatestPerKey {
    newest: HashMap<Bytes, u64, foldhash::fast::RandomState>,
    /// Tombstones older than this (ms since the epoch) are dropped.
    tombstones_before: i64,
    max_keys: usize,
}

impl LatestPerKey {
    pub fn new(now_ms: i64, delete_retention_ms: i64, max_keys: usize) -> LatestPerKey {
        LatestPerKey {
            newest: HashMap::default(),
            tombstones_before: now_ms.saturating_sub(delete_retention_ms),
            max_keys,
        }
    }
}

impl LatestPerKey {
    fn observe_now(&mut self, batch: &[RecordView<'_>]) -> bool {
        for r in batch {
            if let Some(k) = r.key {
                match self.newest.get_mut(k) {
                    Some(o) => *o = r.offset,
                    None => {
                        self.newest.insert(Bytes::copy_from_slice(k), r.offset);
                    }
                }
            }
        }
        self.newest.len() < self.max_keys
    }

    fn survivors_now(&self, batch: &[RecordView<'_>]) -> Vec<bool> {
        batch
            .iter()
            .map(|r| match r.key {
                None => true,
                Some(k) => {
                    self.newest.get(k) == Some(&r.offset)
                        && !(r.timestamp < self.tombstones_before && r.tombstone())
                }
            })
            .collect()
    }
}

impl Policy for LatestPerKey {
    fn observe<'a, 'r: 'a>(&'a mut self, batch: &'a [RecordView<'r>]) -> PolicyFuture<'a, bool> {
        let more = self.observe_now(batch);
        Box::pin(std::future::ready(Ok(more)))
    }

    fn survivors<'a, 'r: 'a>(
        &'a mut self,
        batch: &'a [RecordView<'r>],
    ) -> PolicyFuture<'a, Vec<bool>> {
        let keep = self.survivors_now(batch);
        Box::pin(std::future::ready(Ok(keep)))
    }
}

/// What one compaction run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Compacted {
    /// Offsets `[from, to]` were compacted (`None`: nothing was cleanable).
    pub range: Option<(u64, u64)>,
    pub records_in: u64,
    pub records_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Why a partition is due for compaction, if it is.
pub(crate) fn due(
    p: &crate::state::PartitionState,
    config: &crate::topic::TopicConfig,
    now: i64,
) -> bool {
    if !config.compacted() || p.entries.is_empty() {
        return false;
    }
    let (ratio, oldest_dirty) = p.dirty();
    ratio > 0.0
        && (ratio >= config.min_cleanable_dirty_ratio
            || config
                .max_compaction_lag_ms
                .zip(oldest_dirty)
                .is_some_and(|(lag, ts)| ts < now - lag))
}

impl Log {
    /// Compact one partition now with `policy` (see the module docs). Returns what was done;
    /// a run that lost a race with retention or a merge is abandoned with
    /// [`LogError::Storage`] and can simply be retried.
    pub async fn compact_with(
        &self,
        topic: &str,
        partition: u32,
        policy: &mut dyn Policy,
    ) -> Result<Compacted, LogError> {
        let now = now_ms();
        let (topic_id, compression, cleanable, seal) = {
            let state = self.shared.state.read().expect("state");
            let p = crate::partition_of(&state, topic, partition)?;
            let t = &state.topics[topic];
            // Survivors of a sealed topic are sealed again.
            let seal = self.shared.sealing_key(topic, &t.meta)?;
            let lag_edge = now - t.config.min_compaction_lag_ms;
            let cleanable: Vec<IndexEntry> = p
                .entries
                .iter()
                .take_while(|e| e.max_ts <= lag_edge)
                .copied()
                .collect();
            (t.meta.id, t.config.compression, cleanable, seal)
        };
        if cleanable.is_empty() {
            return Ok(Compacted::default());
        }
        let mut pace = Pace::new(self.shared.compaction_bytes_per_s);
        // Pass 1: the policy sees the range; it may end it early.
        let mut observed = 0;
        for chunk in chunks(&cleanable) {
            let runs = self.decoded(topic, chunk, &mut pace).await?;
            let mut more = true;
            for records in &runs {
                more = policy
                    .observe(&views(records))
                    .await
                    .map_err(|e| LogError::Storage(e.to_string()))?;
                observed += 1;
                if !more {
                    break;
                }
            }
            if !more {
                break;
            }
        }
        let range = &cleanable[..observed];
        let (from, to) = (range[0].base_offset, range[observed - 1].last_offset);

        // Pass 2: survivors into new objects, one index entry per object.
        let mut report = Compacted {
            range: Some((from, to)),
            ..Compacted::default()
        };
        let mut with = Vec::new();
        let mut written = Vec::new();
        let mut out = Output::new(compression, seal);
        let result = async {
            for chunk in chunks(range) {
                let runs = self.decoded(topic, chunk, &mut pace).await?;
                for (entry, records) in chunk.iter().zip(runs) {
                    report.bytes_in += entry.len;
                    report.records_in += records.len() as u64;
                    let keep = policy
                        .survivors(&views(&records))
                        .await
                        .map_err(|e| LogError::Storage(e.to_string()))?;
                    if keep.len() != records.len() {
                        return Err(LogError::Storage(format!(
                            "compaction policy answered {} times for {} records",
                            keep.len(),
                            records.len()
                        )));
                    }
                    out.cover(entry);
                    for ((offset, record), keep) in records.into_iter().zip(keep) {
                        if keep {
                            out.push(offset, record);
                        }
                    }
                    if out.bytes >= OBJECT_BYTES {
                        self.write_output(&mut out, &mut with, &mut written).await?;
                    }
                }
            }
            self.write_output(&mut out, &mut with, &mut written).await
        }
        .await;
        if let Err(e) = result {
            self.abandon(&written).await;
            return Err(e);
        }
        report.records_out = out.records_written;
        report.bytes_out = with.iter().map(|e| e.len).sum();
        let op = Op::Compact {
            topic: topic_id,
            partition,
            from,
            to,
            with,
            cleaned_offset: to + 1,
        };
        let committed = self.commit_compaction(op, range.to_vec()).await;
        self.shared
            .pending_data
            .lock()
            .expect("pending data")
            .retain(|d| !written.contains(d));
        match committed {
            Ok(true) => {}
            Ok(false) => {
                self.abandon(&written).await;
                return Err(LogError::Storage(
                    "the runs being compacted changed meanwhile (retention or a merge); abandoned"
                        .into(),
                ));
            }
            // The commit may have landed (the request failed, the record exists): the new
            // objects must stay. If it did not, nothing references them and housekeeping
            // deletes them (it runs only once the log knows its next commit position is free).
            Err(e) => return Err(e),
        }
        let m = &self.shared.metrics;
        m.compactions.fetch_add(1, Ordering::Relaxed);
        m.compacted_bytes_reclaimed.fetch_add(
            report.bytes_in.saturating_sub(report.bytes_out),
            Ordering::Relaxed,
        );
        Ok(report)
    }

    /// Compact one partition with the built-in policy (the newest record per key).
    pub async fn compact(&self, topic: &str, partition: u32) -> Result<Compacted, LogError> {
        let delete_retention_ms = self
            .inspect_topic(topic, |_, c| c.delete_retention_ms)
            .ok_or_else(|| LogError::TopicNotFound(topic.into()))?;
        let mut policy = LatestPerKey::new(now_ms(), delete_retention_ms, DEFAULT_MAX_KEYS);
        self.compact_with(topic, partition, &mut policy).await
    }

    /// Partitions of compacted topics due for a run: dirty enough, or holding a record older
    /// than `max.compaction.lag.ms` that was never compacted.
    pub fn compaction_due(&self) -> Vec<(String, u32)> {
        let now = now_ms();
        let state = self.shared.state.read().expect("state");
        let mut out = Vec::new();
        for (name, t) in &state.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                if due(p, &t.config, now) {
                    out.push((name.clone(), i as u32));
                }
            }
        }
        out
    }

    /// Every partition of every compacted topic: `(topic, partition, dirty ratio, newest-record
    /// time of its oldest uncompacted run)`.
    pub fn compaction_overview(&self) -> Vec<(String, u32, f64, Option<i64>)> {
        let state = self.shared.state.read().expect("state");
        let mut out = Vec::new();
        for (name, t) in state.topics.iter().filter(|(_, t)| t.config.compacted()) {
            for (i, p) in t.partitions.iter().enumerate() {
                let (ratio, oldest) = p.dirty();
                out.push((name.clone(), i as u32, ratio, oldest));
            }
        }
        out
    }

    /// `(dirty ratio, newest-record time of the oldest uncompacted run)` of a partition.
    pub fn dirty(&self, topic: &str, partition: u32) -> Result<(f64, Option<i64>), LogError> {
        let state = self.shared.state.read().expect("state");
        Ok(crate::partition_of(&state, topic, partition)?.dirty())
    }

    /// The records of `chunk`'s runs, read, then decoded off the async workers, at the pace
    /// compaction is allowed.
    async fn decoded(
        &self,
        topic: &str,
        chunk: &[IndexEntry],
        pace: &mut Pace,
    ) -> Result<Vec<Vec<(u64, Record)>>, LogError> {
        pace.spend(chunk.iter().map(|e| e.len).sum()).await;
        let runs = self.runs(chunk).await?;
        let open = self.shared.opener(topic);
        tokio::task::spawn_blocking(move || {
            runs.iter()
                .map(|r| format::decode_batches(r, &open))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        // Cancelled: the runtime running this is shutting down.
        .map_err(|_| LogError::Closed)?
        .map_err(LogError::from)
    }

    async fn write_output(
        &self,
        out: &mut Output,
        with: &mut Vec<IndexEntry>,
        written: &mut Vec<DataId>,
    ) -> Result<(), LogError> {
        let Some((entry_range, records)) = out.take() else {
            return Ok(());
        };
        let compression = out.compression;
        let seal = out.seal.clone();
        let (bytes, max_ts) =
            tokio::task::spawn_blocking(move || encode(&records, compression, seal.as_deref()))
                .await
                .map_err(|_| LogError::Closed)?;
        let data = self.new_data_id().await?;
        // Never collected as unreferenced while the run is in flight.
        self.shared
            .pending_data
            .lock()
            .expect("pending data")
            .insert(data);
        written.push(data);
        let len = bytes.len() as u64;
        crate::metrics::LogMetrics::inc(&self.shared.metrics.store_puts);
        self.shared
            .store
            .put(&paths::data(data), bytes.into())
            .await?;
        with.push(IndexEntry {
            base_offset: entry_range.0,
            last_offset: entry_range.1,
            max_ts,
            data,
            pos: 0,
            len,
        });
        Ok(())
    }

    /// Delete the objects of an abandoned run (best effort: what stays is unreferenced and is
    /// collected by the next housekeeping round).
    async fn abandon(&self, written: &[DataId]) {
        self.shared
            .pending_data
            .lock()
            .expect("pending data")
            .retain(|d| !written.contains(d));
        for d in written {
            if let Err(e) = self.shared.store.delete(&paths::data(*d)).await {
                tracing::debug!(error = %e, "deleting an abandoned compaction object; housekeeping will");
            }
        }
    }
}

/// Keeps a run's reading under a rate (`LogOptions::compaction_bytes_per_s`; 0: unlimited),
/// so compaction leaves the produce path its share of the cores and the disk.
struct Pace {
    bytes_per_s: u64,
    started: std::time::Instant,
    spent: u64,
}

impl Pace {
    fn new(bytes_per_s: u64) -> Pace {
        Pace {
            bytes_per_s,
            started: std::time::Instant::now(),
            spent: 0,
        }
    }

    async fn spend(&mut self, bytes: u64) {
        if self.bytes_per_s == 0 {
            return;
        }
        let due = std::time::Duration::from_secs_f64(self.spent as f64 / self.bytes_per_s as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        self.spent += bytes;
    }
}

/// Records that survived, with their offsets.
type Survivors = Vec<(u64, Record)>;

/// Survivors waiting to be written, and the offsets their object will cover.
struct Output {
    compression: crate::topic::Compression,
    /// `(base of the first run covered, last of the last)`.
    covered: Option<(u64, u64)>,
    records: Vec<(u64, Record)>,
    bytes: usize,
    records_written: u64,
    /// The key survivors are sealed with (a sealed topic's).
    seal: Option<std::sync::Arc<crate::sealing::DataKey>>,
}

impl Output {
    fn new(
        compression: crate::topic::Compression,
        seal: Option<std::sync::Arc<crate::sealing::DataKey>>,
    ) -> Output {
        Output {
            compression,
            seal,
            covered: None,
            records: Vec::new(),
            bytes: 0,
            records_written: 0,
        }
    }

    fn cover(&mut self, e: &IndexEntry) {
        self.covered = Some(match self.covered {
            None => (e.base_offset, e.last_offset),
            Some((base, _)) => (base, e.last_offset),
        });
    }

    fn push(&mut self, offset: u64, record: Record) {
        self.bytes += record.size();
        self.records.push((offset, record));
    }

    /// The covered offsets and their survivors; `None` when nothing survived (the covered
    /// offsets are simply gone).
    fn take(&mut self) -> Option<((u64, u64), Survivors)> {
        let covered = self.covered.take()?;
        let records = std::mem::take(&mut self.records);
        self.bytes = 0;
        if records.is_empty() {
            return None;
        }
        self.records_written += records.len() as u64;
        Some((covered, records))
    }
}

/// Survivors as sparse batches, and their newest timestamp.
fn encode(
    records: &[(u64, Record)],
    compression: crate::topic::Compression,
    seal: Option<&crate::sealing::DataKey>,
) -> (Bytes, i64) {
    let mut buf = BytesMut::new();
    let mut max_ts = i64::MIN;
    for batch in records.chunks(BATCH_RECORDS) {
        let base = batch[0].0;
        let enc =
            EncodedRecords::encode_sparse(batch.iter().map(|(o, r)| (o - base, r)), compression);
        max_ts = max_ts.max(enc.max_timestamp);
        enc.to_batch(base, &mut buf, seal);
    }
    (buf.freeze(), max_ts)
}

fn views(records: &[(u64, Record)]) -> Vec<RecordView<'_>> {
    records
        .iter()
        .map(|(offset, r)| RecordView {
            offset: *offset,
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            headers: &r.headers,
            value: r.value.as_deref(),
        })
        .collect()
}

/// Consecutive runs of about [`READ_CHUNK_BYTES`].
fn chunks(entries: &[IndexEntry]) -> impl Iterator<Item = &[IndexEntry]> {
    let mut rest = entries;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let n = rest
            .iter()
            .take_while(|e| {
                let fits = bytes == 0 || bytes + e.len <= READ_CHUNK_BYTES;
                bytes += e.len;
                fits
            })
            .count()
            .max(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}
