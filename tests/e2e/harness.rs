//! Starting servers and talking to them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_log::LogOptions;
use sluice_runtime::RuntimeOptions;
use sluice_server::config::S3Config;
use sluice_server::serve::{ServeOptions, start};
use sluice_server::server::run;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A server running inside the test process.
pub struct Server {
    pub url: String,
    /// The server's state, for what tests control directly (the clock).
    pub app: std::sync::Arc<sluice_server::app::App>,
    pub admin_key: String,
    pub data: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

pub fn options(data: &Path) -> ServeOptions {
    ServeOptions {
        data: data.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        store: None,
        s3: S3Config::default(),
        log: LogOptions::default(),
        max_body_bytes: 4 << 20,
        wasm: wasm_options(),
        // The tests' webhook receivers listen on loopback.
        webhooks: sluice_delivery::egress::Egress {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
        },
        limits: Default::default(),
        registry: Default::default(),
        http: Default::default(),
        disk: Default::default(),
        tls: None,
        quotas: Default::default(),
        encryption: Default::default(),
    }
}

/// Guests bounded tightly for tests, with one compile cache for the whole test binary.
pub fn wasm_options() -> RuntimeOptions {
    RuntimeOptions {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasm-cache")),
        call_timeout: Duration::from_millis(300),
        max_instances: 32,
        ..RuntimeOptions::default()
    }
}

impl Server {
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Server::start_with(options(dir.path())).await;
        s._dir = Some(dir);
        s
    }

    pub async fn start_with(opts: ServeOptions) -> Server {
        let (app, token) = start(&opts).await.expect("server starts");
        let admin_key = match token {
            Some(t) => t,
            None => std::fs::read_to_string(opts.data.join("admin.key"))
                .unwrap()
                .trim()
                .to_owned(),
        };
        let listener = TcpListener::bind(opts.listen).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = app.clone();
        let task = tokio::spawn(run(listener, app.clone(), async {
            let _ = rx.await;
        }));
        Server {
            url,
            app: handle,
            admin_key,
            data: opts.data,
            stop: Some(tx),
            task: Some(task),
            _dir: None,
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, &self.admin_key)
    }

    /// Graceful stop: finish requests, flush and checkpoint the log.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        self._dir.take()
    }
}

/// An HTTP client with a key.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub key: String,
}

impl Client {
    pub fn new(url: &str, key: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            key: key.to_owned(),
        }
    }

    pub fn with_key(&self, key: &str) -> Client {
        Client::new(&self.url, key)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `/metrics` as text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn create_topic(&self, name: &str, partitions: u32) -> Value {
        let (s, v) = self
            .post(
                "/v1/topics",
                json!({"name": name, "partitions": partitions, "replicationFactor": 1, "config": {}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    pub async fn produce(&self, topic: &str, events: Value) -> (StatusCode, Value) {
        self.post(&format!("/v1/topics/{topic}/events"), events)
            .await
    }

    /// Every event of one partition from `from`, following `next_offset`.
    pub async fn read_all(&self, topic: &str, partition: u32, from: u64) -> Vec<Value> {
        let mut out = Vec::new();
        let mut offset = from;
        loop {
            let (s, v) = self
                .get(&format!("/v1/topics/{topic}/partitions/{partition}/events?offset={offset}&max_events=1000"))
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let events = v["events"].as_array().unwrap();
            if events.is_empty() {
                return out;
            }
            out.extend(events.iter().cloned());
            offset = v["next_offset"].as_u64().unwrap();
        }
    }
}

/// The real `sluice` binary, for what only a process can show (kill -9, the CLI).
pub struct Process {
    pub child: Child,
    pub url: String,
    pub data: PathBuf,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

impl Process {
    /// `sluice serve --data DIR --listen 127.0.0.1:0 [extra...]`, ready once it prints its URL.
    pub fn start(data: &Path, extra: &[&str]) -> Process {
        Process::start_with_env(data, extra, &[])
    }

    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Process {
        let mut child = Command::new(binary())
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("SLUICE_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sluice starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("sluice printed its address before exiting")
                .unwrap();
            if let Some(rest) = line.strip_prefix("Sluice listening on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Process {
            child,
            url,
            data: data.to_owned(),
        }
    }

    pub fn admin_key(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.key"))
            .unwrap()
            .trim()
            .to_owned()
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, &self.admin_key())
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe_free_sigterm(self.child.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sluice did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_free_sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The Python of the test venv (`tests/run.sh` makes it), if there is one.
pub fn python() -> Option<PathBuf> {
    if let Ok(venv) = std::env::var("SLUICE_VENV") {
        return Some(PathBuf::from(venv).join("bin/python"));
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    local.exists().then_some(local)
}

/// Run a client script of `tests/clients/` with the test venv's Python, `stdin` as its input;
/// its standard output, or `None` when there is no venv (outside CI only: in CI that fails).
pub fn run_client(script: &str, args: &[&str], stdin: &str) -> Option<Vec<u8>> {
    use std::io::Write;
    let Some(py) = python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the Python venv is missing: run the README's test command (bash tests/run.sh)"
        );
        eprintln!("SKIPPED: no Python venv for tests/clients/{script}");
        return None;
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/clients")
        .join(script);
    let mut child = std::process::Command::new(py)
        .arg(path)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tests/clients/{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.stdout)
}

/// The tests' webhook receiver (tests/clients/webhook_receiver.py): answers as scripted,
/// keeps what it received.
pub struct Receiver {
    child: std::process::Child,
    pub url: String,
    http: reqwest::Client,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// `None` when there is no test venv (outside CI only).
    pub fn start() -> Option<Receiver> {
        let Some(py) = python() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "the Python venv is missing: run the README's test command (bash tests/run.sh)"
            );
            eprintln!(
                "SKIPPED: no Python venv with standardwebhooks; `bash tests/run.sh` installs it"
            );
            return None;
        };
        let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/clients/webhook_receiver.py");
        let mut child = std::process::Command::new(py)
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the receiver starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .expect("PORT line")
            .to_owned();
        Some(Receiver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        })
    }

    pub async fn control(&self, body: Value) {
        let r = self
            .http
            .post(format!("{}/control", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    pub async fn received(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/received", self.url))
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap()
    }

    /// Wait (up to 20 s) until `n` deliveries arrived; return them.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let got = self.received().await;
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n} deliveries: {got:?}",
                got.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}
