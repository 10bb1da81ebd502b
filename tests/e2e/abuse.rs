//! The adversarial suite: attacks an ordinary API key could make, each against the real binary,
//! each answered with its documented bound while the server keeps serving others.
//!
//! Every test states its bounds: the answer (status and `error_code`), that nothing was
//! appended, the server's peak memory (`VmHWM` in `/proc/<pid>/status`), and that `/healthz` and
//! another tenant's produce answer within `SERVING` while the attack runs.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Client, Process};

/// How long `/healthz` and another tenant's produce may take while an attack runs.
const SERVING: Duration = Duration::from_secs(5);

/// The server's peak resident memory so far, in MiB.
fn peak_mib(p: &Process) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.child.id())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb / 1024
}

/// A second tenant with a topic of its own, and a client with its admin key.
async fn bystander(admin: &Client) -> Client {
    let other = tenant(admin, "bystander").await;
    other.create_topic("steady", 1).await;
    other
}

/// A new tenant, and a client with its first admin key.
async fn tenant(system: &Client, name: &str) -> Client {
    let (s, v) = system.post("/v1/tenants", json!({ "name": name })).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    system.with_key(v["admin_key"]["key"].as_str().unwrap())
}

/// While `attack` runs, `/healthz` and the bystander's produce keep answering within
/// `SERVING`; returns what the attack returned.
async fn while_serving<T>(
    url: &str,
    other: &Client,
    attack: impl std::future::Future<Output = T>,
) -> T {
    let done = std::sync::atomic::AtomicBool::new(false);
    let probe = async {
        let http = reqwest::Client::new();
        let mut probes = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let health = tokio::time::timeout(SERVING, http.get(format!("{url}/healthz")).send())
                .await
                .expect("/healthz answers while the attack runs")
                .unwrap();
            assert_eq!(health.status(), StatusCode::OK);
            let (s, v) = tokio::time::timeout(
                SERVING,
                other.produce(
                    "steady",
                    json!({"event_type": "t", "payload": {"n": probes}}),
                ),
            )
            .await
            .expect("another tenant's produce answers while the attack runs");
            assert_eq!(s, StatusCode::OK, "{v}");
            probes += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        probes
    };
    let attacked = async {
        let out = attack.await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    };
    let (out, probes) = tokio::join!(attacked, probe);
    assert!(probes >= 1, "the probe ran");
    out
}

/// Produce one event and keep the whole response (its headers too).
async fn produce_response(c: &Client, topic: &str, event: Value) -> reqwest::Response {
    c.http
        .post(format!("{}/v1/topics/{topic}/events", c.url))
        .bearer_auth(&c.key)
        .json(&event)
        .send()
        .await
        .unwrap()
}

/// Events in every partition of `topic`.
async fn end_offset(c: &Client, topic: &str) -> u64 {
    let (s, v) = c.get(&format!("/v1/topics/{topic}/offsets")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_watermark"].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn a_60_mb_request_of_tiny_items_is_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &[]);
    let c = p.client();
    c.create_topic("flood", 3).await;
    let other = bystander(&c).await;
    // 30 million one-character items: once 14 GB of server memory.
    let mut body = Vec::with_capacity(60 << 20);
    body.push(b'[');
    for _ in 0..(30 << 20) - 1 {
        body.extend_from_slice(b"1,");
    }
    body.extend_from_slice(b"1]");
    assert!(body.len() > 60_000_000);
    let (status, answer) = while_serving(&p.url, &other, async {
        c.raw(
            Method::POST,
            "/v1/topics/flood/events",
            "application/json",
            body,
        )
        .await
    })
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["error_code"], 41302, "{answer}");
    assert_eq!(end_offset(&c, "flood").await, 0, "nothing appended");
    // The server stops reading once the count passes the limit (within the first 20 KB).
    let peak = peak_mib(&p);
    eprintln!("server peak memory through the flood: {peak} MiB");
    assert!(peak < 400, "peak memory {peak} MiB");

    // The same as NDJSON lines and through the REST Proxy.
    let lines = "{\"event_type\":\"t\"}\n".repeat(10_001);
    let (s, v) = c
        .raw(
            Method::POST,
            "/v1/topics/flood/events",
            "application/x-ndjson",
            lines.into_bytes(),
        )
        .await;
    assert_eq!(
        (s, v["error_code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!(41302))
    );
    let records: Vec<Value> = (0..10_001).map(|i| json!({"value": {"i": i}})).collect();
    let (s, v) = c
        .raw(
            Method::POST,
            "/topics/flood",
            "application/vnd.kafka.json.v2+json",
            serde_json::to_vec(&json!({ "records": records })).unwrap(),
        )
        .await;
    assert_eq!(
        (s, v["error_code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!(41302)),
        "{v}"
    );
    assert_eq!(end_offset(&c, "flood").await, 0, "nothing appended");
    p.kill9();
}

#[tokio::test]
async fn forged_headers_and_oversized_ids_are_refused_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &[]);
    let c = p.client();
    c.create_topic("orders", 1).await;
    let forged = json!([
        {"event_type": "a", "headers": {"ce_type": "admin.granted"}},
        {"event_type": "a", "headers": {"sluice_key_id": "someone-else"}},
        {"event_type": "a", "headers": {"Content-Type": "application/avro"}},
        {"event_type": "a", "event_id": "x".repeat(257)},
        {"event_type": "a", "headers": (0..65).map(|i| (format!("h{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()},
        {"event_type": "a", "headers": {"big": "v".repeat(16 << 10)}},
    ]);
    let (s, v) = c.produce("orders", forged).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["error_code"], 42201, "{r}");
    }
    assert_eq!(end_offset(&c, "orders").await, 0, "nothing appended");
    // One good event among them is appended, the others refused: the answer says which.
    let (s, v) = c
        .produce(
            "orders",
            json!([{"event_type": "a", "headers": {"traceparent": "00-1"}},
                   {"event_type": "a", "headers": {"ce_source": "forged"}}]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"][0]["offset"], 0);
    assert_eq!(v["results"][1]["error_code"], 42201);
    let events = c.read_all("orders", 0, 0).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["headers"]["sluice_key_id"].as_str().map(str::len),
        Some(16)
    );
    p.kill9();
}

/// Nested combinators over references, a few KB: a naive check explores every path.
fn nested_schema(depth: usize, leaf: &str) -> String {
    let mut defs = serde_json::Map::new();
    for i in 0..depth {
        let next = format!("#/definitions/d{}", i + 1);
        defs.insert(
            format!("d{i}"),
            json!({"anyOf": [
                {"$ref": next},
                {"type": "object", "properties": {"a": {"$ref": next}, "b": {"$ref": next}}},
                {"type": "array", "items": {"$ref": next}}
            ]}),
        );
    }
    defs.insert(format!("d{depth}"), json!({ "type": leaf }));
    json!({"$ref": "#/definitions/d0", "definitions": defs}).to_string()
}

#[tokio::test]
async fn a_schema_built_to_explode_the_compatibility_check_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    // A small budget, so the refusal is what is tested, whatever the machine's speed.
    std::fs::write(&config, "[registry]\ncheck_steps = 200\n").unwrap();
    let p = Process::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let c = p.client();
    let other = bystander(&c).await;
    let register = |schema: String| {
        let c = c.clone();
        async move {
            c.post(
                "/registry/subjects/bomb-value/versions",
                json!({"schemaType": "JSON", "schema": schema}),
            )
            .await
        }
    };
    let (s, v) = register(nested_schema(16, "integer")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = while_serving(&p.url, &other, async {
        c.post(
            "/registry/compatibility/subjects/bomb-value/versions/latest",
            json!({"schemaType": "JSON", "schema": nested_schema(16, "string")}),
        )
        .await
    })
    .await;
    assert_eq!(
        (s, v["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42207)),
        "{v}"
    );
    // Registering it is refused the same way, and changes nothing.
    let (s, v) = register(nested_schema(16, "string")).await;
    assert_eq!(
        (s, v["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42207)),
        "{v}"
    );
    let (s, v) = c.get("/registry/subjects/bomb-value/versions").await;
    assert_eq!((s, v), (StatusCode::OK, json!([1])));
    p.kill9();
}

/// `sluice serve` with a configuration file written for the test.
fn start_configured(dir: &std::path::Path, toml: &str) -> Process {
    let config = dir.join("sluice.toml");
    std::fs::write(&config, toml).unwrap();
    Process::start(&dir.join("data"), &["--config", config.to_str().unwrap()])
}

#[tokio::test]
async fn slow_headers_are_cut_off_and_connections_are_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let p = start_configured(
        dir.path(),
        "[http]\nheader_read_timeout = \"1s\"\nmax_connections = 4\n",
    );
    let addr = p.url.trim_start_matches("http://").to_owned();
    // Four connections that never finish their request head take every slot...
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /v1/topics/x/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    // ... until the header timeout closes them, and the next client is served.
    let health = tokio::time::timeout(SERVING, reqwest::get(format!("{}/healthz", p.url)))
        .await
        .expect("served once the slow connections are cut")
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    for mut s in slow {
        let mut buf = Vec::new();
        // Closed by the server (an error answer at most, then end of stream).
        tokio::time::timeout(SERVING, s.read_to_end(&mut buf))
            .await
            .expect("the slow connection was closed")
            .ok();
    }
    p.kill9();
}

#[tokio::test]
async fn sigterm_with_requests_in_flight_stops_within_the_grace() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let p = start_configured(dir.path(), "[http]\nshutdown_grace = \"1s\"\n");
    let c = p.client();
    c.create_topic("quiet", 1).await;
    // A long poll at the tail (60 s), and an upload that stalls half-way.
    let poll = {
        let c = c.clone();
        tokio::spawn(async move {
            c.get("/v1/topics/quiet/partitions/0/events?offset=0&wait_ms=60000")
                .await
        })
    };
    let addr = p.url.trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/topics/quiet/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n[",
        p.admin_key()
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // `terminate` fails the test if the process is still alive 20 s after SIGTERM.
    let status = tokio::task::spawn_blocking(move || p.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The long poll was answered (empty) when the server began to stop, not cut off.
    let (s, v) = poll.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["events"], json!([]));
    drop(stalled);
}

/// A key with `scopes`, made by `admin`.
async fn scoped_key(admin: &Client, scopes: &[(&str, &str)]) -> Client {
    let scopes: Vec<Value> = scopes
        .iter()
        .map(|(role, topics)| json!({"role": role, "topics": topics}))
        .collect();
    let (s, v) = admin.post("/v1/keys", json!({ "scopes": scopes })).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    admin.with_key(v["key"].as_str().unwrap())
}

#[tokio::test]
async fn a_key_scoped_to_one_topic_is_refused_on_every_other_path() {
    let s = crate::harness::Server::start().await;
    let admin = s.client();
    for t in ["mine", "theirs", "table"] {
        admin.create_topic(t, 1).await;
    }
    let me = scoped_key(&admin, &[("admin", "mine")]).await;
    let forbidden = |(status, body): (StatusCode, Value)| {
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error_code"], 40301, "{body}");
    };

    // Produce, fetch, stream, offsets of another topic.
    forbidden(me.produce("theirs", json!({"event_type": "t"})).await);
    forbidden(me.get("/v1/topics/theirs/partitions/0/events").await);
    forbidden(me.get("/v1/topics/theirs/offsets").await);
    forbidden(me.get("/v1/topics/theirs/stream?from=earliest").await);
    assert_eq!(
        me.produce("mine", json!({"event_type": "t"})).await.0,
        StatusCode::OK
    );

    // A pipeline on its own topic that routes or dead-letters elsewhere, or reads a table.
    let pipeline = |stage: Value| json!({ "pipeline": [stage] });
    let routes =
        json!({"component": "route", "config": {"rules": [{"type": "*", "topic": "theirs"}]}});
    forbidden(
        me.send(Method::PATCH, "/v1/topics/mine", Some(pipeline(routes)))
            .await,
    );
    let dlq = json!({"component": "route", "config": {"rules": [{"type": "*", "dlq": "no", "dlqTopic": "theirs"}]}});
    forbidden(
        me.send(Method::PATCH, "/v1/topics/mine", Some(pipeline(dlq)))
            .await,
    );
    let lookup = json!({"component": "enrich", "config": {"lookups": [
        {"table": "table", "key": "/payload/id", "into": "/payload/found"}]}});
    forbidden(
        me.send(Method::PATCH, "/v1/topics/mine", Some(pipeline(lookup)))
            .await,
    );
    // Allowed once the key may write there: the check is the scope, not the shape.
    let both = scoped_key(&admin, &[("admin", "mine"), ("produce", "theirs")]).await;
    let routes =
        json!({"component": "route", "config": {"rules": [{"type": "*", "topic": "theirs"}]}});
    let (status, body) = both
        .send(Method::PATCH, "/v1/topics/mine", Some(pipeline(routes)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Registry subjects through their topics.
    let (status, body) = admin
        .post(
            "/registry/subjects/theirs-value/versions",
            json!({"schemaType": "JSON", "schema": "{\"type\":\"object\"}"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_u64().unwrap();
    let (_, subjects) = me.get("/registry/subjects").await;
    assert_eq!(subjects, json!([]), "another topic's subject is not listed");
    forbidden(me.get("/registry/subjects/theirs-value/versions").await);
    forbidden(
        me.get("/registry/subjects/theirs-value/versions/latest")
            .await,
    );
    forbidden(me.get(&format!("/registry/schemas/ids/{id}")).await);
    forbidden(
        me.post(
            "/registry/compatibility/subjects/theirs-value/versions/latest",
            json!({"schemaType": "JSON", "schema": "{}"}),
        )
        .await,
    );

    // Subscriptions on another topic.
    forbidden(
        me.post(
            "/v1/subscriptions",
            json!({"url": "https://hooks.example.com/x", "topics": ["theirs"]}),
        )
        .await,
    );

    // REST Proxy consumer instances belong to the key that made them.
    let (status, body) = admin
        .raw(
            Method::POST,
            "/consumers/shared",
            "application/vnd.kafka.v2+json",
            b"{\"name\": \"admins\"}".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let other_key = scoped_key(&admin, &[("consume", "*")]).await;
    let instance = "/consumers/shared/instances/admins";
    forbidden(other_key.get(&format!("{instance}/subscription")).await);
    forbidden(other_key.get(&format!("{instance}/records")).await);
    forbidden(other_key.send(Method::DELETE, instance, None).await);
    // Its creator (an admin) still may.
    let (status, _) = admin.get(&format!("{instance}/subscription")).await;
    assert_eq!(status, StatusCode::OK);

    // Another key's event ids do not suppress this key's events.
    let producer = scoped_key(&admin, &[("produce", "mine")]).await;
    let event = json!({"event_type": "t", "event_id": "same-id"});
    let (_, first) = me.produce("mine", event.clone()).await;
    let (_, second) = producer.produce("mine", event.clone()).await;
    let (_, again) = me.produce("mine", event).await;
    assert!(first["results"][0].get("duplicate").is_none(), "{first}");
    assert!(second["results"][0].get("duplicate").is_none(), "{second}");
    assert_eq!(again["results"][0]["duplicate"], true, "{again}");
    s.stop().await;
}

#[tokio::test]
async fn under_the_disk_reserve_new_events_are_refused_and_readiness_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // A reserve larger than any disk: the state a full disk would bring, without filling one.
    let p = start_configured(dir.path(), "[disk]\nreserve_bytes = 18446744073709551615\n");
    let c = p.client();
    c.create_topic("orders", 1).await;
    let resp = produce_response(&c, "orders", json!({"event_type": "t"})).await;
    assert_eq!(resp.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(resp.headers()["retry-after"], "30");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error_code"], 50701, "{body}");
    assert_eq!(end_offset(&c, "orders").await, 0, "nothing appended");
    // Reads, admin and health go on.
    assert_eq!(c.get("/v1/topics/orders").await.0, StatusCode::OK);
    let ready = reqwest::get(format!("{}/readyz", p.url)).await.unwrap();
    assert_eq!(ready.status(), StatusCode::INSUFFICIENT_STORAGE);
    let ready: Value = ready.json().await.unwrap();
    assert!(ready["disk"]["free_bytes"].as_u64().unwrap() > 0, "{ready}");
    assert_eq!(ready["disk"]["reserve_bytes"], json!(u64::MAX));
    let metrics = c.metrics_text().await;
    assert!(metrics.contains("sluice_disk_free_bytes "), "{metrics}");
    assert!(metrics.contains(&format!("sluice_disk_reserve_bytes {}", u64::MAX)));
    p.kill9();

    // The default reserve (1 GiB) on this machine's disk: ready, and produce works.
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &[]);
    let ready: Value = reqwest::get(format!("{}/readyz", p.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["disk"]["reserve_bytes"], 1 << 30);
    p.kill9();
}

#[tokio::test]
async fn tls_on_the_listener_serves_https_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    let p = Process::start(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ],
    );
    assert!(p.url.starts_with("https://127.0.0.1:"), "{}", p.url);
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let c = Client {
        http,
        url: p.url.clone(),
        key: p.admin_key(),
    };
    c.create_topic("secure", 1).await;
    let (s, v) = c.produce("secure", json!({"event_type": "t"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(c.read_all("secure", 0, 0).await.len(), 1);
    // A client that does not trust the certificate is refused by its own TLS check; plain HTTP
    // on the TLS port gets no answer.
    assert!(reqwest::get(format!("{}/healthz", p.url)).await.is_err());
    let plain = p.url.replacen("https://", "http://", 1);
    assert!(reqwest::get(format!("{plain}/healthz")).await.is_err());
    // A handshake that never comes is cut off like a slow request head (10 s by default);
    // meanwhile others are served.
    let _idle = tokio::net::TcpStream::connect(p.url.trim_start_matches("https://"))
        .await
        .unwrap();
    let health = tokio::time::timeout(SERVING, c.http.get(format!("{}/healthz", p.url)).send())
        .await
        .expect("served beside a stalled handshake")
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    p.kill9();
}

/// A CA and what it issues, for the client-certificate tests.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sluice test client CA");
        let key = rcgen::KeyPair::generate().unwrap();
        TestCa {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// A client certificate and key, as one PEM (what reqwest's identity takes), and the
    /// certificate's SHA-256.
    fn client(&self, name: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            format!("{}\n{}", cert.pem(), key.serialize_pem()),
            sha256_hex(cert.der()),
        )
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn client_certificates_authenticate_as_the_keys_bound_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let ca = TestCa::new();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (cert_file, key_file, ca_file) = (
        file("cert.pem", &server.cert.pem()),
        file("key.pem", &server.signing_key.serialize_pem()),
        file("ca.pem", &ca.issuer.pem()),
    );
    let p = Process::start(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            &cert_file,
            "--tls-key",
            &key_file,
            "--tls-client-ca",
            &ca_file,
        ],
    );
    let server_root = reqwest::Certificate::from_pem(server.cert.pem().as_bytes()).unwrap();
    let https = |identity: Option<&str>| {
        let mut b = reqwest::Client::builder().add_root_certificate(server_root.clone());
        if let Some(pem) = identity {
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    };
    // Clients without a certificate still connect, with their keys.
    let admin = Client {
        http: https(None),
        url: p.url.clone(),
        key: p.admin_key(),
    };
    admin.create_topic("mtls", 1).await;
    let (alice, alice_sha) = ca.client("alice");
    let (bob, bob_sha) = ca.client("bob");
    let colons: Vec<String> = alice_sha
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect();
    let (s, key) = admin
        .post(
            "/v1/keys",
            json!({"scopes": [{"role": "produce", "topics": "mtls"}],
                   "client_cert_sha256": colons.join(":")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{key}");
    assert_eq!(key["client_cert_sha256"], json!(alice_sha), "{key}");
    let produce = |http: reqwest::Client, bearer: Option<String>| {
        let mut req = http
            .post(format!("{}/v1/topics/mtls/events", p.url))
            .json(&json!({"event_type": "signed.in"}));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }
    };

    // Alice's certificate alone is her key: whoami names it, and she may produce.
    let whoami: Value = https(Some(&alice))
        .get(format!("{}/v1/whoami", p.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whoami["key_id"], key["id"], "{whoami}");
    assert_eq!(whoami["client_cert_sha256"], json!(alice_sha));
    let (s, v) = produce(https(Some(&alice)), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Her key's secret works only over a connection presenting her certificate.
    let secret = key["key"].as_str().unwrap().to_owned();
    let (s, v) = produce(https(None), Some(secret.clone())).await;
    assert_eq!(
        (s, v["error_code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(40103)),
        "{v}"
    );
    let (s, v) = produce(https(Some(&bob)), Some(secret.clone())).await;
    assert_eq!(
        (s, v["error_code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(40103)),
        "{v}"
    );
    let (s, v) = produce(https(Some(&alice)), Some(secret)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Bob's certificate is trusted but bound to nothing: 401 naming its fingerprint. The
    // admin binds it (the CLI reads the PEM), and then it works.
    let (s, v) = produce(https(Some(&bob)), None).await;
    assert_eq!(
        (s, v["error_code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(40103)),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains(&bob_sha), "{v}");
    let (s, bob_key) = admin
        .post(
            "/v1/keys",
            json!({"scopes": [{"role": "consume", "topics": "mtls"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{bob_key}");
    let bob_pem = file("bob.pem", &bob);
    let out = std::process::Command::new(crate::harness::binary())
        .args([
            "keys",
            "bind",
            bob_key["id"].as_str().unwrap(),
            "--client-cert",
            &bob_pem,
        ])
        .args(["--url", &p.url, "--key", &admin.key, "--tls-ca", &cert_file])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&bob_sha));
    // Bob reads, through the CLI with his certificate and no key; he may not produce.
    let out = std::process::Command::new(crate::harness::binary())
        .args(["consume", "mtls", "--from-beginning", "--max", "2"])
        .args(["--url", &p.url, "--tls-ca", &cert_file])
        .args(["--tls-client-cert", &bob_pem, "--tls-client-key", &bob_pem])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("signed.in")
            .count(),
        2,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (s, v) = produce(https(Some(&bob)), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // One certificate names one key.
    let (s, v) = admin
        .send(
            Method::PUT,
            &format!("/v1/keys/{}/client-cert", bob_key["id"].as_str().unwrap()),
            Some(json!({"client_cert_sha256": alice_sha})),
        )
        .await;
    assert_eq!(
        (s, v["error_code"].clone()),
        (StatusCode::CONFLICT, json!(40910)),
        "{v}"
    );
    // A certificate from outside the client CA fails the handshake.
    let outsider = rcgen::generate_simple_self_signed(vec!["mallory".into()]).unwrap();
    let outsider = format!(
        "{}\n{}",
        outsider.cert.pem(),
        outsider.signing_key.serialize_pem()
    );
    assert!(
        https(Some(&outsider))
            .get(format!("{}/healthz", p.url))
            .send()
            .await
            .is_err()
    );
    // Revoked, Alice's certificate names no key any more.
    let (s, _) = admin
        .send(
            Method::DELETE,
            &format!("/v1/keys/{}", key["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = produce(https(Some(&alice)), None).await;
    assert_eq!(
        (s, v["error_code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(40103)),
        "{v}"
    );
    p.kill9();

    // Required: a connection without a client certificate is refused in the handshake.
    let p = Process::start(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            &cert_file,
            "--tls-key",
            &key_file,
            "--tls-client-ca",
            &ca_file,
            "--tls-require-client-cert",
        ],
    );
    assert!(
        https(None)
            .get(format!("{}/healthz", p.url))
            .send()
            .await
            .is_err()
    );
    let health = https(Some(&bob))
        .get(format!("{}/healthz", p.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    p.kill9();
}

#[tokio::test]
async fn streams_are_capped_per_key_and_end_when_their_key_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let p = start_configured(dir.path(), "[http]\nmax_streams_per_key = 2\n");
    let admin = p.client();
    admin.create_topic("live", 1).await;
    let reader = scoped_key(&admin, &[("consume", "live")]).await;
    let open = |c: &Client| {
        let req = c
            .http
            .get(format!("{}/v1/topics/live/stream?heartbeat_ms=200", c.url))
            .bearer_auth(&c.key);
        async move { req.send().await.unwrap() }
    };
    let first = open(&reader).await;
    let second = open(&reader).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = open(&reader).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error_code"], 42902, "{body}");
    // Another key is not affected by this key's streams.
    assert_eq!(open(&admin).await.status(), StatusCode::OK);
    // A stream that ends gives its slot back.
    drop(first);
    let again = tokio::time::timeout(SERVING, async {
        loop {
            let r = open(&reader).await;
            if r.status() == StatusCode::OK {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the slot came back");
    // Revoking the key ends its open streams.
    let id = reader.key.split('_').nth(1).unwrap().to_owned();
    let (s, v) = admin
        .send(Method::DELETE, &format!("/v1/keys/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for stream in [second, again] {
        let ended = tokio::time::timeout(SERVING, stream.bytes()).await;
        assert!(ended.is_ok(), "the revoked key's stream ended");
    }
    p.kill9();
}

#[tokio::test]
async fn a_tenant_over_its_quota_gets_429_and_another_tenant_does_not() {
    let s = crate::harness::Server::start().await;
    let system = s.client();
    let other = bystander(&system).await;
    let greedy = tenant(&system, "greedy").await;
    greedy.create_topic("firehose", 1).await;
    let limits = json!({"produce_events_per_s": 100, "fetch_bytes_per_s": 2000});
    let (st, v) = system
        .send(
            Method::PUT,
            "/v1/tenants/greedy/quotas",
            Some(limits.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["quotas"], limits);
    // Only the system key sees or sets quotas.
    let (st, _) = greedy.get("/v1/tenants/greedy/quotas").await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // One request passes whole (a second's worth and more: 20 s of debt at 100/s, so no
    // machine is slow enough to have repaid it by the next request), then the debt is refused
    // with when to retry.
    let batch: Vec<Value> = (0..2100)
        .map(|i| json!({"event_type": "t", "payload": {"i": i}}))
        .collect();
    let (st, v) = greedy.produce("firehose", json!(batch)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let asked = std::time::Instant::now();
    let resp = produce_response(&greedy, "firehose", json!({"event_type": "t"})).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((10..=20).contains(&wait), "Retry-After {wait}");
    // The refusal was held for `[http] throttle_delay` (1 s, within its Retry-After): a client
    // looping on refusals cannot make the server answer thousands a second.
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "{:?}",
        asked.elapsed()
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error_code"], 42903, "{body}");
    assert_eq!(
        end_offset(&greedy, "firehose").await,
        2100,
        "nothing of the refused request"
    );
    // The other tenant is not held back.
    for i in 0..200 {
        let (st, v) = other
            .produce("steady", json!({"event_type": "t", "payload": {"i": i}}))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    // Fetch bytes: the first read passes and is charged; the next waits.
    let (st, _) = greedy
        .get("/v1/topics/firehose/partitions/0/events?offset=0")
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = greedy
        .get("/v1/topics/firehose/partitions/0/events?offset=0")
        .await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, json!(42903)),
        "{v}"
    );
    let metrics = system.metrics_text().await;
    assert!(
        metrics.contains(
            "sluice_quota_throttled_total{tenant=\"greedy\",quota=\"produce_events_per_s\"} 1"
        ),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn changes_and_refusals_are_in_the_tenants_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &[]);
    let admin = p.client();
    admin.create_topic("audited", 1).await;
    let (s, _) = admin.send(Method::DELETE, "/v1/topics/audited", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let reader = scoped_key(&admin, &[("consume", "x")]).await;
    let (s, _) = reader.produce("x", json!({"event_type": "t"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let wrong = admin.with_key(&format!(
        "{}bad",
        admin.key.trim_end_matches(|c: char| c != '_')
    ));
    assert_eq!(wrong.get("/v1/topics").await.0, StatusCode::UNAUTHORIZED);
    // Produce is the data path, not a change: not audited.
    admin.create_topic("data", 1).await;
    assert_eq!(
        admin.produce("data", json!({"event_type": "t"})).await.0,
        StatusCode::OK
    );

    let actions = || async {
        let (s, v) = admin.get("/v1/audit?limit=1000").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r["action"].as_str().unwrap(),
                    r["resource"].as_str().unwrap(),
                    r["status"]
                )
            })
            .collect::<Vec<_>>()
    };
    // Refusals are written in the background: wait for them.
    let mut seen = actions().await;
    for _ in 0..100 {
        if seen.iter().any(|a| a.starts_with("auth.failed")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = actions().await;
    }
    for expected in [
        "POST /v1/topics /v1/topics 201",
        "DELETE /v1/topics/{topic} /v1/topics/audited 204",
        "POST /v1/keys /v1/keys 201",
        "POST /v1/topics/{topic}/events /v1/topics/x/events 403",
        "auth.failed /v1/topics 401",
    ] {
        assert!(
            seen.iter().any(|a| a == expected),
            "{expected} not in {seen:#?}"
        );
    }
    assert!(
        !seen.iter().any(|a| a.contains("/v1/topics/data/events")),
        "{seen:#?}"
    );
    // Only a tenant admin reads it; `sluice audit` prints the same.
    assert_eq!(reader.get("/v1/audit").await.0, StatusCode::FORBIDDEN);
    let out = std::process::Command::new(crate::harness::binary())
        .args(["audit", "--url", &p.url, "--key", &admin.key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("\"action\":\"DELETE /v1/topics/{topic}\""),
        "{printed}"
    );
    p.kill9();
}

#[tokio::test]
async fn a_tenants_sleeping_components_hold_only_its_share_of_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = crate::harness::options(dir.path());
    opts.wasm.call_timeout = Duration::from_secs(2);
    opts.wasm.max_calls_per_tenant = 1;
    let s = crate::harness::Server::start_with(opts).await;
    let c = s.client();
    let other = bystander(&c).await;
    for (client, topics) in [(&c, &["asleep", "quick"][..]), (&other, &["busy"][..])] {
        let (st, v) =
            crate::transforms::upload(client, "hostile", sluice_builtins::testing::HOSTILE).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        for topic in topics {
            let behaviour = if *topic == "asleep" { "sleep" } else { "ok" };
            let (st, v) = client
                .post(
                    "/v1/topics",
                    json!({"name": topic, "partitions": 1, "replicationFactor": 1, "config": {},
                           "pipeline": [{"component": "hostile", "config": {"behaviour": behaviour}}]}),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
        }
    }
    let sleeper = {
        let c = c.clone();
        // Asked again while the probe below holds the tenant's one call at that moment (it is
        // refused then, 429); once it runs, it sleeps in the guest until the deadline.
        tokio::spawn(async move {
            loop {
                let (st, v) = c.produce("asleep", json!({"event_type": "zz"})).await;
                if st != StatusCode::TOO_MANY_REQUESTS {
                    return (st, v);
                }
            }
        })
    };
    // While the sleeping guest holds the tenant's one call, its other pipelines are refused at
    // once with when to retry; nothing is appended.
    let started = std::time::Instant::now();
    let refused = loop {
        let resp = produce_response(&c, "quick", json!({"event_type": "t"})).await;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            break resp;
        }
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the sleeper never ran"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error_code"], 42904, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_calls_per_tenant"),
        "{body}"
    );
    // Another tenant's components run meanwhile.
    let (st, v) = other.produce("busy", json!({"event_type": "t"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = sleeper.await.unwrap();
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::BAD_GATEWAY, json!(50201)),
        "{v}"
    );
    let metrics = c.metrics_text().await;
    assert!(
        metrics.contains(
            r#"sluice_component_errors_total{tenant="default",component="hostile@1",kind="busy"}"#
        ),
        "{metrics}"
    );
    s.stop().await;
}

/// A webhook receiver that answers 200 to everything and counts the requests.
async fn counting_receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut conn = BufReader::new(socket);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    if conn.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if conn.get_mut().write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, count)
}

#[tokio::test]
async fn quotas_bound_what_a_tenant_holds_and_spends() {
    let s = crate::harness::Server::start().await;
    let system = s.client();
    let heavy = tenant(&system, "heavy").await;
    let limits = json!({"storage_bytes": 4000, "max_subscriptions": 1,
                        "component_ms_per_s": 1, "webhook_deliveries_per_s": 2});
    let (st, v) = system
        .send(
            Method::PUT,
            "/v1/tenants/heavy/quotas",
            Some(limits.clone()),
        )
        .await;
    assert_eq!((st, &v["quotas"]), (StatusCode::OK, &limits), "{v}");

    // Subscriptions: one, then refused (no time to wait: only a delete makes room).
    heavy.create_topic("hooks", 1).await;
    let (url, delivered) = counting_receiver().await;
    let (st, v) = heavy
        .post(
            "/v1/subscriptions",
            json!({"url": url, "topics": ["hooks"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = heavy
        .post(
            "/v1/subscriptions",
            json!({"url": url, "topics": ["hooks"]}),
        )
        .await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, json!(42903)),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("max_subscriptions"),
        "{v}"
    );

    // Deliveries: ten events at two a second are all delivered, and the rate held them back.
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"event_type": "t", "payload": {"i": i}}))
        .collect();
    let (st, v) = heavy.produce("hooks", json!(batch)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let waited = std::time::Instant::now();
    while delivered.load(std::sync::atomic::Ordering::Relaxed) < 10 {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "deliveries stalled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = system.metrics_text().await;
    assert!(
        metrics.contains(
            r#"sluice_quota_throttled_total{tenant="heavy",quota="webhook_deliveries_per_s"}"#
        ),
        "{metrics}"
    );

    // Component time: a pipeline that spins 50 ms overdraws 1 ms/s; the next produce waits.
    let (st, v) =
        crate::transforms::upload(&heavy, "hostile", sluice_builtins::testing::HOSTILE).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = heavy
        .post(
            "/v1/topics",
            json!({"name": "spin", "partitions": 1, "replicationFactor": 1, "config": {},
                   "pipeline": [{"component": "hostile", "config": {"behaviour": "slow", "ms": 50}}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = heavy.produce("spin", json!({"event_type": "t"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let resp = produce_response(&heavy, "spin", json!({"event_type": "t"})).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 10, "about 49 s of debt, told {wait} s");
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("component_ms_per_s"),
        "{body}"
    );

    // Storage: past 4000 bytes held, produce is refused until space is freed.
    let (st, v) = system
        .send(
            Method::PUT,
            "/v1/tenants/heavy/quotas",
            Some(json!({"storage_bytes": 4000})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    heavy.create_topic("bulk", 1).await;
    let big: Vec<Value> = (0..5)
        .map(|i| json!({"event_type": "t", "payload": {"pad": "x".repeat(1000), "i": i}}))
        .collect();
    let (st, v) = heavy.produce("bulk", json!(big)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let waited = std::time::Instant::now();
    let v = loop {
        let (st, v) = heavy.produce("bulk", json!({"event_type": "t"})).await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            break v;
        }
        assert_eq!(st, StatusCode::OK, "{v}");
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "storage quota never applied"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(v["error_code"], 42903, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("storage_bytes"),
        "{v}"
    );
    // Deleting the topic frees the space (within the second the sum is cached for).
    let (st, _) = heavy.send(Method::DELETE, "/v1/topics/bulk", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    heavy.create_topic("bulk2", 1).await;
    let waited = std::time::Instant::now();
    loop {
        let (st, v) = heavy.produce("bulk2", json!({"event_type": "t"})).await;
        if st == StatusCode::OK {
            break;
        }
        assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "deleting did not free the quota"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn an_avro_record_of_twenty_million_nulls_is_refused_not_built() {
    use base64::Engine as _;
    const AVRO: &str = "application/vnd.kafka.avro.v2+json";
    const BINARY: &str = "application/vnd.kafka.binary.v2+json";
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &[]);
    let c = p.client();
    c.create_topic("nulls", 1).await;
    // A legitimate record registers the schema: arrays of nulls.
    let (st, v) = crate::groups::rest(
        &c,
        Method::POST,
        "/topics/nulls",
        AVRO,
        Some(json!({
            "value_schema": r#"{"type": "array", "items": {"type": "array", "items": "null"}}"#,
            "records": [{"value": [[null], [null, null]]}]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["value_schema_id"].as_u64().unwrap() as u32;
    // The attack, in the registry's wire format.
    let mut crafted = vec![0u8];
    crafted.extend(id.to_be_bytes());
    let block = |n: i64| {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        let mut out = Vec::new();
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
        out
    };
    // Two hundred arrays of 100,000 nulls each: each block is within the decoder's per-allocation
    // cap, the whole about 20 million values (over a gigabyte built) from a kilobyte of input.
    crafted.extend(block(200));
    for _ in 0..200 {
        crafted.extend(block(100_000));
        crafted.extend(block(0));
    }
    crafted.extend(block(0));
    let encoded = base64::engine::general_purpose::STANDARD.encode(&crafted);
    // (To a topic without a schema: `nulls` validates what is produced, and its validator, a
    // guest bounded by its memory limit, refuses this.)
    c.create_topic("raw", 1).await;
    let (st, v) = crate::groups::rest(
        &c,
        Method::POST,
        "/topics/raw",
        BINARY,
        Some(json!({"records": [{"value": encoded}]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["offsets"][0]["error_code"].is_null(), "{v}");
    let other = bystander(&c).await;
    let inst = crate::groups::new_consumer(
        &c,
        "nulls-readers",
        json!({"format": "avro", "auto.offset.reset": "earliest"}),
    )
    .await;
    crate::groups::subscribe(&c, &inst, &["raw"]).await;
    let (st, v) = while_serving(&p.url, &other, async {
        let mut last = (StatusCode::OK, json!([]));
        for _ in 0..20 {
            last = crate::groups::rest(
                &c,
                Method::GET,
                &format!("{inst}/records?timeout=200"),
                AVRO,
                None,
            )
            .await;
            if last.0 != StatusCode::OK {
                break;
            }
        }
        last
    })
    .await;
    assert!(st.is_client_error() || st.is_server_error(), "{st} {v}");
    assert!(v.to_string().contains("array items"), "{v}");
    let peak = peak_mib(&p);
    assert!(peak < 400, "the server peaked at {peak} MiB");
    p.kill9();
}

#[tokio::test]
async fn a_flood_of_forged_webhooks_is_refused_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &[]);
    let c = p.client();
    c.create_topic("payments", 1).await;
    let (st, v) = c
        .post(
            "/v1/sources",
            json!({"name": "stripe", "topic": "payments",
                   "config": {"scheme": "stripe", "secret": "whsec_real"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let other = bystander(&c).await;
    let url = format!("{}/hooks/default/stripe", p.url);
    let body = format!("{{\"id\": \"evt\", \"pad\": \"{}\"}}", "x".repeat(64 << 10));
    let statuses = while_serving(&p.url, &other, async {
        let http = reqwest::Client::new();
        let mut statuses = std::collections::BTreeMap::new();
        for round in 0..25 {
            let sends = (0..16).map(|i| {
                http.post(&url)
                    .header(
                        "Stripe-Signature",
                        format!("t={},v1={:064x}", 1_700_000_000 + round * 16 + i, i),
                    )
                    .body(body.clone())
                    .send()
            });
            for r in futures::future::join_all(sends).await {
                *statuses.entry(r.unwrap().status().as_u16()).or_insert(0) += 1;
            }
        }
        statuses
    })
    .await;
    // Each refused (stale or forged: 401; past the tenant's component cap: 429), none appended.
    assert!(
        statuses.keys().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(end_offset(&c, "payments").await, 0);
    // Over a megabyte is refused before the component runs, with a 413 the client reads even
    // while it is still sending (the rest is read and dropped, not reset).
    let big = "x".repeat(20 << 20);
    let r = reqwest::Client::new()
        .post(&url)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Headers are bounded before the component sees them: 64 KiB in all (and past 100 headers
    // the HTTP parser itself answers 431).
    let mut many = reqwest::Client::new().post(&url).body("{}");
    for i in 0..50 {
        many = many.header(format!("x-pad-{i}"), "v".repeat(2048));
    }
    let r = many.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_code"], 43101, "{v}");
    // A signature header the component will not try beyond 32 entries or read past its size.
    let stripe = format!("t=1,{}", vec!["v1=00"; 5000].join(","));
    let r = reqwest::Client::new()
        .post(&url)
        .header("Stripe-Signature", stripe)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(end_offset(&c, "payments").await, 0);
    let peak = peak_mib(&p);
    assert!(peak < 400, "the server peaked at {peak} MiB");
    p.kill9();
}

#[tokio::test]
async fn a_refused_body_is_charged_to_the_tenants_bytes_quota() {
    let s = crate::harness::Server::start().await;
    let system = s.client();
    let t = tenant(&system, "resender").await;
    t.create_topic("in", 1).await;
    let (st, v) = system
        .send(
            Method::PUT,
            "/v1/tenants/resender/quotas",
            Some(json!({"produce_bytes_per_s": 10_000})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // 10,001 one-character items: refused for its count, but 20 KB were read.
    let mut body = b"[".to_vec();
    for _ in 0..10_000 {
        body.extend_from_slice(b"1,");
    }
    body.extend_from_slice(b"1]");
    let (st, v) = t
        .raw(
            Method::POST,
            "/v1/topics/in/events",
            "application/json",
            body,
        )
        .await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!(41302))
    );
    // Those bytes put the tenant in debt: its next produce waits like any other overdraft.
    let (st, v) = t.produce("in", json!({"event_type": "t"})).await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, json!(42903)),
        "{v}"
    );
    assert_eq!(end_offset(&t, "in").await, 0);
    s.stop().await;
}

#[tokio::test]
async fn a_fhir_bundle_of_eighty_thousand_entries_is_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(dir.path(), &[]);
    let c = p.client();
    let other = bystander(&c).await;
    // ~3.8 MB: 80,000 tiny DELETE entries (under the 4 MiB FHIR body limit).
    let entries: Vec<Value> = (0..80_000)
        .map(|i| json!({"request": {"method": "DELETE", "url": format!("P/{i}")}}))
        .collect();
    let body = serde_json::to_vec(
        &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
    )
    .unwrap();
    assert!(body.len() < 4 << 20, "{}", body.len());
    let (status, answer) = while_serving(&p.url, &other, async {
        c.raw(Method::POST, "/fhir/default", "application/fhir+json", body)
            .await
    })
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["resourceType"], "OperationOutcome", "{answer}");
    assert_eq!(answer["issue"][0]["code"], "too-costly", "{answer}");
    let peak = peak_mib(&p);
    eprintln!("server peak memory through the Bundle: {peak} MiB");
    assert!(peak < 400, "peak memory {peak} MiB");
    p.kill9();
}
