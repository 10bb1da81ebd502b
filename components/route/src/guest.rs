//! The WIT bindings: the guest side of the boundary.

use std::cell::RefCell;

use crate::rules::{Action, Rules};

wit_bindgen::generate!({ world: "packed-router", path: "../../wit" });

use exports::sluice::gateway::route::Guest;
use exports::sluice::gateway::route_packed::Guest as PackedGuest;
use sluice::gateway::types::{
    BatchContext, DeadLetter, Decision, Destination, Event, PackedEvent, Span,
};

thread_local! {
    static RULES: RefCell<Option<Rules>> = const { RefCell::new(None) };
}

struct Route;

/// The decision for an event of type `event_type` with `data` (in which `payload` is known to
/// be well-formed JSON, if given).
fn decide(
    rules: &Rules,
    event_type: &str,
    data: &[u8],
    payload: Option<std::ops::Range<usize>>,
) -> Decision {
    match rules.decide(event_type, data, payload) {
        Action::Keep => Decision::Deliver(Destination {
            topic: None,
            key: None,
        }),
        Action::Deliver { topic, key } => Decision::Deliver(Destination {
            topic,
            key: key.map(String::into_bytes),
        }),
        Action::DeadLetter { topic, reason } => Decision::DeadLetter(DeadLetter { topic, reason }),
        Action::Drop => Decision::Drop,
    }
}

fn with_rules<R>(f: impl FnOnce(&Rules) -> R) -> R {
    RULES.with(|r| {
        let r = r.borrow();
        f(r.as_ref().expect("init ran before route"))
    })
}

impl Guest for Route {
    fn init(config: String) -> Result<(), String> {
        let rules = Rules::parse(&config)?;
        RULES.with(|r| *r.borrow_mut() = Some(rules));
        Ok(())
    }

    fn route(_ctx: BatchContext, events: Vec<Event>) -> Vec<Decision> {
        with_rules(|rules| {
            events
                .iter()
                .map(|e| decide(rules, &e.type_, &e.data, None))
                .collect()
        })
    }
}

impl PackedGuest for Route {
    fn route_packed(
        _ctx: BatchContext,
        buffer: Vec<u8>,
        events: Vec<PackedEvent>,
    ) -> Vec<Decision> {
        let part = |s: Span| {
            let start = s.offset as usize;
            buffer
                .get(start..start.saturating_add(s.len as usize))
                .unwrap_or_default()
        };
        with_rules(|rules| {
            events
                .iter()
                .map(|e| {
                    // As the host lifts it into `event.type` for `route`.
                    let ty = part(e.type_);
                    let ty = match std::str::from_utf8(ty) {
                        Ok(t) => std::borrow::Cow::Borrowed(t),
                        Err(_) => String::from_utf8_lossy(ty),
                    };
                    let payload = e.payload.and_then(|p| {
                        json_pick::inner_range((e.data.offset, e.data.len), (p.offset, p.len))
                    });
                    decide(rules, &ty, part(e.data), payload)
                })
                .collect()
        })
    }
}

export!(Route);
