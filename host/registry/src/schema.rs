//! Schema types, parsing with references, the normal form that decides "the same schema",
//! and compatibility levels.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Budget;
use crate::avro::{self, AvroSchema};
use crate::json_schema::{self, JsonSchema};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    #[default]
    Avro,
    Json,
    Protobuf,
}

impl SchemaType {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Json => "JSON",
            SchemaType::Protobuf => "PROTOBUF",
        }
    }
}

impl FromStr for SchemaType {
    type Err = String;
    fn from_str(s: &str) -> Result<SchemaType, String> {
        match s.to_ascii_uppercase().as_str() {
            "AVRO" => Ok(SchemaType::Avro),
            "JSON" => Ok(SchemaType::Json),
            "PROTOBUF" => Ok(SchemaType::Protobuf),
            _ => Err(format!(
                "unknown schema type `{s}` (AVRO, JSON or PROTOBUF)"
            )),
        }
    }
}

/// A schema reference: a name the schema uses for another subject's version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: u32,
}

/// A parsed schema, ready for compatibility checks.
#[derive(Debug, Clone)]
pub enum Parsed {
    Avro(AvroSchema),
    Json(JsonSchema),
}

/// Parse `text` of `schema_type`; `references` are the referenced schemas' (name, text), in
/// dependency order.
pub fn parse(
    schema_type: SchemaType,
    text: &str,
    references: &[(String, String)],
) -> Result<Parsed, String> {
    match schema_type {
        SchemaType::Avro => {
            let texts: Vec<String> = references.iter().map(|(_, t)| t.clone()).collect();
            AvroSchema::parse(text, &texts).map(Parsed::Avro)
        }
        SchemaType::Json => JsonSchema::parse(text, references).map(Parsed::Json),
        SchemaType::Protobuf => Err(
            "PROTOBUF schemas are not supported by this registry yet (AVRO and JSON are)".into(),
        ),
    }
}

/// The text stored and compared: the JSON minified with object keys sorted, so formatting
/// and key order never make a new version. Nothing with meaning is dropped (unlike Avro's
/// Parsing Canonical Form, which drops defaults and aliases that resolution needs).
pub fn normalize(text: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let mut out = String::with_capacity(text.len());
    write_sorted(&v, &mut out);
    Ok(out)
}

fn write_sorted(v: &Value, out: &mut String) {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_sorted(&o[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Compatibility levels, per subject or global.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
            Level::None => "NONE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }
    fn backward(self) -> bool {
        matches!(
            self,
            Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive
        )
    }
    fn forward(self) -> bool {
        matches!(
            self,
            Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive
        )
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Level, String> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "BACKWARD" => Level::Backward,
            "BACKWARD_TRANSITIVE" => Level::BackwardTransitive,
            "FORWARD" => Level::Forward,
            "FORWARD_TRANSITIVE" => Level::ForwardTransitive,
            "FULL" => Level::Full,
            "FULL_TRANSITIVE" => Level::FullTransitive,
            "NONE" => Level::None,
            _ => return Err(format!("invalid compatibility level `{s}`")),
        })
    }
}

/// One way a new schema breaks an older version, as Confluent's verbose messages say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The older version it breaks.
    pub version: u32,
    pub kind: &'static str,
    pub path: String,
    pub message: String,
    /// `BACKWARD` (new cannot read old) or `FORWARD` (old cannot read new).
    pub direction: &'static str,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{errorType:'{}', description:'{} (at {}, {} check against version {})'}}",
            self.kind, self.message, self.path, self.direction, self.version
        )
    }
}

/// A compatibility check that ran out of its [`Budget`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TooComplex(pub String);

/// Check `new` against `older` (oldest first, each with its version) under `level`, within the
/// configured [`Budget`]: a check that would take more is refused ([`TooComplex`]).
pub fn check(
    level: Level,
    new: &Parsed,
    older: &[(u32, Parsed)],
) -> Result<Vec<Problem>, TooComplex> {
    check_within(level, new, older, &Budget::configured())
}

/// [`check`] within the given budget.
pub fn check_within(
    level: Level,
    new: &Parsed,
    older: &[(u32, Parsed)],
    budget: &Budget,
) -> Result<Vec<Problem>, TooComplex> {
    if level == Level::None || older.is_empty() {
        return Ok(vec![]);
    }
    let against: &[(u32, Parsed)] = if level.transitive() {
        older
    } else {
        &older[older.len() - 1..]
    };
    let mut problems = vec![];
    for (version, old) in against.iter().rev() {
        if level.backward() {
            problems.extend(differences(new, old, *version, "BACKWARD", budget));
        }
        if level.forward() {
            problems.extend(differences(old, new, *version, "FORWARD", budget));
        }
        if budget.exhausted() {
            return Err(TooComplex(format!(
                "checking compatibility with version {version} needs more than the registry's \
                 budget of steps (registry.check_steps); simplify the schema (fewer nested \
                 anyOf/oneOf/allOf and $ref cycles)"
            )));
        }
    }
    Ok(problems)
}

fn differences(
    reader: &Parsed,
    writer: &Parsed,
    version: u32,
    direction: &'static str,
    budget: &Budget,
) -> Vec<Problem> {
    let found = match (reader, writer) {
        (Parsed::Avro(r), Parsed::Avro(w)) => avro::can_read(r, w, budget),
        (Parsed::Json(r), Parsed::Json(w)) => json_schema::can_read(r, w, budget),
        _ => {
            return vec![Problem {
                version,
                kind: "SCHEMA_TYPE_CHANGED",
                path: "/".into(),
                message: "the schema type differs from the older version's".into(),
                direction,
            }];
        }
    };
    found
        .into_iter()
        .map(|i| Problem {
            version,
            kind: i.kind,
            path: i.path,
            message: i.message,
            direction,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks within the default budget, which no schema here comes near.
    fn check(level: Level, new: &Parsed, older: &[(u32, Parsed)]) -> Vec<Problem> {
        super::check(level, new, older).expect("within the budget")
    }

    fn avro(fields: &str) -> Parsed {
        parse(
            SchemaType::Avro,
            &format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#),
            &[],
        )
        .unwrap()
    }

    #[test]
    fn normal_form_ignores_formatting_and_key_order() {
        let a = normalize(r#"{ "type": "record", "name": "R", "fields": [] }"#).unwrap();
        let b = normalize(r#"{"name":"R","fields":[],"type":"record"}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, r#"{"fields":[],"name":"R","type":"record"}"#);
        assert_eq!(normalize(r#""string""#).unwrap(), r#""string""#);
    }

    #[test]
    fn every_level_checks_the_right_directions_and_versions() {
        let v1 = avro(r#"{"name":"a","type":"int"}"#);
        // v2 adds a field without a default: old readers are fine, new readers are not.
        let v2 = avro(r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#);
        // v3 = v2 with b defaulted.
        let v3 = avro(r#"{"name":"a","type":"int"},{"name":"b","type":"string","default":""}"#);
        let history = [(1, v1.clone())];
        assert_eq!(check(Level::Backward, &v2, &history).len(), 1);
        assert!(check(Level::Forward, &v2, &history).is_empty());
        assert_eq!(check(Level::Full, &v2, &history).len(), 1);
        assert!(check(Level::None, &v2, &history).is_empty());
        assert!(check(Level::Full, &v3, &history).is_empty());
        // Transitive levels look past the newest version.
        let v_drop_a = avro(r#"{"name":"b","type":"string","default":""}"#);
        let history = [(1, v1), (2, v3)];
        // Against v3 only, dropping `a` is backward compatible (b has a default)...
        assert!(check(Level::Backward, &v_drop_a, &history).is_empty());
        // ... and transitively too, since `a` is ignored by a reader without it.
        assert!(check(Level::BackwardTransitive, &v_drop_a, &history).is_empty());
        // Forward: the v1 reader needs `a`, which the new schema no longer writes.
        let forward = check(Level::ForwardTransitive, &v_drop_a, &history);
        assert!(
            forward
                .iter()
                .any(|p| p.version == 1 && p.direction == "FORWARD")
        );
        assert!(forward.iter().any(|p| p.version == 2));
        assert_eq!(check(Level::Forward, &v_drop_a, &history).len(), 1);
    }

    #[test]
    fn json_schema_levels() {
        let j = |v: &str| parse(SchemaType::Json, v, &[]).unwrap();
        let closed = |props: &str, required: &str| {
            j(&format!(
                r#"{{"type":"object","properties":{{{props}}},"required":[{required}],"additionalProperties":false}}"#
            ))
        };
        let v1 = closed(r#""id":{"type":"string"}"#, r#""id""#);
        // An optional property added to a closed model: backward compatible (old documents
        // never hold it), not forward (the old closed reader refuses it), as Confluent says.
        let v2 = closed(
            r#""id":{"type":"string"},"note":{"type":"string"}"#,
            r#""id""#,
        );
        assert!(check(Level::Backward, &v2, &[(1, v1.clone())]).is_empty());
        let forward = check(Level::Forward, &v2, &[(1, v1.clone())]);
        assert_eq!(
            forward[0].kind,
            "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"
        );
        assert_eq!(check(Level::Full, &v2, &[(1, v1.clone())]).len(), 1);
        // In an open model it is the other way round.
        let open = |props: &str| j(&format!(r#"{{"type":"object","properties":{{{props}}}}}"#));
        let o1 = open(r#""id":{"type":"string"}"#);
        let o2 = open(r#""id":{"type":"string"},"note":{"type":"string"}"#);
        assert!(check(Level::Forward, &o2, &[(1, o1.clone())]).is_empty());
        assert_eq!(
            check(Level::Backward, &o2, &[(1, o1)])[0].kind,
            "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"
        );
        // A new required property: old documents lack it (backward breaks), new ones are
        // still closed-model documents the old reader rejects only for the unknown property.
        let v3 = closed(
            r#""id":{"type":"string"},"qty":{"type":"integer"}"#,
            r#""id","qty""#,
        );
        let backward = check(Level::Backward, &v3, &[(1, v1.clone())]);
        assert_eq!(backward.len(), 1);
        assert_eq!(backward[0].kind, "REQUIRED_PROPERTY_ADDED");
        let forward = check(Level::Forward, &v3, &[(1, v1.clone())]);
        assert_eq!(
            forward[0].kind,
            "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"
        );
        // Transitive: widening `id` to string|number then narrowing it back to number breaks
        // only against the first version.
        let wide = j(
            r#"{"type":"object","properties":{"id":{"type":["string","number"]}},"required":["id"],"additionalProperties":false}"#,
        );
        let num = j(
            r#"{"type":"object","properties":{"id":{"type":"number"}},"required":["id"],"additionalProperties":false}"#,
        );
        let history = [(1, v1), (2, wide)];
        // Forward against the newest (string|number reads number): fine; transitively the
        // first version (string only) cannot read numbers.
        assert!(check(Level::Forward, &num, &history).is_empty());
        let transitive = check(Level::ForwardTransitive, &num, &history);
        assert_eq!(transitive.len(), 1);
        assert_eq!(
            (transitive[0].version, transitive[0].kind),
            (1, "TYPE_NARROWED")
        );
        // Backward: number cannot read the strings either version allowed.
        assert_eq!(check(Level::Backward, &num, &history).len(), 1);
        assert_eq!(check(Level::BackwardTransitive, &num, &history).len(), 2);
    }

    #[test]
    fn levels_parse_case_insensitively() {
        assert_eq!(
            "full_transitive".parse::<Level>().unwrap(),
            Level::FullTransitive
        );
        assert!("SIDEWAYS".parse::<Level>().is_err());
        assert_eq!("json".parse::<SchemaType>().unwrap(), SchemaType::Json);
    }

    #[test]
    fn a_type_change_is_incompatible() {
        let j = parse(SchemaType::Json, r#"{"type":"object"}"#, &[]).unwrap();
        let a = avro("");
        assert_eq!(
            check(Level::Backward, &j, &[(1, a)])[0].kind,
            "SCHEMA_TYPE_CHANGED"
        );
        assert!(parse(SchemaType::Protobuf, "syntax = \"proto3\";", &[]).is_err());
    }

    /// Nested combinators over references: every level doubles what a naive check explores.
    fn nested(depth: usize, leaf: &str) -> Parsed {
        let mut defs = serde_json::Map::new();
        for i in 0..depth {
            let next = format!("#/definitions/d{}", i + 1);
            defs.insert(
                format!("d{i}"),
                serde_json::json!({"anyOf": [
                    {"$ref": next},
                    {"type": "object", "properties": {"a": {"$ref": next}, "b": {"$ref": next}}},
                    {"type": "array", "items": {"$ref": next}}
                ]}),
            );
        }
        defs.insert(format!("d{depth}"), serde_json::json!({ "type": leaf }));
        let doc = serde_json::json!({"$ref": "#/definitions/d0", "definitions": defs});
        parse(SchemaType::Json, &doc.to_string(), &[]).unwrap()
    }

    #[test]
    fn a_check_past_its_budget_is_refused_not_run() {
        let (reader, writer) = (nested(12, "integer"), nested(12, "string"));
        assert!(reader_text_len(&reader) < 4_096, "a small schema");
        // A budget far too small for it: refused with the registry's own error.
        let small = Budget::new(1_000);
        let refused = check_within(Level::Backward, &reader, &[(1, writer.clone())], &small);
        let err = crate::RegistryError::from(refused.unwrap_err());
        assert_eq!((err.code(), err.status()), (42207, 422), "{err}");
        assert!(small.exhausted());
        // The default budget: the check finishes with an answer either way (remembered
        // trials make this one cheap: its subschemas repeat).
        match super::check(Level::Full, &reader, &[(1, writer)]) {
            Ok(problems) => assert!(!problems.is_empty(), "integer and string differ"),
            Err(e) => assert_eq!(crate::RegistryError::from(e).code(), 42207),
        }
    }

    fn reader_text_len(p: &Parsed) -> usize {
        match p {
            Parsed::Json(j) => j.doc.to_string().len(),
            Parsed::Avro(_) => 0,
        }
    }
}
