//! The webhook gateway at the edge: a Spin HTTP component (`spin.toml`, `wasi:http@0.2`) that
//! verifies each request with the same crate the host's `webhook-gateway` uses
//! (`sluice-webhook-verify`), and forwards an accepted event to a Sluice host's produce API
//! over outbound HTTP, with the sender's delivery id as the event id (so a replay is a
//! duplicate there too). A refused request never leaves the edge.
//!
//! Spin variables (component variables in `spin.toml`): `sluice_url` (the host, as listed in
//! `allowed_outbound_hosts`), `sluice_key` (an API key that may produce to the topic),
//! `topic`, `source_name`, and `source_config` (the same JSON a host source takes:
//! `{"scheme": "standard-webhooks", "secret": "whsec_…", ...}`).

/// The produce envelope for an accepted request (the host's produce API takes it as is).
pub fn envelope(accepted: &sluice_webhook_verify::Accepted, source: &str) -> serde_json::Value {
    let mut e = serde_json::json!({
        "event_type": accepted.event_type,
        "source": format!("/edge/{source}"),
        "payload": accepted.payload,
    });
    if let Some(id) = &accepted.id {
        e["event_id"] = id.clone().into();
    }
    if let Some(key) = &accepted.key {
        e["key"] = key.clone().into();
    }
    e
}

/// A refusal as the host answers one: the status and `{"error_code", "message"}`.
pub fn refusal_body(r: &sluice_webhook_verify::Refusal) -> (u16, String) {
    let code = match r.status {
        400 => 40003,
        401 => 40102,
        s => u32::from(s) * 100 + 20,
    };
    (
        r.status,
        serde_json::json!({"error_code": code, "message": format!("{}: {}", r.code, r.message)})
            .to_string(),
    )
}

#[cfg(target_arch = "wasm32")]
mod edge {
    use spin_sdk::http::{IntoResponse, Method, Request, Response};
    use spin_sdk::http_component;
    use spin_sdk::variables;

    fn json(status: u16, body: String) -> Response {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body)
            .build()
    }

    #[http_component]
    async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
        if *req.method() != Method::Post {
            return Ok(json(
                405,
                r#"{"error_code":40501,"message":"webhooks are POSTed"}"#.into(),
            ));
        }
        let config = sluice_webhook_verify::Config::parse(&variables::get("source_config")?)
            .map_err(|e| anyhow::anyhow!("source_config: {e}"))?;
        let headers: Vec<(String, Vec<u8>)> = req
            .headers()
            .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let request = sluice_webhook_verify::Request {
            headers: &headers,
            body: req.body(),
        };
        let accepted = match sluice_webhook_verify::accept(&config, &request, now) {
            Ok(a) => a,
            Err(r) => {
                let (status, body) = super::refusal_body(&r);
                return Ok(json(status, body));
            }
        };
        let source = variables::get("source_name")?;
        let forward = Request::builder()
            .method(Method::Post)
            .uri(format!(
                "{}/v1/topics/{}/events",
                variables::get("sluice_url")?.trim_end_matches('/'),
                variables::get("topic")?
            ))
            .header(
                "authorization",
                format!("Bearer {}", variables::get("sluice_key")?),
            )
            .header("content-type", "application/json")
            .body(super::envelope(&accepted, &source).to_string())
            .build();
        let answer: Response = spin_sdk::http::send(forward).await?;
        Ok(json(
            *answer.status(),
            String::from_utf8_lossy(answer.body()).into_owned(),
        ))
    }
}
