//! `redact-phi`: masks protected health information before events leave a PHI topic.
//!
//! Configuration (JSON, every field optional):
//! - `fields`: JSON pointers to redact (`"/payload/patient/ssn"`);
//! - `keys`: property names redacted wherever they occur, compared case-insensitively
//!   (default: common patient identifiers — ssn, mrn, patient_id, name, birth date, address,
//!   phone, email, …);
//! - `mode`: `"mask"` (default; strings become `"***"`, or keep their last `keepLast`
//!   characters) or `"hash"` (a salted SHA-256 pseudonym, stable across events so records can
//!   still be joined);
//! - `salt`: the salt for `hash`.
//!
//! Data that is not JSON is rejected (and so dead-lettered): passing it on could leak PHI.

// The rules build natively for their unit tests; only the wasm build uses them all.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

#[cfg(target_arch = "wasm32")]
mod guest;
mod redaction;
