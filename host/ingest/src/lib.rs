//! # sluice-ingest: from parsed events to durable records
//!
//! Everything between a gateway that has parsed a request and the log, with no HTTP server in
//! it. Every ingress (the produce API, the REST Proxy, and the gateways to come) calls the same
//! entry point, [`Ingest::append`], after [`Ingest::prepare`] has checked the caller's scope and
//! read what producing to the topic needs.
//!
//! - [`envelope`]: the event envelope in (JSON, array, NDJSON, binary) and out
//!   ([`envelope::EventView`], how readers see a stored record).
//! - [`append`]: [`Ingest`] itself — idempotency ids, partitioning (sticky for keyless
//!   events), the topic's pipeline, dead letters, and the append.
//! - [`pipeline`], [`guest_events`]: a topic's WebAssembly stages (validate, enrich, route,
//!   tenant components), packed batches, inline or on a blocking thread.
//! - [`components`]: built-in and uploaded components (`_components`), and the runtime.
//! - [`reference_tables`]: what guests reach through their host imports.
//! - [`transforms`]: tenants' topic-to-topic transforms and their runners.
//! - [`dead_letters`]: `T.dlq` topics and the headers that say why.
//! - [`schemas`]: tenants' schema registries (`_schemas`); [`catalog`]: their event catalogs.
//! - [`metrics`]: what ingest counts.
//! - [`disk`]: the free-space reserve under which new events are refused.

pub mod append;
pub mod catalog;
pub mod cloudevents;
pub mod components;
pub mod dead_letters;
pub mod disk;
pub mod envelope;
pub mod guest_events;
pub mod metrics;
pub mod pipeline;
pub mod redaction;
pub mod reference_tables;
pub mod schemas;
pub mod transforms;

pub use append::{Ingest, Outcome, Prepared};
