//! # sluice: the event gateway host
//!
//! The HTTP server ([`server`]) in front of the log engine (`sluice-log`): topic admin, produce
//! ([`envelope`] turns request bodies into records), fetch, tenants and API keys ([`auth`]),
//! Prometheus [`metrics`]. [`serve`] wires them up the way `sluice serve` runs them; the
//! [`cli`] is the `sluice` command that talks to a running server.

pub mod api;
pub mod auth;
pub mod avro_json;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod components;
pub mod config;
pub mod dead_letters;
pub mod envelope;
pub mod error;
pub mod groups;
pub mod guest_events;
pub mod internal_topics;
pub mod metrics;
pub mod pipeline;
pub mod reference_tables;
pub mod registry;
pub mod serve;
pub mod server;
pub mod transforms;
pub mod webhooks;
