//! # sluice-server: the HTTP front of the event gateway
//!
//! This crate is the HTTP layer only; the capabilities live in crates of their own, which never
//! depend on this one (`sluice-tenancy`, `sluice-ingest`, `sluice-groups`, `sluice-delivery`,
//! over `sluice-log`, `sluice-runtime` and `sluice-registry`).
//!
//! - [`server`]: one port, one router, request bodies within limits, authentication, graceful
//!   shutdown; [`server::App`] is the plain bundle of services the handlers call.
//! - [`api`]: one module per resource, each handler a thin adapter (parse → call a service →
//!   render); streams (SSE, WebSocket) and the Confluent REST Proxy v2 are here too.
//! - [`tls`]: rustls on the listener.
//! - [`metrics`]: the Prometheus families and how a scrape renders every service's counters.
//! - [`serve`]: how `sluice serve` opens the store and wires the services together;
//!   [`config`]: its TOML file. The `sluice` command itself is the `sluice` crate (`host/cli`).

pub mod api;
pub mod app;
pub mod call;
pub mod config;
pub mod metrics;
pub mod serve;
pub mod server;
pub mod tls;
