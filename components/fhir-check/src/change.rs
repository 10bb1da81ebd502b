//! What a request becomes: resource changes, or a refusal with its OperationOutcome.

use serde_json::{Value, json};

/// One resource change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub resource_type: String,
    /// `None`: a create without an id (the host assigns one).
    pub id: Option<String>,
    /// `create`, `update` or `delete`.
    pub interaction: &'static str,
    /// The resource as JSON text (a deletion: `{"resourceType", "id", "deleted": true}`).
    pub payload: String,
    /// Headers for the event (a notification's subscription, topic and event number).
    pub headers: Vec<(String, String)>,
}

/// One problem, as an `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: &'static str,
    pub code: &'static str,
    pub diagnostics: String,
    /// FHIRPath of the element at fault.
    pub expression: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub issues: Vec<Issue>,
}

impl Outcome {
    pub fn to_json(&self) -> String {
        let issues: Vec<Value> = self
            .issues
            .iter()
            .map(|i| {
                let mut o =
                    json!({"severity": i.severity, "code": i.code, "diagnostics": i.diagnostics});
                if let Some(e) = &i.expression {
                    o["expression"] = json!([e]);
                }
                o
            })
            .collect();
        json!({"resourceType": "OperationOutcome", "issue": issues}).to_string()
    }
}

/// Why a request is refused: an HTTP status, the first issue's code, and every issue.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub status: u16,
    pub code: &'static str,
    pub outcome: Outcome,
}

pub(crate) fn refuse(status: u16, code: &'static str, diagnostics: impl Into<String>) -> Refused {
    Refused {
        status,
        code,
        outcome: Outcome {
            issues: vec![Issue {
                severity: "error",
                code,
                diagnostics: diagnostics.into(),
                expression: None,
            }],
        },
    }
}

/// FHIR ids: 1-64 of `[A-Za-z0-9-.]`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
