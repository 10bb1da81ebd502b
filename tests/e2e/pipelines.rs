//! Ingest pipelines: validate, enrich and route stages on real events, through the server.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Client, Server};

const ORDER_SCHEMA: &str = r#"{"type":"object","required":["amount"],
    "properties":{"amount":{"type":"number","minimum":0}}}"#;

async fn orders_with_pipeline(c: &Client) {
    c.create_topic("orders.large", 1).await;
    let schema: Value = serde_json::from_str(ORDER_SCHEMA).unwrap();
    let (s, v) = c
        .post(
            "/v1/topics",
            json!({"name": "orders", "partitions": 2, "replicationFactor": 1, "config": {},
                "keyField": "/payload/customer",
                "pipeline": [
                    {"component": "validate", "config": {"pointer": "/payload", "schema": schema}},
                    {"component": "enrich"},
                    {"component": "route", "config": {"rules": [
                        {"type": "order.*", "when": [{"pointer": "/payload/amount", "op": "gt", "value": 1000}],
                         "topic": "orders.large"},
                        {"type": "*.test", "dlq": "test events are not accepted"},
                        {"type": "debug.*", "drop": true}]}}
                ]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["pipeline"][0]["component"], "validate");
}

#[tokio::test]
async fn validate_enrich_route_on_real_events() {
    let s = Server::start().await;
    let c = s.client();
    orders_with_pipeline(&c).await;

    let (st, v) = c
        .produce(
            "orders",
            json!([
                {"event_id": "small", "event_type": "order.created", "payload": {"amount": 10, "customer": "c1"}},
                {"event_id": "bad", "event_type": "order.created", "payload": {"amount": -1}},
                {"event_id": "big", "event_type": "order.created", "payload": {"amount": 5000, "customer": "c2"}},
                {"event_id": "probe", "event_type": "order.test", "payload": {"amount": 1}},
                {"event_id": "noise", "event_type": "debug.ping", "payload": {"amount": 1}},
            ]),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let r = &v["results"];
    assert_eq!(r[0]["event_id"], "small");
    assert!(
        r[0]["offset"].is_u64() && r[0].get("topic").is_none(),
        "{r}"
    );
    assert_eq!(r[1]["error_code"], 42210, "{r}");
    let message = r[1]["message"].as_str().unwrap();
    assert!(
        message.contains("`validate`") && message.contains("/payload/amount"),
        "{message}"
    );
    assert_eq!(r[2]["topic"], "orders.large", "{r}");
    assert_eq!(r[3]["topic"], "orders.dlq", "{r}");
    assert_eq!(
        r[3]["dead_letter"]["reason"],
        "test events are not accepted"
    );
    assert_eq!(r[4], json!({"event_id": "noise", "dropped": true}));

    // Stored where routed, enriched on the way.
    let mut stored = Vec::new();
    for p in 0..2 {
        stored.extend(c.read_all("orders", p, 0).await);
    }
    assert_eq!(stored.len(), 1, "{stored:?}");
    let e = &stored[0]["event"];
    assert_eq!(e["event_id"], "small");
    assert_eq!(e["tenant"], "default");
    assert!(e["ingest_time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(e["correlation_id"], "small");
    assert_eq!(stored[0]["key"], "c1");
    let large = c.read_all("orders.large", 0, 0).await;
    assert_eq!(large.len(), 1);
    assert_eq!(large[0]["event"]["event_id"], "big");
    assert_eq!(
        large[0]["event"]["producer_key_id"],
        stored[0]["event"]["producer_key_id"]
    );
    let dlq = c.read_all("orders.dlq", 0, 0).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        dlq[0]["headers"]["sluice_dlq_reason"],
        "test events are not accepted"
    );
    assert_eq!(dlq[0]["headers"]["sluice_dlq_stage"], "route");
    assert_eq!(dlq[0]["headers"]["sluice_dlq_topic"], "orders");

    // A batch where every event is refused changes nothing and says why.
    let (st, v) = c
        .produce(
            "orders",
            json!({"event_type": "order.created", "payload": {}}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error_code"], 42210);
    assert!(v["message"].as_str().unwrap().contains("amount"), "{v}");

    // Per-component metrics.
    let (st, m) = c.get("/metrics").await;
    assert_eq!(st, StatusCode::OK);
    let m = m.as_str().unwrap();
    assert!(
        m.contains(r#"sluice_component_calls_total{tenant="default",component="validate"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"sluice_component_events_total{tenant="default",component="validate"} 6"#)
    );
    assert!(m.contains(r#"sluice_component_events_total{tenant="default",component="route"} 4"#));
    assert!(m.contains(
        r#"sluice_component_errors_total{tenant="default",component="enrich",kind="trap"} 0"#
    ));

    // The pipeline is rebuilt after a restart.
    let data = s.data.clone();
    let dir = s.stop().await;
    let s = Server::start_with(crate::harness::options(&data)).await;
    let c = s.client();
    let (st, v) = c
        .produce(
            "orders",
            json!({"event_type": "order.created", "payload": {"amount": -5}}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = c
        .produce(
            "orders",
            json!({"event_type": "order.created", "payload": {"amount": 5}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
    drop(dir);
}

#[tokio::test]
async fn pipelines_that_cannot_run_are_refused() {
    let s = Server::start().await;
    let c = s.client();
    let topic = |pipeline: Value| json!({"name": "t", "partitions": 1, "replicationFactor": 1, "config": {}, "pipeline": pipeline});
    let (st, v) = c
        .post("/v1/topics", topic(json!([{"component": "nope"}])))
        .await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40403)),
        "{v}"
    );
    let (st, v) = c
        .post(
            "/v1/topics",
            topic(json!([{"component": "validate", "config": {"schema": {"type": 7}}}])),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error_code"], 42212);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON Schema"),
        "{v}"
    );
    let (st, v) = c
        .post("/v1/topics", topic(json!({"component": "validate"})))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, _) = c.get("/v1/topics/t").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "nothing was created");

    // A pipeline added later by PATCH applies to the next produce.
    c.create_topic("t", 1).await;
    let (st, v) = c
        .send(
            reqwest::Method::PATCH,
            "/v1/topics/t",
            Some(json!({"pipeline": [{"component": "route", "config": {"rules": [{"drop": true}]}}]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = c.produce("t", json!({"event_type": "x"})).await;
    assert_eq!(v["results"][0]["dropped"], true, "{v}");
    let (st, _) = c
        .send(
            reqwest::Method::PATCH,
            "/v1/topics/t",
            Some(json!({"pipeline": null})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = c.produce("t", json!({"event_type": "x"})).await;
    assert_eq!(v["results"][0]["offset"], 0, "{v}");
}

#[tokio::test]
async fn enrich_looks_up_a_reference_table_kept_from_a_topic() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("customers", 2).await;
    let (st, v) = c
        .produce(
            "customers",
            json!([
                {"key": "c1", "event_type": "customer.updated", "payload": {"tier": "silver"}},
                {"key": "c2", "event_type": "customer.updated", "payload": {"tier": "gold"}},
                {"key": "c1", "event_type": "customer.updated", "payload": {"tier": "platinum"}},
            ]),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = c
        .post(
            "/v1/topics",
            json!({"name": "orders", "partitions": 1, "replicationFactor": 1, "config": {},
                "pipeline": [{"component": "enrich", "config": {"fields": [], "lookups": [
                    {"table": "customers", "key": "/payload/customer", "into": "/payload/customer_info",
                     "pick": "/payload", "required": true}]}}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = c
        .produce(
            "orders",
            json!([{"event_type": "order.created", "payload": {"customer": "c1"}},
                   {"event_type": "order.created", "payload": {"customer": "c9"}}]),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["results"][1]["error_code"], 42210, "{v}");
    assert!(
        v["results"][1]["message"]
            .as_str()
            .unwrap()
            .contains("no entry for key `c9`"),
        "{v}"
    );
    let stored = c.read_all("orders", 0, 0).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0]["event"]["payload"]["customer_info"],
        json!({"tier": "platinum"}),
        "the newest value wins"
    );
    // A new value is seen by the next lookup.
    c.produce(
        "customers",
        json!({"key": "c1", "payload": {"tier": "bronze"}}),
    )
    .await;
    c.produce(
        "orders",
        json!({"event_type": "order.created", "payload": {"customer": "c1"}}),
    )
    .await;
    let stored = c.read_all("orders", 0, 0).await;
    assert_eq!(
        stored[1]["event"]["payload"]["customer_info"],
        json!({"tier": "bronze"})
    );
}

/// Every stored event of a topic (one partition), without what differs between two produce
/// requests (the ingest time, the offset and timestamp).
async fn stored_without_times(c: &Client, topic: &str) -> Vec<Value> {
    let mut out: Vec<Value> = c
        .read_all(topic, 0, 0)
        .await
        .into_iter()
        .map(|mut e| {
            e["event"].as_object_mut().unwrap().remove("ingest_time");
            let e = e.as_object_mut().unwrap();
            e.remove("offset");
            e.remove("timestamp");
            if let Some(h) = e.get_mut("headers").and_then(Value::as_object_mut) {
                // The time each request was received, and where a dead letter came from.
                h.remove("ce_time");
                h.remove("sluice_dlq_topic");
            }
            Value::Object(e.clone())
        })
        .collect();
    out.sort_by_key(|e| e["event"]["event_id"].to_string());
    out
}

#[tokio::test]
async fn packed_and_per_event_pipelines_store_the_same() {
    // The built-in validate, enrich and route take packed batches (the records cross in one
    // buffer, enrich answers with insertions); a tenant's transformer after them makes the same
    // stages run per event (`list<event>` both ways). Both must store exactly the same.
    let s = Server::start().await;
    let c = s.client();
    let (st, v) = crate::transforms::upload(&c, "hostile", sluice_builtins::testing::HOSTILE).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let schema: Value = serde_json::from_str(ORDER_SCHEMA).unwrap();
    let stages = json!([
        {"component": "validate", "config": {"pointer": "/payload", "schema": schema}},
        {"component": "enrich", "config": {"fields": ["tenant", "correlation_id", "ingest_time", "producer_key_id"]}},
        {"component": "route", "config": {"rules": [
            {"type": "*.test", "dlq": "test events are not accepted"},
            {"type": "order.keyed", "key": "/payload/customer"},
            {"type": "order.*", "when": [{"pointer": "/payload/amount", "op": "gte", "value": 0}], "keep": true},
            {"type": "debug.*", "drop": true}]}}
    ]);
    let mut per_event = stages.clone();
    per_event
        .as_array_mut()
        .unwrap()
        .push(json!({"component": "hostile", "config": {"behaviour": "ok"}}));
    for (name, pipeline) in [("fast", stages), ("slow", per_event)] {
        let (st, v) = c
            .post(
                "/v1/topics",
                json!({"name": name, "partitions": 1, "replicationFactor": 1, "config": {},
                       "pipeline": pipeline}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let batch = json!([
        {"event_id": "a", "event_type": "order.created", "payload": {"amount": 10, "customer": "c1"}},
        {"event_id": "b", "event_type": "order.created", "payload": {"amount": -1}},
        {"event_id": "c", "event_type": "order.keyed", "payload": {"amount": 3, "customer": "c9"}},
        {"event_id": "d", "event_type": "order.test", "payload": {"amount": 1}},
        {"event_id": "e", "event_type": "debug.ping", "payload": {"amount": 1}},
        {"event_id": "f", "event_type": "order.created", "tenant": "given", "payload": {"amount": 0}},
        {"event_id": "g", "event_type": "order.created", "key": "k-g", "headers": {"x-trace": "t1"},
         "payload": {"amount": 2.5, "customer": "c2"}},
    ]);
    let (st, fast) = c.produce("fast", batch.clone()).await;
    assert_eq!(st, StatusCode::OK, "{fast}");
    let (st, slow) = c.produce("slow", batch).await;
    assert_eq!(st, StatusCode::OK, "{slow}");
    // The answers agree event by event (positions aside).
    let shape = |v: &Value| -> Vec<Value> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if let Some(o) = r.as_object_mut() {
                    o.remove("offset");
                    o.remove("partition");
                    o.remove("topic");
                    o.remove("message");
                }
                r
            })
            .collect()
    };
    assert_eq!(shape(&fast), shape(&slow));
    assert_eq!(fast["results"][1]["error_code"], 42210, "{fast}");
    assert_eq!(fast["results"][4]["dropped"], true, "{fast}");
    let (fast_stored, slow_stored) = (
        stored_without_times(&c, "fast").await,
        stored_without_times(&c, "slow").await,
    );
    assert_eq!(fast_stored.len(), 4, "a, c, f, g: {fast_stored:?}");
    assert_eq!(fast_stored, slow_stored);
    assert_eq!(fast_stored[1]["key"], "c9", "the router's key");
    assert_eq!(fast_stored[2]["event"]["tenant"], "given", "kept as given");
    assert_eq!(fast_stored[3]["headers"]["x-trace"], "t1");
    assert_eq!(fast_stored[3]["key"], "k-g");
    assert!(
        fast_stored[0]["event"]["ingest_time"].is_null(),
        "removed above"
    );
    let (fast_dlq, slow_dlq) = (
        stored_without_times(&c, "fast.dlq").await,
        stored_without_times(&c, "slow.dlq").await,
    );
    assert_eq!(fast_dlq.len(), 1);
    assert_eq!(fast_dlq, slow_dlq);
    assert_eq!(
        fast_dlq[0]["event"]["correlation_id"], "d",
        "enriched before routing"
    );
    s.stop().await;
}
