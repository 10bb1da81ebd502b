//! The WIT bindings: the guest side of the boundary.

use std::cell::RefCell;

use crate::enrichment::{Config, Facts, Fields, Outcome, splice};

wit_bindgen::generate!({ world: "packed-enricher", path: "../../wit" });

use exports::sluice::gateway::enrich::Guest;
use exports::sluice::gateway::enrich_packed::{Change, Enriched, Guest as PackedGuest, Insertion};
use sluice::gateway::reference_tables;
use sluice::gateway::types::{
    BatchContext, Event, Header, PackedEvent, Rejection, Span, Violation,
};

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

struct Enrich;

/// How many distinct recent additions `enrich-packed` looks for before writing one again.
const RECENT: usize = 4;

/// The configured fields as this batch fills them in.
fn fields(config: &Config, ctx: &BatchContext) -> Fields {
    Fields::new(
        config,
        &Facts {
            ingest_time_ms: ctx.ingest_time,
            key_id: ctx.key_id.as_deref(),
            tenant: &ctx.tenant,
        },
    )
}

/// One event's outcome, with the host's lookups.
fn outcome(
    config: &Config,
    fields: &Fields,
    event_id: &str,
    data: &[u8],
) -> Result<Outcome, Rejection> {
    let mut lookup = |table: &str, key: &str| reference_tables::lookup(table, key);
    crate::enrichment::enrich(config, fields, event_id, data, &mut lookup).map_err(
        |(path, message)| Rejection {
            reason: "lookup-missing".into(),
            violations: vec![Violation { path, message }],
        },
    )
}

fn with_config<R>(f: impl FnOnce(&Config) -> R) -> R {
    CONFIG.with(|c| {
        let c = c.borrow();
        f(c.as_ref().expect("init ran before enrich"))
    })
}

impl Guest for Enrich {
    fn init(config: String) -> Result<(), String> {
        let config = Config::parse(&config)?;
        CONFIG.with(|c| *c.borrow_mut() = Some(config));
        Ok(())
    }

    fn enrich(ctx: BatchContext, events: Vec<Event>) -> Vec<Result<Event, Rejection>> {
        with_config(|config| {
            let fields = fields(config, &ctx);
            events
                .into_iter()
                .map(|mut e| {
                    match outcome(config, &fields, &e.id, &e.data)? {
                        Outcome::Json(data) => e.data = data,
                        Outcome::Insert { text, .. } if text.is_empty() => {}
                        Outcome::Insert { at, text } => e.data = splice(&e.data, at, &text),
                        Outcome::Headers(headers) => {
                            for (name, value) in headers {
                                if !e.headers.iter().any(|h| h.name == name) {
                                    e.headers.push(Header {
                                        name,
                                        value: value.into_bytes(),
                                    });
                                }
                            }
                        }
                    }
                    Ok(e)
                })
                .collect()
        })
    }
}

impl PackedGuest for Enrich {
    fn enrich_packed(ctx: BatchContext, buffer: Vec<u8>, events: Vec<PackedEvent>) -> Enriched {
        let part = |s: Span| {
            let start = s.offset as usize;
            buffer
                .get(start..start.saturating_add(s.len as usize))
                .unwrap_or_default()
        };
        with_config(|config| {
            let fields = fields(config, &ctx);
            let mut out: Vec<u8> = Vec::new();
            // The last few texts written, so events getting the same additions share them.
            let mut recent: Vec<Span> = Vec::with_capacity(RECENT);
            let mut put = |out: &mut Vec<u8>, text: &[u8]| -> Span {
                if let Some(s) = recent
                    .iter()
                    .find(|s| out[s.offset as usize..(s.offset + s.len) as usize] == *text)
                {
                    return *s;
                }
                let s = Span {
                    offset: out.len() as u32,
                    len: text.len() as u32,
                };
                out.extend_from_slice(text);
                if recent.len() == RECENT {
                    recent.remove(0);
                }
                recent.push(s);
                s
            };
            let changes = events
                .iter()
                .map(|e| {
                    let id = String::from_utf8_lossy(part(e.id));
                    Ok(match outcome(config, &fields, &id, part(e.data))? {
                        Outcome::Insert { text, .. } if text.is_empty() => Change::Keep,
                        Outcome::Insert { at, text } => Change::Insert(Insertion {
                            at: at as u32,
                            text: put(&mut out, &text),
                        }),
                        Outcome::Json(data) => Change::Replace(put(&mut out, &data)),
                        Outcome::Headers(headers) => Change::Headers(
                            headers
                                .into_iter()
                                .map(|(name, value)| Header {
                                    name,
                                    value: value.into_bytes(),
                                })
                                .collect(),
                        ),
                    })
                })
                .collect();
            Enriched {
                buffer: out,
                changes,
            }
        })
    }
}

export!(Enrich);
