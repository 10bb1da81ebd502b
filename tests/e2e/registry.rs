//! The schema registry through the server: Confluent's REST API and error codes, validated
//! produce, restarts, and Confluent's own Python client.

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Client, Server, options, python};

const CT: &str = "application/vnd.schemaregistry.v1+json";

fn avro(fields: Value) -> String {
    json!({"type": "record", "name": "Order", "namespace": "acme", "fields": fields}).to_string()
}

async fn call(c: &Client, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = c
        .http
        .request(method, format!("{}/registry{path}", c.url))
        .bearer_auth(&c.key);
    if let Some(b) = body {
        req = req.header("content-type", CT).body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    assert_eq!(
        resp.headers()["content-type"],
        CT,
        "registry answers are {CT}"
    );
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn register(c: &Client, subject: &str, schema: &str) -> (StatusCode, Value) {
    call(
        c,
        Method::POST,
        &format!("/subjects/{subject}/versions"),
        Some(json!({"schema": schema})),
    )
    .await
}

#[tokio::test]
async fn confluent_api_registers_evolves_and_refuses() {
    let s = Server::start().await;
    let c = s.client();
    let v1 = avro(json!([{"name": "id", "type": "string"}]));
    let (st, r) = register(&c, "orders-value", &v1).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let id1 = r["id"].as_u64().unwrap();
    // Formatting and key order do not make a new version.
    let reformatted =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&v1).unwrap()).unwrap();
    let (_, again) = register(&c, "orders-value", &reformatted).await;
    assert_eq!(again["id"].as_u64(), Some(id1));
    assert_eq!(again["version"], 1);
    // The same schema under another subject keeps its global id.
    let (_, other) = register(&c, "audit-value", &v1).await;
    assert_eq!(other["id"].as_u64(), Some(id1));

    // Lookup, versions, by id (AVRO leaves `schemaType` out, as Confluent does).
    let (st, found) = call(
        &c,
        Method::POST,
        "/subjects/orders-value",
        Some(json!({"schema": v1})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (found["version"].as_u64(), found["id"].as_u64()),
        (Some(1), Some(id1))
    );
    let (_, by_id) = call(&c, Method::GET, &format!("/schemas/ids/{id1}"), None).await;
    assert!(by_id.get("schemaType").is_none(), "{by_id}");
    let (_, subjects) = call(
        &c,
        Method::GET,
        &format!("/schemas/ids/{id1}/subjects"),
        None,
    )
    .await;
    assert_eq!(subjects, json!(["audit-value", "orders-value"]));
    let (_, types) = call(&c, Method::GET, "/schemas/types", None).await;
    assert!(types.as_array().unwrap().contains(&json!("AVRO")));

    // An incompatible change: 409 with Confluent's code; the check endpoint says why.
    let breaking = avro(json!([{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]));
    let (st, err) = register(&c, "orders-value", &breaking).await;
    assert_eq!(st, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error_code"], 409);
    let (_, verdict) = call(
        &c,
        Method::POST,
        "/compatibility/subjects/orders-value/versions/latest?verbose=True",
        Some(json!({"schema": breaking})),
    )
    .await;
    assert_eq!(verdict["is_compatible"], false);
    assert!(
        verdict["messages"][0]
            .as_str()
            .unwrap()
            .contains("READER_FIELD_MISSING_DEFAULT_VALUE"),
        "{verdict}"
    );
    // A compatible change gets version 2 and a new id.
    let evolved = avro(json!([{"name": "id", "type": "string"},
        {"name": "qty", "type": "int", "default": 1}]));
    let (st, r2) = register(&c, "orders-value", &evolved).await;
    assert_eq!(st, StatusCode::OK, "{r2}");
    assert_eq!(r2["version"], 2);
    assert_ne!(r2["id"].as_u64(), Some(id1));
    let (_, latest) = call(&c, Method::GET, "/subjects/orders-value/versions/-1", None).await;
    assert_eq!(latest["version"], 2);
    let (_, raw) = call(
        &c,
        Method::GET,
        "/subjects/orders-value/versions/1/schema",
        None,
    )
    .await;
    assert_eq!(raw["type"], "record", "the raw schema: {raw}");

    // Configuration: global and per subject.
    let (_, cfg) = call(&c, Method::GET, "/config", None).await;
    assert_eq!(cfg["compatibilityLevel"], "BACKWARD");
    let (st, e) = call(&c, Method::GET, "/config/orders-value", None).await;
    assert_eq!(
        (st, e["error_code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(40408))
    );
    let (st, set) = call(
        &c,
        Method::PUT,
        "/config/orders-value",
        Some(json!({"compatibility": "NONE"})),
    )
    .await;
    assert_eq!(
        (st, set["compatibility"].as_str()),
        (StatusCode::OK, Some("NONE"))
    );
    let (st, _) = register(&c, "orders-value", &breaking).await;
    assert_eq!(st, StatusCode::OK, "NONE lets anything in");
    let (st, e) = call(
        &c,
        Method::PUT,
        "/config",
        Some(json!({"compatibility": "SIDEWAYS"})),
    )
    .await;
    assert_eq!(
        (st, e["error_code"].as_u64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(42203))
    );

    // Errors with Confluent's codes.
    let (st, e) = call(&c, Method::GET, "/subjects/nothing/versions", None).await;
    assert_eq!(
        (st, e["error_code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(40401))
    );
    let (_, e) = call(&c, Method::GET, "/subjects/orders-value/versions/99", None).await;
    assert_eq!(e["error_code"], 40402);
    let (_, e) = call(
        &c,
        Method::GET,
        "/subjects/orders-value/versions/zero",
        None,
    )
    .await;
    assert_eq!(e["error_code"], 42202);
    let (_, e) = call(&c, Method::GET, "/schemas/ids/999", None).await;
    assert_eq!(e["error_code"], 40403);
    let (st, e) = register(&c, "orders-value", "{\"type\": \"nope\"}").await;
    assert_eq!(
        (st, e["error_code"].as_u64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(42201))
    );

    // Percent-encoded subject names.
    let (st, _) = register(&c, "team%2Forders", &v1).await;
    assert_eq!(st, StatusCode::OK);
    let (_, subjects) = call(&c, Method::GET, "/subjects", None).await;
    assert!(
        subjects.as_array().unwrap().contains(&json!("team/orders")),
        "{subjects}"
    );

    // Deletion: soft first, then permanent; Confluent's rules and codes.
    let (_, e) = call(
        &c,
        Method::DELETE,
        "/subjects/audit-value?permanent=true",
        None,
    )
    .await;
    assert_eq!(e["error_code"], 40405);
    let (st, deleted) = call(&c, Method::DELETE, "/subjects/audit-value", None).await;
    assert_eq!((st, deleted), (StatusCode::OK, json!([1])));
    let (_, e) = call(&c, Method::DELETE, "/subjects/audit-value", None).await;
    assert_eq!(e["error_code"], 40404);
    let (_, listed) = call(&c, Method::GET, "/subjects?deleted=TRUE", None).await;
    assert!(listed.as_array().unwrap().contains(&json!("audit-value")));
    let (st, _) = call(
        &c,
        Method::DELETE,
        "/subjects/audit-value?permanent=true",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, e) = call(
        &c,
        Method::GET,
        "/subjects/audit-value/versions?deleted=true",
        None,
    )
    .await;
    assert_eq!(e["error_code"], 40401);
    let (_, e) = call(
        &c,
        Method::DELETE,
        "/subjects/orders-value/versions/1?permanent=true",
        None,
    )
    .await;
    assert_eq!(e["error_code"], 40407);
    let (st, v) = call(
        &c,
        Method::DELETE,
        "/subjects/orders-value/versions/1",
        None,
    )
    .await;
    assert_eq!((st, v), (StatusCode::OK, json!(1)));
    let (_, e) = call(
        &c,
        Method::DELETE,
        "/subjects/orders-value/versions/1",
        None,
    )
    .await;
    assert_eq!(e["error_code"], 40406);

    // Read-only mode refuses writes.
    let (st, _) = call(&c, Method::PUT, "/mode", Some(json!({"mode": "READONLY"}))).await;
    assert_eq!(st, StatusCode::OK);
    let (st, e) = register(&c, "fresh-value", &v1).await;
    assert_eq!(
        (st, e["error_code"].as_u64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(42205))
    );
    call(&c, Method::PUT, "/mode", Some(json!({"mode": "READWRITE"}))).await;

    // Tenants do not see each other's registries; a consume-only key cannot register.
    let (_, t) = c.post("/v1/tenants", json!({"name": "globex"})).await;
    assert_eq!(t["tenant"]["name"], "globex", "{t}");
    let (_, key) = c
        .post(
            "/v1/keys",
            json!({"tenant": "globex", "scopes": [{"role": "consume", "topics": "*"}]}),
        )
        .await;
    let reader = c.with_key(key["key"].as_str().unwrap());
    let (_, theirs) = call(&reader, Method::GET, "/subjects", None).await;
    assert_eq!(theirs, json!([]));
    let (st, _) = register(&reader, "orders-value", &v1).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;
}

#[tokio::test]
async fn schemas_validate_what_is_produced() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("orders", 1).await;
    // Without a schema anything goes.
    let (st, _) = c
        .produce("orders", json!({"payload": {"amount": "lots"}}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let schema = json!({"type": "object", "required": ["amount"],
        "properties": {"amount": {"type": "number"}}});
    let (st, r) = call(
        &c,
        Method::POST,
        "/subjects/orders-value/versions",
        Some(json!({"schema": schema.to_string(), "schemaType": "JSON"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let id = r["id"].as_u64().unwrap() as u32;
    // Now `orders-value` holds a schema: every event's payload is checked against it.
    let (st, v) = c
        .produce(
            "orders",
            json!([{"event_id": "ok", "payload": {"amount": 3}},
                   {"event_id": "bad", "payload": {"amount": "lots"}}]),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["results"][0]["offset"].is_u64(), "{v}");
    assert_eq!(v["results"][1]["error_code"], 42210, "{v}");
    let message = v["results"][1]["message"].as_str().unwrap();
    assert!(
        message.contains("/payload/amount"),
        "the path is named: {message}"
    );

    // Wire-format records: checked against the schema of their id...
    let mut framed = vec![0u8];
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(br#"{"amount": 7}"#);
    let (st, v) = c
        .raw(
            Method::POST,
            "/v1/topics/orders/events?key=k1",
            "application/octet-stream",
            framed.clone(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["results"][0]["offset"].is_u64(), "{v}");
    let mut broken = framed[..5].to_vec();
    broken.extend_from_slice(br#"{"amount": "x"}"#);
    let (_, v) = c
        .raw(
            Method::POST,
            "/v1/topics/orders/events",
            "application/octet-stream",
            broken,
        )
        .await;
    assert_eq!(v["results"][0]["error_code"], 42210, "{v}");
    // ... which must belong to the topic's subject.
    let (_, other) = call(
        &c,
        Method::POST,
        "/subjects/other-value/versions",
        Some(json!({"schema": json!({"type": "object"}).to_string(), "schemaType": "JSON"})),
    )
    .await;
    let mut foreign = vec![0u8];
    foreign.extend_from_slice(&(other["id"].as_u64().unwrap() as u32).to_be_bytes());
    foreign.extend_from_slice(br#"{"amount": 7}"#);
    let (_, v) = c
        .raw(
            Method::POST,
            "/v1/topics/orders/events",
            "application/octet-stream",
            foreign,
        )
        .await;
    assert_eq!(v["results"][0]["error_code"], 42210, "{v}");
    assert!(
        v["results"][0]["message"]
            .as_str()
            .unwrap()
            .contains("orders-value"),
        "{v}"
    );

    // A new version takes effect at once (the pipeline is rebuilt).
    let v2 = json!({"type": "object", "required": ["amount"],
        "properties": {"amount": {"type": ["number", "string"]}}});
    let (st, r) = call(
        &c,
        Method::POST,
        "/subjects/orders-value/versions",
        Some(json!({"schema": v2.to_string(), "schemaType": "JSON"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (_, v) = c
        .produce("orders", json!({"payload": {"amount": "lots"}}))
        .await;
    assert!(v["results"][0]["offset"].is_u64(), "{v}");

    // Only the valid events are in the log: 1 before the schema, 1 envelope, 1 frame, 1 after.
    assert_eq!(c.read_all("orders", 0, 0).await.len(), 4);

    // A topic naming a subject without a schema refuses events rather than not checking them.
    let (st, _) = c
        .post(
            "/v1/topics",
            json!({"name": "strict", "partitions": 1, "replicationFactor": 1, "config": {},
                   "schemaConfig": {"valueSchema": "strict-contract", "compatibility": "FULL"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    // Its `compatibility` became the subject's level in the registry.
    let (_, cfg) = call(&c, Method::GET, "/config/strict-contract", None).await;
    assert_eq!(cfg["compatibilityLevel"], "FULL");
    let (st, v) = c.produce("strict", json!({"payload": {}})).await;
    assert_eq!(
        (st, v["error_code"].as_u64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(42214)),
        "{v}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_every_schema_id_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(options(dir.path())).await;
    let c = s.client();
    let v1 = avro(json!([{"name": "id", "type": "string"}]));
    let v2 = avro(
        json!([{"name": "id", "type": "string"}, {"name": "n", "type": "long", "default": 0}]),
    );
    let (_, a) = register(&c, "orders-value", &v1).await;
    let (_, b) = register(&c, "orders-value", &v2).await;
    call(
        &c,
        Method::PUT,
        "/config/orders-value",
        Some(json!({"compatibility": "FULL"})),
    )
    .await;
    call(
        &c,
        Method::DELETE,
        "/subjects/orders-value/versions/1",
        None,
    )
    .await;
    s.stop().await;

    let s = Server::start_with(options(dir.path())).await;
    let c = s.client();
    let (_, versions) = call(&c, Method::GET, "/subjects/orders-value/versions", None).await;
    assert_eq!(versions, json!([2]));
    let (_, all) = call(
        &c,
        Method::GET,
        "/subjects/orders-value/versions?deleted=true",
        None,
    )
    .await;
    assert_eq!(all, json!([1, 2]));
    let (_, latest) = call(
        &c,
        Method::GET,
        "/subjects/orders-value/versions/latest",
        None,
    )
    .await;
    assert_eq!(latest["id"], b["id"]);
    let (_, by_id) = call(&c, Method::GET, &format!("/schemas/ids/{}", a["id"]), None).await;
    assert_eq!(by_id["schema"], latest_schema_of(&v1));
    let (_, cfg) = call(&c, Method::GET, "/config/orders-value", None).await;
    assert_eq!(cfg["compatibilityLevel"], "FULL");
    // Ids continue after the restart instead of starting over.
    let (_, next) = register(
        &c,
        "other-value",
        &avro(json!([{"name": "z", "type": "int"}])),
    )
    .await;
    assert!(next["id"].as_u64() > b["id"].as_u64(), "{next}");
    s.stop().await;
}

/// The normal form the registry stores: minified, keys sorted.
fn latest_schema_of(text: &str) -> String {
    sluice_registry::normalize(text).unwrap()
}

#[tokio::test]
async fn confluent_python_client_registers_serializes_and_reads_back() {
    let Some(python) = python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the Python venv is missing: run the README's test command (bash tests/run.sh)"
        );
        eprintln!("SKIPPED: no Python venv with confluent-kafka; `bash tests/run.sh` installs it");
        return;
    };
    let s = Server::start().await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/confluent_registry.py");
    let url = s.url.clone();
    let key = s.admin_key.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(url)
            .arg(key)
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Confluent client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("confluent-kafka client: ok"), "{stdout}");
    s.stop().await;
}

#[tokio::test]
async fn the_event_catalog_validates_its_types_and_warns_on_deprecated_ones() {
    let s = Server::start().await;
    let c = s.client();
    let schema = json!({"type": "object", "required": ["booking_id"],
        "properties": {"booking_id": {"type": "string"}, "nights": {"type": "integer"}}});
    let definition = json!({
        "event_id": "BookingEvents.created", "name": "Booking created",
        "description": "A guest booked a stay", "pattern": "bookings.created",
        "version": "1.0.0", "source_types": ["web", "mobile"], "payload_schema": schema,
        "examples": [{"booking_id": "b-1", "nights": 2}],
        "ui_metadata": {"icon": "calendar", "color": "#0a0"}, "status": "active"
    });
    // An example that does not follow the schema refuses the definition.
    let mut broken = definition.clone();
    broken["examples"] = json!([{"booking_id": 7}]);
    let (st, e) = c.post("/v1/event-definitions", broken).await;
    assert_eq!(
        (st, e["error_code"].as_u64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(42215)),
        "{e}"
    );
    assert!(
        e["message"].as_str().unwrap().contains("examples[0]"),
        "{e}"
    );
    let mut bad_version = definition.clone();
    bad_version["version"] = json!("v1");
    let (st, _) = c.post("/v1/event-definitions", bad_version).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    let (st, d) = c.post("/v1/event-definitions", definition.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    assert_eq!(d["schema_subject"], "BookingEvents.created-payload");
    assert_eq!(d["revision"], 1);
    let (_, registered) = call(
        &c,
        Method::GET,
        "/subjects/BookingEvents.created-payload/versions/latest",
        None,
    )
    .await;
    assert_eq!(registered["id"], d["schema_id"]);
    let (st, e) = c.post("/v1/event-definitions", definition.clone()).await;
    assert_eq!(
        (st, e["error_code"].as_u64()),
        (StatusCode::CONFLICT, Some(40904))
    );

    // Produce: the active type is validated, other types are not.
    c.create_topic("bookings", 1).await;
    let (_, v) = c
        .produce(
            "bookings",
            json!([
                {"event_type": "bookings.created", "payload": {"booking_id": "b-2"}},
                {"event_type": "bookings.created", "payload": {"booking_id": 3}},
                {"event_type": "bookings.viewed", "payload": {"anything": true}}
            ]),
        )
        .await;
    assert!(v["results"][0]["offset"].is_u64(), "{v}");
    assert_eq!(v["results"][1]["error_code"], 42210, "{v}");
    assert!(v["results"][2]["offset"].is_u64(), "{v}");

    // An incompatible payload schema is refused by the registry's rules.
    let mut narrowed = definition.clone();
    narrowed["payload_schema"]["required"] = json!(["booking_id", "nights"]);
    let (st, e) = c
        .send(
            Method::PUT,
            "/v1/event-definitions/BookingEvents.created",
            Some(narrowed),
        )
        .await;
    assert_eq!(
        (st, e["error_code"].as_u64()),
        (StatusCode::CONFLICT, Some(409)),
        "{e}"
    );

    // Deprecate it (optimistic concurrency on `revision`).
    let mut deprecated = definition.clone();
    deprecated["status"] = json!("deprecated");
    deprecated["revision"] = json!(1);
    let (st, d) = c
        .send(
            Method::PUT,
            "/v1/event-definitions/BookingEvents.created",
            Some(deprecated.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["revision"], 2);
    let (st, e) = c
        .send(
            Method::PUT,
            "/v1/event-definitions/BookingEvents.created",
            Some(deprecated),
        )
        .await;
    assert_eq!(
        (st, e["error_code"].as_u64()),
        (StatusCode::CONFLICT, Some(40905))
    );
    let (_, listed) = c.get("/v1/event-definitions?status=deprecated").await;
    assert_eq!(
        listed["event_definitions"][0]["event_id"],
        "BookingEvents.created"
    );

    // Deprecated: accepted with a warning, and counted.
    let resp = c
        .http
        .post(format!("{}/v1/topics/bookings/events", c.url))
        .bearer_auth(&c.key)
        .json(&json!({"event_type": "bookings.created", "payload": {"booking_id": 4}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let warning = resp.headers()["warning"].to_str().unwrap().to_owned();
    assert!(warning.contains("bookings.created"), "{warning}");
    let (_, metrics) = c.get("/metrics").await;
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains("sluice_deprecated_events_total{tenant=\"")
            && metrics.contains("event_type=\"bookings.created\"} 1"),
        "{metrics}"
    );
    let (st, _) = c
        .send(
            Method::DELETE,
            "/v1/event-definitions/BookingEvents.created",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = c.get("/v1/event-definitions/BookingEvents.created").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}
