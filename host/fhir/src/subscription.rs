//! A `Subscription` resource as Sluice runs it: R5's elements, or the R4/R4B Subscriptions
//! Backport IG's profile (the topic canonical in `criteria`, the content, heartbeat, timeout and
//! max count as extensions, filters as `_criteria` extensions), read into one [`Spec`].

use std::time::Duration;

use serde_json::Value;

use crate::notification::Content;
pub use crate::notification::Version;

const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";

/// Filters per Subscription.
pub const MAX_FILTERS: usize = 20;
/// Headers a rest-hook sends per Subscription, and the bytes of each.
pub const MAX_HEADERS: usize = 20;
pub const MAX_HEADER_BYTES: usize = 1024;
/// The shortest heartbeat period (seconds) Sluice keeps.
pub const MIN_HEARTBEAT_SECS: u64 = 1;
/// The longest rest-hook timeout (seconds).
pub const MAX_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// POST each notification to `endpoint`, with these headers.
    RestHook {
        endpoint: String,
        headers: Vec<(String, String)>,
    },
    /// Notifications over a WebSocket bound with `$get-ws-binding-token`.
    Websocket,
}

/// One `filterBy` (or backport filter criterion): a search parameter and its value, for
/// resources of one type or every type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub resource_type: Option<String>,
    /// `param=value` (with a modifier, `param:not=value`), as a search criterion.
    pub criterion: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub version: Version,
    /// The SubscriptionTopic canonical.
    pub topic: String,
    pub channel: Channel,
    pub content: Content,
    /// Seconds between heartbeats when nothing else is sent.
    pub heartbeat: Option<u64>,
    pub timeout: Duration,
    /// Events per notification at most (Sluice sends one event per notification).
    pub max_count: u64,
    pub filters: Vec<Filter>,
    /// `status` as the client wrote it (`requested`, `active`, `off`, ...).
    pub status: String,
}

impl Spec {
    /// What delivery depends on: a change here restarts the handshake.
    pub fn same_delivery(&self, other: &Spec) -> bool {
        Spec {
            status: String::new(),
            ..self.clone()
        } == Spec {
            status: String::new(),
            ..other.clone()
        }
    }
}

/// Read a Subscription of `version`; every problem as `(expression, message)`.
pub fn parse(resource: &Value, version: Version) -> Result<Spec, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let spec = match version {
        Version::R5 => parse_r5(resource, &mut problems),
        Version::R4 | Version::R4B => parse_backport(resource, version, &mut problems),
    };
    if spec.filters.len() > MAX_FILTERS {
        problems.push((
            "Subscription.filterBy".into(),
            format!("at most {MAX_FILTERS} filters"),
        ));
    }
    if let Channel::RestHook { headers, .. } = &spec.channel {
        if headers.len() > MAX_HEADERS {
            problems.push((
                "Subscription.parameter".into(),
                format!("at most {MAX_HEADERS} headers"),
            ));
        }
        for (name, value) in headers {
            if name.len() + value.len() > MAX_HEADER_BYTES
                || http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(value).is_err()
            {
                problems.push((
                    "Subscription.parameter".into(),
                    format!(
                        "`{}` is not an HTTP header of at most {MAX_HEADER_BYTES} bytes",
                        truncated(name)
                    ),
                ));
            }
        }
    }
    for f in &spec.filters {
        if let Err(e) = crate::trigger::matches(&f.criterion, &serde_json::json!({})) {
            problems.push(("Subscription.filterBy".into(), e.to_string()));
        }
    }
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(problems)
    }
}

fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

fn content(code: Option<&str>, expression: &str, problems: &mut Vec<(String, String)>) -> Content {
    match code {
        None => Content::Empty,
        Some(c) => Content::parse(c).unwrap_or_else(|| {
            problems.push((
                expression.into(),
                format!("`{}` is not empty, id-only or full-resource", truncated(c)),
            ));
            Content::Empty
        }),
    }
}

fn timeout(secs: Option<u64>, expression: &str, problems: &mut Vec<(String, String)>) -> Duration {
    match secs {
        None => Duration::from_secs(15),
        Some(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => Duration::from_secs(s),
        Some(_) => {
            problems.push((
                expression.into(),
                format!("a timeout of 1 to {MAX_TIMEOUT_SECS} seconds"),
            ));
            Duration::from_secs(15)
        }
    }
}

fn heartbeat(secs: Option<u64>) -> Option<u64> {
    secs.filter(|s| *s > 0).map(|s| s.max(MIN_HEARTBEAT_SECS))
}

fn parse_r5(r: &Value, problems: &mut Vec<(String, String)>) -> Spec {
    let topic = r["topic"].as_str().unwrap_or_default().to_owned();
    let channel = match r["channelType"]["code"].as_str() {
        Some("websocket") => Channel::Websocket,
        Some("rest-hook") | None => match r["endpoint"].as_str() {
            Some(e) => Channel::RestHook {
                endpoint: e.to_owned(),
                headers: r["parameter"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        Some((
                            p["name"].as_str()?.to_owned(),
                            p["value"].as_str()?.to_owned(),
                        ))
                    })
                    .collect(),
            },
            None => {
                problems.push((
                    "Subscription.endpoint".into(),
                    "a rest-hook needs an endpoint".into(),
                ));
                Channel::Websocket
            }
        },
        Some(other) => {
            problems.push((
                "Subscription.channelType".into(),
                format!(
                    "channel `{}` is not supported (rest-hook, websocket)",
                    truncated(other)
                ),
            ));
            Channel::Websocket
        }
    };
    let filters = r["filterBy"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let param = f["filterParameter"].as_str().unwrap_or_default();
            let modifier = f["modifier"]
                .as_str()
                .or(f["comparator"]
                    .as_str()
                    .filter(|c| *c == "ne")
                    .map(|_| "not"))
                .filter(|m| *m != "eq");
            let value = f["value"].as_str().unwrap_or_default();
            Filter {
                resource_type: f["resourceType"].as_str().map(str::to_owned),
                criterion: match modifier {
                    Some(m) => format!("{param}:{m}={value}"),
                    None => format!("{param}={value}"),
                },
            }
        })
        .collect();
    Spec {
        version: Version::R5,
        topic,
        channel,
        content: content(r["content"].as_str(), "Subscription.content", problems),
        heartbeat: heartbeat(r["heartbeatPeriod"].as_u64()),
        timeout: timeout(r["timeout"].as_u64(), "Subscription.timeout", problems),
        max_count: r["maxCount"].as_u64().unwrap_or(1).max(1),
        filters,
        status: r["status"].as_str().unwrap_or("requested").to_owned(),
    }
}

/// An extension's value among `extensions` (`valueX` of any type).
fn extension<'a>(extensions: &'a Value, name: &str) -> impl Iterator<Item = &'a Value> {
    let url = format!("{BACKPORT}{name}");
    extensions
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |e| e["url"].as_str() == Some(url.as_str()))
        .filter_map(|e| {
            e.as_object()?
                .iter()
                .find(|(k, _)| k.starts_with("value"))
                .map(|(_, v)| v)
        })
}

fn parse_backport(r: &Value, version: Version, problems: &mut Vec<(String, String)>) -> Spec {
    let channel = &r["channel"];
    let ext = &channel["extension"];
    let channel_kind = match channel["type"].as_str() {
        Some("websocket") => Channel::Websocket,
        Some("rest-hook") => match channel["endpoint"].as_str() {
            Some(e) => Channel::RestHook {
                endpoint: e.to_owned(),
                headers: channel["header"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter_map(|h| h.split_once(':'))
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .collect(),
            },
            None => {
                problems.push((
                    "Subscription.channel.endpoint".into(),
                    "a rest-hook needs an endpoint".into(),
                ));
                Channel::Websocket
            }
        },
        other => {
            problems.push((
                "Subscription.channel.type".into(),
                format!(
                    "channel `{}` is not supported (rest-hook, websocket)",
                    truncated(other.unwrap_or(""))
                ),
            ));
            Channel::Websocket
        }
    };
    let content_code = extension(
        &channel["_payload"]["extension"],
        "backport-payload-content",
    )
    .next()
    .and_then(Value::as_str);
    let filters = extension(&r["_criteria"]["extension"], "backport-filter-criteria")
        .filter_map(Value::as_str)
        .flat_map(|criteria| {
            // `Encounter?patient=Patient/123&status=in-progress`
            let (resource_type, query) = match criteria.split_once('?') {
                Some((t, q)) => (Some(t.to_owned()).filter(|t| !t.is_empty()), q),
                None => (None, criteria),
            };
            query
                .split('&')
                .filter(|c| !c.is_empty())
                .map(move |c| Filter {
                    resource_type: resource_type.clone(),
                    criterion: c.to_owned(),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Spec {
        version,
        topic: r["criteria"].as_str().unwrap_or_default().to_owned(),
        channel: channel_kind,
        content: content(
            content_code,
            "Subscription.channel.payload.extension",
            problems,
        ),
        heartbeat: heartbeat(
            extension(ext, "backport-heartbeat-period")
                .next()
                .and_then(Value::as_u64),
        ),
        timeout: timeout(
            extension(ext, "backport-timeout")
                .next()
                .and_then(Value::as_u64),
            "Subscription.channel.extension",
            problems,
        ),
        max_count: extension(ext, "backport-max-count")
            .next()
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .max(1),
        filters,
        status: r["status"].as_str().unwrap_or("requested").to_owned(),
    }
}

/// Does the change of `resource` (of `resource_type`) pass every filter?
pub fn passes(filters: &[Filter], resource_type: &str, resource: &Value) -> bool {
    filters
        .iter()
        .filter(|f| {
            f.resource_type
                .as_deref()
                .is_none_or(|t| t == resource_type)
        })
        .all(|f| crate::trigger::matches(&f.criterion, resource).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn r5_subscriptions_are_read() {
        let s = parse(
            &json!({"resourceType": "Subscription", "status": "requested",
                "topic": "http://example.org/topic/admission",
                "channelType": {"system": "http://terminology.hl7.org/CodeSystem/subscription-channel-type", "code": "rest-hook"},
                "endpoint": "https://ehr.example/hook",
                "parameter": [{"name": "Authorization", "value": "Bearer x"}],
                "heartbeatPeriod": 60, "timeout": 5, "maxCount": 3, "content": "full-resource",
                "filterBy": [{"resourceType": "Encounter", "filterParameter": "patient", "value": "Patient/1"}]}),
            Version::R5,
        )
        .unwrap();
        assert_eq!(s.topic, "http://example.org/topic/admission");
        assert_eq!(
            s.channel,
            Channel::RestHook {
                endpoint: "https://ehr.example/hook".into(),
                headers: vec![("Authorization".into(), "Bearer x".into())]
            }
        );
        assert_eq!(
            (s.content, s.heartbeat, s.timeout, s.max_count),
            (Content::FullResource, Some(60), Duration::from_secs(5), 3)
        );
        assert_eq!(s.filters[0].criterion, "patient=Patient/1");
        let enc = json!({"resourceType": "Encounter", "subject": {"reference": "Patient/1"}});
        assert!(passes(&s.filters, "Encounter", &enc));
        let other = json!({"resourceType": "Encounter", "subject": {"reference": "Patient/2"}});
        assert!(!passes(&s.filters, "Encounter", &other));
        assert!(
            passes(&s.filters, "Patient", &other),
            "filters of another type do not apply"
        );
    }

    #[test]
    fn backport_subscriptions_are_read_from_their_extensions() {
        let s = parse(
            &json!({"resourceType": "Subscription", "status": "requested", "reason": "test",
                "criteria": "http://hl7.org/SubscriptionTopic/admission",
                "_criteria": {"extension": [{"url": format!("{BACKPORT}backport-filter-criteria"),
                                             "valueString": "Encounter?patient=Patient/123"}]},
                "channel": {
                    "extension": [
                        {"url": format!("{BACKPORT}backport-heartbeat-period"), "valueUnsignedInt": 86400},
                        {"url": format!("{BACKPORT}backport-timeout"), "valueUnsignedInt": 60},
                        {"url": format!("{BACKPORT}backport-max-count"), "valuePositiveInt": 20}],
                    "type": "rest-hook", "endpoint": "https://subscriber.example.org/Subscription/admission",
                    "payload": "application/fhir+json",
                    "_payload": {"extension": [{"url": format!("{BACKPORT}backport-payload-content"), "valueCode": "id-only"}]},
                    "header": ["Authorization: Bearer secret-token-abc-123"]}}),
            Version::R4B,
        )
        .unwrap();
        assert_eq!(s.topic, "http://hl7.org/SubscriptionTopic/admission");
        assert_eq!(
            (s.content, s.heartbeat, s.timeout, s.max_count),
            (Content::IdOnly, Some(86400), Duration::from_secs(60), 20)
        );
        assert_eq!(
            s.filters,
            vec![Filter {
                resource_type: Some("Encounter".into()),
                criterion: "patient=Patient/123".into()
            }]
        );
        assert_eq!(
            s.channel,
            Channel::RestHook {
                endpoint: "https://subscriber.example.org/Subscription/admission".into(),
                headers: vec![("Authorization".into(), "Bearer secret-token-abc-123".into())]
            }
        );
    }

    #[test]
    fn what_cannot_be_run_is_refused_with_its_element() {
        let problems = parse(
            &json!({"resourceType": "Subscription", "topic": "t", "channelType": {"code": "email"},
                    "content": "everything", "timeout": 3600,
                    "filterBy": [{"filterParameter": "unknown-param", "value": "x"}]}),
            Version::R5,
        )
        .unwrap_err();
        let at: Vec<&str> = problems.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(
            at,
            [
                "Subscription.channelType",
                "Subscription.content",
                "Subscription.timeout",
                "Subscription.filterBy"
            ]
        );
        let problems = parse(
            &json!({"resourceType": "Subscription", "topic": "t", "endpoint": "https://x",
                    "parameter": [{"name": "bad header", "value": "v"}]}),
            Version::R5,
        )
        .unwrap_err();
        assert_eq!(problems[0].0, "Subscription.parameter");
    }
}
