//! The WIT bindings: the guest side of the boundary.

use std::borrow::Cow;
use std::cell::RefCell;

use crate::enrichment::{Config, Facts, Fields, Missing, Outcome, splice};

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
    payload: Option<std::ops::Range<usize>>,
) -> Result<Outcome, Rejection> {
    let mut lookup = |table: &str, key: &str| reference_tables::lookup(table, key);
    crate::enrichment::enrich(config, fields, event_id, data, &mut lookup, payload).map_err(
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
                    match outcome(config, &fields, &e.id, &e.data, None)? {
                        Outcome::Json(data) => e.data = data,
                        Outcome::Insert { missing, .. } if missing.fields == 0 => {}
                        Outcome::Insert { at, missing } => {
                            e.data = splice(&e.data, at, &fields.text(missing, &e.id))
                        }
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
            let put = |out: &mut Vec<u8>, text: &[u8]| -> Span {
                let s = Span {
                    offset: out.len() as u32,
                    len: text.len() as u32,
                };
                out.extend_from_slice(text);
                s
            };
            // The text of each set of missing fields that is the same for every event of the
            // batch, written once (most batches need one or two).
            let mut shared: Vec<(Missing, Span)> = Vec::new();
            let changes = events
                .iter()
                .map(|e| {
                    let id = utf8(part(e.id));
                    let payload = e.payload.and_then(|p| {
                        json_pick::inner_range((e.data.offset, e.data.len), (p.offset, p.len))
                    });
                    Ok(
                        match outcome(config, &fields, &id, part(e.data), payload)? {
                            Outcome::Insert { missing, .. } if missing.fields == 0 => Change::Keep,
                            Outcome::Insert { at, missing } if fields.shared(missing) => {
                                let text = match shared.iter().find(|(m, _)| *m == missing) {
                                    Some((_, span)) => *span,
                                    None => {
                                        let span = put(&mut out, &fields.text(missing, &id));
                                        shared.push((missing, span));
                                        span
                                    }
                                };
                                Change::Insert(Insertion {
                                    at: at as u32,
                                    text,
                                })
                            }
                            Outcome::Insert { at, missing } => Change::Insert(Insertion {
                                at: at as u32,
                                text: put(&mut out, &fields.text(missing, &id)),
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
                        },
                    )
                })
                .collect();
            Enriched {
                buffer: out,
                changes,
            }
        })
    }
}

/// Text the host sent as UTF-8, borrowed when it is (as it always is).
fn utf8(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

export!(Enrich);
