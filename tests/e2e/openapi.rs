//! `GET /openapi.json`: a valid OpenAPI 3.1 document (checked by `openapi-spec-validator`),
//! every documented route served, and nothing served that is not documented.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, python};

/// The router's own answer for a path it has no route for; a handler's 404 reads otherwise.
fn is_unrouted(status: StatusCode, body: &Value) -> bool {
    let message = body["message"].as_str().unwrap_or("");
    status == StatusCode::METHOD_NOT_ALLOWED
        || (status == StatusCode::NOT_FOUND
            && (message.starts_with("no such resource")
                || message.starts_with("no such registry resource")))
}

/// A concrete path for a template: parameters get values every handler can parse.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| match s {
            "{partition}" | "{version}" => "0",
            "{id}" if template.starts_with("/registry/schemas/ids/") => "1",
            s if s.starts_with('{') => "nonexistent",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_document_is_valid_and_every_documented_route_is_served() {
    let s = Server::start().await;
    let c = s.client();
    // No key needed: API-marketplace users generate clients from it.
    let resp = reqwest::get(format!("{}/openapi.json", s.url))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 60, "{} paths", paths.len());

    let mut calls = 0;
    for (template, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            assert!(op["operationId"].is_string(), "{method} {template}");
            assert!(
                op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"]
                    == "#/components/schemas/ApiError",
                "{method} {template}: the error shape"
            );
            let path = concrete(template);
            let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
            let (status, answer) =
                tokio::time::timeout(Duration::from_secs(10), c.send(method.clone(), &path, body))
                    .await
                    .unwrap_or_else(|_| panic!("{method} {path} did not answer"));
            assert!(
                !is_unrouted(status, &answer),
                "documented {method} {template} is not served: {status} {answer}"
            );
            calls += 1;
        }
    }
    assert!(calls >= 100, "{calls} operations");

    // Not in the document, not served: unknown paths and other methods.
    let (status, body) = c.get("/v1/topics/a/b/c").await;
    assert!(is_unrouted(status, &body), "{status} {body}");
    assert!(!paths.contains_key("/v1/topics/{topic}/b/c"));
    let (status, _) = c.send(Method::PUT, "/v1/topics/a/events", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(paths["/v1/topics/{topic}/events"].get("put").is_none());
    // Unauthenticated requests are still refused before routing.
    let resp = reqwest::get(format!("{}/v1/topics", s.url)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // `sluice openapi` prints the same document.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, doc);

    // A real validator of the OpenAPI 3.1 specification.
    let Some(python) = python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the Python venv is missing: run the README's test command (bash tests/run.sh)"
        );
        eprintln!("SKIPPED the validator: no Python venv; `bash tests/run.sh` installs it");
        s.stop().await;
        return;
    };
    let file: PathBuf = s.data.join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = Command::new(python)
        .arg("-c")
        .arg(
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.validation import OpenAPIV31SpecValidator\n\
             validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\n\
             print('valid')",
        )
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("valid"),
        "openapi-spec-validator refused the document:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.stop().await;
}
