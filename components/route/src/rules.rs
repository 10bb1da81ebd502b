//! Routing rules, free of the WIT bindings so they test natively.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Keep,
    Deliver {
        topic: Option<String>,
        key: Option<String>,
    },
    DeadLetter {
        topic: Option<String>,
        reason: String,
    },
    Drop,
}

/// How a rule's action is written; the key is resolved per event.
#[derive(Debug, Clone)]
enum ActionSpec {
    Keep,
    Deliver {
        topic: Option<String>,
        key: Option<String>,
    },
    DeadLetter {
        topic: Option<String>,
        reason: String,
    },
    Drop,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Exists,
    Missing,
    Glob,
}

#[derive(Debug)]
struct Condition {
    pointer: String,
    /// `pointer` split and unescaped once, not for every event.
    path: Vec<String>,
    op: Op,
    value: Value,
}

#[derive(Debug)]
struct Rule {
    pattern: String,
    when: Vec<Condition>,
    action: ActionSpec,
}

#[derive(Debug)]
pub struct Rules {
    rules: Vec<Rule>,
    default: ActionSpec,
    /// The JSON pointers conditions and keys read: only these parts of an event are parsed.
    pointers: Option<json_pick::Pointers>,
}

fn action(o: &serde_json::Map<String, Value>, at: &str) -> Result<ActionSpec, String> {
    let string = |name: &str| -> Result<Option<String>, String> {
        match o.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(format!("{at}.{name} must be a non-empty string")),
        }
    };
    let topic = string("topic")?;
    let key = string("key")?;
    if let Some(k) = &key
        && !k.starts_with('/')
    {
        return Err(format!(
            "{at}.key must be a JSON pointer such as \"/payload/id\""
        ));
    }
    let dlq = string("dlq")?;
    let drop = o.get("drop").and_then(Value::as_bool).unwrap_or(false);
    let keep = o.get("keep").and_then(Value::as_bool).unwrap_or(false);
    let chosen = [topic.is_some() || key.is_some(), dlq.is_some(), drop, keep]
        .iter()
        .filter(|b| **b)
        .count();
    if chosen != 1 {
        return Err(format!(
            "{at} needs exactly one action: `topic`/`key`, `dlq`, `drop` or `keep`"
        ));
    }
    Ok(if let Some(reason) = dlq {
        ActionSpec::DeadLetter {
            topic: string("dlqTopic")?,
            reason,
        }
    } else if drop {
        ActionSpec::Drop
    } else if keep {
        ActionSpec::Keep
    } else {
        ActionSpec::Deliver { topic, key }
    })
}

impl Rules {
    pub fn parse(text: &str) -> Result<Rules, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("config is not JSON: {e}"))?;
        let rules_v = v
            .get("rules")
            .and_then(Value::as_array)
            .ok_or("config needs `rules`, an array")?;
        let mut rules = Vec::new();
        let mut pointers: Vec<String> = Vec::new();
        for (i, r) in rules_v.iter().enumerate() {
            let at = format!("rules[{i}]");
            let o = r
                .as_object()
                .ok_or_else(|| format!("{at} must be an object"))?;
            for k in o.keys() {
                if ![
                    "type", "when", "topic", "key", "dlq", "dlqTopic", "drop", "keep",
                ]
                .contains(&k.as_str())
                {
                    return Err(format!("{at}: unknown field `{k}`"));
                }
            }
            let pattern = o
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_owned();
            let mut when = Vec::new();
            if let Some(conds) = o.get("when") {
                let conds = conds
                    .as_array()
                    .ok_or_else(|| format!("{at}.when must be an array"))?;
                for (j, c) in conds.iter().enumerate() {
                    let cat = format!("{at}.when[{j}]");
                    let pointer = c
                        .get("pointer")
                        .and_then(Value::as_str)
                        .filter(|p| p.starts_with('/'))
                        .ok_or_else(|| format!("{cat}.pointer must be a JSON pointer"))?
                        .to_owned();
                    let op = match c.get("op").and_then(Value::as_str).unwrap_or("eq") {
                        "eq" => Op::Eq,
                        "ne" => Op::Ne,
                        "gt" => Op::Gt,
                        "gte" => Op::Gte,
                        "lt" => Op::Lt,
                        "lte" => Op::Lte,
                        "in" => Op::In,
                        "exists" => Op::Exists,
                        "missing" => Op::Missing,
                        "glob" => Op::Glob,
                        other => return Err(format!("{cat}: unknown op `{other}`")),
                    };
                    let value = c.get("value").cloned().unwrap_or(Value::Null);
                    if matches!(op, Op::In) && !value.is_array() {
                        return Err(format!("{cat}: `in` needs an array value"));
                    }
                    if matches!(op, Op::Glob) && !value.is_string() {
                        return Err(format!("{cat}: `glob` needs a string value"));
                    }
                    when.push(Condition {
                        path: json_pick::segments(&pointer),
                        pointer,
                        op,
                        value,
                    });
                }
            }
            let action = action(o, &at)?;
            pointers.extend(when.iter().map(|c| c.pointer.clone()));
            if let ActionSpec::Deliver { key: Some(k), .. } = &action {
                pointers.push(k.clone());
            }
            rules.push(Rule {
                pattern,
                when,
                action,
            });
        }
        let default = match v.get("default") {
            None => ActionSpec::Keep,
            Some(Value::Object(o)) => action(o, "default")?,
            Some(_) => return Err("`default` must be an object such as {\"keep\": true}".into()),
        };
        if let ActionSpec::Deliver { key: Some(k), .. } = &default {
            pointers.push(k.clone());
        }
        pointers.sort();
        pointers.dedup();
        Ok(Rules {
            rules,
            default,
            pointers: (!pointers.is_empty()).then(|| json_pick::Pointers::new(&pointers)),
        })
    }

    /// The action for an event of `event_type` with `data`, where `payload` (if given) is a
    /// range of `data` known to hold well-formed JSON (the host's `packed-event.payload`).
    pub fn decide(
        &self,
        event_type: &str,
        data: &[u8],
        payload: Option<std::ops::Range<usize>>,
    ) -> Action {
        let doc: Option<Value> = self
            .pointers
            .as_ref()
            .and_then(|p| json_pick::pick_pointers_knowing(data, p, payload).ok());
        let spec = self
            .rules
            .iter()
            .find(|r| glob(&r.pattern, event_type) && r.when.iter().all(|c| holds(c, doc.as_ref())))
            .map_or(&self.default, |r| &r.action);
        match spec {
            ActionSpec::Keep => Action::Keep,
            ActionSpec::Drop => Action::Drop,
            ActionSpec::DeadLetter { topic, reason } => Action::DeadLetter {
                topic: topic.clone(),
                reason: reason.clone(),
            },
            ActionSpec::Deliver { topic, key } => Action::Deliver {
                topic: topic.clone(),
                key: key
                    .as_ref()
                    .and_then(|p| doc.as_ref()?.pointer(p))
                    .and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Null => None,
                        other => Some(other.to_string()),
                    }),
            },
        }
    }
}

/// The value at `path` (a split JSON pointer) in `doc`.
fn at<'v>(doc: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(doc, |v, segment| match v {
        Value::Object(o) => o.get(segment),
        Value::Array(a) => a.get(array_index(segment)?),
        _ => None,
    })
}

/// A JSON pointer's array index as RFC 6901 writes it (no sign, no leading zeros).
fn array_index(segment: &str) -> Option<usize> {
    if segment.starts_with('+') || (segment.starts_with('0') && segment.len() > 1) {
        return None;
    }
    segment.parse().ok()
}

fn holds(c: &Condition, doc: Option<&Value>) -> bool {
    let found = doc.and_then(|d| at(d, &c.path));
    match c.op {
        Op::Exists => found.is_some(),
        Op::Missing => found.is_none(),
        Op::Eq => found == Some(&c.value),
        Op::Ne => found != Some(&c.value),
        Op::In => c
            .value
            .as_array()
            .is_some_and(|a| found.is_some_and(|f| a.contains(f))),
        Op::Glob => {
            matches!((found, &c.value), (Some(Value::String(s)), Value::String(p)) if glob(p, s))
        }
        Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
            let ord = match (found, &c.value) {
                (Some(Value::Number(a)), Value::Number(b)) => a
                    .as_f64()
                    .zip(b.as_f64())
                    .and_then(|(a, b)| a.partial_cmp(&b)),
                (Some(Value::String(a)), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
                _ => None,
            };
            let Some(ord) = ord else { return false };
            match c.op {
                Op::Gt => ord.is_gt(),
                Op::Gte => ord.is_ge(),
                Op::Lt => ord.is_lt(),
                _ => ord.is_le(),
            }
        }
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"rules":[
        {"type":"invoice.*","when":[{"pointer":"/payload/amount","op":"gt","value":1000}],
         "topic":"invoices.large","key":"/payload/customer"},
        {"type":"invoice.*","topic":"invoices"},
        {"type":"*.deleted","dlq":"deletions are not accepted"},
        {"type":"debug.*","drop":true}],
      "default":{"keep":true}}"#;

    #[test]
    fn globs() {
        assert!(glob("invoice.*", "invoice.paid"));
        assert!(glob("*.deleted", "user.deleted"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("invoice.*", "invoices.paid"));
        assert!(!glob("a*b", "aXXc"));
    }

    #[test]
    fn first_matching_rule_decides() {
        let r = Rules::parse(CONFIG).unwrap();
        assert_eq!(
            r.decide(
                "invoice.paid",
                br#"{"payload":{"amount":5000,"customer":"c9"}}"#,
                None
            ),
            Action::Deliver {
                topic: Some("invoices.large".into()),
                key: Some("c9".into())
            }
        );
        assert_eq!(
            r.decide("invoice.paid", br#"{"payload":{"amount":5}}"#, None),
            Action::Deliver {
                topic: Some("invoices".into()),
                key: None
            }
        );
        assert_eq!(
            r.decide("user.deleted", b"{}", None),
            Action::DeadLetter {
                topic: None,
                reason: "deletions are not accepted".into()
            }
        );
        assert_eq!(r.decide("debug.trace", b"{}", None), Action::Drop);
        assert_eq!(
            r.decide("user.created", b"not even json", None),
            Action::Keep
        );
    }

    #[test]
    fn operators() {
        let r = Rules::parse(
            r#"{"rules":[{"when":[{"pointer":"/s","op":"in","value":["a","b"]},
                                  {"pointer":"/n","op":"lte","value":3},
                                  {"pointer":"/x","op":"missing"},
                                  {"pointer":"/g","op":"glob","value":"eu-*"}],"drop":true}]}"#,
        )
        .unwrap();
        assert_eq!(
            r.decide("t", br#"{"s":"a","n":3,"g":"eu-west"}"#, None),
            Action::Drop
        );
        assert_eq!(
            r.decide("t", br#"{"s":"c","n":3,"g":"eu-west"}"#, None),
            Action::Keep
        );
        assert_eq!(
            r.decide("t", br#"{"s":"a","n":4,"g":"eu-west"}"#, None),
            Action::Keep
        );
        assert_eq!(
            r.decide("t", br#"{"s":"a","n":3,"x":1,"g":"eu-west"}"#, None),
            Action::Keep
        );
        assert_eq!(
            r.decide("t", br#"{"s":"a","n":3,"g":"us-east"}"#, None),
            Action::Keep
        );
    }

    #[test]
    fn conditions_read_pointers_as_serde_json_does() {
        let r = Rules::parse(
            r#"{"rules":[{"when":[{"pointer":"/a~1b/1","op":"eq","value":"y"},
                                  {"pointer":"/l/01","op":"missing"}],"drop":true}]}"#,
        )
        .unwrap();
        let doc = br#"{"a/b":["x","y"],"l":["p","q"]}"#;
        let full: Value = serde_json::from_slice(doc).unwrap();
        assert_eq!(full.pointer("/a~1b/1"), Some(&Value::from("y")));
        assert_eq!(full.pointer("/l/01"), None, "no leading zeros");
        assert_eq!(r.decide("t", doc, None), Action::Drop);
    }

    #[test]
    fn a_known_payload_gives_the_same_decisions() {
        let r = Rules::parse(CONFIG).unwrap();
        let doc = br#"{"event_type":"invoice.paid","payload":{"amount":5000,"customer":"c9"}}"#;
        let at = doc.windows(10).position(|w| w == br#"{"amount":"#).unwrap();
        let payload = Some(at..doc.len() - 1);
        assert_eq!(
            r.decide("invoice.paid", doc, payload.clone()),
            r.decide("invoice.paid", doc, None)
        );
        let plain = Rules::parse(
            r#"{"rules":[{"when":[{"pointer":"/event_type","op":"eq",
            "value":"invoice.paid"}],"drop":true}]}"#,
        )
        .unwrap();
        assert_eq!(plain.decide("t", doc, payload), Action::Drop);
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(Rules::parse("{}").is_err());
        assert!(Rules::parse(r#"{"rules":[{"topic":"a","drop":true}]}"#).is_err());
        assert!(Rules::parse(r#"{"rules":[{"when":[{"pointer":"x"}],"drop":true}]}"#).is_err());
        assert!(
            Rules::parse(r#"{"rules":[{"when":[{"pointer":"/x","op":"like"}],"drop":true}]}"#)
                .is_err()
        );
        assert!(Rules::parse(r#"{"rules":[{"key":"nope"}]}"#).is_err());
    }
}
