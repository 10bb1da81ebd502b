//! Durability by killing the process: SIGKILL at random moments under concurrent produce load,
//! several times over one data directory. After each restart every acknowledged event must be
//! where its acknowledgement said, offsets must be dense, and every visible record complete.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};

use crate::harness::{Client, Process};

const PARTITIONS: u32 = 4;

#[test]
fn kill9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // event_id -> (partition, offset), for every acknowledged event.
    let acked: Arc<Mutex<HashMap<String, (u64, u64)>>> = Arc::default();
    let mut rng = rand::rng();
    for round in 0..4 {
        let p = Process::start(dir.path(), &[]);
        let c = p.client();
        if round == 0 {
            rt.block_on(c.create_topic("crash", PARTITIONS));
        }
        rt.block_on(verify(&c, &acked.lock().unwrap()));

        let mut tasks = Vec::new();
        for w in 0..8 {
            let c = c.clone();
            let acked = acked.clone();
            tasks.push(rt.spawn(async move { produce_until_error(c, round, w, acked).await }));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1200)));
        p.kill9();
        for t in tasks {
            rt.block_on(t).unwrap();
        }
        if round % 2 == 1 {
            lose_what_a_power_loss_could(dir.path());
        }
    }
    let p = Process::start(dir.path(), &[]);
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 100,
        "the load produced too little to prove anything: {}",
        acked.len()
    );
    rt.block_on(verify(&p.client(), &acked));
}

/// A kill -9 loses nothing the kernel has accepted; a power loss may also lose directory
/// entries that were never fsync'd. Only a claim's `wal/` link is synced on its own, so remove
/// every link the newest writer made after its first (more than a power loss could take: that
/// first link may be a recovered commit before the claim, and the claim goes too).
fn lose_what_a_power_loss_could(data: &std::path::Path) {
    let wal = data.join("wal");
    let mut links: Vec<(u64, Vec<u8>)> = std::fs::read_dir(&wal)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let seq = e
                .file_name()
                .to_str()?
                .strip_suffix(".json")?
                .parse::<u64>()
                .ok()?;
            Some((seq, std::fs::read(e.path()).unwrap()))
        })
        .collect();
    links.sort();
    let newest = links.last().expect("a claim at least").1.clone();
    let first = links.iter().position(|(_, who)| *who == newest).unwrap();
    for (seq, _) in &links[first + 1..] {
        std::fs::remove_file(wal.join(format!("{seq:020}.json"))).unwrap();
    }
}

async fn produce_until_error(
    c: Client,
    round: u32,
    writer: u32,
    acked: Arc<Mutex<HashMap<String, (u64, u64)>>>,
) {
    for n in 0.. {
        let batch: Vec<Value> = (0..(1 + n % 20))
            .map(|i| json!({"event_id": format!("r{round}-w{writer}-n{n}-{i}"), "key": format!("k{}", i % 5), "payload": {"pad": "x".repeat(200)}}))
            .collect();
        let resp = c
            .http
            .post(format!("{}/v1/topics/crash/events", c.url))
            .bearer_auth(&c.key)
            .json(&batch)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let Ok(resp) = resp else { return };
        let Ok(v) = resp.json::<Value>().await else {
            return;
        };
        let Some(results) = v["results"].as_array() else {
            return;
        };
        let mut a = acked.lock().unwrap();
        for r in results {
            if let (Some(id), Some(p), Some(o)) = (
                r["event_id"].as_str(),
                r["partition"].as_u64(),
                r["offset"].as_u64(),
            ) {
                a.insert(id.to_owned(), (p, o));
            }
        }
    }
}

async fn verify(c: &Client, acked: &HashMap<String, (u64, u64)>) {
    let mut found: HashMap<(u64, u64), String> = HashMap::new();
    for p in 0..PARTITIONS {
        let events = c.read_all("crash", p, 0).await;
        for (i, e) in events.iter().enumerate() {
            assert_eq!(
                e["offset"].as_u64(),
                Some(i as u64),
                "partition {p}: offsets are dense"
            );
            let id = e["event"]["event_id"]
                .as_str()
                .expect("every visible record is a whole event");
            assert_eq!(
                e["event"]["payload"]["pad"].as_str().map(str::len),
                Some(200)
            );
            found.insert((p as u64, i as u64), id.to_owned());
        }
    }
    for (id, pos) in acked {
        assert_eq!(
            found.get(pos),
            Some(id),
            "acknowledged event {id} at {pos:?} is missing"
        );
    }
}

/// Kill -9 while compaction runs (local directory): after each restart the compacted topic
/// holds, for every key, its newest acknowledged value, offsets increasing, nothing twice.
#[test]
fn kill9_during_compaction_keeps_the_newest_record_per_key() {
    let dir = tempfile::tempdir().unwrap();
    compaction_crash_rounds(|| Process::start(dir.path(), &[]), None);
}

/// The same on S3 (moto).
#[test]
fn kill9_during_compaction_on_s3() {
    let Some(moto) = crate::s3::start_moto() else {
        return;
    };
    let http = reqwest::blocking::Client::new();
    assert!(
        http.put(format!("{}/compaction", moto.url))
            .send()
            .unwrap()
            .status()
            .is_success()
    );
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let key: Mutex<Option<String>> = Mutex::new(None);
    let round = std::sync::atomic::AtomicUsize::new(0);
    compaction_crash_rounds(
        || {
            let i = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = crate::s3::s3_host(dirs[i].path(), &moto, "compaction");
            let mut k = key.lock().unwrap();
            if k.is_none() {
                *k = Some(p.admin_key());
            }
            p
        },
        Some(&key),
    );
}

/// Four rounds of: check, produce keyed updates, start a compaction, kill -9 at a random
/// moment; then a last check.
fn compaction_crash_rounds(
    start: impl Fn() -> Process,
    shared_key: Option<&Mutex<Option<String>>>,
) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rng = rand::rng();
    // key -> newest acknowledged value.
    let mut newest: HashMap<String, String> = HashMap::new();
    let client = |p: &Process| match shared_key {
        Some(k) => Client::new(&p.url, k.lock().unwrap().as_deref().unwrap()),
        None => p.client(),
    };
    for round in 0..4 {
        let p = start();
        let c = client(&p);
        if round == 0 {
            let (s, v) = rt.block_on(c.post(
                "/v1/topics",
                json!({"name": "ckv", "partitions": 1, "replicationFactor": 1,
                       "config": {"cleanup.policy": "compact", "compression.type": "zstd"}}),
            ));
            assert_eq!(s, reqwest::StatusCode::CREATED, "{v}");
        }
        rt.block_on(verify_newest(&c, &newest));
        for b in 0..20 {
            let batch: Vec<Value> = (0..200)
                .map(|i| {
                    let key = format!("k{}", (b * 7 + i) % 60);
                    json!({"key": key, "payload": {"v": format!("r{round}-b{b}-{i}"), "pad": "y".repeat(100)}})
                })
                .collect();
            let (s, v) = rt.block_on(c.produce("ckv", Value::Array(batch.clone())));
            assert_eq!(s, reqwest::StatusCode::OK, "{v}");
            for e in &batch {
                newest.insert(
                    e["key"].as_str().unwrap().to_owned(),
                    e["payload"]["v"].as_str().unwrap().to_owned(),
                );
            }
        }
        let compacting = {
            let c = c.clone();
            rt.spawn(async move {
                let _ = c
                    .http
                    .post(format!("{}/v1/topics/ckv/compact", c.url))
                    .bearer_auth(&c.key)
                    .send()
                    .await;
            })
        };
        std::thread::sleep(Duration::from_millis(rng.random_range(0..120)));
        p.kill9();
        let _ = rt.block_on(compacting);
    }
    let p = start();
    let c = client(&p);
    rt.block_on(verify_newest(&c, &newest));
    // A compaction that completes leaves exactly one record per key.
    let (s, v) = rt.block_on(c.send(reqwest::Method::POST, "/v1/topics/ckv/compact", None));
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
    let events = rt.block_on(c.read_all("ckv", 0, 0));
    assert_eq!(events.len(), newest.len(), "{v}");
    rt.block_on(verify_newest(&c, &newest));
    p.kill9();
}

async fn verify_newest(c: &Client, newest: &HashMap<String, String>) {
    let events = c.read_all("ckv", 0, 0).await;
    let mut last: HashMap<String, String> = HashMap::new();
    let mut previous = None;
    let mut seen = std::collections::HashSet::new();
    for e in &events {
        let o = e["offset"].as_u64().unwrap();
        assert!(previous.is_none_or(|p| p < o), "offsets increase");
        previous = Some(o);
        let v = e["event"]["payload"]["v"]
            .as_str()
            .expect("a whole event")
            .to_owned();
        assert!(seen.insert(v.clone()), "{v} appears twice");
        last.insert(e["key"].as_str().unwrap().to_owned(), v);
    }
    for (k, v) in newest {
        assert_eq!(
            last.get(k),
            Some(v),
            "key {k}: its newest acknowledged value"
        );
    }
    assert_eq!(last.len(), newest.len());
}
