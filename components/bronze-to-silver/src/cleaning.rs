//! The cleaning rules, free of the WIT bindings so they test natively.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Number,
    Integer,
    Boolean,
    String,
    Timestamp,
}

pub struct Config {
    event_type: String,
    deleted_type: String,
    rename: BTreeMap<String, String>,
    types: BTreeMap<String, Kind>,
    required: Vec<String>,
    drop: Vec<String>,
    key: Option<String>,
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("config is not JSON: {e}"))?;
        let o = v.as_object().ok_or("config must be a JSON object")?;
        for k in o.keys() {
            if ![
                "eventType",
                "deletedEventType",
                "rename",
                "types",
                "required",
                "drop",
                "key",
            ]
            .contains(&k.as_str())
            {
                return Err(format!("unknown config field `{k}`"));
            }
        }
        let event_type = o
            .get("eventType")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("`eventType` (the output event type) is required")?
            .to_owned();
        let deleted_type = match o.get("deletedEventType").and_then(Value::as_str) {
            Some(t) => t.to_owned(),
            None => match event_type.rsplit_once('.') {
                Some((head, _)) => format!("{head}.deleted"),
                None => format!("{event_type}.deleted"),
            },
        };
        let map = |name: &str| -> Result<BTreeMap<String, String>, String> {
            match o.get(name) {
                None => Ok(BTreeMap::new()),
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| {
                        v.as_str()
                            .map(|s| (k.clone(), s.to_owned()))
                            .ok_or(format!("`{name}` values must be strings"))
                    })
                    .collect(),
                Some(_) => Err(format!("`{name}` must be an object")),
            }
        };
        let list = |name: &str| -> Result<Vec<String>, String> {
            match o.get(name) {
                None => Ok(Vec::new()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .map(str::to_owned)
                            .ok_or(format!("`{name}` must hold strings"))
                    })
                    .collect(),
                Some(_) => Err(format!("`{name}` must be an array")),
            }
        };
        let types = map("types")?
            .into_iter()
            .map(|(k, t)| {
                let kind = match t.as_str() {
                    "number" => Kind::Number,
                    "integer" => Kind::Integer,
                    "boolean" => Kind::Boolean,
                    "string" => Kind::String,
                    "timestamp" => Kind::Timestamp,
                    other => return Err(format!("unknown type `{other}` for `{k}`")),
                };
                Ok((snake_case(&k), kind))
            })
            .collect::<Result<_, String>>()?;
        Ok(Config {
            event_type,
            deleted_type,
            rename: map("rename")?,
            types,
            required: list("required")?.iter().map(|s| snake_case(s)).collect(),
            drop: list("drop")?.iter().map(|s| snake_case(s)).collect(),
            key: o.get("key").and_then(Value::as_str).map(snake_case),
        })
    }
}

pub struct Input<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub time_ms: i64,
    pub subject: Option<&'a str>,
}

#[derive(Debug)]
pub struct Cleaned {
    pub id: String,
    pub event_type: String,
    pub key: Option<String>,
    pub data: Vec<u8>,
}

/// `camelCase`, `PascalCase`, `kebab-case`, `Space Case` → `snake_case`.
pub fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let chars: Vec<char> = s.trim().chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '-' || c == ' ' || c == '.' {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else if c.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if i > 0
                && !out.ends_with('_')
                && (prev_lower || next_lower && chars[i - 1].is_uppercase())
            {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn convert(v: Value, kind: Kind) -> Result<Value, String> {
    match (kind, v) {
        (Kind::Number, Value::Number(n)) => Ok(Value::Number(n)),
        (Kind::Number, Value::String(s)) => s
            .replace(',', "")
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .ok_or(format!("`{s}` is not a number")),
        (Kind::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Value::Number(n)),
        (Kind::Integer, Value::String(s)) => s
            .parse::<i64>()
            .map(|i| json!(i))
            .map_err(|_| format!("`{s}` is not an integer")),
        (Kind::Boolean, Value::Bool(b)) => Ok(Value::Bool(b)),
        (Kind::Boolean, Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" | "t" => Ok(Value::Bool(true)),
            "false" | "no" | "n" | "0" | "f" => Ok(Value::Bool(false)),
            _ => Err(format!("`{s}` is not a boolean")),
        },
        (Kind::Boolean, Value::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
            Ok(Value::Bool(n.as_i64() == Some(1)))
        }
        (Kind::String, Value::String(s)) => Ok(Value::String(s)),
        (Kind::String, other) => Ok(Value::String(other.to_string())),
        (Kind::Timestamp, Value::Number(n)) => {
            // Epoch seconds or milliseconds (Debezium writes ms; many exports write s).
            let n = n.as_i64().ok_or("timestamps must be integers")?;
            let ms = if n.abs() < 100_000_000_000 {
                n * 1000
            } else {
                n
            };
            Ok(Value::String(rfc3339(ms)))
        }
        (Kind::Timestamp, Value::String(s)) => normalize_time(&s)
            .map(Value::String)
            .ok_or(format!("`{s}` is not a timestamp")),
        (_, other) => Err(format!("`{other}` cannot be converted")),
    }
}

/// `2024-12-26 10:00:00`, `2024-12-26T10:00:00+02:00`, `2024-12-26` → RFC 3339 UTC.
fn normalize_time(s: &str) -> Option<String> {
    let s = s.trim();
    let digits = |t: &str| t.parse::<i64>().ok();
    let date = s.get(0..10)?;
    let (y, m, d) = (
        digits(date.get(0..4)?)?,
        digits(date.get(5..7)?)?,
        digits(date.get(8..10)?)?,
    );
    if date.as_bytes()[4] != b'-'
        || date.as_bytes()[7] != b'-'
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
    {
        return None;
    }
    let rest = &s[10..];
    let (mut hh, mut mm, mut ss, mut frac_ms, mut offset_min) = (0, 0, 0, 0, 0i64);
    if !rest.is_empty() {
        let rest = rest.strip_prefix(['T', ' '])?;
        hh = digits(rest.get(0..2)?)?;
        mm = digits(rest.get(3..5)?)?;
        let mut tail = &rest[5..];
        if let Some(t) = tail.strip_prefix(':') {
            ss = digits(t.get(0..2)?)?;
            tail = &t[2..];
        }
        if let Some(t) = tail.strip_prefix('.') {
            let n = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let f = &t[..n];
            frac_ms = digits(&format!("{f:0<3}")[..3])?;
            tail = &t[n..];
        }
        match tail {
            "" | "Z" | "z" => {}
            t if t.len() == 6 && (t.starts_with('+') || t.starts_with('-')) => {
                let sign = if t.starts_with('-') { -1 } else { 1 };
                offset_min = sign * (digits(&t[1..3])? * 60 + digits(&t[4..6])?);
            }
            _ => return None,
        }
    }
    let days = days_from_civil(y, m, d);
    let ms = ((days * 86_400 + hh * 3600 + mm * 60 + ss) - offset_min * 60) * 1000 + frac_ms;
    Some(rfc3339(ms))
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

fn clean_row(
    config: &Config,
    row: Map<String, Value>,
    violations: &mut Vec<(String, String)>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in row {
        let name = snake_case(config.rename.get(&k).unwrap_or(&k));
        if config.drop.contains(&name) {
            continue;
        }
        let v = match v {
            Value::String(s) => {
                let t = s.trim();
                if t.is_empty() {
                    Value::Null
                } else {
                    Value::String(t.to_owned())
                }
            }
            Value::Object(o) => Value::Object(clean_row(config, o, violations)),
            other => other,
        };
        if v.is_null() {
            continue;
        }
        let v = match config.types.get(&name) {
            Some(kind) => match convert(v, *kind) {
                Ok(v) => v,
                Err(message) => {
                    violations.push((format!("/{name}"), message));
                    continue;
                }
            },
            None => v,
        };
        out.insert(name, v);
    }
    out
}

pub fn clean(
    config: &Config,
    input: &Input,
    data: &[u8],
) -> Result<Cleaned, Vec<(String, String)>> {
    let doc: Value = serde_json::from_slice(data)
        .map_err(|e| vec![(String::new(), format!("not JSON: {e}"))])?;
    // An envelope carries the raw row in `payload`.
    let envelope = doc.get("payload").is_some().then(|| doc.clone());
    let raw = envelope.as_ref().map_or(&doc, |e| &e["payload"]);
    let op = raw.get("op").and_then(Value::as_str);
    let (row, deleted) = match op {
        Some("d") => (raw.get("before"), true),
        Some(_) => (raw.get("after"), false),
        None => (Some(raw), false),
    };
    let Some(Value::Object(row)) = row.cloned() else {
        return Err(vec![(
            String::new(),
            "no row: expected an object (or Debezium `after`/`before`)".into(),
        )]);
    };
    let mut violations = Vec::new();
    let row = clean_row(config, row, &mut violations);
    if !deleted {
        for r in &config.required {
            if !row.contains_key(r) {
                violations.push((
                    format!("/{r}"),
                    format!("required field `{r}` is missing or empty"),
                ));
            }
        }
    }
    if !violations.is_empty() {
        return Err(violations);
    }
    let key = config
        .key
        .as_ref()
        .and_then(|k| row.get(k))
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    let from_envelope = |name: &str| envelope.as_ref().and_then(|e| e.get(name)).cloned();
    let event_type = if deleted {
        &config.deleted_type
    } else {
        &config.event_type
    };
    let time_ms = raw
        .get("ts_ms")
        .and_then(Value::as_i64)
        .unwrap_or(input.time_ms);
    let out = json!({
        "event_id": format!("{}.silver", input.id),
        "event_type": event_type,
        "event_version": "1.0.0",
        "timestamp": rfc3339(time_ms),
        "source": {"service": input.source, "connector": raw.pointer("/source/connector").cloned().unwrap_or(Value::Null)},
        "correlation_id": from_envelope("correlation_id").unwrap_or_else(|| json!(input.id)),
        "causation_id": input.id,
        "org_id": from_envelope("org_id").unwrap_or(Value::Null),
        "subject": input.subject,
        "payload": Value::Object(row),
    });
    Ok(Cleaned {
        id: format!("{}.silver", input.id),
        event_type: event_type.clone(),
        key,
        data: serde_json::to_vec(&out).expect("JSON serializes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            r#"{"eventType":"silver.orders.cleaned","rename":{"CustID":"customer_id"},
                "types":{"amount":"number","createdAt":"timestamp","paid":"boolean"},
                "required":["id","customer_id"],"drop":["_fivetran_synced"],"key":"customer_id"}"#,
        )
        .unwrap()
    }

    fn input() -> Input<'static> {
        Input {
            id: "e1",
            source: "pg-connector",
            time_ms: 1_735_207_200_000,
            subject: None,
        }
    }

    #[test]
    fn snake_cases() {
        assert_eq!(snake_case("createdAt"), "created_at");
        assert_eq!(snake_case("OrderID"), "order_id");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("first-name"), "first_name");
        assert_eq!(snake_case("already_snake"), "already_snake");
    }

    #[test]
    fn cleans_a_debezium_change() {
        let data = br#"{"op":"c","ts_ms":1735207200000,"source":{"connector":"postgresql"},
            "after":{"id":7,"CustID":" c-9 ","amount":"1,250.50","createdAt":"2024-12-26 12:00:00+02:00",
                     "paid":"yes","note":"   ","_fivetran_synced":"x"}}"#;
        let out = clean(&config(), &input(), data).unwrap();
        let v: Value = serde_json::from_slice(&out.data).unwrap();
        assert_eq!(out.event_type, "silver.orders.cleaned");
        assert_eq!(out.key.as_deref(), Some("c-9"));
        assert_eq!(out.id, "e1.silver");
        assert_eq!(
            v["payload"],
            json!({"id":7,"customer_id":"c-9","amount":1250.5,"created_at":"2024-12-26T10:00:00.000Z","paid":true})
        );
        assert_eq!(v["causation_id"], "e1");
        assert_eq!(v["source"]["connector"], "postgresql");
        assert_eq!(v["timestamp"], "2024-12-26T10:00:00.000Z");
    }

    #[test]
    fn deletes_and_loose_rows_inside_envelopes() {
        let del = br#"{"op":"d","before":{"id":7,"CustID":"c-9"},"after":null}"#;
        let out = clean(&config(), &input(), del).unwrap();
        assert_eq!(out.event_type, "silver.orders.deleted");
        let env = br#"{"event_type":"bronze.orders","org_id":456,"correlation_id":"corr","payload":{"id":"8","CustID":"c1","amount":3}}"#;
        let v: Value =
            serde_json::from_slice(&clean(&config(), &input(), env).unwrap().data).unwrap();
        assert_eq!(v["org_id"], 456);
        assert_eq!(v["correlation_id"], "corr");
        assert_eq!(v["payload"]["amount"], 3);
    }

    #[test]
    fn rejects_with_every_reason() {
        let bad = br#"{"id":1,"amount":"lots","createdAt":"yesterday"}"#;
        let errs = clean(&config(), &input(), bad).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["/amount", "/created_at", "/customer_id"]);
        assert!(clean(&config(), &input(), b"[1,2]").is_err());
        assert!(Config::parse("{}").is_err());
    }
}
