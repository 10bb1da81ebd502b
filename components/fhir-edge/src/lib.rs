//! The FHIR gateway at the edge: a Spin HTTP component (`spin.toml`, `wasi:http@0.2`) in front
//! of a Sluice host's FHIR API. Changes (`POST`, `PUT`, `DELETE`) are checked at the edge with
//! the same crate the host's `fhir-gateway` uses (`sluice-fhir-check`): an invalid resource is
//! answered there with its `OperationOutcome` and never leaves the edge; valid requests, and
//! reads, are forwarded to `{sluice_url}/fhir/{fhir_tenant}/...` with the edge's API key, and
//! the host's answer (status, `Location`, `ETag`, `Last-Modified`, body) is returned as is.
//!
//! Spin variables: `sluice_url`, `sluice_key` (a key of the tenant that may produce to and
//! consume from `fhir.resources`), `fhir_tenant`.

/// The part of a request path below `/fhir` (the edge's route), e.g. `/Patient/1`.
pub fn below_fhir(path: &str) -> &str {
    let p = path.split('?').next().unwrap_or(path);
    p.strip_prefix("/fhir").unwrap_or(p)
}

/// Check a change at the edge: `Err((status, OperationOutcome JSON))` refuses it here.
pub fn check(
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(), (u16, String)> {
    if !matches!(method, "POST" | "PUT" | "DELETE") {
        return Ok(());
    }
    sluice_fhir_check::changes(
        method,
        below_fhir(path),
        content_type,
        body,
        sluice_fhir_check::FhirVersion::R5,
    )
    .map(drop)
    .map_err(|r| (r.status, r.outcome.to_json()))
}

#[cfg(target_arch = "wasm32")]
mod edge {
    use spin_sdk::http::{IntoResponse, Request, Response};
    use spin_sdk::http_component;
    use spin_sdk::variables;

    #[http_component]
    async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
        let method = req.method().to_string();
        let path = req.path().to_owned();
        let content_type = req
            .header("content-type")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        if let Err((status, outcome)) =
            super::check(&method, &path, content_type.as_deref(), req.body())
        {
            return Ok(Response::builder()
                .status(status)
                .header("content-type", "application/fhir+json")
                .body(outcome)
                .build());
        }
        let url = format!(
            "{}/fhir/{}{}",
            variables::get("sluice_url")?.trim_end_matches('/'),
            variables::get("fhir_tenant")?,
            super::below_fhir(&path)
        );
        let mut forward = Request::builder();
        forward.method(req.method().clone()).uri(url).header(
            "authorization",
            format!("Bearer {}", variables::get("sluice_key")?),
        );
        if let Some(ct) = &content_type {
            forward.header("content-type", ct.as_str());
        }
        if let Some(m) = req.header("if-match").and_then(|v| v.as_str()) {
            forward.header("if-match", m);
        }
        let answer: Response =
            spin_sdk::http::send(forward.body(req.body().to_vec()).build()).await?;
        let mut back = Response::builder();
        back.status(*answer.status());
        for name in ["content-type", "location", "etag", "last-modified"] {
            if let Some(v) = answer.header(name).and_then(|v| v.as_str()) {
                back.header(name, v);
            }
        }
        Ok(back.body(answer.body().to_vec()).build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_checked_and_reads_pass() {
        assert_eq!(below_fhir("/fhir/Patient/1?x=1"), "/Patient/1");
        assert!(check("GET", "/fhir/Patient/1", None, b"").is_ok());
        let ok = br#"{"resourceType": "Patient", "gender": "male"}"#;
        assert!(check("POST", "/fhir/Patient", Some("application/fhir+json"), ok).is_ok());
        let (status, outcome) = check(
            "POST",
            "/fhir/Observation",
            Some("application/fhir+json"),
            br#"{"resourceType": "Observation"}"#,
        )
        .unwrap_err();
        assert_eq!(status, 422);
        assert!(outcome.contains("Observation.status"), "{outcome}");
    }
}
