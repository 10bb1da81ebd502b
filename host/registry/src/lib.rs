//! The schema registry's rules, free of storage and HTTP: Avro and JSON Schema parsing,
//! the normal form that decides "the same schema", compatibility checks for every level,
//! and one tenant's subjects, versions and ids (changed only through durable [`Change`]s).
//!
//! The server keeps the changes in a compacted internal topic and serves Confluent's REST API
//! over [`Subjects`]. [`avro_json`] turns Avro values into Avro's JSON encoding and back (the
//! REST Proxy's Avro embedded format).

/// One reason a reader cannot read what a writer wrote, in Confluent's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// `TYPE_MISMATCH`, `READER_FIELD_MISSING_DEFAULT_VALUE`, `TYPE_NARROWED`, ...
    pub kind: &'static str,
    /// Where in the reader's schema (`/fields/1/type`, `#/properties/amount`).
    pub path: String,
    pub message: String,
}

/// The work one compatibility check may do. Every comparison of two (sub)schemas spends steps
/// in proportion to their size; a check that runs out is abandoned and answered with
/// [`schema::TooComplex`] (a 422 from the registry API), never left to run: nested combinators and references can
/// otherwise make a small schema cost hours.
#[derive(Debug)]
pub struct Budget {
    left: std::cell::Cell<u64>,
    exhausted: std::cell::Cell<bool>,
}

/// Steps one check may take unless configured ([`set_check_steps`]): about a second of CPU on a
/// slow core for the worst schemas, far more than any real pair of schemas needs.
pub const DEFAULT_CHECK_STEPS: u64 = 2_000_000;

static CHECK_STEPS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_CHECK_STEPS);

/// Set the steps every compatibility check may take from now on (`[registry] check_steps`).
pub fn set_check_steps(steps: u64) {
    CHECK_STEPS.store(steps.max(1), std::sync::atomic::Ordering::Relaxed);
}

impl Budget {
    pub fn new(steps: u64) -> Budget {
        Budget {
            left: std::cell::Cell::new(steps),
            exhausted: std::cell::Cell::new(false),
        }
    }

    /// The configured budget for one check.
    pub fn configured() -> Budget {
        Budget::new(CHECK_STEPS.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Take `steps`; `false` (from then on, always) once there are not that many left.
    pub fn spend(&self, steps: u64) -> bool {
        if self.exhausted.get() {
            return false;
        }
        match self.left.get().checked_sub(steps) {
            Some(left) => {
                self.left.set(left);
                true
            }
            None => {
                self.exhausted.set(true);
                false
            }
        }
    }

    pub fn exhausted(&self) -> bool {
        self.exhausted.get()
    }
}

pub mod avro;
pub mod avro_json;
pub mod json_schema;
pub mod schema;
pub mod subjects;

pub use schema::{
    Level, Parsed, Problem, Reference, SchemaType, TooComplex, check, check_within, normalize,
    parse,
};
pub use subjects::{
    ById, Change, Mode, Registered, Registration, RegistryError, Subjects, Version, VersionSpec,
};
