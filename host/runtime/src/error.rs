//! What can go wrong loading a component, and calling one.

use thiserror::Error;

/// Loading, compiling or setting up a component.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("the engine could not start: {0}")]
    Engine(String),
    #[error("not a valid WebAssembly component: {0}")]
    InvalidComponent(String),
    #[error("the component does not fit the `{world}` world: {reason}")]
    WrongWorld { world: &'static str, reason: String },
    #[error("the component refused its configuration: {0}")]
    Config(String),
    #[error("the component failed while starting: {0}")]
    Instantiate(String),
}

/// One call into a guest failed as a whole; every event of the batch gets this reason.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CallError {
    #[error("the component trapped: {0}")]
    Trap(String),
    #[error("the component ran past its deadline of {0} ms")]
    Timeout(u64),
    #[error("the component exceeded its memory limit of {0} bytes")]
    OutOfMemory(usize),
    #[error("the component's answer is unusable: {0}")]
    BadOutput(String),
    #[error("the component is suspended after repeated failures (last: {0})")]
    Suspended(String),
    #[error("the component could not be started: {0}")]
    Instantiate(String),
    /// The tenant's guests already hold their share of the runtime; nothing ran. Not the
    /// events' fault: retry later.
    #[error("the tenant's components are at their cap: {0}")]
    Busy(String),
}

impl CallError {
    /// A short, stable name for metrics and DLQ headers.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Trap(_) => "trap",
            CallError::Timeout(_) => "timeout",
            CallError::OutOfMemory(_) => "out-of-memory",
            CallError::BadOutput(_) => "bad-output",
            CallError::Suspended(_) => "suspended",
            CallError::Instantiate(_) => "instantiate",
            CallError::Busy(_) => "busy",
        }
    }
}
