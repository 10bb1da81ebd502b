//! Serving events out: webhook deliveries per second to a local receiver with 100
//! subscriptions; produce-to-first-attempt latency at 1,000 events/s; consumer-group fetch
//! through the REST Proxy API; SSE fan-out to 1,000 streaming clients.
//!
//! The receivers and clients run in this process, on the same cores as the server: the
//! figures are what one 2-core machine does with everything on it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::http_load::Server;
use crate::pct;

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_micros() as u64
}

/// A receiver that answers 200 at once, counts deliveries, and for `lat-<sent µs>-…`
/// webhook-ids the first arrival's latency.
struct Receiver {
    url: String,
    count: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<u32>>>,
}

async fn receiver() -> anyhow::Result<Receiver> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let count = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let (c, l) = (count.clone(), latencies.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (c, l) = (c.clone(), l.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (c, l) = (c.clone(), l.clone());
                    async move {
                        c.fetch_add(1, Ordering::Relaxed);
                        if let Some(sent) = req
                            .headers()
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("lat-"))
                            .and_then(|v| v.split('-').next())
                            .and_then(|v| v.parse::<u64>().ok())
                        {
                            let us = now_us().saturating_sub(sent);
                            l.lock().await.push(us.min(u64::from(u32::MAX)) as u32);
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Receiver {
        url,
        count,
        latencies,
    })
}

async fn post(
    http: &reqwest::Client,
    server: &Server,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    crate::http_load::request(
        http,
        &server.url,
        &server.key,
        reqwest::Method::POST,
        path,
        body,
    )
    .await
}

async fn produce(
    http: &reqwest::Client,
    server: &Server,
    topic: &str,
    events: Vec<Value>,
) -> anyhow::Result<()> {
    post(
        http,
        server,
        &format!("/v1/topics/{topic}/events"),
        json!(events),
    )
    .await?;
    Ok(())
}

pub async fn webhooks(dir: &std::path::Path, secs: Duration) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let (server, _) = Server::start_with(dir, &["--webhook-allow-network", "127.0.0.0/8"])?;
    let http = reqwest::Client::new();
    let rx = receiver().await?;

    // Throughput: 100 subscriptions on one topic; every event goes to each of them.
    server.create_topic(&http, "fanout").await?;
    for _ in 0..100 {
        post(
            &http,
            &server,
            "/v1/subscriptions",
            json!({"url": rx.url, "topics": ["fanout"]}),
        )
        .await?;
    }
    let events = 3_000u64;
    let expected = events * 100;
    let start = Instant::now();
    for chunk in 0..events / 500 {
        let batch: Vec<Value> = (chunk * 500..(chunk + 1) * 500)
            .map(|i| json!({"type": "order.placed", "key": format!("k{i}"), "payload": {"i": i, "pad": "x".repeat(200)}}))
            .collect();
        produce(&http, &server, "fanout", batch).await?;
    }
    let deadline = Instant::now() + secs.max(Duration::from_secs(60));
    while rx.count.load(Ordering::Relaxed) < expected {
        if Instant::now() > deadline {
            bail!(
                "only {} of {expected} deliveries",
                rx.count.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    println!(
        "webhooks: {events} events x 100 subscriptions = {expected} signed deliveries to a local receiver in {:.1} s: {:.0} deliveries/s",
        took.as_secs_f64(),
        expected as f64 / took.as_secs_f64()
    );
    server.stop()?;

    // Latency: one subscription, 1,000 events/s (10 events every 10 ms), for `secs`.
    let _ = std::fs::remove_dir_all(dir);
    let (server, _) = Server::start_with(dir, &["--webhook-allow-network", "127.0.0.1/32"])?;
    let rx = receiver().await?;
    server.create_topic(&http, "paced").await?;
    post(
        &http,
        &server,
        "/v1/subscriptions",
        json!({"url": rx.url, "topics": ["paced"]}),
    )
    .await?;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < secs {
        tick.tick().await;
        let t = now_us();
        let batch: Vec<Value> = (0..10)
            .map(|i| json!({"event_id": format!("lat-{t}-{sent}-{i}"), "type": "tick", "payload": {"i": i}}))
            .collect();
        sent += 10;
        produce(&http, &server, "paced", batch).await?;
    }
    let wait_until = Instant::now() + Duration::from_secs(10);
    while rx.latencies.lock().await.len() < sent as usize && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat = rx.latencies.lock().await.clone();
    lat.sort_unstable();
    println!(
        "webhooks: produce-to-first-attempt at 1,000 events/s ({} events): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
    server.stop()?;
    Ok(())
}

pub async fn consumers(dir: &std::path::Path, _secs: Duration) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let (server, _) = Server::start(dir)?;
    let http = reqwest::Client::new();
    server.create_topic(&http, "history").await?;
    let total = 200_000u64;
    let pad = "x".repeat(900);
    for chunk in 0..total / 1_000 {
        let batch: Vec<Value> = (chunk * 1_000..(chunk + 1) * 1_000)
            .map(|i| json!({"type": "h", "key": format!("k{i}"), "payload": {"i": i, "pad": pad}}))
            .collect();
        produce(&http, &server, "history", batch).await?;
    }
    // One REST Proxy consumer reads everything (binary embedded format, 8 MiB per request).
    let inst = post(
        &http,
        &server,
        "/consumers/bench",
        json!({"format": "binary", "auto.offset.reset": "earliest"}),
    )
    .await?;
    let base = format!(
        "/consumers/bench/instances/{}",
        inst["instance_id"].as_str().unwrap_or_default()
    );
    let r = http
        .post(format!("{}{base}/subscription", server.url))
        .bearer_auth(&server.key)
        .json(&json!({"topics": ["history"]}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("subscribe: {}", r.text().await?);
    }
    let start = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < total {
        let body = http
            .get(format!(
                "{}{base}/records?max_bytes=8388608&timeout=1000",
                server.url
            ))
            .bearer_auth(&server.key)
            .header("accept", "application/vnd.kafka.binary.v2+json")
            .send()
            .await?
            .bytes()
            .await?;
        bytes += body.len() as u64;
        let records: Vec<Value> = serde_json::from_slice(&body)?;
        if records.is_empty() && start.elapsed() > Duration::from_secs(120) {
            bail!("stalled at {n} of {total}");
        }
        n += records.len() as u64;
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "consumer group (REST Proxy v2, binary, 1 member, batchSize 500): {total} events of ~1 KiB in {took:.1} s: {:.0} events/s, {:.0} MB/s of response",
        total as f64 / took,
        bytes as f64 / took / 1e6
    );

    // SSE fan-out: 1,000 streams of one topic; 100 events/s for 5 s.
    server.create_topic(&http, "live").await?;
    let clients = 1_000;
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(clients * 500)));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = format!("{}/v1/topics/live/stream", server.url);
        let key = server.key.clone();
        let (received, latencies) = (received.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let Ok(mut resp) = http.get(url).bearer_auth(key).send().await else {
                return;
            };
            let mut buf = String::new();
            let mut mine = Vec::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if let Some(sent) = block
                        .split("\"sent\":")
                        .nth(1)
                        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|s| s.parse::<u64>().ok())
                    {
                        mine.push(now_us().saturating_sub(sent) as u32);
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if mine.len() >= 500 {
                    break;
                }
            }
            latencies.lock().await.extend(mine);
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    for round in 0..50u64 {
        let t = now_us();
        let batch: Vec<Value> = (0..10)
            .map(|i| json!({"type": "live", "payload": {"sent": t, "i": round * 10 + i}}))
            .collect();
        produce(&http, &server, "live", batch).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = (clients * 500) as u64;
    while received.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    let mut lat = latencies.lock().await.clone();
    lat.sort_unstable();
    println!(
        "SSE fan-out: {clients} streams x 500 events ({got} of {want} messages) in {took:.1} s: {:.0} messages/s; produce-to-client p50 {:.1} ms, p99 {:.1} ms",
        got as f64 / took,
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    server.stop()?;
    Ok(())
}
