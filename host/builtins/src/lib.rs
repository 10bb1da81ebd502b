//! The built-in components, compiled from `components/` for `wasm32-wasip2` by this crate's
//! build script and embedded in the binary, so a fresh `sluice serve` has them.

include!(concat!(env!("OUT_DIR"), "/components.rs"));

/// A built-in component: its name (as pipelines name it), its world, its bytes.
pub struct Builtin {
    pub name: &'static str,
    pub world: &'static str,
    pub wasm: &'static [u8],
}

/// The components every tenant may use by name.
pub const BUILTINS: [Builtin; 8] = [
    Builtin {
        name: "validate",
        world: "validator",
        wasm: VALIDATE,
    },
    Builtin {
        name: "enrich",
        world: "enricher",
        wasm: ENRICH,
    },
    Builtin {
        name: "route",
        world: "router",
        wasm: ROUTE,
    },
    Builtin {
        name: "redact-phi",
        world: "transformer",
        wasm: REDACT_PHI,
    },
    Builtin {
        name: "bronze-to-silver",
        world: "transformer",
        wasm: BRONZE_TO_SILVER,
    },
    Builtin {
        name: "webhook-gateway",
        world: "ingress",
        wasm: WEBHOOK_GATEWAY,
    },
    Builtin {
        name: "compactor",
        world: "compactor",
        wasm: COMPACTOR,
    },
    Builtin {
        name: "fhir-gateway",
        world: "ingress",
        wasm: FHIR_GATEWAY,
    },
];

/// The edge build (`spin.toml`): `wasi:http` components for a Spin edge, which the host can
/// also serve itself (`sluice edge`); not pipeline components.
pub mod edge {
    /// The webhook gateway at the edge (`components/webhook-edge`).
    pub const WEBHOOK_EDGE: &[u8] = super::WEBHOOK_EDGE;
    /// The FHIR gateway at the edge (`components/fhir-edge`).
    pub const FHIR_EDGE: &[u8] = super::FHIR_EDGE;

    /// The embedded build of the `spin.toml` component `id`.
    pub fn component(id: &str) -> Option<&'static [u8]> {
        match id {
            "webhook-edge" => Some(WEBHOOK_EDGE),
            "fhir-edge" => Some(FHIR_EDGE),
            _ => None,
        }
    }
}

/// Test guests that misbehave on purpose (see `components/hostile`); not offered to tenants.
pub mod testing {
    pub const HOSTILE: &[u8] = super::HOSTILE;
    /// A compaction policy that loops, traps or answers garbage on purpose.
    pub const HOSTILE_COMPACTOR: &[u8] = super::HOSTILE_COMPACTOR;
}

/// The built-in component named `name`.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}
