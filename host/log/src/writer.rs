//! The single writer: it owns every change to the log.
//!
//! It takes requests in arrival order, gathers the appends that are waiting into one group,
//! assigns offsets, writes the group's data with one durable write, commits one record that
//! indexes it, and only then applies the change to the shared state and answers. Metadata
//! changes commit alone, between groups. It also checkpoints, garbage-collects commit records,
//! and runs retention, so none of that ever races a flush.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::BytesMut;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::commit::{Commit, Op, TopicMeta};
use crate::data::DataSink;
use crate::format::EncodedRecords;
use crate::metrics::LogMetrics;
use crate::paths::{self, DataId};
use crate::recovery::{list_seqs, read_commit};
use crate::state::LogState;
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
struct Dedup {
    ids: HashMap<String, (u32, u64)>,
    order: VecDeque<(Instant, String)>,
}

/// One append request being flushed, and the answer it will get.
struct Pending {
    reply: AppendReply,
    results: Vec<Vec<Appended>>,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Request>,
    sink: DataSink,
    opts: LogOptions,
    /// The position the next commit will try to create.
    next_seq: u64,
    /// When this writer last proved it still owns the log (a commit it created).
    last_proof: Instant,
    dedup: HashMap<u64, Dedup>,
    /// A request that arrived while gathering a group and must wait for the next turn.
    held: Option<Request>,
    checkpointed_seq: u64,
    last_checkpoint: Instant,
    commits_since_checkpoint: u64,
    /// Manifests on the store, ascending; the newest two are kept.
    manifests: Vec<u64>,
    /// Commit records on the store and when this writer first knew of them.
    wal: VecDeque<(u64, Instant)>,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: mpsc::Receiver<Request>,
        sink: DataSink,
        next_seq: u64,
        opts: LogOptions,
        checkpointed_seq: u64,
        manifests: Vec<u64>,
        wal: VecDeque<(u64, Instant)>,
    ) -> Writer {
        Writer {
            shared,
            rx,
            sink,
            opts,
            next_seq,
            last_proof: Instant::now(),
            dedup: HashMap::new(),
            held: None,
            checkpointed_seq,
            last_checkpoint: Instant::now(),
            commits_since_checkpoint: 0,
            manifests,
            wal,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut retention = tokio::time::interval(self.opts.retention_interval);
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let req = match self.held.take() {
                Some(r) => r,
                None => tokio::select! {
                    r = self.rx.recv() => match r {
                        Some(r) => r,
                        None => { self.finish().await; return; }
                    },
                    _ = retention.tick() => { self.housekeeping().await; continue; }
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
    async fn gather(
        &mut self,
        first: (String, Vec<PartitionAppend>, AppendReply),
    ) -> Vec<(String, Vec<PartitionAppend>, AppendReply)> {
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

    fn fenced(&self) -> Option<LogError> {
        match self.shared.fenced_by.load(Ordering::Acquire) {
            0 => None,
            by => Some(LogError::Fenced {
                epoch: self.shared.epoch,
                by,
            }),
        }
    }

    async fn flush(&mut self, group: Vec<(String, Vec<PartitionAppend>, AppendReply)>) {
        if let Some(e) = self.fenced() {
            for (_, _, reply) in group {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        // Assign offsets against the committed state; nothing changes it but this task.
        let mut runs: BTreeMap<(u64, u32), Vec<(u64, EncodedRecords)>> = BTreeMap::new();
        let mut next: HashMap<(u64, u32), u64> = HashMap::new();
        let mut remembered: Vec<(u64, String)> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut records = 0u64;
        {
            let state = self.shared.state.read().expect("state");
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
                let dedup = self.dedup.entry(tid).or_default();
                let mut results = Vec::with_capacity(parts.len());
                for part in parts {
                    let key = (tid, part.partition);
                    let base = *next
                        .entry(key)
                        .or_insert(t.partitions[part.partition as usize].next_offset);
                    let (encoded, appended) = match assign(part, base, dedup, &mut remembered, tid)
                    {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::error!(error = %e, "re-encoding a batch without duplicates");
                            (None, Vec::new())
                        }
                    };
                    if let Some(enc) = encoded {
                        records += u64::from(enc.record_count);
                        next.insert(key, base + u64::from(enc.record_count));
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
                let h = enc.to_batch(*base, &mut chunk);
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
            });
        }
        let chunk = chunk.freeze();
        let chunk_len = chunk.len() as u64;
        let seq = self.next_seq;
        let written = self.sink.write(seq, chunk.clone()).await;
        LogMetrics::inc(&self.shared.metrics.store_puts);
        let result = match written {
            Ok((data, base_pos)) => {
                for op in &mut ops {
                    if let Op::Append { data: d, pos, .. } = op {
                        *d = data;
                        *pos += base_pos;
                    }
                }
                self.commit(ops).await.map(|c| (c, data, base_pos))
            }
            Err(e) => {
                LogMetrics::inc(&self.shared.metrics.store_errors);
                Err(LogError::Storage(e.to_string()))
            }
        };
        match result {
            Ok((commit, data, base_pos)) => {
                self.shared.metrics.observe_flush(records, chunk_len);
                {
                    let mut cache = self.shared.cache.lock().expect("cache");
                    for op in &commit.ops {
                        if let Op::Append {
                            topic,
                            partition,
                            last_offset,
                            pos,
                            len,
                            ..
                        } = op
                        {
                            let at = (pos - base_pos) as usize;
                            cache.insert(data, *pos, chunk.slice(at..at + *len as usize));
                            self.shared.notify(*topic, *partition, last_offset + 1);
                        }
                    }
                }
                for p in pending {
                    let _ = p.reply.send(Ok(p.results));
                }
                self.after_commit().await;
            }
            Err(e) => {
                for (tid, id) in remembered {
                    if let Some(d) = self.dedup.get_mut(&tid) {
                        d.ids.remove(&id);
                    }
                }
                for p in pending {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Create the next commit record; on success apply it to the shared state.
    async fn commit(&mut self, ops: Vec<Op>) -> Result<Commit, LogError> {
        if let Some(e) = self.fenced() {
            return Err(e);
        }
        if self.last_proof.elapsed() > self.opts.wal_gc_min_age / 2 {
            self.prove_ownership().await?;
        }
        let commit = Commit {
            seq: self.next_seq,
            epoch: self.shared.epoch,
            time_ms: now_ms(),
            ops,
        };
        let bytes = commit.encode();
        LogMetrics::inc(&self.shared.metrics.store_puts);
        let put = self
            .shared
            .store
            .put_opts(
                &paths::commit(commit.seq),
                PutPayload::from(bytes),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                let theirs =
                    read_commit(&self.shared.store, commit.seq, &self.shared.metrics).await?;
                if theirs == commit {
                    // An earlier attempt of ours landed after all.
                } else if theirs.epoch != self.shared.epoch {
                    return Err(self.fence(theirs.epoch));
                } else {
                    // Our own earlier attempt, reported failed, did land: take it in, and let
                    // this group retry on top of it.
                    self.apply(&theirs)?;
                    self.next_seq += 1;
                    return Err(LogError::Storage(
                        "an earlier commit's outcome was uncertain; retry".into(),
                    ));
                }
            }
            Err(e) => {
                LogMetrics::inc(&self.shared.metrics.store_errors);
                return Err(e.into());
            }
        }
        self.apply(&commit)?;
        self.next_seq += 1;
        self.last_proof = Instant::now();
        self.wal.push_back((commit.seq, Instant::now()));
        self.commits_since_checkpoint += 1;
        LogMetrics::inc(&self.shared.metrics.commits);
        Ok(commit)
    }

    fn apply(&self, commit: &Commit) -> Result<(), LogError> {
        let mut state = self.shared.state.write().expect("state");
        for op in &commit.ops {
            state
                .apply(commit.seq, op)
                .map_err(|e| LogError::Corrupt(e.to_string()))?;
        }
        Ok(())
    }

    fn fence(&self, by: u64) -> LogError {
        tracing::error!(
            epoch = self.shared.epoch,
            by,
            "fenced: another writer owns the log"
        );
        self.shared.fenced_by.store(by, Ordering::Release);
        LogError::Fenced {
            epoch: self.shared.epoch,
            by,
        }
    }

    /// After a long pause, commit records this writer has not seen may already have been
    /// checkpointed and deleted by a newer writer; a newer manifest than our position says so.
    async fn prove_ownership(&mut self) -> Result<(), LogError> {
        let manifests = list_seqs(
            &self.shared.store,
            paths::MANIFEST_DIR,
            &self.shared.metrics,
        )
        .await?;
        if let Some(&newest) = manifests.last()
            && newest >= self.next_seq
        {
            LogMetrics::inc(&self.shared.metrics.store_gets);
            let bytes = self
                .shared
                .store
                .get(&paths::manifest(newest))
                .await?
                .bytes()
                .await?;
            let state: LogState = serde_json::from_slice(&bytes)
                .map_err(|e| LogError::Corrupt(format!("manifest {newest}: {e}")))?;
            return Err(self.fence(state.epoch.max(self.shared.epoch + 1)));
        }
        self.last_proof = Instant::now();
        Ok(())
    }

    async fn meta(&mut self, req: MetaRequest) -> Result<(), LogError> {
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
                    self.dedup.remove(&t.meta.id);
                    Op::DeleteTopic { name }
                }
            }
        };
        self.commit(vec![op]).await?;
        self.after_commit().await;
        Ok(())
    }

    /// Checkpoint when due, then delete what the checkpoint made unnecessary.
    async fn after_commit(&mut self) {
        let due = self.commits_since_checkpoint >= self.opts.checkpoint_commits
            || (self.commits_since_checkpoint > 0
                && self.last_checkpoint.elapsed() >= self.opts.checkpoint_interval);
        if due && let Err(e) = self.checkpoint().await {
            tracing::warn!(error = %e, "checkpoint failed; will retry");
        }
    }

    async fn checkpoint(&mut self) -> Result<(), LogError> {
        let (seq, bytes) = {
            let state = self.shared.state.read().expect("state");
            (
                state.seq,
                serde_json::to_vec(&*state).expect("state serializes"),
            )
        };
        self.last_checkpoint = Instant::now();
        self.commits_since_checkpoint = 0;
        if seq <= self.checkpointed_seq {
            return Ok(());
        }
        LogMetrics::inc(&self.shared.metrics.store_puts);
        match self
            .shared
            .store
            .put_opts(
                &paths::manifest(seq),
                PutPayload::from(bytes),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => {
                LogMetrics::inc(&self.shared.metrics.store_errors);
                return Err(e.into());
            }
        }
        LogMetrics::inc(&self.shared.metrics.checkpoints);
        self.checkpointed_seq = seq;
        self.manifests.push(seq);
        self.collect_garbage().await;
        Ok(())
    }

    /// Delete commit records a checkpoint covers (once old enough) and all but the newest two
    /// manifests.
    async fn collect_garbage(&mut self) {
        let mut doomed: Vec<Path> = Vec::new();
        while let Some(&(seq, seen)) = self.wal.front() {
            if seq > self.checkpointed_seq || seen.elapsed() < self.opts.wal_gc_min_age {
                break;
            }
            doomed.push(paths::commit(seq));
            self.wal.pop_front();
        }
        while self.manifests.len() > 2 {
            doomed.push(paths::manifest(self.manifests.remove(0)));
        }
        self.delete_all(doomed).await;
    }

    async fn delete_all(&self, paths: Vec<Path>) {
        if paths.is_empty() {
            return;
        }
        let n = paths.len() as u64;
        let stream = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let res: Result<Vec<Path>, _> = self.shared.store.delete_stream(stream).try_collect().await;
        self.shared
            .metrics
            .store_deletes
            .fetch_add(n, Ordering::Relaxed);
        if let Err(e) = res {
            LogMetrics::inc(&self.shared.metrics.store_errors);
            tracing::warn!(error = %e, "deleting old objects failed; will retry");
        }
    }

    /// Periodic work between flushes: expire dedup entries, apply retention, collect garbage.
    async fn housekeeping(&mut self) {
        self.expire_dedup();
        if self.fenced().is_some() {
            return;
        }
        if let Err(e) = self.retention().await {
            tracing::warn!(error = %e, "retention failed; will retry");
        }
        self.after_commit().await;
        self.collect_garbage().await;
    }

    fn expire_dedup(&mut self) {
        let window = self.opts.dedup_window;
        for d in self.dedup.values_mut() {
            while let Some((at, _)) = d.order.front() {
                if at.elapsed() < window && d.order.len() <= self.opts.dedup_max_entries {
                    break;
                }
                let (_, id) = d.order.pop_front().expect("front exists");
                d.ids.remove(&id);
            }
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
            self.commit(trims).await?;
        }
        self.delete_unreferenced_data().await
    }

    async fn delete_unreferenced_data(&mut self) -> Result<(), LogError> {
        LogMetrics::inc(&self.shared.metrics.store_lists);
        let listed: Vec<DataId> = self
            .shared
            .store
            .list(Some(&Path::from(paths::DATA_DIR)))
            .try_filter_map(|m| futures::future::ready(Ok(paths::parse_data(&m.location))))
            .try_collect()
            .await?;
        let doomed: Vec<DataId> = {
            let state = self.shared.state.read().expect("state");
            // Between flushes every data object of this writer is either committed or garbage,
            // so anything unreferenced and not being appended to can go.
            listed
                .into_iter()
                .filter(|id| !state.data_refs.contains_key(id) && !self.sink.is_active(*id))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect()
        };
        if doomed.is_empty() {
            return Ok(());
        }
        {
            let mut cache = self.shared.cache.lock().expect("cache");
            for id in &doomed {
                cache.forget(*id);
            }
        }
        self.shared
            .metrics
            .data_objects_deleted
            .fetch_add(doomed.len() as u64, Ordering::Relaxed);
        self.delete_all(doomed.into_iter().map(paths::data).collect())
            .await;
        Ok(())
    }

    async fn finish(&mut self) {
        if self.fenced().is_none()
            && let Err(e) = self.checkpoint().await
        {
            tracing::warn!(error = %e, "final checkpoint failed");
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
                Request::Close { reply } => {
                    let _ = reply.send(());
                }
            }
        }
    }
}

/// Give `part`'s records offsets from `base`, dropping those whose `event_id` was seen before.
/// Returns the records to write (if any are left) and every record's position.
fn assign(
    part: PartitionAppend,
    base: u64,
    dedup: &mut Dedup,
    remembered: &mut Vec<(u64, String)>,
    topic: u64,
) -> Result<(Option<EncodedRecords>, Vec<Appended>), LogError> {
    let mut out = Vec::with_capacity(part.event_ids.len());
    let mut keep = Vec::with_capacity(part.event_ids.len());
    let mut next = base;
    for id in &part.event_ids {
        match id.as_ref().and_then(|id| dedup.ids.get(id)) {
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
                    dedup.ids.insert(id.clone(), (part.partition, next));
                    dedup.order.push_back((Instant::now(), id.clone()));
                    remembered.push((topic, id.clone()));
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
