//! `fhir-gateway`: FHIR resource changes in (the `ingress` world). For a request to the FHIR
//! API of a tenant — the path below `/fhir/{tenant}` — it checks the resources structurally
//! and answers one event per change:
//!
//! - `POST /{Type}` (create), `PUT /{Type}/{id}` (update or create), `DELETE /{Type}/{id}`;
//! - `POST /` with a `transaction` or `batch` Bundle: every entry's change, all or none;
//!
//! each as `fhir.{Type}.{create|update|delete}` keyed `{Type}/{id}` (a create without an id is
//! keyed by the host once it assigns one), the resource as the payload (a deletion:
//! `{"resourceType", "id", "deleted": true}`, a tombstone to compaction), and the FHIR version
//! (`R4`, `R4B`, `R5`: from `fhirVersion` in the content type, else the configuration's
//! `fhir_version`, else R5) in the header `fhir_version`. A refusal's message is an
//! `OperationOutcome` (JSON) with one issue per problem: severity, code, diagnostics and the
//! FHIRPath `expression` of the element.
//!
//! The checks and the mapping to changes are `sluice-fhir-check`'s (shared with the Spin
//! `fhir-edge`), notifications an EHR sends included.

pub use sluice_fhir_check::{Change, FhirVersion, Issue, Outcome, Refused, changes};

#[cfg(target_arch = "wasm32")]
mod guest {
    use std::cell::Cell;

    use super::{FhirVersion, changes};

    wit_bindgen::generate!({ world: "ingress-gateway", path: "../../wit" });

    use exports::sluice::gateway::ingress::{Accepted, Guest, HttpRequest, Refusal};
    use sluice::gateway::types::Header;

    thread_local! {
        static DEFAULT_VERSION: Cell<FhirVersion> = const { Cell::new(FhirVersion::R5) };
    }

    struct Gateway;

    impl Guest for Gateway {
        fn init(config: String) -> Result<(), String> {
            let config = config.trim();
            if config.is_empty() {
                return Ok(());
            }
            let v: serde_json::Value =
                serde_json::from_str(config).map_err(|e| format!("config is not JSON: {e}"))?;
            if let Some(version) = v.get("fhir_version") {
                let parsed = version
                    .as_str()
                    .and_then(FhirVersion::parse)
                    .ok_or("`fhir_version` is R4, R4B or R5")?;
                DEFAULT_VERSION.with(|d| d.set(parsed));
            }
            Ok(())
        }

        fn handle(request: HttpRequest) -> Result<Vec<Accepted>, Refusal> {
            let content_type = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-type"))
                .and_then(|h| std::str::from_utf8(&h.value).ok())
                .map(str::to_owned);
            let default = DEFAULT_VERSION.with(Cell::get);
            match changes(
                &request.method,
                &request.path,
                content_type.as_deref(),
                &request.body,
                default,
            ) {
                Ok((version, list)) => Ok(list
                    .into_iter()
                    .map(|c| Accepted {
                        id: None,
                        // A batch entry refused in its place; a notification event with
                        // no focus; a change.
                        type_: if c.interaction == "outcome" {
                            "fhir.outcome".to_owned()
                        } else if c.resource_type.is_empty() {
                            "fhir.notification".to_owned()
                        } else {
                            format!("fhir.{}.{}", c.resource_type, c.interaction)
                        },
                        key: c
                            .id
                            .as_ref()
                            .map(|id| format!("{}/{id}", c.resource_type).into_bytes()),
                        payload: c.payload,
                        headers: std::iter::once(Header {
                            name: "fhir_version".into(),
                            value: version.name().as_bytes().to_vec(),
                        })
                        .chain(c.headers.into_iter().map(|(name, v)| Header {
                            name,
                            value: v.into_bytes(),
                        }))
                        .collect(),
                    })
                    .collect()),
                Err(r) => Err(Refusal {
                    status: r.status,
                    code: r.code.into(),
                    message: r.outcome.to_json(),
                }),
            }
        }
    }

    export!(Gateway);
}
