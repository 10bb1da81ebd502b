use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_log::partitioner::partition_for_key;

use crate::harness::{Server, options};

#[tokio::test]
async fn produce_every_framing_and_read_back() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("orders", 1).await;

    let (st, v) = c
        .produce(
            "orders",
            json!({"event_id": "e-1", "event_type": "order.created", "payload": {"n": 1}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["results"][0],
        json!({"event_id": "e-1", "partition": 0, "offset": 0})
    );

    let (st, v) = c
        .produce(
            "orders",
            json!([{"event_type": "a", "payload": 2}, {"event_type": "b", "payload": 3}]),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["results"][1]["offset"], 2);
    let generated = v["results"][0]["event_id"].as_str().unwrap().to_owned();
    assert_eq!(
        uuid::Uuid::parse_str(&generated).unwrap().get_version_num(),
        7
    );

    let ndjson = "{\"event_type\":\"c\",\"payload\":4}\n{\"event_type\":\"d\",\"payload\":5}\n";
    let (st, v) = c
        .raw(
            reqwest::Method::POST,
            "/v1/topics/orders/events",
            "application/x-ndjson",
            ndjson.into(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["results"][1]["offset"], 4);

    let events = c.read_all("orders", 0, 0).await;
    let offsets: Vec<u64> = events
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
    assert_eq!(events[0]["event"]["payload"], json!({"n": 1}));
    assert_eq!(events[1]["event"]["event_id"], generated.as_str());
    assert_eq!(events[4]["event"]["event_type"], "d");
    assert_eq!(events[0]["headers"]["ce_type"], "order.created");
    assert_eq!(events[0]["headers"]["ce_id"], "e-1");

    // Paging and limits.
    let (_, v) = c
        .get("/v1/topics/orders/partitions/0/events?offset=1&max_events=2")
        .await;
    assert_eq!(v["events"].as_array().unwrap().len(), 2);
    assert_eq!(v["next_offset"], 3);
    assert_eq!(v["high_watermark"], 5);
    let (st, v) = c
        .get("/v1/topics/orders/partitions/0/events?offset=99")
        .await;
    assert_eq!(st, StatusCode::RANGE_NOT_SATISFIABLE, "{v}");
    let (st, _) = c.get("/v1/topics/orders/partitions/7/events").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn keys_choose_partitions_like_kafka() {
    let s = Server::start().await;
    let c = s.client();
    let (st, v) = c
        .post(
            "/v1/topics",
            json!({"name": "connector.data.raw", "partitions": 12, "replicationFactor": 1, "config": {}, "keyField": "org_id"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (_, v) = c
        .produce(
            "connector.data.raw",
            json!([
                {"org_id": 456, "payload": {}},
                {"key": "customer-9", "org_id": 456, "payload": {}},
                {"partition": 11, "payload": {}},
                {"partition": 12, "payload": {}},
            ]),
        )
        .await;
    assert_eq!(v["results"][0]["partition"], partition_for_key(b"456", 12));
    assert_eq!(
        v["results"][1]["partition"],
        partition_for_key(b"customer-9", 12)
    );
    assert_eq!(v["results"][2]["partition"], 11);
    assert_eq!(v["results"][3]["error_code"], 40402);
    let p = v["results"][0]["partition"].as_u64().unwrap() as u32;
    let events = c.read_all("connector.data.raw", p, 0).await;
    assert_eq!(events[0]["key"], "456");
    assert!(
        events[0]["event"].get("partition").is_none(),
        "directives are not stored"
    );
    s.stop().await;
}

#[tokio::test]
async fn idempotent_produce_by_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(options(dir.path())).await;
    let c = s.client();
    c.create_topic("payments", 4).await;
    let (_, first) = c
        .produce(
            "payments",
            json!({"event_id": "pay-1", "key": "a", "payload": 1}),
        )
        .await;
    let (_, again) = c
        .produce(
            "payments",
            json!({"event_id": "pay-1", "key": "b", "payload": 1}),
        )
        .await;
    assert_eq!(again["results"][0]["duplicate"], true);
    assert_eq!(
        again["results"][0]["partition"],
        first["results"][0]["partition"]
    );
    assert_eq!(again["results"][0]["offset"], first["results"][0]["offset"]);
    // A producer retrying across a server restart is still recognized.
    s.stop().await;
    let s = Server::start_with(options(dir.path())).await;
    let c = s.client();
    let (_, after) = c
        .produce(
            "payments",
            json!({"event_id": "pay-1", "key": "c", "payload": 1}),
        )
        .await;
    assert_eq!(after["results"][0]["duplicate"], true, "{after}");
    assert_eq!(after["results"][0]["offset"], first["results"][0]["offset"]);
    let mut total = 0;
    for p in 0..4 {
        total += c.read_all("payments", p, 0).await.len();
    }
    assert_eq!(total, 1, "the retries were not appended again");
    s.stop().await;
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_an_event_lands() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("tail", 1).await;
    let reader = {
        let c = c.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let (_, v) = c
                .get("/v1/topics/tail/partitions/0/events?offset=0&wait_ms=20000")
                .await;
            (v, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.produce("tail", json!({"payload": "now"})).await;
    let (v, took) = reader.await.unwrap();
    assert_eq!(v["events"][0]["event"]["payload"], "now");
    assert!(
        took < Duration::from_secs(15),
        "the long poll waited for its timeout"
    );
    s.stop().await;
}

#[tokio::test]
async fn offsets_by_time_and_ends() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("timed", 1).await;
    let base = 1_800_000_000_000i64;
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"timestamp": base + i * 1000, "payload": i}))
        .collect();
    c.produce("timed", Value::Array(events)).await;
    let (_, v) = c
        .get(&format!(
            "/v1/topics/timed/offsets?timestamp={}",
            base + 2500
        ))
        .await;
    assert_eq!(v["offsets"][0]["offset"], 3);
    // base is 2027-01-15T08:00:00Z
    let (_, v) = c
        .get("/v1/topics/timed/offsets?timestamp=2027-01-15T08:00:02Z")
        .await;
    assert_eq!(v["offsets"][0]["offset"], 2);
    let (_, v) = c.get("/v1/topics/timed/offsets?timestamp=latest").await;
    assert_eq!(v["offsets"][0]["offset"], 5);
    let (_, v) = c.get("/v1/topics/timed/offsets?earliest").await;
    assert_eq!(v["offsets"][0]["offset"], 0);
    let (_, v) = c
        .get(&format!(
            "/v1/topics/timed/offsets?timestamp={}",
            base + 60_000
        ))
        .await;
    assert_eq!(v["offsets"][0]["offset"], 5);
    let (_, v) = c.get("/v1/topics/timed/partitions/0/events?offset=0").await;
    assert_eq!(v["events"][4]["timestamp"], base + 4000);
    s.stop().await;
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(options(dir.path())).await;
    let c = s.client();
    c.create_topic("durable", 3).await;
    for i in 0..30 {
        c.produce("durable", json!({"key": format!("k{i}"), "payload": i}))
            .await;
    }
    let key = s.admin_key.clone();
    s.stop().await;

    let s = Server::start_with(options(dir.path())).await;
    assert_eq!(s.admin_key, key);
    let c = s.client();
    let mut seen = Vec::new();
    for p in 0..3 {
        let events = c.read_all("durable", p, 0).await;
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["offset"], i as u64, "offsets are dense");
            seen.push(e["event"]["payload"].as_u64().unwrap());
        }
    }
    seen.sort();
    assert_eq!(seen, (0..30).collect::<Vec<u64>>());
    s.stop().await;
}

#[tokio::test]
async fn metrics_report_traffic() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("m", 1).await;
    c.produce("m", json!([{"payload": 1}, {"payload": 2}]))
        .await;
    c.read_all("m", 0, 0).await;
    let text = c.metrics_text().await;
    assert!(
        text.contains("sluice_events_in_total{tenant=\"default\",topic=\"m\"} 2"),
        "{text}"
    );
    assert!(text.contains("sluice_events_out_total{tenant=\"default\",topic=\"m\"} 2"));
    assert!(text.contains("sluice_produce_latency_seconds_count 1"));
    assert!(text.contains("sluice_log_flush_size_bytes_count"));
    assert!(text.contains("sluice_log_store_puts_total"));
    let health = c
        .http
        .get(format!("{}/healthz", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = c
        .http
        .get(format!("{}/readyz", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    s.stop().await;
}
