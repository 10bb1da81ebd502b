//! End-to-end tests: the real server on a loopback port, used over HTTP as a client would.
//!
//! - `harness`: start a server in-process (port 0) or the real `sluice` binary; an HTTP client.
//! - `abuse`: the adversarial suite: attacks with one ordinary key, each answered within its
//!   documented bound while `/healthz` and another tenant keep being served.
//! - `topics`: the topic admin API and the seed's Topic Configuration schema.
//! - `produce_fetch`: produce in every framing, partitioning, fetch, long-poll, offsets,
//!   idempotent produce, restart.
//! - `auth`: API keys, scopes, tenant isolation.
//! - `bad_input`: malformed and oversized requests change nothing.
//! - `cli`: the `sluice` command against a running server.
//! - `crash`: SIGKILL under load loses nothing acknowledged.
//! - `fencing`: two hosts on one data directory.
//! - `groups`: consumer groups over the REST Proxy v2 API, `/v1/groups`, lag and alerts.
//! - `pipelines`: ingest pipelines of WebAssembly stages (validate, enrich, route).
//! - `transforms`: components uploaded by tenants, transforms, hostile guests contained.
//! - `transform_crash`: SIGKILL while a transform runs loses no event.
//! - `registry`: the schema registry (Confluent API, validated produce, Confluent's client).
//! - `stream`: Server-Sent Events, resumed by `Last-Event-ID`, shared through a group.
//! - `webhooks`: subscriptions, Standard Webhooks signatures verified by their libraries,
//!   retries on a moved clock, 410, dead letters, replay, rotation, SIGKILL.
//! - `s3`: the log on a real S3-compatible server (moto), fencing included.
//! - `cloudevents`: CloudEvents in (binary, structured, batch) and out (fetch, SSE, webhooks in
//!   both modes), with the CloudEvents Python SDK on both sides.
//! - `edge`: `spin.toml` checked against its components; the Spin webhook gateway serving real
//!   HTTP in the host's wasi:http runner and forwarding to a real Sluice.
//! - `sources`: edge gateways: webhooks signed by the Standard Webhooks and Svix libraries,
//!   GitHub and Stripe signatures, replays, tampering and expiry refused, restart.
//! - `openapi`: `/openapi.json` validated, every documented route served and no other.
//! - `fhir`: the FHIR gateway: resources in through its component, versions, reads,
//!   transactions, OperationOutcomes, the CapabilityStatement.
//! - `compaction`: compacted topics: newest per key, tombstones, policy components (built-in
//!   and hostile), the CLI.

mod abuse;
mod auth;
mod bad_input;
mod cli;
mod cloudevents;
mod compaction;
mod crash;
mod edge;
mod fencing;
mod fhir;
mod fhir_subscriptions;
mod groups;
mod harness;
mod openapi;
mod phi;
mod pipelines;
mod produce_fetch;
mod registry;
mod s3;
mod sources;
mod stream;
mod topics;
mod transform_crash;
mod transforms;
mod webhooks;
