//! A guest's store state: its WASI context (nothing granted), its resource limits, and the
//! host services its imports reach.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::generated::{LogLevel, Schema, clock, logging, reference_tables, schemas};

/// What the gateway offers guests through the `schemas` and `reference-tables` imports. The
/// tenant is the stage's, so a guest can only ever see its own tenant's data.
pub trait HostServices: Send + Sync {
    /// The current value of `key` in the table kept from the tenant's topic `table`.
    fn lookup(&self, tenant: &str, table: &str, key: &str) -> Option<Vec<u8>>;
    /// A schema of the tenant's registry by global id.
    fn schema_by_id(&self, tenant: &str, id: u32) -> Option<Schema>;
    /// The newest schema registered under `subject`.
    fn latest_schema(&self, tenant: &str, subject: &str) -> Option<Schema>;
    /// The schema with global id `id` if `subject` holds it.
    fn schema_in_subject(&self, tenant: &str, subject: &str, id: u32) -> Option<Schema>;
}

/// For guests run without a gateway around them (tests, benchmarks): no tables, no schemas.
pub struct NoHostServices;

impl HostServices for NoHostServices {
    fn lookup(&self, _: &str, _: &str, _: &str) -> Option<Vec<u8>> {
        None
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

/// Log lines a guest may write per call before the rest are dropped.
const LOG_LINES_PER_CALL: u32 = 100;

pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: Limits,
    host: Arc<dyn HostServices>,
    tenant: Arc<str>,
    component: Arc<str>,
    /// Log lines left in this call (reset before each call).
    pub log_budget: u32,
    /// When the current call must end: a guest waiting in a WASI call (sleep, poll) is
    /// stopped here, as one spinning in its own code is by the epoch deadline.
    pub deadline: std::time::Instant,
}

impl GuestState {
    pub fn new(
        host: Arc<dyn HostServices>,
        tenant: Arc<str>,
        component: Arc<str>,
        memory_limit: usize,
    ) -> GuestState {
        // Nothing granted: no preopened directories, no environment, no arguments, no network.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        GuestState {
            wasi,
            deadline: std::time::Instant::now(),
            table: ResourceTable::new(),
            limits: Limits {
                memory_limit,
                denied: false,
            },
            host,
            tenant,
            component,
            log_budget: LOG_LINES_PER_CALL,
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Memory and table bounds of one store. Remembers a denied growth, so a trap that follows
/// (a Rust guest aborts when allocation fails) is reported as out-of-memory.
pub struct Limits {
    memory_limit: usize,
    pub denied: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > 1 << 20 {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }
}

impl logging::Host for GuestState {
    fn log(&mut self, level: LogLevel, message: String) {
        if self.log_budget == 0 {
            return;
        }
        self.log_budget -= 1;
        let message: String = message.chars().take(2048).collect();
        let (tenant, component) = (&*self.tenant, &*self.component);
        match level {
            LogLevel::Trace => tracing::trace!(target: "guest", tenant, component, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "guest", tenant, component, "{message}"),
            LogLevel::Info => tracing::info!(target: "guest", tenant, component, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "guest", tenant, component, "{message}"),
            LogLevel::Error => tracing::error!(target: "guest", tenant, component, "{message}"),
        }
    }
}

impl clock::Host for GuestState {
    fn now(&mut self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

impl schemas::Host for GuestState {
    fn by_id(&mut self, id: u32) -> Option<Schema> {
        self.host.schema_by_id(&self.tenant, id)
    }

    fn latest(&mut self, subject: String) -> Option<Schema> {
        self.host.latest_schema(&self.tenant, &subject)
    }

    fn in_subject(&mut self, subject: String, id: u32) -> Option<Schema> {
        self.host.schema_in_subject(&self.tenant, &subject, id)
    }
}

impl reference_tables::Host for GuestState {
    fn lookup(&mut self, table: String, key: String) -> Option<Vec<u8>> {
        self.host.lookup(&self.tenant, &table, &key)
    }
}

impl crate::generated::types_host::Host for GuestState {}

/// Replace `wasi:io/poll`'s blocking calls (`poll`, `pollable.block`: how a guest sleeps or
/// waits) with ones that give up at the call's deadline, as an interrupt: a guest blocked in
/// the host is stopped by the same deadline as one spinning in its code. The rest of WASI is
/// linked as `wasmtime-wasi` links it.
pub fn bound_blocking_calls(
    linker: &mut wasmtime::component::Linker<GuestState>,
) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::runtime::in_tokio;
    use wasmtime_wasi_io::bindings::wasi::io::poll::{Host as _, HostPollable as _};
    use wasmtime_wasi_io::poll::DynPollable;

    fn bounded<R>(
        deadline: std::time::Instant,
        wait: impl std::future::Future<Output = wasmtime::Result<R>>,
    ) -> wasmtime::Result<R> {
        // The timer is made inside the runtime `in_tokio` enters (a caller need not be in one).
        match in_tokio(async move { tokio::time::timeout_at(deadline.into(), wait).await }) {
            Ok(r) => r,
            Err(_) => Err(wasmtime::Trap::Interrupt.into()),
        }
    }
    linker.allow_shadowing(true);
    let mut poll = linker.instance("wasi:io/poll@0.2.12")?;
    poll.func_wrap(
        "poll",
        |mut store: wasmtime::StoreContextMut<'_, GuestState>,
         (pollables,): (Vec<Resource<DynPollable>>,)| {
            let deadline = store.data().deadline;
            let table = &mut store.data_mut().table;
            bounded(deadline, table.poll(pollables)).map(|ready| (ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: wasmtime::StoreContextMut<'_, GuestState>,
         (pollable,): (Resource<DynPollable>,)| {
            let deadline = store.data().deadline;
            let table = &mut store.data_mut().table;
            bounded(deadline, table.block(pollable))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
