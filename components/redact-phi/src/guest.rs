//! The WIT bindings: the guest side of the boundary.

use std::cell::RefCell;

use crate::redaction::Config;

wit_bindgen::generate!({ world: "transformer", path: "../../wit" });

use exports::sluice::gateway::transform::{Guest, Output};
use sluice::gateway::types::{BatchContext, Event, Header, Rejection, Violation};

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

struct RedactPhi;

impl Guest for RedactPhi {
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
                .map(|mut e| match crate::redaction::redact(config, &e.data) {
                    Ok((data, count)) => {
                        e.data = data;
                        e.headers.retain(|h| h.name != "sluice_redacted");
                        e.headers.push(Header {
                            name: "sluice_redacted".into(),
                            value: count.to_string().into_bytes(),
                        });
                        Ok(vec![Output {
                            topic: None,
                            event: e,
                        }])
                    }
                    Err(message) => Err(Rejection {
                        reason: "not-redactable".into(),
                        violations: vec![Violation {
                            path: String::new(),
                            message,
                        }],
                    }),
                })
                .collect()
        })
    }
}

export!(RedactPhi);
