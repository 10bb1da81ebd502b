//! The log engine through its public API: append, read, restart, fencing, retention.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use serde_json::{Value, json};
use sluice_log::{
    Compression, EncodedRecords, Log, LogError, LogOptions, NewTopic, PartitionAppend, Record,
    Storage,
};

fn topic(name: &str, partitions: u32, config: Value) -> NewTopic {
    NewTopic {
        name: name.into(),
        partitions,
        config: serde_json::from_value::<BTreeMap<String, Value>>(config).unwrap(),
        spec: json!({}),
    }
}

/// A record; timestamp 0 means "now" (so retention leaves it alone).
fn rec(value: &str, ts: i64) -> Record {
    let ts = if ts == 0 { now_ms() } else { ts };
    Record {
        key: None,
        value: Some(Bytes::from(value.to_owned())),
        headers: vec![("h".into(), Bytes::from_static(b"1"))],
        timestamp: ts,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn part(partition: u32, records: &[Record], ids: &[Option<&str>]) -> PartitionAppend {
    PartitionAppend {
        partition,
        records: EncodedRecords::encode(records, Compression::None),
        event_ids: ids.iter().map(|i| i.map(str::to_owned)).collect(),
    }
}

/// A log on the local directory `dir`.
async fn open_local(dir: &std::path::Path, opts: LogOptions) -> Log {
    Log::open(Storage::Local(dir.into()), opts).await.unwrap()
}

/// How many data objects the store holds.
async fn data_objects(store: &Arc<dyn ObjectStore>) -> usize {
    use futures::TryStreamExt;
    store
        .list(Some(&object_store::path::Path::from("data")))
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .len()
}

async fn values(log: &Log, topic: &str, p: u32, from: u64) -> Vec<(u64, String)> {
    let r = log.read(topic, p, from, 10_000, 64 << 20).await.unwrap();
    r.records
        .into_iter()
        .map(|s| {
            (
                s.offset,
                String::from_utf8(s.record.value_bytes().to_vec()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn append_read_restart_local() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_local(dir.path(), LogOptions::default()).await;
    // Recent timestamps, so retention (7 days by default) leaves them alone.
    let t0 = now_ms();
    log.create_topic(topic("orders", 3, json!({"compression.type": "zstd"})))
        .await
        .unwrap();
    for i in 0..10 {
        let r = log
            .append(
                "orders",
                vec![
                    part(0, &[rec(&format!("a{i}"), t0 + i)], &[None]),
                    part(
                        2,
                        &[
                            rec(&format!("b{i}"), t0 + 2000 + i),
                            rec(&format!("c{i}"), t0 + 3000),
                        ],
                        &[None, None],
                    ),
                ],
            )
            .await
            .unwrap();
        assert_eq!(r[0][0].offset, i as u64);
        assert_eq!(r[1][1].offset, 2 * i as u64 + 1);
    }
    assert_eq!(
        values(&log, "orders", 0, 7).await,
        vec![(7, "a7".into()), (8, "a8".into()), (9, "a9".into())]
    );
    assert_eq!(log.offsets("orders", 2).unwrap(), (0, 20));
    assert_eq!(
        log.offset_for_timestamp("orders", 0, t0 + 4).await.unwrap(),
        4
    );
    assert_eq!(
        log.offset_for_timestamp("orders", 0, t0 + 99_999)
            .await
            .unwrap(),
        10
    );
    let epoch = log.epoch();
    log.close().await;

    let log = open_local(dir.path(), LogOptions::default()).await;
    assert!(log.epoch() > epoch);
    assert_eq!(
        values(&log, "orders", 2, 18).await,
        vec![(18, "b9".into()), (19, "c9".into())]
    );
    let r = log
        .append("orders", vec![part(2, &[rec("d", 5)], &[None])])
        .await
        .unwrap();
    assert_eq!(
        r[0][0].offset, 20,
        "offsets continue densely after a restart"
    );
    assert_eq!(
        log.topic("orders").unwrap().config.compression,
        Compression::Zstd
    );
    log.close().await;
}

#[tokio::test]
async fn recovery_without_checkpoint_replays_commits() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let opts = LogOptions {
        checkpoint_commits: u64::MAX,
        checkpoint_interval: Duration::from_secs(3600),
        ..LogOptions::default()
    };
    let log = Log::open(Storage::ObjectStore(store.clone()), opts.clone())
        .await
        .unwrap();
    log.create_topic(topic("t", 1, json!({}))).await.unwrap();
    for i in 0..5 {
        log.append("t", vec![part(0, &[rec(&i.to_string(), 0)], &[None])])
            .await
            .unwrap();
    }
    // No close: a crash. The next writer recovers from the commit records alone.
    let log2 = Log::open(Storage::ObjectStore(store.clone()), opts)
        .await
        .unwrap();
    assert_eq!(values(&log2, "t", 0, 0).await.len(), 5);
    drop(log);
}

#[tokio::test]
async fn a_second_writer_fences_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let a = open_local(dir.path(), LogOptions::default()).await;
    a.create_topic(topic("t", 2, json!({}))).await.unwrap();
    a.append("t", vec![part(0, &[rec("from-a", 0)], &[None])])
        .await
        .unwrap();

    let b = open_local(dir.path(), LogOptions::default()).await;
    assert!(b.epoch() > a.epoch());
    let err = a
        .append("t", vec![part(0, &[rec("zombie", 0)], &[None])])
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::Fenced { .. }), "{err:?}");
    assert_eq!(a.fenced_by(), Some(b.epoch()));
    // Fenced for good, metadata too.
    assert!(matches!(
        a.create_topic(topic("u", 1, json!({}))).await,
        Err(LogError::Fenced { .. })
    ));

    b.append("t", vec![part(0, &[rec("from-b", 0)], &[None])])
        .await
        .unwrap();
    assert_eq!(
        values(&b, "t", 0, 0).await,
        vec![(0, "from-a".into()), (1, "from-b".into())]
    );
    a.close().await;
    b.close().await;
}

/// A checkpoint deletes the local logs it covers at once (they may carry flush data) but keeps
/// the links, which fence: a zombie whose next position's record is already gone is still
/// told it is fenced, by the writer the link names.
#[tokio::test]
async fn a_zombie_is_fenced_after_the_records_it_meets_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let a = open_local(dir.path(), LogOptions::default()).await;
    a.create_topic(topic("t", 1, json!({}))).await.unwrap();
    let b = open_local(dir.path(), LogOptions::default()).await;
    b.append("t", vec![part(0, &[rec("from-b", 0)], &[None])])
        .await
        .unwrap();
    b.close().await; // a checkpoint: every log so far is deleted, the links stay
    let logs = std::fs::read_dir(dir.path().join("wal/logs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count();
    assert_eq!(logs, 0, "the checkpoint covers every record");
    let err = a
        .append("t", vec![part(0, &[rec("zombie", 0)], &[None])])
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::Fenced { .. }), "{err:?}");
    assert_eq!(a.fenced_by(), Some(b.epoch()));
    a.close().await;
    let c = open_local(dir.path(), LogOptions::default()).await;
    assert_eq!(values(&c, "t", 0, 0).await, vec![(0, "from-b".into())]);
    c.close().await;
}

#[tokio::test]
async fn fencing_on_a_shared_object_store() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let a = Log::open(Storage::ObjectStore(store.clone()), LogOptions::default())
        .await
        .unwrap();
    a.create_topic(topic("t", 1, json!({}))).await.unwrap();
    let b = Log::open(Storage::ObjectStore(store.clone()), LogOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        a.append("t", vec![part(0, &[rec("x", 0)], &[None])]).await,
        Err(LogError::Fenced { .. })
    ));
    assert_eq!(
        b.offsets("t", 0).unwrap(),
        (0, 0),
        "the fenced append left nothing behind"
    );
}

#[tokio::test]
async fn idempotent_produce_returns_the_original_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_local(dir.path(), LogOptions::default()).await;
    log.create_topic(topic("t", 2, json!({}))).await.unwrap();
    let first = log
        .append(
            "t",
            vec![part(
                1,
                &[rec("a", 0), rec("b", 0)],
                &[Some("e1"), Some("e2")],
            )],
        )
        .await
        .unwrap();
    let again = log
        .append(
            "t",
            vec![part(
                0,
                &[rec("b", 0), rec("c", 0)],
                &[Some("e2"), Some("e3")],
            )],
        )
        .await
        .unwrap();
    assert!(again[0][0].duplicate);
    assert_eq!(
        (again[0][0].partition, again[0][0].offset),
        (1, first[0][1].offset)
    );
    assert!(!again[0][1].duplicate);
    assert_eq!(again[0][1].offset, 0);
    assert_eq!(values(&log, "t", 0, 0).await, vec![(0, "c".into())]);
    assert_eq!(log.offsets("t", 1).unwrap().1, 2);
    // Duplicates inside one request, and a request made only of duplicates.
    let r = log
        .append(
            "t",
            vec![part(
                0,
                &[rec("d", 0), rec("d", 0)],
                &[Some("e4"), Some("e4")],
            )],
        )
        .await
        .unwrap();
    assert_eq!(r[0][0].offset, r[0][1].offset);
    assert!(r[0][1].duplicate);
    let r = log
        .append("t", vec![part(0, &[rec("d", 0)], &[Some("e4")])])
        .await
        .unwrap();
    assert!(r[0][0].duplicate);
    assert_eq!(log.offsets("t", 0).unwrap().1, 2);
    log.close().await;
}

#[tokio::test]
async fn errors_leave_the_log_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_local(dir.path(), LogOptions::default()).await;
    assert!(matches!(
        log.create_topic(topic("a/b/c", 1, json!({}))).await,
        Err(LogError::InvalidTopicName(_))
    ));
    assert!(matches!(
        log.create_topic(topic("t", 0, json!({}))).await,
        Err(LogError::InvalidPartitionCount { .. })
    ));
    assert!(matches!(
        log.create_topic(topic("t", 1, json!({"cleanup.policy": "x"})))
            .await,
        Err(LogError::InvalidConfig(_))
    ));
    log.create_topic(topic("t", 1, json!({}))).await.unwrap();
    assert!(matches!(
        log.create_topic(topic("t", 1, json!({}))).await,
        Err(LogError::TopicExists(_))
    ));
    assert!(matches!(
        log.append("t", vec![part(3, &[rec("x", 0)], &[None])])
            .await,
        Err(LogError::InvalidPartition { partition: 3, .. })
    ));
    assert!(matches!(
        log.append("nope", vec![part(0, &[rec("x", 0)], &[None])])
            .await,
        Err(LogError::TopicNotFound(_))
    ));
    assert!(matches!(
        log.read("t", 0, 5, 10, 1000).await,
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.offsets("t", 0).unwrap(), (0, 0));
    // Partitions only grow.
    assert!(
        log.update_topic("t", Some(0), BTreeMap::new(), json!({}))
            .await
            .is_err()
    );
    assert_eq!(
        log.update_topic("t", Some(4), BTreeMap::new(), json!({}))
            .await
            .unwrap()
            .partitions
            .len(),
        4
    );
    log.close().await;
}

#[tokio::test]
async fn deleted_topics_do_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_local(dir.path(), LogOptions::default()).await;
    log.create_topic(topic("t", 1, json!({}))).await.unwrap();
    log.append("t", vec![part(0, &[rec("old", 0)], &[None])])
        .await
        .unwrap();
    log.delete_topic("t").await.unwrap();
    log.create_topic(topic("t", 1, json!({}))).await.unwrap();
    assert_eq!(log.offsets("t", 0).unwrap(), (0, 0));
    log.close().await;
    let log = open_local(dir.path(), LogOptions::default()).await;
    assert_eq!(log.offsets("t", 0).unwrap(), (0, 0));
    log.close().await;
}

#[tokio::test]
async fn retention_trims_old_runs_and_deletes_their_objects() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let opts = LogOptions {
        retention_interval: Duration::from_millis(50),
        ..LogOptions::default()
    };
    let log = Log::open(Storage::ObjectStore(store.clone()), opts)
        .await
        .unwrap();
    log.create_topic(topic("t", 1, json!({"retention.ms": 60_000})))
        .await
        .unwrap();
    let now = now_ms();
    log.append(
        "t",
        vec![part(0, &[rec("ancient", now - 3_600_000)], &[None])],
    )
    .await
    .unwrap();
    log.append("t", vec![part(0, &[rec("fresh", now)], &[None])])
        .await
        .unwrap();
    let data_objects = || data_objects(&store);
    assert_eq!(data_objects().await, 2);
    let mut trimmed = false;
    for _ in 0..500 {
        if log.offsets("t", 0).unwrap().0 == 1 && data_objects().await == 1 {
            trimmed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        trimmed,
        "the old run was not trimmed: {:?}",
        log.offsets("t", 0)
    );
    assert_eq!(values(&log, "t", 0, 1).await, vec![(1, "fresh".into())]);
    assert!(matches!(
        log.read("t", 0, 0, 10, 1000).await,
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[tokio::test]
async fn long_poll_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_local(dir.path(), LogOptions::default()).await;
    log.create_topic(topic("t", 1, json!({}))).await.unwrap();
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move { log.wait_for("t", 0, 0, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    log.append("t", vec![part(0, &[rec("x", 0)], &[None])])
        .await
        .unwrap();
    let hw = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(hw, 1);
    // And times out when nothing comes.
    let hw = log
        .wait_for("t", 0, 1, Duration::from_millis(30))
        .await
        .unwrap();
    assert_eq!(hw, 1);
    log.close().await;
}

#[tokio::test]
async fn group_commit_uses_one_commit_for_many_partitions() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let opts = LogOptions {
        flush_window: Duration::from_millis(100),
        ..LogOptions::default()
    };
    let log = Log::open(Storage::ObjectStore(store.clone()), opts)
        .await
        .unwrap();
    log.create_topic(topic("t", 64, json!({}))).await.unwrap();
    let commits_before = sluice_log::LogMetrics::get(&log.metrics().commits);
    let mut tasks = Vec::new();
    for p in 0..64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.append("t", vec![part(p, &[rec("x", 0)], &[None])])
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let commits = sluice_log::LogMetrics::get(&log.metrics().commits) - commits_before;
    assert!(commits <= 2, "64 partitions took {commits} commits");
}

/// Regression: a zombie writer's housekeeping once deleted the data objects of the writer that
/// replaced it (they were "unreferenced" in the zombie's index).
#[tokio::test]
async fn a_zombie_never_deletes_a_newer_writers_data() {
    for local in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let storage = || {
            if local {
                Storage::Local(dir.path().into())
            } else {
                Storage::ObjectStore(mem.clone())
            }
        };
        let zombie_opts = LogOptions {
            retention_interval: Duration::from_millis(20),
            ..LogOptions::default()
        };
        let a = Log::open(storage(), zombie_opts).await.unwrap();
        a.create_topic(topic("t", 1, json!({}))).await.unwrap();
        a.append("t", vec![part(0, &[rec("a", 0)], &[None])])
            .await
            .unwrap();
        let b = Log::open(storage(), LogOptions::default()).await.unwrap();
        for i in 0..20 {
            b.append("t", vec![part(0, &[rec(&format!("b{i}"), 0)], &[None])])
                .await
                .unwrap();
        }
        // Give the zombie housekeeping rounds: it must notice it was fenced, deleting nothing.
        for _ in 0..250 {
            if a.fenced_by().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = values(&b, "t", 0, 0).await;
        assert_eq!(got.len(), 21, "local={local}: {got:?}");
        assert!(a.fenced_by().is_some(), "local={local}: the zombie noticed");
        b.close().await;
    }
}

#[tokio::test]
async fn small_flush_objects_are_merged_and_stay_readable() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let opts = LogOptions {
        retention_interval: Duration::from_millis(50),
        merge_target_bytes: 1 << 20,
        merge_min_objects: 8,
        ..LogOptions::default()
    };
    let count_data = || data_objects(&store);
    let log = Log::open(Storage::ObjectStore(store.clone()), opts.clone())
        .await
        .unwrap();
    log.create_topic(topic("t", 3, json!({}))).await.unwrap();
    for i in 0..40u32 {
        log.append(
            "t",
            vec![part(
                i % 3,
                &[rec(&format!("v{i}"), 0), rec(&format!("w{i}"), 0)],
                &[None, None],
            )],
        )
        .await
        .unwrap();
    }
    assert_eq!(count_data().await, 40, "one object per flush");
    log.close().await;
    // Then a writer that merges (the objects are an older epoch's).
    let log = Log::open(Storage::ObjectStore(store.clone()), opts.clone())
        .await
        .unwrap();
    let mut merged = false;
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if count_data().await <= 2 {
            merged = true;
            break;
        }
    }
    assert!(merged, "still {} objects", count_data().await);
    assert!(sluice_log::LogMetrics::get(&log.metrics().merges) >= 1);
    let check = |log: Log| async move {
        for p in 0..3u32 {
            let got = values(&log, "t", p, 0).await;
            let expected: Vec<(u64, String)> = (0..40u32)
                .filter(|i| i % 3 == p)
                .flat_map(|i| [format!("v{i}"), format!("w{i}")])
                .enumerate()
                .map(|(o, v)| (o as u64, v))
                .collect();
            assert_eq!(got, expected, "partition {p}");
        }
    };
    check(log.clone()).await;
    log.close().await;
    // The relocation survives recovery.
    let log = Log::open(Storage::ObjectStore(store.clone()), opts)
        .await
        .unwrap();
    check(log.clone()).await;
    log.close().await;
}

/// Only a claim's `wal/` link is fsync'd on its own: a power loss may take the newest links,
/// never the records they point to. Losing every link after the claim loses no append.
#[tokio::test]
async fn appends_survive_losing_their_links() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_local(dir.path(), no_checkpoints()).await;
    log.create_topic(topic("t", 2, json!({}))).await.unwrap();
    for i in 0..5 {
        log.append("t", vec![part(i % 2, &[rec(&i.to_string(), 0)], &[None])])
            .await
            .unwrap();
    }
    crash(log);
    // What a power loss could leave: the claim (position 1) and nothing linked after it.
    let wal = dir.path().join("wal");
    let mut lost = 0;
    for entry in std::fs::read_dir(&wal).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(seq) = name
            .strip_suffix(".json")
            .and_then(|n| n.parse::<u64>().ok())
            && seq > 1
        {
            std::fs::remove_file(wal.join(&name)).unwrap();
            lost += 1;
        }
    }
    assert_eq!(lost, 6, "a topic and five appends");
    let log = open_local(dir.path(), no_checkpoints()).await;
    assert_eq!(
        values(&log, "t", 0, 0).await,
        vec![(0, "0".into()), (1, "2".into()), (2, "4".into())]
    );
    let r = log
        .append("t", vec![part(1, &[rec("5", 0)], &[None])])
        .await
        .unwrap();
    assert_eq!(r[0][0].offset, 2, "offsets continue densely");
    crash(log);
    // The recovered commits were re-created: a second restart reads them through links.
    let log = open_local(dir.path(), LogOptions::default()).await;
    assert_eq!(
        values(&log, "t", 1, 0).await,
        vec![(0, "1".into()), (1, "3".into()), (2, "5".into())]
    );
    log.close().await;
}

/// Options under which nothing checkpoints during a test unless it closes the log.
fn no_checkpoints() -> LogOptions {
    LogOptions {
        checkpoint_interval: Duration::from_secs(3600),
        retention_interval: Duration::from_secs(3600),
        ..LogOptions::default()
    }
}

/// A crash: the writer stops where it is, with no final checkpoint (its thread idles on, like
/// a process that is gone).
fn crash(log: Log) {
    std::mem::forget(log);
}

/// Empty every segment file: the data a power loss can take when only commit records made it
/// durable. Returns the bytes removed.
fn empty_segments(root: &std::path::Path) -> u64 {
    let mut emptied = 0;
    for e in std::fs::read_dir(root.join("data")).unwrap() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(e.unwrap().path())
            .unwrap();
        emptied += f.metadata().unwrap().len();
        f.set_len(0).unwrap();
    }
    emptied
}

/// A small flush's data is made durable by its commit record (one sync), not by syncing its
/// segment: a crash before the next checkpoint plus a power loss that takes everything
/// unsynced from the segments loses no append, as recovery writes the data back.
#[tokio::test]
async fn small_flushes_survive_losing_their_segment_data() {
    let dir = tempfile::tempdir().unwrap();
    let opts = no_checkpoints();
    assert!(
        opts.inline_max_bytes >= 1024,
        "small flushes ride in their records by default"
    );
    let log = open_local(dir.path(), opts.clone()).await;
    log.create_topic(topic("t", 2, json!({}))).await.unwrap();
    log.create_topic(topic("big", 1, json!({}))).await.unwrap();
    for i in 0..6 {
        log.append("t", vec![part(i % 2, &[rec(&i.to_string(), 0)], &[None])])
            .await
            .unwrap();
    }
    // One flush too large to ride along, synced in its segment as before.
    let big = "x".repeat(opts.inline_max_bytes + 1);
    log.append("big", vec![part(0, &[rec(&big, 0)], &[None])])
        .await
        .unwrap();
    // A crash before any checkpoint, and then the power fails.
    crash(log);
    let emptied = empty_segments(dir.path());
    assert!(emptied > big.len() as u64);

    let log = open_local(dir.path(), opts.clone()).await;
    assert_eq!(
        values(&log, "t", 0, 0).await,
        vec![(0, "0".into()), (1, "2".into()), (2, "4".into())]
    );
    assert_eq!(
        values(&log, "t", 1, 0).await,
        vec![(0, "1".into()), (1, "3".into()), (2, "5".into())]
    );
    // The large flush was not carried: a lost segment loses it (its sync is what keeps it).
    assert!(log.read("big", 0, 0, 10, 1 << 20).await.is_err());
    // What recovery wrote back was synced: appends go on in a new segment and a restart
    // (with a checkpoint now) reads everything again.
    log.append("t", vec![part(1, &[rec("6", 0)], &[None])])
        .await
        .unwrap();
    log.close().await;
    let log = open_local(dir.path(), opts).await;
    assert_eq!(values(&log, "t", 1, 0).await.len(), 4);
    log.close().await;
}

/// With carried data turned off, the same loss does lose the small flushes: the records alone
/// do not hold the data.
#[tokio::test]
async fn without_carried_data_a_lost_segment_loses_its_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        inline_max_bytes: 0,
        ..no_checkpoints()
    };
    let log = open_local(dir.path(), opts.clone()).await;
    log.create_topic(topic("t", 1, json!({}))).await.unwrap();
    log.append("t", vec![part(0, &[rec("a", 0)], &[None])])
        .await
        .unwrap();
    crash(log);
    empty_segments(dir.path());
    let log = open_local(dir.path(), opts).await;
    assert!(log.read("t", 0, 0, 10, 1 << 20).await.is_err());
    log.close().await;
}

#[tokio::test]
async fn idempotency_survives_restarts_and_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_local(dir.path(), LogOptions::default()).await;
    log.create_topic(topic("t", 2, json!({}))).await.unwrap();
    let first = log
        .append("t", vec![part(1, &[rec("a", 0)], &[Some("id-a")])])
        .await
        .unwrap();
    log.close().await; // clean stop: the ids go into a checkpoint's dedup delta
    let log = open_local(dir.path(), LogOptions::default()).await;
    let again = log
        .append("t", vec![part(0, &[rec("a", 0)], &[Some("id-a")])])
        .await
        .unwrap();
    assert!(again[0][0].duplicate, "recognized after a clean restart");
    assert_eq!(again[0][0].offset, first[0][0].offset);
    assert_eq!(again[0][0].partition, 1);
    log.append("t", vec![part(0, &[rec("b", 0)], &[Some("id-b")])])
        .await
        .unwrap();
    drop(log); // a crash: no checkpoint, the ids are only in commit records
    let log = open_local(dir.path(), LogOptions::default()).await;
    for id in ["id-a", "id-b"] {
        let r = log
            .append("t", vec![part(0, &[rec("x", 0)], &[Some(id)])])
            .await
            .unwrap();
        assert!(r[0][0].duplicate, "{id} recognized after a crash");
    }
    assert_eq!(log.offsets("t", 0).unwrap().1, 1, "nothing appended twice");
    log.close().await;
}

#[tokio::test]
async fn scan_reads_a_range_in_order_and_stops_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_local(dir.path(), LogOptions::default()).await;
    log.create_topic(topic("scanned", 1, json!({})))
        .await
        .unwrap();
    let t0 = now_ms();
    for chunk in 0..5 {
        let records: Vec<Record> = (0..500)
            .map(|i| rec(&format!("v{}", chunk * 500 + i), t0))
            .collect();
        let ids = vec![None; records.len()];
        log.append("scanned", vec![part(0, &records, &ids)])
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    log.scan("scanned", 0, 1_200, 2_345, |s| {
        seen.push(s.offset);
        true
    })
    .await
    .unwrap();
    assert_eq!(
        seen,
        (1_200..2_345).collect::<Vec<_>>(),
        "across read chunks"
    );
    let mut first = Vec::new();
    log.scan("scanned", 0, 0, u64::MAX, |s| {
        first.push(s.offset);
        first.len() < 3
    })
    .await
    .unwrap();
    assert_eq!(first, vec![0, 1, 2]);
    assert!(log.scan("nope", 0, 0, 1, |_| true).await.is_err());
}

/// `writers` tasks appending 25 events each (with event ids) to topic `t`, concurrently.
async fn append_concurrently(log: &Log, round: u32, writers: u32) {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25u32 {
                let id = format!("r{round}-w{w}-{i}");
                log.append("t", vec![part(w % 3, &[rec(&id, 0)], &[Some(id.as_str())])])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Checkpoints are written in the background while appends go on: they let old commit
/// records go, and a writer that takes over from a live one (no final checkpoint) starts from
/// the newest of them; event ids committed before it are still deduplicated.
#[tokio::test]
async fn background_checkpoints_cover_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let often = LogOptions {
        checkpoint_commits: 4,
        wal_gc_min_age: Duration::from_millis(1),
        ..LogOptions::default()
    };
    let log = open_local(dir.path(), often.clone()).await;
    log.create_topic(topic("t", 3, json!({}))).await.unwrap();
    append_concurrently(&log, 0, 8).await;
    let manifests = std::fs::read_dir(dir.path().join("manifest"))
        .unwrap()
        .count();
    assert!(manifests >= 1, "no checkpoint was written");
    // Fewer records left than commits made: the checkpoints let old records go.
    let commits = log
        .metrics()
        .commits
        .load(std::sync::atomic::Ordering::Relaxed) as usize;
    let records = || {
        std::fs::read_dir(dir.path().join("wal"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count()
    };
    // Deleting runs in the background (the committer does not wait for it).
    let mut wal = records();
    for _ in 0..100 {
        if wal < commits {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        wal = records();
    }
    assert!(commits > 8, "only {commits} commits");
    assert!(wal < commits, "{wal} commit records kept of {commits}");
    log.close().await;

    // Commit records are kept long enough here for a writer to take over from a live one.
    let keep = LogOptions {
        wal_gc_min_age: LogOptions::default().wal_gc_min_age,
        ..often
    };
    let a = open_local(dir.path(), keep.clone()).await;
    append_concurrently(&a, 1, 8).await;
    let b = open_local(dir.path(), keep).await;
    assert!(b.epoch() > a.epoch());
    let mut all = Vec::new();
    for p in 0..3 {
        let v = values(&b, "t", p, 0).await;
        assert_eq!(
            v.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            (0..v.len() as u64).collect::<Vec<_>>(),
            "offsets of partition {p} are dense"
        );
        all.extend(v.into_iter().map(|(_, s)| s));
    }
    all.sort();
    let mut want: Vec<String> = (0..2)
        .flat_map(|r| (0..8).flat_map(move |w| (0..25).map(move |i| format!("r{r}-w{w}-{i}"))))
        .collect();
    want.sort();
    assert_eq!(all, want);
    for r in 0..2 {
        for w in 0..8u32 {
            let id = format!("r{r}-w{w}-0");
            let got = b
                .append("t", vec![part(w % 3, &[rec(&id, 0)], &[Some(id.as_str())])])
                .await
                .unwrap();
            assert!(got[0][0].duplicate, "{id} appended twice");
        }
    }
    b.close().await;
    drop(a);
}
