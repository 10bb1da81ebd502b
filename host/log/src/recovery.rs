//! Opening the log: read the newest checkpoint, replay the commits after it, claim a new epoch.
//! The only data read here is what those commits' records carry (small local flushes), checked
//! against their segments; so start-up time depends on the number of commits since the last
//! checkpoint, not on how much data is stored.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::{mpsc, oneshot};

use crate::cache::RunCache;
use crate::commit::{Commit, Op};
use crate::commits::{CommitStore, Created};
use crate::committer::{Committer, DedupRecord};
use crate::data::{DataSink, LocalSegments, RemoteObjects};
use crate::metrics::LogMetrics;
use crate::paths;
use crate::state::LogState;
use crate::writer::{DedupTable, Writer};
use crate::{Log, LogError, LogOptions, Shared, Storage, now_ms};

/// How many times opening retries its claim while another writer keeps committing.
const CLAIM_ATTEMPTS: usize = 64;

/// How many times opening starts over because a writer still running checkpointed meanwhile.
const OPEN_ATTEMPTS: usize = 4;

pub(crate) async fn open(storage: Storage, opts: LogOptions) -> Result<Log, LogError> {
    for _ in 1..OPEN_ATTEMPTS {
        if let Some(log) = open_once(storage.clone(), opts.clone()).await? {
            return Ok(log);
        }
        tracing::info!("a newer checkpoint appeared while opening the log; starting over");
    }
    open_once(storage, opts).await?.ok_or_else(|| {
        LogError::Storage("could not open the log: another writer keeps checkpointing".into())
    })
}

/// Open the log, or `None` when a writer still running wrote a newer checkpoint meanwhile
/// and let go of commit records this one was reading (locally a checkpoint deletes the logs it
/// covers at once): start again from that checkpoint.
async fn open_once(storage: Storage, opts: LogOptions) -> Result<Option<Log>, LogError> {
    let (store, local_root): (Arc<dyn ObjectStore>, _) = match storage {
        Storage::Local(root) => {
            std::fs::create_dir_all(&root)
                .map_err(|e| LogError::Storage(format!("{}: {e}", root.display())))?;
            let root = root
                .canonicalize()
                .map_err(|e| LogError::Storage(format!("{}: {e}", root.display())))?;
            let fs = LocalFileSystem::new_with_prefix(&root)?.with_fsync(true);
            (Arc::new(fs), Some(root))
        }
        Storage::ObjectStore(store) => (store, None),
    };
    let metrics = LogMetrics::default();

    let manifests = list_seqs(&store, paths::MANIFEST_DIR, &metrics).await?;
    let mut state = match manifests.last() {
        Some(&seq) => {
            LogMetrics::inc(&metrics.store_gets);
            let bytes = store.get(&paths::manifest(seq)).await?.bytes().await?;
            let state: LogState = serde_json::from_slice(&bytes)
                .map_err(|e| LogError::Corrupt(format!("manifest {seq}: {e}")))?;
            state
                .restore()
                .map_err(|e| LogError::Corrupt(e.to_string()))?
        }
        None => LogState::default(),
    };
    let checkpointed = state.seq;

    let mut commits_store = match &local_root {
        Some(root) => CommitStore::local(root.clone()),
        None => CommitStore::Remote(store.clone()),
    };
    let all_wal = commits_store.list(&metrics).await?;
    let wal: Vec<u64> = all_wal.iter().copied().filter(|s| *s > state.seq).collect();
    let newer_checkpoint = async || -> Result<bool, LogError> {
        let now = list_seqs(&store, paths::MANIFEST_DIR, &metrics).await?;
        Ok(now.last() != manifests.last())
    };
    let stored = match commits_store.read_stored(&wal, &metrics).await {
        Ok(s) => s,
        Err(_) if newer_checkpoint().await? => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut inline = Vec::new();
    let mut commits = Vec::with_capacity(stored.len());
    for s in stored {
        inline.extend(s.inline);
        commits.push(s.commit);
    }
    for c in &commits {
        if c.seq != state.seq + 1 {
            return Err(LogError::Corrupt(format!(
                "commit {} follows {}: the commit log has a gap",
                c.seq, state.seq
            )));
        }
        apply(&mut state, c)?;
    }
    let listed_upto = state.seq;
    // Commits whose records are durable but whose links a power loss took (local only).
    let adopted = commits_store
        .unlinked_tail(all_wal.last().copied(), state.seq)
        .await?;
    for c in &adopted {
        apply(&mut state, &c.commit)?;
        inline.extend(c.inline.clone());
    }
    if !adopted.is_empty() {
        tracing::info!(
            from = adopted[0].commit.seq,
            to = state.seq,
            "commits recovered from their writer's log"
        );
    }
    // Data that only commit records made durable: back into its segments where a power loss
    // took it, and synced there, before anything reads it or a checkpoint covers it.
    let restored = commits_store.restore_data(inline).await?;
    if restored > 0 {
        tracing::info!(
            bytes = restored,
            "segment data restored from commit records"
        );
    }
    // They are re-created first, under the identity that then claims: they take their own
    // positions (or find them taken by the same commit, their writer still running).
    commits_store.become_writer(state.epoch + 1);
    for c in &adopted {
        if let Created::Taken = commits_store
            .create_with(&c.commit, c.inline.as_ref(), &metrics)
            .await?
            && commits_store.read(c.commit.seq, &metrics).await? != c.commit
        {
            return Err(LogError::Storage(format!(
                "commit {} changed while it was being recovered: another writer is \
                 committing; start again",
                c.commit.seq
            )));
        }
    }

    // Claim: commit a new epoch at the next position. Losing the race means another writer
    // committed there; take its commit into account and try the position after it.
    let mut claimed = None;
    for _ in 0..CLAIM_ATTEMPTS {
        let commit = Commit {
            seq: state.seq + 1,
            epoch: state.epoch + 1,
            time_ms: now_ms(),
            ops: vec![Op::Claim {
                epoch: state.epoch + 1,
            }],
        };
        commits_store.become_writer(commit.epoch);
        match commits_store.create(&commit, &metrics).await? {
            Created::Yes => {
                apply(&mut state, &commit)?;
                claimed = Some(commit.epoch);
                break;
            }
            Created::Taken => {
                let other = match commits_store.read_record(commit.seq, &metrics).await {
                    Ok(s) => s,
                    Err(_) if newer_checkpoint().await? => return Ok(None),
                    Err(e) => return Err(e),
                };
                // Its writer may never sync that data's segment now: this one will own it.
                commits_store
                    .restore_data(other.inline.into_iter().collect())
                    .await?;
                apply(&mut state, &other.commit)?;
            }
        }
    }
    let epoch = claimed.ok_or_else(|| {
        LogError::Storage("could not claim the log: another writer keeps committing".into())
    })?;
    tracing::info!(
        epoch,
        seq = state.seq,
        replayed = commits.len() + adopted.len(),
        "log opened"
    );
    let replayed = commits.iter().chain(adopted.iter().map(|c| &c.commit));
    let (table, dedup_objects) = recover_dedup(&store, replayed, &opts, &metrics).await?;

    let sink = match &local_root {
        Some(root) => DataSink::Local(LocalSegments::new(
            root.clone(),
            epoch,
            opts.segment_bytes,
            opts.inline_max_bytes,
        )),
        None => DataSink::Remote(RemoteObjects::new(store.clone(), epoch)),
    };
    let now = Instant::now();
    // Every position with a link: those listed, then every one up to the claim (recovered,
    // taken by a racing writer, or the claim itself).
    let uncheckpointed: VecDeque<(u64, Instant)> = all_wal
        .iter()
        .copied()
        .chain(listed_upto + 1..=state.seq)
        .map(|s| (s, now))
        .collect();
    let next_seq = state.seq + 1;
    let shared = Arc::new(Shared {
        reader: crate::reader::RunReader::new(store.clone(), local_root.clone()),
        store,
        state: RwLock::new(state),
        watchers: Mutex::new(Default::default()),
        cache: Mutex::new(RunCache::new(opts.cache_bytes)),
        fenced_by: AtomicU64::new(0),
        generation: AtomicU64::new(0),
        closed: AtomicBool::new(false),
        metrics,
        epoch,
        pending_data: Mutex::new(Default::default()),
        compaction_bytes_per_s: opts.compaction_bytes_per_s,
        keyring: RwLock::new(None),
    });
    let (tx, rx) = mpsc::channel(4096);
    let (stage2_tx, stage2_rx) = mpsc::channel(2);
    let dedup = Arc::new(Mutex::new(table));
    let committer = Committer {
        shared: shared.clone(),
        commits: commits_store,
        rx: stage2_rx,
        opts: opts.clone(),
        dedup: dedup.clone(),
        next_seq,
        last_proof: Instant::now(),
        checkpointed_seq: checkpointed,
        last_checkpoint: Instant::now(),
        commits_since_checkpoint: 0,
        manifests,
        wal: uncheckpointed,
        recent_ids: Vec::new(),
        dedup_objects,
        checkpointing: None,
        unsynced: Vec::new(),
        syncing: Vec::new(),
        behind: (0, None),
        sync_failed: false,
    };
    let writer = Writer {
        shared: shared.clone(),
        rx,
        sink,
        opts,
        dedup,
        stage2: stage2_tx,
        committer: None,
        data_seq: next_seq,
        staged: HashMap::new(),
        staged_generation: 0,
        held: None,
    };
    let run = async move {
        let mut writer = writer;
        writer.committer = Some(tokio::spawn(committer.run()));
        writer.run().await;
    };
    // On a local directory the writer makes its short blocking calls inline on its own thread;
    // on an object store it only awaits requests, so it runs with the caller's tasks.
    let finished = if local_root.is_some() {
        crate::io_thread::spawn(run)
            .map_err(|e| LogError::Storage(format!("starting the log thread: {e}")))?
    } else {
        let (done, finished) = oneshot::channel();
        tokio::spawn(async move {
            run.await;
            let _ = done.send(());
        });
        finished
    };
    Ok(Some(Log {
        shared,
        tx,
        writer: Arc::new(Mutex::new(Some(finished))),
    }))
}

/// Rebuild the idempotency table: the dedup deltas still inside the window, then the ids in the
/// commits replayed after the checkpoint. Returns the table and the deltas on the store.
async fn recover_dedup<'a>(
    store: &Arc<dyn ObjectStore>,
    replayed: impl Iterator<Item = &'a Commit>,
    opts: &LogOptions,
    metrics: &LogMetrics,
) -> Result<(DedupTable, VecDeque<(u64, i64)>), LogError> {
    let now = now_ms();
    let horizon = now - opts.dedup_window.as_millis() as i64;
    let seqs = list_seqs(store, paths::DEDUP_DIR, metrics).await?;
    let deltas: Vec<Vec<DedupRecord>> = futures::stream::iter(seqs.iter().copied())
        .map(|seq| {
            let store = store.clone();
            async move {
                LogMetrics::inc(&metrics.store_gets);
                let bytes = store.get(&paths::dedup(seq)).await?.bytes().await?;
                serde_json::from_slice::<Vec<DedupRecord>>(&bytes)
                    .map_err(|e| LogError::Corrupt(format!("dedup {seq}: {e}")))
            }
        })
        .buffered(16)
        .try_collect()
        .await?;
    let mut objects = VecDeque::new();
    let mut records: Vec<DedupRecord> = Vec::new();
    for (seq, delta) in seqs.iter().zip(deltas) {
        let newest = delta.iter().map(|r| r.4).max().unwrap_or(0);
        objects.push_back((*seq, newest));
        records.extend(delta);
    }
    for c in replayed {
        for op in &c.ops {
            if let Op::Append {
                topic,
                partition,
                ids,
                ..
            } = op
            {
                records.extend(
                    ids.iter()
                        .map(|(o, id)| (*topic, *partition, *o, id.clone(), c.time_ms)),
                );
            }
        }
    }
    let mut table = DedupTable::default();
    let started = Instant::now();
    for (topic, partition, offset, id, ms) in records {
        if ms < horizon {
            continue;
        }
        let age = std::time::Duration::from_millis((now - ms).max(0) as u64);
        let at = started.checked_sub(age).unwrap_or(started);
        table.remember(topic, Arc::from(id.as_str()), partition, offset, at);
    }
    Ok((table, objects))
}

fn apply(state: &mut LogState, c: &Commit) -> Result<(), LogError> {
    for op in &c.ops {
        state
            .apply(c.seq, op)
            .map_err(|e| LogError::Corrupt(e.to_string()))?;
    }
    Ok(())
}

/// Sequence numbers of the objects under `dir`, ascending.
pub(crate) async fn list_seqs(
    store: &Arc<dyn ObjectStore>,
    dir: &str,
    metrics: &LogMetrics,
) -> Result<Vec<u64>, LogError> {
    LogMetrics::inc(&metrics.store_lists);
    let prefix = Path::from(dir);
    let mut seqs: Vec<u64> = store
        .list(Some(&prefix))
        .try_filter_map(|m| futures::future::ready(Ok(paths::parse_seq(&m.location))))
        .try_collect()
        .await?;
    seqs.sort_unstable();
    Ok(seqs)
}
