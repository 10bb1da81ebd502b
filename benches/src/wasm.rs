//! The component runtime on its own: boundary cost per event, validate-stage throughput,
//! instantiation from `InstancePre` with the pooling allocator, first compile vs cached load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_runtime::{
    BatchContext, Event, NoHostServices, Runtime, RuntimeOptions, Stage, StageLabels, World,
};

use crate::pct;

fn ctx() -> BatchContext {
    BatchContext {
        tenant: "bench".into(),
        topic: "bench".into(),
        key_id: None,
        ingest_time: 0,
    }
}

fn event(i: usize, data: Vec<u8>) -> Event {
    Event {
        id: format!("e-{i}"),
        type_: "bench.event".into(),
        source: "bench".into(),
        time: 0,
        subject: None,
        key: None,
        headers: vec![],
        data,
        content_type: "application/json".into(),
    }
}

/// The bench's 1 KiB envelope.
fn envelope(i: usize) -> Vec<u8> {
    let head = format!(
        "{{\"event_type\":\"bench.event\",\"org_id\":{},\"payload\":{{\"data\":\"",
        i % 1000
    );
    let tail = "\"}}";
    let mut s = head;
    s.push_str(&"x".repeat(1024 - s.len() - tail.len()));
    s.push_str(tail);
    s.into_bytes()
}

/// A 20-field event of about 1 KiB, and a JSON Schema that types and bounds every field.
pub fn twenty_fields(i: usize) -> Vec<u8> {
    let mut payload = serde_json::Map::new();
    for f in 0..20 {
        let v = match f % 4 {
            0 => json!(format!("value-{i}-{f}-{}", "y".repeat(24))),
            1 => json!(i as i64 * 7 + f),
            2 => json!(f % 3 == 0),
            _ => json!((i as f64) * 0.5 + f as f64),
        };
        payload.insert(format!("field_{f:02}"), v);
    }
    let mut doc =
        json!({"event_id": format!("e-{i}"), "event_type": "bench.event", "org_id": i % 1000});
    doc["payload"] = Value::Object(payload);
    let mut text = serde_json::to_string(&doc).expect("JSON");
    // Pad to ~1 KiB with a trailing note field.
    let pad = 1024usize.saturating_sub(text.len() + 12);
    text.insert_str(
        text.len() - 1,
        &format!(",\"note\":\"{}\"", "n".repeat(pad)),
    );
    text.into_bytes()
}

pub fn twenty_field_schema() -> Value {
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for f in 0..20 {
        let name = format!("field_{f:02}");
        let s = match f % 4 {
            0 => json!({"type": "string", "minLength": 1, "maxLength": 64}),
            1 => json!({"type": "integer", "minimum": 0}),
            2 => json!({"type": "boolean"}),
            _ => json!({"type": "number", "maximum": 1e12}),
        };
        props.insert(name.clone(), s);
        required.push(name);
    }
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

/// 100 events made by `doc`, as produce packs them: parsed as envelopes (which delimits each
/// payload), then laid out in one buffer.
fn as_produce_packs(
    doc: fn(usize) -> Vec<u8>,
) -> (
    Vec<sluice_ingest::envelope::Event>,
    Vec<u8>,
    Vec<sluice_runtime::PackedEvent>,
) {
    let rules = sluice_ingest::envelope::TopicRules {
        key_field: Some("org_id"),
        log_append_time: false,
        max_message_bytes: 1 << 20,
        limits: sluice_ingest::envelope::Limits::DEFAULT,
    };
    let parsed: Vec<sluice_ingest::envelope::Event> = (0..100)
        .map(|i| {
            let text = String::from_utf8(doc(i)).expect("UTF-8");
            sluice_ingest::envelope::parse(&text, &rules, "bench", 0).expect("an envelope")
        })
        .collect();
    let batch =
        sluice_ingest::guest_events::pack(parsed.iter().map(|e| (&e.record, e.payload.clone())))
            .expect("fits");
    (parsed, batch.buffer, batch.events)
}

fn stage(rt: &Runtime, wasm: &[u8], world: World, config: Value) -> anyhow::Result<Stage> {
    let compiled = rt.compile(wasm)?;
    Ok(Stage::new(
        rt,
        &compiled,
        world,
        config.to_string(),
        Arc::new(NoHostServices),
        StageLabels {
            tenant: "bench".into(),
            component: "bench".into(),
        },
    )?)
}

/// Events per second and µs per event for `f` over `batch`-event calls for `secs`.
fn rate(secs: Duration, batch: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < secs {
        f();
        calls += 1;
    }
    let s = start.elapsed().as_secs_f64();
    let events = calls as f64 * batch as f64;
    (events / s, s / events * 1e6)
}

pub fn components(dir: &std::path::Path, secs: Duration) -> anyhow::Result<()> {
    let secs = secs.min(Duration::from_secs(5));
    let cache = dir.join("compiled");
    let _ = std::fs::remove_dir_all(&cache);
    let options = RuntimeOptions {
        cache_dir: Some(cache),
        ..RuntimeOptions::default()
    };

    // Compile once, then load from the cache in a fresh runtime.
    for (name, wasm) in [
        ("validate", sluice_builtins::VALIDATE),
        ("route", sluice_builtins::ROUTE),
    ] {
        let t = Instant::now();
        let first = Runtime::new(options.clone())?.compile(wasm)?;
        let compile = t.elapsed();
        let t = Instant::now();
        let cached = Runtime::new(options.clone())?.compile(wasm)?;
        let load = t.elapsed();
        assert!(!first.from_cache && cached.from_cache);
        println!(
            "component {name} ({} KiB): first compile {:.1} ms, cached load {:.2} ms",
            wasm.len() / 1024,
            compile.as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3
        );
    }

    let rt = Runtime::new(options)?;
    let batch: Vec<Event> = (0..100).map(|i| event(i, envelope(i))).collect();

    // Boundary cost: a router with no rules reads nothing of the data; what remains is moving
    // 100 events of 1 KiB into the guest and 100 decisions out.
    let router = stage(
        &rt,
        sluice_builtins::ROUTE,
        World::Router,
        json!({"rules": []}),
    )?;
    let (eps, us) = rate(secs, 100, || {
        router.route(&ctx(), &batch).expect("route");
    });
    println!(
        "boundary cost (route, no rules, batches of 100 x 1 KiB): {us:.3} us/event ({eps:.0} events/s on one core)"
    );
    // Both ways: a transformer that hands every event back.
    let echo = stage(
        &rt,
        sluice_builtins::testing::HOSTILE,
        World::Transformer,
        json!({"behaviour": "ok"}),
    )?;
    let (eps, us) = rate(secs, 100, || {
        echo.transform(&ctx(), &batch).expect("transform");
    });
    println!(
        "boundary cost both ways (transformer echoing 100 x 1 KiB events): {us:.3} us/event ({eps:.0} events/s)"
    );

    // Validate with a 20-field JSON Schema.
    let events: Vec<Event> = (0..100).map(|i| event(i, twenty_fields(i))).collect();
    let validator = stage(
        &rt,
        sluice_builtins::VALIDATE,
        World::Validator,
        json!({"pointer": "/payload", "schema": twenty_field_schema()}),
    )?;
    let verdicts = validator.validate(&ctx(), &events)?;
    anyhow::ensure!(
        verdicts
            .iter()
            .all(|v| matches!(v, sluice_runtime::Verdict::Accept)),
        "the bench events must be valid: {:?}",
        verdicts.first()
    );
    let (eps, us) = rate(secs, 100, || {
        validator.validate(&ctx(), &events).expect("validate");
    });
    println!(
        "validate stage, 20-field JSON Schema, ~{} B events, batches of 100: {eps:.0} events/s on one core ({us:.2} us/event)",
        events[0].data.len()
    );
    // The same events as produce packs them: parsed as envelopes (which delimits each
    // payload), then laid out in one buffer per batch.
    let (_, buffer, packed) = as_produce_packs(twenty_fields);
    anyhow::ensure!(
        validator.validate_packed(&ctx(), &buffer, &packed)? == verdicts,
        "packed and per-event verdicts differ"
    );
    let (eps, us) = rate(secs, 100, || {
        validator
            .validate_packed(&ctx(), &buffer, &packed)
            .expect("validate");
    });
    println!(
        "validate stage, the same batches packed in one buffer (validate-packed): {eps:.0} events/s on one core ({us:.2} us/event)"
    );

    // The other two stages of `sluice-bench pipeline`, on its 1 KiB envelopes: per event
    // (`list<event>` in, whole events or decisions out) and packed (one buffer in; changes or
    // decisions out).
    let (parsed, buffer, packed) = as_produce_packs(envelope);
    let per_event: Vec<Event> = parsed
        .iter()
        .map(|e| sluice_ingest::guest_events::to_event(&e.record))
        .collect();
    let enricher = stage(
        &rt,
        sluice_builtins::ENRICH,
        World::Enricher,
        json!({"fields": ["ingest_time", "producer_key_id", "tenant"]}),
    )?;
    let (eps, us) = rate(secs, 100, || {
        enricher.enrich(&ctx(), &per_event).expect("enrich");
    });
    println!(
        "enrich stage (3 fields), per event: {eps:.0} events/s on one core ({us:.2} us/event)"
    );
    let (eps, us) = rate(secs, 100, || {
        enricher
            .enrich_packed(&ctx(), &buffer, &packed)
            .expect("enrich");
    });
    println!("enrich stage (3 fields), packed: {eps:.0} events/s on one core ({us:.2} us/event)");
    let rules_router = stage(
        &rt,
        sluice_builtins::ROUTE,
        World::Router,
        json!({"rules": [
            {"type": "bench.*", "when": [{"pointer": "/org_id", "op": "gte", "value": 0}], "keep": true},
            {"type": "*", "dlq": "unknown event type"}]}),
    )?;
    anyhow::ensure!(
        rules_router.route_packed(&ctx(), &buffer, &packed)?
            == rules_router.route(&ctx(), &per_event)?,
        "packed and per-event decisions differ"
    );
    let (eps, us) = rate(secs, 100, || {
        rules_router.route(&ctx(), &per_event).expect("route");
    });
    println!(
        "route stage (type + /org_id rule), per event: {eps:.0} events/s on one core ({us:.2} us/event)"
    );
    let (eps, us) = rate(secs, 100, || {
        rules_router
            .route_packed(&ctx(), &buffer, &packed)
            .expect("route");
    });
    println!(
        "route stage (type + /org_id rule), packed: {eps:.0} events/s on one core ({us:.2} us/event)"
    );

    // Instantiation from InstancePre (pooling allocator), with and without the guest's init
    // (`pct` turns nanoseconds into microseconds).
    for (name, s) in [("route", &router), ("validate", &validator)] {
        for init in [false, true] {
            let mut lat = Vec::with_capacity(2000);
            for _ in 0..2000 {
                let t = Instant::now();
                s.instantiate_once(init)?;
                lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
            }
            lat.sort_unstable();
            println!(
                "instantiate {name} from InstancePre{}: p50 {:.1} us, p99 {:.1} us",
                if init { " + init(config)" } else { "" },
                pct(&lat, 0.5),
                pct(&lat, 0.99)
            );
        }
    }
    Ok(())
}
