//! Parse only what is needed of a JSON document.
//!
//! Guests look at a few fields of each event (a condition on `/payload/amount`, the schema of
//! `/payload`, which top-level fields exist). Building a `serde_json::Value` of the whole event
//! is most of the time such a look costs; [`pick`] builds a sparse document holding only the
//! subtrees the given pointers name, scanning past everything else without allocating, and
//! [`top_level_keys`] lists an object's keys the same way. On the result, `Value::pointer`
//! answers as it would on the full document.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Split a JSON pointer into its unescaped segments.
pub fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// A sparse document with (at least) the subtrees at `pointers`. Pointers through arrays, or
/// the empty pointer, make it parse the whole document.
pub fn pick(data: &[u8], pointers: &[String]) -> Result<Value, serde_json::Error> {
    let paths: Vec<Vec<String>> = pointers.iter().map(|p| segments(p)).collect();
    let whole = paths.is_empty()
        || paths
            .iter()
            .any(|p| p.is_empty() || p.iter().any(|s| s.parse::<usize>().is_ok()));
    if whole {
        return serde_json::from_slice(data);
    }
    let refs: Vec<&[String]> = paths.iter().map(Vec::as_slice).collect();
    let mut de = serde_json::Deserializer::from_slice(data);
    let v = Pick(&refs).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// The keys of a top-level object (`None` if the document is not an object).
pub fn top_level_keys(data: &[u8]) -> Result<Option<Vec<String>>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let keys = (&mut de).deserialize_any(Keys)?;
    de.end()?;
    Ok(keys)
}

/// Keeps the subtrees at its paths (relative to where it stands); an empty path keeps all.
struct Pick<'a, 'p>(&'a [&'p [String]]);

impl<'de> DeserializeSeed<'de> for Pick<'_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.iter().any(|p| p.is_empty()) {
            return serde::Deserialize::deserialize(d);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let below: Vec<&[String]> = self
                .0
                .iter()
                .filter(|p| p[0] == key.as_ref())
                .map(|p| &p[1..])
                .collect();
            if below.is_empty() {
                map.next_value::<IgnoredAny>()?;
            } else {
                let v = map.next_value_seed(Pick(&below))?;
                out.insert(key.into_owned(), v);
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

struct Keys;

impl<'de> Visitor<'de> for Keys {
    type Value = Option<Vec<String>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            map.next_value::<IgnoredAny>()?;
            keys.push(key.into_owned());
        }
        Ok(Some(keys))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &[u8] =
        br#"{"a":{"b":1,"c":[1,2],"d":{"e":"x"}},"f":"skip me","g":[{"h":1}],"i":null}"#;

    #[test]
    fn picks_only_what_pointers_name() {
        let v = pick(DOC, &["/a/b".into(), "/a/d".into(), "/missing".into()]).unwrap();
        assert_eq!(v, serde_json::json!({"a": {"b": 1, "d": {"e": "x"}}}));
        assert_eq!(v.pointer("/a/d/e"), Some(&Value::from("x")));
        let full: Value = serde_json::from_slice(DOC).unwrap();
        for p in ["/a/b", "/a/d/e", "/f", "/g", "/i", "/nope"] {
            let sparse = pick(DOC, &[p.to_owned()]).unwrap();
            assert_eq!(sparse.pointer(p), full.pointer(p), "{p}");
        }
        assert_eq!(
            pick(DOC, &["/g/0/h".into()]).unwrap(),
            full,
            "arrays: the whole document"
        );
        assert_eq!(pick(DOC, &["".into()]).unwrap(), full);
        assert!(
            pick(b"{\"a\":1", &["/a".into()]).is_err(),
            "broken JSON is still an error"
        );
        assert!(pick(b"{\"a\":1} x", &["/a".into()]).is_err());
    }

    #[test]
    fn lists_top_level_keys() {
        assert_eq!(
            top_level_keys(DOC).unwrap(),
            Some(vec!["a".into(), "f".into(), "g".into(), "i".into()])
        );
        assert_eq!(top_level_keys(b"[1]").unwrap(), None);
        assert!(top_level_keys(b"{").is_err());
    }
}
