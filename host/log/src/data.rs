//! Where the bytes of a flush go. Each store has its own bottleneck, so each gets its own sink:
//!
//! - **Local directory** (disk bandwidth is the cost): one segment file grows by durable appends
//!   (`pwrite` + `fdatasync`) and is sealed at `segment_bytes`, so each byte is written once.
//! - **Object store** such as S3 (request count is the cost): each flush is one new object
//!   holding every partition's batches; a merger can later fold small objects into larger ones.
//!
//! Either way a flush is one durable write, whatever the number of partitions in it.

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

impl DataSink {
    /// Make `chunk` (flush number `seq`) durable; returns the object it is in and where it
    /// starts there.
    pub async fn write(&mut self, seq: u64, chunk: Bytes) -> Result<(DataId, u64), SinkError> {
        match self {
            DataSink::Local(s) => s.write(seq, chunk).await,
            DataSink::Remote(s) => s.write(seq, chunk).await.map(|id| (id, 0)),
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
    current: Option<Segment>,
}

impl LocalSegments {
    pub fn new(root: PathBuf, epoch: u64, segment_bytes: u64) -> LocalSegments {
        LocalSegments {
            root,
            epoch,
            segment_bytes,
            current: None,
        }
    }

    /// Append `chunk` to the current segment (opening a new one if it is full or gone).
    async fn write(&mut self, seq: u64, chunk: Bytes) -> Result<(DataId, u64), SinkError> {
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
        let res = blocking(move || -> std::io::Result<()> {
            file.write_all_at(&chunk, pos)?;
            file.sync_data()
        })
        .await;
        match res {
            Ok(()) => {
                seg.len = pos + len;
                Ok((id, pos))
            }
            Err(e) => {
                // The tail of this segment is now unknown; never append behind it again.
                self.current = None;
                Err(e.into())
            }
        }
    }
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
