//! `validate`: accepts or rejects each event against a schema.
//!
//! Configuration (JSON):
//! - `schema` — a JSON Schema document, or an Avro schema when `schemaType` is `"AVRO"`;
//! - `schemaType` — `"JSON"` (default) or `"AVRO"`;
//! - `pointer` — the part of the event's data to check (`"/payload"`; default: all of it);
//! - `subject` — instead of `schema`, the newest schema of this registry subject;
//! - `types` — per event type, a subject whose newest schema that type follows (the catalog).
//!
//! Valid JSON is usually proven so by one strict pass over its bytes against a JSON Schema
//! subset ([`fast`]);
//! the full `jsonschema` check runs when that cannot decide, and explains rejections.
//!
//! Data in Confluent's wire format (magic byte 0, a 4-byte big-endian schema id, the body) is
//! checked against the schema with that id, fetched from the host's registry; compiled
//! validators are cached in the instance, by schema id.

// The rules build natively for their unit tests; only the wasm build uses them all.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod check;
mod fast;
#[cfg(target_arch = "wasm32")]
mod guest;
