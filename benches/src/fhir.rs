//! FHIR resources in: Patients created (checked by the fhir-gateway component, versioned,
//! appended) by 8 clients, and updates of 100 existing Patients, against single-event produce
//! of the same bytes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::http_load::{LoadResult, Server, print_acks};

pub async fn run(dir: &Path, secs: Duration) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let (server, _) = Server::start(dir)?;
    let patient = |i: u64| {
        json!({"resourceType": "Patient", "id": format!("p{}", i % 100), "active": true, "gender": "female",
               "birthDate": "1970-01-02", "name": [{"family": format!("Family{i}"), "given": ["A", "B"]}],
               "telecom": [{"system": "phone", "value": "+1 555 0100"}],
               "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": "12345"}]})
        .to_string()
    };
    let create = drive(&server, Method::Post, 8, secs, &patient).await;
    print_acks("fhir: POST /Patient (created, 8 clients)", &create);
    let update = drive(&server, Method::Put, 8, secs, &patient).await;
    print_acks(
        "fhir: PUT /Patient/{id} (100 resources updated, 8 clients)",
        &update,
    );
    let http = reqwest::Client::new();
    server.create_topic(&http, "plain").await?;
    let bodies: Vec<bytes::Bytes> = (0..16)
        .map(|i| bytes::Bytes::from(json!([{"event_type": "patient", "payload": serde_json::from_str::<serde_json::Value>(&patient(i)).unwrap()}]).to_string()))
        .collect();
    let plain = crate::http_load::drive_bodies(&server, "plain", 8, bodies, 1, secs).await;
    print_acks(
        "single-event produce of the same resources (8 clients)",
        &plain,
    );
    server.stop()?;
    Ok(())
}

#[derive(Clone, Copy)]
enum Method {
    Post,
    Put,
}

async fn drive(
    server: &Server,
    method: Method,
    clients: u64,
    secs: Duration,
    body: &(dyn Fn(u64) -> String + Sync),
) -> LoadResult {
    let stop = Arc::new(AtomicBool::new(false));
    let (events, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let bodies: Arc<Vec<(String, String)>> = Arc::new(
        (0..1000)
            .map(|i| {
                let url = match method {
                    Method::Post => format!("{}/fhir/default/Patient", server.url),
                    Method::Put => format!("{}/fhir/default/Patient/p{}", server.url, i % 100),
                };
                (url, body(i))
            })
            .collect(),
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (stop, events, errors, bodies, key) = (
            stop.clone(),
            events.clone(),
            errors.clone(),
            bodies.clone(),
            server.key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut lat = Vec::new();
            let mut i = c as usize;
            while !stop.load(Ordering::Relaxed) {
                let (url, body) = &bodies[i % bodies.len()];
                i += clients as usize;
                let req = match method {
                    Method::Post => http.post(url),
                    Method::Put => http.put(url),
                };
                let t = Instant::now();
                let r = req
                    .bearer_auth(&key)
                    .header("content-type", "application/fhir+json")
                    .body(body.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_micros() as u32);
                        events.fetch_add(1, Ordering::Relaxed);
                    }
                    failed => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("a FHIR request failed: {failed:?}");
                        }
                    }
                }
            }
            lat
        }));
    }
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.expect("client"));
    }
    latencies_us.sort_unstable();
    LoadResult {
        events: events.load(Ordering::Relaxed),
        bytes: 0,
        elapsed: start.elapsed(),
        latencies_us,
        errors: errors.load(Ordering::Relaxed),
    }
}

/// FHIR notification fan-out. Throughput: 100 rest-hook Subscriptions on one
/// SubscriptionTopic (id-only), 2,000 Encounters created in transaction Bundles of 100, until
/// all 200,000 notifications arrived. Latency, change (the request's start) to each
/// notification arriving, paced for `secs`: one Subscription at 1,000 changes/s (as the
/// webhooks bench), and 100 Subscriptions at 100 changes/s (10,000 notifications/s).
pub async fn fanout(dir: &Path, secs: Duration) -> anyhow::Result<()> {
    let (server, rx) = subscribed(dir, 100).await?;
    let http = reqwest::Client::new();
    let changes = 2_000u64;
    let start = Instant::now();
    for chunk in 0..changes / 100 {
        fhir_post(&http, &server, "", encounters(chunk * 100, 100, "t")).await?;
    }
    wait_count(&rx.count, 100 + changes * 100, Duration::from_secs(300)).await?;
    let took = start.elapsed().as_secs_f64();
    println!(
        "fhir fan-out: {changes} Encounters x 100 Subscriptions = {} notifications (appended, delivered by rest-hook) in {took:.1} s: {:.0} notifications/s",
        changes * 100,
        (changes * 100) as f64 / took
    );
    paced(&server, &rx, 100, 1, secs).await;
    server.stop()?;
    let (server, rx) = subscribed(dir, 1).await?;
    paced(&server, &rx, 1, 10, secs).await;
    server.stop()?;
    Ok(())
}

/// A fresh server with `n` rest-hook Subscriptions to one receiver, their handshakes done.
async fn subscribed(dir: &Path, n: u64) -> anyhow::Result<(Server, Receiver)> {
    let _ = std::fs::remove_dir_all(dir);
    let (server, _) = Server::start_with(dir, &["--webhook-allow-network", "127.0.0.0/8"])?;
    let http = reqwest::Client::new();
    let rx = receiver().await?;
    fhir_post(
        &http,
        &server,
        "/SubscriptionTopic",
        json!({"resourceType": "SubscriptionTopic", "url": "https://bench/encounters", "status": "active",
               "resourceTrigger": [{"resource": "Encounter", "supportedInteraction": ["create"]}]}),
    )
    .await?;
    for _ in 0..n {
        fhir_post(
            &http,
            &server,
            "/Subscription",
            json!({"resourceType": "Subscription", "status": "requested", "topic": "https://bench/encounters",
                   "channelType": {"code": "rest-hook"}, "endpoint": rx.url, "content": "id-only"}),
        )
        .await?;
    }
    wait_count(&rx.count, n, Duration::from_secs(60)).await?;
    Ok((server, rx))
}

/// `per_tick` changes (one transaction) every 10 ms for `secs`; the latency of every
/// notification the `subscriptions` get.
async fn paced(server: &Server, rx: &Receiver, subscriptions: u64, per_tick: u64, secs: Duration) {
    let http = reqwest::Client::new();
    rx.latencies.lock().await.clear();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < secs {
        tick.tick().await;
        let t = crate::outbound::now_us();
        let body = encounters(sent, per_tick, &format!("lat-{t}"));
        sent += per_tick;
        let (http, server_url, key) = (http.clone(), server.url.clone(), server.key.clone());
        // Each request on its own task: a slow answer does not hold back the pace.
        tokio::spawn(async move {
            let _ = http
                .post(format!("{server_url}/fhir/default"))
                .bearer_auth(key)
                .header("content-type", "application/fhir+json")
                .body(body.to_string())
                .send()
                .await;
        });
    }
    let want = (sent * subscriptions) as usize;
    let wait_until = Instant::now() + Duration::from_secs(60);
    while rx.latencies.lock().await.len() < want && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat = rx.latencies.lock().await.clone();
    lat.sort_unstable();
    println!(
        "fhir fan-out: change-to-notification, {subscriptions} Subscription(s) at {} changes/s ({} of {want} notifications): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        per_tick * 100,
        lat.len(),
        crate::pct(&lat, 0.5),
        crate::pct(&lat, 0.99),
        crate::pct(&lat, 1.0)
    );
}

/// A transaction Bundle creating `n` Encounters with ids `{prefix}-{first + i}`.
fn encounters(first: u64, n: u64, prefix: &str) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = (first..first + n)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            json!({"resource": {"resourceType": "Encounter", "id": id, "status": "in-progress",
                                "subject": {"reference": "Patient/bench"}},
                   "request": {"method": "PUT", "url": format!("Encounter/{id}")}})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

async fn fhir_post(
    http: &reqwest::Client,
    server: &Server,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let r = http
        .post(format!("{}/fhir/default{path}", server.url))
        .bearer_auth(&server.key)
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await?;
    if !r.status().is_success() {
        anyhow::bail!("{path}: {} {}", r.status(), r.text().await?);
    }
    Ok(())
}

async fn wait_count(count: &AtomicU64, n: u64, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while count.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            anyhow::bail!(
                "only {} of {n} notifications",
                count.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A rest-hook receiver answering 200 at once: counts notifications and, for focus ids
/// `lat-<sent µs>-…`, their latency.
struct Receiver {
    url: String,
    count: Arc<AtomicU64>,
    latencies: Arc<tokio::sync::Mutex<Vec<u32>>>,
}

async fn receiver() -> anyhow::Result<Receiver> {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/fhir-hook", listener.local_addr()?);
    let count = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let (c, l) = (count.clone(), latencies.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (c, l) = (c.clone(), l.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (c, l) = (c.clone(), l.clone());
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            c.fetch_add(1, Ordering::Relaxed);
                            if let Ok(body) = body
                                && let Some(sent) = sent_us(&body)
                            {
                                let us = crate::outbound::now_us().saturating_sub(sent);
                                l.lock().await.push(us.min(u64::from(u32::MAX)) as u32);
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
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

/// The send time in a notification's focus reference (`…/Encounter/lat-<µs>-<n>`).
fn sent_us(body: &[u8]) -> Option<u64> {
    let marker = b"/Encounter/lat-";
    let at = body.windows(marker.len()).position(|w| w == marker)? + marker.len();
    let digits: Vec<u8> = body[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}
