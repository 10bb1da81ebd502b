//! The WIT bindings: the guest side of the boundary.

use std::cell::RefCell;

use crate::check::{Checker, Config};

wit_bindgen::generate!({ world: "packed-validator", path: "../../wit" });

use exports::sluice::gateway::validate::Guest;
use exports::sluice::gateway::validate_packed::Guest as PackedGuest;
use sluice::gateway::schemas;
use sluice::gateway::types::{
    BatchContext, Event, PackedEvent, Rejection, Span, Verdict, Violation,
};

thread_local! {
    static CHECKER: RefCell<Option<Checker>> = const { RefCell::new(None) };
}

struct Validate;

impl Guest for Validate {
    fn init(config: String) -> Result<(), String> {
        let config = Config::parse(&config)?;
        let schema = match &config.subject {
            Some(subject) => Some(
                schemas::latest(subject)
                    .ok_or_else(|| format!("no schema is registered under subject `{subject}`"))?,
            ),
            None => None,
        };
        let typed = config
            .types
            .iter()
            .map(|(pattern, subject)| {
                schemas::latest(subject)
                    .map(|s| (s.schema_type.into(), s.definition))
                    .ok_or_else(|| {
                        format!(
                            "no schema is registered under subject `{subject}` (for `{pattern}`)"
                        )
                    })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let checker = Checker::new(
            config,
            schema.map(|s| (s.schema_type.into(), s.definition)),
            typed,
        )?;
        CHECKER.with(|c| *c.borrow_mut() = Some(checker));
        Ok(())
    }

    fn validate(_ctx: BatchContext, events: Vec<Event>) -> Vec<Verdict> {
        verdicts(events.len(), |i| {
            let e = &events[i];
            // Envelopes are JSON; raw records (any other content type) are whole.
            let envelope = e.content_type == "application/json";
            (&e.data[..], envelope, &e.type_[..], None)
        })
    }
}

impl PackedGuest for Validate {
    fn validate_packed(
        _ctx: BatchContext,
        buffer: Vec<u8>,
        events: Vec<PackedEvent>,
    ) -> Vec<Verdict> {
        let part = |s: Span| {
            let start = s.offset as usize;
            buffer.get(start..start.saturating_add(s.len as usize))
        };
        verdicts(events.len(), |i| {
            let e = &events[i];
            let data = part(e.data).unwrap_or_default();
            // A type that is not UTF-8 matches no pattern (the host sends UTF-8).
            let ty = part(e.type_)
                .and_then(|t| std::str::from_utf8(t).ok())
                .unwrap_or_default();
            let payload = e.payload.and_then(part).filter(|_| e.json);
            (data, e.json, ty, payload)
        })
    }
}

/// What `verdicts` needs of one event: its data, whether it is a JSON envelope, its type, and
/// its envelope's `payload` member when the host delimited it.
type Parts<'a> = (&'a [u8], bool, &'a str, Option<&'a [u8]>);

/// A verdict for each of `n` events, `event(i)` giving the i-th one's parts.
fn verdicts<'a>(n: usize, event: impl Fn(usize) -> Parts<'a>) -> Vec<Verdict> {
    CHECKER.with(|c| {
        let mut c = c.borrow_mut();
        let Some(checker) = c.as_mut() else {
            return (0..n)
                .map(|_| {
                    reject(
                        "not-initialized",
                        vec![("".into(), "the stage was not initialized".into())],
                    )
                })
                .collect();
        };
        // Held to the configured subject when there is one (the topic's value subject).
        let subject = checker.subject().map(str::to_owned);
        let mut lookup = |id: u32| {
            match &subject {
                Some(s) => schemas::in_subject(s, id),
                None => schemas::by_id(id),
            }
            .map(|s| (s.schema_type.into(), s.definition))
        };
        (0..n)
            .map(|i| {
                let (data, envelope, ty, payload) = event(i);
                if let Some(payload) = payload
                    && checker.valid_payload(payload, ty)
                {
                    return Verdict::Accept;
                }
                match checker.check(data, envelope, ty, &mut lookup) {
                    Ok(()) => Verdict::Accept,
                    Err(failure) => reject(failure.reason, failure.violations),
                }
            })
            .collect()
    })
}

fn reject(reason: &str, violations: Vec<(String, String)>) -> Verdict {
    Verdict::Reject(Rejection {
        reason: reason.to_owned(),
        violations: violations
            .into_iter()
            .map(|(path, message)| Violation { path, message })
            .collect(),
    })
}

impl From<schemas::SchemaType> for crate::check::SchemaType {
    fn from(t: schemas::SchemaType) -> Self {
        match t {
            schemas::SchemaType::Avro => crate::check::SchemaType::Avro,
            schemas::SchemaType::Json => crate::check::SchemaType::Json,
            schemas::SchemaType::Protobuf => crate::check::SchemaType::Protobuf,
        }
    }
}

export!(Validate);
