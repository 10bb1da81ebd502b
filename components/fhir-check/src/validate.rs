//! Requests to resource changes, and the structural checks (plain Rust, tested natively).

use serde_json::{Value, json};

use crate::change::{Change, Issue, Outcome, Refused, refuse, valid_id};

/// The most entries a transaction or batch Bundle may have.
pub const MAX_BUNDLE_ENTRIES: usize = 10_000;

/// The FHIR versions taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FhirVersion {
    R4,
    R4B,
    R5,
}

impl FhirVersion {
    /// `R4`/`4.0`/`4.0.1`, `R4B`/`4.3`/`4.3.0`, `R5`/`5.0`/`5.0.0`.
    pub fn parse(s: &str) -> Option<FhirVersion> {
        match s.trim() {
            "R4" | "4.0" | "4.0.1" => Some(FhirVersion::R4),
            "R4B" | "4.3" | "4.3.0" => Some(FhirVersion::R4B),
            "R5" | "5.0" | "5.0.0" => Some(FhirVersion::R5),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FhirVersion::R4 => "R4",
            FhirVersion::R4B => "R4B",
            FhirVersion::R5 => "R5",
        }
    }
}

/// The changes a request to the FHIR API (`path` below `/fhir/{tenant}`) makes.
pub fn changes(
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    default: FhirVersion,
) -> Result<(FhirVersion, Vec<Change>), Refused> {
    let version = version_of(content_type, default)?;
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = method.to_ascii_uppercase();
    match (method.as_str(), segments.as_slice()) {
        ("POST", []) => {
            let resource = parse_body(body, content_type)?;
            if let Some(n) = crate::notification::events(&resource)? {
                return Ok((version, n));
            }
            bundle_changes(&resource, version).map(|c| (version, c))
        }
        ("POST", [t]) => {
            check_type_name(t)?;
            let mut resource = parse_body(body, content_type)?;
            check_one(&resource, t, version)?;
            // The server assigns the id of a created resource.
            if let Some(o) = resource.as_object_mut() {
                o.remove("id");
            }
            Ok((version, vec![change(t, None, "create", &resource)]))
        }
        ("PUT", [t, id]) => {
            check_type_name(t)?;
            check_id(id, &format!("{t}.id"))?;
            let resource = parse_body(body, content_type)?;
            check_one(&resource, t, version)?;
            match resource.get("id").and_then(Value::as_str) {
                Some(body_id) if body_id == *id => {}
                _ => {
                    return Err(refuse(
                        400,
                        "invalid",
                        format!("the resource's id must be the URL's `{id}`"),
                    ));
                }
            }
            Ok((version, vec![change(t, Some(id), "update", &resource)]))
        }
        ("DELETE", [t, id]) => {
            check_type_name(t)?;
            check_id(id, &format!("{t}.id"))?;
            Ok((version, vec![deletion(t, id)]))
        }
        (_, [] | [_] | [_, _]) => Err(refuse(
            405,
            "not-supported",
            format!(
                "{method} is not supported here (create: POST /Type, update: PUT /Type/id, delete: DELETE /Type/id, transaction or batch: POST /)"
            ),
        )),
        _ => Err(refuse(
            404,
            "not-found",
            format!("no such FHIR endpoint: {path}"),
        )),
    }
}

fn change(resource_type: &str, id: Option<&str>, interaction: &'static str, r: &Value) -> Change {
    Change {
        resource_type: resource_type.to_owned(),
        id: id.map(str::to_owned),
        interaction,
        payload: r.to_string(),
        headers: Vec::new(),
    }
}

fn deletion(resource_type: &str, id: &str) -> Change {
    Change {
        resource_type: resource_type.to_owned(),
        id: Some(id.to_owned()),
        interaction: "delete",
        payload: json!({"resourceType": resource_type, "id": id, "deleted": true}).to_string(),
        headers: Vec::new(),
    }
}

/// `application/fhir+json` (or `application/json`), its `fhirVersion` parameter, else the
/// default.
fn version_of(content_type: Option<&str>, default: FhirVersion) -> Result<FhirVersion, Refused> {
    let Some(ct) = content_type else {
        return Ok(default);
    };
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if !mime.is_empty()
        && mime != "application/fhir+json"
        && mime != "application/json"
        && mime != "application/json+fhir"
    {
        return Err(refuse(
            415,
            "not-supported",
            format!("content type `{mime}`: this server takes application/fhir+json"),
        ));
    }
    for p in parts {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("fhirVersion")
        {
            return FhirVersion::parse(v.trim_matches([' ', '"'])).ok_or_else(|| {
                refuse(
                    415,
                    "not-supported",
                    format!("fhirVersion `{}`: 4.0, 4.3 or 5.0", v.trim()),
                )
            });
        }
    }
    Ok(default)
}

fn parse_body(body: &[u8], _content_type: Option<&str>) -> Result<Value, Refused> {
    if body.is_empty() {
        return Err(refuse(400, "structure", "the request has no resource"));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| refuse(400, "structure", format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(refuse(400, "structure", "a resource is a JSON object"));
    }
    Ok(v)
}

fn check_type_name(t: &str) -> Result<(), Refused> {
    let ok = t.len() <= 64
        && t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && t.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(refuse(
            404,
            "not-found",
            format!("`{t}` is not a resource type"),
        ))
    }
}

fn check_id(id: &str, expression: &str) -> Result<(), Refused> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(Refused {
            status: 400,
            code: "value",
            outcome: Outcome {
                issues: vec![Issue {
                    severity: "error",
                    code: "value",
                    diagnostics: format!("`{id}` is not a FHIR id: 1-64 of A-Z a-z 0-9 - ."),
                    expression: Some(expression.to_owned()),
                }],
            },
        })
    }
}

/// One resource of type `t`, all its issues at once (422 when there are any).
fn check_one(r: &Value, t: &str, version: FhirVersion) -> Result<(), Refused> {
    let mut issues = Vec::new();
    check_resource(r, Some(t), version, t, &mut issues);
    if issues.is_empty() {
        Ok(())
    } else {
        Err(unprocessable(issues))
    }
}

fn unprocessable(issues: Vec<Issue>) -> Refused {
    let status = if issues.iter().any(|i| i.code == "structure") {
        400
    } else {
        422
    };
    Refused {
        status,
        code: issues[0].code,
        outcome: Outcome { issues },
    }
}

/// A transaction or batch Bundle's changes; every entry is checked and any issue refuses all.
fn bundle_changes(bundle: &Value, version: FhirVersion) -> Result<Vec<Change>, Refused> {
    let mut issues = Vec::new();
    check_resource(bundle, Some("Bundle"), version, "Bundle", &mut issues);
    if !issues.is_empty() {
        return Err(unprocessable(issues));
    }
    let kind = bundle["type"].as_str().unwrap_or_default();
    if kind != "transaction" && kind != "batch" {
        return Err(refuse(
            422,
            "invalid",
            format!("POST / takes a transaction or batch Bundle, not `{kind}`"),
        ));
    }
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    if entries.len() > MAX_BUNDLE_ENTRIES {
        return Err(refuse(
            413,
            "too-costly",
            format!(
                "a Bundle of {} entries: at most {MAX_BUNDLE_ENTRIES}",
                entries.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        match entry_change(i, e, version) {
            Ok(c) => out.push(c),
            // A batch's entries stand alone: a refused one is answered in its place.
            Err(entry_issues) if kind == "batch" => {
                let refused = unprocessable(entry_issues);
                out.push(Change {
                    resource_type: String::new(),
                    id: None,
                    interaction: "outcome",
                    payload: refused.outcome.to_json(),
                    headers: vec![("fhir_status".to_owned(), refused.status.to_string())],
                });
            }
            Err(entry_issues) => issues.extend(entry_issues),
        }
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(unprocessable(issues))
    }
}

/// One Bundle entry's change, or its issues.
fn entry_change(i: usize, e: &Value, version: FhirVersion) -> Result<Change, Vec<Issue>> {
    let at = format!("Bundle.entry[{i}]");
    let method = e.pointer("/request/method").and_then(Value::as_str);
    let url = e.pointer("/request/url").and_then(Value::as_str);
    let (Some(method), Some(url)) = (method, url) else {
        return Err(vec![issue(
            "required",
            "an entry needs request.method and request.url",
            &format!("{at}.request"),
        )]);
    };
    let url = url.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = url.split('/').filter(|s| !s.is_empty()).collect();
    match (method, parts.as_slice()) {
        ("POST", [t]) | ("PUT", [t, _]) => {
            let Some(r) = e.get("resource") else {
                return Err(vec![issue(
                    "required",
                    "a POST or PUT entry carries its resource",
                    &format!("{at}.resource"),
                )]);
            };
            let mut issues = Vec::new();
            check_resource(r, Some(t), version, &format!("{at}.resource"), &mut issues);
            if !issues.is_empty() {
                return Err(issues);
            }
            if method == "POST" {
                let mut r = r.clone();
                if let Some(o) = r.as_object_mut() {
                    o.remove("id");
                }
                return Ok(change(t, None, "create", &r));
            }
            let id = parts[1];
            if !valid_id(id) || r.get("id").and_then(Value::as_str) != Some(id) {
                return Err(vec![issue(
                    "value",
                    &format!("the resource's id must be the URL's `{id}` (a FHIR id)"),
                    &format!("{at}.resource.id"),
                )]);
            }
            Ok(change(t, Some(id), "update", r))
        }
        ("DELETE", [t, id]) if valid_id(id) => Ok(deletion(t, id)),
        _ => Err(vec![issue(
            "not-supported",
            &format!("{method} {url}: entries are POST Type, PUT Type/id or DELETE Type/id"),
            &format!("{at}.request"),
        )]),
    }
}

fn issue(code: &'static str, diagnostics: &str, expression: &str) -> Issue {
    Issue {
        severity: "error",
        code,
        diagnostics: diagnostics.to_owned(),
        expression: Some(expression.to_owned()),
    }
}

/// What an element holds.
#[derive(Clone, Copy)]
enum Kind {
    Boolean,
    String,
    Code(&'static [&'static str]),
    Date,
    DateTime,
    Instant,
    Object,
    Objects,
}

/// `(element, kind, required)` per resource type and version.
fn rules(t: &str, v: FhirVersion) -> Vec<(&'static str, Kind, bool)> {
    use Kind::*;
    let r5 = v == FhirVersion::R5;
    match t {
        "Patient" => vec![
            ("active", Boolean, false),
            (
                "gender",
                Code(&["male", "female", "other", "unknown"]),
                false,
            ),
            ("birthDate", Date, false),
            ("deceasedBoolean", Boolean, false),
            ("deceasedDateTime", DateTime, false),
            ("name", Objects, false),
            ("identifier", Objects, false),
            ("telecom", Objects, false),
            ("address", Objects, false),
        ],
        "Encounter" => {
            let statuses: &'static [&'static str] = if r5 {
                &[
                    "planned",
                    "in-progress",
                    "on-hold",
                    "discharged",
                    "completed",
                    "cancelled",
                    "discontinued",
                    "entered-in-error",
                    "unknown",
                ]
            } else {
                &[
                    "planned",
                    "arrived",
                    "triaged",
                    "in-progress",
                    "onleave",
                    "finished",
                    "cancelled",
                    "entered-in-error",
                    "unknown",
                ]
            };
            let mut r = vec![("status", Code(statuses), true), ("subject", Object, false)];
            r.push(if r5 {
                ("class", Objects, false)
            } else {
                ("class", Object, true)
            });
            r
        }
        "Observation" => vec![
            (
                "status",
                Code(&[
                    "registered",
                    "preliminary",
                    "final",
                    "amended",
                    "corrected",
                    "cancelled",
                    "entered-in-error",
                    "unknown",
                ]),
                true,
            ),
            ("code", Object, true),
            ("subject", Object, false),
            ("effectiveDateTime", DateTime, false),
            ("issued", Instant, false),
            ("valueQuantity", Object, false),
            ("valueCodeableConcept", Object, false),
            ("valueString", String, false),
            ("valueBoolean", Boolean, false),
        ],
        "Condition" => vec![
            ("subject", Object, true),
            ("clinicalStatus", Object, r5),
            ("verificationStatus", Object, false),
            ("code", Object, false),
            ("onsetDateTime", DateTime, false),
            ("recordedDate", DateTime, false),
        ],
        "MedicationRequest" => {
            let statuses: &'static [&'static str] = if r5 {
                &[
                    "active",
                    "on-hold",
                    "ended",
                    "stopped",
                    "completed",
                    "cancelled",
                    "entered-in-error",
                    "draft",
                    "unknown",
                ]
            } else {
                &[
                    "active",
                    "on-hold",
                    "cancelled",
                    "completed",
                    "entered-in-error",
                    "stopped",
                    "draft",
                    "unknown",
                ]
            };
            let mut r = vec![
                ("status", Code(statuses), true),
                (
                    "intent",
                    Code(&[
                        "proposal",
                        "plan",
                        "order",
                        "original-order",
                        "reflex-order",
                        "filler-order",
                        "instance-order",
                        "option",
                    ]),
                    true,
                ),
                ("subject", Object, true),
                ("authoredOn", DateTime, false),
            ];
            if r5 {
                r.push(("medication", Object, true));
            } else {
                r.push(("medicationCodeableConcept", Object, false));
                r.push(("medicationReference", Object, false));
            }
            r
        }
        "DiagnosticReport" => vec![
            (
                "status",
                Code(&[
                    "registered",
                    "partial",
                    "preliminary",
                    "modified",
                    "final",
                    "amended",
                    "corrected",
                    "appended",
                    "cancelled",
                    "entered-in-error",
                    "unknown",
                ]),
                true,
            ),
            ("code", Object, true),
            ("subject", Object, false),
            ("effectiveDateTime", DateTime, false),
            ("issued", Instant, false),
            ("result", Objects, false),
        ],
        "SubscriptionTopic" => vec![
            ("url", String, true),
            (
                "status",
                Code(&["draft", "active", "retired", "unknown"]),
                true,
            ),
            ("resourceTrigger", Objects, false),
            ("eventTrigger", Objects, false),
            ("canFilterBy", Objects, false),
            ("notificationShape", Objects, false),
        ],
        "Subscription" if r5 => vec![
            (
                "status",
                Code(&["requested", "active", "error", "off", "entered-in-error"]),
                true,
            ),
            ("topic", String, true),
            ("channelType", Object, true),
            ("endpoint", String, false),
            (
                "content",
                Code(&["empty", "id-only", "full-resource"]),
                false,
            ),
            ("filterBy", Objects, false),
        ],
        // The R4/R4B backport: a topic canonical in `criteria`, the channel in `channel`.
        "Subscription" => vec![
            (
                "status",
                Code(&["requested", "active", "error", "off"]),
                true,
            ),
            ("criteria", String, true),
            ("channel", Object, true),
            ("reason", String, false),
        ],
        "Bundle" => vec![
            (
                "type",
                Code(&[
                    "document",
                    "message",
                    "transaction",
                    "transaction-response",
                    "batch",
                    "batch-response",
                    "history",
                    "searchset",
                    "collection",
                    "subscription-notification",
                ]),
                true,
            ),
            ("entry", Objects, false),
            ("timestamp", Instant, false),
        ],
        _ => Vec::new(),
    }
}

/// Check one resource (of `expected` type when given) at the FHIRPath `at`.
fn check_resource(
    r: &Value,
    expected: Option<&str>,
    v: FhirVersion,
    at: &str,
    issues: &mut Vec<Issue>,
) {
    let Some(o) = r.as_object() else {
        issues.push(issue("structure", "a resource is a JSON object", at));
        return;
    };
    let t = match o.get("resourceType").and_then(Value::as_str) {
        Some(t) => t,
        None => {
            issues.push(issue(
                "required",
                "resourceType is required",
                &format!("{at}.resourceType"),
            ));
            return;
        }
    };
    if let Some(e) = expected
        && e != t
    {
        issues.push(issue(
            "invalid",
            &format!("resourceType `{t}` where `{e}` was expected"),
            &format!("{at}.resourceType"),
        ));
        return;
    }
    if let Some(id) = o.get("id")
        && !id.as_str().is_some_and(valid_id)
    {
        issues.push(issue(
            "value",
            "id: 1-64 of A-Z a-z 0-9 - .",
            &format!("{at}.id"),
        ));
    }

    if let Some(meta) = o.get("meta") {
        check_meta(meta, &format!("{at}.meta"), issues);
    }
    for (name, kind, required) in rules(t, v) {
        let path = format!("{at}.{name}");
        match o.get(name) {
            None | Some(Value::Null) => {
                if required {
                    issues.push(issue(
                        "required",
                        &format!("{t}.{name} is required ({})", v.name()),
                        &path,
                    ));
                }
            }
            Some(value) => check_kind(value, kind, &path, issues),
        }
    }
    if t == "MedicationRequest" && v != FhirVersion::R5 {
        let n = ["medicationCodeableConcept", "medicationReference"]
            .iter()
            .filter(|k| o.get(**k).is_some())
            .count();
        if n != 1 {
            issues.push(issue(
                "required",
                "exactly one of medicationCodeableConcept and medicationReference",
                &format!("{at}.medication[x]"),
            ));
        }
    }
}

fn check_meta(meta: &Value, at: &str, issues: &mut Vec<Issue>) {
    let Some(m) = meta.as_object() else {
        issues.push(issue("structure", "meta is an object", at));
        return;
    };
    if let Some(vid) = m.get("versionId")
        && !vid.as_str().is_some_and(valid_id)
    {
        issues.push(issue(
            "value",
            "meta.versionId is an id",
            &format!("{at}.versionId"),
        ));
    }
    if let Some(lu) = m.get("lastUpdated") {
        check_kind(lu, Kind::Instant, &format!("{at}.lastUpdated"), issues);
    }
}

fn check_kind(value: &Value, kind: Kind, at: &str, issues: &mut Vec<Issue>) {
    let ok = match kind {
        Kind::Boolean => value.is_boolean(),
        Kind::String => value.as_str().is_some_and(|s| !s.is_empty()),
        Kind::Code(codes) => value.as_str().is_some_and(|s| codes.contains(&s)),
        Kind::Date => value.as_str().is_some_and(is_date),
        Kind::DateTime => value.as_str().is_some_and(is_date_time),
        Kind::Instant => value.as_str().is_some_and(is_instant),
        Kind::Object => value.is_object(),
        Kind::Objects => value
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_object)),
    };
    if !ok {
        let what = match kind {
            Kind::Boolean => "a boolean".to_owned(),
            Kind::String => "a non-empty string".to_owned(),
            Kind::Code(codes) => format!("one of {}", codes.join(", ")),
            Kind::Date => "a date (YYYY, YYYY-MM or YYYY-MM-DD)".to_owned(),
            Kind::DateTime => "a dateTime".to_owned(),
            Kind::Instant => "an instant (date, time with seconds, zone)".to_owned(),
            Kind::Object => "an object".to_owned(),
            Kind::Objects => "a non-empty array of objects".to_owned(),
        };
        issues.push(issue("value", &format!("must be {what}"), at));
    }
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

fn in_range(s: &str, lo: u32, hi: u32) -> bool {
    s.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n))
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
pub fn is_date(s: &str) -> bool {
    let p: Vec<&str> = s.split('-').collect();
    match p.as_slice() {
        [y] => digits(y, 4),
        [y, m] => digits(y, 4) && digits(m, 2) && in_range(m, 1, 12),
        [y, m, d] => {
            digits(y, 4) && digits(m, 2) && in_range(m, 1, 12) && digits(d, 2) && in_range(d, 1, 31)
        }
        _ => false,
    }
}

/// `hh:mm:ss(.fraction)?` then `Z` or `±hh:mm`.
fn is_time_with_zone(t: &str) -> bool {
    let (time, zone) = if let Some(time) = t.strip_suffix('Z') {
        (time, "Z")
    } else if t.len() > 6 && matches!(t.as_bytes()[t.len() - 6], b'+' | b'-') {
        t.split_at(t.len() - 6)
    } else {
        return false;
    };
    let zone_ok = zone == "Z" || {
        let z = &zone[1..];
        z.len() == 5 && digits(&z[..2], 2) && &z[2..3] == ":" && digits(&z[3..], 2)
    };
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let p: Vec<&str> = hms.split(':').collect();
    zone_ok
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && !fraction.is_empty()
        && p.len() == 3
        && digits(p[0], 2)
        && in_range(p[0], 0, 23)
        && digits(p[1], 2)
        && in_range(p[1], 0, 59)
        && digits(p[2], 2)
        && in_range(p[2], 0, 60)
}

/// A date, or a full date with a time and zone.
pub fn is_date_time(s: &str) -> bool {
    match s.split_once('T') {
        None => is_date(s),
        Some((d, t)) => d.len() == 10 && is_date(d) && is_time_with_zone(t),
    }
}

/// A full date with a time (seconds) and a zone.
pub fn is_instant(s: &str) -> bool {
    s.split_once('T')
        .is_some_and(|(d, t)| d.len() == 10 && is_date(d) && is_time_with_zone(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/fhir+json");

    fn post(path: &str, body: Value) -> Result<(FhirVersion, Vec<Change>), Refused> {
        changes(
            "POST",
            path,
            JSON,
            body.to_string().as_bytes(),
            FhirVersion::R5,
        )
    }

    #[test]
    fn a_valid_patient_is_one_create_without_its_id() {
        let (v, c) = post("/Patient", json!({"resourceType": "Patient", "id": "ignored", "gender": "female", "birthDate": "1970-02"})).unwrap();
        assert_eq!(v, FhirVersion::R5);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (
                c[0].resource_type.as_str(),
                c[0].id.as_deref(),
                c[0].interaction
            ),
            ("Patient", None, "create")
        );
        assert!(!c[0].payload.contains("ignored"));
    }

    #[test]
    fn problems_come_back_as_issues_with_their_expressions() {
        let e = post(
            "/Observation",
            json!({"resourceType": "Observation", "status": "done", "valueBoolean": "yes"}),
        )
        .unwrap_err();
        assert_eq!(e.status, 422);
        let found: Vec<(&str, Option<&str>)> = e
            .outcome
            .issues
            .iter()
            .map(|i| (i.code, i.expression.as_deref()))
            .collect();
        assert!(
            found.contains(&("value", Some("Observation.status"))),
            "{found:?}"
        );
        assert!(
            found.contains(&("required", Some("Observation.code"))),
            "{found:?}"
        );
        assert!(
            found.contains(&("value", Some("Observation.valueBoolean"))),
            "{found:?}"
        );
        let text = e.outcome.to_json();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert_eq!(v["issue"][0]["severity"], "error");
        // The wrong type for the URL, and not JSON at all.
        let e = post("/Patient", json!({"resourceType": "Observation"})).unwrap_err();
        assert_eq!(
            e.outcome.issues[0].expression.as_deref(),
            Some("Patient.resourceType")
        );
        let e = changes("POST", "/Patient", JSON, b"{", FhirVersion::R5).unwrap_err();
        assert_eq!((e.status, e.code), (400, "structure"));
    }

    #[test]
    fn versions_change_what_is_required() {
        let encounter = json!({"resourceType": "Encounter", "status": "finished"});
        let r4 = changes(
            "POST",
            "/Encounter",
            Some("application/fhir+json; fhirVersion=4.0"),
            encounter.to_string().as_bytes(),
            FhirVersion::R5,
        )
        .unwrap_err();
        assert!(
            r4.outcome
                .issues
                .iter()
                .any(|i| i.expression.as_deref() == Some("Encounter.class")),
            "{r4:?}"
        );
        // In R5 `finished` is no status; `completed` is, and class is optional.
        let r5 = json!({"resourceType": "Encounter", "status": "completed"});
        assert!(post("/Encounter", r5).is_ok());
        let med4 = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/1"}});
        let e = changes(
            "POST",
            "/MedicationRequest",
            Some("application/fhir+json;fhirVersion=4.3"),
            med4.to_string().as_bytes(),
            FhirVersion::R5,
        )
        .unwrap_err();
        assert_eq!(
            e.outcome.issues[0].expression.as_deref(),
            Some("MedicationRequest.medication[x]")
        );
        let bad = changes(
            "POST",
            "/Patient",
            Some("application/fhir+json; fhirVersion=3.0"),
            b"{}",
            FhirVersion::R5,
        )
        .unwrap_err();
        assert_eq!(bad.status, 415);
        let xml = changes(
            "POST",
            "/Patient",
            Some("application/fhir+xml"),
            b"<x/>",
            FhirVersion::R5,
        )
        .unwrap_err();
        assert_eq!(xml.status, 415);
    }

    #[test]
    fn updates_and_deletes_name_their_id() {
        let body = json!({"resourceType": "Patient", "id": "p-1"}).to_string();
        let (_, c) = changes(
            "PUT",
            "/Patient/p-1",
            JSON,
            body.as_bytes(),
            FhirVersion::R5,
        )
        .unwrap();
        assert_eq!(
            (c[0].id.as_deref(), c[0].interaction),
            (Some("p-1"), "update")
        );
        let other = changes(
            "PUT",
            "/Patient/p-2",
            JSON,
            body.as_bytes(),
            FhirVersion::R5,
        )
        .unwrap_err();
        assert_eq!(other.status, 400);
        let (_, d) = changes("DELETE", "/Patient/p-1", None, b"", FhirVersion::R5).unwrap();
        let v: Value = serde_json::from_str(&d[0].payload).unwrap();
        assert_eq!(
            v,
            json!({"resourceType": "Patient", "id": "p-1", "deleted": true})
        );
        assert_eq!(
            changes("DELETE", "/Patient/bad id", None, b"", FhirVersion::R5)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            changes("GET", "/Patient/p-1", None, b"", FhirVersion::R5)
                .unwrap_err()
                .status,
            405
        );
        assert_eq!(
            changes("POST", "/a/b/c", JSON, b"{}", FhirVersion::R5)
                .unwrap_err()
                .status,
            404
        );
    }

    /// A transaction whose second entry is invalid.
    fn broken_batch() -> Value {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "id": "o1", "status": "nope", "code": {"text": "hr"}}, "request": {"method": "PUT", "url": "Observation/o1"}},
            {"request": {"method": "DELETE", "url": "Condition/c9"}},
        ]})
    }

    #[test]
    fn a_transaction_is_all_or_nothing() {
        let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "hr"}}, "request": {"method": "PUT", "url": "Observation/o1"}},
            {"request": {"method": "DELETE", "url": "Condition/c9"}},
        ]});
        let (_, c) = post("/", tx.clone()).unwrap();
        let kinds: Vec<(&str, &str)> = c
            .iter()
            .map(|c| (c.resource_type.as_str(), c.interaction))
            .collect();
        assert_eq!(
            kinds,
            [
                ("Patient", "create"),
                ("Observation", "update"),
                ("Condition", "delete")
            ]
        );
        let broken = broken_batch();
        let e = post("/", broken).unwrap_err();
        assert_eq!(e.status, 422);
        assert_eq!(
            e.outcome.issues[0].expression.as_deref(),
            Some("Bundle.entry[1].resource.status")
        );
        let history = json!({"resourceType": "Bundle", "type": "history"});
        assert_eq!(post("/", history).unwrap_err().status, 422);
        // A batch answers a refused entry in its place and keeps the others.
        let mut batch = broken_batch();
        batch["type"] = json!("batch");
        let (_, c) = post("/", batch).unwrap();
        let kinds: Vec<&str> = c.iter().map(|c| c.interaction).collect();
        assert_eq!(kinds, ["create", "outcome", "delete"]);
        assert!(
            c[1].payload.contains("Bundle.entry[1].resource.status"),
            "{}",
            c[1].payload
        );
        assert!(c[1].headers.contains(&("fhir_status".into(), "422".into())));
        let entries: Vec<Value> = (0..=MAX_BUNDLE_ENTRIES)
            .map(|i| json!({"request": {"method": "DELETE", "url": format!("P/{i}")}}))
            .collect();
        let huge = json!({"resourceType": "Bundle", "type": "batch", "entry": entries});
        let e = post("/", huge).unwrap_err();
        assert_eq!((e.status, e.code), (413, "too-costly"));
    }

    #[test]
    fn subscription_resources_are_checked_per_version() {
        let fixture = |name: &str| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/fixtures/fhir/r5")
                .join(name);
            std::fs::read_to_string(path)
                .ok()
                .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        };
        // The official R5 SubscriptionTopic examples pass as given.
        for name in [
            "subscriptiontopic-example.json",
            "subscriptiontopic-example-admission.json",
        ] {
            let Some(topic) = fixture(name) else {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "../shared/fixtures/fhir is missing"
                );
                return;
            };
            post("/SubscriptionTopic", topic).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
        let r5 = json!({"resourceType": "Subscription", "status": "requested",
                        "topic": "http://example.org/FHIR/R5/SubscriptionTopic/admission",
                        "channelType": {"code": "rest-hook"}, "endpoint": "https://ehr.example/hook",
                        "content": "id-only"});
        assert!(post("/Subscription", r5.clone()).is_ok());
        let mut bad = r5;
        bad["content"] = json!("everything");
        let e = post("/Subscription", bad).unwrap_err();
        assert_eq!(
            e.outcome.issues[0].expression.as_deref(),
            Some("Subscription.content")
        );
        // The backport shape is R4's.
        let r4 = json!({"resourceType": "Subscription", "status": "requested",
                        "criteria": "http://example.org/FHIR/R5/SubscriptionTopic/admission",
                        "reason": "admissions", "channel": {"type": "rest-hook", "endpoint": "https://x"}});
        let ct = Some("application/fhir+json; fhirVersion=4.0");
        assert!(
            changes(
                "POST",
                "/Subscription",
                ct,
                r4.to_string().as_bytes(),
                FhirVersion::R5
            )
            .is_ok()
        );
        let e = changes(
            "POST",
            "/Subscription",
            JSON,
            r4.to_string().as_bytes(),
            FhirVersion::R5,
        )
        .unwrap_err();
        assert!(
            e.outcome
                .issues
                .iter()
                .any(|i| i.expression.as_deref() == Some("Subscription.topic"))
        );
    }

    #[test]
    fn dates_and_instants() {
        for ok in ["2024", "2024-02", "2024-02-29"] {
            assert!(is_date(ok), "{ok}");
        }
        for bad in ["24", "2024-13", "2024-02-32", "2024/02/01", ""] {
            assert!(!is_date(bad), "{bad}");
        }
        assert!(is_instant("2024-02-29T10:11:12Z"));
        assert!(is_instant("2024-02-29T10:11:12.345+02:00"));
        assert!(!is_instant("2024-02-29T10:11Z"));
        assert!(!is_instant("2024-02-29"));
        assert!(is_date_time("2024-02-29"));
        assert!(is_date_time("2024-02-29T23:59:59-05:00"));
        assert!(!is_date_time("2024-02-29T25:00:00Z"));
    }
}
