//! Webhook subscriptions end to end: a receiver that verifies every signature with the
//! Standard Webhooks library and with Svix's (tests/clients/webhook_receiver.py), the retry
//! rules under a clock the test moves (no waiting for 5 minutes), 410, throttling, timeouts,
//! redirects, the dead-letter topic and re-drive, replay, secret rotation, bad input, and
//! SIGKILL during deliveries.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Client, Process, Receiver, Server};

async fn subscribe(c: &Client, body: Value) -> Value {
    let (st, v) = c.post("/v1/subscriptions", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert!(v["secret"].as_str().unwrap().starts_with("whsec_"));
    v
}

async fn attempts(c: &Client, id: &str) -> Vec<Value> {
    let (st, v) = c.get(&format!("/v1/subscriptions/{id}/attempts")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["attempts"].as_array().unwrap().clone()
}

/// Wait until the subscription has recorded `n` attempts; newest first.
async fn wait_attempts(c: &Client, id: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let a = attempts(c, id).await;
        if a.len() >= n {
            return a;
        }
        assert!(std::time::Instant::now() < deadline, "{a:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn invoice(i: u64, kind: &str, amount: u64) -> Value {
    json!({"event_id": format!("evt-{kind}-{i}"), "type": kind, "key": format!("cust-{}", i % 3),
           "payload": {"amount": amount, "n": i}})
}

#[tokio::test]
async fn a_verified_subscriber_gets_the_selected_events_signed() {
    let Some(rx) = Receiver::start() else { return };
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("billing", 3).await;
    let sub = subscribe(
        &c,
        json!({"url": format!("{}/hooks", rx.url), "topics": ["billing"],
               "event_types": ["invoice.*"], "condition": "data.amount >= 10",
               "headers": {"x-team": "ledger"}, "ordering": "per-key"}),
    )
    .await;
    rx.control(json!({"secrets": [sub["secret"]]})).await;
    let mut events = Vec::new();
    for i in 0..30 {
        events.push(invoice(i, "invoice.paid", i));
        events.push(invoice(i, "order.created", 100));
    }
    let (st, _) = c.produce("billing", json!(events)).await;
    assert_eq!(st, StatusCode::OK);
    // invoice.* with amount >= 10: n = 10..29.
    let got = rx.wait_for(20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_all = rx.received().await;
    assert_eq!(got_all.len(), 20, "only the selected events: {got_all:?}");
    for d in &got {
        assert_eq!(d["verified"], true, "standardwebhooks verified {d}");
        assert_eq!(d["svix_verified"], true, "svix verified {d}");
        assert_eq!(d["custom"], "ledger");
        assert_eq!(d["body"]["type"], "invoice.paid");
        assert!(d["body"]["payload"]["amount"].as_u64().unwrap() >= 10);
        assert_eq!(d["id"], d["body"]["event_id"], "webhook-id is the event id");
    }
    // Per key, in order.
    for k in 0..3 {
        let ns: Vec<u64> = got
            .iter()
            .filter(|d| d["body"]["key"] == format!("cust-{k}"))
            .map(|d| d["body"]["payload"]["n"].as_u64().unwrap())
            .collect();
        let mut sorted = ns.clone();
        sorted.sort();
        assert_eq!(ns, sorted, "key cust-{k} in order");
    }
    // Attempts are recorded; the committed offsets reach the end.
    let a = wait_attempts(&c, sub["id"].as_str().unwrap(), 20).await;
    assert!(
        a.iter()
            .all(|x| x["outcome"] == "delivered" && x["status"] == 200)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, d) = c
            .get(&format!(
                "/v1/subscriptions/{}",
                sub["id"].as_str().unwrap()
            ))
            .await;
        if d["lag"] == 0 {
            assert!(d.get("secret").is_none(), "secrets are not shown");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn retries_follow_the_schedule_on_a_clock_the_test_moves() {
    let Some(rx) = Receiver::start() else { return };
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("pay", 1).await;
    let sub = subscribe(
        &c,
        json!({"url": format!("{}/in", rx.url), "topics": ["pay"], "timeout": "500ms"}),
    )
    .await;
    let id = sub["id"].as_str().unwrap().to_owned();
    rx.control(json!({"secrets": [sub["secret"]],
                      "script": ["status:500", "status:503", "ok",
                                 "status:429:retry-after:120", "ok",
                                 "sleep:2000", "ok",
                                 "redirect", "ok"]}))
        .await;
    let advance = |d: Duration| s.app.clock.advance(d);

    // Event 1: fails at once, then after 5 s, then after 5 min succeeds.
    c.produce("pay", json!([invoice(1, "invoice.paid", 5)]))
        .await;
    let a = wait_attempts(&c, &id, 1).await;
    assert_eq!(
        (a[0]["status"].clone(), a[0]["outcome"].clone()),
        (json!(500), json!("retrying"))
    );
    let due = a[0]["next_attempt_ms"].as_i64().unwrap() - a[0]["time_ms"].as_i64().unwrap();
    assert!((4_500..=5_500).contains(&due), "5 s ± 10%: {due}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        attempts(&c, &id).await.len(),
        1,
        "nothing before the clock moves"
    );
    advance(Duration::from_secs(6));
    let a = wait_attempts(&c, &id, 2).await;
    assert_eq!(a[0]["status"], 503);
    let due = a[0]["next_attempt_ms"].as_i64().unwrap() - a[0]["time_ms"].as_i64().unwrap();
    assert!((270_000..=330_000).contains(&due), "5 min ± 10%: {due}");
    advance(Duration::from_secs(340));
    let a = wait_attempts(&c, &id, 3).await;
    assert_eq!(
        (a[0]["status"].clone(), a[0]["outcome"].clone()),
        (json!(200), json!("delivered"))
    );
    assert_eq!(a[0]["attempt"], 3);

    // Event 2: 429 with Retry-After 120 s throttles; the retry waits for it.
    c.produce("pay", json!([invoice(2, "invoice.paid", 5)]))
        .await;
    let a = wait_attempts(&c, &id, 4).await;
    assert_eq!(
        (a[0]["status"].clone(), a[0]["outcome"].clone()),
        (json!(429), json!("throttled"))
    );
    let due = a[0]["next_attempt_ms"].as_i64().unwrap() - a[0]["time_ms"].as_i64().unwrap();
    assert!(due >= 120_000, "Retry-After honoured: {due}");
    advance(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(attempts(&c, &id).await.len(), 4, "still throttled");
    advance(Duration::from_secs(61));
    let a = wait_attempts(&c, &id, 5).await;
    assert_eq!(a[0]["outcome"], "delivered");

    // Event 3: the endpoint takes longer than the timeout.
    c.produce("pay", json!([invoice(3, "invoice.paid", 5)]))
        .await;
    let a = wait_attempts(&c, &id, 6).await;
    assert!(
        a[0]["error"].as_str().unwrap().contains("timed out"),
        "{}",
        a[0]
    );
    advance(Duration::from_secs(6));
    let a = wait_attempts(&c, &id, 7).await;
    assert_eq!(a[0]["outcome"], "delivered");

    // Event 4: a redirect is a failure, not followed.
    c.produce("pay", json!([invoice(4, "invoice.paid", 5)]))
        .await;
    let a = wait_attempts(&c, &id, 8).await;
    assert_eq!(
        (a[0]["status"].clone(), a[0]["outcome"].clone()),
        (json!(302), json!("retrying"))
    );
    advance(Duration::from_secs(6));
    let a = wait_attempts(&c, &id, 9).await;
    assert_eq!(a[0]["outcome"], "delivered");
    // Every request the receiver saw verified, and each event arrived once successfully.
    let got = rx.received().await;
    assert!(
        got.iter()
            .all(|d| d["verified"] == true && d["svix_verified"] == true)
    );
    s.stop().await;
}

#[tokio::test]
async fn exhausted_events_are_dead_lettered_and_can_be_redriven_and_replayed() {
    let Some(rx) = Receiver::start() else { return };
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("ship", 1).await;
    let sub = subscribe(
        &c,
        json!({"url": format!("{}/in", rx.url), "topics": ["ship"],
               "retry_schedule": ["0s", "10s"]}),
    )
    .await;
    let id = sub["id"].as_str().unwrap().to_owned();
    rx.control(json!({"secrets": [sub["secret"]], "script": ["status:500", "status:500"]}))
        .await;
    c.produce("ship", json!([invoice(1, "shipment.sent", 5)]))
        .await;
    wait_attempts(&c, &id, 1).await;
    s.app.clock.advance(Duration::from_secs(12));
    let a = wait_attempts(&c, &id, 3).await;
    assert_eq!(a[0]["outcome"], "dead-lettered");
    assert_eq!(a[1]["outcome"], "failed");
    let dlq = c.read_all("ship.dlq", 0, 0).await;
    assert_eq!(dlq.len(), 1);
    assert!(
        dlq[0]["headers"]["sluice_dlq_reason"]
            .as_str()
            .unwrap()
            .contains("after 2 attempts")
    );
    assert_eq!(dlq[0]["headers"]["sluice_subscription"], id.as_str());
    assert_eq!(dlq[0]["event"]["event_id"], "evt-shipment.sent-1");

    // Re-drive: the receiver now accepts.
    let (st, v) = c
        .post(&format!("/v1/subscriptions/{id}/redrive"), json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["redriving"], 1);
    let got = rx.wait_for(3).await;
    assert_eq!(got[2]["id"], "evt-shipment.sent-1");
    assert_eq!(got[2]["answer"], "ok");

    // Replay everything since the beginning: delivered again, same webhook-id.
    let (st, v) = c
        .post(
            &format!("/v1/subscriptions/{id}/replay"),
            json!({"since": 0}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["replaying"], 1);
    let got = rx.wait_for(4).await;
    assert_eq!(got[3]["id"], "evt-shipment.sent-1");
    // Replay by offsets.
    let (st, v) = c
        .post(
            &format!("/v1/subscriptions/{id}/replay"),
            json!({"topic": "ship", "partition": 0, "from_offset": 0, "to_offset": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["replaying"], 1);
    let got = rx.wait_for(5).await;
    assert_eq!(got[4]["id"], "evt-shipment.sent-1");
    let (st, _) = c
        .post(
            &format!("/v1/subscriptions/{id}/replay"),
            json!({"topic": "elsewhere", "partition": 0, "from_offset": 0}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    s.stop().await;
}

#[tokio::test]
async fn gone_disables_and_rotation_keeps_old_secrets_valid() {
    let Some(rx) = Receiver::start() else { return };
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("keys", 1).await;
    let sub = subscribe(
        &c,
        json!({"url": format!("{}/in", rx.url), "topics": ["keys"]}),
    )
    .await;
    let id = sub["id"].as_str().unwrap().to_owned();
    let old = sub["secret"].as_str().unwrap().to_owned();
    // Rotate: both the old and the new secret verify while the old one is in its grace time.
    let (st, r) = c
        .post(
            &format!("/v1/subscriptions/{id}/rotate-secret"),
            json!({"grace": "1h"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let new = r["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    rx.control(json!({"secrets": [old, new]})).await;
    c.produce("keys", json!([invoice(1, "key.rotated", 1)]))
        .await;
    let got = rx.wait_for(1).await;
    assert_eq!(got[0]["verified"], true, "each secret verifies: {}", got[0]);
    assert_eq!(got[0]["signature"].as_str().unwrap().split(' ').count(), 2);
    let (_, sec) = c.get(&format!("/v1/subscriptions/{id}/secret")).await;
    assert_eq!(sec["secret"], new.as_str());
    assert_eq!(sec["previous"][0]["secret"], old.as_str());

    // 410 Gone: disabled, with an alert; re-enabling resumes where it was.
    rx.control(json!({"script": ["status:410"]})).await;
    c.produce("keys", json!([invoice(2, "key.rotated", 1)]))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, d) = c.get(&format!("/v1/subscriptions/{id}")).await;
        if d["enabled"] == false {
            assert!(
                d["disabled_reason"].as_str().unwrap().contains("410"),
                "{d}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, alerts) = c.get("/v1/alerts").await;
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["type"] == "sluice.webhook.endpoint.disabled"
                && a["subscription"] == id.as_str())
    );
    let (st, v) = c
        .send(
            Method::PATCH,
            &format!("/v1/subscriptions/{id}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let got = rx.wait_for(3).await;
    assert_eq!(
        got[2]["id"], "evt-key.rotated-2",
        "the refused event comes again"
    );
    assert_eq!(got[2]["answer"], "ok");
    s.stop().await;
}

#[tokio::test]
async fn bad_subscriptions_get_clear_errors() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("t", 1).await;
    let cases = [
        (json!({"url": "not a url", "topics": ["t"]}), "url"),
        (
            json!({"url": "http://10.0.0.7/x", "topics": ["t"]}),
            "internal address",
        ),
        (
            json!({"url": "http://169.254.169.254/", "topics": ["t"]}),
            "internal address",
        ),
        (
            json!({"url": "https://example.com/", "topics": ["nope"]}),
            "does not exist",
        ),
        (
            json!({"url": "https://example.com/", "topics": ["t"], "condition": "data.x >"}),
            "condition",
        ),
        (
            json!({"url": "https://example.com/", "topics": ["t"], "event_types": ["bad type!"]}),
            "event_types",
        ),
        (
            json!({"url": "https://example.com/", "topics": ["t"], "secret": "plain"}),
            "secret",
        ),
        (
            json!({"url": "https://example.com/", "topics": ["t"], "retry_schedule": ["soon"]}),
            "invalid subscription",
        ),
        (
            json!({"url": "https://example.com/", "topics": ["t"], "surprise": 1}),
            "invalid subscription",
        ),
    ];
    for (body, word) in cases {
        let (st, e) = c.post("/v1/subscriptions", body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {e}");
        assert_eq!(e["error_code"], 42216);
        assert!(
            e["message"].as_str().unwrap().contains(word),
            "{body} -> {e}"
        );
    }
    // With an event catalog, a pattern that matches no defined type is unknown.
    let (st, v) = c
        .post(
            "/v1/event-definitions",
            json!({"event_id": "Billing.paid", "name": "paid", "pattern": "billing.paid",
                   "version": "1.0.0", "status": "active",
                   "payload_schema": {"type": "object"}, "examples": [{}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, e) = c
        .post(
            "/v1/subscriptions",
            json!({"url": "https://example.com/", "topics": ["t"], "event_types": ["invoice.*"]}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("matches no event type"),
        "{e}"
    );
    let (st, _) = c
        .post(
            "/v1/subscriptions",
            json!({"url": "https://example.com/", "topics": ["t"], "event_types": ["billing.*"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, e) = c.get("/v1/subscriptions/sub_nope").await;
    assert_eq!(
        (st, e["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40408))
    );
    s.stop().await;
}

#[tokio::test]
async fn sigkill_during_deliveries_loses_no_event() {
    let Some(rx) = Receiver::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let args = ["--webhook-allow-network", "127.0.0.0/8"];
    let p = Process::start(dir.path(), &args);
    let c = p.client();
    c.create_topic("orders", 4).await;
    let sub = subscribe(
        &c,
        json!({"url": format!("{}/in", rx.url), "topics": ["orders"]}),
    )
    .await;
    rx.control(json!({"secrets": [sub["secret"]]})).await;
    let total = 3_000u64;
    for chunk in 0..(total / 500) {
        let events: Vec<Value> = (chunk * 500..(chunk + 1) * 500)
            .map(|i| json!({"event_id": format!("o-{i}"), "type": "order.placed", "key": format!("{i}"), "payload": {"i": i}}))
            .collect();
        let (st, _) = c.produce("orders", json!(events)).await;
        assert_eq!(st, StatusCode::OK);
    }
    // Kill it mid-way.
    rx.wait_for(300).await;
    p.kill9();
    let before = rx.received().await.len();
    assert!(
        before < total as usize,
        "killed during deliveries ({before})"
    );
    let p = Process::start(dir.path(), &args);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = rx.received().await;
        let ids: BTreeSet<String> = got
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect();
        if ids.len() == total as usize {
            assert!(got.iter().all(|d| d["verified"] == true));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {total} after the restart",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(p);
}

#[tokio::test]
async fn triggers_start_workflows_in_priority_order_with_retries() {
    let Some(rx) = Receiver::start() else { return };
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("customers", 2).await;
    let endpoint = format!("{}/workflows", rx.url);
    let mut ids = Vec::new();
    for (wf, priority, condition) in [
        ("wf-low", 1, None),
        ("wf-high", 10, Some("data.tier == 'gold'")),
        ("wf-never", 50, Some("data.tier == 'none'")),
    ] {
        let mut body = json!({"workflowDefinitionId": wf, "eventPattern": "customer.*",
                              "triggerType": "START", "priority": priority,
                              "inputMapping": "{'customer': data.id, 'tier': data.tier}",
                              "correlationKey": "data.id", "enabled": true,
                              "topics": ["customers"], "endpoint": endpoint});
        if let Some(cnd) = condition {
            body["eventCondition"] = json!(cnd);
        }
        let (st, t) = c.post("/v1/triggers", body).await;
        assert_eq!(st, StatusCode::CREATED, "{t}");
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    let (_, secret) = c.get("/v1/triggers/secret").await;
    // The highest-priority trigger's delivery fails first: the lower one waits for its retry.
    rx.control(json!({"secrets": [secret["secret"]], "script": ["status:500"]}))
        .await;
    c.produce(
        "customers",
        json!([{"event_id": "c-1", "type": "customer.created", "payload": {"id": 7, "tier": "gold"}}]),
    )
    .await;
    let a = wait_attempts_at(&c, "/v1/triggers/attempts", 1).await;
    assert_eq!(a[0]["status"], 500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().await.len(), 1, "the lower priority waits");
    s.app.clock.advance(Duration::from_secs(6));
    let got = rx.wait_for(3).await;
    let wfs: Vec<&str> = got
        .iter()
        .map(|d| d["body"]["workflowDefinitionId"].as_str().unwrap())
        .collect();
    assert_eq!(wfs, vec!["wf-high", "wf-high", "wf-low"]);
    for d in &got {
        assert_eq!(d["verified"], true);
        assert_eq!(d["body"]["triggerType"], "START");
        assert_eq!(d["body"]["correlationKey"], "7");
        assert_eq!(d["body"]["input"], json!({"customer": 7, "tier": "gold"}));
    }
    assert_eq!(got[2]["id"], format!("c-1:{}", ids[0]));

    // A CANCEL trigger replaces the low one; disabled triggers do nothing.
    let (st, _) = c
        .send(
            Method::PATCH,
            &format!("/v1/triggers/{}", ids[0]),
            Some(json!({"triggerType": "CANCEL"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = c
        .send(
            Method::PATCH,
            &format!("/v1/triggers/{}", ids[1]),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    c.produce(
        "customers",
        json!([{"event_id": "c-2", "type": "customer.closed", "payload": {"id": 8, "tier": "gold"}}]),
    )
    .await;
    let got = rx.wait_for(4).await;
    assert_eq!(got[3]["body"]["triggerType"], "CANCEL");
    assert_eq!(got[3]["body"]["workflowDefinitionId"], "wf-low");

    let (st, e) = c
        .post(
            "/v1/triggers",
            json!({"workflowDefinitionId": "x", "eventPattern": "a b",
                                     "triggerType": "START", "topics": ["customers"],
                                     "endpoint": "http://10.0.0.1/", "correlationKey": "data."}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let m = e["message"].as_str().unwrap();
    assert!(
        m.contains("eventPattern") && m.contains("endpoint") && m.contains("correlationKey"),
        "{m}"
    );
    let (st, _) = c
        .send(Method::DELETE, &format!("/v1/triggers/{}", ids[2]), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, list) = c.get("/v1/triggers").await;
    assert_eq!(list["triggers"].as_array().unwrap().len(), 2);
    s.stop().await;
}

async fn wait_attempts_at(c: &Client, path: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = c.get(path).await;
        let a = v["attempts"].as_array().cloned().unwrap_or_default();
        if a.len() >= n {
            return a;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn ed25519_signatures_verify_with_the_public_key() {
    let Some(rx) = Receiver::start() else { return };
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("signed", 1).await;
    let (st, sub) = c
        .post(
            "/v1/subscriptions",
            json!({"url": format!("{}/in", rx.url), "topics": ["signed"], "signature": "v1a"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{sub}");
    assert!(sub["secret"].as_str().unwrap().starts_with("whsk_"));
    let public = sub["public_key"].as_str().unwrap().to_owned();
    assert!(public.starts_with("whpk_"));
    rx.control(json!({"secrets": [public]})).await;
    c.produce("signed", json!([invoice(1, "doc.signed", 1)]))
        .await;
    let got = rx.wait_for(1).await;
    assert_eq!(got[0]["verified"], true, "{}", got[0]);
    assert!(got[0]["signature"].as_str().unwrap().starts_with("v1a,"));
    assert_eq!(got[0]["answer"], "ok");
    // The public key is shown, the signing key is not.
    let (_, d) = c
        .get(&format!(
            "/v1/subscriptions/{}",
            sub["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(d["public_key"], public.as_str());
    assert!(d.get("secret").is_none());
    let (st, e) = c
        .post(
            "/v1/subscriptions",
            json!({"url": "https://example.com/", "topics": ["signed"], "signature": "v2"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    s.stop().await;
}

#[tokio::test]
async fn the_rate_limit_spreads_deliveries_out() {
    let Some(rx) = Receiver::start() else { return };
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("burst", 1).await;
    let sub = subscribe(
        &c,
        json!({"url": format!("{}/in", rx.url), "topics": ["burst"], "rate_limit": 10}),
    )
    .await;
    rx.control(json!({"secrets": [sub["secret"]]})).await;
    let events: Vec<Value> = (0..30).map(|i| invoice(i, "tick", 1)).collect();
    let started = std::time::Instant::now();
    c.produce("burst", json!(events)).await;
    rx.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(900).saturating_sub(started.elapsed())).await;
    // At 10 per second, no more than two windows' worth can be out within a second.
    let early = rx.received().await.len();
    assert!(early <= 20, "{early} deliveries within a second at 10/s");
    let got = rx.wait_for(30).await;
    assert!(got.iter().all(|d| d["verified"] == true));
    s.stop().await;
}

#[tokio::test]
async fn an_endpoint_failing_for_the_whole_window_is_disabled() {
    let Some(rx) = Receiver::start() else { return };
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("flaky", 1).await;
    let sub = subscribe(
        &c,
        json!({"url": format!("{}/in", rx.url), "topics": ["flaky"], "disable_after": "1h",
               "retry_schedule": ["0s", "30m", "30m", "30m"]}),
    )
    .await;
    let id = sub["id"].as_str().unwrap().to_owned();
    rx.control(json!({"secrets": [sub["secret"]],
                      "script": ["status:500", "status:500", "status:500", "status:500"]}))
        .await;
    c.produce("flaky", json!([invoice(1, "x.y", 1)])).await;
    wait_attempts(&c, &id, 1).await;
    // 30 min ± 10% jitter: 34 minutes is past every retry's due time.
    s.app.clock.advance(Duration::from_secs(34 * 60));
    wait_attempts(&c, &id, 2).await;
    let (_, d) = c.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(d["enabled"], true, "34 minutes of failures: still on");
    s.app.clock.advance(Duration::from_secs(34 * 60));
    wait_attempts(&c, &id, 3).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, d) = c.get(&format!("/v1/subscriptions/{id}")).await;
        if d["enabled"] == false {
            assert!(
                d["disabled_reason"]
                    .as_str()
                    .unwrap()
                    .contains("failed every attempt for 1h"),
                "{d}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn a_retry_waiting_at_a_crash_resumes_where_it_was() {
    let Some(rx) = Receiver::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let args = ["--webhook-allow-network", "127.0.0.0/8"];
    let p = Process::start(dir.path(), &args);
    let c = p.client();
    c.create_topic("resume", 1).await;
    let sub = subscribe(
        &c,
        json!({"url": format!("{}/in", rx.url), "topics": ["resume"],
               "retry_schedule": ["0s", "4s"]}),
    )
    .await;
    let id = sub["id"].as_str().unwrap().to_owned();
    rx.control(json!({"secrets": [sub["secret"]], "script": ["status:500"]}))
        .await;
    c.produce("resume", json!([invoice(1, "r.x", 1)])).await;
    let a = wait_attempts(&c, &id, 1).await;
    assert_eq!(a[0]["outcome"], "retrying");
    // Let the attempt's record reach the log, then kill.
    tokio::time::sleep(Duration::from_millis(600)).await;
    p.kill9();
    let p = Process::start(dir.path(), &args);
    let c = p.client();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.received().await.len(),
        1,
        "the retry waits for its due time, not the restart"
    );
    let got = rx.wait_for(2).await;
    assert_eq!(got[1]["answer"], "ok");
    let a = wait_attempts(&c, &id, 2).await;
    assert_eq!(
        (a[0]["attempt"].clone(), a[0]["outcome"].clone()),
        (json!(2), json!("delivered")),
        "{a:?}"
    );
    drop(p);
}
