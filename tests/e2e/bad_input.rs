use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::Server;

async fn total(c: &crate::harness::Client, topic: &str) -> u64 {
    let (_, v) = c.get(&format!("/v1/topics/{topic}")).await;
    v["partition_offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end_offset"].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("t", 2).await;
    let p = "/v1/topics/t/events";
    let cases: Vec<(&str, Vec<u8>, StatusCode, u64)> = vec![
        (
            "application/json",
            b"{\"payload\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            40001,
        ),
        (
            "application/json",
            b"[{\"payload\": 1},".to_vec(),
            StatusCode::BAD_REQUEST,
            40001,
        ),
        (
            "application/json",
            vec![b'{', 0xff, 0xfe, b'}'],
            StatusCode::BAD_REQUEST,
            40001,
        ),
        (
            "application/json",
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            40002,
        ),
        (
            "application/json",
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            40002,
        ),
        (
            "text/csv",
            b"a,b".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            41501,
        ),
        (
            "application/json",
            b"42".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
        ),
        (
            "application/json",
            b"{\"event_type\": 7}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
        ),
        (
            "application/json",
            b"{\"key\": \"\\ud800\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            40001,
        ),
        (
            "application/json",
            vec![b'x'; 5 << 20],
            StatusCode::PAYLOAD_TOO_LARGE,
            41301,
        ),
    ];
    for (ct, body, status, code) in cases {
        let (st, v) = c.raw(Method::POST, p, ct, body).await;
        assert_eq!(st, status, "{v}");
        assert_eq!(v["error_code"], code, "{v}");
        assert!(v["message"].is_string());
    }
    let (st, v) = c.produce("missing", json!({"payload": 1})).await;
    assert_eq!(
        (st, v["error_code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(40401))
    );
    let (st, _) = c.get("/v1/topics/t/partitions/x/events").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = c
        .get("/v1/topics/t/partitions/0/events?max_events=lots")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = c.get("/v1/nothing/here").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = c.send(Method::PUT, "/v1/topics", None).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    let (st, _) = c
        .raw(
            Method::POST,
            "/v1/topics",
            "application/json",
            b"{oops".to_vec(),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(total(&c, "t").await, 0, "nothing was appended");

    // A batch with bad events: the good ones land, each bad one says why.
    let (st, v) = c
        .raw(
            Method::POST,
            p,
            "application/x-ndjson",
            b"{\"payload\":1}\nnot json\n{\"partition\":\"zero\"}\n{\"payload\":2}\n".to_vec(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let r = v["results"].as_array().unwrap();
    assert!(r[0]["offset"].is_u64());
    assert_eq!(r[1]["error_code"], 40001);
    assert_eq!(r[2]["error_code"], 42201);
    assert!(r[3]["offset"].is_u64());
    assert_eq!(total(&c, "t").await, 2);

    // All bad: the request fails as a whole, with each reason.
    let (st, v) = c.produce("t", json!([1, 2])).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    assert_eq!(total(&c, "t").await, 2);

    // An event over the topic's max.message.bytes.
    let (_, _) = c
        .post("/v1/topics", json!({"name": "small", "partitions": 1, "replicationFactor": 1, "config": {"max.message.bytes": 1024}}))
        .await;
    let (st, v) = c
        .produce(
            "small",
            json!([{"payload": "x".repeat(2000)}, {"payload": "ok"}]),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["results"][0]["error_code"], 41301);
    assert_eq!(v["results"][1]["offset"], 0);

    // Still serving.
    let (st, _) = c.produce("t", json!({"payload": "after"})).await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}
