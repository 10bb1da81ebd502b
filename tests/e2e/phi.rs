//! PHI topics (`dataSensitivity: PHI`): sealed at rest with the tenant's data key (the bytes
//! on disk hold no plaintext, a plain topic's do), read back in the clear, refused with a clear
//! error under a wrong key-encryption key, readable again after a KEK rotation, dead letters
//! sealed too, and delivered only to https endpoints.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Client, Server, options};

const MARKER: &str = "Chalmers-PHI-7c1e";
const PLAIN_MARKER: &str = "plain-marker-55ab";

fn kek(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// Does any file under `dir` contain `needle`?
fn on_disk(dir: &std::path::Path, needle: &str) -> bool {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                return true;
            }
        }
    }
    false
}

async fn create_phi_topic(c: &Client, name: &str) {
    let (st, v) = c
        .post(
            "/v1/topics",
            json!({"name": name, "partitions": 1, "replicationFactor": 1, "config": {},
                   "dataSensitivity": "PHI"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn phi_topics_are_sealed_at_rest_and_need_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.encryption.kek = Some(kek(1));
    let s = Server::start_with(opts.clone()).await;
    let c = s.client();
    create_phi_topic(&c, "labs").await;
    c.create_topic("plain", 1).await;
    let (st, v) = c
        .produce(
            "labs",
            json!([{"key": format!("patient-{MARKER}"), "payload": {"name": MARKER, "n": 1}},
                   {"payload": {"name": MARKER, "n": 2}}]),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    c.produce("plain", json!([{"payload": {"name": PLAIN_MARKER}}]))
        .await;
    let back = c.read_all("labs", 0, 0).await;
    assert_eq!(back.len(), 2);
    assert_eq!(back[0]["event"]["payload"]["name"], MARKER);
    s.stop().await;
    // Flushed and checkpointed: the plain topic's text is on disk, the PHI topic's is not.
    assert!(
        on_disk(dir.path(), PLAIN_MARKER),
        "the check can see plaintext"
    );
    assert!(!on_disk(dir.path(), MARKER), "PHI is stored sealed");

    // Another KEK: the data key does not unwrap, and reads say so.
    let mut wrong = opts.clone();
    wrong.encryption.kek = Some(kek(2));
    let s = Server::start_with(wrong).await;
    let c = s.client();
    let (st, v) = c.get("/v1/topics/labs/partitions/0/events?offset=0").await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["error_code"], 50003, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("none configured unwraps it"),
        "{v}"
    );
    let (_, plain) = c.get("/v1/topics/plain/partitions/0/events?offset=0").await;
    assert!(plain.to_string().contains(PLAIN_MARKER), "{plain}");
    s.stop().await;

    // KEK rotation: the new one current, the old one previous; then the new one alone.
    let mut rotating = opts.clone();
    rotating.encryption.kek = Some(kek(2));
    rotating.encryption.previous_keks = vec![kek(1)];
    let s = Server::start_with(rotating).await;
    assert_eq!(s.client().read_all("labs", 0, 0).await.len(), 2);
    s.stop().await;
    let mut rotated = opts.clone();
    rotated.encryption.kek = Some(kek(2));
    let s = Server::start_with(rotated).await;
    let c = s.client();
    let back = c.read_all("labs", 0, 0).await;
    assert_eq!(
        back[1]["event"]["payload"]["n"], 2,
        "rewrapped by the new KEK"
    );
    let (st, _) = c
        .produce("labs", json!([{"payload": {"name": MARKER, "n": 3}}]))
        .await;
    assert_eq!(st, StatusCode::OK);
    // Data-key rotation: a new key seals from now on; the old one still opens what it sealed.
    let (_, keys) = c.get("/v1/data-keys").await;
    assert_eq!(keys, json!({"data_keys": [1], "sealing": 1}));
    let (st, keys) = c.post("/v1/data-keys/rotate", json!(null)).await;
    assert_eq!(
        (st, keys),
        (StatusCode::OK, json!({"data_keys": [1, 2], "sealing": 2}))
    );
    let (st, _) = c
        .produce("labs", json!([{"payload": {"name": MARKER, "n": 4}}]))
        .await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
    assert!(!on_disk(dir.path(), MARKER));
    let mut rotated = opts.clone();
    rotated.encryption.kek = Some(kek(2));
    let s = Server::start_with(rotated).await;
    let back = s.client().read_all("labs", 0, 0).await;
    let ns: Vec<Value> = back
        .iter()
        .map(|e| e["event"]["payload"]["n"].clone())
        .collect();
    assert_eq!(ns, [json!(1), json!(2), json!(3), json!(4)]);
    s.stop().await;
}

#[tokio::test]
async fn phi_is_delivered_to_https_endpoints_only() {
    let s = Server::start().await;
    let c = s.client();
    create_phi_topic(&c, "labs").await;
    let (st, v) = c
        .post(
            "/v1/subscriptions",
            json!({"url": "http://hooks.example.org/in", "topics": ["labs"]}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["message"].as_str().unwrap().contains("https"), "{v}");
    // The tenant's FHIR topic, PHI: a Subscription's http endpoint is refused.
    create_phi_topic(&c, "fhir.resources").await;
    let topic = json!({"resourceType": "SubscriptionTopic", "url": "https://x/labs", "status": "active",
                       "resourceTrigger": [{"resource": "Observation", "supportedInteraction": ["create"]}]});
    let fhir = |body: Value| {
        let c = c.clone();
        async move {
            let t = body["resourceType"].as_str().unwrap().to_owned();
            let r = c
                .http
                .request(Method::POST, format!("{}/fhir/default/{t}", c.url))
                .bearer_auth(&c.key)
                .header("content-type", "application/fhir+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (st, v) = fhir(topic).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let sub = |endpoint: &str| {
        json!({"resourceType": "Subscription", "status": "requested", "topic": "https://x/labs",
               "channelType": {"code": "rest-hook"}, "endpoint": endpoint, "content": "full-resource"})
    };
    let (st, v) = fhir(sub("http://ehr.example/hook")).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["issue"][0]["code"], "security", "{v}");
    assert_eq!(v["issue"][0]["expression"][0], "Subscription.endpoint");
    let (st, v) = fhir(sub("https://ehr.example/hook")).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn a_topic_may_require_redaction_on_every_way_out_but_for_phi_keys() {
    let Some(rx) = crate::harness::Receiver::start() else {
        return;
    };
    rx.control(json!({"verify": false})).await;
    let s = Server::start().await;
    let admin = s.client();
    // A component of the wrong kind is refused when the topic is created.
    let (st, v) = admin
        .post(
            "/v1/topics",
            json!({"name": "bad", "partitions": 1, "replicationFactor": 1,
                   "config": {"redaction.component": "validate"}}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = admin
        .post(
            "/v1/topics",
            json!({"name": "labs", "partitions": 1, "replicationFactor": 1, "dataSensitivity": "PHI",
                   "config": {"redaction.component": "redact-phi",
                              "redaction.config": {"keys": ["name"]}}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, sub) = admin
        .post(
            "/v1/subscriptions",
            json!({"url": format!("{}/labs", rx.url), "topics": ["labs"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{sub}");
    let (st, v) = admin
        .produce("labs", json!([{"payload": {"name": MARKER, "n": 1}}]))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let key = |scopes: Value| {
        let admin = admin.clone();
        async move {
            let (st, v) = admin.post("/v1/keys", json!({ "scopes": scopes })).await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
            admin.with_key(v["key"].as_str().unwrap())
        }
    };
    let reader = key(json!([{"role": "consume", "topics": "labs"}])).await;
    let clinician =
        key(json!([{"role": "consume", "topics": "labs"}, {"role": "phi", "topics": "labs"}]))
            .await;
    let name = |events: Vec<Value>| events[0]["event"]["payload"]["name"].clone();
    assert_eq!(
        name(admin.read_all("labs", 0, 0).await),
        MARKER,
        "admin implies phi"
    );
    assert_eq!(name(clinician.read_all("labs", 0, 0).await), MARKER);
    assert_eq!(name(reader.read_all("labs", 0, 0).await), "***", "redacted");
    assert_eq!(
        reader.read_all("labs", 0, 0).await[0]["event"]["payload"]["n"],
        1
    );
    // A consumer group through the REST Proxy: redacted too.
    let (st, inst) = reader
        .post(
            "/consumers/g",
            json!({"format": "json", "auto.offset.reset": "earliest"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{inst}");
    let base = format!(
        "/consumers/g/instances/{}",
        inst["instance_id"].as_str().unwrap()
    );
    let (st, v) = reader
        .post(&format!("{base}/subscription"), json!({"topics": ["labs"]}))
        .await;
    assert!(st.is_success(), "{v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let records = loop {
        let r = reader
            .http
            .get(format!("{}{base}/records?timeout=500", reader.url))
            .bearer_auth(&reader.key)
            .header("accept", "application/vnd.kafka.json.v2+json")
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        if v.as_array().is_some_and(|a| !a.is_empty()) || std::time::Instant::now() > deadline {
            break v;
        }
    };
    assert!(records.to_string().contains("***"), "{records}");
    assert!(!records.to_string().contains(MARKER), "{records}");
    // A stream (SSE): redacted.
    let mut resp = reader
        .http
        .get(format!(
            "{}/v1/topics/labs/stream?from=earliest",
            reader.url
        ))
        .bearer_auth(&reader.key)
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while !text.contains("\"n\":1") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), resp.chunk())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("***") && !text.contains(MARKER), "{text}");
    drop(resp);
    // A webhook delivery: redacted.
    let got = rx.wait_for(1).await;
    assert!(got[0]["body"].to_string().contains("***"), "{}", got[0]);
    assert!(!got[0]["body"].to_string().contains(MARKER), "{}", got[0]);
    s.stop().await;
}

#[tokio::test]
async fn full_resource_notifications_of_a_redacted_fhir_topic_are_redacted() {
    let Some(rx) = crate::harness::Receiver::start() else {
        return;
    };
    rx.control(json!({"verify": false})).await;
    let s = Server::start().await;
    let c = s.client();
    let (st, v) = c
        .post(
            "/v1/topics",
            json!({"name": "fhir.resources", "partitions": 1, "replicationFactor": 1, "dataSensitivity": "PHI",
                   "config": {"redaction.component": "redact-phi", "redaction.config": {"keys": ["family"]}}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let post = |body: Value| {
        let c = c.clone();
        async move {
            let t = body["resourceType"].as_str().unwrap().to_owned();
            let r = c
                .http
                .post(format!("{}/fhir/default/{t}", c.url))
                .bearer_auth(&c.key)
                .header("content-type", "application/fhir+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
        }
    };
    post(
        json!({"resourceType": "SubscriptionTopic", "url": "https://x/patients", "status": "active",
                "resourceTrigger": [{"resource": "Patient", "supportedInteraction": ["create"]}]}),
    )
    .await;
    post(
        json!({"resourceType": "Subscription", "status": "requested", "topic": "https://x/patients",
                "channelType": {"code": "rest-hook"}, "endpoint": format!("{}/fhir", rx.url),
                "content": "full-resource"}),
    )
    .await;
    post(json!({"resourceType": "Patient", "name": [{"family": MARKER, "given": ["Jane"]}]})).await;
    let got = rx.wait_for(2).await;
    let event = &got[1]["body"];
    assert_eq!(
        event["entry"][1]["resource"]["resourceType"], "Patient",
        "{event}"
    );
    assert_eq!(
        event["entry"][1]["resource"]["name"][0]["family"], "***",
        "{event}"
    );
    assert!(!event.to_string().contains(MARKER));
    s.stop().await;
}
