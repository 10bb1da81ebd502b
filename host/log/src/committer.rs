//! Stage two of the writer: commit records, in order.
//!
//! It receives groups whose data is already durable, creates their commit records one after
//! another, applies each to the shared state and only then answers the producers. It also
//! commits metadata ops, checkpoints, garbage-collects commit records and manifests, and is
//! where fencing is detected. While it commits group `k`, stage one is already writing the data
//! of group `k + 1`.
//!
//! If a commit fails, every group prepared after it (its offsets counted on it) fails too: the
//! committer bumps the shared generation, and groups of an older generation are refused.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::sync::{mpsc, oneshot};

use crate::commit::{Commit, Op};
use crate::commits::{CommitStore, Created, Inline};
use crate::metrics::LogMetrics;
use crate::paths::{self, DataId};
use crate::recovery::list_seqs;
use crate::state::LogState;
use crate::writer::{DedupTable, Pending, Remembered};
use crate::{LogError, LogOptions, Shared, now_ms};

/// How much carried data (flushes made durable by their commit records) a segment takes
/// between its write-behind syncs.
const WRITE_BEHIND_BYTES: u64 = 1 << 20;

/// A group whose data is durable (or, locally, being written), waiting for its commit record.
pub(crate) struct Prepared {
    pub generation: u64,
    pub ops: Vec<Op>,
    pub chunk: Bytes,
    pub data: DataId,
    pub base_pos: u64,
    /// The segment, when the chunk is written there but not synced: the commit record carries
    /// the chunk, and the segment is synced before a checkpoint covers the record.
    pub unsynced: Option<Arc<File>>,
    pub records: u64,
    pub pending: Vec<Pending>,
    /// `event_id`s this group added to the dedup table, to forget if it fails.
    pub remembered: Vec<Remembered>,
}

pub(crate) enum Stage2 {
    Group(Prepared),
    /// Commit these ops alone (metadata, retention).
    Ops {
        ops: Vec<Op>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Answered once everything sent before it is committed or failed.
    Barrier(oneshot::Sender<()>),
    /// Checkpoint if due, collect garbage.
    Housekeep(oneshot::Sender<()>),
    /// Delete data objects no index entry references (the pipeline is drained; `active` is
    /// still being appended to).
    DeleteUnreferenced {
        active: Option<DataId>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Final checkpoint, then stop.
    Finish(oneshot::Sender<()>),
}

pub(crate) struct Committer {
    pub shared: Arc<Shared>,
    /// Where commit records are created (the fence) and read back.
    pub commits: CommitStore,
    pub rx: mpsc::Receiver<Stage2>,
    pub opts: LogOptions,
    pub dedup: Arc<Mutex<DedupTable>>,
    /// The position the next commit will try to create.
    pub next_seq: u64,
    /// When this writer last proved it still owns the log (a commit it created).
    pub last_proof: Instant,
    pub checkpointed_seq: u64,
    pub last_checkpoint: Instant,
    pub commits_since_checkpoint: u64,
    /// Manifests on the store, ascending; the newest two are kept.
    pub manifests: Vec<u64>,
    /// Commit records on the store and when this writer first knew of them.
    pub wal: VecDeque<(u64, Instant)>,
    /// Producer `event_id`s committed since the last checkpoint, for the next dedup delta.
    pub recent_ids: Vec<DedupRecord>,
    /// Dedup deltas on the store: `(seq, written at ms)`.
    pub dedup_objects: VecDeque<(u64, i64)>,
    /// The checkpoint being written in the background, if any (at most one).
    pub checkpointing: Option<tokio::task::JoinHandle<Checkpointed>>,
    /// Segments holding committed data that only commit records made durable: synced before
    /// the next checkpoint lets those records go.
    pub unsynced: Vec<Arc<File>>,
    /// Those handed to the checkpoint in flight: back to `unsynced` if its task dies.
    pub syncing: Vec<Arc<File>>,
    /// Carried data since the last write-behind sync, and that sync if it is still running.
    pub behind: (u64, Option<tokio::task::JoinHandle<std::io::Result<()>>>),
    /// A segment sync failed. Linux may have dropped the pages it could not write and report
    /// the next sync clean, so no later sync can be trusted: checkpoints stop, the commit
    /// records (with their data) are all kept, and a restart writes the data back from them.
    pub sync_failed: bool,
}

/// `(topic id, partition, offset, event_id, commit time ms)`.
pub(crate) type DedupRecord = (u64, u32, u64, String, i64);

impl Committer {
    pub(crate) async fn run(mut self) {
        while let Some(msg) = self.rx.recv().await {
            match msg {
                Stage2::Group(g) => self.group(g).await,
                Stage2::Ops { ops, reply } => {
                    let r = self.commit(ops).await.map(|_| ());
                    if r.is_ok() {
                        self.after_commit().await;
                    }
                    let _ = reply.send(r);
                }
                Stage2::Barrier(reply) => {
                    let _ = reply.send(());
                }
                Stage2::Housekeep(reply) => {
                    if self.fenced().is_none() {
                        self.after_commit().await;
                        self.collect_garbage().await;
                    }
                    let _ = reply.send(());
                }
                Stage2::DeleteUnreferenced { active, reply } => {
                    let _ = reply.send(self.delete_unreferenced_data(active).await);
                }
                Stage2::Finish(reply) => {
                    if self.fenced().is_none()
                        && let Err(e) = self.checkpoint().await
                    {
                        tracing::warn!(error = %e, "final checkpoint failed");
                    }
                    self.commits.settle().await;
                    let _ = reply.send(());
                    return;
                }
            }
        }
    }

    async fn group(&mut self, mut g: Prepared) {
        let current = self.shared.generation.load(Ordering::Acquire);
        let result = if g.generation != current {
            Err(LogError::Storage("an earlier flush failed; retry".into()))
        } else {
            let inline = g.unsynced.as_ref().map(|_| Inline {
                data: g.data,
                pos: g.base_pos,
                bytes: g.chunk.clone(),
            });
            self.commit_with(std::mem::take(&mut g.ops), inline.as_ref())
                .await
        };
        match result {
            Ok(commit) => {
                if let Some(file) = g.unsynced.take() {
                    self.write_behind(&file, g.chunk.len() as u64);
                    if !self.unsynced.iter().any(|f| Arc::ptr_eq(f, &file)) {
                        self.unsynced.push(file);
                    }
                }
                for op in &commit.ops {
                    if let Op::Append {
                        topic,
                        partition,
                        ids,
                        ..
                    } = op
                    {
                        for (offset, id) in ids {
                            self.recent_ids.push((
                                *topic,
                                *partition,
                                *offset,
                                id.clone(),
                                commit.time_ms,
                            ));
                        }
                    }
                }
                self.shared
                    .metrics
                    .observe_flush(g.records, g.chunk.len() as u64);
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
                            let at = (pos - g.base_pos) as usize;
                            cache.insert(g.data, *pos, g.chunk.slice(at..at + *len as usize));
                            self.shared.notify(*topic, *partition, last_offset + 1);
                        }
                    }
                }
                for p in g.pending {
                    let _ = p.reply.send(Ok(p.results));
                }
                self.after_commit().await;
            }
            Err(e) => {
                {
                    let mut dedup = self.dedup.lock().expect("dedup");
                    for r in &g.remembered {
                        dedup.forget(r.topic, &r.id);
                    }
                }
                // Groups prepared after this one counted on its offsets: refuse them too.
                if g.generation == current {
                    self.shared.generation.fetch_add(1, Ordering::AcqRel);
                }
                for p in g.pending {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Sync the segment in the background every [`WRITE_BEHIND_BYTES`] of carried data, so
    /// the disk writes it out steadily instead of all at once when the next checkpoint syncs
    /// it (a burst the commit log's syncs would queue behind), and recovery has less to check.
    fn write_behind(&mut self, file: &Arc<File>, bytes: u64) {
        use futures::FutureExt;
        self.behind.0 += bytes;
        if let Some(task) = self.behind.1.take_if(|t| t.is_finished()) {
            let failed = match task.now_or_never() {
                Some(Ok(Ok(()))) => None,
                Some(Ok(Err(e))) => Some(e.to_string()),
                Some(Err(e)) => Some(e.to_string()),
                None => Some("sync task lost".into()),
            };
            if let Some(e) = failed {
                tracing::error!(error = %e, "syncing a segment failed; checkpoints stop");
                LogMetrics::inc(&self.shared.metrics.store_errors);
                self.sync_failed = true;
            }
        }
        if self.behind.1.is_none() && self.behind.0 >= WRITE_BEHIND_BYTES {
            self.behind.0 = 0;
            let file = file.clone();
            self.behind.1 = Some(tokio::task::spawn_blocking(move || file.sync_data()));
        }
    }

    fn fenced(&self) -> Option<LogError> {
        self.shared.fenced_error()
    }

    /// Create the next commit record; on success apply it to the shared state.
    async fn commit(&mut self, ops: Vec<Op>) -> Result<Commit, LogError> {
        self.commit_with(ops, None).await
    }

    /// [`commit`](Self::commit), the record carrying `inline` (a flush whose data it makes
    /// durable).
    async fn commit_with(
        &mut self,
        ops: Vec<Op>,
        inline: Option<&Inline>,
    ) -> Result<Commit, LogError> {
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
        let started = Instant::now();
        let created = self
            .commits
            .create_with(&commit, inline, &self.shared.metrics)
            .await;
        self.shared
            .metrics
            .commit_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match created {
            Ok(Created::Yes) => {}
            Ok(Created::Taken) => {
                // Locally the link names its writer: a newer one fences this one, whether or
                // not its record is still kept (logs go once a checkpoint covers them).
                if let Some(by) = self.commits.taken_by(commit.seq).await?
                    && by != self.shared.epoch
                {
                    return Err(self.fence(by));
                }
                let stored = self
                    .commits
                    .read_record(commit.seq, &self.shared.metrics)
                    .await?;
                if let Some(data) = &stored.inline {
                    // Its segment is not in `unsynced` (that attempt was reported failed): make
                    // its data durable there before a checkpoint can cover the record.
                    self.commits.restore_data(vec![data.clone()]).await?;
                }
                let theirs = stored.commit;
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
                return Err(e);
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

    /// Delete data objects that no index entry references. Only a writer that still owns the
    /// log may, and only objects of its own or older epochs: a newer writer's objects are
    /// unknown to this one's index, not unreferenced, and an older writer (fenced) can no
    /// longer commit a reference to its leftovers.
    async fn delete_unreferenced_data(&mut self, active: Option<DataId>) -> Result<(), LogError> {
        if let Some(e) = self.fenced() {
            return Err(e);
        }
        if self.commits.exists(self.next_seq).await? {
            let theirs = self
                .commits
                .read(self.next_seq, &self.shared.metrics)
                .await?;
            return Err(self.fence(theirs.epoch.max(self.shared.epoch + 1)));
        }
        self.prove_ownership().await?;
        LogMetrics::inc(&self.shared.metrics.store_lists);
        let listed: Vec<DataId> = self
            .shared
            .store
            .list(Some(&Path::from(paths::DATA_DIR)))
            .try_filter_map(|m| futures::future::ready(Ok(paths::parse_data(&m.location))))
            .try_collect()
            .await?;
        let doomed: Vec<DataId> = {
            let pending = self
                .shared
                .pending_data
                .lock()
                .expect("pending data")
                .clone();
            let state = self.shared.state.read().expect("state");
            let mut ids: Vec<DataId> = listed
                .into_iter()
                .filter(|id| {
                    id.epoch <= self.shared.epoch
                        && Some(*id) != active
                        && !state.data_refs.contains_key(id)
                        && !pending.contains(id)
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        if doomed.is_empty() {
            return Ok(());
        }
        tracing::info!(count = doomed.len(), "deleting unreferenced data objects");
        {
            let mut cache = self.shared.cache.lock().expect("cache");
            for id in &doomed {
                cache.forget(*id);
                self.shared.reader.forget(*id);
            }
        }
        self.shared
            .metrics
            .data_objects_deleted
            .fetch_add(doomed.len() as u64, Ordering::Relaxed);
        delete_all(&self.shared, doomed.into_iter().map(paths::data).collect()).await;
        Ok(())
    }

    /// Checkpoint when due: take in a background checkpoint that has finished, and start the
    /// next one if it is time.
    async fn after_commit(&mut self) {
        if self.checkpointing.as_ref().is_some_and(|t| t.is_finished()) {
            let task = self.checkpointing.take().expect("checked above");
            self.checkpoint_landed(task.await).await;
        }
        let due = self.commits_since_checkpoint >= self.opts.checkpoint_commits
            || (self.commits_since_checkpoint > 0
                && self.last_checkpoint.elapsed() >= self.opts.checkpoint_interval);
        if due && self.checkpointing.is_none() {
            self.start_checkpoint();
        }
    }

    /// A checkpoint now, waiting for it (a clean stop): after any background one in flight.
    async fn checkpoint(&mut self) -> Result<(), LogError> {
        if let Some(task) = self.checkpointing.take() {
            self.checkpoint_landed(task.await).await;
        }
        self.start_checkpoint();
        match self.checkpointing.take() {
            Some(task) => {
                let res = task.await;
                let failed = match &res {
                    Ok(c) => c.result.as_ref().err().cloned(),
                    Err(e) => Some(LogError::Storage(format!("checkpoint task: {e}"))),
                };
                self.checkpoint_landed(res).await;
                failed.map_or(Ok(()), Err)
            }
            None => Ok(()),
        }
    }

    /// Copy the state (under the lock: a copy of the index, no serializing) and write it as a
    /// manifest in the background, so commits go on while a large index is serialized and
    /// stored. Later commit records go to a fresh local log, so the old ones can be deleted
    /// whole once a manifest covers them.
    fn start_checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        self.commits_since_checkpoint = 0;
        let state = {
            let state = self.shared.state.read().expect("state");
            if state.seq <= self.checkpointed_seq {
                return; // nothing new: no copy
            }
            state.clone()
        };
        if self.sync_failed {
            tracing::error!(
                "no checkpoint: a segment sync failed earlier; commit records are kept until a \
                 restart writes their data back"
            );
            return;
        }
        self.commits.seal();
        let ids = std::mem::take(&mut self.recent_ids);
        let segments = std::mem::take(&mut self.unsynced);
        self.syncing.clone_from(&segments);
        let shared = self.shared.clone();
        self.checkpointing = Some(tokio::spawn(write_checkpoint(shared, state, ids, segments)));
    }

    async fn checkpoint_landed(&mut self, res: Result<Checkpointed, tokio::task::JoinError>) {
        let c = match res {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint task failed; will retry");
                // It may have died before syncing them: the next checkpoint must.
                self.unsynced.append(&mut self.syncing);
                return;
            }
        };
        self.syncing.clear();
        if c.ids_stored {
            self.dedup_objects.push_back((c.seq, now_ms()));
        }
        self.sync_failed |= c.sync_failed;
        match c.result {
            Ok(()) => {
                LogMetrics::inc(&self.shared.metrics.checkpoints);
                self.checkpointed_seq = self.checkpointed_seq.max(c.seq);
                self.manifests.push(c.seq);
                self.collect_garbage().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed; will retry");
                if !c.ids_stored {
                    // Nowhere else yet: they go into the next attempt's delta.
                    let mut ids = c.ids;
                    ids.append(&mut self.recent_ids);
                    self.recent_ids = ids;
                }
            }
        }
    }

    /// Delete commit records a checkpoint covers (locally their logs at once, the links that
    /// fence positions once old enough) and all but the newest two manifests.
    async fn collect_garbage(&mut self) {
        let mut commits = Vec::new();
        while let Some(&(seq, seen)) = self.wal.front() {
            if seq > self.checkpointed_seq || seen.elapsed() < self.opts.wal_gc_min_age {
                break;
            }
            commits.push(seq);
            self.wal.pop_front();
        }
        self.commits
            .delete(commits, self.checkpointed_seq, &self.shared.metrics)
            .await;
        let mut doomed = Vec::new();
        while self.manifests.len() > 2 {
            doomed.push(paths::manifest(self.manifests.remove(0)));
        }
        let horizon = now_ms() - self.opts.dedup_window.as_millis() as i64;
        while let Some(&(seq, at)) = self.dedup_objects.front() {
            if at >= horizon {
                break;
            }
            doomed.push(paths::dedup(seq));
            self.dedup_objects.pop_front();
        }
        delete_all(&self.shared, doomed).await;
    }
}

/// What a background checkpoint did.
pub(crate) struct Checkpointed {
    seq: u64,
    /// The `event_id`s committed since the previous checkpoint ...
    ids: Vec<DedupRecord>,
    /// ... and whether they are on the store (as `dedup/{seq}`).
    ids_stored: bool,
    /// A segment sync failed (no later checkpoint may trust one).
    sync_failed: bool,
    result: Result<(), LogError>,
}

/// Store a checkpoint of `state`: the segments whose data only commit records made durable are
/// synced and the ids delta stored first (a manifest must never cover commits whose data or ids
/// are nowhere else), then the manifest, created once.
async fn write_checkpoint(
    shared: Arc<Shared>,
    state: LogState,
    ids: Vec<DedupRecord>,
    segments: Vec<Arc<File>>,
) -> Checkpointed {
    let seq = state.seq;
    let mut done = Checkpointed {
        seq,
        ids,
        ids_stored: false,
        sync_failed: false,
        result: Ok(()),
    };
    let metrics = &shared.metrics;
    if !segments.is_empty() {
        let synced =
            tokio::task::spawn_blocking(move || segments.iter().try_for_each(|f| f.sync_data()))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = synced {
            LogMetrics::inc(&metrics.store_errors);
            done.sync_failed = true;
            done.result = Err(LogError::Storage(format!("syncing a segment: {e}")));
            return done;
        }
    }
    if !done.ids.is_empty() {
        LogMetrics::inc(&metrics.store_puts);
        let body = serde_json::to_vec(&done.ids).expect("ids serialize");
        if let Err(e) = shared
            .store
            .put(&paths::dedup(seq), PutPayload::from(body))
            .await
        {
            LogMetrics::inc(&metrics.store_errors);
            done.result = Err(e.into());
            return done;
        }
        done.ids_stored = true;
    }
    let serialized = tokio::task::spawn_blocking(move || serde_json::to_vec(&state))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let bytes = match serialized {
        Ok(b) => b,
        Err(e) => {
            done.result = Err(LogError::Storage(format!("serializing a checkpoint: {e}")));
            return done;
        }
    };
    LogMetrics::inc(&metrics.store_puts);
    match shared
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
            LogMetrics::inc(&metrics.store_errors);
            done.result = Err(e.into());
        }
    }
    done
}

pub(crate) async fn delete_all(shared: &Shared, paths: Vec<Path>) {
    if paths.is_empty() {
        return;
    }
    let n = paths.len() as u64;
    let stream = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
    let res: Result<Vec<Path>, _> = shared.store.delete_stream(stream).try_collect().await;
    shared.metrics.store_deletes.fetch_add(n, Ordering::Relaxed);
    if let Err(e) = res {
        LogMetrics::inc(&shared.metrics.store_errors);
        tracing::warn!(error = %e, "deleting old objects failed; will retry");
    }
}
