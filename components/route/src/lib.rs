//! `route`: chooses each event's topic, partitioning key or dead-letter topic.
//!
//! Configuration (JSON):
//! ```json
//! {"rules": [
//!    {"type": "invoice.*", "when": [{"pointer": "/payload/amount", "op": "gt", "value": 1000}],
//!     "topic": "invoices.large", "key": "/payload/customer_id"},
//!    {"type": "*.deleted", "dlq": "deletions are not accepted here"},
//!    {"type": "debug.*", "drop": true}],
//!  "default": {"keep": true}}
//! ```
//! Rules are tried in order; the first whose `type` pattern (`*` matches any run of
//! characters) and every `when` condition hold decides. Operators: `eq`, `ne`, `gt`, `gte`,
//! `lt`, `lte`, `in`, `exists`, `missing`, `glob`. A rule's action is one of `topic` (and/or
//! `key`, a JSON pointer for the new partitioning key), `dlq` (a reason; `dlqTopic` picks
//! another dead-letter topic than `<topic>.dlq`), `drop`, or `keep`. `default` is the action
//! when no rule matches (default: keep).

// The rules build natively for their unit tests; only the wasm build uses them all.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

#[cfg(target_arch = "wasm32")]
mod guest;
mod rules;
