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
