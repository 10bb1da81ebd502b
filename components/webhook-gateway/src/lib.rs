//! `webhook-gateway`: the `ingress` world over `sluice-webhook-verify`. A source's
//! configuration names the scheme and secrets; each request is verified (constant-time) and
//! becomes one event, its id the sender's delivery id so a replay is a duplicate.

#[cfg(target_arch = "wasm32")]
mod guest {
    use std::cell::RefCell;

    use sluice_webhook_verify::{Config, Request, accept};

    wit_bindgen::generate!({ world: "ingress-gateway", path: "../../wit" });

    use exports::sluice::gateway::ingress::{Accepted, Guest, HttpRequest, Refusal};
    use sluice::gateway::types::Header;

    thread_local! {
        static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
    }

    struct Gateway;

    impl Guest for Gateway {
        fn init(config: String) -> Result<(), String> {
            let parsed = Config::parse(&config).map_err(|e| e.0)?;
            CONFIG.with(|c| *c.borrow_mut() = Some(parsed));
            Ok(())
        }

        fn handle(request: HttpRequest) -> Result<Vec<Accepted>, Refusal> {
            CONFIG.with(|c| {
                let c = c.borrow();
                let config = c.as_ref().ok_or_else(|| Refusal {
                    status: 500,
                    code: "not-configured".into(),
                    message: "the gateway was not given its configuration".into(),
                })?;
                if !request.method.eq_ignore_ascii_case("POST") {
                    return Err(Refusal {
                        status: 405,
                        code: "method".into(),
                        message: "webhooks are POSTed".into(),
                    });
                }
                let headers: Vec<(String, Vec<u8>)> = request
                    .headers
                    .into_iter()
                    .map(|h| (h.name, h.value))
                    .collect();
                let r = Request {
                    headers: &headers,
                    body: &request.body,
                };
                let a =
                    accept(config, &r, request.received.div_euclid(1000)).map_err(|e| Refusal {
                        status: e.status,
                        code: e.code.into(),
                        message: e.message,
                    })?;
                let mut out_headers: Vec<Header> = Vec::new();
                if let Some(at) = a.signed_at {
                    out_headers.push(Header {
                        name: "webhook_signed_at".into(),
                        value: at.to_string().into_bytes(),
                    });
                }
                Ok(vec![Accepted {
                    id: a.id,
                    type_: a.event_type,
                    key: a.key.map(String::into_bytes),
                    payload: a.payload_text.unwrap_or_else(|| a.payload.to_string()),
                    headers: out_headers,
                }])
            })
        }
    }

    export!(Gateway);
}
