//! Compacted topics through the API: the newest record per key survives `POST
//! /v1/topics/{t}/compact`, offsets stay, tombstones stay null; policies named by the topic
//! (the built-in `compactor`'s newest-N and FHIR-version policies); a tenant's hostile
//! compactor changes nothing; the CLI; metrics.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Client, Server};

const BINARY_V2: &str = "application/vnd.kafka.binary.v2+json";

async fn compacted_topic(c: &Client, name: &str, config: Value) {
    let mut cfg = json!({"cleanup.policy": "compact"});
    for (k, v) in config.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    let (s, v) = c
        .post(
            "/v1/topics",
            json!({"name": name, "partitions": 1, "replicationFactor": 1, "config": cfg}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

/// Envelopes keyed `k{key}` with `n` in the payload, in one request.
async fn produce(c: &Client, topic: &str, items: &[(u32, u32, Option<&str>)]) {
    let events: Vec<Value> = items
        .iter()
        .map(|(key, n, version)| {
            let mut e =
                json!({"event_type": "kv.set", "key": format!("k{key}"), "payload": {"n": n}});
            if let Some(v) = version {
                e["headers"] = json!({"fhir_version_id": v});
            }
            e
        })
        .collect();
    let (s, v) = c.produce(topic, Value::Array(events)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// `(offset, key, n or null)` of everything readable.
async fn contents(c: &Client, topic: &str) -> Vec<(u64, String, Value)> {
    c.read_all(topic, 0, 0)
        .await
        .iter()
        .map(|e| {
            (
                e["offset"].as_u64().unwrap(),
                e["key"].as_str().unwrap_or("").to_owned(),
                e["event"]["payload"]["n"].clone(),
            )
        })
        .collect()
}

async fn compact(c: &Client, topic: &str) -> Value {
    let (s, v) = c
        .send(Method::POST, &format!("/v1/topics/{topic}/compact"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

#[tokio::test]
async fn the_newest_record_per_key_survives_and_offsets_stay() {
    let s = Server::start().await;
    let c = s.client();
    compacted_topic(&c, "profiles", json!({})).await;
    // Keys 0..4 written five times each, then key 3 deleted by a null value (REST Proxy).
    for round in 0..5 {
        produce(
            &c,
            "profiles",
            &(0..4)
                .map(|k| (k, round * 10 + k, None))
                .collect::<Vec<_>>(),
        )
        .await;
    }
    let (st, v) = crate::groups::rest(
        &c,
        Method::POST,
        "/topics/profiles",
        BINARY_V2,
        Some(json!({"records": [{"key": "azM=", "value": null}]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, topic) = c.get("/v1/topics/profiles").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(topic["compaction"][0]["dirty_ratio"], json!(1.0), "{topic}");

    let done = compact(&c, "profiles").await;
    let report = &done["partitions"][0]["compacted"];
    assert_eq!(
        (report["records_in"].clone(), report["records_out"].clone()),
        (json!(21), json!(4)),
        "{done}"
    );
    // Keys 0-2 at their last offsets, key 3's tombstone (null) at 20; 0..16 are gone.
    let after = contents(&c, "profiles").await;
    let offsets: Vec<u64> = after.iter().map(|(o, _, _)| *o).collect();
    assert_eq!(offsets, [16, 17, 18, 20], "{after:?}");
    assert_eq!(after[0], (16, "k0".into(), json!(40)));
    let events = c.read_all("profiles", 0, 19).await;
    assert_eq!(events[0]["offset"], 20);
    assert_eq!(events[0]["value"], Value::Null, "{events:?}");
    assert!(events[0]["event"].is_null());
    // Reading from inside a compacted gap gives the next survivor; the end did not move.
    let (st, v) = c
        .get("/v1/topics/profiles/partitions/0/events?offset=3&max_events=1")
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["events"][0]["offset"], 16, "{v}");
    assert_eq!(v["next_offset"], 17);
    let (_, topic) = c.get("/v1/topics/profiles").await;
    assert_eq!(topic["partition_offsets"][0]["end_offset"], 21);
    assert_eq!(topic["compaction"][0]["dirty_ratio"], json!(0.0), "{topic}");
    assert_eq!(topic["compaction"][0]["last_run"]["last"]["records_out"], 4);
    // New writes append after the old end and are dirty again.
    produce(&c, "profiles", &[(0, 99, None)]).await;
    let (_, topic) = c.get("/v1/topics/profiles").await;
    assert!(topic["compaction"][0]["dirty_ratio"].as_f64().unwrap() > 0.0);
    let metrics = c.metrics_text().await;
    assert!(
        metrics.contains("sluice_log_compactions_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "sluice_compaction_last_run_timestamp_seconds{topic=\"default/profiles\",partition=\"0\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("sluice_compaction_dirty_ratio{topic=\"default/profiles\",partition=\"0\"}"),
        "{metrics}"
    );
    // A topic that is not compacted is refused.
    c.create_topic("plain", 1).await;
    let (st, v) = c.send(Method::POST, "/v1/topics/plain/compact", None).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // And compacted data survives a restart.
    let data = s.data.clone();
    let dir = s.stop().await;
    let s = Server::start_with(crate::harness::options(&data)).await;
    let c = s.client();
    let offsets: Vec<u64> = contents(&c, "profiles")
        .await
        .iter()
        .map(|(o, _, _)| *o)
        .collect();
    assert_eq!(offsets, [16, 17, 18, 20, 21]);
    drop(dir);
}

#[tokio::test]
async fn a_topic_names_its_policy_component() {
    let s = Server::start().await;
    let c = s.client();
    // Newest two per key.
    compacted_topic(
        &c,
        "history",
        json!({"compaction.policy": "compactor",
               "compaction.policy.config": {"policy": "latest-n", "n": 2}}),
    )
    .await;
    for round in 0..4 {
        produce(&c, "history", &[(0, round, None), (1, 10 + round, None)]).await;
    }
    compact(&c, "history").await;
    let kept: Vec<Value> = contents(&c, "history")
        .await
        .into_iter()
        .map(|(_, _, n)| n)
        .collect();
    assert_eq!(kept, [json!(2), json!(12), json!(3), json!(13)]);

    // FHIR: the highest version per resource, whatever order the versions arrived in.
    compacted_topic(
        &c,
        "fhir",
        json!({"compaction.policy": "compactor",
               "compaction.policy.config": "{\"policy\": \"fhir-latest-version\"}"}),
    )
    .await;
    produce(
        &c,
        "fhir",
        &[
            (7, 1, Some("1")),
            (7, 3, Some("3")),
            (7, 2, Some("2")),
            (8, 1, Some("1")),
        ],
    )
    .await;
    compact(&c, "fhir").await;
    let kept: Vec<(String, Value)> = contents(&c, "fhir")
        .await
        .into_iter()
        .map(|(_, k, n)| (k, n))
        .collect();
    assert_eq!(kept, [("k7".into(), json!(3)), ("k8".into(), json!(1))]);

    // What cannot run is refused when the topic is configured, not later.
    for (config, why) in [
        (
            json!({"compaction.policy": "validate"}),
            "compactor component",
        ),
        (json!({"compaction.policy": "nope"}), "nope"),
        (
            json!({"compaction.policy": "compactor", "compaction.policy.config": {"policy": "newest"}}),
            "unknown policy",
        ),
        (
            json!({"compaction.policy": "compactor",
                   "compaction.policy.config": "x".repeat(20_000)}),
            "longer than",
        ),
    ] {
        let (st, v) = c
            .post(
                "/v1/topics",
                json!({"name": "bad", "partitions": 1, "replicationFactor": 1, "config": config}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{config}: {v}");
        assert!(v["message"].as_str().unwrap().contains(why), "{v}");
    }
    let (st, v) = c
        .send(
            Method::PATCH,
            "/v1/topics/history",
            Some(json!({"config": {"compaction.policy.config": {"policy": "latest-n", "n": 0}}})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}

#[tokio::test]
async fn a_hostile_compactor_changes_nothing() {
    let s = Server::start().await;
    let c = s.client();
    let (st, v) = crate::transforms::upload(
        &c,
        "evil-compactor",
        sluice_builtins::testing::HOSTILE_COMPACTOR,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    for behaviour in ["loop", "trap", "short", "extra-group"] {
        let topic = format!("victim-{behaviour}");
        compacted_topic(
            &c,
            &topic,
            json!({"compaction.policy": "evil-compactor",
                   "compaction.policy.config": {"behaviour": behaviour}}),
        )
        .await;
        produce(&c, &topic, &[(0, 1, None), (0, 2, None), (1, 3, None)]).await;
        let before = contents(&c, &topic).await;
        let done = compact(&c, &topic).await;
        let error = done["partitions"][0]["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{behaviour}: {done}");
        assert_eq!(contents(&c, &topic).await, before, "{behaviour}");
        let (_, t) = c.get(&format!("/v1/topics/{topic}")).await;
        assert!(
            t["compaction"][0]["last_run"]["last_error"].is_string(),
            "{behaviour}: {t}"
        );
    }
    let metrics = c.metrics_text().await;
    assert!(
        metrics.contains("sluice_compaction_failures_total 4"),
        "{metrics}"
    );
    // A compactor that keeps nothing is obeyed: every keyed record goes.
    compacted_topic(
        &c,
        "emptied",
        json!({"compaction.policy": "evil-compactor",
               "compaction.policy.config": {"behaviour": "drop-all"}}),
    )
    .await;
    produce(&c, "emptied", &[(0, 1, None), (1, 2, None)]).await;
    compact(&c, "emptied").await;
    assert!(contents(&c, "emptied").await.is_empty());
    let (st, v) = c
        .get("/v1/topics/emptied/partitions/0/events?offset=0")
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        v["next_offset"], 2,
        "a reader moves past what was compacted away: {v}"
    );
}

#[tokio::test]
async fn the_cli_compacts_with_a_progress_report() {
    let dir = tempfile::tempdir().unwrap();
    let p = crate::harness::Process::start(dir.path(), &[]);
    let c = p.client();
    let (s, v) = c
        .post(
            "/v1/topics",
            json!({"name": "cli-kv", "partitions": 2, "replicationFactor": 1, "config": {"cleanup.policy": "compact"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for round in 0..3 {
        produce(
            &c,
            "cli-kv",
            &(0..6).map(|k| (k, round, None)).collect::<Vec<_>>(),
        )
        .await;
    }
    let out = std::process::Command::new(crate::harness::binary())
        .args([
            "topics", "compact", "cli-kv", "--url", &p.url, "--key", &c.key,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("18 records read, 6 kept"), "{printed}");
    p.kill9();
}

#[tokio::test]
async fn the_builtin_component_and_the_native_policy_agree() {
    use rand::{Rng, SeedableRng};
    let s = Server::start().await;
    let c = s.client();
    compacted_topic(&c, "native", json!({})).await;
    compacted_topic(&c, "wasm", json!({"compaction.policy": "compactor"})).await;
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for _ in 0..6 {
        let batch: Vec<(u32, u32, Option<&str>)> = (0..rng.random_range(1..40))
            .map(|_| (rng.random_range(0..12), rng.random_range(0..1000), None))
            .collect();
        produce(&c, "native", &batch).await;
        produce(&c, "wasm", &batch).await;
        if rng.random_bool(0.5) {
            compact(&c, "native").await;
            compact(&c, "wasm").await;
        }
    }
    compact(&c, "native").await;
    compact(&c, "wasm").await;
    let native = contents(&c, "native").await;
    assert_eq!(contents(&c, "wasm").await, native, "seed {seed}");
    assert!(native.len() <= 12, "seed {seed}: {native:?}");
}
