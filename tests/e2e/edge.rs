//! The edge build: `spin.toml` parsed and checked against the components it names, and its
//! webhook gateway (a `spin-sdk` `wasi:http` component) serving real HTTP in the host's
//! wasi:http runner, verifying webhooks signed by the Standard Webhooks library and forwarding
//! them to a real Sluice.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_edge::{EdgeComponent, Manifest};

use crate::harness::Server;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn spin_toml_names_components_that_exist_and_build() {
    let text = std::fs::read_to_string(root().join("spin.toml")).unwrap();
    let m = Manifest::parse(&text).unwrap();
    assert!(!m.trigger.http.is_empty());
    for t in &m.trigger.http {
        let c = m.component(&t.component).unwrap();
        // Its source is a guest crate of components/, built for wasm32-wasip2.
        let file = c.source.rsplit('/').next().unwrap();
        let krate = file.strip_suffix(".wasm").unwrap().replace('_', "-");
        let dir = krate.strip_prefix("sluice-").unwrap();
        let manifest = root().join("components").join(dir).join("Cargo.toml");
        let cargo = std::fs::read_to_string(&manifest).unwrap_or_else(|_| panic!("{manifest:?}"));
        assert!(cargo.contains(&format!("name = \"{krate}\"")), "{krate}");
        assert!(
            c.source
                .starts_with("components/target/wasm32-wasip2/release/")
        );
        let build = c.build.as_ref().expect("a build command");
        assert!(
            build.command.contains(&format!("-p {krate}")),
            "{}",
            build.command
        );
        // What the host embeds is that crate, built, and a wasi:http component.
        let embedded = sluice_builtins::edge::component(&t.component)
            .unwrap_or_else(|| panic!("{} is not embedded", t.component));
        let vars: HashMap<String, String> = [
            ("sluice_url", "http://127.0.0.1:1"),
            ("sluice_key", "k"),
            ("topic", "t"),
            ("source_config", "{}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        EdgeComponent::load(&m, &t.component, embedded, &vars)
            .expect("the component loads as a wasi:http proxy");
    }
    // Required variables are required.
    let e = m.application_variables(&HashMap::new()).unwrap_err();
    assert!(e.to_string().contains("required"), "{e}");
}

async fn post(url: &str, headers: &[(String, String)], body: &str) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().post(url).body(body.to_owned());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_spin_component_verifies_at_the_edge_and_forwards_to_sluice() {
    let s = Server::start().await;
    let c = s.client();
    c.create_topic("edge-events", 1).await;
    let m = Manifest::parse(&std::fs::read_to_string(root().join("spin.toml")).unwrap()).unwrap();
    let vars: HashMap<String, String> = [
        ("sluice_url", s.url.as_str()),
        ("sluice_key", c.key.as_str()),
        ("topic", "edge-events"),
        ("source_name", "shop"),
        (
            "source_config",
            &json!({"scheme": "standard-webhooks", "secret": SECRET, "event_type": "/type"})
                .to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let edge = Arc::new(
        tokio::task::spawn_blocking(move || {
            EdgeComponent::load(
                &m,
                "webhook-edge",
                sluice_builtins::edge::WEBHOOK_EDGE,
                &vars,
            )
        })
        .await
        .unwrap()
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/shop", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sluice_edge::serve(edge, listener, async {
        let _ = stopped.await;
    }));

    let body = r#"{"type": "order.paid", "data": {"order": 7}}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let signed = {
        let body = body.to_owned();
        tokio::task::spawn_blocking(move || {
            crate::sources::signed("standardwebhooks", SECRET, "msg_edge_1", now, &body)
        })
        .await
        .unwrap()
    };
    let Some(headers) = signed else { return };
    let (st, v) = post(&url, &headers, body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["results"][0]["offset"].is_u64(), "{v}");
    let got = c.read_all("edge-events", 0, 0).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["event"]["event_id"], "msg_edge_1");
    assert_eq!(got[0]["event"]["event_type"], "order.paid");
    assert_eq!(got[0]["event"]["source"], "/edge/shop");
    assert_eq!(got[0]["event"]["payload"]["data"]["order"], 7);
    // A replay is a duplicate at the host; a tampered one never leaves the edge.
    let (st, v) = post(&url, &headers, body).await;
    assert_eq!(
        (st, v["results"][0]["duplicate"].clone()),
        (StatusCode::OK, json!(true)),
        "{v}"
    );
    let (st, v) = post(&url, &headers, &body.replace('7', "8")).await;
    assert_eq!(
        (st, v["error_code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(40102)),
        "{v}"
    );
    let (st, _) = reqwest::get(&url).await.map(|r| (r.status(), ())).unwrap();
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(c.read_all("edge-events", 0, 0).await.len(), 1);
    let _ = stop.send(());
    s.stop().await;
}

#[tokio::test]
async fn the_spin_fhir_gateway_checks_at_the_edge_and_forwards_to_sluice() {
    let s = Server::start().await;
    let c = s.client();
    let m = Manifest::parse(&std::fs::read_to_string(root().join("spin.toml")).unwrap()).unwrap();
    let vars: HashMap<String, String> = [
        ("sluice_url", s.url.as_str()),
        ("sluice_key", c.key.as_str()),
        ("topic", "unused"),
        ("source_config", "{}"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let edge = Arc::new(
        tokio::task::spawn_blocking(move || {
            EdgeComponent::load(&m, "fhir-edge", sluice_builtins::edge::FHIR_EDGE, &vars)
        })
        .await
        .unwrap()
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sluice_edge::serve(edge, listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    // A valid Patient goes through to the host's FHIR API, which answers as a FHIR server.
    let r = http
        .post(format!("{base}/Patient"))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "gender": "female"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/fhir/default/Patient/")
    );
    let created: Value = r.json().await.unwrap();
    // Reads are forwarded too.
    let read: Value = http
        .get(format!(
            "{base}/Patient/{}",
            created["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read, created);
    // An invalid Observation is answered at the edge and never reaches the host.
    let r = http
        .post(format!("{base}/Observation"))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Observation", "status": "final"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    let outcome: Value = r.json().await.unwrap();
    assert_eq!(outcome["issue"][0]["expression"][0], "Observation.code");
    assert_eq!(c.read_all("fhir.resources", 0, 0).await.len(), 1);
    let _ = stop.send(());
}
