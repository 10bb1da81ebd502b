//! Faults, as SlateDB tests its engine: an object store that fails calls on a seeded random
//! schedule — before the call took effect, or *after* it did (the request failed, the object
//! exists) — and adds latency, under produce, compaction, retention, merges, reads and crashes.
//! After each run a clean restart must show: every acknowledged record (or, in the compacted
//! topic, a newer record of its key), offsets strictly increasing, no record twice, nothing
//! that was never written.
//!
//! Each run prints its seed first; `SLUICE_FAULT_SEED=<seed>` runs that one alone (the fault
//! schedule replays exactly; task timing may differ).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sluice_log::{
    Compression, EncodedRecords, Log, LogOptions, NewTopic, PartitionAppend, Record, Storage,
};

/// What happens to one call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Fails without taking effect.
    Before,
    /// Takes effect, then reports failure.
    After,
    /// Takes effect late.
    Slow,
}

struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    rng: Mutex<StdRng>,
    /// Chance that a call fails (half before, half after taking effect).
    rate: f64,
    on: AtomicBool,
    /// Faults injected so far (failures before and after taking effect).
    injected: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore")
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore")
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "faulty",
        source: Box::new(std::io::Error::other(format!("injected fault: {what}"))),
    }
}

impl FaultyStore {
    fn roll(&self) -> Fault {
        if !self.on.load(Ordering::Relaxed) {
            return Fault::None;
        }
        let mut rng = self.rng.lock().unwrap();
        let x: f64 = rng.random();
        if x < self.rate {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        if x < self.rate / 2.0 {
            Fault::Before
        } else if x < self.rate {
            Fault::After
        } else if x < self.rate * 2.0 {
            Fault::Slow
        } else {
            Fault::None
        }
    }

    async fn slow(&self, fault: Fault) {
        if fault == Fault::Slow {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let fault = self.roll();
        if fault == Fault::Before {
            return Err(injected("put before"));
        }
        self.slow(fault).await;
        let r = self.inner.put_opts(location, payload, opts).await?;
        if fault == Fault::After {
            return Err(injected("put after it took effect"));
        }
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let fault = self.roll();
        if matches!(fault, Fault::Before | Fault::After) {
            return Err(injected("get"));
        }
        self.slow(fault).await;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let fault = self.roll();
        if matches!(fault, Fault::Before | Fault::After) {
            return Err(injected("get ranges"));
        }
        self.slow(fault).await;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // Decide each deletion's fault now, in order, so the schedule is the seed's.
        let faults: Vec<Fault> = (0..64).map(|_| self.roll()).collect();
        let inner = self.inner.clone();
        locations
            .enumerate()
            .then(move |(i, location)| {
                let inner = inner.clone();
                let fault = faults.get(i).copied().unwrap_or(Fault::None);
                async move {
                    let location = location?;
                    if fault == Fault::Before {
                        return Err(injected("delete before"));
                    }
                    let mut done =
                        inner.delete_stream(futures::stream::iter([Ok(location.clone())]).boxed());
                    while let Some(r) = done.next().await {
                        r?;
                    }
                    if fault == Fault::After {
                        return Err(injected("delete after it took effect"));
                    }
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if matches!(self.roll(), Fault::Before | Fault::After) {
            return futures::stream::iter([Err(injected("list"))]).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        if matches!(self.roll(), Fault::Before | Fault::After) {
            return Err(injected("list with delimiter"));
        }
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let fault = self.roll();
        if fault == Fault::Before {
            return Err(injected("copy before"));
        }
        self.inner.copy_opts(from, to, options).await?;
        if fault == Fault::After {
            return Err(injected("copy after it took effect"));
        }
        Ok(())
    }
}

fn options() -> LogOptions {
    LogOptions {
        checkpoint_commits: 5,
        checkpoint_interval: Duration::from_millis(200),
        retention_interval: Duration::from_millis(30),
        merge_target_bytes: 16 << 10,
        merge_min_objects: 3,
        wal_gc_min_age: Duration::from_millis(300),
        ..LogOptions::default()
    }
}

fn topic(name: &str, config: Value) -> NewTopic {
    NewTopic {
        name: name.into(),
        partitions: 1,
        config: serde_json::from_value::<BTreeMap<String, Value>>(config).unwrap(),
        spec: json!({}),
    }
}

/// Open, retrying while faults get in the way (a real server would be restarted).
async fn open(store: &Arc<FaultyStore>) -> Log {
    for _ in 0..200 {
        if let Ok(log) = Log::open(Storage::ObjectStore(store.clone()), options()).await {
            return log;
        }
    }
    panic!("the log never opened");
}

async fn ensure_topics(log: &Log) {
    for (name, config) in [
        ("kv", json!({"cleanup.policy": "compact"})),
        ("events", json!({"retention.ms": -1})),
        ("ephemeral", json!({"retention.ms": 1})),
    ] {
        for _ in 0..50 {
            if log.topic(name).is_some()
                || log.create_topic(topic(name, config.clone())).await.is_ok()
            {
                break;
            }
        }
    }
}

/// An attempted append: `(topic, key, value)` and, when acknowledged, its offset.
struct Attempt {
    topic: &'static str,
    key: String,
    value: String,
    acked: Option<u64>,
}

async fn run(seed: u64) {
    eprintln!("fault schedule seed {seed} (SLUICE_FAULT_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let store = Arc::new(FaultyStore {
        inner: Arc::new(InMemory::new()),
        rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x5eed)),
        rate: std::env::var("SLUICE_FAULT_RATE")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0.06),
        on: AtomicBool::new(true),
        injected: Default::default(),
    });
    let mut log = open(&store).await;
    let mut attempts: Vec<Attempt> = Vec::new();
    for step in 0..120 {
        if log.topic("kv").is_none() || log.topic("events").is_none() {
            ensure_topics(&log).await;
            if log.topic("kv").is_none() || log.topic("events").is_none() {
                continue;
            }
        }
        match rng.random_range(0..10) {
            0..=4 => {
                let t: &'static str = ["kv", "events", "ephemeral"][rng.random_range(0..3)];
                let n = rng.random_range(1..6);
                let batch: Vec<(String, String)> = (0..n)
                    .map(|i| {
                        (
                            format!("k{}", rng.random_range(0..6)),
                            format!("{seed}-{step}-{i}"),
                        )
                    })
                    .collect();
                let records: Vec<Record> = batch
                    .iter()
                    .map(|(k, v)| Record {
                        key: Some(Bytes::from(k.clone())),
                        value: Some(Bytes::from(v.clone())),
                        headers: vec![],
                        timestamp: 0,
                    })
                    .collect();
                let appended = log
                    .append(
                        t,
                        vec![PartitionAppend {
                            partition: 0,
                            records: EncodedRecords::encode(&records, Compression::None),
                            event_ids: vec![],
                        }],
                    )
                    .await;
                let offsets: Vec<Option<u64>> = match appended {
                    Ok(r) => r[0].iter().map(|a| Some(a.offset)).collect(),
                    Err(_) => vec![None; batch.len()],
                };
                for ((key, value), acked) in batch.into_iter().zip(offsets) {
                    attempts.push(Attempt {
                        topic: t,
                        key,
                        value,
                        acked,
                    });
                }
            }
            5 | 6 => {
                let _ = log.compact("kv", 0).await;
            }
            7 => {
                // Reads never show a duplicate or a step back, whatever fails.
                for t in ["kv", "events", "ephemeral"] {
                    if let Ok(r) = log
                        .read(t, 0, log.offsets(t, 0).map_or(0, |o| o.0), 1000, 1 << 20)
                        .await
                    {
                        let offs: Vec<u64> = r.records.iter().map(|s| s.offset).collect();
                        assert!(
                            offs.windows(2).all(|w| w[0] < w[1]),
                            "seed {seed}: {t} read {offs:?}"
                        );
                    }
                }
            }
            8 => tokio::time::sleep(Duration::from_millis(40)).await,
            _ => {
                // A crash: the writer is abandoned where it is, a new one takes over.
                std::mem::forget(log);
                log = open(&store).await;
            }
        }
    }
    std::mem::forget(log);
    store.on.store(false, Ordering::Relaxed);
    let acked = attempts.iter().filter(|a| a.acked.is_some()).count();
    let injected = store.injected.load(Ordering::Relaxed);
    eprintln!(
        "seed {seed}: {injected} faults injected; {acked} of {} appended records acknowledged",
        attempts.len()
    );
    // The run must have exercised something: faults, acknowledged and refused appends.
    assert!(injected >= 5, "seed {seed}: only {injected} faults");
    assert!(acked >= 10, "seed {seed}: only {acked} acknowledged");
    let log = open(&store).await;
    check(seed, &log, &attempts).await;
    // Housekeeping with no faults collects what failed runs left behind, and nothing read
    // changes for it.
    let _ = log.compact("kv", 0).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    check(seed, &log, &attempts).await;
    log.close().await;
}

async fn check(seed: u64, log: &Log, attempts: &[Attempt]) {
    let written: HashMap<&str, (&str, &str)> = attempts
        .iter()
        .map(|a| (a.value.as_str(), (a.topic, a.key.as_str())))
        .collect();
    for t in ["kv", "events"] {
        let Some(info) = log.topic(t) else {
            assert!(
                attempts.iter().all(|a| a.topic != t || a.acked.is_none()),
                "seed {seed}: topic {t} is gone but had acknowledged appends"
            );
            continue;
        };
        let mut present: Vec<(u64, String, String)> = Vec::new();
        log.scan(t, 0, 0, info.partitions[0].next_offset, |s| {
            present.push((
                s.offset,
                String::from_utf8(s.record.key.unwrap().to_vec()).unwrap(),
                String::from_utf8(s.record.value.unwrap().to_vec()).unwrap(),
            ));
            true
        })
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: reading {t}: {e}"));
        assert!(
            present.windows(2).all(|w| w[0].0 < w[1].0),
            "seed {seed}: {t} offsets do not increase"
        );
        let mut values = HashSet::new();
        for (o, k, v) in &present {
            assert!(values.insert(v.clone()), "seed {seed}: {t} holds {v} twice");
            assert_eq!(
                written.get(v.as_str()),
                Some(&(t, k.as_str())),
                "seed {seed}: {t}@{o} holds {k}={v}, which was never written there"
            );
        }
        let at: HashMap<u64, &(u64, String, String)> = present.iter().map(|p| (p.0, p)).collect();
        for a in attempts.iter().filter(|a| a.topic == t) {
            let Some(o) = a.acked else { continue };
            match at.get(&o) {
                Some((_, k, v)) => assert!(
                    *k == a.key && *v == a.value,
                    "seed {seed}: {t}@{o} acknowledged {}={} but holds {k}={v}",
                    a.key,
                    a.value
                ),
                None => assert!(
                    t == "kv" && present.iter().any(|(po, pk, _)| *pk == a.key && *po > o),
                    "seed {seed}: {t}@{o} ({}={}) was acknowledged and is gone",
                    a.key,
                    a.value
                ),
            }
        }
    }
}

#[test]
fn nothing_acknowledged_is_lost_under_injected_faults() {
    let seeds: Vec<u64> = match std::env::var("SLUICE_FAULT_SEED") {
        Ok(s) => vec![s.parse().expect("a number")],
        Err(_) => {
            let base: u64 = rand::random();
            (0..6).map(|i| base.wrapping_add(i)).collect()
        }
    };
    for seed in seeds {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(seed));
        rt.shutdown_background();
    }
}
