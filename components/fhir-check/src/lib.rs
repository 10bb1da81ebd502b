//! FHIR requests to resource changes, and the structural checks, shared by the host's
//! `fhir-gateway` component (world `ingress-gateway`) and the Spin `fhir-edge` component:
//!
//! - `POST /{Type}` (create), `PUT /{Type}/{id}` (update or create), `DELETE /{Type}/{id}`;
//! - `POST /` with a `transaction` or `batch` Bundle: every entry's change, all or none;
//! - `POST /` with an EHR's notification Bundle (R5 `subscription-notification`, or the
//!   backport's `history` Bundle with a `SubscriptionStatus` (R4B) or `Parameters` (R4) first):
//!   one change per notification event (`notified`), keyed by its focus, with the headers
//!   `fhir_subscription`, `fhir_topic`, `fhir_event_number` and `fhir_notification`.
//!
//! Checked: the body is a JSON object; `resourceType` is the path's type; ids match
//! `[A-Za-z0-9-.]{1,64}`; `meta.versionId`/`meta.lastUpdated` are typed; and for Patient,
//! Encounter, Observation, Condition, MedicationRequest, DiagnosticReport and Bundle, their
//! required elements (per FHIR version) and the value types of their common elements. A refusal
//! is an `OperationOutcome` with one issue per problem (severity, code, diagnostics, FHIRPath
//! `expression`).

mod change;
mod notification;
mod validate;

pub use change::{Change, Issue, Outcome, Refused, valid_id};
pub use validate::{FhirVersion, changes};
