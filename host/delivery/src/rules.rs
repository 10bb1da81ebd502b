//! What subscriptions and triggers share: event-type patterns, the targets they deliver to
//! and read from, and their CEL expressions (bounded before they are parsed, evaluated per
//! event).

use serde_json::Value;

use crate::egress::Egress;

/// An event-type pattern: letters, digits, `._-:/` and `*`.
pub fn valid_pattern(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 256
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-*:/".contains(&b))
}

/// A CEL field's program, if given; the error names the field.
pub fn compile_cel(what: &str, src: &Option<String>) -> Result<Option<cel::Program>, String> {
    src.as_ref()
        .map(|s| {
            check_cel_bounds(what, s)?;
            cel::Program::compile(s).map_err(|e| format!("{what}: not a CEL expression: {e}"))
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
/// bounds: too long, nested too deep (the parser's recursion), or looping too much.
fn check_cel_bounds(what: &str, src: &str) -> Result<(), String> {
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
    Ok(())
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
pub fn cel_context(
    event: &Value,
    event_type: &str,
    key: Option<&str>,
    headers: &Value,
) -> cel::Context<'static, 'static> {
    let mut ctx = cel::Context::default();
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
    ctx
}

/// Evaluate a condition: `Ok(true)` to deliver.
pub fn holds(program: &cel::Program, ctx: &cel::Context) -> Result<bool, String> {
    match program.execute(ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("the condition gave {other:?}, not a boolean")),
        Err(e) => Err(format!("the condition failed: {e}")),
    }
}

/// Evaluate a mapping into the JSON body to deliver.
pub fn map(program: &cel::Program, ctx: &cel::Context) -> Result<Value, String> {
    let v = program
        .execute(ctx)
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
}
