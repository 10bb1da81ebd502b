//! Notification Bundles an EHR sends by rest-hook, to events (one per notification event).

use serde_json::{Value, json};

use crate::change::{Change, Refused, refuse};

/// What a notification's status says, whatever version wrote it.
struct Status {
    kind: String,
    subscription: String,
    topic: String,
    /// `(event number, focus reference)` per notification event.
    events: Vec<(u64, Option<String>)>,
}

/// The events a notification Bundle carries; `None` when the Bundle is not a notification.
pub fn events(bundle: &Value) -> Result<Option<Vec<Change>>, Refused> {
    if bundle["resourceType"] != "Bundle" {
        return Ok(None);
    }
    let first = &bundle["entry"][0]["resource"];
    let status = match (bundle["type"].as_str(), first["resourceType"].as_str()) {
        (Some("subscription-notification"), _) | (Some("history"), Some("SubscriptionStatus")) => {
            from_subscription_status(first)?
        }
        (Some("history"), Some("Parameters")) => from_parameters(first)?,
        _ => return Ok(None),
    };
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for (number, focus) in &status.events {
        let mut headers = vec![
            ("fhir_subscription".to_owned(), status.subscription.clone()),
            ("fhir_topic".to_owned(), status.topic.clone()),
            ("fhir_event_number".to_owned(), number.to_string()),
            ("fhir_notification".to_owned(), status.kind.clone()),
        ];
        headers.retain(|(_, v)| !v.is_empty());
        let Some(reference) = focus else {
            out.push(Change {
                resource_type: String::new(),
                id: None,
                interaction: "notified",
                payload: json!({"eventNumber": number, "subscription": status.subscription,
                                "topic": status.topic})
                .to_string(),
                headers,
            });
            continue;
        };
        let Some((t, id)) = type_and_id(reference) else {
            return Err(refuse(
                422,
                "invalid",
                format!("focus `{reference}` names no resource (Type/id)"),
            ));
        };
        // Full content: the entry holding the focus (matched by Type/id: the URL's base may
        // differ); id-only: a reference.
        let resource = entries.iter().skip(1).find_map(|e| {
            let r = &e["resource"];
            let by_url = e["fullUrl"]
                .as_str()
                .and_then(type_and_id)
                .is_some_and(|(et, eid)| et == t && eid == id);
            let by_id = r["resourceType"] == t && r["id"] == id;
            (r.is_object() && (by_url || by_id)).then(|| r.clone())
        });
        let payload = resource
            .unwrap_or_else(|| json!({"resourceType": t, "id": id, "reference": reference}));
        out.push(Change {
            resource_type: t,
            id: Some(id),
            interaction: "notified",
            payload: payload.to_string(),
            headers,
        });
    }
    Ok(Some(out))
}

/// `…/Type/id` (or `…/Type/id/_history/n`) → (Type, id).
fn type_and_id(reference: &str) -> Option<(String, String)> {
    let path = reference.split("/_history/").next().unwrap_or(reference);
    let mut parts = path.rsplit('/');
    let id = parts.next()?;
    let t = parts.next()?;
    (crate::change::valid_id(id) && t.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
        .then(|| (t.to_owned(), id.to_owned()))
}

/// FHIR writes integer64 as a string; the R5 examples as a number. Both are taken.
fn number(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn malformed(what: &str) -> Refused {
    refuse(422, "invalid", format!("notification: {what}"))
}

/// R5, and R4B's backport: a `SubscriptionStatus`.
fn from_subscription_status(s: &Value) -> Result<Status, Refused> {
    if s["resourceType"] != "SubscriptionStatus" {
        return Err(malformed("the first entry must be a SubscriptionStatus"));
    }
    let kind = s["type"]
        .as_str()
        .ok_or_else(|| malformed("SubscriptionStatus.type is required"))?;
    let mut events = Vec::new();
    for e in s["notificationEvent"].as_array().into_iter().flatten() {
        let n = number(&e["eventNumber"])
            .ok_or_else(|| malformed("notificationEvent.eventNumber is required"))?;
        events.push((n, e["focus"]["reference"].as_str().map(str::to_owned)));
    }
    Ok(Status {
        kind: kind.to_owned(),
        subscription: s["subscription"]["reference"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        topic: s["topic"].as_str().unwrap_or_default().to_owned(),
        events,
    })
}

/// R4's backport: a `Parameters` resource.
fn from_parameters(p: &Value) -> Result<Status, Refused> {
    let params = p["parameter"].as_array().cloned().unwrap_or_default();
    let named = |name: &str| params.iter().find(|x| x["name"] == name);
    let kind = named("type")
        .and_then(|x| x["valueCode"].as_str())
        .ok_or_else(|| malformed("the Parameters' `type` is required"))?;
    let mut events = Vec::new();
    for e in params.iter().filter(|x| x["name"] == "notification-event") {
        let parts = e["part"].as_array().cloned().unwrap_or_default();
        let part = |name: &str| parts.iter().find(|x| x["name"] == name).cloned();
        let n = part("event-number")
            .and_then(|x| number(&x["valueString"]).or_else(|| number(&x["valueInteger64"])))
            .ok_or_else(|| malformed("notification-event.event-number is required"))?;
        let focus = part("focus")
            .and_then(|x| x["valueReference"]["reference"].as_str().map(str::to_owned));
        events.push((n, focus));
    }
    Ok(Status {
        kind: kind.to_owned(),
        subscription: named("subscription")
            .and_then(|x| x["valueReference"]["reference"].as_str())
            .unwrap_or_default()
            .to_owned(),
        topic: named("topic")
            .and_then(|x| x["valueCanonical"].as_str())
            .unwrap_or_default()
            .to_owned(),
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Option<Value> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/fhir/r5")
            .join(name);
        std::fs::read_to_string(path)
            .ok()
            .map(|t| serde_json::from_str(&t).unwrap())
    }

    #[test]
    fn the_official_r5_notifications_become_events() {
        // The fixtures live beside the repository (../shared, always there in CI).
        let Some(full) = fixture("notification-full-resource-with-patient.json") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "../shared/fixtures/fhir is missing"
            );
            return;
        };
        let e = events(&full).unwrap().unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].resource_type.as_str(), e[0].id.as_deref()),
            ("Encounter", Some("2"))
        );
        let payload: Value = serde_json::from_str(&e[0].payload).unwrap();
        assert_eq!(payload["resourceType"], "Encounter");
        assert!(
            e[0].headers
                .contains(&("fhir_event_number".into(), "2".into()))
        );
        assert!(
            e[0].headers
                .contains(&("fhir_notification".into(), "event-notification".into()))
        );
        let id_only = events(&fixture("notification-id-only.json").unwrap())
            .unwrap()
            .unwrap();
        let payload: Value = serde_json::from_str(&id_only[0].payload).unwrap();
        assert_eq!(
            payload["reference"],
            "http://example.org/FHIR/R5/Encounter/2"
        );
        let empty = events(&fixture("notification-empty.json").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!((empty.len(), empty[0].id.as_deref()), (1, None));
        for quiet in ["notification-handshake.json", "notification-heartbeat.json"] {
            assert!(
                events(&fixture(quiet).unwrap())
                    .unwrap()
                    .unwrap()
                    .is_empty(),
                "{quiet}"
            );
        }
    }

    #[test]
    fn the_r4_backport_parameters_become_events() {
        let bundle = json!({"resourceType": "Bundle", "type": "history", "entry": [
            {"resource": {"resourceType": "Parameters", "parameter": [
                {"name": "subscription", "valueReference": {"reference": "https://ehr/fhir/Subscription/s1"}},
                {"name": "topic", "valueCanonical": "http://hl7.org/SubscriptionTopic/admission"},
                {"name": "type", "valueCode": "event-notification"},
                {"name": "notification-event", "part": [
                    {"name": "event-number", "valueString": "7"},
                    {"name": "focus", "valueReference": {"reference": "Patient/p1"}}]},
                {"name": "notification-event", "part": [
                    {"name": "event-number", "valueString": "8"},
                    {"name": "focus", "valueReference": {"reference": "Patient/p2"}}]}]}},
            {"fullUrl": "https://ehr/fhir/Patient/p1", "resource": {"resourceType": "Patient", "id": "p1"}},
        ]});
        let e = events(&bundle).unwrap().unwrap();
        let got: Vec<(Option<&str>, &str)> = e
            .iter()
            .map(|c| {
                (
                    c.id.as_deref(),
                    c.headers
                        .iter()
                        .find(|h| h.0 == "fhir_event_number")
                        .unwrap()
                        .1
                        .as_str(),
                )
            })
            .collect();
        assert_eq!(got, [(Some("p1"), "7"), (Some("p2"), "8")]);
        assert!(e[0].payload.contains("\"resourceType\":\"Patient\""));
        assert!(e[1].payload.contains("\"reference\""));
        let broken = json!({"resourceType": "Bundle", "type": "history", "entry": [
            {"resource": {"resourceType": "Parameters", "parameter": []}}]});
        assert_eq!(events(&broken).unwrap_err().status, 422);
        let transaction = json!({"resourceType": "Bundle", "type": "transaction"});
        assert!(events(&transaction).unwrap().is_none());
    }
}
