//! The checks themselves, free of the WIT bindings so they test natively.

use std::collections::HashMap;

use apache_avro::Schema as AvroSchema;

use crate::fast;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    Json,
    Avro,
    Protobuf,
}

pub struct Config {
    pub schema: Option<Value>,
    pub schema_type: SchemaType,
    pub pointer: String,
    pub subject: Option<String>,
    /// Per event type (`bookings.created`, or a prefix ending in `*`), the subject whose newest
    /// schema that type's events must follow (the event catalog).
    pub types: Vec<(String, String)>,
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("config is not JSON: {e}"))?;
        let Value::Object(o) = v else {
            return Err("config must be a JSON object".into());
        };
        for k in o.keys() {
            if !["schema", "schemaType", "pointer", "subject", "types"].contains(&k.as_str()) {
                return Err(format!(
                    "unknown config field `{k}` (known: schema, schemaType, pointer, subject, types)"
                ));
            }
        }
        let schema_type = match o.get("schemaType").map(|t| t.as_str()) {
            None | Some(Some("JSON")) => SchemaType::Json,
            Some(Some("AVRO")) => SchemaType::Avro,
            _ => return Err("`schemaType` must be \"JSON\" or \"AVRO\"".into()),
        };
        let pointer = match o.get("pointer") {
            None => String::new(),
            Some(Value::String(p)) if p.is_empty() || p.starts_with('/') => p.clone(),
            Some(_) => return Err("`pointer` must be a JSON pointer such as \"/payload\"".into()),
        };
        let subject = match o.get("subject") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err("`subject` must be a non-empty string".into()),
        };
        let mut types = Vec::new();
        if let Some(t) = o.get("types") {
            let bad =
                || "`types` must be a list of {\"pattern\": ..., \"subject\": ...}".to_owned();
            for entry in t.as_array().ok_or_else(bad)? {
                let field = |name: &str| {
                    entry
                        .get(name)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .ok_or_else(bad)
                };
                types.push((field("pattern")?, field("subject")?));
            }
        }
        let schema = o.get("schema").cloned();
        if schema.is_some() && subject.is_some() {
            return Err("give one of `schema` and `subject`, not both".into());
        }
        if schema.is_none() && subject.is_none() && types.is_empty() {
            return Err("give `schema`, `subject` or `types`".into());
        }
        Ok(Config {
            schema,
            schema_type,
            pointer,
            subject,
            types,
        })
    }
}

/// A compiled schema (JSON Schema with its fast path when it has one).
enum Compiled {
    Json(jsonschema::Validator, Option<fast::Node>),
    Avro(AvroSchema),
}

impl Compiled {
    fn new(schema_type: SchemaType, doc: &Value) -> Result<Compiled, String> {
        match schema_type {
            SchemaType::Json => jsonschema::validator_for(doc)
                .map(|v| Compiled::Json(v, fast::Node::compile(doc)))
                .map_err(|e| format!("invalid JSON Schema: {e}")),
            SchemaType::Avro => AvroSchema::parse(doc)
                .map(Compiled::Avro)
                .map_err(|e| format!("invalid Avro schema: {e}")),
            SchemaType::Protobuf => {
                Err("Protobuf schemas are not supported by this validator".into())
            }
        }
    }

    fn from_text(schema_type: SchemaType, text: &str) -> Result<Compiled, String> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| format!("schema is not JSON: {e}"))?;
        Compiled::new(schema_type, &doc)
    }

    /// Check a JSON instance.
    fn check_json(&self, instance: &Value) -> Result<(), Failure> {
        match self {
            Compiled::Json(v, _) => {
                // The common case first: `is_valid` stops early and builds no error values.
                if v.is_valid(instance) {
                    return Ok(());
                }
                let violations: Vec<(String, String)> = v
                    .iter_errors(instance)
                    .take(16)
                    .map(|e| (e.instance_path().to_string(), e.to_string()))
                    .collect();
                if violations.is_empty() {
                    Ok(())
                } else {
                    Err(Failure::new("schema-violation", violations))
                }
            }
            Compiled::Avro(schema) => {
                let value = apache_avro::types::Value::try_from(instance.clone())
                    .map_err(|e| Failure::one("schema-violation", "", e.to_string()))?;
                value
                    .resolve(schema)
                    .map(|_| ())
                    .map_err(|e| Failure::one("schema-violation", "", e.to_string()))
            }
        }
    }

    /// Check an Avro binary body (Confluent wire format).
    fn check_binary(&self, body: &[u8]) -> Result<(), Failure> {
        match self {
            Compiled::Avro(schema) => {
                let mut reader = body;
                apache_avro::reader::datum::GenericDatumReader::builder(schema)
                    .build()
                    .and_then(|r| r.read_value(&mut reader))
                    .map_err(|e| {
                        Failure::one(
                            "schema-violation",
                            "",
                            format!("not a valid Avro body: {e}"),
                        )
                    })?;
                if reader.is_empty() {
                    Ok(())
                } else {
                    Err(Failure::one(
                        "schema-violation",
                        "",
                        format!("{} bytes left after the Avro body", reader.len()),
                    ))
                }
            }
            Compiled::Json(_, Some(node)) if fast::valid(node, body, &[]) => Ok(()),
            Compiled::Json(..) => {
                let v: Value = serde_json::from_slice(body)
                    .map_err(|e| Failure::one("invalid-json", "", e.to_string()))?;
                self.check_json(&v)
            }
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct Failure {
    pub reason: &'static str,
    pub violations: Vec<(String, String)>,
}

impl Failure {
    fn new(reason: &'static str, violations: Vec<(String, String)>) -> Failure {
        Failure { reason, violations }
    }
    fn one(reason: &'static str, path: &str, message: impl Into<String>) -> Failure {
        Failure::new(reason, vec![(path.to_owned(), message.into())])
    }
}

/// The part of `data` at `pointer`, parsing only that part (see `json_pick`).
fn at_pointer(data: &[u8], pointer: &str) -> Result<Option<Value>, serde_json::Error> {
    let mut doc = json_pick::pick(data, &[pointer.to_owned()])?;
    Ok(doc.pointer_mut(pointer).map(Value::take))
}

pub struct Checker {
    pointer: String,
    /// `pointer`, split (for the fast path).
    segments: Vec<String>,
    /// Wire-format records must carry an id registered under this subject.
    subject: Option<String>,
    main: Option<Compiled>,
    /// Per event-type pattern, its schema.
    by_type: Vec<(String, Compiled)>,
    /// Schemas fetched by id for wire-format data, compiled once per instance.
    by_id: HashMap<u32, Result<Compiled, String>>,
}

impl Checker {
    /// `registered` is the subject's schema when the config names a subject; `typed` the
    /// schemas of the config's `types`, in their order.
    pub fn new(
        config: Config,
        registered: Option<(SchemaType, String)>,
        typed: Vec<(SchemaType, String)>,
    ) -> Result<Checker, String> {
        let main = match (&config.schema, registered) {
            (_, Some((t, text))) => Some(Compiled::from_text(t, &text)?),
            (Some(Value::String(text)), None) => {
                Some(Compiled::from_text(config.schema_type, text)?)
            }
            (Some(doc), None) => Some(Compiled::new(config.schema_type, doc)?),
            (None, None) if config.subject.is_some() => return Err("no schema".into()),
            (None, None) => None,
        };
        if typed.len() != config.types.len() {
            return Err("a schema is missing for an event type".into());
        }
        let by_type = config
            .types
            .iter()
            .zip(typed)
            .map(|((pattern, subject), (t, text))| {
                Compiled::from_text(t, &text)
                    .map(|c| (pattern.clone(), c))
                    .map_err(|e| format!("subject `{subject}`: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Checker {
            segments: json_pick::segments(&config.pointer),
            pointer: config.pointer,
            subject: config.subject,
            main,
            by_type,
            by_id: HashMap::new(),
        })
    }

    /// The schema for events of `event_type`: its type's, else the main one.
    fn schema_for(&self, event_type: &str) -> Option<&Compiled> {
        self.by_type
            .iter()
            .find(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => event_type.starts_with(prefix),
                None => pattern == event_type,
            })
            .map(|(_, c)| c)
            .or(self.main.as_ref())
    }

    /// The subject wire-format ids must belong to, if any.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Whether an envelope's `payload` member (as the host delimited it: well-formed JSON, the
    /// only `payload`) is proven valid by the fast path, when the check is of `/payload`.
    /// `false` means "not proven": [`Checker::check`] on the whole data decides.
    pub fn valid_payload(&self, payload: &[u8], event_type: &str) -> bool {
        if self.pointer != "/payload" {
            return false;
        }
        match self.schema_for(event_type) {
            Some(Compiled::Json(_, Some(node))) => fast::valid(node, payload, &[]),
            _ => false,
        }
    }

    /// Check one event's data. `envelope`: the data is a gateway envelope (JSON), checked at
    /// the configured pointer; otherwise (raw records) the whole value is the document.
    /// Wire-format data (magic byte 0, schema id) is checked against the schema of its id.
    pub fn check(
        &mut self,
        data: &[u8],
        envelope: bool,
        event_type: &str,
        lookup: &mut dyn FnMut(u32) -> Option<(SchemaType, String)>,
    ) -> Result<(), Failure> {
        if data.len() >= 5 && data[0] == 0 {
            let id = u32::from_be_bytes([data[1], data[2], data[3], data[4]]);
            let compiled = self.by_id.entry(id).or_insert_with(|| {
                let (t, text) = lookup(id).ok_or_else(|| match &self.subject {
                    Some(s) => format!("schema id {id} is not registered under subject `{s}`"),
                    None => format!("schema id {id} is not registered"),
                })?;
                Compiled::from_text(t, &text)
            });
            return match compiled {
                Ok(c) => c.check_binary(&data[5..]),
                Err(e) => Err(Failure::one("unknown-schema", "", e.clone())),
            };
        }
        let Some(schema) = self.schema_for(event_type) else {
            return Ok(());
        };
        // The common case: proven valid while tokenizing, nothing built.
        if let Compiled::Json(_, Some(node)) = schema {
            let segments: &[String] = if envelope { &self.segments } else { &[] };
            if fast::valid(node, data, segments) {
                return Ok(());
            }
        }
        let pointer = if envelope { self.pointer.as_str() } else { "" };
        let part = at_pointer(data, pointer).map_err(|e| {
            Failure::one(
                "invalid-json",
                "",
                format!("the event's data is not JSON: {e}"),
            )
        })?;
        let part = part.as_ref().ok_or_else(|| {
            Failure::one(
                "missing-field",
                pointer,
                format!("the event has nothing at `{}`", pointer),
            )
        })?;
        let schema = self.schema_for(event_type).expect("checked above");
        schema.check_json(part).map_err(|mut f| {
            for (path, _) in &mut f.violations {
                path.insert_str(0, pointer);
            }
            f
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker(config: &str) -> Checker {
        Checker::new(Config::parse(config).unwrap(), None, vec![]).unwrap()
    }

    #[test]
    fn a_delimited_payload_is_checked_alone_only_for_the_payload_pointer() {
        let c = checker(
            r#"{"pointer":"/payload","schema":{"type":"object","required":["amount"],
                "properties":{"amount":{"type":"number","minimum":0}}}}"#,
        );
        assert!(c.valid_payload(br#"{"amount":1}"#, "t"));
        assert!(
            !c.valid_payload(br#"{"amount":-1}"#, "t"),
            "left to the full check"
        );
        let whole = checker(r#"{"schema":{"type":"object"}}"#);
        assert!(
            !whole.valid_payload(b"{}", "t"),
            "a check of the whole data does not use the payload"
        );
    }

    fn none(_: u32) -> Option<(SchemaType, String)> {
        None
    }

    #[test]
    fn json_schema_accepts_and_rejects_with_paths() {
        let mut c = checker(
            r#"{"pointer":"/payload","schema":{"type":"object","required":["amount"],
                "properties":{"amount":{"type":"number","minimum":0}}}}"#,
        );
        assert_eq!(
            c.check(br#"{"payload":{"amount":3}}"#, true, "", &mut none),
            Ok(())
        );
        let f = c
            .check(br#"{"payload":{"amount":-1}}"#, true, "", &mut none)
            .unwrap_err();
        assert_eq!(f.reason, "schema-violation");
        assert_eq!(f.violations[0].0, "/payload/amount");
        let f = c
            .check(br#"{"payload":{}}"#, true, "", &mut none)
            .unwrap_err();
        assert!(f.violations[0].1.contains("amount"), "{f:?}");
        let f = c.check(br#"{"other":1}"#, true, "", &mut none).unwrap_err();
        assert_eq!(f.reason, "missing-field");
        let f = c.check(b"not json", true, "", &mut none).unwrap_err();
        assert_eq!(f.reason, "invalid-json");
    }

    #[test]
    fn avro_schema_checks_json_payloads() {
        let mut c = checker(
            r#"{"schemaType":"AVRO","pointer":"/payload","schema":{"type":"record","name":"Order",
                "fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"}]}}"#,
        );
        assert_eq!(
            c.check(br#"{"payload":{"id":"a","qty":2}}"#, true, "", &mut none),
            Ok(())
        );
        assert!(
            c.check(
                br#"{"payload":{"id":"a","qty":"two"}}"#,
                true,
                "",
                &mut none
            )
            .is_err()
        );
        assert!(
            c.check(br#"{"payload":{"qty":2}}"#, true, "", &mut none)
                .is_err()
        );
    }

    #[test]
    fn wire_format_uses_the_registry_by_id() {
        let mut c = checker(r#"{"schema":{"type":"object"}}"#);
        let avro = r#"{"type":"record","name":"R","fields":[{"name":"n","type":"long"}]}"#;
        let mut lookups = 0;
        let mut lookup = |id: u32| {
            lookups += 1;
            (id == 7).then(|| (SchemaType::Avro, avro.to_owned()))
        };
        // zig-zag varint 21 → 42
        let mut good = vec![0, 0, 0, 0, 7];
        good.push(42);
        assert_eq!(c.check(&good, true, "", &mut lookup), Ok(()));
        assert_eq!(c.check(&good, true, "", &mut lookup), Ok(()));
        let mut bad = vec![0, 0, 0, 0, 7];
        bad.extend_from_slice(&[42, 1, 2]);
        assert_eq!(
            c.check(&bad, true, "", &mut lookup).unwrap_err().reason,
            "schema-violation"
        );
        let unknown = [0, 0, 0, 0, 9, 1];
        assert_eq!(
            c.check(&unknown, true, "", &mut lookup).unwrap_err().reason,
            "unknown-schema"
        );
        assert_eq!(lookups, 2, "compiled once per id");
    }

    #[test]
    fn raw_records_are_checked_whole_and_ids_held_to_the_subject() {
        let mut c =
            checker(r#"{"pointer":"/payload","schema":{"type":"object","required":["n"]}}"#);
        assert_eq!(c.check(br#"{"n":1}"#, false, "", &mut none), Ok(()));
        assert_eq!(
            c.check(br#"{"payload":{"n":1}}"#, false, "", &mut none)
                .unwrap_err()
                .reason,
            "schema-violation"
        );
        let mut held = Checker::new(
            Config::parse(r#"{"subject":"orders-value"}"#).unwrap(),
            Some((SchemaType::Json, r#"{"type":"object"}"#.into())),
            vec![],
        )
        .unwrap();
        assert_eq!(held.subject(), Some("orders-value"));
        let f = held
            .check(&[0, 0, 0, 0, 3, b'{', b'}'], false, "", &mut none)
            .unwrap_err();
        assert_eq!(f.reason, "unknown-schema");
        assert!(
            f.violations[0].1.contains("under subject `orders-value`"),
            "{f:?}"
        );
    }

    #[test]
    fn event_types_pick_their_schema() {
        let config = Config::parse(
            r#"{"pointer":"/payload","types":[{"pattern":"bookings.created","subject":"a"},
                {"pattern":"invoice.*","subject":"b"}]}"#,
        )
        .unwrap();
        let typed = vec![
            (SchemaType::Json, r#"{"required":["booking"]}"#.to_owned()),
            (SchemaType::Json, r#"{"required":["invoice"]}"#.to_owned()),
        ];
        let mut c = Checker::new(config, None, typed).unwrap();
        let booking = br#"{"payload":{"booking":1}}"#;
        let invoice = br#"{"payload":{"invoice":1}}"#;
        assert_eq!(
            c.check(booking, true, "bookings.created", &mut none),
            Ok(())
        );
        assert!(
            c.check(invoice, true, "bookings.created", &mut none)
                .is_err()
        );
        assert_eq!(c.check(invoice, true, "invoice.paid", &mut none), Ok(()));
        assert!(c.check(booking, true, "invoice.paid", &mut none).is_err());
        // Types without a definition pass (there is no main schema).
        assert_eq!(c.check(b"{}", true, "other.thing", &mut none), Ok(()));
        assert!(Config::parse(r#"{"types":[{"pattern":"x"}]}"#).is_err());
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(Config::parse("{}").is_err());
        assert!(Config::parse(r#"{"schema":{},"subject":"x"}"#).is_err());
        assert!(Config::parse(r#"{"schema":{},"nope":1}"#).is_err());
        assert!(
            Checker::new(
                Config::parse(r#"{"schema":{"type":12}}"#).unwrap(),
                None,
                vec![]
            )
            .is_err()
        );
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// `cargo test --release -p sluice-validate -- --ignored --nocapture`: the same check as
    /// the wasm bench, natively, to see what the sandbox costs.
    #[test]
    #[ignore]
    fn native_speed() {
        let mut props = serde_json::Map::new();
        let mut payload = serde_json::Map::new();
        for f in 0..20 {
            let (s, v) = match f % 4 {
                0 => (
                    serde_json::json!({"type":"string","maxLength":64}),
                    serde_json::json!(format!("value-{f}-yyyyyyyyyyyyyyyyyyyyyyyy")),
                ),
                1 => (
                    serde_json::json!({"type":"integer","minimum":0}),
                    serde_json::json!(f * 7),
                ),
                2 => (
                    serde_json::json!({"type":"boolean"}),
                    serde_json::json!(true),
                ),
                _ => (
                    serde_json::json!({"type":"number"}),
                    serde_json::json!(f as f64 * 0.5),
                ),
            };
            props.insert(format!("field_{f:02}"), s);
            payload.insert(format!("field_{f:02}"), v);
        }
        let schema = serde_json::json!({"type":"object","properties":props});
        let config = serde_json::json!({"pointer":"/payload","schema":schema}).to_string();
        let mut c = Checker::new(Config::parse(&config).unwrap(), None, vec![]).unwrap();
        let doc = serde_json::json!({"event_type":"x","org_id":1,"payload":payload,"note":"n".repeat(400)});
        let data = serde_json::to_vec(&doc).unwrap();
        let node = crate::fast::Node::compile(&schema).expect("in the fast subset");
        assert!(
            crate::fast::valid(&node, &data, &["payload".to_owned()]),
            "fast path"
        );
        let n = 200_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            c.check(&data, true, "", &mut |_| None).unwrap();
        }
        let per = t.elapsed().as_secs_f64() / n as f64 * 1e6;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(serde_json::from_slice::<Value>(&data).unwrap());
        }
        let parse = t.elapsed().as_secs_f64() / n as f64 * 1e6;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(serde_json::from_slice::<serde::de::IgnoredAny>(&data).unwrap());
        }
        let scan = t.elapsed().as_secs_f64() / n as f64 * 1e6;
        let segs = ["payload".to_owned()];
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(crate::fast::valid(&node, &data, &segs));
        }
        let fast = t.elapsed().as_secs_f64() / n as f64 * 1e6;
        println!("fast path alone {fast:.2} us");
        println!(
            "{} bytes: check {per:.2} us/event; building the document {parse:.2} us, only \
             tokenizing it {scan:.2} us",
            data.len()
        );
    }
}
