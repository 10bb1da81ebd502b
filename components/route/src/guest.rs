//! The WIT bindings: the guest side of the boundary.

use std::cell::RefCell;

use crate::rules::{Action, Rules};

wit_bindgen::generate!({ world: "router", path: "../../wit" });

use exports::sluice::gateway::route::{DeadLetter, Decision, Destination, Guest};
use sluice::gateway::types::{BatchContext, Event};

thread_local! {
    static RULES: RefCell<Option<Rules>> = const { RefCell::new(None) };
}

struct Route;

impl Guest for Route {
    fn init(config: String) -> Result<(), String> {
        let rules = Rules::parse(&config)?;
        RULES.with(|r| *r.borrow_mut() = Some(rules));
        Ok(())
    }

    fn route(_ctx: BatchContext, events: Vec<Event>) -> Vec<Decision> {
        RULES.with(|r| {
            let r = r.borrow();
            let rules = r.as_ref().expect("init ran before route");
            events
                .iter()
                .map(|e| match rules.decide(&e.type_, &e.data) {
                    Action::Keep => Decision::Deliver(Destination {
                        topic: None,
                        key: None,
                    }),
                    Action::Deliver { topic, key } => Decision::Deliver(Destination {
                        topic,
                        key: key.map(String::into_bytes),
                    }),
                    Action::DeadLetter { topic, reason } => {
                        Decision::DeadLetter(DeadLetter { topic, reason })
                    }
                    Action::Drop => Decision::Drop,
                })
                .collect()
        })
    }
}

export!(Route);
