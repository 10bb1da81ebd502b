//! `bronze-to-silver`: cleans a raw connector event into the processed (silver) shape.
//!
//! The input is what a source connector writes to a bronze topic: a Debezium-style change
//! (`{"op": "c|u|r|d", "before": …, "after": …, "source": …, "ts_ms": …}`) or a loose JSON row,
//! alone or inside an envelope's `payload`. The output is the gateway's envelope
//! (`event_id`, `event_type`, `event_version`, `timestamp`, `source`, `correlation_id`,
//! `causation_id`, `org_id`, `subject`, `payload`) whose payload is the row cleaned: keys in
//! snake_case, strings trimmed, empty strings and nulls dropped, configured fields converted.
//!
//! Configuration (JSON):
//! - `eventType` (required): the output type, such as `silver.orders.cleaned`; deletes get
//!   `deletedEventType` (default: the same with its last segment replaced by `deleted`);
//! - `rename`: `{"CustID": "customer_id"}`, applied before snake-casing;
//! - `types`: `{"amount": "number" | "integer" | "boolean" | "string" | "timestamp"}`;
//! - `required`: fields the cleaned row must have (else the event is rejected: to the DLQ);
//! - `drop`: fields to remove (`_fivetran_synced`);
//! - `key`: the field whose value becomes the output's partitioning key.
//!
//! The output's `event_id` is derived from the input's, so re-processing after a crash yields
//! the same id and the log's idempotent append drops the repeat.

// The rules build natively for their unit tests; only the wasm build uses them all.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod cleaning;
#[cfg(target_arch = "wasm32")]
mod guest;
