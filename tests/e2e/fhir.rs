//! The FHIR gateway (first part of the FHIR issue): resources in through the built-in
//! `fhir-gateway` component, versions, reads, transactions, OperationOutcomes, the
//! CapabilityStatement, and the resulting events on `fhir.resources`, compacted to the newest
//! version of each resource.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Client, Server};

const FHIR_JSON: &str = "application/fhir+json";

/// A FHIR request with the client's key as a Bearer token; the status, headers and body.
async fn fhir(
    c: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = c
        .http
        .request(method, format!("{}/fhir/default{path}", c.url))
        .bearer_auth(&c.key);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.header("content-type", FHIR_JSON).body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn assert_outcome(body: &Value, code: &str, expression: Option<&str>) {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    let issues = body["issue"].as_array().unwrap();
    assert!(
        issues.iter().any(|i| i["code"] == code
            && i["severity"] == "error"
            && expression.is_none_or(|e| i["expression"][0] == e)),
        "{code} {expression:?} not in {body}"
    );
}

#[tokio::test]
async fn resources_are_created_versioned_read_and_deleted_as_a_fhir_server_does() {
    let s = Server::start().await;
    let c = s.client();
    // Create: the server assigns the id, version 1, lastUpdated.
    let patient = json!({"resourceType": "Patient", "id": "ignored", "gender": "female",
                         "birthDate": "1970-01-02", "name": [{"family": "Chalmers"}]});
    let (st, h, created) = fhir(&c, Method::POST, "/Patient", Some(patient), &[]).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_ne!(id, "ignored");
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(
        created["meta"]["lastUpdated"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(header(&h, "etag"), "W/\"1\"");
    assert!(header(&h, "location").ends_with(&format!("/fhir/default/Patient/{id}/_history/1")));
    assert_eq!(header(&h, "content-type"), FHIR_JSON);
    // Read it back.
    let (st, h, read) = fhir(&c, Method::GET, &format!("/Patient/{id}"), None, &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(read, created);
    assert_eq!(header(&h, "etag"), "W/\"1\"");
    // Update with the right version, then with a stale one (412).
    let mut changed = created.clone();
    changed["gender"] = json!("other");
    let path = format!("/Patient/{id}");
    let (st, h, v2) = fhir(
        &c,
        Method::PUT,
        &path,
        Some(changed.clone()),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v2}");
    assert_eq!(
        (v2["meta"]["versionId"].clone(), header(&h, "etag")),
        (json!("2"), "W/\"2\"")
    );
    let (st, _, stale) = fhir(
        &c,
        Method::PUT,
        &path,
        Some(changed),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED);
    assert_outcome(&stale, "conflict", None);
    // PUT of an unknown id creates it (201).
    let new = json!({"resourceType": "Patient", "id": "p-7"});
    let (st, _, _) = fhir(&c, Method::PUT, "/Patient/p-7", Some(new), &[]).await;
    assert_eq!(st, StatusCode::CREATED);
    // Delete: 204, then the read is 410 Gone.
    let (st, h, _) = fhir(&c, Method::DELETE, &path, None, &[]).await;
    assert_eq!(
        (st, header(&h, "etag")),
        (StatusCode::NO_CONTENT, "W/\"3\"")
    );
    let (st, _, gone) = fhir(&c, Method::GET, &path, None, &[]).await;
    assert_eq!(st, StatusCode::GONE);
    assert_outcome(&gone, "deleted", None);
    let (st, _, missing) = fhir(&c, Method::GET, "/Patient/nobody", None, &[]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_outcome(&missing, "not-found", None);

    // The events: one per change, typed and keyed, the version in a header.
    let events = c.read_all("fhir.resources", 0, 0).await;
    let seen: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["event"]["event_type"].as_str().unwrap().to_owned(),
                e["key"].as_str().unwrap().to_owned(),
                e["headers"]["fhir_version_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let key = format!("Patient/{id}");
    assert_eq!(
        seen,
        [
            ("fhir.Patient.create".into(), key.clone(), "1".into()),
            ("fhir.Patient.update".into(), key.clone(), "2".into()),
            (
                "fhir.Patient.create".into(),
                "Patient/p-7".into(),
                "1".into()
            ),
            ("fhir.Patient.delete".into(), key.clone(), "3".into()),
        ]
        .map(|(a, b, c): (String, String, String)| (a, b, c))
    );
    // The topic keeps the newest version of each resource: compaction leaves two.
    let (st, v) = c
        .send(Method::POST, "/v1/topics/fhir.resources/compact", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["partitions"][0]["compacted"]["records_out"], 2, "{v}");

    // Versions survive a restart (the index is rebuilt from the topic).
    let data = s.data.clone();
    let dir = s.stop().await;
    let s = Server::start_with(crate::harness::options(&data)).await;
    let c = s.client();
    let again = json!({"resourceType": "Patient", "id": "p-7", "active": true});
    let (st, h, _) = fhir(&c, Method::PUT, "/Patient/p-7", Some(again), &[]).await;
    assert_eq!((st, header(&h, "etag")), (StatusCode::OK, "W/\"2\""));
    drop(dir);
}

#[tokio::test]
async fn invalid_resources_and_requests_answer_operation_outcomes() {
    let s = Server::start().await;
    let c = s.client();
    let obs = json!({"resourceType": "Observation", "status": "done"});
    let (st, h, body) = fhir(&c, Method::POST, "/Observation", Some(obs), &[]).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(header(&h, "content-type"), FHIR_JSON);
    assert_outcome(&body, "value", Some("Observation.status"));
    assert_outcome(&body, "required", Some("Observation.code"));
    // R4 rules by content type: an Encounter needs its class there.
    let enc = json!({"resourceType": "Encounter", "status": "finished"});
    let (st, _, body) = fhir(
        &c,
        Method::POST,
        "/Encounter",
        Some(enc),
        &[("content-type", "application/fhir+json; fhirVersion=4.0")],
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_outcome(&body, "required", Some("Encounter.class"));
    // Not JSON; wrong type for the URL; no key; another tenant's URL.
    let resp = c
        .http
        .post(format!("{}/fhir/default/Patient", c.url))
        .bearer_auth(&c.key)
        .header("content-type", FHIR_JSON)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_outcome(&resp.json().await.unwrap(), "structure", None);
    let (st, _, body) = fhir(
        &c,
        Method::POST,
        "/Patient",
        Some(json!({"resourceType": "Observation"})),
        &[],
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_outcome(&body, "invalid", Some("Patient.resourceType"));
    let anonymous = reqwest::get(format!("{}/fhir/default/Patient/x", c.url))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_outcome(&anonymous.json().await.unwrap(), "login", None);
    let resp = c
        .http
        .get(format!("{}/fhir/other/Patient/x", c.url))
        .bearer_auth(&c.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // A body past 4 MiB is refused before it is read whole.
    let huge = format!(
        "{{\"resourceType\": \"Patient\", \"x\": \"{}\"}}",
        "a".repeat(5 << 20)
    );
    let resp = c
        .http
        .post(format!("{}/fhir/default/Patient", c.url))
        .bearer_auth(&c.key)
        .header("content-type", FHIR_JSON)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_outcome(&resp.json().await.unwrap(), "too-costly", None);
    // Nothing was appended for any of these.
    assert!(c.read_all("fhir.resources", 0, 0).await.is_empty());
    // The CapabilityStatement needs no key.
    let cap: Value = reqwest::get(format!("{}/fhir/default/metadata", c.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cap["resourceType"], "CapabilityStatement");
    let types: Vec<&str> = cap["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    for t in [
        "Patient",
        "Observation",
        "Encounter",
        "Bundle",
        "SubscriptionTopic",
        "Subscription",
    ] {
        assert!(types.contains(&t), "{cap}");
    }
    let subscription = cap["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Subscription")
        .unwrap();
    let operations: Vec<&str> = subscription["operation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["status", "events", "get-ws-binding-token"]);
}

#[tokio::test]
async fn a_transaction_is_applied_whole_or_not_at_all() {
    let s = Server::start().await;
    let c = s.client();
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "heart rate"}},
         "request": {"method": "PUT", "url": "Observation/o1"}},
        {"request": {"method": "DELETE", "url": "Condition/c9"}},
    ]});
    let (st, _, resp) = fhir(&c, Method::POST, "", Some(tx.clone()), &[]).await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert_eq!(resp["resourceType"], "Bundle");
    assert_eq!(resp["type"], "transaction-response");
    let statuses: Vec<&str> = resp["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["201 Created", "201 Created", "204 No Content"]);
    assert_eq!(
        resp["entry"][1]["response"]["location"],
        "Observation/o1/_history/1"
    );
    assert_eq!(c.read_all("fhir.resources", 0, 0).await.len(), 3);
    // One bad entry: nothing of the Bundle is appended.
    let mut bad = tx;
    bad["entry"][1]["resource"]["status"] = json!("nope");
    let (st, _, body) = fhir(&c, Method::POST, "", Some(bad), &[]).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_outcome(&body, "value", Some("Bundle.entry[1].resource.status"));
    assert_eq!(c.read_all("fhir.resources", 0, 0).await.len(), 3);
}

fn r5_fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/fhir/r5")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the fixtures are in ../shared beside the repository)",
            path.display()
        )
    }))
    .unwrap()
}

#[tokio::test]
async fn an_ehrs_notifications_become_events_and_gaps_are_reported() {
    let s = Server::start().await;
    let c = s.client();
    // The official R5 examples, as an EHR's rest-hook would post them.
    for quiet in ["notification-handshake.json", "notification-heartbeat.json"] {
        let (st, _, body) = fhir(&c, Method::POST, "", Some(r5_fixture(quiet)), &[]).await;
        assert_eq!(st, StatusCode::OK, "{quiet}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    let full = r5_fixture("notification-full-resource-with-patient.json");
    let (st, _, body) = fhir(&c, Method::POST, "", Some(full.clone()), &[]).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("1 notification events appended"),
        "{body}"
    );
    // Sent again (a retry): a duplicate, nothing new.
    let (_, _, again) = fhir(&c, Method::POST, "", Some(full.clone()), &[]).await;
    assert!(
        again["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("0 notification"),
        "{again}"
    );
    let events = c.read_all("fhir.resources", 0, 0).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["event"]["event_type"], "fhir.Encounter.notified");
    assert_eq!(e["key"], "Encounter/2");
    assert_eq!(e["event"]["payload"]["resourceType"], "Encounter");
    assert_eq!(e["headers"]["fhir_event_number"], "2");
    assert_eq!(
        e["headers"]["fhir_subscription"],
        "http://example.org/FHIR/R5/Subscription/123"
    );
    // Event 5 after 2: events 3-4 are reported missing, on the answer and the event.
    let mut later = r5_fixture("notification-id-only.json");
    later["entry"][0]["resource"]["notificationEvent"][0]["eventNumber"] = json!("5");
    let (st, _, body) = fhir(&c, Method::POST, "", Some(later), &[]).await;
    assert_eq!(st, StatusCode::OK);
    let gap = body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == "incomplete")
        .unwrap_or_else(|| panic!("no gap reported: {body}"));
    assert_eq!(gap["severity"], "warning");
    assert!(
        gap["diagnostics"].as_str().unwrap().contains("events 3-4"),
        "{gap}"
    );
    let events = c.read_all("fhir.resources", 0, 0).await;
    assert_eq!(events.last().unwrap()["headers"]["fhir_gap"], "3-4");
    assert_eq!(
        events.last().unwrap()["event"]["payload"]["reference"],
        "http://example.org/FHIR/R5/Encounter/2"
    );
}

#[tokio::test]
async fn the_fhir_resources_package_builds_what_is_posted_and_parses_every_answer() {
    let s = Server::start().await;
    let base = format!("{}/fhir/default", s.url);
    let key = s.admin_key.clone();
    // The client is blocking: it runs beside the server, not on its runtime.
    let Some(out) = tokio::task::spawn_blocking(move || {
        crate::harness::run_client("fhir_client.py", &[&base, &key], "")
    })
    .await
    .unwrap() else {
        return;
    };
    let steps: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
            .clone()
    };
    let metadata = step("metadata");
    assert_eq!(
        (metadata["status"].clone(), metadata["parsed"].clone()),
        (json!(200), json!("CapabilityStatement"))
    );
    let create = step("create");
    assert_eq!(
        (
            create["status"].clone(),
            create["version"].clone(),
            create["etag"].clone()
        ),
        (json!(201), json!("1"), json!("W/\"1\""))
    );
    assert_eq!(step("read")["family"], "Chalmers");
    assert_eq!(step("update")["version"], "2");
    let invalid = step("invalid");
    assert_eq!(
        (invalid["status"].clone(), invalid["parsed"].clone()),
        (json!(422), json!("OperationOutcome"))
    );
    assert!(
        invalid["expressions"]
            .as_array()
            .unwrap()
            .contains(&json!("Observation.code")),
        "{invalid}"
    );
    let tx = step("transaction");
    assert_eq!(tx["type"], "transaction-response");
    assert_eq!(tx["statuses"], json!(["201 Created", "201 Created"]));
    let r4b = step("r4b");
    assert_eq!(
        (r4b["status"].clone(), r4b["version"].clone()),
        (json!(201), json!("1"))
    );
}

#[tokio::test]
async fn concurrent_changes_of_one_resource_get_every_version_once() {
    let s = Server::start().await;
    let c = s.client();
    let puts = (0..20).map(|i| {
        let c = c.clone();
        async move {
            let body = json!({"resourceType": "Patient", "id": "shared", "birthDate": format!("19{:02}", 50 + i)});
            let (st, h, _) = fhir(&c, Method::PUT, "/Patient/shared", Some(body), &[]).await;
            assert!(st.is_success(), "{st}");
            header(&h, "etag").to_owned()
        }
    });
    let mut etags: Vec<String> = futures::future::join_all(puts).await;
    etags.sort_by_key(|e| {
        e.trim_matches(|c: char| !c.is_ascii_digit())
            .parse::<u32>()
            .unwrap()
    });
    let expected: Vec<String> = (1..=20).map(|v| format!("W/\"{v}\"")).collect();
    assert_eq!(etags, expected);
    // The read and the stored order agree with the versions.
    let (_, h, _) = fhir(&c, Method::GET, "/Patient/shared", None, &[]).await;
    assert_eq!(header(&h, "etag"), "W/\"20\"");
    let versions: Vec<u64> = c
        .read_all("fhir.resources", 0, 0)
        .await
        .iter()
        .map(|e| {
            e["headers"]["fhir_version_id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(versions, (1..=20).collect::<Vec<u64>>());
    // One id twice in one transaction: versions in order.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "twice"}, "request": {"method": "PUT", "url": "Patient/twice"}},
        {"request": {"method": "DELETE", "url": "Patient/twice"}},
    ]});
    let (st, _, resp) = fhir(&c, Method::POST, "", Some(tx), &[]).await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    let etags: Vec<&str> = resp["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["etag"].as_str().unwrap())
        .collect();
    assert_eq!(etags, ["W/\"1\"", "W/\"2\""]);
}

#[tokio::test]
async fn a_batch_answers_each_entry_on_its_own() {
    let s = Server::start().await;
    let c = s.client();
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "id": "o1", "status": "nope", "code": {"text": "hr"}},
         "request": {"method": "PUT", "url": "Observation/o1"}},
        {"request": {"method": "DELETE", "url": "Condition/c9"}},
    ]});
    let (st, _, resp) = fhir(&c, Method::POST, "", Some(batch), &[]).await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert_eq!(resp["type"], "batch-response");
    let entries = resp["entry"].as_array().unwrap();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["201 Created", "422 Unprocessable Entity", "204 No Content"]
    );
    assert_outcome(
        &entries[1]["response"]["outcome"],
        "value",
        Some("Bundle.entry[1].resource.status"),
    );
    // The two valid entries were appended; the refused one was not.
    let types: Vec<String> = c
        .read_all("fhir.resources", 0, 0)
        .await
        .iter()
        .map(|e| e["event"]["event_type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["fhir.Patient.create", "fhir.Condition.delete"]);
}

#[tokio::test]
async fn subscriptions_need_a_topic_whose_criteria_can_be_evaluated() {
    let s = Server::start().await;
    let c = s.client();
    let subscription = |topic: &str| {
        json!({"resourceType": "Subscription", "status": "requested", "topic": topic,
               "channelType": {"code": "rest-hook"}, "endpoint": "https://ehr.example/hook",
               "content": "id-only"})
    };
    // No such topic yet: refused where it is named.
    let admission = "http://example.org/FHIR/R5/SubscriptionTopic/admission";
    let (st, _, body) = fhir(
        &c,
        Method::POST,
        "/Subscription",
        Some(subscription(admission)),
        &[],
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_outcome(&body, "invalid", Some("Subscription.topic"));
    // The specification's admission topic is taken as given; then the Subscription is.
    let topic = r5_fixture("subscriptiontopic-example-admission.json");
    let (st, _, body) = fhir(&c, Method::POST, "/SubscriptionTopic", Some(topic), &[]).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, _, body) = fhir(
        &c,
        Method::POST,
        "/Subscription",
        Some(subscription(admission)),
        &[],
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    // A topic whose criteria Sluice cannot evaluate is refused when it is created.
    let odd = json!({"resourceType": "SubscriptionTopic", "url": "https://x/odd", "status": "active",
                     "resourceTrigger": [{"resource": "Observation",
                                          "queryCriteria": {"current": "value-quantity=gt5"}}]});
    let (st, _, body) = fhir(&c, Method::POST, "/SubscriptionTopic", Some(odd), &[]).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_outcome(
        &body,
        "not-supported",
        Some("SubscriptionTopic.resourceTrigger"),
    );
    // A topic and its Subscription in one transaction.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "SubscriptionTopic", "url": "https://x/labs", "status": "active",
                      "resourceTrigger": [{"resource": "Observation", "supportedInteraction": ["create"],
                                           "queryCriteria": {"current": "status=final"}}]},
         "request": {"method": "POST", "url": "SubscriptionTopic"}},
        {"resource": subscription("https://x/labs"), "request": {"method": "POST", "url": "Subscription"}},
    ]});
    let (st, _, body) = fhir(&c, Method::POST, "", Some(tx), &[]).await;
    assert_eq!(st, StatusCode::OK, "{body}");
}
