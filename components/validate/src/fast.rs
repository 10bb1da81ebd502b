//! The accept fast path: a JSON Schema subset checked while the document is tokenized, with no
//! `serde_json::Value` built (building it is ~90 % of a full check's time).
//!
//! It only ever says "valid" when `jsonschema` would: anything it is unsure of (a keyword it
//! does not know, a float where only integers are allowed, a duplicate key, a parse error,
//! an invalid value) makes it give up, and the full check runs and explains. Schemas using
//! keywords outside the subset get no fast path at all.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

const NULL: u8 = 1;
const BOOLEAN: u8 = 2;
const INTEGER: u8 = 4;
const NUMBER: u8 = 8;
const STRING: u8 = 16;
const ARRAY: u8 = 32;
const OBJECT: u8 = 64;
const ANY: u8 = 127;
/// Integers up to here convert to f64 exactly.
const EXACT: u64 = 1 << 53;

/// Keywords that change nothing about validity.
const ANNOTATIONS: [&str; 10] = [
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "readOnly",
    "writeOnly",
    "deprecated",
];

#[derive(Debug, Default)]
pub struct Node {
    types: u8,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    items: Option<Box<Node>>,
    /// Sorted by name.
    properties: Vec<(String, Node)>,
    /// Bit i: `properties[i]` is required.
    required: u64,
    /// `None`: open; `Some(None)`: closed; `Some(Some(node))`: extra properties follow it.
    additional: Option<Option<Box<Node>>>,
}

impl Node {
    /// Compile `schema`, or `None` when it uses anything outside the subset.
    pub fn compile(schema: &Value) -> Option<Node> {
        let o: &Map<String, Value> = match schema {
            Value::Bool(true) => return Some(Node::any()),
            Value::Object(o) => o,
            _ => return None,
        };
        let mut n = Node::any();
        for (k, v) in o {
            match k.as_str() {
                "type" => {
                    n.types = match v {
                        Value::String(t) => type_bit(t)?,
                        Value::Array(ts) => ts
                            .iter()
                            .map(|t| t.as_str().and_then(type_bit))
                            .try_fold(0, |acc, b| b.map(|b| acc | b))?,
                        _ => return None,
                    };
                    // `number` includes the integers.
                    if n.types & NUMBER != 0 {
                        n.types |= INTEGER;
                    }
                }
                "minimum" => n.minimum = Some(v.as_f64()?),
                "maximum" => n.maximum = Some(v.as_f64()?),
                "exclusiveMinimum" => n.exclusive_minimum = Some(v.as_f64()?),
                "exclusiveMaximum" => n.exclusive_maximum = Some(v.as_f64()?),
                "minLength" => n.min_length = Some(v.as_u64()?),
                "maxLength" => n.max_length = Some(v.as_u64()?),
                "minItems" => n.min_items = Some(v.as_u64()?),
                "maxItems" => n.max_items = Some(v.as_u64()?),
                "items" if v.is_object() || v.is_boolean() => {
                    n.items = Some(Box::new(match v {
                        Value::Bool(false) => Node::nothing(),
                        other => Node::compile(other)?,
                    }));
                }
                "properties" => {
                    let mut props = v
                        .as_object()?
                        .iter()
                        .map(|(name, s)| Some((name.clone(), Node::compile(s)?)))
                        .collect::<Option<Vec<_>>>()?;
                    props.sort_by(|a, b| a.0.cmp(&b.0));
                    n.properties = props;
                }
                "required" | "additionalProperties" => {}
                k if ANNOTATIONS.contains(&k) => {}
                _ => return None,
            }
        }
        if let Some(extra) = o.get("additionalProperties") {
            n.additional = Some(match extra {
                Value::Bool(false) => None,
                Value::Bool(true) => Some(Box::new(Node::any())),
                other => Some(Box::new(Node::compile(other)?)),
            });
        }
        if let Some(required) = o.get("required") {
            for name in required.as_array()? {
                let name = name.as_str()?;
                // A required name must be a declared property (for the bitmask), and at most 64.
                let i = n
                    .properties
                    .binary_search_by(|(p, _)| p.as_str().cmp(name))
                    .ok()?;
                if i >= 64 {
                    return None;
                }
                n.required |= 1 << i;
            }
        }
        if n.properties.len() > 64 {
            return None;
        }
        Some(n)
    }

    fn any() -> Node {
        Node {
            types: ANY,
            ..Node::default()
        }
    }

    fn nothing() -> Node {
        Node {
            types: 0,
            ..Node::default()
        }
    }

    fn number_ok(&self, bit: u8, x: f64) -> bool {
        self.types & bit != 0
            && self.minimum.is_none_or(|m| x >= m)
            && self.maximum.is_none_or(|m| x <= m)
            && self.exclusive_minimum.is_none_or(|m| x > m)
            && self.exclusive_maximum.is_none_or(|m| x < m)
    }
}

fn type_bit(t: &str) -> Option<u8> {
    Some(match t {
        "null" => NULL,
        "boolean" => BOOLEAN,
        "integer" => INTEGER,
        "number" => NUMBER,
        "string" => STRING,
        "array" => ARRAY,
        "object" => OBJECT,
        _ => return None,
    })
}

/// Is the part of `data` at `pointer` (JSON pointer segments) valid under `node`? `false`
/// means "not proven": the full check decides.
pub fn valid(node: &Node, data: &[u8], pointer: &[String]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(data);
    let found = At { pointer, node }.deserialize(&mut de);
    matches!(found, Ok(true)) && de.end().is_ok()
}

/// An object key, borrowed from the input when it has no escapes (serde's `Cow<str>` always
/// allocates).
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

fn give_up<E: de::Error>() -> E {
    E::custom("not proven valid")
}

/// Walks down the pointer; `Ok(false)` when the pointer's target is missing.
struct At<'a> {
    pointer: &'a [String],
    node: &'a Node,
}

impl<'de> DeserializeSeed<'de> for At<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        match self.pointer.split_first() {
            None => Check(self.node).deserialize(d).map(|()| true),
            Some(_) => d.deserialize_map(self),
        }
    }
}

impl<'de> Visitor<'de> for At<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let (first, rest) = self.pointer.split_first().expect("non-empty");
        let mut found = false;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.as_str() == first.as_str() {
                if found {
                    return Err(give_up());
                }
                found = map.next_value_seed(At {
                    pointer: rest,
                    node: self.node,
                })?;
                if !found {
                    return Err(give_up());
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Checks one value against a node, failing (to the full check) on anything doubtful.
struct Check<'a>(&'a Node);

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.0.types == ANY && self.0.properties.is_empty() && self.0.additional.is_none() {
            // Nothing to check below here (bounds only apply to their own types, and an `ANY`
            // node with bounds still needs them checked).
            let n = self.0;
            let unbounded = n.minimum.is_none()
                && n.maximum.is_none()
                && n.exclusive_minimum.is_none()
                && n.exclusive_maximum.is_none()
                && n.min_length.is_none()
                && n.max_length.is_none()
                && n.min_items.is_none()
                && n.max_items.is_none()
                && n.items.is_none();
            if unbounded {
                return d.deserialize_ignored_any(IgnoredAny).map(|_| ());
            }
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if self.0.types & NULL != 0 {
            Ok(())
        } else {
            Err(give_up())
        }
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        if self.0.types & BOOLEAN != 0 {
            Ok(())
        } else {
            Err(give_up())
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        // Past 2^53 a bound compared as f64 could round the wrong way: not decided here.
        if v <= EXACT && self.0.number_ok(INTEGER, v as f64) {
            Ok(())
        } else {
            Err(give_up())
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        if v.unsigned_abs() <= EXACT && self.0.number_ok(INTEGER, v as f64) {
            Ok(())
        } else {
            Err(give_up())
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // A float where only integers are allowed: `1.0` counts as an integer for jsonschema;
        // leave that to it.
        if self.0.number_ok(NUMBER, v) {
            Ok(())
        } else {
            Err(give_up())
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let n = self.0;
        if n.types & STRING == 0 {
            return Err(give_up());
        }
        if n.min_length.is_some() || n.max_length.is_some() {
            let len = v.chars().count() as u64;
            if n.min_length.is_some_and(|m| len < m) || n.max_length.is_some_and(|m| len > m) {
                return Err(give_up());
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let n = self.0;
        if n.types & ARRAY == 0 {
            return Err(give_up());
        }
        let any = Node::any();
        let item = n.items.as_deref().unwrap_or(&any);
        let mut count = 0u64;
        while seq.next_element_seed(Check(item))?.is_some() {
            count += 1;
        }
        if n.min_items.is_some_and(|m| count < m) || n.max_items.is_some_and(|m| count > m) {
            return Err(give_up());
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let n = self.0;
        if n.types & OBJECT == 0 {
            return Err(give_up());
        }
        let mut seen = 0u64;
        let any = Node::any();
        // Documents usually list properties in one order: try the one after the last match
        // before searching.
        let mut next = 0usize;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let key = key.as_str();
            let found = match n.properties.get(next) {
                Some((p, _)) if p == key => Ok(next),
                _ => n.properties.binary_search_by(|(p, _)| p.as_str().cmp(key)),
            };
            match found {
                Ok(i) => {
                    next = i + 1;
                    let bit = 1u64 << i;
                    if seen & bit != 0 {
                        return Err(give_up()); // duplicate key
                    }
                    seen |= bit;
                    map.next_value_seed(Check(&n.properties[i].1))?;
                }
                Err(_) => match &n.additional {
                    None => map.next_value_seed(Check(&any))?,
                    Some(None) => return Err(give_up()),
                    Some(Some(extra)) => map.next_value_seed(Check(extra))?,
                },
            }
        }
        if seen & n.required != n.required {
            return Err(give_up());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agree(schema: Value, docs: &[Value]) {
        let node = Node::compile(&schema).expect("in the subset");
        let full = jsonschema::validator_for(&schema).unwrap();
        for d in docs {
            let bytes = d.to_string();
            let fast = valid(&node, bytes.as_bytes(), &[]);
            let slow = full.is_valid(d);
            // Never more permissive than the full check; and on these documents, as precise.
            assert_eq!(fast, slow, "{schema} on {d}");
        }
    }

    #[test]
    fn agrees_with_jsonschema() {
        let schema = json!({"type": "object", "required": ["id", "n"], "additionalProperties": false,
            "properties": {"id": {"type": "string", "minLength": 2, "maxLength": 4},
                           "n": {"type": "integer", "minimum": 0, "exclusiveMaximum": 10},
                           "x": {"type": "number"}, "ok": {"type": "boolean"},
                           "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                           "maybe": {"type": ["string", "null"]}}});
        agree(
            schema,
            &[
                json!({"id": "ab", "n": 3}),
                json!({"id": "ab", "n": 3, "x": 1.5, "ok": true, "tags": ["a"], "maybe": null}),
                json!({"id": "a", "n": 3}),
                json!({"id": "abcde", "n": 3}),
                json!({"id": "ab", "n": 10}),
                json!({"id": "ab", "n": -1}),
                json!({"id": "ab"}),
                json!({"id": "ab", "n": 3, "extra": 1}),
                json!({"id": "ab", "n": 3, "tags": ["a", "b", "c"]}),
                json!({"id": "ab", "n": 3, "tags": [1]}),
                json!({"id": "ab", "n": 3, "x": "no"}),
                json!({"id": "ab", "n": 3, "maybe": 5}),
                json!([1]),
                json!({"id": "日本", "n": 1}),
            ],
        );
    }

    #[test]
    fn open_models_and_nested_objects() {
        agree(
            json!({"type": "object", "properties": {"a": {"type": "object",
                "properties": {"b": {"type": "integer"}}, "additionalProperties": {"type": "string"}}}}),
            &[
                json!({"a": {"b": 1, "c": "x"}, "other": [1, {"z": null}]}),
                json!({"a": {"b": 1, "c": 2}}),
                json!({"a": {"b": "1"}}),
                json!({}),
            ],
        );
    }

    #[test]
    fn doubtful_cases_fall_back() {
        let node = Node::compile(&json!({"type": "integer"})).unwrap();
        // 1.0 is an integer to jsonschema; the fast path does not decide it.
        assert!(!valid(&node, b"1.0", &[]));
        let obj = Node::compile(&json!({"properties": {"a": {"type": "string"}}})).unwrap();
        assert!(!valid(&obj, br#"{"a":"x","a":"y"}"#, &[]), "duplicate keys");
        assert!(!valid(&obj, b"{", &[]));
        for outside in [
            json!({"pattern": "^a"}),
            json!({"enum": [1]}),
            json!({"anyOf": [{}]}),
            json!({"$ref": "#/x"}),
            json!({"format": "email"}),
            json!({"required": ["undeclared"]}),
        ] {
            assert!(Node::compile(&outside).is_none(), "{outside}");
        }
    }

    #[test]
    fn follows_the_pointer() {
        let node = Node::compile(&json!({"type": "object", "required": ["a"],
            "properties": {"a": {"type": "integer"}}}))
        .unwrap();
        let p = vec!["payload".to_owned()];
        assert!(valid(
            &node,
            br#"{"event_type":"x","payload":{"a":1},"z":[1,2]}"#,
            &p
        ));
        assert!(!valid(&node, br#"{"payload":{"a":"1"}}"#, &p));
        assert!(!valid(&node, br#"{"other":{"a":1}}"#, &p), "missing target");
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use serde_json::json;

    #[test]
    #[ignore]
    fn pieces() {
        let mut props = serde_json::Map::new();
        let mut any_props = serde_json::Map::new();
        let mut payload = serde_json::Map::new();
        for f in 0..20 {
            props.insert(
                format!("field_{f:02}"),
                json!({"type": ["string", "integer", "number", "boolean"]}),
            );
            any_props.insert(format!("field_{f:02}"), json!({}));
            payload.insert(
                format!("field_{f:02}"),
                json!(format!("value-{f}-yyyyyyyyyyyyyyyyyyyyyyyy")),
            );
        }
        let data = serde_json::to_vec(&json!({"payload": payload})).unwrap();
        let p = ["payload".to_owned()];
        for (name, schema) in [
            ("typed", json!({"properties": props})),
            ("any", json!({"properties": any_props})),
            ("none", json!({})),
        ] {
            let node = Node::compile(&schema).unwrap();
            assert!(valid(&node, &data, &p));
            let t = std::time::Instant::now();
            for _ in 0..200_000 {
                std::hint::black_box(valid(&node, &data, &p));
            }
            println!(
                "{name}: {:.2} us",
                t.elapsed().as_secs_f64() / 200_000.0 * 1e6
            );
        }
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    std::hint::black_box(k.as_str());
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(())
            }
        }
        let inner = serde_json::to_vec(&payload).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..200_000 {
            let mut de = serde_json::Deserializer::from_slice(&inner);
            de::Deserializer::deserialize_map(&mut de, Keys).unwrap();
        }
        println!(
            "keys only: {:.2} us",
            t.elapsed().as_secs_f64() / 200_000.0 * 1e6
        );
    }
}
