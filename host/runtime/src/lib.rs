//! The WebAssembly component runtime: Sluice's guests run here.
//!
//! One [`Runtime`] per process holds the `wasmtime::Engine` (pooling allocator, epoch
//! interruption), the linker (the `sluice:gateway` host imports plus WASI p2 with nothing
//! granted: no directories, no sockets, an empty environment) and the on-disk cache of
//! compiled components (serialized, keyed by content hash and engine compatibility).
//!
//! A [`Stage`] is one component with one configuration, as a pipeline uses it: it
//! pre-instantiates the component (`InstancePre`), keeps a few initialized instances for reuse
//! across batches, and bounds every call by an epoch deadline and a memory limit. A guest that
//! traps, runs out of time or memory, or answers with the wrong shape fails only that call,
//! with a [`CallError`] saying why; its instance is discarded and the next call gets a fresh
//! one. A stage that keeps failing that way is suspended for a while, so a hostile guest cannot
//! keep burning a core. Each tenant's calls running at once and instances alive are capped
//! ([`RuntimeOptions::max_calls_per_tenant`], [`RuntimeOptions::max_instances_per_tenant`]):
//! past them a call fails at once with [`CallError::Busy`], leaving the shared pools to others.

mod cache;
mod engine;
mod error;
mod generated;
mod guest;
mod metrics;
mod stage;
mod tenants;

pub use cache::content_hash;
pub use engine::{Runtime, RuntimeOptions};
pub use error::{CallError, RuntimeError};
pub use generated::{
    Accepted, BatchContext, Candidate, Change, CompactionContext, DeadLetter, Decision,
    Destination, Enriched, Event, Header, HttpRequest, Insertion, KeyGroup, LogLevel, Output,
    PackedEvent, Refusal, Rejection, Schema, SchemaType, Span, Verdict, Violation,
};
pub use guest::{HostServices, NoHostServices};
pub use metrics::{ErrorKind, StageStats};
pub use stage::{Compiled, Stage, StageLabels, World};
