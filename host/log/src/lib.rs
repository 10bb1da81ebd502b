//! # sluice-log: a partitioned, segmented, immutable log on object storage
//!
//! Records are appended to topics with N partitions; each partition's offsets are dense and never
//! reused. Everything that must survive lives in an [`ObjectStore`] (a local directory by
//! default, S3 for scale), laid out by [`paths`]:
//!
//! - **Group commit.** Appends from all partitions that arrive together are made durable by one
//!   data write ([`data`]: an fsync'd append to a local segment, or one new object on S3) and one
//!   commit record ([`commit`]) that indexes them. Requests per flush do not grow with the number
//!   of partitions. An append is acknowledged only after both are durable.
//! - **Fencing.** Commit records are created only if absent (`PutMode::Create`; a hard link on a
//!   local directory) at dense sequence numbers, so exactly one writer wins each position. A
//!   writer starts by claiming a new epoch; an older writer that then loses a position to a
//!   later epoch stops with [`LogError::Fenced`].
//! - **Recovery** reads the newest checkpoint (`manifest/`) and the commit records after it:
//!   never the data.
//! - **Reads** go through the in-memory index to ranged GETs, with a bounded cache of recent runs
//!   for tailing readers, and can start at an offset or a timestamp.
//! - **Retention** trims whole runs past `retention.ms` / `retention.bytes` and deletes data
//!   objects no index entry needs any more. On object stores small flush objects are merged
//!   into larger ones (a `Relocate` op re-points the index); key compaction plugs in at the
//!   same seam: write new data objects, commit ops that re-point the index.
//!
//! Writing is a two-stage pipeline: the [`writer`] owns offsets and data, the committer owns
//! commit records and the shared state; readers share the state behind a lock.

mod cache;
pub mod commit;
mod commits;
mod committer;
pub mod compaction;
pub mod data;
mod error;
pub mod format;
mod io_thread;
pub mod metrics;
pub mod partitioner;
pub mod paths;
mod reader;
pub mod record;
mod recovery;
pub mod sealing;
pub mod state;
pub mod topic;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use object_store::ObjectStore;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

pub use crate::commit::TopicMeta;
pub use crate::error::LogError;
pub use crate::format::EncodedRecords;
pub use crate::metrics::LogMetrics;
pub use crate::record::{Record, StoredRecord};
pub use crate::topic::{
    CleanupPolicy, Compression, TimestampType, TopicConfig, valid_log_name, valid_topic_name,
};

use crate::cache::RunCache;
use crate::metrics::LogMetrics as Metrics;
use crate::state::LogState;
use crate::writer::{MetaRequest, Request};

/// Where the log keeps its objects.
#[derive(Clone)]
pub enum Storage {
    /// A local directory: segments grow by fsync'd appends; objects are written with fsync.
    Local(PathBuf),
    /// Any object store (S3, ...): one object per flush.
    ObjectStore(Arc<dyn ObjectStore>),
}

/// Tuning knobs. Each trades latency against object-store cost or memory.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// How long a flush waits for more appends to join it. Zero: flush as soon as the previous
    /// flush is done (appends that arrive meanwhile form the next group). Locally a flush costs
    /// two fsyncs, so zero gives the lowest latency; on S3 each flush costs two PUTs, so a window
    /// of tens of milliseconds keeps the request rate (and the bill) bounded.
    pub flush_window: Duration,
    /// A flush closes early once it holds this many bytes.
    pub flush_max_bytes: usize,
    /// A local segment file is sealed once it reaches this size.
    pub segment_bytes: u64,
    /// Local directory only: a flush of at most this many bytes is also written into its
    /// commit record, so one device sync (the commit log's) makes it durable instead of two;
    /// its segment is synced before the next checkpoint. Above it, the data is synced in its
    /// segment first and written once. Zero: never.
    pub inline_max_bytes: usize,
    /// Write a checkpoint after this many commits ...
    pub checkpoint_commits: u64,
    /// ... or after this long, whichever comes first. Recovery replays at most this much.
    pub checkpoint_interval: Duration,
    /// Commit records are deleted only when a checkpoint covers them and they are at least this
    /// old. A writer that has not committed for half this long re-checks that it still owns the
    /// log before its next commit, so a stalled zombie can never reuse a deleted position.
    pub wal_gc_min_age: Duration,
    /// Memory for recently written runs (tailing readers are served from here).
    pub cache_bytes: usize,
    /// How long an `event_id` is remembered for idempotent produce ...
    pub dedup_window: Duration,
    /// ... and at most how many per topic.
    pub dedup_max_entries: usize,
    /// How often retention (and, on object stores, the merger) runs.
    pub retention_interval: Duration,
    /// Object stores only: flush objects smaller than this are merged into larger objects once
    /// at least `merge_min_objects` of them are waiting, so the object count stays bounded.
    /// (Local segments already grow by appends and are never merged.)
    pub merge_target_bytes: u64,
    pub merge_min_objects: usize,
    /// Compaction reads at most this many bytes per second (both passes count); 0: no limit.
    pub compaction_bytes_per_s: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            flush_window: Duration::ZERO,
            flush_max_bytes: 8 << 20,
            segment_bytes: 256 << 20,
            inline_max_bytes: 64 << 10,
            checkpoint_commits: 4096,
            checkpoint_interval: Duration::from_secs(10),
            wal_gc_min_age: Duration::from_secs(120),
            cache_bytes: 256 << 20,
            dedup_window: Duration::from_secs(600),
            dedup_max_entries: 1_000_000,
            retention_interval: Duration::from_secs(30),
            merge_target_bytes: 64 << 20,
            merge_min_objects: 16,
            compaction_bytes_per_s: 0,
        }
    }
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: u32,
    pub config: BTreeMap<String, Value>,
    pub spec: Value,
}

/// A topic as it is now.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub meta: TopicMeta,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    pub start_offset: u64,
    pub next_offset: u64,
    pub bytes: u64,
}

/// Records for one partition of an append.
#[derive(Debug, Clone)]
pub struct PartitionAppend {
    pub partition: u32,
    pub records: EncodedRecords,
    /// Per record, its idempotency key (`event_id`), if any.
    pub event_ids: Vec<Option<String>>,
}

/// Where one appended record ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub partition: u32,
    pub offset: u64,
    /// The record had been appended before (same `event_id`); this is the original position.
    pub duplicate: bool,
}

#[derive(Debug, Clone)]
pub struct ReadResult {
    pub records: Vec<StoredRecord>,
    /// The offset to read from next.
    pub next_offset: u64,
    pub start_offset: u64,
    pub high_watermark: u64,
}

/// The maximum partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

pub(crate) struct Shared {
    store: Arc<dyn ObjectStore>,
    /// Readers take it shared; only the writer task mutates it.
    state: RwLock<LogState>,
    /// High-watermark signals for long-polling readers, created on first wait.
    watchers: Mutex<HashMap<(u64, u32), watch::Sender<u64>>>,
    cache: Mutex<RunCache>,
    /// Reads runs that are not in the cache.
    reader: reader::RunReader,
    /// Set once another writer has taken over; every write fails from then on.
    fenced_by: AtomicU64,
    /// Bumped when a commit fails: groups prepared before the bump counted on it and fail too.
    generation: AtomicU64,
    closed: AtomicBool,
    metrics: Metrics,
    epoch: u64,
    /// Data objects written for a commit still to come (compaction): never collected as
    /// unreferenced meanwhile.
    pending_data: Mutex<std::collections::HashSet<paths::DataId>>,
    /// `LogOptions::compaction_bytes_per_s`.
    compaction_bytes_per_s: u64,
    /// The keys of sealed (PHI) topics, given by the log's owner.
    keyring: RwLock<Option<Arc<dyn sealing::Keyring>>>,
}

impl Shared {
    /// The key new batches of `topic` are sealed with (none for a topic stored in the clear).
    pub(crate) fn sealing_key(
        &self,
        topic: &str,
        meta: &commit::TopicMeta,
    ) -> Result<Option<Arc<sealing::DataKey>>, LogError> {
        if !sealing::sealed(meta) {
            return Ok(None);
        }
        match self.keyring.read().expect("keyring").as_ref() {
            None => Err(LogError::Sealed(format!(
                "topic `{topic}` is sealed (dataSensitivity PHI) and this log has no keyring"
            ))),
            Some(r) => r.sealing_key(topic).map(Some).map_err(LogError::Sealed),
        }
    }

    /// The key `id` that sealed batches of `topic` (looked up only when a batch is sealed).
    pub(crate) fn open_key(&self, topic: &str, id: u32) -> Result<Arc<sealing::DataKey>, String> {
        match self.keyring.read().expect("keyring").as_ref() {
            Some(r) => r.opening_key(topic, id),
            None => format::no_keys(id),
        }
    }

    /// What opens `topic`'s sealed batches, owned (for decoding on another thread).
    pub(crate) fn opener(
        &self,
        topic: &str,
    ) -> impl Fn(u32) -> Result<Arc<sealing::DataKey>, String> + Send + Sync + 'static {
        let ring = self.keyring.read().expect("keyring").clone();
        let topic = topic.to_owned();
        move |id| match &ring {
            Some(r) => r.opening_key(&topic, id),
            None => format::no_keys(id),
        }
    }
    fn fenced_error(&self) -> Option<LogError> {
        match self.fenced_by.load(Ordering::Acquire) {
            0 => None,
            by => Some(LogError::Fenced {
                epoch: self.epoch,
                by,
            }),
        }
    }

    fn notify(&self, topic: u64, partition: u32, high_watermark: u64) {
        if let Some(tx) = self
            .watchers
            .lock()
            .expect("watchers")
            .get(&(topic, partition))
        {
            tx.send_replace(high_watermark);
        }
    }
}

/// A handle on the log. Cheap to clone; every clone talks to the same writer.
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Request>,
    /// Resolves once the writer (and its committer) have stopped.
    writer: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
}

impl Log {
    /// Open (or create) the log: recover from the newest checkpoint and the commits after it,
    /// then claim a new writer epoch, fencing any previous writer.
    pub async fn open(storage: Storage, opts: LogOptions) -> Result<Log, LogError> {
        recovery::open(storage, opts).await
    }

    /// Has [`Log::close`] been called?
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// This writer's epoch.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }

    /// `Some(epoch)` of the writer that fenced this one.
    pub fn fenced_by(&self) -> Option<u64> {
        match self.shared.fenced_by.load(Ordering::Acquire) {
            0 => None,
            e => Some(e),
        }
    }

    /// Give the log the keys of its sealed (PHI) topics.
    pub fn set_keyring(&self, keyring: Arc<dyn sealing::Keyring>) {
        *self.shared.keyring.write().expect("keyring") = Some(keyring);
    }

    pub fn metrics(&self) -> &LogMetrics {
        &self.shared.metrics
    }

    pub async fn create_topic(&self, topic: NewTopic) -> Result<TopicInfo, LogError> {
        let name = topic.name.clone();
        self.meta(MetaRequest::Create(topic)).await?;
        self.topic(&name).ok_or(LogError::TopicNotFound(name))
    }

    /// Change a topic's config, document, or (only upward) its partition count.
    pub async fn update_topic(
        &self,
        name: &str,
        partitions: Option<u32>,
        config: BTreeMap<String, Value>,
        spec: Value,
    ) -> Result<TopicInfo, LogError> {
        self.meta(MetaRequest::Update {
            name: name.to_owned(),
            partitions,
            config,
            spec,
        })
        .await?;
        self.topic(name)
            .ok_or_else(|| LogError::TopicNotFound(name.into()))
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        self.meta(MetaRequest::Delete(name.to_owned())).await
    }

    /// A name for a new data object, unique in this writer's epoch.
    pub(crate) async fn new_data_id(&self) -> Result<paths::DataId, LogError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::NewDataId { reply }).await?;
        rx.await.map_err(|_| LogError::Closed)
    }

    /// Commit a compaction if the runs it replaces are still `snapshot` (`Ok(false)`: they
    /// are not, and nothing was committed).
    pub(crate) async fn commit_compaction(
        &self,
        op: commit::Op,
        snapshot: Vec<state::IndexEntry>,
    ) -> Result<bool, LogError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Compact {
            op,
            snapshot,
            reply,
        })
        .await?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    async fn meta(&self, req: MetaRequest) -> Result<(), LogError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Meta { req, reply }).await?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    async fn send(&self, req: Request) -> Result<(), LogError> {
        self.tx.send(req).await.map_err(|_| LogError::Closed)
    }

    pub fn topic(&self, name: &str) -> Option<TopicInfo> {
        let state = self.shared.state.read().expect("state");
        state.topics.get(name).map(topic_info)
    }

    /// Look at a topic in place, without copying it (for hot paths that need a few fields).
    pub fn inspect_topic<R>(
        &self,
        name: &str,
        f: impl FnOnce(&TopicMeta, &TopicConfig) -> R,
    ) -> Option<R> {
        let state = self.shared.state.read().expect("state");
        state.topics.get(name).map(|t| f(&t.meta, &t.config))
    }

    /// Topics whose names start with `prefix`, in name order.
    pub fn topics(&self, prefix: &str) -> Vec<TopicInfo> {
        let state = self.shared.state.read().expect("state");
        state
            .topics
            .range(prefix.to_owned()..)
            .take_while(|(n, _)| n.starts_with(prefix))
            .map(|(_, t)| topic_info(t))
            .collect()
    }

    /// Append records to partitions of `topic`. Returns, per [`PartitionAppend`] and per record,
    /// where it was stored. Resolves only once everything is durable.
    pub async fn append(
        &self,
        topic: &str,
        parts: Vec<PartitionAppend>,
    ) -> Result<Vec<Vec<Appended>>, LogError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Append {
            topic: topic.to_owned(),
            parts,
            reply,
        })
        .await?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    /// `(start_offset, high_watermark)` of a partition.
    pub fn offsets(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        let state = self.shared.state.read().expect("state");
        let p = partition_of(&state, topic, partition)?;
        Ok((p.start_offset, p.next_offset))
    }

    /// Every record of one partition in `[from, to)` that is still stored, oldest first, read
    /// in chunks; `each` returns `false` to stop early. `to` is capped at the high watermark
    /// as of the call.
    pub async fn scan(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        to: u64,
        mut each: impl FnMut(StoredRecord) -> bool,
    ) -> Result<(), LogError> {
        let (start, end) = self.offsets(topic, partition)?;
        let end = end.min(to);
        let mut at = from.max(start);
        while at < end {
            let r = self.read(topic, partition, at, 1_000, 8 << 20).await?;
            for s in r.records {
                if s.offset >= end || !each(s) {
                    return Ok(());
                }
            }
            if r.next_offset <= at {
                break;
            }
            at = r.next_offset;
        }
        Ok(())
    }

    /// Read records of one partition from `offset`, up to `max_records` and about `max_bytes`
    /// (at least one run is returned when there is data).
    pub async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadResult, LogError> {
        let mut looked_again = false;
        loop {
            match self
                .read_once(topic, partition, offset, max_records, max_bytes)
                .await
            {
                // A merge may have moved the runs (and deleted their old object) after we
                // looked them up: look again, once.
                Err(LogError::Storage(_)) if !looked_again => looked_again = true,
                r => return r,
            }
        }
    }

    async fn read_once(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadResult, LogError> {
        let (entries, start, hw) = {
            let state = self.shared.state.read().expect("state");
            let p = partition_of(&state, topic, partition)?;
            if offset < p.start_offset || offset > p.next_offset {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start: p.start_offset,
                    end: p.next_offset,
                });
            }
            let first = p.entries.partition_point(|e| e.last_offset < offset);
            let mut picked = Vec::new();
            let (mut bytes, mut records) = (0u64, 0u64);
            for e in p.entries.iter().skip(first) {
                if !picked.is_empty()
                    && (bytes + e.len > max_bytes as u64 || records >= max_records as u64)
                {
                    break;
                }
                bytes += e.len;
                records += e.last_offset + 1 - e.base_offset.max(offset);
                picked.push(*e);
            }
            (picked, p.start_offset, p.next_offset)
        };
        let runs = self.runs(&entries).await.map_err(|err| {
            match self.offsets(topic, partition) {
                // Retention removed a run while we were reading it.
                Ok((s, end)) if offset < s => LogError::OffsetOutOfRange {
                    offset,
                    start: s,
                    end,
                },
                _ => err,
            }
        })?;
        let mut out = Vec::new();
        let mut next = offset;
        let mut full = false;
        let open = |id| self.shared.open_key(topic, id);
        for (entry, bytes) in entries.iter().zip(runs) {
            for (off, record) in format::decode_batches(&bytes, &open)? {
                if off < next {
                    continue;
                }
                if out.len() >= max_records {
                    full = true;
                    break;
                }
                out.push(StoredRecord {
                    partition,
                    offset: off,
                    record,
                });
                next = off + 1;
            }
            if full {
                break;
            }
            // A compacted run may end in removed offsets: the next read starts after it.
            next = next.max(entry.last_offset + 1);
        }
        if entries.is_empty() {
            // Nothing stored from `offset` on: whatever was there was compacted away.
            next = next.max(hw);
        }
        Ok(ReadResult {
            records: out,
            next_offset: next,
            start_offset: start,
            high_watermark: hw,
        })
    }

    /// The bytes of index entries' runs: from the cache, the rest in one batch from the store.
    async fn runs(&self, entries: &[state::IndexEntry]) -> Result<Vec<Bytes>, LogError> {
        let mut out: Vec<Option<Bytes>> = Vec::with_capacity(entries.len());
        {
            let cache = self.shared.cache.lock().expect("cache");
            for e in entries {
                out.push(cache.get(e.data, e.pos));
            }
        }
        let hits = out.iter().filter(|b| b.is_some()).count() as u64;
        let m = &self.shared.metrics;
        m.cache_hits.fetch_add(hits, Ordering::Relaxed);
        m.cache_misses
            .fetch_add(entries.len() as u64 - hits, Ordering::Relaxed);
        let missing: Vec<reader::Run> = entries
            .iter()
            .zip(&out)
            .filter(|(_, b)| b.is_none())
            .map(|(e, _)| reader::Run {
                data: e.data,
                pos: e.pos,
                len: e.len,
            })
            .collect();
        let mut fetched = self.shared.reader.read(missing, m).await?.into_iter();
        Ok(out
            .into_iter()
            .map(|b| b.unwrap_or_else(|| fetched.next().expect("one fetched run per miss")))
            .collect())
    }

    /// The earliest offset whose record timestamp is at least `timestamp_ms`; the high
    /// watermark when there is none.
    pub async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<u64, LogError> {
        let (entry, hw) = {
            let state = self.shared.state.read().expect("state");
            let p = partition_of(&state, topic, partition)?;
            // Runs before the first one whose newest record reaches the time hold only older
            // records, so the answer is inside that run.
            (
                p.entries.iter().find(|e| e.max_ts >= timestamp_ms).copied(),
                p.next_offset,
            )
        };
        let Some(e) = entry else { return Ok(hw) };
        let bytes = self.runs(&[e]).await?.remove(0);
        Ok(
            format::decode_batches(&bytes, &|id| self.shared.open_key(topic, id))?
                .into_iter()
                .find(|(_, r)| r.timestamp >= timestamp_ms)
                .map_or(e.last_offset + 1, |(o, _)| o),
        )
    }

    /// Wait until the partition's high watermark passes `offset`, or `timeout` elapses.
    /// Returns the high watermark.
    pub async fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<u64, LogError> {
        let (id, hw) = {
            let state = self.shared.state.read().expect("state");
            let t = state
                .topics
                .get(topic)
                .ok_or_else(|| LogError::TopicNotFound(topic.into()))?;
            let p = t
                .partitions
                .get(partition as usize)
                .ok_or(LogError::InvalidPartition {
                    topic: topic.into(),
                    partition,
                    partitions: t.meta.partitions,
                })?;
            (t.meta.id, p.next_offset)
        };
        if hw > offset {
            return Ok(hw);
        }
        let mut rx = {
            let mut w = self.shared.watchers.lock().expect("watchers");
            w.entry((id, partition))
                .or_insert_with(|| watch::channel(hw).0)
                .subscribe()
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Re-read after subscribing: an append may have landed in between.
            let (_, now_hw) = self.offsets(topic, partition)?;
            if now_hw > offset {
                return Ok(now_hw);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(now_hw),
            }
        }
    }

    /// Flush everything pending, write a final checkpoint and stop the writer.
    pub async fn close(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Request::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
        let handle = self.writer.lock().expect("writer").take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}

fn partition_of<'a>(
    state: &'a LogState,
    topic: &str,
    partition: u32,
) -> Result<&'a state::PartitionState, LogError> {
    let t = state
        .topics
        .get(topic)
        .ok_or_else(|| LogError::TopicNotFound(topic.into()))?;
    t.partitions
        .get(partition as usize)
        .ok_or(LogError::InvalidPartition {
            topic: topic.into(),
            partition,
            partitions: t.meta.partitions,
        })
}

fn topic_info(t: &state::TopicState) -> TopicInfo {
    TopicInfo {
        meta: t.meta.clone(),
        config: t.config.clone(),
        partitions: t
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                start_offset: p.start_offset,
                next_offset: p.next_offset,
                bytes: p.bytes,
            })
            .collect(),
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
