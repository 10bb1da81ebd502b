//! `sluice-bench isolation`: one tenant's single-event produce latency, quiet and then while
//! another tenant attacks: over its produce quota at full speed, oversized requests of tiny
//! items, slow-header connections, and a pipeline whose guest sleeps in a WASI call.
//! Issue 18's targets: the quiet tenant's p99 under attack within 2× of its quiet p99.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::http_load::{Server, request};
use crate::pct;

/// The quiet tenant's load: single events from this many clients.
const QUIET_CLIENTS: usize = 16;
/// The noisy tenant's produce quota (events/s): its flood is mostly refused.
const NOISY_QUOTA: u64 = 20_000;

struct Tenant {
    key: String,
}

async fn tenant(http: &reqwest::Client, server: &Server, name: &str) -> anyhow::Result<Tenant> {
    let v = request(
        http,
        &server.url,
        &server.key,
        reqwest::Method::POST,
        "/v1/tenants",
        json!({ "name": name }),
    )
    .await?;
    Ok(Tenant {
        key: v["admin_key"]["key"]
            .as_str()
            .context("admin key")?
            .to_owned(),
    })
}

/// `clients` loops posting `body` until `stop`; latencies (µs) of the 2xx answers.
fn spawn_load(
    url: String,
    key: String,
    clients: usize,
    body: Bytes,
    content_type: &'static str,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Vec<u32>>> {
    (0..clients)
        .map(|_| {
            let (url, key, body, stop, refused) = (
                url.clone(),
                key.clone(),
                body.clone(),
                stop.clone(),
                refused.clone(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .expect("client");
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = http
                        .post(&url)
                        .bearer_auth(&key)
                        .header("content-type", content_type)
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        }
                        Ok(r) => {
                            let _ = r.bytes().await;
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                lat
            })
        })
        .collect()
}

/// Connections that send half a request head and wait, reopened as the server cuts them.
fn spawn_slow_clients(
    addr: String,
    n: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (addr, stop) = (addr.clone(), stop.clone());
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let _ = s
                        .write_all(b"POST /v1/topics/x/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                        .await;
                    let mut buf = [0u8; 256];
                    let _ = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await;
                }
            })
        })
        .collect()
}

async fn quiet_load(server: &Server, quiet: &Tenant, secs: Duration) -> Vec<u32> {
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let body = Bytes::from(json!({"event_type": "quiet", "payload": {"n": 1}}).to_string());
    let tasks = spawn_load(
        format!("{}/v1/topics/steady/events", server.url),
        quiet.key.clone(),
        QUIET_CLIENTS,
        body,
        "application/json",
        stop.clone(),
        refused.clone(),
    );
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort_unstable();
    if refused.load(Ordering::Relaxed) > 0 {
        println!(
            "  (quiet tenant: {} requests failed)",
            refused.load(Ordering::Relaxed)
        );
    }
    all
}

pub async fn run(dir: &Path, secs: Duration) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let config = dir.join("isolation.toml");
    // Slow headers are cut after 2 s; the sleeping guest's calls after 200 ms.
    std::fs::write(
        &config,
        "[http]\nheader_read_timeout = \"2s\"\n[wasm]\ncall_timeout = \"200ms\"\n",
    )?;
    let (server, _) =
        Server::start_with(&dir.join("data"), &["--config", config.to_str().unwrap()])?;
    let http = reqwest::Client::new();
    let quiet = tenant(&http, &server, "quiet").await?;
    let noisy = tenant(&http, &server, "noisy").await?;
    for (t, topic) in [(&quiet, "steady"), (&noisy, "flood")] {
        request(
            &http,
            &server.url,
            &t.key,
            reqwest::Method::POST,
            "/v1/topics",
            json!({"name": topic, "partitions": 3, "replicationFactor": 1, "config": {}}),
        )
        .await?;
    }
    request(
        &http,
        &server.url,
        &server.key,
        reqwest::Method::PUT,
        "/v1/tenants/noisy/quotas",
        json!({ "produce_events_per_s": NOISY_QUOTA, "produce_bytes_per_s": NOISY_QUOTA * 1100 }),
    )
    .await?;
    // A guest that sleeps in a WASI call on every batch.
    let r = http
        .put(format!("{}/v1/components/hostile", server.url))
        .bearer_auth(&noisy.key)
        .header("content-type", "application/wasm")
        .body(sluice_builtins::testing::HOSTILE.to_vec())
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("uploading the hostile component: {}", r.text().await?);
    }
    request(
        &http,
        &server.url,
        &noisy.key,
        reqwest::Method::POST,
        "/v1/topics",
        json!({"name": "sleepy", "partitions": 1, "replicationFactor": 1, "config": {},
               "pipeline": [{"component": "hostile", "config": {"behaviour": "sleep"}}]}),
    )
    .await?;

    // Warm up, then the quiet phase.
    quiet_load(&server, &quiet, Duration::from_secs(2)).await;
    let calm = quiet_load(&server, &quiet, secs).await;

    // The attack, with the same quiet load beside it.
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"event_type": "noise", "payload": {"i": i, "pad": "x".repeat(900)}}))
        .collect();
    // `SLUICE_ISOLATION_ATTACKS=flood,tiny,slow,sleepy` (the default: all) picks the attacks,
    // to see what each costs the quiet tenant.
    let picked = std::env::var("SLUICE_ISOLATION_ATTACKS")
        .unwrap_or_else(|_| "flood,tiny,slow,sleepy".into());
    let on = |a: &str| picked.split(',').any(|p| p.trim() == a);
    let count = |a: &str, n: usize| if on(a) { n } else { 0 };
    let mut noise = spawn_load(
        format!("{}/v1/topics/flood/events", server.url),
        noisy.key.clone(),
        count("flood", 8),
        Bytes::from(serde_json::to_vec(&batch)?),
        "application/json",
        stop.clone(),
        refused.clone(),
    );
    let mut tiny = b"[".to_vec();
    for _ in 0..(4 << 20) {
        tiny.extend_from_slice(b"1,");
    }
    tiny.extend_from_slice(b"1]");
    noise.extend(spawn_load(
        format!("{}/v1/topics/flood/events", server.url),
        noisy.key.clone(),
        count("tiny", 2),
        Bytes::from(tiny),
        "application/json",
        stop.clone(),
        refused.clone(),
    ));
    noise.extend(spawn_load(
        format!("{}/v1/topics/sleepy/events", server.url),
        noisy.key.clone(),
        count("sleepy", 4),
        Bytes::from(json!([{"event_type": "z"}]).to_string()),
        "application/json",
        stop.clone(),
        refused.clone(),
    ));
    let slow = spawn_slow_clients(
        server.url.trim_start_matches("http://").to_owned(),
        count("slow", 200),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attacked = quiet_load(&server, &quiet, secs).await;
    stop.store(true, Ordering::Relaxed);
    let mut noisy_ok = 0;
    for t in noise {
        noisy_ok += t.await.map(|l| l.len()).unwrap_or(0);
    }
    for t in slow {
        t.abort();
    }
    let rate = |l: &[u32]| l.len() as f64 / secs.as_secs_f64();
    println!(
        "isolation: quiet tenant, single events from {QUIET_CLIENTS} clients: quiet {:.0} events/s, p50 {:.2} ms, p99 {:.2} ms",
        rate(&calm),
        pct(&calm, 0.5),
        pct(&calm, 0.99)
    );
    println!(
        "  under attack (noisy tenant: 8 clients over its {NOISY_QUOTA} events/s quota, 2 clients of 8 MiB tiny-item requests, 200 slow-header connections, 4 clients into a sleeping guest): {:.0} events/s, p50 {:.2} ms, p99 {:.2} ms; p99 ratio {:.2}x (target <= 2x)",
        rate(&attacked),
        pct(&attacked, 0.5),
        pct(&attacked, 0.99),
        pct(&attacked, 0.99) / pct(&calm, 0.99)
    );
    println!(
        "  noisy tenant: {noisy_ok} requests accepted, {} refused (429, 413, 502)",
        refused.load(Ordering::Relaxed)
    );
    server.stop()?;
    Ok(())
}
