//! Values in Avro's JSON encoding, as Confluent's REST Proxy exchanges them (a union's value
//! other than null is wrapped as `{"<branch type>": value}`), to and from Avro binary.
//!
//! `apache-avro` does the binary encoding and the schema-guided resolution (records from JSON
//! objects, defaults, numeric widening); this module only wraps and unwraps unions, which the
//! library's JSON conversion does not do.

use apache_avro::Schema;
use apache_avro::schema::{Name, NamesRef, ResolvedSchema};
use apache_avro::types::Value as Avro;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AvroJsonError(String);

fn err(e: impl std::fmt::Display) -> AvroJsonError {
    AvroJsonError(e.to_string())
}

/// A parsed writer schema and its named types.
pub struct AvroSchema {
    schema: Schema,
}

impl AvroSchema {
    pub fn parse(text: &str) -> Result<AvroSchema, AvroJsonError> {
        let schema = Schema::parse_str(text).map_err(err)?;
        ResolvedSchema::try_from(&schema).map_err(err)?;
        Ok(AvroSchema { schema })
    }

    /// JSON (Avro's JSON encoding; bare union values are accepted too) to Avro binary.
    pub fn encode(&self, json: &Value) -> Result<Vec<u8>, AvroJsonError> {
        let resolved = ResolvedSchema::try_from(&self.schema).map_err(err)?;
        let plain = unwrap(json, &self.schema, resolved.get_names());
        let value = Avro::try_from(plain)
            .map_err(err)?
            .resolve(&self.schema)
            .map_err(err)?;
        apache_avro::writer::datum::GenericDatumWriter::builder(&self.schema)
            .build()
            .map_err(err)?
            .write_value_to_vec(value)
            .map_err(err)
    }

    /// Avro binary to JSON in Avro's JSON encoding.
    pub fn decode(&self, mut bytes: &[u8]) -> Result<Value, AvroJsonError> {
        let value = apache_avro::reader::datum::GenericDatumReader::builder(&self.schema)
            .build()
            .map_err(err)?
            .read_value(&mut bytes)
            .map_err(err)?;
        let resolved = ResolvedSchema::try_from(&self.schema).map_err(err)?;
        to_json(value, &self.schema, resolved.get_names())
    }
}

fn named<'a>(schema: &'a Schema, names: &'a NamesRef<'a>) -> &'a Schema {
    match schema {
        Schema::Ref { name } => names.get(name).copied().unwrap_or(schema),
        s => s,
    }
}

fn full(name: &Name) -> String {
    name.fullname(None)
}

/// The name a union branch goes by in Avro's JSON encoding.
fn branch_name(schema: &Schema) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int | Schema::Date | Schema::TimeMillis => "int".into(),
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes | Schema::BigDecimal => "bytes".into(),
        Schema::String | Schema::Uuid(_) => "string".into(),
        Schema::Array(_) => "array".into(),
        Schema::Map(_) => "map".into(),
        Schema::Record(r) => full(&r.name),
        Schema::Enum(e) => full(&e.name),
        Schema::Fixed(f) | Schema::Duration(f) => full(&f.name),
        Schema::Decimal(_) => "bytes".into(),
        Schema::Union(_) => "union".into(),
        Schema::Ref { name } => full(name),
    }
}

/// Take the union wrappers off, guided by the schema.
fn unwrap(json: &Value, schema: &Schema, names: &NamesRef) -> Value {
    match (named(schema, names), json) {
        (Schema::Union(u), Value::Object(o)) if o.len() == 1 => {
            let (k, v) = o.iter().next().expect("one");
            match u
                .variants()
                .iter()
                .find(|b| branch_name(b) == *k || short(&branch_name(b)) == k)
            {
                Some(b) => unwrap(v, b, names),
                None => json.clone(),
            }
        }
        (Schema::Record(r), Value::Object(o)) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let inner = r.fields.iter().find(|f| f.name == *k).map(|f| &f.schema);
                    (
                        k.clone(),
                        inner.map_or_else(|| v.clone(), |s| unwrap(v, s, names)),
                    )
                })
                .collect(),
        ),
        (Schema::Array(a), Value::Array(items)) => {
            Value::Array(items.iter().map(|i| unwrap(i, &a.items, names)).collect())
        }
        (Schema::Map(m), Value::Object(o)) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), unwrap(v, &m.types, names)))
                .collect(),
        ),
        _ => json.clone(),
    }
}

fn short(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

/// Avro value to Avro's JSON encoding.
fn to_json(value: Avro, schema: &Schema, names: &NamesRef) -> Result<Value, AvroJsonError> {
    let schema = named(schema, names);
    Ok(match (value, schema) {
        (Avro::Union(i, inner), Schema::Union(u)) => {
            let branch = u
                .variants()
                .get(i as usize)
                .ok_or_else(|| err("union branch out of range"))?;
            if matches!(*inner, Avro::Null) {
                Value::Null
            } else {
                let mut o = Map::new();
                o.insert(branch_name(branch), to_json(*inner, branch, names)?);
                Value::Object(o)
            }
        }
        (Avro::Record(fields), Schema::Record(r)) => {
            let mut o = Map::new();
            for (name, v) in fields {
                let s = r
                    .fields
                    .iter()
                    .find(|f| f.name == name)
                    .map(|f| &f.schema)
                    .ok_or_else(|| err(format!("field `{name}` is not in the schema")))?;
                o.insert(name, to_json(v, s, names)?);
            }
            Value::Object(o)
        }
        (Avro::Array(items), Schema::Array(a)) => Value::Array(
            items
                .into_iter()
                .map(|i| to_json(i, &a.items, names))
                .collect::<Result<_, _>>()?,
        ),
        (Avro::Map(m), Schema::Map(ms)) => Value::Object(
            m.into_iter()
                .map(|(k, v)| Ok((k, to_json(v, &ms.types, names)?)))
                .collect::<Result<_, AvroJsonError>>()?,
        ),
        (Avro::Enum(_, symbol), _) => Value::String(symbol),
        (v, _) => Value::try_from(v).map_err(err)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORDER: &str = r#"{"type": "record", "name": "Order", "namespace": "acme", "fields": [
        {"name": "id", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "note", "type": ["null", "string"], "default": null},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "DONE"]}},
        {"name": "parent", "type": ["null", "Order"], "default": null}]}"#;

    #[test]
    fn round_trips_in_avros_json_encoding() {
        let s = AvroSchema::parse(ORDER).unwrap();
        let v = json!({"id": "o1", "qty": 3, "note": {"string": "fragile"}, "tags": ["a"],
                       "status": "NEW",
                       "parent": {"acme.Order": {"id": "o0", "qty": 1, "note": null, "tags": [],
                                                 "status": "DONE", "parent": null}}});
        let bytes = s.encode(&v).unwrap();
        assert_eq!(s.decode(&bytes).unwrap(), v);
        // Bare union values and defaults are accepted too.
        let bare = json!({"id": "o2", "qty": 1, "note": "x", "status": "DONE"});
        let back = s.decode(&s.encode(&bare).unwrap()).unwrap();
        assert_eq!(back["note"], json!({"string": "x"}));
        assert_eq!(back["tags"], json!([]));
        assert_eq!(back["parent"], Value::Null);
    }

    #[test]
    fn values_that_do_not_fit_are_refused() {
        let s = AvroSchema::parse(ORDER).unwrap();
        assert!(
            s.encode(&json!({"id": 1, "qty": 3, "status": "NEW"}))
                .is_err()
        );
        assert!(
            s.encode(&json!({"id": "x", "qty": 3, "status": "LOST"}))
                .is_err()
        );
        assert!(
            s.encode(&json!({"id": "x", "status": "NEW"})).is_err(),
            "qty has no default"
        );
        assert!(AvroSchema::parse("{\"type\": \"nope\"}").is_err());
        assert!(s.decode(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn a_length_past_the_allocation_cap_is_refused_not_allocated() {
        let max = apache_avro::util::max_allocation_bytes(16 << 20);
        let s = AvroSchema::parse(r#""string""#).unwrap();
        // A string claiming one byte more than may be allocated (zig-zag varint length).
        let claimed = (max as u64 + 1) * 2;
        let mut bytes = Vec::new();
        let mut v = claimed;
        while v >= 0x80 {
            bytes.push((v as u8) | 0x80);
            v >>= 7;
        }
        bytes.push(v as u8);
        let e = s.decode(&bytes).unwrap_err().to_string();
        assert!(e.to_lowercase().contains("alloc"), "{e}");
    }
}
