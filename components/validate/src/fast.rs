//! The accept fast path: a JSON Schema subset checked by one strict pass over the document's
//! bytes, with no `serde_json::Value` built (building it is ~90 % of a full check's time) and
//! strings scanned eight bytes at a time.
//!
//! It only ever says "valid" when `jsonschema` would: anything it is unsure of (a keyword it
//! does not know, a float where only integers are allowed, a duplicate key, a parse error,
//! an invalid value) makes it give up, and the full check runs and explains. Schemas using
//! keywords outside the subset get no fast path at all.

use json_pick::scan::{MAX_DEPTH, Scanner, finite, fits};
use serde_json::{Map, Value};

const NULL: u8 = 1;
const BOOLEAN: u8 = 2;
const INTEGER: u8 = 4;
const NUMBER: u8 = 8;
const STRING: u8 = 16;
const ARRAY: u8 = 32;
const OBJECT: u8 = 64;
const ANY: u8 = 127;

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
    /// Bit i: `properties[i]`'s name needs no escaping, so it can be matched in place.
    plain_names: u64,
    /// Nothing to check here or below: any well-formed value will do.
    free: bool,
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
        for (i, (name, _)) in n.properties.iter().enumerate() {
            if name.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\') {
                n.plain_names |= 1 << i;
            }
        }
        n.free = n.unconstrained();
        Some(n)
    }

    fn any() -> Node {
        Node {
            types: ANY,
            free: true,
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
    let mut s = Scanner::new(data);
    let found = s.at(pointer, node, 0);
    s.ws();
    found.is_some() && s.i == data.len()
}

/// The schema checks, on the shared strict scanner.
trait Check {
    fn at(&mut self, pointer: &[String], node: &Node, depth: u32) -> Option<()>;
    fn value(&mut self, n: &Node, depth: u32) -> Option<()>;
    fn object(&mut self, n: &Node, depth: u32) -> Option<()>;
}

impl Check for Scanner<'_> {
    /// Follow `pointer` down to its target and check it; `None` when the target is missing or
    /// anything on the way is doubtful.
    fn at(&mut self, pointer: &[String], node: &Node, depth: u32) -> Option<()> {
        let Some((first, rest)) = pointer.split_first() else {
            return self.value(node, depth);
        };
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        let mut found = false;
        if self.peek()? == b'}' {
            self.i += 1;
            return None;
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            if self.key_is(&key, first)? {
                if found {
                    return None; // a duplicate: serde_json keeps the last one
                }
                found = true;
                self.at(rest, node, depth + 1)?;
            } else {
                self.skip(depth + 1)?;
            }
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    break;
                }
                _ => return None,
            }
        }
        found.then_some(())
    }

    /// Check one value against a node.
    fn value(&mut self, n: &Node, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        if n.free {
            return self.skip(depth);
        }
        match self.peek()? {
            b'"' => {
                if n.types & STRING == 0 {
                    return None;
                }
                let s = self.string()?;
                if n.min_length.is_some() || n.max_length.is_some() {
                    let raw = &self.b[s.start..s.end];
                    let bytes_as_chars = if s.non_ascii {
                        raw.iter().filter(|&&c| (c & 0xC0) != 0x80).count()
                    } else {
                        raw.len()
                    };
                    // Each escape is one character.
                    let chars = bytes_as_chars - s.escape_bytes + s.escapes;
                    let len = chars as u64;
                    if n.min_length.is_some_and(|m| len < m)
                        || n.max_length.is_some_and(|m| len > m)
                    {
                        return None;
                    }
                }
                Some(())
            }
            b'{' => self.object(n, depth),
            b'[' => {
                if n.types & ARRAY == 0 {
                    return None;
                }
                self.i += 1;
                let any = Node::any();
                let item = n.items.as_deref().unwrap_or(&any);
                let mut count = 0u64;
                if self.peek()? == b']' {
                    self.i += 1;
                } else {
                    loop {
                        self.value(item, depth + 1)?;
                        count += 1;
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                if n.min_items.is_some_and(|m| count < m) || n.max_items.is_some_and(|m| count > m)
                {
                    return None;
                }
                Some(())
            }
            b't' => {
                self.literal(b"true")?;
                (n.types & BOOLEAN != 0).then_some(())
            }
            b'f' => {
                self.literal(b"false")?;
                (n.types & BOOLEAN != 0).then_some(())
            }
            b'n' => {
                self.literal(b"null")?;
                (n.types & NULL != 0).then_some(())
            }
            _ => {
                let (float, text) = self.number()?;
                if !float && let Some(v) = small_integer(text) {
                    // Exact as f64 (at most 15 digits).
                    return n.number_ok(INTEGER, v).then_some(());
                }
                if !float {
                    // Long integers: serde_json may make them floats; not decided here.
                    return None;
                }
                // A float where only integers are allowed: `1.0` counts as an integer for
                // jsonschema; leave that to it.
                if n.types & NUMBER == 0 {
                    return None;
                }
                if !n.bounded() {
                    return fits(text).then_some(());
                }
                let x = match short_decimal(text) {
                    Some(x) => x,
                    None => finite(text)?,
                };
                // serde_json's default float parsing may be one ulp off a correctly rounded
                // one: values within a hair of a bound are left to the full check.
                if n.near_a_bound(x) {
                    return None;
                }
                n.number_ok(NUMBER, x).then_some(())
            }
        }
    }

    fn object(&mut self, n: &Node, depth: u32) -> Option<()> {
        if n.types & OBJECT == 0 {
            return None;
        }
        self.i += 1;
        let mut seen = 0u64;
        if self.peek()? == b'}' {
            self.i += 1;
        } else {
            // Documents usually list properties in one order: try the one after the last
            // match before searching.
            let mut next = 0usize;
            loop {
                let found = match n.properties.get(next) {
                    // The property after the last match, matched in place: no scan, no search.
                    Some((p, _))
                        if n.plain_names & (1 << next) != 0 && self.key_here(p.as_bytes()) =>
                    {
                        Ok(next)
                    }
                    _ => {
                        let key = self.string()?;
                        if key.escapes == 0 {
                            let raw = &self.b[key.start..key.end];
                            n.properties
                                .binary_search_by(|(p, _)| p.as_bytes().cmp(raw))
                        } else {
                            let decoded: String =
                                serde_json::from_slice(&self.b[key.start - 1..key.end + 1]).ok()?;
                            n.properties
                                .binary_search_by(|(p, _)| p.as_str().cmp(decoded.as_str()))
                        }
                    }
                };
                self.eat(b':')?;
                match found {
                    Ok(i) => {
                        next = i + 1;
                        let bit = 1u64 << i;
                        if seen & bit != 0 {
                            return None; // duplicate key
                        }
                        seen |= bit;
                        self.value(&n.properties[i].1, depth + 1)?;
                    }
                    Err(_) => match &n.additional {
                        None => self.skip(depth + 1)?,
                        Some(None) => return None,
                        Some(Some(extra)) => self.value(extra, depth + 1)?,
                    },
                }
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        (seen & n.required == n.required).then_some(())
    }
}

/// An integer of at most 15 digits (so exact as f64), as f64.
fn small_integer(text: &[u8]) -> Option<f64> {
    let (neg, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.len() > 15 {
        return None;
    }
    let v = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')) as f64;
    Some(if neg { -v } else { v })
}

/// A plain decimal (`-12.375`: no exponent, at most 15 digits) as f64, correctly rounded without
/// the general parser: its digits as an integer are exact in f64 and so is a power of ten up to
/// 10^15, so one division rounds correctly (Clinger's fast path).
fn short_decimal(text: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (neg, rest) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut mantissa = 0u64;
    let mut digits = 0usize;
    let mut fraction: Option<usize> = None;
    for &c in rest {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                digits += 1;
                if let Some(f) = fraction.as_mut() {
                    *f += 1;
                }
            }
            b'.' if fraction.is_none() => fraction = Some(0),
            _ => return None,
        }
        if digits > 15 {
            return None;
        }
    }
    let x = mantissa as f64 / POW10[fraction.unwrap_or(0)];
    Some(if neg { -x } else { x })
}

impl Node {
    /// Nothing to check below here: any well-formed value will do.
    fn unconstrained(&self) -> bool {
        self.types == ANY
            && self.properties.is_empty()
            && self.additional.is_none()
            && !self.bounded()
            && self.min_length.is_none()
            && self.max_length.is_none()
            && self.min_items.is_none()
            && self.max_items.is_none()
            && self.items.is_none()
    }

    fn bounded(&self) -> bool {
        self.minimum.is_some()
            || self.maximum.is_some()
            || self.exclusive_minimum.is_some()
            || self.exclusive_maximum.is_some()
    }

    fn near_a_bound(&self, x: f64) -> bool {
        let near = |m: f64| (x - m).abs() <= m.abs().max(f64::MIN_POSITIVE) * 1e-12;
        [
            self.minimum,
            self.maximum,
            self.exclusive_minimum,
            self.exclusive_maximum,
        ]
        .into_iter()
        .flatten()
        .any(near)
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

/// Random documents and random damage to them: the scanner must never call valid what
/// serde_json + jsonschema would not, and on undamaged documents it should decide like them.
#[cfg(test)]
mod random {
    use super::*;
    use serde_json::json;

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
            &xs[self.below(xs.len() as u64) as usize]
        }
    }

    fn schema() -> Value {
        json!({"type": "object", "required": ["s", "i", "b"], "additionalProperties": false,
        "properties": {
            "s": {"type": "string", "minLength": 2, "maxLength": 6},
            "i": {"type": "integer", "minimum": -5, "maximum": 100},
            "n": {"type": "number", "exclusiveMinimum": 0.5, "maximum": 1e6},
            "b": {"type": "boolean"},
            "z": {"type": ["null", "string"]},
            "any": {},
            "list": {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
            "obj": {"type": "object", "properties": {"k": {"type": "string"}},
                    "additionalProperties": {"type": "number"}}
        }})
    }

    fn string(rng: &mut Rng) -> String {
        let parts = [
            "a",
            "bc",
            "é",
            "日本",
            "\"",
            "\\",
            "\n",
            "\u{1F600}",
            "x",
            "/",
            "\t",
        ];
        (0..rng.below(8)).map(|_| *rng.pick(&parts)).collect()
    }

    fn value(rng: &mut Rng, depth: u32) -> Value {
        match rng.below(if depth > 2 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => json!(rng.below(2) == 0),
            2 => json!(rng.below(200) as i64 - 50),
            3 => json!(*rng.pick(&[0.5, 0.25, 1.5, -3.75, 1e6, 1e7, 2.0, 0.50000001])),
            4 | 5 => json!(string(rng)),
            6 => Value::Array((0..rng.below(5)).map(|_| value(rng, depth + 1)).collect()),
            _ => {
                let keys = ["k", "q", "s", "i", "n"];
                let mut m = Map::new();
                for _ in 0..rng.below(4) {
                    m.insert((*rng.pick(&keys)).to_owned(), value(rng, depth + 1));
                }
                Value::Object(m)
            }
        }
    }

    fn document(rng: &mut Rng) -> Value {
        let mut m = Map::new();
        for key in ["s", "i", "n", "b", "z", "any", "list", "obj", "extra"] {
            // Mostly right-typed fields, sometimes missing or anything at all.
            let v = match (key, rng.below(10)) {
                ("extra", 0) => value(rng, 1),
                ("extra", _) => continue,
                (_, 0) => continue,
                (_, 1) => value(rng, 1),
                ("s", _) => json!(*rng.pick(&["ab", "été", "日本語", "a\"b", "abcdef", "abc\n"])),
                ("i", _) => json!(rng.below(110) as i64 - 8),
                ("n", _) => json!(*rng.pick(&[0.75, 3.5, 999_999.5, 0.5, 1e-3, 42.0, 1e5])),
                ("b", _) => json!(rng.below(2) == 0),
                ("z", _) => json!(*rng.pick(&[None, Some("x"), Some("")])),
                ("list", _) => Value::Array((0..rng.below(4)).map(|i| json!(i * 7)).collect()),
                ("obj", _) => json!({"k": string(rng), "w": 1.5, "v": -2}),
                _ => value(rng, 1),
            };
            m.insert(key.to_owned(), v);
        }
        Value::Object(m)
    }

    fn damage(rng: &mut Rng, bytes: &mut Vec<u8>) {
        let junk = b"\"\\{}[],:-+.eE0 19aZ\x01\xff\xc3";
        for _ in 0..=rng.below(3) {
            if bytes.is_empty() {
                return;
            }
            let at = rng.below(bytes.len() as u64) as usize;
            match rng.below(4) {
                0 => bytes[at] = *rng.pick(junk),
                1 => bytes.insert(at, *rng.pick(junk)),
                2 => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
    }

    #[test]
    fn never_more_permissive() {
        let schema = schema();
        let node = Node::compile(&schema).expect("in the subset");
        let full = jsonschema::validator_for(&schema).unwrap();
        let truth =
            |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).is_ok_and(|v| full.is_valid(&v));
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut valid_docs, mut agreed) = (0, 0);
        for round in 0..20_000 {
            let doc = document(&mut rng);
            let mut bytes = if round % 2 == 0 {
                serde_json::to_vec(&doc).unwrap()
            } else {
                serde_json::to_vec_pretty(&doc).unwrap()
            };
            let fast = valid(&node, &bytes, &[]);
            let slow = truth(&bytes);
            assert!(
                !fast || slow,
                "said valid: {}",
                String::from_utf8_lossy(&bytes)
            );
            if slow && !fast && std::env::var_os("SHOW").is_some() {
                eprintln!("undecided: {}", String::from_utf8_lossy(&bytes));
            }
            valid_docs += usize::from(slow);
            agreed += usize::from(slow && fast);
            damage(&mut rng, &mut bytes);
            let fast = valid(&node, &bytes, &[]);
            assert!(
                !fast || truth(&bytes),
                "said valid after damage: {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        // The fast path decides nearly every valid document itself.
        assert!(valid_docs > 1000, "{valid_docs} valid documents");
        assert!(agreed * 100 >= valid_docs * 95, "{agreed} of {valid_docs}");
    }

    #[test]
    fn short_decimals_parse_as_the_standard_parser_does() {
        let mut rng = Rng(7);
        for _ in 0..100_000 {
            let int = rng.below(1_000_000_000);
            let frac = rng.below(1_000_000);
            let width = 1 + rng.below(6) as usize;
            let text = format!(
                "{}{int}.{frac:0width$}",
                if rng.below(2) == 0 { "-" } else { "" }
            );
            let expected: f64 = text.parse().unwrap();
            match short_decimal(text.as_bytes()) {
                Some(x) => assert_eq!(x.to_bits(), expected.to_bits(), "{text}"),
                None => assert!(text.trim_start_matches('-').len() > 16, "{text}"),
            }
        }
        assert_eq!(
            short_decimal(b"1e5"),
            None,
            "exponents take the general parser"
        );
        assert_eq!(short_decimal(b"12"), Some(12.0));
    }

    #[test]
    fn strings_numbers_and_nesting() {
        let node = Node::compile(&json!({"type": "object", "properties": {
            "s": {"type": "string", "maxLength": 2},
            "n": {"type": "number", "maximum": 10}}}))
        .unwrap();
        let full = |b: &[u8]| valid(&node, b, &[]);
        assert!(
            full(br#"{"s":"\u00e9\n"}"#),
            "escapes count as one character each"
        );
        assert!(!full(br#"{"s":"abc"}"#));
        assert!(full("{\"s\":\"日本\"}".as_bytes()), "characters, not bytes");
        assert!(
            !full(br#"{"s":"\ud800"}"#),
            "surrogates are left to the full check"
        );
        assert!(
            !full(b"{\"s\":\"a\x01\"}"),
            "control characters are not JSON"
        );
        assert!(!full(b"{\"s\":\"\xff\"}"), "nor is invalid UTF-8");
        assert!(
            !full(br#"{"n":1e400}"#),
            "serde_json refuses what overflows"
        );
        assert!(!full(br#"{"x":1e400}"#), "even where nothing is checked");
        assert!(full(br#"{"n":9.5,"x":[1,{"y":[]}]}"#));
        assert!(!full(br#"{"n":01}"#));
        assert!(!full(br#"{"n":1.}"#));
        assert!(
            !full(br#"{"n":10.000000000000001}"#),
            "too near the bound to decide"
        );
        assert!(!full(br#"{"n":1} x"#), "trailing characters");
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(!full(deep.as_bytes()), "deeper than serde_json goes");
        let long = format!("{{\"s\":\"{}\",\"x\":\"{}\"}}", "ab", "z".repeat(1000));
        assert!(full(long.as_bytes()));
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
    }
}

#[cfg(test)]
mod bench_shape {
    use super::*;
    use serde_json::json;

    #[test]
    fn bench_events_take_the_fast_path() {
        let mut props = Map::new();
        let mut required = Vec::new();
        for f in 0..20 {
            let name = format!("field_{f:02}");
            let s = match f % 4 {
                0 => json!({"type": "string", "minLength": 1, "maxLength": 64}),
                1 => json!({"type": "integer", "minimum": 0}),
                2 => json!({"type": "boolean"}),
                _ => json!({"type": "number", "maximum": 1e12}),
            };
            props.insert(name.clone(), s);
            required.push(name);
        }
        let schema = json!({"type": "object", "properties": props, "required": required, "additionalProperties": false});
        let node = Node::compile(&schema).unwrap();
        for i in 0..2000usize {
            let mut payload = Map::new();
            for f in 0..20 {
                let v = match f % 4 {
                    0 => json!(format!("value-{i}-{f}-{}", "y".repeat(24))),
                    1 => json!(i as i64 * 7 + f),
                    2 => json!(f % 3 == 0),
                    _ => json!((i as f64) * 0.5 + f as f64),
                };
                payload.insert(format!("field_{f:02}"), v);
            }
            let doc = json!({"event_type": "bench.event", "org_id": i % 1000, "payload": payload, "note": "n".repeat(400)});
            let bytes = serde_json::to_vec(&doc).unwrap();
            assert!(
                valid(&node, &bytes, &["payload".to_owned()]),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}
