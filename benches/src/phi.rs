//! PHI topics (sealed at rest with AES-256-GCM) against plain topics on the same server:
//! batched produce (100 x 1 KiB events per request, 8 clients, durable acks), then the whole
//! topic fetched over HTTP. Run twice, alternating, so neither always goes first.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::http_load::{Server, drive, fetch_topic};

pub async fn run(dir: &Path, secs: Duration) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let (server, _) = Server::start(dir)?;
    let http = reqwest::Client::new();
    let mut results: Vec<(&str, f64, f64)> = Vec::new();
    for round in 0..2 {
        for (kind, extra) in [
            ("plain", json!({})),
            ("PHI", json!({"dataSensitivity": "PHI"})),
        ] {
            let topic = format!("{}-{round}", kind.to_lowercase());
            server.create_topic_with(&http, &topic, extra).await?;
            let r = drive(&server, &topic, 8, 100, secs).await;
            let produce = r.events as f64 / r.elapsed.as_secs_f64();
            let (fetch, mb) = fetch_topic(&server, &http, &topic).await?;
            println!(
                "phi: {kind} topic, round {round}: produce {produce:.0} events/s (request p99 {:.2} ms, errors {}), fetch {fetch:.0} events/s ({mb:.0} MB/s)",
                crate::pct(&r.latencies_us, 0.99),
                r.errors
            );
            results.push((kind, produce, fetch));
        }
    }
    let mean = |kind: &str, pick: fn(&(&str, f64, f64)) -> f64| {
        let v: Vec<f64> = results.iter().filter(|r| r.0 == kind).map(pick).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    println!(
        "phi: PHI / plain, mean of both rounds: produce {:.0} %, fetch {:.0} %",
        100.0 * mean("PHI", |r| r.1) / mean("plain", |r| r.1),
        100.0 * mean("PHI", |r| r.2) / mean("plain", |r| r.2)
    );
    server.stop()?;
    Ok(())
}
