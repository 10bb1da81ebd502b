//! kill -9 while a transform runs: after restart every input event has its output (at least
//! once), none is lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Client, Process};

const PARTITIONS: u32 = 2;

async fn output_ids(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        for e in c.read_all("silver", p, 0).await {
            out.push(e["event"]["event_id"].as_str().unwrap().to_owned());
        }
    }
    out
}

#[test]
fn kill9_during_a_transform_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut produced: BTreeSet<String> = BTreeSet::new();
    let mut next = 0usize;
    // Work left over at a restart proves a kill landed while the transform was busy.
    let mut interrupted = 0;
    for round in 0..3 {
        let p = Process::start(dir.path(), &[]);
        let c = p.client();
        if round > 0 {
            let (_, v) = rt.block_on(c.get("/v1/transforms/clean"));
            if v["lag"].as_u64().unwrap_or(0) > 0 {
                interrupted += 1;
            }
        }
        if round == 0 {
            rt.block_on(async {
                c.create_topic("bronze", PARTITIONS).await;
                c.create_topic("silver", PARTITIONS).await;
                let (st, v) = c
                    .send(
                        reqwest::Method::PUT,
                        "/v1/transforms/clean",
                        Some(json!({"component": "bronze-to-silver", "batch_size": 5,
                            "config": {"eventType": "silver.rows.cleaned", "key": "id"},
                            "input": "bronze", "output": "silver"})),
                    )
                    .await;
                assert!(st.is_success(), "{v}");
            });
        }
        // Produce while the transform runs, then kill at some moment of it.
        rt.block_on(async {
            for _ in 0..12 {
                let batch: Vec<Value> = (0..50)
                    .map(|i| {
                        let n = next + i;
                        json!({"event_id": format!("r{n}"), "event_type": "bronze.row",
                               "payload": {"id": n, "Name": format!(" row {n} ")}})
                    })
                    .collect();
                let (st, v) = c.produce("bronze", json!(batch)).await;
                assert!(st.is_success(), "{v}");
                for i in 0..50 {
                    produced.insert(format!("r{}.silver", next + i));
                }
                next += 50;
            }
        });
        std::thread::sleep(Duration::from_millis(20 + 40 * round as u64));
        p.kill9();
    }
    let p = Process::start(dir.path(), &[]);
    let c = p.client();
    let (_, v) = rt.block_on(c.get("/v1/transforms/clean"));
    if v["lag"].as_u64().unwrap_or(0) > 0 {
        interrupted += 1;
    }
    assert!(
        interrupted > 0,
        "no kill landed while the transform had work: the test proved nothing"
    );
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, v) = c.get("/v1/transforms/clean").await;
            if v["lag"] == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the transform never caught up: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let out = output_ids(&c).await;
        let got: BTreeSet<String> = out.iter().cloned().collect();
        let missing: Vec<&String> = produced.difference(&got).collect();
        assert!(
            missing.is_empty(),
            "outputs lost: {} of {}, e.g. {:?}",
            missing.len(),
            produced.len(),
            &missing[..missing.len().min(5)]
        );
        assert_eq!(got.len(), produced.len(), "no stray outputs");
        // Repeats are allowed (at least once) but the idempotent append drops them here.
        assert_eq!(
            out.len(),
            got.len(),
            "repeated outputs: {}",
            out.len() - got.len()
        );
    });
}
