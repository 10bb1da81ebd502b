//! FHIR subscriptions out: SubscriptionTopics as the specification writes them, R5 and R4B
//! backport Subscriptions, rest-hook delivery through the webhook engine through an outage
//! (event numbers without gaps, `$events` filling a dropped one, heartbeats on a clock the test
//! moves), the WebSocket channel, a restart, and every delivered notification parsed by the
//! `fhir.resources` package.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Client, Receiver, Server};

const FHIR_JSON: &str = "application/fhir+json";
const R4B_JSON: &str = "application/fhir+json; fhirVersion=4.3";
const ADMISSION: &str = "http://example.org/FHIR/R5/SubscriptionTopic/admission";
const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";

async fn fhir(
    c: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
    content_type: &str,
) -> (StatusCode, Value) {
    let mut req = c
        .http
        .request(method, format!("{}/fhir/default{path}", c.url))
        .bearer_auth(&c.key);
    if let Some(b) = body {
        req = req.header("content-type", content_type).body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn admission_topic() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/fhir/r5/subscriptiontopic-example-admission.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn encounter(status: &str, patient: &str) -> Value {
    json!({"resourceType": "Encounter", "status": status,
           "class": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}]}],
           "subject": {"reference": patient}})
}

/// An R4B Encounter (`class` is one Coding there).
fn encounter_r4b(status: &str, patient: &str) -> Value {
    let mut e = encounter(status, patient);
    e["class"] =
        json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"});
    e
}

/// Create a resource; its id.
async fn create(c: &Client, body: Value, content_type: &str) -> String {
    let t = body["resourceType"].as_str().unwrap().to_owned();
    let (st, v) = fhir(c, Method::POST, &format!("/{t}"), Some(body), content_type).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// Wait (up to 20 s) until the Subscription's stored status is `status`.
async fn wait_status(c: &Client, id: &str, status: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = fhir(c, Method::GET, &format!("/Subscription/{id}"), None, "").await;
        if v["status"] == status {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Subscription/{id} is {} not {status}",
            v["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The deliveries' bodies, as JSON.
fn bodies(received: &[Value]) -> Vec<Value> {
    received
        .iter()
        .map(|r| match &r["body"] {
            Value::String(text) => serde_json::from_str(text).unwrap(),
            body => body.clone(),
        })
        .collect()
}

fn status_of(bundle: &Value) -> &Value {
    &bundle["entry"][0]["resource"]
}

/// Every body parsed by `fhir.resources` (R5 or R4B): the parses, each `ok`.
async fn parse_all(version: &str, bodies: &[Value]) -> Option<Vec<Value>> {
    let input: String = bodies
        .iter()
        .map(|b| json!({"version": version, "body": b.to_string()}).to_string() + "\n")
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        crate::harness::run_client("fhir_notifications.py", &[], &input)
    })
    .await
    .unwrap()?;
    let parsed: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed.len(), bodies.len());
    for (p, b) in parsed.iter().zip(bodies) {
        assert_eq!(p["ok"], true, "{p} for {b}");
    }
    Some(parsed)
}

/// Event notifications among `bodies`: their event numbers, in arrival order.
fn event_numbers(bodies: &[Value]) -> Vec<String> {
    bodies
        .iter()
        .filter(|b| status_of(b)["type"] == "event-notification")
        .flat_map(|b| {
            status_of(b)["notificationEvent"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["eventNumber"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn a_rest_hook_subscription_gets_every_event_in_order_through_an_outage() {
    let Some(rx) = Receiver::start() else { return };
    // FHIR subscribers authenticate Sluice by the headers they set, not the webhook signature.
    rx.control(json!({"verify": false})).await;
    let s = Server::start().await;
    let c = s.client();
    let advance = |d: Duration| s.app.clock.advance(d);
    create(&c, admission_topic(), FHIR_JSON).await;
    let sub = create(
        &c,
        json!({"resourceType": "Subscription", "status": "requested", "topic": ADMISSION,
               "channelType": {"system": "http://terminology.hl7.org/CodeSystem/subscription-channel-type", "code": "rest-hook"},
               "endpoint": format!("{}/fhir-hook", rx.url), "content": "id-only",
               "heartbeatPeriod": 60, "contentType": FHIR_JSON}),
        FHIR_JSON,
    )
    .await;
    // The handshake first; then the Subscription is active.
    let got = bodies(&rx.wait_for(1).await);
    assert_eq!(got[0]["type"], "subscription-notification");
    assert_eq!(
        (
            status_of(&got[0])["type"].clone(),
            status_of(&got[0])["status"].clone()
        ),
        (json!("handshake"), json!("requested"))
    );
    assert_eq!(status_of(&got[0])["eventsSinceSubscriptionStart"], "0");
    wait_status(&c, &sub, "active").await;

    // Event 1: an admission (created in progress). A planned Encounter is no admission.
    let e1 = create(&c, encounter("in-progress", "Patient/p1"), FHIR_JSON).await;
    create(&c, encounter("planned", "Patient/p1"), FHIR_JSON).await;
    let got = bodies(&rx.wait_for(2).await);
    assert_eq!(event_numbers(&got), ["1"]);
    let focus = status_of(&got[1])["notificationEvent"][0]["focus"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(focus.ends_with(&format!("/Encounter/{e1}")), "{focus}");
    assert_eq!(got[1]["entry"][1]["request"]["method"], "POST");
    assert!(
        got[1]["entry"][1].get("resource").is_none(),
        "id-only carries no resource"
    );

    // The receiver goes down: events 2 and 3 wait, retried on the webhook schedule.
    rx.control(json!({"script": ["status:503", "status:503", "status:503"]}))
        .await;
    let e2 = create(&c, encounter("in-progress", "Patient/p2"), FHIR_JSON).await;
    // An update into in-progress is an admission too (previous status:not=in-progress).
    let planned = create(&c, encounter("planned", "Patient/p3"), FHIR_JSON).await;
    let (st, v) = fhir(
        &c,
        Method::PUT,
        &format!("/Encounter/{planned}"),
        Some({
            let mut e = encounter("in-progress", "Patient/p3");
            e["id"] = json!(planned);
            e
        }),
        FHIR_JSON,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    rx.wait_for(3).await;
    wait_status(&c, &sub, "error").await;
    let (_, status) = fhir(
        &c,
        Method::GET,
        &format!("/Subscription/{sub}/$status"),
        None,
        "",
    )
    .await;
    assert_eq!(status["type"], "searchset");
    let ss = &status["entry"][0]["resource"];
    assert_eq!(
        (
            ss["type"].clone(),
            ss["status"].clone(),
            ss["eventsSinceSubscriptionStart"].clone()
        ),
        (json!("query-status"), json!("error"), json!("3"))
    );
    assert!(
        ss["error"][0]["text"].as_str().unwrap().contains("503"),
        "{ss}"
    );
    advance(Duration::from_secs(6));
    rx.wait_for(4).await;
    advance(Duration::from_secs(340));
    rx.wait_for(5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.received().await.len(),
        5,
        "nothing before the next retry is due"
    );
    // 30 min ± 10% after the third attempt.
    advance(Duration::from_secs(2_100));
    // The catch-up: event 2, then event 3, in order.
    let got = bodies(&rx.wait_for(7).await);
    wait_status(&c, &sub, "active").await;
    let delivered: Vec<Value> = rx
        .received()
        .await
        .into_iter()
        .filter(|r| r["answer"] == "ok" || r["answer"].is_null())
        .collect();
    let numbers = event_numbers(&bodies(&delivered));
    assert_eq!(
        numbers
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect::<Vec<_>>()[..3],
        ["1", "2", "3"],
        "every event once, in order: {numbers:?}"
    );
    let third = got
        .iter()
        .find(|b| status_of(b)["notificationEvent"][0]["eventNumber"] == "3")
        .unwrap();
    assert_eq!(third["entry"][1]["request"]["method"], "PUT");
    assert_eq!(
        third["entry"][1]["request"]["url"],
        format!("Encounter/{planned}")
    );

    // Event 2 is taken as lost by the subscriber: `$events` gives it back as delivered.
    let (st, replay) = fhir(
        &c,
        Method::GET,
        &format!("/Subscription/{sub}/$events?eventsSinceNumber=2&eventsUntilNumber=2"),
        None,
        "",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{replay}");
    let rs = status_of(&replay);
    assert_eq!(
        (
            rs["type"].clone(),
            rs["eventsSinceSubscriptionStart"].clone()
        ),
        (json!("query-event"), json!("3"))
    );
    assert_eq!(rs["notificationEvent"].as_array().unwrap().len(), 1);
    assert_eq!(rs["notificationEvent"][0]["eventNumber"], "2");
    assert!(
        rs["notificationEvent"][0]["focus"]["reference"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/Encounter/{e2}"))
    );

    // Heartbeats: one once the period passes without anything sent, none before.
    let heartbeats = |all: &[Value]| {
        all.iter()
            .filter(|b| status_of(b)["type"] == "heartbeat")
            .count()
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = heartbeats(&bodies(&rx.received().await));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        heartbeats(&bodies(&rx.received().await)),
        before,
        "none before the period"
    );
    advance(Duration::from_secs(61));
    let n = rx.received().await.len();
    let got = bodies(&rx.wait_for(n + 1).await);
    let beat = got.last().unwrap();
    assert_eq!(status_of(beat)["type"], "heartbeat");
    assert_eq!(status_of(beat)["eventsSinceSubscriptionStart"], "3");

    // Every notification is a valid R5 Bundle to the fhir.resources package.
    let all = bodies(&rx.received().await);
    if let Some(parsed) = parse_all("R5", &all).await {
        assert!(parsed.iter().any(|p| p["status_type"] == "heartbeat"));
        assert!(parsed.iter().any(|p| p["event_numbers"] == json!(["3"])));
    }
    assert!(
        c.metrics_text()
            .await
            .contains("sluice_fhir_notifications_total 3\n"),
        "three event notifications counted"
    );
    // Every attempt is recorded under the webhook subscription that delivers it.
    let (st, attempts) = c
        .get(&format!("/v1/subscriptions/fhir-{sub}/attempts"))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        attempts["attempts"].as_array().map_or(0, Vec::len) >= 7
            || attempts.as_array().map_or(0, Vec::len) >= 7,
        "{attempts}"
    );
    s.stop().await;
}

#[tokio::test]
async fn r4b_backport_subscriptions_get_history_bundles_with_their_filters() {
    let Some(rx) = Receiver::start() else { return };
    // FHIR subscribers authenticate Sluice by the headers they set, not the webhook signature.
    rx.control(json!({"verify": false})).await;
    let s = Server::start().await;
    let c = s.client();
    create(&c, admission_topic(), FHIR_JSON).await;
    let sub = create(
        &c,
        json!({"resourceType": "Subscription", "status": "requested", "reason": "admissions of one patient",
               "criteria": ADMISSION,
               "_criteria": {"extension": [{"url": format!("{BACKPORT}backport-filter-criteria"),
                                            "valueString": "Encounter?patient=Patient/mine"}]},
               "channel": {"type": "rest-hook", "endpoint": format!("{}/r4b", rx.url),
                           "payload": FHIR_JSON,
                           "_payload": {"extension": [{"url": format!("{BACKPORT}backport-payload-content"),
                                                       "valueCode": "full-resource"}]},
                           "header": ["X-Subscriber: r4b-test"]}}),
        R4B_JSON,
    )
    .await;
    wait_status(&c, &sub, "active").await;
    create(&c, encounter_r4b("in-progress", "Patient/other"), R4B_JSON).await;
    let mine = create(&c, encounter_r4b("in-progress", "Patient/mine"), R4B_JSON).await;
    let got = bodies(&rx.wait_for(2).await);
    assert_eq!(
        got.len(),
        2,
        "the other patient's admission is filtered out"
    );
    for b in &got {
        assert_eq!(b["type"], "history");
        assert_eq!(status_of(b)["resourceType"], "SubscriptionStatus");
        assert_eq!(b["entry"][0]["request"]["method"], "GET");
        assert!(
            b["entry"][0]["request"]["url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("Subscription/{sub}/$status"))
        );
    }
    assert_eq!(status_of(&got[0])["type"], "handshake");
    assert_eq!(event_numbers(&got), ["1"]);
    let focus = &got[1]["entry"][1];
    assert_eq!(focus["resource"]["id"], mine, "full-resource carries it");
    assert_eq!(focus["resource"]["subject"]["reference"], "Patient/mine");
    if let Some(parsed) = parse_all("R4B", &got).await {
        assert_eq!(parsed[1]["type"], "history");
        assert_eq!(parsed[1]["event_numbers"], json!(["1"]));
    }
    // Sluice's own notification, posted back to Sluice as an EHR's, becomes an event.
    let (st, outcome) = fhir(&c, Method::POST, "", Some(got[1].clone()), R4B_JSON).await;
    assert_eq!(st, StatusCode::OK, "{outcome}");
    s.stop().await;
}

/// The next text frame, as JSON (10 s at most).
async fn next_text<S, E>(ws: &mut S) -> Value
where
    S: futures::Stream<Item = Result<tokio_tungstenite::tungstenite::Message, E>> + Unpin,
    E: std::fmt::Debug,
{
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).unwrap(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a text frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_websocket_binds_with_a_token_and_receives_notifications_and_heartbeats() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let s = Server::start().await;
    let c = s.client();
    create(&c, admission_topic(), FHIR_JSON).await;
    let sub = create(
        &c,
        json!({"resourceType": "Subscription", "status": "requested", "topic": ADMISSION,
               "channelType": {"code": "websocket"}, "content": "id-only", "heartbeatPeriod": 30}),
        FHIR_JSON,
    )
    .await;
    wait_status(&c, &sub, "active").await;
    let (st, token) = fhir(
        &c,
        Method::GET,
        &format!("/Subscription/{sub}/$get-ws-binding-token"),
        None,
        "",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{token}");
    let param = |name: &str| {
        token["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    let url = param("websocket-url")["valueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.starts_with("ws://"), "{url}");
    let token = param("token")["valueString"].as_str().unwrap().to_owned();
    // A wrong token is refused.
    let (mut bad, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    bad.send(Message::Text("bind-with-token nope".into()))
        .await
        .unwrap();
    let refused = next_text(&mut bad).await;
    assert_eq!(refused["resourceType"], "OperationOutcome");

    let (mut ws, resp) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::Text(format!("bind-with-token {token}").into()))
        .await
        .unwrap();
    let handshake = next_text(&mut ws).await;
    assert_eq!(status_of(&handshake)["type"], "handshake");
    let e = create(&c, encounter("in-progress", "Patient/ws"), FHIR_JSON).await;
    let event = next_text(&mut ws).await;
    assert_eq!(status_of(&event)["type"], "event-notification");
    assert_eq!(
        status_of(&event)["notificationEvent"][0]["eventNumber"],
        "1"
    );
    assert!(
        status_of(&event)["notificationEvent"][0]["focus"]["reference"]
            .as_str()
            .unwrap()
            .ends_with(&format!("Encounter/{e}"))
    );
    s.app.clock.advance(Duration::from_secs(31));
    let beat = next_text(&mut ws).await;
    assert_eq!(status_of(&beat)["type"], "heartbeat");
    assert_eq!(status_of(&beat)["eventsSinceSubscriptionStart"], "1");
    // A token binds once.
    let (mut again, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    again
        .send(Message::Text(format!("bind-with-token {token}").into()))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut again).await["resourceType"],
        "OperationOutcome"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_restart_goes_on_from_where_notifications_stopped_with_nothing_twice() {
    let Some(rx) = Receiver::start() else { return };
    // FHIR subscribers authenticate Sluice by the headers they set, not the webhook signature.
    rx.control(json!({"verify": false})).await;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(crate::harness::options(dir.path())).await;
    let c = s.client();
    create(&c, admission_topic(), FHIR_JSON).await;
    let sub = create(
        &c,
        json!({"resourceType": "Subscription", "status": "requested", "topic": ADMISSION,
               "channelType": {"code": "rest-hook"}, "endpoint": format!("{}/again", rx.url),
               "content": "id-only"}),
        FHIR_JSON,
    )
    .await;
    for _ in 0..3 {
        create(&c, encounter("in-progress", "Patient/r"), FHIR_JSON).await;
    }
    rx.wait_for(4).await;
    s.stop().await;
    let s = Server::start_with(crate::harness::options(dir.path())).await;
    let c = s.client();
    create(&c, encounter("in-progress", "Patient/r"), FHIR_JSON).await;
    let got = bodies(&rx.wait_for(5).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = bodies(&rx.received().await);
    assert_eq!(got_after.len(), got.len(), "nothing twice");
    assert_eq!(event_numbers(&got_after), ["1", "2", "3", "4"]);
    assert_eq!(
        got_after
            .iter()
            .filter(|b| status_of(b)["type"] == "handshake")
            .count(),
        1
    );
    let (_, status) = fhir(
        &c,
        Method::GET,
        &format!("/Subscription/{sub}/$status"),
        None,
        "",
    )
    .await;
    assert_eq!(
        status["entry"][0]["resource"]["eventsSinceSubscriptionStart"],
        "4"
    );
    s.stop().await;
}

#[tokio::test]
async fn hostile_subscriptions_and_operation_input_are_refused_with_operation_outcomes() {
    let s = Server::start().await;
    let c = s.client();
    create(&c, admission_topic(), FHIR_JSON).await;
    // More filters than a Subscription may have; a header that is no header; a long timeout.
    let filters: Vec<Value> = (0..21)
        .map(|i| json!({"filterParameter": "patient", "value": format!("Patient/{i}")}))
        .collect();
    for (bad, at) in [
        (json!({"filterBy": filters}), "Subscription.filterBy"),
        (
            json!({"parameter": [{"name": "bad header\n", "value": "x"}]}),
            "Subscription.parameter",
        ),
        (json!({"timeout": 86_400}), "Subscription.timeout"),
        (
            json!({"channelType": {"code": "email"}}),
            "Subscription.channelType",
        ),
    ] {
        let mut sub = json!({"resourceType": "Subscription", "status": "requested", "topic": ADMISSION,
                             "channelType": {"code": "rest-hook"}, "endpoint": "https://ehr.example/hook"});
        for (k, v) in bad.as_object().unwrap() {
            sub[k] = v.clone();
        }
        let (st, v) = fhir(&c, Method::POST, "/Subscription", Some(sub), FHIR_JSON).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert!(
            v["issue"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["expression"][0] == at),
            "{at}: {v}"
        );
    }
    let sub = create(
        &c,
        json!({"resourceType": "Subscription", "status": "requested", "topic": ADMISSION,
               "channelType": {"code": "websocket"}}),
        FHIR_JSON,
    )
    .await;
    wait_status(&c, &sub, "active").await;
    let (st, v) = fhir(
        &c,
        Method::GET,
        &format!("/Subscription/{sub}/$events?eventsSinceNumber=-1"),
        None,
        "",
    )
    .await;
    assert_eq!(
        (st, v["issue"][0]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid"))
    );
    let (st, v) = fhir(&c, Method::GET, "/Subscription/nope/$status", None, "").await;
    assert_eq!(
        (st, v["resourceType"].clone()),
        (StatusCode::NOT_FOUND, json!("OperationOutcome"))
    );
    // A huge range answers at most 100 events (none here), not a scan.
    let (st, v) = fhir(
        &c,
        Method::GET,
        &format!(
            "/Subscription/{sub}/$events?eventsSinceNumber=1&eventsUntilNumber=18446744073709551615"
        ),
        None,
        "",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(status_of(&v)["type"], "query-event");
    // A WebSocket that never binds is closed; one that sends a huge frame is refused.
    use futures::SinkExt;
    let url = format!(
        "{}/fhir/default/$websocket",
        s.url.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        format!("bind-with-token {}", "x".repeat(100_000)).into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws).await["resourceType"], "OperationOutcome");
    s.stop().await;
}
