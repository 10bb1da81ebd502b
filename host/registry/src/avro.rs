//! Avro schemas as the resolution rules see them, and the rules themselves.
//!
//! A schema is parsed from its JSON into [`AvroSchema`]: named types (records, enums, fixed)
//! live in one arena and are referred to by index, so recursive records are plain cycles. The
//! check [`can_read`] follows the specification's "Schema Resolution" section: can a reader
//! with schema R decode data written with schema W? It reports every reason it cannot, each
//! with the path of the offending part of the reader's schema.
//!
//! `apache-avro` also parses every schema (so what is accepted is what its codecs accept), but
//! its own compatibility checker is not used: it answers `Partial` for some unions and does not
//! follow record renames through aliases, and a registry must answer yes or no.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

pub use crate::Incompatibility;

use crate::Budget;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Primitive {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
}

impl Primitive {
    fn from_name(name: &str) -> Option<Primitive> {
        Some(match name {
            "null" => Primitive::Null,
            "boolean" => Primitive::Boolean,
            "int" => Primitive::Int,
            "long" => Primitive::Long,
            "float" => Primitive::Float,
            "double" => Primitive::Double,
            "bytes" => Primitive::Bytes,
            "string" => Primitive::String,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Primitive::Null => "null",
            Primitive::Boolean => "boolean",
            Primitive::Int => "int",
            Primitive::Long => "long",
            Primitive::Float => "float",
            Primitive::Double => "double",
            Primitive::Bytes => "bytes",
            Primitive::String => "string",
        }
    }

    /// The specification's promotions: what a reader of `self` also reads.
    fn reads(self, writer: Primitive) -> bool {
        use Primitive::{Bytes, Double, Float, Int, Long, String};
        self == writer
            || matches!(
                (writer, self),
                (Int, Long | Float | Double)
                    | (Long, Float | Double)
                    | (Float, Double)
                    | (String, Bytes)
                    | (Bytes, String)
            )
    }
}

/// A decimal's parameters; other logical types resolve as their underlying type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    precision: u64,
    scale: u64,
}

#[derive(Debug, Clone)]
enum Node {
    Primitive(Primitive, Option<Decimal>),
    Array(Box<Node>),
    Map(Box<Node>),
    Union(Vec<Node>),
    Named(usize),
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    aliases: Vec<String>,
    node: Node,
    has_default: bool,
}

#[derive(Debug, Clone)]
enum NamedKind {
    Record(Vec<Field>),
    Enum {
        symbols: Vec<String>,
        default: Option<String>,
    },
    Fixed {
        size: u64,
        decimal: Option<Decimal>,
    },
}

#[derive(Debug, Clone)]
struct Named {
    fullname: String,
    aliases: Vec<String>,
    kind: NamedKind,
}

impl Named {
    fn short_name(&self) -> &str {
        self.fullname.rsplit('.').next().unwrap_or(&self.fullname)
    }
    fn kind_name(&self) -> &'static str {
        match self.kind {
            NamedKind::Record(_) => "record",
            NamedKind::Enum { .. } => "enum",
            NamedKind::Fixed { .. } => "fixed",
        }
    }
}

/// A parsed Avro schema (with the named types of its references).
#[derive(Debug, Clone)]
pub struct AvroSchema {
    root: Node,
    named: Vec<Named>,
}

impl AvroSchema {
    /// Parse `text`, whose named types may refer to those defined in `references` (each a
    /// schema text, parsed in order before it), as Confluent's schema references do.
    pub fn parse(text: &str, references: &[String]) -> Result<AvroSchema, String> {
        apache_avro::Schema::parse_str_with_list(text, references.iter())
            .map_err(|e| format!("invalid Avro schema: {e}"))?;
        let mut parser = Parser::default();
        for r in references {
            let v: Value = serde_json::from_str(r).map_err(|e| format!("invalid JSON: {e}"))?;
            parser.node(&v, None)?;
        }
        let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let root = parser.node(&v, None)?;
        Ok(AvroSchema {
            root,
            named: parser.named,
        })
    }

    /// The full name of the top-level type when it is named (`com.acme.Order`).
    pub fn name(&self) -> Option<&str> {
        match self.root {
            Node::Named(i) => Some(&self.named[i].fullname),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Parser {
    named: Vec<Named>,
    by_name: HashMap<String, usize>,
}

fn fullname(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

fn decimal_of(o: &serde_json::Map<String, Value>) -> Option<Decimal> {
    (o.get("logicalType").and_then(Value::as_str) == Some("decimal")).then(|| Decimal {
        precision: o.get("precision").and_then(Value::as_u64).unwrap_or(0),
        scale: o.get("scale").and_then(Value::as_u64).unwrap_or(0),
    })
}

impl Parser {
    fn node(&mut self, v: &Value, namespace: Option<&str>) -> Result<Node, String> {
        match v {
            Value::String(name) => self.by_reference(name, namespace),
            Value::Array(branches) => Ok(Node::Union(
                branches
                    .iter()
                    .map(|b| self.node(b, namespace))
                    .collect::<Result<_, _>>()?,
            )),
            Value::Object(o) => {
                let ty = o.get("type").ok_or("a schema object needs `type`")?;
                let Value::String(ty) = ty else {
                    return self.node(ty, namespace);
                };
                match ty.as_str() {
                    "record" | "error" | "enum" | "fixed" => self.named(o, ty, namespace),
                    "array" => Ok(Node::Array(Box::new(
                        self.node(o.get("items").ok_or("an array needs `items`")?, namespace)?,
                    ))),
                    "map" => Ok(Node::Map(Box::new(
                        self.node(o.get("values").ok_or("a map needs `values`")?, namespace)?,
                    ))),
                    other => match Primitive::from_name(other) {
                        Some(p) => Ok(Node::Primitive(p, decimal_of(o))),
                        None => self.by_reference(other, namespace),
                    },
                }
            }
            other => Err(format!("not an Avro schema: {other}")),
        }
    }

    fn by_reference(&self, name: &str, namespace: Option<&str>) -> Result<Node, String> {
        if let Some(p) = Primitive::from_name(name) {
            return Ok(Node::Primitive(p, None));
        }
        self.by_name
            .get(&fullname(name, namespace))
            .or_else(|| self.by_name.get(name))
            .map(|&i| Node::Named(i))
            .ok_or_else(|| format!("unknown type `{name}`"))
    }

    fn named(
        &mut self,
        o: &serde_json::Map<String, Value>,
        ty: &str,
        enclosing: Option<&str>,
    ) -> Result<Node, String> {
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a named type needs `name`")?;
        let namespace = match name.rsplit_once('.') {
            Some((ns, _)) => Some(ns.to_owned()),
            None => o
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| enclosing.map(str::to_owned)),
        };
        let ns = namespace.as_deref();
        let full = fullname(name, ns);
        let aliases = |o: &serde_json::Map<String, Value>| -> Vec<String> {
            o.get("aliases")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(|s| fullname(s, ns))
                        .collect()
                })
                .unwrap_or_default()
        };
        let index = self.named.len();
        // Registered before the fields, so a record may refer to itself.
        self.named.push(Named {
            fullname: full.clone(),
            aliases: aliases(o),
            kind: NamedKind::Record(vec![]),
        });
        self.by_name.insert(full, index);
        let kind = match ty {
            "enum" => NamedKind::Enum {
                symbols: o
                    .get("symbols")
                    .and_then(Value::as_array)
                    .ok_or("an enum needs `symbols`")?
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                default: o.get("default").and_then(Value::as_str).map(str::to_owned),
            },
            "fixed" => NamedKind::Fixed {
                size: o
                    .get("size")
                    .and_then(Value::as_u64)
                    .ok_or("a fixed needs `size`")?,
                decimal: decimal_of(o),
            },
            _ => {
                let mut fields = vec![];
                for f in o
                    .get("fields")
                    .and_then(Value::as_array)
                    .ok_or("a record needs `fields`")?
                {
                    let fo = f.as_object().ok_or("a field must be an object")?;
                    fields.push(Field {
                        name: fo
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or("a field needs `name`")?
                            .to_owned(),
                        aliases: fo
                            .get("aliases")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default(),
                        node: self.node(fo.get("type").ok_or("a field needs `type`")?, ns)?,
                        has_default: fo.contains_key("default"),
                    });
                }
                NamedKind::Record(fields)
            }
        };
        self.named[index].kind = kind;
        Ok(Node::Named(index))
    }
}

/// Why `reader` cannot read data written with `writer`; empty when it can.
/// What `reader` cannot read of what `writer` wrote; spends from `budget` (when it runs out
/// the answer is incomplete and the caller must refuse the check).
pub fn can_read(reader: &AvroSchema, writer: &AvroSchema, budget: &Budget) -> Vec<Incompatibility> {
    let mut check = Check {
        reader,
        writer,
        budget,
        assumed: HashSet::new(),
        found: vec![],
    };
    check.node(&reader.root, &writer.root, String::new());
    check.found
}

struct Check<'a> {
    reader: &'a AvroSchema,
    writer: &'a AvroSchema,
    budget: &'a Budget,
    /// Record pairs being compared further up: assumed compatible (recursion).
    assumed: HashSet<(usize, usize)>,
    found: Vec<Incompatibility>,
}

impl Check<'_> {
    fn report(&mut self, kind: &'static str, path: &str, message: String) {
        self.found.push(Incompatibility {
            kind,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            message,
        });
    }

    /// Decimals resolve only with equal precision and scale.
    fn decimals(&mut self, reader: Option<Decimal>, writer: Option<Decimal>, path: &str) {
        if let (Some(r), Some(w)) = (reader, writer)
            && r != w
        {
            self.report(
                "TYPE_MISMATCH",
                path,
                format!(
                    "decimal({}, {}) cannot read decimal({}, {})",
                    r.precision, r.scale, w.precision, w.scale
                ),
            );
        }
    }

    /// Would `reader` read `writer` (without reporting)?
    fn reads(&self, reader: &Node, writer: &Node) -> bool {
        let mut trial = Check {
            reader: self.reader,
            writer: self.writer,
            budget: self.budget,
            assumed: self.assumed.clone(),
            found: vec![],
        };
        trial.node(reader, writer, String::new());
        trial.found.is_empty()
    }

    fn describe(&self, node: &Node, of_reader: bool) -> String {
        let named = if of_reader {
            &self.reader.named
        } else {
            &self.writer.named
        };
        match node {
            Node::Primitive(p, _) => p.name().to_owned(),
            Node::Array(_) => "array".into(),
            Node::Map(_) => "map".into(),
            Node::Union(_) => "union".into(),
            Node::Named(i) => format!("{} {}", named[*i].kind_name(), named[*i].fullname),
        }
    }

    fn node(&mut self, reader: &Node, writer: &Node, path: String) {
        if !self.budget.spend(1 + self.assumed.len() as u64) {
            return;
        }
        match (reader, writer) {
            (_, Node::Union(branches)) => {
                for (i, branch) in branches.iter().enumerate() {
                    match reader {
                        Node::Union(readers) => {
                            if !readers.iter().any(|r| self.reads(r, branch)) {
                                let what = self.describe(branch, false);
                                self.report(
                                    "MISSING_UNION_BRANCH",
                                    &path,
                                    format!("the reader's union has no branch for the writer's {what} (branch {i})"),
                                );
                            }
                        }
                        _ => self.node(reader, branch, path.clone()),
                    }
                }
            }
            (Node::Union(readers), _) => {
                if !readers.iter().any(|r| self.reads(r, writer)) {
                    let what = self.describe(writer, false);
                    self.report(
                        "MISSING_UNION_BRANCH",
                        &path,
                        format!("the reader's union has no branch for the writer's {what}"),
                    );
                }
            }
            (Node::Primitive(r, rd), Node::Primitive(w, wd)) => {
                if !r.reads(*w) {
                    self.report(
                        "TYPE_MISMATCH",
                        &path,
                        format!(
                            "the reader's {} cannot read the writer's {}",
                            r.name(),
                            w.name()
                        ),
                    );
                } else {
                    self.decimals(*rd, *wd, &path);
                }
            }
            (Node::Array(r), Node::Array(w)) => self.node(r, w, format!("{path}/items")),
            (Node::Map(r), Node::Map(w)) => self.node(r, w, format!("{path}/values")),
            (Node::Named(r), Node::Named(w)) => self.named(*r, *w, path),
            _ => {
                let (r, w) = (self.describe(reader, true), self.describe(writer, false));
                self.report(
                    "TYPE_MISMATCH",
                    &path,
                    format!("the reader's {r} cannot read the writer's {w}"),
                );
            }
        }
    }

    fn named(&mut self, ri: usize, wi: usize, path: String) {
        let (r, w) = (&self.reader.named[ri], &self.writer.named[wi]);
        if r.kind_name() != w.kind_name() {
            let (rk, wk) = (r.kind_name(), w.kind_name());
            self.report(
                "TYPE_MISMATCH",
                &path,
                format!("the reader's {rk} cannot read the writer's {wk}"),
            );
            return;
        }
        let same_name = r.short_name() == w.short_name()
            || r.fullname == w.fullname
            || r.aliases.contains(&w.fullname);
        if !same_name {
            let (rn, wn) = (r.fullname.clone(), w.fullname.clone());
            self.report(
                "NAME_MISMATCH",
                &format!("{path}/name"),
                format!("expected the reader's name {rn} (or one of its aliases) to be the writer's {wn}"),
            );
            return;
        }
        match (&r.kind, &w.kind) {
            (NamedKind::Record(rf), NamedKind::Record(wf)) => {
                if !self.assumed.insert((ri, wi)) {
                    return;
                }
                for (i, field) in rf.iter().enumerate() {
                    let written = wf
                        .iter()
                        .find(|f| f.name == field.name)
                        .or_else(|| wf.iter().find(|f| field.aliases.contains(&f.name)));
                    match written {
                        Some(wfield) => {
                            self.node(&field.node, &wfield.node, format!("{path}/fields/{i}/type"));
                        }
                        None if field.has_default => {}
                        None => self.report(
                            "READER_FIELD_MISSING_DEFAULT_VALUE",
                            &format!("{path}/fields/{i}"),
                            format!(
                                "the reader's field `{}` is not in the writer's record and has no default",
                                field.name
                            ),
                        ),
                    }
                }
                self.assumed.remove(&(ri, wi));
            }
            (
                NamedKind::Enum {
                    symbols: rs,
                    default,
                },
                NamedKind::Enum { symbols: ws, .. },
            ) => {
                let missing: Vec<&String> = ws.iter().filter(|s| !rs.contains(s)).collect();
                if !missing.is_empty() && default.is_none() {
                    self.report(
                        "MISSING_ENUM_SYMBOLS",
                        &format!("{path}/symbols"),
                        format!(
                            "the reader's enum lacks the writer's symbols {missing:?} and has no default"
                        ),
                    );
                }
            }
            (
                NamedKind::Fixed {
                    size: rs,
                    decimal: rd,
                },
                NamedKind::Fixed {
                    size: ws,
                    decimal: wd,
                },
            ) => {
                if rs != ws {
                    self.report(
                        "FIXED_SIZE_MISMATCH",
                        &format!("{path}/size"),
                        format!("expected a fixed of size {ws}, found {rs}"),
                    );
                } else {
                    self.decimals(*rd, *wd, &path);
                }
            }
            _ => unreachable!("kinds compared above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> AvroSchema {
        AvroSchema::parse(text, &[]).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn kinds(reader: &str, writer: &str) -> Vec<&'static str> {
        can_read(&s(reader), &s(writer), &Budget::new(u64::MAX))
            .into_iter()
            .map(|i| i.kind)
            .collect()
    }

    fn ok(reader: &str, writer: &str) {
        assert_eq!(
            kinds(reader, writer),
            Vec::<&str>::new(),
            "{reader} <- {writer}"
        );
    }

    const V1: &str = r#"{"type":"record","name":"Order","namespace":"acme","fields":[
        {"name":"id","type":"string"},{"name":"qty","type":"int"}]}"#;

    #[test]
    fn promotions_follow_the_specification() {
        for (r, w) in [
            ("long", "int"),
            ("float", "int"),
            ("double", "int"),
            ("float", "long"),
            ("double", "long"),
            ("double", "float"),
            ("bytes", "string"),
            ("string", "bytes"),
        ] {
            ok(&format!("\"{r}\""), &format!("\"{w}\""));
        }
        for (r, w) in [
            ("int", "long"),
            ("long", "double"),
            ("float", "double"),
            ("int", "string"),
        ] {
            assert_eq!(
                kinds(&format!("\"{r}\""), &format!("\"{w}\"")),
                ["TYPE_MISMATCH"]
            );
        }
    }

    #[test]
    fn added_fields_need_defaults_and_removed_fields_are_ignored() {
        let with_default = r#"{"type":"record","name":"Order","namespace":"acme","fields":[
            {"name":"id","type":"string"},{"name":"qty","type":"int"},
            {"name":"note","type":["null","string"],"default":null}]}"#;
        let without_default = r#"{"type":"record","name":"Order","namespace":"acme","fields":[
            {"name":"id","type":"string"},{"name":"qty","type":"int"},{"name":"note","type":"string"}]}"#;
        ok(with_default, V1);
        assert_eq!(
            kinds(without_default, V1),
            ["READER_FIELD_MISSING_DEFAULT_VALUE"]
        );
        // The old reader ignores the new field.
        ok(V1, without_default);
        let issues = can_read(&s(without_default), &s(V1), &Budget::new(u64::MAX));
        assert_eq!(issues[0].path, "/fields/2");
    }

    #[test]
    fn field_type_changes_are_checked_with_their_path() {
        let qty_long = V1.replace(r#""qty","type":"int""#, r#""qty","type":"long""#);
        ok(&qty_long, V1);
        let issues = can_read(&s(V1), &s(&qty_long), &Budget::new(u64::MAX));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].kind, "TYPE_MISMATCH");
        assert_eq!(issues[0].path, "/fields/1/type");
    }

    #[test]
    fn enums_need_every_written_symbol_or_a_default() {
        let e = |symbols: &str, default: &str| {
            format!(r#"{{"type":"enum","name":"Color","symbols":{symbols}{default}}}"#)
        };
        ok(&e(r#"["R","G","B"]"#, ""), &e(r#"["R","G"]"#, ""));
        assert_eq!(
            kinds(&e(r#"["R","G"]"#, ""), &e(r#"["R","G","B"]"#, "")),
            ["MISSING_ENUM_SYMBOLS"]
        );
        ok(
            &e(r#"["R","G","U"]"#, r#","default":"U""#),
            &e(r#"["R","G","B"]"#, ""),
        );
    }

    #[test]
    fn unions_both_ways() {
        ok(r#"["null","string"]"#, r#""string""#);
        ok(r#"["null","long"]"#, r#""int""#);
        assert_eq!(
            kinds(r#""string""#, r#"["null","string"]"#),
            ["TYPE_MISMATCH"]
        );
        ok(r#"["null","string","int"]"#, r#"["null","string"]"#);
        assert_eq!(
            kinds(r#"["null","string"]"#, r#"["null","string","int"]"#),
            ["MISSING_UNION_BRANCH"]
        );
        assert_eq!(
            kinds(r#"["null","int"]"#, r#""string""#),
            ["MISSING_UNION_BRANCH"]
        );
        // Every branch of the writer is readable by the (non-union) reader.
        ok(r#""long""#, r#"["int","long"]"#);
    }

    #[test]
    fn names_namespaces_and_aliases() {
        let renamed = V1.replace(r#""name":"Order""#, r#""name":"Purchase""#);
        assert_eq!(kinds(&renamed, V1), ["NAME_MISMATCH"]);
        let aliased = V1.replace(
            r#""name":"Order","namespace":"acme""#,
            r#""name":"Purchase","namespace":"acme","aliases":["Order"]"#,
        );
        ok(&aliased, V1);
        // A reader's field alias finds the writer's old field name.
        let field_renamed = V1.replace(
            r#"{"name":"qty","type":"int"}"#,
            r#"{"name":"quantity","aliases":["qty"],"type":"int"}"#,
        );
        ok(&field_renamed, V1);
        // Unqualified names match across namespaces, as the specification says.
        let other_ns = V1.replace(r#""namespace":"acme""#, r#""namespace":"other""#);
        ok(&other_ns, V1);
    }

    #[test]
    fn nested_named_types_inherit_the_namespace() {
        let outer = |inner_name: &str, aliases: &str| {
            format!(
                r#"{{"type":"record","name":"Order","namespace":"acme","fields":[
                {{"name":"status","type":{{"type":"enum","name":"{inner_name}"{aliases},"symbols":["NEW","PAID"]}}}},
                {{"name":"previous","type":["null","{inner_name}"],"default":null}}]}}"#
            )
        };
        let v1 = outer("Status", "");
        ok(&v1, &v1);
        // The nested enum renamed: incompatible, unless the reader aliases the old full name.
        assert!(kinds(&outer("State", ""), &v1).contains(&"NAME_MISMATCH"));
        ok(&outer("State", r#","aliases":["acme.Status"]"#), &v1);
    }

    #[test]
    fn fixed_sizes_and_decimals() {
        let f = |size: u32| format!(r#"{{"type":"fixed","name":"Hash","size":{size}}}"#);
        ok(&f(16), &f(16));
        assert_eq!(kinds(&f(32), &f(16)), ["FIXED_SIZE_MISMATCH"]);
        let d = |p: u32, sc: u32| {
            format!(r#"{{"type":"bytes","logicalType":"decimal","precision":{p},"scale":{sc}}}"#)
        };
        ok(&d(10, 2), &d(10, 2));
        assert_eq!(kinds(&d(10, 3), &d(10, 2)), ["TYPE_MISMATCH"]);
        // Other logical types resolve as their underlying type.
        ok(
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
            r#""long""#,
        );
    }

    #[test]
    fn recursive_records_terminate() {
        let list = |extra: &str| {
            format!(
                r#"{{"type":"record","name":"Node","fields":[{{"name":"value","type":"long"}},
                {{"name":"next","type":["null","Node"],"default":null}}{extra}]}}"#
            )
        };
        ok(&list(""), &list(""));
        ok(
            &list(r#",{"name":"label","type":"string","default":""}"#),
            &list(""),
        );
        assert_eq!(
            kinds(&list(r#",{"name":"label","type":"string"}"#), &list("")),
            ["READER_FIELD_MISSING_DEFAULT_VALUE"]
        );
    }

    #[test]
    fn arrays_and_maps_recurse() {
        ok(
            r#"{"type":"array","items":"long"}"#,
            r#"{"type":"array","items":"int"}"#,
        );
        assert_eq!(
            kinds(
                r#"{"type":"map","values":"int"}"#,
                r#"{"type":"map","values":"long"}"#
            ),
            ["TYPE_MISMATCH"]
        );
        assert_eq!(
            kinds(
                r#"{"type":"array","items":"int"}"#,
                r#"{"type":"map","values":"int"}"#
            ),
            ["TYPE_MISMATCH"]
        );
    }

    #[test]
    fn references_supply_named_types() {
        let address = r#"{"type":"record","name":"Address","namespace":"acme","fields":[
            {"name":"city","type":"string"}]}"#
            .to_owned();
        let customer = r#"{"type":"record","name":"Customer","namespace":"acme","fields":[
            {"name":"home","type":"Address"}]}"#;
        let parsed = AvroSchema::parse(customer, std::slice::from_ref(&address)).unwrap();
        assert_eq!(parsed.name(), Some("acme.Customer"));
        assert!(AvroSchema::parse(customer, &[]).is_err());
    }

    #[test]
    fn invalid_schemas_are_refused() {
        assert!(AvroSchema::parse(r#"{"type":"record","name":"X"}"#, &[]).is_err());
        assert!(AvroSchema::parse(r#""nonsense""#, &[]).is_err());
        assert!(AvroSchema::parse("{", &[]).is_err());
    }
}
