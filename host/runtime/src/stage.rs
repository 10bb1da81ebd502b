//! A stage: one component with one configuration, its idle instances, its deadline and
//! memory bounds, its failure breaker and its counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wasmtime::component::Component;
use wasmtime::{Store, Trap};

use crate::engine::Runtime;
use crate::error::{CallError, RuntimeError};
use crate::generated::{Accepted, HttpRequest, IngressGateway, IngressGatewayPre, Refusal};
use crate::generated::{
    BatchContext, Decision, Enriched, Enricher, EnricherPre, Event, Output, PackedEnricher,
    PackedEnricherPre, PackedEvent, PackedRouter, PackedRouterPre, PackedValidator,
    PackedValidatorPre, Rejection, Router, RouterPre, Transformer, TransformerPre, Validator,
    ValidatorPre, Verdict,
};
use crate::generated::{CompactionContext, CompactionPolicy, CompactionPolicyPre, KeyGroup};
use crate::guest::{GuestState, HostServices};
use crate::metrics::{Counters, ErrorKind, StageStats};
use crate::tenants::{InstanceSlot, TenantUse};

/// The stage worlds of the `sluice:gateway` package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    Validator,
    Enricher,
    Router,
    Transformer,
    /// HTTP request in, events out: a source's gateway (`/hooks/{tenant}/{source}`).
    Ingress,
    /// Which records of a compacted topic survive (`compaction.policy`).
    Compactor,
}

impl World {
    pub const ALL: [World; 6] = [
        World::Validator,
        World::Enricher,
        World::Router,
        World::Transformer,
        World::Ingress,
        World::Compactor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            World::Validator => "validator",
            World::Enricher => "enricher",
            World::Router => "router",
            World::Transformer => "transformer",
            World::Ingress => "ingress",
            World::Compactor => "compactor",
        }
    }

    pub fn parse(name: &str) -> Option<World> {
        World::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// A compiled component, ready to be pre-instantiated for any number of stages.
pub struct Compiled {
    /// SHA-256 of the `.wasm`, hex.
    pub hash: String,
    pub(crate) component: Component,
    /// Loaded from the on-disk cache rather than compiled now.
    pub from_cache: bool,
}

impl Compiled {
    /// Whether the component fits `world` (its imports can be linked, its export is there).
    pub fn check_world(&self, runtime: &Runtime, world: World) -> Result<(), RuntimeError> {
        pre_for(runtime, &self.component, world).map(|_| ())
    }

    /// The first of the stage worlds this component fits.
    pub fn world(&self, runtime: &Runtime) -> Option<World> {
        World::ALL
            .into_iter()
            .find(|w| self.check_world(runtime, *w).is_ok())
    }
}

enum Pre {
    Validator(ValidatorPre<GuestState>),
    /// A validator that also exports `validate-packed`.
    PackedValidator(PackedValidatorPre<GuestState>),
    Enricher(EnricherPre<GuestState>),
    /// An enricher that also exports `enrich-packed`.
    PackedEnricher(PackedEnricherPre<GuestState>),
    Router(RouterPre<GuestState>),
    /// A router that also exports `route-packed`.
    PackedRouter(PackedRouterPre<GuestState>),
    Transformer(TransformerPre<GuestState>),
    Ingress(IngressGatewayPre<GuestState>),
    Compactor(CompactionPolicyPre<GuestState>),
}

enum Bindings {
    Validator(Validator),
    PackedValidator(PackedValidator),
    Enricher(Enricher),
    PackedEnricher(PackedEnricher),
    Router(Router),
    PackedRouter(PackedRouter),
    Transformer(Transformer),
    Ingress(IngressGateway),
    Compactor(CompactionPolicy),
}

struct Instance {
    store: Store<GuestState>,
    bindings: Bindings,
    /// Its place under the tenant's instance cap, given back when it is dropped.
    _slot: InstanceSlot,
}

fn pre_for(runtime: &Runtime, component: &Component, world: World) -> Result<Pre, RuntimeError> {
    let wrong = |e: wasmtime::Error| RuntimeError::WrongWorld {
        world: world.name(),
        reason: format!("{e:#}"),
    };
    let pre = runtime
        .inner
        .linker
        .instantiate_pre(component)
        .map_err(wrong)?;
    Ok(match world {
        World::Validator => match PackedValidatorPre::new(pre.clone()) {
            Ok(packed) => Pre::PackedValidator(packed),
            Err(_) => Pre::Validator(ValidatorPre::new(pre).map_err(wrong)?),
        },
        World::Enricher => match PackedEnricherPre::new(pre.clone()) {
            Ok(packed) => Pre::PackedEnricher(packed),
            Err(_) => Pre::Enricher(EnricherPre::new(pre).map_err(wrong)?),
        },
        World::Router => match PackedRouterPre::new(pre.clone()) {
            Ok(packed) => Pre::PackedRouter(packed),
            Err(_) => Pre::Router(RouterPre::new(pre).map_err(wrong)?),
        },
        World::Transformer => Pre::Transformer(TransformerPre::new(pre).map_err(wrong)?),
        World::Ingress => Pre::Ingress(IngressGatewayPre::new(pre).map_err(wrong)?),
        World::Compactor => Pre::Compactor(CompactionPolicyPre::new(pre).map_err(wrong)?),
    })
}

/// Who a stage belongs to, for metrics and guest logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StageLabels {
    pub tenant: String,
    pub component: String,
}

/// Consecutive guest failures before a stage is suspended, and how long it then rests.
const FAILURES_TO_SUSPEND: u32 = 3;
const FIRST_SUSPENSION: Duration = Duration::from_secs(1);
const LONGEST_SUSPENSION: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Breaker {
    consecutive: u32,
    suspended_until: Option<Instant>,
    next_suspension: Option<Duration>,
    last: String,
}

const POOL_FULL: &str = "every instance slot is in use (raise [wasm] max_instances)";
const TENANT_INSTANCES: &str =
    "the tenant has [wasm] max_instances_per_tenant instances alive, all busy";

/// Idle instances kept per stage: as many as were ever busy at once (so a steady load never
/// pays `init` again), at least `MIN_IDLE`, at most `MAX_IDLE`.
const MIN_IDLE: usize = 4;
const MAX_IDLE: usize = 64;

/// Counts a call's instance as busy while it lives.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn enter(busy: &'a AtomicUsize, peak: &AtomicUsize) -> Busy<'a> {
        let now = busy.fetch_add(1, Ordering::Relaxed) + 1;
        peak.fetch_max(now, Ordering::Relaxed);
        Busy(busy)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) struct StageInner {
    runtime: Runtime,
    pre: Pre,
    world: World,
    config: String,
    host: Arc<dyn HostServices>,
    pub(crate) tenant: Arc<str>,
    component: Arc<str>,
    /// The tenant's calls and instances, across its stages.
    usage: Arc<TenantUse>,
    /// Initialized instances waiting for the next batch.
    idle: Mutex<Vec<Instance>>,
    /// Instances in calls now, and the most ever at once.
    busy: AtomicUsize,
    peak: AtomicUsize,
    breaker: Mutex<Breaker>,
    counters: Counters,
}

/// A component with its configuration, as a pipeline stage or transform runs it. Cheap to
/// clone; safe to call from many threads (each call gets its own instance).
#[derive(Clone)]
pub struct Stage {
    inner: Arc<StageInner>,
}

/// Why instantiating failed: the guest's `init` said no, it misbehaved doing so, or the
/// pooling allocator has no free slot.
enum StartError {
    Config(String),
    Call(CallError),
    PoolFull,
    /// The tenant has its share of instances alive, all of them busy.
    TenantFull,
}

impl StageInner {
    pub(crate) fn release_idle(&self) -> usize {
        let mut idle = self.idle.lock();
        let n = idle.len();
        idle.clear();
        n
    }
}

impl Stage {
    /// Pre-instantiate `compiled` for `world` and start one instance with `config`, so a
    /// component of the wrong world or a configuration the guest refuses fails here.
    pub fn new(
        runtime: &Runtime,
        compiled: &Compiled,
        world: World,
        config: String,
        host: Arc<dyn HostServices>,
        labels: StageLabels,
    ) -> Result<Stage, RuntimeError> {
        let pre = pre_for(runtime, &compiled.component, world)?;
        let tenant: Arc<str> = labels.tenant.into();
        let usage = runtime.inner.tenants.of(&tenant);
        let stage = Stage {
            inner: Arc::new(StageInner {
                runtime: runtime.clone(),
                pre,
                world,
                config,
                host,
                tenant,
                usage,
                component: labels.component.into(),
                idle: Mutex::new(Vec::new()),
                busy: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                breaker: Mutex::new(Breaker::default()),
                counters: Counters::default(),
            }),
        };
        match stage.instantiate_with_room() {
            Ok(instance) => stage.inner.idle.lock().push(instance),
            Err(StartError::Config(e)) => return Err(RuntimeError::Config(e)),
            Err(StartError::Call(e)) => return Err(RuntimeError::Instantiate(e.to_string())),
            Err(StartError::PoolFull) => {
                return Err(RuntimeError::Instantiate(POOL_FULL.into()));
            }
            Err(StartError::TenantFull) => {
                return Err(RuntimeError::Instantiate(TENANT_INSTANCES.into()));
            }
        }
        runtime
            .inner
            .stages
            .lock()
            .push(Arc::downgrade(&stage.inner));
        Ok(stage)
    }

    pub fn world(&self) -> World {
        self.inner.world
    }

    /// A validator, enricher or router that also takes batches as one buffer
    /// ([`Stage::validate_packed`], [`Stage::enrich_packed`], [`Stage::route_packed`]).
    pub fn packs(&self) -> bool {
        matches!(
            self.inner.pre,
            Pre::PackedValidator(_) | Pre::PackedEnricher(_) | Pre::PackedRouter(_)
        )
    }

    /// Create one instance from the pre-instantiated component and drop it, with or without
    /// the guest's `init`: what a call pays when no idle instance is left (benchmarks time it).
    pub fn instantiate_once(&self, init: bool) -> Result<(), CallError> {
        if init {
            return match self.instantiate() {
                Ok(_) => Ok(()),
                Err(StartError::Config(e)) => Err(CallError::Instantiate(e)),
                Err(StartError::Call(e)) => Err(e),
                Err(StartError::PoolFull) => Err(CallError::Instantiate(POOL_FULL.into())),
                Err(StartError::TenantFull) => Err(CallError::Busy(TENANT_INSTANCES.into())),
            };
        }
        let runtime = &self.inner.runtime.inner;
        let mut store = Store::new(
            &runtime.engine,
            GuestState::new(
                self.inner.host.clone(),
                self.inner.tenant.clone(),
                self.inner.component.clone(),
                runtime.options.memory_limit,
            ),
        );
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.deadline_ticks());
        store.data_mut().deadline = Instant::now() + self.inner.runtime.options().call_timeout;
        let started = match &self.inner.pre {
            Pre::Validator(p) => p.instantiate(&mut store).map(drop),
            Pre::PackedValidator(p) => p.instantiate(&mut store).map(drop),
            Pre::Enricher(p) => p.instantiate(&mut store).map(drop),
            Pre::PackedEnricher(p) => p.instantiate(&mut store).map(drop),
            Pre::Router(p) => p.instantiate(&mut store).map(drop),
            Pre::PackedRouter(p) => p.instantiate(&mut store).map(drop),
            Pre::Transformer(p) => p.instantiate(&mut store).map(drop),
            Pre::Ingress(p) => p.instantiate(&mut store).map(drop),
            Pre::Compactor(p) => p.instantiate(&mut store).map(drop),
        };
        started.map_err(|e| self.classify(&e, &store))
    }

    pub fn stats(&self) -> StageStats {
        self.inner.counters.snapshot()
    }

    pub fn labels(&self) -> StageLabels {
        StageLabels {
            tenant: self.inner.tenant.to_string(),
            component: self.inner.component.to_string(),
        }
    }

    fn deadline_ticks(&self) -> u64 {
        let o = self.inner.runtime.options();
        (o.call_timeout.as_micros() / o.epoch_tick.as_micros().max(1)) as u64 + 1
    }

    /// Instantiate; if the pool is full, release every stage's idle instances and try once more.
    fn instantiate_with_room(&self) -> Result<Instance, StartError> {
        match self.instantiate() {
            Err(StartError::PoolFull) => {
                let released = self.inner.runtime.release_idle();
                tracing::warn!(released, "instance pool full: released idle instances");
                self.instantiate()
            }
            other => other,
        }
    }

    fn instantiate(&self) -> Result<Instance, StartError> {
        let inner = &self.inner;
        let runtime = &inner.runtime.inner;
        let cap = runtime.options.max_instances_per_tenant;
        let slot = match inner.usage.enter_instance(cap) {
            Some(slot) => slot,
            None => {
                // Idle instances of the tenant's other stages count too: give them back first.
                inner.runtime.release_idle_of(&inner.tenant);
                inner
                    .usage
                    .enter_instance(cap)
                    .ok_or(StartError::TenantFull)?
            }
        };
        let memory_limit = runtime.options.memory_limit;
        let mut store = Store::new(
            &runtime.engine,
            GuestState::new(
                inner.host.clone(),
                inner.tenant.clone(),
                inner.component.clone(),
                memory_limit,
            ),
        );
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.deadline_ticks());
        store.data_mut().deadline = Instant::now() + self.inner.runtime.options().call_timeout;
        inner
            .counters
            .instantiations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let fail = |e: wasmtime::Error, store: &Store<GuestState>| {
            if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some()
            {
                StartError::PoolFull
            } else {
                StartError::Call(self.classify(&e, store))
            }
        };
        let config = &inner.config;
        let (bindings, init) = match &inner.pre {
            Pre::Validator(p) => {
                let b = p.instantiate(&mut store).map_err(|e| fail(e, &store))?;
                let r = b.sluice_gateway_validate().call_init(&mut store, config);
                (Bindings::Validator(b), r)
            }
            Pre::PackedValidator(p) => {
                let b = p.instantiate(&mut store).map_err(|e| fail(e, &store))?;
                let r = b.sluice_gateway_validate().call_init(&mut store, config);
                (Bindings::PackedValidator(b), r)
            }
            Pre::Enricher(p) => {
                let b = p.instantiate(&mut store).map_err(|e| fail(e, &store))?;
                let r = b.sluice_gateway_enrich().call_init(&mut store, config);
                (Bindings::Enricher(b), r)
            }
            Pre::PackedEnricher(p) => {
                let b = p.instantiate(&mut store).map_err(|e| fail(e, &store))?;
                let r = b.sluice_gateway_enrich().call_init(&mut store, config);
                (Bindings::PackedEnricher(b), r)
            }
            Pre::Router(p) => {
                let b = p.instantiate(&mut store).map_err(|e| fail(e, &store))?;
                let r = b.sluice_gateway_route().call_init(&mut store, config);
                (Bindings::Router(b), r)
            }
            Pre::PackedRouter(p) => {
                let b = p.instantiate(&mut store).map_err(|e| fail(e, &store))?;
                let r = b.sluice_gateway_route().call_init(&mut store, config);
                (Bindings::PackedRouter(b), r)
            }
            Pre::Transformer(p) => {
                let b = p.instantiate(&mut store).map_err(|e| fail(e, &store))?;
                let r = b.sluice_gateway_transform().call_init(&mut store, config);
                (Bindings::Transformer(b), r)
            }
            Pre::Ingress(p) => {
                let b = p.instantiate(&mut store).map_err(|e| fail(e, &store))?;
                let r = b.sluice_gateway_ingress().call_init(&mut store, config);
                (Bindings::Ingress(b), r)
            }
            Pre::Compactor(p) => {
                let b = p.instantiate(&mut store).map_err(|e| fail(e, &store))?;
                let r = b.sluice_gateway_compactor().call_init(&mut store, config);
                (Bindings::Compactor(b), r)
            }
        };
        match init {
            Ok(Ok(())) => Ok(Instance {
                store,
                bindings,
                _slot: slot,
            }),
            Ok(Err(refusal)) => Err(StartError::Config(refusal)),
            Err(e) => Err(fail(e, &store)),
        }
    }

    fn classify(&self, e: &wasmtime::Error, store: &Store<GuestState>) -> CallError {
        let o = self.inner.runtime.options();
        if store.data().limits.denied {
            return CallError::OutOfMemory(o.memory_limit);
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Timeout(o.call_timeout.as_millis() as u64),
            Some(trap) => CallError::Trap(trap.to_string()),
            None => CallError::Trap(format!("{e:#}")),
        }
    }

    /// Run `f` on an instance under the deadline, and check it answered once per event.
    fn call<R>(
        &self,
        events: usize,
        f: impl FnOnce(&mut Store<GuestState>, &Bindings) -> Option<wasmtime::Result<Vec<R>>>,
    ) -> Result<Vec<R>, CallError> {
        self.call_with(events, Vec::len, f)
    }

    /// [`Stage::call`] for any answer, `answers` saying how many results it holds.
    fn call_with<T>(
        &self,
        events: usize,
        answers: impl Fn(&T) -> usize,
        f: impl FnOnce(&mut Store<GuestState>, &Bindings) -> Option<wasmtime::Result<T>>,
    ) -> Result<T, CallError> {
        let inner = &self.inner;
        let counters = &inner.counters;
        {
            let breaker = inner.breaker.lock();
            if let Some(until) = breaker.suspended_until
                && Instant::now() < until
            {
                counters.error(ErrorKind::Suspended);
                return Err(CallError::Suspended(breaker.last.clone()));
            }
        }
        let Some(_call) = inner
            .usage
            .enter_call(inner.runtime.options().max_calls_per_tenant)
        else {
            counters.error(ErrorKind::Busy);
            return Err(CallError::Busy(
                "the tenant has [wasm] max_calls_per_tenant calls running".into(),
            ));
        };
        let _busy = Busy::enter(&inner.busy, &inner.peak);
        let idle = inner.idle.lock().pop();
        let mut instance = match idle {
            Some(i) => i,
            None => match self.instantiate_with_room() {
                Ok(i) => i,
                Err(StartError::Config(e)) => {
                    counters.error(ErrorKind::Instantiate);
                    return Err(CallError::Instantiate(format!("init refused: {e}")));
                }
                Err(StartError::Call(e)) => return Err(self.failed(e)),
                Err(StartError::PoolFull) => {
                    counters.error(ErrorKind::Instantiate);
                    return Err(CallError::Instantiate(POOL_FULL.into()));
                }
                Err(StartError::TenantFull) => {
                    counters.error(ErrorKind::Busy);
                    return Err(CallError::Busy(TENANT_INSTANCES.into()));
                }
            },
        };
        instance.store.set_epoch_deadline(self.deadline_ticks());
        instance.store.data_mut().log_budget = 100;
        instance.store.data_mut().deadline =
            Instant::now() + self.inner.runtime.options().call_timeout;
        let started = Instant::now();
        let result = f(&mut instance.store, &instance.bindings);
        counters
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        counters
            .events
            .fetch_add(events as u64, std::sync::atomic::Ordering::Relaxed);
        counters.nanos.fetch_add(
            started.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let outcome = match result {
            None => Err(CallError::BadOutput(format!(
                "this stage runs a {} component",
                inner.world.name()
            ))),
            Some(Err(e)) => Err(self.classify(&e, &instance.store)),
            Some(Ok(out)) if answers(&out) != events => Err(CallError::BadOutput(format!(
                "{} results for {events} events",
                answers(&out)
            ))),
            Some(Ok(out)) => Ok(out),
        };
        match outcome {
            Ok(out) => {
                let mut breaker = inner.breaker.lock();
                breaker.consecutive = 0;
                breaker.suspended_until = None;
                breaker.next_suspension = None;
                drop(breaker);
                let keep = inner.peak.load(Ordering::Relaxed).clamp(MIN_IDLE, MAX_IDLE);
                let mut idle = inner.idle.lock();
                if idle.len() < keep {
                    idle.push(instance);
                }
                Ok(out)
            }
            // The instance may be in any state after a failure: it is dropped, never reused.
            Err(e) => Err(self.failed(e)),
        }
    }

    fn failed(&self, e: CallError) -> CallError {
        let kind = match &e {
            CallError::Trap(_) => ErrorKind::Trap,
            CallError::Timeout(_) => ErrorKind::Timeout,
            CallError::OutOfMemory(_) => ErrorKind::OutOfMemory,
            CallError::BadOutput(_) => ErrorKind::BadOutput,
            CallError::Suspended(_) => ErrorKind::Suspended,
            CallError::Instantiate(_) => ErrorKind::Instantiate,
            CallError::Busy(_) => ErrorKind::Busy,
        };
        self.inner.counters.error(kind);
        let mut b = self.inner.breaker.lock();
        b.consecutive += 1;
        b.last = e.to_string();
        if b.consecutive >= FAILURES_TO_SUSPEND {
            let pause = b.next_suspension.unwrap_or(FIRST_SUSPENSION);
            b.suspended_until = Some(Instant::now() + pause);
            b.next_suspension = Some((pause * 2).min(LONGEST_SUSPENSION));
            tracing::warn!(
                tenant = %self.inner.tenant,
                component = %self.inner.component,
                "suspending a component for {pause:?} after {} failures in a row: {e}",
                b.consecutive
            );
        }
        e
    }

    /// One verdict per event.
    pub fn validate(
        &self,
        ctx: &BatchContext,
        events: &[Event],
    ) -> Result<Vec<Verdict>, CallError> {
        self.call(events.len(), |store, b| match b {
            Bindings::Validator(v) => Some(
                v.sluice_gateway_validate()
                    .call_validate(store, ctx, events),
            ),
            Bindings::PackedValidator(v) => Some(
                v.sluice_gateway_validate()
                    .call_validate(store, ctx, events),
            ),
            _ => None,
        })
    }

    /// One verdict per event of a batch laid out in `buffer` (only where [`Stage::packs`]).
    pub fn validate_packed(
        &self,
        ctx: &BatchContext,
        buffer: &[u8],
        events: &[PackedEvent],
    ) -> Result<Vec<Verdict>, CallError> {
        self.call(events.len(), |store, b| match b {
            Bindings::PackedValidator(v) => Some(
                v.sluice_gateway_validate_packed()
                    .call_validate_packed(store, ctx, buffer, events),
            ),
            _ => None,
        })
    }

    /// Each event enriched or rejected.
    pub fn enrich(
        &self,
        ctx: &BatchContext,
        events: &[Event],
    ) -> Result<Vec<Result<Event, Rejection>>, CallError> {
        self.call(events.len(), |store, b| match b {
            Bindings::Enricher(v) => {
                Some(v.sluice_gateway_enrich().call_enrich(store, ctx, events))
            }
            Bindings::PackedEnricher(v) => {
                Some(v.sluice_gateway_enrich().call_enrich(store, ctx, events))
            }
            _ => None,
        })
    }

    /// What changes in each event of a batch laid out in `buffer` (only where
    /// [`Stage::packs`]); the spans of the changes are checked to lie in the answer's buffer
    /// and insertions in their event's data.
    pub fn enrich_packed(
        &self,
        ctx: &BatchContext,
        buffer: &[u8],
        events: &[PackedEvent],
    ) -> Result<Enriched, CallError> {
        let answer = self.call_with(
            events.len(),
            |e: &Enriched| e.changes.len(),
            |store, b| match b {
                Bindings::PackedEnricher(v) => Some(
                    v.sluice_gateway_enrich_packed()
                        .call_enrich_packed(store, ctx, buffer, events),
                ),
                _ => None,
            },
        )?;
        let fits = |s: &crate::Span, len: usize| {
            (s.offset as usize)
                .checked_add(s.len as usize)
                .is_some_and(|end| end <= len)
        };
        for (change, event) in answer.changes.iter().zip(events) {
            let ok = match change {
                Ok(crate::Change::Insert(i)) => {
                    fits(&i.text, answer.buffer.len()) && i.at <= event.data.len
                }
                Ok(crate::Change::Replace(s)) => fits(s, answer.buffer.len()),
                _ => true,
            };
            if !ok {
                return Err(self.failed(CallError::BadOutput(
                    "a change points outside the answer or its event".into(),
                )));
            }
        }
        Ok(answer)
    }

    /// One routing decision per event.
    pub fn route(&self, ctx: &BatchContext, events: &[Event]) -> Result<Vec<Decision>, CallError> {
        self.call(events.len(), |store, b| match b {
            Bindings::Router(v) => Some(v.sluice_gateway_route().call_route(store, ctx, events)),
            Bindings::PackedRouter(v) => {
                Some(v.sluice_gateway_route().call_route(store, ctx, events))
            }
            _ => None,
        })
    }

    /// One routing decision per event of a batch laid out in `buffer` (only where
    /// [`Stage::packs`]).
    pub fn route_packed(
        &self,
        ctx: &BatchContext,
        buffer: &[u8],
        events: &[PackedEvent],
    ) -> Result<Vec<Decision>, CallError> {
        self.call(events.len(), |store, b| match b {
            Bindings::PackedRouter(v) => Some(
                v.sluice_gateway_route_packed()
                    .call_route_packed(store, ctx, buffer, events),
            ),
            _ => None,
        })
    }

    /// The events an HTTP request carries, or why the source's gateway refuses it.
    pub fn ingress(
        &self,
        request: &HttpRequest,
    ) -> Result<Result<Vec<Accepted>, Refusal>, CallError> {
        self.call_with(
            1,
            |_| 1,
            |store, b| match b {
                Bindings::Ingress(v) => {
                    Some(v.sluice_gateway_ingress().call_handle(store, request))
                }
                _ => None,
            },
        )
    }

    /// For each key's records, which survive a compaction run (one answer per record; the
    /// caller checks the shape).
    pub fn select(
        &self,
        ctx: &CompactionContext,
        groups: &[KeyGroup],
    ) -> Result<Vec<Vec<bool>>, CallError> {
        self.call_with(groups.len(), Vec::len, |store, b| match b {
            Bindings::Compactor(v) => {
                Some(v.sluice_gateway_compactor().call_select(store, ctx, groups))
            }
            _ => None,
        })
    }

    /// Each event's outputs, or why it cannot be transformed.
    pub fn transform(
        &self,
        ctx: &BatchContext,
        events: &[Event],
    ) -> Result<Vec<Result<Vec<Output>, Rejection>>, CallError> {
        self.call(events.len(), |store, b| match b {
            Bindings::Transformer(v) => Some(
                v.sluice_gateway_transform()
                    .call_transform(store, ctx, events),
            ),
            _ => None,
        })
    }
}
