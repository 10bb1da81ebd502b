//! The engine, the linker and the compile cache: one [`Runtime`] per process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cache;
use crate::error::RuntimeError;
use crate::generated::Validator;
use crate::guest::GuestState;
use crate::stage::Compiled;

/// How guests are bounded. Defaults suit a gateway: short deadlines, modest memory.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled components are kept across restarts; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// The longest one call into a guest may run.
    pub call_timeout: Duration,
    /// The most linear memory one guest instance may grow to.
    pub memory_limit: usize,
    /// Instances alive at once, across all stages (the pooling allocator's slots).
    pub max_instances: u32,
    /// Granularity of deadlines: the engine's epoch advances this often.
    pub epoch_tick: Duration,
    /// Calls one tenant's guests may run at once, across its stages; more fail with
    /// [`crate::CallError::Busy`].
    pub max_calls_per_tenant: u32,
    /// Instances one tenant's stages may keep alive (idle or running) of `max_instances`.
    pub max_instances_per_tenant: u32,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: None,
            call_timeout: Duration::from_millis(500),
            memory_limit: 64 << 20,
            max_instances: 256,
            epoch_tick: Duration::from_millis(5),
            max_calls_per_tenant: 16,
            max_instances_per_tenant: 64,
        }
    }
}

pub(crate) struct Inner {
    pub engine: Engine,
    /// Every live stage, so idle instances can be released when the pool is full.
    pub stages: parking_lot::Mutex<Vec<Weak<crate::stage::StageInner>>>,
    pub linker: Linker<GuestState>,
    pub options: RuntimeOptions,
    /// What each tenant's guests hold of the pools.
    pub tenants: crate::tenants::TenantUses,
    engine_hash: String,
    stop_ticker: AtomicBool,
}

/// The component runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

impl Runtime {
    pub fn new(options: RuntimeOptions) -> Result<Runtime, RuntimeError> {
        let engine = match Engine::new(&config(&options, true)) {
            Ok(e) => e,
            Err(e) => {
                // Some machines cap virtual memory too low for the pool's reservations.
                tracing::warn!("pooling allocator unavailable ({e:#}); allocating on demand");
                Engine::new(&config(&options, false))
                    .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?
            }
        };
        let mut linker: Linker<GuestState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        crate::guest::bound_blocking_calls(&mut linker)
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        // Every world imports the same host interfaces, so the validator world's
        // `add_to_linker` links them for all.
        Validator::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let engine_hash = cache::engine_hash(&engine);
        let inner = Arc::new(Inner {
            engine,
            stages: parking_lot::Mutex::new(Vec::new()),
            linker,
            options,
            tenants: Default::default(),
            engine_hash,
            stop_ticker: AtomicBool::new(false),
        });
        start_ticker(Arc::downgrade(&inner));
        Ok(Runtime { inner })
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// Drop every stage's idle instances, giving their pool slots back; returns how many.
    /// Called when the pool is full: a stage that needs an instance again makes a new one.
    pub fn release_idle(&self) -> usize {
        let mut stages = self.inner.stages.lock();
        stages.retain(|s| s.strong_count() > 0);
        stages
            .iter()
            .filter_map(Weak::upgrade)
            .map(|s| s.release_idle())
            .sum()
    }

    /// Drop `tenant`'s idle instances (to make room under its own instance cap).
    pub(crate) fn release_idle_of(&self, tenant: &str) -> usize {
        let stages = self.inner.stages.lock();
        stages
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| &*s.tenant == tenant)
            .map(|s| s.release_idle())
            .sum()
    }

    /// Compile a component, or load it from the cache when it was compiled before.
    pub fn compile(&self, wasm: &[u8]) -> Result<Arc<Compiled>, RuntimeError> {
        let hash = cache::content_hash(wasm);
        let file = self
            .inner
            .options
            .cache_dir
            .as_ref()
            .map(|dir| cache::path(dir, &hash, &self.inner.engine_hash));
        if let Some(component) = file
            .as_deref()
            .and_then(|f| cache::load(&self.inner.engine, f))
        {
            return Ok(Arc::new(Compiled {
                hash,
                component,
                from_cache: true,
            }));
        }
        let component = Component::new(&self.inner.engine, wasm)
            .map_err(|e| RuntimeError::InvalidComponent(format!("{e:#}")))?;
        if let Some(f) = &file {
            cache::store(&component, f);
        }
        Ok(Arc::new(Compiled {
            hash,
            component,
            from_cache: false,
        }))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

fn config(options: &RuntimeOptions, pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // `perf` can name guest functions (writes /tmp/perf-PID.map) when asked to.
    if std::env::var_os("SLUICE_WASM_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if pooling {
        let n = options.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            // A Rust wasip2 component is a handful of core instances around one memory.
            .total_core_instances(n * 8)
            .total_memories(n * 2)
            .total_tables(n * 4)
            .total_stacks(n)
            .max_memory_size(options.memory_limit);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Advance the engine's epoch every tick, for as long as the runtime lives.
fn start_ticker(inner: Weak<Inner>) {
    let tick = inner
        .upgrade()
        .map_or(Duration::from_millis(5), |i| i.options.epoch_tick);
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                let Some(inner) = inner.upgrade() else { return };
                if inner.stop_ticker.load(Ordering::Relaxed) {
                    return;
                }
                inner.engine.increment_epoch();
            }
        })
        .expect("spawn the epoch thread");
}
