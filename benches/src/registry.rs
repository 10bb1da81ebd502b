//! The schema registry: validated produce against unvalidated produce in the same run, and
//! lookups by id (over HTTP, each one answered by the registry; and in memory, as the host
//! import guests call on a validator's cache miss).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use serde_json::json;
use sluice_registry::{Registration, SchemaType, Subjects};

use crate::http_load::{Load, Server, alternate};
use crate::pct;
use crate::wasm::{twenty_field_schema, twenty_fields};

const PER_REQUEST: usize = 100;
const CLIENTS: usize = 8;

fn bodies() -> Vec<Bytes> {
    (0..16)
        .map(|v| {
            // No `event_id`: every event is new (with ids, repeats would be answered as
            // duplicates without being appended).
            let events: Vec<String> = (0..PER_REQUEST)
                .map(|i| {
                    let mut e: serde_json::Value =
                        serde_json::from_slice(&twenty_fields(v * PER_REQUEST + i)).expect("JSON");
                    e.as_object_mut().expect("object").remove("event_id");
                    e.to_string()
                })
                .collect();
            Bytes::from(format!("[{}]", events.join(",")))
        })
        .collect()
}

pub async fn run(dir: &std::path::Path, secs: Duration) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let (server, _) = Server::start(dir)?;
    let http = reqwest::Client::new();
    server.create_topic(&http, "plain").await?;
    server.create_topic(&http, "checked").await?;
    let r = http
        .post(format!(
            "{}/registry/subjects/checked-value/versions",
            server.url
        ))
        .bearer_auth(&server.key)
        .json(&json!({"schema": twenty_field_schema().to_string(), "schemaType": "JSON"}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("registering the schema: {}", r.text().await?);
    }
    let id = r.json::<serde_json::Value>().await?["id"]
        .as_u64()
        .unwrap_or(1);

    let load = Load {
        clients: CLIENTS,
        bodies: &bodies(),
        per_request: PER_REQUEST,
        describe: "100 x 1 KiB 20-field events/request",
    };
    let (ratio, lo, hi) = alternate(&server, ["plain", "checked"], &load, secs / 4, 2).await?;
    println!(
        "validated produce (JSON Schema, 20 fields) / unvalidated: {:.0}% (single A B B A cycles: {:.0}-{:.0}%)",
        ratio * 100.0,
        lo * 100.0,
        hi * 100.0
    );

    lookups_over_http(&server, id, secs.min(Duration::from_secs(5))).await;
    server.stop()?;
    lookups_in_memory();
    Ok(())
}

async fn lookups_over_http(server: &Server, id: u64, secs: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let url = format!("{}/registry/schemas/ids/{id}", server.url);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (stop, done, url, key) = (stop.clone(), done.clone(), url.clone(), server.key.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if let Ok(r) = http.get(&url).bearer_auth(&key).send().await
                    && r.status().is_success()
                    && r.bytes().await.is_ok()
                {
                    lat.push(t.elapsed().as_micros() as u32);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    lat.sort_unstable();
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    println!(
        "registry lookups by id over HTTP (GET /registry/schemas/ids/{{id}}, {CLIENTS} clients, no client cache): \
         {rate:.0}/s, p50 {:.2} ms p99 {:.2} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
}

/// Lookups by id in a registry of 1,000 subjects, as the `schemas` host import does them.
fn lookups_in_memory() {
    let mut subjects = Subjects::default();
    for i in 0..1000 {
        let schema =
            json!({"type": "object", "properties": {format!("f{i}"): {"type": "integer"}}});
        let out = subjects
            .register(
                &format!("topic{i}-value"),
                Registration {
                    schema_type: SchemaType::Json,
                    schema: schema.to_string(),
                    references: vec![],
                    id: None,
                    version: None,
                },
            )
            .expect("registers");
        if let Some(c) = out.change {
            subjects.apply(&c);
        }
    }
    let n = 2_000_000u32;
    let start = Instant::now();
    let mut found = 0usize;
    for i in 0..n {
        if let Ok(s) = subjects.by_id(i % 1000 + 1) {
            found += s.schema.len();
        }
    }
    let per_sec = f64::from(n) / start.elapsed().as_secs_f64();
    std::hint::black_box(found);
    println!(
        "registry lookups by id in memory (1,000 subjects, the host side of the `schemas` import): {:.1} M/s",
        per_sec / 1e6
    );
}
