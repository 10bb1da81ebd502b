//! An in-memory object store with S3-like request latency, counting requests: the request rate
//! Sluice would cause on S3 at full load, without an S3 bill.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use sluice_log::{
    Compression, EncodedRecords, Log, LogMetrics, LogOptions, NewTopic, PartitionAppend, Record,
    Storage,
};

#[derive(Debug)]
pub struct LatencyStore {
    inner: InMemory,
    put_latency: Duration,
    get_latency: Duration,
    pub puts: AtomicU64,
}

impl LatencyStore {
    pub fn new(put_latency: Duration, get_latency: Duration) -> LatencyStore {
        LatencyStore {
            inner: InMemory::new(),
            put_latency,
            get_latency,
            puts: AtomicU64::new(0),
        }
    }
}

impl fmt::Display for LatencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LatencyStore({:?} put, {:?} get)",
            self.put_latency, self.get_latency
        )
    }
}

#[async_trait]
impl ObjectStore for LatencyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.put_latency).await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        tokio::time::sleep(self.get_latency).await;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

pub async fn s3_like(secs: Duration) -> anyhow::Result<()> {
    let store = Arc::new(LatencyStore {
        inner: InMemory::new(),
        put_latency: Duration::from_millis(30),
        get_latency: Duration::from_millis(15),
        puts: AtomicU64::new(0),
    });
    let opts = LogOptions {
        flush_window: Duration::from_millis(100),
        ..LogOptions::default()
    };
    let log = Log::open(Storage::ObjectStore(store.clone()), opts).await?;
    log.create_topic(NewTopic {
        name: "bench".into(),
        partitions: 12,
        config: Default::default(),
        spec: serde_json::Value::Null,
    })
    .await?;
    let value = Bytes::from(vec![b'x'; 1000]);
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let puts0 = store.puts.load(Ordering::Relaxed);
    let commits0 = LogMetrics::get(&log.metrics().commits);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..256u32 {
        let (log, stop, events, value) = (log.clone(), stop.clone(), events.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let records: Vec<Record> = (0..100)
                    .map(|_| Record {
                        key: None,
                        value: Some(value.clone()),
                        headers: vec![],
                        timestamp: 0,
                    })
                    .collect();
                let part = PartitionAppend {
                    partition: c % 12,
                    records: EncodedRecords::encode(&records, Compression::None),
                    event_ids: vec![],
                };
                if log.append("bench", vec![part]).await.is_ok() {
                    events.fetch_add(100, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let s = start.elapsed().as_secs_f64();
    let puts = store.puts.load(Ordering::Relaxed) - puts0;
    let commits = LogMetrics::get(&log.metrics().commits) - commits0;
    println!(
        "S3-like store (30 ms PUT, 100 ms flush window, 256 appenders x 100 x 1 KB, 12 partitions): {:.0} events/s, {:.1} PUTs/s ({:.1} commits/s), {:.0} events per PUT",
        events.load(Ordering::Relaxed) as f64 / s,
        puts as f64 / s,
        commits as f64 / s,
        events.load(Ordering::Relaxed) as f64 / puts.max(1) as f64
    );
    log.close().await;
    Ok(())
}
