//! What subscriptions and triggers share: event-type patterns, the targets they deliver to
//! and read from, and their CEL expressions: bounded before they are parsed (size, nesting,
//! comprehensions), and before each evaluation by the worst case their shape allows on that
//! event ([`CEL_EVAL_BUDGET`]); the delivery loop evaluates them off the async workers.

use serde_json::Value;

use crate::egress::Egress;

/// An event-type pattern: letters, digits, `._-:/` and `*`.
pub fn valid_pattern(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 256
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-*:/".contains(&b))
}

/// A compiled CEL expression with what bounds its cost: how often it names the event's
/// variables, and how many comprehensions (loops) it holds.
pub struct Cel {
    program: cel::Program,
    references: u64,
    loops: u32,
}

/// The work one evaluation may be expected to do, in byte-steps: the expression's references
/// to the event's variables × the event's bytes × (its longest list or map + 1) per loop. An
/// evaluation whose worst case on an event is over it is not run: the event is dead-lettered
/// with the reason.
pub const CEL_EVAL_BUDGET: u64 = 1 << 28;

impl std::fmt::Debug for Cel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cel")
            .field("references", &self.references)
            .field("loops", &self.loops)
            .finish_non_exhaustive()
    }
}

impl Cel {
    /// Refuse (with the reason) an evaluation that could cost more than [`CEL_EVAL_BUDGET`].
    fn affordable(&self, scope: &Scope) -> Result<(), String> {
        let per_loop = scope.longest.saturating_add(1);
        let cost = (0..self.loops).fold(
            self.references.max(1).saturating_mul(scope.bytes.max(1)),
            |c, _| c.saturating_mul(per_loop),
        );
        if cost > CEL_EVAL_BUDGET {
            return Err(format!(
                "not evaluated: on this event ({} bytes, a list or map of {}) the expression \
                 could take {cost} steps, over the budget of {CEL_EVAL_BUDGET}",
                scope.bytes, scope.longest
            ));
        }
        Ok(())
    }
}

/// A CEL field's program, if given; the error names the field.
pub fn compile_cel(what: &str, src: &Option<String>) -> Result<Option<Cel>, String> {
    src.as_ref()
        .map(|s| {
            let (references, loops) = check_cel_bounds(what, s)?;
            let program = cel::Program::compile(s)
                .map_err(|e| format!("{what}: not a CEL expression: {e}"))?;
            Ok(Cel {
                program,
                references,
                loops,
            })
        })
        .transpose()
}

/// The longest CEL expression a subscription or trigger may hold (bytes).
pub const CEL_MAX_BYTES: usize = 4096;
/// The deepest nesting of parentheses, brackets and braces (the parser recurses on each).
pub const CEL_MAX_DEPTH: usize = 32;
/// Comprehension macros (`all`, `exists`, `exists_one`, `map`, `filter`) in one expression:
/// each may loop over a list of the event, and nested ones multiply.
pub const CEL_MAX_COMPREHENSIONS: usize = 2;

/// Refuse, before parsing, an expression whose parse or evaluation could cost more than its
/// bounds: too long, nested too deep (the parser's recursion), or looping too much. Answers
/// how often it names the event's variables and how many loops it holds.
fn check_cel_bounds(what: &str, src: &str) -> Result<(u64, u32), String> {
    if src.len() > CEL_MAX_BYTES {
        return Err(format!(
            "{what}: {} bytes; a CEL expression may have {CEL_MAX_BYTES}",
            src.len()
        ));
    }
    let (mut depth, mut deepest, mut quote, mut escaped) = (0usize, 0usize, None, false);
    let mut outside = String::with_capacity(src.len());
    for c in src.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '(' | '[' | '{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        outside.push(c);
    }
    if deepest > CEL_MAX_DEPTH {
        return Err(format!(
            "{what}: nested {deepest} deep; a CEL expression may nest {CEL_MAX_DEPTH}"
        ));
    }
    let loops = ["all", "exists", "exists_one", "map", "filter"]
        .iter()
        .map(|m| outside.matches(&format!(".{m}(")).count())
        .sum::<usize>();
    if loops > CEL_MAX_COMPREHENSIONS {
        return Err(format!(
            "{what}: {loops} comprehensions (all/exists/map/filter); at most \
             {CEL_MAX_COMPREHENSIONS}"
        ));
    }
    let references = outside
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| VARIABLES.contains(w))
        .count() as u64;
    Ok((references, loops as u32))
}

/// The variables an expression sees ([`cel_context`]).
const VARIABLES: [&str; 5] = ["event", "data", "type", "key", "headers"];

/// What an expression is evaluated against: the variables, and the sizes that bound the cost.
pub struct Scope {
    ctx: cel::Context<'static, 'static>,
    bytes: u64,
    longest: u64,
}

/// The size of a JSON value in bytes (about), and its longest list or map.
fn shape(v: &Value) -> (u64, u64) {
    match v {
        Value::Array(a) => a
            .iter()
            .map(shape)
            .fold((2, a.len() as u64), |(b, l), (bi, li)| {
                (b + bi + 1, l.max(li))
            }),
        Value::Object(o) => o.iter().fold((2, o.len() as u64), |(b, l), (k, x)| {
            let (bi, li) = shape(x);
            (b + k.len() as u64 + bi + 4, l.max(li))
        }),
        Value::String(s) => (s.len() as u64 + 2, 0),
        _ => (8, 0),
    }
}

/// Where deliveries go and what they read (subscriptions and triggers alike): the URL's and
/// the topics' problems.
pub fn check_target(
    problems: &mut Vec<String>,
    egress: &Egress,
    url_field: &str,
    url: &str,
    topics: &[String],
    topic_exists: impl Fn(&str) -> bool,
) {
    if let Err(e) = egress.check_url(url) {
        problems.push(format!("{url_field}: {e}"));
    }
    if topics.is_empty() {
        problems.push("topics: name at least one topic".into());
    }
    for t in topics {
        if !topic_exists(t) {
            problems.push(format!("topics: `{t}` does not exist"));
        }
    }
}

/// The variables CEL expressions see for one event.
pub fn cel_context(event: &Value, event_type: &str, key: Option<&str>, headers: &Value) -> Scope {
    let mut ctx = cel::Context::default();
    let (event_bytes, event_longest) = shape(event);
    let (header_bytes, header_longest) = shape(headers);
    let data = event
        .get("payload")
        .or_else(|| event.get("data"))
        .cloned()
        .unwrap_or(Value::Null);
    for (name, v) in [
        ("event", event.clone()),
        ("data", data),
        ("type", Value::String(event_type.to_owned())),
        (
            "key",
            key.map_or(Value::Null, |k| Value::String(k.to_owned())),
        ),
        ("headers", headers.clone()),
    ] {
        if let Ok(v) = cel::to_value(v) {
            ctx.add_variable_from_value(name, v);
        }
    }
    Scope {
        ctx,
        bytes: event_bytes
            + header_bytes
            + event_type.len() as u64
            + key.map_or(0, |k| k.len() as u64),
        longest: event_longest.max(header_longest),
    }
}

/// Evaluate a condition: `Ok(true)` to deliver.
pub fn holds(cel: &Cel, scope: &Scope) -> Result<bool, String> {
    cel.affordable(scope)
        .map_err(|e| format!("the condition was {e}"))?;
    match cel.program.execute(&scope.ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("the condition gave {other:?}, not a boolean")),
        Err(e) => Err(format!("the condition failed: {e}")),
    }
}

/// Evaluate a mapping into the JSON body to deliver.
pub fn map(cel: &Cel, scope: &Scope) -> Result<Value, String> {
    cel.affordable(scope)
        .map_err(|e| format!("the input mapping was {e}"))?;
    let v = cel
        .program
        .execute(&scope.ctx)
        .map_err(|e| format!("the input mapping failed: {e}"))?;
    v.json()
        .map_err(|e| format!("the input mapping's value is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cel_expressions_are_bounded_before_they_are_parsed() {
        let ok = Some("data.severity >= 3 && type.startsWith(\"audit.\")".to_owned());
        assert!(compile_cel("condition", &ok).unwrap().is_some());
        let long = Some(format!("data.x == \"{}\"", "a".repeat(CEL_MAX_BYTES)));
        assert!(
            compile_cel("condition", &long)
                .unwrap_err()
                .contains("bytes")
        );
        // Deep nesting would recurse the parser (and could overflow its stack).
        let deep = Some(format!("{}1{}", "(".repeat(100), ")".repeat(100)));
        assert!(
            compile_cel("condition", &deep)
                .unwrap_err()
                .contains("nested")
        );
        let loops =
            Some("data.a.all(x, data.b.all(y, data.c.exists(z, x == y && y == z)))".to_owned());
        assert!(
            compile_cel("condition", &loops)
                .unwrap_err()
                .contains("comprehensions")
        );
        // Brackets and macro names inside strings do not count.
        let quoted = Some(format!("data.s == \"{}.all(\"", "(".repeat(100)));
        assert!(compile_cel("condition", &quoted).is_ok());
    }

    #[test]
    fn an_evaluation_whose_worst_case_is_over_the_budget_is_not_run() {
        let nested = compile_cel(
            "condition",
            &Some("data.a.exists(x, data.a.exists(y, x != y))".to_owned()),
        )
        .unwrap()
        .unwrap();
        assert_eq!((nested.references, nested.loops), (2, 2));
        let small = cel_context(
            &serde_json::json!({"data": {"a": [1, 2, 3]}}),
            "t",
            None,
            &serde_json::json!({}),
        );
        assert!(holds(&nested, &small).unwrap());
        // 20,000 items: 4e8 pairs, each over a ~100 KB event: refused before it starts.
        let big = serde_json::json!({"data": {"a": (0..20_000).collect::<Vec<_>>()}});
        let big = cel_context(&big, "t", None, &serde_json::json!({}));
        let e = holds(&nested, &big).unwrap_err();
        assert!(e.contains("over the budget"), "{e}");
        // A plain condition on the same event is cheap and runs.
        let plain = compile_cel("condition", &Some("type == \"t\"".to_owned()))
            .unwrap()
            .unwrap();
        assert!(holds(&plain, &big).unwrap());
        // Variable names inside strings are not references.
        let quoted = compile_cel("condition", &Some("type == \"data data data\"".to_owned()))
            .unwrap()
            .unwrap();
        assert_eq!(quoted.references, 1);
    }
}
