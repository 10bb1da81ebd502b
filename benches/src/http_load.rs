//! Load against the real `sluice` binary over loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use sluice_log::{Compression, EncodedRecords, Log, LogOptions, PartitionAppend, Record, Storage};

use crate::pct;

pub const PARTITIONS: u32 = 12;

pub struct Server {
    child: Child,
    pub url: String,
    pub key: String,
    pub pid: u32,
}

impl Server {
    pub fn start(data: &Path) -> anyhow::Result<(Server, Duration)> {
        Server::start_with(data, &[])
    }

    /// With extra `sluice serve` flags.
    pub fn start_with(data: &Path, extra: &[&str]) -> anyhow::Result<(Server, Duration)> {
        let bin: PathBuf = std::env::current_exe()?.with_file_name("sluice");
        let started = Instant::now();
        let mut cmd = Command::new(&bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra);
        // A server config to benchmark other settings with (see docs/CONFIG.md).
        if let Ok(cfg) = std::env::var("SLUICE_BENCH_CONFIG") {
            cmd.arg("--config").arg(cfg);
        }
        let mut child = cmd
            .env("SLUICE_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let url = loop {
            let Some(line) = lines.next() else {
                bail!("sluice exited before listening")
            };
            if let Some(rest) = line?.strip_prefix("Sluice listening on ") {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let ready = started.elapsed();
        let key = std::fs::read_to_string(data.join("admin.key"))?
            .trim()
            .to_owned();
        let pid = child.id();
        Ok((
            Server {
                child,
                url,
                key,
                pid,
            },
            ready,
        ))
    }

    async fn metrics_text(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        Ok(http
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.key)
            .send()
            .await?
            .text()
            .await?)
    }

    /// (flushes, records flushed, bytes flushed, data write µs, commit µs) so far.
    pub async fn metrics(
        &self,
        http: &reqwest::Client,
    ) -> anyhow::Result<(u64, u64, u64, u64, u64)> {
        let text = self.metrics_text(http).await?;
        let get = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
                .unwrap_or(0)
        };
        Ok((
            get("sluice_log_flushes_total "),
            get("sluice_log_flush_records_total "),
            get("sluice_log_flush_bytes_total "),
            get("sluice_log_data_write_microseconds_total "),
            get("sluice_log_commit_microseconds_total "),
        ))
    }

    /// Upper bounds (ms) of the buckets holding the median and the 99th percentile of the
    /// server's own produce latency histogram.
    pub async fn produce_latency(&self, http: &reqwest::Client) -> anyhow::Result<(f64, f64)> {
        let text = self.metrics_text(http).await?;
        let buckets: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("sluice_produce_latency_seconds_bucket{le=\""))
            .filter_map(|l| {
                let (le, rest) = l.split_once("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le * 1000.0, rest.trim().parse().ok()?))
            })
            .collect();
        let total = buckets.last().map_or(0.0, |b| b.1);
        let at = |q: f64| {
            buckets
                .iter()
                .find(|b| b.1 >= q * total)
                .map_or(f64::NAN, |b| b.0)
        };
        Ok((at(0.5), at(0.99)))
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }

    pub fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// A bench that fails part-way must not leave its server running: it would take CPU from every
/// later run.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    pub async fn create_topic(&self, http: &reqwest::Client, name: &str) -> anyhow::Result<()> {
        self.create_topic_with(http, name, json!({})).await
    }

    /// With more fields of the topic document (`dataSensitivity`, ...).
    pub async fn create_topic_with(
        &self,
        http: &reqwest::Client,
        name: &str,
        extra: Value,
    ) -> anyhow::Result<()> {
        let mut doc = json!({"name": name, "partitions": PARTITIONS, "replicationFactor": 1, "config": {}, "keyField": "org_id"});
        for (k, v) in extra.as_object().into_iter().flatten() {
            doc[k] = v.clone();
        }
        let r = http
            .post(format!("{}/v1/topics", self.url))
            .bearer_auth(&self.key)
            .json(&doc)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("creating {name}: {}", r.text().await?);
        }
        Ok(())
    }
}

/// Bytes written to the block device holding `path` so far (`/sys/dev/block/M:m/stat`,
/// sectors written), so journal and metadata writes count too. Whole-device: run on a quiet
/// machine.
pub fn device_bytes_written(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    let dev = meta.dev();
    let (major, minor) = (libc_major(dev), libc_minor(dev));
    let read = |p: String| std::fs::read_to_string(p).ok();
    let stat = read(format!("/sys/dev/block/{major}:{minor}/stat"))
        // A partition's stats live under its parent too; fall back to the whole disk.
        .or_else(|| read(format!("/sys/dev/block/{major}:0/stat")));
    stat.and_then(|s| {
        s.split_whitespace()
            .nth(6)
            .and_then(|v| v.parse::<u64>().ok())
    })
    .map_or(0, |sectors| sectors * 512)
}

fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)
}

/// A 1 KiB envelope (its JSON text is 1024 bytes).
fn event(i: u64) -> String {
    let head = format!(
        "{{\"event_type\":\"bench.event\",\"org_id\":{},\"payload\":{{\"data\":\"",
        i % 1000
    );
    let tail = "\"}}";
    let pad = 1024 - head.len() - tail.len();
    let mut s = head;
    s.push_str(&"x".repeat(pad));
    s.push_str(tail);
    debug_assert_eq!(s.len(), 1024);
    s
}

pub fn bodies(per_request: usize, variants: usize) -> Vec<Bytes> {
    (0..variants)
        .map(|v| {
            let events: Vec<String> = (0..per_request)
                .map(|i| event((v * per_request + i) as u64))
                .collect();
            Bytes::from(format!("[{}]", events.join(",")))
        })
        .collect()
}

pub struct LoadResult {
    pub events: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub latencies_us: Vec<u32>,
    pub errors: u64,
}

pub async fn drive(
    server: &Server,
    topic: &str,
    clients: usize,
    per_request: usize,
    secs: Duration,
) -> LoadResult {
    drive_bodies(
        server,
        topic,
        clients,
        bodies(per_request, 16),
        per_request,
        secs,
    )
    .await
}

/// `clients` connections each posting `bodies` (JSON arrays of `per_request` events) in turn.
pub async fn drive_bodies(
    server: &Server,
    topic: &str,
    clients: usize,
    bodies: Vec<Bytes>,
    per_request: usize,
    secs: Duration,
) -> LoadResult {
    let bodies = Arc::new(bodies);
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let url = format!("{}/v1/topics/{topic}/events", server.url);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (bodies, stop, events, bytes, errors, url, key) = (
            bodies.clone(),
            stop.clone(),
            events.clone(),
            bytes.clone(),
            errors.clone(),
            url.clone(),
            server.key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut lat = Vec::with_capacity(1 << 16);
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let body = bodies[i % bodies.len()].clone();
                i += 1;
                let n = body.len() as u64;
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_micros() as u32);
                        events.fetch_add(per_request as u64, Ordering::Relaxed);
                        bytes.fetch_add(n, Ordering::Relaxed);
                    }
                    failed => {
                        // The first failure of a run is shown, so a failing bench says why.
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            let why = match failed {
                                Ok(r) => format!(
                                    "{}: {}",
                                    r.status(),
                                    r.text().await.unwrap_or_default()
                                ),
                                Err(e) => e.to_string(),
                            };
                            eprintln!("a request to {url} failed: {why}");
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
        latencies_us.extend(t.await.expect("load task"));
    }
    latencies_us.sort_unstable();
    LoadResult {
        events: events.load(Ordering::Relaxed),
        bytes: bytes.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latencies_us,
        errors: errors.load(Ordering::Relaxed),
    }
}

/// Two topics under the same load in alternating phases, A B B A repeated `cycles` times after
/// one warm-up phase of each: a drift on a shared machine (the data directory growing, a busy
/// neighbour, the disk's fsync latency moving) then weighs on both alike instead of on
/// whichever topic runs second. Prints every phase; returns the ratio of B's events/s to A's
/// over all measured phases, with the lowest and highest ratio of single A B B A cycles.
pub async fn alternate(
    server: &Server,
    topics: [&str; 2],
    load: &Load<'_>,
    phase: Duration,
    cycles: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let Load {
        clients,
        bodies,
        per_request,
        describe,
    } = *load;
    for topic in topics {
        drive_bodies(server, topic, clients, bodies.to_vec(), per_request, phase).await;
    }
    let mut totals = [(0u64, 0f64); 2];
    let mut cycle_ratios = Vec::with_capacity(cycles);
    for _ in 0..cycles {
        let mut cycle = [(0u64, 0f64); 2];
        for k in [0usize, 1, 1, 0] {
            let topic = topics[k];
            let r = drive_bodies(server, topic, clients, bodies.to_vec(), per_request, phase).await;
            let s = r.elapsed.as_secs_f64();
            println!(
                "batched produce into `{topic}` ({describe}, {clients} clients): {:.0} events/s, request p50 {:.2} ms p99 {:.2} ms, errors {}",
                r.events as f64 / s,
                pct(&r.latencies_us, 0.5),
                pct(&r.latencies_us, 0.99),
                r.errors
            );
            if r.errors > 0 {
                bail!("{} requests to `{topic}` failed", r.errors);
            }
            for acc in [&mut totals[k], &mut cycle[k]] {
                acc.0 += r.events;
                acc.1 += s;
            }
        }
        cycle_ratios.push(rate(cycle[1]) / rate(cycle[0]));
    }
    let lo = cycle_ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = cycle_ratios.iter().copied().fold(0.0, f64::max);
    Ok((rate(totals[1]) / rate(totals[0]), lo, hi))
}

/// What each client of [`alternate`] posts: `bodies` in turn, `per_request` events each.
#[derive(Clone, Copy)]
pub struct Load<'a> {
    pub clients: usize,
    pub bodies: &'a [Bytes],
    pub per_request: usize,
    /// For the printed lines, e.g. "100 x 1 KiB/request".
    pub describe: &'a str,
}

fn rate((events, secs): (u64, f64)) -> f64 {
    events as f64 / secs
}

/// Like [`drive_bodies`], but each client is a bare HTTP/1.1 keep-alive connection writing
/// prepared request bytes and reading the status line, headers and `Content-Length` body (as
/// `wrk` does): the load generator then takes far less of the CPU it shares with the server.
pub async fn drive_raw(
    server: &Server,
    topic: &str,
    clients: usize,
    bodies: &[Bytes],
    per_request: usize,
    secs: Duration,
) -> anyhow::Result<LoadResult> {
    let addr = server
        .url
        .strip_prefix("http://")
        .unwrap_or(&server.url)
        .to_owned();
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        bodies
            .iter()
            .map(|b| {
                let mut r = format!(
                    "POST /v1/topics/{topic}/events HTTP/1.1\r\nHost: {addr}\r\n\
                     Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n",
                    server.key,
                    b.len()
                )
                .into_bytes();
                r.extend_from_slice(b);
                r
            })
            .collect(),
    );
    let make: RequestMaker =
        Arc::new(move |client, i| requests[(client + i as usize) % requests.len()].clone());
    drive_requests(&server.url, clients, per_request, make, secs).await
}

/// Builds client `c`'s `i`-th request (the whole HTTP/1.1 request, head and body).
pub type RequestMaker = Arc<dyn Fn(usize, u64) -> Vec<u8> + Send + Sync>;

/// `clients` bare keep-alive connections sending `make`'s requests back to back for `secs`;
/// each 200 counts `per_request` events.
pub async fn drive_requests(
    url: &str,
    clients: usize,
    per_request: usize,
    make: RequestMaker,
    secs: Duration,
) -> anyhow::Result<LoadResult> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.strip_prefix("http://").unwrap_or(url).to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (make, stop, addr) = (make.clone(), stop.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = tokio::net::TcpStream::connect(&addr).await?;
            conn.set_nodelay(true)?;
            let mut lat = Vec::with_capacity(1 << 16);
            let (mut ok, mut failed, mut sent) = (0u64, 0u64, 0u64);
            let mut buf = Vec::with_capacity(4096);
            let mut i = 0u64;
            let mut first_failure = None;
            while !stop.load(Ordering::Relaxed) {
                let req = make(c, i);
                i += 1;
                let t = Instant::now();
                conn.write_all(&req).await?;
                buf.clear();
                let (head_end, body_len) = loop {
                    if conn.read_buf(&mut buf).await? == 0 {
                        anyhow::bail!("the server closed the connection");
                    }
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = std::str::from_utf8(&buf[..end])?;
                        let len = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        break (end + 4, len);
                    }
                };
                while buf.len() < head_end + body_len {
                    if conn.read_buf(&mut buf).await? == 0 {
                        anyhow::bail!("the server closed the connection");
                    }
                }
                if buf.starts_with(b"HTTP/1.1 200") {
                    lat.push(t.elapsed().as_micros() as u32);
                    ok += 1;
                    sent += req.len() as u64;
                } else {
                    failed += 1;
                    if first_failure.is_none() {
                        first_failure = Some(String::from_utf8_lossy(&buf).into_owned());
                        eprintln!(
                            "first failed request: {}",
                            first_failure.as_deref().unwrap_or("")
                        );
                    }
                }
            }
            Ok::<_, anyhow::Error>((lat, ok, failed, sent))
        }));
    }
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    let mut r = LoadResult {
        events: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
        errors: 0,
    };
    for t in tasks {
        let (lat, ok, failed, sent) = t.await??;
        r.latencies_us.extend(lat);
        r.events += ok * per_request as u64;
        r.errors += failed;
        r.bytes += sent;
    }
    r.elapsed = start.elapsed();
    r.latencies_us.sort_unstable();
    Ok(r)
}

pub async fn batched(dir: &Path, secs: Duration) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let (server, _) = Server::start(dir)?;
    let http = reqwest::Client::new();
    server.create_topic(&http, "bench").await?;
    // Warm up, then measure.
    drive(&server, "bench", 8, 100, Duration::from_secs(2)).await;
    let w0 = device_bytes_written(dir);
    let r = drive(&server, "bench", 8, 100, secs).await;
    let w1 = device_bytes_written(dir);
    let s = r.elapsed.as_secs_f64();
    println!(
        "batched produce (100 x 1 KiB events/request, 8 clients, durable acks): {:.0} events/s, {:.0} MB/s, request p50 {:.2} ms p99 {:.2} ms, errors {}",
        r.events as f64 / s,
        r.bytes as f64 / s / 1e6,
        pct(&r.latencies_us, 0.5),
        pct(&r.latencies_us, 0.99),
        r.errors
    );
    println!(
        "write amplification (bytes the disk device wrote, journal and metadata included / request bytes ingested): {:.3} ({} / {})",
        (w1 - w0) as f64 / r.bytes as f64,
        w1 - w0,
        r.bytes
    );

    report_flushes(&server.metrics(&http).await?, s);

    tail_latency(&server, &http).await?;
    http_fetch(&server, &http).await?;
    server.stop()?;
    store_fetch(dir).await?;
    Ok(())
}

/// Batched produce into a topic with the validate + enrich + route pipeline, against the same
/// load into a plain topic on the same server.
pub async fn pipeline(dir: &Path, secs: Duration) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let (server, _) = Server::start(dir)?;
    let http = reqwest::Client::new();
    server.create_topic(&http, "plain").await?;
    let r = http
        .post(format!("{}/v1/topics", server.url))
        .bearer_auth(&server.key)
        .json(&json!({"name": "piped", "partitions": PARTITIONS, "replicationFactor": 1, "config": {},
            "keyField": "org_id",
            "pipeline": [
                {"component": "validate", "config": {"schema": {"type": "object",
                    "required": ["event_type", "org_id", "payload"],
                    "properties": {"event_type": {"type": "string", "minLength": 1},
                                   "org_id": {"type": "integer", "minimum": 0},
                                   "payload": {"type": "object", "required": ["data"],
                                               "properties": {"data": {"type": "string"}}}}}}},
                {"component": "enrich", "config": {"fields": ["ingest_time", "producer_key_id", "tenant"]}},
                {"component": "route", "config": {"rules": [
                    {"type": "bench.*", "when": [{"pointer": "/org_id", "op": "gte", "value": 0}], "keep": true},
                    {"type": "*", "dlq": "unknown event type"}]}}
            ]}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("creating the pipeline topic: {}", r.text().await?);
    }
    let load = Load {
        clients: 8,
        bodies: &bodies(100, 16),
        per_request: 100,
        describe: "100 x 1 KiB/request",
    };
    let (ratio, lo, hi) = alternate(&server, ["plain", "piped"], &load, secs / 4, 2).await?;
    println!(
        "pipeline throughput (validate + enrich + route) / no pipeline: {:.0}% (single A B B A cycles: {:.0}-{:.0}%)",
        ratio * 100.0,
        lo * 100.0,
        hi * 100.0
    );
    server.stop()?;
    Ok(())
}

/// Produce one event and time until a long-polling reader has it.
async fn tail_latency(server: &Server, http: &reqwest::Client) -> anyhow::Result<()> {
    server.create_topic(http, "tail").await?;
    let mut lat = Vec::new();
    for i in 0..200u64 {
        let url = format!(
            "{}/v1/topics/tail/partitions/0/events?offset={i}&wait_ms=5000",
            server.url
        );
        let reader = {
            let (http, key) = (http.clone(), server.key.clone());
            tokio::spawn(async move {
                let v: Value = http.get(url).bearer_auth(key).send().await?.json().await?;
                Ok::<_, reqwest::Error>((Instant::now(), v))
            })
        };
        tokio::time::sleep(Duration::from_millis(2)).await;
        let sent = Instant::now();
        http.post(format!("{}/v1/topics/tail/events", server.url))
            .bearer_auth(&server.key)
            .json(&json!({"partition": 0, "payload": i}))
            .send()
            .await?;
        let (got, v) = reader.await??;
        if v["events"].as_array().is_none_or(|e| e.is_empty()) {
            bail!("the tail reader got nothing");
        }
        lat.push(got.duration_since(sent).as_micros() as u32);
    }
    lat.sort_unstable();
    println!(
        "tail latency (produce -> long-polling reader has it): p50 {:.2} ms, p99 {:.2} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    Ok(())
}

/// Read the whole topic back over HTTP (JSON), one partition after another.
async fn http_fetch(server: &Server, http: &reqwest::Client) -> anyhow::Result<()> {
    let (events_s, mb_s) = fetch_topic(server, http, "bench").await?;
    println!("HTTP fetch (JSON, whole topic): {events_s:.0} events/s, {mb_s:.0} MB/s of response");
    Ok(())
}

/// Read a whole topic through the HTTP fetch API, partition after partition: events/s and
/// MB/s of response.
pub async fn fetch_topic(
    server: &Server,
    http: &reqwest::Client,
    topic: &str,
) -> anyhow::Result<(f64, f64)> {
    let start = Instant::now();
    let (mut events, mut bytes) = (0u64, 0u64);
    for p in 0..PARTITIONS {
        let mut offset = 0;
        loop {
            let r = http
                .get(format!("{}/v1/topics/{topic}/partitions/{p}/events?offset={offset}&max_events=10000&max_bytes=16777216", server.url))
                .bearer_auth(&server.key)
                .send()
                .await?
                .bytes()
                .await?;
            bytes += r.len() as u64;
            let v: Value = serde_json::from_slice(&r)?;
            let n = v["events"].as_array().map_or(0, Vec::len);
            if n == 0 {
                break;
            }
            events += n as u64;
            offset = v["next_offset"].as_u64().unwrap_or(offset);
        }
    }
    let s = start.elapsed().as_secs_f64();
    Ok((events as f64 / s, bytes as f64 / s / 1e6))
}

/// Read the topic back through the log engine with a cold cache: ranged reads of the segments.
async fn store_fetch(dir: &Path) -> anyhow::Result<()> {
    // Drop the page cache's copy where allowed, so this reads the disk.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "1");
    let opts = LogOptions {
        cache_bytes: 0,
        ..LogOptions::default()
    };
    let log = Log::open(Storage::Local(dir.to_owned()), opts).await?;
    let topic = "default/bench";
    let start = Instant::now();
    // Every partition read front to back, all partitions at once (as a consumer group would).
    let mut tasks = Vec::new();
    for p in 0..PARTITIONS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let (mut records, mut bytes) = (0u64, 0u64);
            let (mut offset, end) = log.offsets(topic, p)?;
            while offset < end {
                let r = log.read(topic, p, offset, 100_000, 16 << 20).await?;
                records += r.records.len() as u64;
                bytes += r
                    .records
                    .iter()
                    .map(|r| r.record.value_bytes().len() as u64)
                    .sum::<u64>();
                offset = r.next_offset;
            }
            Ok::<_, sluice_log::LogError>((records, bytes))
        }));
    }
    let (mut records, mut bytes) = (0u64, 0u64);
    for t in tasks {
        let (r, b) = t.await??;
        records += r;
        bytes += b;
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "sequential fetch from the store (log engine, page cache dropped, 12 partitions read concurrently): {:.2} GiB in {:.2} s = {:.0} MB/s of values, {:.0} records/s",
        bytes as f64 / (1u64 << 30) as f64,
        s,
        bytes as f64 / s / 1e6,
        records as f64 / s
    );
    log.close().await;
    Ok(())
}

pub async fn single(dir: &Path, secs: Duration) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let (server, _) = Server::start(dir)?;
    let http = reqwest::Client::new();
    server.create_topic(&http, "single").await?;
    drive(&server, "single", 64, 1, Duration::from_secs(2)).await;
    let w0 = device_bytes_written(dir);
    let r = drive(&server, "single", 64, 1, secs).await;
    let w1 = device_bytes_written(dir);
    print_acks("single-event produce (64 clients, durable acks)", &r);
    // Small flushes are written twice (commit log and segment) plus the log's pre-zeroing:
    // the price of one device sync per flush instead of two.
    println!(
        "  write amplification (device bytes written / request bytes): {:.3}",
        (w1 - w0) as f64 / r.bytes.max(1) as f64
    );
    report_flushes(&server.metrics(&http).await?, r.elapsed.as_secs_f64());
    let (p50, p99) = server.produce_latency(&http).await?;
    println!(
        "  server-side produce latency (request read to ack, from /metrics buckets): p50 <= {p50} ms, p99 <= {p99} ms"
    );
    // The same load from bare keep-alive connections (as wrk sends it), so the clients take
    // less of the two cores they share with the server.
    let r = drive_raw(&server, "single", 64, &bodies(1, 16), 1, secs).await?;
    print_acks(
        "single-event produce, bare HTTP/1.1 clients (64, durable acks)",
        &r,
    );
    server.stop()?;
    Ok(())
}

pub fn print_acks(what: &str, r: &LoadResult) {
    println!(
        "{what}: {:.0} events/s, ack latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, errors {}",
        r.events as f64 / r.elapsed.as_secs_f64(),
        pct(&r.latencies_us, 0.5),
        pct(&r.latencies_us, 0.99),
        pct(&r.latencies_us, 0.999),
        r.errors
    );
}

fn report_flushes(m: &(u64, u64, u64, u64, u64), secs: f64) {
    let n = m.0.max(1) as f64;
    println!(
        "  group commit (whole run): {:.0} flushes/s, {:.0} events and {:.0} KiB per flush, data write {:.2} ms, commit record {:.2} ms on average",
        m.0 as f64 / secs,
        m.1 as f64 / n,
        m.2 as f64 / n / 1024.0,
        m.3 as f64 / n / 1000.0,
        m.4 as f64 / n / 1000.0,
    );
}

/// Send `body` to `topic` `times` times, one request after the other.
async fn produce_one_by_one(
    server: &Server,
    http: &reqwest::Client,
    topic: &str,
    body: &Bytes,
    times: usize,
) -> anyhow::Result<()> {
    for _ in 0..times {
        http.post(format!("{}/v1/topics/{topic}/events", server.url))
            .bearer_auth(&server.key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
    }
    Ok(())
}

/// Fill a log with `n` events through the engine, then time the real server's start to ready:
/// after a clean stop, and after kill -9 with commits since the last checkpoint.
/// `appends` appends to `topic` straight into the log, 16 in flight, each `make(i)`'s parts.
pub async fn fill(
    log: &Log,
    topic: &str,
    appends: u64,
    make: impl Fn(u64) -> Vec<PartitionAppend> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let make = Arc::new(make);
    let mut tasks = futures::stream::FuturesUnordered::new();
    for i in 0..appends {
        let (log, make, topic) = (log.clone(), make.clone(), topic.to_owned());
        tasks.push(tokio::spawn(
            async move { log.append(&topic, make(i)).await },
        ));
        if tasks.len() >= 16 {
            tasks.next().await.expect("a task")??;
        }
    }
    while let Some(t) = tasks.next().await {
        t??;
    }
    Ok(())
}

/// One partition's records as an append to partition 0.
pub fn partition_zero(records: &[Record]) -> Vec<PartitionAppend> {
    vec![PartitionAppend {
        partition: 0,
        records: EncodedRecords::encode(records, Compression::None),
        event_ids: vec![],
    }]
}

pub async fn restart(dir: &Path, n: u64) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    // First start creates the tenant; stop it, then fill its topic directly.
    let (server, _) = Server::start(dir)?;
    let http = reqwest::Client::new();
    server.create_topic(&http, "history").await?;
    server.stop()?;

    let log = Log::open(Storage::Local(dir.to_owned()), LogOptions::default()).await?;
    let filling = Instant::now();
    let per_append = 2_000u64;
    fill(&log, "default/history", n / per_append, move |chunk| {
        (0..4u32)
            .map(|q| {
                let p = ((chunk as u32) * 4 + q) % PARTITIONS;
                let records: Vec<Record> = (0..per_append / 4)
                    .map(|i| Record {
                        key: Some(Bytes::from(format!("k{i}"))),
                        value: Some(Bytes::from(format!(
                            "{{\"event_type\":\"history\",\"n\":{i},\"payload\":\"{}\"}}",
                            "y".repeat(40)
                        ))),
                        headers: vec![],
                        timestamp: 1_800_000_000_000 + i as i64,
                    })
                    .collect();
                PartitionAppend {
                    partition: p,
                    records: EncodedRecords::encode(&records, Compression::None),
                    event_ids: vec![],
                }
            })
            .collect()
    })
    .await?;
    log.close().await;
    println!(
        "restart: filled {n} events (~100 B each) in {:.1} s",
        filling.elapsed().as_secs_f64()
    );

    let (server, ready) = Server::start(dir)?;
    let total: u64 = {
        let v: Value = http
            .get(format!("{}/v1/topics/history", server.url))
            .bearer_auth(&server.key)
            .send()
            .await?
            .json()
            .await?;
        v["partition_offsets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["end_offset"].as_u64().unwrap_or(0))
            .sum()
    };
    println!(
        "restart after a clean stop, {total} events stored: ready in {:.3} s",
        ready.as_secs_f64()
    );
    // Commits since the last checkpoint, then a crash.
    produce_one_by_one(&server, &http, "history", &bodies(100, 1)[0], 300).await?;
    server.kill9()?;
    let (server, ready) = Server::start(dir)?;
    println!(
        "restart after kill -9 (300 commits to replay): ready in {:.3} s",
        ready.as_secs_f64()
    );
    // Small flushes carry their data in their commit records, and recovery checks each against
    // its segment: the worst case is a checkpoint's worth of them (4,000 of ~20 KiB).
    produce_one_by_one(&server, &http, "history", &bodies(20, 1)[0], 4_000).await?;
    server.kill9()?;
    let (server, ready) = Server::start(dir)?;
    println!(
        "restart after kill -9 (4,000 small flushes to replay, their carried data checked): ready in {:.3} s",
        ready.as_secs_f64()
    );
    server.stop()?;
    Ok(())
}

/// One JSON request with a key; an error names the path, the status and the answer.
pub async fn request(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let r = http
        .request(method, format!("{url}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{path}: {status} {v}");
    }
    Ok(v)
}
