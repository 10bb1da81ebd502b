//! Server-Sent Events: `GET /v1/topics/{topic}/stream`, resumed with `Last-Event-ID`, with
//! heartbeats, and shared through a consumer group.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Client, Server};

/// An open SSE response, parsed message by message.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

#[derive(Debug)]
enum Item {
    Message { id: String, data: Value },
    Comment(String),
}

impl Sse {
    async fn open(c: &Client, path: &str, last_id: Option<&str>) -> Sse {
        let mut req = c.http.get(format!("{}{path}", c.url)).bearer_auth(&c.key);
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next message or comment (`retry:` lines skipped), within 5 s.
    async fn next(&mut self) -> Item {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                let mut comment = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    } else if let Some(v) = line.strip_prefix(": ") {
                        comment = Some(v.to_owned());
                    }
                }
                match (id, data, comment) {
                    (Some(id), Some(data), _) => return Item::Message { id, data },
                    (_, _, Some(c)) => return Item::Comment(c),
                    _ => continue,
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.resp.chunk())
                .await
                .expect("the stream stalled")
                .unwrap()
                .expect("the stream ended");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn messages(&mut self, n: usize) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        while out.len() < n {
            if let Item::Message { id, data } = self.next().await {
                out.push((id, data));
            }
        }
        out
    }
}

async fn produce(c: &Client, topic: &str, from: u64, n: u64) {
    let events: Vec<Value> = (from..from + n)
        .map(|i| json!({"type": "tick", "key": format!("k{i}"), "payload": {"i": i}}))
        .collect();
    let (st, v) = c.produce(topic, json!(events)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_stream_resumes_after_the_last_event_id_and_sends_heartbeats() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("ticks", 2).await;
    produce(&c, "ticks", 0, 10).await;

    let mut sse = Sse::open(
        &c,
        "/v1/topics/ticks/stream?from=earliest&heartbeat_ms=200",
        None,
    )
    .await;
    let got = sse.messages(10).await;
    let seen: BTreeSet<u64> = got
        .iter()
        .map(|(_, d)| d["event"]["payload"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(seen, (0..10).collect());
    let last_id = got.last().unwrap().0.clone();
    let total: u64 = last_id
        .split(',')
        .map(|p| p.split_once(':').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 10, "the cursor after everything: {last_id}");
    // Nothing new: a heartbeat comment.
    loop {
        if let Item::Comment(c) = sse.next().await {
            assert_eq!(c, "heartbeat");
            break;
        }
    }
    drop(sse);

    produce(&c, "ticks", 10, 5).await;
    let mut again = Sse::open(&c, "/v1/topics/ticks/stream", Some(&last_id)).await;
    let got = again.messages(5).await;
    let seen: BTreeSet<u64> = got
        .iter()
        .map(|(_, d)| d["event"]["payload"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seen,
        (10..15).collect(),
        "exactly the events after the cursor"
    );

    // From the end (the default): only what comes next.
    let mut tail = Sse::open(&c, "/v1/topics/ticks/stream", None).await;
    produce(&c, "ticks", 15, 1).await;
    let got = tail.messages(1).await;
    assert_eq!(got[0].1["event"]["payload"]["i"], 15);

    let (st, e) = c.get("/v1/topics/ticks/stream?from=nonsense").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let (st, _) = c.get("/v1/topics/missing/stream").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn streams_in_a_group_share_the_partitions() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("shared", 2).await;
    produce(&c, "shared", 0, 20).await;
    let path = "/v1/topics/shared/stream?group=viewers&from=earliest&heartbeat_ms=200";
    let mut a = Sse::open(&c, path, None).await;
    let mut b = Sse::open(&c, path, None).await;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // Drain both until the 20 events are in and both are members with a partition each.
    loop {
        for sse in [&mut a, &mut b] {
            if let Item::Message { data, .. } = sse.next().await {
                seen.push(data["event"]["payload"]["i"].as_u64().unwrap());
            }
        }
        let (_, d) = c.get("/v1/groups/viewers").await;
        let owned: Vec<usize> = d["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["owned"].as_array().unwrap().len())
            .collect();
        if seen.len() == 20 && owned == vec![1, 1] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{seen:?} {d}");
    }
    let distinct: BTreeSet<u64> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), 20);
    assert_eq!(seen.len(), 20, "no event went to both streams");
    drop(a);
    drop(b);
    // The streams left the group when they closed.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, d) = c.get("/v1/groups/viewers").await;
        if d["state"] == "Empty" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn the_same_stream_over_websocket() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let s = Server::start().await;
    let c = s.client();
    c.create_topic("ws", 2).await;
    produce(&c, "ws", 0, 6).await;
    let url = format!(
        "{}/v1/topics/ws/stream?from=earliest&heartbeat_ms=200",
        s.url.replace("http://", "ws://")
    );
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", c.key).parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    let mut seen = BTreeSet::new();
    let mut last_id = String::new();
    let mut pinged = false;
    while seen.len() < 6 || !pinged {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame")
            .unwrap()
            .unwrap();
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                seen.insert(v["data"]["event"]["payload"]["i"].as_u64().unwrap());
                last_id = v["id"].as_str().unwrap().to_owned();
            }
            Message::Ping(_) => pinged = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, (0..6).collect());
    assert_eq!(last_id.split(',').count(), 2, "{last_id}");
    ws.close(None).await.unwrap();

    // Without a key: refused before any upgrade.
    let req = url.as_str().into_client_request().unwrap();
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    s.stop().await;
}
