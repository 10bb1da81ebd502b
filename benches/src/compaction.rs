//! Compaction: restart after 10 million `_offsets` commits (before and after compacting),
//! compaction throughput, and produce latency while compaction runs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use sluice_log::{Log, LogOptions, Record, Storage};

use crate::http_load::{LoadResult, Server, drive_bodies, fill, partition_zero, print_acks};

/// `SLUICE_BENCH_COMPACTION=restart`, `=s3` or `=load` runs one of the parts.
pub async fn run(dir: &Path, secs: Duration) -> anyhow::Result<()> {
    let only = std::env::var("SLUICE_BENCH_COMPACTION").unwrap_or_default();
    let part = |p: &str| only.is_empty() || only == p;
    if part("restart") {
        offsets_restart(&dir.join("offsets"), 10_000_000).await?;
    }
    if part("s3") {
        s3_throughput().await?;
    }
    if part("load") {
        under_load(&dir.join("load"), secs).await?;
    }
    Ok(())
}

/// 10 million offset commits over 400 keys (100 subscriptions x 4 partitions) in `_offsets`:
/// the restart reads them all, until compaction leaves one per key.
async fn offsets_restart(dir: &Path, n: u64) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let (server, _) = Server::start(dir)?;
    server.stop()?;
    let log = Log::open(Storage::Local(dir.to_owned()), LogOptions::default()).await?;
    let filling = Instant::now();
    let per_append = 2_000u64;
    fill(&log, "_offsets", n / per_append, move |chunk| {
        let records: Vec<Record> = (0..per_append)
            .map(|i| {
                let k = (chunk * per_append + i) % 400;
                Record {
                    key: Some(Bytes::from(format!(
                        "sub/default/s{}/orders/{}",
                        k / 4,
                        k % 4
                    ))),
                    value: Some(Bytes::from(format!(
                        "{{\"offset\":{}}}",
                        chunk * per_append + i
                    ))),
                    headers: vec![],
                    timestamp: 1_700_000_000_000,
                }
            })
            .collect();
        partition_zero(&records)
    })
    .await?;
    log.close().await;
    println!(
        "compaction: filled {n} offset commits into _offsets in {:.1} s",
        filling.elapsed().as_secs_f64()
    );
    let (server, ready) = Server::start(dir)?;
    println!(
        "  restart to ready, {n} commits uncompacted: {:.3} s",
        ready.as_secs_f64()
    );
    server.stop()?;

    let log = Log::open(Storage::Local(dir.to_owned()), LogOptions::default()).await?;
    let started = Instant::now();
    let done = log.compact("_offsets", 0).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  compaction of _offsets (local disk): {} records, {:.1} MB in -> {} records, {} B out in {:.2} s: {:.0} MB/s of input, {:.2} M records/s",
        done.records_in,
        done.bytes_in as f64 / 1e6,
        done.records_out,
        done.bytes_out,
        secs,
        done.bytes_in as f64 / 1e6 / secs,
        done.records_in as f64 / 1e6 / secs,
    );
    log.close().await;
    let (server, ready) = Server::start(dir)?;
    println!(
        "  restart to ready after compaction: {:.3} s",
        ready.as_secs_f64()
    );
    server.stop()?;
    Ok(())
}

/// Compaction throughput with S3's request latency (30 ms PUT, 15 ms GET; in memory): 2 M
/// records of 100,000 keys written in 200 appends.
async fn s3_throughput() -> anyhow::Result<()> {
    let store = Arc::new(crate::latency_store::LatencyStore::new(
        Duration::from_millis(30),
        Duration::from_millis(15),
    ));
    let log = Log::open(Storage::ObjectStore(store.clone()), LogOptions::default()).await?;
    log.create_topic(sluice_log::NewTopic {
        name: "kv".into(),
        partitions: 1,
        config: [("cleanup.policy".to_owned(), json!("compact"))].into(),
        spec: json!({}),
    })
    .await?;
    fill(&log, "kv", 200, |a| {
        let records: Vec<Record> = (0..10_000u64)
            .map(|i| Record {
                key: Some(Bytes::from(format!(
                    "key-{:06}",
                    (a * 10_000 + i) % 100_000
                ))),
                value: Some(Bytes::from(format!(
                    "{{\"v\":{},\"pad\":\"{}\"}}",
                    a * 10_000 + i,
                    "p".repeat(60)
                ))),
                headers: vec![],
                timestamp: 1_700_000_000_000,
            })
            .collect();
        partition_zero(&records)
    })
    .await?;
    // Reopened: the reads go to the store, not to the cache of recent writes.
    log.close().await;
    let log = Log::open(Storage::ObjectStore(store), LogOptions::default()).await?;
    let started = Instant::now();
    let done = log.compact("kv", 0).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  compaction with S3 latency (30 ms PUT, 15 ms GET): {} records, {:.1} MB in -> {} records in {:.2} s: {:.0} MB/s of input",
        done.records_in,
        done.bytes_in as f64 / 1e6,
        done.records_out,
        secs,
        done.bytes_in as f64 / 1e6 / secs,
    );
    log.close().await;
    Ok(())
}

/// Single-event keyed produce (8 clients) into a compacted topic of 1 M records (1,000 keys):
/// quiet; while that topic is compacted once a second (a scheduler 30 times as eager as the
/// default); and while it is compacted back to back (more than any scheduler would). Phases
/// A B C C B A.
async fn under_load(dir: &Path, secs: Duration) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let (server, _) = Server::start(dir)?;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/topics", server.url))
        .bearer_auth(&server.key)
        .json(
            &json!({"name": "kv", "partitions": 1, "replicationFactor": 1,
                      "config": {"cleanup.policy": "compact"}}),
        )
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "creating kv: {}", r.text().await?);
    // 1 M records, 1,000 keys, ~150 B each.
    let keyed: Vec<Bytes> = (0..16)
        .map(|v| {
            let events: Vec<Value> = (0..1000)
                .map(|i| {
                    json!({"key": format!("k{}", (v * 1000 + i) % 1000), "event_type": "kv.set",
                                "payload": {"v": v * 1000 + i, "pad": "z".repeat(80)}})
                })
                .collect();
            Bytes::from(serde_json::to_vec(&events).expect("JSON"))
        })
        .collect();
    let mut filled = 0;
    while filled < 1_000_000 {
        let r = drive_bodies(
            &server,
            "kv",
            8,
            keyed.clone(),
            1000,
            Duration::from_secs(2),
        )
        .await;
        filled += r.events;
    }
    println!("compaction under load: kv holds {filled} records of 1,000 keys");

    // One keyed event per request, over the same 1,000 keys.
    let single: Vec<Bytes> = (0..1000)
        .map(|i| {
            Bytes::from(
                serde_json::to_vec(&json!([{"key": format!("k{i}"), "event_type": "kv.set",
                                             "payload": {"v": i, "pad": "z".repeat(80)}}]))
                .expect("JSON"),
            )
        })
        .collect();
    // `every`: None = quiet; Some(ZERO) = back to back; Some(d) = one run per `d`.
    let phase = |every: Option<Duration>| {
        let (server, single) = (&server, single.clone());
        async move {
            let stop = Arc::new(AtomicBool::new(false));
            let runs = if let Some(every) = every {
                let (url, key, stop) = (
                    format!("{}/v1/topics/kv/compact", server.url),
                    server.key.clone(),
                    stop.clone(),
                );
                Some(tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut runs = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let r = http.post(&url).bearer_auth(&key).send().await;
                        if r.is_ok_and(|r| r.status().is_success()) {
                            runs += 1;
                        }
                        if let Some(rest) = every.checked_sub(started.elapsed()) {
                            tokio::time::sleep(rest).await;
                        }
                    }
                    runs
                }))
            } else {
                None
            };
            let r: LoadResult = drive_bodies(server, "kv", 8, single, 1, secs).await;
            stop.store(true, Ordering::Relaxed);
            let runs = match runs {
                Some(t) => t.await.unwrap_or(0),
                None => 0,
            };
            (r, runs)
        }
    };
    let mut p99 = [Vec::new(), Vec::new(), Vec::new()];
    let once_a_second = Some(Duration::from_secs(1));
    let back_to_back = Some(Duration::ZERO);
    for (i, every) in [
        None,
        once_a_second,
        back_to_back,
        back_to_back,
        once_a_second,
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let (r, runs) = phase(every).await;
        let (slot, what) = match every {
            None => (0, "quiet".to_owned()),
            Some(d) if d.is_zero() => (2, format!("compacting back to back ({runs} runs)")),
            Some(_) => (1, format!("compacting once a second ({runs} runs)")),
        };
        print_acks(&format!("  phase {i}: keyed produce, {what}"), &r);
        p99[slot].push(crate::pct(&r.latencies_us, 0.99));
    }
    let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "  p99 / quiet p99: compacting once a second {:.2}, back to back {:.2}",
        mean(&p99[1]) / mean(&p99[0]),
        mean(&p99[2]) / mean(&p99[0])
    );
    server.stop()?;
    Ok(())
}
