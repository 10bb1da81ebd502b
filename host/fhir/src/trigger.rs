//! Does a resource change fire a `SubscriptionTopic`? Its `resourceTrigger`s: the resource
//! type, the supported interactions, and `queryCriteria` (`previous`/`current` search criteria,
//! `resultForCreate`/`resultForDelete`, `requireBoth`) over the common search parameters. The
//! `fhirPathCriteria` are not evaluated yet: a trigger with only those is refused as
//! unsupported rather than guessed.

use serde_json::Value;

/// The interaction that changed a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Create,
    Update,
    Delete,
}

impl Interaction {
    pub fn code(self) -> &'static str {
        match self {
            Interaction::Create => "create",
            Interaction::Update => "update",
            Interaction::Delete => "delete",
        }
    }
}

/// One change: the resource before (none for a create) and after (none for a delete).
pub struct ResourceChange<'a> {
    pub resource_type: &'a str,
    pub interaction: Interaction,
    pub previous: Option<&'a Value>,
    pub current: Option<&'a Value>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TriggerError {
    #[error("search parameter `{0}` is not supported in queryCriteria")]
    Parameter(String),
    #[error("modifier `:{0}` is not supported in queryCriteria")]
    Modifier(String),
    #[error("`{0}` is not a search criterion (name=value)")]
    Criterion(String),
    #[error(transparent)]
    FhirPath(#[from] crate::fhirpath::FhirPathError),
}

/// Whether any of the topic's resource triggers fires for `change`.
pub fn fires(topic: &Value, change: &ResourceChange<'_>) -> Result<bool, TriggerError> {
    for trigger in topic["resourceTrigger"].as_array().into_iter().flatten() {
        if trigger_fires(trigger, change)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Check every criterion of a topic can be evaluated (what accepting a topic needs).
pub fn check(topic: &Value) -> Result<(), TriggerError> {
    let probe = serde_json::json!({"resourceType": "Probe"});
    for trigger in topic["resourceTrigger"].as_array().into_iter().flatten() {
        let q = &trigger["queryCriteria"];
        if !q.is_object()
            && let Some(f) = trigger["fhirPathCriteria"].as_str()
        {
            crate::fhirpath::FhirPath::parse(f)?;
        }
        for side in ["previous", "current"] {
            if let Some(c) = q[side].as_str() {
                matches(c, &probe)?;
            }
        }
    }
    Ok(())
}

fn trigger_fires(trigger: &Value, change: &ResourceChange<'_>) -> Result<bool, TriggerError> {
    let resource = trigger["resource"].as_str().unwrap_or_default();
    let resource_type = resource.rsplit('/').next().unwrap_or(resource);
    if resource_type != change.resource_type {
        return Ok(false);
    }
    if let Some(supported) = trigger["supportedInteraction"].as_array()
        && !supported
            .iter()
            .any(|i| i.as_str() == Some(change.interaction.code()))
    {
        return Ok(false);
    }
    let q = &trigger["queryCriteria"];
    if !q.is_object() {
        return match trigger["fhirPathCriteria"].as_str() {
            Some(f) => {
                Ok(crate::fhirpath::FhirPath::parse(f)?.holds(change.previous, change.current))
            }
            None => Ok(true),
        };
    }
    // Each side: its criterion on its resource; a missing resource (create: no previous,
    // delete: no current) takes the topic's stated result; no criterion: not tested.
    let side = |criterion: Option<&str>,
                resource: Option<&Value>,
                when_missing: &str|
     -> Result<Option<bool>, TriggerError> {
        let Some(c) = criterion else { return Ok(None) };
        Ok(Some(match resource {
            Some(r) => matches(c, r)?,
            None => when_missing == "test-passes",
        }))
    };
    let previous = side(
        q["previous"].as_str(),
        change.previous,
        q["resultForCreate"].as_str().unwrap_or("test-fails"),
    )?;
    let current = side(
        q["current"].as_str(),
        change.current,
        q["resultForDelete"].as_str().unwrap_or("test-fails"),
    )?;
    Ok(match (previous, current) {
        (None, None) => true,
        (Some(p), None) => p,
        (None, Some(c)) => c,
        (Some(p), Some(c)) if q["requireBoth"].as_bool().unwrap_or(false) => p && c,
        (Some(p), Some(c)) => p || c,
    })
}

/// Does `resource` match the search criteria `criteria` (`a=x&b:not=y,z`)?
pub fn matches(criteria: &str, resource: &Value) -> Result<bool, TriggerError> {
    for criterion in criteria.split('&').filter(|c| !c.is_empty()) {
        let (name, values) = criterion
            .split_once('=')
            .ok_or_else(|| TriggerError::Criterion(criterion.to_owned()))?;
        let (param, modifier) = match name.split_once(':') {
            Some((p, m)) => (p, Some(m)),
            None => (name, None),
        };
        let found = values
            .split(',')
            .map(|v| param_matches(param, v, resource))
            .collect::<Result<Vec<bool>, _>>()?
            .into_iter()
            .any(|b| b);
        let ok = match modifier {
            None => found,
            Some("not") => !found,
            Some(m) => return Err(TriggerError::Modifier(m.to_owned())),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One search parameter's value against a resource.
fn param_matches(param: &str, value: &str, r: &Value) -> Result<bool, TriggerError> {
    let text = |v: &Value| v.as_str().is_some_and(|s| s == value);
    Ok(match param {
        "_id" => text(&r["id"]),
        "status" | "intent" | "gender" | "priority" => text(&r[param]),
        "active" => r["active"].as_bool().map(|b| b.to_string()).as_deref() == Some(value),
        "code" | "class" | "category" | "clinical-status" | "verification-status" | "type" => {
            let element = match param {
                "clinical-status" => "clinicalStatus",
                "verification-status" => "verificationStatus",
                p => p,
            };
            token(&r[element], value)
        }
        "subject" | "patient" | "encounter" => {
            let element = if param == "encounter" {
                "encounter"
            } else {
                "subject"
            };
            r[element]["reference"].as_str().is_some_and(|reference| {
                reference == value || reference.ends_with(&format!("/{value}"))
            })
        }
        p => return Err(TriggerError::Parameter(p.to_owned())),
    })
}

/// A token (`code` or `system|code`) against a Coding, a CodeableConcept, or lists of them.
fn token(element: &Value, value: &str) -> bool {
    let (system, code) = match value.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, value),
    };
    let coding_matches = |c: &Value| {
        c["code"].as_str() == Some(code)
            && system.is_none_or(|s| s.is_empty() || c["system"].as_str() == Some(s))
    };
    let concept_matches = |v: &Value| {
        coding_matches(v)
            || v["coding"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(coding_matches))
    };
    match element {
        Value::Array(items) => items.iter().any(concept_matches),
        v => concept_matches(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn topic(name: &str) -> Option<Value> {
        crate::fixtures::r5(name)
    }

    fn encounter(status: &str) -> Value {
        json!({"resourceType": "Encounter", "id": "2", "status": status,
               "subject": {"reference": "Patient/ABC"},
               "class": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}]}]})
    }

    fn change<'a>(
        interaction: Interaction,
        previous: Option<&'a Value>,
        current: Option<&'a Value>,
    ) -> ResourceChange<'a> {
        ResourceChange {
            resource_type: "Encounter",
            interaction,
            previous,
            current,
        }
    }

    #[test]
    fn the_specifications_admission_topic_fires_as_given() {
        let Some(admission) = topic("subscriptiontopic-example-admission.json") else {
            return;
        };
        check(&admission).unwrap();
        let (planned, in_progress) = (encounter("planned"), encounter("in-progress"));
        let fired = |c: ResourceChange<'_>| fires(&admission, &c).unwrap();
        // Created in progress: there is no previous (test-passes), the current matches.
        assert!(fired(change(Interaction::Create, None, Some(&in_progress))));
        assert!(!fired(change(Interaction::Create, None, Some(&planned))));
        // Moved to in-progress: fires; staying in progress: does not.
        assert!(fired(change(
            Interaction::Update,
            Some(&planned),
            Some(&in_progress)
        )));
        assert!(!fired(change(
            Interaction::Update,
            Some(&in_progress),
            Some(&in_progress)
        )));
        // Deletes are not among its interactions; other resource types never fire it.
        assert!(!fired(change(
            Interaction::Delete,
            Some(&in_progress),
            None
        )));
        let other = ResourceChange {
            resource_type: "Patient",
            interaction: Interaction::Create,
            previous: None,
            current: Some(&in_progress),
        };
        assert!(!fired(other));
    }

    #[test]
    fn the_specifications_completion_topic_fires_only_on_updates_to_completed() {
        let Some(completed) = topic("subscriptiontopic-example.json") else {
            return;
        };
        check(&completed).unwrap();
        let (in_progress, done) = (encounter("in-progress"), encounter("completed"));
        let fired = |c: ResourceChange<'_>| fires(&completed, &c).unwrap();
        assert!(fired(change(
            Interaction::Update,
            Some(&in_progress),
            Some(&done)
        )));
        assert!(!fired(change(
            Interaction::Update,
            Some(&done),
            Some(&done)
        )));
        assert!(!fired(change(Interaction::Create, None, Some(&done))));
    }

    #[test]
    fn criteria_tokens_references_and_what_is_refused() {
        let obs = json!({"resourceType": "Observation", "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                         "subject": {"reference": "https://ehr/fhir/Patient/p1"}});
        assert!(matches("code=http://loinc.org|8867-4", &obs).unwrap());
        assert!(matches("code=8867-4&status=final,amended", &obs).unwrap());
        assert!(!matches("code=other|8867-4", &obs).unwrap());
        assert!(matches("patient=p1", &obs).unwrap());
        assert!(matches("status:not=preliminary", &obs).unwrap());
        assert_eq!(
            matches("value-quantity=gt5", &obs).unwrap_err(),
            TriggerError::Parameter("value-quantity".into())
        );
        assert_eq!(
            matches("status:exact=final", &obs).unwrap_err(),
            TriggerError::Modifier("exact".into())
        );
        // FHIRPath alone decides when there are no query criteria.
        let fhirpath_only = json!({"resourceTrigger": [{"resource": "Encounter",
            "fhirPathCriteria": "%current.status = 'completed'"}]});
        check(&fhirpath_only).unwrap();
        let done = json!({"resourceType": "Encounter", "status": "completed"});
        let c = ResourceChange {
            resource_type: "Encounter",
            interaction: Interaction::Update,
            previous: None,
            current: Some(&done),
        };
        assert!(fires(&fhirpath_only, &c).unwrap());
        let unsupported = json!({"resourceTrigger": [{"resource": "Encounter",
            "fhirPathCriteria": "%current.where(status = 'x')"}]});
        assert!(matches!(
            check(&unsupported),
            Err(TriggerError::FhirPath(_))
        ));
    }
}
