use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::Server;

#[tokio::test]
async fn requests_need_a_valid_key() {
    let s = Server::start().await;
    let c = s.client();
    for key in ["", "nonsense", "sk_0000000000000000_wrong"] {
        let (st, v) = c.with_key(key).get("/v1/topics").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{key}: {v}");
        assert_eq!(v["error_code"], 40101);
    }
    // A real key id with the wrong secret.
    let id = s.admin_key.split('_').nth(1).unwrap();
    let (st, _) = c
        .with_key(&format!("sk_{id}_not-the-secret"))
        .get("/v1/topics")
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let no_header = c
        .http
        .get(format!("{}/v1/topics", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(no_header.status(), StatusCode::UNAUTHORIZED);
    // Health checks need none.
    let h = c
        .http
        .get(format!("{}/healthz", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), StatusCode::OK);

    // HTTP Basic as Confluent clients send it.
    let secret = s.admin_key.splitn(3, '_').nth(2).unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let r = c
        .http
        .get(format!("{}/v1/topics", c.url))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn scopes_limit_what_a_key_may_do() {
    let s = Server::start().await;
    let admin = s.client();
    admin.create_topic("orders.created", 1).await;
    admin.create_topic("payments", 1).await;
    let (st, v) = admin
        .post(
            "/v1/keys",
            json!({"scopes": [{"role": "produce", "topics": "orders.*"}], "description": "orders producer"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let producer = admin.with_key(v["key"].as_str().unwrap());
    let producer_id = v["id"].as_str().unwrap().to_owned();

    let (st, _) = producer
        .produce("orders.created", json!({"payload": 1}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = producer.produce("payments", json!({"payload": 1})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error_code"], 40301);
    let (st, _) = producer
        .get("/v1/topics/orders.created/partitions/0/events")
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "produce does not imply consume");
    let (st, _) = producer
        .post(
            "/v1/topics",
            json!({"name": "orders.x", "partitions": 1, "replicationFactor": 1, "config": {}}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = producer
        .post("/v1/keys", json!({"scopes": [{"role": "admin"}]}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a producer cannot mint keys");
    let (_, v) = producer.get("/v1/topics").await;
    assert_eq!(
        v["topics"].as_array().unwrap().len(),
        1,
        "lists only what it may use"
    );

    // Keys are listed without secrets or hashes, and can be revoked.
    let (_, v) = admin.get("/v1/keys").await;
    let text = v.to_string();
    assert!(!text.contains("argon2"), "{text}");
    // The secret is URL-safe base64 and may itself hold `_`: it is all after `sk_{id}_`.
    let secret = producer
        .key
        .strip_prefix(&format!("sk_{producer_id}_"))
        .unwrap();
    assert_eq!(secret.len(), 43, "32 random bytes");
    assert!(!text.contains(secret), "{text}");
    let (st, _) = admin
        .send(Method::DELETE, &format!("/v1/keys/{producer_id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = producer
        .produce("orders.created", json!({"payload": 2}))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (_, v) = admin
        .get("/v1/topics/orders.created/partitions/0/events")
        .await;
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let s = Server::start().await;
    let system = s.client();
    let (st, v) = system.post("/v1/tenants", json!({"name": "acme"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let acme = system.with_key(v["admin_key"]["key"].as_str().unwrap());
    let (_, v) = system.post("/v1/tenants", json!({"name": "globex"})).await;
    let globex = system.with_key(v["admin_key"]["key"].as_str().unwrap());
    let (st, _) = system.post("/v1/tenants", json!({"name": "acme"})).await;
    assert_eq!(st, StatusCode::CONFLICT);

    acme.create_topic("orders", 1).await;
    acme.produce("orders", json!({"payload": "acme secret"}))
        .await;

    // globex: no such topic, in every API.
    let (st, _) = globex.get("/v1/topics/orders").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = globex
        .get("/v1/topics/orders/partitions/0/events?offset=0")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = globex.produce("orders", json!({"payload": "x"})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v) = globex.get("/v1/topics").await;
    assert!(v["topics"].as_array().unwrap().is_empty());
    // Its own topic of the same name is its own.
    globex.create_topic("orders", 2).await;
    let (_, v) = globex
        .get("/v1/topics/orders/partitions/0/events?offset=0")
        .await;
    assert!(v["events"].as_array().unwrap().is_empty());
    let (_, v) = acme.get("/v1/topics/orders").await;
    assert_eq!(v["partitions"], 1);
    let events = acme.read_all("orders", 0, 0).await;
    assert_eq!(events.len(), 1);
    assert!(
        !globex
            .read_all("orders", 0, 0)
            .await
            .iter()
            .any(|e| e.to_string().contains("acme secret"))
    );

    // Keys: a tenant admin cannot see or revoke another tenant's keys, nor manage tenants.
    let (_, v) = acme.get("/v1/keys").await;
    let acme_key_id = v["keys"][0]["id"].as_str().unwrap().to_owned();
    let (st, _) = globex
        .send(Method::DELETE, &format!("/v1/keys/{acme_key_id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = globex.get("/v1/keys?tenant=acme").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = globex.post("/v1/tenants", json!({"name": "evil"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = globex.get("/metrics").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = acme.get("/v1/topics/orders").await;
    assert_eq!(st, StatusCode::OK, "acme's key still works");
    s.stop().await;
}
