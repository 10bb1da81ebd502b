//! Notification Bundles as FHIR R5 defines them (`subscription-notification`: a
//! `SubscriptionStatus` first, then the focus entries per content level). What Sluice's
//! subscriptions will send; checked field by field against the specification's examples.

use serde_json::{Value, json};

/// The FHIR version a Subscription was written in, and so the shape of its notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `subscription-notification` Bundles with a `SubscriptionStatus`.
    R5,
    /// The backport: `history` Bundles with a `SubscriptionStatus`.
    R4B,
    /// The backport: `history` Bundles with a `Parameters` status.
    R4,
}

impl Version {
    pub fn parse(s: &str) -> Version {
        match s {
            "R4" | "4.0" | "4.0.1" => Version::R4,
            "R4B" | "4.3" | "4.3.0" => Version::R4B,
            _ => Version::R5,
        }
    }
}

/// How much of each focus a notification carries (`Subscription.content`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Empty,
    IdOnly,
    FullResource,
}

impl Content {
    pub fn parse(s: &str) -> Option<Content> {
        match s {
            "empty" => Some(Content::Empty),
            "id-only" => Some(Content::IdOnly),
            "full-resource" => Some(Content::FullResource),
            _ => None,
        }
    }
}

/// `SubscriptionStatus.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Handshake,
    Heartbeat,
    EventNotification,
    QueryStatus,
    QueryEvent,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::Handshake => "handshake",
            Kind::Heartbeat => "heartbeat",
            Kind::EventNotification => "event-notification",
            Kind::QueryStatus => "query-status",
            Kind::QueryEvent => "query-event",
        }
    }
}

/// The subscription a notification is for.
#[derive(Debug, Clone)]
pub struct SubscriptionRef {
    /// Its absolute reference (`https://host/fhir/t/Subscription/123`).
    pub reference: String,
    /// The SubscriptionTopic canonical.
    pub topic: String,
    /// `requested`, `active`, `error`, `off`.
    pub status: String,
}

/// The resource a notification event is about.
#[derive(Debug, Clone)]
pub struct Focus {
    /// Its absolute reference.
    pub reference: String,
    /// `Type/id`.
    pub relative: String,
    /// The interaction that triggered it, as a Bundle request method (`POST`, `PUT`,
    /// `DELETE`), and the response status that interaction got (`201`, `200`, `204`).
    pub method: &'static str,
    pub status: &'static str,
    /// The resource (full-resource content only).
    pub resource: Option<Value>,
    /// Other resources the topic's shape includes (full-resource: with their content).
    pub context: Vec<(String, Option<Value>)>,
}

/// One notification event.
#[derive(Debug, Clone)]
pub struct NotificationEvent {
    pub number: u64,
    /// When the event happened (an instant).
    pub timestamp: Option<String>,
    pub focus: Option<Focus>,
}

/// A `subscription-notification` Bundle. Event numbers are written as FHIR's JSON writes
/// `integer64`: strings.
pub fn bundle(
    subscription: &SubscriptionRef,
    kind: Kind,
    events_since_start: u64,
    events: &[NotificationEvent],
    content: Content,
    timestamp: &str,
) -> Value {
    let status_id = uuid::Uuid::new_v4().to_string();
    let mut status = json!({
        "resourceType": "SubscriptionStatus",
        "id": status_id,
        "status": subscription.status,
        "type": kind.code(),
        "eventsSinceSubscriptionStart": events_since_start.to_string(),
        "subscription": {"reference": subscription.reference},
    });
    // With empty content the topic is left out too (nothing about the data leaves).
    if content != Content::Empty {
        status["topic"] = json!(subscription.topic);
    }
    let mut entries = vec![json!({"fullUrl": format!("urn:uuid:{status_id}"), "resource": status})];
    let mut notification_events = Vec::with_capacity(events.len());
    for e in events {
        let mut ne = json!({"eventNumber": e.number.to_string()});
        if let Some(t) = &e.timestamp {
            ne["timestamp"] = json!(t);
        }
        if let (Some(f), false) = (&e.focus, content == Content::Empty) {
            ne["focus"] = json!({"reference": f.reference});
            if !f.context.is_empty() {
                ne["additionalContext"] = f
                    .context
                    .iter()
                    .map(|(r, _)| json!({"reference": r}))
                    .collect();
            }
            let mut entry = json!({
                "fullUrl": f.reference,
                "request": {"method": f.method, "url": f.relative},
                "response": {"status": f.status},
            });
            if content == Content::FullResource
                && let Some(r) = &f.resource
            {
                entry["resource"] = r.clone();
            }
            entries.push(entry);
            if content == Content::FullResource {
                for (r, resource) in &f.context {
                    let mut c = json!({"fullUrl": r});
                    if let Some(resource) = resource {
                        c["resource"] = resource.clone();
                    }
                    entries.push(c);
                }
            }
        }
        notification_events.push(ne);
    }
    if !notification_events.is_empty() {
        entries[0]["resource"]["notificationEvent"] = Value::Array(notification_events);
    }
    json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "subscription-notification",
        "timestamp": timestamp,
        "entry": entries,
    })
}

/// A notification for a Subscription of `version`: R5's as it is; the R4/R4B backport's as a
/// `history` Bundle whose first entry is the status (R4B's `SubscriptionStatus`, R4's
/// `Parameters`), each entry with the `request`/`response` a history entry carries.
pub fn for_version(mut bundle: Value, version: Version) -> Value {
    if version == Version::R5 {
        return bundle;
    }
    bundle["type"] = json!("history");
    let Some(entries) = bundle["entry"].as_array_mut() else {
        return bundle;
    };
    for (i, e) in entries.iter_mut().enumerate() {
        if i == 0 {
            let status = e["resource"].clone();
            e["request"] = json!({"method": "GET", "url": format!(
                "{}/$status",
                status["subscription"]["reference"].as_str().unwrap_or_default()
            )});
            e["response"] = json!({"status": "200"});
            if version == Version::R4 {
                e["resource"] = parameters(&status);
            }
        } else if e.get("request").is_none() {
            let url = e["fullUrl"].as_str().unwrap_or_default().to_owned();
            e["request"] = json!({"method": "GET", "url": url});
            e["response"] = json!({"status": "200"});
        }
    }
    bundle
}

/// R4's notification status: a `SubscriptionStatus` written as the backport's `Parameters`.
fn parameters(status: &Value) -> Value {
    let mut p = vec![json!({"name": "subscription", "valueReference": status["subscription"]})];
    if let Some(t) = status["topic"].as_str() {
        p.push(json!({"name": "topic", "valueCanonical": t}));
    }
    p.push(json!({"name": "status", "valueCode": status["status"]}));
    p.push(json!({"name": "type", "valueCode": status["type"]}));
    p.push(json!({"name": "events-since-subscription-start",
                  "valueString": status["eventsSinceSubscriptionStart"]}));
    for ne in status["notificationEvent"].as_array().into_iter().flatten() {
        let mut part = vec![json!({"name": "event-number", "valueString": ne["eventNumber"]})];
        if let Some(t) = ne.get("timestamp") {
            part.push(json!({"name": "timestamp", "valueInstant": t}));
        }
        if let Some(f) = ne.get("focus") {
            part.push(json!({"name": "focus", "valueReference": f}));
        }
        for c in ne["additionalContext"].as_array().into_iter().flatten() {
            part.push(json!({"name": "additional-context", "valueReference": c}));
        }
        p.push(json!({"name": "notification-event", "part": part}));
    }
    json!({"resourceType": "Parameters", "id": status["id"], "parameter": p})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Option<Value> {
        crate::fixtures::r5(name)
    }

    /// The parts two notifications must agree on: ids, uuids and timestamps aside, and
    /// integer64 numbers as strings (the examples write numbers).
    fn shape(v: &Value) -> Value {
        match v {
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "id" | "timestamp"))
                    .filter(|(k, v)| {
                        !(k.as_str() == "fullUrl"
                            && v.as_str().is_some_and(|u| u.starts_with("urn:uuid:")))
                    })
                    .map(|(k, v)| {
                        let v = match (k.as_str(), v) {
                            ("eventNumber" | "eventsSinceSubscriptionStart", Value::Number(n)) => {
                                json!(n.to_string())
                            }
                            _ => shape(v),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
            v => v.clone(),
        }
    }

    fn subscription(status: &str) -> SubscriptionRef {
        SubscriptionRef {
            reference: "http://example.org/FHIR/R5/Subscription/123".into(),
            topic: "http://example.org/FHIR/R5/SubscriptionTopic/admission".into(),
            status: status.into(),
        }
    }

    /// The focus of the examples: Encounter/2, with its resource taken from `example`.
    fn encounter(example: &Value, url: &str, with_patient: bool) -> Focus {
        let resource = example["entry"][1]["resource"].clone();
        Focus {
            reference: url.into(),
            relative: "Encounter/2".into(),
            method: "PUT",
            status: "201",
            resource: resource.is_object().then_some(resource),
            context: if with_patient {
                vec![(
                    "http://example.org/FHIR/R5/Patient/ABC".into(),
                    Some(example["entry"][2]["resource"].clone()),
                )]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn notifications_have_the_shape_of_the_specifications_examples() {
        let Some(handshake) = fixture("notification-handshake.json") else {
            return;
        };
        let now = "2020-04-17T10:24:13.188243-05:00";
        let built = bundle(
            &subscription("requested"),
            Kind::Handshake,
            0,
            &[],
            Content::IdOnly,
            now,
        );
        assert_eq!(shape(&built), shape(&handshake));

        let heartbeat = fixture("notification-heartbeat.json").unwrap();
        let built = bundle(
            &subscription("active"),
            Kind::Heartbeat,
            310,
            &[],
            Content::IdOnly,
            now,
        );
        assert_eq!(shape(&built), shape(&heartbeat));

        let empty = fixture("notification-empty.json").unwrap();
        let event = NotificationEvent {
            number: 2,
            timestamp: Some("2020-04-17T10:20:00-05:00".into()),
            focus: Some(encounter(
                &empty,
                "http://example.org/FHIR/R5/Encounter/2",
                false,
            )),
        };
        let built = bundle(
            &subscription("active"),
            Kind::EventNotification,
            2,
            &[event],
            Content::Empty,
            now,
        );
        assert_eq!(shape(&built), shape(&empty));

        let id_only = fixture("notification-id-only.json").unwrap();
        let event = NotificationEvent {
            number: 2,
            timestamp: None,
            focus: Some(encounter(
                &id_only,
                "http://example.org/FHIR/R5/Encounter/2",
                false,
            )),
        };
        let built = bundle(
            &subscription("active"),
            Kind::EventNotification,
            2,
            &[event],
            Content::IdOnly,
            now,
        );
        assert_eq!(shape(&built), shape(&id_only));

        for (name, with_patient) in [
            ("notification-full-resource.json", false),
            ("notification-full-resource-with-patient.json", true),
        ] {
            let full = fixture(name).unwrap();
            let event = NotificationEvent {
                number: 2,
                timestamp: None,
                focus: Some(encounter(
                    &full,
                    "http://example.org/FHIR/R5/Encounter/2",
                    with_patient,
                )),
            };
            let mut built = bundle(
                &subscription("active"),
                Kind::EventNotification,
                2,
                &[event],
                Content::FullResource,
                now,
            );
            // The examples write the entries' fullUrl with https (and the focus reference with
            // http); ours use the reference for both, so compare after taking theirs.
            for (i, e) in full["entry"].as_array().unwrap().iter().enumerate().skip(1) {
                built["entry"][i]["fullUrl"] = e["fullUrl"].clone();
            }
            assert_eq!(shape(&built), shape(&full), "{name}");
        }
    }

    /// The Subscriptions Backport IG's id-only notification (R4B), its shape written out here:
    /// a `history` Bundle, the SubscriptionStatus first with a `$status` request, the focus with
    /// the interaction's request and response; R4 writes the status as `Parameters`.
    #[test]
    fn backport_notifications_have_the_igs_shape() {
        let sub = SubscriptionRef {
            reference: "https://example.org/fhir/r4b/Subscription/admission".into(),
            topic: "http://hl7.org/SubscriptionTopic/admission".into(),
            status: "active".into(),
        };
        let event = NotificationEvent {
            number: 2,
            timestamp: None,
            focus: Some(Focus {
                reference: "https://example.org/fhir/r4b/Encounter/86009987".into(),
                relative: "Encounter".into(),
                method: "POST",
                status: "201",
                resource: None,
                context: Vec::new(),
            }),
        };
        let r5 = bundle(
            &sub,
            Kind::EventNotification,
            2,
            &[event],
            Content::IdOnly,
            "2020-05-29T11:44:13.1882432-05:00",
        );
        let r4b = for_version(r5.clone(), Version::R4B);
        let expected = json!({
            "resourceType": "Bundle", "type": "history",
            "entry": [
                {"resource": {"resourceType": "SubscriptionStatus", "status": "active",
                              "type": "event-notification", "eventsSinceSubscriptionStart": "2",
                              "notificationEvent": [{"eventNumber": "2",
                                  "focus": {"reference": "https://example.org/fhir/r4b/Encounter/86009987"}}],
                              "subscription": {"reference": "https://example.org/fhir/r4b/Subscription/admission"},
                              "topic": "http://hl7.org/SubscriptionTopic/admission"},
                 "request": {"method": "GET", "url": "https://example.org/fhir/r4b/Subscription/admission/$status"},
                 "response": {"status": "200"}},
                {"fullUrl": "https://example.org/fhir/r4b/Encounter/86009987",
                 "request": {"method": "POST", "url": "Encounter"}, "response": {"status": "201"}}
            ]
        });
        assert_eq!(shape(&r4b), shape(&expected));
        let r4 = for_version(r5, Version::R4);
        let params = &r4["entry"][0]["resource"];
        assert_eq!(params["resourceType"], "Parameters");
        let names: Vec<&str> = params["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "subscription",
                "topic",
                "status",
                "type",
                "events-since-subscription-start",
                "notification-event"
            ]
        );
        let event = &params["parameter"][5]["part"];
        assert_eq!(
            event[0],
            json!({"name": "event-number", "valueString": "2"})
        );
        assert_eq!(
            event[1],
            json!({"name": "focus", "valueReference": {"reference": "https://example.org/fhir/r4b/Encounter/86009987"}})
        );
    }
}
