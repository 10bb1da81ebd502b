//! Per-stage counters: calls, events, errors by kind, time spent in the guest.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a call failed, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Trap,
    Timeout,
    OutOfMemory,
    BadOutput,
    Suspended,
    Instantiate,
    Busy,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Trap,
        ErrorKind::Timeout,
        ErrorKind::OutOfMemory,
        ErrorKind::BadOutput,
        ErrorKind::Suspended,
        ErrorKind::Instantiate,
        ErrorKind::Busy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Trap => "trap",
            ErrorKind::Timeout => "timeout",
            ErrorKind::OutOfMemory => "out-of-memory",
            ErrorKind::BadOutput => "bad-output",
            ErrorKind::Suspended => "suspended",
            ErrorKind::Instantiate => "instantiate",
            ErrorKind::Busy => "busy",
        }
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub calls: AtomicU64,
    pub events: AtomicU64,
    pub nanos: AtomicU64,
    pub instantiations: AtomicU64,
    pub errors: [AtomicU64; 7],
}

impl Counters {
    pub fn error(&self, kind: ErrorKind) {
        let i = ErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("listed");
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StageStats {
        StageStats {
            calls: self.calls.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            seconds: self.nanos.load(Ordering::Relaxed) as f64 / 1e9,
            instantiations: self.instantiations.load(Ordering::Relaxed),
            errors: ErrorKind::ALL
                .iter()
                .zip(&self.errors)
                .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

/// A stage's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct StageStats {
    pub calls: u64,
    pub events: u64,
    pub seconds: f64,
    pub instantiations: u64,
    pub errors: Vec<(ErrorKind, u64)>,
}

impl StageStats {
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}
