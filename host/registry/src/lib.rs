//! The schema registry's rules, free of storage and HTTP: Avro and JSON Schema parsing,
//! the normal form that decides "the same schema", compatibility checks for every level,
//! and one tenant's subjects, versions and ids (changed only through durable [`Change`]s).
//!
//! The server keeps the changes in a compacted internal topic and serves Confluent's REST API
//! over [`Subjects`].

/// One reason a reader cannot read what a writer wrote, in Confluent's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// `TYPE_MISMATCH`, `READER_FIELD_MISSING_DEFAULT_VALUE`, `TYPE_NARROWED`, ...
    pub kind: &'static str,
    /// Where in the reader's schema (`/fields/1/type`, `#/properties/amount`).
    pub path: String,
    pub message: String,
}

pub mod avro;
pub mod json_schema;
pub mod schema;
pub mod subjects;

pub use schema::{Level, Parsed, Problem, Reference, SchemaType, check, normalize, parse};
pub use subjects::{
    ById, Change, Mode, Registered, Registration, RegistryError, Subjects, Version, VersionSpec,
};
