//! The enrichment rules, free of the WIT bindings so they test natively.

use std::ops::Range;

use serde_json::{Map, Value};

const ALL_FIELDS: [&str; 5] = [
    "ingest_time",
    "producer_key_id",
    "tenant",
    "trace_id",
    "correlation_id",
];

pub struct Lookup {
    table: String,
    key: String,
    into: String,
    /// A part of the table's value to take (`/payload` of a stored envelope); all of it if
    /// absent.
    pick: Option<String>,
    required: bool,
}

pub struct Config {
    fields: Vec<&'static str>,
    lookups: Vec<Lookup>,
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        let v: Value = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(text).map_err(|e| format!("config is not JSON: {e}"))?
        };
        let Value::Object(o) = v else {
            return Err("config must be a JSON object".into());
        };
        for k in o.keys() {
            if k != "fields" && k != "lookups" {
                return Err(format!(
                    "unknown config field `{k}` (known: fields, lookups)"
                ));
            }
        }
        let fields = match o.get("fields") {
            None => ALL_FIELDS.to_vec(),
            Some(Value::Array(names)) => names
                .iter()
                .map(|n| {
                    let n = n.as_str().unwrap_or_default();
                    ALL_FIELDS
                        .iter()
                        .find(|f| **f == n)
                        .copied()
                        .ok_or_else(|| {
                            format!(
                                "unknown field `{n}` in `fields` (known: {})",
                                ALL_FIELDS.join(", ")
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("`fields` must be an array of names".into()),
        };
        let mut lookups = Vec::new();
        if let Some(list) = o.get("lookups") {
            let Value::Array(list) = list else {
                return Err("`lookups` must be an array".into());
            };
            for (i, l) in list.iter().enumerate() {
                let s = |name: &str| -> Result<String, String> {
                    l.get(name)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| format!("lookups[{i}].{name} must be a string"))
                };
                let key = s("key")?;
                let into = s("into")?;
                if !key.starts_with('/') || !into.starts_with('/') {
                    return Err(format!(
                        "lookups[{i}]: `key` and `into` are JSON pointers such as \"/payload/id\""
                    ));
                }
                lookups.push(Lookup {
                    table: s("table")?,
                    key,
                    into,
                    pick: match l.get("pick") {
                        None => None,
                        Some(Value::String(p)) if p.starts_with('/') => Some(p.clone()),
                        Some(_) => {
                            return Err(format!(
                                "lookups[{i}].pick must be a JSON pointer such as \"/payload\""
                            ));
                        }
                    },
                    required: l.get("required").and_then(Value::as_bool).unwrap_or(false),
                });
            }
        }
        Ok(Config { fields, lookups })
    }
}

/// What the host told us about the batch.
pub struct Facts<'a> {
    pub ingest_time_ms: i64,
    pub key_id: Option<&'a str>,
    pub tenant: &'a str,
}

/// One configured field for a batch.
enum Field {
    /// The same for every event of the batch: its value, and its JSON member text
    /// (`"tenant":"acme"`), rendered once.
    Fixed { value: String, member: Vec<u8> },
    /// A new W3C trace id per event.
    TraceId,
    /// The event's id.
    CorrelationId,
}

/// The configured fields as one batch fills them in (a field with no value, such as the
/// producer's key id of a batch without one, is left out).
pub struct Fields {
    list: Vec<(&'static str, Field)>,
    /// The names in `list`, in order (bit `i` of [`Missing::fields`] is the `i`-th), kept
    /// for looking them up in every event.
    names: Vec<&'static str>,
}

impl Fields {
    pub fn new(config: &Config, facts: &Facts) -> Fields {
        let fixed = |name: &str, value: String| {
            let mut member = Vec::with_capacity(name.len() + value.len() + 5);
            serde_json::to_writer(&mut member, name).expect("writing to a Vec");
            member.push(b':');
            serde_json::to_writer(&mut member, &value).expect("writing to a Vec");
            Field::Fixed { value, member }
        };
        let list = config
            .fields
            .iter()
            .filter_map(|&f| {
                let field = match f {
                    "ingest_time" => fixed(f, rfc3339(facts.ingest_time_ms)),
                    "producer_key_id" => fixed(f, facts.key_id?.to_owned()),
                    "tenant" => fixed(f, facts.tenant.to_owned()),
                    "trace_id" => Field::TraceId,
                    "correlation_id" => Field::CorrelationId,
                    _ => return None,
                };
                Some((f, field))
            })
            .collect::<Vec<_>>();
        let names = list.iter().map(|(name, _)| *name).collect();
        Fields { list, names }
    }

    fn value(field: &Field, event_id: &str) -> String {
        match field {
            Field::Fixed { value, .. } => value.clone(),
            Field::TraceId => uuid::Uuid::new_v4().simple().to_string(),
            Field::CorrelationId => event_id.to_owned(),
        }
    }

    /// Every field with its value for one event.
    fn values(&self, event_id: &str) -> Vec<(&'static str, String)> {
        self.list
            .iter()
            .map(|(name, f)| (*name, Fields::value(f, event_id)))
            .collect()
    }

    /// The fields `missing` names as members to go before the closing brace of an object.
    pub fn text(&self, missing: Missing, event_id: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (name, field)) in self.list.iter().enumerate() {
            if missing.fields & (1 << i) == 0 {
                continue;
            }
            if !out.is_empty() || !missing.empty {
                out.push(b',');
            }
            match field {
                Field::Fixed { member, .. } => out.extend_from_slice(member),
                other => {
                    serde_json::to_writer(&mut out, name).expect("writing to a Vec");
                    out.push(b':');
                    serde_json::to_writer(&mut out, &Fields::value(other, event_id))
                        .expect("writing to a Vec");
                }
            }
        }
        out
    }

    /// Whether [`Fields::text`] for `missing` is the same for every event of the batch (only
    /// fixed fields are missing).
    pub fn shared(&self, missing: Missing) -> bool {
        self.list
            .iter()
            .enumerate()
            .all(|(i, (_, f))| missing.fields & (1 << i) == 0 || matches!(f, Field::Fixed { .. }))
    }
}

/// Which configured fields a JSON object lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing {
    /// Bit `i`: the `i`-th field of [`Fields`] is missing.
    pub fields: u64,
    /// The object has no members at all (so the first added one takes no comma).
    pub empty: bool,
}

#[derive(Debug)]
pub enum Outcome {
    /// The new JSON data.
    Json(Vec<u8>),
    /// The `missing` fields to insert into the data before byte `at` (its closing brace), as
    /// [`Fields::text`] writes them; nothing when none is missing.
    Insert { at: usize, missing: Missing },
    /// Data is not a JSON object: these headers instead.
    Headers(Vec<(String, String)>),
}

/// Enrich one event; `Err((path, message))` when a required lookup found nothing. `payload`,
/// if given, is a range of `data` known to hold well-formed JSON (the host's
/// `packed-event.payload`), which finding the top-level fields then passes over unread.
pub fn enrich(
    config: &Config,
    fields: &Fields,
    event_id: &str,
    data: &[u8],
    lookup: &mut dyn FnMut(&str, &str) -> Option<Vec<u8>>,
    payload: Option<Range<usize>>,
) -> Result<Outcome, (String, String)> {
    if config.lookups.is_empty() {
        // Only top-level fields are added: find which exist without building the document,
        // and write the missing ones before its closing brace.
        let names = &fields.names;
        return Ok(match json_pick::top_level_members(data, payload, names) {
            Ok(Some(members)) => Outcome::Insert {
                at: data
                    .iter()
                    .rposition(|b| *b == b'}')
                    .expect("a JSON object ends with a brace"),
                missing: Missing {
                    fields: !members.found & ((1u64 << names.len()) - 1),
                    empty: members.empty,
                },
            },
            _ => Outcome::Headers(
                fields
                    .values(event_id)
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            ),
        });
    }
    let facts_list = fields.values(event_id);
    let doc: Option<Map<String, Value>> = match serde_json::from_slice(data) {
        Ok(Value::Object(o)) => Some(o),
        _ => None,
    };
    let Some(mut doc) = doc else {
        return Ok(Outcome::Headers(
            facts_list
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        ));
    };
    for (name, value) in facts_list {
        doc.entry(name.to_owned()).or_insert(Value::String(value));
    }
    let mut doc = Value::Object(doc);
    for l in &config.lookups {
        let key = match doc.pointer(&l.key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let found = key.as_deref().and_then(|k| lookup(&l.table, k));
        match found {
            Some(bytes) => {
                let mut value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                });
                if let Some(p) = &l.pick {
                    value = value.pointer_mut(p).map(Value::take).unwrap_or(Value::Null);
                }
                set_pointer(&mut doc, &l.into, value);
            }
            None if l.required => {
                let message = match key {
                    Some(k) => format!("table `{}` has no entry for key `{k}`", l.table),
                    None => format!("no lookup key at `{}`", l.key),
                };
                return Err((l.key.clone(), message));
            }
            None => {}
        }
    }
    Ok(Outcome::Json(
        serde_json::to_vec(&doc).expect("a JSON value serializes"),
    ))
}

/// `data` with `text` inserted before byte `at`.
pub fn splice(data: &[u8], at: usize, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + text.len());
    out.extend_from_slice(&data[..at]);
    out.extend_from_slice(text);
    out.extend_from_slice(&data[at..]);
    out
}

/// Set `value` at a JSON pointer, creating objects on the way.
pub fn set_pointer(doc: &mut Value, pointer: &str, value: Value) {
    let mut at = doc;
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, path)) = parts.split_last() else {
        *at = value;
        return;
    };
    for p in path {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        at = at
            .as_object_mut()
            .expect("object")
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !at.is_object() {
        *at = Value::Object(Map::new());
    }
    at.as_object_mut()
        .expect("object")
        .insert(last.clone(), value);
}

/// Milliseconds since the epoch as RFC 3339 UTC (`2024-12-26T10:00:00.000Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts<'static> {
        Facts {
            ingest_time_ms: 1_735_207_200_123,
            key_id: Some("k1"),
            tenant: "acme",
        }
    }

    #[test]
    fn time_formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_735_207_200_123), "2024-12-26T10:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    /// The new data for JSON in, whichever way the outcome says it.
    fn json_out(fields: &Fields, data: &[u8], outcome: Outcome) -> Vec<u8> {
        match outcome {
            Outcome::Json(out) => out,
            Outcome::Insert { at, missing } => splice(data, at, &fields.text(missing, "e-1")),
            Outcome::Headers(h) => panic!("json in, json out: {h:?}"),
        }
    }

    #[test]
    fn adds_missing_fields_and_keeps_given_ones() {
        let config = Config::parse("").unwrap();
        let fields = Fields::new(&config, &facts());
        let data = br#"{"event_type":"x","trace_id":"given","payload":{}}"#;
        let out = json_out(
            &fields,
            data,
            enrich(&config, &fields, "e-1", data, &mut |_, _| None, None).unwrap(),
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["trace_id"], "given");
        assert_eq!(v["tenant"], "acme");
        assert_eq!(v["producer_key_id"], "k1");
        assert_eq!(v["correlation_id"], "e-1");
        assert_eq!(v["ingest_time"], "2024-12-26T10:00:00.123Z");
    }

    #[test]
    fn lookups_fill_in_and_required_ones_reject() {
        let config = Config::parse(
            r#"{"fields":[],"lookups":[{"table":"customers","key":"/payload/customer","into":"/payload/customer_info","pick":"/tier","required":true}]}"#,
        )
        .unwrap();
        let mut table = |t: &str, k: &str| {
            (t == "customers" && k == "42").then(|| br#"{"tier":"gold"}"#.to_vec())
        };
        let Outcome::Json(out) = enrich(
            &config,
            &Fields::new(&config, &facts()),
            "e-1",
            br#"{"payload":{"customer":42}}"#,
            &mut table,
            None,
        )
        .unwrap() else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["payload"]["customer_info"], "gold");
        assert!(v.get("tenant").is_none(), "fields: [] adds nothing");
        let err = enrich(
            &config,
            &Fields::new(&config, &facts()),
            "e-1",
            br#"{"payload":{"customer":7}}"#,
            &mut table,
            None,
        )
        .unwrap_err();
        assert_eq!(err.0, "/payload/customer");
    }

    #[test]
    fn fields_are_added_to_the_text_as_is() {
        let config = Config::parse(r#"{"fields":["tenant","correlation_id"]}"#).unwrap();
        let fields = Fields::new(&config, &facts());
        let data = b"{\"b\": 2.50, \"a\": {\"x\":1} }\n";
        let outcome = enrich(&config, &fields, "e-1", data, &mut |_, _| None, None).unwrap();
        let Outcome::Insert { at, .. } = &outcome else {
            panic!("no lookups: an insertion, not a rewrite")
        };
        assert_eq!(*at, data.len() - 2, "before the closing brace");
        assert_eq!(
            String::from_utf8(json_out(&fields, data, outcome)).unwrap(),
            "{\"b\": 2.50, \"a\": {\"x\":1} ,\"tenant\":\"acme\",\"correlation_id\":\"e-1\"}\n"
        );
        let out = json_out(
            &fields,
            b"{}",
            enrich(&config, &fields, "e-1", b"{}", &mut |_, _| None, None).unwrap(),
        );
        assert_eq!(out, br#"{"tenant":"acme","correlation_id":"e-1"}"#);
        let full = br#"{"tenant":"t","correlation_id":"c"}"#;
        let Outcome::Insert { missing, .. } =
            enrich(&config, &fields, "e-1", full, &mut |_, _| None, None).unwrap()
        else {
            panic!()
        };
        assert_eq!(missing.fields, 0, "nothing missing, nothing inserted");
        assert!(fields.text(missing, "e-1").is_empty());
        assert!(fields.shared(missing));
    }

    #[test]
    fn only_fixed_fields_share_their_text_across_a_batch() {
        let config = Config::parse(r#"{"fields":["tenant","correlation_id"]}"#).unwrap();
        let fields = Fields::new(&config, &facts());
        let tenant = Missing {
            fields: 0b01,
            empty: false,
        };
        let both = Missing {
            fields: 0b11,
            empty: false,
        };
        assert!(fields.shared(tenant));
        assert!(
            !fields.shared(both),
            "the correlation id is the event's own"
        );
        assert_eq!(
            fields.text(both, "e-7"),
            br#","tenant":"acme","correlation_id":"e-7""#
        );
        let empty = Missing {
            empty: true,
            ..tenant
        };
        assert_eq!(fields.text(empty, "e-7"), br#""tenant":"acme""#);
    }

    #[test]
    fn a_known_payload_gives_the_same_insertion() {
        let config = Config::parse(r#"{"fields":["tenant"]}"#).unwrap();
        let fields = Fields::new(&config, &facts());
        let data = br#"{"event_type":"x","payload":{"tenant":"inner","big":"xxxx"}}"#;
        let at = data
            .windows(11)
            .position(|w| w == br#"{"tenant":""#)
            .unwrap();
        let run = |payload| {
            let Outcome::Insert { at, missing } =
                enrich(&config, &fields, "e-1", data, &mut |_, _| None, payload).unwrap()
            else {
                panic!("a JSON object gets an insertion")
            };
            (at, fields.text(missing, "e-1"))
        };
        let known = run(Some(at..data.len() - 1));
        assert_eq!(known, run(None));
        assert_eq!(
            known.1, br#","tenant":"acme""#,
            "the payload's own `tenant` is not top-level"
        );
    }

    #[test]
    fn non_json_data_gets_headers() {
        let config = Config::parse(r#"{"fields":["tenant"]}"#).unwrap();
        let Outcome::Headers(h) = enrich(
            &config,
            &Fields::new(&config, &facts()),
            "e-1",
            b"\x00binary",
            &mut |_, _| None,
            None,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(h, vec![("tenant".to_owned(), "acme".to_owned())]);
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(Config::parse(r#"{"fields":["nope"]}"#).is_err());
        assert!(Config::parse(r#"{"lookups":[{"table":"t","key":"x","into":"/y"}]}"#).is_err());
        assert!(Config::parse(r#"{"other":1}"#).is_err());
    }
}
