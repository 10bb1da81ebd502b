//! Key compaction through the log's public API, against a model of what Kafka's semantics
//! leave: the newest record per key up to the compacted offset, everything after it, offsets
//! unchanged, null and empty values distinct.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use proptest::prelude::*;
use serde_json::{Value, json};
use sluice_log::compaction::{Policy, PolicyError, PolicyFuture, RecordView};
use sluice_log::{
    Compression, EncodedRecords, Log, LogError, LogOptions, NewTopic, PartitionAppend, Record,
    Storage,
};

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn compacted_topic(name: &str, delete_retention_ms: i64) -> NewTopic {
    NewTopic {
        name: name.into(),
        partitions: 1,
        config: serde_json::from_value::<BTreeMap<String, Value>>(json!({
            "cleanup.policy": "compact",
            "delete.retention.ms": delete_retention_ms,
            "compression.type": "zstd",
        }))
        .unwrap(),
        spec: json!({}),
    }
}

/// What a test appends: a key (or none) and a value (None = a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    key: Option<String>,
    value: Option<String>,
    timestamp: i64,
}

fn record(w: &Written) -> Record {
    Record {
        key: w.key.clone().map(Bytes::from),
        value: w.value.clone().map(Bytes::from),
        headers: vec![("h".into(), Bytes::from_static(b"1"))],
        timestamp: w.timestamp,
    }
}

async fn append(log: &Log, topic: &str, batch: &[Written]) -> Vec<u64> {
    let records: Vec<Record> = batch.iter().map(record).collect();
    let r = log
        .append(
            topic,
            vec![PartitionAppend {
                partition: 0,
                records: EncodedRecords::encode(&records, Compression::None),
                event_ids: vec![],
            }],
        )
        .await
        .unwrap();
    r[0].iter().map(|a| a.offset).collect()
}

/// Everything readable up to the end (as it moves), following `next_offset` a few records at
/// a time (so reads that start inside compacted gaps are exercised).
async fn read_all(log: &Log, topic: &str) -> Vec<(u64, Written)> {
    let (mut at, _) = log.offsets(topic, 0).unwrap();
    let mut out = Vec::new();
    while at < log.offsets(topic, 0).unwrap().1 {
        let r = log.read(topic, 0, at, 3, 1 << 20).await.unwrap();
        assert!(
            r.next_offset > at,
            "a read at {at} must move on (got {r:?})"
        );
        for s in r.records {
            assert!(out.last().is_none_or(|(o, _)| *o < s.offset));
            out.push((
                s.offset,
                Written {
                    key: s.record.key.map(|k| String::from_utf8(k.to_vec()).unwrap()),
                    value: s
                        .record
                        .value
                        .map(|v| String::from_utf8(v.to_vec()).unwrap()),
                    timestamp: s.record.timestamp,
                },
            ));
        }
        at = r.next_offset;
    }
    out
}

/// The model: every record appended, and the offset compaction has covered so far.
#[derive(Default)]
struct Model {
    appended: Vec<(u64, Written)>,
    compacted_to: Option<u64>,
    tombstones_expire: bool,
}

impl Model {
    /// What a reader must see: after the compacted offset everything; up to it, the newest
    /// record per key among those offsets (tombstones dropped when they expire), and keyless
    /// records.
    fn expected(&self) -> Vec<(u64, Written)> {
        let Some(to) = self.compacted_to else {
            return self.appended.clone();
        };
        let mut newest: HashMap<&str, u64> = HashMap::new();
        for (o, w) in &self.appended {
            if *o <= to
                && let Some(k) = &w.key
            {
                newest.insert(k, *o);
            }
        }
        self.appended
            .iter()
            .filter(|(o, w)| {
                *o > to
                    || match &w.key {
                        None => true,
                        Some(k) => {
                            newest[k.as_str()] == *o
                                && !(w.value.is_none() && self.tombstones_expire)
                        }
                    }
            })
            .cloned()
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Step {
    Append(Vec<(Option<u8>, Option<u8>)>),
    Compact,
    Restart,
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => proptest::collection::vec(
            (proptest::option::weighted(0.9, 0u8..6), proptest::option::weighted(0.8, 0u8..4)),
            1..12
        )
        .prop_map(Step::Append),
        3 => Just(Step::Compact),
        1 => Just(Step::Restart),
        1 => Just(Step::Crash),
    ]
}

fn options() -> LogOptions {
    LogOptions {
        checkpoint_commits: 3,
        retention_interval: Duration::from_secs(3600),
        ..LogOptions::default()
    }
}

async fn open(storage: &Storage) -> Log {
    Log::open(storage.clone(), options()).await.unwrap()
}

async fn run_steps(storage: Storage, steps: Vec<Step>, tombstones_expire: bool) {
    let mut log = open(&storage).await;
    let retention = if tombstones_expire {
        60_000
    } else {
        240 * HOUR_MS
    };
    log.create_topic(compacted_topic("t", retention))
        .await
        .unwrap();
    let mut model = Model {
        tombstones_expire,
        ..Model::default()
    };
    // Records are an hour old, so expiring tombstones are past `delete.retention.ms`.
    let ts = now_ms() - HOUR_MS;
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Append(items) => {
                let batch: Vec<Written> = items
                    .iter()
                    .map(|(k, v)| Written {
                        key: k.map(|k| format!("k{k}")),
                        // Value 0 is the empty value: not a tombstone.
                        value: v.map(|v| {
                            if v == 0 {
                                String::new()
                            } else {
                                format!("v{i}.{v}")
                            }
                        }),
                        timestamp: ts,
                    })
                    .collect();
                let offsets = append(&log, "t", &batch).await;
                model.appended.extend(offsets.into_iter().zip(batch));
            }
            Step::Compact => {
                let done = log.compact("t", 0).await.unwrap();
                if let Some((_, to)) = done.range {
                    model.compacted_to = Some(model.compacted_to.map_or(to, |c| c.max(to)));
                }
            }
            Step::Restart => {
                log.close().await;
                log = open(&storage).await;
            }
            Step::Crash => {
                std::mem::forget(log);
                log = open(&storage).await;
            }
        }
        assert_eq!(
            read_all(&log, "t").await,
            model.expected(),
            "after step {i}"
        );
    }
    log.close().await;
    let log = open(&storage).await;
    assert_eq!(
        read_all(&log, "t").await,
        model.expected(),
        "after a restart"
    );
    log.close().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn compaction_leaves_the_newest_record_per_key_through_restarts_and_crashes(
        steps in proptest::collection::vec(step(), 1..24),
        tombstones_expire in any::<bool>(),
        local in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let storage = if local {
            Storage::Local(dir.path().into())
        } else {
            Storage::ObjectStore(Arc::new(InMemory::new()))
        };
        rt.block_on(run_steps(storage, steps, tombstones_expire));
    }
}

#[tokio::test]
async fn compaction_frees_the_old_objects_and_keeps_null_and_empty_apart() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let opts = LogOptions {
        retention_interval: Duration::from_millis(100),
        merge_min_objects: usize::MAX,
        ..LogOptions::default()
    };
    let log = Log::open(Storage::ObjectStore(store.clone()), opts.clone())
        .await
        .unwrap();
    log.create_topic(compacted_topic("offsets", 240 * HOUR_MS))
        .await
        .unwrap();
    let ts = now_ms() - HOUR_MS;
    let w = |k: &str, v: Option<&str>| Written {
        key: Some(k.into()),
        value: v.map(str::to_owned),
        timestamp: ts,
    };
    // A thousand commits of the same few keys, as offset commits are.
    for i in 0..1000 {
        append(
            &log,
            "offsets",
            &[w(&format!("g{}", i % 4), Some(&i.to_string()))],
        )
        .await;
    }
    append(&log, "offsets", &[w("g0", None), w("g1", Some(""))]).await;
    let before = log.topic("offsets").unwrap().partitions[0].bytes;
    let (ratio, _) = log.dirty("offsets", 0).unwrap();
    assert_eq!(ratio, 1.0);
    assert_eq!(log.compaction_due(), vec![("offsets".to_string(), 0)]);
    let done = log.compact("offsets", 0).await.unwrap();
    assert_eq!(done.range, Some((0, 1001)));
    assert_eq!((done.records_in, done.records_out), (1002, 4));
    let after = log.topic("offsets").unwrap().partitions[0].bytes;
    assert!(after * 20 < before, "{before} -> {after}");
    assert_eq!(log.dirty("offsets", 0).unwrap().0, 0.0);
    assert!(log.compaction_due().is_empty());
    let seen: Vec<(u64, Option<String>)> = read_all(&log, "offsets")
        .await
        .into_iter()
        .map(|(o, w)| (o, w.value))
        .collect();
    assert_eq!(
        seen,
        vec![
            (998, Some("998".into())),
            (999, Some("999".into())),
            (1000, None),
            (1001, Some(String::new())),
        ]
    );
    // Offsets did not move: the high watermark is where it was, and the next append follows.
    assert_eq!(log.offsets("offsets", 0).unwrap(), (0, 1002));
    assert_eq!(append(&log, "offsets", &[w("g2", Some("x"))]).await, [1002]);
    // Housekeeping deletes the thousand flush objects nothing references any more.
    let objects = || async {
        use futures::TryStreamExt;
        store
            .list(Some(&object_store::path::Path::from("data")))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while objects().await > 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} objects left",
            objects().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    log.close().await;
    let log = Log::open(Storage::ObjectStore(store), opts).await.unwrap();
    assert_eq!(read_all(&log, "offsets").await.len(), 5);
    log.close().await;
}

/// A policy that answers garbage: too few answers, or an error.
struct Broken {
    error: bool,
}

impl Policy for Broken {
    fn observe<'a, 'r: 'a>(&'a mut self, _: &'a [RecordView<'r>]) -> PolicyFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }
    fn survivors<'a, 'r: 'a>(
        &'a mut self,
        batch: &'a [RecordView<'r>],
    ) -> PolicyFuture<'a, Vec<bool>> {
        let answer = if self.error {
            Err(PolicyError::Failed("trapped".into()))
        } else {
            Ok(vec![false; batch.len().saturating_sub(1)])
        };
        Box::pin(async move { answer })
    }
}

#[tokio::test]
async fn a_broken_policy_changes_nothing() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let log = Log::open(Storage::ObjectStore(store.clone()), LogOptions::default())
        .await
        .unwrap();
    log.create_topic(compacted_topic("t", HOUR_MS))
        .await
        .unwrap();
    for i in 0..10 {
        append(
            &log,
            "t",
            &[Written {
                key: Some("k".into()),
                value: Some(i.to_string()),
                timestamp: now_ms() - HOUR_MS,
            }],
        )
        .await;
    }
    let before = read_all(&log, "t").await;
    for error in [false, true] {
        let e = log
            .compact_with("t", 0, &mut Broken { error })
            .await
            .unwrap_err();
        assert!(matches!(e, LogError::Storage(_)), "{e}");
        assert_eq!(read_all(&log, "t").await, before);
    }
    // The real policy still works afterwards.
    assert_eq!(log.compact("t", 0).await.unwrap().records_out, 1);
    log.close().await;
}

#[tokio::test]
async fn records_younger_than_the_minimum_lag_are_not_compacted() {
    let log = Log::open(
        Storage::ObjectStore(Arc::new(InMemory::new())),
        LogOptions::default(),
    )
    .await
    .unwrap();
    let mut t = compacted_topic("t", HOUR_MS);
    t.config
        .insert("min.compaction.lag.ms".into(), json!(HOUR_MS / 2));
    log.create_topic(t).await.unwrap();
    let at = |age: i64| Written {
        key: Some("k".into()),
        value: Some(age.to_string()),
        timestamp: now_ms() - age,
    };
    append(&log, "t", &[at(HOUR_MS)]).await;
    append(&log, "t", &[at(HOUR_MS)]).await;
    append(&log, "t", &[at(0)]).await;
    // Only the two old runs are cleanable: the older of them goes; the young one stays even
    // though it supersedes both.
    let done = log.compact("t", 0).await.unwrap();
    assert_eq!(done.range, Some((0, 1)));
    let offsets: Vec<u64> = read_all(&log, "t").await.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, [1, 2]);
    log.close().await;
}

/// An in-memory store whose commit-record writes can be held forever (a writer frozen between
/// writing its data and committing it: what a crash there leaves).
#[derive(Debug)]
struct Gate {
    inner: InMemory,
    hold_commits: std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gate")
    }
}

#[async_trait::async_trait]
impl ObjectStore for Gate {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        if location.as_ref().starts_with("wal/")
            && self.hold_commits.load(std::sync::atomic::Ordering::SeqCst)
        {
            std::future::pending::<()>().await;
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

async fn data_keys(store: &dyn ObjectStore) -> std::collections::BTreeSet<String> {
    use futures::TryStreamExt;
    store
        .list(Some(&object_store::path::Path::from("data")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_crash_between_writing_and_committing_leaves_nothing_behind() {
    let gate = Arc::new(Gate {
        inner: InMemory::new(),
        hold_commits: false.into(),
    });
    let opts = LogOptions {
        retention_interval: Duration::from_millis(50),
        merge_min_objects: usize::MAX,
        ..LogOptions::default()
    };
    let log = Log::open(Storage::ObjectStore(gate.clone()), opts.clone())
        .await
        .unwrap();
    log.create_topic(compacted_topic("t", HOUR_MS))
        .await
        .unwrap();
    for i in 0..20 {
        let w = Written {
            key: Some(format!("k{}", i % 3)),
            value: Some(i.to_string()),
            timestamp: now_ms() - HOUR_MS,
        };
        append(&log, "t", &[w]).await;
    }
    let before = read_all(&log, "t").await;
    let objects = data_keys(gate.as_ref()).await;
    // The run writes its object, then its commit never lands: the writer is frozen there.
    gate.hold_commits
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let frozen = log.clone();
    let run = tokio::spawn(async move { frozen.compact("t", 0).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let orphan = loop {
        let now = data_keys(gate.as_ref()).await;
        if let Some(new) = now.difference(&objects).next() {
            break new.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run wrote nothing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Crash: that writer is gone for good; a new one takes over the store.
    run.abort();
    std::mem::forget(log);
    gate.hold_commits
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let log = Log::open(Storage::ObjectStore(gate.clone()), opts)
        .await
        .unwrap();
    assert_eq!(read_all(&log, "t").await, before, "the topic is as it was");
    // Housekeeping collects the orphaned object; a new run then succeeds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while data_keys(gate.as_ref()).await.contains(&orphan) {
        assert!(
            std::time::Instant::now() < deadline,
            "{orphan} was never collected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log.compact("t", 0).await.unwrap().records_out, 3);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_during_compaction_see_old_or_new_runs_never_a_hole() {
    let opts = LogOptions {
        // Old objects go as soon as they are unreferenced: readers race their deletion.
        retention_interval: Duration::from_millis(5),
        merge_min_objects: usize::MAX,
        ..LogOptions::default()
    };
    let log = Log::open(Storage::ObjectStore(Arc::new(InMemory::new())), opts)
        .await
        .unwrap();
    log.create_topic(compacted_topic("t", HOUR_MS))
        .await
        .unwrap();
    let ts = now_ms() - HOUR_MS;
    let write = move |i: u64| Written {
        key: Some(format!("k{}", i % 10)),
        value: Some(format!("v{i}")),
        timestamp: ts,
    };
    let mut n = 0;
    for _ in 0..50 {
        append(&log, "t", &[write(n), write(n + 1)]).await;
        n += 2;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let compactor = {
        let (log, stop) = (log.clone(), stop.clone());
        tokio::spawn(async move {
            let mut runs = 0;
            let mut n = 100;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                append(&log, "t", &[write(n), write(n + 1), write(n + 2)]).await;
                n += 3;
                if log.compact("t", 0).await.is_ok() {
                    runs += 1;
                }
            }
            runs
        })
    };
    let mut scans = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        // Every key's newest record as of now must be in a scan that starts now (it may be
        // superseded by a newer one meanwhile), and every record read is what was written.
        let before: HashMap<String, u64> = {
            let mut m = HashMap::new();
            for (o, w) in read_all(&log, "t").await {
                m.insert(w.key.unwrap(), o);
            }
            m
        };
        let scan = read_all(&log, "t").await;
        for (o, w) in &scan {
            let i: u64 = w.value.as_deref().unwrap()[1..].parse().unwrap();
            assert_eq!(*w, write(i), "offset {o}");
        }
        for (k, o) in &before {
            assert!(
                scan.iter()
                    .any(|(so, w)| w.key.as_ref() == Some(k) && so >= o),
                "a hole: {k}@{o} and nothing newer in {scan:?}"
            );
        }
        scans += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = compactor.await.unwrap();
    assert!(runs >= 5 && scans >= 5, "{runs} runs, {scans} scans");
    log.close().await;
}
