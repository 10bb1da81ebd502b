//! Where the bytes of a flush go. Each store has its own bottleneck, so each gets its own sink:
//!
//! - **Local directory** (disk bandwidth is the cost): one segment file grows by durable appends
//!   (`pwrite` + `fdatasync`) and is sealed at `segment_bytes`, so each byte is written once.
//! - **Object store** such as S3 (request count is the cost): each flush is one new object
//!   holding every partition's batches; a merger can later fold small objects into larger ones.
//!
//! Either way a flush is one durable write, whatever the number of partitions in it.
//!
//! A small local flush is not synced here at all: its bytes go into the segment's page cache
//! and, with its commit record, into the writer's pre-zeroed commit log, whose one
//! `fdatasync` makes both durable (see `commits.rs`). Such a segment is synced before the next
//! checkpoint, and recovery restores its bytes from the commit records after that checkpoint.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::io_thread::blocking;
use crate::paths::{self, DataId};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("local segment I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
}

pub enum DataSink {
    Local(LocalSegments),
    Remote(RemoteObjects),
}

/// Where a flush's chunk went.
pub struct Written {
    pub id: DataId,
    /// Where the chunk starts in `id`.
    pub pos: u64,
    /// Set when the chunk is written but not synced: its commit record must carry it (the
    /// record's sync makes it durable), and this segment must be synced before a checkpoint
    /// covers that record.
    pub unsynced: Option<Arc<File>>,
}

impl DataSink {
    /// Write `chunk` (flush number `seq`): durably, or (small local chunks) for its commit
    /// record to make durable.
    pub async fn write(&mut self, seq: u64, chunk: Bytes) -> Result<Written, SinkError> {
        match self {
            DataSink::Local(s) => s.write(seq, chunk).await,
            DataSink::Remote(s) => s.write(seq, chunk).await.map(|id| Written {
                id,
                pos: 0,
                unsynced: None,
            }),
        }
    }

    /// The object still being appended to (retention must not delete it).
    pub fn active(&self) -> Option<DataId> {
        match self {
            DataSink::Local(s) => s.current.as_ref().map(|c| c.id),
            DataSink::Remote(_) => None,
        }
    }
}

struct Segment {
    id: DataId,
    file: Arc<File>,
    len: u64,
}

pub struct LocalSegments {
    root: PathBuf,
    epoch: u64,
    segment_bytes: u64,
    /// Chunks up to this size are left for their commit record to make durable.
    inline_max: usize,
    current: Option<Segment>,
}

impl LocalSegments {
    pub fn new(root: PathBuf, epoch: u64, segment_bytes: u64, inline_max: usize) -> LocalSegments {
        LocalSegments {
            root,
            epoch,
            segment_bytes,
            inline_max,
            current: None,
        }
    }

    /// Append `chunk` to the current segment (opening a new one if it is full or gone).
    async fn write(&mut self, seq: u64, chunk: Bytes) -> Result<Written, SinkError> {
        if self
            .current
            .as_ref()
            .is_none_or(|c| c.len >= self.segment_bytes)
        {
            let id = DataId {
                epoch: self.epoch,
                seq,
            };
            let path = paths::local_data(&self.root, id);
            let file = blocking(move || -> std::io::Result<File> {
                let dir = path.parent().expect("data files live in a directory");
                std::fs::create_dir_all(dir)?;
                let file = File::options().create_new(true).write(true).open(&path)?;
                // The new name must survive a crash before anything in it is acknowledged.
                File::open(dir)?.sync_all()?;
                Ok(file)
            })
            .await?;
            self.current = Some(Segment {
                id,
                file: Arc::new(file),
                len: 0,
            });
        }
        let seg = self.current.as_mut().expect("a segment is open");
        let (id, pos, file) = (seg.id, seg.len, seg.file.clone());
        let len = chunk.len() as u64;
        let inline = chunk.len() <= self.inline_max;
        let res = blocking(move || -> std::io::Result<Arc<File>> {
            file.write_all_at(&chunk, pos)?;
            if !inline {
                file.sync_data()?;
            }
            Ok(file)
        })
        .await;
        match res {
            Ok(file) => {
                seg.len = pos + len;
                Ok(Written {
                    id,
                    pos,
                    unsynced: inline.then_some(file),
                })
            }
            Err(e) => {
                // The tail of this segment is now unknown; never append behind it again. A
                // segment nothing was written to yet is kept and written from its start again:
                // a disk that stays full must not leave a new empty file per failed write.
                if pos > 0 {
                    self.current = None;
                }
                Err(e.into())
            }
        }
    }
}

/// Put the data that commit records carried (each `bytes` at `pos` of its segment) back where
/// a segment lacks it, then sync every segment involved. A segment that is gone was deleted
/// because nothing referenced it any more (its directory entry was synced when it was
/// created), so there is nothing to restore in it. Returns the bytes written.
pub(crate) fn restore(
    root: &std::path::Path,
    inline: &[crate::commits::Inline],
) -> std::io::Result<u64> {
    let mut files: HashMap<DataId, Option<File>> = HashMap::new();
    let mut written = 0;
    let mut have = Vec::new();
    for i in inline {
        let file = match files.entry(i.data) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                match File::options()
                    .read(true)
                    .write(true)
                    .open(paths::local_data(root, i.data))
                {
                    Ok(f) => e.insert(Some(f)),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => e.insert(None),
                    Err(err) => return Err(err),
                }
            }
        };
        let Some(file) = file else { continue };
        have.resize(i.bytes.len(), 0);
        let intact = match file.read_exact_at(&mut have, i.pos) {
            Ok(()) => have[..] == i.bytes[..],
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
            Err(e) => return Err(e),
        };
        if !intact {
            file.write_all_at(&i.bytes, i.pos)?;
            written += i.bytes.len() as u64;
        }
    }
    for file in files.values().flatten() {
        file.sync_data()?;
    }
    Ok(written)
}

pub struct RemoteObjects {
    store: Arc<dyn ObjectStore>,
    epoch: u64,
}

impl RemoteObjects {
    pub fn new(store: Arc<dyn ObjectStore>, epoch: u64) -> RemoteObjects {
        RemoteObjects { store, epoch }
    }

    async fn write(&mut self, seq: u64, chunk: Bytes) -> Result<DataId, SinkError> {
        let id = DataId {
            epoch: self.epoch,
            seq,
        };
        self.store
            .put(&paths::data(id), PutPayload::from_bytes(chunk))
            .await?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &std::path::Path) -> usize {
        walk(dir)
    }

    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn failed_writes_to_a_fresh_segment_leave_no_stray_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut segs = LocalSegments::new(dir.path().to_owned(), 1, 1 << 20, 0);
        let w = segs.write(1, Bytes::from_static(b"first")).await.unwrap();
        assert_eq!((w.pos, files(dir.path())), (0, 1));
        // A segment that cannot take writes (as a full disk refuses them), not yet written to:
        // every failure retries the same file.
        let id = DataId { epoch: 1, seq: 2 };
        let path = paths::local_data(dir.path(), id);
        std::fs::write(&path, b"").unwrap();
        segs.current = Some(Segment {
            id,
            file: Arc::new(File::open(&path).unwrap()),
            len: 0,
        });
        for seq in 3..20 {
            assert!(segs.write(seq, Bytes::from_static(b"x")).await.is_err());
        }
        assert_eq!(
            files(dir.path()),
            2,
            "one file per segment, not one per failure"
        );
        assert_eq!(segs.current.as_ref().map(|c| c.id), Some(id));
        // Once something was written to a segment, a failure ends it: the next write opens
        // a new one.
        segs.current.as_mut().unwrap().len = 10;
        assert!(segs.write(30, Bytes::from_static(b"x")).await.is_err());
        let w = segs.write(31, Bytes::from_static(b"y")).await.unwrap();
        assert_eq!((w.id, w.pos), (DataId { epoch: 1, seq: 31 }, 0));
        assert_eq!(files(dir.path()), 3);
    }
}
