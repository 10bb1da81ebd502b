//! The WIT bindings: the guest side of the boundary.

use std::cell::RefCell;

use crate::enrichment::{Config, Facts};

wit_bindgen::generate!({ world: "enricher", path: "../../wit" });

use exports::sluice::gateway::enrich::Guest;
use sluice::gateway::reference_tables;
use sluice::gateway::types::{BatchContext, Event, Header, Rejection, Violation};

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

struct Enrich;

impl Guest for Enrich {
    fn init(config: String) -> Result<(), String> {
        let config = Config::parse(&config)?;
        CONFIG.with(|c| *c.borrow_mut() = Some(config));
        Ok(())
    }

    fn enrich(ctx: BatchContext, events: Vec<Event>) -> Vec<Result<Event, Rejection>> {
        CONFIG.with(|c| {
            let c = c.borrow();
            let config = c.as_ref().expect("init ran before enrich");
            events
                .into_iter()
                .map(|mut e| {
                    let facts = Facts {
                        ingest_time_ms: ctx.ingest_time,
                        key_id: ctx.key_id.as_deref(),
                        tenant: &ctx.tenant,
                        event_id: &e.id,
                    };
                    let mut lookup = |table: &str, key: &str| reference_tables::lookup(table, key);
                    match crate::enrichment::enrich(config, &facts, &e.data, &mut lookup) {
                        Ok(crate::enrichment::Outcome::Json(data)) => {
                            e.data = data;
                            Ok(e)
                        }
                        Ok(crate::enrichment::Outcome::Headers(headers)) => {
                            for (name, value) in headers {
                                if !e.headers.iter().any(|h| h.name == name) {
                                    e.headers.push(Header {
                                        name,
                                        value: value.into_bytes(),
                                    });
                                }
                            }
                            Ok(e)
                        }
                        Err((path, message)) => Err(Rejection {
                            reason: "lookup-missing".into(),
                            violations: vec![Violation { path, message }],
                        }),
                    }
                })
                .collect()
        })
    }
}

export!(Enrich);
