//! Sources (edge gateways) end to end: webhooks signed by the real Standard Webhooks and Svix
//! libraries, GitHub- and Stripe-style signatures as their documentation specifies, replays,
//! tampering, expiry, wrong secrets and bad input refused with nothing appended, and the
//! definitions kept across a restart.

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Client, Server};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Headers a real library signs `body` with; `None` without the test venv (outside CI only).
pub fn signed(
    library: &str,
    secret: &str,
    msg_id: &str,
    ts: i64,
    body: &str,
) -> Option<Vec<(String, String)>> {
    let out = crate::harness::run_client(
        "sign_webhook.py",
        &[library, secret, msg_id, &ts.to_string()],
        body,
    )?;
    let headers: serde_json::Map<String, Value> = serde_json::from_slice(&out).unwrap();
    Some(
        headers
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap().to_owned()))
            .collect(),
    )
}

async fn hook(
    url: &str,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn events(c: &Client, topic: &str) -> Vec<Value> {
    c.read_all(topic, 0, 0).await
}

async fn source(c: &Client, body: Value) -> Value {
    let (st, v) = c.post("/v1/sources", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

#[tokio::test]
async fn standard_webhooks_from_the_real_libraries_land_verified_once() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("payments", 1).await;
    let v = source(
        &c,
        json!({"name": "sw", "topic": "payments",
               "config": {"scheme": "standard-webhooks", "secret": SECRET, "tolerance": "5m",
                          "event_type": "/type", "key": "/data/customer"}}),
    )
    .await;
    assert_eq!(v["url"], "/hooks/default/sw");
    assert_eq!(v["component"], "webhook-gateway");
    assert_ne!(v["config"]["secret"], SECRET, "secrets are never shown");

    let body = r#"{"type": "invoice.paid", "data": {"customer": "cus_1", "amount": 42}}"#;
    let ts = now();
    let Some(headers) = signed("standardwebhooks", SECRET, "msg_1", ts, body) else {
        return;
    };
    let (st, v) = hook(&s.url, "/hooks/default/sw", &headers, body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["results"][0]["offset"].is_u64(), "{v}");
    let got = events(&c, "payments").await;
    assert_eq!(got.len(), 1);
    let e = &got[0]["event"];
    assert_eq!(e["event_id"], "msg_1", "{e}");
    assert_eq!(e["event_type"], "invoice.paid");
    assert_eq!(got[0]["key"], "cus_1", "{}", got[0]);
    assert_eq!(e["payload"]["data"]["amount"], 42);
    assert_eq!(e["source"], "/sources/sw");

    // A replay of the same delivery: answered as a duplicate, nothing appended.
    let (st, v) = hook(&s.url, "/hooks/default/sw", &headers, body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["results"][0]["duplicate"], true, "{v}");

    // Svix's library (svix-* headers) is a Standard Webhooks sender too.
    let headers = signed("svix", SECRET, "msg_2", now(), body).unwrap();
    let (st, v) = hook(&s.url, "/hooks/default/sw", &headers, body).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Refused, each with nothing appended: tampered, expired, signed with another secret.
    let good = signed("standardwebhooks", SECRET, "msg_3", now(), body).unwrap();
    let tampered = body.replace("42", "4200");
    let expired = signed("standardwebhooks", SECRET, "msg_4", now() - 600, body).unwrap();
    let other = signed(
        "standardwebhooks",
        "whsec_dGVzdHRlc3R0ZXN0",
        "msg_5",
        now(),
        body,
    )
    .unwrap();
    for (case, headers, body, code) in [
        ("tampered", &good, tampered.as_str(), "bad-signature"),
        ("expired", &expired, body, "stale-timestamp"),
        ("wrong secret", &other, body, "bad-signature"),
        ("unsigned", &vec![], body, "missing-signature"),
    ] {
        let (st, v) = hook(&s.url, "/hooks/default/sw", headers, body).await;
        assert_eq!(
            (st, v["error_code"].clone()),
            (StatusCode::UNAUTHORIZED, json!(40102)),
            "{case}: {v}"
        );
        assert!(
            v["message"].as_str().unwrap().starts_with(code),
            "{case}: {v}"
        );
    }
    // A duplicated signature header is a bad request.
    let mut dup = good.clone();
    dup.push(("webhook-signature".into(), "v1,AAAA".into()));
    let (st, v) = hook(&s.url, "/hooks/default/sw", &dup, body).await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::BAD_REQUEST, json!(40003)),
        "{v}"
    );
    assert_eq!(
        events(&c, "payments").await.len(),
        2,
        "msg_1 and msg_2 only"
    );

    // With an API key, at /v1/sources/{name}/hooks: verified all the same.
    let headers = signed("standardwebhooks", SECRET, "msg_6", now(), body).unwrap();
    let mut req = c
        .http
        .post(format!("{}/v1/sources/sw/hooks", s.url))
        .bearer_auth(&c.key)
        .body(body.to_owned());
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(events(&c, "payments").await.len(), 3);
    s.stop().await;
}

fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn github_and_stripe_signatures_as_documented_and_sources_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(crate::harness::options(dir.path())).await;
    let c = s.client();
    c.create_topic("repo-events", 1).await;
    c.create_topic("payments", 1).await;
    source(
        &c,
        json!({"name": "gh", "topic": "repo-events",
        "config": {"scheme": "github", "secret": "It's a Secret to Everybody"}}),
    )
    .await;
    source(
        &c,
        json!({"name": "stripe", "topic": "payments",
        "config": {"scheme": "stripe", "secrets": ["whsec_old", "whsec_new"],
                   "key": "/data/object/customer"}}),
    )
    .await;

    // GitHub: X-Hub-Signature-256 = sha256=HMAC-SHA256(secret, body), hex.
    let body = r#"{"ref": "refs/heads/main", "repository": {"full_name": "acme/api"}}"#;
    let sig = format!(
        "sha256={}",
        hmac_hex(b"It's a Secret to Everybody", body.as_bytes())
    );
    let gh = vec![
        ("X-Hub-Signature-256".to_owned(), sig),
        ("X-GitHub-Event".to_owned(), "push".to_owned()),
        ("X-GitHub-Delivery".to_owned(), "d-1".to_owned()),
    ];
    let (st, v) = hook(&s.url, "/hooks/default/gh", &gh, body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let e = &events(&c, "repo-events").await[0]["event"];
    assert_eq!(
        (e["event_type"].as_str(), e["event_id"].as_str()),
        (Some("push"), Some("d-1"))
    );

    // Stripe: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<body>"); the second (rotated-in) secret.
    let body =
        r#"{"id": "evt_9", "type": "charge.succeeded", "data": {"object": {"customer": "cus_7"}}}"#;
    let t = now();
    let v1 = hmac_hex(b"whsec_new", format!("{t}.{body}").as_bytes());
    let stripe = vec![("Stripe-Signature".to_owned(), format!("t={t},v1={v1}"))];
    let (st, v) = hook(&s.url, "/hooks/default/stripe", &stripe, body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let stale = vec![(
        "Stripe-Signature".to_owned(),
        format!("t={},v1={v1}", t - 3600),
    )];
    let (st, _) = hook(&s.url, "/hooks/default/stripe", &stale, body).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Bad definitions are refused with the reason; unknown sources are 404.
    for (bad, why) in [
        (
            json!({"name": "x", "topic": "payments", "config": {"scheme": "nope", "secret": "s"}}),
            "scheme",
        ),
        (
            json!({"name": "x", "topic": "payments", "component": "validate", "config": {}}),
            "ingress",
        ),
        (
            json!({"name": "x", "topic": "missing", "config": {"scheme": "github", "secret": "s"}}),
            "missing",
        ),
        (
            json!({"name": "bad name", "topic": "payments", "config": {"scheme": "github", "secret": "s"}}),
            "name",
        ),
    ] {
        let (st, v) = c.post("/v1/sources", bad).await;
        assert!(st.is_client_error(), "{st} {v}");
        assert!(v["message"].as_str().unwrap().contains(why), "{why}: {v}");
    }
    let (st, v) = hook(&s.url, "/hooks/default/nope", &[], "{}").await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40410))
    );
    let (st, _) = hook(&s.url, "/hooks/nobody/gh", &gh, "{}").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A body over 1 MiB is refused before the component runs.
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(1 << 20));
    let (st, v) = hook(&s.url, "/hooks/default/gh", &gh, &big).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");

    // Kept across a restart, and still verifying (a GitHub delivery seen before is a duplicate).
    s.stop().await;
    let s = Server::start_with(crate::harness::options(dir.path())).await;
    let c = s.client();
    let (st, v) = c.get("/v1/sources").await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<&str> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gh", "stripe"]);
    let (st, v) = hook(
        &s.url,
        "/hooks/default/gh",
        &gh,
        r#"{"ref": "refs/heads/main", "repository": {"full_name": "acme/api"}}"#,
    )
    .await;
    assert_eq!(
        (st, v["results"][0]["duplicate"].clone()),
        (StatusCode::OK, json!(true)),
        "{v}"
    );
    let (st, _) = c.send(Method::DELETE, "/v1/sources/gh", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = hook(&s.url, "/hooks/default/gh", &gh, "{}").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn the_abuse_protection_handshake_on_both_sides() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("inbox", 1).await;
    c.create_topic("outbox", 1).await;
    // Sluice as the receiver: a source grants the origins it lists.
    source(
        &c,
        json!({"name": "guarded", "topic": "inbox", "allowed_origins": ["eventemitter.example.com"],
               "allowed_rate": 120, "config": {"scheme": "api-key", "secret": "k"}}),
    )
    .await;
    let options = |origin: Option<&str>| {
        let mut req = reqwest::Client::new()
            .request(Method::OPTIONS, format!("{}/hooks/default/guarded", s.url));
        if let Some(o) = origin {
            req = req.header("WebHook-Request-Origin", o);
        }
        req.send()
    };
    let r = options(Some("eventemitter.example.com")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["webhook-allowed-origin"],
        "eventemitter.example.com"
    );
    assert_eq!(r.headers()["webhook-allowed-rate"], "120");
    assert_eq!(
        options(Some("evil.example.com")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        options(None).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );

    // Sluice as the sender, to a Sluice source that grants it: the handshake passes, then
    // every delivery lands (its Standard Webhooks signature verified by the source).
    source(
        &c,
        json!({"name": "from-sluice", "topic": "inbox", "allowed_origins": ["sluice"],
               "config": {"scheme": "standard-webhooks", "secret": SECRET}}),
    )
    .await;
    let (st, sub) = c
        .post(
            "/v1/subscriptions",
            json!({"url": format!("{}/hooks/default/from-sluice", s.url), "topics": ["outbox"],
                   "handshake": true, "start": "earliest", "secret": SECRET}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{sub}");
    let (st, v) = c
        .produce(
            "outbox",
            json!({"event_id": "out-1", "event_type": "t", "payload": {"n": 1}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let waited = std::time::Instant::now();
    let got = loop {
        let got = c.read_all("inbox", 0, 0).await;
        if !got.is_empty() {
            break got;
        }
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(20),
            "nothing arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(got[0]["event"]["event_id"], "out-1", "{}", got[0]);

    // To an endpoint that does not grant the handshake: disabled, nothing delivered.
    let (st, sub) = c
        .post(
            "/v1/subscriptions",
            json!({"url": format!("{}/hooks/default/guarded", s.url), "topics": ["outbox"],
                   "handshake": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{sub}");
    let id = sub["id"].as_str().unwrap();
    let waited = std::time::Instant::now();
    loop {
        let (_, v) = c.get(&format!("/v1/subscriptions/{id}")).await;
        if v["enabled"] == false {
            assert!(
                v["disabled_reason"].as_str().unwrap().contains("handshake"),
                "{v}"
            );
            break;
        }
        assert!(waited.elapsed() < std::time::Duration::from_secs(20), "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    s.stop().await;
}
