//! `GET /openapi.json` and `sluice openapi`: an OpenAPI 3.1 document of every route, generated
//! from the router's own table ([`super::routes::ROUTES`]), the error type every handler answers
//! with ([`ApiError`], through its `ToSchema`), and the Topic Configuration schema the topic
//! handlers validate documents against.

use std::sync::OnceLock;

use serde_json::Value;
use sluice_tenancy::error::ApiError;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApiBuilder, PathsBuilder, Ref, Required,
    ResponseBuilder,
};

use super::routes::{Gives, ROUTES, Route, Takes};

const ERROR: &str = "#/components/schemas/ApiError";
const TOPIC_DOCUMENT: &str = "#/components/schemas/TopicConfiguration";

/// The document, built once per process.
pub fn document() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_vec_pretty(&build()).expect("the document serializes"))
}

fn build() -> Value {
    let mut paths = PathsBuilder::new();
    for r in ROUTES {
        paths = paths.path(r.path, PathItem::new(method(r), operation(r)));
    }
    let components = ComponentsBuilder::new()
        .schema_from::<ApiError>()
        .security_scheme(
            "apiKey",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        )
        .security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        )
        .build();
    let api = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Sluice")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The Sluice event gateway's HTTP API. Every error answers with \
                     `{\"error_code\", \"message\"}` (see docs/API.md); API keys go in \
                     `Authorization: Bearer sk_...` or as Basic credentials (id:secret).",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .security(Some(vec![
            SecurityRequirement::new("apiKey", Vec::<String>::new()),
            SecurityRequirement::new("basic", Vec::<String>::new()),
        ]))
        .build();
    let mut doc = serde_json::to_value(&api).expect("the document serializes");
    // The very schema `POST /v1/topics` validates with, as written (JSON Schema, which
    // OpenAPI 3.1 takes as it is).
    let topic: Value =
        serde_json::from_str(include_str!("topic_schema.json")).expect("schema is JSON");
    doc["components"]["schemas"]["TopicConfiguration"] = topic;
    doc
}

fn method(r: &Route) -> HttpMethod {
    match r.method.as_str() {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        "OPTIONS" => HttpMethod::Options,
        other => unreachable!("no route uses {other}"),
    }
}

fn operation(r: &Route) -> utoipa::openapi::path::Operation {
    let mut op = OperationBuilder::new()
        .operation_id(Some(operation_id(r)))
        .summary(Some(r.summary))
        .tag(r.tag);
    for name in r
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
    {
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    if let Some(body) = request_body(r.takes) {
        op = op.request_body(Some(body));
    }
    let ok = match r.gives {
        Gives::Nothing => ResponseBuilder::new().description("Done"),
        gives => {
            let (media, schema) = answer(gives);
            ResponseBuilder::new()
                .description("Success")
                .content(media, ContentBuilder::new().schema(Some(schema)).build())
        }
    };
    let error = ResponseBuilder::new()
        .description("An error: the status says which kind, `error_code` which error")
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(Ref::new(ERROR))).build(),
        );
    op = op
        .response(r.status.to_string(), ok.build())
        .response("default", error.build());
    if !r.authenticated {
        op = op.securities(Some(Vec::<SecurityRequirement>::new()));
    }
    op.build()
}

fn operation_id(r: &Route) -> String {
    let mut id = r.method.as_str().to_lowercase();
    for s in r.path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        let s = s.trim_start_matches('{').trim_end_matches('}');
        id.extend(
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    id
}

fn any_object() -> utoipa::openapi::schema::Object {
    ObjectBuilder::new().schema_type(Type::Object).build()
}

fn request_body(takes: Takes) -> Option<utoipa::openapi::request_body::RequestBody> {
    let json_body = |media: &[&str], schema: utoipa::openapi::RefOr<_>| {
        let mut b = RequestBodyBuilder::new().required(Some(Required::True));
        for m in media {
            b = b.content(
                *m,
                ContentBuilder::new().schema(Some(schema.clone())).build(),
            );
        }
        Some(b.build())
    };
    match takes {
        Takes::Nothing => None,
        Takes::Json => json_body(&["application/json"], any_object().into()),
        Takes::TopicDocument => json_body(&["application/json"], Ref::new(TOPIC_DOCUMENT).into()),
        Takes::Events => json_body(
            &[
                "application/json",
                "application/x-ndjson",
                "application/octet-stream",
            ],
            ObjectBuilder::new()
                .description(Some(
                    "One event envelope or a JSON array of them; NDJSON, one per line; or one \
                     record's raw value (octet-stream, with `?key=` and `?partition=`)",
                ))
                .build()
                .into(),
        ),
        Takes::Wasm => json_body(
            &["application/wasm"],
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("the component's .wasm bytes"))
                .build()
                .into(),
        ),
        Takes::Fhir => json_body(&["application/fhir+json"], any_object().into()),
        Takes::Webhook => json_body(
            &[
                "application/json",
                "application/x-www-form-urlencoded",
                "*/*",
            ],
            ObjectBuilder::new()
                .description(Some(
                    "the request as the sender sends it; the source's component verifies its \
                     signature headers and reads the event from it",
                ))
                .build()
                .into(),
        ),
        Takes::Registry => json_body(
            &["application/vnd.schemaregistry.v1+json", "application/json"],
            any_object().into(),
        ),
        Takes::RestProxy => json_body(
            &[
                "application/vnd.kafka.v2+json",
                "application/vnd.kafka.json.v2+json",
                "application/vnd.kafka.binary.v2+json",
                "application/vnd.kafka.avro.v2+json",
            ],
            any_object().into(),
        ),
    }
}

fn answer(
    gives: Gives,
) -> (
    &'static str,
    utoipa::openapi::RefOr<utoipa::openapi::Schema>,
) {
    let text = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .build()
            .into()
    };
    match gives {
        Gives::Json | Gives::Nothing => ("application/json", any_object().into()),
        Gives::Metrics => ("application/openmetrics-text", text()),
        Gives::Stream => ("text/event-stream", text()),
        Gives::Registry => (
            "application/vnd.schemaregistry.v1+json",
            any_object().into(),
        ),
        Gives::RestProxy => ("application/vnd.kafka.v2+json", any_object().into()),
        Gives::Fhir => ("application/fhir+json", any_object().into()),
    }
}

/// The document as JSON, for tests and `sluice openapi`.
pub fn document_json() -> Value {
    serde_json::from_slice(document()).expect("the document is JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_route_is_in_the_document() {
        let doc = document_json();
        assert_eq!(doc["openapi"], "3.1.0");
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
            assert!(op.is_object(), "{} {} missing", r.method, r.path);
            assert_eq!(op["operationId"], json!(operation_id(r)));
        }
        let error = &doc["components"]["schemas"]["ApiError"];
        assert!(error["properties"]["error_code"].is_object(), "{error}");
        assert!(error["properties"]["message"].is_object(), "{error}");
        assert!(error["properties"].get("status").is_none(), "{error}");
        assert!(doc["components"]["schemas"]["TopicConfiguration"].is_object());
    }
}
