//! Where commit records live, and the create-if-absent that fences writers.
//!
//! On an object store, `wal/{seq}` holds the commit record itself and is created with
//! `PutMode::Create`. On a local directory that would allocate a new inode per commit, and on
//! ext4 inode allocation dominated the CPU profile of the write path (it scans past recently
//! deleted inodes). So locally the fence and the content are split:
//!
//! - each writer appends its commit records (length, CRC-32C, JSON) to its own pre-zeroed log
//!   file and `fdatasync`s it (pre-zeroing makes that a data-only flush): from then on the
//!   commit is durable. A small flush's data rides in its record ([`Inline`]), so the same sync
//!   makes the data durable too, and its segment is synced only before the next checkpoint;
//! - then commits position `seq` by hard-linking its identity file to `wal/{seq}.json` — `link`
//!   is atomic and fails if the name exists, exactly create-if-absent. No inode is allocated.
//!   The link is the fence, visible to every other process at once; only a claim's link is
//!   made durable on its own (the directory fsync'd), the others ride along with later syncs.
//!
//! To read `wal/{seq}`, read the identity it points to, then the last record for `seq` in that
//! writer's log. A power loss may take the newest links (never a claim's) but not the records
//! they pointed to: recovery continues from the writer of the newest surviving link and takes
//! its records after it ([`CommitStore::unlinked_tail`]), re-creating them under its own
//! identity before it claims. A record whose writer was not the newest (it lost a race) is
//! never read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::LogError;
use crate::commit::{Commit, Op};
use crate::io_thread::blocking;
use crate::metrics::LogMetrics;
use crate::paths::{self, DataId};

/// Bytes pre-zeroed per local commit log; a full log is sealed and a new one started.
const LOCAL_LOG_BYTES: u64 = 4 << 20;
const RECORD_HEADER: usize = 8;
/// Set in a record's length when the record carries its flush's data ([`Inline`]).
const INLINE_FLAG: u32 = 1 << 31;
/// After the record header of an inline record: JSON length (u32), data epoch, data seq and
/// position (u64 each).
const INLINE_HEADER: usize = 4 + 3 * 8;

/// A flush's data carried in its local commit record: `bytes` belong at `pos` of segment
/// `data`. The record's sync makes them durable; the segment has them too (written, not yet
/// synced), and recovery writes them there again if a power loss took them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Inline {
    pub data: DataId,
    pub pos: u64,
    pub bytes: Bytes,
}

/// A commit record as stored: the commit, and locally the data it may carry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stored {
    pub commit: Commit,
    pub inline: Option<Inline>,
}

#[derive(Debug)]
pub(crate) enum Created {
    Yes,
    /// Another commit already holds this position.
    Taken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Identity {
    epoch: u64,
    nonce: u64,
}

struct OpenLog {
    file: Arc<File>,
    path: PathBuf,
    pos: u64,
}

pub(crate) struct LocalCommits {
    root: PathBuf,
    /// This process's writer identity, once it starts claiming.
    me: Option<Identity>,
    log: Option<OpenLog>,
    /// Sealed logs (any writer's) and the highest seq each holds, for garbage collection.
    sealed: Vec<(PathBuf, u64)>,
    /// Highest seq written to the open log.
    open_max: u64,
    /// `wal/`, kept open for the directory fsync after each link.
    wal_dir: Option<Arc<File>>,
    /// The last create failed part-way: its link may exist, so check before writing again.
    uncertain: bool,
    /// The position of this writer's claim, whose link stays while it writes: after a power
    /// loss it is how recovery finds the newest writer's log (see [`CommitStore::unlinked_tail`]).
    claim_seq: Option<u64>,
    /// The next log, pre-zeroed in the background (`{epoch}-{nonce}.spare`), so starting a
    /// log (after every checkpoint, and whenever one fills) costs a rename, not 4 MiB of
    /// zeros and a sync on the commit path.
    spare: Option<tokio::task::JoinHandle<std::io::Result<File>>>,
    /// Checkpointed logs kept to become spares (renamed out of the log names at once): their
    /// blocks are written already, so reusing one costs a rename, not zeros on the disk.
    /// Their stale records end a log's parse ([`parse_log`]).
    free: Vec<PathBuf>,
    /// Numbers [`free`](Self::free) names.
    freed: u64,
    /// Deletions under way in the blocking pool (never awaited on the commit path: unlinking
    /// checkpointed logs journals on ext4 and took milliseconds), each with the logs it freed.
    collecting: Vec<tokio::task::JoinHandle<Vec<PathBuf>>>,
    /// The generation of this writer's identity file that new links go to, and how many
    /// links it has been given: a file has at most [`LINKS_PER_IDENTITY`] (ext4 allows 65,000
    /// links to one inode), then the next generation, a new file with the same identity.
    identity: u64,
    identity_links: u64,
    links_per_identity: u64,
}

/// Links a writer makes to one identity file before it starts the next (see
/// [`LocalCommits::identity`]). Kept well under ext4's 65,000; a filesystem that allows
/// fewer says so with `EMLINK`, and the writer moves on to the next file then.
const LINKS_PER_IDENTITY: u64 = 16_384;

pub(crate) enum CommitStore {
    Remote(Arc<dyn ObjectStore>),
    Local(Box<LocalCommits>),
}

fn io(e: std::io::Error, what: &str) -> LogError {
    LogError::Storage(format!("{what}: {e}"))
}

impl CommitStore {
    pub(crate) fn local(root: PathBuf) -> CommitStore {
        CommitStore::Local(Box::new(LocalCommits {
            root,
            me: None,
            log: None,
            sealed: Vec::new(),
            open_max: 0,
            wal_dir: None,
            uncertain: false,
            claim_seq: None,
            spare: None,
            free: Vec::new(),
            freed: 0,
            collecting: Vec::new(),
            identity: 0,
            identity_links: 0,
            links_per_identity: LINKS_PER_IDENTITY,
        }))
    }

    /// Sequence numbers present, ascending.
    pub(crate) async fn list(&self, metrics: &LogMetrics) -> Result<Vec<u64>, LogError> {
        match self {
            CommitStore::Remote(store) => {
                crate::recovery::list_seqs(store, paths::WAL_DIR, metrics).await
            }
            CommitStore::Local(l) => {
                LogMetrics::inc(&metrics.store_lists);
                let dir = l.root.join(paths::WAL_DIR);
                blocking(move || {
                    let mut seqs = Vec::new();
                    let entries = match std::fs::read_dir(&dir) {
                        Ok(e) => e,
                        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(seqs),
                        Err(e) => return Err(io(e, "listing wal/")),
                    };
                    for entry in entries {
                        let entry = entry.map_err(|e| io(e, "listing wal/"))?;
                        let name = entry.file_name();
                        let name = name.to_string_lossy();
                        if let Some(seq) = paths::parse_seq(&Path::from(format!("wal/{name}"))) {
                            seqs.push(seq);
                        }
                    }
                    seqs.sort_unstable();
                    Ok(seqs)
                })
                .await
            }
        }
    }

    /// The records at `seqs` (ascending), with any data they carry.
    pub(crate) async fn read_stored(
        &mut self,
        seqs: &[u64],
        metrics: &LogMetrics,
    ) -> Result<Vec<Stored>, LogError> {
        match self {
            CommitStore::Remote(store) => {
                use futures::StreamExt;
                let store = store.clone();
                futures::stream::iter(seqs.iter().copied())
                    .map(|seq| {
                        let store = store.clone();
                        async move {
                            LogMetrics::inc(&metrics.store_gets);
                            let bytes = store.get(&paths::commit(seq)).await?.bytes().await?;
                            let commit = Commit::decode(&bytes)
                                .map_err(|e| LogError::Corrupt(format!("commit {seq}: {e}")))?;
                            Ok(Stored {
                                commit,
                                inline: None,
                            })
                        }
                    })
                    .buffered(32)
                    .try_collect()
                    .await
            }
            CommitStore::Local(l) => {
                let root = l.root.clone();
                let seqs = seqs.to_vec();
                let (commits, logs) = blocking(move || read_local(&root, &seqs)).await?;
                l.remember(logs);
                Ok(commits)
            }
        }
    }

    pub(crate) async fn read(
        &mut self,
        seq: u64,
        metrics: &LogMetrics,
    ) -> Result<Commit, LogError> {
        Ok(self.read_record(seq, metrics).await?.commit)
    }

    /// The record at `seq`, with any data it carries.
    pub(crate) async fn read_record(
        &mut self,
        seq: u64,
        metrics: &LogMetrics,
    ) -> Result<Stored, LogError> {
        let mut v = self.read_stored(&[seq], metrics).await?;
        v.pop()
            .ok_or_else(|| LogError::Corrupt(format!("commit {seq} is missing")))
    }

    /// The epoch of the writer whose link holds `wal/{seq}`, where the link says (locally);
    /// `None` where only the record does.
    pub(crate) async fn taken_by(&self, seq: u64) -> Result<Option<u64>, LogError> {
        match self {
            CommitStore::Remote(_) => Ok(None),
            CommitStore::Local(l) => {
                let root = l.root.clone();
                blocking(move || read_identity(&root, seq).map(|who| Some(who.epoch))).await
            }
        }
    }

    /// Does `wal/{seq}` exist?
    pub(crate) async fn exists(&self, seq: u64) -> Result<bool, LogError> {
        match self {
            CommitStore::Remote(store) => match store.head(&paths::commit(seq)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e.into()),
            },
            CommitStore::Local(l) => {
                let p = paths::local_commit(&l.root, seq);
                Ok(blocking(move || p.exists()).await)
            }
        }
    }

    /// Create `wal/{commit.seq}` if nobody has.
    pub(crate) async fn create(
        &mut self,
        commit: &Commit,
        metrics: &LogMetrics,
    ) -> Result<Created, LogError> {
        self.create_with(commit, None, metrics).await
    }

    /// Create `wal/{commit.seq}` if nobody has, carrying `inline` (local only: a flush whose
    /// data this record makes durable).
    pub(crate) async fn create_with(
        &mut self,
        commit: &Commit,
        inline: Option<&Inline>,
        metrics: &LogMetrics,
    ) -> Result<Created, LogError> {
        LogMetrics::inc(&metrics.store_puts);
        match self {
            CommitStore::Remote(store) => {
                debug_assert!(inline.is_none(), "only local records carry data");
                match store
                    .put_opts(
                        &paths::commit(commit.seq),
                        PutPayload::from(commit.encode()),
                        PutOptions::from(PutMode::Create),
                    )
                    .await
                {
                    Ok(_) => Ok(Created::Yes),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(Created::Taken),
                    Err(e) => Err(e.into()),
                }
            }
            CommitStore::Local(l) => l.create(commit, inline).await,
        }
    }

    /// Delete the commit records at `seqs`, and locally every sealed log whose records a
    /// checkpoint (at `checkpointed`) covers. A link outlives its record: it is the fence
    /// (kept for `wal_gc_min_age`), and the identity it names is all a fenced writer needs to
    /// read ([`taken_by`](Self::taken_by)); no one reads a record a checkpoint covers.
    pub(crate) async fn delete(&mut self, seqs: Vec<u64>, checkpointed: u64, metrics: &LogMetrics) {
        metrics
            .store_deletes
            .fetch_add(seqs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        match self {
            CommitStore::Remote(_) if seqs.is_empty() => {}
            CommitStore::Remote(store) => {
                use futures::StreamExt;
                let stream =
                    futures::stream::iter(seqs.into_iter().map(|s| Ok(paths::commit(s)))).boxed();
                if let Err(e) = store.delete_stream(stream).try_collect::<Vec<_>>().await {
                    LogMetrics::inc(&metrics.store_errors);
                    tracing::warn!(error = %e, "deleting commit records failed; will retry");
                }
            }
            CommitStore::Local(l) => {
                let root = l.root.clone();
                let keep = l.claim_seq;
                let seqs: Vec<u64> = seqs.into_iter().filter(|s| Some(*s) != keep).collect();
                let mut doomed_logs = Vec::new();
                l.sealed.retain(|(path, max)| {
                    let keep = *max > checkpointed;
                    if !keep {
                        doomed_logs.push(path.clone());
                    }
                    keep
                });
                l.harvest();
                if seqs.is_empty() && doomed_logs.is_empty() {
                    return;
                }
                // Up to two become spares, if they have the full size.
                let mut to_free = Vec::new();
                if let Some(me) = l.me {
                    for _ in l.free.len()..FREE_LOGS {
                        l.freed += 1;
                        to_free.push(free_log(&root, me, l.freed));
                    }
                }
                let identity = l.me.map(|me| (me, l.identity));
                // Many files: in the blocking pool even from the log thread, which meanwhile
                // goes on writing.
                l.collecting.push(tokio::task::spawn_blocking(move || {
                    for seq in seqs {
                        let _ = std::fs::remove_file(paths::local_commit(&root, seq));
                    }
                    if let Some((me, current)) = identity {
                        remove_unlinked_identities(&root, me, current);
                    }
                    let mut freed = Vec::new();
                    for log in doomed_logs {
                        if let Some(to) = to_free.last()
                            && std::fs::metadata(&log).is_ok_and(|m| m.len() >= LOCAL_LOG_BYTES)
                            && std::fs::rename(&log, to).is_ok()
                        {
                            freed.push(to_free.pop().expect("checked"));
                            continue;
                        }
                        let _ = std::fs::remove_file(log);
                    }
                    freed
                }));
            }
        }
    }

    /// Commits after position `after` that are durable but may have lost their links: on a
    /// local directory, the records of the newest surviving link's writer after `after`, in
    /// order, up to the first missing position (on an object store a commit is its object, so
    /// there are none). Every writer's claim link is synced and kept while it writes, so the
    /// newest link always names the newest writer; a power loss can only take the links after
    /// it, and a directory's entries survive in the order they were made (as on ext4 and XFS,
    /// whose journals commit in order), so what is missing is a tail. The caller re-creates
    /// these under its own identity before it claims.
    ///
    /// `newest` is the highest position [`list`](Self::list) found, if any.
    pub(crate) async fn unlinked_tail(
        &mut self,
        newest: Option<u64>,
        after: u64,
    ) -> Result<Vec<Stored>, LogError> {
        let (CommitStore::Local(l), Some(newest)) = (&mut *self, newest) else {
            return Ok(Vec::new());
        };
        let root = l.root.clone();
        let (tail, logs) = blocking(move || read_tail(&root, newest, after)).await?;
        l.remember(logs);
        Ok(tail)
    }

    /// Write data that commit records carried back into its segments where it is missing
    /// (a power loss took what was not yet synced there), and sync those segments. Returns the
    /// bytes written back.
    pub(crate) async fn restore_data(&self, inline: Vec<Inline>) -> Result<u64, LogError> {
        let CommitStore::Local(l) = self else {
            return Ok(0);
        };
        if inline.is_empty() {
            return Ok(0);
        }
        let root = l.root.clone();
        blocking(move || crate::data::restore(&root, &inline))
            .await
            .map_err(|e| io(e, "restoring segment data from commit records"))
    }

    /// Wait for the deletions under way (a clean stop; tests).
    pub(crate) async fn settle(&mut self) {
        if let CommitStore::Local(l) = self {
            for task in std::mem::take(&mut l.collecting) {
                if let Ok(freed) = task.await {
                    l.free.extend(freed);
                }
            }
        }
    }

    /// Start a new local commit log (after a checkpoint), so old ones can be deleted.
    pub(crate) fn seal(&mut self) {
        if let CommitStore::Local(l) = self
            && let Some(log) = l.log.take()
        {
            l.sealed.push((log.path, l.open_max));
        }
    }

    /// Begin claiming as a new writer of `epoch` (local: a fresh identity file, unless this
    /// store already writes as `epoch`: a claim retried at a later position).
    pub(crate) fn become_writer(&mut self, epoch: u64) {
        if let CommitStore::Local(l) = self {
            if l.me.is_some_and(|me| me.epoch == epoch) {
                return;
            }
            if let Some(log) = l.log.take() {
                l.sealed.push((log.path, l.open_max));
            }
            // A spare prepared under the old identity is cleared by the next writer's.
            l.spare = None;
            l.me = Some(Identity {
                epoch,
                nonce: rand::random(),
            });
            l.identity = 0;
            l.identity_links = 0;
        }
    }
}

impl LocalCommits {
    /// Take in the logs that finished deletions freed.
    fn harvest(&mut self) {
        use futures::FutureExt;
        let (done, running) = std::mem::take(&mut self.collecting)
            .into_iter()
            .partition::<Vec<_>, _>(|t| t.is_finished());
        self.collecting = running;
        for task in done {
            if let Some(Ok(freed)) = task.now_or_never() {
                self.free.extend(freed);
            }
        }
    }

    /// Remember every log a read went through (but the open one), so garbage collection can
    /// remove it later.
    fn remember(&mut self, logs: Vec<(PathBuf, u64)>) {
        let open = self.log.as_ref().map(|o| o.path.clone());
        for (path, max) in logs {
            if Some(&path) != open.as_ref() && !self.sealed.iter().any(|(p, _)| *p == path) {
                self.sealed.push((path, max));
            }
        }
    }

    async fn create(
        &mut self,
        commit: &Commit,
        inline: Option<&Inline>,
    ) -> Result<Created, LogError> {
        let me = self.me.expect("become_writer before create");
        let link = paths::local_commit(&self.root, commit.seq);
        let target = paths::local_writer(&self.root, me.epoch, me.nonce, self.identity);
        let record = frame(&commit.encode(), inline);
        let needs_log = self
            .log
            .as_ref()
            .is_none_or(|l| l.pos + record.len() as u64 + RECORD_HEADER as u64 > LOCAL_LOG_BYTES);
        if needs_log {
            if let Some(old) = self.log.take() {
                self.sealed.push((old.path, self.open_max));
            }
            let root = self.root.clone();
            let path = paths::local_commit_log(&root, me.epoch, me.nonce, commit.seq);
            let size = LOCAL_LOG_BYTES.max(record.len() as u64 + RECORD_HEADER as u64);
            let spare_path = spare_log(&root, me);
            // A record larger than a log gets a log of its own and leaves the spare for the
            // next one (dropping its task would let two tasks prepare the same spare name).
            let spare = match self.spare.take_if(|_| size == LOCAL_LOG_BYTES) {
                Some(task) => task.await.ok().and_then(Result::ok),
                None => None,
            };
            let p = path.clone();
            let file = blocking(move || -> std::io::Result<File> {
                let logs = p.parent().expect("logs dir");
                if let Some(f) = spare {
                    std::fs::rename(&spare_path, &p)?;
                    File::open(logs)?.sync_all()?;
                    return Ok(f);
                }
                std::fs::create_dir_all(logs)?;
                std::fs::create_dir_all(target.parent().expect("writers dir"))?;
                if !target.exists() {
                    write_identity(&target, me)?;
                }
                // Left by an earlier attempt at this same first position, which therefore
                // never committed anything in it.
                let _ = std::fs::remove_file(&p);
                let f = zeroed(&p, size)?;
                File::open(logs)?.sync_all()?;
                Ok(f)
            })
            .await
            .map_err(|e| io(e, "starting a commit log"))?;
            // The one after it, off the commit path: a checkpointed log if one is free.
            self.harvest();
            if self.spare.is_none() {
                let spare_path = spare_log(&root, me);
                let recycled = self.free.pop();
                self.spare = Some(tokio::task::spawn_blocking(move || {
                    // A crashed earlier writer's spare is never used: clear those first.
                    if let Some(dir) = spare_path.parent()
                        && let Ok(entries) = std::fs::read_dir(dir)
                    {
                        for e in entries.flatten() {
                            if spare_epoch(&e.file_name().to_string_lossy())
                                .is_some_and(|epoch| epoch < me.epoch)
                            {
                                let _ = std::fs::remove_file(e.path());
                            }
                        }
                    }
                    if let Some(old) = recycled
                        && std::fs::rename(&old, &spare_path).is_ok()
                        && let Ok(f) = File::options().read(true).write(true).open(&spare_path)
                    {
                        return Ok(f);
                    }
                    let _ = std::fs::remove_file(&spare_path);
                    zeroed(&spare_path, LOCAL_LOG_BYTES)
                }));
            }
            self.log = Some(OpenLog {
                file: Arc::new(file),
                path,
                pos: 0,
            });
            self.open_max = 0;
        }
        if self.wal_dir.is_none() {
            let dir = self.root.join(paths::WAL_DIR);
            let f = blocking(move || File::open(dir))
                .await
                .map_err(|e| io(e, "opening wal/"))?;
            self.wal_dir = Some(Arc::new(f));
        }
        let wal_dir = self.wal_dir.clone().expect("opened above");
        let check_first = self.uncertain;
        let (file, pos) = {
            let log = self.log.as_ref().expect("log is open");
            (log.file.clone(), log.pos)
        };
        let len = record.len() as u64;
        let claim = commit.ops.iter().any(|op| matches!(op, Op::Claim { .. }));
        let written = blocking(move || -> std::io::Result<Created> {
            // Only ever one record per seq reaches a link: after a create that failed part-way
            // (its link may exist), stop before writing, so the earlier record stays the one.
            // Otherwise `link` below fails the same way if anyone holds the position.
            if check_first && link.exists() {
                return Ok(Created::Taken);
            }
            file.write_all_at(&record, pos)?;
            file.sync_data()?;
            Ok(Created::Yes)
        })
        .await;
        let outcome = match written {
            Ok(Created::Yes) => {
                let link = paths::local_commit(&self.root, commit.seq);
                let root = self.root.clone();
                let (current, full) = (
                    self.identity,
                    self.identity_links >= self.links_per_identity,
                );
                let linked = blocking(move || -> std::io::Result<(Created, u64)> {
                    let target =
                        |generation| paths::local_writer(&root, me.epoch, me.nonce, generation);
                    let mut generation = current;
                    if full {
                        generation += 1;
                        write_identity(&target(generation), me)?;
                    }
                    let mut moved_on = full;
                    loop {
                        match std::fs::hard_link(target(generation), &link) {
                            Ok(()) => break,
                            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                                return Ok((Created::Taken, generation));
                            }
                            // This filesystem allows fewer links to a file: the next one.
                            Err(e) if e.kind() == ErrorKind::TooManyLinks && !moved_on => {
                                generation += 1;
                                write_identity(&target(generation), me)?;
                                moved_on = true;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    // The record is durable already; a claim's link must be too, as recovery
                    // finds the newest writer by it.
                    if claim {
                        wal_dir.sync_all()?;
                    }
                    Ok((Created::Yes, generation))
                })
                .await;
                linked.map(|(created, generation)| {
                    if generation != self.identity {
                        self.identity = generation;
                        self.identity_links = 0;
                    }
                    if matches!(created, Created::Yes) {
                        self.identity_links += 1;
                    }
                    created
                })
            }
            other => other,
        };
        match outcome {
            Ok(Created::Yes) => {
                self.log.as_mut().expect("log is open").pos += len;
                self.open_max = self.open_max.max(commit.seq);
                self.uncertain = false;
                if claim {
                    self.claim_seq = Some(commit.seq);
                }
                Ok(Created::Yes)
            }
            // A record written for a position someone else took is garbage: overwrite it.
            Ok(Created::Taken) => {
                self.uncertain = false;
                Ok(Created::Taken)
            }
            Err(e) => {
                self.uncertain = true;
                // The log's tail is uncertain now: continue in a new one.
                if let Some(old) = self.log.take() {
                    self.sealed.push((old.path, self.open_max.max(commit.seq)));
                }
                Err(io(e, "creating a commit record"))
            }
        }
    }
}

/// Where a writer's next commit log is prepared; not a log name, so reads never see it.
fn spare_log(root: &FsPath, me: Identity) -> PathBuf {
    root.join(paths::WAL_DIR)
        .join("logs")
        .join(format!("{:010}-{:016x}.spare", me.epoch, me.nonce))
}

/// Write a writer's identity file at `path` and make it durable (an earlier attempt may have
/// left it: it then holds the same identity, or is written again).
fn write_identity(path: &FsPath, me: Identity) -> std::io::Result<()> {
    let ident = serde_json::to_vec(&me).expect("identity serializes");
    let mut f = match File::options().create_new(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            if std::fs::read(path)? == ident {
                return Ok(());
            }
            File::options().write(true).truncate(true).open(path)?
        }
        Err(e) => return Err(e),
    };
    std::io::Write::write_all(&mut f, &ident)?;
    f.sync_all()?;
    File::open(path.parent().expect("writers dir"))?.sync_all()
}

/// Remove the identity files no link points to any more that no writer links to again: older
/// writers' (fenced by `me`'s claim) and `me`'s own generations before `current`.
fn remove_unlinked_identities(root: &FsPath, me: Identity, current: u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(root.join(paths::WAL_DIR).join("writers")) else {
        return;
    };
    for e in entries.flatten() {
        let Some((epoch, nonce, generation)) =
            paths::parse_local_writer(&e.file_name().to_string_lossy())
        else {
            continue;
        };
        let done =
            epoch < me.epoch || (epoch == me.epoch && nonce == me.nonce && generation < current);
        if done && e.metadata().is_ok_and(|m| m.nlink() == 1) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// How many checkpointed logs a writer keeps to reuse as spares.
const FREE_LOGS: usize = 2;

/// A checkpointed log kept for reuse (a spare-like name, so reads never see it and a newer
/// writer clears it like a spare).
fn free_log(root: &FsPath, me: Identity, n: u64) -> PathBuf {
    root.join(paths::WAL_DIR)
        .join("logs")
        .join(format!("{:010}-{:016x}-free{n}.spare", me.epoch, me.nonce))
}

/// The writer epoch of a [`spare_log`] (or [`free_log`]) file name.
fn spare_epoch(name: &str) -> Option<u64> {
    name.strip_suffix(".spare")?.split('-').next()?.parse().ok()
}

/// A new file of `size` real zeros, synced: later appends overwrite allocated blocks, so
/// `fdatasync` need not write a size or extent change.
fn zeroed(path: &FsPath, size: u64) -> std::io::Result<File> {
    let f = File::options()
        .create_new(true)
        .read(true)
        .write(true)
        .open(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        let n = zeros.len().min((size - at) as usize);
        f.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    f.sync_all()?;
    Ok(f)
}

/// A log record: `[len][crc][json]`, or with data `[len | INLINE_FLAG][crc][json len][data
/// epoch][data seq][pos][json][data]`; `len` counts what follows the 8-byte header and the
/// CRC-32C covers it. The first form is what logs written before inline records hold.
fn frame(json: &[u8], inline: Option<&Inline>) -> Vec<u8> {
    let Some(inline) = inline else {
        let mut out = Vec::with_capacity(json.len() + RECORD_HEADER);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(json).to_le_bytes());
        out.extend_from_slice(json);
        return out;
    };
    let len = INLINE_HEADER + json.len() + inline.bytes.len();
    let mut out = Vec::with_capacity(RECORD_HEADER + len);
    out.extend_from_slice(&(len as u32 | INLINE_FLAG).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&inline.data.epoch.to_le_bytes());
    out.extend_from_slice(&inline.data.seq.to_le_bytes());
    out.extend_from_slice(&inline.pos.to_le_bytes());
    out.extend_from_slice(json);
    out.extend_from_slice(&inline.bytes);
    let crc = crc32c::crc32c(&out[RECORD_HEADER..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// Every intact record of a local commit log that starts at position `first`, in order. Stops
/// at the zeroed tail, at the first torn record (nothing after it was ever linked), or at the
/// first record older than `first` (a reused log's stale content: every record it held is
/// older than any position its new life starts at).
fn parse_log(bytes: &Bytes, first: u64) -> Vec<Stored> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + RECORD_HEADER <= bytes.len() {
        let word = le_u32(&bytes[at..]);
        let crc = le_u32(&bytes[at + 4..]);
        let len = (word & !INLINE_FLAG) as usize;
        if len == 0 || at + RECORD_HEADER + len > bytes.len() {
            break;
        }
        let body = bytes.slice(at + RECORD_HEADER..at + RECORD_HEADER + len);
        if crc32c::crc32c(&body) != crc {
            break;
        }
        let (json, inline) = if word & INLINE_FLAG == 0 {
            (body, None)
        } else {
            if len < INLINE_HEADER || le_u32(&body) as usize > len - INLINE_HEADER {
                break;
            }
            let json_end = INLINE_HEADER + le_u32(&body) as usize;
            let inline = Inline {
                data: DataId {
                    epoch: le_u64(&body[4..]),
                    seq: le_u64(&body[12..]),
                },
                pos: le_u64(&body[20..]),
                bytes: body.slice(json_end..),
            };
            (body.slice(INLINE_HEADER..json_end), Some(inline))
        };
        match Commit::decode(&json) {
            Ok(commit) if commit.seq >= first => out.push(Stored { commit, inline }),
            _ => break,
        }
        at += RECORD_HEADER + len;
    }
    out
}

type LocalRead = (Vec<Stored>, Vec<(PathBuf, u64)>);

/// Read local commits: each `wal/{seq}` names a writer; its logs hold the record.
fn read_local(root: &FsPath, seqs: &[u64]) -> Result<LocalRead, LogError> {
    let by_writer = writer_logs(root)?;
    let mut parsed: HashMap<PathBuf, HashMap<u64, Stored>> = HashMap::new();
    let mut out = Vec::with_capacity(seqs.len());
    for &seq in seqs {
        let who = read_identity(root, seq)?;
        let (first, log) = by_writer
            .get(&who)
            .and_then(|logs| logs.iter().rev().find(|(first, _)| *first <= seq))
            .cloned()
            .ok_or_else(|| {
                LogError::Corrupt(format!("commit {seq}: its writer's log is missing"))
            })?;
        if !parsed.contains_key(&log) {
            let bytes = std::fs::read(&log).map_err(|e| io(e, "reading a commit log"))?;
            let mut records = HashMap::new();
            for c in parse_log(&Bytes::from(bytes), first) {
                // A retried position: the last record written is the one that was linked.
                records.insert(c.commit.seq, c);
            }
            parsed.insert(log.clone(), records);
        }
        let commit = parsed[&log]
            .get(&seq)
            .cloned()
            .ok_or_else(|| LogError::Corrupt(format!("commit {seq} is not in its writer's log")))?;
        out.push(commit);
    }
    let seen = parsed
        .iter()
        .map(|(p, r)| (p.clone(), r.keys().copied().max().unwrap_or(0)))
        .collect();
    Ok((out, seen))
}

/// Every writer's commit logs, each writer's by first position.
fn writer_logs(root: &FsPath) -> Result<HashMap<Identity, Vec<(u64, PathBuf)>>, LogError> {
    let logs_dir = root.join(paths::WAL_DIR).join("logs");
    let mut by_writer: HashMap<Identity, Vec<(u64, PathBuf)>> = HashMap::new();
    match std::fs::read_dir(&logs_dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(e, "listing wal/logs/")),
        Ok(entries) => {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if let Some((epoch, nonce, first)) =
                    paths::parse_local_commit_log(&name.to_string_lossy())
                {
                    by_writer
                        .entry(Identity { epoch, nonce })
                        .or_default()
                        .push((first, entry.path()));
                }
            }
        }
    }
    for v in by_writer.values_mut() {
        v.sort();
    }
    Ok(by_writer)
}

/// The writer whose identity `wal/{seq}` links to.
fn read_identity(root: &FsPath, seq: u64) -> Result<Identity, LogError> {
    let mut ident = Vec::new();
    File::open(paths::local_commit(root, seq))
        .and_then(|mut f| f.read_to_end(&mut ident))
        .map_err(|e| io(e, &format!("reading commit {seq}")))?;
    serde_json::from_slice(&ident).map_err(|e| LogError::Corrupt(format!("commit {seq} link: {e}")))
}

/// The records after `after` of the writer `wal/{newest}` links to, up to the first missing
/// position (see [`CommitStore::unlinked_tail`]), and the logs read, each with the highest seq
/// it holds.
fn read_tail(root: &FsPath, newest: u64, after: u64) -> Result<LocalRead, LogError> {
    let who = read_identity(root, newest)?;
    let logs = writer_logs(root)?.remove(&who).unwrap_or_default();
    // Later logs, and later records in a log, replace earlier ones for the same position.
    let mut records: HashMap<u64, Stored> = HashMap::new();
    let mut seen = Vec::with_capacity(logs.len());
    for (first, path) in logs {
        let bytes = std::fs::read(&path).map_err(|e| io(e, "reading a commit log"))?;
        let parsed = parse_log(&Bytes::from(bytes), first);
        seen.push((path, parsed.iter().map(|c| c.commit.seq).max().unwrap_or(0)));
        records.extend(
            parsed
                .into_iter()
                .filter(|c| c.commit.seq > after)
                .map(|c| (c.commit.seq, c)),
        );
    }
    let mut tail = Vec::new();
    while let Some(c) = records.remove(&(after + 1 + tail.len() as u64)) {
        tail.push(c);
    }
    Ok((tail, seen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::Op;

    fn commit(seq: u64, epoch: u64) -> Commit {
        Commit {
            seq,
            epoch,
            time_ms: 0,
            ops: vec![Op::Claim { epoch }],
        }
    }

    /// A local store in a new directory whose writer (epoch 1) has created commit 1.
    async fn first_writer() -> (tempfile::TempDir, CommitStore, LogMetrics) {
        let dir = tempfile::tempdir().unwrap();
        let m = LogMetrics::default();
        let mut a = CommitStore::local(dir.path().to_owned());
        a.become_writer(1);
        assert!(matches!(
            a.create(&commit(1, 1), &m).await.unwrap(),
            Created::Yes
        ));
        (dir, a, m)
    }

    #[tokio::test]
    async fn local_create_is_create_if_absent_and_reads_back() {
        let (dir, mut a, m) = first_writer().await;
        assert!(matches!(
            a.create(&commit(2, 1), &m).await.unwrap(),
            Created::Yes
        ));
        let mut b = CommitStore::local(dir.path().to_owned());
        b.become_writer(2);
        assert!(matches!(
            b.create(&commit(2, 2), &m).await.unwrap(),
            Created::Taken
        ));
        assert!(matches!(
            b.create(&commit(3, 2), &m).await.unwrap(),
            Created::Yes
        ));
        assert!(matches!(
            a.create(&commit(3, 1), &m).await.unwrap(),
            Created::Taken
        ));
        assert_eq!(b.list(&m).await.unwrap(), vec![1, 2, 3]);
        let read = commits(b.read_stored(&[1, 2, 3], &m).await.unwrap());
        assert_eq!(
            read.iter().map(|c| c.epoch).collect::<Vec<_>>(),
            vec![1, 1, 2]
        );
        // Sealing starts a new log; reads still find older records.
        b.seal();
        assert!(matches!(
            b.create(&commit(4, 2), &m).await.unwrap(),
            Created::Yes
        ));
        assert_eq!(b.read(4, &m).await.unwrap().seq, 4);
        assert_eq!(b.read(3, &m).await.unwrap().epoch, 2);
        // Deleting what a checkpoint covers removes links and fully covered logs.
        b.delete(vec![1, 2, 3], 3, &m).await;
        b.settle().await;
        assert_eq!(b.list(&m).await.unwrap(), vec![4]);
    }

    /// Each identity file gets a bounded number of links (ext4 refuses more than 65,000 to one
    /// inode, which a busy writer reached in two minutes of links): then the next generation
    /// takes over, every link still reads as the same writer, and garbage collection removes
    /// the files no link points to any more.
    #[tokio::test]
    async fn identity_files_take_a_bounded_number_of_links() {
        let (dir, mut a, m) = first_writer().await;
        let CommitStore::Local(l) = &mut a else {
            unreachable!()
        };
        l.links_per_identity = 3;
        for seq in 2..=10 {
            assert!(matches!(
                a.create(&plain(seq, 1), &m).await.unwrap(),
                Created::Yes
            ));
        }
        let writers = || {
            let mut names: Vec<String> =
                std::fs::read_dir(dir.path().join(paths::WAL_DIR).join("writers"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
            names.sort();
            names
        };
        // Commits 1-3, 4-6, 7-9 and 10.
        assert_eq!(writers().len(), 4, "{:?}", writers());
        for seq in 1..=10 {
            assert_eq!(a.taken_by(seq).await.unwrap(), Some(1), "commit {seq}");
        }
        let read = commits(
            a.read_stored(&(1..=10).collect::<Vec<_>>(), &m)
                .await
                .unwrap(),
        );
        assert_eq!(
            read.iter().map(|c| c.seq).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        // A checkpoint at 9: links 2-9 go. The claim's link (1) keeps the first file, the
        // current generation stays, the two between go.
        a.delete((1..=9).collect(), 9, &m).await;
        a.settle().await;
        assert_eq!(writers().len(), 2, "{:?}", writers());
        assert_eq!(a.taken_by(1).await.unwrap(), Some(1));
        assert_eq!(a.taken_by(10).await.unwrap(), Some(1));
        // A newer writer removes the older one's files once nothing links to them.
        let mut b = CommitStore::local(dir.path().to_owned());
        b.become_writer(2);
        assert!(matches!(
            b.create(&commit(11, 2), &m).await.unwrap(),
            Created::Yes
        ));
        b.delete(vec![1, 10], 10, &m).await;
        b.settle().await;
        assert_eq!(writers().len(), 1, "{:?}", writers());
        assert_eq!(b.taken_by(11).await.unwrap(), Some(2));
    }

    #[test]
    fn writer_identity_names_parse() {
        let root = FsPath::new("/r");
        let p = paths::local_writer(root, 7, 0xabc, 12);
        let name = p.file_name().unwrap().to_string_lossy();
        assert_eq!(paths::parse_local_writer(&name), Some((7, 0xabc, 12)));
        assert_eq!(
            paths::parse_local_writer("0000000007-0000000000000abc.json"),
            Some((7, 0xabc, 0)),
            "a name from before generations"
        );
        assert_eq!(paths::parse_local_writer("x.json"), None);
    }

    /// A new log (after a checkpoint seals the old one) is the spare prepared in the
    /// background, renamed; a crashed older writer's spare is cleared.
    #[tokio::test]
    async fn new_logs_come_from_the_spare() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join(paths::WAL_DIR).join("logs");
        let m = LogMetrics::default();
        let mut a = CommitStore::local(dir.path().to_owned());
        a.become_writer(3);
        a.create(&commit(1, 3), &m).await.unwrap();
        let stale = logs.join(format!("{:010}-{:016x}.spare", 2, 7));
        std::fs::write(&stale, b"old").unwrap();
        let spares = || -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(&logs)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".spare"))
                .collect();
            v.sort();
            v
        };
        use std::os::unix::fs::MetadataExt;
        let CommitStore::Local(l) = &mut a else {
            unreachable!()
        };
        let first = l
            .spare
            .take()
            .expect("a spare is prepared after the first log");
        let file = first.await.unwrap().unwrap();
        let spare_inode = std::fs::metadata(spare_log(dir.path(), l.me.unwrap()))
            .unwrap()
            .ino();
        l.spare = Some(tokio::spawn(async move { Ok(file) }));
        a.seal();
        a.create(&commit(2, 3), &m).await.unwrap();
        // The spare became the second log; another is being prepared.
        let second = paths::local_commit_log(
            dir.path(),
            3,
            {
                let CommitStore::Local(l) = &a else {
                    unreachable!()
                };
                l.me.unwrap().nonce
            },
            2,
        );
        assert_eq!(std::fs::metadata(&second).unwrap().ino(), spare_inode);
        let CommitStore::Local(l) = &mut a else {
            unreachable!()
        };
        let task = l.spare.take().expect("a next spare is prepared");
        drop(task.await.unwrap().unwrap());
        let left = spares();
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].starts_with("0000000003-"), "{left:?}");
        assert!(!stale.exists(), "an older writer's spare was left");
        let zeros = std::fs::metadata(logs.join(&left[0])).unwrap().len();
        assert_eq!(zeros, LOCAL_LOG_BYTES);
        let names: Vec<_> = std::fs::read_dir(&logs)
            .unwrap()
            .filter_map(|e| {
                paths::parse_local_commit_log(&e.unwrap().file_name().to_string_lossy())
            })
            .map(|(_, _, first)| first)
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let read = commits(a.read_stored(&[1, 2], &m).await.unwrap());
        assert_eq!(read.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![1, 2]);
    }

    /// A commit that is not a claim (its link is not synced on its own).
    fn plain(seq: u64, epoch: u64) -> Commit {
        Commit {
            seq,
            epoch,
            time_ms: 0,
            ops: vec![Op::DeleteTopic {
                name: format!("t{seq}"),
            }],
        }
    }

    /// A power loss can take the links made after a claim (not synced one by one), never the
    /// records, synced before them: the next writer finds them in the newest writer's log,
    /// in order up to the first gap, and re-creates them as its own.
    #[tokio::test]
    async fn records_whose_links_were_lost_are_found_in_the_newest_writers_log() {
        let (dir, mut a, m) = first_writer().await;
        for seq in 2..=5 {
            assert!(matches!(
                a.create(&plain(seq, 1), &m).await.unwrap(),
                Created::Yes
            ));
        }
        for seq in 3..=5 {
            std::fs::remove_file(paths::local_commit(dir.path(), seq)).unwrap();
        }
        let mut b = CommitStore::local(dir.path().to_owned());
        assert_eq!(b.list(&m).await.unwrap(), vec![1, 2]);
        let tail = commits(b.unlinked_tail(Some(2), 2).await.unwrap());
        assert_eq!(tail, vec![plain(3, 1), plain(4, 1), plain(5, 1)]);
        // From a later position (a checkpoint covered some): only what follows it.
        assert_eq!(
            commits(b.unlinked_tail(Some(2), 4).await.unwrap()),
            vec![plain(5, 1)]
        );
        assert!(b.unlinked_tail(Some(2), 5).await.unwrap().is_empty());

        // Re-created under the next writer's identity, then its claim.
        b.become_writer(2);
        for c in &tail {
            assert!(matches!(b.create(c, &m).await.unwrap(), Created::Yes));
        }
        assert!(matches!(
            b.create(&commit(6, 2), &m).await.unwrap(),
            Created::Yes
        ));
        // The old writer, still running, is fenced at its next position.
        assert!(matches!(
            a.create(&plain(6, 1), &m).await.unwrap(),
            Created::Taken
        ));
        let mut c = CommitStore::local(dir.path().to_owned());
        assert_eq!(c.list(&m).await.unwrap(), (1..=6).collect::<Vec<_>>());
        let read = commits(c.read_stored(&[3, 4, 5, 6], &m).await.unwrap());
        assert_eq!(read[..3], tail[..]);
        // The loser's record for 6 sits in its log, but only the newest writer's are read.
        assert!(c.unlinked_tail(Some(6), 6).await.unwrap().is_empty());
    }

    /// Only a claim's link is synced, and a writer never deletes its own claim's link: it is
    /// how recovery finds the newest writer once checkpoints have let the others go.
    #[tokio::test]
    async fn the_claim_link_outlives_garbage_collection() {
        let (dir, mut a, m) = first_writer().await;
        for seq in 2..=3 {
            a.create(&plain(seq, 1), &m).await.unwrap();
        }
        a.seal();
        a.create(&plain(4, 1), &m).await.unwrap();
        a.delete(vec![1, 2, 3], 3, &m).await;
        a.settle().await;
        assert_eq!(a.list(&m).await.unwrap(), vec![1, 4]);
        std::fs::remove_file(paths::local_commit(dir.path(), 4)).unwrap();
        let mut b = CommitStore::local(dir.path().to_owned());
        assert_eq!(
            commits(b.unlinked_tail(Some(1), 3).await.unwrap()),
            vec![plain(4, 1)]
        );
    }

    fn commits(stored: Vec<Stored>) -> Vec<Commit> {
        stored.into_iter().map(|s| s.commit).collect()
    }

    /// A record carrying its flush's data reads back with it, by position and in the tail a
    /// power loss left unlinked; records without data read back without.
    #[tokio::test]
    async fn records_carry_their_flush_data() {
        let (dir, mut a, m) = first_writer().await;
        let inline = Inline {
            data: DataId { epoch: 1, seq: 7 },
            pos: 4096,
            bytes: Bytes::from(vec![0xa5; 10_000]),
        };
        a.create_with(&plain(2, 1), Some(&inline), &m)
            .await
            .unwrap();
        a.create(&plain(3, 1), &m).await.unwrap();
        let mut b = CommitStore::local(dir.path().to_owned());
        let read = b.read_stored(&[2, 3], &m).await.unwrap();
        assert_eq!(read[0].commit, plain(2, 1));
        assert_eq!(read[0].inline.as_ref(), Some(&inline));
        assert_eq!(read[1].inline, None);
        std::fs::remove_file(paths::local_commit(dir.path(), 3)).unwrap();
        std::fs::remove_file(paths::local_commit(dir.path(), 2)).unwrap();
        let tail = b.unlinked_tail(Some(1), 1).await.unwrap();
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[0].inline.as_ref(), Some(&inline));
    }

    /// The inode numbers of the files in `wal/logs/` whose names contain `part`.
    fn inodes(dir: &FsPath, part: &str) -> Vec<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir(dir.join("wal/logs"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().contains(part))
            .map(|e| e.metadata().unwrap().ino())
            .collect()
    }

    /// Checkpointed logs are reused as spares instead of zeroing new ones; what they held
    /// before never reads as part of their new life.
    #[tokio::test]
    async fn checkpointed_logs_are_reused_and_their_stale_records_never_read() {
        let (dir, mut a, m) = first_writer().await;
        let big = |seq: u64| Inline {
            data: DataId { epoch: 1, seq },
            pos: 0,
            bytes: Bytes::from(vec![seq as u8; 1 << 20]),
        };
        // Three logs' worth (three 1 MiB records fit in one).
        for seq in 2..=9 {
            a.create_with(&plain(seq, 1), Some(&big(seq)), &m)
                .await
                .unwrap();
        }
        a.seal();
        a.delete(Vec::new(), 9, &m).await;
        a.settle().await;
        assert!(
            inodes(dir.path(), ".log").is_empty(),
            "every log is checkpointed"
        );
        let free = inodes(dir.path(), "-free");
        assert_eq!(free.len(), FREE_LOGS);
        // Two more logs: the first from the zeroed spare, the next from a reused one, whose
        // stale records (seq 2..) sit after the new ones.
        for seq in 10..=15 {
            a.create(&plain(seq, 1), &m).await.unwrap();
            if seq % 3 == 0 {
                a.seal();
            }
        }
        let logs = inodes(dir.path(), ".log");
        assert!(
            logs.iter().any(|i| free.contains(i)),
            "a checkpointed log was reused: {logs:?} {free:?}"
        );
        let mut b = CommitStore::local(dir.path().to_owned());
        let read = b
            .read_stored(&(10..=15).collect::<Vec<_>>(), &m)
            .await
            .unwrap();
        assert_eq!(
            commits(read.clone()),
            (10..=15).map(|s| plain(s, 1)).collect::<Vec<_>>()
        );
        assert!(read.iter().all(|r| r.inline.is_none()));
        // The tail after 15 is empty: no stale record reads as a lost link's.
        assert!(b.unlinked_tail(Some(15), 15).await.unwrap().is_empty());
    }

    /// A record larger than a log gets a log of its own; the records after it go to the
    /// prepared spare and read back.
    #[tokio::test]
    async fn a_record_larger_than_a_log_gets_its_own() {
        let (dir, mut a, m) = first_writer().await;
        let huge = Commit {
            ops: vec![Op::DeleteTopic {
                name: "x".repeat(LOCAL_LOG_BYTES as usize + 10),
            }],
            ..plain(3, 1)
        };
        a.create(&plain(2, 1), &m).await.unwrap();
        a.create(&huge, &m).await.unwrap();
        for seq in 4..=6 {
            a.create(&plain(seq, 1), &m).await.unwrap();
        }
        a.seal();
        a.create(&plain(7, 1), &m).await.unwrap();
        let mut b = CommitStore::local(dir.path().to_owned());
        let read = commits(
            b.read_stored(&(2..=7).collect::<Vec<_>>(), &m)
                .await
                .unwrap(),
        );
        assert_eq!(read[1], huge);
        assert_eq!(read[5], plain(7, 1));
        assert_eq!(read.len(), 6);
    }

    #[test]
    fn stale_records_end_the_log() {
        let mut bytes = frame(&plain(7, 1).encode(), None);
        bytes.extend_from_slice(&frame(&plain(3, 1).encode(), None));
        bytes.extend_from_slice(&frame(&plain(8, 1).encode(), None));
        let got = parse_log(&Bytes::from(bytes), 7);
        assert_eq!(commits(got), vec![plain(7, 1)]);
    }

    #[test]
    fn torn_records_end_the_log() {
        let inline = Inline {
            data: DataId { epoch: 1, seq: 1 },
            pos: 0,
            bytes: Bytes::from_static(b"data"),
        };
        for with in [None, Some(&inline)] {
            let mut bytes = frame(&commit(1, 1).encode(), with);
            let second = frame(&commit(2, 1).encode(), with);
            bytes.extend_from_slice(&second[..second.len() - 3]);
            bytes.extend_from_slice(&[0; 64]);
            let got = parse_log(&Bytes::from(bytes), 0);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].inline.as_ref(), with);
            let mut flipped = frame(&commit(1, 1).encode(), with);
            let n = flipped.len();
            flipped[n - 2] ^= 1;
            assert!(parse_log(&Bytes::from(flipped), 0).is_empty());
        }
    }
}
