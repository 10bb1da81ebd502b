//! JSON Schema compatibility: does every document the writer's schema accepts also pass the
//! reader's? The rules are written down in `docs/SCHEMAS.md`. They follow Confluent's checker
//! (its `SchemaDiff` change kinds, with the reader as the new schema and the writer as the old
//! one) wherever that is sound, and decide by what documents each schema admits where a
//! keyword-by-keyword diff would refuse a widening or accept a narrowing:
//!
//! - a reader may widen (more types, looser bounds, more enum values, fewer required
//!   properties) but not narrow; numeric bounds compare as intervals, whichever of `maximum`,
//!   draft-4 boolean `exclusiveMaximum` or numeric `exclusiveMaximum` states them;
//! - a property the reader adds is fine only if whatever the writer may hold under that name
//!   (its `properties`, a matching `patternProperties`, or its `additionalProperties`) fits it;
//! - `anyOf`/`oneOf` on the writer: each branch must fit; `anyOf` on the reader: the writer
//!   must fit some branch; `oneOf` on the reader: some branch, and provably none of the others;
//!   `allOf` on the reader: every part; `not` in the reader: it may only forbid less;
//! - `if`/`then`/`else`, `dependencies`, `propertyNames`, `contains` are compared by what they
//!   admit; a writer `enum`/`const` is decided exactly, by validating each value;
//! - `$ref`s (local, anchors, embedded `$id`s and other registered schemas) are followed,
//!   recursion is cut where a pair repeats; a reference that cannot be followed is refused.
//!
//! The check is sound and conservative: when it cannot prove a change safe, it says
//! incompatible. Every step is paid from a [`Budget`].

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

/// What `reader` cannot accept of what `writer` allows (empty when it accepts all of it);
/// spends from `budget` (when it runs out the answer is incomplete and the caller must refuse
/// the check). Trial comparisons (does this branch fit?) are remembered, so repeated
/// subschemas under combinators cost once.
pub fn can_read(reader: &JsonSchema, writer: &JsonSchema, budget: &Budget) -> Vec<Incompatibility> {
    if reader.doc == writer.doc && reader.references == writer.references {
        return vec![];
    }
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

/// Keywords decided in [`Check::schema`] before the rest are compared.
const COMBINATORS: [&str; 7] = ["anyOf", "oneOf", "allOf", "not", "if", "then", "else"];
/// Keywords that only annotate.
const ANNOTATIONS: [&str; 14] = [
    "$schema",
    "$id",
    "id",
    "$anchor",
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "definitions",
    "$defs",
    "readOnly",
    "writeOnly",
    "deprecated",
];
/// Assertions this checker does not model: a reader that uses them (other than unchanged,
/// in an unchanged subschema) is refused.
const UNMODELLED: [&str; 4] = [
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "$recursiveRef",
];
const ALL_TYPES: [&str; 7] = [
    "null", "boolean", "object", "array", "number", "string", "integer",
];
static TRUE: Value = Value::Bool(true);
static FALSE: Value = Value::Bool(false);

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

/// The JSON Schema type of a value (`integer` for numbers without a fraction).
fn value_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                "integer"
            } else {
                "number"
            }
        }
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The values a schema allows, when it lists them (`const`, `enum`).
fn values_of(o: &Map<String, Value>) -> Option<Vec<&Value>> {
    o.get("const").map(|c| vec![c]).or_else(|| {
        o.get("enum")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
    })
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

fn strings(v: Option<&Value>) -> HashSet<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Does any subschema hold a reference (`$ref`, or the dynamic kinds)? Paid from `budget`
/// (an exhausted budget answers "yes", the cautious answer).
fn has_ref(v: &Value, budget: &Budget, external_only: bool) -> bool {
    if !budget.spend(1) {
        return true;
    }
    match v {
        Value::Object(o) => o.iter().any(|(k, x)| {
            let is_ref = matches!(k.as_str(), "$ref" | "$dynamicRef" | "$recursiveRef")
                && !(external_only && x.as_str().is_some_and(|s| s.starts_with('#')));
            is_ref || has_ref(x, budget, external_only)
        }),
        Value::Array(a) => a.iter().any(|x| has_ref(x, budget, external_only)),
        _ => false,
    }
}

/// The subschema of `doc` whose `$id` (or draft-4 `id`) is `uri` or ends with `/uri`, or whose
/// `$anchor` (or `$id: "#name"`) is `#anchor` when `uri` is `#anchor`.
fn find_identified<'v>(doc: &'v Value, uri: &str, budget: &Budget) -> Option<&'v Value> {
    if !budget.spend(1) {
        return None;
    }
    match doc {
        Value::Object(o) => {
            let named = |v: Option<&Value>| {
                v.and_then(Value::as_str).is_some_and(|id| {
                    id == uri
                        || id.ends_with(&format!("/{uri}"))
                        || uri.ends_with(&format!("/{id}"))
                })
            };
            let anchored = uri
                .strip_prefix('#')
                .is_some_and(|a| o.get("$anchor").and_then(Value::as_str) == Some(a));
            if named(o.get("$id")) || named(o.get("id")) || anchored {
                return Some(doc);
            }
            o.values().find_map(|x| find_identified(x, uri, budget))
        }
        Value::Array(a) => a.iter().find_map(|x| find_identified(x, uri, budget)),
        _ => None,
    }
}

/// A `patternProperties` entry, its regular expression compiled when the `regex` crate can
/// (ECMA-262 features it lacks leave it `None`: "may match anything").
struct Pattern<'a> {
    source: &'a str,
    re: Option<regex::Regex>,
    schema: &'a Value,
}

impl Pattern<'_> {
    /// `Some(true)`/`Some(false)` when known, `None` when the pattern could not be compiled.
    fn matches(&self, name: &str) -> Option<bool> {
        self.re.as_ref().map(|re| re.is_match(name))
    }
}

fn patterns<'a>(o: &'a Map<String, Value>, budget: &Budget) -> Vec<Pattern<'a>> {
    let Some(Value::Object(p)) = o.get("patternProperties") else {
        return vec![];
    };
    p.iter()
        .map(|(source, schema)| Pattern {
            source,
            re: if budget.spend(10 + source.len() as u64) {
                regex::RegexBuilder::new(source)
                    .size_limit(1 << 20)
                    .build()
                    .ok()
            } else {
                None
            },
            schema,
        })
        .collect()
}

/// The literal text an anchored pattern starts with (`^s_` → `s_`), if any.
fn literal_prefix(pattern: &str) -> Option<String> {
    let rest = pattern.strip_prefix('^')?;
    let mut prefix = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if "\\.[](){}*+?|^$".contains(c) {
            break;
        }
        if chars.peek().is_some_and(|n| "?*{".contains(*n)) {
            break;
        }
        prefix.push(c);
    }
    (!prefix.is_empty()).then_some(prefix)
}

/// Can no name match both patterns? Only provable here for anchored literal prefixes that
/// differ.
fn patterns_disjoint(a: &str, b: &str) -> bool {
    match (literal_prefix(a), literal_prefix(b)) {
        (Some(x), Some(y)) => !x.starts_with(&y) && !y.starts_with(&x),
        _ => false,
    }
}

/// `dependencies` (both forms), `dependentRequired` and `dependentSchemas` of one schema.
struct Dependencies<'a> {
    required: HashMap<&'a str, HashSet<&'a str>>,
    schemas: HashMap<&'a str, &'a Value>,
}

fn dependencies(o: &Map<String, Value>) -> Dependencies<'_> {
    let mut d = Dependencies {
        required: HashMap::new(),
        schemas: HashMap::new(),
    };
    for key in ["dependencies", "dependentRequired", "dependentSchemas"] {
        let Some(Value::Object(entries)) = o.get(key) else {
            continue;
        };
        for (name, v) in entries {
            match v {
                Value::Array(_) if key != "dependentSchemas" => {
                    d.required.entry(name).or_default().extend(strings(Some(v)));
                }
                _ if key != "dependentRequired" => {
                    d.schemas.insert(name, v);
                }
                _ => {}
            }
        }
    }
    d
}

/// A numeric bound as an interval end.
#[derive(Debug, Clone, Copy)]
struct Limit {
    at: f64,
    exclusive: bool,
    keyword: &'static str,
}

/// The tightest upper (or lower) bound `o` states, from `maximum` with or without a draft-4
/// boolean `exclusiveMaximum`, and a numeric `exclusiveMaximum` (or the `minimum` kinds).
fn limit(o: &Map<String, Value>, upper: bool) -> Option<Limit> {
    let (plain, strict) = if upper {
        ("maximum", "exclusiveMaximum")
    } else {
        ("minimum", "exclusiveMinimum")
    };
    let draft4_strict = o.get(strict) == Some(&Value::Bool(true));
    let candidates = [
        num(o, plain).map(|at| Limit {
            at,
            exclusive: draft4_strict,
            keyword: if draft4_strict { strict } else { plain },
        }),
        num(o, strict).map(|at| Limit {
            at,
            exclusive: true,
            keyword: strict,
        }),
    ];
    candidates.into_iter().flatten().reduce(|a, b| {
        let tighter = if upper { b.at < a.at } else { b.at > a.at };
        if tighter || (b.at == a.at && b.exclusive) {
            b
        } else {
            a
        }
    })
}

/// Does every value within the writer's bound lie within the reader's? With `integers`, only
/// the integers within the writer's bound count.
fn within(r: Limit, w: Limit, upper: bool, integers: bool) -> bool {
    let (edge, edge_exclusive) = if integers {
        let k = match (upper, w.exclusive) {
            (true, true) => w.at.ceil() - 1.0,
            (true, false) => w.at.floor(),
            (false, true) => w.at.floor() + 1.0,
            (false, false) => w.at.ceil(),
        };
        (k, false)
    } else {
        (w.at, w.exclusive)
    };
    let inside = if upper { edge < r.at } else { edge > r.at };
    inside || (edge == r.at && (edge_exclusive || !r.exclusive))
}

/// The change kind for a bound the reader tightened (`added`: the writer had none).
fn bound_kind(keyword: &str, added: bool) -> &'static str {
    match (keyword, added) {
        ("maxLength", true) => "MAX_LENGTH_ADDED",
        ("maxLength", false) => "MAX_LENGTH_DECREASED",
        ("minLength", true) => "MIN_LENGTH_ADDED",
        ("minLength", false) => "MIN_LENGTH_INCREASED",
        ("maxProperties", true) => "MAX_PROPERTIES_ADDED",
        ("maxProperties", false) => "MAX_PROPERTIES_DECREASED",
        ("minProperties", true) => "MIN_PROPERTIES_ADDED",
        ("minProperties", false) => "MIN_PROPERTIES_INCREASED",
        ("maxItems", true) => "MAX_ITEMS_ADDED",
        ("maxItems", false) => "MAX_ITEMS_DECREASED",
        ("minItems", true) => "MIN_ITEMS_ADDED",
        ("minItems", false) => "MIN_ITEMS_INCREASED",
        ("maximum", true) => "MAXIMUM_ADDED",
        ("maximum", false) => "MAXIMUM_DECREASED",
        ("minimum", true) => "MINIMUM_ADDED",
        ("minimum", false) => "MINIMUM_INCREASED",
        ("exclusiveMaximum", true) => "EXCLUSIVE_MAXIMUM_ADDED",
        ("exclusiveMaximum", false) => "EXCLUSIVE_MAXIMUM_DECREASED",
        ("exclusiveMinimum", true) => "EXCLUSIVE_MINIMUM_ADDED",
        ("exclusiveMinimum", false) => "EXCLUSIVE_MINIMUM_INCREASED",
        ("maxContains", _) => "MAX_CONTAINS_DECREASED",
        _ => "BOUND_NARROWED",
    }
}

/// Trial outcomes keyed by (reader, writer, references assumed, sides swapped) content hashes.
type Trials = HashMap<(u64, u64, u64, bool), bool>;

struct Check<'a> {
    reader: &'a JsonSchema,
    writer: &'a JsonSchema,
    budget: &'a Budget,
    /// Trial outcomes by (reader, writer, references assumed, sides swapped) content.
    memo: &'a RefCell<Trials>,
    assumed: HashSet<(String, String)>,
    found: Vec<Incompatibility>,
}

impl<'a> Check<'a> {
    fn report(&mut self, kind: &'static str, path: &str, message: impl Into<String>) {
        self.found.push(Incompatibility {
            kind,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Does `reader` (a subschema of the reader's documents) accept all `writer` (of the
    /// writer's) does?
    fn fits(&self, reader: &Value, writer: &Value) -> bool {
        self.trial(reader, writer, false)
    }

    /// [`Check::fits`] with the sides' documents swapped: `a` is from the writer's documents,
    /// `b` from the reader's (comparing what `not` forbids runs backwards).
    fn fits_swapped(&self, a: &Value, b: &Value) -> bool {
        self.trial(a, b, true)
    }

    fn trial(&self, reader: &Value, writer: &Value, swapped: bool) -> bool {
        if !self.budget.spend(1) {
            return false;
        }
        let mut assumed: Vec<&(String, String)> = self.assumed.iter().collect();
        assumed.sort_unstable();
        let key = (
            content_hash(reader),
            content_hash(writer),
            {
                let mut h = std::hash::DefaultHasher::new();
                assumed.hash(&mut h);
                h.finish()
            },
            swapped,
        );
        if let Some(known) = self.memo.borrow().get(&key) {
            return *known;
        }
        let (r_side, w_side) = if swapped {
            (self.writer, self.reader)
        } else {
            (self.reader, self.writer)
        };
        let mut trial = Check {
            reader: r_side,
            writer: w_side,
            budget: self.budget,
            memo: self.memo,
            assumed: if swapped {
                HashSet::new()
            } else {
                self.assumed.clone()
            },
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

    /// Follow a `$ref` within `side`'s documents: a JSON pointer, an anchor, an embedded
    /// `$id`, or a registered reference by its name.
    fn resolve<'v>(side: &'v JsonSchema, reference: &str, budget: &Budget) -> Option<&'v Value> {
        let (base, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let doc = if base.is_empty() {
            &side.doc
        } else {
            side.references
                .get(base)
                .or_else(|| {
                    side.references
                        .iter()
                        .find(|(name, _)| base.ends_with(&format!("/{name}")))
                        .map(|(_, v)| v)
                })
                .or_else(|| find_identified(&side.doc, base, budget))?
        };
        if fragment.is_empty() {
            Some(doc)
        } else if fragment.starts_with('/') {
            doc.pointer(fragment)
        } else {
            find_identified(doc, &format!("#{fragment}"), budget)
        }
    }

    /// The reader's value with its references followed (one level), and the same for the
    /// writer's; `None` for one that cannot be followed.
    fn followed<'v>(&self, v: &'v Value, writer_side: bool) -> Option<&'v Value>
    where
        'a: 'v,
    {
        match v.get("$ref").and_then(Value::as_str) {
            None => Some(v),
            Some(r) => {
                let side = if writer_side {
                    self.writer
                } else {
                    self.reader
                };
                Self::resolve(side, r, self.budget)
            }
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
                Some(x) => Self::resolve(self.reader, x, self.budget),
                None => Some(reader),
            };
            let w = match w_ref {
                Some(x) => Self::resolve(self.writer, x, self.budget),
                None => Some(writer),
            };
            match (r, w) {
                (Some(r), Some(w)) => {
                    let (r, w) = (r.clone(), w.clone());
                    self.schema(&r, &w, path);
                }
                _ => self.report(
                    "REFERENCE_UNRESOLVED",
                    &path,
                    "a `$ref` the checker cannot follow (it is compared only when unchanged)",
                ),
            }
            self.assumed.remove(&key);
            return;
        }
        if accepts_everything(reader) || writer == &FALSE {
            return;
        }
        if reader == &FALSE {
            self.report("SCHEMA_NARROWED", &path, "the reader accepts nothing");
            return;
        }
        // An unchanged subschema that refers to nothing decides itself.
        if reader == writer && !has_ref(reader, self.budget, false) {
            return;
        }
        let empty = Map::new();
        let w = writer.as_object().unwrap_or(&empty);
        let r = reader.as_object().expect("not a boolean");
        self.identity(reader, writer, r, w, &path);

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
        let w_plain = self.writer_plain(w);
        let w_value = Value::Object(w_plain.clone());
        // The reader's combinators.
        if let Some(Value::Array(parts)) = r.get("allOf") {
            for (i, p) in parts.iter().enumerate() {
                self.schema(p, &w_value, format!("{path}/allOf/{i}"));
            }
        }
        if let Some(Value::Array(branches)) = r.get("anyOf")
            && !branches.iter().any(|b| self.fits(b, &w_value))
        {
            self.report(
                "COMBINED_TYPE_SUBSCHEMAS_CHANGED",
                &format!("{path}/anyOf"),
                "no branch of the reader's `anyOf` accepts the writer's documents",
            );
        }
        if let Some(Value::Array(branches)) = r.get("oneOf") {
            let exactly_one = (0..branches.len()).any(|i| {
                self.fits(&branches[i], &w_value)
                    && branches
                        .iter()
                        .enumerate()
                        .all(|(j, other)| j == i || self.disjoint(other, &w_value, 0))
            });
            if !exactly_one {
                self.report(
                    "COMBINED_TYPE_SUBSCHEMAS_CHANGED",
                    &format!("{path}/oneOf"),
                    "no branch of the reader's `oneOf` is sure to accept the writer's documents \
                     while the others refuse them",
                );
            }
        }
        self.negation(r, w, &w_value, &path);
        self.conditional(r, w, &w_value, &path);
        let r = &without(r, &COMBINATORS);
        self.keywords(r, &w_plain, &path);
    }

    /// The writer's own keywords with its combinators left out, and the parts of an `allOf`
    /// merged in where they do not clash (leaving a part out only widens the writer, which is
    /// the cautious direction).
    fn writer_plain(&self, w: &Map<String, Value>) -> Map<String, Value> {
        let mut plain = without(w, &COMBINATORS);
        let Some(Value::Array(parts)) = w.get("allOf") else {
            return plain;
        };
        for part in parts {
            let Some(Value::Object(part)) = self.followed(part, true) else {
                continue;
            };
            if COMBINATORS.iter().any(|k| part.contains_key(*k)) || part.contains_key("$ref") {
                continue;
            }
            for (k, v) in part {
                match (k.as_str(), plain.get_mut(k)) {
                    (_, None) => {
                        plain.insert(k.clone(), v.clone());
                    }
                    ("required", Some(Value::Array(have))) => {
                        for name in v.as_array().into_iter().flatten() {
                            if !have.contains(name) {
                                have.push(name.clone());
                            }
                        }
                    }
                    ("properties", Some(Value::Object(have))) => {
                        for (name, s) in v.as_object().into_iter().flatten() {
                            have.entry(name.clone()).or_insert_with(|| s.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        plain
    }

    /// A changed `$id` moves what relative references resolve against: refused where the
    /// schema has any reference outside itself.
    fn identity(
        &mut self,
        reader: &Value,
        writer: &Value,
        r: &Map<String, Value>,
        w: &Map<String, Value>,
        path: &str,
    ) {
        let id = |o: &Map<String, Value>| {
            o.get("$id")
                .or_else(|| o.get("id"))
                .and_then(Value::as_str)
                .filter(|s| !s.starts_with('#'))
                .map(str::to_owned)
        };
        if id(r) != id(w)
            && (has_ref(reader, self.budget, true) || has_ref(writer, self.budget, true))
        {
            self.report(
                "ID_CHANGED",
                &format!("{path}/$id"),
                "`$id` changed, and relative references resolve against it",
            );
        }
    }

    /// Is it certain no document satisfies both `a` (from the reader's documents) and `b`
    /// (from the writer's)? Decided by types, listed values, and a required property whose
    /// schemas are disjoint (a discriminator); anything else is "maybe not".
    fn disjoint(&self, a: &Value, b: &Value, depth: u8) -> bool {
        if depth > 8 || !self.budget.spend(1) {
            return false;
        }
        let (Some(a), Some(b)) = (self.followed(a, false), self.followed(b, true)) else {
            return false;
        };
        let (a, b) = match (a, b) {
            (Value::Bool(false), _) | (_, Value::Bool(false)) => return true,
            (Value::Object(a), Value::Object(b)) => (a, b),
            _ => return false,
        };
        let (ta, tb) = (types_of(a), types_of(b));
        if let (Some(x), Some(y)) = (&ta, &tb)
            && !x.iter().any(|t| allows(&tb, t))
            && !y.iter().any(|t| allows(&ta, t))
        {
            return true;
        }
        let (va, vb) = (values_of(a), values_of(b));
        let excluded = |values: &Option<Vec<&Value>>,
                        types: &Option<HashSet<&str>>,
                        others: &Option<Vec<&Value>>| {
            values.as_ref().is_some_and(|vs| {
                vs.iter().all(|v| {
                    !allows(types, value_type(v)) || others.as_ref().is_some_and(|o| !o.contains(v))
                })
            })
        };
        if excluded(&va, &tb, &vb) || excluded(&vb, &ta, &va) {
            return true;
        }
        let (ra, rb) = (strings(a.get("required")), strings(b.get("required")));
        let (pa, pb) = (a.get("properties"), b.get("properties"));
        ra.intersection(&rb).any(|name| {
            match (pa.and_then(|p| p.get(*name)), pb.and_then(|p| p.get(*name))) {
                (Some(x), Some(y)) => self.disjoint(x, y, depth + 1),
                _ => false,
            }
        })
    }

    /// `not` in the reader: it may only forbid what the writer's `not` forbids too, or what
    /// the writer never holds.
    fn negation(
        &mut self,
        r: &Map<String, Value>,
        w: &Map<String, Value>,
        w_value: &Value,
        path: &str,
    ) {
        let Some(forbidden) = r.get("not") else {
            return;
        };
        if let Some(writer_forbids) = w.get("not")
            && self.fits_swapped(writer_forbids, forbidden)
        {
            return;
        }
        if self.disjoint(forbidden, w_value, 0) {
            return;
        }
        self.report(
            "NOT_TYPE_EXTENDED",
            &format!("{path}/not"),
            "the reader's `not` forbids documents the writer may hold",
        );
    }

    /// `if`/`then`/`else` in the reader: under the same condition each branch must take what
    /// the writer's does; otherwise both branches must take every writer document.
    fn conditional(
        &mut self,
        r: &Map<String, Value>,
        w: &Map<String, Value>,
        w_value: &Value,
        path: &str,
    ) {
        let Some(condition) = r.get("if") else { return };
        let then = r.get("then").unwrap_or(&TRUE);
        let otherwise = r.get("else").unwrap_or(&TRUE);
        if accepts_everything(then) && accepts_everything(otherwise) {
            return;
        }
        if w.get("if") == Some(condition) && !has_ref(condition, self.budget, false) {
            let w_then = w.get("then").unwrap_or(&TRUE);
            let w_else = w.get("else").unwrap_or(&TRUE);
            if self.fits(then, w_then) && self.fits(otherwise, w_else) {
                return;
            }
        }
        if self.fits(then, w_value) && self.fits(otherwise, w_value) {
            return;
        }
        self.report(
            "CONDITIONAL_CHANGED",
            &format!("{path}/if"),
            "the reader's `if`/`then`/`else` may refuse documents the writer holds",
        );
    }

    /// Validate `values` against the reader's `schema` (which refers to nothing), in the
    /// reader's draft; the indexes of the refused ones, or `None` when it cannot compile.
    fn refused(&self, schema: &Map<String, Value>, values: &[&Value]) -> Option<Vec<usize>> {
        if !self.budget.spend(100 + values.len() as u64) {
            return None;
        }
        let mut s = schema.clone();
        if let Some(draft) = self.reader.doc.get("$schema") {
            s.entry("$schema").or_insert_with(|| draft.clone());
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&Value::Object(s))
            .ok()?;
        Some(
            values
                .iter()
                .enumerate()
                .filter(|(_, v)| !validator.is_valid(v))
                .map(|(i, _)| i)
                .collect(),
        )
    }

    fn keywords(&mut self, r: &Map<String, Value>, w: &Map<String, Value>, path: &str) {
        let reader = Value::Object(r.clone());
        // A writer that lists its values: each is tried against the reader, exactly.
        if let Some(values) = values_of(w)
            && !has_ref(&reader, self.budget, false)
            && let Some(refused) = self.refused(r, &values)
        {
            if let Some(&first) = refused.first() {
                self.report(
                    "ENUM_ARRAY_NARROWED",
                    &format!("{path}/enum"),
                    format!(
                        "the reader refuses {} of the writer's values (first: {})",
                        refused.len(),
                        values[first]
                    ),
                );
            }
            return;
        }
        for key in UNMODELLED {
            if let Some(v) = r.get(key)
                && !accepts_everything(v)
            {
                self.report(
                    "UNSUPPORTED_KEYWORD_CHANGED",
                    &format!("{path}/{key}"),
                    format!("the checker cannot prove a changed schema with `{key}` compatible"),
                );
            }
        }
        let (rt, wt) = (types_of(r), types_of(w));
        let writer_types: Vec<&str> = match &wt {
            Some(set) => set.iter().copied().collect(),
            None => ALL_TYPES.to_vec(),
        };
        let mut narrowed: Vec<&str> = writer_types
            .iter()
            .copied()
            .filter(|t| !allows(&rt, t))
            .collect();
        if !narrowed.is_empty() {
            narrowed.sort_unstable();
            self.report(
                "TYPE_NARROWED",
                &format!("{path}/type"),
                format!("the reader no longer accepts {}", narrowed.join(", ")),
            );
        }
        let can = |t: &str| allows(&wt, t);

        for key in ["enum", "const"] {
            if r.contains_key(key) {
                self.report(
                    if key == "enum" {
                        "ENUM_ARRAY_NARROWED"
                    } else {
                        "CONST_CHANGED"
                    },
                    &format!("{path}/{key}"),
                    format!("the reader's `{key}` does not allow every value the writer's does"),
                );
            }
        }
        if can("object") {
            self.object(r, w, path);
        }
        if can("array") {
            self.array(r, w, path);
        }
        if can("string") {
            self.count_bound(r, w, path, "maxLength", true);
            self.count_bound(r, w, path, "minLength", false);
            for key in ["pattern", "format", "contentEncoding", "contentMediaType"] {
                if let Some(v) = r.get(key)
                    && w.get(key) != Some(v)
                {
                    self.report(
                        if key == "pattern" {
                            "PATTERN_CHANGED"
                        } else {
                            "STRING_CONSTRAINT_CHANGED"
                        },
                        &format!("{path}/{key}"),
                        format!("the reader's `{key}` is new or changed"),
                    );
                }
            }
        }
        if can("number") || can("integer") {
            let integers = wt.as_ref().is_some_and(|t| !t.contains("number"));
            self.numeric_bound(r, w, path, true, integers);
            self.numeric_bound(r, w, path, false, integers);
            if let Some(rm) = num(r, "multipleOf") {
                let fine = num(w, "multipleOf").is_some_and(|wm| {
                    let q = wm / rm;
                    (q - q.round()).abs() < 1e-9
                }) || (integers && rm == 1.0);
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

    fn numeric_bound(
        &mut self,
        r: &Map<String, Value>,
        w: &Map<String, Value>,
        path: &str,
        upper: bool,
        integers: bool,
    ) {
        let Some(rl) = limit(r, upper) else { return };
        let wl = limit(w, upper);
        if wl.is_some_and(|wl| within(rl, wl, upper, integers)) {
            return;
        }
        self.report(
            bound_kind(
                rl.keyword,
                wl.is_none() || (rl.exclusive && !w.contains_key(rl.keyword)),
            ),
            &format!("{path}/{}", rl.keyword),
            format!(
                "the reader's `{}` is stricter than the writer's bound",
                rl.keyword
            ),
        );
    }

    /// A count bound the reader must keep at least as loose as the writer's: `upper` bounds
    /// may only grow, lower ones only shrink; a bound the writer lacks the reader must lack
    /// too.
    fn count_bound(
        &mut self,
        r: &Map<String, Value>,
        w: &Map<String, Value>,
        path: &str,
        key: &'static str,
        upper: bool,
    ) {
        let Some(rb) = num(r, key) else { return };
        let (fine, added) = match num(w, key) {
            Some(wb) => (if upper { rb >= wb } else { rb <= wb }, false),
            None => (!upper && rb <= 0.0, true),
        };
        if !fine {
            self.report(
                bound_kind(key, added),
                &format!("{path}/{key}"),
                format!("the reader's `{key}` is stricter than the writer's"),
            );
        }
    }

    /// What the writer may hold under property `name`: its own schema for it, a matching
    /// pattern's, or its `additionalProperties` (`true` when a pattern might match but cannot
    /// be tested).
    fn writer_for<'v>(
        name: &str,
        w_props: &'v Map<String, Value>,
        w_patterns: &'v [Pattern<'v>],
        w_extra: &'v Value,
    ) -> &'v Value {
        if let Some(s) = w_props.get(name) {
            return s;
        }
        let mut unknown = false;
        for p in w_patterns {
            match p.matches(name) {
                Some(true) => return p.schema,
                Some(false) => {}
                None => unknown = true,
            }
        }
        if unknown { &TRUE } else { w_extra }
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
        let r_extra = r.get("additionalProperties").unwrap_or(&TRUE);
        let w_extra = w.get("additionalProperties").unwrap_or(&TRUE);
        let r_patterns = patterns(r, self.budget);
        let w_patterns = patterns(w, self.budget);
        // The reader's named properties, against whatever the writer holds under the name.
        for (name, rp) in r_props {
            let at = format!("{path}/properties/{name}");
            let wp = Self::writer_for(name, w_props, &w_patterns, w_extra);
            if wp == &FALSE {
                continue;
            }
            if !w_props.contains_key(name) && accepts_everything(wp) {
                if !accepts_everything(rp) {
                    self.report(
                        "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                        &at,
                        format!("`{name}` is new, and the writer's open content model may hold anything under it"),
                    );
                }
            } else {
                self.schema(rp, wp, at);
            }
            for p in &r_patterns {
                if p.matches(name) != Some(false) {
                    self.schema(
                        p.schema,
                        wp,
                        format!("{path}/patternProperties/{}", p.source),
                    );
                }
            }
        }
        // The reader's patterns, against the writer's properties, patterns and extras that
        // may share names with them.
        for p in &r_patterns {
            if accepts_everything(p.schema) {
                continue;
            }
            let at = format!("{path}/patternProperties/{}", p.source);
            for (name, wp) in w_props {
                if !r_props.contains_key(name) && p.matches(name) != Some(false) {
                    self.schema(p.schema, wp, at.clone());
                }
            }
            for q in &w_patterns {
                if q.source == p.source || !patterns_disjoint(p.source, q.source) {
                    self.schema(p.schema, q.schema, at.clone());
                }
            }
            if w_extra != &FALSE {
                self.schema(p.schema, w_extra, at);
            }
        }
        // The writer's properties the reader leaves to its `additionalProperties`.
        let reader_names = |name: &str| {
            r_props.contains_key(name) || r_patterns.iter().any(|p| p.matches(name) == Some(true))
        };
        for (name, wp) in w_props {
            if reader_names(name) {
                continue;
            }
            let at = format!("{path}/properties/{name}");
            if r_extra == &FALSE {
                if wp != &FALSE {
                    self.report(
                        "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                        &at,
                        format!("`{name}` is gone and the reader's content model is closed"),
                    );
                }
            } else {
                self.schema(r_extra, wp, format!("{path}/additionalProperties"));
            }
        }
        for q in &w_patterns {
            if r_patterns.iter().any(|p| p.source == q.source) || accepts_everything(r_extra) {
                continue;
            }
            if r_extra == &FALSE {
                if q.schema != &FALSE {
                    self.report(
                        "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                        &format!("{path}/patternProperties/{}", q.source),
                        "names the writer's pattern allowed are outside the reader's closed content model",
                    );
                }
            } else {
                self.schema(r_extra, q.schema, format!("{path}/additionalProperties"));
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
        let w_required = strings(w.get("required"));
        for name in strings(r.get("required")) {
            if !w_required.contains(name) {
                self.report(
                    "REQUIRED_PROPERTY_ADDED",
                    &format!("{path}/required"),
                    format!("`{name}` is required by the reader but not by the writer"),
                );
            }
        }
        self.count_bound(r, w, path, "maxProperties", true);
        self.count_bound(r, w, path, "minProperties", false);
        let never = |name: &str| Self::writer_for(name, w_props, &w_patterns, w_extra) == &FALSE;
        let (rd, wd) = (dependencies(r), dependencies(w));
        for (name, needs) in &rd.required {
            if never(name) {
                continue;
            }
            let writer_needs = wd.required.get(name);
            for need in needs {
                if !w_required.contains(need) && !writer_needs.is_some_and(|n| n.contains(need)) {
                    self.report(
                        if writer_needs.is_some() {
                            "DEPENDENCY_ARRAY_EXTENDED"
                        } else {
                            "DEPENDENCY_ARRAY_ADDED"
                        },
                        &format!("{path}/dependencies/{name}"),
                        format!("with `{name}` the reader requires `{need}`, the writer does not"),
                    );
                }
            }
        }
        let whole_writer = Value::Object(w.clone());
        for (name, needs) in &rd.schemas {
            if accepts_everything(needs) || never(name) {
                continue;
            }
            let writer_needs = wd.schemas.get(name);
            let fine = writer_needs.is_some_and(|wn| self.fits(needs, wn))
                || self.fits(needs, &whole_writer);
            if !fine {
                self.report(
                    if writer_needs.is_some() {
                        "DEPENDENCY_SCHEMA_CHANGED"
                    } else {
                        "DEPENDENCY_SCHEMA_ADDED"
                    },
                    &format!("{path}/dependencies/{name}"),
                    format!("with `{name}` the reader asks more than the writer guarantees"),
                );
            }
        }
        if let Some(names) = r.get("propertyNames")
            && !accepts_everything(names)
        {
            let as_names = |v: &Value| -> Value {
                match v {
                    Value::Object(o) if !o.contains_key("type") => {
                        let mut o = o.clone();
                        o.insert("type".into(), "string".into());
                        Value::Object(o)
                    }
                    v => v.clone(),
                }
            };
            let closed = w_extra == &FALSE && w_patterns.is_empty();
            let fine = w
                .get("propertyNames")
                .is_some_and(|wn| self.fits(names, &as_names(wn)))
                || (closed
                    && !has_ref(names, self.budget, false)
                    && names.as_object().is_some_and(|n| {
                        let keys: Vec<Value> =
                            w_props.keys().map(|k| Value::from(k.as_str())).collect();
                        let keys: Vec<&Value> = keys.iter().collect();
                        self.refused(n, &keys).is_some_and(|r| r.is_empty())
                    }))
                || self.fits(names, &serde_json::json!({"type": "string"}));
            if !fine {
                self.report(
                    "PROPERTY_NAMES_NARROWED",
                    &format!("{path}/propertyNames"),
                    "the reader's `propertyNames` refuses names the writer allows",
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
        self.count_bound(r, w, path, "maxItems", true);
        self.count_bound(r, w, path, "minItems", false);
        if r.get("uniqueItems") == Some(&Value::Bool(true))
            && w.get("uniqueItems") != Some(&Value::Bool(true))
            && num(w, "maxItems").is_none_or(|m| m > 1.0)
        {
            self.report(
                "UNIQUE_ITEMS_ADDED",
                &format!("{path}/uniqueItems"),
                "the reader requires unique items",
            );
        }
        let Some(wanted) = r.get("contains") else {
            return;
        };
        // At least `minContains` items must match the reader's `contains`.
        let r_min = num(r, "minContains").unwrap_or(1.0);
        let w_min_items = num(w, "minItems").unwrap_or(0.0);
        let enough = r_min <= 0.0
            || w.get("contains").is_some_and(|wc| {
                num(w, "minContains").unwrap_or(1.0) >= r_min && self.fits(wanted, wc)
            })
            || (w_min_items >= r_min
                && wt
                    .iter()
                    .chain(std::iter::once(&wr))
                    .all(|s| self.fits(wanted, s)));
        if !enough {
            self.report(
                if w.contains_key("contains") {
                    "CONTAINS_CHANGED"
                } else {
                    "CONTAINS_ADDED"
                },
                &format!("{path}/contains"),
                "the writer's arrays need not hold what the reader's `contains` asks for",
            );
        }
        // At most `maxContains` items may match it.
        if let Some(r_max) = num(r, "maxContains") {
            let fine = (w.get("contains") == Some(wanted)
                && !has_ref(wanted, self.budget, false)
                && num(w, "maxContains").is_some_and(|m| m <= r_max))
                || num(w, "maxItems").is_some_and(|m| m <= r_max);
            if !fine {
                self.report(
                    bound_kind("maxContains", false),
                    &format!("{path}/maxContains"),
                    "the writer's arrays may hold more matching items than the reader's `maxContains`",
                );
            }
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
            ["MINIMUM_ADDED"]
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
            ["PATTERN_CHANGED"]
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
            ["MINIMUM_ADDED"]
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

/// The compatibility rules as a table of changes, each with its verdict.
#[cfg(test)]
#[path = "json_schema_cases.rs"]
mod cases;
