//! Two hosts on one data directory: the second claims the log, the first is fenced.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Process;

#[test]
fn a_second_host_fences_the_first_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = Process::start(dir.path(), &[]);
    let ca = a.client();
    rt.block_on(async {
        ca.create_topic("shared", 2).await;
        let (st, _) = ca
            .produce("shared", json!({"key": "k", "payload": "from a"}))
            .await;
        assert_eq!(st, StatusCode::OK);
    });
    let b = Process::start(dir.path(), &[]);
    let cb = b.client();
    rt.block_on(async {
        let (st, v) = ca
            .produce("shared", json!({"key": "k", "payload": "zombie"}))
            .await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        assert!(v["message"].as_str().unwrap().contains("fenced"), "{v}");
        let ready = ca
            .http
            .get(format!("{}/readyz", ca.url))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

        let (st, _) = cb
            .produce("shared", json!({"key": "k", "payload": "from b"}))
            .await;
        assert_eq!(st, StatusCode::OK);
        let mut all = Vec::new();
        for p in 0..2 {
            all.extend(cb.read_all("shared", p, 0).await);
        }
        let payloads: Vec<&str> = all
            .iter()
            .map(|e| e["event"]["payload"].as_str().unwrap())
            .collect();
        assert_eq!(payloads, vec!["from a", "from b"]);
    });
    drop(a);
    drop(b);
}
