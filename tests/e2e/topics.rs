use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::Server;

#[tokio::test]
async fn topic_lifecycle() {
    let s = Server::start().await;
    let c = s.client();
    let (st, v) = c
        .post(
            "/v1/topics",
            json!({"name": "bronze.data.cleaned", "partitions": 12, "replicationFactor": 3,
                   "config": {"retention.ms": 604800000, "cleanup.policy": "delete", "compression.type": "zstd"},
                   "owner": "data-team", "description": "cleaned", "dataSensitivity": "PHI",
                   "schemaConfig": {"valueSchema": "bronze.data.cleaned-value", "compatibility": "BACKWARD"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["partitions"], 12);
    assert_eq!(v["owner"], "data-team");
    assert_eq!(v["partition_offsets"].as_array().unwrap().len(), 12);

    let (st, v) = c
        .post("/v1/topics", json!({"name": "bronze.data.cleaned", "partitions": 1, "replicationFactor": 1, "config": {}}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(v["error_code"], 40901);

    let (st, v) = c.get("/v1/topics").await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<&str> = v["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["bronze.data.cleaned"],
        "internal topics stay hidden"
    );

    // Patch: merge config, grow partitions, change a field.
    let (st, v) = c
        .send(
            Method::PATCH,
            "/v1/topics/bronze.data.cleaned",
            Some(json!({"partitions": 16, "config": {"retention.ms": 1000, "cleanup.policy": null}, "owner": "platform"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["partitions"], 16);
    assert_eq!(v["config"]["retention.ms"], 1000);
    assert!(v["config"].get("cleanup.policy").is_none());
    assert_eq!(v["config"]["compression.type"], "zstd");
    assert_eq!(v["owner"], "platform");

    let (st, v) = c
        .send(
            Method::PATCH,
            "/v1/topics/bronze.data.cleaned",
            Some(json!({"partitions": 2})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // Survives a restart, then delete.
    let opts = crate::harness::options(&s.data);
    let dir = s.stop().await;
    let s = Server::start_with(opts).await;
    let c = s.client();
    let (st, v) = c.get("/v1/topics/bronze.data.cleaned").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["partitions"], 16);
    assert_eq!(v["dataSensitivity"], "PHI");
    let (st, _) = c
        .send(Method::DELETE, "/v1/topics/bronze.data.cleaned", None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = c.get("/v1/topics/bronze.data.cleaned").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(v["error_code"], 40401);
    s.stop().await;
    drop(dir);
}

#[tokio::test]
async fn topic_documents_are_validated_against_the_seed_schema() {
    let s = Server::start().await;
    let c = s.client();
    let cases = [
        json!({"name": "t", "partitions": 1, "config": {}}), // replicationFactor missing
        json!({"name": "t", "partitions": 0, "replicationFactor": 1, "config": {}}),
        json!({"name": "bad name!", "partitions": 1, "replicationFactor": 1, "config": {}}),
        json!({"name": "t", "partitions": "3", "replicationFactor": 1, "config": {}}),
        json!({"name": "t", "partitions": 1, "replicationFactor": 1, "config": {"cleanup.policy": "shred"}}),
        json!({"name": "t", "partitions": 1, "replicationFactor": 1, "config": {"max.message.bytes": 10}}),
        json!({"name": "t", "partitions": 1, "replicationFactor": 1, "config": {}, "dataSensitivity": "SECRET"}),
        json!({"name": "_internal", "partitions": 1, "replicationFactor": 1, "config": {}}),
        json!({"name": "t", "partitions": 1, "replicationFactor": 1, "config": {"retention.ms": "soon"}}),
    ];
    for body in cases {
        let (st, v) = c.post("/v1/topics", body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {v}");
        assert_eq!(v["error_code"], 42201);
        assert!(v["message"].as_str().unwrap().len() > 10);
    }
    let (_, v) = c.get("/v1/topics").await;
    assert!(
        v["topics"].as_array().unwrap().is_empty(),
        "nothing was created"
    );
    s.stop().await;
}
