//! Fetching runs of records from data objects.
//!
//! A local directory is read with `pread` on file handles kept open (a fetch of many runs is
//! one blocking task, not an open/seek/close per run); an object store with ranged GETs, the
//! ranges of one object in one `get_ranges` call (which coalesces neighbours).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::ObjectStore;

use crate::LogError;
use crate::metrics::LogMetrics;
use crate::paths::{self, DataId};

/// How many local data files stay open for reading.
const OPEN_FILES: usize = 64;

pub(crate) struct RunReader {
    store: Arc<dyn ObjectStore>,
    local_root: Option<PathBuf>,
    files: Arc<Mutex<HashMap<DataId, Arc<File>>>>,
}

/// One run to read: where it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub data: DataId,
    pub pos: u64,
    pub len: u64,
}

impl RunReader {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, local_root: Option<PathBuf>) -> RunReader {
        RunReader {
            store,
            local_root,
            files: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Close the handle of a deleted data object.
    pub(crate) fn forget(&self, data: DataId) {
        self.files.lock().expect("files").remove(&data);
    }

    /// The bytes of every run, in order.
    pub(crate) async fn read(
        &self,
        runs: Vec<Run>,
        metrics: &LogMetrics,
    ) -> Result<Vec<Bytes>, LogError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        metrics
            .store_gets
            .fetch_add(runs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let result = match &self.local_root {
            Some(root) => {
                let (root, files) = (root.clone(), self.files.clone());
                tokio::task::spawn_blocking(move || read_local(&root, &files, &runs))
                    .await
                    .expect("blocking read")
            }
            None => self.read_remote(&runs).await,
        };
        result.inspect_err(|_| LogMetrics::inc(&metrics.store_errors))
    }

    async fn read_remote(&self, runs: &[Run]) -> Result<Vec<Bytes>, LogError> {
        let mut by_object: BTreeMap<DataId, Vec<usize>> = BTreeMap::new();
        for (i, r) in runs.iter().enumerate() {
            by_object.entry(r.data).or_default().push(i);
        }
        let fetches = by_object.into_iter().map(|(data, idx)| {
            let ranges: Vec<_> = idx
                .iter()
                .map(|&i| runs[i].pos..runs[i].pos + runs[i].len)
                .collect();
            let store = self.store.clone();
            async move {
                let got = store.get_ranges(&paths::data(data), &ranges).await?;
                Ok::<_, LogError>(idx.into_iter().zip(got).collect::<Vec<_>>())
            }
        });
        let mut out = vec![Bytes::new(); runs.len()];
        for part in futures::future::try_join_all(fetches).await? {
            for (i, b) in part {
                out[i] = b;
            }
        }
        Ok(out)
    }
}

fn read_local(
    root: &std::path::Path,
    files: &Mutex<HashMap<DataId, Arc<File>>>,
    runs: &[Run],
) -> Result<Vec<Bytes>, LogError> {
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        let file = {
            let mut open = files.lock().expect("files");
            match open.get(&r.data) {
                Some(f) => f.clone(),
                None => {
                    let path = paths::local_data(root, r.data);
                    let f = Arc::new(
                        File::open(&path)
                            .map_err(|e| LogError::Storage(format!("{}: {e}", path.display())))?,
                    );
                    if open.len() >= OPEN_FILES {
                        let victim = *open.keys().next().expect("not empty");
                        open.remove(&victim);
                    }
                    open.insert(r.data, f.clone());
                    f
                }
            }
        };
        let mut buf = vec![0u8; r.len as usize];
        file.read_exact_at(&mut buf, r.pos)
            .map_err(|e| LogError::Storage(format!("reading {:?}: {e}", r.data)))?;
        out.push(Bytes::from(buf));
    }
    Ok(out)
}
