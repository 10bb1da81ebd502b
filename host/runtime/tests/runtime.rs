//! The runtime against the real built-in and hostile components.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_runtime::{
    BatchContext, CallError, Change, Decision, ErrorKind, Event, Header, HostServices,
    NoHostServices, PackedEvent, Runtime, RuntimeError, RuntimeOptions, Schema, Span, Stage,
    StageLabels, Verdict, World,
};

fn runtime() -> Runtime {
    Runtime::new(RuntimeOptions {
        call_timeout: Duration::from_millis(300),
        ..RuntimeOptions::default()
    })
    .unwrap()
}

fn labels(component: &str) -> StageLabels {
    StageLabels {
        tenant: "acme".into(),
        component: component.into(),
    }
}

fn ctx() -> BatchContext {
    BatchContext {
        tenant: "acme".into(),
        topic: "orders".into(),
        key_id: Some("k1".into()),
        ingest_time: 1_735_207_200_000,
    }
}

fn event(id: &str, ty: &str, data: &str) -> Event {
    Event {
        id: id.into(),
        type_: ty.into(),
        source: "test".into(),
        time: 1_735_207_200_000,
        subject: None,
        key: None,
        headers: vec![Header {
            name: "h".into(),
            value: b"v".to_vec(),
        }],
        data: data.as_bytes().to_vec(),
        content_type: "application/json".into(),
    }
}

fn stage(rt: &Runtime, wasm: &[u8], world: World, config: &str) -> Result<Stage, RuntimeError> {
    let compiled = rt.compile(wasm)?;
    Stage::new(
        rt,
        &compiled,
        world,
        config.into(),
        Arc::new(NoHostServices),
        labels("test"),
    )
}

const SCHEMA: &str = r#"{"pointer":"/payload","schema":{"type":"object","required":["amount"],
    "properties":{"amount":{"type":"number","minimum":0}}}}"#;

#[test]
fn validate_accepts_and_rejects_per_event_and_reuses_its_instance() {
    let rt = runtime();
    let s = stage(&rt, sluice_builtins::VALIDATE, World::Validator, SCHEMA).unwrap();
    for _ in 0..5 {
        let verdicts = s
            .validate(
                &ctx(),
                &[
                    event("1", "t", r#"{"payload":{"amount":1}}"#),
                    event("2", "t", r#"{"payload":{"amount":-1}}"#),
                    event("3", "t", "not json"),
                ],
            )
            .unwrap();
        assert_eq!(verdicts[0], Verdict::Accept);
        let Verdict::Reject(r) = &verdicts[1] else {
            panic!("negative amount accepted")
        };
        assert_eq!(r.reason, "schema-violation");
        assert_eq!(r.violations[0].path, "/payload/amount");
        let Verdict::Reject(r) = &verdicts[2] else {
            panic!("non-JSON accepted")
        };
        assert_eq!(r.reason, "invalid-json");
    }
    let stats = s.stats();
    assert_eq!(stats.calls, 5);
    assert_eq!(stats.events, 15);
    assert_eq!(stats.instantiations, 1, "one instance serves every batch");
}

#[test]
fn packed_batches_get_the_verdicts_of_per_event_calls() {
    let rt = runtime();
    let config = r#"{"pointer":"/payload","schema":{"type":"object","required":["amount"],
        "properties":{"amount":{"type":"number","minimum":0}}},
        "types":[]}"#;
    let s = stage(&rt, sluice_builtins::VALIDATE, World::Validator, config).unwrap();
    assert!(s.packs(), "the built-in validator exports validate-packed");
    let router = stage(
        &rt,
        sluice_builtins::ROUTE,
        World::Router,
        r#"{"rules":[]}"#,
    )
    .unwrap();
    assert!(router.packs(), "so does the built-in router");
    assert!(
        matches!(
            router.validate_packed(&ctx(), b"", &[]),
            Err(CallError::BadOutput(_))
        ),
        "but it is no validator"
    );
    let transformer = stage(
        &rt,
        sluice_builtins::testing::HOSTILE,
        World::Transformer,
        r#"{"behaviour":"ok"}"#,
    )
    .unwrap();
    assert!(!transformer.packs(), "transformers never pack");

    let mut raw = event("4", "t", r#"{"amount":-5}"#);
    raw.content_type = "text/plain".into();
    let events = vec![
        event("1", "t", r#"{"payload":{"amount":1}}"#),
        event("2", "t", r#"{"payload":{"amount":-1}}"#),
        event("3", "other", "not json"),
        raw,
        event("5", "t", r#"{"payload":{}}"#),
        event("6", "t", r#"{"note":"x","payload":{"amount":0.5}}"#),
    ];
    // The events back to back, with their types, as the host packs stored records.
    let put = |buffer: &mut Vec<u8>, bytes: &[u8]| {
        let span = Span {
            offset: buffer.len() as u32,
            len: bytes.len() as u32,
        };
        buffer.extend_from_slice(bytes);
        span
    };
    // With the envelope's `payload` delimited (as the host does; here it is the last member)
    // and without.
    let with_payload = |hint: bool| {
        let mut buffer = Vec::new();
        let packed: Vec<PackedEvent> = events
            .iter()
            .map(|e| {
                let text = String::from_utf8_lossy(&e.data).into_owned();
                let payload = text
                    .find(r#""payload":"#)
                    .map(|at| (at + 10, text.len() - 1));
                let data_at = buffer.len() as u32;
                let data = put(&mut buffer, &e.data);
                let type_ = put(&mut buffer, e.type_.as_bytes());
                let id = put(&mut buffer, e.id.as_bytes());
                PackedEvent {
                    data,
                    type_,
                    id,
                    json: e.content_type == "application/json",
                    payload: payload.filter(|_| hint).map(|(from, to)| Span {
                        offset: data_at + from as u32,
                        len: (to - from) as u32,
                    }),
                }
            })
            .collect();
        (buffer, packed)
    };
    let one_by_one = s.validate(&ctx(), &events).unwrap();
    let (buffer, packed) = with_payload(false);
    let in_one_buffer = s.validate_packed(&ctx(), &buffer, &packed).unwrap();
    assert_eq!(in_one_buffer, one_by_one);
    let (hinted_buffer, hinted) = with_payload(true);
    assert!(hinted[0].payload.is_some() && hinted[2].payload.is_none());
    assert_eq!(
        s.validate_packed(&ctx(), &hinted_buffer, &hinted).unwrap(),
        one_by_one,
        "a delimited payload changes no verdict, nor a rejection's path"
    );
    let accepted: Vec<bool> = in_one_buffer
        .iter()
        .map(|v| *v == Verdict::Accept)
        .collect();
    assert_eq!(accepted, [true, false, false, false, false, true]);
    // A span outside the buffer is an event with no data, not a trap.
    let outside = [PackedEvent {
        data: Span {
            offset: 1 << 30,
            len: 10,
        },
        type_: Span { offset: 0, len: 0 },
        id: Span { offset: 0, len: 0 },
        json: true,
        payload: None,
    }];
    let v = s.validate_packed(&ctx(), &buffer, &outside).unwrap();
    assert!(
        matches!(&v[0], Verdict::Reject(r) if r.reason == "invalid-json"),
        "{v:?}"
    );
}

#[test]
fn wrong_world_garbage_and_refused_config_fail_at_setup() {
    let rt = runtime();
    let wrong = stage(&rt, sluice_builtins::VALIDATE, World::Transformer, SCHEMA);
    assert!(
        matches!(
            wrong,
            Err(RuntimeError::WrongWorld {
                world: "transformer",
                ..
            })
        ),
        "{:?}",
        wrong.err()
    );
    let garbage = rt.compile(b"\0asm garbage");
    assert!(matches!(garbage, Err(RuntimeError::InvalidComponent(_))));
    let refused = stage(
        &rt,
        sluice_builtins::VALIDATE,
        World::Validator,
        r#"{"nope":1}"#,
    );
    let Err(RuntimeError::Config(msg)) = refused else {
        panic!("config accepted")
    };
    assert!(msg.contains("nope"), "{msg}");
    let compiled = rt.compile(sluice_builtins::ROUTE).unwrap();
    assert_eq!(compiled.world(&rt), Some(World::Router));
}

fn hostile(rt: &Runtime, behaviour: &str) -> Stage {
    hostile_of(rt, "acme", behaviour)
}

#[test]
fn hostile_guests_fail_only_their_call() {
    let rt = runtime();
    let batch = [event("1", "t", "{}"), event("2", "t", "{}")];

    let started = Instant::now();
    let err = hostile(&rt, "loop").transform(&ctx(), &batch).unwrap_err();
    assert_eq!(err, CallError::Timeout(300));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline stops a loop"
    );

    let err = hostile(&rt, "alloc").transform(&ctx(), &batch).unwrap_err();
    assert!(matches!(err, CallError::OutOfMemory(_)), "{err}");

    let err = hostile(&rt, "huge-output")
        .transform(&ctx(), &batch)
        .unwrap_err();
    assert!(matches!(err, CallError::OutOfMemory(_)), "{err}");

    let err = hostile(&rt, "trap").transform(&ctx(), &batch).unwrap_err();
    assert!(matches!(err, CallError::Trap(_)), "{err}");

    let err = hostile(&rt, "wrong-count")
        .transform(&ctx(), &batch)
        .unwrap_err();
    assert_eq!(err, CallError::BadOutput("3 results for 2 events".into()));

    // The engine and other stages are untouched.
    let ok = hostile(&rt, "ok").transform(&ctx(), &batch).unwrap();
    assert_eq!(ok.len(), 2);
    assert_eq!(ok[0].as_ref().unwrap()[0].event.id, "1");
}

#[test]
fn a_failing_stage_is_replaced_then_suspended() {
    let rt = runtime();
    let s = hostile(&rt, "trap");
    let batch = [event("1", "t", "{}")];
    for _ in 0..3 {
        assert!(matches!(
            s.transform(&ctx(), &batch),
            Err(CallError::Trap(_))
        ));
    }
    let err = s.transform(&ctx(), &batch).unwrap_err();
    assert!(matches!(err, CallError::Suspended(_)), "{err}");
    let stats = s.stats();
    assert_eq!(stats.errors_of(ErrorKind::Trap), 3);
    assert_eq!(stats.errors_of(ErrorKind::Suspended), 1);
    // Setup and the two calls after a trap each needed a fresh instance.
    assert_eq!(stats.instantiations, 3);
}

#[test]
fn route_decides_per_event() {
    let rt = runtime();
    let s = stage(
        &rt,
        sluice_builtins::ROUTE,
        World::Router,
        r#"{"rules":[{"type":"invoice.*","topic":"invoices","key":"/customer"},
                     {"type":"*.deleted","dlq":"no deletes"}]}"#,
    )
    .unwrap();
    let d = s
        .route(
            &ctx(),
            &[
                event("1", "invoice.paid", r#"{"customer":"c1"}"#),
                event("2", "user.deleted", "{}"),
                event("3", "user.created", "{}"),
            ],
        )
        .unwrap();
    let Decision::Deliver(to) = &d[0] else {
        panic!()
    };
    assert_eq!(to.topic.as_deref(), Some("invoices"));
    assert_eq!(to.key.as_deref(), Some(&b"c1"[..]));
    assert!(matches!(&d[1], Decision::DeadLetter(dl) if dl.reason == "no deletes"));
    assert!(matches!(&d[2], Decision::Deliver(to) if to.topic.is_none()));
}

/// `events` laid out in one buffer as the host packs stored records (no payload spans).
fn pack(events: &[Event]) -> (Vec<u8>, Vec<PackedEvent>) {
    let mut buffer = Vec::new();
    let mut put = |bytes: &[u8]| {
        let span = Span {
            offset: buffer.len() as u32,
            len: bytes.len() as u32,
        };
        buffer.extend_from_slice(bytes);
        span
    };
    let packed = events
        .iter()
        .map(|e| PackedEvent {
            data: put(&e.data),
            type_: put(e.type_.as_bytes()),
            id: put(e.id.as_bytes()),
            json: e.content_type == "application/json",
            payload: None,
        })
        .collect();
    (buffer, packed)
}

#[test]
fn packed_routes_decide_as_per_event_calls() {
    let rt = runtime();
    let s = stage(
        &rt,
        sluice_builtins::ROUTE,
        World::Router,
        r#"{"rules":[{"type":"invoice.*","topic":"invoices","key":"/customer"},
                     {"type":"*.deleted","dlq":"no deletes"},
                     {"type":"audit.*","drop":true},
                     {"type":"*","when":[{"pointer":"/amount","op":"gte","value":10}],"keep":true},
                     {"type":"*","dlq":"small"}]}"#,
    )
    .unwrap();
    let events = [
        event("1", "invoice.paid", r#"{"customer":"c1"}"#),
        event("2", "user.deleted", "{}"),
        event("3", "audit.read", "{}"),
        event("4", "order", r#"{"amount":12}"#),
        event("5", "order", r#"{"amount":2}"#),
        event("6", "order", "not json"),
    ];
    let per_event = s.route(&ctx(), &events).unwrap();
    let (buffer, packed) = pack(&events);
    assert_eq!(s.route_packed(&ctx(), &buffer, &packed).unwrap(), per_event);
    assert!(matches!(&per_event[2], Decision::Drop));
    assert!(matches!(&per_event[3], Decision::Deliver(to) if to.topic.is_none()));
    assert!(matches!(&per_event[4], Decision::DeadLetter(dl) if dl.reason == "small"));
}

#[test]
fn packed_enrichment_changes_what_per_event_calls_rewrite() {
    let rt = runtime();
    let s = stage(
        &rt,
        sluice_builtins::ENRICH,
        World::Enricher,
        r#"{"fields":["tenant","producer_key_id","ingest_time"]}"#,
    )
    .unwrap();
    assert!(s.packs());
    let mut raw = event("4", "t", "\u{0}binary");
    raw.content_type = "application/octet-stream".into();
    let events = [
        event("1", "t", r#"{"a":1}"#),
        event(
            "2",
            "t",
            r#"{"a":2,"tenant":"given","producer_key_id":"p","ingest_time":"x"}"#,
        ),
        event("3", "t", "{ }"),
        raw,
        event("5", "t", r#"{"b":[3]}"#),
    ];
    let per_event = s.enrich(&ctx(), &events).unwrap();
    let (buffer, packed) = pack(&events);
    let answer = s.enrich_packed(&ctx(), &buffer, &packed).unwrap();
    let bytes = |sp: &Span| &answer.buffer[sp.offset as usize..(sp.offset + sp.len) as usize];
    for ((change, e), whole) in answer.changes.iter().zip(&events).zip(&per_event) {
        let whole = whole.as_ref().expect("no lookups: nothing is rejected");
        match change.as_ref().expect("accepted") {
            Change::Keep => assert_eq!(whole.data, e.data, "kept: unchanged"),
            Change::Insert(i) => {
                let mut data = e.data.clone();
                data.splice(i.at as usize..i.at as usize, bytes(&i.text).iter().copied());
                assert_eq!(data, whole.data, "the insertion makes the same data");
            }
            Change::Replace(r) => assert_eq!(bytes(r), &whole.data[..]),
            Change::Headers(h) => {
                assert_eq!(whole.data, e.data);
                assert!(h.iter().all(|h| whole.headers.contains(h)), "{h:?}");
            }
        }
    }
    assert!(matches!(answer.changes[0], Ok(Change::Insert(_))));
    assert!(
        matches!(answer.changes[1], Ok(Change::Keep)),
        "every field given"
    );
    assert!(matches!(answer.changes[3], Ok(Change::Headers(_))));
    // Identical additions are written once and shared.
    let Ok(Change::Insert(first)) = &answer.changes[0] else {
        unreachable!()
    };
    let Ok(Change::Insert(fifth)) = &answer.changes[4] else {
        panic!("{:?}", answer.changes[4])
    };
    assert_eq!(fifth.text, first.text, "the same bytes of the answer");
    assert_eq!(fifth.at, 8, "before the closing brace");
}

struct Tables;

impl HostServices for Tables {
    fn lookup(&self, tenant: &str, table: &str, key: &str) -> Option<Vec<u8>> {
        (tenant == "acme" && table == "customers" && key == "42")
            .then(|| br#"{"tier":"gold"}"#.to_vec())
    }
    fn schema_by_id(&self, _: &str, _: u32) -> Option<Schema> {
        None
    }
    fn latest_schema(&self, _: &str, _: &str) -> Option<Schema> {
        None
    }
    fn schema_in_subject(&self, _: &str, _: &str, _: u32) -> Option<Schema> {
        None
    }
}

#[test]
fn enrich_reaches_the_host_tables() {
    let rt = runtime();
    let compiled = rt.compile(sluice_builtins::ENRICH).unwrap();
    let s = Stage::new(
        &rt,
        &compiled,
        World::Enricher,
        r#"{"lookups":[{"table":"customers","key":"/customer","into":"/customer_info"}]}"#.into(),
        Arc::new(Tables),
        labels("enrich"),
    )
    .unwrap();
    let out = s
        .enrich(&ctx(), &[event("e1", "t", r#"{"customer":42}"#)])
        .unwrap();
    let e = out[0].as_ref().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&e.data).unwrap();
    assert_eq!(v["customer_info"]["tier"], "gold");
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["producer_key_id"], "k1");
    assert_eq!(v["correlation_id"], "e1");
    assert_eq!(v["trace_id"].as_str().unwrap().len(), 32);
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let options = RuntimeOptions {
        cache_dir: Some(dir.path().to_owned()),
        ..RuntimeOptions::default()
    };
    let first = Runtime::new(options.clone()).unwrap();
    let c = first.compile(sluice_builtins::ROUTE).unwrap();
    assert!(!c.from_cache);
    let again = Runtime::new(options).unwrap();
    let c2 = again.compile(sluice_builtins::ROUTE).unwrap();
    assert!(c2.from_cache);
    assert_eq!(c.hash, c2.hash);
    let s = Stage::new(
        &again,
        &c2,
        World::Router,
        r#"{"rules":[]}"#.into(),
        Arc::new(NoHostServices),
        labels("route"),
    )
    .unwrap();
    assert_eq!(s.route(&ctx(), &[event("1", "t", "{}")]).unwrap().len(), 1);
}

#[test]
fn a_full_pool_releases_idle_instances_of_other_stages() {
    let rt = Runtime::new(RuntimeOptions {
        max_instances: 2,
        ..RuntimeOptions::default()
    })
    .unwrap();
    let route = |rt: &Runtime| stage(rt, sluice_builtins::ROUTE, World::Router, r#"{"rules":[]}"#);
    // Each stage keeps one idle instance: two stages fill the pool.
    let a = route(&rt).unwrap();
    let b = route(&rt).unwrap();
    // A third finds the pool full, releases the others' idle instances, and starts.
    let c = route(&rt).expect("idle instances make room");
    for s in [&c, &a, &b] {
        assert_eq!(s.route(&ctx(), &[event("1", "t", "{}")]).unwrap().len(), 1);
    }
    assert!(
        a.stats().instantiations >= 2,
        "a was restarted after its idle instance went"
    );
}

#[test]
fn a_steady_concurrent_load_keeps_its_instances() {
    let rt = runtime();
    let s = stage(
        &rt,
        sluice_builtins::ROUTE,
        World::Router,
        r#"{"rules":[]}"#,
    )
    .unwrap();
    let events = [event("1", "t", "{}")];
    for _round in 0..3 {
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..25 {
                        assert_eq!(s.route(&ctx(), &events).unwrap().len(), 1);
                    }
                });
            }
        });
    }
    // An instance is only created when every existing one is busy, and instances are kept up
    // to the most ever busy at once: 600 calls from 8 threads never need more than 8.
    let stats = s.stats();
    assert_eq!(stats.calls, 600);
    assert!(
        stats.instantiations <= 8,
        "{} instances for 8 threads",
        stats.instantiations
    );
}

#[test]
fn one_tenant_cannot_take_every_call_or_instance() {
    let rt = Runtime::new(RuntimeOptions {
        call_timeout: Duration::from_millis(1500),
        max_calls_per_tenant: 1,
        max_instances_per_tenant: 2,
        ..RuntimeOptions::default()
    })
    .unwrap();
    let sleeper = hostile_of(&rt, "acme", "sleep");
    let probe = hostile_of(&rt, "acme", "ok");
    let batch = [event("1", "t", "{}")];
    std::thread::scope(|scope| {
        // The sleeper itself may find the probe holding the slot: it asks again until it runs.
        let asleep = scope.spawn(|| {
            loop {
                match sleeper.transform(&ctx(), &batch) {
                    Err(CallError::Busy(_)) => std::thread::sleep(Duration::from_millis(1)),
                    other => return other,
                }
            }
        });
        // Once the sleeping call holds the tenant's one call slot, the tenant's next call is
        // refused at once, without running.
        let waited = Instant::now();
        let busy = loop {
            match probe.transform(&ctx(), &batch) {
                Err(e @ CallError::Busy(_)) => break e,
                other => assert!(other.is_ok(), "{other:?}"),
            }
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "the sleeper never started"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(busy.to_string().contains("max_calls_per_tenant"), "{busy}");
        // ... while another tenant's call runs.
        let other = hostile_of(&rt, "globex", "ok").transform(&ctx(), &batch);
        assert_eq!(other.unwrap().len(), 1);
        assert!(matches!(asleep.join().unwrap(), Err(CallError::Timeout(_))));
    });
    assert!(
        probe.stats().errors_of(ErrorKind::Busy) >= 1,
        "refusals are counted"
    );
    // Instances: two alive at most; a third stage of the tenant releases idle ones first.
    let a = hostile_of(&rt, "initech", "ok");
    let b = hostile_of(&rt, "initech", "ok");
    let c = hostile_of(&rt, "initech", "ok");
    for s in [&a, &b, &c] {
        assert_eq!(s.transform(&ctx(), &batch).unwrap().len(), 1);
    }
}

fn hostile_of(rt: &Runtime, tenant: &str, behaviour: &str) -> Stage {
    let compiled = rt.compile(sluice_builtins::testing::HOSTILE).unwrap();
    Stage::new(
        rt,
        &compiled,
        World::Transformer,
        format!(r#"{{"behaviour":"{behaviour}"}}"#),
        Arc::new(NoHostServices),
        StageLabels {
            tenant: tenant.into(),
            component: "hostile".into(),
        },
    )
    .unwrap()
}
