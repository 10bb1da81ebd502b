//! JSON Schema compatibility: does every document the writer's schema accepts also pass the
//! reader's? The rules are written down in `docs/SCHEMAS.md`; in short, they are those of
//! Confluent's and Karapace's checkers, content-model aware:
//!
//! - a reader may widen (more types, looser bounds, more enum values, fewer required
//!   properties) but not narrow;
//! - a property the reader adds is fine only if the writer's content model is closed
//!   (`additionalProperties: false`) or the writer's `additionalProperties` schema fits it;
//!   one the reader removes is fine only if the reader's content model stays open to it;
//! - `anyOf`/`oneOf` on the writer: each branch must fit; on the reader: the writer must fit
//!   some branch; `allOf` on the reader: every branch;
//! - local `$ref`s (and references to other registered schemas) are followed, recursion is
//!   cut where a pair repeats.
//!
//! The check is sound and conservative: when it cannot prove a change safe (`not`, changed
//! `pattern`s, `patternProperties`, `dependencies`), it says incompatible.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use serde_json::{Map, Value};

pub use crate::Incompatibility;

use crate::Budget;

/// A JSON Schema with the documents its references name.
#[derive(Debug, Clone)]
pub struct JsonSchema {
    pub doc: Value,
    /// Referenced schemas by the name `$ref` uses for them.
    pub references: HashMap<String, Value>,
}

impl JsonSchema {
    /// Parse and compile (so only schemas the validator accepts are registered).
    pub fn parse(text: &str, references: &[(String, String)]) -> Result<JsonSchema, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        if !doc.is_object() && !doc.is_boolean() {
            return Err("a JSON Schema must be an object or a boolean".into());
        }
        let mut refs = HashMap::new();
        for (name, text) in references {
            let v: Value = serde_json::from_str(text)
                .map_err(|e| format!("reference `{name}` is not JSON: {e}"))?;
            refs.insert(name.clone(), v);
        }
        jsonschema::options()
            .with_retriever(Referenced(refs.clone()))
            .build(&doc)
            .map_err(|e| format!("invalid JSON Schema: {e}"))?;
        Ok(JsonSchema {
            doc,
            references: refs,
        })
    }
}

/// Serves `$ref`s to referenced schemas by their names (as given, or as the last part of the
/// URI a relative name resolves to); nothing is fetched from the network.
struct Referenced(HashMap<String, Value>);

impl jsonschema::Retrieve for Referenced {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let uri = uri.as_str();
        self.0
            .iter()
            .find(|(name, _)| uri == name.as_str() || uri.ends_with(&format!("/{name}")))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("`{uri}` is not among the schema's references").into())
    }
}

/// Why documents valid under `writer` may fail `reader`; empty when none can.
/// What `reader` cannot accept of what `writer` allows; spends from `budget` (when it runs out
/// the answer is incomplete and the caller must refuse the check). Trial comparisons (does
/// this branch fit?) are remembered, so repeated subschemas under combinators cost once.
pub fn can_read(reader: &JsonSchema, writer: &JsonSchema, budget: &Budget) -> Vec<Incompatibility> {
    let memo = RefCell::new(HashMap::new());
    let mut c = Check {
        reader,
        writer,
        budget,
        memo: &memo,
        assumed: HashSet::new(),
        found: vec![],
    };
    c.schema(&reader.doc, &writer.doc, "#".into());
    c.found
}

/// A hash of a schema's content (maps hashed in key order, as serde_json keeps them sorted).
fn content_hash(v: &Value) -> u64 {
    fn walk(v: &Value, h: &mut std::hash::DefaultHasher) {
        match v {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => (1u8, b).hash(h),
            Value::Number(n) => (2u8, n.to_string()).hash(h),
            Value::String(s) => (3u8, s).hash(h),
            Value::Array(a) => {
                (4u8, a.len()).hash(h);
                a.iter().for_each(|x| walk(x, h));
            }
            Value::Object(o) => {
                (5u8, o.len()).hash(h);
                for (k, x) in o {
                    k.hash(h);
                    walk(x, h);
                }
            }
        }
    }
    let mut h = std::hash::DefaultHasher::new();
    walk(v, &mut h);
    h.finish()
}

const COMBINATORS: [&str; 4] = ["anyOf", "oneOf", "allOf", "not"];
/// Keywords that only annotate.
const ANNOTATIONS: [&str; 12] = [
    "$schema",
    "$id",
    "id",
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "definitions",
    "$defs",
    "readOnly",
    "writeOnly",
];

fn accepts_everything(s: &Value) -> bool {
    match s {
        Value::Bool(b) => *b,
        Value::Object(o) => o.keys().all(|k| ANNOTATIONS.contains(&k.as_str())),
        _ => false,
    }
}

fn types_of(o: &Map<String, Value>) -> Option<HashSet<&str>> {
    match o.get("type")? {
        Value::String(t) => Some(HashSet::from([t.as_str()])),
        Value::Array(a) => Some(a.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn allows(types: &Option<HashSet<&str>>, t: &str) -> bool {
    match types {
        None => true,
        Some(set) => set.contains(t) || (t == "integer" && set.contains("number")),
    }
}

fn num(o: &Map<String, Value>, k: &str) -> Option<f64> {
    o.get(k).and_then(Value::as_f64)
}

fn without(o: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    o.iter()
        .filter(|(k, _)| !keys.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

struct Check<'a> {
    reader: &'a JsonSchema,
    writer: &'a JsonSchema,
    budget: &'a Budget,
    /// Trial outcomes by (reader, writer, references assumed) content.
    memo: &'a RefCell<HashMap<(u64, u64, u64), bool>>,
    assumed: HashSet<(String, String)>,
    found: Vec<Incompatibility>,
}

impl Check<'_> {
    fn report(&mut self, kind: &'static str, path: &str, message: impl Into<String>) {
        self.found.push(Incompatibility {
            kind,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn fits(&self, reader: &Value, writer: &Value) -> bool {
        if !self.budget.spend(1) {
            return false;
        }
        let mut assumed: Vec<&(String, String)> = self.assumed.iter().collect();
        assumed.sort_unstable();
        let key = (content_hash(reader), content_hash(writer), {
            let mut h = std::hash::DefaultHasher::new();
            assumed.hash(&mut h);
            h.finish()
        });
        if let Some(known) = self.memo.borrow().get(&key) {
            return *known;
        }
        let mut trial = Check {
            reader: self.reader,
            writer: self.writer,
            budget: self.budget,
            memo: self.memo,
            assumed: self.assumed.clone(),
            found: vec![],
        };
        trial.schema(reader, writer, String::new());
        let fits = trial.found.is_empty();
        // An answer cut short by the budget is not an answer.
        if !self.budget.exhausted() {
            self.memo.borrow_mut().insert(key, fits);
        }
        fits
    }

    /// Follow a `$ref` within `side`'s documents.
    fn resolve<'v>(side: &'v JsonSchema, reference: &str) -> Option<&'v Value> {
        let (doc, fragment) = match reference.split_once('#') {
            Some(("", f)) => (&side.doc, f),
            Some((name, f)) => (side.references.get(name)?, f),
            None => (side.references.get(reference)?, ""),
        };
        if fragment.is_empty() {
            Some(doc)
        } else {
            doc.pointer(fragment)
        }
    }

    fn schema(&mut self, reader: &Value, writer: &Value, path: String) {
        let size = |v: &Value| v.as_object().map_or(0, |o| o.len() as u64);
        if !self.budget.spend(1 + size(reader) + size(writer)) {
            return;
        }
        // References first, with recursion cut on repeated pairs.
        let r_ref = reader.get("$ref").and_then(Value::as_str);
        let w_ref = writer.get("$ref").and_then(Value::as_str);
        if r_ref.is_some() || w_ref.is_some() {
            let key = (
                r_ref.unwrap_or_default().to_owned(),
                w_ref.unwrap_or_default().to_owned(),
            );
            if !self.assumed.insert(key.clone()) {
                return;
            }
            let r = match r_ref {
                Some(x) => Self::resolve(self.reader, x),
                None => Some(reader),
            };
            let w = match w_ref {
                Some(x) => Self::resolve(self.writer, x),
                None => Some(writer),
            };
            match (r, w) {
                (Some(r), Some(w)) => {
                    let (r, w) = (r.clone(), w.clone());
                    self.schema(&r, &w, path);
                }
                _ => {
                    if r_ref != w_ref {
                        self.report("REFERENCE_CHANGED", &path, "an unresolvable `$ref` changed");
                    }
                }
            }
            self.assumed.remove(&key);
            return;
        }
        if accepts_everything(reader) || writer == &Value::Bool(false) {
            return;
        }
        if reader == &Value::Bool(false) {
            self.report("SCHEMA_NARROWED", &path, "the reader accepts nothing");
            return;
        }
        let empty = Map::new();
        let w = writer.as_object().unwrap_or(&empty);
        let r = reader.as_object().expect("not a boolean");

        // The writer's combinators: each branch must fit (or the rest of the writer alone).
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = w.get(key) {
                let base = Value::Object(without(w, &[key]));
                if !branches.iter().all(|b| self.fits(reader, b)) && !self.fits(reader, &base) {
                    self.report(
                        "COMBINED_TYPE_SUBSCHEMAS_CHANGED",
                        &path,
                        format!("a branch of the writer's `{key}` does not fit the reader"),
                    );
                }
                return;
            }
        }
        if let Some(Value::Array(parts)) = w.get("allOf") {
            let base = Value::Object(without(w, &["allOf"]));
            if parts.iter().any(|p| self.fits(reader, p)) || self.fits(reader, &base) {
                return;
            }
        }
        let w_plain = Value::Object(without(w, &COMBINATORS));
        // The reader's combinators.
        if let Some(Value::Array(parts)) = r.get("allOf") {
            for (i, p) in parts.iter().enumerate() {
                self.schema(p, &w_plain, format!("{path}/allOf/{i}"));
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = r.get(key)
                && !branches.iter().any(|b| self.fits(b, &w_plain))
            {
                self.report(
                    "COMBINED_TYPE_SUBSCHEMAS_CHANGED",
                    &format!("{path}/{key}"),
                    format!("no branch of the reader's `{key}` accepts the writer's documents"),
                );
            }
        }
        if let Some(not) = r.get("not")
            && w.get("not") != Some(not)
        {
            self.report(
                "NOT_CHANGED",
                &format!("{path}/not"),
                "the reader's `not` changed",
            );
        }
        let r = &without(r, &COMBINATORS);
        let w = &without(w, &COMBINATORS);
        self.keywords(r, w, &path);
    }

    fn keywords(&mut self, r: &Map<String, Value>, w: &Map<String, Value>, path: &str) {
        let (rt, wt) = (types_of(r), types_of(w));
        let writer_types: Vec<&str> = match &wt {
            Some(set) => set.iter().copied().collect(),
            None => vec![
                "null", "boolean", "object", "array", "number", "string", "integer",
            ],
        };
        let narrowed: Vec<&str> = writer_types
            .iter()
            .copied()
            .filter(|t| !allows(&rt, t))
            .collect();
        if !narrowed.is_empty() {
            let mut n = narrowed.clone();
            n.sort_unstable();
            self.report(
                "TYPE_NARROWED",
                &format!("{path}/type"),
                format!("the reader no longer accepts {}", n.join(", ")),
            );
        }
        let can = |t: &str| allows(&wt, t);

        // enum / const
        let w_values: Option<Vec<&Value>> = w.get("const").map(|c| vec![c]).or_else(|| {
            w.get("enum")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
        });
        for key in ["enum", "const"] {
            let Some(allowed) = r.get(key) else { continue };
            let allowed: Vec<&Value> = match allowed {
                Value::Array(a) if key == "enum" => a.iter().collect(),
                v => vec![v],
            };
            match &w_values {
                Some(values) if values.iter().all(|v| allowed.contains(v)) => {}
                _ => self.report(
                    if key == "enum" {
                        "ENUM_ARRAY_NARROWED"
                    } else {
                        "CONST_CHANGED"
                    },
                    &format!("{path}/{key}"),
                    format!("the reader's `{key}` does not allow every value the writer's does"),
                ),
            }
        }
        if can("object") {
            self.object(r, w, path);
        }
        if can("array") {
            self.array(r, w, path);
        }
        if can("string") {
            self.bound(r, w, path, "maxLength", true, "MAX_LENGTH");
            self.bound(r, w, path, "minLength", false, "MIN_LENGTH");
            for key in ["pattern", "format", "contentEncoding", "contentMediaType"] {
                if let Some(v) = r.get(key)
                    && w.get(key) != Some(v)
                {
                    self.report(
                        "STRING_CONSTRAINT_CHANGED",
                        &format!("{path}/{key}"),
                        format!("the reader's `{key}` is new or changed"),
                    );
                }
            }
        }
        if can("number") || can("integer") {
            self.bound(r, w, path, "maximum", true, "MAXIMUM");
            self.bound(r, w, path, "minimum", false, "MINIMUM");
            self.bound(r, w, path, "exclusiveMaximum", true, "EXCLUSIVE_MAXIMUM");
            self.bound(r, w, path, "exclusiveMinimum", false, "EXCLUSIVE_MINIMUM");
            if let Some(rm) = num(r, "multipleOf") {
                let fine = num(w, "multipleOf").is_some_and(|wm| {
                    let q = wm / rm;
                    (q - q.round()).abs() < 1e-9
                });
                if !fine {
                    self.report(
                        "MULTIPLE_OF_CHANGED",
                        &format!("{path}/multipleOf"),
                        "the writer's values are not all multiples of the reader's `multipleOf`",
                    );
                }
            }
        }
    }

    /// A bound the reader must keep at least as loose as the writer's: `upper` bounds may only
    /// grow, lower ones only shrink; a bound the writer lacks the reader must lack too.
    fn bound(
        &mut self,
        r: &Map<String, Value>,
        w: &Map<String, Value>,
        path: &str,
        key: &str,
        upper: bool,
        what: &'static str,
    ) {
        let Some(rv) = r.get(key) else { return };
        let fine = match (rv.as_f64(), w.get(key)) {
            (Some(rb), Some(wv)) => match wv.as_f64() {
                Some(wb) => {
                    if upper {
                        rb >= wb
                    } else {
                        rb <= wb
                    }
                }
                None => rv == wv,
            },
            // draft-04 boolean `exclusiveMaximum` and the like: only unchanged is safe.
            (None, Some(wv)) => rv == wv,
            (_, None) => false,
        };
        if !fine {
            let kind = match what {
                "MAX_LENGTH" => "MAX_LENGTH_DECREASED",
                "MIN_LENGTH" => "MIN_LENGTH_INCREASED",
                "MAXIMUM" => "MAXIMUM_DECREASED",
                "MINIMUM" => "MINIMUM_INCREASED",
                "EXCLUSIVE_MAXIMUM" => "EXCLUSIVE_MAXIMUM_DECREASED",
                "EXCLUSIVE_MINIMUM" => "EXCLUSIVE_MINIMUM_INCREASED",
                "MAX_PROPERTIES" => "MAX_PROPERTIES_DECREASED",
                "MIN_PROPERTIES" => "MIN_PROPERTIES_INCREASED",
                "MAX_ITEMS" => "MAX_ITEMS_DECREASED",
                _ => "MIN_ITEMS_INCREASED",
            };
            self.report(
                kind,
                &format!("{path}/{key}"),
                format!("the reader's `{key}` is stricter than the writer's"),
            );
        }
    }

    fn object(&mut self, r: &Map<String, Value>, w: &Map<String, Value>, path: &str) {
        let empty = Map::new();
        let r_props = r
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let w_props = w
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let open = Value::Bool(true);
        let r_extra = r.get("additionalProperties").unwrap_or(&open);
        let w_extra = w.get("additionalProperties").unwrap_or(&open);
        let w_has_patterns = w.contains_key("patternProperties");
        for (name, rp) in r_props {
            let at = format!("{path}/properties/{name}");
            match w_props.get(name) {
                Some(wp) => self.schema(rp, wp, at),
                None if w_extra == &Value::Bool(false) && !w_has_patterns => {}
                None if accepts_everything(w_extra) => {
                    if !accepts_everything(rp) {
                        self.report(
                            "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                            &at,
                            format!("`{name}` is new, and the writer's open content model may hold anything under it"),
                        );
                    }
                }
                None => self.schema(rp, w_extra, at),
            }
        }
        for (name, wp) in w_props {
            if r_props.contains_key(name) {
                continue;
            }
            let at = format!("{path}/properties/{name}");
            if r_extra == &Value::Bool(false) {
                self.report(
                    "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                    &at,
                    format!("`{name}` is gone and the reader's content model is closed"),
                );
            } else {
                self.schema(r_extra, wp, format!("{path}/additionalProperties"));
            }
        }
        if !accepts_everything(r_extra) && r_extra != w_extra {
            match (r_extra, w_extra) {
                (_, Value::Bool(false)) => {}
                (Value::Bool(false), _) => self.report(
                    "ADDITIONAL_PROPERTIES_REMOVED",
                    &format!("{path}/additionalProperties"),
                    "the reader closed the content model the writer left open",
                ),
                (re, we) if !accepts_everything(we) => {
                    self.schema(re, we, format!("{path}/additionalProperties"));
                }
                _ => self.report(
                    "ADDITIONAL_PROPERTIES_NARROWED",
                    &format!("{path}/additionalProperties"),
                    "the reader constrains additional properties the writer left open",
                ),
            }
        }
        let w_required: HashSet<&str> = w
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(Value::Array(required)) = r.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !w_required.contains(name) {
                    self.report(
                        "REQUIRED_PROPERTY_ADDED",
                        &format!("{path}/required"),
                        format!("`{name}` is required by the reader but not by the writer"),
                    );
                }
            }
        }
        self.bound(r, w, path, "maxProperties", true, "MAX_PROPERTIES");
        self.bound(r, w, path, "minProperties", false, "MIN_PROPERTIES");
        for key in [
            "patternProperties",
            "dependencies",
            "dependentRequired",
            "dependentSchemas",
            "propertyNames",
        ] {
            if let Some(v) = r.get(key)
                && w.get(key) != Some(v)
            {
                self.report(
                    "OBJECT_CONSTRAINT_CHANGED",
                    &format!("{path}/{key}"),
                    format!("the reader's `{key}` is new or changed"),
                );
            }
        }
    }

    fn array(&mut self, r: &Map<String, Value>, w: &Map<String, Value>, path: &str) {
        // Tuples (draft 2020-12 `prefixItems`, older array-valued `items`).
        let tuple = |o: &Map<String, Value>| -> Option<Vec<Value>> {
            o.get("prefixItems")
                .or_else(|| o.get("items").filter(|i| i.is_array()))
                .and_then(Value::as_array)
                .cloned()
        };
        let rest = |o: &Map<String, Value>| -> Value {
            if o.contains_key("prefixItems") || o.get("items").is_some_and(Value::is_array) {
                o.get(if o.contains_key("prefixItems") {
                    "items"
                } else {
                    "additionalItems"
                })
                .cloned()
                .unwrap_or(Value::Bool(true))
            } else {
                o.get("items").cloned().unwrap_or(Value::Bool(true))
            }
        };
        let (rt, wt) = (tuple(r).unwrap_or_default(), tuple(w).unwrap_or_default());
        let (rr, wr) = (rest(r), rest(w));
        let n = rt.len().max(wt.len());
        for i in 0..n {
            let rs = rt.get(i).unwrap_or(&rr);
            let ws = wt.get(i).unwrap_or(&wr);
            if accepts_everything(rs) {
                continue;
            }
            self.schema(rs, ws, format!("{path}/items/{i}"));
        }
        if !accepts_everything(&rr) {
            self.schema(&rr, &wr, format!("{path}/items"));
        }
        self.bound(r, w, path, "maxItems", true, "MAX_ITEMS");
        self.bound(r, w, path, "minItems", false, "MIN_ITEMS");
        if r.get("uniqueItems") == Some(&Value::Bool(true))
            && w.get("uniqueItems") != Some(&Value::Bool(true))
        {
            self.report(
                "UNIQUE_ITEMS_ADDED",
                &format!("{path}/uniqueItems"),
                "the reader requires unique items",
            );
        }
        if let Some(v) = r.get("contains")
            && w.get("contains") != Some(v)
        {
            self.report(
                "ARRAY_CONSTRAINT_CHANGED",
                &format!("{path}/contains"),
                "the reader's `contains` is new or changed",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: Value) -> JsonSchema {
        JsonSchema::parse(&v.to_string(), &[]).unwrap()
    }

    fn kinds(reader: Value, writer: Value) -> Vec<&'static str> {
        can_read(&s(reader), &s(writer), &Budget::new(u64::MAX))
            .into_iter()
            .map(|i| i.kind)
            .collect()
    }

    fn ok(reader: Value, writer: Value) {
        let k = kinds(reader.clone(), writer.clone());
        assert!(k.is_empty(), "{reader} <- {writer}: {k:?}");
    }

    #[test]
    fn types_widen_but_do_not_narrow() {
        ok(json!({"type": "number"}), json!({"type": "integer"}));
        ok(
            json!({"type": ["string", "null"]}),
            json!({"type": "string"}),
        );
        assert_eq!(
            kinds(json!({"type": "integer"}), json!({"type": "number"})),
            ["TYPE_NARROWED"]
        );
        assert_eq!(
            kinds(json!({"type": "string"}), json!({})),
            ["TYPE_NARROWED"]
        );
        ok(json!({}), json!({"type": "string"}));
        ok(json!(true), json!({"type": "string"}));
    }

    #[test]
    fn open_and_closed_content_models() {
        let closed = json!({"type": "object", "properties": {"a": {"type": "string"}},
            "additionalProperties": false});
        let closed_more = json!({"type": "object", "properties": {"a": {"type": "string"},
            "b": {"type": "integer"}}, "additionalProperties": false});
        let open = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let open_more = json!({"type": "object", "properties": {"a": {"type": "string"},
            "b": {"type": "integer"}}});
        // Adding an optional property: fine when the writer was closed.
        ok(closed_more.clone(), closed.clone());
        // ... but not when the writer was open (its documents may hold any `b`).
        assert_eq!(
            kinds(open_more.clone(), open.clone()),
            ["PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"]
        );
        // Removing a property: fine for an open reader, not for a closed one.
        ok(open.clone(), open_more.clone());
        assert_eq!(
            kinds(closed.clone(), closed_more.clone()),
            ["PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"]
        );
        // Opening is widening; closing is narrowing.
        ok(open.clone(), closed.clone());
        assert_eq!(kinds(closed, open), ["ADDITIONAL_PROPERTIES_REMOVED"]);
    }

    #[test]
    fn required_properties() {
        let base =
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]});
        let more =
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": []});
        ok(more.clone(), base.clone());
        assert_eq!(kinds(base, more), ["REQUIRED_PROPERTY_ADDED"]);
    }

    #[test]
    fn enums_and_bounds() {
        ok(
            json!({"enum": ["a", "b", "c"]}),
            json!({"enum": ["a", "b"]}),
        );
        assert_eq!(
            kinds(json!({"enum": ["a"]}), json!({"enum": ["a", "b"]})),
            ["ENUM_ARRAY_NARROWED"]
        );
        assert_eq!(
            kinds(json!({"enum": ["a"]}), json!({"type": "string"})),
            ["ENUM_ARRAY_NARROWED"]
        );
        ok(
            json!({"type": "string", "maxLength": 20, "minLength": 1}),
            json!({"type": "string", "maxLength": 10, "minLength": 2}),
        );
        assert_eq!(
            kinds(
                json!({"type": "string", "maxLength": 5}),
                json!({"type": "string", "maxLength": 10})
            ),
            ["MAX_LENGTH_DECREASED"]
        );
        assert_eq!(
            kinds(
                json!({"type": "number", "minimum": 0}),
                json!({"type": "number"})
            ),
            ["MINIMUM_INCREASED"]
        );
        ok(
            json!({"type": "number", "multipleOf": 2}),
            json!({"type": "number", "multipleOf": 4}),
        );
        assert_eq!(
            kinds(
                json!({"type": "number", "multipleOf": 4}),
                json!({"type": "number", "multipleOf": 2})
            ),
            ["MULTIPLE_OF_CHANGED"]
        );
        assert_eq!(
            kinds(
                json!({"type": "string", "pattern": "^a"}),
                json!({"type": "string"})
            ),
            ["STRING_CONSTRAINT_CHANGED"]
        );
    }

    #[test]
    fn nested_properties_and_arrays_recurse() {
        let w = json!({"type": "object", "properties": {"items": {"type": "array",
            "items": {"type": "integer"}}}});
        let r = json!({"type": "object", "properties": {"items": {"type": "array",
            "items": {"type": "number"}}}});
        ok(r.clone(), w.clone());
        let found = can_read(&s(w), &s(r), &Budget::new(u64::MAX));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "#/properties/items/items/type");
        assert_eq!(
            kinds(
                json!({"type": "array", "uniqueItems": true}),
                json!({"type": "array"})
            ),
            ["UNIQUE_ITEMS_ADDED"]
        );
    }

    #[test]
    fn combined_schemas() {
        // A writer's union: every branch must fit.
        ok(
            json!({"type": ["string", "integer"]}),
            json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
        );
        assert_eq!(
            kinds(
                json!({"type": "string"}),
                json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
            ),
            ["COMBINED_TYPE_SUBSCHEMAS_CHANGED"]
        );
        // A reader's union: some branch must fit.
        ok(
            json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
            json!({"type": "integer"}),
        );
        // Extending a sum type is widening.
        ok(
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}),
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
        );
        // A reader's allOf: every part must fit.
        assert_eq!(
            kinds(
                json!({"allOf": [{"type": "number"}, {"minimum": 1}]}),
                json!({"type": "number"})
            ),
            ["MINIMUM_INCREASED"]
        );
    }

    #[test]
    fn references_are_followed_and_recursion_ends() {
        let tree = |extra: Value| {
            json!({"$ref": "#/$defs/node", "$defs": {"node": {"type": "object",
                "properties": {"value": extra, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}})
        };
        ok(
            tree(json!({"type": "number"})),
            tree(json!({"type": "integer"})),
        );
        assert_eq!(
            kinds(
                tree(json!({"type": "integer"})),
                tree(json!({"type": "number"}))
            ),
            ["TYPE_NARROWED"]
        );
        let address =
            json!({"type": "object", "properties": {"city": {"type": "string"}}}).to_string();
        let with_ref = JsonSchema::parse(
            &json!({"type": "object", "properties": {"home": {"$ref": "address.json"}}})
                .to_string(),
            &[("address.json".into(), address)],
        )
        .unwrap();
        assert!(can_read(&with_ref, &with_ref, &Budget::new(u64::MAX)).is_empty());
    }

    #[test]
    fn invalid_schemas_are_refused() {
        assert!(JsonSchema::parse(r#"{"type": 12}"#, &[]).is_err());
        assert!(JsonSchema::parse("[1]", &[]).is_err());
        assert!(JsonSchema::parse("{", &[]).is_err());
    }
}
