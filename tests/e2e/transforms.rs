//! Components and per-tenant transforms: upload, deploy, outputs in another topic, redeploy
//! under load, stop/start, hostile guests contained, tenant isolation.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Client, Server};

pub async fn upload(c: &Client, name: &str, wasm: &[u8]) -> (StatusCode, Value) {
    c.raw(
        Method::PUT,
        &format!("/v1/components/{name}"),
        "application/wasm",
        wasm.to_vec(),
    )
    .await
}

/// Every event id in all partitions of a topic.
async fn ids(c: &Client, topic: &str, partitions: u32) -> Vec<String> {
    let mut out = Vec::new();
    for p in 0..partitions {
        for e in c.read_all(topic, p, 0).await {
            out.push(
                e["event"]["event_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    out
}

/// Wait until the transform has no lag (or fail after a generous while).
async fn drained(c: &Client, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, v) = c.get(&format!("/v1/transforms/{name}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        if v["lag"] == 0 {
            return v;
        }
        assert!(Instant::now() < deadline, "transform never caught up: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn patient(i: usize) -> Value {
    json!({"event_id": format!("p-{i}"), "event_type": "patient.admitted",
        "payload": {"patient": {"name": format!("Patient {i}"), "ssn": format!("123-45-{i:04}"), "ward": "B"}}})
}

#[tokio::test]
async fn deploy_a_component_and_see_events_transformed() {
    let s = Server::start().await;
    let c = s.client();
    let (st, v) = upload(&c, "redact", sluice_builtins::REDACT_PHI).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["version"].clone(), v["world"].clone()),
        (json!(1), json!("transformer"))
    );
    let (st, v) = upload(&c, "redact", sluice_builtins::REDACT_PHI).await;
    assert_eq!(
        (st, v["version"].clone()),
        (StatusCode::OK, json!(1)),
        "same bytes, same version"
    );
    let (st, v) = c.get("/v1/components").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["components"][0]["name"], "redact");
    assert!(
        v["builtins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == "bronze-to-silver")
    );

    c.create_topic("phi.raw", 2).await;
    c.create_topic("phi.clean", 2).await;
    let batch: Vec<Value> = (0..40).map(patient).collect();
    let (st, v) = c.produce("phi.raw", json!(batch)).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let (st, v) = c
        .post(
            "/v1/transforms",
            json!({"name": "redact", "component": "redact", "config": {"keys": ["ssn", "name"]},
                   "input": "phi.raw", "output": "phi.clean", "batch_size": 7}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["resolved"], "redact@1");
    let status = drained(&c, "redact").await;
    assert_eq!(status["state"], "running");
    assert_eq!(status["processed"]["events_in"], 40, "{status}");

    let mut clean = Vec::new();
    for p in 0..2 {
        clean.extend(c.read_all("phi.clean", p, 0).await);
    }
    assert_eq!(clean.len(), 40);
    for e in &clean {
        let text = e["event"].to_string();
        assert!(
            !text.contains("123-45-") && !text.contains("Patient "),
            "PHI leaked: {text}"
        );
        assert_eq!(e["event"]["payload"]["patient"]["ward"], "B");
        assert_eq!(e["headers"]["sluice_redacted"], "2");
    }

    // Redeploy (new config) while a producer keeps going: every input has its output once.
    let producer = {
        let c = c.clone();
        tokio::spawn(async move {
            for n in 0..20 {
                let batch: Vec<Value> = (0..10).map(|i| patient(1000 + n * 10 + i)).collect();
                let (st, v) = c.produce("phi.raw", json!(batch)).await;
                assert_eq!(st, StatusCode::OK, "{v}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    let (st, v) = c
        .send(
            Method::PUT,
            "/v1/transforms/redact",
            Some(json!({"component": "redact", "config": {"keys": ["ssn", "name"], "mode": "hash", "salt": "s"},
                        "input": "phi.raw", "outputs": ["phi.clean"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    producer.await.unwrap();
    drained(&c, "redact").await;
    let input: BTreeSet<String> = ids(&c, "phi.raw", 2).await.into_iter().collect();
    let output = ids(&c, "phi.clean", 2).await;
    assert_eq!(input.len(), 240);
    assert_eq!(output.len(), 240, "no loss and no repeat across a redeploy");
    assert_eq!(output.into_iter().collect::<BTreeSet<_>>(), input);

    // Stop: input waits; start: it catches up.
    let (st, v) = c.post("/v1/transforms/redact/stop", json!({})).await;
    assert_eq!(
        (st, v["state"].clone()),
        (StatusCode::OK, json!("stopped")),
        "{v}"
    );
    c.produce("phi.raw", json!(patient(5000))).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, v) = c.get("/v1/transforms/redact").await;
    assert_eq!(v["lag"], 1, "{v}");
    let (st, _) = c.post("/v1/transforms/redact/start", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    drained(&c, "redact").await;

    // The transform resumes after a restart, from its committed offsets.
    let data = s.data.clone();
    let dir = s.stop().await;
    let s = Server::start_with(crate::harness::options(&data)).await;
    let c = s.client();
    c.produce("phi.raw", json!(patient(6000))).await;
    drained(&c, "redact").await;
    assert_eq!(ids(&c, "phi.clean", 2).await.len(), 242);
    let (st, _) = c.send(Method::DELETE, "/v1/transforms/redact", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = c.get("/v1/transforms/redact").await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40404))
    );
    s.stop().await;
    drop(dir);
}

#[tokio::test]
async fn bronze_to_silver_dead_letters_what_it_cannot_clean() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("orders.bronze", 1).await;
    c.create_topic("orders.silver", 1).await;
    let (st, v) = c
        .send(
            Method::PUT,
            "/v1/transforms/clean-orders",
            Some(json!({"component": "bronze-to-silver",
                "config": {"eventType": "silver.orders.cleaned", "rename": {"CustID": "customer_id"},
                           "types": {"amount": "number"}, "required": ["id", "customer_id"], "key": "customer_id"},
                "input": "orders.bronze", "output": "orders.silver"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    c.produce(
        "orders.bronze",
        json!([
            {"event_id": "b1", "event_type": "bronze.orders", "payload": {"op": "c", "after": {"id": 1, "CustID": " c-9 ", "amount": "12.5"}}},
            {"event_id": "b2", "event_type": "bronze.orders", "payload": {"op": "c", "after": {"id": 2, "amount": "lots"}}},
        ]),
    )
    .await;
    drained(&c, "clean-orders").await;
    let silver = c.read_all("orders.silver", 0, 0).await;
    assert_eq!(silver.len(), 1);
    assert_eq!(silver[0]["event"]["event_id"], "b1.silver");
    assert_eq!(
        silver[0]["event"]["payload"],
        json!({"id": 1, "customer_id": "c-9", "amount": 12.5})
    );
    assert_eq!(silver[0]["key"], "c-9");
    assert_eq!(silver[0]["headers"]["ce_type"], "silver.orders.cleaned");
    let dlq = c.read_all("orders.bronze.dlq", 0, 0).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["event"]["event_id"], "b2");
    let reason = dlq[0]["headers"]["sluice_dlq_reason"].as_str().unwrap();
    assert!(
        reason.contains("/amount") && reason.contains("customer_id"),
        "{reason}"
    );
}

#[tokio::test]
async fn hostile_components_are_contained() {
    let s = Server::start().await;
    let c = s.client();
    let (st, v) = upload(&c, "hostile", sluice_builtins::testing::HOSTILE).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    c.create_topic("plain", 1).await;

    // In an ingest pipeline: the batch is refused with the reason, the gateway keeps serving.
    for (behaviour, kind) in [
        ("loop", "timeout"),
        // Asleep in a WASI call: stopped by the same deadline, not after its 60 s.
        ("sleep", "timeout"),
        ("alloc", "out-of-memory"),
        ("trap", "trap"),
        ("wrong-count", "bad-output"),
        ("huge-output", "out-of-memory"),
    ] {
        let topic = format!("ingest.{behaviour}");
        let (st, v) = c
            .post(
                "/v1/topics",
                json!({"name": topic, "partitions": 1, "replicationFactor": 1, "config": {},
                       "pipeline": [{"component": "hostile", "config": {"behaviour": behaviour}}]}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        assert_eq!(
            v["pipeline"][0]["component"], "hostile@1",
            "pinned to the version built"
        );
        let slow = {
            let c = c.clone();
            let topic = topic.clone();
            tokio::spawn(async move {
                c.produce(&topic, json!([{"event_type": "x"}, {"event_type": "y"}]))
                    .await
            })
        };
        // Another topic is served while the guest misbehaves.
        let (st, v) = c.produce("plain", json!({"event_type": "fine"})).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let (st, v) = tokio::time::timeout(std::time::Duration::from_secs(20), slow)
            .await
            .unwrap_or_else(|_| panic!("{behaviour}: the guest was not stopped"))
            .unwrap();
        assert_eq!(st, StatusCode::BAD_GATEWAY, "{behaviour}: {v}");
        assert_eq!(v["error_code"], 50201);
        assert!(
            v["message"].as_str().unwrap().contains(kind),
            "{behaviour}: {v}"
        );
        assert_eq!(v["results"].as_array().unwrap().len(), 2);
        let (_, t) = c.get(&format!("/v1/topics/{topic}")).await;
        assert_eq!(
            t["partition_offsets"][0]["end_offset"], 0,
            "nothing appended"
        );
    }

    let (_, m) = c.get("/metrics").await;
    let m = m.as_str().unwrap();
    assert!(
        m.contains(r#"sluice_component_errors_total{tenant="default",component="hostile@1",kind="timeout"} 2"#),
        "{m}"
    );

    // In a transform: the batch goes to the dead-letter topic with the reason.
    c.create_topic("h.in", 1).await;
    c.create_topic("h.out", 1).await;
    let (st, v) = c
        .post(
            "/v1/transforms",
            json!({"name": "oom", "component": "hostile", "config": {"behaviour": "alloc"},
                   "input": "h.in", "output": "h.out", "dlq": "h.dead"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    c.produce("h.in", json!([{"event_id": "a"}, {"event_id": "b"}]))
        .await;
    drained(&c, "oom").await;
    assert!(c.read_all("h.out", 0, 0).await.is_empty());
    let dead = c.read_all("h.dead", 0, 0).await;
    assert_eq!(dead.len(), 2);
    assert!(
        dead[0]["headers"]["sluice_dlq_reason"]
            .as_str()
            .unwrap()
            .contains("memory limit"),
        "{}",
        dead[0]
    );

    // Wrong world and garbage are refused at upload or deploy.
    let (st, v) = upload(&c, "not-wasm", b"\0asm\x0d\0\x01\0garbage").await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42211)),
        "{v}"
    );
    let (st, v) = c
        .raw(
            Method::PUT,
            "/v1/components/checker?world=transformer",
            "application/wasm",
            sluice_builtins::VALIDATE.to_vec(),
        )
        .await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42211)),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("transformer"),
        "{v}"
    );
    let (st, v) = upload(&c, "checker", sluice_builtins::VALIDATE).await;
    assert_eq!(
        (st, v["world"].clone()),
        (StatusCode::CREATED, json!("validator")),
        "{v}"
    );
    let (st, v) = c
        .post(
            "/v1/transforms",
            json!({"name": "t", "component": "checker", "input": "h.in", "output": "h.out"}),
        )
        .await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42211)),
        "{v}"
    );

    // Another tenant sees none of it.
    let (_, v) = c.post("/v1/tenants", json!({"name": "globex"})).await;
    let globex = c.with_key(v["admin_key"]["key"].as_str().unwrap());
    let (st, _) = globex.get("/v1/components/hostile").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v) = globex.get("/v1/components").await;
    assert_eq!(v["components"], json!([]));
    let (_, v) = globex.get("/v1/transforms").await;
    assert_eq!(v["transforms"], json!([]));
    let (st, v) = globex
        .post(
            "/v1/topics",
            json!({"name": "x", "partitions": 1, "replicationFactor": 1, "config": {},
                                   "pipeline": [{"component": "hostile"}]}),
        )
        .await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40403)),
        "{v}"
    );
}

#[tokio::test]
async fn a_suspended_component_holds_events_instead_of_dead_lettering_them() {
    let s = Server::start().await;
    let c = s.client();
    upload(&c, "hostile", sluice_builtins::testing::HOSTILE).await;
    c.create_topic("t.in", 1).await;
    c.create_topic("t.out", 1).await;
    let (st, v) = c
        .post(
            "/v1/transforms",
            json!({"name": "trapper", "component": "hostile", "config": {"behaviour": "trap"},
                   "input": "t.in", "output": "t.out", "batch_size": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"event_id": format!("e{i}")}))
        .collect();
    c.produce("t.in", json!(events)).await;
    // Three traps in a row suspend the component; while suspended, the transform waits.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut saw_suspension = false;
    loop {
        let (_, v) = c.get("/v1/transforms/trapper").await;
        saw_suspension |= v["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("suspended"));
        if v["lag"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never drained: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_suspension, "the component was never suspended");
    let dead = c.read_all("t.in.dlq", 0, 0).await;
    assert_eq!(dead.len(), 5, "each event dead-lettered once");
    for d in &dead {
        let reason = d["headers"]["sluice_dlq_reason"].as_str().unwrap();
        assert!(
            reason.contains("trapped"),
            "only the guest's own failures dead-letter: {reason}"
        );
    }
}
