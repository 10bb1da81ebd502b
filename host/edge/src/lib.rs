//! The edge build served in-process: a `spin.toml` (manifest version 2) is read, the
//! `wasi:http` component a route names is loaded, and requests are served by it through
//! `wasmtime-wasi-http`, with Spin's `fermyon:spin/variables@2.0.0` interface answered from
//! the manifest's variables (templates `{{ name }}` filled from application variables given at
//! start) and outbound HTTP limited to the component's `allowed_outbound_hosts`.
//!
//! It is what the tests use to prove the Spin component answers real HTTP without the Spin
//! CLI, and what `sluice edge` runs. Bounds: each request gets a fresh instance with a memory
//! limit and an epoch deadline; bodies are bounded by the component itself.

mod manifest;

pub use manifest::{Manifest, ManifestError};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use wasmtime::component::{Component, ComponentType, Lift, Linker, Lower, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Why the edge runner could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("loading the component: {0}")]
    Component(String),
    #[error("serving the request: {0}")]
    Serve(String),
}

/// Spin's variables error, as `fermyon:spin/variables@2.0.0` declares it.
#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(variant)]
enum VariableError {
    #[component(name = "invalid-name")]
    InvalidName(String),
    #[component(name = "undefined")]
    Undefined(String),
    #[component(name = "provider")]
    Provider(String),
    #[component(name = "other")]
    Other(String),
}

/// Outbound requests only to the hosts the manifest allows.
struct Outbound {
    allowed: Arc<Vec<String>>,
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        _ = fut;
        let origin = format!(
            "{}://{}",
            request.uri().scheme_str().unwrap_or("https"),
            request
                .uri()
                .authority()
                .map(|a| a.as_str())
                .unwrap_or_default()
        );
        let allowed = self
            .allowed
            .iter()
            .any(|a| a == "*" || a.trim_end_matches('/') == origin);
        Box::new(async move {
            if !allowed {
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Outbound,
    variables: Arc<HashMap<String, String>>,
    limits: StoreLimits,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// One Spin component, ready to serve.
pub struct EdgeComponent {
    pre: ProxyPre<State>,
    variables: Arc<HashMap<String, String>>,
    allowed: Arc<Vec<String>>,
    memory_limit: usize,
    deadline: Duration,
}

impl EdgeComponent {
    /// The component `id` of `manifest`, loaded from `wasm`, with its variables resolved.
    pub fn load(
        manifest: &Manifest,
        id: &str,
        wasm: &[u8],
        application_variables: &HashMap<String, String>,
    ) -> Result<EdgeComponent, EdgeError> {
        let spec = manifest.component(id)?;
        let variables = manifest.resolve_variables(id, application_variables)?;
        let allowed = spec
            .allowed_outbound_hosts
            .iter()
            .map(|h| manifest::fill(h, application_variables))
            .collect::<Result<Vec<_>, _>>()?;
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| EdgeError::Component(format!("{e:#}")))?;
        let component =
            Component::new(&engine, wasm).map_err(|e| EdgeError::Component(format!("{e:#}")))?;
        let mut linker: Linker<State> = Linker::new(&engine);
        let component_err = |e: wasmtime::Error| EdgeError::Component(format!("{e:#}"));
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(component_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(component_err)?;
        linker
            .instance("fermyon:spin/variables@2.0.0")
            .and_then(|mut i| {
                i.func_wrap(
                    "get",
                    |store: wasmtime::StoreContextMut<'_, State>, (name,): (String,)| {
                        Ok((match store.data().variables.get(&name) {
                            Some(v) => Ok(v.clone()),
                            None => Err(VariableError::Undefined(format!(
                                "no variable `{name}` for this component"
                            ))),
                        },))
                    },
                )
            })
            .map_err(component_err)?;
        let pre = ProxyPre::new(linker.instantiate_pre(&component).map_err(component_err)?)
            .map_err(component_err)?;
        // The epoch advances every 10 ms while the runner lives.
        let weak = engine.weak();
        std::thread::spawn(move || {
            while let Some(engine) = weak.upgrade() {
                std::thread::sleep(Duration::from_millis(10));
                engine.increment_epoch();
            }
        });
        Ok(EdgeComponent {
            pre,
            variables: Arc::new(variables),
            allowed: Arc::new(allowed),
            memory_limit: 64 << 20,
            deadline: Duration::from_secs(10),
        })
    }

    /// Serve one request with a fresh instance.
    pub async fn handle(
        &self,
        req: hyper::Request<Incoming>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, EdgeError> {
        let serve = |e: wasmtime::Error| EdgeError::Serve(format!("{e:#}"));
        let mut store = Store::new(
            self.pre.engine(),
            State {
                wasi: WasiCtx::builder().build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                hooks: Outbound {
                    allowed: self.allowed.clone(),
                },
                variables: self.variables.clone(),
                limits: StoreLimitsBuilder::new()
                    .memory_size(self.memory_limit)
                    .build(),
            },
        );
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline((self.deadline.as_millis() / 10) as u64);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .map_err(serve)?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(serve)?;
        let pre = self.pre.clone();
        let task = tokio::task::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(store, req, out)
                .await
        });
        match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(EdgeError::Serve(format!("{e:?}"))),
            Err(_) => Err(match task.await {
                Ok(Ok(())) => EdgeError::Serve("the component set no response".into()),
                Ok(Err(e)) => serve(e),
                Err(e) => EdgeError::Serve(e.to_string()),
            }),
        }
    }
}

/// Serve `component` on `listener` until `shutdown` resolves.
pub async fn serve(
    component: Arc<EdgeComponent>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "edge accept");
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let component = component.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let component = component.clone();
                async move {
                    match component.handle(req).await {
                        Ok(r) => Ok::<_, std::convert::Infallible>(r),
                        Err(e) => {
                            tracing::warn!(error = %e, "edge request");
                            let body =
                                serde_json::json!({"error_code": 50201, "message": e.to_string()})
                                    .to_string();
                            Ok(hyper::Response::builder()
                                .status(502)
                                .header("content-type", "application/json")
                                .body({
                                    use http_body_util::BodyExt;
                                    http_body_util::Full::new(bytes::Bytes::from(body))
                                        .map_err(|never| match never {})
                                        .boxed_unsync()
                                })
                                .expect("response builds"))
                        }
                    }
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
