//! The WIT bindings: the guest side of the boundary.

use std::cell::RefCell;

use crate::cleaning::Config;

wit_bindgen::generate!({ world: "transformer", path: "../../wit" });

use exports::sluice::gateway::transform::{Guest, Output};
use sluice::gateway::types::{BatchContext, Event, Rejection, Violation};

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

struct BronzeToSilver;

impl Guest for BronzeToSilver {
    fn init(config: String) -> Result<(), String> {
        let config = Config::parse(&config)?;
        CONFIG.with(|c| *c.borrow_mut() = Some(config));
        Ok(())
    }

    fn transform(_ctx: BatchContext, events: Vec<Event>) -> Vec<Result<Vec<Output>, Rejection>> {
        CONFIG.with(|c| {
            let c = c.borrow();
            let config = c.as_ref().expect("init ran before transform");
            events
                .into_iter()
                .map(|e| {
                    let input = crate::cleaning::Input {
                        id: &e.id,
                        source: &e.source,
                        time_ms: e.time,
                        subject: e.subject.as_deref(),
                    };
                    match crate::cleaning::clean(config, &input, &e.data) {
                        Ok(out) => Ok(vec![Output {
                            topic: None,
                            event: Event {
                                id: out.id,
                                type_: out.event_type,
                                source: e.source.clone(),
                                time: e.time,
                                subject: e.subject.clone(),
                                key: out.key.map(String::into_bytes).or(e.key.clone()),
                                headers: e.headers.clone(),
                                data: out.data,
                                content_type: "application/json".into(),
                            },
                        }]),
                        Err(violations) => Err(Rejection {
                            reason: "not-cleanable".into(),
                            violations: violations
                                .into_iter()
                                .map(|(path, message)| Violation { path, message })
                                .collect(),
                        }),
                    }
                })
                .collect()
        })
    }
}

export!(BronzeToSilver);
