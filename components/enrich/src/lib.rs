//! `enrich`: fills in what the gateway knows about each event.
//!
//! For JSON object data it adds, when missing: `ingest_time` (RFC 3339, from the batch
//! context), `producer_key_id`, `tenant`, `trace_id` (32 hex digits, W3C style) and
//! `correlation_id` (the event id); and for each configured lookup, the value found in a
//! reference table. Configuration (JSON, every field optional):
//! - `fields`: which of `ingest_time`, `producer_key_id`, `tenant`, `trace_id`,
//!   `correlation_id` to add (default: all);
//! - `lookups`: `[{"table": "customers", "key": "/payload/customer_id",
//!   "into": "/payload/customer", "pick": "/payload", "required": false}]` — the key is read at
//!   a JSON pointer, the table's value (JSON, or else a string; `pick` takes a part of it)
//!   written at another; a required lookup that finds nothing rejects the event.
//!
//! Events whose data is not a JSON object pass through with the same facts added as headers.

// The rules build natively for their unit tests; only the wasm build uses them all.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod enrichment;
#[cfg(target_arch = "wasm32")]
mod guest;
