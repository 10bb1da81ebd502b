//! Parse only what is needed of a JSON document.
//!
//! Guests look at a few fields of each event (a condition on `/payload/amount`, the schema of
//! `/payload`, which top-level fields exist). Building a `serde_json::Value` of the whole event
//! is most of the time such a look costs; [`pick`] builds a sparse document holding only the
//! subtrees the given pointers name, scanning past everything else without allocating, and
//! [`top_level_keys`] lists an object's keys the same way. On the result, `Value::pointer`
//! answers as it would on the full document.
//!
//! Both first try the strict byte scanner of [`scan`] (no serde visitor, strings eight bytes at
//! a time, the picked subtrees alone parsed by serde_json); when it cannot prove the document
//! well-formed they take serde_json's path, which then gives the same answer or the error.

pub mod scan;

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::scan::{MAX_DEPTH, Scanner, Str};

/// Split a JSON pointer into its unescaped segments.
pub fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Where the span `inner` (offset, length) lies within the span `outer` of the same buffer, as
/// a range of `outer`'s bytes; `None` unless wholly inside. (A packed event's `payload` in its
/// `data`.)
pub fn inner_range(outer: (u32, u32), inner: (u32, u32)) -> Option<Range<usize>> {
    let start = inner.0.checked_sub(outer.0)? as usize;
    let end = start.checked_add(inner.1 as usize)?;
    (end <= outer.1 as usize).then_some(start..end)
}

/// JSON pointers split once, for picking them out of many documents.
#[derive(Debug, Clone)]
pub struct Pointers {
    paths: Vec<Vec<String>>,
    /// Pointers through arrays, or the empty pointer, need the whole document.
    whole: bool,
}

impl Pointers {
    pub fn new(pointers: &[String]) -> Pointers {
        let paths: Vec<Vec<String>> = pointers.iter().map(|p| segments(p)).collect();
        let whole = paths.is_empty()
            || paths
                .iter()
                .any(|p| p.is_empty() || p.iter().any(|s| s.parse::<usize>().is_ok()));
        Pointers { paths, whole }
    }
}

/// A sparse document with (at least) the subtrees at `pointers`. Pointers through arrays, or
/// the empty pointer, make it parse the whole document.
pub fn pick(data: &[u8], pointers: &[String]) -> Result<Value, serde_json::Error> {
    pick_pointers(data, &Pointers::new(pointers))
}

/// [`pick`] with the pointers split beforehand.
pub fn pick_pointers(data: &[u8], pointers: &Pointers) -> Result<Value, serde_json::Error> {
    pick_pointers_knowing(data, pointers, None)
}

/// [`pick_pointers`] where `known` is a range of `data` holding one value known to be
/// well-formed JSON (see [`Scanner::knowing`]): passed over unread unless a pointer goes in.
pub fn pick_pointers_knowing(
    data: &[u8],
    pointers: &Pointers,
    known: Option<Range<usize>>,
) -> Result<Value, serde_json::Error> {
    if pointers.whole {
        return serde_json::from_slice(data);
    }
    let refs: Vec<&[String]> = pointers.paths.iter().map(Vec::as_slice).collect();
    if let Some(v) = fast_pick(Scanner::knowing(data, known), &refs) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_slice(data);
    let v = Pick(&refs).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// The keys of a top-level object (`None` if the document is not an object).
pub fn top_level_keys(data: &[u8]) -> Result<Option<Vec<Cow<'_, str>>>, serde_json::Error> {
    top_level_keys_knowing(data, None)
}

/// [`top_level_keys`] where `known` is a range of `data` holding one value known to be
/// well-formed JSON (see [`Scanner::knowing`]): passed over unread.
pub fn top_level_keys_knowing(
    data: &[u8],
    known: Option<Range<usize>>,
) -> Result<Option<Vec<Cow<'_, str>>>, serde_json::Error> {
    if let Some(keys) = fast_keys(Scanner::knowing(data, known)) {
        return Ok(keys);
    }
    let mut de = serde_json::Deserializer::from_slice(data);
    let keys = (&mut de).deserialize_any(Keys)?;
    de.end()?;
    Ok(keys.map(|k| k.into_iter().map(Cow::Owned).collect()))
}

/// Which of some names a top-level object has as keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Members {
    /// Bit `i` is set when `names[i]` is a key.
    pub found: u64,
    /// The object has no members at all.
    pub empty: bool,
}

/// Which of `names` (at most 64) a top-level object has as keys (`None` if the document is
/// not an object), `known` as in [`top_level_keys_knowing`]. Nothing is allocated unless a
/// key has escapes.
pub fn top_level_members(
    data: &[u8],
    known: Option<Range<usize>>,
    names: &[&str],
) -> Result<Option<Members>, serde_json::Error> {
    assert!(names.len() <= 64, "at most 64 names");
    let bit = |key: &[u8]| {
        names
            .iter()
            .enumerate()
            .filter(|(_, n)| scan::same(n.as_bytes(), key))
            .fold(0u64, |bits, (i, _)| bits | 1 << i)
    };
    if let Some(members) = fast_members(Scanner::knowing(data, known), &bit) {
        return Ok(members);
    }
    Ok(top_level_keys(data)?.map(|keys| Members {
        found: keys.iter().fold(0, |bits, k| bits | bit(k.as_bytes())),
        empty: keys.is_empty(),
    }))
}

/// [`top_level_members`] by the strict scanner; `None` when not proven well-formed.
fn fast_members(s: Scanner<'_>, bit: &dyn Fn(&[u8]) -> u64) -> Option<Option<Members>> {
    let mut found = 0;
    let empty = fast_top_level(s, |s, key| {
        found |= if key.escapes == 0 {
            bit(&s.b[key.start..key.end])
        } else {
            bit(text(s, key)?.as_bytes())
        };
        Some(())
    })?;
    Some(empty.map(|empty| Members { found, empty }))
}

/// Walk a whole document by the strict scanner, calling `on_key` for each key of a top-level
/// object. `Some(Some(empty))` for an object (`empty`: it has no members), `Some(None)` for any
/// other value, `None` when not proven well-formed (or `on_key` gave up).
fn fast_top_level<'a>(
    mut s: Scanner<'a>,
    mut on_key: impl FnMut(&Scanner<'a>, &Str) -> Option<()>,
) -> Option<Option<bool>> {
    let data = s.b;
    let object = if s.peek()? == b'{' {
        s.i += 1;
        let empty = s.peek()? == b'}';
        if empty {
            s.i += 1;
        } else {
            loop {
                let key = s.string()?;
                on_key(&s, &key)?;
                s.eat(b':')?;
                s.skip(1)?;
                match s.peek()? {
                    b',' => s.i += 1,
                    b'}' => {
                        s.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        Some(empty)
    } else {
        s.skip(0)?;
        None
    };
    s.ws();
    (s.i == data.len()).then_some(object)
}

/// A scanned string's text: borrowed unless it has escapes.
fn text<'a>(s: &Scanner<'a>, key: &Str) -> Option<Cow<'a, str>> {
    if key.escapes == 0 {
        return std::str::from_utf8(&s.b[key.start..key.end])
            .ok()
            .map(Cow::Borrowed);
    }
    serde_json::from_slice(&s.b[key.start - 1..key.end + 1])
        .ok()
        .map(Cow::Owned)
}

/// [`top_level_keys`] by the strict scanner; `None` when not proven well-formed.
fn fast_keys(s: Scanner<'_>) -> Option<Option<Vec<Cow<'_, str>>>> {
    let mut keys = Vec::new();
    let object = fast_top_level(s, |s, key| {
        keys.push(text(s, key)?);
        Some(())
    })?;
    Some(object.map(|_| keys))
}

/// [`pick`] by the strict scanner; `None` when not proven well-formed.
fn fast_pick(mut s: Scanner<'_>, paths: &[&[String]]) -> Option<Value> {
    let data = s.b;
    let v = pick_value(&mut s, paths, 0)?;
    s.ws();
    (s.i == data.len()).then_some(v)
}

/// The value at the cursor as `Pick` builds it: objects keep the members the paths go into,
/// a subtree a path ends at is parsed whole (by serde_json, from its bytes alone; integers
/// directly), arrays the paths go into are null (a pointer through an array parses the whole
/// document instead).
fn pick_value(s: &mut Scanner, paths: &[&[String]], depth: u32) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    let first = s.peek()?;
    if first != b'{' || paths.iter().any(|p| p.is_empty()) {
        if matches!(first, b'-' | b'0'..=b'9')
            && let Some(v) = integer(s)
        {
            return Some(v);
        }
        let start = s.i;
        s.skip(depth)?;
        if first == b'[' && !paths.iter().any(|p| p.is_empty()) {
            return Some(Value::Null);
        }
        return serde_json::from_slice(&s.b[start..s.i]).ok();
    }
    s.i += 1;
    let mut out = Map::new();
    if s.peek()? == b'}' {
        s.i += 1;
        return Some(Value::Object(out));
    }
    loop {
        let key = s.string()?;
        // Compared as bytes while it needs no decoding (the scanner checked its UTF-8); only a
        // key a path goes into becomes a `String`.
        let raw = &s.b[key.start..key.end];
        let decoded = if key.escapes == 0 {
            None
        } else {
            Some(text(s, &key)?)
        };
        let name: &[u8] = decoded.as_deref().map_or(raw, str::as_bytes);
        s.eat(b':')?;
        if !paths.iter().any(|p| p[0].as_bytes() == name) {
            s.skip(depth + 1)?;
        } else {
            let below: Vec<&[String]> = paths
                .iter()
                .filter(|p| p[0].as_bytes() == name)
                .map(|p| &p[1..])
                .collect();
            let v = pick_value(s, &below, depth + 1)?;
            let name = match decoded {
                Some(d) => d.into_owned(),
                None => std::str::from_utf8(raw).ok()?.to_owned(),
            };
            out.insert(name, v);
        }
        match s.peek()? {
            b',' => s.i += 1,
            b'}' => {
                s.i += 1;
                return Some(Value::Object(out));
            }
            _ => return None,
        }
    }
}

/// A number at the cursor that is an integer serde_json holds exactly (an `i64` or `u64`), read
/// without serde_json; `None` (cursor unmoved) for anything else.
fn integer(s: &mut Scanner) -> Option<Value> {
    let start = s.i;
    let (float, text) = s.number()?;
    let v = if float {
        None
    } else {
        // ASCII digits with an optional sign, as the scanner checked.
        let text = std::str::from_utf8(text).ok()?;
        match text.strip_prefix('-') {
            // serde_json reads `-0` as the float -0.0.
            Some("0") => None,
            Some(_) => text.parse::<i64>().ok().map(Value::from),
            None => text.parse::<u64>().ok().map(Value::from),
        }
    };
    if v.is_none() {
        s.i = start;
    }
    v
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

    #[test]
    fn finds_top_level_members() {
        let names = ["f", "a", "x", "k\"q"];
        let members = |doc: &[u8]| top_level_members(doc, None, &names).unwrap();
        assert_eq!(
            members(DOC),
            Some(Members {
                found: 0b0011,
                empty: false
            })
        );
        assert_eq!(
            members(br#"{"k\"q":1,"\u0078":2}"#),
            Some(Members {
                found: 0b1100,
                empty: false
            }),
            "escaped keys are decoded"
        );
        assert_eq!(
            members(b" { } "),
            Some(Members {
                found: 0,
                empty: true
            })
        );
        assert_eq!(members(b"[1]"), None);
        assert!(top_level_members(b"{\"a\":}", None, &names).is_err());
        // The serde_json path (a document the scanner leaves to it) answers the same.
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(150), "]".repeat(150));
        assert_eq!(
            members(deep.as_bytes()),
            Some(Members {
                found: 0b0010,
                empty: false
            })
        );
    }

    #[test]
    fn inner_ranges() {
        assert_eq!(inner_range((10, 20), (15, 5)), Some(5..10));
        assert_eq!(inner_range((10, 20), (10, 20)), Some(0..20));
        assert_eq!(inner_range((10, 20), (9, 5)), None);
        assert_eq!(inner_range((10, 20), (25, 6)), None);
        assert_eq!(inner_range((10, 20), (u32::MAX, u32::MAX)), None);
    }

    #[test]
    fn a_known_value_is_passed_over_unread() {
        // Bytes 11..23 are "known" well-formed (they are not: `\x` is no escape), so they go unread.
        let doc = br#"{"a":1,"p":{"x":"\xff"},"b":2}"#;
        let known = Some(11..23);
        assert_eq!(&doc[11..23], br#"{"x":"\xff"}"#);
        assert!(top_level_keys(doc).is_err(), "read, the bytes are refused");
        assert_eq!(
            top_level_keys_knowing(doc, known.clone()).unwrap(),
            Some(vec!["a".into(), "p".into(), "b".into()])
        );
        let pointers = Pointers::new(&["/b".into()]);
        let v = pick_pointers_knowing(doc, &pointers, known.clone()).unwrap();
        assert_eq!(v, serde_json::json!({"b": 2}));
        // A pointer into the known value reads it (and here finds it broken).
        let into = Pointers::new(&["/p/x".into()]);
        assert!(pick_pointers_knowing(doc, &into, known.clone()).is_err());
        // Outside the known value everything is still checked.
        let broken = br#"{"a":1,"p":{"x":"\xff"},"b":2,}"#;
        assert!(top_level_keys_knowing(broken, known.clone()).is_err());
        // A range that does not start at a value is never taken for one.
        assert!(top_level_keys_knowing(doc, Some(12..23)).is_err());
        assert!(
            top_level_keys_knowing(doc, Some(11..99)).is_err(),
            "out of bounds: unused"
        );
    }

    /// The serde_json path alone, as it was before the scanner.
    fn serde_pick(data: &[u8], pointers: &[String]) -> Result<Value, serde_json::Error> {
        let paths: Vec<Vec<String>> = pointers.iter().map(|p| segments(p)).collect();
        let refs: Vec<&[String]> = paths.iter().map(Vec::as_slice).collect();
        let mut de = serde_json::Deserializer::from_slice(data);
        let v = Pick(&refs).deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    }

    fn serde_keys(data: &[u8]) -> Result<Option<Vec<String>>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(data);
        let keys = (&mut de).deserialize_any(Keys)?;
        de.end()?;
        Ok(keys)
    }

    const POINTERS: [&[&str]; 5] = [
        &["/a"],
        &["/a/b", "/f"],
        &["/a", "/a/d/e"],
        &["/k\"q", "/missing/x"],
        &["/i", "/g"],
    ];

    /// The scanner never answers where serde_json fails, and answers as it does elsewhere.
    fn agree(doc: &[u8]) -> (bool, bool) {
        let mut decided = (true, true);
        for pointers in POINTERS {
            let pointers: Vec<String> = pointers.iter().map(|p| p.to_string()).collect();
            let paths: Vec<Vec<String>> = pointers.iter().map(|p| segments(p)).collect();
            let refs: Vec<&[String]> = paths.iter().map(Vec::as_slice).collect();
            let slow = serde_pick(doc, &pointers);
            match fast_pick(Scanner::new(doc), &refs) {
                Some(v) => {
                    let slow = slow.unwrap_or_else(|e| {
                        panic!("scanner accepted what serde_json refuses ({e}): {doc:?}")
                    });
                    for p in &pointers {
                        assert_eq!(v.pointer(p), slow.pointer(p), "{p} in {doc:?}");
                    }
                }
                None => decided.0 &= slow.is_err(),
            }
        }
        let slow = serde_keys(doc);
        match fast_keys(Scanner::new(doc)) {
            Some(keys) => {
                let keys = keys.map(|k| k.into_iter().map(Cow::into_owned).collect::<Vec<_>>());
                assert_eq!(keys, slow.expect("serde_json accepts it too"), "{doc:?}");
            }
            None => decided.1 &= slow.is_err(),
        }
        decided
    }

    #[test]
    fn the_scanner_agrees_with_serde_json() {
        let corpus: [&[u8]; 18] = [
            br#"{"a":-0,"i":18446744073709551615,"f":-9223372036854775808}"#,
            br#"{"a":18446744073709551616,"i":-9223372036854775809,"f":[0,-1]}"#,
            DOC,
            br#"{"a":1,"a":{"b":2}}"#,
            br#"{"k\"q":"escaped key","a\u0062":1}"#,
            b"{\"a\":\"caf\xc3\xa9\"}",
            b"{\"a\":\"bad \xff utf-8\"}",
            b"{\"a\":\"raw\ncontrol\"}",
            br#"{"a":1e400}"#,
            br#"{"a":-0.0e-5,"f":[true,false,null,{}]}"#,
            br#" { "a" : { "b" : [ 1 , 2 ] } } "#,
            br#"{"a":1,}"#,
            br#"{"a":01}"#,
            br#"{"a":"\ud800"}"#,
            br#"[1,2,{"a":1}]"#,
            br#""just a string""#,
            br#"{"a":{"b":1}} trailing"#,
            br#"{"a":{"d":{"e":"x"}},"i":null,"g":"\u00e9\n"}"#,
        ];
        for doc in corpus {
            agree(doc);
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        agree(deep.as_bytes());
        // Well-formed documents are decided by the scanner itself.
        assert_eq!(agree(DOC), (true, true));
        assert_eq!(
            agree(br#"{"a":-0.0e-5,"f":[true,false,null,{}]}"#),
            (true, true)
        );
    }

    #[test]
    fn the_scanner_agrees_on_damaged_documents() {
        // A small LCG: reproducible, no dependency.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % n
        };
        let base: Vec<&[u8]> = vec![
            DOC,
            br#"{"a":{"b":12.5,"d":{"e":"\u00e9"}},"f":"x\"y","k\"q":[1,{"z":null}],"i":-3e2}"#,
        ];
        let alphabet = b"{}[]\":,\\ 0123456789eE.-+tfnulrsa\xc3\xa9\xff\n";
        for round in 0..20_000 {
            let mut doc = base[round % base.len()].to_vec();
            for _ in 0..1 + next(3) {
                let at = next(doc.len() + 1);
                match next(4) {
                    0 if at < doc.len() => doc[at] = alphabet[next(alphabet.len())],
                    1 => doc.insert(at, alphabet[next(alphabet.len())]),
                    2 if at < doc.len() => {
                        doc.remove(at);
                    }
                    _ => doc.truncate(at),
                }
            }
            agree(&doc);
        }
    }
}
