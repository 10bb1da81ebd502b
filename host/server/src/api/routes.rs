//! Every route the HTTP API serves, in one table.
//!
//! The router consults it before anything else ([`find`]): a path that no route has is a 404,
//! a known path asked with another method a 405, and only what is listed here reaches a
//! handler. `GET /openapi.json` ([`super::openapi`]) is generated from the same table, so the
//! document and the router cannot drift apart: a route missing here is refused, and a route
//! listed here that no handler answers fails the test that calls every documented route.

use http::Method;

/// What a route takes as its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    Nothing,
    /// A JSON document.
    Json,
    /// The Topic Configuration document (the seed's JSON Schema).
    TopicDocument,
    /// Events: one envelope or an array (JSON), NDJSON, or one raw value.
    Events,
    /// A WebAssembly component.
    Wasm,
    /// A webhook as its sender sends it (any media type; the source's component reads it).
    Webhook,
    /// Confluent's schema registry JSON.
    Registry,
    /// Confluent's REST Proxy v2 JSON (`application/vnd.kafka[.<format>].v2+json`).
    RestProxy,
    /// A FHIR resource or Bundle (`application/fhir+json`).
    Fhir,
}

/// What a route answers with when it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gives {
    Json,
    /// No body (204).
    Nothing,
    /// Prometheus / OpenMetrics text.
    Metrics,
    /// Server-Sent Events (or a WebSocket, when the request asks to upgrade).
    Stream,
    Registry,
    RestProxy,
    /// A FHIR resource, Bundle or OperationOutcome (`application/fhir+json`).
    Fhir,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    /// The path as OpenAPI writes it: `{name}` is one segment.
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub takes: Takes,
    pub gives: Gives,
    /// Success status.
    pub status: u16,
    /// Needs an API key (every route but the health checks and this document).
    pub authenticated: bool,
}

/// Is a successful call of this route a change the audit trail records? Every write but the
/// data path (produce, REST Proxy consumers) and the registry's reads by POST.
pub fn audited(r: &Route) -> bool {
    r.method != Method::GET
        && !matches!(r.tag, "events" | "rest-proxy" | "operations")
        && !r.path.starts_with("/registry/compatibility/")
        && r.path != "/registry/subjects/{subject}"
        && !r.path.ends_with("/hooks")
        && !r.path.starts_with("/hooks/")
}

/// Where a request lands in the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    Route(&'static Route),
    /// The path exists, with other methods.
    OtherMethod,
    Unknown,
}

/// Every route's template split into segments once (`None`: a `{parameter}`), so matching a
/// request (which every request does) compares slices and splits nothing.
static SPLIT: std::sync::LazyLock<Vec<Vec<Option<&'static str>>>> =
    std::sync::LazyLock::new(|| {
        ROUTES
            .iter()
            .map(|r| {
                r.path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| (!s.starts_with('{')).then_some(s))
                    .collect()
            })
            .collect()
    });

pub fn find(method: &Method, segments: &[&str]) -> Found {
    let mut path_known = false;
    for (r, template) in ROUTES.iter().zip(SPLIT.iter()) {
        if matches(template, segments) {
            if r.method == *method {
                return Found::Route(r);
            }
            path_known = true;
        }
    }
    if path_known {
        Found::OtherMethod
    } else {
        Found::Unknown
    }
}

fn matches(template: &[Option<&str>], segments: &[&str]) -> bool {
    template.len() == segments.len()
        && template
            .iter()
            .zip(segments)
            .all(|(t, s)| t.is_none_or(|t| t == *s))
}

macro_rules! routes {
    ($($method:ident $path:literal, $tag:literal, $summary:literal, $takes:ident -> $gives:ident $status:literal $(, $open:ident)?;)*) => {
        &[$(Route {
            method: Method::$method,
            path: $path,
            tag: $tag,
            summary: $summary,
            takes: Takes::$takes,
            gives: Gives::$gives,
            status: $status,
            authenticated: routes!(@auth $($open)?),
        },)*]
    };
    (@auth) => { true };
    (@auth open) => { false };
}

pub static ROUTES: &[Route] = routes! {
    GET "/healthz", "operations", "Liveness", Nothing -> Json 200, open;
    GET "/readyz", "operations", "Readiness (503 while another writer owns the log)", Nothing -> Json 200, open;
    GET "/openapi.json", "operations", "This document", Nothing -> Json 200, open;
    GET "/metrics", "operations", "Prometheus metrics (system key)", Nothing -> Metrics 200;

    POST "/v1/topics", "topics", "Create a topic", TopicDocument -> Json 201;
    GET "/v1/topics", "topics", "List the tenant's topics", Nothing -> Json 200;
    GET "/v1/topics/{topic}", "topics", "Describe a topic", Nothing -> Json 200;
    PATCH "/v1/topics/{topic}", "topics", "Change a topic's document (merge patch)", Json -> Json 200;
    DELETE "/v1/topics/{topic}", "topics", "Delete a topic and its events", Nothing -> Nothing 204;
    POST "/v1/topics/{topic}/events", "events", "Produce events", Events -> Json 200;
    GET "/v1/topics/{topic}/partitions/{partition}/events", "events", "Fetch a partition's events (long-poll with wait_ms)", Nothing -> Json 200;
    GET "/v1/topics/{topic}/stream", "events", "Stream events (Server-Sent Events, or WebSocket)", Nothing -> Stream 200;
    GET "/v1/topics/{topic}/offsets", "events", "Offsets of every partition, or at a time", Nothing -> Json 200;
    POST "/v1/topics/{topic}/compact", "topics", "Compact a compacted topic's partitions now (admin)", Nothing -> Json 200;

    POST "/v1/tenants", "tenants", "Create a tenant and its first admin key (system key)", Json -> Json 201;
    GET "/v1/tenants", "tenants", "List tenants (system key)", Nothing -> Json 200;
    GET "/v1/tenants/{tenant}/quotas", "tenants", "A tenant's quotas (system key)", Nothing -> Json 200;
    PUT "/v1/tenants/{tenant}/quotas", "tenants", "Set a tenant's quotas (system key)", Json -> Json 200;
    POST "/v1/keys", "tenants", "Create an API key", Json -> Json 201;
    GET "/v1/keys", "tenants", "List API keys (never their secrets)", Nothing -> Json 200;
    DELETE "/v1/keys/{id}", "tenants", "Revoke an API key", Nothing -> Json 200;
    PUT "/v1/keys/{id}/client-cert", "tenants", "Bind a key to a client certificate's SHA-256 (null unbinds)", Json -> Json 200;
    GET "/v1/whoami", "tenants", "The calling key's tenant and scopes", Nothing -> Json 200;
    GET "/v1/data-keys", "tenants", "The ids of the tenant's data keys for PHI topics (tenant admin)", Nothing -> Json 200;
    POST "/v1/data-keys/rotate", "tenants", "A new data key seals the tenant's PHI topics from now on (tenant admin)", Nothing -> Json 200;
    GET "/v1/audit", "tenants", "The tenant's audit trail (tenant admin; ?since=&limit=)", Nothing -> Json 200;

    GET "/v1/components", "components", "List components", Nothing -> Json 200;
    PUT "/v1/components/{name}", "components", "Upload a component version", Wasm -> Json 201;
    GET "/v1/components/{name}", "components", "Describe a component", Nothing -> Json 200;
    GET "/v1/transforms", "transforms", "List transforms", Nothing -> Json 200;
    POST "/v1/transforms", "transforms", "Create a transform", Json -> Json 201;
    GET "/v1/transforms/{name}", "transforms", "A transform's status", Nothing -> Json 200;
    PUT "/v1/transforms/{name}", "transforms", "Create or redeploy a transform", Json -> Json 200;
    DELETE "/v1/transforms/{name}", "transforms", "Delete a transform", Nothing -> Nothing 204;
    POST "/v1/transforms/{name}/stop", "transforms", "Stop a transform", Json -> Json 200;
    POST "/v1/transforms/{name}/start", "transforms", "Start a transform", Json -> Json 200;

    GET "/v1/event-definitions", "catalog", "List event definitions", Nothing -> Json 200;
    POST "/v1/event-definitions", "catalog", "Define an event type", Json -> Json 201;
    GET "/v1/event-definitions/{id}", "catalog", "Describe an event definition", Nothing -> Json 200;
    PUT "/v1/event-definitions/{id}", "catalog", "Replace an event definition", Json -> Json 200;
    DELETE "/v1/event-definitions/{id}", "catalog", "Delete an event definition", Nothing -> Json 200;

    GET "/v1/sources", "sources", "List the tenant's sources (edge gateways; secrets masked)", Nothing -> Json 200;
    POST "/v1/sources", "sources", "Create a source: a topic, an ingress component and its configuration", Json -> Json 201;
    GET "/v1/sources/{name}", "sources", "Describe a source (secrets masked)", Nothing -> Json 200;
    PUT "/v1/sources/{name}", "sources", "Create or replace a source", Json -> Json 200;
    DELETE "/v1/sources/{name}", "sources", "Delete a source", Nothing -> Nothing 204;
    POST "/v1/sources/{name}/hooks", "sources", "Send a request to a source with an API key (verified by its component too)", Webhook -> Json 200;
    POST "/hooks/{tenant}/{name}", "sources", "A source's public URL: no API key, the request's signature is the credential", Webhook -> Json 200, open;
    GET "/fhir/{tenant}/metadata", "fhir", "The FHIR CapabilityStatement", Nothing -> Fhir 200, open;
    POST "/fhir/{tenant}", "fhir", "A FHIR transaction or batch Bundle (all or nothing)", Fhir -> Fhir 200;
    POST "/fhir/{tenant}/{type}", "fhir", "Create a FHIR resource", Fhir -> Fhir 201;
    GET "/fhir/{tenant}/{type}/{id}", "fhir", "Read a FHIR resource's newest version", Nothing -> Fhir 200;
    PUT "/fhir/{tenant}/{type}/{id}", "fhir", "Update (or create) a FHIR resource; If-Match W/\"n\" checks the version", Fhir -> Fhir 200;
    DELETE "/fhir/{tenant}/{type}/{id}", "fhir", "Delete a FHIR resource", Nothing -> Nothing 204;
    GET "/fhir/{tenant}/Subscription/{id}/$status", "fhir", "A Subscription's status (a searchset Bundle of its SubscriptionStatus)", Nothing -> Fhir 200;
    GET "/fhir/{tenant}/Subscription/{id}/$events", "fhir", "A Subscription's notifications replayed from its topic (eventsSinceNumber, eventsUntilNumber, content)", Nothing -> Fhir 200;
    GET "/fhir/{tenant}/Subscription/{id}/$get-ws-binding-token", "fhir", "A token that binds a WebSocket to a websocket-channel Subscription", Nothing -> Fhir 200;
    GET "/fhir/{tenant}/$websocket", "fhir", "The websocket channel: upgrade, send `bind-with-token <token>`, receive notification Bundles", Nothing -> Nothing 101, open;
    OPTIONS "/hooks/{tenant}/{name}", "sources", "The CloudEvents webhook abuse-protection handshake (WebHook-Request-Origin)", Nothing -> Nothing 200, open;

    GET "/v1/subscriptions", "webhooks", "List webhook subscriptions", Nothing -> Json 200;
    POST "/v1/subscriptions", "webhooks", "Create a webhook subscription", Json -> Json 201;
    GET "/v1/subscriptions/{id}", "webhooks", "Describe a subscription", Nothing -> Json 200;
    PUT "/v1/subscriptions/{id}", "webhooks", "Replace a subscription", Json -> Json 200;
    PATCH "/v1/subscriptions/{id}", "webhooks", "Change a subscription", Json -> Json 200;
    DELETE "/v1/subscriptions/{id}", "webhooks", "Delete a subscription", Nothing -> Nothing 204;
    GET "/v1/subscriptions/{id}/secret", "webhooks", "A subscription's signing secret", Nothing -> Json 200;
    POST "/v1/subscriptions/{id}/rotate-secret", "webhooks", "Rotate the signing secret", Json -> Json 200;
    GET "/v1/subscriptions/{id}/attempts", "webhooks", "Delivery attempts, newest first", Nothing -> Json 200;
    POST "/v1/subscriptions/{id}/replay", "webhooks", "Deliver past events again", Json -> Json 202;
    POST "/v1/subscriptions/{id}/redrive", "webhooks", "Deliver dead letters again", Json -> Json 202;
    GET "/v1/triggers", "webhooks", "List workflow triggers", Nothing -> Json 200;
    POST "/v1/triggers", "webhooks", "Create a workflow trigger", Json -> Json 201;
    GET "/v1/triggers/attempts", "webhooks", "Trigger delivery attempts", Nothing -> Json 200;
    GET "/v1/triggers/secret", "webhooks", "The tenant's trigger signing secret", Nothing -> Json 200;
    GET "/v1/triggers/{id}", "webhooks", "Describe a trigger", Nothing -> Json 200;
    PUT "/v1/triggers/{id}", "webhooks", "Replace a trigger", Json -> Json 200;
    PATCH "/v1/triggers/{id}", "webhooks", "Change a trigger", Json -> Json 200;
    DELETE "/v1/triggers/{id}", "webhooks", "Delete a trigger", Nothing -> Nothing 204;

    GET "/v1/alerts", "groups", "Consumer lag alerts", Nothing -> Json 200;
    GET "/v1/groups", "groups", "List consumer groups", Nothing -> Json 200;
    POST "/v1/groups", "groups", "Create a consumer group", Json -> Json 201;
    GET "/v1/groups/{id}", "groups", "Describe a group: members, offsets, lag", Nothing -> Json 200;
    PUT "/v1/groups/{id}", "groups", "Configure a group", Json -> Json 200;
    DELETE "/v1/groups/{id}", "groups", "Delete a group", Nothing -> Nothing 204;
    POST "/v1/groups/{id}/offsets/reset", "groups", "Reset a group's offsets", Json -> Json 200;

    GET "/registry", "registry", "Schema registry root", Nothing -> Registry 200;
    GET "/registry/schemas/types", "registry", "Schema types", Nothing -> Registry 200;
    GET "/registry/schemas/ids/{id}", "registry", "A schema by id", Nothing -> Registry 200;
    GET "/registry/schemas/ids/{id}/schema", "registry", "A schema's text by id", Nothing -> Registry 200;
    GET "/registry/schemas/ids/{id}/subjects", "registry", "Subjects using a schema", Nothing -> Registry 200;
    GET "/registry/schemas/ids/{id}/versions", "registry", "Subject versions using a schema", Nothing -> Registry 200;
    GET "/registry/subjects", "registry", "List subjects", Nothing -> Registry 200;
    POST "/registry/subjects/{subject}", "registry", "Look a schema up under a subject", Registry -> Registry 200;
    DELETE "/registry/subjects/{subject}", "registry", "Delete a subject", Nothing -> Registry 200;
    GET "/registry/subjects/{subject}/versions", "registry", "A subject's versions", Nothing -> Registry 200;
    POST "/registry/subjects/{subject}/versions", "registry", "Register a schema", Registry -> Registry 200;
    GET "/registry/subjects/{subject}/versions/{version}", "registry", "A version", Nothing -> Registry 200;
    DELETE "/registry/subjects/{subject}/versions/{version}", "registry", "Delete a version", Nothing -> Registry 200;
    GET "/registry/subjects/{subject}/versions/{version}/schema", "registry", "A version's schema text", Nothing -> Registry 200;
    GET "/registry/subjects/{subject}/versions/{version}/referencedby", "registry", "Schemas referencing a version", Nothing -> Registry 200;
    POST "/registry/compatibility/subjects/{subject}/versions", "registry", "Test compatibility with every version the level checks", Registry -> Registry 200;
    POST "/registry/compatibility/subjects/{subject}/versions/{version}", "registry", "Test compatibility with one version", Registry -> Registry 200;
    GET "/registry/config", "registry", "Global compatibility level", Nothing -> Registry 200;
    PUT "/registry/config", "registry", "Set the global compatibility level", Registry -> Registry 200;
    DELETE "/registry/config", "registry", "Reset the global compatibility level", Nothing -> Registry 200;
    GET "/registry/config/{subject}", "registry", "A subject's compatibility level", Nothing -> Registry 200;
    PUT "/registry/config/{subject}", "registry", "Set a subject's compatibility level", Registry -> Registry 200;
    DELETE "/registry/config/{subject}", "registry", "Reset a subject's compatibility level", Nothing -> Registry 200;
    GET "/registry/mode", "registry", "Global mode", Nothing -> Registry 200;
    PUT "/registry/mode", "registry", "Set the global mode", Registry -> Registry 200;
    DELETE "/registry/mode", "registry", "Reset the global mode", Nothing -> Registry 200;
    GET "/registry/mode/{subject}", "registry", "A subject's mode", Nothing -> Registry 200;
    PUT "/registry/mode/{subject}", "registry", "Set a subject's mode", Registry -> Registry 200;
    DELETE "/registry/mode/{subject}", "registry", "Reset a subject's mode", Nothing -> Registry 200;

    GET "/topics", "rest-proxy", "REST Proxy v2: topic names", Nothing -> RestProxy 200;
    GET "/topics/{topic}", "rest-proxy", "REST Proxy v2: a topic", Nothing -> RestProxy 200;
    POST "/topics/{topic}", "rest-proxy", "REST Proxy v2: produce", RestProxy -> RestProxy 200;
    GET "/topics/{topic}/partitions", "rest-proxy", "REST Proxy v2: partitions", Nothing -> RestProxy 200;
    GET "/topics/{topic}/partitions/{partition}", "rest-proxy", "REST Proxy v2: a partition", Nothing -> RestProxy 200;
    POST "/topics/{topic}/partitions/{partition}", "rest-proxy", "REST Proxy v2: produce to a partition", RestProxy -> RestProxy 200;
    GET "/topics/{topic}/partitions/{partition}/offsets", "rest-proxy", "REST Proxy v2: a partition's offsets", Nothing -> RestProxy 200;
    POST "/consumers/{group}", "rest-proxy", "REST Proxy v2: create a consumer instance", RestProxy -> RestProxy 200;
    DELETE "/consumers/{group}/instances/{instance}", "rest-proxy", "REST Proxy v2: remove an instance", Nothing -> Nothing 204;
    POST "/consumers/{group}/instances/{instance}/subscription", "rest-proxy", "REST Proxy v2: subscribe", RestProxy -> Nothing 204;
    GET "/consumers/{group}/instances/{instance}/subscription", "rest-proxy", "REST Proxy v2: the subscription", Nothing -> RestProxy 200;
    DELETE "/consumers/{group}/instances/{instance}/subscription", "rest-proxy", "REST Proxy v2: unsubscribe", Nothing -> Nothing 204;
    POST "/consumers/{group}/instances/{instance}/assignments", "rest-proxy", "REST Proxy v2: assign partitions", RestProxy -> Nothing 204;
    GET "/consumers/{group}/instances/{instance}/assignments", "rest-proxy", "REST Proxy v2: the assignment", Nothing -> RestProxy 200;
    POST "/consumers/{group}/instances/{instance}/positions", "rest-proxy", "REST Proxy v2: seek", RestProxy -> Nothing 204;
    POST "/consumers/{group}/instances/{instance}/positions/beginning", "rest-proxy", "REST Proxy v2: seek to the beginning", RestProxy -> Nothing 204;
    POST "/consumers/{group}/instances/{instance}/positions/end", "rest-proxy", "REST Proxy v2: seek to the end", RestProxy -> Nothing 204;
    GET "/consumers/{group}/instances/{instance}/records", "rest-proxy", "REST Proxy v2: poll records", Nothing -> RestProxy 200;
    POST "/consumers/{group}/instances/{instance}/offsets", "rest-proxy", "REST Proxy v2: commit offsets", RestProxy -> Nothing 204;
    GET "/consumers/{group}/instances/{instance}/offsets", "rest-proxy", "REST Proxy v2: committed offsets", Nothing -> RestProxy 200;
};

#[cfg(test)]
mod tests {
    use super::*;

    fn found(method: Method, path: &str) -> Found {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        find(&method, &segments)
    }

    #[test]
    fn templates_match_whole_paths_only() {
        assert!(matches!(
            found(Method::POST, "/v1/topics/orders/events"),
            Found::Route(r) if r.path == "/v1/topics/{topic}/events"
        ));
        assert_eq!(
            found(Method::PUT, "/v1/topics/orders/events"),
            Found::OtherMethod
        );
        assert_eq!(
            found(Method::GET, "/v1/topics/orders/events/x"),
            Found::Unknown
        );
        assert_eq!(found(Method::GET, "/v1"), Found::Unknown);
        // A literal segment wins where a template could also match: both are listed.
        assert!(matches!(
            found(Method::GET, "/v1/triggers/attempts"),
            Found::Route(r) if r.path == "/v1/triggers/attempts"
        ));
    }

    #[test]
    fn every_route_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method.clone(), r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
            assert!(r.path.starts_with('/'));
        }
    }
}
