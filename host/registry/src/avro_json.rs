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

    /// Avro binary to JSON in Avro's JSON encoding. The bytes are walked first, so a value
    /// that would decode into more than [`MAX_DECODED_ITEMS`] array items and map entries, or
    /// nest deeper than [`MAX_DECODED_DEPTH`], is refused before anything is allocated (an
    /// array of a million `null`s takes a few bytes of input).
    pub fn decode(&self, mut bytes: &[u8]) -> Result<Value, AvroJsonError> {
        let resolved = ResolvedSchema::try_from(&self.schema).map_err(err)?;
        Walk {
            bytes,
            items: 0,
            names: resolved.get_names(),
        }
        .value(&self.schema, 0)?;
        let value = apache_avro::reader::datum::GenericDatumReader::builder(&self.schema)
            .build()
            .map_err(err)?
            .read_value(&mut bytes)
            .map_err(err)?;
        to_json(value, &self.schema, resolved.get_names())
    }
}

/// The most array items and map entries one decoded value may hold, counted over all its
/// arrays and maps.
pub const MAX_DECODED_ITEMS: u64 = 1 << 20;
/// The deepest one decoded value may nest (records, arrays, maps, unions).
pub const MAX_DECODED_DEPTH: usize = 64;

/// A pass over Avro binary that decodes nothing: it counts what decoding would make.
struct Walk<'a, 'n> {
    bytes: &'a [u8],
    items: u64,
    names: &'n NamesRef<'n>,
}

impl Walk<'_, '_> {
    fn long(&mut self) -> Result<i64, AvroJsonError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .bytes
                .split_first()
                .ok_or_else(|| err("truncated Avro value"))?;
            self.bytes = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        Err(err("an Avro varint longer than 10 bytes"))
    }

    fn skip(&mut self, n: usize) -> Result<(), AvroJsonError> {
        if n > self.bytes.len() {
            return Err(err("truncated Avro value"));
        }
        self.bytes = &self.bytes[n..];
        Ok(())
    }

    fn sized(&mut self) -> Result<(), AvroJsonError> {
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| err("a negative Avro length"))?;
        self.skip(n)
    }

    /// Array or map blocks: a count (negative: followed by the block's size), items, until 0.
    fn blocks(
        &mut self,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize) -> Result<(), AvroJsonError>,
    ) -> Result<(), AvroJsonError> {
        loop {
            let n = self.long()?;
            if n == 0 {
                return Ok(());
            }
            if n < 0 {
                self.long()?;
            }
            self.items = self.items.saturating_add(n.unsigned_abs());
            if self.items > MAX_DECODED_ITEMS {
                return Err(err(format!(
                    "the Avro value holds more than {MAX_DECODED_ITEMS} array items and map entries"
                )));
            }
            for _ in 0..n.unsigned_abs() {
                item(self, depth + 1)?;
            }
        }
    }

    fn value(&mut self, schema: &Schema, depth: usize) -> Result<(), AvroJsonError> {
        use apache_avro::schema::{InnerDecimalSchema, UuidSchema};
        if depth > MAX_DECODED_DEPTH {
            return Err(err(format!(
                "the Avro value nests deeper than {MAX_DECODED_DEPTH}"
            )));
        }
        match named(schema, self.names) {
            Schema::Null => Ok(()),
            Schema::Boolean => self.skip(1),
            Schema::Int
            | Schema::Long
            | Schema::Enum(_)
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long().map(drop),
            Schema::Float => self.skip(4),
            Schema::Double => self.skip(8),
            Schema::Bytes
            | Schema::String
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::Bytes | UuidSchema::String) => self.sized(),
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => self.sized(),
                InnerDecimalSchema::Fixed(f) => self.skip(f.size),
            },
            Schema::Fixed(f) | Schema::Duration(f) | Schema::Uuid(UuidSchema::Fixed(f)) => {
                self.skip(f.size)
            }
            Schema::Union(u) => {
                let i = self.long()?;
                let branch = usize::try_from(i)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| err(format!("no union branch {i}")))?;
                self.value(branch, depth + 1)
            }
            Schema::Record(r) => {
                for f in &r.fields {
                    self.value(&f.schema, depth + 1)?;
                }
                Ok(())
            }
            Schema::Array(a) => self.blocks(depth, |w, d| w.value(&a.items, d)),
            Schema::Map(m) => self.blocks(depth, |w, d| {
                w.sized()?;
                w.value(&m.types, d)
            }),
            Schema::Ref { name } => Err(err(format!("unknown Avro type `{}`", full(name)))),
        }
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
        // The walk finds the claimed length past the input before the decoder allocates.
        let e = s.decode(&bytes).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    fn zigzag(v: i64) -> Vec<u8> {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
        out
    }

    #[test]
    fn zero_size_items_cannot_amplify_a_small_input() {
        let s = AvroSchema::parse(r#"{"type": "array", "items": "null"}"#).unwrap();
        // Ten bytes claiming a billion nulls, in blocks just under the per-allocation cap.
        let mut bytes = Vec::new();
        for _ in 0..64 {
            bytes.extend(zigzag(16_000_000));
        }
        bytes.extend(zigzag(0));
        let e = s.decode(&bytes).unwrap_err().to_string();
        assert!(e.contains("array items"), "{e}");
        // Within the bound it decodes as before.
        let mut ok = zigzag(3);
        ok.extend(zigzag(0));
        assert_eq!(s.decode(&ok).unwrap(), json!([null, null, null]));
        // Nesting is bounded too (arrays of arrays, each a byte of input).
        let deep = AvroSchema::parse(
            r#"{"type": "record", "name": "N", "fields": [{"name": "n", "type": ["null", "N"]}]}"#,
        )
        .unwrap();
        let nested: Vec<u8> = std::iter::repeat_n(zigzag(1), 200)
            .flatten()
            .chain(zigzag(0))
            .collect();
        let e = deep.decode(&nested).unwrap_err().to_string();
        assert!(e.contains("nests deeper"), "{e}");
        let shallow: Vec<u8> = std::iter::repeat_n(zigzag(1), 5)
            .flatten()
            .chain(zigzag(0))
            .collect();
        assert!(deep.decode(&shallow).is_ok());
    }
}
