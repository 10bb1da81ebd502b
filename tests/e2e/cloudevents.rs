//! CloudEvents over HTTP end to end, with the CloudEvents Python SDK on both sides: it sends
//! binary, structured and batch events (and binary data) that land as events, and it parses
//! what Sluice renders (fetch, SSE) and delivers (webhooks in binary and structured mode).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Client, Server};

/// Run the SDK client off the test's runtime thread (the in-process server answers it there).
async fn sdk(args: &[&str], stdin: &str) -> Option<Vec<Value>> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sdk_blocking(&args, &stdin)
    })
    .await
    .unwrap()
}

fn sdk_blocking(args: &[&str], stdin: &str) -> Option<Vec<Value>> {
    let out = crate::harness::run_client("cloudevents_client.py", args, stdin)?;
    Some(
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

async fn fetch_ce(c: &Client, topic: &str) -> Vec<Value> {
    let (st, v) = c
        .get(&format!(
            "/v1/topics/{topic}/partitions/0/events?offset=0&format=cloudevents"
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_sdk_sends_every_mode_and_reads_back_what_sluice_renders() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("orders", 1).await;
    let url = format!("{}/v1/topics/orders/events", s.url);
    let Some(answers) = sdk(&["send", &url, &c.key], "").await else {
        return;
    };
    for a in &answers {
        assert_eq!(a["answer"][0], 200, "{a}");
    }
    let events = fetch_ce(&c, "orders").await;
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "ce-binary-1",
            "ce-structured-1",
            "ce-batch-0",
            "ce-batch-1",
            "ce-bytes-1"
        ]
    );
    let first = &events[0];
    assert_eq!(first["type"], "com.example.order.created");
    assert_eq!(first["source"], "https://shop.example.com/orders");
    assert_eq!(first["subject"], "order/1");
    assert_eq!(
        first["traceparent"],
        "00-4bf92f3577b34da6-00f067aa0ba902b7-01"
    );
    assert_eq!(first["data"], json!({"order": 1, "total": 12.5}));
    assert_eq!(events[4]["data_base64"], "AAFiaW5hcnk=");
    assert_eq!(events[4]["datacontenttype"], "application/octet-stream");
    // JSON data is an envelope's payload like any produced event's.
    let plain = c.read_all("orders", 0, 0).await;
    assert_eq!(
        plain[0]["event"]["payload"],
        json!({"order": 1, "total": 12.5})
    );
    assert_eq!(plain[0]["event"]["event_type"], "com.example.order.created");

    // What Sluice renders, the SDK parses (structured mode, as fetch gives it).
    let requests: String = events
        .iter()
        .map(|e| {
            json!({"headers": {"content-type": "application/cloudevents+json"}, "body": e.to_string()})
                .to_string()
                + "\n"
        })
        .collect();
    let parsed = sdk(&["parse"], &requests).await.unwrap();
    assert_eq!(parsed.len(), 5);
    assert_eq!(parsed[0]["attributes"]["id"], "ce-binary-1");
    assert_eq!(parsed[0]["data"], json!({"order": 1, "total": 12.5}));
    assert_eq!(parsed[4]["data"]["base64"], "AAFiaW5hcnk=");

    // SSE renders the same.
    let mut resp = c
        .http
        .get(format!(
            "{}/v1/topics/orders/stream?from=earliest&format=cloudevents",
            s.url
        ))
        .bearer_auth(&c.key)
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while !text.contains("ce-structured-1") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let first: Value = serde_json::from_str(data).unwrap();
    assert_eq!(
        (first["specversion"].as_str(), first["id"].as_str()),
        (Some("1.0"), Some("ce-binary-1"))
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_cloudevents_are_refused_with_the_reason() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("orders", 1).await;
    let post = |headers: Vec<(&'static str, &'static str)>, body: String| {
        let mut req = c
            .http
            .post(format!("{}/v1/topics/orders/events", s.url))
            .bearer_auth(&c.key)
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let structured = vec![("content-type", "application/cloudevents+json")];
    for (headers, body, why) in [
        (
            structured.clone(),
            json!({"specversion": "1.0", "id": "1", "type": "t"}).to_string(),
            "source",
        ),
        (
            structured.clone(),
            json!({"specversion": "0.3", "id": "1", "source": "s", "type": "t"}).to_string(),
            "1.0",
        ),
        (structured.clone(), "{not json".to_owned(), "malformed"),
        (
            vec![
                ("ce-specversion", "1.0"),
                ("ce-id", "%G1"),
                ("ce-source", "s"),
                ("ce-type", "t"),
            ],
            "{}".to_owned(),
            "hex",
        ),
        (
            vec![
                ("ce-specversion", "1.0"),
                ("ce-source", "s"),
                ("ce-type", "t"),
            ],
            "{}".to_owned(),
            "id",
        ),
        (
            vec![("content-type", "application/cloudevents-batch+json")],
            "{}".to_owned(),
            "array",
        ),
    ] {
        let (st, v) = post(headers, body).await;
        assert!(st.is_client_error(), "{why}: {st} {v}");
        assert!(v["message"].as_str().unwrap().contains(why), "{why}: {v}");
    }
    // A batch answers per event: the good ones land.
    let batch =
        json!([{"specversion": "1.0", "id": "ok", "source": "s", "type": "t"}, {"id": "bad"}]);
    let (st, v) = post(
        vec![("content-type", "application/cloudevents-batch+json")],
        batch.to_string(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        v["results"][0]["offset"].is_u64() && v["results"][1]["error_code"].is_u64(),
        "{v}"
    );
    // A batch over the request limit is refused whole.
    let many: Vec<Value> = (0..10_001)
        .map(|i| json!({"specversion": "1.0", "id": i.to_string(), "source": "s", "type": "t"}))
        .collect();
    let (st, v) = post(
        vec![("content-type", "application/cloudevents-batch+json")],
        json!(many).to_string(),
    )
    .await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!(41302))
    );
    assert_eq!(c.read_all("orders", 0, 0).await.len(), 1);
    s.stop().await;
}

/// A receiver that answers 200 and keeps each request's headers and body.
async fn recording_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/in", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut conn = BufReader::new(socket);
                loop {
                    let mut headers = serde_json::Map::new();
                    let mut line = String::new();
                    if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.trim_end().split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), json!(v.trim()));
                        }
                    }
                    let length: usize = headers
                        .get("content-length")
                        .and_then(|v| v.as_str()?.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    if conn.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    keep.lock().unwrap().push(json!({"headers": headers,
                        "body": String::from_utf8_lossy(&body)}));
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if conn.get_mut().write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn webhooks_deliver_cloudevents_the_sdk_parses() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("orders", 1).await;
    let (url, seen) = recording_receiver().await;
    for encoding in ["cloudevents-binary", "cloudevents-structured"] {
        let (st, v) = c
            .post(
                "/v1/subscriptions",
                json!({"url": url, "topics": ["orders"], "encoding": encoding, "start": "earliest"}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        assert_eq!(v["encoding"], encoding);
    }
    let (st, v) = c
        .produce(
            "orders",
            json!({"event_id": "o-7", "event_type": "order.created", "source": "/shop", "key": "cus 1",
                   "payload": {"total": 3}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let waited = std::time::Instant::now();
    while seen.lock().unwrap().len() < 2 {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "deliveries stalled"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let requests: Vec<Value> = seen.lock().unwrap().clone();
    let binary = requests
        .iter()
        .find(|r| r["headers"].get("ce-id").is_some())
        .expect("a binary-mode delivery");
    assert_eq!(binary["headers"]["content-type"], "application/json");
    assert_eq!(
        binary["headers"]["ce-partitionkey"], "cus%201",
        "percent-encoded"
    );
    let structured = requests
        .iter()
        .find(|r| r["headers"]["content-type"] == "application/cloudevents+json")
        .expect("a structured-mode delivery");
    assert!(
        structured["headers"]["webhook-signature"].is_string(),
        "still signed"
    );
    let lines: String = requests.iter().map(|r| r.to_string() + "\n").collect();
    let Some(parsed) = sdk(&["parse"], &lines).await else {
        return;
    };
    for p in &parsed {
        assert_eq!(p["attributes"]["id"], "o-7", "{p}");
        assert_eq!(p["attributes"]["type"], "order.created");
        assert_eq!(p["attributes"]["source"], "/shop");
        assert_eq!(p["data"], json!({"total": 3}));
    }
    s.stop().await;
}

#[tokio::test]
async fn a_source_takes_verified_cloudevents() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("partner", 1).await;
    let (st, v) = c
        .post(
            "/v1/sources",
            json!({"name": "partner-ce", "topic": "partner",
                   "config": {"scheme": "api-key", "secret": "partner-key", "format": "cloudevents"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let url = format!("{}/hooks/default/partner-ce", s.url);
    let http = reqwest::Client::new();
    let batch = json!([
        {"specversion": "1.0", "id": "p-1", "source": "/partner", "type": "shipment.sent", "data": {"n": 1}},
        {"specversion": "1.0", "id": "p-2", "source": "/partner", "type": "shipment.sent", "data": {"n": 2}}]);
    let send = |key: &'static str, body: String, content_type: &'static str| {
        http.post(&url)
            .header("x-api-key", key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let r = send(
        "partner-key",
        batch.to_string(),
        "application/cloudevents-batch+json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Binary mode, and a wrong key (refused before anything is read as an event).
    let r = http
        .post(&url)
        .header("x-api-key", "partner-key")
        .header("ce-specversion", "1.0")
        .header("ce-id", "p-3")
        .header("ce-source", "/partner")
        .header("ce-type", "shipment.lost")
        .header("content-type", "application/json")
        .body(r#"{"n": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(
        "guess",
        batch.to_string(),
        "application/cloudevents-batch+json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = send("partner-key", r#"{"n": 4}"#.into(), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "not CloudEvents");
    let events = fetch_ce(&c, "partner").await;
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["p-1", "p-2", "p-3"]);
    assert_eq!(events[2]["type"], "shipment.lost");
    s.stop().await;
}
