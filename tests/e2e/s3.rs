//! The log on a real S3-compatible server: moto (`moto_server`, installed into the venv by the
//! test command). Produce, restart, fetch; then two hosts on one bucket, the first fenced.
//!
//! Without moto the test fails under CI and is skipped (saying so) on a developer machine.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Process;

pub(crate) struct Moto {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SLUICE_MOTO_SERVER") {
        return Some(p.into());
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    venv.exists().then_some(venv)
}

pub(crate) fn start_moto() -> Option<Moto> {
    let Some(bin) = moto_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "moto_server is not installed: run the README's test command (bash tests/run.sh)"
        );
        eprintln!("SKIPPED: moto_server not found; `bash tests/run.sh` installs it");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Moto { child, url })
}

pub(crate) fn s3_host(data: &std::path::Path, moto: &Moto, bucket: &str) -> Process {
    Process::start_with_env(
        data,
        &["--store", &format!("s3://{bucket}/sluice")],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", &moto.url),
            ("AWS_ALLOW_HTTP", "true"),
        ],
    )
}

#[test]
fn produce_restart_fetch_and_fence_on_s3() {
    let Some(moto) = start_moto() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::blocking::Client::new();
    let r = http
        .put(format!("{}/sluice-test", moto.url))
        .send()
        .unwrap();
    assert!(
        r.status().is_success(),
        "creating the bucket: {}",
        r.status()
    );

    let dir_a = tempfile::tempdir().unwrap();
    let a = s3_host(dir_a.path(), &moto, "sluice-test");
    let ca = a.client();
    rt.block_on(async {
        ca.create_topic("s3.events", 3).await;
        for i in 0..50 {
            let (st, v) = ca
                .produce("s3.events", json!({"key": format!("k{i}"), "payload": i}))
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
        }
    });
    // Restart on the same bucket (a new host with its own empty data directory: the bucket is
    // the only state; the admin key comes from the first host's directory).
    let key = a.admin_key();
    assert!(a.terminate().success());
    let dir_b = tempfile::tempdir().unwrap();
    let b = s3_host(dir_b.path(), &moto, "sluice-test");
    assert!(
        !dir_b.path().join("admin.key").exists(),
        "the tenant directory came from the bucket"
    );
    let cb = crate::harness::Client::new(&b.url, &key);
    rt.block_on(async {
        let mut n = 0;
        for p in 0..3 {
            let events = cb.read_all("s3.events", p, 0).await;
            for (i, e) in events.iter().enumerate() {
                assert_eq!(e["offset"], i as u64);
            }
            n += events.len();
        }
        assert_eq!(n, 50);
    });

    // A third host takes over: b is fenced.
    let dir_c = tempfile::tempdir().unwrap();
    let c = s3_host(dir_c.path(), &moto, "sluice-test");
    let cc = crate::harness::Client::new(&c.url, &key);
    rt.block_on(async {
        let (st, v) = cb.produce("s3.events", json!({"payload": "zombie"})).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        let (st, _) = cc
            .produce("s3.events", json!({"key": "k0", "payload": "from c"}))
            .await;
        assert_eq!(st, StatusCode::OK);
        let mut payloads = Vec::new();
        for p in 0..3 {
            payloads.extend(
                cc.read_all("s3.events", p, 0)
                    .await
                    .into_iter()
                    .map(|e| e["event"]["payload"].clone()),
            );
        }
        assert_eq!(payloads.len(), 51);
        assert!(!payloads.contains(&json!("zombie")));
    });
}
