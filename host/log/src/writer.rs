//! Stage one of the writer: it owns offsets and data.
//!
//! It takes requests in arrival order, gathers the appends that are waiting into one group,
//! assigns offsets (counting on the groups still being committed), lays the group's batches out
//! partition by partition, makes them durable with one data write, and hands the group to the
//! [`committer`](crate::committer), which creates its commit record and answers. Metadata
//! changes and housekeeping first drain the pipeline, so they see committed state only.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::BytesMut;
use object_store::ObjectStoreExt;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::commit::{Op, Relocation, TopicMeta};
use crate::committer::{Prepared, Stage2};
use crate::data::{DataSink, SinkError};
use crate::format::EncodedRecords;
use crate::metrics::LogMetrics;
use crate::paths::DataId;
use crate::topic::{CleanupPolicy, TopicConfig, valid_log_name};
use crate::{
    Appended, LogError, LogOptions, MAX_PARTITIONS, NewTopic, PartitionAppend, Shared, now_ms,
};

pub(crate) type AppendReply = oneshot::Sender<Result<Vec<Vec<Appended>>, LogError>>;

pub(crate) enum Request {
    Append {
        topic: String,
        parts: Vec<PartitionAppend>,
        reply: AppendReply,
    },
    Meta {
        req: MetaRequest,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
    /// A name for a data object written outside the writer (compaction).
    NewDataId {
        reply: oneshot::Sender<DataId>,
    },
    /// Commit a compaction (an [`Op::Compact`]) if the runs it replaces are still `snapshot`:
    /// `Ok(false)` when they are not (nothing was committed).
    Compact {
        op: Op,
        snapshot: Vec<crate::state::IndexEntry>,
        reply: oneshot::Sender<Result<bool, LogError>>,
    },
}

pub(crate) enum MetaRequest {
    Create(NewTopic),
    Update {
        name: String,
        partitions: Option<u32>,
        config: BTreeMap<String, Value>,
        spec: Value,
    },
    Delete(String),
}

/// Remembered `event_id`s of one topic, oldest first.
#[derive(Default)]
pub(crate) struct Dedup {
    ids: HashMap<Arc<str>, (u32, u64), foldhash::fast::RandomState>,
    order: VecDeque<(Instant, Arc<str>)>,
}

/// Remembered `event_id`s per topic id. Stage one adds; the committer forgets a failed group's.
#[derive(Default)]
pub(crate) struct DedupTable(HashMap<u64, Dedup>);

impl DedupTable {
    pub(crate) fn forget(&mut self, topic: u64, id: &str) {
        if let Some(d) = self.0.get_mut(&topic) {
            d.ids.remove(id);
        }
    }

    /// Remember `id` at `(partition, offset)`, first seen at `at`.
    pub(crate) fn remember(
        &mut self,
        topic: u64,
        id: Arc<str>,
        partition: u32,
        offset: u64,
        at: Instant,
    ) {
        let d = self.0.entry(topic).or_default();
        d.ids.insert(id.clone(), (partition, offset));
        d.order.push_back((at, id));
    }

    fn expire(&mut self, window: std::time::Duration, max: usize) {
        for d in self.0.values_mut() {
            while let Some((at, _)) = d.order.front() {
                if at.elapsed() < window && d.order.len() <= max {
                    break;
                }
                let (_, id) = d.order.pop_front().expect("front exists");
                d.ids.remove(&id);
            }
        }
    }
}

/// An `event_id` a group added to the dedup table, and where its record goes.
pub(crate) struct Remembered {
    pub topic: u64,
    pub partition: u32,
    pub offset: u64,
    pub id: Arc<str>,
}

/// One append request in flight, and the answer it will get.
pub(crate) struct Pending {
    pub reply: AppendReply,
    pub results: Vec<Vec<Appended>>,
}

type Group = Vec<(String, Vec<PartitionAppend>, AppendReply)>;

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub rx: mpsc::Receiver<Request>,
    pub sink: DataSink,
    pub opts: LogOptions,
    pub dedup: Arc<Mutex<DedupTable>>,
    pub stage2: mpsc::Sender<Stage2>,
    pub committer: Option<tokio::task::JoinHandle<()>>,
    /// Names data objects; unique within this epoch.
    pub data_seq: u64,
    /// Next offsets of partitions with groups still being committed.
    pub staged: HashMap<(u64, u32), u64>,
    /// The generation `staged` belongs to (see the committer).
    pub staged_generation: u64,
    /// A request that arrived while gathering a group and must wait for the next turn.
    pub held: Option<Request>,
}

impl Writer {
    pub(crate) async fn run(mut self) {
        // The first round one interval after start, not at once: nothing has aged yet.
        let period = self.opts.retention_interval;
        let mut housekeeping =
            tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let req = match self.held.take() {
                Some(r) => r,
                None => tokio::select! {
                    r = self.rx.recv() => match r {
                        Some(r) => r,
                        None => { self.finish().await; return; }
                    },
                    _ = housekeeping.tick() => { self.housekeeping().await; continue; }
                },
            };
            match req {
                Request::Close { reply } => {
                    self.finish().await;
                    let _ = reply.send(());
                    return;
                }
                Request::Meta { req, reply } => {
                    let r = self.meta(req).await;
                    let _ = reply.send(r);
                }
                Request::NewDataId { reply } => {
                    self.data_seq += 1;
                    let _ = reply.send(DataId {
                        epoch: self.shared.epoch,
                        seq: self.data_seq,
                    });
                }
                Request::Compact {
                    op,
                    snapshot,
                    reply,
                } => {
                    let r = self.compact(op, &snapshot).await;
                    let _ = reply.send(r);
                }
                Request::Append {
                    topic,
                    parts,
                    reply,
                } => {
                    let group = self.gather((topic, parts, reply)).await;
                    self.flush(group).await;
                }
            }
        }
    }

    /// Collect the appends waiting behind `first`, up to the flush window and size.
    async fn gather(&mut self, first: (String, Vec<PartitionAppend>, AppendReply)) -> Group {
        let size = |parts: &[PartitionAppend]| -> usize {
            parts.iter().map(|p| p.records.payload.len() + 48).sum()
        };
        let mut bytes = size(&first.1);
        let mut group = vec![first];
        let deadline = tokio::time::Instant::now() + self.opts.flush_window;
        while bytes < self.opts.flush_max_bytes {
            let next = if self.opts.flush_window.is_zero() {
                match self.rx.try_recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            } else {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(r)) => r,
                    _ => break,
                }
            };
            match next {
                Request::Append {
                    topic,
                    parts,
                    reply,
                } => {
                    bytes += size(&parts);
                    group.push((topic, parts, reply));
                }
                other => {
                    self.held = Some(other);
                    break;
                }
            }
        }
        group
    }

    /// Everything sent to the committer so far is committed (or failed) once this returns.
    async fn drain(&mut self) {
        let (tx, rx) = oneshot::channel();
        if self.stage2.send(Stage2::Barrier(tx)).await.is_ok() {
            let _ = rx.await;
        }
        // Nothing is in flight: committed state is the truth again.
        self.staged.clear();
    }

    async fn flush(&mut self, group: Group) {
        if let Some(e) = self.shared.fenced_error() {
            for (_, _, reply) in group {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation != self.staged_generation {
            // A commit failed and every group after it was refused: the committed state is
            // where offsets continue.
            self.drain().await;
            self.staged_generation = generation;
        }
        // Assign offsets after the committed state and the groups still in flight.
        let mut runs: BTreeMap<(u64, u32), Vec<(u64, EncodedRecords)>> = BTreeMap::new();
        let mut undo: HashMap<(u64, u32), Option<u64>> = HashMap::new();
        let mut remembered: Vec<Remembered> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut records = 0u64;
        let mut seal_keys: HashMap<u64, Option<Arc<crate::sealing::DataKey>>> = HashMap::new();
        {
            let state = self.shared.state.read().expect("state");
            let mut dedup = self.dedup.lock().expect("dedup");
            for (topic, parts, reply) in group {
                let Some(t) = state.topics.get(&topic) else {
                    let _ = reply.send(Err(LogError::TopicNotFound(topic)));
                    continue;
                };
                if let Some(p) = parts.iter().find(|p| p.partition >= t.meta.partitions) {
                    let _ = reply.send(Err(LogError::InvalidPartition {
                        topic,
                        partition: p.partition,
                        partitions: t.meta.partitions,
                    }));
                    continue;
                }
                let tid = t.meta.id;
                match self.shared.sealing_key(&topic, &t.meta) {
                    Ok(key) => {
                        seal_keys.insert(tid, key);
                    }
                    Err(e) => {
                        // Never stored in the clear: the append fails.
                        let _ = reply.send(Err(e));
                        continue;
                    }
                }
                let table = dedup.0.entry(tid).or_default();
                let mut results = Vec::with_capacity(parts.len());
                for part in parts {
                    let key = (tid, part.partition);
                    let committed = t.partitions[part.partition as usize].next_offset;
                    let base = *self.staged.get(&key).unwrap_or(&committed);
                    let (encoded, appended) = match assign(part, base, table, &mut remembered, tid)
                    {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::error!(error = %e, "re-encoding a batch without duplicates");
                            (None, Vec::new())
                        }
                    };
                    let dups = appended.iter().filter(|a| a.duplicate).count() as u64;
                    if dups > 0 {
                        self.shared
                            .metrics
                            .duplicates
                            .fetch_add(dups, Ordering::Relaxed);
                    }
                    while table.order.len() > self.opts.dedup_max_entries {
                        let (_, id) = table.order.pop_front().expect("not empty");
                        table.ids.remove(&id);
                    }
                    if let Some(enc) = encoded {
                        records += u64::from(enc.record_count);
                        undo.entry(key)
                            .or_insert_with(|| self.staged.get(&key).copied());
                        self.staged.insert(key, base + u64::from(enc.record_count));
                        runs.entry(key).or_default().push((base, enc));
                    }
                    results.push(appended);
                }
                pending.push(Pending { reply, results });
            }
        }
        if runs.is_empty() {
            // Nothing new (all duplicates, or all rejected).
            for p in pending {
                let _ = p.reply.send(Ok(p.results));
            }
            return;
        }

        // Lay the group out partition by partition: each partition's runs are contiguous, so
        // one index entry (and one ranged GET) covers them.
        let mut chunk = BytesMut::with_capacity(
            runs.values()
                .flatten()
                .map(|(_, e)| e.payload.len() + 48)
                .sum(),
        );
        let mut ops = Vec::with_capacity(runs.len());
        for ((topic, partition), list) in &runs {
            let start = chunk.len() as u64;
            let mut max_ts = i64::MIN;
            let mut last = 0;
            for (base, enc) in list {
                let seal = seal_keys.get(topic).and_then(|k| k.as_deref());
                let h = enc.to_batch(*base, &mut chunk, seal);
                max_ts = max_ts.max(h.max_timestamp);
                last = h.last_offset();
            }
            ops.push(Op::Append {
                topic: *topic,
                partition: *partition,
                base_offset: list[0].0,
                last_offset: last,
                max_ts,
                data: DataId { epoch: 0, seq: 0 }, // set once the data is written
                pos: start,
                len: chunk.len() as u64 - start,
                ids: remembered
                    .iter()
                    .filter(|r| r.topic == *topic && r.partition == *partition)
                    .map(|r| (r.offset, r.id.to_string()))
                    .collect(),
            });
        }
        let chunk = chunk.freeze();
        self.data_seq += 1;
        LogMetrics::inc(&self.shared.metrics.store_puts);
        let started = Instant::now();
        let written = self.sink.write(self.data_seq, chunk.clone()).await;
        self.time_data_write(started);
        let (data, base_pos, unsynced) = match written {
            Ok(w) => (w.id, w.pos, w.unsynced),
            Err(e) => {
                self.refuse(undo, &remembered, pending, e);
                return;
            }
        };
        for op in &mut ops {
            if let Op::Append { data: d, pos, .. } = op {
                *d = data;
                *pos += base_pos;
            }
        }
        self.hand_over(Prepared {
            generation,
            ops,
            chunk,
            data,
            base_pos,
            unsynced,
            records,
            pending,
            remembered,
        })
        .await;
        if crate::io_thread::on_log_thread() {
            // The committer shares this thread: let it finish this group (record, link,
            // answers) before the next one is gathered, which meanwhile grows.
            tokio::task::yield_now().await;
        }
    }

    fn time_data_write(&self, started: Instant) {
        self.shared
            .metrics
            .data_write_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// Send a prepared group to the committer (if it has stopped, its producers are told).
    async fn hand_over(&mut self, prepared: Prepared) {
        if let Err(mpsc::error::SendError(Stage2::Group(p))) =
            self.stage2.send(Stage2::Group(prepared)).await
        {
            for p in p.pending {
                let _ = p.reply.send(Err(LogError::Closed));
            }
        }
    }

    /// A group whose data could not be written: this group's offsets were the
    /// newest, so hand them back, forget its ids, and tell its producers.
    fn refuse(
        &mut self,
        undo: HashMap<(u64, u32), Option<u64>>,
        remembered: &[Remembered],
        pending: Vec<Pending>,
        e: SinkError,
    ) {
        LogMetrics::inc(&self.shared.metrics.store_errors);
        for (key, before) in undo {
            match before {
                Some(v) => self.staged.insert(key, v),
                None => self.staged.remove(&key),
            };
        }
        {
            let mut dedup = self.dedup.lock().expect("dedup");
            for r in remembered {
                dedup.forget(r.topic, &r.id);
            }
        }
        let e = LogError::Storage(e.to_string());
        for p in pending {
            let _ = p.reply.send(Err(e.clone()));
        }
    }

    /// Commit ops alone, after everything in flight.
    async fn commit_alone(&mut self, ops: Vec<Op>) -> Result<(), LogError> {
        let (tx, rx) = oneshot::channel();
        self.stage2
            .send(Stage2::Ops { ops, reply: tx })
            .await
            .map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    async fn meta(&mut self, req: MetaRequest) -> Result<(), LogError> {
        if let Some(e) = self.shared.fenced_error() {
            return Err(e);
        }
        self.drain().await;
        let op = {
            let state = self.shared.state.read().expect("state");
            match req {
                MetaRequest::Create(t) => {
                    if !valid_log_name(&t.name) {
                        return Err(LogError::InvalidTopicName(t.name));
                    }
                    if state.topics.contains_key(&t.name) {
                        return Err(LogError::TopicExists(t.name));
                    }
                    if t.partitions == 0 || t.partitions > MAX_PARTITIONS {
                        return Err(LogError::InvalidPartitionCount {
                            asked: t.partitions,
                            has: 0,
                            max: MAX_PARTITIONS,
                        });
                    }
                    TopicConfig::parse(&t.config)?;
                    Op::CreateTopic {
                        topic: TopicMeta {
                            id: state.next_topic_id.max(1),
                            name: t.name,
                            partitions: t.partitions,
                            config: t.config,
                            spec: t.spec,
                            created_ms: now_ms(),
                        },
                    }
                }
                MetaRequest::Update {
                    name,
                    partitions,
                    config,
                    spec,
                } => {
                    let t = state
                        .topics
                        .get(&name)
                        .ok_or_else(|| LogError::TopicNotFound(name.clone()))?;
                    let has = t.meta.partitions;
                    let partitions = partitions.unwrap_or(has);
                    if partitions < has || partitions > MAX_PARTITIONS {
                        return Err(LogError::InvalidPartitionCount {
                            asked: partitions,
                            has,
                            max: MAX_PARTITIONS,
                        });
                    }
                    TopicConfig::parse(&config)?;
                    Op::UpdateTopic {
                        name,
                        partitions,
                        config,
                        spec,
                    }
                }
                MetaRequest::Delete(name) => {
                    let t = state
                        .topics
                        .get(&name)
                        .ok_or_else(|| LogError::TopicNotFound(name.clone()))?;
                    self.dedup.lock().expect("dedup").0.remove(&t.meta.id);
                    Op::DeleteTopic { name }
                }
            }
        };
        self.commit_alone(vec![op]).await
    }

    /// Periodic work between groups: expire dedup entries, apply retention, delete data nobody
    /// references, checkpoint and collect garbage.
    async fn housekeeping(&mut self) {
        self.dedup
            .lock()
            .expect("dedup")
            .expire(self.opts.dedup_window, self.opts.dedup_max_entries);
        if self.shared.fenced_error().is_some() {
            return;
        }
        self.drain().await;
        if let Err(e) = self.retention().await {
            tracing::warn!(error = %e, "retention failed; will retry");
        }
        let (tx, rx) = oneshot::channel();
        if self.stage2.send(Stage2::Housekeep(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Trim runs past `retention.ms` / `retention.bytes`, then delete data objects that no
    /// index entry references any more.
    async fn retention(&mut self) -> Result<(), LogError> {
        let now = now_ms();
        let trims: Vec<Op> = {
            let state = self.shared.state.read().expect("state");
            let mut ops = Vec::new();
            for t in state.topics.values() {
                if t.config.cleanup_policy == CleanupPolicy::Compact {
                    continue;
                }
                for (i, p) in t.partitions.iter().enumerate() {
                    let mut bytes = p.bytes;
                    let mut start = p.start_offset;
                    for e in &p.entries {
                        let too_old = t.config.retention_ms.is_some_and(|ms| e.max_ts < now - ms);
                        let too_big = t
                            .config
                            .retention_bytes
                            .is_some_and(|max| bytes - e.len >= max as u64);
                        if !(too_old || too_big) {
                            break;
                        }
                        bytes -= e.len;
                        start = e.last_offset + 1;
                    }
                    if start > p.start_offset {
                        ops.push(Op::Trim {
                            topic: t.meta.id,
                            partition: i as u32,
                            start_offset: start,
                        });
                    }
                }
            }
            ops
        };
        if !trims.is_empty() {
            self.commit_alone(trims).await?;
        }
        if let Err(e) = self.merge_small_objects().await {
            tracing::warn!(error = %e, "merging small objects failed; will retry");
        }
        self.delete_unreferenced_data().await
    }

    /// Object stores: copy runs of small flush objects into one larger object each, then commit
    /// a `Relocate` that re-points the index. The small objects become unreferenced and are
    /// deleted right after. Bytes are copied as they are, so every run keeps its layout.
    async fn merge_small_objects(&mut self) -> Result<(), LogError> {
        let DataSink::Remote(_) = &self.sink else {
            return Ok(());
        };
        let small_below = (self.opts.merge_target_bytes / 4).max(1);
        let sizes: BTreeMap<DataId, u64> = {
            let state = self.shared.state.read().expect("state");
            let mut sizes = BTreeMap::new();
            for t in state.topics.values() {
                for p in &t.partitions {
                    for e in &p.entries {
                        *sizes.entry(e.data).or_insert(0) += e.len;
                    }
                }
            }
            sizes
        };
        let epoch = self.shared.epoch;
        let mut groups: Vec<Vec<DataId>> = Vec::new();
        let mut current: Vec<DataId> = Vec::new();
        let mut bytes = 0;
        for (id, size) in sizes {
            if id.epoch > epoch || size >= small_below {
                continue;
            }
            current.push(id);
            bytes += size;
            if bytes >= self.opts.merge_target_bytes {
                groups.push(std::mem::take(&mut current));
                bytes = 0;
            }
        }
        if current.len() >= self.opts.merge_min_objects {
            groups.push(current);
        }
        for group in groups {
            if group.len() < 2 {
                continue;
            }
            let store = self.shared.store.clone();
            self.shared
                .metrics
                .store_gets
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            let fetched: Vec<bytes::Bytes> =
                futures::future::try_join_all(group.iter().map(|id| {
                    let store = store.clone();
                    let path = crate::paths::data(*id);
                    async move { Ok::<_, LogError>(store.get(&path).await?.bytes().await?) }
                }))
                .await?;
            self.data_seq += 1;
            let to = DataId {
                epoch,
                seq: self.data_seq,
            };
            let mut merged = BytesMut::with_capacity(fetched.iter().map(bytes::Bytes::len).sum());
            let mut moves = Vec::with_capacity(group.len());
            for (from, b) in group.iter().zip(&fetched) {
                moves.push(Relocation {
                    from: *from,
                    to,
                    shift: merged.len() as u64,
                });
                merged.extend_from_slice(b);
            }
            LogMetrics::inc(&self.shared.metrics.store_puts);
            store
                .put(&crate::paths::data(to), merged.freeze().into())
                .await?;
            self.commit_alone(vec![Op::Relocate { moves }]).await?;
            self.shared.metrics.merges.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Ask the committer to delete data objects nobody references (it checks first that this
    /// writer still owns the log, and never touches a newer writer's objects).
    async fn delete_unreferenced_data(&mut self) -> Result<(), LogError> {
        let (tx, rx) = oneshot::channel();
        let active = self.sink.active();
        self.stage2
            .send(Stage2::DeleteUnreferenced { active, reply: tx })
            .await
            .map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    async fn finish(&mut self) {
        let (tx, rx) = oneshot::channel();
        if self.stage2.send(Stage2::Finish(tx)).await.is_ok() {
            let _ = rx.await;
        }
        if let Some(h) = self.committer.take() {
            let _ = h.await;
        }
        // Anything still queued gets a clear answer rather than a dropped channel.
        self.rx.close();
        while let Ok(req) = self.rx.try_recv() {
            match req {
                Request::Append { reply, .. } => {
                    let _ = reply.send(Err(LogError::Closed));
                }
                Request::Meta { reply, .. } => {
                    let _ = reply.send(Err(LogError::Closed));
                }
                Request::Compact { reply, .. } => {
                    let _ = reply.send(Err(LogError::Closed));
                }
                Request::Close { reply } => {
                    let _ = reply.send(());
                }
                Request::NewDataId { .. } => {}
            }
        }
    }

    /// Commit a compaction run, unless what it replaces changed since it read it (retention
    /// trimmed, a merge moved, the topic went): then nothing is committed (`Ok(false)`). An
    /// error leaves the commit's fate unknown (it may have landed).
    async fn compact(
        &mut self,
        op: Op,
        snapshot: &[crate::state::IndexEntry],
    ) -> Result<bool, LogError> {
        if let Some(e) = self.shared.fenced_error() {
            return Err(e);
        }
        let Op::Compact {
            topic,
            partition,
            from,
            to,
            ..
        } = &op
        else {
            unreachable!("only compactions come this way");
        };
        let unchanged = {
            let state = self.shared.state.read().expect("state");
            state
                .topic_by_id(*topic)
                .and_then(|t| t.partitions.get(*partition as usize))
                .and_then(|p| Some((p, p.runs_within(*from, *to)?)))
                .is_some_and(|(p, runs)| p.entries.range(runs).eq(snapshot.iter()))
        };
        if !unchanged {
            return Ok(false);
        }
        self.commit_alone(vec![op]).await.map(|()| true)
    }
}

/// Give `part`'s records offsets from `base`, dropping those whose `event_id` was seen before.
/// Returns the records to write (if any are left) and every record's position.
fn assign(
    part: PartitionAppend,
    base: u64,
    dedup: &mut Dedup,
    remembered: &mut Vec<Remembered>,
    topic: u64,
) -> Result<(Option<EncodedRecords>, Vec<Appended>), LogError> {
    let now = Instant::now();
    let mut out = Vec::with_capacity(part.event_ids.len());
    let mut keep = Vec::with_capacity(part.event_ids.len());
    let mut next = base;
    for id in &part.event_ids {
        match id.as_deref().and_then(|id| dedup.ids.get(id)) {
            Some(&(partition, offset)) => {
                out.push(Appended {
                    partition,
                    offset,
                    duplicate: true,
                });
                keep.push(false);
            }
            None => {
                if let Some(id) = id {
                    let id: Arc<str> = Arc::from(id.as_str());
                    dedup.ids.insert(id.clone(), (part.partition, next));
                    dedup.order.push_back((now, id.clone()));
                    remembered.push(Remembered {
                        topic,
                        partition: part.partition,
                        offset: next,
                        id,
                    });
                }
                out.push(Appended {
                    partition: part.partition,
                    offset: next,
                    duplicate: false,
                });
                keep.push(true);
                next += 1;
            }
        }
    }
    // Records without ids (event_ids shorter than the batch) are always kept.
    let kept = keep.iter().filter(|k| **k).count()
        + (part.records.record_count as usize).saturating_sub(keep.len());
    if kept == part.records.record_count as usize {
        for _ in keep.len()..part.records.record_count as usize {
            out.push(Appended {
                partition: part.partition,
                offset: next,
                duplicate: false,
            });
            next += 1;
        }
        return Ok((Some(part.records), out));
    }
    if kept == 0 {
        return Ok((None, out));
    }
    let records = part.records.records()?;
    let kept_records: Vec<_> = records
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.get(*i).copied().unwrap_or(true))
        .map(|(_, r)| r)
        .collect();
    for _ in keep.len()..part.records.record_count as usize {
        out.push(Appended {
            partition: part.partition,
            offset: next,
            duplicate: false,
        });
        next += 1;
    }
    Ok((
        Some(EncodedRecords::encode(
            &kept_records,
            part.records.compression,
        )),
        out,
    ))
}
