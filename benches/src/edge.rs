//! `sluice-bench edge`: the edge gateways' ingress against plain produce, on one server.
//!
//! - Standard Webhooks in: 1 KiB JSON bodies, each signed (HMAC-SHA256, a fresh `webhook-id`)
//!   by the client as it is sent, to `POST /hooks/default/sw`, verified by the
//!   `webhook-gateway` component and durably appended; against single-event produce of the
//!   same 1 KiB event, both from 64 bare HTTP/1.1 keep-alive clients. Issue 19's targets:
//!   ≥ 20,000 requests/s and ≥ 70 % of plain produce's single-event rate.
//! - CloudEvents batch mode: 100 structured 1 KiB events per request
//!   (`application/cloudevents-batch+json`), 8 clients, against batched produce of the same
//!   events as envelopes. Target: ≥ 80 %.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::json;

use crate::http_load::{
    RequestMaker, Server, bodies, drive_raw, drive_requests, print_acks, request,
};
use crate::pct;

const SECRET_KEY: &[u8] = b"sluice-bench-webhook-secret-key!";

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A 1 KiB webhook body.
fn webhook_body(i: u64) -> String {
    let head = format!(
        "{{\"type\":\"invoice.paid\",\"data\":{{\"customer\":\"cus_{}\",\"pad\":\"",
        i % 1000
    );
    let tail = "\"}}";
    let mut s = head;
    s.push_str(&"x".repeat(1024 - s.len() - tail.len()));
    s.push_str(tail);
    s
}

fn structured_batch(v: usize) -> Bytes {
    let events: Vec<String> = (0..100)
        .map(|i| {
            let head = format!(
                "{{\"specversion\":\"1.0\",\"id\":\"b{v}-{i}\",\"source\":\"/bench\",\"type\":\"bench.event\",\"data\":{{\"org_id\":{},\"data\":\"",
                i % 1000
            );
            let tail = "\"}}";
            let mut s = head;
            s.push_str(&"x".repeat(1024 - s.len() - tail.len()));
            s.push_str(tail);
            s
        })
        .collect();
    Bytes::from(format!("[{}]", events.join(",")))
}

pub async fn run(dir: &Path, secs: Duration) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let (server, _) = Server::start(dir)?;
    let http = reqwest::Client::new();
    for t in ["plain", "hooks", "batched", "ce"] {
        server.create_topic(&http, t).await?;
    }
    let secret = format!("whsec_{}", STANDARD.encode(SECRET_KEY));
    request(
        &http,
        &server.url,
        &server.key,
        reqwest::Method::POST,
        "/v1/sources",
        json!({"name": "sw", "topic": "hooks",
               "config": {"scheme": "standard-webhooks", "secret": secret, "event_type": "/type",
                          "key": "/data/customer"}}),
    )
    .await?;
    let make = signed_webhooks(&server.url, "/hooks/default/sw");
    // Warm up both paths, then A B A B.
    drive_raw(
        &server,
        "plain",
        64,
        &bodies(1, 16),
        1,
        Duration::from_secs(2),
    )
    .await?;
    drive_requests(&server.url, 64, 1, make.clone(), Duration::from_secs(2)).await?;
    let mut rates = (Vec::new(), Vec::new());
    for round in 0..2 {
        let plain = drive_raw(&server, "plain", 64, &bodies(1, 16), 1, secs).await?;
        print_acks(
            &format!("round {round}: single-event produce (64 bare clients)"),
            &plain,
        );
        let hooks = drive_requests(&server.url, 64, 1, make.clone(), secs).await?;
        print_acks(
            &format!("round {round}: Standard Webhooks in, verified + durable (64 bare clients)"),
            &hooks,
        );
        if hooks.errors > 0 {
            bail!("{} webhook requests failed", hooks.errors);
        }
        rates
            .0
            .push(plain.events as f64 / plain.elapsed.as_secs_f64());
        rates
            .1
            .push(hooks.events as f64 / hooks.elapsed.as_secs_f64());
    }
    println!(
        "webhooks in: {:.0} requests/s vs single-event produce {:.0} events/s: {:.0} % (targets: >= 20,000/s, >= 70 %)",
        mean(&rates.1),
        mean(&rates.0),
        100.0 * mean(&rates.1) / mean(&rates.0)
    );
    spin(&server, &secret, secs).await?;
    cloudevents(&server, secs).await?;
    server.stop()?;
    Ok(())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Signed Standard Webhooks requests to `path` on `url`, 1 KiB each, a fresh id per request
/// (a repeated one would be answered as a duplicate, which is cheaper).
fn signed_webhooks(url: &str, path: &str) -> RequestMaker {
    let addr = url.trim_start_matches("http://").to_owned();
    let path = path.to_owned();
    Arc::new(move |client, i| {
        let body = webhook_body(i);
        let id = format!("msg_{client}_{i}");
        let ts = now_s().to_string();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET_KEY).expect("any key");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        let sig = STANDARD.encode(mac.finalize().into_bytes());
        let mut r = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             webhook-id: {id}\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: v1,{sig}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body.as_bytes());
        r
    })
}

/// The same webhooks through `spin.toml`'s Spin component, served by `sluice edge` (the
/// host's wasi:http runner) and forwarded to the server.
async fn spin(server: &Server, secret: &str, secs: Duration) -> anyhow::Result<()> {
    use std::io::BufRead;
    if !std::path::Path::new("spin.toml").exists() {
        println!("spin: no spin.toml in the working directory; run from the repository root");
        return Ok(());
    }
    let bin = std::env::current_exe()?.with_file_name("sluice");
    let config = json!({"scheme": "standard-webhooks", "secret": secret,
                        "event_type": "/type", "key": "/data/customer"});
    let mut child = std::process::Command::new(bin)
        .args(["edge", "--manifest", "spin.toml", "--listen", "127.0.0.1:0"])
        .args(["--variable", &format!("sluice_url={}", server.url)])
        .args(["--variable", &format!("sluice_key={}", server.key)])
        .args(["--variable", "topic=hooks"])
        .args(["--variable", &format!("source_config={config}")])
        .env("SLUICE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let url = loop {
        let Some(line) = lines.next() else {
            bail!("sluice edge exited before listening")
        };
        if let Some(rest) = line?.strip_prefix("Sluice edge listening on ") {
            break rest.trim().to_owned();
        }
    };
    let make = signed_webhooks(&url, "/hooks/sw");
    let result = async {
        drive_requests(&url, 64, 1, make.clone(), Duration::from_secs(2)).await?;
        let r = drive_requests(&url, 64, 1, make, secs).await?;
        print_acks(
            "Standard Webhooks through the Spin component (sluice edge: wasi:http, a fresh instance per request) forwarded to the server (64 bare clients)",
            &r,
        );
        anyhow::Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// CloudEvents batch mode against batched envelopes.
async fn cloudevents(server: &Server, secs: Duration) -> anyhow::Result<()> {
    let ce_bodies: Vec<Bytes> = (0..16).map(structured_batch).collect();
    let addr = server.url.trim_start_matches("http://").to_owned();
    let key = server.key.clone();
    let ce_requests: Arc<Vec<Vec<u8>>> = Arc::new(
        ce_bodies
            .iter()
            .map(|b| {
                let mut r = format!(
                    "POST /v1/topics/ce/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
                     Content-Type: application/cloudevents-batch+json\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                )
                .into_bytes();
                r.extend_from_slice(b);
                r
            })
            .collect(),
    );
    let ce_make: RequestMaker =
        Arc::new(move |c, i| ce_requests[(c + i as usize) % ce_requests.len()].clone());
    drive_requests(&server.url, 8, 100, ce_make.clone(), Duration::from_secs(2)).await?;
    let mut rates = (Vec::new(), Vec::new());
    for round in 0..2 {
        let plain = drive_raw(server, "batched", 8, &bodies(100, 16), 100, secs).await?;
        let ce = drive_requests(&server.url, 8, 100, ce_make.clone(), secs).await?;
        for (what, r) in [("batched envelopes", &plain), ("CloudEvents batches", &ce)] {
            println!(
                "round {round}: {what} (100 x 1 KiB per request, 8 clients): {:.0} events/s, request p50 {:.2} ms p99 {:.2} ms, errors {}",
                r.events as f64 / r.elapsed.as_secs_f64(),
                pct(&r.latencies_us, 0.5),
                pct(&r.latencies_us, 0.99),
                r.errors
            );
        }
        rates
            .0
            .push(plain.events as f64 / plain.elapsed.as_secs_f64());
        rates.1.push(ce.events as f64 / ce.elapsed.as_secs_f64());
    }
    println!(
        "CloudEvents batch in: {:.0} events/s vs batched produce {:.0}: {:.0} % (target >= 80 %)",
        mean(&rates.1),
        mean(&rates.0),
        100.0 * mean(&rates.1) / mean(&rates.0)
    );
    Ok(())
}
