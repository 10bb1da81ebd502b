//! Consumer groups over Confluent's REST Proxy v2 API, and `/v1/groups`: produce in each
//! embedded format, consumer instances, several members sharing a topic through rebalances,
//! session timeouts, committed offsets across a restart, resets, lag and its alerts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Client, Server, options};

const V2: &str = "application/vnd.kafka.v2+json";
const JSON_V2: &str = "application/vnd.kafka.json.v2+json";
const BINARY_V2: &str = "application/vnd.kafka.binary.v2+json";

pub(crate) async fn rest(
    c: &Client,
    method: Method,
    path: &str,
    content_type: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = c
        .http
        .request(method, format!("{}{path}", c.url))
        .bearer_auth(&c.key)
        .header("accept", content_type);
    if let Some(b) = body {
        req = req.header("content-type", content_type).body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub(crate) async fn new_consumer(c: &Client, group: &str, body: Value) -> String {
    let (s, v) = rest(
        c,
        Method::POST,
        &format!("/consumers/{group}"),
        V2,
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["base_uri"].as_str().unwrap().ends_with(&format!(
        "/consumers/{group}/instances/{}",
        v["instance_id"].as_str().unwrap()
    )));
    format!(
        "/consumers/{group}/instances/{}",
        v["instance_id"].as_str().unwrap()
    )
}

pub(crate) async fn subscribe(c: &Client, instance: &str, topics: &[&str]) {
    let (s, v) = rest(
        c,
        Method::POST,
        &format!("{instance}/subscription"),
        V2,
        Some(json!({ "topics": topics })),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
}

async fn poll(c: &Client, instance: &str, accept: &str) -> Vec<Value> {
    let (s, v) = rest(
        c,
        Method::GET,
        &format!("{instance}/records?timeout=200"),
        accept,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

#[tokio::test]
async fn rest_proxy_produces_and_consumes_with_confluents_shapes_and_errors() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("orders", 3).await;

    // Produce: JSON values with keys (same key, same partition), then binary.
    let records: Vec<Value> = (0..30)
        .map(|i| json!({"key": format!("k{}", i % 5), "value": {"n": i}}))
        .collect();
    let (st, v) = rest(
        &c,
        Method::POST,
        "/topics/orders",
        JSON_V2,
        Some(json!({ "records": records })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let offsets = v["offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 30);
    assert!(offsets.iter().all(|o| o["error_code"].is_null()));
    assert_eq!(offsets[0]["partition"], offsets[5]["partition"]);
    let (st, v) = rest(
        &c,
        Method::POST,
        "/topics/orders/partitions/2",
        BINARY_V2,
        Some(json!({"records": [{"value": "aGVsbG8="}]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["offsets"][0]["partition"], 2);

    // Metadata.
    let (_, topics) = rest(&c, Method::GET, "/topics", V2, None).await;
    assert!(topics.as_array().unwrap().contains(&json!("orders")));
    let (_, t) = rest(&c, Method::GET, "/topics/orders", V2, None).await;
    assert_eq!(t["partitions"].as_array().unwrap().len(), 3);
    let (_, o) = rest(
        &c,
        Method::GET,
        "/topics/orders/partitions/2/offsets",
        V2,
        None,
    )
    .await;
    assert_eq!(o["beginning_offset"], 0);
    assert!(o["end_offset"].as_u64().unwrap() >= 1);
    let (st, e) = rest(&c, Method::GET, "/topics/nope", V2, None).await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40401))
    );
    let (st, e) = rest(
        &c,
        Method::GET,
        "/topics/orders/partitions/9/offsets",
        V2,
        None,
    )
    .await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40402))
    );

    // A binary consumer reads everything from the beginning.
    let inst = new_consumer(
        &c,
        "readers",
        json!({"name": "one", "format": "binary", "auto.offset.reset": "earliest",
               "auto.commit.enable": "false"}),
    )
    .await;
    // Reading before subscribing is an illegal state.
    let (st, e) = rest(&c, Method::GET, &format!("{inst}/records"), BINARY_V2, None).await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::CONFLICT, json!(40903)),
        "{e}"
    );
    subscribe(&c, &inst, &["orders"]).await;
    let (_, sub) = rest(&c, Method::GET, &format!("{inst}/subscription"), V2, None).await;
    assert_eq!(sub["topics"], json!(["orders"]));
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        for r in poll(&c, &inst, BINARY_V2).await {
            assert_eq!(r["topic"], "orders");
            seen.insert((
                r["partition"].as_u64().unwrap(),
                r["offset"].as_u64().unwrap(),
            ));
            if r["partition"] == 2 && r["key"].is_null() {
                assert_eq!(r["value"], "aGVsbG8=");
            }
        }
        if seen.len() == 31 {
            break;
        }
    }
    assert_eq!(seen.len(), 31);
    // The wrong Accept for this instance's format.
    let (st, e) = rest(&c, Method::GET, &format!("{inst}/records"), JSON_V2, None).await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::NOT_ACCEPTABLE, json!(40601))
    );
    // Commit partition 0 by hand, read it back; nothing committed for 1 yet (-1).
    let (st, v) = rest(
        &c,
        Method::POST,
        &format!("{inst}/offsets"),
        V2,
        Some(json!({"offsets": [{"topic": "orders", "partition": 0, "offset": 3}]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = rest(
        &c,
        Method::GET,
        &format!("{inst}/offsets"),
        V2,
        Some(json!({"partitions": [{"topic": "orders", "partition": 0},
                                   {"topic": "orders", "partition": 1}]})),
    )
    .await;
    assert_eq!(v["offsets"][0]["offset"], 3);
    assert_eq!(v["offsets"][1]["offset"], -1);
    // Seek back to the beginning of partition 2 and read it again.
    let (st, _) = rest(
        &c,
        Method::POST,
        &format!("{inst}/positions/beginning"),
        V2,
        Some(json!({"partitions": [{"topic": "orders", "partition": 2}]})),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let again = poll(&c, &inst, BINARY_V2).await;
    assert!(
        again
            .iter()
            .any(|r| r["partition"] == 2 && r["offset"] == 0),
        "{again:?}"
    );

    // Duplicate instance, unknown instance, bad settings.
    let (st, e) = rest(
        &c,
        Method::POST,
        "/consumers/readers",
        V2,
        Some(json!({"name": "one"})),
    )
    .await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::CONFLICT, json!(40902))
    );
    let (st, e) = rest(
        &c,
        Method::GET,
        "/consumers/readers/instances/ghost/records",
        BINARY_V2,
        None,
    )
    .await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40403))
    );
    let (st, e) = rest(
        &c,
        Method::POST,
        "/consumers/readers",
        V2,
        Some(json!({"format": "xml"})),
    )
    .await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42204))
    );
    let (st, e) = rest(
        &c,
        Method::POST,
        "/consumers/readers",
        V2,
        Some(json!({"auto.offset.reset": "middle"})),
    )
    .await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42204))
    );
    let (st, _) = rest(&c, Method::DELETE, &inst, V2, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = rest(&c, Method::GET, &format!("{inst}/subscription"), V2, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A JSON consumer sees the values as JSON, keys as they were sent.
    let json_inst = new_consumer(
        &c,
        "json-readers",
        json!({"format": "json", "auto.offset.reset": "earliest"}),
    )
    .await;
    let (st, _) = rest(
        &c,
        Method::POST,
        &format!("{json_inst}/assignments"),
        V2,
        Some(json!({"partitions": [{"topic": "orders", "partition": 0},
                                   {"topic": "orders", "partition": 1}]})),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let got = poll(&c, &json_inst, JSON_V2).await;
    assert!(!got.is_empty());
    assert!(
        got.iter()
            .all(|r| r["value"]["n"].is_u64() && r["key"].is_string())
    );
    // Subscribing an instance that assigned partitions by hand is refused.
    let (st, e) = rest(
        &c,
        Method::POST,
        &format!("{json_inst}/subscription"),
        V2,
        Some(json!({"topics": ["orders"]})),
    )
    .await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::CONFLICT, json!(40903))
    );
    s.stop().await;
}

/// Poll as `instance` until the group is settled; return what it owns.
async fn owned(c: &Client, group: &str) -> BTreeMap<String, BTreeSet<(String, u64)>> {
    let (_, d) = c.get(&format!("/v1/groups/{group}")).await;
    d["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let set = m["owned"]
                .as_array()
                .unwrap()
                .iter()
                .map(|tp| {
                    (
                        tp["topic"].as_str().unwrap().to_owned(),
                        tp["partition"].as_u64().unwrap(),
                    )
                })
                .collect();
            (m["instance_id"].as_str().unwrap().to_owned(), set)
        })
        .collect()
}

fn assert_disjoint(owners: &BTreeMap<String, BTreeSet<(String, u64)>>) {
    let mut seen = BTreeSet::new();
    for set in owners.values() {
        for tp in set {
            assert!(seen.insert(tp.clone()), "{tp:?} owned twice: {owners:?}");
        }
    }
}

#[tokio::test]
async fn members_share_a_topic_through_joins_leaves_and_timeouts() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("events", 6).await;
    let (st, v) = c
        .send(
            Method::PUT,
            "/v1/groups/workers",
            Some(json!({"topics": ["events"],
                        "config": {"sessionTimeout": 1000, "heartbeatInterval": 200,
                                   "autoOffsetReset": "earliest", "maxBytes": 1048576,
                                   "maxWaitTimeInMs": 200, "allowAutoTopicCreation": false,
                                   "autoCommitInterval": 100},
                        "owner": "team-a", "description": "shares events"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let records: Vec<Value> = (0..600)
        .map(|i| json!({"key": format!("key-{i}"), "value": {"i": i}}))
        .collect();
    let (st, _) = rest(
        &c,
        Method::POST,
        "/topics/events",
        JSON_V2,
        Some(json!({ "records": records })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);

    // Three members poll concurrently until all 600 events were read between them.
    let mut instances = Vec::new();
    for i in 0..3 {
        let inst = new_consumer(
            &c,
            "workers",
            json!({"name": format!("w{i}"), "format": "json"}),
        )
        .await;
        subscribe(&c, &inst, &["events"]).await;
        instances.push(inst);
    }
    let mut tasks = Vec::new();
    for inst in instances.clone() {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut idle = 0;
            while idle < 8 {
                let batch = poll(&c, &inst, JSON_V2).await;
                if batch.is_empty() {
                    idle += 1;
                } else {
                    idle = 0;
                }
                got.extend(batch.into_iter().map(|r| {
                    (
                        r["partition"].as_u64().unwrap(),
                        r["offset"].as_u64().unwrap(),
                    )
                }));
            }
            got
        }));
    }
    let mut all = Vec::new();
    let mut readers_per_partition: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    for (i, t) in tasks.into_iter().enumerate() {
        for (p, o) in t.await.unwrap() {
            readers_per_partition.entry(p).or_default().insert(i);
            all.push((p, o));
        }
    }
    let distinct: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(distinct.len(), 600, "every event read");
    assert_eq!(all.len(), 600, "and none twice");
    let owners = owned(&c, "workers").await;
    assert_eq!(owners.len(), 3);
    assert_disjoint(&owners);
    assert!(owners.values().all(|s| s.len() == 2), "{owners:?}");
    let (_, d) = c.get("/v1/groups/workers").await;
    assert_eq!(d["state"], "Stable", "{d}");
    assert_eq!(d["total_lag"], 0, "auto-commit committed everything: {d}");

    // One member leaves: its partitions go to the others once they poll.
    let (st, _) = rest(&c, Method::DELETE, &instances[0], V2, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    for _ in 0..3 {
        for inst in &instances[1..] {
            poll(&c, inst, JSON_V2).await;
        }
    }
    let owners = owned(&c, "workers").await;
    assert_disjoint(&owners);
    assert_eq!(
        owners.values().map(BTreeSet::len).collect::<Vec<_>>(),
        vec![3, 3]
    );

    // Another stops calling: after its session timeout it is out, and its calls fail.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        poll(&c, &instances[1], JSON_V2).await;
        let owners = owned(&c, "workers").await;
        assert_disjoint(&owners);
        if owners.len() == 1 && owners.values().next().unwrap().len() == 6 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{owners:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, e) = rest(
        &c,
        Method::GET,
        &format!("{}/records", instances[2]),
        JSON_V2,
        None,
    )
    .await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40403))
    );
    s.stop().await;
}

#[tokio::test]
async fn the_range_strategy_gives_contiguous_ranges() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("ranged", 5).await;
    let (st, v) = c
        .send(
            Method::PUT,
            "/v1/groups/ranged",
            Some(json!({"assignmentStrategy": "range", "config": {"autoOffsetReset": "earliest"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let a = new_consumer(&c, "ranged", json!({"name": "a"})).await;
    let b = new_consumer(&c, "ranged", json!({"name": "b"})).await;
    subscribe(&c, &a, &["ranged"]).await;
    subscribe(&c, &b, &["ranged"]).await;
    for _ in 0..3 {
        poll(&c, &a, BINARY_V2).await;
        poll(&c, &b, BINARY_V2).await;
    }
    let owners = owned(&c, "ranged").await;
    let parts = |m: &str| owners[m].iter().map(|(_, p)| *p).collect::<Vec<_>>();
    assert_eq!(parts("a"), vec![0, 1, 2]);
    assert_eq!(parts("b"), vec![3, 4]);
    let (_, d) = c.get("/v1/groups/ranged").await;
    assert_eq!(d["assignment_strategy"], "range");
    s.stop().await;
}

#[tokio::test]
async fn committed_offsets_survive_a_restart_and_resets_move_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(options(dir.path())).await;
    let c = s.client();
    c.create_topic("ledger", 2).await;
    let records: Vec<Value> = (0..40)
        .map(|i| json!({"key": format!("{i}"), "value": i}))
        .collect();
    rest(
        &c,
        Method::POST,
        "/topics/ledger",
        JSON_V2,
        Some(json!({ "records": records })),
    )
    .await;
    let inst = new_consumer(
        &c,
        "books",
        json!({"name": "a", "format": "json", "auto.offset.reset": "earliest",
               "auto.commit.enable": false}),
    )
    .await;
    subscribe(&c, &inst, &["ledger"]).await;
    let mut n = 0;
    while n < 40 {
        n += poll(&c, &inst, JSON_V2).await.len();
    }
    // Commit every position (an empty body), then leave.
    let (st, _) = rest(&c, Method::POST, &format!("{inst}/offsets"), V2, None).await;
    assert_eq!(st, StatusCode::OK);
    // Resetting needs the group stopped.
    let (st, e) = c
        .post("/v1/groups/books/offsets/reset", json!({"to": "earliest"}))
        .await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::CONFLICT, json!(40906)),
        "{e}"
    );
    rest(&c, Method::DELETE, &inst, V2, None).await;
    let (_, d) = c.get("/v1/groups/books").await;
    assert_eq!(d["state"], "Empty");
    assert_eq!(d["total_lag"], 0);
    s.stop().await;

    let s = Server::start_with(options(dir.path())).await;
    let c = s.client();
    let (_, d) = c.get("/v1/groups/books").await;
    let committed: u64 = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["committed"].as_u64().unwrap())
        .sum();
    assert_eq!(committed, 40, "{d}");
    // A new member continues after the committed offsets: nothing to read.
    let inst = new_consumer(&c, "books", json!({"name": "b", "format": "json"})).await;
    subscribe(&c, &inst, &["ledger"]).await;
    assert!(poll(&c, &inst, JSON_V2).await.is_empty());
    rest(&c, Method::DELETE, &inst, V2, None).await;
    // Reset to the beginning: lag is everything again, and /metrics shows it.
    let (st, v) = c
        .post("/v1/groups/books/offsets/reset", json!({"to": "earliest"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        v["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["offset"] == 0)
    );
    let (_, d) = c.get("/v1/groups/books").await;
    assert_eq!(d["total_lag"], 40);
    let metrics = c.metrics_text().await;
    assert!(
        metrics.contains("sluice_group_lag{tenant=\"default\",group=\"books\",topic=\"ledger\""),
        "{metrics}"
    );
    let (st, e) = c
        .post("/v1/groups/books/offsets/reset", json!({"to": "sideways"}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (st, _) = c.send(Method::DELETE, "/v1/groups/books", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, e) = c.get("/v1/groups/books").await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40407))
    );
    s.stop().await;
}

#[tokio::test]
async fn group_configs_are_checked_and_lag_raises_alerts() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("slow", 1).await;
    let (st, e) = c
        .post(
            "/v1/groups",
            json!({"groupId": "bad", "config": {"sessionTimeout": 5, "heartbeatInterval": 10}}),
        )
        .await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42204)),
        "{e}"
    );
    let (st, e) = c
        .post("/v1/groups", json!({"groupId": "bad", "surprise": 1}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (st, v) = c
        .post(
            "/v1/groups",
            json!({"groupId": "watched", "topics": ["slow"],
                   "config": {"autoOffsetReset": "earliest"},
                   "monitoring": {"lagThreshold": 5, "lagCheckInterval": 1000}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _) = c.post("/v1/groups", json!({"groupId": "watched"})).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let events: Vec<Value> = (0..10)
        .map(|i| json!({"type": "t", "payload": i}))
        .collect();
    c.produce("slow", json!(events)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (st, v) = c.get("/v1/alerts").await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let alerts = v["alerts"].as_array().unwrap();
        if let Some(a) = alerts.iter().find(|a| a["group"] == "watched") {
            assert_eq!(a["type"], "sluice.group.lag.exceeded");
            assert_eq!(a["lag"], 10);
            assert_eq!(a["threshold"], 5);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no alert: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, list) = c.get("/v1/groups").await;
    let g = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group_id"] == "watched")
        .unwrap()
        .clone();
    assert_eq!(g["total_lag"], 10);
    assert_eq!(g["state"], "Empty");
    s.stop().await;
}

#[tokio::test]
async fn avro_and_json_schema_embedded_formats_round_trip() {
    const AVRO_V2: &str = "application/vnd.kafka.avro.v2+json";
    const JSONSCHEMA_V2: &str = "application/vnd.kafka.jsonschema.v2+json";
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("avro-orders", 1).await;
    let schema = json!({"type": "record", "name": "Order", "namespace": "acme", "fields": [
        {"name": "id", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "note", "type": ["null", "string"], "default": null}]})
    .to_string();
    let (st, v) = rest(
        &c,
        Method::POST,
        "/topics/avro-orders",
        AVRO_V2,
        Some(json!({"value_schema": schema, "records": [
            {"value": {"id": "o1", "qty": 2, "note": {"string": "gift"}}},
            {"value": {"id": "o2", "qty": 1, "note": null}},
            {"value": {"id": "o3", "qty": "many"}}]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["value_schema_id"].as_u64().unwrap();
    assert!(v["offsets"][0]["error_code"].is_null() && v["offsets"][1]["error_code"].is_null());
    assert_eq!(v["offsets"][2]["error_code"], 1, "{v}");
    assert!(
        v["offsets"][2]["error"].as_str().unwrap().contains("Avro"),
        "{v}"
    );
    // The schema is the subject's: a second request can name it by id.
    let (st, v) = rest(
        &c,
        Method::POST,
        "/topics/avro-orders",
        AVRO_V2,
        Some(json!({"value_schema_id": id, "records": [{"value": {"id": "o4", "qty": 7}}]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, e) = rest(
        &c,
        Method::POST,
        "/topics/avro-orders",
        AVRO_V2,
        Some(json!({"records": [{"value": {"id": "o5", "qty": 1}}]})),
    )
    .await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42202))
    );

    let inst = new_consumer(
        &c,
        "avro-readers",
        json!({"format": "avro", "auto.offset.reset": "earliest"}),
    )
    .await;
    subscribe(&c, &inst, &["avro-orders"]).await;
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(poll(&c, &inst, AVRO_V2).await);
        if got.len() >= 3 {
            break;
        }
    }
    let values: Vec<Value> = got.iter().map(|r| r["value"].clone()).collect();
    assert_eq!(
        values,
        vec![
            json!({"id": "o1", "qty": 2, "note": {"string": "gift"}}),
            json!({"id": "o2", "qty": 1, "note": null}),
            json!({"id": "o4", "qty": 7, "note": null}),
        ]
    );

    // JSON Schema: registered, validated by the topic's pipeline, read back as JSON.
    c.create_topic("js-orders", 1).await;
    let js = json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
        .to_string();
    let (st, v) = rest(
        &c,
        Method::POST,
        "/topics/js-orders",
        JSONSCHEMA_V2,
        Some(json!({"value_schema": js, "records": [{"value": {"n": 1}}, {"value": {"n": "x"}}]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["offsets"][0]["error_code"].is_null());
    assert_eq!(
        v["offsets"][1]["error_code"], 1,
        "the topic's schema refuses it: {v}"
    );
    let inst = new_consumer(
        &c,
        "js-readers",
        json!({"format": "jsonschema", "auto.offset.reset": "earliest"}),
    )
    .await;
    subscribe(&c, &inst, &["js-orders"]).await;
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(poll(&c, &inst, JSONSCHEMA_V2).await);
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got[0]["value"], json!({"n": 1}));
    s.stop().await;
}

#[tokio::test]
async fn null_and_empty_values_stay_apart_in_every_api() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("kv", 1).await;
    // Binary: "" is an empty value, null (or no value) a null one (a tombstone).
    let (st, v) = rest(
        &c,
        Method::POST,
        "/topics/kv",
        BINARY_V2,
        Some(json!({"records": [
            {"key": "YQ==", "value": ""},
            {"key": "Yg==", "value": null},
            {"key": "Yw=="},
            {"key": "ZA==", "value": "aGk="},
        ]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The REST Proxy reads them back as written.
    let inst = new_consumer(
        &c,
        "nulls",
        json!({"format": "binary", "auto.offset.reset": "earliest"}),
    )
    .await;
    subscribe(&c, &inst, &["kv"]).await;
    let mut got = Vec::new();
    for _ in 0..20 {
        got.extend(poll(&c, &inst, BINARY_V2).await);
        if got.len() >= 4 {
            break;
        }
    }
    let values: Vec<&Value> = got.iter().map(|r| &r["value"]).collect();
    assert_eq!(
        values,
        [&json!(""), &Value::Null, &Value::Null, &json!("aGk=")],
        "{got:?}"
    );
    // The JSON fetch renders a null value as null, and an empty one as "" (base64 of nothing).
    let events = c.read_all("kv", 0, 0).await;
    let fetched: Vec<&Value> = events.iter().map(|e| &e["value"]).collect();
    assert_eq!(
        fetched,
        [&json!(""), &Value::Null, &Value::Null, &json!("aGk=")],
        "{events:?}"
    );
    assert!(
        events[1].get("value").is_some(),
        "null is shown, not left out"
    );
}

#[tokio::test]
async fn commits_that_change_nothing_are_not_appended() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("quiet", 1).await;
    let inst = new_consumer(&c, "idle", json!({"format": "binary"})).await;
    subscribe(&c, &inst, &["quiet"]).await;
    // A poll joins the group and takes the partition.
    poll(&c, &inst, BINARY_V2).await;
    let commit = |offset: u64| {
        let (c, inst) = (c.clone(), inst.clone());
        async move {
            let (st, v) = rest(
                &c,
                Method::POST,
                &format!("{inst}/offsets"),
                V2,
                Some(json!({"offsets": [{"topic": "quiet", "partition": 0, "offset": offset}]})),
            )
            .await;
            assert_eq!(st, StatusCode::OK, "{v}");
        }
    };
    let end = || s.app.log.offsets("_offsets", 0).unwrap().1;
    commit(5).await;
    let after_first = end();
    for _ in 0..10 {
        commit(5).await;
    }
    assert_eq!(end(), after_first, "the same offset again appends nothing");
    commit(6).await;
    assert_eq!(end(), after_first + 1, "a moved offset is appended");
}
